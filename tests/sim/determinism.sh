#!/bin/sh
# Runs kvc-sim twice with the same arguments and requires byte-identical
# output, then once with another seed and requires a different one (so the
# seed really drives the run).
set -eu
sim=$1
shift
a=$("$sim" "$@")
b=$("$sim" "$@")
if [ "$a" != "$b" ]; then
    echo "same seed, different output:" >&2
    echo "$a" >&2
    echo "$b" >&2
    exit 1
fi
c=$("$sim" "$@" --seed 12345)
if [ "$a" = "$c" ]; then
    echo "a different seed gave identical output" >&2
    exit 1
fi
echo "$a"
