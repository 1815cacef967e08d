#!/bin/bash
# Cross-region failover of inference requests (issue 18), end to end: three
# sites a, b, c (one kvc-peer each, loopback), each with its own real model
# server (tests/interop/model_server.py, grpcio) serving the same model.
# A constant-rate client (rate_client.py) posts to site a's proxy while a's
# model server is killed (-9) and later restarted on the same port:
#   - before the kill every answer is Kvc-Served-By site-a, Kvc-Route local;
#   - not one answer of the whole run is anything but 200;
#   - during the outage every answer comes from site-b or site-c
#     (retried or forwarded);
#   - within 5 s of the restarted model server serving, answers are local
#     again (fail back) and stay so.
# Also: Kvc-Constraint site=site-c is served by c; a constraint no site meets
# (accelerator=tpu) is a 503 whose error names each site and why; `kvc route`
# shows the candidates; the routed-requests counters move on /metrics and in
# `kvc info`; forged forward requests (kvc_intruder --forward) against a's
# forwarding endpoint are all refused and counted.
# Prints the figures: p50/p99 before/during/after, time to fail over (first
# answer after the kill not served locally) and to fail back.
# In a network namespace of its own (netns.sh): a's model server comes back
# on KVC_FIXED_PORT, which nothing else can take while it is down.
set -euo pipefail
. "$(dirname "$0")/netns.sh"
KVC=$1 KVC_PEER=$2 INTRUDER=$3
. "$(dirname "$0")/lib.sh"
SRC=$(cd "$(dirname "$0")/../.." && pwd)
PY=/usr/bin/python3
RC="$SRC/tests/integration/rate_client.py"
RATE=${KVC_FO_RATE:-100}
MODEL=bert

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# model_server NAME GRPC_PORT [ARGS]: starts one (its generated protos go
# to $T), port file $T/ms_NAME.json; sets MSPID_NAME.
model_server() {
    local n=$1 port=$2
    shift 2
    rm -f "$T/ms_$n.json"
    TMPDIR=$T "$PY" "$SRC/tests/interop/model_server.py" --grpc-port "$port" --rest-port 0 \
        --port-file "$T/ms_$n.json" --exit-with-parent "$@" >>"$T/ms_$n.log" 2>&1 &
    KVC_PIDS="$KVC_PIDS $!"
    eval "MSPID_$n=$!"
}
model_server a "$KVC_FIXED_PORT"
model_server b 0
model_server c 0

"$KVC" ca init --out "$T/ca" >/dev/null
"$KVC" ca init --out "$T/evil" >/dev/null
for s in a b c; do
    "$KVC" cert issue --ca "$T/ca" --site "site-$s" --name p1 --roles gateway --out "$T/$s.id" >/dev/null
    mkdir -p "$T/$s"
done
# claims a member id of the federation, signed by another federation key
"$KVC" cert issue --ca "$T/evil" --site site-b --name p1 --out "$T/x.id" >/dev/null

for s in a b c; do
    poll 60 "model server $s writes its port file" test -s "$T/ms_$s.json"
done
[ "$(jq -r .grpc "$T/ms_a.json")" = "$KVC_FIXED_PORT" ] || fail "a's model server is not on $KVC_FIXED_PORT"

export HTTP_LISTEN=127.0.0.1:0
backend() { # SITE: the BACKENDS_YAML of that site's model server
    echo "    - model: $MODEL
      grpc: \"127.0.0.1:$(jq -r .grpc "$T/ms_$1.json")\"
      api: tfserving"
}
BACKENDS_YAML=$(backend a) write_config "$T/a.yaml" p1 site-a eu-west "$T/a" "$T/a.id" "$T/ca/federation.pub"
start_peer a "$T/a.yaml"
A_EP=$(jqs "$T/a.yaml" status .advertise)
A_KEY=$(jqs "$T/a.yaml" status .public_key)
BACKENDS_YAML=$(backend b) write_config "$T/b.yaml" p1 site-b eu-north "$T/b" "$T/b.id" \
    "$T/ca/federation.pub" "$A_EP" "$A_KEY"
start_peer b "$T/b.yaml"
BACKENDS_YAML=$(backend c) write_config "$T/c.yaml" p1 site-c af-east "$T/c" "$T/c.id" \
    "$T/ca/federation.pub" "$A_EP" "$A_KEY"
start_peer c "$T/c.yaml"
for p in a b c; do
    poll 20 "$p connected to both others" expect_jq "$T/$p.yaml" status '.peers_connected == 2'
    eval "HTTP_$p=\$(jqs \"\$T/\$p.yaml\" status .http)"
done

ids=$(seq -s, 1 500)
echo "{\"instances\":[[$ids]]}" >"$T/body.json"
WANT='{"predictions":[[125.25,499]]}'
# post SITE [HEADER]: POST the body to SITE's proxy; prints "STATUS SERVED_BY ROUTE",
# the answer in $T/answer
post() {
    local url="http://$(eval echo "\$HTTP_$1")/v1/models/$MODEL:predict"
    shift
    local args=(-s -o "$T/answer" -D "$T/headers" -w '%{http_code}' -XPOST "$url"
        -H 'Content-Type: application/json' --data-binary @"$T/body.json")
    if [ $# -gt 0 ]; then args+=(-H "$1"); fi
    local code
    code=$(curl "${args[@]}") || code=000
    local sb rt
    sb=$(tr -d '\r' <"$T/headers" | sed -n 's/^[Kk]vc-[Ss]erved-[Bb]y: *//p')
    rt=$(tr -d '\r' <"$T/headers" | sed -n 's/^[Kk]vc-[Rr]oute: *//p')
    echo "$code ${sb:--} ${rt:--}"
}
route_json() { # CONFIG [CONSTRAINT]
    if [ $# -gt 1 ]; then
        "$KVC" --config "$1" route "$MODEL" --constraint "$2" --json
    else
        "$KVC" --config "$1" route "$MODEL" --json
    fi
}
# a's router knows all three sites ready, and keeps its own site first
a_sees_all() {
    route_json "$T/a.yaml" | jq -e '.chosen == "site-a" and
        ([.candidates[].site] | sort) == ["site-a","site-b","site-c"]'
}
poll 30 "a's router ranks site-a, site-b and site-c" a_sees_all
poll 20 "a's info counts two members reporting" \
    expect_jq "$T/a.yaml" info '(.routing.members_reporting | tonumber) >= 2'

# one request of each kind, by hand
out=$(post a)
[ "$out" = "200 site-a local" ] || fail "a plain request to a: '$out', want '200 site-a local'"
[ "$(jq -c . "$T/answer")" = "$WANT" ] || fail "a answered $(cat "$T/answer")"
out=$(post a 'Kvc-Constraint: site=site-c')
[ "$out" = "200 site-c forwarded" ] || fail "site=site-c through a: '$out', want '200 site-c forwarded'"
[ "$(jq -c . "$T/answer")" = "$WANT" ] || fail "c's answer through a: $(cat "$T/answer")"
out=$(post a 'Kvc-Constraint: accelerator=tpu')
[ "${out%% *}" = 503 ] || fail "accelerator=tpu (no site has one) answered '$out', want 503"
for s in site-a site-b site-c; do
    jq -e --arg s "$s" '.error | test($s + ": constraint unmet")' "$T/answer" >/dev/null ||
        fail "the 503 does not say why $s was left out: $(cat "$T/answer")"
done
# the CLI's view of the same choices
"$KVC" --config "$T/a.yaml" route "$MODEL" >"$T/route.txt" || fail "kvc route failed"
head -n 1 "$T/route.txt" | grep -q "^$MODEL: a request goes to site-a" ||
    fail "kvc route's first line: $(head -n 1 "$T/route.txt")"
for s in site-b site-c; do grep -q "$s" "$T/route.txt" || fail "kvc route does not list $s: $(cat "$T/route.txt")"; done
route_json "$T/a.yaml" accelerator=tpu | jq -e '.chosen == null and .candidates == [] and
    ([.excluded[] | select(.reason == "constraint unmet") | .site] | sort) == ["site-a","site-b","site-c"]' \
    >/dev/null || fail "kvc route --constraint accelerator=tpu: $(route_json "$T/a.yaml" accelerator=tpu)"
route_json "$T/a.yaml" site=site-c | jq -e '.chosen == "site-c"' >/dev/null ||
    fail "kvc route --constraint site=site-c: $(route_json "$T/a.yaml" site=site-c)"

# metric SITE DEST OUTCOME: kvc_proxy_routed_requests_total of SITE's /metrics (0 if absent)
metric() {
    local text
    text=$(curl -sf "http://$(eval echo "\$HTTP_$1")/metrics") || return 1
    awk -v d="$2" -v o="$3" -v m="$MODEL" '
        $1 ~ /^kvc_proxy_routed_requests_total\{/ && index($1, "model=\"" m "\"") &&
        index($1, "destination=\"" d "\"") && index($1, "outcome=\"" o "\"") { n += $2 }
        END { print n + 0 }' <<<"$text"
}
[ "$(metric a site-a local)" -ge 1 ] || fail "a's local counter did not move: $(curl -s "http://$HTTP_a/metrics" | grep routed)"
[ "$(metric a site-c forwarded)" -ge 1 ] || fail "a's forwarded-to-c counter did not move"
[ "$(metric c site-c served)" -ge 1 ] || fail "c's served counter did not move: $(curl -s "http://$HTTP_c/metrics" | grep routed)"
for p in a b c; do
    curl -sf "http://$(eval echo "\$HTTP_$p")/metrics" | promtool check metrics || fail "promtool rejects $p's /metrics"
done

# ---- the failover run -----------------------------------------------------
info() { "$KVC" --config "$T/$1.yaml" info --json | jq -r ".routing.$2"; }
for p in a b c; do
    for k in requests_forwarded requests_retried requests_failed served; do
        eval "I0_${p}_$k=\$(info $p $k)"
    done
done
$PY "$RC" --url "http://$HTTP_a/v1/models/$MODEL:predict" --rate "$RATE" --stop-file "$T/stop" \
    --body-file "$T/body.json" --t0-file "$T/t0" --out "$T/run.jsonl" >"$T/client.log" 2>&1 &
CLIENT=$!
KVC_PIDS="$KVC_PIDS $CLIENT"
poll 10 "the client starts" test -s "$T/t0"
T0=$(cut -d. -f1 "$T/t0")
# answers SINCE_MS [REGEX]: answers in run.jsonl sent at t_ms >= SINCE_MS (matching REGEX)
answers() {
    awk -v t="$1" -v re="${2:-.}" '{ if (match($0, /"t_ms": [0-9.]+/)) { v = substr($0, RSTART + 8, RLENGTH - 8) + 0
        if (v >= t && $0 ~ re) n++ } } END { print n + 0 }' "$T/run.jsonl"
}
at_least() { [ "$(answers "$1" "${3:-.}")" -ge "$2" ]; }
poll 20 "2 s of answers before the kill" at_least 0 $((RATE * 2))

KILL=$(($(now_ms) - T0)) # stamped before the signal: the outage starts after it
kill -9 "$MSPID_a"
wait "$MSPID_a" 2>/dev/null || true
poll 20 "an answer served elsewhere after the kill" at_least "$KILL" 1 '"served_by": "site-[bc]"'
poll 30 "3 s of answers during the outage" at_least $((KILL + 3000)) 1

RESTART=$(($(now_ms) - T0))
model_server a "$KVC_FIXED_PORT"
poll 60 "a's model server serves again" test -s "$T/ms_a.json"
BACK=$(($(now_ms) - T0))
poll 20 "a local answer after the restart" at_least "$BACK" 1 '"served_by": "site-a", "route": "local"'
poll 30 "answers 8 s after the restart" at_least $((BACK + 8000)) 1
touch "$T/stop"
wait "$CLIENT" || fail "the client failed: $(cat "$T/client.log")"

$PY "$RC" failover "$T/run.jsonl" --home site-a --kill-ms "$KILL" --back-ms "$BACK" \
    --restart-ms "$RESTART" --from-ms 0 >"$T/fo.json"
jq -c . "$T/fo.json"
f() { jq -r "$1" "$T/fo.json"; }
fc() { jq -c "$1" "$T/fo.json"; }
echo "failover at $RATE req/s: before p50 $(f .before.p50_ms) ms p99 $(f .before.p99_ms) ms;" \
    "during p50 $(f .during.p50_ms) ms p99 $(f .during.p99_ms) ms;" \
    "after p50 $(f .after.p50_ms) ms p99 $(f .after.p99_ms) ms;" \
    "fail over $(f .failover_ms) ms after the kill; fail back $(f .failback_ms) ms after the model server is back;" \
    "$(f .count) requests, $(f .non200) not 200"
[ "$(f .non200)" = 0 ] || fail "$(f .non200) answers of $(f .count) were not 200: $(grep -v '"status": 200' "$T/run.jsonl" | head -n 5)"
[ "$(f .before.count)" -ge $((RATE * 2)) ] || fail "only $(f .before.count) answers before the kill"
# before the kill, but for the last 200 ms (a request in flight at the kill is
# rightly retried elsewhere): all local at site-a
$PY "$RC" summary "$T/run.jsonl" "0:$((KILL - 200))" | jq -c '.[]' >"$T/before.json"
jq -e '.count > 0 and .served_by == {"site-a": .count} and .route == {"local": .count}' "$T/before.json" >/dev/null ||
    fail "before the kill not all answers were local at site-a: $(cat "$T/before.json")"
# during the outage (from 200 ms after the kill, which a request sent at the
# signal may still beat) until the restart: all from b or c, retried or forwarded
$PY "$RC" summary "$T/run.jsonl" "$((KILL + 200)):$RESTART" | jq -c '.[]' >"$T/during.json"
jq -e '.count > 0 and ([.served_by | keys[] | select(. != "site-b" and . != "site-c")] == []) and
    ([.route | keys[] | select(. != "retried" and . != "forwarded")] == [])' "$T/during.json" >/dev/null ||
    fail "during the outage not every answer came from b or c, retried or forwarded: $(cat "$T/during.json")"
[ "$(f .during.count)" -ge $((RATE * 3)) ] || fail "only $(f .during.count) answers during the outage"
[ "$(f .failover_ms)" != null ] || fail "no answer after the kill was served elsewhere"
[ "$(f .failback_ms)" != null ] || fail "answers never became local again: $(tail -n 3 "$T/run.jsonl")"
awk -v b="$(f .failback_ms)" 'BEGIN { exit !(b <= 5000) }' ||
    fail "fail back took $(f .failback_ms) ms, more than 5 s"
[ "$(f .after.count)" -ge $((RATE * 3)) ] || fail "only $(f .after.count) local answers after the fail back"

# the counters saw the run: a forwarded (or retried) at least the outage's answers
during=$(f .during.count)
moved=$(($(info a requests_forwarded) - I0_a_requests_forwarded + $(info a requests_retried) - I0_a_requests_retried))
[ "$moved" -ge "$during" ] || fail "a's routing counters moved by $moved, fewer than the $during answers of the outage"
[ "$(($(info a requests_failed) - I0_a_requests_failed))" = 0 ] || fail "a counted failed requests: $(info a requests_failed)"
served=$(($(info b served) - I0_b_served + $(info c served) - I0_c_served))
[ "$served" -ge "$during" ] || fail "b and c served $served forwarded requests, fewer than the $during of the outage"
m=$(($(metric a site-b retried) + $(metric a site-c retried) + $(metric a site-b forwarded) + $(metric a site-c forwarded)))
[ "$m" -ge "$during" ] || fail "a's kvc_proxy_routed_requests_total to b and c is $m, fewer than $during"
echo "counters: a forwarded $(info a requests_forwarded) retried $(info a requests_retried) failed $(info a requests_failed);" \
    "b served $(info b served), c served $(info c served)"

# ---- forged forward requests ----------------------------------------------
FWD_EP=$(info a forward_endpoint)
case $FWD_EP in tcp://*:[0-9]*) ;; *) fail "a's forward endpoint is '$FWD_EP'" ;; esac
refused0=$(info a refused)
set +e
"$INTRUDER" --forward "$FWD_EP" "$A_KEY" "$T/x.id" "$T/b.id" >"$T/intruder.out" 2>&1
rc=$?
set -e
cat "$T/intruder.out"
[ "$rc" = 0 ] || fail "kvc_intruder --forward exited $rc (1: a forgery was answered)"
[ "$(grep -c . "$T/intruder.out")" -ge 6 ] || fail "the intruder reported fewer than 6 attempts"
refused_rose() { [ "$(info a refused)" -gt "$refused0" ]; }
poll 10 "a counts the refused forwards" refused_rose
echo "a refused $(($(info a refused) - refused0)) forged forwards (routing.refused $(info a refused))"
# a still serves, locally
out=$(post a)
[ "$out" = "200 site-a local" ] || fail "after the intruder, a plain request to a: '$out'"
echo "test_failover: ok"
