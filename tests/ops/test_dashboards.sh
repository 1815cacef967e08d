#!/bin/bash
# The dashboards and alert rules in ops/ against what kvc-peer really serves:
# two sites (one peer each) run with HTTP on 127.0.0.1:0; site-a has a proxy
# backend whose model server is down, so one predict request makes every
# proxy series appear in its /metrics (503, gRPC 14) and the model's latency
# quantiles in the gossiped summaries. Once both peers' /federate carry both
# sites and site-a's proxy model, the checker compares every metric name the
# dashboards and rules use with the names scraped from /metrics and /federate
# plus those registered in peer/peer_metrics.c. Then a real Prometheus runs
# the shipped prometheus.yml against site-a's peer and every expression of the
# dashboards and rules must run there, the dashboards' returning data.
set -euo pipefail
KVC=$1 KVC_PEER=$2
SRC=$(cd "$(dirname "$0")/../.." && pwd)
. "$SRC/tests/integration/lib.sh"
command -v promtool >/dev/null || fail "promtool is not installed (ops/install-deps.sh)"

"$KVC" ca init --out "$T/ca" >/dev/null
for s in a b; do
    "$KVC" cert issue --ca "$T/ca" --site "site-$s" --name p1 --out "$T/$s.id" >/dev/null
    mkdir -p "$T/$s"
done
export HTTP_LISTEN=127.0.0.1:0
write_config "$T/a.yaml" p1 site-a eu-west "$T/a" "$T/a.id" "$T/ca/federation.pub"
# a model server address that refuses connections: a port held bound, never
# listened on, until the test ends
refusing_port DEAD
cat >>"$T/a.yaml" <<YAML
proxy:
  backends:
    - model: resnet50
      grpc: 127.0.0.1:$DEAD
  timeout_ms: 2000
YAML
start_peer a "$T/a.yaml"
A_EP=$(jqs "$T/a.yaml" status .advertise)
A_KEY=$(jqs "$T/a.yaml" status .public_key)
write_config "$T/b.yaml" p1 site-b eu-north "$T/b" "$T/b.id" "$T/ca/federation.pub" "$A_EP" "$A_KEY"
start_peer b "$T/b.yaml"
HTTP_a=$(jqs "$T/a.yaml" status .http)
HTTP_b=$(jqs "$T/b.yaml" status .http)

code=$(curl -s -o "$T/predict.json" -w '%{http_code}' -X POST -d '{"instances": [[1.0]]}' \
    "http://$HTTP_a/v1/models/resnet50:predict")
[ "$code" = 503 ] || fail "predict with the model server down answered $code, want 503"
grep -q '^kvc_proxy_backend_errors_total{model="resnet50",grpc_status="14"} 1$' \
    <(curl -sf "http://$HTTP_a/metrics") || fail "a's /metrics lacks the gRPC UNAVAILABLE error"

# both views hold both sites, and site-a's model with its latency quantiles
federate_full() { # HTTP
    local f
    f=$(curl -sf "http://$1/federate") || return 1
    grep -q '^kvc_site_up{site="site-a",region="eu-west"} 1$' <<<"$f" &&
        grep -q '^kvc_site_up{site="site-b",region="eu-north"} 1$' <<<"$f" &&
        grep -q '^kvc_proxy_latency_seconds{site="site-a",.*model="resnet50",quantile="0.99"}' <<<"$f"
}
poll 15 "a's /federate has both sites and resnet50" federate_full "$HTTP_a"
poll 10 "b's /federate has both sites and resnet50" federate_full "$HTTP_b"

for p in a b; do
    eval "h=\$HTTP_$p"
    curl -sf "http://$h/metrics" >"$T/metrics.$p.txt" || fail "GET /metrics on $p"
    curl -sf "http://$h/federate" >"$T/federate.$p.txt" || fail "GET /federate on $p"
done

# A real Prometheus with the shipped configuration, only its targets (the
# placeholder 127.0.0.1:8500 -> site-a's peer) and intervals changed: the
# dashboards' and rules' expressions must run there and the panels show data.
command -v prometheus >/dev/null || fail "prometheus is not installed (ops/install-deps.sh)"
mkdir -p "$T/prom"
sed -e "s/127\.0\.0\.1:8500/$HTTP_a/g" -e 's/_interval: 15s/_interval: 1s/' \
    -e 's/scrape_timeout: 10s/scrape_timeout: 1s/' \
    "$SRC/ops/prometheus/prometheus.yml" >"$T/prom/prometheus.yml"
cp "$SRC/ops/prometheus/kvc-alerts.yml" "$T/prom/"
grep -q "targets: \['$HTTP_a'\]" "$T/prom/prometheus.yml" || fail "no placeholder target in prometheus.yml"
promtool check config "$T/prom/prometheus.yml" >/dev/null || fail "promtool rejects the edited prometheus.yml"
# on port 0, kept: the port it got is read from its listening socket
prometheus --config.file="$T/prom/prometheus.yml" --storage.tsdb.path="$T/prom/data" \
    --web.listen-address=127.0.0.1:0 >"$T/prometheus.log" 2>&1 &
PROM_PID=$!
KVC_PIDS="$KVC_PIDS $PROM_PID"
poll 30 "Prometheus listens" listen_port "$PROM_PID"
PROM="http://127.0.0.1:$(listen_port "$PROM_PID")"
pq() { curl -sfG "$PROM/api/v1/query" --data-urlencode "query=$1" | jq -r '.data.result[0].value[1] // "none"'; }
prom_ready() { # both jobs scraped at least three times, both sites federated
    [ "$(pq 'min(count_over_time(up{job=~"kvc-peer|kvc-federate"}[1m]))')" -ge 3 ] 2>/dev/null &&
        [ "$(pq 'count(kvc_site_up == 1)')" = 2 ] &&
        [ "$(pq 'count(kvc_proxy_latency_seconds)')" = 2 ]
}
poll 20 "Prometheus has scraped both jobs three times" prom_ready
# the labelling the dashboards rely on: local series carry the site target
# label and no peer; the member site of kvc_membership_members is exported_site
[ "$(pq 'count(kvc_links_up{job="kvc-peer",site="site-a",peer=""})')" = 1 ] ||
    fail "kvc_links_up lacks the site target label"
[ "$(pq 'count(kvc_membership_members{job="kvc-peer",site="site-a",exported_site="site-b"})')" = 4 ] ||
    fail "kvc_membership_members does not keep the member site as exported_site"
[ "$(pq 'count(kvc_peer_up{job="kvc-federate",peer="site-b/p1",site="site-b",region="eu-north"})')" = 1 ] ||
    fail "the federated series lost their site/peer/region labels"

/usr/bin/python3 "$SRC/tests/ops/check_dashboards.py" \
    --query "$PROM" --var site=site-a --may-be-empty kvc_auth_rejects_total \
    --exposition "$T/metrics.a.txt" --exposition "$T/metrics.b.txt" \
    --exposition "$T/federate.a.txt" --exposition "$T/federate.b.txt" \
    --source "$SRC/peer/peer_metrics.c" \
    --rules "$SRC/ops/prometheus/kvc-alerts.yml" \
    --promtool "$(command -v promtool)" \
    "$SRC"/ops/grafana/*.json || fail "the dashboards or rules use metrics kvc-peer does not expose"
echo "test_dashboards: ok"
