#!/bin/bash
# Federated metrics with real tools: three sites serve /metrics and
# /federate; promtool checks both; a real Prometheus scrapes one peer's
# /federate (honor_labels) and every peer's /metrics, and the series it
# returns for all three sites must agree with `kvc metrics --json`. Then one
# site stops and its kvc_site_up must turn 0 at the other peers.
set -euo pipefail
KVC=$1 KVC_PEER=$2
. "$(dirname "$0")/lib.sh"
command -v prometheus >/dev/null || fail "prometheus is not installed (ops/install-deps.sh)"

"$KVC" ca init --out "$T/ca" >/dev/null
for s in a b c; do
    "$KVC" cert issue --ca "$T/ca" --site "site-$s" --name p1 --out "$T/$s.id" >/dev/null
    mkdir -p "$T/$s"
done
export HTTP_LISTEN=127.0.0.1:0
write_config "$T/a.yaml" p1 site-a eu-west "$T/a" "$T/a.id" "$T/ca/federation.pub"
start_peer a "$T/a.yaml"
A_EP=$(jqs "$T/a.yaml" status .advertise)
A_KEY=$(jqs "$T/a.yaml" status .public_key)
write_config "$T/b.yaml" p1 site-b eu-north "$T/b" "$T/b.id" "$T/ca/federation.pub" "$A_EP" "$A_KEY"
start_peer b "$T/b.yaml"
write_config "$T/c.yaml" p1 site-c af-east "$T/c" "$T/c.id" "$T/ca/federation.pub" "$A_EP" "$A_KEY"
start_peer c "$T/c.yaml"
for p in a b c; do
    eval "HTTP_$p=$(jqs "$T/$p.yaml" status .http)"
done

sites_fresh() { # CONFIG: kvc metrics shows all three sites up with rates known
    expect_jq "$1" metrics '(length == 3) and all(.[]; .up and .requests_per_s != null)'
}
for p in a b c; do
    poll 30 "$p sees all three sites' summaries" sites_fresh "$T/$p.yaml"
done

# promtool on the real output of both endpoints
for p in a b c; do
    eval "h=\$HTTP_$p"
    curl -sf "http://$h/metrics" >"$T/metrics.$p.txt" || fail "GET /metrics on $p"
    promtool check metrics <"$T/metrics.$p.txt" || fail "promtool rejects $p's /metrics"
    curl -sf "http://$h/federate" >"$T/federate.$p.txt" || fail "GET /federate on $p"
    promtool check metrics <"$T/federate.$p.txt" || fail "promtool rejects $p's /federate"
done
grep -q '^kvc_site_up{site="site-c",region="af-east"} 1$' "$T/federate.a.txt" ||
    fail "a's /federate lacks site-c"
# match[] semantics and a bad selector
curl -sf "http://$HTTP_a/federate?match[]=%7Bsite%3D%22site-b%22%7D" >"$T/fb.txt"
grep -q 'site="site-b"' "$T/fb.txt" || fail "match[] {site=\"site-b\"} returned nothing"
! grep -q 'site="site-a"' "$T/fb.txt" || fail "match[] {site=\"site-b\"} returned site-a"
code=$(curl -s -o "$T/bad.txt" -w '%{http_code}' "http://$HTTP_a/federate?match[]=%7B")
[ "$code" = 400 ] || fail "a bad match[] answered $code"
jq -e '.error | length > 0' "$T/bad.txt" >/dev/null || fail "bad match[] error is not JSON"

# a real Prometheus, scraping every second
cat >"$T/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: kvc-federate
    honor_labels: true
    metrics_path: /federate
    params:
      'match[]': ['{__name__=~"kvc_.*"}']
    static_configs:
      - targets: ['$HTTP_a']
  - job_name: kvc-peer
    static_configs:
      - targets: ['$HTTP_a', '$HTTP_b', '$HTTP_c']
YAML
promtool check config "$T/prometheus.yml" >/dev/null || fail "promtool rejects the test's prometheus.yml"
# on port 0, kept: the port it got is read from its listening socket
prometheus --config.file="$T/prometheus.yml" --storage.tsdb.path="$T/prom" \
    --web.listen-address=127.0.0.1:0 >"$T/prometheus.log" 2>&1 &
PROM_PID=$!
KVC_PIDS="$KVC_PIDS $PROM_PID"
poll 30 "Prometheus listens" listen_port "$PROM_PID"
PROM="http://127.0.0.1:$(listen_port "$PROM_PID")"
pq() { # QUERY: the vector result of an instant query, as JSON
    curl -sfG "$PROM/api/v1/query" --data-urlencode "query=$1" | jq -c '.data.result'
}
prom_has_sites() {
    [ "$(pq 'kvc_site_up' | jq -c 'map(select(.value[1] == "1")) | map(.metric.site) | sort')" = \
      '["site-a","site-b","site-c"]' ]
}
poll 60 "Prometheus has kvc_site_up 1 for all three sites" prom_has_sites
prom_has_peers() {
    [ "$(pq 'up{job="kvc-peer"}' | jq 'map(select(.value[1] == "1")) | length')" = 3 ]
}
poll 30 "Prometheus scraped every peer's /metrics" prom_has_peers

# Prometheus' view equals kvc metrics --json, site by site
"$KVC" --config "$T/a.yaml" metrics --json >"$T/kvc-metrics.json"
for s in site-a site-b site-c; do
    want=$(jq -r ".[] | select(.site == \"$s\") | .peers_up" "$T/kvc-metrics.json")
    got=$(pq "sum(kvc_peer_up{site=\"$s\"})" | jq -r '.[0].value[1]')
    [ "$got" = "$want" ] || fail "$s: Prometheus peers up $got, kvc metrics $want"
    alive=$(pq "kvc_members{site=\"$s\",state=\"alive\"}" | jq -r '.[0].value[1]')
    [ "$alive" = 3 ] || fail "$s: Prometheus sees kvc_members alive=$alive, want 3"
    rss_kvc=$(jq -r ".[] | select(.site == \"$s\") | .rss_bytes" "$T/kvc-metrics.json")
    rss_prom=$(pq "sum(kvc_process_resident_memory_bytes{site=\"$s\"})" | jq -r '.[0].value[1]')
    # the same gossiped summary, possibly one summary apart: within 25%
    awk -v a="$rss_kvc" -v b="$rss_prom" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(b > 0 && d <= 0.25 * b) }' ||
        fail "$s: RSS from Prometheus $rss_prom vs kvc metrics $rss_kvc"
done
# the local /metrics of each peer is there too, per instance
[ "$(pq 'kvc_links_up{job="kvc-peer"}' | jq -c 'map(.value[1]) | unique')" = '["2"]' ] ||
    fail "kvc_links_up is not 2 on every peer: $(pq 'kvc_links_up')"

# a site that stops goes to kvc_site_up 0 (its peer leaves, so at once; a silent one
# would after the staleness window, 61 s)
kill -TERM "$PID_c"
wait "$PID_c" || true
site_c_down() { grep -q '^kvc_site_up{site="site-c",region="af-east"} 0$' <(curl -sf "http://$HTTP_a/federate"); }
poll 40 "a's /federate reports site-c down" site_c_down
expect_jq "$T/a.yaml" metrics '[.[] | select(.site == "site-c") | .up] == [false]' ||
    fail "kvc metrics still shows site-c up"
echo "test_metrics: ok"
