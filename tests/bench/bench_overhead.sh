#!/bin/bash
# Small requests (BERT shape, 500 int32 ids -> 2 floats) on loopback, issue 4
# goals, each a ratio measured in the same run:
#   (i)/(ii)  latency of a direct gRPC Predict from C (bench_grpc_direct, the
#             proxy's own gRPC client) against the same request as TF Serving
#             REST JSON through kvc's proxy, interleaved call by call;
#             overhead = p50 difference, goal <= 150 us;
#   (iii)     requests/s at concurrency 8 and 32 (wrk, 10 s each) through
#             kvc's proxy and through tests/bench/python_proxy.py (the proxy
#             a user would otherwise write: http.server + json + grpcio);
#             goal >= 10x. The model server's own ceiling (direct gRPC at the
#             same concurrency) is printed next to them.
# The model server is tests/interop/model_server.py (python grpcio).
#
# usage: tests/bench/bench_overhead.sh BUILD_DIR   (KVCB_SECONDS=N, default 10)
# Needs wrk and python3-grpcio; otherwise prints "skipped: ..." and exits 0.
# Everything listens on 127.0.0.1 port 0; every process it starts is stopped
# on exit (trap); every run is bounded in time.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail
build=${1:?usage: bench_overhead.sh BUILD_DIR}
here=$(cd "$(dirname "$0")" && pwd)
KVC="$build/kvc"
PEER="$build/kvc-peer"
DIRECT="$build/tests/bench/bench_grpc_direct"
PY=/usr/bin/python3
SECS=${KVCB_SECONDS:-10}
skip() {
    echo "bench_overhead: skipped: $*"
    exit 0
}
[ -x "$KVC" ] && [ -x "$PEER" ] && [ -x "$DIRECT" ] ||
    { echo "bench_overhead: build $build first (kvc, kvc-peer, bench_grpc_direct)" >&2; exit 1; }
command -v jq >/dev/null || skip "needs jq"
command -v wrk >/dev/null || skip "needs wrk (apt-get install wrk)"
"$PY" -c 'import grpc, grpc_tools, numpy' 2>/dev/null || skip "needs python3-grpcio, python3-grpc-tools, python3-numpy"
# shellcheck source=proxy_lib.sh
. "$here/proxy_lib.sh"

T=$(mktemp -d /tmp/kvcb-overhead.XXXXXX)
PIDS=()
cleanup() {
    trap - EXIT INT TERM
    [ ${#PIDS[@]} -gt 0 ] && kvcb_stop "${PIDS[@]}"
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
die() {
    echo "bench_overhead: $1" >&2
    [ -f "${2:-}" ] && tail -5 "$2" >&2
    exit 1
}

"$PY" "$here/../interop/model_server.py" --grpc-port 0 --rest-port 0 --port-file "$T/ms.json" \
    --exit-with-parent >"$T/ms.log" 2>&1 &
PIDS+=($!)
kvcb_wait 60 "$!" test -s "$T/ms.json" || die "model server did not start" "$T/ms.log"
GRPC=$(jq -r .grpc "$T/ms.json")

mkdir -p "$T/site"
chmod 700 "$T/site"
kvcb_site "$T/site"
kvcb_config "$T/peer.yaml" "$T/site" "127.0.0.1:$GRPC" "127.0.0.1:0"
"$PEER" --config "$T/peer.yaml" >"$T/peer.log" 2>&1 &
PIDS+=($!)
http_of() { "$KVC" --config "$T/peer.yaml" status --json | jq -er '.http | select(. != "" and . != null)'; }
kvcb_wait 30 "$!" http_of || die "kvc-peer did not start" "$T/peer.log"
KVC_HTTP=$(http_of)

"$PY" "$here/python_proxy.py" --grpc "127.0.0.1:$GRPC" --port-file "$T/pp.json" \
    --exit-with-parent >"$T/pp.log" 2>&1 &
PIDS+=($!)
kvcb_wait 60 "$!" test -s "$T/pp.json" || die "python_proxy.py did not start" "$T/pp.log"
PY_HTTP=127.0.0.1:$(jq -r .port "$T/pp.json")

# The BERT body bench_grpc_direct also sends (ids 101..600): check both
# proxies answer it right before timing anything.
printf '{"instances":[[%s]]}' "$(seq -s, 101 600)" >"$T/bert.json"
for u in "$KVC_HTTP" "$PY_HTTP"; do
    out=$(curl -s --max-time 10 "http://$u/v1/models/bert:predict" --data-binary @"$T/bert.json")
    echo "$out" | jq -e '.predictions == [[175.25, 499]]' >/dev/null ||
        die "unexpected answer from $u: $out"
done

echo "Small requests (BERT shape: 500 int32 ids -> 2 floats) on loopback; model server, proxies,"
echo "clients and load generator share the same cores (2 here, shared with other work: compare"
echo "ratios measured in the same run, not absolute figures)."
echo
timeout $((SECS + 60)) "$DIRECT" --grpc "http://127.0.0.1:$GRPC" --proxy "http://$KVC_HTTP" \
    --model bert -n 5000 --seconds "$SECS"
echo

# cpu_ticks PID: user+system clock ticks the process has used so far.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
PEER_PID=${PIDS[1]}
PYP_PID=${PIDS[2]}

# wrk_run URL CONNS PID: prints "REQS_PER_S CPU_US_PER_REQ" (wrk, 2 threads,
# SECS seconds; CPU of process PID over the run); "n/a n/a" when any request
# failed or got an answer other than 2xx.
wrk_run() {
    local out c0 c1 n
    c0=$(cpu_ticks "$3")
    out=$(KVCB_BODY="$T/bert.json" timeout $((SECS + 30)) wrk -t2 -c"$2" -d"${SECS}s" \
        --timeout 10s -s "$here/post.lua" "http://$1/v1/models/bert:predict" 2>&1) || true
    c1=$(cpu_ticks "$3")
    if echo "$out" | grep -qE 'Non-2xx|Socket errors'; then
        echo "bench_overhead: $1: $(echo "$out" | grep -E 'Non-2xx|Socket errors' | tr -s ' ' | tr '\n' ' ')" >&2
        echo "n/a n/a"
        return
    fi
    n=$(echo "$out" | awk '/requests in/ { print $1 }')
    echo "$out" | awk -v n="${n:-0}" -v t=$((c1 - c0)) -v hz="$HZ" \
        '/^Requests\/sec:/ { r = $2 } END { if (r == "" || n == 0) print "n/a n/a"; else printf "%.0f %.0f\n", r, t / hz * 1e6 / n }'
}
echo "| concurrency | kvc proxy req/s | python_proxy.py req/s | kvc / python | model server alone (direct gRPC, C) req/s | kvc proxy CPU µs/req | python_proxy.py CPU µs/req | CPU ratio (python / kvc) |"
echo "|---|---|---|---|---|---|---|---|"
for c in 8 32; do
    read -r k kc < <(wrk_run "$KVC_HTTP" "$c" "$PEER_PID")
    read -r p pc < <(wrk_run "$PY_HTTP" "$c" "$PYP_PID")
    d=$(timeout $((SECS + 30)) "$DIRECT" --grpc "http://127.0.0.1:$GRPC" --concurrency "$c" \
        --seconds "$SECS" | sed -n 's/.* \([0-9][0-9]*\) requests\/s$/\1/p')
    r=$(awk -v k="$k" -v p="$p" 'BEGIN { if (p + 0 > 0 && k + 0 > 0) printf "%.1fx", k / p; else print "n/a" }')
    rc=$(awk -v k="$kc" -v p="$pc" 'BEGIN { if (p + 0 > 0 && k + 0 > 0) printf "%.1fx", p / k; else print "n/a" }')
    echo "| $c | $k | $p | $r | ${d:-n/a} | $kc | $pc | $rc |"
done
echo
echo "Load generator: wrk -t2 -cN -d${SECS}s, one POST body (tests/bench/post.lua), keep-alive."
echo "CPU µs/req: the proxy process's user+system time (/proc/PID/stat, ${HZ} Hz ticks) over the"
echo "wrk run / requests served; 1e6 / it is what one core could serve with an unlimited backend."
