#!/bin/bash
# Failover under a partial partition (issue 18): three sites a, b, c, one
# kvc-peer and one model server each, every site in a network namespace of
# its own, linked by veth pairs to a bridge in a fourth namespace (all four
# made by this test, unique names per run, deleted on exit). b is the
# better site for a (c's model server answers 30 ms slower, and a light
# load on b and c keeps both latency windows filled); then a<->b is cut
# (a "prohibit" route to b in a's namespace and to a in b's) while a still
# reaches c and c reaches b. Membership keeps b alive through c; once a's
# router excludes b as unreachable (a's probes of b acked only through c),
# a constant-rate client loads a's proxy
# and a's model server is killed (-9): every answer must be 200, those of
# the outage must all come from c, and a must never have tried b: no answer
# from b, no forward of a's failed, b served nothing forwarded, a's
# kvc_proxy_routed_requests_total for destination site-b stays still.
# Then the cut heals and b must be ranked again.
# Needs root (ip netns); without it the test fails, it does not skip.
set -euo pipefail
KVC=$1 KVC_PEER=$2
. "$(dirname "$0")/lib.sh"
SRC=$(cd "$(dirname "$0")/../.." && pwd)
PY=/usr/bin/python3
RC="$SRC/tests/integration/rate_client.py"
RATE=${KVC_FO_RATE:-100}
MODEL=bert
MS_PORT=10001 # a's model server, fixed in a's own namespace (below its ephemeral range)

RUN=kfo$$$RANDOM
RUN=${RUN:0:10}
NS_MADE=""
ns_cleanup() {
    local ns p
    for ns in $NS_MADE; do
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
    done
    for ns in $NS_MADE; do ip netns del "$ns" 2>/dev/null || true; done
}
trap 'cleanup; ns_cleanup' EXIT
[ "$(id -u)" = 0 ] || fail "needs root for ip netns (this test does not skip)"
command -v ip >/dev/null || fail "needs iproute2's ip"
BR=$RUN-br
ip netns add "$BR" || fail "ip netns add $BR failed"
NS_MADE="$BR"
ip -n "$BR" link set lo up
ip -n "$BR" link add br0 type bridge || fail "cannot make a bridge in $BR"
ip -n "$BR" link set br0 up
n=0
for s in a b c; do
    n=$((n + 1))
    ns=$RUN-$s
    ip netns add "$ns" || fail "ip netns add $ns failed"
    NS_MADE="$NS_MADE $ns"
    ip -n "$ns" link set lo up
    ip link add eth0 netns "$ns" type veth peer name "v$s" netns "$BR" || fail "cannot make a veth pair for $s"
    ip -n "$ns" addr add "10.77.0.$n/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$BR" link set "v$s" master br0
    ip -n "$BR" link set "v$s" up
    eval "NS_$s=$ns IP_$s=10.77.0.$n"
done
ip netns exec "$NS_a" sh -c 'echo "20000 60999" >/proc/sys/net/ipv4/ip_local_port_range' ||
    fail "cannot set a's ephemeral port range"
in_ns() { local s=$1; shift; ip netns exec "$(eval echo "\$NS_$s")" "$@"; }

now_ms() { echo $(($(date +%s%N) / 1000000)); }
# model_server SITE GRPC_PORT [ARGS]: in SITE's namespace, on its loopback
model_server() {
    local s=$1 port=$2
    shift 2
    rm -f "$T/ms_$s.json"
    # ip netns exec directly (not through in_ns, a function: $! would be a
    # subshell, and kill -9 of it would leave the server up until it saw
    # its parent gone): ip execs the server, so $! is the server's pid
    ip netns exec "$(eval echo "\$NS_$s")" env TMPDIR="$T" "$PY" "$SRC/tests/interop/model_server.py" \
        --grpc-port "$port" --rest-port 0 --port-file "$T/ms_$s.json" --exit-with-parent "$@" \
        >>"$T/ms_$s.log" 2>&1 &
    KVC_PIDS="$KVC_PIDS $!"
    eval "MSPID_$s=$!"
}
model_server a "$MS_PORT"
model_server b 0
model_server c 0 --delay-ms 30

"$KVC" ca init --out "$T/ca" >/dev/null
for s in a b c; do
    "$KVC" cert issue --ca "$T/ca" --site "site-$s" --name p1 --roles gateway --out "$T/$s.id" >/dev/null
    mkdir -p "$T/$s"
done
for s in a b c; do
    poll 60 "model server $s writes its port file" test -s "$T/ms_$s.json"
done

export HTTP_LISTEN=127.0.0.1:0
# site_config SITE REGION [SEED_EP SEED_KEY]: its model server as backend, the
# federation on the site's veth address
site_config() {
    local s=$1 r=$2
    shift 2
    BACKENDS_YAML="    - model: $MODEL
      grpc: \"127.0.0.1:$(jq -r .grpc "$T/ms_$s.json")\"
      api: tfserving" write_config "$T/$s.yaml" p1 "site-$s" "$r" "$T/$s" "$T/$s.id" "$T/ca/federation.pub" "$@"
    sed -i "s#listen: tcp://127.0.0.1:0#listen: tcp://$(eval echo "\$IP_$s"):0#" "$T/$s.yaml"
}
# start_ns_peer SITE: kvc-peer in SITE's namespace (ip netns exec execs it: same pid)
start_ns_peer() {
    in_ns "$1" "$KVC_PEER" --config "$T/$1.yaml" >>"$T/$1.log" 2>&1 &
    KVC_PIDS="$KVC_PIDS $!"
    poll 20 "$1 answers on its control socket" "$KVC" --config "$T/$1.yaml" status
}
site_config a eu-west
start_ns_peer a
A_EP=$(jqs "$T/a.yaml" status .advertise)
A_KEY=$(jqs "$T/a.yaml" status .public_key)
case $A_EP in tcp://$IP_a:*) ;; *) fail "a advertises $A_EP, not its veth address $IP_a" ;; esac
site_config b eu-north "$A_EP" "$A_KEY"
start_ns_peer b
site_config c af-east "$A_EP" "$A_KEY"
start_ns_peer c
for p in a b c; do
    poll 20 "$p connected to both others" expect_jq "$T/$p.yaml" status '.peers_connected == 2'
    eval "HTTP_$p=\$(jqs \"\$T/\$p.yaml\" status .http)"
done

ids=$(seq -s, 1 500)
echo "{\"instances\":[[$ids]]}" >"$T/body.json"
url() { echo "http://$(eval echo "\$HTTP_$1")/v1/models/$MODEL:predict"; }
# a light load straight at b and c keeps their latency windows filled
for s in b c; do
    in_ns "$s" "$PY" "$RC" --url "$(url "$s")" --rate 10 --stop-file "$T/stop" \
        --body-file "$T/body.json" --out "$T/warm_$s.jsonl" >"$T/warm_$s.log" 2>&1 &
    KVC_PIDS="$KVC_PIDS $!"
done
route_json() { "$KVC" --config "$T/a.yaml" route "$MODEL" --json; }
# a ranks itself, then b, then c
a_b_c() { route_json | jq -e '[.candidates[].site] == ["site-a","site-b","site-c"]'; }
poll 40 "a's router ranks site-a, site-b, site-c in that order" a_b_c
echo "before the partition: $(route_json | jq -c '[.candidates[] | {site, score_ms}]')"

# ---- the partition: a <-> b only ----------------------------------------
ip -n "$NS_a" route add prohibit "$IP_b/32" || fail "cannot add a prohibit route in a's namespace"
ip -n "$NS_b" route add prohibit "$IP_a/32" || fail "cannot add a prohibit route in b's namespace"
! ip -n "$NS_a" route get "$IP_b" >/dev/null 2>&1 || fail "a still has a route to b"
ip -n "$NS_a" route get "$IP_c" >/dev/null || fail "a lost its route to c"
ip -n "$NS_b" route get "$IP_c" >/dev/null || fail "b lost its route to c"
PART=$(now_ms)
# membership keeps b alive (c acks a's probes of b for it), but a's probes
# of b are acked only indirectly: a's own path to b is cut, b unreachable
b_excluded() {
    route_json | jq -e '[.excluded[] | select(.site == "site-b") | .reason] == ["unreachable"] and
        ([.candidates[].site] | index("site-b")) == null'
}
poll 40 "a's router excludes b as unreachable" b_excluded
echo "partition seen by a's router after $(($(now_ms) - PART)) ms: $(route_json | jq -c '{candidates: [.candidates[].site], excluded}')"

info() { "$KVC" --config "$T/$1.yaml" info --json | jq -r ".routing.$2"; }
# metric SITE DEST: kvc_proxy_routed_requests_total for DEST on SITE, any outcome
metric() {
    local text
    text=$(in_ns "$1" curl -sf "http://$(eval echo "\$HTTP_$1")/metrics") || return 1
    awk -v d="$2" -v m="$MODEL" '$1 ~ /^kvc_proxy_routed_requests_total\{/ && index($1, "model=\"" m "\"") &&
        index($1, "destination=\"" d "\"") { n += $2 } END { print n + 0 }' <<<"$text"
}
B_SERVED0=$(info b served)
A_FAILED0=$(info a forwards_failed)
A_SENT0=$(info a forwards_sent)
A_TO_B0=$(metric a site-b)

in_ns a "$PY" "$RC" --url "$(url a)" --rate "$RATE" --stop-file "$T/stop" --body-file "$T/body.json" \
    --t0-file "$T/t0" --out "$T/run.jsonl" >"$T/client.log" 2>&1 &
CLIENT=$!
KVC_PIDS="$KVC_PIDS $CLIENT"
poll 10 "the client starts" test -s "$T/t0"
T0=$(cut -d. -f1 "$T/t0")
answers() { # SINCE_MS [REGEX]
    awk -v t="$1" -v re="${2:-.}" '{ if (match($0, /"t_ms": [0-9.]+/)) { v = substr($0, RSTART + 8, RLENGTH - 8) + 0
        if (v >= t && $0 ~ re) n++ } } END { print n + 0 }' "$T/run.jsonl"
}
at_least() { [ "$(answers "$1" "${3:-.}")" -ge "$2" ]; }
poll 20 "1 s of answers before the kill" at_least 0 "$RATE"
KILL=$(($(now_ms) - T0)) # stamped before the signal: the outage starts after it
kill -9 "$MSPID_a"
wait "$MSPID_a" 2>/dev/null || true
poll 20 "an answer from c after the kill" at_least "$KILL" 1 '"served_by": "site-c"'
poll 30 "4 s of answers during the outage" at_least $((KILL + 4000)) 1
touch "$T/stop"
wait "$CLIENT" || fail "the client failed: $(cat "$T/client.log")"

END=$(($(now_ms) - T0 + 1000000))
$PY "$RC" failover "$T/run.jsonl" --home site-a --kill-ms "$KILL" --back-ms "$END" >"$T/fo.json"
f() { jq -r "$1" "$T/fo.json"; }
fc() { jq -c "$1" "$T/fo.json"; }
echo "partition failover at $RATE req/s: before p50 $(f .before.p50_ms) ms p99 $(f .before.p99_ms) ms;" \
    "during p50 $(f .during.p50_ms) ms p99 $(f .during.p99_ms) ms; fail over $(f .failover_ms) ms after the kill;" \
    "$(f .count) requests, $(f .non200) not 200; during: $(fc .during.served_by) $(fc .during.route)"
[ "$(f .non200)" = 0 ] || fail "$(f .non200) answers of $(f .count) were not 200: $(grep -v '"status": 200' "$T/run.jsonl" | head -n 5)"
$PY "$RC" summary "$T/run.jsonl" "0:$((KILL - 200))" | jq -c '.[]' >"$T/before.json"
jq -e '.count > 0 and .served_by == {"site-a": .count} and .route == {"local": .count}' "$T/before.json" >/dev/null ||
    fail "before the kill (but its last 200 ms) not all answers were local at site-a: $(cat "$T/before.json")"
$PY "$RC" summary "$T/run.jsonl" "$((KILL + 200)):$END" | jq -c '.[]' >"$T/during.json"
jq -e '.count > 0 and .served_by == {"site-c": .count}' "$T/during.json" >/dev/null ||
    fail "during the outage (from 200 ms after the kill) not every answer came from c: $(cat "$T/during.json")"
[ "$(f .during.count)" -ge $((RATE * 4)) ] || fail "only $(f .during.count) answers during the outage"
[ "$(answers 0 '"served_by": "site-b"')" = 0 ] || fail "b answered requests across the partition"
[ "$(info b served)" = "$B_SERVED0" ] || fail "b served $(($(info b served) - B_SERVED0)) forwarded requests"
[ "$(info a forwards_failed)" = "$A_FAILED0" ] ||
    fail "a's forwards failed $(($(info a forwards_failed) - A_FAILED0)) times: it tried b"
[ "$(metric a site-b)" = "$A_TO_B0" ] ||
    fail "a's routed requests to site-b moved from $A_TO_B0 to $(metric a site-b)"
sent=$(($(info a forwards_sent) - A_SENT0))
from_c=$(answers 0 '"served_by": "site-c"')
[ "$sent" -ge "$from_c" ] || fail "a sent $sent forwards for $from_c answers from c"
echo "a sent $sent forwards during the run, $(($(info a forwards_failed) - A_FAILED0)) failed; b served none"

# ---- healed: a's next direct probe of b is acked, b is a candidate again --
ip -n "$NS_a" route del prohibit "$IP_b/32"
ip -n "$NS_b" route del prohibit "$IP_a/32"
HEAL=$(now_ms)
b_back() { route_json | jq -e '([.candidates[].site] | index("site-b")) != null and ([.excluded[].site] | index("site-b")) == null'; }
poll 40 "a's router ranks b again after the heal" b_back
echo "healed: b back in a's candidates after $(($(now_ms) - HEAL)) ms: $(route_json | jq -c '[.candidates[].site]')"
echo "test_failover_partition: ok"
