#!/bin/sh
# Installs every Debian 12 package that kvc's build, tests and demo need.
# Idempotent: when everything is present it prints nothing and exits 0.
# --bench: also what `make bench` needs beyond the tests (serf, etcd).
# Needs root (or sudo) only when something is missing.
set -eu

PKGS="
build-essential cmake pkg-config clang libclang-rt-14-dev
libzmq3-dev libczmq-dev libsodium-dev
libprotobuf-c-dev protobuf-c-compiler
libyaml-dev liblmdb-dev libcmocka-dev
libcurl4-openssl-dev libnghttp2-dev libmicrohttpd-dev libturbojpeg0-dev libpng-dev zlib1g-dev
python3 python3-grpcio python3-grpc-tools python3-numpy python3-protobuf python3-flask
libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
iproute2 curl jq procps wrk openssl
prometheus
ansible ansible-lint kmod
"

# The tests' real kubectl: Debian's kubernetes-client, unless a kubectl is
# already installed (another package may own /usr/bin/kubectl; installing
# kubernetes-client over it fails).
if ! command -v kubectl >/dev/null 2>&1; then
    PKGS="$PKGS kubernetes-client"
fi

# make bench also measures real Serf agents and a real etcd cluster side by
# side (bench_vs_serf.sh, bench_failover_vs_etcd.sh)
if [ "${1:-}" = --bench ]; then
    PKGS="$PKGS serf etcd-server etcd-client"
fi

missing=""
for p in $PKGS; do
    st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$st" in
        "install ok installed") ;;
        *) missing="$missing $p" ;;
    esac
done

[ -z "$missing" ] && exit 0

echo "install-deps: installing:$missing" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "install-deps: missing packages:$missing; run this script as root (or install sudo)" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
echo "install-deps: done" >&2
