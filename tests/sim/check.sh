#!/bin/sh
# Runs kvc-sim with the given arguments and checks its JSON report with jq.
# usage: check.sh KVC_SIM "EXPECTATIONS" ARGS...
#   converged  every live peer agrees on the membership at the end
#   fp0        no live member was ever declared dead
#   detected   every crashed peer was suspected and then marked dead by all
# kvc-sim itself exits non-zero on any invariant violation.
set -eu
sim=$1
expect=$2
shift 2
out=$("$sim" "$@") || { echo "kvc-sim failed (exit $?): $out" >&2; exit 1; }
echo "$out"
fail=0
check() {
    if [ "$(printf '%s' "$out" | jq -r "$1")" != true ]; then
        echo "FAILED: $2 ($1)" >&2
        fail=1
    fi
}
check '.invariants_ok' "invariants"
check '.dissemination_ms.incomplete == 0' "every update reached every live peer"
for e in $expect; do
    case $e in
    converged) check '.converged' "membership converged" ;;
    fp0) check '.false_positives == 0' "no false positives" ;;
    detected) check '.detection_ms.missing == 0 and .detection_ms.all > 0' "crashes detected" ;;
    *) echo "check.sh: unknown expectation $e" >&2; exit 2 ;;
    esac
done
exit $fail
