#!/bin/bash
# Five peers in three sites on loopback. kill -9 one: every other peer must
# mark it dead (polling with a deadline). Restart it on the same endpoint: it
# must be alive again everywhere, at a higher incarnation than before. Then a
# clean stop (SIGTERM) must show up as "left", not "dead". In a network
# namespace of its own (netns.sh), where b2's fixed port cannot be taken
# while b2 is down.
set -euo pipefail
. "$(dirname "$0")/netns.sh"
KVC=$1 KVC_PEER=$2
. "$(dirname "$0")/lib.sh"

"$KVC" ca init --out "$T/ca" >/dev/null
PEERS="a1:site-a a2:site-a b1:site-b b2:site-b c1:site-c"
for p in $PEERS; do
    n=${p%%:*} s=${p##*:}
    "$KVC" cert issue --ca "$T/ca" --site "$s" --name "$n" --out "$T/$n.id" >/dev/null
    mkdir -p "$T/$n"
done
cfg() { # NAME SITE [SEED_EP SEED_KEY]
    local n=$1 s=$2
    shift 2
    write_config "$T/$n.yaml" "$n" "$s" "region-${s#site-}" "$T/$n" "$T/$n.id" \
        "$T/ca/federation.pub" "$@"
    # fast timing so the test is quick; the profiles are measured by kvc-sim
    sed -i "s#^  listen: tcp://127.0.0.1:0#  listen: tcp://127.0.0.1:0\n  timing:\n    probe_interval_ms: 200\n    probe_timeout_ms: 80\n    gossip_interval_ms: 20\n    suspicion_mult: 1\n    pushpull_interval_ms: 2000#" "$T/$n.yaml"
}
cfg a1 site-a
start_peer a1 "$T/a1.yaml"
SEED_EP=$(jqs "$T/a1.yaml" status .advertise)
SEED_KEY=$(jqs "$T/a1.yaml" status .public_key)
for p in a2:site-a b1:site-b b2:site-b c1:site-c; do
    n=${p%%:*} s=${p##*:}
    cfg "$n" "$s" "$SEED_EP" "$SEED_KEY"
    if [ "$n" = b2 ]; then # the one that restarts on its port
        sed -i "s#^  listen: tcp://127.0.0.1:0#  listen: tcp://127.0.0.1:$KVC_FIXED_PORT#" "$T/b2.yaml"
    fi
    start_peer "$n" "$T/$n.yaml"
done

all_alive() { # CONFIG: five members, all alive
    expect_jq "$1" members '(length == 5) and all(.[]; .state == "alive")'
}
for p in $PEERS; do
    n=${p%%:*}
    poll 20 "$n sees 5 alive members" all_alive "$T/$n.yaml"
done
expect_jq "$T/a1.yaml" sites '[.[] | "\(.site):\(.alive)"] == ["site-a:2","site-b:2","site-c:1"]' ||
    fail "kvc sites: $("$KVC" --config "$T/a1.yaml" sites --json)"
INC_BEFORE=$(jqs "$T/a1.yaml" members '.[] | select(.id == "site-b/b2") | .incarnation')
B2_EP=$(jqs "$T/b2.yaml" status .advertise)

kill -9 "$PID_b2"
wait "$PID_b2" 2>/dev/null || true
t0=$(date +%s%N)
state_of() { # CONFIG ID WANT
    expect_jq "$1" members "[.[] | select(.id == \"$2\") | .state] == [\"$3\"]"
}
for n in a1 a2 b1 c1; do
    poll 30 "$n marks site-b/b2 dead" state_of "$T/$n.yaml" site-b/b2 dead
done
echo "detected dead by all 4 in $((($(date +%s%N) - t0) / 1000000)) ms"
expect_jq "$T/a1.yaml" status '.members_by_state.dead == 1 and .members_by_state.alive == 4' ||
    fail "status member counts: $("$KVC" --config "$T/a1.yaml" status --json)"

# restart on the same endpoint, as a gateway would
[ "$B2_EP" = "tcp://127.0.0.1:$KVC_FIXED_PORT" ] || fail "b2 advertises $B2_EP"
start_peer b2 "$T/b2.yaml"
for n in a1 a2 b1 c1; do
    poll 30 "$n sees site-b/b2 alive again" state_of "$T/$n.yaml" site-b/b2 alive
done
for n in a1 a2 b1 c1; do
    inc=$(jqs "$T/$n.yaml" members '.[] | select(.id == "site-b/b2") | .incarnation')
    [ "$inc" -gt "$INC_BEFORE" ] || fail "$n: b2's incarnation $inc is not above $INC_BEFORE"
done

# a clean stop is a graceful leave
kill -TERM "$PID_c1"
wait "$PID_c1" || fail "c1 did not exit 0 on SIGTERM"
for n in a1 a2 b1 b2; do
    poll 20 "$n sees site-c/c1 left" state_of "$T/$n.yaml" site-c/c1 left
done
echo "test_membership: ok"
