/*
 * peer_metrics.h - what kvc-peer exposes to Prometheus: its own /metrics
 * (membership, gossip, authentication, proxy, process) and the federated
 * view /federate built from the summaries every peer gossips.
 *
 * Threads: the event loop owns the membership core and calls the "loop"
 * functions; HTTP connection threads call observe and serve. Nothing here lets an
 * HTTP thread touch the membership core: the loop publishes snapshots into
 * the thread-safe registry and summary set.
 */
#ifndef KVC_PEER_METRICS_H
#define KVC_PEER_METRICS_H

#include "base.h"
#include "metrics.h"
#include "metrics_summary.h"
#include "proxy.h"
#include "swim.h"

#include <stddef.h>
#include <stdint.h>

#define KVC_SUMMARY_META_KEY "m"
#define KVC_SUMMARY_GOSSIP_BUDGET 440 /* fits SWIM's per-member metadata */
#define KVC_SUMMARY_INTERVAL_MS 2000  /* how often a peer may gossip its summary, up to ... */
#define KVC_SUMMARY_FLAT_MEMBERS 10   /* ... this many members; then N x 200 ms */
#define KVC_SUMMARY_HEARTBEAT 15      /* intervals between summaries with no news */
#define KVC_SUMMARY_REMOVE_MS 120000  /* unheard this long: series removed */

/*
 * Every summary reaches every member (it rides membership gossip), so a
 * federation of N carries N summaries per interval and each peer receives
 * all of them: with a fixed 2 s interval a peer of 100 received ~60 KB/s
 * of summaries alone (tests/bench/bench_idle.sh). Past
 * KVC_SUMMARY_FLAT_MEMBERS the interval grows with N, so each peer's share
 * stays what it is at 10 members. And a summary is sent only when it has
 * news (kvc_summary_news: requests, errors, latency, membership counts,
 * backends, a large RSS change), else once per heartbeat (15 intervals): an
 * idle peer of 100 carried ~13 KB/s of summaries when it re-sent its CPU
 * seconds every interval, and still ~4.5 KB/s with a heartbeat of 4
 * intervals (bench_idle over a 60 s window). Liveness is membership's job;
 * the heartbeat only refreshes figures that drift (RSS, CPU seconds).
 * Staleness is two heartbeats and half an interval (61 s up to 10 members,
 * 610 s at 100): a summary counts as lost only when
 * two heartbeats in a row are. A member membership declares dead or left is
 * down at once either way.
 */
static inline uint64_t kvc_summary_interval_ms(size_t members)
{
    return members <= KVC_SUMMARY_FLAT_MEMBERS
               ? KVC_SUMMARY_INTERVAL_MS
               : (uint64_t)members * (KVC_SUMMARY_INTERVAL_MS / KVC_SUMMARY_FLAT_MEMBERS);
}
static inline uint64_t kvc_summary_heartbeat_ms(size_t members)
{
    return kvc_summary_interval_ms(members) * KVC_SUMMARY_HEARTBEAT;
}
static inline uint64_t kvc_summary_stale_ms(size_t members)
{
    return 2 * kvc_summary_heartbeat_ms(members) + kvc_summary_interval_ms(members) / 2;
}
static inline uint64_t kvc_summary_remove_ms(size_t members)
{
    uint64_t stale = kvc_summary_stale_ms(members);
    return stale * 8 > KVC_SUMMARY_REMOVE_MS ? stale * 8 : KVC_SUMMARY_REMOVE_MS;
}

typedef struct kvc_peer_metrics kvc_peer_metrics_t;

/* Creates the registry for peer site/name in region (strings copied). */
kvc_peer_metrics_t *kvc_peer_metrics_new(const char *site, const char *name, const char *region,
                                         uint64_t start_ms);
void kvc_peer_metrics_destroy(kvc_peer_metrics_t **self_p);

/* The registry, for subsystems that add their own metrics. */
kvc_metrics_t *kvc_peer_metrics_registry(kvc_peer_metrics_t *self);

/* --- loop thread ------------------------------------------------------- */

/* Counts one refused message by reason. */
void kvc_peer_metrics_reject(kvc_peer_metrics_t *self, const char *reason);

/* Counts one membership message of len bytes in (out = 0) or out (out = 1). */
void kvc_peer_metrics_gossip(kvc_peer_metrics_t *self, int out, size_t len);

/* Publishes the membership core's state and counters, and peers_up. */
void kvc_peer_metrics_publish(kvc_peer_metrics_t *self, const kvc_swim_t *swim, uint32_t peers_up);

/* Builds this peer's summary (encoded, at most cap bytes, within the gossip
 * budget) and stores it in the summary set (this peer's own figures are
 * always current). *gossip is set to 1 when it is worth gossiping: force
 * (the heartbeat is due), or news since the last one returned with
 * *gossip = 1 (kvc_summary_news); else 0. */
int kvc_peer_metrics_summary(kvc_peer_metrics_t *self, uint64_t now_ms, int force, uint8_t *out,
                             size_t cap, size_t *len, int *gossip);

/* Sets the backend (model server) figures the next summaries carry: n
 * entries (at most KVC_SUMMARY_MAX_BACKENDS are kept), copied. */
void kvc_peer_metrics_backends(kvc_peer_metrics_t *self, const kvc_summary_backend_t *b, size_t n);

/* Stores a summary heard from member id (site, region) at now_ms. */
int kvc_peer_metrics_heard(kvc_peer_metrics_t *self, const char *id, const char *site,
                           const char *region, const uint8_t *data, size_t len, uint64_t now_ms);

/* Ages the summaries: stale after stale_ms (kvc_peer_up 0), removed after
 * remove_ms. Returns the number of sites whose every peer is stale. */
size_t kvc_peer_metrics_expire(kvc_peer_metrics_t *self, uint64_t now_ms, uint64_t stale_ms,
                               uint64_t remove_ms);

/* down 1: membership declared member id dead or gone: its summary counts
 * as stale (kvc_peer_up 0, `kvc metrics` not fresh) until membership has it
 * alive again (down 0), however many of its summaries still arrive, so
 * metrics and /federate agree with membership at once. */
void kvc_peer_metrics_member_down(kvc_peer_metrics_t *self, const char *id, int down);

/* --- any thread -------------------------------------------------------- */

/* The proxy's per-request hook (kvc_proxy_observe_fn); arg is self. */
void kvc_peer_metrics_observe(void *arg, const kvc_proxy_observation_t *obs);

/* Appends /metrics (Prometheus text) to out. */
int kvc_peer_metrics_write(kvc_peer_metrics_t *self, kvc_buf_t *out);

/*
 * Appends /federate to out: every peer's summary series labelled site, peer,
 * region, filtered by the match[] selectors (n may be 0: everything).
 * KVC_EINVAL with err (Prometheus' message) for a bad selector.
 */
int kvc_peer_metrics_federate(kvc_peer_metrics_t *self, const char *const *match, size_t n,
                              uint64_t now_ms, kvc_buf_t *out, kvc_err_t *err);

/* Copies every stored summary's fields for `kvc metrics`: calls fn once per
 * peer with its site, id, region, freshness and summary. */
typedef void (*kvc_peer_metrics_each_fn)(void *arg, const char *site, const char *peer,
                                         const char *region, int fresh, uint64_t age_ms,
                                         const void *summary);
int kvc_peer_metrics_each(kvc_peer_metrics_t *self, uint64_t now_ms, kvc_peer_metrics_each_fn fn,
                          void *arg);

#endif
