#!/bin/bash
# interop/kubectl_standin: the REAL kubectl against kube_api_standin.py (a
# Kubernetes API server stand-in, a test double), looking at what our C
# client (kube_tool, over peer/kube.c) created. It shows that the stand-in
# speaks enough of the API for kubectl (discovery, tables, -o json/yaml,
# delete, server-side apply), and that what our client writes is what
# kubectl and kubeadm expect to read.
#
#   test_kubectl_standin.sh KUBE_TOOL KUBECTL PYTHON
#
# A throwaway PKI is made in a mktemp folder (removed at exit); the stand-in
# binds port 0 and prints it. Waits poll with deadlines; nothing sleeps to wait.
set -eu
tool=$1
kubectl=$2
python=$3
here=$(cd "$(dirname "$0")" && pwd)

t=$(mktemp -d /tmp/kvc-kubectl-XXXXXX)
pid=""
cleanup() {
    exec 3>&- 2>/dev/null || true # closing its stdin stops the stand-in
    if [ -n "$pid" ]; then
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$t"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    exit 1
}
ok() { echo "ok: $*"; }

# Polls a command (every 50 ms) until it succeeds or 10 s pass.
poll() {
    local deadline=$(($(date +%s%N) / 1000000 + 10000))
    until "$@" >/dev/null 2>&1; do
        [ $(($(date +%s%N) / 1000000)) -lt $deadline ] || return 1
        sleep 0.05
    done
}

"$here/kube_pki.sh" pki "$t"
mkfifo "$t/stdin"
"$python" "$here/kube_api_standin.py" --cert "$t/server.pem" --key "$t/server.key" \
    --ca "$t/ca.pem" --jws-delay-ms 200 --sweep-ms 200 --enable-bootstrap-token-auth <"$t/stdin" >"$t/port" 2>"$t/standin.log" &
pid=$!
exec 3>"$t/stdin"
poll test -s "$t/port" || fail "the stand-in printed no port: $(cat "$t/standin.log")"
port=$(head -n1 "$t/port")
"$here/kube_pki.sh" kubeconfig "$t" "$port"
export KUBECONFIG="$t/kubeconfig"
k() { "$kubectl" --request-timeout=20s "$@"; }

# --- discovery and an empty namespace ---------------------------------------
out=$(k get secrets -n kube-system 2>&1) || fail "get secrets: $out"
echo "$out" | grep -q "No resources found in kube-system namespace" || fail "not empty: $out"
k version -o json >"$t/version.json" 2>/dev/null || true
[ "$(jq -r .serverVersion.major "$t/version.json")" = 1 ] || fail "kubectl version: no server version"
ok "discovery; kube-system starts with no secrets"

# --- a token made by our client, read by kubectl ------------------------------
read -r id secret < <("$tool" "$KUBECONFIG" create-secret edge-a 9 node-1) || fail "kube_tool create"
[[ $id =~ ^[a-z0-9]{6}$ ]] || fail "token id '$id'"
[[ $secret =~ ^[a-z0-9]{16}$ ]] || fail "token secret has the wrong form"
name=bootstrap-token-$id
k get secret "$name" -n kube-system -o json >"$t/tok.json" || fail "get secret $name -o json"
now=$(date +%s)
jq -e --arg id "$id" --arg s "$secret" --argjson now "$now" '
    .kind == "Secret" and .type == "bootstrap.kubernetes.io/token" and
    .metadata.namespace == "kube-system" and .metadata.name == "bootstrap-token-" + $id and
    (.metadata.uid | length) > 0 and (.metadata.resourceVersion | length) > 0 and
    .metadata.labels["app.kubernetes.io/managed-by"] == "kvc" and
    .metadata.labels["kvc.io/site"] == "edge-a" and .metadata.labels["kvc.io/term"] == "9" and
    .metadata.labels["kvc.io/node"] == "node-1" and
    (.data["token-id"] | @base64d) == $id and (.data["token-secret"] | @base64d) == $s and
    (.data["usage-bootstrap-authentication"] | @base64d) == "true" and
    (.data["usage-bootstrap-signing"] | @base64d) == "true" and
    (.data["auth-extra-groups"] | @base64d) == "system:bootstrappers:kubeadm:default-node-token" and
    ((.data.expiration | @base64d | fromdateiso8601) - $now) as $left |
        $left < 60 and $left >= 30' "$t/tok.json" >/dev/null ||
    fail "the token Secret as kubectl sees it: $(jq -c 'del(.data["token-secret"])' "$t/tok.json")"
ok "kubectl get secret $name -o json: type, usages, groups, labels, expiry < 60 s (test_kube checks the exact 50 s)"

out=$(k get secrets -n kube-system 2>&1) || fail "get secrets: $out"
echo "$out" | grep -Eq "^$name +bootstrap.kubernetes.io/token +[0-9]+ " || fail "table: $out"
k get secrets -n kube-system -l kvc.io/site=edge-a,app.kubernetes.io/managed-by=kvc -o json |
    jq -e --arg n "$name" '[.items[].metadata.name] == [$n]' >/dev/null || fail "label selector"
k get secrets -n kube-system -l kvc.io/site=elsewhere -o json | jq -e '.items | length == 0' \
    >/dev/null || fail "a selector for another site matched"
ok "kubectl get secrets (table) and -l selectors"

# --- cluster-info's JWS, as kubeadm discovery reads it --------------------------
has_jws() { k get configmap cluster-info -n kube-public -o yaml | grep -q "jws-kubeconfig-$id:"; }
poll has_jws || fail "cluster-info never got jws-kubeconfig-$id"
k get configmap cluster-info -n kube-public -o json >"$t/ci.json"
jws=$(jq -r --arg k "jws-kubeconfig-$id" '.data[$k]' "$t/ci.json")
b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }
h=${jws%%..*}
sig=${jws##*..}
p=$(jq -j .data.kubeconfig "$t/ci.json" | b64url)
want=$(printf '%s' "$h.$p" | openssl dgst -sha256 -hmac "$id.$secret" -binary | b64url)
[ "$sig" = "$want" ] || fail "the JWS does not verify with openssl's HMAC"
printf '%s' "$h" | tr -- '-_' '+/' | base64 -d 2>/dev/null | jq -e --arg id "$id" \
    '.alg == "HS256" and .kid == $id' >/dev/null || fail "JWS header"
"$tool" "$KUBECONFIG" wait-jws "$id" "$secret" || fail "our verifier refused the JWS"
ok "kubectl get configmap cluster-info -o yaml shows jws-kubeconfig-$id; it verifies (openssl and ours)"

# --- the token authenticates a joining node, as a bootstrapper only ----------------
sed -e '/client-certificate-data/d' -e "s/client-key-data: .*/token: $id.$secret/" \
    "$KUBECONFIG" >"$t/kubeconfig-bootstrap"
out=$(KUBECONFIG="$t/kubeconfig-bootstrap" k get configmap cluster-info -n kube-public -o json) ||
    fail "a bootstrapper could not read cluster-info"
echo "$out" | jq -e --arg k "jws-kubeconfig-$id" '.data | has($k)' >/dev/null || fail "cluster-info as a bootstrapper"
out=$(KUBECONFIG="$t/kubeconfig-bootstrap" k get secrets -n kube-system 2>&1) &&
    fail "a bootstrapper listed secrets"
echo "$out" | grep -q "User \"system:bootstrap:$id\" cannot list resource \"secrets\"" ||
    fail "bootstrapper listing secrets: $out"
ok "kubectl with the minted token: reads cluster-info, Forbidden on secrets"

# --- nodes ------------------------------------------------------------------------
out=$(k get nodes 2>&1) || fail "get nodes: $out"
echo "$out" | grep -q "No resources found" || fail "nodes before any joined: $out"
[ "$("$tool" "$KUBECONFIG" node-exists edge-node-1)" = 0 ] || fail "node-exists before"
curl -sS --fail --cacert "$t/ca.pem" --cert "$t/client.pem" --key "$t/client.key" \
    -H 'Content-Type: application/json' -o /dev/null \
    -d '{"apiVersion":"v1","kind":"Node","metadata":{"name":"edge-node-1"}}' \
    "https://127.0.0.1:$port/api/v1/nodes" || fail "registering a node"
out=$(k get nodes 2>&1) || fail "get nodes: $out"
echo "$out" | grep -Eq "^edge-node-1 +Ready " || fail "get nodes: $out"
[ "$("$tool" "$KUBECONFIG" node-exists edge-node-1)" = 1 ] || fail "node-exists after"
ok "kubectl get nodes shows the registered node; our client finds it"

# --- delete ----------------------------------------------------------------------
out=$(k delete secret "$name" -n kube-system 2>&1) || fail "delete: $out"
echo "$out" | grep -q "secret \"$name\" deleted" || fail "delete said: $out"
out=$(k get secret "$name" -n kube-system 2>&1) && fail "still there after delete"
echo "$out" | grep -q "NotFound" || fail "get after delete: $out"
"$tool" "$KUBECONFIG" delete "$id" || fail "our delete of a deleted token must succeed"
no_jws() { ! has_jws; }
poll no_jws || fail "cluster-info kept the JWS of a deleted token"
out=$(KUBECONFIG="$t/kubeconfig-bootstrap" k get configmap cluster-info -n kube-public 2>&1) &&
    fail "a deleted token still authenticates"
echo "$out" | grep -q "Unauthorized" || fail "deleted token: $out"
ok "kubectl delete secret; ours then succeeds on NotFound; the JWS goes; the token no longer authenticates"

# --- server-side apply ------------------------------------------------------------
cat >"$t/applied.yaml" <<'EOF'
apiVersion: v1
kind: Secret
metadata:
  name: kvc-applied
  namespace: kube-system
  labels:
    app.kubernetes.io/managed-by: kvc
stringData:
  model: resnet50
  site: edge-a
EOF
out=$(k apply --server-side -f "$t/applied.yaml" 2>&1) || fail "apply --server-side: $out"
echo "$out" | grep -q "secret/kvc-applied serverside-applied" || fail "apply said: $out"
k get secret kvc-applied -n kube-system -o json --show-managed-fields | jq -e '
    (.data.model | @base64d) == "resnet50" and (.data.site | @base64d) == "edge-a" and
    any(.metadata.managedFields[]; .manager == "kubectl" and .operation == "Apply")' \
    >/dev/null || fail "the applied Secret"
sed -i -e 's/resnet50/yolov8/' -e '/site: edge-a/d' "$t/applied.yaml"
out=$(k apply --server-side -f "$t/applied.yaml" 2>&1) || fail "second apply: $out"
k get secret kvc-applied -n kube-system -o json | jq -e '
    (.data.model | @base64d) == "yolov8" and (.data | has("site") | not)' >/dev/null ||
    fail "re-apply did not update model / drop the field the manager let go"
[ "$(k get secrets -n kube-system -l app.kubernetes.io/managed-by=kvc -o name)" = \
    "secret/kvc-applied" ] || fail "applied Secret by label"
ok "kubectl apply --server-side creates, updates and prunes its own fields"

# Another field manager changing a field kubectl owns conflicts, unless forced.
sed -e 's/yolov8/bert/' "$t/applied.yaml" >"$t/other.yaml"
out=$(k apply --server-side --field-manager=other -f "$t/other.yaml" 2>&1) &&
    fail "an apply over another manager's field did not conflict: $out"
echo "$out" | grep -q 'conflict with "kubectl"' || fail "conflict said: $out"
echo "$out" | grep -q '.data.model' || fail "conflict did not name the field: $out"
k get secret kvc-applied -n kube-system -o json | jq -e '(.data.model | @base64d) == "yolov8"' \
    >/dev/null || fail "a conflicting apply changed the object"
out=$(k apply --server-side --field-manager=other --force-conflicts -f "$t/other.yaml" 2>&1) ||
    fail "forced apply: $out"
k get secret kvc-applied -n kube-system -o json | jq -e '(.data.model | @base64d) == "bert"' \
    >/dev/null || fail "the forced apply did not take"
ok "server-side apply conflicts between field managers, and --force-conflicts"

# --- authentication ----------------------------------------------------------------
sed -e '/client-certificate-data/d' -e 's/client-key-data: .*/token: not-a-real-token/' \
    "$KUBECONFIG" >"$t/kubeconfig-token"
out=$(KUBECONFIG="$t/kubeconfig-token" k get secrets -n kube-system 2>&1) &&
    fail "a request without a client certificate was served"
echo "$out" | grep -q "Unauthorized" || fail "no client cert: $out"
ok "no client certificate: 401 Unauthorized"
echo "PASS"
