# Sourced first (before lib.sh) by a test that stops a peer and starts it
# again on the port it had, as a restarted gateway would. A port given back
# can be taken by anything before the restart binds it again, so the test
# re-runs itself in a network namespace of its own (a root test in one of
# its own, a user test in a user namespace too), where only its own
# processes bind: the restarting peer gets KVC_FIXED_PORT, below the
# namespace's ephemeral range, which nothing else there can be given.
if [ -z "${KVC_IT_NETNS_FROM:-}" ]; then
    if [ "$(id -u)" = 0 ]; then
        set -- unshare --net -- "$0" "$@"
    else
        set -- unshare --net --map-root-user -- "$0" "$@"
    fi
    KVC_IT_NETNS_FROM=$(readlink /proc/self/ns/net) exec "$@"
fi
# Never touch the settings of a namespace shared with anything else: this
# one must be new (not the one we came from) and fresh (only lo, down).
if [ "$(readlink /proc/self/ns/net)" = "$KVC_IT_NETNS_FROM" ] ||
    [ "$(ip -o link show | wc -l)" != 1 ] || ! ip -o link show lo | grep -q 'state DOWN'; then
    echo "FAIL: not in a fresh network namespace of its own" >&2
    exit 1
fi
ip link set lo up || { echo "FAIL: cannot bring up lo in the test's network namespace" >&2; exit 1; }
echo "20000 60999" >/proc/sys/net/ipv4/ip_local_port_range ||
    { echo "FAIL: cannot set the namespace's ephemeral port range" >&2; exit 1; }
KVC_FIXED_PORT=10001
