#!/bin/bash
# kvc-peer against HashiCorp Serf (issue 14): N real `serf agent` processes
# and N real kvc-peers on loopback, for N = 10 and 30 (KVCB_SERF_NS="10 30"),
# with the same failure-detection timing: Serf's lan profile is memberlist's
# DefaultLANConfig (probe interval 1 s, probe timeout 500 ms, suspicion mult
# 4 with the max timeout 6x the min, 3 indirect checks, retransmit mult 4,
# gossip every 200 ms to 3 nodes, push-pull every 30 s), and kvc gets the same
# values through federation.timing (kvc's suspicion max is 6x its min too).
# What still differs: memberlist expects SuspicionMult-2 = 2 confirmations
# to shorten a suspicion, kvc 3; Serf probes over UDP with a TCP fallback,
# kvc over CurveZMQ (TCP, encrypted and authenticated; Serf runs here
# without -encrypt, as it does by default).
#
# Each federation runs in its own network namespace (kvcbk-PID, kvcbs-PID)
# that holds only lo, so lo's byte counter in that namespace is exactly the
# traffic of that federation's agents (IP and TCP/UDP headers included, TCP
# ACKs of kvc's links too); bytes/s per agent = the counter's delta over the
# window / N. Both federations are up at once and are measured over the same
# window, so both see the same load on the shared cores.
#
# Per N, after every agent sees N members alive (and every kvc-peer has its
# N-1 links) and KVCB_SETTLE seconds (default 5) for the join gossip to
# drain: KVCB_WINDOW seconds (default 20) idle, per agent: RSS, PSS
# (/proc/PID/smaps_rollup), CPU % of one core (utime+stime from
# /proc/PID/stat over the window), bytes/s. Then one agent of each (the last
# started, not the seed) is killed with SIGKILL at the same instant, and
# every survivor is polled (kvc: `kvc members --json`, state "dead"; Serf:
# `serf members -status failed`) until it reports the victim, with a
# deadline: the first and the last survivor's time after the kill. A poller
# goes round the survivors that have not reported yet, so a time is late by
# at most one round (the round's length is printed as "poll round").
#
# Ports: every listener binds 127.0.0.1 port 0 (Serf's -bind and -rpc-addr
# take port 0 and advertise the port they got); the ports are then read
# from `ss` by process id, so no port is picked and released beforehand.
#
# Output: one Markdown table (kvc, Serf, kvc/Serf per figure and N), then
# one JSON line per N (prefixed "json: ") for the README.
# usage: tests/bench/bench_vs_serf.sh BUILD_DIR
# Needs root (ip netns), serf (Debian package serf; `ops/install-deps.sh
# --bench` installs it) and jq; otherwise prints "skipped: ..." and exits 0.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -euo pipefail
build=$(cd "${1:?usage: bench_vs_serf.sh BUILD_DIR}" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$here/../.." && pwd)
KVC=$build/kvc KVC_PEER=$build/kvc-peer
SERF=${KVCB_SERF:-/usr/bin/serf}
skip() {
    echo "bench_vs_serf: skipped: $*"
    exit 0
}
for b in "$KVC" "$KVC_PEER"; do
    [ -x "$b" ] || { echo "bench: $b not built" >&2; exit 1; }
done
[ -x "$SERF" ] || skip "needs serf (apt-get install serf, or ops/install-deps.sh --bench)"
command -v jq >/dev/null || skip "needs jq"
command -v nsenter >/dev/null || skip "needs nsenter (util-linux)"
[ "$(id -u)" = 0 ] || skip "needs root (one network namespace per federation)"

# --- driver: one child run per N, then the table -----------------------------
if [ "${2:-}" != "--one" ]; then
    out=$(mktemp /tmp/kvcb-serf.XXXXXX)
    trap 'rm -f "$out"' EXIT
    for n in ${KVCB_SERF_NS:-10 30}; do
        echo "bench_vs_serf: N=$n ..." >&2
        bash "$0" "$build" --one "$n" >>"$out"
    done
    if grep -q '^skipped' "$out"; then cat "$out"; exit 0; fi
    serf_pkg=$(dpkg-query -W -f='${Version}' serf 2>/dev/null || echo "?")
    echo "kvc-peer against serf agent (Debian serf $serf_pkg), same probe timing, loopback, 2 shared cores."
    echo "Medians over the agents; idle window $(jq -s '.[0].window_s' "$out") s; detection: SIGKILL of one agent, until every survivor reports it dead/failed."
    echo
    echo "| N | figure | kvc | serf | kvc / serf |"
    echo "|---|---|---|---|---|"
    jq -r '
      def r: if . == null then "-" else (. * 100 | round / 100) end;
      def ratio($a; $b): if $a == null or $b == null or $b == 0 then "-" else ($a / $b * 100 | round / 100) end;
      def row($what; $k): "| \(.n) | \($what) | \(.kvc[$k] | r) | \(.serf[$k] | r) | \(ratio(.kvc[$k]; .serf[$k])) |";
      row("RSS MB"; "rss_mb"), row("PSS MB"; "pss_mb"), row("RssAnon MB"; "rss_anon_mb"),
      row("CPU % of one core"; "cpu_pct"), row("CPU % of one core, max"; "cpu_pct_max"),
      row("bytes/s per agent (on lo, headers included)"; "bytes_per_s"),
      row("threads"; "threads"), row("fds"; "fds"),
      row("detection ms, first survivor (its log)"; "detect_first_ms"),
      row("detection ms, every survivor (their logs)"; "detect_all_ms"),
      row("detection ms, every survivor (CLI poll)"; "cli_detect_all_ms"),
      row("CLI poll round ms, max"; "poll_round_ms")' "$out"
    echo
    sed 's/^/json: /' "$out"
    exit 0
fi

# --- one N --------------------------------------------------------------------
N=${3:?}
WINDOW=${KVCB_WINDOW:-20}
SETTLE=${KVCB_SETTLE:-5}
. "$SRC/tests/integration/lib.sh"
. "$here/fed_lib.sh"
exec 3>&1 1>&2 # progress to stderr; the JSON line goes to fd 3
trap 'cleanup; ns_cleanup' EXIT
trap 'exit 130' INT TERM
KVC_LOG_LEVEL=warn
KNS=kvcbk$$ SNS=kvcbs$$
if ! ns_make "$KNS" || ! ns_make "$SNS"; then
    echo "skipped: ip netns add failed (needs root)" >&3
    exit 0
fi

# kvc with memberlist's DefaultLANConfig timing.
FEDERATION_YAML='  timing: {probe_interval_ms: 1000, probe_timeout_ms: 500, suspicion_mult: 4, indirect_probes: 3, retransmit_mult: 4, gossip_interval_ms: 200, gossip_nodes: 3, pushpull_interval_ms: 30000}'
t_start=$(now_ms)
kvc_federation k "$N" "$KNS"
read -r -a KPIDS <<<"$KF_PIDS"

# serf in its namespace; S_G[i] gossip port (UDP+TCP), S_R[i] RPC port (TCP).
S_PIDS=() S_G=() S_R=()
in_sns() { nsenter --net="/run/netns/$SNS" "$@"; }
serf_ports() { # I PID: finds the two listeners of that agent
    local i=$1 pid=$2 g r
    g=$(in_sns ss -H -lnup | awk -v p="pid=$pid," 'index($0, p) { sub(/.*:/, "", $4); print $4; exit }')
    [ -n "$g" ] || return 1
    r=$(in_sns ss -H -lntp | awk -v p="pid=$pid," -v g="$g" 'index($0, p) { sub(/.*:/, "", $4); if ($4 != g) { print $4; exit } }')
    [ -n "$r" ] || return 1
    S_G[i]=$g
    S_R[i]=$r
}
serf_q() { in_sns "$SERF" members -rpc-addr "127.0.0.1:${S_R[$1]}" "${@:2}"; }
for i in $(seq 1 "$N"); do
    # log level info: EventMemberFailed (the detection watcher reads it) is INFO
    args=(agent -node "s$i" -bind 127.0.0.1:0 -rpc-addr 127.0.0.1:0 -profile lan -log-level info)
    [ "$i" -gt 1 ] && args+=(-join "127.0.0.1:${S_G[1]}")
    # nsenter itself, not the in_sns function: $! must be serf's own pid
    nsenter --net="/run/netns/$SNS" "$SERF" "${args[@]}" >>"$T/s$i.log" 2>&1 &
    S_PIDS[i]=$!
    KVC_PIDS="$KVC_PIDS $!"
    poll 20 "serf s$i listens" serf_ports "$i" "${S_PIDS[i]}"
done

kvc_all() { local i; for i in $(seq 1 "$N"); do kvc_converged "$T/k$i.yaml" "$N" || return 1; done; }
serf_all() { local i; for i in $(seq 1 "$N"); do [ "$(serf_q "$i" -status alive | wc -l)" = "$N" ] || return 1; done; }
poll 120 "every kvc-peer sees $N alive and has $((N - 1)) links" kvc_all
poll 120 "every serf agent sees $N alive" serf_all
echo "N=$N: both federations converged in $(($(now_ms) - t_start)) ms; settling ${SETTLE} s" >&2
sleep "$SETTLE" # a fixed warm-up, not a wait for a condition

# --- idle window ---------------------------------------------------------------
sample_begin "$T/k.cpu" "${KPIDS[@]}"
sample_begin "$T/s.cpu" "${S_PIDS[@]:1}"
kb0=$(lo_tx_bytes "${KPIDS[0]}") sb0=$(lo_tx_bytes "${S_PIDS[1]}")
w0=$(now_ms)
sleep "$WINDOW" # the measurement window
kb1=$(lo_tx_bytes "${KPIDS[0]}") sb1=$(lo_tx_bytes "${S_PIDS[1]}")
secs=$(awk -v a="$w0" -v b="$(now_ms)" 'BEGIN { printf "%.3f", (b - a) / 1000 }')
sample_end "$T/k.cpu" >"$T/k.idle"
sample_end "$T/s.cpu" >"$T/s.idle"

# --- detection -----------------------------------------------------------------
victim=$N
deadline=120000 # ms after the kill
# (1) The survivors' own logs, read every 50 ms: kvc-peer logs "member X is
# dead" (WARN) and serf "EventMemberFailed: X" (INFO) in the function that
# changes the member's state, so the first time a survivor's log has the
# line is when its state changed, to within 50 ms and one grep. Serf's own
# timestamps are whole seconds, so the time is the watcher's, for both.
watch() { # KIND PATTERN OUT
    local kind=$1 pat=$2 out=$3 f i t
    local -A seen=()
    local -a logs=()
    for i in $(seq 1 $((N - 1))); do logs+=("$T/$kind$i.log"); done
    : >"$out"
    while [ ${#seen[@]} -lt $((N - 1)) ] && [ $(($(now_ms) - t_kill)) -lt "$deadline" ]; do
        t=$(now_ms)
        for f in $(grep -lF -- "$pat" "${logs[@]}" || true); do
            i=${f##*/$kind}
            i=${i%.log}
            [ -n "${seen[$i]:-}" ] && continue
            seen[$i]=1
            echo "$i $((t - t_kill))" >>"$out"
        done
        sleep 0.05 # the watcher's poll period
    done
}
# (2) The CLI, as an operator would ask: each survivor's `members` until it
# reports the victim dead/failed. No fork in the poll but the CLI itself
# (and nsenter for serf); one poller per federation going round the
# survivors that have not reported yet, so a time is late by up to one round
# ("round" lines): on 2 shared cores a CLI call costs tens of ms, which is
# why (1) gives the detection figures and (2) confirms them.
k_dead() {
    local out
    out=$("$KVC" --config "$T/k$1.yaml" --timeout 1000 members --json 2>/dev/null) || return 1
    [[ $out =~ \"id\":\"bench/k$victim\"[^}]*\"state\":\"dead\" ]]
}
s_dead() { [ -n "$(serf_q "$1" -status failed -name "^s$victim\$" 2>/dev/null)" ]; }
detect() { # KIND OUT: "I MS" per survivor, "round MS" per round
    local kind=$1 out=$2 i r0 t
    local -a pending left
    pending=($(seq 1 $((N - 1))))
    : >"$out"
    while [ ${#pending[@]} -gt 0 ] && [ $(($(now_ms) - t_kill)) -lt "$deadline" ]; do
        left=()
        r0=$(now_ms)
        for i in "${pending[@]}"; do
            if "${kind}_dead" "$i"; then
                t=$(now_ms)
                echo "$i $((t - t_kill))" >>"$out"
            else
                left+=("$i")
            fi
        done
        echo "round $(($(now_ms) - r0))" >>"$out"
        pending=("${left[@]+"${left[@]}"}")
    done
}
kill -9 "${KPIDS[$((victim - 1))]}" "${S_PIDS[victim]}"
t_kill=$(now_ms)
dets=()
watch k "member bench/k$victim is dead" "$T/k.log.det" &
dets+=($!)
watch s "EventMemberFailed: s$victim " "$T/s.log.det" &
dets+=($!)
detect k "$T/k.det" &
dets+=($!)
detect s "$T/s.det" &
dets+=($!)
wait "${dets[@]}"

# --- one JSON line ---------------------------------------------------------------
figures() { # IDLE LOGDET CLIDET BYTES0 BYTES1
    local idle=$1 ldet=$2 det=$3 reported lreported
    reported=$(grep -vc '^round' "$det" || true)
    lreported=$(grep -c . "$ldet" || true)
    jq -n \
        --argjson rss "$(col "$idle" 3 | median)" --argjson pss "$(col "$idle" 4 | median)" \
        --argjson anon "$(col "$idle" 5 | median)" --argjson rssmax "$(col "$idle" 3 | maxof)" \
        --argjson cpu "$(col "$idle" 2 | median)" --argjson cpumax "$(col "$idle" 2 | maxof)" \
        --argjson thr "$(col "$idle" 6 | median)" --argjson fds "$(col "$idle" 7 | median)" \
        --argjson bytes "$(awk -v a="$4" -v b="$5" -v n="$N" -v s="$secs" 'BEGIN { printf "%.1f", (b - a) / n / s }')" \
        --argjson first "$(awk '{ print $2 }' "$ldet" | sort -n | head -n 1 | grep . || echo null)" \
        --argjson all "$(if [ "$lreported" = $((N - 1)) ]; then awk '{ print $2 }' "$ldet" | maxof; else echo null; fi)" \
        --argjson clifirst "$(grep -v '^round' "$det" | awk '{ print $2 }' | sort -n | head -n 1 | grep . || echo null)" \
        --argjson cliall "$(if [ "$reported" = $((N - 1)) ]; then grep -v '^round' "$det" | awk '{ print $2 }' | maxof; else echo null; fi)" \
        --argjson lreported "$lreported" \
        --argjson round "$(awk '$1 == "round" { print $2 }' "$det" | maxof | grep . || echo null)" \
        --argjson reported "$reported" \
        '{rss_mb: ($rss / 1024), rss_mb_max: ($rssmax / 1024), pss_mb: ($pss / 1024), rss_anon_mb: ($anon / 1024),
          cpu_pct: $cpu, cpu_pct_max: $cpumax, bytes_per_s: $bytes, threads: $thr, fds: $fds,
          detect_first_ms: $first, detect_all_ms: $all, survivors_logging: $lreported,
          cli_detect_first_ms: $clifirst, cli_detect_all_ms: $cliall, survivors_reporting: $reported, poll_round_ms: $round}'
}
jq -cn --argjson n "$N" --argjson w "$secs" \
    --argjson k "$(figures "$T/k.idle" "$T/k.log.det" "$T/k.det" "$kb0" "$kb1")" \
    --argjson s "$(figures "$T/s.idle" "$T/s.log.det" "$T/s.det" "$sb0" "$sb1")" \
    '{bench: "vs_serf", n: $n, window_s: $w, kvc: $k, serf: $s}' >&3
