#!/bin/bash
# Coordinator failover beside etcd's (issue 15): a 3-member etcd cluster
# (Debian's etcd-server, a real Raft) and a 3-voter kvc site on loopback,
# with the same election timeout class: etcd --heartbeat-interval 100
# --election-timeout 1000, kvc's lan profile (100 ms heartbeats, 600-1000 ms
# election timeouts, 540 ms lease). KVCB_ROUNDS times each (default 20):
# kill -9 the leader / coordinator, then measure until a new one accepts a
# write: etcd, `etcdctl put` through the survivors succeeds; kvc, a
# survivor relays a `kvc join --print` and the new coordinator grants it (a
# k3s bootstrap token minted through the Kubernetes API stand-in). Then the
# killed member restarts and rejoins before the next round.
#
# Both poll with a fresh client process every 10 ms (etcdctl or kvc join
# with a 300 ms timeout), so both figures include one client start-up
# (etcdctl's is the heavier, a Go binary). Then KVCB_JOINS (default 50)
# joins straight to the coordinator: the client's wall time per join, and
# the coordinator's own request-to-grant time with and without the API call
# (kvc info, section join).
#
#   bench_failover_vs_etcd.sh BUILD_DIR   (BUILD_DIR holds kvc and kvc-peer)
#
# Runs in a network namespace of its own (unshare --net), where the fixed
# etcd and kvc ports cannot be taken by anything else; kvc peers listen on
# fixed ports as gateways do, so a restarted one is found where it was.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -euo pipefail
BUILD=$(cd "${1:?build dir}" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
if [ -z "${KVCB_IN_NETNS:-}" ]; then
    KVCB_IN_NETNS=1 exec unshare --net -- bash "$0" "$BUILD"
fi
ip link set lo up
ROUNDS=${KVCB_ROUNDS:-20}
JOINS=${KVCB_JOINS:-50}
KVC=$BUILD/kvc
KVC_PEER=$BUILD/kvc-peer
KUBE=$HERE/../kube
PY=/usr/bin/python3
command -v etcd >/dev/null && command -v etcdctl >/dev/null ||
    { echo "bench_failover_vs_etcd: needs etcd-server and etcd-client (ops/install-deps.sh --bench)" >&2; exit 1; }
T=$(mktemp -d /tmp/kvcb-failover.XXXXXX)
PIDS=""
cleanup() {
    for p in $PIDS; do kill -9 "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$T"
}
trap cleanup EXIT
now_ms() { echo $(($(date +%s%N) / 1000000)); }
# poll SECONDS CMD...: until CMD succeeds, every 10 ms
poll() {
    local end=$(($(now_ms) + $1 * 1000))
    shift
    until "$@" >/dev/null 2>&1; do
        [ "$(now_ms)" -lt "$end" ] || { echo "bench: timed out: $*" >&2; diag >&2; exit 1; }
        sleep 0.01
    done
}
diag() { # what each kvc peer thinks, for a failure report
    for n in k1 k2 k3; do
        [ -f "$T/$n.yaml" ] || continue
        echo "$n: $("$KVC" --config "$T/$n.yaml" status --json 2>&1 | jq -c .election 2>/dev/null) $("$KVC" --config "$T/$n.yaml" sites --json 2>&1)"
        tail -n 5 "$T/$n.log"
    done
}
stats() { # FILE: "p50 p99 max" of the numbers in FILE
    sort -n "$1" | awk '{ v[NR] = $1 } END {
        i50 = int((NR - 1) * 0.50) + 1; i99 = int((NR - 1) * 0.99) + 1
        printf "%d %d %d", v[i50], v[i99], v[NR] }'
}

# --- etcd ------------------------------------------------------------------
export ETCDCTL_API=3
CLUSTER="e1=http://127.0.0.1:12380,e2=http://127.0.0.1:22380,e3=http://127.0.0.1:32380"
ALL="127.0.0.1:12379,127.0.0.1:22379,127.0.0.1:32379"
etcd_start() { # N STATE
    local n=$1
    etcd --name "e$n" --data-dir "$T/e$n" \
        --listen-peer-urls "http://127.0.0.1:${n}2380" --initial-advertise-peer-urls "http://127.0.0.1:${n}2380" \
        --listen-client-urls "http://127.0.0.1:${n}2379" --advertise-client-urls "http://127.0.0.1:${n}2379" \
        --initial-cluster "$CLUSTER" --initial-cluster-state "$2" --initial-cluster-token kvcb \
        --heartbeat-interval 100 --election-timeout 1000 --logger zap --log-level error \
        >>"$T/e$n.log" 2>&1 &
    eval "EPID_$n=$!"
    PIDS="$PIDS $!"
}
for n in 1 2 3; do etcd_start "$n" new; done
etcd_healthy() { etcdctl --endpoints="$ALL" --dial-timeout=300ms --command-timeout=500ms endpoint health; }
poll 30 etcd_healthy
etcd_leader() { # prints the number of the leader
    etcdctl --endpoints="$ALL" --dial-timeout=300ms --command-timeout=500ms endpoint status -w json |
        jq -r '.[] | select(.Status.leader == .Status.header.member_id) | .Endpoint' |
        sed -n 's#.*127.0.0.1:\([1-3]\)2379#\1#p' | head -n1
}
: >"$T/etcd.ms"
for r in $(seq "$ROUNDS"); do
    L=$(etcd_leader)
    [ -n "$L" ] || { poll 10 etcd_leader; L=$(etcd_leader); }
    S=""
    for n in 1 2 3; do [ "$n" = "$L" ] || S="${S:+$S,}127.0.0.1:${n}2379"; done
    kill -9 "$(eval echo "\$EPID_$L")"
    t0=$(now_ms)
    until etcdctl --endpoints="$S" --dial-timeout=300ms --command-timeout=300ms put bench "$r" >/dev/null 2>&1; do
        sleep 0.01
    done
    echo $(($(now_ms) - t0)) >>"$T/etcd.ms"
    wait "$(eval echo "\$EPID_$L")" 2>/dev/null || true
    etcd_start "$L" existing
    poll 30 etcd_healthy
done
for n in 1 2 3; do kill -9 "$(eval echo "\$EPID_$n")" 2>/dev/null || true; done

# --- kvc ---------------------------------------------------------------------
mkdir -p "$T/pki"
"$KUBE/kube_pki.sh" pki "$T/pki"
mkfifo "$T/standin.in"
"$PY" "$KUBE/kube_api_standin.py" --cert "$T/pki/server.pem" --key "$T/pki/server.key" \
    --ca "$T/pki/ca.pem" --jws-delay-ms 0 --sweep-ms 1000 <"$T/standin.in" >"$T/standin.port" \
    2>"$T/standin.log" &
PIDS="$PIDS $!"
exec 3>"$T/standin.in"
poll 20 test -s "$T/standin.port"
"$KUBE/kube_pki.sh" kubeconfig "$T/pki" "$(head -n1 "$T/standin.port")"
"$KVC" ca init --out "$T/ca" >/dev/null
kvc_start() { # NAME
    "$KVC_PEER" --config "$T/$1.yaml" >>"$T/$1.log" 2>&1 &
    eval "KPID_$1=$!"
    PIDS="$PIDS $!"
    poll 20 "$KVC" --config "$T/$1.yaml" status
}
seed=""
port=17000
for n in k1 k2 k3; do
    port=$((port + 1)) # fixed, as gateways run (a restart comes back where it was)
    "$KVC" cert issue --ca "$T/ca" --site site-a --name "$n" --out "$T/$n.id" >/dev/null
    mkdir -p "$T/$n"
    {
        printf 'peer: {name: %s, site: site-a, data_dir: %s, credential: %s}\n' "$n" "$T/$n" "$T/$n.id"
        printf 'federation:\n  trust: %s\n  listen: "tcp://127.0.0.1:%s"\n' "$T/ca/federation.pub" "$port"
        [ -z "$seed" ] || printf '  seeds:\n%s\n' "$seed"
        printf 'control: {endpoint: "ipc://%s/control.sock"}\nhttp: {listen: ""}\n' "$T/$n"
        printf 'kubernetes: {kubeconfig: %s, kind: k3s, progress_timeout_s: 5}\n' "$T/pki/kubeconfig"
    } >"$T/$n.yaml"
    kvc_start "$n"
    if [ -z "$seed" ]; then
        seed="    - {endpoint: \"$("$KVC" --config "$T/k1.yaml" status --json | jq -r .advertise)\", key: $("$KVC" --config "$T/k1.yaml" status --json | jq -r .public_key)}"
    fi
done
coordinator_of() { "$KVC" --config "$T/$1.yaml" sites --json | jq -r '.[] | select(.site == "site-a") | .coordinator' | sed 's#site-a/##'; }
settled() { # every peer follows one coordinator, and it acts
    local c
    c=$(coordinator_of k1)
    [ -n "$c" ] && [ "$(coordinator_of k2)" = "$c" ] && [ "$(coordinator_of k3)" = "$c" ] &&
        "$KVC" --config "$T/$c.yaml" status --json | jq -e '.election.can_act and .election.voters == 3'
}
poll 30 settled
"$KVC" keygen --out "$T/node.key" >/dev/null
C=$(coordinator_of k1)
EPC=$("$KVC" --config "$T/$C.yaml" status --json | jq -r .advertise)
PKC=$("$KVC" --config "$T/$C.yaml" status --json | jq -r .public_key)
"$KVC" join --site site-a --peer "$EPC" --peer-key "$PKC" --key "$T/node.key" --name bench-node \
    --kind k3s --print >/dev/null 2>&1 || true
"$KVC" --config "$T/$C.yaml" nodes approve bench-node >/dev/null
: >"$T/kvc.ms"
for r in $(seq "$ROUNDS"); do
    poll 30 settled
    C=$(coordinator_of k1)
    R=""
    for n in k1 k2 k3; do [ "$n" = "$C" ] || { R=$n; break; }; done
    EP=$("$KVC" --config "$T/$R.yaml" status --json | jq -r .advertise)
    PK=$("$KVC" --config "$T/$R.yaml" status --json | jq -r .public_key)
    kill -9 "$(eval echo "\$KPID_$C")"
    t0=$(now_ms)
    until "$KVC" join --site site-a --peer "$EP" --peer-key "$PK" --key "$T/node.key" --name bench-node \
        --kind k3s --print --timeout 300 >/dev/null 2>&1; do
        [ $(($(now_ms) - t0)) -lt 60000 ] || { echo "bench: no coordinator 60 s after the kill" >&2; diag >&2; exit 1; }
        sleep 0.01
    done
    echo $(($(now_ms) - t0)) >>"$T/kvc.ms"
    wait "$(eval echo "\$KPID_$C")" 2>/dev/null || true
    kvc_start "$C"
done
# join grant latency, straight to the coordinator
poll 30 settled
C=$(coordinator_of k1)
EPC=$("$KVC" --config "$T/$C.yaml" status --json | jq -r .advertise)
PKC=$("$KVC" --config "$T/$C.yaml" status --json | jq -r .public_key)
: >"$T/join.ms"
for i in $(seq "$JOINS"); do
    t0=$(date +%s%N)
    "$KVC" join --site site-a --peer "$EPC" --peer-key "$PKC" --key "$T/node.key" --name bench-node \
        --kind k3s --print >/dev/null 2>&1 || { echo "bench: join $i failed" >&2; exit 1; }
    echo $((($(date +%s%N) - t0) / 1000000)) >>"$T/join.ms"
done
INFO=$("$KVC" --config "$T/$C.yaml" info --json)

read -r e50 e99 emax <<<"$(stats "$T/etcd.ms")"
read -r k50 k99 kmax <<<"$(stats "$T/kvc.ms")"
read -r j50 j99 jmax <<<"$(stats "$T/join.ms")"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
echo "| failover after kill -9, $ROUNDS rounds each | p50 ms | p99 ms | max ms |"
echo "|---|---|---|---|"
echo "| etcd 3.4 (3 members, heartbeat 100 ms, election timeout 1000 ms): put accepted | $e50 | $e99 | $emax |"
echo "| kvc (3 voters, lan profile): new coordinator grants a join | $k50 | $k99 | $kmax |"
echo "| kvc / etcd | $(ratio "$k50" "$e50") | $(ratio "$k99" "$e99") | $(ratio "$kmax" "$emax") |"
echo
echo "| join grant, $JOINS joins to the coordinator | p50 ms | p99 ms |"
echo "|---|---|---|"
echo "| kvc join --print, wall time of the client process | $j50 | $j99 |"
echo "| coordinator: request to grant | $(jq -r .join.grant_ms_p50 <<<"$INFO") | $(jq -r .join.grant_ms_p99 <<<"$INFO") |"
echo "| coordinator: request to grant without the API call | $(jq -r .join.grant_ms_p50_without_api <<<"$INFO") | $(jq -r .join.grant_ms_p99_without_api <<<"$INFO") |"
