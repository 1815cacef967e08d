# Shared helpers for the integration tests: process bookkeeping, polling
# with a deadline (never a bare sleep-and-hope), JSON assertions with jq.
# Sourced by each test; expects KVC and KVC_PEER set.

KVC_PIDS=""
T=$(mktemp -d /tmp/kvc-it.XXXXXX)

cleanup() {
    for p in $KVC_PIDS; do kill -TERM "$p" 2>/dev/null || true; done
    for p in $KVC_PIDS; do wait "$p" 2>/dev/null || true; done
    if [ "${KVC_KEEP:-0}" = 1 ]; then echo "kept $T" >&2; else rm -rf "$T"; fi
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    for f in "$T"/*.yaml; do
        [ -f "$f" ] || continue
        echo "---- status of $f: $("$KVC" --config "$f" --timeout 500 status --json 2>&1)" >&2
    done
    for f in "$T"/*.log; do
        [ -f "$f" ] || continue
        echo "---- $f (last 30 lines)" >&2
        tail -n 30 "$f" >&2
    done
    exit 1
}

# poll SECONDS DESCRIPTION CMD...: runs CMD every 100 ms until it succeeds.
poll() {
    local secs=$1 what=$2
    shift 2
    local deadline=$(($(date +%s%N) / 1000000 + secs * 1000))
    while :; do
        if "$@" >/dev/null 2>&1; then return 0; fi
        if [ $(($(date +%s%N) / 1000000)) -ge "$deadline" ]; then
            fail "timed out after ${secs}s waiting for: $what"
        fi
        sleep 0.1
    done
}

# write_config FILE NAME SITE REGION DATA_DIR IDENTITY TRUST [SEED_EP SEED_KEY]...
# BACKENDS_YAML, if set, is the list under proxy.backends (already indented);
# PROXY_YAML, if set with it, more proxy keys (indented two spaces);
# FEDERATION_YAML, if set, more federation keys (indented two spaces);
# ROUTING_YAML, if set, printed verbatim after the proxy section (a whole
# section: ROUTING_YAML=$'routing:\n  accelerator: nvidia\n  accelerator_count: 1').
write_config() {
    local file=$1 name=$2 site=$3 region=$4 dir=$5 id=$6 trust=$7
    shift 7
    {
        echo "peer:"
        echo "  name: $name"
        echo "  site: $site"
        echo "  region: $region"
        echo "  data_dir: $dir"
        echo "  credential: $id"
        echo "federation:"
        echo "  trust: $trust"
        echo "  listen: tcp://127.0.0.1:0"
        if [ -n "${REVOKED:-}" ]; then echo "  revoked: [$REVOKED]"; fi
        if [ -n "${FEDERATION_YAML:-}" ]; then echo "$FEDERATION_YAML"; fi
        if [ $# -gt 0 ]; then
            echo "  seeds:"
            while [ $# -ge 2 ]; do
                echo "    - endpoint: $1"
                echo "      key: $2"
                shift 2
            done
        fi
        echo "control:"
        echo "  endpoint: ipc://$dir/control.sock"
        echo "http:"
        echo "  listen: \"${HTTP_LISTEN:-}\""
        if [ -n "${BACKENDS_YAML:-}" ]; then
            echo "proxy:"
            echo "  backends:"
            echo "$BACKENDS_YAML"
            if [ -n "${PROXY_YAML:-}" ]; then echo "$PROXY_YAML"; fi
        fi
        if [ -n "${ROUTING_YAML:-}" ]; then echo "$ROUTING_YAML"; fi
        echo "log:"
        echo "  level: ${KVC_LOG_LEVEL:-info}"
    } >"$file"
}

# start_peer NAME CONFIG: starts kvc-peer in the background, logs to $T/NAME.log
start_peer() {
    "$KVC_PEER" --config "$2" >>"$T/$1.log" 2>&1 &
    local pid=$!
    KVC_PIDS="$KVC_PIDS $pid"
    eval "PID_$1=$pid"
    poll 20 "$1 answers on its control socket" "$KVC" --config "$2" status
}

# jqs CONFIG COMMAND FILTER: the jq result of `kvc --config CONFIG COMMAND --json`
jqs() {
    "$KVC" --config "$1" "$2" --json | jq -r "$3"
}

# expect_jq CONFIG COMMAND FILTER: FILTER (a jq boolean) is true now
expect_jq() {
    [ "$(jqs "$1" "$2" "$3")" = "true" ]
}

# listen_port PID: prints the TCP port of the one socket PID listens on, read
# from /proc/net/tcp{,6} by the inodes of PID's open sockets; fails while it
# has none (so it can be polled) and when it has several. For servers that
# bind port 0 but do not report where (Prometheus), so no test picks a port
# for them and races other tests for it.
listen_port() {
    local pid=$1 inodes hex n=0 port=""
    inodes=" $(find "/proc/$pid/fd" -lname 'socket:\[*\]' -printf '%l\n' 2>/dev/null |
        sed 's/^socket:\[\([0-9]*\)\]$/\1/' | tr '\n' ' ') "
    for hex in $(awk -v want="$inodes" 'FNR > 1 && $4 == "0A" && index(want, " " $10 " ") {
                     n = split($2, a, ":"); print a[n] }' /proc/net/tcp /proc/net/tcp6 | sort -u); do
        port=$((16#$hex))
        n=$((n + 1))
    done
    if [ "$n" -gt 1 ]; then
        echo "listen_port: pid $pid listens on $n ports" >&2
        return 1
    fi
    [ -n "$port" ] && echo "$port"
}

# refusing_port VAR: sets VAR to a loopback TCP port that refuses every
# connection (RST) for the rest of the test: a helper process binds
# 127.0.0.1:0 and holds the socket without listen(). Held, the port cannot be
# handed to anyone else, unlike a port bound and closed again.
refusing_port() {
    local out="$T/refusing.$1" py=/usr/bin/python3
    [ -x "$py" ] || py=python3
    "$py" -c 'import signal, socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
signal.pause()' >"$out" &
    KVC_PIDS="$KVC_PIDS $!"
    poll 10 "a held, refusing port for $1" test -s "$out"
    eval "$1=\$(cat \"\$out\")"
}
