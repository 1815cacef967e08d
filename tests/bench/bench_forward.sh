#!/bin/bash
# Forwarding overhead (issue 18 goal: p50 under 200 us): the same request
# (BERT shape, 500 ids) sent one at a time on a kept-alive connection
#   direct:    to site-b's proxy, served by b's model server;
#   forwarded: to site-a's proxy with Kvc-Constraint: site=site-b, so a
#              forwards it over the CurveZMQ link and b serves it the same way.
# Overhead = p50(forwarded) - p50(direct), measured in the same run,
# alternating rounds so drift hits both. Usage: bench_forward.sh BUILD_DIR
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -euo pipefail
BUILD=${1:?release build dir}
KVC=$BUILD/kvc KVC_PEER=$BUILD/kvc-peer
. "$(dirname "$0")/../integration/lib.sh"
SRC=$(cd "$(dirname "$0")/../.." && pwd)
PY=/usr/bin/python3
N=${KVC_BENCH_N:-2000}
ROUNDS=${KVC_BENCH_ROUNDS:-3}

$PY "$SRC/tests/interop/model_server.py" --grpc-port 0 --rest-port 0 \
    --port-file "$T/ms.json" --exit-with-parent >"$T/ms.log" 2>&1 &
KVC_PIDS="$KVC_PIDS $!"
poll 60 "the model server writes its port file" test -s "$T/ms.json"
"$KVC" ca init --out "$T/ca" >/dev/null
for s in a b; do
    "$KVC" cert issue --ca "$T/ca" --site "site-$s" --name p1 --out "$T/$s.id" >/dev/null
    mkdir -p "$T/$s"
done
export HTTP_LISTEN=127.0.0.1:0 KVC_LOG_LEVEL=warn
write_config "$T/a.yaml" p1 site-a eu "$T/a" "$T/a.id" "$T/ca/federation.pub"
start_peer a "$T/a.yaml"
A_EP=$(jqs "$T/a.yaml" status .advertise)
A_KEY=$(jqs "$T/a.yaml" status .public_key)
BACKENDS_YAML="    - model: bert
      grpc: \"127.0.0.1:$(jq -r .grpc "$T/ms.json")\"
      api: tfserving" \
    write_config "$T/b.yaml" p1 site-b eu "$T/b" "$T/b.id" "$T/ca/federation.pub" "$A_EP" "$A_KEY"
start_peer b "$T/b.yaml"
HTTP_a=$(jqs "$T/a.yaml" status .http)
HTTP_b=$(jqs "$T/b.yaml" status .http)
echo "{\"instances\":[[$(seq -s, 1 500)]]}" >"$T/body.json"
routed() { "$KVC" --config "$T/a.yaml" route bert --json | jq -e '.chosen == "site-b"' >/dev/null; }
poll 30 "a routes bert to site-b" routed

P=/v1/models/bert:predict
for r in $(seq 1 "$ROUNDS"); do
    $PY "$SRC/tests/bench/seq_client.py" "$HTTP_b" "$P" "$N" "" "$T/body.json" >>"$T/direct.jsonl"
    $PY "$SRC/tests/bench/seq_client.py" "$HTTP_a" "$P" "$N" "site=site-b" "$T/body.json" >>"$T/fwd.jsonl"
done
jq -s -r --slurpfile f "$T/fwd.jsonl" '
    def med: sort | .[length / 2 | floor];
    (map(.p50_us) | med) as $d | ($f | map(.p50_us) | med) as $w |
    (map(.p99_us) | med) as $d99 | ($f | map(.p99_us) | med) as $w99 |
    ($f | map(.served_by["site-b"] // 0) | add) as $nb |
    "| path | p50 | p99 |\n|---|---|---|\n" +
    "| direct to site-b proxy | \($d | round) us | \($d99 | round) us |\n" +
    "| via site-a, forwarded | \($w | round) us | \($w99 | round) us |\n\n" +
    "forwarding overhead p50: \($w - $d | round) us (\($w / $d * 100 | round / 100)x direct); " +
    "goal < 200 us; \($nb) forwarded answers served by site-b; median of '"$ROUNDS"' rounds of '"$N"'"' \
    "$T/direct.jsonl"
