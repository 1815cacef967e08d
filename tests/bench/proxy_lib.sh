# Shared helpers of the proxy benchmarks (bench_transfer.sh, bench_overhead.sh):
# a one-peer site's credentials and configuration, and waits with deadlines.
# Sourced (bash); expects KVC set to the `kvc` binary. Never starts anything
# itself and never sleeps except between polls of a bounded wait.

# kvcb_site DIR: a fresh federation key and one gateway credential in DIR.
kvcb_site() {
    "$KVC" ca init --out "$1/ca" >/dev/null &&
        "$KVC" cert issue --ca "$1/ca" --site bench --name gw-1 --roles gateway \
            --out "$1/identity" >/dev/null
}

# kvcb_config FILE DIR GRPC_HOST:PORT HTTP_LISTEN: a one-peer site whose
# proxy sends the four models of the original experiment, and the uint8-input
# exports of mobilenet and yolov5, to GRPC (TF Serving API), with the image
# preprocessing of ops/run-demo.sh.
kvcb_config() {
    local file=$1 dir=$2 grpc=$3 listen=$4
    {
        echo "peer:"
        echo "  name: gw-1"
        echo "  site: bench"
        echo "  region: bench"
        echo "  data_dir: $dir"
        echo "  credential: $dir/identity"
        echo "federation:"
        echo "  trust: $dir/ca/federation.pub"
        echo "  listen: tcp://127.0.0.1:0"
        echo "control:"
        echo "  endpoint: ipc://$dir/control.sock"
        echo "http:"
        echo "  listen: \"$listen\""
        echo "log:"
        echo "  level: warn"
        echo "proxy:"
        echo "  timeout_ms: 120000"
        echo "  backends:"
        for m in mobilenet inception yolov5 bert mobilenet_u8 yolov5_u8; do
            echo "    - model: $m"
            echo "      grpc: $grpc"
            echo "      api: tfserving"
            case $m in
            mobilenet) echo "      preprocess: \"224x224 rgb nhwc float32 scale=1/255\"" ;;
            inception) echo "      preprocess: \"299x299 rgb nhwc float32 crop scale=1/127.5 mean=1,1,1\"" ;;
            yolov5) echo "      preprocess: \"640x640 rgb nhwc float32 scale=1/255\"" ;;
            mobilenet_u8) echo "      preprocess: \"224x224 rgb nhwc uint8\"" ;;
            yolov5_u8) echo "      preprocess: \"640x640 rgb nhwc uint8\"" ;;
            esac
        done
    } >"$file"
}

# kvcb_wait SECS PID CMD...: runs CMD every 100 ms until it succeeds; fails
# (returns 1) after SECS or as soon as process PID has exited.
kvcb_wait() {
    local secs=$1 pid=$2
    shift 2
    local end=$((SECONDS + secs))
    while ! "$@" >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$end" ] || ! kill -0 "$pid" 2>/dev/null; then
            return 1
        fi
        sleep 0.1
    done
}

# kvcb_stop PID...: SIGTERM, then SIGKILL after 5 s, for the given PIDs only.
kvcb_stop() {
    local p end
    for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
    end=$((SECONDS + 5))
    for p in "$@"; do
        while kill -0 "$p" 2>/dev/null && [ "$SECONDS" -lt "$end" ]; do sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
}
