/*
 * metrics_summary.h - the compact per-peer metrics summary that peers gossip
 * (proto/metrics.proto, package kvc.metrics), a store of the summaries heard
 * from every peer, and the writer that turns the store into the labelled
 * series of /federate.
 *
 * A summary holds a fixed list of key series: peers up, members by state,
 * proxy requests/errors (totals, and per model for the top
 * KVC_SUMMARY_MAX_MODELS models by requests), proxy latency p50/p99 per
 * model, process CPU seconds and RSS, and backend (model server) requests and
 * cumulative latency per model. It carries the origin's version (a counter
 * that must keep increasing across the origin's restarts, e.g. derived from
 * its start time) and the origin's timestamp. Encoded, it never exceeds a
 * byte budget: backends, then models with the fewest requests, are dropped
 * first.
 *
 * Series written by kvc_summary_set_write() (all gauges unless _total):
 *   kvc_backend_latency_seconds_total{site,peer,region,model}
 *   kvc_backend_requests_total{site,peer,region,model}
 *   kvc_members{site,peer,region,state}          state: alive|suspect|dead|left
 *   kvc_peer_up{site,peer,region}                1 fresh, 0 stale
 *   kvc_peers_up{site,peer,region}
 *   kvc_process_cpu_seconds_total{site,peer,region}
 *   kvc_process_resident_memory_bytes{site,peer,region}
 *   kvc_proxy_errors_total{site,peer,region,model}   model "_other": the rest
 *   kvc_proxy_latency_seconds{site,peer,region,model,quantile}  summary: 0.5, 0.99
 *   kvc_proxy_requests_total{site,peer,region,model} model "_other": the rest
 *   kvc_site_up{site,region}                     1 if any peer is fresh
 *   kvc_report_age_seconds{site,peer,region}    now - origin timestamp
 * A stale peer keeps only kvc_peer_up 0 (its other series disappear rather
 * than freeze) until the removal window drops it; a site whose peers are all
 * stale shows kvc_site_up 0 until they are all removed.
 *
 * Sans-IO: time comes in as arguments. The set has its own mutex, so the
 * gossip loop may put while HTTP threads write.
 */
#ifndef KVC_METRICS_SUMMARY_H
#define KVC_METRICS_SUMMARY_H

#include "base.h"

#include <stddef.h>
#include <stdint.h>

struct kvc_promsel_set;

#define KVC_SUMMARY_BUDGET 1024   /* default encoded size limit */
#define KVC_SUMMARY_WIRE_MAX 4096 /* decode refuses anything longer */
#define KVC_SUMMARY_MAX_MODELS 8
#define KVC_SUMMARY_MAX_BACKENDS 8
#define KVC_SUMMARY_NAME_MAX 63    /* bytes of a model, peer, site or region name */
#define KVC_SUMMARY_MAX_PEERS 4096 /* default bound of a set */

typedef struct {
    char model[KVC_SUMMARY_NAME_MAX + 1];
    uint64_t requests;
    uint64_t errors;
    double p50_seconds; /* NaN when unknown */
    double p99_seconds;
} kvc_summary_model_t;

typedef struct {
    char model[KVC_SUMMARY_NAME_MAX + 1];
    uint64_t requests;
    double latency_seconds; /* cumulative */
} kvc_summary_backend_t;

typedef struct {
    uint64_t version;
    uint64_t timestamp_ms;
    uint32_t peers_up;
    uint32_t members_alive;
    uint32_t members_suspect;
    uint32_t members_dead;
    uint32_t members_left;
    double cpu_seconds;
    uint64_t rss_bytes;
    uint64_t proxy_requests; /* all models */
    uint64_t proxy_errors;
    size_t n_models;
    kvc_summary_model_t models[KVC_SUMMARY_MAX_MODELS];
    size_t n_backends;
    kvc_summary_backend_t backends[KVC_SUMMARY_MAX_BACKENDS];
} kvc_summary_t;

/*
 * Encodes s into out (out_size bytes, caller-owned) using at most budget
 * bytes; *out_len gets the size, *dropped (may be NULL) how many model and
 * backend entries were left out. Entries are sent sorted by requests, most
 * first. Errors: KVC_EINVAL (bad argument, n_models/n_backends too big, a
 * model name empty or not UTF-8, duplicate model names), KVC_ERANGE (even
 * without entries the summary exceeds budget or out_size).
 */
int kvc_summary_encode(const kvc_summary_t *s, size_t budget, uint8_t *out, size_t out_size,
                       size_t *out_len, size_t *dropped);

/*
 * Does now say something last did not? Every figure counts except the
 * version, the timestamp and the process's CPU seconds (they move every
 * time); RSS counts when it moved by more than KVC_SUMMARY_RSS_NEWS_PCT
 * percent. A peer re-gossips its summary when there is news, and otherwise
 * only at its heartbeat, so an idle federation carries almost no summaries.
 */
#define KVC_SUMMARY_RSS_NEWS_PCT 10
int kvc_summary_news(const kvc_summary_t *last, const kvc_summary_t *now);

/*
 * Decodes hostile bytes into *out. Errors: KVC_ERANGE (longer than
 * KVC_SUMMARY_WIRE_MAX, too many entries, a name too long), KVC_EPARSE (not a
 * summary, unknown schema, names not UTF-8 or duplicated, negative or
 * non-finite values where they make no sense), KVC_ENOMEM. On error *out is
 * zeroed.
 */
int kvc_summary_decode(const uint8_t *data, size_t len, kvc_summary_t *out);

typedef struct kvc_summary_set kvc_summary_set_t;

/* A store of at most max_peers summaries (0: KVC_SUMMARY_MAX_PEERS). */
kvc_summary_set_t *kvc_summary_set_new(size_t max_peers);
void kvc_summary_set_destroy(kvc_summary_set_t **self_p);

/*
 * Stores the summary of peer (in site and region; strings copied, each 1 to
 * KVC_SUMMARY_NAME_MAX bytes of UTF-8 without control characters), heard at
 * now_ms, if version is newer than the one held. version must equal the
 * decoded one. Returns 0 when stored, KVC_EEXIST when the held version is
 * the same or newer (nothing changes), decode errors, KVC_EINVAL (bad names
 * or version mismatch), KVC_ERANGE (set full).
 */
int kvc_summary_set_put(kvc_summary_set_t *set, const char *peer, const char *site,
                        const char *region, const uint8_t *bytes, size_t len, uint64_t version,
                        int64_t now_ms);

/*
 * Ages the store: a peer last heard more than stale_ms ago is stale, one
 * heard more than remove_ms ago (remove_ms >= stale_ms) is removed.
 * *sites_down (may be NULL) gets the number of sites whose peers are all
 * stale. Returns the number of peers removed, or KVC_EINVAL.
 */
int kvc_summary_set_expire(kvc_summary_set_t *set, int64_t now_ms, int64_t stale_ms,
                           int64_t remove_ms, size_t *sites_down);

/* down 1: membership declared peer dead or gone, so it is stale from now
 * on, whatever summaries of it still arrive (gossip and push-pull carry a
 * departed member's metadata for a while). down 0: membership has it alive
 * again; its next put, or the expiry clock, decides freshness. KVC_ENOENT
 * if absent. */
int kvc_summary_set_mark_down(kvc_summary_set_t *set, const char *peer, int down);

/* 1 if site has a fresh peer, 0 if all its peers are stale, KVC_ENOENT. */
int kvc_summary_set_site_up(kvc_summary_set_t *set, const char *site);
/* Number of peers held (fresh or stale). */
size_t kvc_summary_set_count(kvc_summary_set_t *set);
/* Copies peer's summary into *out; KVC_ENOENT if absent. */
int kvc_summary_set_get(kvc_summary_set_t *set, const char *peer, kvc_summary_t *out);

/*
 * Appends every summary as Prometheus text (see the list above), families
 * sorted by name, peers by (site, peer), only series matching sel (NULL:
 * all). now_ms computes kvc_report_age_seconds. Returns 0, KVC_ERANGE when
 * out is full, KVC_ENOMEM.
 */
int kvc_summary_set_write(kvc_summary_set_t *set, const struct kvc_promsel_set *sel, int64_t now_ms,
                          kvc_buf_t *out);

#endif
