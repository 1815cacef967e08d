#!/bin/bash
# Small requests (BERT shape, 500 int32 ids -> 2 floats) on loopback, issue 4
# goals, each a ratio measured in the same run:
#   (i)/(ii)  latency of a direct gRPC Predict from C (bench_grpc_direct)
#             against the same request as TF Serving REST JSON through kvc's
#             proxy, interleaved call by call, once per backend below, each
#             path with two kinds of client: libraries (the proxy's own
#             gRPC client; libcurl's HTTP/1.1) and library-free (a prebuilt
#             request on a bare socket, tests/bench/bench_raw.h), so the
#             client stacks' own cost shows; overhead = p50 difference
#             between the paths with the same kind of client, goal <= 150 us;
#   (iii)     requests/s at concurrency 8 and 32 (wrk, 10 s each) through
#             kvc's proxy and through the proxies a user would otherwise
#             write: tests/bench/python_proxy.py (http.server + json +
#             grpcio) and tests/bench/flask_proxy.py (Flask + grpcio);
#             goal >= 10x. One row per backend and concurrency:
#               - tests/interop/model_server.py (Python grpcio), and
#               - bench_model_server (gRPC C++, built when grpc++ is found),
#                 fast enough that the proxies, not the backend, are measured;
#             each proxy gets its own instance pointed at that backend (a
#             kvc-peer with its own site and configuration per backend).
#             The backend's own ceiling (direct gRPC from C at the same
#             concurrency) is printed next to them, and so is each proxy
#             process's CPU time per request.
#
#   The latency rows come with the floor they stand on, measured in the same
#   run: bench_wakeup's round trip between two threads over loopback (a proxy
#   adds one such hop), with the threads on two CPUs, one CPU, or free.
#
# usage: tests/bench/bench_overhead.sh BUILD_DIR   (KVCB_SECONDS=N, default 10)
# KVCB_HALTPOLL_NS=N (root, a guest with the cpuidle-haltpoll driver): the
# latency rows and the hop are measured a second time with the guest's idle
# CPUs polling N ns before they halt (/sys/module/haltpoll/parameters/
# guest_halt_poll_ns), as a bare-metal CPU wakes without a hypervisor round;
# the previous value is put back on exit. Off unless asked: it changes the
# host while it runs.
# Needs wrk and python3-grpcio; otherwise prints "skipped: ..." and exits 0.
# A missing part (bench_model_server not built, python3-flask absent) skips
# its rows or columns with the reason printed. Every proxy's answer to the
# benchmark body is checked before anything is timed; a run with any non-2xx
# answer or socket error reads n/a. Everything listens on 127.0.0.1 port 0;
# every process it starts is stopped on exit (trap); every run is bounded.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail
build=${1:?usage: bench_overhead.sh BUILD_DIR}
here=$(cd "$(dirname "$0")" && pwd)
KVC="$build/kvc"
WAKEUP="$build/tests/bench/bench_wakeup"
HALTPOLL=/sys/module/haltpoll/parameters/guest_halt_poll_ns
PEER="$build/kvc-peer"
DIRECT="$build/tests/bench/bench_grpc_direct"
CXX_SERVER="$build/tests/bench/bench_model_server"
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
HALTPOLL_WAS=""
cleanup() {
    trap - EXIT INT TERM
    if [ -n "$HALTPOLL_WAS" ]; then echo "$HALTPOLL_WAS" >"$HALTPOLL" || true; fi
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

# Backends: "py" (model_server.py) always, "cxx" (bench_model_server) when
# built. GRPC[b] is the port, SKIP[b] why a backend has no rows.
declare -A GRPC SKIP NAME
NAME[py]="model_server.py (Python grpcio)"
NAME[cxx]="bench_model_server (gRPC C++)"
"$PY" "$here/../interop/model_server.py" --grpc-port 0 --rest-port 0 --port-file "$T/ms-py.json" \
    --exit-with-parent >"$T/ms-py.log" 2>&1 &
PIDS+=($!)
kvcb_wait 60 "$!" test -s "$T/ms-py.json" || die "model_server.py did not start" "$T/ms-py.log"
GRPC[py]=$(jq -r .grpc "$T/ms-py.json")
if [ -x "$CXX_SERVER" ]; then
    "$CXX_SERVER" --port-file "$T/ms-cxx.json" --exit-with-parent >"$T/ms-cxx.log" 2>&1 &
    PIDS+=($!)
    kvcb_wait 30 "$!" test -s "$T/ms-cxx.json" || die "bench_model_server did not start" "$T/ms-cxx.log"
    GRPC[cxx]=$(jq -r .grpc "$T/ms-cxx.json")
else
    SKIP[cxx]="not built ($CXX_SERVER: needs libgrpc++-dev, protobuf-compiler-grpc; ops/install-deps.sh)"
fi
FLASK_SKIP=""
"$PY" -c 'import flask' 2>/dev/null || FLASK_SKIP="needs python3-flask"

# Proxies, one of each per backend: URL[b:p] and PID[b:p], p in kvc python
# flask.
declare -A URL PID
http_of() { "$KVC" --config "$1" status --json | jq -er '.http | select(. != "" and . != null)'; }
start_kvc() {
    local b=$1 dir="$T/site-$1"
    mkdir -p "$dir"
    chmod 700 "$dir"
    kvcb_site "$dir"
    kvcb_config "$T/peer-$b.yaml" "$dir" "127.0.0.1:${GRPC[$b]}" "127.0.0.1:0"
    "$PEER" --config "$T/peer-$b.yaml" >"$T/peer-$b.log" 2>&1 &
    PIDS+=($!)
    PID[$b:kvc]=$!
    kvcb_wait 30 "$!" http_of "$T/peer-$b.yaml" || die "kvc-peer ($b) did not start" "$T/peer-$b.log"
    URL[$b:kvc]=$(http_of "$T/peer-$b.yaml")
}
start_python() {
    local b=$1 p=$2
    "$PY" "$here/${p}_proxy.py" --grpc "127.0.0.1:${GRPC[$b]}" --port-file "$T/$p-$b.json" \
        --exit-with-parent >"$T/$p-$b.log" 2>&1 &
    PIDS+=($!)
    PID[$b:$p]=$!
    kvcb_wait 60 "$!" test -s "$T/$p-$b.json" || die "${p}_proxy.py ($b) did not start" "$T/$p-$b.log"
    URL[$b:$p]=127.0.0.1:$(jq -r .port "$T/$p-$b.json")
}
BACKENDS=()
for b in py cxx; do
    if [ -n "${SKIP[$b]:-}" ]; then continue; fi
    BACKENDS+=("$b")
    start_kvc "$b"
    start_python "$b" python
    if [ -z "$FLASK_SKIP" ]; then start_python "$b" flask; fi
done

# The BERT body bench_grpc_direct also sends (ids 101..600): check every
# proxy answers it right before timing anything.
printf '{"instances":[[%s]]}' "$(seq -s, 101 600)" >"$T/bert.json"
for k in "${!URL[@]}"; do
    out=$(curl -s --max-time 10 "http://${URL[$k]}/v1/models/bert:predict" --data-binary @"$T/bert.json")
    echo "$out" | jq -e '.predictions == [[175.25, 499]]' >/dev/null ||
        die "unexpected answer from $k (${URL[$k]}): $out"
done

echo "Small requests (BERT shape: 500 int32 ids -> 2 floats) on loopback; model servers, proxies,"
echo "clients and load generator share the same cores ($(nproc) here, shared with other work: compare"
echo "ratios measured in the same run, not absolute figures)."
echo
# latency_rows: the hop's floor, then the latency rows per backend.
latency_rows() {
    if [ -x "$WAKEUP" ]; then
        echo "One hop between two threads on this host (bench_wakeup, the floor of the overhead):"
        timeout 120 "$WAKEUP" -n 20000 || echo "bench_wakeup failed"
        echo
    fi
    for b in "${BACKENDS[@]}"; do
        echo "Latency, backend ${NAME[$b]}:"
        timeout $((SECS + 60)) "$DIRECT" --grpc "http://127.0.0.1:${GRPC[$b]}" --proxy "http://${URL[$b:kvc]}" \
            --model bert -n 5000 --seconds "$SECS"
        echo
    done
}
if [ -r "$HALTPOLL" ]; then
    echo "Guest idle polling (guest_halt_poll_ns): $(cat "$HALTPOLL") ns."
    echo
fi
latency_rows
if [ -n "${KVCB_HALTPOLL_NS:-}" ]; then
    if ! [ -w "$HALTPOLL" ]; then
        echo "KVCB_HALTPOLL_NS: skipped ($HALTPOLL is not writable here: needs root and the cpuidle-haltpoll driver)."
    elif ! [[ "$KVCB_HALTPOLL_NS" =~ ^[0-9]{1,7}$ ]]; then
        die "KVCB_HALTPOLL_NS: expected 0..9999999 (ns), got \"$KVCB_HALTPOLL_NS\""
    else
        HALTPOLL_WAS=$(cat "$HALTPOLL")
        echo "$KVCB_HALTPOLL_NS" >"$HALTPOLL"
        echo "Again, with the guest's idle CPUs polling $KVCB_HALTPOLL_NS ns before they halt:"
        echo
        latency_rows
        echo "$HALTPOLL_WAS" >"$HALTPOLL"
        HALTPOLL_WAS=""
        echo "(guest_halt_poll_ns back to $(cat "$HALTPOLL") ns)"
        echo
    fi
fi

# cpu_ticks PID: user+system clock ticks the process has used so far.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)

# wrk_run KEY CONNS: prints "REQS_PER_S CPU_US_PER_REQ" for proxy KEY (wrk,
# 2 threads, SECS seconds; CPU of its process over the run); "n/a n/a" when
# the proxy is absent or any request failed or got an answer other than 2xx.
wrk_run() {
    local out c0 c1 n url=${URL[$1]:-} pid=${PID[$1]:-}
    if [ -z "$url" ]; then
        echo "n/a n/a"
        return
    fi
    c0=$(cpu_ticks "$pid")
    out=$(KVCB_BODY="$T/bert.json" timeout $((SECS + 30)) wrk -t2 -c"$2" -d"${SECS}s" \
        --timeout 10s -s "$here/post.lua" "http://$url/v1/models/bert:predict" 2>&1) || true
    c1=$(cpu_ticks "$pid")
    if echo "$out" | grep -qE 'Non-2xx|Socket errors'; then
        echo "bench_overhead: $1: $(echo "$out" | grep -E 'Non-2xx|Socket errors' | tr -s ' ' | tr '\n' ' ')" >&2
        echo "n/a n/a"
        return
    fi
    n=$(echo "$out" | awk '/requests in/ { print $1 }')
    echo "$out" | awk -v n="${n:-0}" -v t=$((c1 - c0)) -v hz="$HZ" \
        '/^Requests\/sec:/ { r = $2 } END { if (r == "" || n == 0) print "n/a n/a"; else printf "%.0f %.0f\n", r, t / hz * 1e6 / n }'
}
# ratio A B: A / B as "N.Nx", n/a unless both are positive numbers.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.1fx", a / b; else print "n/a" }'; }

echo "| backend | concurrency | kvc proxy req/s | python_proxy.py req/s | flask_proxy.py req/s | kvc / python | kvc / flask | backend alone (direct gRPC, C) req/s | kvc CPU µs/req | python_proxy.py CPU µs/req | flask_proxy.py CPU µs/req | CPU python / kvc | CPU flask / kvc |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for b in "${BACKENDS[@]}"; do
    for c in 8 32; do
        read -r k kc < <(wrk_run "$b:kvc" "$c")
        read -r p pc < <(wrk_run "$b:python" "$c")
        read -r f fc < <(wrk_run "$b:flask" "$c")
        d=$(timeout $((SECS + 30)) "$DIRECT" --grpc "http://127.0.0.1:${GRPC[$b]}" --concurrency "$c" \
            --seconds "$SECS" | sed -n 's/.* 0 failed, \([0-9][0-9]*\) requests\/s$/\1/p') || d=""
        echo "| ${NAME[$b]} | $c | $k | $p | $f | $(ratio "$k" "$p") | $(ratio "$k" "$f") | ${d:-n/a} |" \
            "$kc | $pc | $fc | $(ratio "$pc" "$kc") | $(ratio "$fc" "$kc") |"
    done
done
for b in py cxx; do
    if [ -n "${SKIP[$b]:-}" ]; then echo "No rows for ${NAME[$b]}: ${SKIP[$b]}."; fi
done
if [ -n "$FLASK_SKIP" ]; then echo "flask_proxy.py: skipped ($FLASK_SKIP); its columns read n/a."; fi
echo
echo "Load generator: wrk -t2 -cN -d${SECS}s, one POST body (tests/bench/post.lua), keep-alive"
echo "(Flask's own server, Werkzeug, closes the connection after every answer, so its clients"
echo "reconnect for every request: that is what a Flask user gets). CPU µs/req: the proxy process's"
echo "user+system time (/proc/PID/stat, ${HZ} Hz ticks) over the wrk run / requests served;"
echo "1e6 / it is what one core could serve with an unlimited backend."
