#!/bin/bash
# Federated-metrics benchmarks (issue 5 goals), one Markdown table each:
#  (a) a change at one site (predictions through site-a's proxy) visible in
#      every other peer's /federate: 3 sites on loopback (lan profile), the
#      others' /federate polled every 50 ms, median of 5 rounds (goal <= 5 s);
#  (b) bytes of the federated view for 100 sites (bench_federate_size), raw
#      and gzip-compressed as Prometheus scrapes it (goal < 100 KB);
#  (c) cost of serving /metrics: 200 GETs with curl against 200 GETs of
#      /v2/health/live on the same server as the baseline (goal < 1 ms).
# Benchmarks, not assertions. usage: tests/bench/bench_federation.sh BUILD_DIR
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -euo pipefail
build=$(cd "${1:?usage: bench_federation.sh BUILD_DIR}" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$here/../.." && pwd)
KVC=$build/kvc KVC_PEER=$build/kvc-peer
for b in "$KVC" "$KVC_PEER" "$build/tests/bench/bench_federate_size"; do
    [ -x "$b" ] || { echo "bench: $b not built" >&2; exit 1; }
done
. "$SRC/tests/integration/lib.sh"
KVC_LOG_LEVEL=warn
now_ms() { echo $(($(date +%s%N) / 1000000)); }
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# --- a federation of three sites, a model server behind site-a ----------------
/usr/bin/python3 "$SRC/tests/interop/model_server.py" --grpc-port 0 --rest-port 0 \
    --port-file "$T/ms.json" --exit-with-parent >"$T/model_server.log" 2>&1 &
KVC_PIDS="$KVC_PIDS $!"
poll 60 "the model server writes its port file" test -s "$T/ms.json"
GRPC=$(jq -r .grpc "$T/ms.json")
"$KVC" ca init --out "$T/ca" >/dev/null
for s in a b c; do
    "$KVC" cert issue --ca "$T/ca" --site "site-$s" --name p1 --out "$T/$s.id" >/dev/null
    mkdir -p "$T/$s"
done
export HTTP_LISTEN=127.0.0.1:0
BACKENDS_YAML="    - {model: bert, grpc: \"127.0.0.1:$GRPC\", api: tfserving}" \
    write_config "$T/a.yaml" p1 site-a eu-west "$T/a" "$T/a.id" "$T/ca/federation.pub"
start_peer a "$T/a.yaml"
A_EP=$(jqs "$T/a.yaml" status .advertise)
A_KEY=$(jqs "$T/a.yaml" status .public_key)
for s in b c; do
    write_config "$T/$s.yaml" p1 "site-$s" eu-north "$T/$s" "$T/$s.id" "$T/ca/federation.pub" "$A_EP" "$A_KEY"
    start_peer "$s" "$T/$s.yaml"
done
for p in a b c; do eval "HTTP_$p=$(jqs "$T/$p.yaml" status .http)"; done
sites_fresh() { expect_jq "$1" metrics '(length == 3) and all(.[]; .up)'; }
for p in a b c; do poll 60 "$p sees all three sites" sites_fresh "$T/$p.yaml"; done

ids=$(seq -s, 1 500)
predict() { curl -sf -o /dev/null -XPOST "http://$HTTP_a/v1/models/bert:predict" -d "{\"instances\":[[$ids]]}"; }
site_a_requests() { # HTTP: site-a's bert requests in that peer's /federate
    curl -sf "http://$1/federate" |
        awk '/^kvc_proxy_requests_total\{site="site-a",.*model="bert"\}/ { n += $2 } END { print n + 0 }'
}

# --- (a) propagation ------------------------------------------------------------
times=""
rows=""
want=$(site_a_requests "$HTTP_a")
for round in 1 2 3 4 5; do
    for i in 1 2 3; do predict; done
    want=$((want + 3))
    t0=$(now_ms)
    tb="" tc=""
    while [ -z "$tb" ] || [ -z "$tc" ]; do
        t=$(now_ms)
        [ $((t - t0)) -lt 30000 ] || { echo "bench: round $round: no propagation in 30 s" >&2; exit 1; }
        [ -n "$tb" ] || { [ "$(site_a_requests "$HTTP_b")" -ge "$want" ] && tb=$(($(now_ms) - t0)); } || true
        [ -n "$tc" ] || { [ "$(site_a_requests "$HTTP_c")" -ge "$want" ] && tc=$(($(now_ms) - t0)); } || true
        [ -n "$tb" ] && [ -n "$tc" ] || sleep 0.05
    done
    all=$((tb > tc ? tb : tc))
    times="$times $all"
    rows="$rows| $round | $tb | $tc | $all |
"
done
med=$(printf '%s\n' $times | median)
echo "### (a) a change at site-a (3 predictions through its proxy) visible in every other peer's /federate"
echo
echo "3 sites, 1 peer each, loopback, lan profile; /federate polled every 50 ms; summaries are gossiped every 2 s."
echo
echo "| round | site-b ms | site-c ms | every peer ms |"
echo "|---|---|---|---|"
printf '%s' "$rows"
echo "| **median of 5** | | | **$med** (goal <= 5000: $(awk -v m="$med" 'BEGIN { print (m <= 5000) ? "met" : "MISSED" }'), $(awk -v m="$med" 'BEGIN { printf "%.2f", m / 5000 }') of the goal) |"
echo

# --- (c) cost of /metrics --------------------------------------------------------
get_times() { # PATH: 200 curl total times in ms, one per line
    for i in $(seq 1 200); do
        curl -s -o /dev/null -w '%{time_total}\n' "http://$HTTP_a$1"
    done | awk '{ print $1 * 1000 }'
}
get_times /v2/health/live >/dev/null # warm-up
base=$(get_times /v2/health/live | median)
met=$(get_times /metrics | median)
size=$(curl -sf "http://$HTTP_a/metrics" | wc -c)
series=$(curl -sf "http://$HTTP_a/metrics" | grep -vc '^#')
echo "### (c) cost of serving /metrics (site-a, $series samples, $size bytes)"
echo
echo "| endpoint | median of 200 GETs (curl time_total, ms) |"
echo "|---|---|"
echo "| /v2/health/live (baseline, same server) | $base |"
echo "| /metrics | $met |"
diff=$(awk -v a="$met" -v b="$base" 'BEGIN { printf "%.3f", a - b }')
echo "| **difference** | **$diff** (goal < 1 ms: $(awk -v d="$diff" 'BEGIN { print (d < 1) ? "met" : "MISSED" }'); ratio $(awk -v a="$met" -v b="$base" 'BEGIN { printf "%.2f", a / b }')x the baseline) |"
echo

# --- (b) size of the federated view ---------------------------------------------
echo "### (b) size of the federated view for 100 sites"
echo
"$build/tests/bench/bench_federate_size" "$T/fs"
echo
echo "| view | raw bytes | gzip -6 bytes (what /federate sends to a client that asks for gzip, as Prometheus does) | gzip under 100 KB |"
echo "|---|---|---|---|"
for f in 1x-idle 3x-idle 1x-traffic 3x-traffic; do
    raw=$(wc -c <"$T/fs-$f.txt")
    gz=$(gzip -6 -c "$T/fs-$f.txt" | wc -c)
    echo "| 100 sites, $f | $raw | $gz | $([ "$gz" -lt 100000 ] && echo met || echo MISSED) |"
done
