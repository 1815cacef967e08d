#!/bin/bash
# Membership, kvc metrics and /federate agree on a member that died: when
# membership declares it dead, the metrics view already shows it down
# (kvc metrics, /federate kvc_site_up and kvc_peer_up), and no RTT is
# shown for it. Real peers on loopback, one kill -9.
set -euo pipefail
KVC=$1 KVC_PEER=$2
. "$(dirname "$0")/lib.sh"

"$KVC" ca init --out "$T/ca" >/dev/null
for s in a b c; do
    "$KVC" cert issue --ca "$T/ca" --site "site-$s" --name p1 --out "$T/$s.id" >/dev/null
    mkdir -p "$T/$s"
done
export HTTP_LISTEN=127.0.0.1:0
fast() { # timings that declare a crash dead in about 2 s
    sed -i 's#^  listen: tcp://127.0.0.1:0#  listen: tcp://127.0.0.1:0\n  timing:\n    probe_interval_ms: 300\n    probe_timeout_ms: 200\n    suspicion_mult: 2#' "$1"
}
write_config "$T/a.yaml" p1 site-a eu-west "$T/a" "$T/a.id" "$T/ca/federation.pub"
fast "$T/a.yaml"
start_peer a "$T/a.yaml"
A_EP=$(jqs "$T/a.yaml" status .advertise)
A_KEY=$(jqs "$T/a.yaml" status .public_key)
for s in b c; do
    write_config "$T/$s.yaml" p1 "site-$s" eu-north "$T/$s" "$T/$s.id" "$T/ca/federation.pub" "$A_EP" "$A_KEY"
    fast "$T/$s.yaml"
    start_peer "$s" "$T/$s.yaml"
done
HTTP_a=$(jqs "$T/a.yaml" status .http)
all_up() {
    expect_jq "$T/a.yaml" metrics '(length == 3) and all(.[]; .up)' &&
        curl -sf "http://$HTTP_a/federate" | grep -q '^kvc_site_up{site="site-c",region="eu-north"} 1$'
}
poll 30 "a sees three sites up in metrics and /federate" all_up

kill -9 "$PID_c"
t0=$(date +%s%N)
c_dead() { expect_jq "$T/a.yaml" members 'any(.[]; .id == "site-c/p1" and .state == "dead")'; }
poll 30 "a's membership declares site-c/p1 dead" c_dead
t_dead=$((($(date +%s%N) - t0) / 1000000))
# the moment membership says dead, the metrics views must say down
expect_jq "$T/a.yaml" metrics '[.[] | select(.site == "site-c") | .up] == [false]' ||
    fail "membership says site-c/p1 dead but kvc metrics shows site-c up"
curl -sf "http://$HTTP_a/federate" >"$T/fed.txt"
grep -q '^kvc_site_up{site="site-c",region="eu-north"} 0$' "$T/fed.txt" ||
    fail "membership says dead but /federate: $(grep 'kvc_site_up{site="site-c"' "$T/fed.txt")"
if grep '^kvc_peer_up{.*peer="site-c/p1".*} 1$' "$T/fed.txt"; then
    fail "/federate still has kvc_peer_up 1 for the dead peer"
fi
expect_jq "$T/a.yaml" members 'all(.[]; .id != "site-c/p1" or .rtt_ms == null)' ||
    fail "a dead member has an RTT"
"$KVC" --config "$T/a.yaml" rtt site-c/p1 2>"$T/err" && fail "kvc rtt to a dead member answered"
grep -q "is dead: no round trip" "$T/err" || fail "message: $(cat "$T/err")"
# the survivors stay up
expect_jq "$T/a.yaml" metrics '[.[] | select(.site != "site-c") | .up] == [true, true]' ||
    fail "the live sites are not up"
echo "test_freshness: ok (dead after ${t_dead} ms; metrics and /federate down at that moment)"
