#!/bin/sh
# make fuzz: runs every libFuzzer target built in BUILD_DIR for SECONDS each,
# keeping the grown corpus in BUILD_DIR/tests/fuzz/corpus/<target>/.
set -eu
build=${1:?build dir}
secs=${2:-60}
here=$(cd "$(dirname "$0")" && pwd)
found=0
for bin in "$build"/tests/fuzz/fuzz_*; do
    [ -x "$bin" ] || continue
    found=1
    name=$(basename "$bin")
    corpus="$build/tests/fuzz/corpus/$name"
    mkdir -p "$corpus"
    seeds=""
    [ -d "$here/seeds/$name" ] && seeds="$here/seeds/$name"
    # seeds with key material are generated into the build tree (never in git)
    [ -d "$build/tests/fuzz/seeds-generated/$name" ] &&
        seeds="$seeds $build/tests/fuzz/seeds-generated/$name"
    echo "== $name ($secs s)"
    # shellcheck disable=SC2086
    "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1 "$corpus" $seeds
done
[ "$found" = 1 ] || { echo "fuzz: no targets in $build (configure with -DKVC_FUZZ=ON)" >&2; exit 1; }
