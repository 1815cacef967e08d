#!/bin/sh
# Membership benchmarks (issue 3 goals): runs the goal scenarios with a
# release kvc-sim and prints one Markdown table. Not a timed test: the
# figures are simulated time, identical on every machine for the same seed.
# usage: tests/bench/bench_membership.sh BUILD_DIR   (e.g. build/release)
set -eu
build=${1:?usage: bench_membership.sh BUILD_DIR}
sim="$build/kvc-sim"
[ -x "$sim" ] || { echo "bench: $sim not built (cmake --build $build --target kvc-sim)" >&2; exit 1; }
command -v jq >/dev/null || { echo "bench: jq is required" >&2; exit 1; }

row() {
    label=$1
    shift
    start=$(date +%s)
    out=$("$sim" "$@" --json) || { echo "| $label | kvc-sim failed: $out |" ; return; }
    secs=$(( $(date +%s) - start ))
    printf '%s' "$out" | jq -r --arg l "$label" --arg s "$secs" '"| \($l) | \(.dissemination_ms.p50) / \(.dissemination_ms.p99) / \(.dissemination_ms.max) | \(if .detection_ms.first < 0 then "-" else "\(.detection_ms.first) / \(.detection_ms.all)" end) | \(.false_positives) | \(.bytes_per_peer_per_s) | \(.msgs_per_peer_per_s) | \(.converged) | \($s) s |"'
}

echo "| scenario | dissemination ms p50 / p99 / max | detection ms first / all | false positives | bytes/peer/s | msgs/peer/s | converged | wall |"
echo "|---|---|---|---|---|---|---|---|"
row "lan N=10, 1% loss, 1 crash, 120 s" --peers 10 --profile lan --loss 0.01 --duration 120 --crash 1 --seed 1
row "lan N=100, 1% loss, 1 crash, 120 s" --peers 100 --profile lan --loss 0.01 --duration 120 --crash 1 --seed 1
row "lan N=1000, 1% loss, 1 crash, 120 s" --peers 1000 --profile lan --loss 0.01 --duration 120 --crash 1 --seed 1
row "lan N=1000, 1% loss, 3 crashes, 600 s" --peers 1000 --profile lan --loss 0.01 --duration 600 --crash 3 --seed 2
row "lan N=1000, 10% loss, 600 s (false positives)" --peers 1000 --profile lan --loss 0.10 --duration 600 --seed 3
row "wan 100 sites x 3, 50-150 ms RTT, 5% loss, 1 crash, 300 s" --peers 300 --sites 100 --profile wan --loss 0.05 --duration 300 --crash 1 --seed 4

# Baseline measured in the same run: memberlist's default LAN parameters on
# the same simulator, network, loss and seed as the N=1000 1% row above.
echo
echo "Against a baseline in the same run (memberlist's DefaultLANConfig timings, same simulator, N=1000, 1% loss, 1 crash, seed 1):"
echo
ours=$("$sim" --peers 1000 --profile lan --loss 0.01 --duration 120 --crash 1 --seed 1 --json)
base=$("$sim" --peers 1000 --profile memberlist --loss 0.01 --duration 120 --crash 1 --seed 1 --json)
echo "| metric | kvc lan | memberlist defaults | ratio (kvc / memberlist) |"
echo "|---|---|---|---|"
for m in "dissemination_ms.max" "detection_ms.first" "detection_ms.all" "bytes_per_peer_per_s"; do
    a=$(printf '%s' "$ours" | jq ".$m")
    b=$(printf '%s' "$base" | jq ".$m")
    r=$(jq -n --argjson a "$a" --argjson b "$b" 'if $b == 0 then "-" else ($a / $b * 100 | round / 100) end')
    echo "| $m | $a | $b | $r |"
done
