#!/bin/bash
# Node setup and cluster creation jobs end to end, with real processes:
# three voters of site-a on loopback and real ansible-playbook (Debian's
# ansible) running small test playbooks on the node record's host with a
# local connection, their progress read through the kvc_events callback.
#
# Checks: a node that asked to join and was approved gets a setup job; any
# peer shows its progress (task N of M) and its outcome, and its log, in
# which a secret the playbook printed is redacted; one job per node at a
# time; cancel stops the playbook's processes; kill -9 of the coordinator
# mid-job leaves the job interrupted, visible from another peer, and retry
# runs it again on the new coordinator; an unknown or unapproved node, a
# missing option, a playbook variable that is not set, ansible-playbook not
# installed and an unreachable host each give a one-line reason.
set -euo pipefail
KVC=$1 KVC_PEER=$2
. "$(dirname "$0")/lib.sh"
HERE=$(cd "$(dirname "$0")" && pwd)
command -v ansible-playbook >/dev/null || fail "ansible-playbook is not installed (ops/install-deps.sh)"

# --- the test playbooks --------------------------------------------------------
PB=$T/playbooks
mkdir -p "$PB"
cp -r "$HERE/../../ops/ansible/callback_plugins" "$PB/"
cat >"$PB/node.yml" <<EOF
- name: Set up a node (test)
  hosts: all
  gather_facts: false
  tasks:
    - name: Say which node
      ansible.builtin.debug:
        msg: "setting up {{ kvc_node_name }} of {{ kvc_site }} as {{ kvc_node_role }}"
    - name: Print something secret
      ansible.builtin.debug:
        msg: "join with abcdef.0123456789abcdef, password: hunter2hunter2"
    - name: Leave a marker
      ansible.builtin.copy:
        dest: "$T/marker-{{ kvc_node_name }}"
        content: "{{ kvc_join_peer }} {{ kvc_join_peer_key }}\n"
        mode: "0644"
EOF
cat >"$PB/cluster.yml" <<EOF
- name: Create a cluster (test)
  hosts: all
  gather_facts: false
  tasks:
    - name: Check the cluster name
      ansible.builtin.debug:
        msg: "cluster {{ cluster_name }} pods {{ pod_cidr }} kind {{ kind }}"
    - name: Wait a long time
      ansible.builtin.command: sleep 300
      when: cluster_name == "slow"
      changed_when: false
    - name: Use a variable nobody set
      ansible.builtin.debug:
        msg: "{{ kvc_missing_variable }}"
      when: cluster_name == "broken"
EOF

# --- three voters of site-a ----------------------------------------------------
"$KVC" ca init --out "$T/ca" >/dev/null
for n in j1 j2 j3; do
    "$KVC" cert issue --ca "$T/ca" --site site-a --name "$n" --out "$T/$n.id" >/dev/null
done
cfg() { # NAME [SEED_EP SEED_KEY]
    local n=$1
    shift
    write_config "$T/$n.yaml" "$n" site-a eu "$T/$n" "$T/$n.id" "$T/ca/federation.pub" "$@"
    printf 'jobs:\n  playbooks: %s\n  connection: local\n' "$PB" >>"$T/$n.yaml"
}
cfg j1
start_peer j1 "$T/j1.yaml"
SEED_EP=$(jqs "$T/j1.yaml" status .advertise)
SEED_KEY=$(jqs "$T/j1.yaml" status .public_key)
for n in j2 j3; do
    cfg "$n" "$SEED_EP" "$SEED_KEY"
    start_peer "$n" "$T/$n.yaml"
done
coordinator() { jqs "$T/j1.yaml" sites '.[] | select(.site == "site-a") | .coordinator'; }
three() { [ "$(jqs "$T/j1.yaml" status .election.voters)" = 3 ] && [ -n "$(coordinator)" ]; }
poll 30 "site-a has three voters and a coordinator" three

# --- two nodes ask to join; n1 is approved, n2 stays pending ------------------------
for n in n1 n2; do
    "$KVC" keygen --out "$T/$n.key" >/dev/null
    rc=0
    "$KVC" join --site site-a --peer "$SEED_EP" --peer-key "$SEED_KEY" --key "$T/$n.key" \
        --name "$n" --address 127.0.0.1 --print >/dev/null 2>&1 || rc=$?
    [ "$rc" = 3 ] || fail "kvc join of $n exited $rc, not 3 (waiting for approval)"
done
"$KVC" --config "$T/j2.yaml" nodes approve n1 >/dev/null
approved() { jqs "$T/j3.yaml" nodes '.[] | select(.name == "n1") | .state' | grep -qx approved; }
poll 10 "n1 is approved at every peer" approved

j() { local c=$1; shift; "$KVC" --config "$T/$c.yaml" "$@"; }
state() { j "$1" jobs show "$2" --json | jq -r .state; }
expect_exit() { # CODE CMD...: CMD exits CODE with one line on stderr
    local want=$1 rc=0
    shift
    "$@" >"$T/out" 2>"$T/err" || rc=$?
    [ "$rc" = "$want" ] || fail "'$*' exited $rc (want $want): $(cat "$T/err")"
    [ "$(wc -l <"$T/err")" = 1 ] || fail "'$*' wrote $(wc -l <"$T/err") lines on stderr: $(cat "$T/err")"
}

# --- a node setup job, asked at a peer that may not be the coordinator ------------
ID=$(j j3 nodes setup n1 --json | jq -r .id)
[ ${#ID} = 16 ] || fail "nodes setup gave id '$ID'"
done_ok() { [ "$(state j2 "$ID")" = ok ]; }
poll 60 "the setup job ends ok" done_ok
show=$(j j1 jobs show "$ID" --json)
jq -e '.kind == "node-setup" and .node == "n1" and .role == "worker" and .tasks == 3
       and .task == 3 and .changed == 1 and .requested_by == "site-a/j3"' <<<"$show" >/dev/null ||
    fail "job record: $show"
[ "$(jq -r .coordinator <<<"$show")" = "$(coordinator)" ] || fail "the job ran at $(jq -r .coordinator <<<"$show"), not the coordinator"
[ "$(cat "$T/marker-n1")" = "$SEED_EP $SEED_KEY" ] && true ||
    grep -q " [0-9a-f]\{64\}$" "$T/marker-n1" || fail "the playbook did not get the join peer: $(cat "$T/marker-n1")"
j j2 jobs logs "$ID" >"$T/log"
grep -q 'TASK \[Leave a marker\]' "$T/log" || fail "the log lacks the tasks: $(head -20 "$T/log")"
grep -q 'PLAY RECAP' "$T/log" || fail "the log lacks the recap"
grep -q 'Print something secret' "$T/log" || fail "the secret task is not in the log"
! grep -q '0123456789abcdef\|hunter2' "$T/log" || fail "a secret is in the job log: $(grep -n '0123456789abcdef\|hunter2' "$T/log")"
grep -q 'join with \*\{23\}, password: \*\{14\}' "$T/log" || fail "the secrets are not shown as ***: $(grep -n 'join with' "$T/log")"
for n in j1 j2 j3; do ! grep -q '0123456789abcdef\|hunter2' "$T/$n.log" || fail "a secret is in $n's log"; done
j j1 jobs list | grep -q "^$ID node-setup .*n1 .*ok" || fail "jobs list: $(j j1 jobs list)"

# --- cancel ------------------------------------------------------------------------
ID2=$(j j1 cluster create --node n1 --name slow --pod-cidr 10.244.0.0/16 --kind k3s --json | jq -r .id)
waiting() { j j2 jobs show "$ID2" --json | jq -e '.state == "running" and .current_task == "Wait a long time"' >/dev/null; }
poll 60 "the slow job reaches its long task" waiting
expect_exit 1 j j2 nodes setup n1 # one job per node at a time
grep -q "already has job $ID2" "$T/err" || fail "second job: $(cat "$T/err")"
sleeping() { pgrep -f "sleep 300" >/dev/null; }
poll 20 "the playbook's sleep runs" sleeping
j j3 jobs cancel "$ID2" >/dev/null
cancelled() { [ "$(state j1 "$ID2")" = cancelled ]; }
poll 20 "the job is cancelled" cancelled
gone() { ! pgrep -f "sleep 300" >/dev/null; }
poll 10 "cancel stopped the playbook's processes" gone

# --- kill -9 of the coordinator mid-job ---------------------------------------------
ID3=$(j j1 cluster create --node n1 --name slow --pod-cidr 10.244.0.0/16 --kind kubeadm --json | jq -r .id)
ID3_WAIT() { j j1 jobs show "$ID3" --json | jq -e '.state == "running" and .current_task == "Wait a long time"' >/dev/null; }
poll 60 "the second slow job runs" ID3_WAIT
C=$(j j1 jobs show "$ID3" --json | jq -r .coordinator)
C=${C#site-a/}
eval "kill -9 \$PID_$C"
O=j1
[ "$C" = j1 ] && O=j2
interrupted() {
    j "$O" jobs show "$ID3" --json | jq -e --arg c "site-a/$C" \
        '.state == "interrupted" and (.reason | contains($c))' >/dev/null
}
poll 30 "the job is interrupted, seen from $O" interrupted
poll 10 "the killed coordinator's playbook is gone" gone
ID4=$(j "$O" jobs retry "$ID3" --json | jq -r .id)
rerun() {
    j "$O" jobs show "$ID4" --json | jq -e --arg c "site-a/$C" \
        '.state == "running" and .coordinator != $c and .coordinator != ""' >/dev/null
}
poll 60 "the new coordinator runs it again" rerun
j "$O" jobs cancel "$ID4" >/dev/null
cancelled4() { [ "$(state "$O" "$ID4")" = cancelled ]; }
poll 20 "the rerun is cancelled" cancelled4

# --- bad input: one line naming what to fix -------------------------------------------
expect_exit 1 j "$O" nodes setup nobody
grep -q "no node nobody at site site-a" "$T/err" || fail "unknown node: $(cat "$T/err")"
expect_exit 1 j "$O" nodes setup n2
grep -q "n2 is pending: approve it first" "$T/err" || fail "pending node: $(cat "$T/err")"
expect_exit 2 j "$O" cluster create --node n1 --name x --kind k3s
grep -q -- "--pod-cidr is needed" "$T/err" || fail "missing option: $(cat "$T/err")"
expect_exit 1 j "$O" jobs show 0123456789abcdef
expect_exit 1 j "$O" jobs show nothex
ID5=$(j "$O" cluster create --node n1 --name broken --pod-cidr 10.0.0.0/16 --kind k3s --json | jq -r .id)
failed5() { j "$O" jobs show "$ID5" --json | jq -e '.state == "failed" and (.reason | contains("kvc_missing_variable"))' >/dev/null; }
poll 60 "a job using an unset variable fails naming it" failed5
rc=0
j "$O" jobs logs "$ID5" --follow >/dev/null 2>"$T/follow.err" || rc=$?
[ "$rc" = 1 ] && grep -q "job $ID5 failed" "$T/follow.err" || fail "logs --follow of a failed job: rc $rc $(cat "$T/follow.err")"

# a peer without ansible-playbook, and a host that cannot be reached: a
# one-peer site-b (it elects itself at once) with its own approved node
"$KVC" cert issue --ca "$T/ca" --site site-b --name b1 --out "$T/b1.id" >/dev/null
write_config "$T/b1.yaml" b1 site-b eu "$T/b1" "$T/b1.id" "$T/ca/federation.pub"
printf 'jobs:\n  playbooks: %s\n  ansible_playbook: /nonexistent/ansible-playbook\n' "$PB" >>"$T/b1.yaml"
start_peer b1 "$T/b1.yaml"
b_coord() { expect_jq "$T/b1.yaml" status '.election.can_act'; }
poll 20 "b1 coordinates site-b" b_coord
B_EP=$(jqs "$T/b1.yaml" status .advertise)
B_KEY=$(jqs "$T/b1.yaml" status .public_key)
"$KVC" keygen --out "$T/m1.key" >/dev/null
rc=0
"$KVC" join --site site-b --peer "$B_EP" --peer-key "$B_KEY" --key "$T/m1.key" --name m1 \
    --address 127.0.0.1 --print >/dev/null 2>&1 || rc=$?
[ "$rc" = 3 ] || fail "kvc join of m1 exited $rc"
j b1 nodes approve m1 >/dev/null
ID6=$(j b1 nodes setup m1 --json | jq -r .id)
failed6() { j b1 jobs show "$ID6" --json | jq -e '.state == "failed" and (.reason | contains("/nonexistent/ansible-playbook is not installed"))' >/dev/null; }
poll 30 "a job fails when ansible-playbook is missing" failed6
kill "$PID_b1"
wait "$PID_b1" 2>/dev/null || true
sed -i "/ansible_playbook: \/nonexistent/d" "$T/b1.yaml" # ssh, the default connection
start_peer b1 "$T/b1.yaml"
poll 20 "b1 coordinates site-b again" b_coord
# ssh to 127.0.0.1: no sshd listens here, so the host is unreachable
ID7=$(j b1 nodes setup m1 --json | jq -r .id)
failed7() { j b1 jobs show "$ID7" --json | jq -e '.state == "failed" and (.reason | test("unreachable"))' >/dev/null; }
poll 60 "a job fails when the host is unreachable" failed7
echo "jobs: ok"
