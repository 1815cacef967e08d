#!/bin/bash
# The CLI's failure contract: one line on stderr and a non-zero exit; and the
# daemon's config contract: --check exits 0 or 2 with FILE:LINE:COL.
set -euo pipefail
KVC=$1 KVC_PEER=$2
. "$(dirname "$0")/lib.sh"

one_line_fail() { # EXPECTED_EXIT CMD...: fails with that code and one stderr line
    local want=$1
    shift
    local rc=0
    "$@" >"$T/out" 2>"$T/err" || rc=$?
    [ "$rc" = "$want" ] || fail "'$*' exited $rc, expected $want"
    [ "$(wc -l <"$T/err")" = 1 ] || fail "'$*' printed $(wc -l <"$T/err") lines on stderr"
    [ ! -s "$T/out" ] || fail "'$*' printed on stdout"
}

one_line_fail 1 "$KVC" --control "ipc://$T/nobody.sock" status
grep -q "^kvc: no peer is running at ipc://$T/nobody.sock" "$T/err" || fail "message: $(cat "$T/err")"
# TCP control endpoints: a port whose socket is bound but not listening
# refuses at once; a listener that never speaks ZMTP times out. Both
# sockets are held by one helper for the whole test (no port is released).
coproc PORTS { /usr/bin/python3 -c '
import socket, sys
r = socket.socket(); r.bind(("127.0.0.1", 0))
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(8)
print(r.getsockname()[1], s.getsockname()[1], flush=True)
sys.stdin.read()'; }
read -r REFUSED SILENT <&"${PORTS[0]}"
t0=$(date +%s%N)
one_line_fail 1 "$KVC" --control "tcp://127.0.0.1:$REFUSED" --timeout 5000 status
t1=$(date +%s%N)
grep -q "^kvc: cannot reach the peer at tcp://127.0.0.1:$REFUSED: Connection refused$" "$T/err" ||
    fail "message: $(cat "$T/err")"
[ $(((t1 - t0) / 1000000)) -lt 2500 ] || fail "a refused TCP endpoint took $(((t1 - t0) / 1000000)) ms of a 5000 ms timeout"
one_line_fail 1 "$KVC" --control "tcp://127.0.0.1:$SILENT" --timeout 300 status
grep -q "^kvc: no answer from the peer at tcp://127.0.0.1:$SILENT within 300 ms$" "$T/err" ||
    fail "message: $(cat "$T/err")"
one_line_fail 1 "$KVC" --control "tcp://no-such-host.invalid:7946" --timeout 300 status
grep -q "^kvc: cannot reach the peer at tcp://no-such-host.invalid:7946: " "$T/err" ||
    fail "message: $(cat "$T/err")"
env -u KVC_CONTROL "$KVC" status >/dev/null 2>"$T/err" && fail "status without a peer succeeded"
grep -q "^kvc: no peer to talk to" "$T/err" || fail "message: $(cat "$T/err")"
one_line_fail 2 "$KVC" frobnicate
one_line_fail 2 "$KVC" --timeout abc status
"$KVC" --help | grep -q '^usage: kvc' || fail "kvc --help"
"$KVC" status --help | grep -q '^usage: kvc status' || fail "kvc status --help"
# --help lists every command, and every listed command has its own help
for c in status peers members sites metrics monitor rtt info leave force-leave version help \
    "ca init" "cert issue" "cert show" keygen; do
    "$KVC" --help | grep -q "^  $c\b" || fail "kvc --help does not list '$c'"
done
for c in status peers members sites metrics monitor rtt info leave force-leave version; do
    "$KVC" "$c" --help | grep -q "^usage: kvc $c" || fail "kvc $c --help"
done
want_version=$(sed -n 's/^project(kvc VERSION \([0-9.]*\).*/\1/p' "$(dirname "$0")/../../CMakeLists.txt")
[ -n "$want_version" ] || fail "no project VERSION in CMakeLists.txt"
[ "$("$KVC" --version)" = "kvc $want_version" ] || fail "kvc --version: $("$KVC" --version)"
[ "$("$KVC" --json version | jq -r .version)" = "$want_version" ] || fail "kvc --json version"
# usage errors exit 2 with one line, before any peer is asked
one_line_fail 2 "$KVC" --control "ipc://$T/nobody.sock" sites --site a
grep -q "^kvc: sites takes no --site" "$T/err" || fail "message: $(cat "$T/err")"
one_line_fail 2 "$KVC" --control "ipc://$T/nobody.sock" members --site Bad_Site
grep -q "^kvc: --site: 'Bad_Site' is not a site name" "$T/err" || fail "message: $(cat "$T/err")"
one_line_fail 2 "$KVC" --control "ipc://$T/nobody.sock" members --status sleepy
one_line_fail 2 "$KVC" --control "ipc://$T/nobody.sock" rtt
one_line_fail 2 "$KVC" --control "ipc://$T/nobody.sock" rtt a/b c/d e/f
one_line_fail 2 "$KVC" --control "ipc://$T/nobody.sock" force-leave
one_line_fail 2 "$KVC" --control "ipc://$T/nobody.sock" monitor --count 0
one_line_fail 2 "$KVC" --control "ipc://$T/nobody.sock" status --status alive

printf 'peer:\n  name: p1\n  site: a\n  colour: blue\n' >"$T/bad.yaml"
one_line_fail 2 "$KVC_PEER" --config "$T/bad.yaml" --check
grep -q "^$T/bad.yaml:4:3: peer.colour: unknown key$" "$T/err" || fail "message: $(cat "$T/err")"
one_line_fail 2 "$KVC_PEER" --config "$T/bad.yaml"

"$KVC" ca init --out "$T/ca" >/dev/null
"$KVC" cert issue --ca "$T/ca" --site a --name p1 --out "$T/p1.id" >/dev/null
printf 'peer:\n  name: p1\n  site: a\n  data_dir: %s\n  credential: %s\nfederation:\n  trust: %s\n  listen: tcp://127.0.0.1:0\n' \
    "$T/d" "$T/p1.id" "$T/ca/federation.pub" >"$T/good.yaml"
"$KVC_PEER" --config "$T/good.yaml" --check 2>/dev/null || fail "valid config rejected"
# a credential for another member id is refused at start
printf 'peer:\n  name: p2\n  site: a\n  data_dir: %s\n  credential: %s\nfederation:\n  trust: %s\n  listen: tcp://127.0.0.1:0\n' \
    "$T/d" "$T/p1.id" "$T/ca/federation.pub" >"$T/wrong.yaml"
rc=0
"$KVC_PEER" --config "$T/wrong.yaml" 2>"$T/err" || rc=$?
[ "$rc" != 0 ] || fail "peer started with another member's credential"
grep -q "credential is for a/p1 but peer.site/name is a/p2" "$T/err" || fail "message: $(cat "$T/err")"

# --- against running peers ----------------------------------------------
"$KVC" --json ca init --out "$T/ca2" | jq -e '.public_key | length == 64' >/dev/null ||
    fail "kvc --json ca init is not JSON"
for n in p1 p2; do
    "$KVC" --json cert issue --ca "$T/ca2" --site a --name "$n" --out "$T/$n.id2" >"$T/issue.json"
    jq -e '.roles == ["gateway","voter"]' "$T/issue.json" >/dev/null ||
        fail "cert issue without --roles: $(cat "$T/issue.json"), not the config default [gateway,voter]"
    mkdir -p "$T/$n"
done
"$KVC" --json cert show "$T/p1.id2" | jq -e '.member == "a/p1"' >/dev/null ||
    fail "kvc --json cert show ignored --json"
write_config "$T/p1.yaml" p1 a eu "$T/p1" "$T/p1.id2" "$T/ca2/federation.pub"
sed -i 's#^  listen: tcp://127.0.0.1:0#  listen: tcp://127.0.0.1:0\n  timing:\n    probe_interval_ms: 200\n    probe_timeout_ms: 150\n    suspicion_mult: 1#' "$T/p1.yaml"
start_peer p1 "$T/p1.yaml"
seed=$(jqs "$T/p1.yaml" status .seed)
key=$(jqs "$T/p1.yaml" status .public_key)
ep=$(jqs "$T/p1.yaml" status .advertise)
[ "$seed" = "$key@$ep" ] || fail "status seed '$seed' is not KEY@ADVERTISE"
"$KVC" --config "$T/p1.yaml" status | grep -qF "  - $seed" || fail "kvc status does not print the seed to paste"
write_config "$T/p2.yaml" p2 a eu "$T/p2" "$T/p2.id2" "$T/ca2/federation.pub" "$ep" "$key"
sed -i 's#^  listen: tcp://127.0.0.1:0#  listen: tcp://127.0.0.1:0\n  timing:\n    probe_interval_ms: 200\n    probe_timeout_ms: 150\n    suspicion_mult: 1#' "$T/p2.yaml"
# kvc monitor, started before p2 joins, sees it join. --since 0: p1 is fresh
# and alone, so it holds no event yet, and from 0 the monitor cannot miss the
# join however late its first call lands (without --since it streams from
# its first reply, which a fast join can beat).
"$KVC" --config "$T/p1.yaml" --json monitor --since 0 --count 1 >"$T/monitor1" &
MON=$!
KVC_PIDS="$KVC_PIDS $MON"
start_peer p2 "$T/p2.yaml"
poll 20 "p1 sees p2 alive" expect_jq "$T/p1.yaml" members 'any(.[]; .id == "a/p2" and .state == "alive")'
wait "$MON" || fail "kvc monitor --count 1 failed"
jq -e 'select(.id == "a/p2" and .type == "joined") | .seq > 0' "$T/monitor1" >/dev/null ||
    fail "monitor did not report a/p2 joined: $(cat "$T/monitor1")"
"$KVC" --config "$T/p1.yaml" --json monitor --since 0 --count 1 | jq -e '.seq == 1' >/dev/null ||
    fail "monitor --since 0 does not replay from the first event"
# a "since" past the peer's last event means the peer restarted: say so, start again
"$KVC" --config "$T/p1.yaml" --json monitor --since 1000000 --count 1 >"$T/monitor2"
[ "$(head -1 "$T/monitor2")" = '{"restarted":true}' ] && [ "$(sed -n 2p "$T/monitor2" | jq .seq)" = 1 ] ||
    fail "monitor after a restart: $(cat "$T/monitor2")"
# --site: a known site filters, an unknown one fails
expect_jq "$T/p1.yaml" members 'length == 2 and all(.[]; (.roles | type) == "array")' ||
    fail "members --json roles are not an array"
[ "$("$KVC" --config "$T/p1.yaml" --json members --site a | jq length)" = 2 ] || fail "members --site a"
one_line_fail 1 "$KVC" --config "$T/p1.yaml" members --site nowhere
grep -q "^kvc: no such site: nowhere" "$T/err" || fail "message: $(cat "$T/err")"
one_line_fail 1 "$KVC" --config "$T/p1.yaml" metrics --site nowhere
one_line_fail 1 "$KVC" --config "$T/p1.yaml" peers --site nowhere
# rtt from coordinates, info by section
poll 20 "p1 has an rtt estimate to p2" "$KVC" --config "$T/p1.yaml" rtt a/p2
"$KVC" --config "$T/p1.yaml" --json rtt a/p2 a/p1 | jq -e '.rtt_ms >= 0 and .a == "a/p2"' >/dev/null ||
    fail "rtt --json: $("$KVC" --config "$T/p1.yaml" --json rtt a/p2 a/p1)"
one_line_fail 1 "$KVC" --config "$T/p1.yaml" rtt a/nobody
grep -q "^kvc: no such member: a/nobody" "$T/err" || fail "message: $(cat "$T/err")"
"$KVC" --config "$T/p1.yaml" --json info | jq -e '.agent.name == "a/p1" and (.membership.alive | tonumber) == 2' >/dev/null ||
    fail "info --json: $("$KVC" --config "$T/p1.yaml" --json info)"
"$KVC" --config "$T/p1.yaml" info | grep -q "^membership:" || fail "info has no membership section"
# force-leave refuses an alive member, takes a dead one
one_line_fail 1 "$KVC" --config "$T/p1.yaml" force-leave a/p2
grep -q "is alive" "$T/err" || fail "message: $(cat "$T/err")"
kill -9 "$PID_p2"
poll 20 "p1 sees p2 dead" expect_jq "$T/p1.yaml" members 'any(.[]; .id == "a/p2" and .state == "dead")'
[ "$("$KVC" --config "$T/p1.yaml" --json members --status dead | jq -r '.[].id')" = a/p2 ] ||
    fail "members --status dead"
[ "$("$KVC" --config "$T/p1.yaml" --json members --status alive | jq -r '.[].id')" = a/p1 ] ||
    fail "members --status alive"
expect_jq "$T/p1.yaml" members 'all(.[]; .id != "a/p2" or .rtt_ms == null)' || fail "a dead member has an rtt"
"$KVC" --config "$T/p1.yaml" --json force-leave a/p2 | jq -e '.state == "left"' >/dev/null || fail "force-leave"
expect_jq "$T/p1.yaml" members 'any(.[]; .id == "a/p2" and .state == "left")' || fail "p2 not left after force-leave"
# leave: the peer says goodbye and stops; kvc waits for it
"$KVC" --config "$T/p1.yaml" --json leave | jq -e '.member == "a/p1" and .state == "left"' >/dev/null ||
    fail "kvc leave"
rc=0
wait "$PID_p1" || rc=$?
[ "$rc" = 0 ] || fail "p1 exited $rc after kvc leave"
grep -q "leave requested" "$T/p1.log" || fail "p1 did not log the leave"
one_line_fail 1 "$KVC" --config "$T/p1.yaml" status
echo "test_cli: ok"
