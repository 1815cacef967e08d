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
one_line_fail 1 "$KVC" --control tcp://127.0.0.1:9 --timeout 300 status
grep -q "^kvc: no answer from the peer" "$T/err" || fail "message: $(cat "$T/err")"
env -u KVC_CONTROL "$KVC" status >/dev/null 2>"$T/err" && fail "status without a peer succeeded"
grep -q "^kvc: no peer to talk to" "$T/err" || fail "message: $(cat "$T/err")"
one_line_fail 2 "$KVC" frobnicate
one_line_fail 2 "$KVC" --timeout abc status
"$KVC" --help | grep -q '^usage: kvc' || fail "kvc --help"
"$KVC" status --help | grep -q '^usage: kvc status' || fail "kvc status --help"

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
echo "test_cli: ok"
