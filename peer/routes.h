/*
 * routes.h - what the proxy's router knows of the other sites: a snapshot,
 * rebuilt by the daemon's loop from the health gossip, membership (links
 * up, Vivaldi RTT estimates) and the registry's placement, and read by
 * the proxy's HTTP threads and fibers. One mutex; readers copy out.
 *
 * Per site and model the snapshot aggregates the site's peers (a site has
 * one to three gateways in front of one cluster): ready if any peer
 * reachable from here reports the model ready; in flight and capacity
 * summed over the reporting peers (capacity 0 if any is unknown); latency
 * and RTT of the best peer. A forward goes to the site's best peer: ready,
 * reachable, lowest estimated RTT.
 */
#ifndef KVC_ROUTES_H
#define KVC_ROUTES_H

#include "base.h"
#include "proxy.h"

#include <stddef.h>
#include <stdint.h>

#define KVC_ROUTES_PEERS_MAX 4      /* peers of one site kept per model */
#define KVC_ROUTES_ENTRIES_MAX 8192 /* (site, model) pairs */

/* One model in one member's report. */
typedef struct {
    const char *name;
    int ready;
    uint32_t in_flight, capacity;
    int64_t p50_us, p99_us;
} kvc_routes_model_t;

/* One other member, as the daemon sees it now. Borrowed during update. */
typedef struct {
    const char *id; /* "site/name" */
    const char *site, *region, *arch;
    uint32_t accel, accel_count;
    const char *forward;      /* its forwarding endpoint, "" = none */
    const uint8_t *curve_key; /* 32 bytes */
    int reachable;            /* alive in membership, link up */
    int64_t rtt_us;           /* Vivaldi estimate, -1 unknown */
    const kvc_routes_model_t *models;
    size_t n_models;
} kvc_routes_member_t;

/* Sites the registry places model at (comma-separated with ", ", as
 * kvc_site_models_where writes them); may be NULL. Thread-safe. */
typedef size_t (*kvc_routes_where_fn)(void *arg, const char *model, char *buf, size_t cap);

/* Where a forward goes. */
typedef struct {
    char member[128];
    char endpoint[256];
    uint8_t curve_key[32];
} kvc_routes_peer_t;

typedef struct kvc_routes kvc_routes_t;

kvc_routes_t *kvc_routes_new(const char *self_site, kvc_routes_where_fn where, void *where_arg);
void kvc_routes_destroy(kvc_routes_t **self_p);

/* Replaces the snapshot with what members[0..n) say (members of this site
 * are skipped: this site is the proxy's own candidate). KVC_ENOMEM leaves
 * the old one. */
int kvc_routes_update(kvc_routes_t *self, const kvc_routes_member_t *members, size_t n);

/* kvc_proxy_sites_fn: the other sites for model, with the registry's
 * placed sites no peer reports (placed, not ready, unreachable). */
size_t kvc_routes_sites(void *self, const char *model, kvc_proxy_site_t *out, size_t cap);

/* The peer of site to forward a request for model to; KVC_ENOENT if none
 * is reachable with a forwarding endpoint. */
int kvc_routes_pick(kvc_routes_t *self, const char *site, const char *model,
                    kvc_routes_peer_t *out);

#endif
