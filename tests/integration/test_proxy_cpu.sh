#!/bin/bash
# proxy.cpu (issue 18, forwarding overhead): a peer started with proxy.cpu
# N runs its HTTP loop thread ("kvc-http") and ZeroMQ's I/O thread
# ("ZMQbg/IO/0") on CPU N only, and its other threads where the kernel
# likes; a CPU this machine lacks is refused at start with a one-line error
# and exit 2; the default pins nothing.
set -euo pipefail
KVC=$1 KVC_PEER=$2
. "$(dirname "$0")/lib.sh"
NCPU=$(nproc)
LAST=$((NCPU - 1))
"$KVC" ca init --out "$T/ca" >/dev/null
"$KVC" cert issue --ca "$T/ca" --site site-a --name p1 --out "$T/a.id" >/dev/null
mkdir -p "$T/a" "$T/b"
export HTTP_LISTEN=127.0.0.1:0
write_config "$T/a.yaml" p1 site-a eu "$T/a" "$T/a.id" "$T/ca/federation.pub"
cp "$T/a.yaml" "$T/free.yaml"
printf 'proxy:\n  cpu: %s\n' "$LAST" >>"$T/a.yaml"

# allowed CPUS of PID's thread named NAME ("" when it has none)
thread_cpus() {
    local t
    for t in /proc/"$1"/task/*; do
        if [ "$(cat "$t/comm")" = "$2" ]; then
            awk '/^Cpus_allowed_list:/ { print $2 }' "$t/status"
            return 0
        fi
    done
    return 1
}
start_peer a "$T/a.yaml"
poll 10 "a's HTTP loop thread is there" thread_cpus "$PID_a" kvc-http
poll 10 "a's ZeroMQ I/O thread is there" thread_cpus "$PID_a" ZMQbg/IO/0
[ "$(thread_cpus "$PID_a" kvc-http)" = "$LAST" ] ||
    fail "the HTTP loop may run on CPUs $(thread_cpus "$PID_a" kvc-http), not $LAST only"
[ "$(thread_cpus "$PID_a" ZMQbg/IO/0)" = "$LAST" ] ||
    fail "ZeroMQ's I/O thread may run on CPUs $(thread_cpus "$PID_a" ZMQbg/IO/0), not $LAST only"
ALL=$(awk '/^Cpus_allowed_list:/ { print $2 }' /proc/"$PID_a"/status)
[ "$ALL" != "$LAST" ] || [ "$NCPU" = 1 ] || fail "the main thread was pinned too ($ALL)"
curl -sf "http://$(jqs "$T/a.yaml" status .http)/v2/health/live" >/dev/null || fail "a does not serve HTTP"
kill "$PID_a"
wait "$PID_a" 2>/dev/null || true
echo "proxy.cpu $LAST: kvc-http and ZMQbg/IO/0 on CPU $LAST, the main thread on $ALL"

# the default: nothing pinned
start_peer b "$T/free.yaml"
poll 10 "b's HTTP loop thread is there" thread_cpus "$PID_b" kvc-http
[ "$(thread_cpus "$PID_b" kvc-http)" = "$ALL" ] ||
    fail "without proxy.cpu the HTTP loop may run on $(thread_cpus "$PID_b" kvc-http) only, not $ALL"
kill "$PID_b"
wait "$PID_b" 2>/dev/null || true

# a CPU this machine lacks
sed "s/cpu: $LAST/cpu: $NCPU/" "$T/a.yaml" >"$T/bad.yaml"
rc=0
"$KVC_PEER" --config "$T/bad.yaml" >"$T/bad.out" 2>"$T/bad.err" || rc=$?
[ "$rc" = 2 ] || fail "proxy.cpu $NCPU: exit $rc, not 2"
grep -q "proxy.cpu: $NCPU, but this machine's CPUs are 0..$LAST" "$T/bad.err" ||
    fail "proxy.cpu $NCPU: stderr says $(cat "$T/bad.err")"
echo "test_proxy_cpu: ok"
