#!/bin/bash
# Backend metrics end to end: a model server (TF Serving's metrics endpoint)
# behind site-a's proxy; predictions through the proxy; site-a's peer
# scrapes the model server and gossips the figures, and site-b's /federate
# must show exactly the number of requests the model server itself counted.
# Then the model server stops: site-a's scrape health must go down and its
# scrape errors rise. promtool checks /metrics and /federate of both peers.
set -euo pipefail
KVC=$1 KVC_PEER=$2
. "$(dirname "$0")/lib.sh"
SRC=$(cd "$(dirname "$0")/../.." && pwd)
N=7

/usr/bin/python3 "$SRC/tests/interop/model_server.py" --grpc-port 0 --rest-port 0 \
    --port-file "$T/ms.json" --exit-with-parent >"$T/model_server.log" 2>&1 &
MS_PID=$!
KVC_PIDS="$KVC_PIDS $MS_PID"
poll 60 "the model server writes its port file" test -s "$T/ms.json"
GRPC=$(jq -r .grpc "$T/ms.json")
REST=$(jq -r .rest "$T/ms.json")
MS_METRICS="http://127.0.0.1:$REST/monitoring/prometheus/metrics"

"$KVC" ca init --out "$T/ca" >/dev/null
for s in a b; do
    "$KVC" cert issue --ca "$T/ca" --site "site-$s" --name p1 --out "$T/$s.id" >/dev/null
    mkdir -p "$T/$s"
done
export HTTP_LISTEN=127.0.0.1:0
BACKENDS_YAML="    - model: bert
      grpc: \"127.0.0.1:$GRPC\"
      api: tfserving
      metrics_url: \"$MS_METRICS\"" \
    write_config "$T/a.yaml" p1 site-a eu-west "$T/a" "$T/a.id" "$T/ca/federation.pub"
start_peer a "$T/a.yaml"
A_EP=$(jqs "$T/a.yaml" status .advertise)
A_KEY=$(jqs "$T/a.yaml" status .public_key)
write_config "$T/b.yaml" p1 site-b eu-north "$T/b" "$T/b.id" "$T/ca/federation.pub" "$A_EP" "$A_KEY"
start_peer b "$T/b.yaml"
HTTP_a=$(jqs "$T/a.yaml" status .http)
HTTP_b=$(jqs "$T/b.yaml" status .http)

# N predictions of a 500-int instance through site-a's proxy
ids=$(seq -s, 1 500)
for i in $(seq 1 $N); do
    out=$(curl -sf -XPOST "http://$HTTP_a/v1/models/bert:predict" -d "{\"instances\":[[$ids]]}") ||
        fail "prediction $i through site-a's proxy failed"
    [ "$(echo "$out" | jq -c .)" = '{"predictions":[[125.25,499]]}' ] || fail "prediction $i answered $out"
done
# what the model server itself counted (every status)
served=$(curl -sf "$MS_METRICS" | awk '/^:tensorflow:serving:request_count\{model_name="bert",/ { n += $2 } END { print n + 0 }')
[ "$served" = "$N" ] || fail "the model server counted $served requests, want $N"

# site-a's own view, then site-b's federated view of site-a's backend
a_metric() { # LINE: a's /metrics holds LINE exactly (no grep -q in a pipe: pipefail)
    local text
    text=$(curl -sf "http://$HTTP_a/metrics") && grep -qxF "$1" <<<"$text"
}
poll 30 "site-a observes $served backend requests" \
    a_metric "kvc_backend_observed_requests_total{model=\"bert\"} $served"
a_metric 'kvc_backend_scrape_up{model="bert"} 1' || fail "site-a's scrape is not up"
a_metric 'kvc_backend_scrape_errors_total{model="bert"} 0' || fail "site-a counted scrape errors"
b_federates() {
    local text
    text=$(curl -sf "http://$HTTP_b/federate") &&
        grep -qE "^kvc_backend_requests_total\{site=\"site-a\",[^}]*model=\"bert\"\} $served\$" <<<"$text"
}
poll 40 "site-b's /federate shows site-a's $served backend requests" b_federates
lat=$(curl -sf "http://$HTTP_b/federate" |
    awk '/^kvc_backend_latency_seconds_total\{site="site-a",.*model="bert"\}/ { print $2 }')
awk -v l="$lat" 'BEGIN { exit !(l > 0 && l < 60) }' ||
    fail "site-a's backend latency on site-b is '$lat', want a positive number of seconds"

for p in a b; do
    eval "h=\$HTTP_$p"
    for ep in metrics federate; do
        curl -sf "http://$h/$ep" >"$T/$ep.$p.txt" || fail "GET /$ep on $p"
        promtool check metrics <"$T/$ep.$p.txt" || fail "promtool rejects $p's /$ep"
    done
done

# the model server goes away: the scrape goes down, errors rise, figures stay
kill -TERM "$MS_PID"
wait "$MS_PID" || true
poll 30 "site-a's scrape of the stopped model server goes down" \
    a_metric 'kvc_backend_scrape_up{model="bert"} 0'
errors_rose() {
    curl -sf "http://$HTTP_a/metrics" |
        awk '$1 == "kvc_backend_scrape_errors_total{model=\"bert\"}" { e = $2 } END { exit !(e >= 1) }'
}
poll 10 "site-a counts scrape errors" errors_rose
a_metric "kvc_backend_observed_requests_total{model=\"bert\"} $served" ||
    fail "site-a lost the last known request count"
curl -sf "http://$HTTP_a/metrics" | promtool check metrics || fail "promtool rejects a's /metrics (backend down)"
echo "test_backend_metrics: ok"
