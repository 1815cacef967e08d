#!/bin/bash
# The proxy's memory bounds as a user configures them, end to end through
# kvc-peer: proxy.image_memory caps what image decoding may hold, so a small
# PNG of huge dimensions is refused (413, saying how much it needed) while
# ordinary images pass; proxy.max_message caps gRPC messages, so YOLOv5's
# 8.2 MB answer over a 6 MiB limit is TF Serving's RESOURCE_EXHAUSTED (429)
# with the limit in the message, never a crash or a truncated answer. The
# same yolov5 image passes through a second peer left at the defaults.
set -euo pipefail
KVC=$1 KVC_PEER=$2
. "$(dirname "$0")/lib.sh"
SRC=$(cd "$(dirname "$0")/../.." && pwd)

/usr/bin/python3 "$SRC/tests/interop/model_server.py" --grpc-port 0 --rest-port 0 \
    --port-file "$T/ms.json" --exit-with-parent >"$T/model_server.log" 2>&1 &
KVC_PIDS="$KVC_PIDS $!"
poll 60 "the model server writes its port file" test -s "$T/ms.json"
GRPC=$(jq -r .grpc "$T/ms.json")

# PNG W H FILE: a gray-gradient RGB PNG (zlib only; compresses to little).
png() {
    /usr/bin/python3 - "$@" <<'PY'
import struct, sys, zlib
w, h, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
row = bytes((x * 255 // max(w - 1, 1)) for x in range(w) for _ in range(3))
raw = b"".join(b"\0" + row for _ in range(h))
def chunk(t, d):
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
with open(out, "wb") as f:
    f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
PY
}
png 224 224 "$T/small.png"
png 2000 2000 "$T/huge.png"
png 640 640 "$T/yolo.png"
[ "$(wc -c <"$T/huge.png")" -lt 100000 ] || fail "the 2000x2000 PNG should be small on the wire"

"$KVC" ca init --out "$T/ca" >/dev/null
export HTTP_LISTEN=127.0.0.1:0
BACKENDS_YAML="    - model: mobilenet
      grpc: \"127.0.0.1:$GRPC\"
      preprocess: \"224x224 rgb nhwc float32 scale=1/255\"
    - model: yolov5
      grpc: \"127.0.0.1:$GRPC\"
      preprocess: \"640x640 rgb nhwc float32 scale=1/255\""
export BACKENDS_YAML
for s in a b; do
    "$KVC" cert issue --ca "$T/ca" --site "site-$s" --name p1 --out "$T/$s.id" >/dev/null
    mkdir -p "$T/$s"
done
PROXY_YAML="  image_memory: 8MiB
  max_message: 6MiB" write_config "$T/a.yaml" p1 site-a eu "$T/a" "$T/a.id" "$T/ca/federation.pub"
start_peer a "$T/a.yaml"
HTTP_a=$(jqs "$T/a.yaml" status .http)

# post URL FILE: prints "STATUS BODY" of an image/png POST
post() {
    curl -s -o "$T/body" -w '%{http_code}' -XPOST "$1" -H 'Content-Type: image/png' \
        --data-binary @"$2" && printf ' %s' "$(cat "$T/body")"
}

out=$(post "http://$HTTP_a/v1/models/mobilenet:predict" "$T/small.png")
[ "${out%% *}" = 200 ] || fail "a 224x224 PNG under image_memory 8MiB answered $out"
echo "${out#* }" | jq -e '.predictions[0] | length == 1001' >/dev/null ||
    fail "mobilenet did not answer 1001 scores: ${out:0:200}"

# 2000*2000*3 decoded bytes + the 224*224*3*4-byte tensor = 12 602 112 bytes
out=$(post "http://$HTTP_a/v1/models/mobilenet:predict" "$T/huge.png")
want='413 {"error": "image: decoding it needs 12.0 MiB, more than the 8.0 MiB all image decoding may use (proxy.image_memory)"}'
[ "$out" = "$want" ] || fail "huge PNG: got '$out', want '$want'"

out=$(post "http://$HTTP_a/v1/models/yolov5:predict" "$T/yolo.png")
[ "${out%% *}" = 429 ] || fail "yolov5's 8.2 MB answer over max_message 6MiB answered ${out:0:300}"
echo "${out#* }" | jq -e '.error | contains("larger than the limit of 6291456 bytes")' >/dev/null ||
    fail "the 429 does not name the limit: ${out:0:300}"

# the peer is still up and serving, and a peer at the defaults passes both
out=$(post "http://$HTTP_a/v1/models/mobilenet:predict" "$T/small.png")
[ "${out%% *}" = 200 ] || fail "after the refusals a small PNG answered ${out:0:200}"
write_config "$T/b.yaml" p1 site-b eu "$T/b" "$T/b.id" "$T/ca/federation.pub"
start_peer b "$T/b.yaml"
HTTP_b=$(jqs "$T/b.yaml" status .http)
out=$(post "http://$HTTP_b/v1/models/yolov5:predict" "$T/yolo.png")
[ "${out%% *}" = 200 ] || fail "yolov5 at the default limits answered ${out:0:300}"
echo "${out#* }" | jq -e '.predictions[0] | length == 25200' >/dev/null ||
    fail "yolov5 did not answer 25200 rows"
out=$(post "http://$HTTP_b/v1/models/mobilenet:predict" "$T/huge.png")
[ "${out%% *}" = 200 ] || fail "the 2000x2000 PNG at the default 256 MiB answered ${out:0:300}"
echo "ok"
