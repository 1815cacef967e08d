#!/bin/bash
# Three peers in three sites on loopback (port 0, CurveZMQ), one federation
# key. A fourth peer holding a credential from a different federation key,
# a legitimately signed but revoked peer, and an intruder sending forged
# messages all connect; nothing they send may be accepted, and every reject
# must be counted in `kvc status`. Then a peer stops cleanly (exit 0) and
# restarts on its port, and is welcomed back. In a network namespace of its
# own (netns.sh), where b's fixed port cannot be taken while b is down.
set -euo pipefail
. "$(dirname "$0")/netns.sh"
KVC=$1 KVC_PEER=$2 INTRUDER=$3
. "$(dirname "$0")/lib.sh"

"$KVC" ca init --out "$T/ca" >/dev/null
"$KVC" ca init --out "$T/evil" >/dev/null
for s in a b c; do
    "$KVC" cert issue --ca "$T/ca" --site "site-$s" --name p1 --roles gateway --out "$T/$s.id" >/dev/null
done
# claims A's member id, but signed by another federation key
"$KVC" cert issue --ca "$T/evil" --site site-a --name p1 --out "$T/x.id" >/dev/null
"$KVC" cert issue --ca "$T/ca" --site site-d --name rogue --out "$T/rogue.id" >/dev/null
ROGUE_KEY=$(sed -n 's/^public: *//p' "$T/rogue.id")
[ ${#ROGUE_KEY} = 64 ] || fail "cannot read the rogue identity's public key"
export REVOKED=$ROGUE_KEY

mkdir -p "$T/a" "$T/b" "$T/c" "$T/x" "$T/rogue"
write_config "$T/a.yaml" p1 site-a eu-west "$T/a" "$T/a.id" "$T/ca/federation.pub"
start_peer a "$T/a.yaml"
A_EP=$(jqs "$T/a.yaml" status .advertise)
A_KEY=$(jqs "$T/a.yaml" status .public_key)
write_config "$T/b.yaml" p1 site-b eu-north "$T/b" "$T/b.id" "$T/ca/federation.pub" "$A_EP" "$A_KEY"
sed -i "s#listen: tcp://127.0.0.1:0#listen: tcp://127.0.0.1:$KVC_FIXED_PORT#" "$T/b.yaml"
start_peer b "$T/b.yaml"
B_EP=$(jqs "$T/b.yaml" status .advertise)
B_KEY=$(jqs "$T/b.yaml" status .public_key)
write_config "$T/c.yaml" p1 site-c af-east "$T/c" "$T/c.id" "$T/ca/federation.pub" \
    "$A_EP" "$A_KEY" "$B_EP" "$B_KEY"
start_peer c "$T/c.yaml"
C_EP=$(jqs "$T/c.yaml" status .advertise)
C_KEY=$(jqs "$T/c.yaml" status .public_key)

for p in a b c; do
    poll 20 "$p connected to both others" expect_jq "$T/$p.yaml" status '.peers_connected == 2'
done
expect_jq "$T/a.yaml" peers "[.[].member] | sort == [\"site-b/p1\",\"site-c/p1\"]" ||
    fail "a's peers are not exactly b and c"
expect_jq "$T/b.yaml" peers "[.[] | select(.member == \"site-a/p1\") | .public_key] == [\"$A_KEY\"]" ||
    fail "b does not see a with a's key"
expect_jq "$T/c.yaml" peers '[.[] | .up] == [true, true]' || fail "c's links are not up"

# The foreign peer and the revoked peer seed every legitimate peer.
unset REVOKED
write_config "$T/x.yaml" p1 site-a eu-west "$T/x" "$T/x.id" "$T/evil/federation.pub" \
    "$A_EP" "$A_KEY" "$B_EP" "$B_KEY" "$C_EP" "$C_KEY"
start_peer x "$T/x.yaml"
write_config "$T/rogue.yaml" rogue site-d us-east "$T/rogue" "$T/rogue.id" "$T/ca/federation.pub" \
    "$A_EP" "$A_KEY" "$B_EP" "$B_KEY" "$C_EP" "$C_KEY"
start_peer rogue "$T/rogue.yaml"

# Forged messages against each peer, claiming to be another member.
"$INTRUDER" "$A_EP" "$A_KEY" "$T/x.id" "$T/b.id" >/dev/null || fail "intruder against a"
"$INTRUDER" "$B_EP" "$B_KEY" "$T/x.id" "$T/c.id" >/dev/null || fail "intruder against b"
"$INTRUDER" "$C_EP" "$C_KEY" "$T/x.id" "$T/a.id" >/dev/null || fail "intruder against c"

for p in a b c; do
    poll 20 "$p counted every kind of reject" expect_jq "$T/$p.yaml" status \
        '.auth_rejects_by_reason | (.foreign_federation >= 2 and .no_credential >= 1 and
         .key_mismatch >= 1 and .bad_credential >= 1 and .malformed >= 1 and .version >= 1 and
         .revoked >= 1)'
done
# nothing the outsiders sent was accepted: same two peers, same keys, all up
for p in a b c; do
    expect_jq "$T/$p.yaml" status '.peers_connected == 2 and .peers_known == 2' ||
        fail "$p accepted an outsider: $("$KVC" --config "$T/$p.yaml" status --json)"
    expect_jq "$T/$p.yaml" peers \
        "[.[].public_key] - [\"$A_KEY\",\"$B_KEY\",\"$C_KEY\"] == []" ||
        fail "$p lists a key that is not a, b or c"
    expect_jq "$T/$p.yaml" status '.auth_rejects > 0' || fail "$p shows no rejects"
done
# the outsiders were admitted by nobody
expect_jq "$T/x.yaml" status '.peers_known == 0' || fail "the foreign peer verified someone"
expect_jq "$T/rogue.yaml" status '.peers_known == 0 or .peers_connected == 0' ||
    fail "the revoked peer has a live link"

# Human output carries the same numbers.
"$KVC" --config "$T/a.yaml" status | grep -q '^auth rejects .*foreign_federation' ||
    fail "kvc status (table) does not show rejects by reason"
"$KVC" --config "$T/a.yaml" peers | grep -q '^site-b/p1 .* up ' || fail "kvc peers table"

# A clean stop exits 0 and removes the control socket; a restart is welcomed.
kill -TERM "$PID_b"
status=0
wait "$PID_b" || status=$?
[ "$status" = 0 ] || fail "kvc-peer exited $status on SIGTERM"
[ ! -e "$T/b/control.sock" ] || fail "control socket left behind"
poll 20 "a sees b down" expect_jq "$T/a.yaml" peers \
    '[.[] | select(.member == "site-b/p1") | .up] == [false]'
# back on the same port, as a real gateway restarts; it knows c only from its store
[ "$B_EP" = "tcp://127.0.0.1:$KVC_FIXED_PORT" ] || fail "b advertises $B_EP"
start_peer b "$T/b.yaml"
poll 20 "b reconnected to both" expect_jq "$T/b.yaml" status '.peers_connected == 2'
poll 20 "a sees b up again" expect_jq "$T/a.yaml" peers \
    '[.[] | select(.member == "site-b/p1") | .up] == [true]'
grep -q 'peer site-b/p1 restarted; welcome back' "$T/a.log" || fail "a did not welcome b back"

# The control socket is private.
[ "$(stat -c %a "$T/a/control.sock")" = 600 ] || fail "control socket is not 0600"
echo "test_federation: ok"
