#!/bin/sh
# kube_pki.sh - throwaway PKI and kubeconfigs for the Kubernetes stand-in
# tests, made with the openssl CLI into a folder the test owns (a mktemp
# folder it removes). Nothing made here is ever committed.
#
#   kube_pki.sh pki DIR              CA, server cert (127.0.0.1), client cert,
#                                    and a client cert from an unrelated CA
#   kube_pki.sh kubeconfig DIR PORT  DIR/kubeconfig (embedded -data blobs) and
#                                    DIR/kubeconfig-files (file references)
set -eu
cmd=$1
dir=$2
case $cmd in
pki)
    cd "$dir"
    umask 077
    q() { openssl "$@" 2>/dev/null; }
    q req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 \
        -subj "/CN=kvc-test-kubernetes-ca"
    q req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=kube-apiserver"
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >server.ext
    q x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem \
        -days 2 -extfile server.ext
    q req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout client.key \
        -out client.csr -subj "/O=system:masters/CN=kvc-test-admin"
    printf 'extendedKeyUsage=clientAuth\n' >client.ext
    q x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem \
        -days 2 -extfile client.ext
    q req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout other.key \
        -out other.pem -days 2 -subj "/CN=kvc-test-unrelated"
    rm -f ./*.csr ./*.ext ./*.srl
    ;;
kubeconfig)
    port=$3
    b64() { base64 -w0 <"$dir/$1"; }
    cat >"$dir/kubeconfig" <<KC
apiVersion: v1
kind: Config
current-context: standin
clusters:
- name: standin
  cluster:
    server: https://127.0.0.1:$port
    certificate-authority-data: $(b64 ca.pem)
contexts:
- name: standin
  context:
    cluster: standin
    user: admin
users:
- name: admin
  user:
    client-certificate-data: $(b64 client.pem)
    client-key-data: $(b64 client.key)
KC
    cat >"$dir/kubeconfig-files" <<KC
apiVersion: v1
kind: Config
current-context: standin
clusters:
- name: standin
  cluster:
    server: https://127.0.0.1:$port/
    certificate-authority: ca.pem
contexts:
- name: standin
  context: {cluster: standin, user: admin}
users:
- name: admin
  user:
    client-certificate: client.pem
    client-key: $dir/client.key
KC
    chmod 600 "$dir/kubeconfig" "$dir/kubeconfig-files"
    ;;
*)
    echo "usage: $0 pki DIR | kubeconfig DIR PORT" >&2
    exit 2
    ;;
esac
