#!/bin/bash
# Forwarding overhead (issue 18 goal: p50 under 200 us): the same request
# (BERT shape, 500 ids) sent one at a time on a kept-alive connection
#   direct:    to site-b's proxy, served by b's model server;
#   forwarded: to site-a's proxy with Kvc-Constraint: site=site-b, so a
#              forwards it over the CurveZMQ link and b serves it the same way.
# Overhead = p50(forwarded) - p50(direct), measured in the same run,
# alternating rounds so drift hits both; once with proxy.cpu: none (the
# default) and once with each peer's HTTP loop and ZeroMQ I/O thread pinned
# to the last CPU (proxy.cpu). Usage: bench_forward.sh BUILD_DIR
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -euo pipefail
BUILD=${1:?release build dir}
KVC=$BUILD/kvc KVC_PEER=$BUILD/kvc-peer
. "$(dirname "$0")/../integration/lib.sh"
SRC=$(cd "$(dirname "$0")/../.." && pwd)
PY=/usr/bin/python3
N=${KVC_BENCH_N:-2000}
ROUNDS=${KVC_BENCH_ROUNDS:-3}

# The C++ stand-in when it was built (a Python grpcio server's own jitter,
# +-200 us a call, would drown the figure), else the Python one.
MS_CXX=$BUILD/tests/bench/bench_model_server
if [ -x "$MS_CXX" ] && [ "${KVC_BENCH_BACKEND:-cxx}" = cxx ]; then
    BACKEND="bench_model_server (gRPC C++)"
    "$MS_CXX" --grpc-port 0 --port-file "$T/ms.json" --exit-with-parent >"$T/ms.log" 2>&1 &
else
    BACKEND="model_server.py (grpcio)"
    $PY "$SRC/tests/interop/model_server.py" --grpc-port 0 --rest-port 0 \
        --port-file "$T/ms.json" --exit-with-parent >"$T/ms.log" 2>&1 &
fi
KVC_PIDS="$KVC_PIDS $!"
poll 60 "the model server writes its port file" test -s "$T/ms.json"
"$KVC" ca init --out "$T/ca" >/dev/null
for s in a b; do
    "$KVC" cert issue --ca "$T/ca" --site "site-$s" --name p1 --out "$T/$s.id" >/dev/null
    mkdir -p "$T/$s"
done
export HTTP_LISTEN=127.0.0.1:0 KVC_LOG_LEVEL=warn
echo "{\"instances\":[[$(seq -s, 1 500)]]}" >"$T/body.json"
P=/v1/models/bert:predict
NCPU=$(nproc)

# run_mode TAG CPU: fresh peers a and b with proxy.cpu CPU ("none" or a
# number: the HTTP loop and ZeroMQ's I/O thread of each peer on that CPU),
# ROUNDS alternating rounds direct / forwarded, then the peers stop.
run_mode() {
    local tag=$1 cpu=$2
    rm -rf "$T/a" "$T/b"
    mkdir -p "$T/a" "$T/b"
    write_config "$T/a.yaml" p1 site-a eu "$T/a" "$T/a.id" "$T/ca/federation.pub"
    printf 'proxy:\n  cpu: %s\n' "$cpu" >>"$T/a.yaml"
    start_peer a "$T/a.yaml"
    local a_ep a_key
    a_ep=$(jqs "$T/a.yaml" status .advertise)
    a_key=$(jqs "$T/a.yaml" status .public_key)
    BACKENDS_YAML="    - model: bert
      grpc: \"127.0.0.1:$(jq -r .grpc "$T/ms.json")\"
      api: tfserving" PROXY_YAML="  cpu: $cpu" \
        write_config "$T/b.yaml" p1 site-b eu "$T/b" "$T/b.id" "$T/ca/federation.pub" "$a_ep" "$a_key"
    start_peer b "$T/b.yaml"
    local http_a http_b
    http_a=$(jqs "$T/a.yaml" status .http)
    http_b=$(jqs "$T/b.yaml" status .http)
    routed() { "$KVC" --config "$T/a.yaml" route bert --json | jq -e '.chosen == "site-b"' >/dev/null; }
    poll 30 "a routes bert to site-b" routed
    for r in $(seq 1 "$ROUNDS"); do
        $PY "$SRC/tests/bench/seq_client.py" "$http_b" "$P" "$N" "" "$T/body.json" >>"$T/direct_$tag.jsonl"
        $PY "$SRC/tests/bench/seq_client.py" "$http_a" "$P" "$N" "site=site-b" "$T/body.json" >>"$T/fwd_$tag.jsonl"
    done
    kill "$PID_a" "$PID_b"
    wait "$PID_a" "$PID_b" 2>/dev/null || true
}
# report TAG LABEL
report() {
    jq -s -r --slurpfile f "$T/fwd_$1.jsonl" --arg lbl "$2" '
    def med: sort | .[length / 2 | floor];
    (map(.p50_us) | med) as $d | ($f | map(.p50_us) | med) as $w |
    (map(.p99_us) | med) as $d99 | ($f | map(.p99_us) | med) as $w99 |
    ($f | map(.served_by["site-b"] // 0) | add) as $nb |
    "\($lbl):\n| path | p50 | p99 |\n|---|---|---|\n" +
    "| direct to site-b proxy | \($d | round) us | \($d99 | round) us |\n" +
    "| via site-a, forwarded | \($w | round) us | \($w99 | round) us |\n" +
    "forwarding overhead p50: \($w - $d | round) us (\($w / $d * 100 | round / 100)x direct); " +
    "goal < 200 us; \($nb) forwarded answers served by site-b\n"' "$T/direct_$1.jsonl"
}
run_mode free none
LAST=$((NCPU - 1))
run_mode pinned "$LAST"
report free "proxy.cpu: none (the default; threads where the kernel puts them)"
report pinned "proxy.cpu: $LAST (each peer's HTTP loop and ZeroMQ I/O thread on CPU $LAST)"
echo "median of $ROUNDS rounds of $N sequential requests per path and mode; backend $BACKEND; $NCPU CPUs"
