#!/bin/bash
# The registry reconciled to each site's Kubernetes, and served by each
# site's proxy, with real processes: site-a (three voters, a1..a3) and
# site-b (b1), each site with its own Kubernetes API stand-in (tests/kube,
# a test double for kube-apiserver, with a simulated deployment
# controller), real kubectl reading back what the coordinators applied, and
# a real gRPC model server (tests/interop/model_server.py, python3-grpcio)
# whose "opaque" model gives no metadata.
#
# Checks: a version published at b1 becomes, at site-a, a read-only NFS PV
# and claim, a ConfigMap listing its versions, a Deployment and a Service,
# all labelled as kvc's; a model placed only on site-b makes nothing at
# site-a; `kvc models status` at any peer shows both sites applied
# and ready; a new version changes the ConfigMap, not the Deployment; the
# proxy serves the registry's model with the registry's dtypes (the server
# has no metadata) and answers a model placed elsewhere with a 404 naming
# its site; an object kvc does not own is left alone and reported; a
# retired model's objects are deleted; after kill -9 of site-a's
# coordinator the other voter reconciles.
set -euo pipefail
KVC=$1 KVC_PEER=$2
. "$(dirname "$0")/lib.sh"
HERE=$(cd "$(dirname "$0")" && pwd)
KUBE=$HERE/../kube
PY=/usr/bin/python3

# --- two API stand-ins, one per site -------------------------------------------
for s in a b; do
    mkdir -p "$T/pki-$s"
    "$KUBE/kube_pki.sh" pki "$T/pki-$s"
    mkfifo "$T/standin-$s.in"
    "$PY" "$KUBE/kube_api_standin.py" --cert "$T/pki-$s/server.pem" --key "$T/pki-$s/server.key" \
        --ca "$T/pki-$s/ca.pem" --deploy-ready-ms 100 \
        <"$T/standin-$s.in" >"$T/standin-$s.port" 2>"$T/standin-$s.log" &
    KVC_PIDS="$KVC_PIDS $!"
done
exec 3>"$T/standin-a.in" 4>"$T/standin-b.in" # closed at exit: the stand-ins stop
for s in a b; do
    poll 20 "stand-in $s reports its port" test -s "$T/standin-$s.port"
    "$KUBE/kube_pki.sh" kubeconfig "$T/pki-$s" "$(head -n1 "$T/standin-$s.port")"
done
ka() { kubectl --kubeconfig "$T/pki-a/kubeconfig" --request-timeout=20s -n kvc-models "$@"; }
kb() { kubectl --kubeconfig "$T/pki-b/kubeconfig" --request-timeout=20s -n kvc-models "$@"; }

# --- the model server --------------------------------------------------------------
"$PY" "$HERE/../interop/model_server.py" --grpc-port 0 --rest-port 0 --port-file "$T/ms.json" \
    --exit-with-parent >"$T/model_server.log" 2>&1 &
KVC_PIDS="$KVC_PIDS $!"
poll 60 "the model server writes its port file" test -s "$T/ms.json"
GRPC=$(jq -r .grpc "$T/ms.json")

# --- peers ---------------------------------------------------------------------------
"$KVC" ca init --out "$T/ca" >/dev/null
for p in a1:site-a a2:site-a a3:site-a b1:site-b; do
    "$KVC" cert issue --ca "$T/ca" --site "${p##*:}" --name "${p%%:*}" --out "$T/${p%%:*}.id" >/dev/null
done
export HTTP_LISTEN=127.0.0.1:0
cfg() { # NAME SITE STANDIN [SEED_EP SEED_KEY]
    local n=$1 s=$2 k=$3
    shift 3
    write_config "$T/$n.yaml" "$n" "$s" eu "$T/$n" "$T/$n.id" "$T/ca/federation.pub" "$@"
    printf 'kubernetes:\n  kubeconfig: %s\nregistry:\n  grpc: "127.0.0.1:%s"\n  reconcile_interval_s: 1\n' \
        "$T/pki-$k/kubeconfig" "$GRPC" >>"$T/$n.yaml"
}
cfg a1 site-a a
start_peer a1 "$T/a1.yaml"
SEED_EP=$(jqs "$T/a1.yaml" status .advertise)
SEED_KEY=$(jqs "$T/a1.yaml" status .public_key)
for n in a2 a3; do
    cfg $n site-a a "$SEED_EP" "$SEED_KEY"
    start_peer $n "$T/$n.yaml"
done
cfg b1 site-b b "$SEED_EP" "$SEED_KEY"
start_peer b1 "$T/b1.yaml"
coordinator() { jqs "$T/b1.yaml" sites ".[] | select(.site == \"$1\") | .coordinator"; }
ready() {
    [ "$(jqs "$T/b1.yaml" members '[.[] | select(.state == "alive")] | length')" = 4 ] &&
        [ -n "$(coordinator site-a)" ] && [ -n "$(coordinator site-b)" ]
}
poll 30 "four members and a coordinator per site" ready
m() { local c=$1; shift; "$KVC" --config "$T/$c.yaml" models "$@"; }
OPAQUE=(--storage nfs://nas.lan/exports/opaque --input input_ids:int32:1,500
        --output logits:float32:1,2 --replicas 2)

# --- publish at b1; site-a's coordinator applies it -------------------------------
m b1 publish --name opaque --version 1 "${OPAQUE[@]}" >/dev/null
m a1 publish --name mobilenet --version 1 --storage nfs://nas.lan/exports/mobilenet \
    --placement site:site-b >/dev/null
poll 20 "site-a has a Deployment kvc-opaque" ka get deployment kvc-opaque
sel='app.kubernetes.io/managed-by=kvc,kvc.io/site=site-a'
[ "$(ka get deployment,service,configmap,pvc -l "$sel" -o name | sort | tr '\n' ' ')" = \
    "configmap/kvc-opaque deployment.apps/kvc-opaque persistentvolumeclaim/$(ka get pvc -l "$sel" -o jsonpath='{.items[0].metadata.name}') service/kvc-opaque " ] ||
    fail "site-a's objects: $(ka get deployment,service,configmap,pvc -l "$sel" -o name)"
pv=$(kubectl --kubeconfig "$T/pki-a/kubeconfig" get pv -l "$sel" -o json)
jq -e '.items | length == 1 and (.[0].spec.nfs == {"server":"nas.lan","path":"/exports/opaque","readOnly":true})
       and .[0].spec.accessModes == ["ReadOnlyMany"]' <<<"$pv" >/dev/null || fail "site-a's PV: $pv"
dep=$(ka get deployment kvc-opaque -o json)
jq -e '.spec.replicas == 2 and .metadata.labels["kvc.io/model"] == "opaque"
       and ([.spec.template.spec.volumes[] | select(.persistentVolumeClaim) | .persistentVolumeClaim.readOnly] == [true])
       and ([.spec.template.spec.containers[0].volumeMounts[] | select(.mountPath == "/models/opaque") | .readOnly] == [true])' \
    <<<"$dep" >/dev/null || fail "site-a's Deployment: $dep"
# one read-back as an operator would do it
all=$(ka get pv,pvc,deploy,svc -l app.kubernetes.io/managed-by=kvc -o json)
jq -e '[.items[].kind] | sort == ["Deployment","PersistentVolume","PersistentVolumeClaim","Service"]' \
    <<<"$all" >/dev/null || fail "kubectl get pv,pvc,deploy,svc: $(jq -c '[.items[].kind]' <<<"$all")"
jq -e '.items[] | select(.kind == "Service") | [.spec.ports[] | .port] | (index(8500) != null and index(8501) != null)' \
    <<<"$all" >/dev/null || fail "the Service lacks the gRPC and REST ports: $(jq -c '.items[] | select(.kind == "Service") | .spec.ports' <<<"$all")"
jq -e '.items[] | select(.kind == "Deployment") | .spec.template.spec.containers[0] |
       ([.ports[].containerPort] | index(8500) != null) and
       (.args | any(test("--model_config_file=")) and any(test("--monitoring_config_file=")))' \
    <<<"$all" >/dev/null || fail "the model server container: $(jq -c '.items[] | select(.kind == "Deployment") | .spec.template.spec.containers[0]' <<<"$all")"
jq -e '[.items[] | .metadata.labels["kvc.io/site"]] | all(. == "site-a")' <<<"$all" >/dev/null ||
    fail "an object without kvc.io/site=site-a"
ka get configmap kvc-opaque -o jsonpath='{.data.models\.config}' | grep -q "versions: 1" ||
    fail "the ConfigMap does not list version 1: $(ka get configmap kvc-opaque -o yaml)"
! ka get deployment kvc-mobilenet >/dev/null 2>&1 || fail "mobilenet (placed on site-b) was applied at site-a"
poll 20 "site-b serves both models" kb get deployment kvc-mobilenet kvc-opaque

# --- federation-wide status, read at any peer --------------------------------
both_ready() {
    m a2 status opaque --json | jq -e '[.sites[] | select(.applied and .ready_replicas == 2
                                         and .desired_replicas == 2)] | length == 2' >/dev/null
}
poll 30 "kvc models status shows both sites applied and ready" both_ready
m a2 status opaque | grep -q "^site-a .* yes .*2 .*2 " || fail "status table: $(m a2 status opaque)"
# the version the model server reports, asked through the site's own proxy
server_v() { m b1 status opaque --json | jq -e '[.sites[] | .server_version] | all(. == "1")' >/dev/null; }
poll 20 "both sites report the version the model server serves" server_v

# --- a new version is a ConfigMap change, not a new pod template ---------------
gen=$(ka get deployment kvc-opaque -o jsonpath='{.metadata.generation}')
m a2 publish --name opaque --version 2 "${OPAQUE[@]}" >/dev/null
two_versions() { ka get configmap kvc-opaque -o jsonpath='{.data.models\.config}' | grep -q "versions: 2"; }
poll 20 "site-a's ConfigMap lists version 2" two_versions
ka get configmap kvc-opaque -o jsonpath='{.data.models\.config}' | grep -q "versions: 1" ||
    fail "version 1 left the ConfigMap"
[ "$(ka get deployment kvc-opaque -o jsonpath='{.metadata.generation}')" = "$gen" ] ||
    fail "a new version changed the Deployment (generation $gen -> $(ka get deployment kvc-opaque -o jsonpath='{.metadata.generation}'))"

# --- the proxy serves the registry's model; others get a 404 naming the site ---
HTTP_a=$(jqs "$T/a1.yaml" status .http)
ids=$(jq -cn '[range(500) | 3]')
served() {
    curl -s -o "$T/pred.json" -w '%{http_code}' -X POST "http://$HTTP_a/v1/models/opaque:predict" \
        -d "{\"instances\": [$ids]}" | grep -q '^200$'
}
poll 20 "a1's proxy serves opaque from the registry" served
jq -e '.predictions == [[1.5, 0]]' "$T/pred.json" >/dev/null || fail "opaque answered $(cat "$T/pred.json")"
# a model placed only at site-b: a1's proxy routes the request there (issue 18),
# so the answer is site-b's (its own check of this bad input), not a 404
code=$(curl -s -D "$T/mob.h" -o "$T/mob.json" -w '%{http_code}' -X POST \
    "http://$HTTP_a/v1/models/mobilenet:predict" -d '{"instances": [1]}')
grep -qi '^Kvc-Served-By: site-b' "$T/mob.h" && grep -qi '^Kvc-Route: forwarded' "$T/mob.h" ||
    fail "mobilenet at site-a was not forwarded to site-b: HTTP $code $(tr -d '\r' <"$T/mob.h" | grep -i '^kvc-') $(cat "$T/mob.json")"
[ "$code" != 404 ] && [ "$code" != 503 ] || fail "mobilenet through site-a: HTTP $code $(cat "$T/mob.json")"
code=$(curl -s -o "$T/404b.json" -w '%{http_code}' -X POST "http://$HTTP_a/v1/models/nothere:predict" \
    -d '{"instances": [1]}')
[ "$code" = 404 ] && jq -e '.error | test("not in the registry")' "$T/404b.json" >/dev/null ||
    fail "unknown model: HTTP $code $(cat "$T/404b.json")"

# --- an object kvc does not own is left alone and reported ---------------------
ka create deployment kvc-vgg --image=example.org/theirs:1 >/dev/null
m a1 publish --name vgg --version 1 --storage nfs://nas.lan/exports/vgg --placement site:site-a >/dev/null
vgg_error() {
    m b1 status vgg --json | jq -e '.sites[] | select(.site == "site-a") | .error | test("not managed by kvc")' >/dev/null
}
poll 20 "vgg's status at site-a reports the foreign Deployment" vgg_error
[ "$(ka get deployment kvc-vgg -o jsonpath='{.spec.template.spec.containers[0].image}')" = example.org/theirs:1 ] ||
    fail "kvc changed a Deployment it does not own"

# --- retire: the objects go ----------------------------------------------------------
m a2 retire mobilenet:1 >/dev/null
mobilenet_gone() { ! kb get deployment kvc-mobilenet >/dev/null 2>&1 && ! kb get service kvc-mobilenet >/dev/null 2>&1; }
poll 20 "site-b deletes the retired model's objects" mobilenet_gone
[ "$(kubectl --kubeconfig "$T/pki-b/kubeconfig" get pv -l app.kubernetes.io/managed-by=kvc -o json |
    jq '[.items[] | select(.spec.nfs.path == "/exports/mobilenet")] | length')" = 0 ] ||
    fail "the retired model's PV is still at site-b"
# left in the registry: opaque:1, opaque:2, vgg:1 and the statuses of opaque
# (2 versions x 2 sites) and vgg (site-a): site-b's of mobilenet is deleted
no_status() { [ "$("$KVC" --config "$T/a1.yaml" info --json | jq -r .registry.entries)" = 8 ]; }
poll 20 "the retired model has no status left" no_status

# --- kill -9 of site-a's coordinator: the other voter reconciles -------------------
C=$(coordinator site-a)
C=${C#site-a/}
eval "kill -9 \$PID_$C"
O=a1
[ "$C" = a1 ] && O=a2
new_coord() {
    c=$(jqs "$T/$O.yaml" sites '.[] | select(.site == "site-a") | .coordinator')
    [ -n "$c" ] && [ "$c" != "site-a/$C" ]
}
poll 30 "another voter of site-a takes over" new_coord
m b1 publish --name resnet --version 1 --storage nfs://nas.lan/exports/resnet --placement site:site-a >/dev/null
poll 20 "the new coordinator applies resnet" ka get deployment kvc-resnet
echo "registry_kube: ok"
