#!/bin/bash
# make run's demo (ops/run-demo.sh), as a newcomer uses it: it comes up,
# every HTTP port it prints answers, a kill -9 of one peer does not tear it
# down (the peer is restarted and rejoins), and Ctrl-C stops everything.
# The demo's ports are fixed by design, so it runs in its own network
# namespace, where they cannot collide with anything else on the machine.
set -euo pipefail
KVC=$1 KVC_PEER=$2
. "$(dirname "$0")/lib.sh"
SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$(dirname "$KVC")
[ "$(dirname "$KVC_PEER")" = "$BUILD" ] || fail "kvc and kvc-peer must be in one build folder"

NS=kvc-demo-$$
ip netns add "$NS"
ip netns exec "$NS" ip link set lo up
DEMO_PID=""
demo_cleanup() {
    if [ -n "$DEMO_PID" ]; then kill -TERM "$DEMO_PID" 2>/dev/null || true; wait "$DEMO_PID" 2>/dev/null || true; fi
    ip netns pids "$NS" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "$NS" 2>/dev/null || true
    cleanup
}
trap demo_cleanup EXIT
in_ns() { ip netns exec "$NS" "$@"; }

cd "$SRC"
KVC_DEMO_DIR="$T/demo" ip netns exec "$NS" ./ops/run-demo.sh "$BUILD" >"$T/demo.out" 2>"$T/demo.err" &
DEMO_PID=$!
up_or_gone() { # the demo is up, or it has exited (then fail below, with its reason)
    grep -q "kvc federation is running" "$T/demo.out" || ! kill -0 "$DEMO_PID" 2>/dev/null
}
poll 120 "the demo says it is running" up_or_gone
grep -q "kvc federation is running" "$T/demo.out" ||
    fail "the demo exited before it was up: $(cat "$T/demo.err"); its last output: $(tail -n 5 "$T/demo.out")"
for s in lisbon oslo nairobi; do
    grep -q "^$s  bert :predict  -> {\"predictions\"" "$T/demo.out" ||
        fail "$s's sample request: $(grep "^$s " "$T/demo.out")"
done
line=$(grep -o 'lisbon :[0-9]*, oslo :[0-9]*, nairobi :[0-9]*' "$T/demo.out") ||
    fail "the demo does not print its HTTP ports"
ports=$(echo "$line" | grep -o ':[0-9]*' | tr -d :)
[ "$(echo "$ports" | wc -w)" = 3 ] || fail "the demo prints HTTP ports '$ports', not 3"
OSLO_HTTP=$(echo "$ports" | sed -n 2p)
for p in $ports; do
    in_ns curl -sf -o /dev/null "127.0.0.1:$p/metrics" || fail "printed HTTP port $p does not answer"
done

cfg=$T/demo/oslo/kvc-peer.yaml
old=$(in_ns pgrep -f "kvc-peer --config $cfg")
[ -n "$old" ] || fail "no oslo peer process"
kill -9 "$old"
restarted() { grep -q "oslo's peer exited (137); restarting it" "$T/demo.err"; }
poll 20 "the demo restarts oslo" restarted
kill -0 "$DEMO_PID" || fail "the demo died with one peer"
back() {
    in_ns "$KVC" --config "$T/demo/lisbon/kvc-peer.yaml" --json members |
        jq -e 'any(.[]; .id == "oslo/gw-1" and .state == "alive")' >/dev/null &&
        in_ns curl -sf -o /dev/null "127.0.0.1:$OSLO_HTTP/metrics"
}
poll 30 "oslo is alive again in lisbon's view and serves HTTP" back
new=$(in_ns pgrep -f "kvc-peer --config $cfg")
[ -n "$new" ] && [ "$new" != "$old" ] || fail "oslo's peer was not replaced ($old -> $new)"

# Ctrl-C: a background job of a script ignores SIGINT, so send what the
# demo traps alike, TERM
kill -TERM "$DEMO_PID"
rc=0
wait "$DEMO_PID" || rc=$?
DEMO_PID=""
[ "$rc" = 0 ] || fail "the demo exited $rc when stopped"
grep -q "^stopped" "$T/demo.out" || fail "the demo did not say it stopped"
left=$(ip netns pids "$NS" | wc -l)
[ "$left" = 0 ] || fail "$left processes left after the demo stopped"
echo "test_run_demo: ok (oslo restarted as $new after kill -9 of $old)"
