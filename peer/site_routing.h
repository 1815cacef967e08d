/*
 * site_routing.h - the daemon's side of cross-site routing (issue 18):
 * the health gossip core (federation/health.h) fed with this peer's
 * proxy figures, the snapshot of the other sites the proxy routes over
 * (routes.h, rebuilt from health reports and membership), and the
 * forwarding link (fwd.h): a CurveZMQ server that runs requests other
 * peers forward on this site's backend, and the client the proxy forwards
 * through.
 *
 * One core on the daemon's table (channel 70, "health"); its tick, on the
 * loop thread, refreshes the local report and the snapshot every
 * KVC_SITE_ROUTING_REFRESH_MS and after member events. The proxy's
 * callbacks (kvc_site_routing_sites, kvc_site_routing_remote) run on HTTP
 * threads and fibers; the forwarding server's handler on its workers.
 */
#ifndef KVC_SITE_ROUTING_H
#define KVC_SITE_ROUTING_H

#include "base.h"
#include "config.h"
#include "core.h"
#include "credential.h"
#include "proxy.h"
#include "routes.h"
#include "swim.h"

#include <stddef.h>
#include <stdint.h>

#define KVC_SITE_ROUTING_REFRESH_MS 250  /* our figures into the health core */
#define KVC_SITE_ROUTING_REBUILD_MS 1000 /* the snapshot, without news */
#define KVC_SITE_ROUTING_NEWS_MS 20      /* the snapshot, after a report came */

typedef struct kvc_site_routing kvc_site_routing_t;

typedef struct {
    const kvc_config_t *cfg;
    const char *self_id;
    const kvc_identity_t *id; /* curve keys and the credential blob (borrowed) */
    const uint8_t *trust;     /* 32 bytes: the federation key */
    const char *advertise;    /* the federation endpoint others reach us at */
    int (*revoked)(void *arg, const uint8_t key[32]); /* thread-safe */
    void *revoked_arg;
    /* 1 when our link to member id is up (loop thread); NULL: alive is enough. */
    int (*link_up)(void *arg, const char *member_id);
    void *link_arg;
    kvc_routes_where_fn where; /* the registry's placement; thread-safe */
    void *where_arg;
    uint64_t epoch; /* this run's id (start time): a restart replaces our reports */
} kvc_site_routing_env_t;

/* The health core and the snapshot; no sockets yet. NULL with err. */
kvc_site_routing_t *kvc_site_routing_new(const kvc_site_routing_env_t *env, kvc_swim_t *swim,
                                         kvc_err_t *err);
void kvc_site_routing_destroy(kvc_site_routing_t **self_p);

/* The core on the daemon's table (arg: the kvc_site_routing_t). */
extern const kvc_core_ops_t kvc_site_routing_core_ops;

/* Starts the forwarding server and client for proxy (after the proxy
 * exists). Until then, and with routing off, nothing is forwarded. */
int kvc_site_routing_start(kvc_site_routing_t *self, kvc_proxy_t *proxy, kvc_err_t *err);

/* The endpoint other peers forward to ("" before start). */
/* The forwarding server and client run on the HTTP loop (driven mode, fwd.h): the
 * daemon gives the HTTP server kvc_site_routing_http_hook (arg: the
 * routing) and the descriptors kvc_site_routing_http_fds fills (returns
 * how many: 0 when forwarding is not running). Until the HTTP loop runs,
 * forwarded requests wait in the server's socket. */
int kvc_site_routing_http_hook(void *arg);
int kvc_site_routing_http_fds(const kvc_site_routing_t *self, int fds[4]);

const char *kvc_site_routing_forward_endpoint(const kvc_site_routing_t *self);

/* For kvc_proxy_opts_t: sites and remote (arg: the kvc_site_routing_t). */
size_t kvc_site_routing_sites(void *arg, const char *model, kvc_proxy_site_t *out, size_t cap);
int kvc_site_routing_remote(void *arg, const char *site, const kvc_proxy_remote_req_t *req,
                            kvc_proxy_remote_resp_t *resp, void (*done)(void *done_arg),
                            void *done_arg);

/* Counters for `kvc info` and metrics. */
typedef struct {
    uint64_t forwards_sent, forwards_answered, forwards_failed; /* client */
    uint64_t served, refused;                                   /* server */
    uint64_t reports_sent, reports_received, reports_dropped;   /* health gossip */
    size_t members_reporting;
} kvc_site_routing_stats_t;
void kvc_site_routing_stats(kvc_site_routing_t *self, kvc_site_routing_stats_t *out);

#endif
