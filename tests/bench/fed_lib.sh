# Helpers shared by bench_vs_serf.sh and bench_idle.sh: a federation of real
# kvc-peers on loopback (optionally inside a network namespace, so that the
# namespace's lo counters are this federation's traffic and nothing else's),
# and per-process figures read from /proc. Sourced after
# tests/integration/lib.sh (T, KVC_PIDS, poll, write_config, jqs, expect_jq).

CLK_TCK=$(getconf CLK_TCK)
# bash 5's clock, no fork
now_ms() {
    local t=${EPOCHREALTIME/[.,]/}
    echo $((t / 1000))
}

# median / max of numbers, one a line, on stdin
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "null"; else print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
maxof() { sort -g | tail -n 1; }

# --- network namespaces ------------------------------------------------------
FL_NS_MADE=""
# ns_make NAME: a namespace with only lo, up. Fails (returns 1) without root.
ns_make() {
    ip netns add "$1" 2>/dev/null || return 1
    FL_NS_MADE="$FL_NS_MADE $1"
    ip -n "$1" link set lo up
}
ns_cleanup() {
    for ns in $FL_NS_MADE; do ip netns del "$ns" 2>/dev/null || true; done
    FL_NS_MADE=""
}
# lo_tx_bytes PID: bytes sent on lo in PID's network namespace. On loopback
# every packet is counted once as sent (and once as received), IP and
# transport headers included, so the delta over a window is every byte the
# processes of that namespace put on the wire.
lo_tx_bytes() { awk '$1 == "lo:" { print $10 }' "/proc/$1/net/dev"; }

# --- per-process figures -----------------------------------------------------
# Read with bash builtins only: with 100 peers on 2 shared cores a fork can
# take tens of ms, and each sample must be read at the time it is stamped.
# FL_TICKS: utime + stime of PID in clock ticks (fields 14 and 15 of
# /proc/PID/stat, counted after the parenthesised command name).
read_ticks() {
    local line
    read -r line <"/proc/$1/stat"
    local -a f
    read -r -a f <<<"${line##*) }"
    FL_TICKS=$((f[11] + f[12]))
}
# FL_RSS FL_ANON FL_THREADS (kB, kB, count) from /proc/PID/status, FL_PSS
# (kB) from /proc/PID/smaps_rollup, FL_FDS from /proc/PID/fd.
read_mem() {
    local k v rest
    while read -r k v rest; do
        case $k in
        VmRSS:) FL_RSS=$v ;;
        RssAnon:) FL_ANON=$v ;;
        Threads:) FL_THREADS=$v ;;
        esac
    done <"/proc/$1/status"
    while read -r k v rest; do
        [ "$k" = Pss: ] && FL_PSS=$v
    done <"/proc/$1/smaps_rollup"
    local -a fds=("/proc/$1/fd"/*)
    FL_FDS=${#fds[@]}
}
# sample_begin FILE PID...: "PID TICKS US" a line (US: when it was read)
sample_begin() {
    local f=$1 p
    shift
    : >"$f"
    for p in "$@"; do
        read_ticks "$p"
        echo "$p $FL_TICKS ${EPOCHREALTIME/[.,]/}" >>"$f"
    done
}
# sample_end FILE: one line per PID of FILE:
#   PID CPU% RSS_KB PSS_KB RSSANON_KB THREADS FDS
# CPU% is of one core, over that PID's own interval since sample_begin.
sample_end() {
    local p t0 u0 u1
    while read -r p t0 u0; do
        read_ticks "$p"
        u1=${EPOCHREALTIME/[.,]/}
        read_mem "$p"
        echo "$p $(((FL_TICKS - t0) * 100000000000 / CLK_TCK / (u1 - u0))) $FL_RSS $FL_PSS $FL_ANON $FL_THREADS $FL_FDS"
    done <"$1" | awk '{ $2 = sprintf("%.3f", $2 / 1000); print }'
}
# col FILE N: column N of a sample_end file
col() { awk -v c="$2" '{ print $c }' "$1"; }

# --- a kvc federation --------------------------------------------------------
# kvc_federation PREFIX N [NETNS]: starts N kvc-peers (PREFIX1..PREFIXN, site
# "bench", each seeded with the first) listening on 127.0.0.1 port 0, in
# NETNS if given. FEDERATION_YAML (lib.sh) adds federation keys such as
# timing. Sets KF_PIDS (in order) and KF_CONF_<i>. Credentials are issued
# from one federation key in $T/ca.
kvc_federation() {
    local pre=$1 n=$2 ns=${3:-} i ep key
    local -a run=()
    [ -n "$ns" ] && run=(ip netns exec "$ns")
    [ -d "$T/ca" ] || "$KVC" ca init --out "$T/ca" >/dev/null
    KF_PIDS=""
    for i in $(seq 1 "$n"); do
        "$KVC" cert issue --ca "$T/ca" --site bench --name "$pre$i" --out "$T/$pre$i.id" >/dev/null
        mkdir -p "$T/$pre$i"
        if [ "$i" = 1 ]; then
            write_config "$T/$pre$i.yaml" "$pre$i" bench lab "$T/$pre$i" "$T/$pre$i.id" "$T/ca/federation.pub"
        else
            write_config "$T/$pre$i.yaml" "$pre$i" bench lab "$T/$pre$i" "$T/$pre$i.id" "$T/ca/federation.pub" "$ep" "$key"
        fi
        "${run[@]}" "$KVC_PEER" --config "$T/$pre$i.yaml" >>"$T/$pre$i.log" 2>&1 &
        KVC_PIDS="$KVC_PIDS $!"
        KF_PIDS="$KF_PIDS $!"
        eval "KF_CONF_$i=\$T/\$pre\$i.yaml"
        if [ "$i" = 1 ]; then
            poll 20 "$pre$i answers on its control socket" "$KVC" --config "$T/${pre}1.yaml" status
            ep=$(jqs "$T/${pre}1.yaml" status .advertise)
            key=$(jqs "$T/${pre}1.yaml" status .public_key)
        fi
    done
}
# kvc_converged CONFIG N: that peer sees N members alive and has a
# handshaked link to each of the other N-1 (kvc keeps one link per member).
# A bash match on the status JSON, not jq: one fork per peer and round.
kvc_converged() {
    local out
    out=$("$KVC" --config "$1" status --json 2>/dev/null) || return 1
    [[ $out == *"\"peers_connected\":$(($2 - 1)),"* && $out == *"\"members_by_state\":{\"alive\":$2,"* ]]
}
