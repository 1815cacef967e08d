#!/bin/bash
# Site coordinator election with real peers on loopback: site-a has three
# voters (e1..e3) and a peer without the voter role (n1); site-b one voter.
# Exactly one coordinator per site, the same one seen from every peer (and
# from the non-voter, through gossip); kill -9 of site-a's coordinator gives
# a new one at a higher term; the killed peer restarts with its term from
# LMDB and does not depose the new coordinator; a voter that leaves shrinks
# the voter set.
set -euo pipefail
KVC=$1 KVC_PEER=$2
. "$(dirname "$0")/lib.sh"

"$KVC" ca init --out "$T/ca" >/dev/null
for p in e1:site-a:gateway,voter e2:site-a:gateway,voter e3:site-a:gateway,voter \
         n1:site-a:gateway b1:site-b:gateway,voter; do
    IFS=: read -r n s r <<<"$p"
    "$KVC" cert issue --ca "$T/ca" --site "$s" --name "$n" --roles "$r" --out "$T/$n.id" >/dev/null
    mkdir -p "$T/$n"
done
cfg() { # NAME SITE [SEED_EP SEED_KEY]
    local n=$1 s=$2
    shift 2
    write_config "$T/$n.yaml" "$n" "$s" "region-${s#site-}" "$T/$n" "$T/$n.id" \
        "$T/ca/federation.pub" "$@"
}
cfg e1 site-a
start_peer e1 "$T/e1.yaml"
SEED_EP=$(jqs "$T/e1.yaml" status .advertise)
SEED_KEY=$(jqs "$T/e1.yaml" status .public_key)
for p in e2:site-a e3:site-a n1:site-a b1:site-b; do
    cfg "${p%%:*}" "${p##*:}" "$SEED_EP" "$SEED_KEY"
    start_peer "${p%%:*}" "$T/${p%%:*}.yaml"
done
ALL="e1 e2 e3 n1 b1"

# CONFIG SITE: prints the coordinator `kvc sites` shows for SITE
coordinator_of() {
    jqs "$1" sites ".[] | select(.site == \"$2\") | .coordinator"
}
# every peer names the same, non-empty coordinator of site-a, and b1 for site-b
agreed() {
    local want="" c
    for n in $ALL; do
        c=$(coordinator_of "$T/$n.yaml" site-a)
        [ -n "$c" ] || return 1
        [ -z "$want" ] || [ "$c" = "$want" ] || return 1
        want=$c
        [ "$(coordinator_of "$T/$n.yaml" site-b)" = site-b/b1 ] || return 1
    done
}
poll 30 "every peer names one coordinator per site" agreed
LEADER=$(coordinator_of "$T/n1.yaml" site-a)
L=${LEADER#site-a/}
case "$L" in e1 | e2 | e3) ;; *) fail "site-a's coordinator $LEADER is not a voter" ;; esac
TERM1=$(jqs "$T/$L.yaml" status .election.term)
[ "$TERM1" -ge 1 ] || fail "coordinator term $TERM1"

# exactly one peer of site-a may act; the others follow it at its term
acting=0
for n in e1 e2 e3 n1; do
    st=$("$KVC" --config "$T/$n.yaml" status --json)
    if [ "$(jq -r .election.can_act <<<"$st")" = true ]; then
        acting=$((acting + 1))
        [ "$n" = "$L" ] || fail "$n acts as coordinator but gossip names $LEADER"
        [ "$(jq -r .election.lease_ms_left <<<"$st")" -gt 0 ] || fail "$n acts without a lease"
    fi
    [ "$n" = n1 ] && continue
    [ "$(jq -r .election.voters <<<"$st")" = 3 ] || fail "$n counts $(jq .election.voters <<<"$st") voters"
done
[ "$acting" = 1 ] || fail "$acting peers of site-a act as coordinator"
expect_jq "$T/n1.yaml" status '.election.voter == false and .election.state == "follower"' ||
    fail "the non-voter n1 takes part in the election"
expect_jq "$T/b1.yaml" status '.election.can_act and .election.voters == 1' ||
    fail "a one-voter site did not elect itself"
expect_jq "$T/n1.yaml" members '[.[] | select(.id == "site-a/n1") | .voter] == [false]' ||
    fail "kvc members shows n1 as a voter"
grep -q "election: this peer is the coordinator of site site-a (term $TERM1" "$T/$L.log" ||
    fail "the coordinator did not log its election"
"$KVC" --config "$T/n1.yaml" sites | grep -q "^site-a .*$LEADER" || fail "kvc sites table lacks the coordinator"

# kill -9 the coordinator: another voter takes over at a higher term
kill -9 "$(eval echo "\$PID_$L")"
wait "$(eval echo "\$PID_$L")" 2>/dev/null || true
SURV=""
for n in e1 e2 e3; do [ "$n" = "$L" ] || SURV="$SURV $n"; done
new_leader() {
    for n in $SURV; do
        expect_jq "$T/$n.yaml" status ".election.can_act and .election.term > $TERM1" && return 0
    done
    return 1
}
poll 20 "a surviving voter becomes coordinator after kill -9 of $LEADER" new_leader
NEW=""
for n in $SURV; do
    if expect_jq "$T/$n.yaml" status .election.can_act; then NEW=$n; fi
done
TERM2=$(jqs "$T/$NEW.yaml" status .election.term)
follows() { [ "$(coordinator_of "$T/n1.yaml" site-a)" = "site-a/$NEW" ]; }
poll 20 "the non-voter learns the new coordinator site-a/$NEW" follows

# the killed peer restarts: its term comes from the store, and it rejoins
# as a follower without deposing the new coordinator
start_peer "$L" "$T/$L.yaml"
RESTORED=$(jqs "$T/$L.yaml" status .election.term)
[ "$RESTORED" -ge "$TERM1" ] || fail "restarted $L has term $RESTORED, had $TERM1 before the kill"
grep -q "election: restored term" "$T/$L.log" || fail "$L did not log its restored term"
back() {
    expect_jq "$T/$L.yaml" status ".election.state == \"follower\" and .election.coordinator == \"site-a/$NEW\""
}
poll 20 "restarted $L follows site-a/$NEW" back
expect_jq "$T/$NEW.yaml" status ".election.can_act and .election.term == $TERM2" ||
    fail "the restarted voter deposed the coordinator: $("$KVC" --config "$T/$NEW.yaml" status --json | jq -c .election)"

# a voter that leaves is no longer counted
OTHER=""
for n in $SURV; do [ "$n" = "$NEW" ] || OTHER=$n; done
"$KVC" --config "$T/$OTHER.yaml" leave >/dev/null
wait "$(eval echo "\$PID_$OTHER")" 2>/dev/null || true
shrunk() { expect_jq "$T/$NEW.yaml" status '.election.voters == 2'; }
poll 20 "the coordinator counts 2 voters after $OTHER left" shrunk
expect_jq "$T/$NEW.yaml" status .election.can_act || fail "coordinator lost its lease with 2 of 2 voters up"
# one coordinator per term over the whole run, bootstrap included: a peer
# that starts with seeds holds its election until it knows the site's voters
dup=$(cat "$T"/e?.log | sed -n 's/.*this peer is the coordinator of site site-a (term \([0-9]*\),.*/\1/p' |
    sort | uniq -d)
[ -z "$dup" ] || fail "two coordinators of site-a in term(s) $dup"
grep -q "voter(s) of site site-a known; elections may start" "$T/e2.log" ||
    fail "e2 (started with a seed) did not hold its election until it knew the voters"
echo "test_election: ok (terms $TERM1 -> $TERM2, coordinator $LEADER -> site-a/$NEW)"
