#!/bin/bash
# The join-token broker end to end, with real processes: three voters of
# site-a on loopback, the Kubernetes API stand-in (tests/kube, a test double
# for kube-apiserver) with bootstrap-token auth, real kubectl to read what
# the coordinator wrote, and a fake kubeadm (fake_kubeadm.py) that does
# kubeadm's token discovery (cluster-info JWS, CA pin) and registers the Node.
#
# Approvals, codes and the audit are made and read on a peer that is not
# the coordinator: the site map replicates them. Checks: an unknown key
# waits for approval; a replayed or stale request, a
# rejected key, an expired or used-up enrollment code are refused with a
# reason; an approved node joins with --exec through a peer that is not the
# coordinator and its token Secret is gone afterwards; every token's
# expiration is under 60 s; a failed join deletes its token; kill -9 of the
# coordinator mid-join leaves an orphan the new coordinator deletes; no token
# secret in any log.
set -euo pipefail
KVC=$1 KVC_PEER=$2 REPLAY=$3
. "$(dirname "$0")/lib.sh"
HERE=$(cd "$(dirname "$0")" && pwd)
KUBE=$HERE/../kube
PY=/usr/bin/python3

# --- the API stand-in and its PKI -------------------------------------------
mkdir -p "$T/pki" "$T/bin"
"$KUBE/kube_pki.sh" pki "$T/pki"
mkfifo "$T/standin.in"
"$PY" "$KUBE/kube_api_standin.py" --cert "$T/pki/server.pem" --key "$T/pki/server.key" \
    --ca "$T/pki/ca.pem" --jws-delay-ms 100 --sweep-ms 200 --enable-bootstrap-token-auth \
    <"$T/standin.in" >"$T/standin.port" 2>"$T/standin.log" &
STANDIN=$!
KVC_PIDS="$KVC_PIDS $STANDIN"
exec 3>"$T/standin.in" # closing it (at exit) stops the stand-in
poll 20 "the stand-in reports its port" test -s "$T/standin.port"
"$KUBE/kube_pki.sh" kubeconfig "$T/pki" "$(head -n1 "$T/standin.port")"
export KUBECONFIG=$T/pki/kubeconfig
k() { kubectl --request-timeout=20s "$@"; }
cp "$HERE/fake_kubeadm.py" "$T/bin/kubeadm"
chmod +x "$T/bin/kubeadm"
export FAKE_KUBEADM_PKI=$T/pki

# --- three voters of site-a ---------------------------------------------------
"$KVC" ca init --out "$T/ca" >/dev/null
for n in j1 j2 j3; do
    "$KVC" cert issue --ca "$T/ca" --site site-a --name "$n" --out "$T/$n.id" >/dev/null
    mkdir -p "$T/$n"
done
FEDERATION_YAML=""
cfg() { # NAME [SEED_EP SEED_KEY]
    local n=$1
    shift
    write_config "$T/$n.yaml" "$n" site-a eu "$T/$n" "$T/$n.id" "$T/ca/federation.pub" "$@"
    printf 'kubernetes:\n  kubeconfig: %s\n  progress_timeout_s: 5\n  token_ttl_s: 10\n' "$KUBECONFIG" >>"$T/$n.yaml"
}
cfg j1
start_peer j1 "$T/j1.yaml"
SEED_EP=$(jqs "$T/j1.yaml" status .advertise)
SEED_KEY=$(jqs "$T/j1.yaml" status .public_key)
for n in j2 j3; do
    cfg "$n" "$SEED_EP" "$SEED_KEY"
    start_peer "$n" "$T/$n.yaml"
done
coordinator() { jqs "$T/j1.yaml" sites '.[] | select(.site == "site-a") | .coordinator'; }
three() { [ "$(jqs "$T/j1.yaml" status .election.voters)" = 3 ] && [ -n "$(coordinator)" ]; }
poll 30 "site-a has three voters and a coordinator" three
C=$(coordinator)
C=${C#site-a/}
RELAY=""
for n in j1 j2 j3; do [ "$n" = "$C" ] || { RELAY=$n; break; }; done
EP=$(jqs "$T/$RELAY.yaml" status .advertise)
PK=$(jqs "$T/$RELAY.yaml" status .public_key)
join() { # KEYFILE NAME ARGS...: kvc join through the relay (not the coordinator)
    local key=$1 name=$2
    shift 2
    PATH="$T/bin:$PATH" "$KVC" join --site site-a --peer "$EP" --peer-key "$PK" --key "$key" \
        --name "$name" --arch arm64 --address 10.0.0.7 "$@"
}
tokens_left() { k get secrets -n kube-system -l app.kubernetes.io/managed-by=kvc -o json | jq '.items | length'; }
none_left() { [ "$(tokens_left)" = 0 ]; }

# --- an unknown key waits for an operator --------------------------------------
"$KVC" keygen --out "$T/pi-1.key" >/dev/null
rc=0
join "$T/pi-1.key" pi-1 --print >"$T/out" 2>"$T/err" || rc=$?
[ "$rc" = 3 ] || fail "an unapproved node got exit $rc: $(cat "$T/err")"
grep -q "is not approved yet: run 'kvc nodes approve [0-9a-f]\{12\}' on a peer of site site-a" "$T/err" ||
    fail "unapproved: $(cat "$T/err")"
[ ! -s "$T/out" ] || fail "an unapproved node got output: $(cat "$T/out")"
# the coordinator wrote the pending record; the relay has it (the site map)
pending() { expect_jq "$T/$RELAY.yaml" nodes '[.[] | select(.name == "pi-1") | .state, .arch, .addresses[0]] == ["pending","arm64","10.0.0.7"]'; }
poll 10 "pi-1 is pending on $RELAY, not only on the coordinator" pending
ID=$(jqs "$T/$RELAY.yaml" nodes '.[] | select(.name == "pi-1") | .id')
"$KVC" --config "$T/$RELAY.yaml" nodes approve "${ID:0:12}" | grep -q "is approved" || fail "approve"
rc=0
"$KVC" --config "$T/$RELAY.yaml" nodes approve "${ID:0:12}" 2>"$T/err" || rc=$?
[ "$rc" = 1 ] && grep -q "is approved; it cannot be approved" "$T/err" || fail "approving twice: $(cat "$T/err")"

# --- replayed and stale requests over a real CurveZMQ session -------------------
"$REPLAY" "$EP" "$PK" "$T/pi-1.key" site-a pi-1 replay >"$T/replay" || fail "replay tool: $(cat "$T/replay")"
sed -n 1p "$T/replay" | grep -q "^granted [a-z0-9]\{6\}$" || fail "first request: $(cat "$T/replay")"
sed -n 2p "$T/replay" | grep -q "^refused: this request was seen before (a replay)" ||
    fail "the replay was not refused: $(cat "$T/replay")"
"$REPLAY" "$EP" "$PK" "$T/pi-1.key" site-a pi-1 stale >"$T/stale" || fail "stale tool"
grep -q "^refused: the request's timestamp is -600 s off this site's clock" "$T/stale" ||
    fail "a stale request was not refused: $(cat "$T/stale")"
# the replay's first request was granted and never continued: its token goes
poll 20 "the token of the abandoned request is deleted" none_left
stalled() { expect_jq "$T/$RELAY.yaml" tokens '[.[] | select(.node == "pi-1") | .outcome] | index("stalled") != null'; }
poll 10 "the audit (on $RELAY) records the stalled token" stalled

# --- an approved node joins with --exec, through the relay ----------------------
export FAKE_KUBEADM_SEEN=$T/seen-1
join "$T/pi-1.key" pi-1 --exec >"$T/out" 2>"$T/err" || fail "join --exec: $(cat "$T/err")"
grep -q "node pi-1 is registered; its token is deleted" "$T/err" || fail "join output: $(cat "$T/err")"
k get node pi-1 -o json | jq -e '.metadata.name == "pi-1"' >/dev/null || fail "no Node pi-1"
TOK=$(cat "$T/seen-1")
TID=${TOK%%.*}
poll 10 "token $TID is deleted after the join" none_left
rc=0
k get secret -n kube-system "bootstrap-token-$TID" >/dev/null 2>&1 || rc=$?
[ "$rc" != 0 ] || fail "bootstrap-token-$TID still exists"
audited() { expect_jq "$T/$RELAY.yaml" tokens "[.[] | select(.token_id == \"$TID\") | .outcome] == [\"minted\",\"joined\"]"; }
poll 10 "the audit of $TID is minted, joined" audited
joined() { expect_jq "$T/$RELAY.yaml" nodes '[.[] | select(.name == "pi-1") | .joined != null] == [true]'; }
poll 10 "pi-1's record has its join time" joined

# --- enrollment codes -------------------------------------------------------------
"$KVC" --config "$T/$RELAY.yaml" --json enroll create --ttl 10m --uses 1 >"$T/code.json"
CODE=$(jq -r .code "$T/code.json")
"$KVC" keygen --out "$T/pi-2.key" >/dev/null
join "$T/pi-2.key" pi-2 --enroll "$CODE" --print >"$T/out" 2>"$T/err" || fail "enrolled join: $(cat "$T/err")"
grep -q "^kubeadm join 127.0.0.1:[0-9]* --token [a-z0-9]\{6\}\.[a-z0-9]\{16\} --discovery-token-ca-cert-hash sha256:[0-9a-f]\{64\} --node-name pi-2$" "$T/out" ||
    fail "printed command: $(cat "$T/out")"
PRINTED=$(sed 's/.* --token \([^ ]*\) .*/\1/' "$T/out")
# the pin is the stand-in CA's, computed here with openssl
WANT=$(openssl x509 -in "$T/pki/ca.pem" -pubkey -noout | openssl pkey -pubin -outform der | sha256sum | cut -d' ' -f1)
grep -q "sha256:$WANT" "$T/out" || fail "the CA pin is not the stand-in CA's ($WANT)"
# its Secret, read with kubectl: usable for kubeadm, expiring within a minute
k get secret -n kube-system "bootstrap-token-${PRINTED%%.*}" -o json >"$T/secret.json"
EXP=$(jq -r '.data.expiration | @base64d' "$T/secret.json")
LEFT=$(($(date -d "$EXP" +%s) - $(date +%s)))
[ "$LEFT" -gt 0 ] && [ "$LEFT" -lt 60 ] || fail "expiration $EXP is $LEFT s away"
jq -e '.type == "bootstrap.kubernetes.io/token" and (.data["usage-bootstrap-signing"] | @base64d) == "true"
       and (.data["auth-extra-groups"] | @base64d) == "system:bootstrappers:kubeadm:default-node-token"
       and .metadata.labels["kvc.io/site"] == "site-a" and .metadata.labels["kvc.io/node"] == "pi-2"' \
    "$T/secret.json" >/dev/null || fail "the token Secret: $(jq -c . "$T/secret.json")"
enrolled() { expect_jq "$T/$RELAY.yaml" nodes '[.[] | select(.name == "pi-2") | .state, (.updated_by | startswith("enroll:"))] == ["approved",true]'; }
poll 10 "pi-2 approved by its code" enrolled
"$KVC" keygen --out "$T/pi-5.key" >/dev/null
rc=0
join "$T/pi-5.key" pi-5 --enroll "$CODE" --print >"$T/out" 2>"$T/err" || rc=$?
[ "$rc" = 1 ] && grep -q "refused: the enrollment code is not valid for this site" "$T/err" ||
    fail "a used-up code: rc $rc $(cat "$T/err")"
"$KVC" --config "$T/$RELAY.yaml" --json enroll create --ttl 1s >"$T/code2.json"
EXPIRES=$(date -d "$(jq -r .expires "$T/code2.json")" +%s)
past() { [ "$(date +%s)" -gt "$EXPIRES" ]; }
poll 5 "the 1 s code has expired" past
rc=0
join "$T/pi-5.key" pi-5 --enroll "$(jq -r .code "$T/code2.json")" --print >"$T/out" 2>"$T/err" || rc=$?
[ "$rc" = 1 ] && grep -q "refused: the enrollment code has expired" "$T/err" ||
    fail "an expired code: rc $rc $(cat "$T/err")"

# --- a rejected key; a join that fails deletes its token --------------------------
has5() { [ -n "$(jqs "$T/$RELAY.yaml" nodes '.[] | select(.name == "pi-5") | .id')" ]; }
poll 10 "pi-5 is known on $RELAY" has5
ID5=$(jqs "$T/$RELAY.yaml" nodes '.[] | select(.name == "pi-5") | .id')
"$KVC" --config "$T/$RELAY.yaml" nodes reject "$ID5" >/dev/null
rc=0
join "$T/pi-5.key" pi-5 --print >"$T/out" 2>"$T/err" || rc=$?
[ "$rc" = 1 ] && grep -q "refused: node [0-9a-f]* is rejected on site site-a" "$T/err" ||
    fail "a rejected node: rc $rc $(cat "$T/err")"
poll 20 "pi-2's printed token goes (no progress)" none_left
"$KVC" keygen --out "$T/pi-3.key" >/dev/null
join "$T/pi-3.key" pi-3 --print >/dev/null 2>&1 || true
has3() { "$KVC" --config "$T/$RELAY.yaml" nodes approve pi-3; }
poll 10 "pi-3 can be approved on $RELAY" has3
export FAKE_KUBEADM_SEEN=$T/seen-3
rc=0
FAKE_KUBEADM_FAIL=1 join "$T/pi-3.key" pi-3 --exec >"$T/out" 2>"$T/err" || rc=$?
[ "$rc" = 1 ] && grep -q "kubeadm exited with 1; the token was deleted" "$T/err" ||
    fail "a failing kubeadm: rc $rc $(cat "$T/err")"
poll 10 "the failed join's token is deleted" none_left
T3=$(cut -d. -f1 "$T/seen-3")
failed3() { expect_jq "$T/$RELAY.yaml" tokens "[.[] | select(.token_id == \"$T3\") | .outcome] == [\"minted\",\"failed\"]"; }
poll 10 "the audit of the failed join is minted, failed" failed3

# --- kill -9 of the coordinator mid-join ------------------------------------------
"$KVC" keygen --out "$T/pi-4.key" >/dev/null
join "$T/pi-4.key" pi-4 --print >/dev/null 2>&1 || true
has4() { "$KVC" --config "$T/$RELAY.yaml" nodes approve pi-4; }
poll 10 "pi-4 can be approved on $RELAY" has4
export FAKE_KUBEADM_SEEN=$T/seen-4 FAKE_KUBEADM_GATE=$T/gate-4
join "$T/pi-4.key" pi-4 --exec >"$T/out4" 2>"$T/err4" &
JPID=$!
one_left() { [ "$(tokens_left)" = 1 ] && [ -s "$T/seen-4" ]; }
poll 20 "pi-4's token exists while kubeadm waits" one_left
T4=$(cut -d. -f1 "$T/seen-4")
# while kubeadm runs and reports progress, the 10 s token is extended in short steps
EXP1=$(date -d "$(k get secret -n kube-system "bootstrap-token-$T4" -o json | jq -r '.data.expiration | @base64d')" +%s)
extended() { expect_jq "$T/$RELAY.yaml" tokens "[.[] | select(.token_id == \"$T4\") | .outcome] | index(\"extended\") != null"; }
poll 20 "token $T4 is extended while the join reports progress" extended
EXP2=$(date -d "$(k get secret -n kube-system "bootstrap-token-$T4" -o json | jq -r '.data.expiration | @base64d')" +%s)
LEFT=$((EXP2 - $(date +%s)))
[ "$EXP2" -gt "$EXP1" ] && [ "$LEFT" -gt 0 ] && [ "$LEFT" -lt 60 ] ||
    fail "extension: expiration $EXP1 -> $EXP2, $LEFT s left"
kill -9 "$(eval echo "\$PID_$C")"
wait "$(eval echo "\$PID_$C")" 2>/dev/null || true
new_coordinator() {
    local c
    c=$(jqs "$T/$RELAY.yaml" sites '.[] | select(.site == "site-a") | .coordinator')
    [ -n "$c" ] && [ "$c" != "site-a/$C" ]
}
poll 20 "a new coordinator after kill -9 of site-a/$C" new_coordinator
poll 20 "the new coordinator deletes the orphaned token $T4" none_left
N=$(jqs "$T/$RELAY.yaml" sites '.[] | select(.site == "site-a") | .coordinator')
N=${N#site-a/}
touch "$T/gate-4"
rc=0
wait "$JPID" || rc=$?
[ "$rc" != 0 ] || fail "the join whose coordinator died claims success: $(cat "$T/err4")"
orphaned() { expect_jq "$T/$N.yaml" tokens '[.[] | .outcome] | index("orphan-deleted") != null'; }
poll 10 "the new coordinator's audit records the orphan it deleted" orphaned

# --- a k3s site: the K10 token form --------------------------------------------
"$KVC" cert issue --ca "$T/ca" --site site-b --name k1 --out "$T/k1.id" >/dev/null
mkdir -p "$T/k1"
write_config "$T/k1.yaml" k1 site-b eu "$T/k1" "$T/k1.id" "$T/ca/federation.pub"
printf 'kubernetes:\n  kubeconfig: %s\n  kind: k3s\n  progress_timeout_s: 5\n' "$KUBECONFIG" >>"$T/k1.yaml"
start_peer k1 "$T/k1.yaml"
acting() { expect_jq "$T/k1.yaml" status .election.can_act; }
poll 10 "k1 coordinates site-b alone" acting
KEP=$(jqs "$T/k1.yaml" status .advertise)
KPK=$(jqs "$T/k1.yaml" status .public_key)
kjoin() { "$KVC" join --site site-b --peer "$KEP" --peer-key "$KPK" --key "$T/pi-k.key" --name pi-k "$@"; }
"$KVC" keygen --out "$T/pi-k.key" >/dev/null
kjoin --kind k3s --print >/dev/null 2>&1 || true
"$KVC" --config "$T/k1.yaml" nodes approve pi-k >/dev/null
rc=0
kjoin --print >"$T/out" 2>"$T/err" || rc=$?
[ "$rc" = 1 ] && grep -q "refused: site site-b joins nodes with k3s, not kubeadm: use --kind k3s" "$T/err" ||
    fail "a kubeadm request to a k3s site: rc $rc $(cat "$T/err")"
kjoin --kind k3s --print >"$T/out" 2>"$T/err" || fail "k3s join: $(cat "$T/err")"
CAHASH=$(sha256sum "$T/pki/ca.pem" | cut -d' ' -f1)
grep -q "^k3s agent --server https://127.0.0.1:[0-9]* --token K10$CAHASH::[a-z0-9]\{6\}\.[a-z0-9]\{16\} --node-name pi-k$" "$T/out" ||
    fail "k3s command (CA hash $CAHASH): $(cat "$T/out")"
KTOK=$(sed 's/.*::\([a-z0-9]*\)\..*/\1/' "$T/out")
k get secret -n kube-system "bootstrap-token-$KTOK" -o json |
    jq -e '(.data["auth-extra-groups"] | @base64d) == "system:bootstrappers:k3s:default-node-token"
           and .metadata.labels["kvc.io/site"] == "site-b"' >/dev/null ||
    fail "the k3s token's groups or labels"
KSECRET=$(sed 's/.*::[a-z0-9]*\.\([a-z0-9]*\) .*/\1/' "$T/out")

# --- the API unreachable: a clear, retryable refusal ------------------------------
kill -TERM "$STANDIN" # (its stdin is held open by the peers too)
wait "$STANDIN" 2>/dev/null || true
gone() { ! k get --raw /version; }
poll 10 "the API stand-in is down" gone
rc=0
kjoin --kind k3s --print >"$T/out" 2>"$T/err" || rc=$?
[ "$rc" = 3 ] && grep -q "refused: the coordinator could not mint a token: " "$T/err" ||
    fail "the API down: rc $rc $(cat "$T/err")"
[ ! -s "$T/out" ] || fail "a command was printed without a token"

# --- no token secret in any log ---------------------------------------------------
! grep -qF "$KSECRET" "$T"/k1.log || fail "the k3s token's secret is in a log"
for f in "$T/seen-1" "$T/seen-3" "$T/seen-4"; do
    s=$(cut -d. -f2 "$f")
    [ "${#s}" = 16 ] || fail "bad token in $f"
    ! grep -qF "$s" "$T"/j?.log || fail "a token secret is in a peer log: $(grep -lF "$s" "$T"/j?.log)"
done
! grep -qF "${PRINTED#*.}" "$T"/j?.log || fail "the printed token's secret is in a log"
echo "test_join: ok"
