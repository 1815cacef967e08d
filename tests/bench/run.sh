#!/bin/sh
# make bench: runs every benchmark against the release build in BUILD_DIR.
# Benchmarks print Markdown tables with ratios against a baseline measured
# in the same run; the README's Performance section quotes them.
set -eu
build=${1:?release build dir}
here=$(cd "$(dirname "$0")" && pwd)
ran=0
for bin in "$build"/tests/bench/bench_*; do
    [ -x "$bin" ] || continue
    echo "== $(basename "$bin")"
    "$bin"
    ran=1
done
for script in "$here"/bench_*.sh; do
    [ -f "$script" ] || continue
    echo "== $(basename "$script")"
    sh "$script" "$build"
    ran=1
done
[ "$ran" = 1 ] || echo "bench: no benchmarks yet"
