#!/bin/sh
# The include arrows of DESIGN.md's layout, checked on every source file:
#
#   tests -> peer -> proxy -> federation -> proto
#
# A file may include headers of its own layer and of layers to its right,
# never to its left: federation/ (sans-IO cores and base.h) knows nothing
# of the proxy, the daemon or the tests; the proxy knows nothing of the
# daemon. System headers (<...>) are not checked. Prints every crossing
# as FILE:LINE: and exits 1 if there is one.
set -eu
if [ "${1:-}" = --self-test ]; then # the check must catch a wrong arrow
    t=$(mktemp -d)
    trap 'rm -rf "$t"' EXIT
    mkdir -p "$t/federation" "$t/proxy" "$t/peer" "$t/tests"
    printf '#include "base.h"\n' >"$t/proxy/ok.c"
    : >"$t/federation/base.h"
    : >"$t/proxy/proxy.h"
    printf '#include <stdio.h>\n#include "base.h"\n#include "proxy.h"\n' >"$t/federation/swim.c"
    out=$("$0" "$t" 2>&1) && { echo "self-test: a federation -> proxy include passed"; exit 1; }
    echo "$out" | grep -q '^federation/swim.c:3: federation/ includes proxy/proxy.h' ||
        { echo "self-test: wrong report: $out"; exit 1; }
    [ "$(echo "$out" | wc -l)" = 1 ] || { echo "self-test: extra reports: $out"; exit 1; }
    echo "check_layers self-test: the wrong arrow was reported, the right ones were not"
    exit 0
fi
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$root"

rank() { # LAYER -> number; higher may include lower
    case $1 in
    proto) echo 0 ;;
    federation) echo 1 ;;
    proxy) echo 2 ;;
    peer) echo 3 ;;
    tests) echo 4 ;;
    *) echo 9 ;;
    esac
}

# Which layer a quoted header belongs to: the folder that holds it.
owner() {
    case $1 in
    *.pb-c.h | *.pb.h) echo proto; return ;;
    esac
    for d in federation proxy peer; do
        [ -f "$d/$1" ] && { echo "$d"; return; }
    done
    if find tests -name "$1" -print -quit | grep -q .; then echo tests; return; fi
    echo unknown
}

bad=0
checked=0
if [ -d .git ] || [ -f .git ]; then
    files=$(git ls-files 'federation/*.[ch]' 'proxy/*.[ch]' 'peer/*.[ch]' 'tests/*.[ch]' 'tests/*.cc')
else
    files=$(find federation proxy peer tests -name '*.[ch]' -o -name '*.cc')
fi
for f in $files; do
    layer=${f%%/*}
    mine=$(rank "$layer")
    checked=$((checked + 1))
    grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$f" | while IFS= read -r line; do
        n=${line%%:*}
        hdr=$(printf '%s\n' "$line" | sed 's/.*include[[:space:]]*"\([^"]*\)".*/\1/')
        hdr=${hdr##*/}
        o=$(owner "$hdr")
        if [ "$o" = unknown ]; then
            echo "$f:$n: includes \"$hdr\", which no layer holds"
            continue
        fi
        if [ "$(rank "$o")" -gt "$mine" ]; then
            echo "$f:$n: $layer/ includes $o/$hdr: the arrow is tests -> peer -> proxy -> federation -> proto"
        fi
    done >>"${TMPDIR:-/tmp}/kvc-layers.$$"
done
if [ -s "${TMPDIR:-/tmp}/kvc-layers.$$" ]; then
    cat "${TMPDIR:-/tmp}/kvc-layers.$$"
    bad=1
fi
rm -f "${TMPDIR:-/tmp}/kvc-layers.$$"
[ "$checked" -gt 0 ] || { echo "check_layers: no sources found under $root" >&2; exit 1; }
[ "$bad" = 0 ] && echo "check_layers: $checked files, every include points down the arrows"
exit "$bad"
