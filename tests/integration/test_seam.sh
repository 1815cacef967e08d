#!/bin/bash
# The daemon's seam and its clocks, with real processes on loopback.
#  1. Upgrades one site at a time: two peers built with a protocol this
#     build lacks (kvc-peer-next: an extra core on envelope body kind 98)
#     join a federation of ordinary peers. The ordinary peers count and
#     ignore kind 98 (no reject, no malformed), the next peers hear each
#     other on it, and membership stays whole.
#  2. Wall-clock steps: one peer's wall clock (KVC_TEST_WALL_OFFSET_FILE,
#     peer/clock.h) jumps +1 h, then -1 h. Protocol time is monotonic, so no
#     member is ever suspected and its timers keep running.
set -euo pipefail
KVC=$1 KVC_PEER=$2 KVC_PEER_NEXT=$3
. "$(dirname "$0")/lib.sh"

"$KVC" ca init --out "$T/ca" >/dev/null
# Credentials valid from 2 h ago, so a peer whose clock steps back 1 h
# still finds them valid: the test is about timers, not validity.
echo -7200000 >"$T/minus2h"
for n in a b c n1 n2; do
    KVC_TEST_WALL_OFFSET_FILE="$T/minus2h" \
        "$KVC" cert issue --ca "$T/ca" --site site-x --name "$n" --out "$T/$n.id" >/dev/null
    mkdir -p "$T/$n"
done
cfg() { # NAME [SEED_EP SEED_KEY]
    local n=$1
    shift
    write_config "$T/$n.yaml" "$n" site-x eu "$T/$n" "$T/$n.id" "$T/ca/federation.pub" "$@"
    sed -i "s#^  listen: tcp://127.0.0.1:0#  listen: tcp://127.0.0.1:0\n  timing:\n    probe_interval_ms: 1000\n    probe_timeout_ms: 800\n    gossip_interval_ms: 20\n    suspicion_mult: 2\n    pushpull_interval_ms: 2000#" "$T/$n.yaml"
}
cfg a
start_peer a "$T/a.yaml"
SEED_EP=$(jqs "$T/a.yaml" status .advertise)
SEED_KEY=$(jqs "$T/a.yaml" status .public_key)
cfg b "$SEED_EP" "$SEED_KEY"
start_peer b "$T/b.yaml"
echo 0 >"$T/offset"
cfg c "$SEED_EP" "$SEED_KEY"
KVC_TEST_WALL_OFFSET_FILE="$T/offset" "$KVC_PEER" --config "$T/c.yaml" >>"$T/c.log" 2>&1 &
KVC_PIDS="$KVC_PIDS $!"
poll 20 "c answers" "$KVC" --config "$T/c.yaml" status

alive_n() { # CONFIG N: N members, all alive
    expect_jq "$1" members "(length == $2) and all(.[]; .state == \"alive\")"
}
for n in a b c; do poll 20 "$n sees 3 alive" alive_n "$T/$n.yaml" 3; done

# --- 1. a body kind this build does not know ----------------------------
for n in n1 n2; do
    cfg "$n" "$SEED_EP" "$SEED_KEY"
    "$KVC_PEER_NEXT" --config "$T/$n.yaml" >>"$T/$n.log" 2>&1 &
    KVC_PIDS="$KVC_PIDS $!"
    poll 20 "$n answers" "$KVC" --config "$T/$n.yaml" status
done
for n in a b c n1 n2; do poll 20 "$n sees 5 alive" alive_n "$T/$n.yaml" 5; done
info() { # CONFIG SECTION KEY
    "$KVC" --config "$1" info --json | jq -r ".\"$2\".\"$3\""
}
next_heard() { [ "$(info "$T/$1.yaml" next received)" -gt 0 ]; }
poll 20 "n1 hears n2 on kind 98" next_heard n1
poll 20 "n2 hears n1 on kind 98" next_heard n2
ignored() { [ "$(info "$T/a.yaml" transport unknown_kinds)" -gt 0 ]; }
poll 20 "a counts kind-98 messages as unknown" ignored
for n in a b c; do
    rej=$(jqs "$T/$n.yaml" status '.auth_rejects')
    [ "$rej" = 0 ] || fail "$n rejected $rej messages; kind 98 must be ignored, not refused"
done
[ "$(info "$T/a.yaml" next received)" = null ] || fail "an ordinary peer has the next core"
echo "unknown kind: a ignored $(info "$T/a.yaml" transport unknown_kinds), n1 heard $(info "$T/n1.yaml" next received)"

# --- 2. wall-clock steps on c -------------------------------------------
suspects() { # sum of suspect+dead members over every peer
    local s=0
    for n in a b c n1 n2; do
        s=$((s + $(jqs "$T/$n.yaml" status '.members_by_state.suspect + .members_by_state.dead')))
    done
    echo "$s"
}
step_and_watch() { # OFFSET_MS
    echo "$1" >"$T/offset"
    local out0 probes0
    out0=$(jqs "$T/c.yaml" status .msgs_out)
    probes0=$(info "$T/c.yaml" membership probes)
    # watch for 5 s of monotonic protocol time: 5 probe periods
    local end=$(($(date +%s%N) / 1000000 + 5000))
    while [ $(($(date +%s%N) / 1000000)) -lt "$end" ]; do
        [ "$(suspects)" = 0 ] || fail "a member became suspect/dead after a wall step of $1 ms"
    done
    local probes1
    probes1=$(info "$T/c.yaml" membership probes)
    [ "$probes1" -ge $((probes0 + 3)) ] || fail "c's probe timer froze: $probes0 -> $probes1 after step $1"
    [ "$(jqs "$T/c.yaml" status .msgs_out)" -gt "$out0" ] || fail "c sent nothing after step $1"
    echo "wall step $1 ms: c probed $((probes1 - probes0)) times in 5 s, no suspicion"
}
# only what is logged from the first step on counts (a loaded test machine
# may have delayed a probe while the federation formed)
for n in a b c n1 n2; do wc -l <"$T/$n.log" >"$T/$n.mark"; done
step_and_watch 3600000
step_and_watch -3600000
for n in a b c n1 n2; do alive_n "$T/$n.yaml" 5 || fail "$n lost members"; done
for n in a b c n1 n2; do
    if tail -n +$(($(cat "$T/$n.mark") + 1)) "$T/$n.log" | grep "is suspect\|is dead"; then
        fail "$n logged a suspicion after a wall-clock step"
    fi
done
echo "ok"
