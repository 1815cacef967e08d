#!/bin/bash
# Footprint of an idle kvc-peer in a big federation (issue 14 goal: in a
# 100-member federation an idle peer stays under 10 MB RSS and 0.5% of one
# core). N kvc-peers (default 100) in one federation on loopback with the
# default (lan) profile, each seeded with the first; once every peer sees N
# members alive and has its N-1 links, KVCB_SETTLE seconds (default 10) for
# the join gossip to drain, then a KVCB_WINDOW-second window (default 30).
# Per peer: RSS, PSS (/proc/PID/smaps_rollup: shared library pages divided
# among the processes mapping them), RssAnon (the peer's own heap and
# stacks), CPU % of one core (utime+stime from /proc/PID/stat over the
# window), threads, fds. Median and max over the peers. As root, the
# federation runs in a network namespace of its own (kvcbi-PID, lo only) and
# lo's byte counter there gives bytes/s per peer (headers included);
# otherwise that column reads "-".
# Output: a Markdown table, then one JSON line (prefixed "json: ").
# usage: tests/bench/bench_idle.sh BUILD_DIR [N]
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -euo pipefail
build=$(cd "${1:?usage: bench_idle.sh BUILD_DIR [N]}" && pwd)
N=${2:-${KVCB_IDLE_N:-100}}
WINDOW=${KVCB_WINDOW:-30}
SETTLE=${KVCB_SETTLE:-10}
here=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$here/../.." && pwd)
KVC=$build/kvc KVC_PEER=$build/kvc-peer
for b in "$KVC" "$KVC_PEER"; do
    [ -x "$b" ] || { echo "bench: $b not built" >&2; exit 1; }
done
command -v jq >/dev/null || { echo "bench_idle: skipped: needs jq"; exit 0; }
. "$SRC/tests/integration/lib.sh"
. "$here/fed_lib.sh"
trap 'cleanup; ns_cleanup' EXIT
trap 'exit 130' INT TERM
KVC_LOG_LEVEL=warn
# Each peer holds ~3 fds per member (its link's TCP connection, the
# accepted one, ZeroMQ mailboxes): leave room above the default 1024.
ulimit -n 65536 2>/dev/null || true

NS=""
if [ "$(id -u)" = 0 ] && ns_make "kvcbi$$"; then NS=kvcbi$$; fi
t0=$(now_ms)
kvc_federation p "$N" "$NS"
read -r -a PIDS <<<"$KF_PIDS"
all_converged() { local i; for i in $(seq 1 "$N"); do kvc_converged "$T/p$i.yaml" "$N" || return 1; done; }
poll 300 "every peer sees $N alive and has $((N - 1)) links" all_converged
echo "bench_idle: $N peers converged in $(($(now_ms) - t0)) ms; settling $SETTLE s" >&2
sleep "$SETTLE" # a fixed warm-up, not a wait for a condition

sample_begin "$T/cpu" "${PIDS[@]}"
b0=""
[ -n "$NS" ] && b0=$(lo_tx_bytes "${PIDS[0]}")
w0=$(now_ms)
sleep "$WINDOW" # the measurement window
b1=""
[ -n "$NS" ] && b1=$(lo_tx_bytes "${PIDS[0]}")
secs=$(awk -v a="$w0" -v b="$(now_ms)" 'BEGIN { printf "%.3f", (b - a) / 1000 }')
sample_end "$T/cpu" >"$T/idle"
# Still a federation of N at the end of the window (no false suspicion).
alive_end=$(jqs "$T/p1.yaml" status .members_by_state.alive)

bytes=null
[ -n "$NS" ] && bytes=$(awk -v a="$b0" -v b="$b1" -v n="$N" -v s="$secs" 'BEGIN { printf "%.1f", (b - a) / n / s }')
stat() { # COLUMN -> {"median":..,"max":..}
    jq -n --argjson m "$(col "$T/idle" "$1" | median)" --argjson x "$(col "$T/idle" "$1" | maxof)" '{median: $m, max: $x}'
}
json=$(jq -cn --argjson n "$N" --argjson w "$secs" --argjson alive "$alive_end" \
    --argjson rss "$(stat 3)" --argjson pss "$(stat 4)" --argjson anon "$(stat 5)" \
    --argjson cpu "$(stat 2)" --argjson thr "$(stat 6)" --argjson fds "$(stat 7)" \
    --argjson bytes "$bytes" \
    '{bench: "idle", n: $n, window_s: $w, alive_at_end: $alive,
      rss_kb: $rss, pss_kb: $pss, rss_anon_kb: $anon, cpu_pct: $cpu,
      threads: $thr, fds: $fds, bytes_per_s_per_peer: $bytes}')
echo "Idle kvc-peer in a federation of $N on loopback (lan profile), ${secs} s window, 2 shared cores; median and max over the peers."
echo
echo "| figure | median | max | goal |"
echo "|---|---|---|---|"
printf '%s' "$json" | jq -r '
  def mb: . / 1024 * 100 | round / 100;
  "| RSS MB | \(.rss_kb.median | mb) | \(.rss_kb.max | mb) | < 10 |",
  "| PSS MB | \(.pss_kb.median | mb) | \(.pss_kb.max | mb) | - |",
  "| RssAnon MB | \(.rss_anon_kb.median | mb) | \(.rss_anon_kb.max | mb) | - |",
  "| CPU % of one core | \(.cpu_pct.median) | \(.cpu_pct.max) | < 0.5 |",
  "| threads | \(.threads.median) | \(.threads.max) | - |",
  "| fds | \(.fds.median) | \(.fds.max) | - |",
  "| bytes/s per peer (on lo, headers included) | \(.bytes_per_s_per_peer // "-") | - | - |",
  "| members alive at the end (seen by p1) | \(.alive_at_end) | - | \(.n) |"'
echo
echo "json: $json"
