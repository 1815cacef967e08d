#!/bin/bash
# The Ansible roles in ops/ansible, run for real by ansible-playbook against
# a throwaway chroot target (tests/ops/ansible_target.sh) through the
# community.general.chroot connection, inside a private mount namespace so
# every mount the target needs vanishes with the test. Results are read from
# the json stdout callback (.stats), never from the human output.
#   test_ansible.sh lint                 ansible-lint, production profile, offline
#   test_ansible.sh syntax               --syntax-check of every playbook
#   test_ansible.sh kvc_peer KVC KVC_PEER  site.yml applied, then changed=0
#   test_ansible.sh node KVC             node.yml applied (runtime steps in
#                                        --check --diff), then changed=0
#   test_ansible.sh cluster              cluster.yml: kubeadm in --check --diff,
#                                        k3s applied with a fake k3s, changed=0
set -euo pipefail
MODE=$1
SRC=$(cd "$(dirname "$0")/../.." && pwd)
A=$SRC/ops/ansible
fail() { echo "FAIL: $*" >&2; exit 1; }
command -v ansible-playbook >/dev/null || fail "ansible-playbook is not installed (ops/install-deps.sh)"
export ANSIBLE_CONFIG=$A/ansible.cfg ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0
export ANSIBLE_LOCAL_TEMP ANSIBLE_HOME

case $MODE in
lint)
    command -v ansible-lint >/dev/null || fail "ansible-lint is not installed (ops/install-deps.sh)"
    cd "$A"
    # .ansible-lint: profile production, offline (no Galaxy)
    exec ansible-lint --nocolor --offline --profile production
    ;;
syntax)
    cd "$A"
    for p in site.yml node.yml cluster.yml; do
        ansible-playbook -i inventory.example.yml --syntax-check "$p" >/dev/null ||
            fail "$p: syntax check"
        echo "ok: $p"
    done
    exit 0
    ;;
esac

# The rest needs root (chroot, mounts): re-run inside a private mount namespace.
[ "$(id -u)" -eq 0 ] || fail "the chroot target needs root"
if [ -z "${KVC_ANSIBLE_NS:-}" ]; then
    T=$(mktemp -d /tmp/kvc-ans.XXXXXX)
    trap 'rm -rf "$T"' EXIT
    KVC_ANSIBLE_NS=1 T=$T unshare --mount --propagation private "$0" "$@"
    exit $?
fi
R=$T/root
# KVC_ANSIBLE_KEEP=DIR: keep every run's JSON and stderr there, to debug
[ -n "${KVC_ANSIBLE_KEEP:-}" ] && trap 'mkdir -p "$KVC_ANSIBLE_KEEP" && cp "$T"/*.json "$T"/*.err "$KVC_ANSIBLE_KEEP"/ 2>/dev/null' EXIT
ANSIBLE_HOME=$T/ansible-home ANSIBLE_LOCAL_TEMP=$T/ansible-tmp
"$SRC/tests/ops/ansible_target.sh" "$R"
export ANSIBLE_STDOUT_CALLBACK=json ANSIBLE_LOG_PATH=$T/ansible.log

# run NAME PLAYBOOK ARGS...: one ansible-playbook run, its JSON in $T/NAME.json
run() {
    local name=$1
    shift
    local t0=$SECONDS
    if ! ansible-playbook -i "$T/inventory.yml" "$@" >"$T/$name.json" 2>"$T/$name.err"; then
        jq -r '.. | objects | select(.failed? == true) | .msg? // empty' "$T/$name.json" 2>/dev/null | head -5 >&2 || true
        tail -20 "$T/$name.err" >&2
        fail "$name: ansible-playbook failed"
    fi
    local st
    st=$(jq -c '.stats[]' "$T/$name.json")
    echo "$name: $st ($((SECONDS - t0)) s)"
    [ "$(jq -s 'map(.failures + .unreachable) | add' <<<"$st")" = 0 ] || fail "$name: failures"
    CHANGED=$(jq -s 'map(.changed) | add' <<<"$st")
}
# changed_tasks NAME: what changed in run NAME (for a failed idempotence check)
changed_tasks() {
    jq -r '.plays[].tasks[] | select(.hosts[]?.changed == true) | .task.name' "$T/$1.json" >&2
}
inventory() { # inventory GROUP: the chroot as the one host of GROUP
    cat >"$T/inventory.yml" <<YAML
all:
  children:
    $1:
      hosts:
        $R:
          ansible_connection: community.general.chroot
          ansible_become: false
          ansible_python_interpreter: /usr/bin/python3
YAML
}
has() { grep -qF -- "$2" "$R$1" || fail "$1 lacks: $2"; }

case $MODE in
kvc_peer)
    KVC=$(realpath "$2") KVC_PEER=$(realpath "$3")
    "$KVC" ca init --out "$T/ca" >/dev/null
    "$KVC" cert issue --ca "$T/ca" --site test-site --name gw-1 --out "$T/gw-1.id" >/dev/null
    inventory gateways
    vars=(-e kvc_peer_binary_src="$KVC_PEER" -e kvc_peer_credential_src="$T/gw-1.id"
          -e kvc_peer_trust_src="$T/ca/federation.pub" -e kvc_peer_site=test-site
          -e kvc_peer_name=gw-1 -e kvc_peer_advertise=tcp://10.0.0.5:7946
          -e kvc_peer_start=false
          -e '{"kvc_peer_seeds": ["3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29@tcp://10.0.1.5:7946"],
               "kvc_peer_extra_config": {"proxy": {"backends": [{"model": "resnet50", "grpc": "resnet50.models.svc:8500"}]}}}')
    run first "$A/site.yml" "${vars[@]}"
    [ "$CHANGED" -gt 0 ] || fail "first run changed nothing"
    run second "$A/site.yml" "${vars[@]}"
    [ "$CHANGED" = 0 ] || { changed_tasks second; fail "second run: changed=$CHANGED, not 0"; }
    U=/etc/systemd/system/kvc-peer.service
    for l in "User=kvc" "Group=kvc" "ExecStart=/usr/local/bin/kvc-peer --config /etc/kvc/kvc-peer.yaml" \
             "Restart=on-failure" "NoNewPrivileges=yes" "ProtectSystem=strict" \
             "ReadWritePaths=/var/lib/kvc" "PrivateTmp=yes" "WantedBy=multi-user.target"; do
        has $U "$l"
    done
    [ -L "$R/etc/systemd/system/multi-user.target.wants/kvc-peer.service" ] || fail "kvc-peer is not enabled"
    grep -q '^kvc:x:[0-9]*:[0-9]*::/var/lib/kvc:/usr/sbin/nologin$' "$R/etc/passwd" || fail "no kvc system user"
    uid=$(awk -F: '$1=="kvc"{print $3}' "$R/etc/passwd")
    [ "$uid" -lt 1000 ] || fail "kvc is not a system user (uid $uid)"
    [ "$(stat -c "%u %a" "$R/var/lib/kvc/identity")" = "$uid 600" ] || fail "credential not kvc 0600"
    cmp -s "$T/gw-1.id" "$R/var/lib/kvc/identity" || fail "credential not installed"
    has /etc/kvc/kvc-peer.yaml 'site: "test-site"'
    has /etc/kvc/kvc-peer.yaml 'advertise: "tcp://10.0.0.5:7946"'
    has /etc/kvc/kvc-peer.yaml '3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29@tcp://10.0.1.5:7946'
    has /etc/kvc/kvc-peer.yaml 'model: resnet50'
    # the rendered config is what kvc-peer itself accepts
    "$KVC_PEER" --check --config "$R/etc/kvc/kvc-peer.yaml" 2>/dev/null || fail "rendered config refused by kvc-peer"
    # the credential's secret never reaches the output or the log
    sec=$(grep -oE '[0-9a-f]{64}' "$T/gw-1.id" | tail -1 || true)
    if [ -n "$sec" ] && grep -qF "$sec" "$T"/*.json "$T"/*.err "$T/ansible.log"; then
        fail "credential content in ansible output"
    fi
    ;;
node)
    KVC=$(realpath "$2")
    inventory nodes
    SECRET="enroll-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
    # a fake kvc: records its arguments; `join --exec` stands for kubeadm join
    # by leaving the kubelet's kubeconfig, as a joined node has
    cat >"$T/fake-kvc" <<'SH'
#!/bin/sh
echo "$*" >>/var/log/fake-kvc.args
case "$1" in
keygen) echo key >"$3" ;;
join) mkdir -p /etc/kubernetes && echo joined >/etc/kubernetes/kubelet.conf ;;
esac
SH
    printf '#!/bin/sh\necho k3s "$@"\n' >"$T/fake-k3s"
    chmod +x "$T/fake-kvc" "$T/fake-k3s"
    vars=(-e node_prep_install_packages=false -e node_prep_manage_services=false
          -e node_prep_reboot=false -e k8s_packages_install=false
          -e cluster_join_kind=k3s -e k8s_packages_k3s_src="$T/fake-k3s"
          -e cluster_join_done_file=/etc/kubernetes/kubelet.conf
          -e cluster_join_site=test-site -e cluster_join_peer=tcp://10.0.0.5:7946
          -e cluster_join_peer_key=3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29
          -e cluster_join_kvc_src="$T/fake-kvc" -e cluster_join_name=pi-1
          -e cluster_join_enroll_code="$SECRET")
    # what needs a real kernel (swapoff, modprobe, sysctl -w): --check --diff
    run check "$A/node.yml" "${vars[@]}" -e node_prep_install_packages=true --check --diff
    # the package step ran against the host's apt database (in check mode:
    # it would install containerd and runc here; nothing is written)
    jq -e '[.plays[].tasks[] | select(.task.name | test("Install containerd"))
            | .hosts[] | select(.skipped != true and .failed != true)] | length == 1' \
        "$T/check.json" >/dev/null || fail "the package step did not run in --check"
    run first "$A/node.yml" "${vars[@]}" --skip-tags node_prep_runtime
    [ "$CHANGED" -gt 0 ] || fail "first run changed nothing"
    run second "$A/node.yml" "${vars[@]}" --skip-tags node_prep_runtime
    [ "$CHANGED" = 0 ] || { changed_tasks second; fail "second run: changed=$CHANGED, not 0"; }
    grep -q '^# /swapfile none swap' "$R/etc/fstab" || fail "swap still in fstab"
    grep -q '^UUID=0000-test / ext4' "$R/etc/fstab" || fail "fstab's root line lost"
    has /etc/modules-load.d/kubernetes.conf overlay
    has /etc/modules-load.d/kubernetes.conf br_netfilter
    for k in net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables; do
        has /etc/sysctl.d/99-kubernetes.conf "$k=1"
    done
    has /boot/firmware/cmdline.txt "rootwait cgroup_enable=memory cgroup_memory=1"
    [ "$(wc -l <"$R/boot/firmware/cmdline.txt")" = 1 ] || fail "cmdline.txt is not one line"
    has /etc/containerd/config.toml "SystemdCgroup = true"
    has /etc/containerd/config.toml 'runtime_type = "io.containerd.runc.v2"'
    cmp -s "$T/fake-k3s" "$R/usr/local/bin/k3s" || fail "k3s not installed from the local path"
    [ "$(grep -c '^join ' "$R/var/log/fake-kvc.args")" = 1 ] || fail "kvc join did not run exactly once"
    want="join --exec --site test-site --peer tcp://10.0.0.5:7946 --peer-key 3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29 --key /etc/kvc/node.key --name pi-1 --kind k3s --wait 600 --enroll $SECRET"
    grep -qxF -- "$want" "$R/var/log/fake-kvc.args" || { cat "$R/var/log/fake-kvc.args" >&2; fail "kvc join arguments"; }
    grep -q '^keygen --out /etc/kvc/node.key$' "$R/var/log/fake-kvc.args" || fail "node key not created"
    # a join that fails, with kvc echoing the code on stderr: the play fails
    # naming the exit code, the code itself redacted
    rm "$R/etc/kubernetes/kubelet.conf"
    cat >"$T/fail-kvc" <<'SH'
#!/bin/sh
for a; do last=$a; done
echo "kvc: join: refused: enrollment code $last is not valid" >&2
exit 1
SH
    chmod +x "$T/fail-kvc"
    printf -- '- name: Join only\n  hosts: nodes\n  roles: [cluster_join]\n' >"$T/join.yml"
    if ansible-playbook -i "$T/inventory.yml" "$T/join.yml" "${vars[@]}" -e cluster_join_kvc_src="$T/fail-kvc" \
        >"$T/failjoin.json" 2>"$T/failjoin.err"; then
        fail "a failing kvc join did not fail the play"
    fi
    msg=$(jq -r '.plays[].tasks[] | select(.task.name | contains("Report a failed join")) | .hosts[].msg' "$T/failjoin.json")
    case $msg in
    *"exited with 1"*"<redacted>"*) echo "ok: failed join reported: $msg" ;;
    *) fail "failed join not reported with the code redacted: $msg" ;;
    esac
    # the enroll code reached kvc, and nothing else: not the output, not the log
    if grep -lF -- "$SECRET" "$T"/*.json "$T"/*.err "$T/ansible.log"; then
        fail "the enroll code appears in ansible's output"
    fi
    echo "ok: no enroll code in $(cat "$T"/*.json "$T"/*.err "$T/ansible.log" | wc -c) bytes of ansible output"
    ;;
cluster)
    inventory servers
    # a fake k3s: `k3s kubectl ... apply` answers as kubectl would
    cat >"$T/fake-k3s" <<'SH'
#!/bin/sh
echo "$*" >>/var/log/fake-k3s.args
case "$*" in *apply*) echo "daemonset.apps/kube-flannel-ds created" ;; esac
SH
    chmod +x "$T/fake-k3s"
    printf 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: kube-flannel\n' >"$T/cni.yaml"
    common=(-e node_prep_install_packages=false -e node_prep_manage_services=false
            -e node_prep_reboot=false -e k8s_packages_install=false
            -e cluster_create_name=test-site -e cluster_create_pod_cidr=10.42.0.0/16
            -e cluster_create_service_cidr=10.43.0.0/16 -e cluster_create_advertise_address=10.0.0.10
            -e cluster_create_cni_manifest="$T/cni.yaml" -e cluster_create_manage_services=false)
    run kubeadm_check "$A/cluster.yml" "${common[@]}" -e node_prep_install_packages=true \
        -e cluster_create_kind=kubeadm --check --diff
    # k3s, really applied; the kubeconfig stands for a started k3s server's
    mkdir -p "$R/etc/rancher/k3s"
    echo "apiVersion: v1 # k3s admin" >"$R/etc/rancher/k3s/k3s.yaml"
    k3s=("${common[@]}" -e cluster_create_kind=k3s -e k8s_packages_k3s_src="$T/fake-k3s"
         -e cluster_create_kubeconfig_group=root)
    run k3s_first "$A/cluster.yml" "${k3s[@]}" --skip-tags node_prep_runtime
    run k3s_second "$A/cluster.yml" "${k3s[@]}" --skip-tags node_prep_runtime
    [ "$CHANGED" = 0 ] || { changed_tasks k3s_second; fail "second run: changed=$CHANGED, not 0"; }
    has /etc/systemd/system/k3s.service "server --cluster-cidr 10.42.0.0/16 --service-cidr 10.43.0.0/16 --advertise-address 10.0.0.10"
    has /etc/systemd/system/k3s.service "--flannel-backend none"
    [ -L "$R/etc/systemd/system/multi-user.target.wants/k3s.service" ] || fail "k3s is not enabled"
    cmp -s "$R/etc/rancher/k3s/k3s.yaml" "$R/etc/kvc/kubeconfig" || fail "kubeconfig not written for the peers"
    [ "$(grep -c 'apply -f /etc/kvc/cni.yaml' "$R/var/log/fake-k3s.args")" = 1 ] || fail "CNI not applied exactly once"
    has /var/log/fake-k3s.args "kubectl --kubeconfig /etc/kvc/kubeconfig apply -f /etc/kvc/cni.yaml"
    ;;
*) fail "unknown mode $MODE" ;;
esac
echo "ok: $MODE"
