#!/bin/bash
# End-to-end latency per model shape through a 1 Gbit/s link (issue 4 goal:
# YOLOv5 transfer time at least 85% lower on the protobuf path, the image
# path lower still). Two network namespaces, kvcb-edge-PID and
# kvcb-model-PID, joined by a veth pair shaped with tbf at 1 Gbit/s on both
# ends; addresses 10.200.X.0/30 exist only inside them. The model server
# (tests/interop/model_server.py) runs in the model namespace; a one-peer
# kvc site and the client run in the edge namespace. Per shape:
#   A  TF Serving REST JSON straight to the model server's REST port, across
#      the link (the baseline: forwarding JSON inside the cluster);
#   B  the same JSON to kvc's proxy, which sends protobuf across the link;
#   C  a 1280x960 photo-like JPEG (quality 90) to the proxy's :predict.
# yolov5_u8 is YOLOv5 exported with a uint8 image input (normalised in the
# graph): its A and B send bytes as JSON integers, and its C is the image
# path for such a model, the proxy sending the resized pixels as uint8, a
# quarter of the float32 tensor; the report compares that C with the float
# model's A and B too.
# Transfer time = bytes the edge veth sent + received during the request
# (its kernel counters, headers included) / the tbf rate. Both directions
# have their own 1 Gbit/s and a unary request's upload and answer do not
# overlap, so this is the time the link was busy for that request.
#
# usage: tests/bench/bench_transfer.sh BUILD_DIR   (KVCB_RUNS=N, default 10;
#        KVCB_MODELS="yolov5 bert" measures only those shapes, default all four)
# Needs root and `ip netns`; otherwise prints "skipped: ..." and exits 0.
# Cleans up every process and namespace it made (trap), bounds every loop.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail
build=${1:?usage: bench_transfer.sh BUILD_DIR}
here=$(cd "$(dirname "$0")" && pwd)
KVC="$build/kvc"
PEER="$build/kvc-peer"
PY=/usr/bin/python3
RUNS=${KVCB_RUNS:-10}
MODELS=${KVCB_MODELS:-mobilenet inception yolov5 bert yolov5_u8}
for m in $MODELS; do
    case "$m" in
    mobilenet | inception | yolov5 | bert | mobilenet_u8 | yolov5_u8) ;;
    *) echo "bench_transfer: KVCB_MODELS: unknown model '$m' (mobilenet inception yolov5 bert mobilenet_u8 yolov5_u8)" >&2; exit 2 ;;
    esac
done
[ -n "${MODELS// /}" ] || { echo "bench_transfer: KVCB_MODELS names no model" >&2; exit 2; }
RATE_BPS=1000000000
skip() {
    echo "bench_transfer: skipped: $*"
    exit 0
}

[ -x "$KVC" ] && [ -x "$PEER" ] || { echo "bench_transfer: build $build first (kvc, kvc-peer)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || skip "needs root / ip netns"
command -v ip >/dev/null && command -v tc >/dev/null || skip "needs root / ip netns (iproute2)"
command -v jq >/dev/null || skip "needs jq"
"$PY" -c 'import grpc, grpc_tools, numpy' 2>/dev/null || skip "needs python3-grpcio, python3-grpc-tools, python3-numpy"
# shellcheck source=proxy_lib.sh
. "$here/proxy_lib.sh"

EDGE=kvcb-edge-$$
MODEL=kvcb-model-$$
VE=kvcbe$$
VM=kvcbm$$
NET=10.200.$(($$ % 250))
T=$(mktemp -d /tmp/kvcb-transfer.XXXXXX)
PIDS=()
NS_MADE=()
cleanup() {
    trap - EXIT INT TERM
    [ ${#PIDS[@]} -gt 0 ] && kvcb_stop "${PIDS[@]}"
    for ns in "${NS_MADE[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$EDGE" 2>/dev/null || skip "needs root / ip netns (ip netns add failed)"
NS_MADE+=("$EDGE")
ip netns add "$MODEL" || skip "needs root / ip netns (ip netns add failed)"
NS_MADE+=("$MODEL")
ip link add "$VE" netns "$EDGE" type veth peer name "$VM" netns "$MODEL" ||
    skip "cannot create a veth pair"
ip -n "$EDGE" addr add "$NET.1/30" dev "$VE"
ip -n "$MODEL" addr add "$NET.2/30" dev "$VM"
for ns in "$EDGE" "$MODEL"; do ip -n "$ns" link set lo up; done
ip -n "$EDGE" link set "$VE" up
ip -n "$MODEL" link set "$VM" up
tc -n "$EDGE" qdisc add dev "$VE" root tbf rate 1gbit burst 128kb latency 50ms ||
    skip "tc tbf unavailable"
tc -n "$MODEL" qdisc add dev "$VM" root tbf rate 1gbit burst 128kb latency 50ms

# The model server, reachable only across the link.
ip netns exec "$MODEL" "$PY" "$here/../interop/model_server.py" --host "$NET.2" \
    --grpc-port 0 --rest-port 0 --port-file "$T/ms.json" --workers 4 --exit-with-parent \
    >"$T/ms.log" 2>&1 &
PIDS+=($!)
kvcb_wait 60 "${PIDS[0]}" test -s "$T/ms.json" ||
    { echo "bench_transfer: model server did not start:" >&2; tail -5 "$T/ms.log" >&2; exit 1; }
GRPC=$(jq -r .grpc "$T/ms.json")
REST=$(jq -r .rest "$T/ms.json")

# kvc's proxy at the edge.
mkdir -p "$T/site"
chmod 700 "$T/site"
kvcb_site "$T/site"
kvcb_config "$T/peer.yaml" "$T/site" "$NET.2:$GRPC" "127.0.0.1:0"
ip netns exec "$EDGE" "$PEER" --config "$T/peer.yaml" >"$T/peer.log" 2>&1 &
PIDS+=($!)
http_of() { ip netns exec "$EDGE" "$KVC" --config "$T/peer.yaml" status --json | jq -er '.http | select(. != "" and . != null)'; }
kvcb_wait 30 "${PIDS[1]}" http_of ||
    { echo "bench_transfer: kvc-peer did not start:" >&2; tail -5 "$T/peer.log" >&2; exit 1; }
HTTP=$(http_of)

# Request bodies: JSON as a Python client writes it, and a photo-like JPEG.
for m in $MODELS; do "$PY" "$here/transfer_client.py" gen "$m" "$T/$m.json"; done
JPEG=""
if ${CC:-clang} -O2 -o "$T/mkjpeg" "$here/mkjpeg.c" -lturbojpeg -lm 2>"$T/cc.log" &&
    "$T/mkjpeg" "$T/photo.jpg" 1280 960 90; then
    JPEG="$T/photo.jpg"
else
    echo "bench_transfer: no JPEG helper (needs clang and libturbojpeg-dev); path C skipped" >&2
fi

measure() { # LABEL URL BODY CTYPE
    timeout 600 ip netns exec "$EDGE" "$PY" "$here/transfer_client.py" run --label "$1" \
        --url "$2" --body "$3" --ctype "$4" --dev "$VE" --runs "$RUNS" --warmup 2 \
        --max-seconds 150 >>"$T/results.jsonl"
}
for m in $MODELS; do
    measure "$m/A" "http://$NET.2:$REST/v1/models/$m:predict" "$T/$m.json" application/json
    measure "$m/B" "http://$HTTP/v1/models/$m:predict" "$T/$m.json" application/json
    if [ -n "$JPEG" ] && [ "$m" != bert ]; then
        measure "$m/C" "http://$HTTP/v1/models/$m:predict" "$JPEG" image/jpeg
    fi
done

echo "End-to-end latency through a 1 Gbit/s veth (tbf rate 1gbit burst 128kb latency 50ms on both ends),"
echo "median of $RUNS runs after 2 warm-ups, one kept-alive connection; client, kvc-peer and model server"
echo "share the same cores (2 here, shared with other work: compare ratios, not absolute times)."
echo "Transfer ms = edge veth tx+rx bytes per request (kernel counters, TCP/IP headers included) x 8 / 1 Gbit/s."
[ -n "$JPEG" ] && echo "C's JPEG: 1280x960, quality 90, $(wc -c <"$JPEG") bytes."
echo
"$PY" "$here/transfer_client.py" table "$RATE_BPS" "$T/results.jsonl"
