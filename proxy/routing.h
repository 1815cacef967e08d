/*
 * routing.h - the proxy's side of cross-site routing (issue 18): the
 * router (federation/router.h) behind a lock, this site's figures per model
 * (in flight and a latency window, federation/latwin.h), and the wait for
 * a request forwarded to another site (fiber-aware: a fiber on the HTTP
 * loop yields while it waits, see kvc_grpc_ext_t).
 *
 * Internal to proxy/: proxy.c is its only user. Thread-safe.
 */
#ifndef KVC_ROUTING_H
#define KVC_ROUTING_H

#include "base.h"
#include "grpc_client.h"
#include "proxy.h"
#include "router.h"

#include <stddef.h>
#include <stdint.h>

/* Models whose local figures are kept (5.6 KiB each, touched only once used). */
#define KVC_ROUTING_STATS_MODELS 128

typedef struct kvc_routing kvc_routing_t;

/* NULL with err on a bad option (opts->sites set without opts->site, a
 * bad router config, a bad site name). */
kvc_routing_t *kvc_routing_new(const kvc_proxy_opts_t *opts, kvc_grpc_client_t *engine,
                               kvc_err_t *err);
void kvc_routing_destroy(kvc_routing_t **self_p);

/* This site's name. */
const char *kvc_routing_site(const kvc_routing_t *self);

/* Milliseconds on the monotonic clock, the router's time. */
uint64_t kvc_routing_now_ms(void);

/* The choice for model: the local site (placed when local_has) and the
 * caller's other sites. See kvc_router_choose for the result. */
int kvc_routing_choose(kvc_routing_t *self, const char *model, int local_has,
                       const kvc_router_constraint_t *c, kvc_router_choice_t *out, kvc_err_t *err);

/* The breaker's go-ahead for one call to site, and the call's outcome. */
int kvc_routing_begin(kvc_routing_t *self, const char *site);
void kvc_routing_report(kvc_routing_t *self, const char *site, kvc_call_class_t cls);

/* Local figures: a call to this site's backend for model starts / ends. */
void kvc_routing_local_begin(kvc_routing_t *self, const char *model);
void kvc_routing_local_end(kvc_routing_t *self, const char *model, int64_t latency_us, int ok);

/* 1 when the local site meets constraint c (NULL: none). */
int kvc_routing_local_meets(const kvc_routing_t *self, const kvc_router_constraint_t *c);

/* Fills h for model (in flight, window quantiles, ready from the breaker). */
void kvc_routing_local_health(kvc_routing_t *self, const char *model,
                              kvc_proxy_model_health_t *h);

/* Forwards req to site through the caller's transport and waits (yielding
 * in a fiber). Returns 0 when it was sent (resp filled: answered or not),
 * nonzero when it could not be (resp->error says why). */
int kvc_routing_forward(kvc_routing_t *self, const char *site, const kvc_proxy_remote_req_t *req,
                        kvc_proxy_remote_resp_t *resp);

/* Counters. */
void kvc_routing_count(kvc_routing_t *self, int local, int forwarded, int retried, int failed,
                       int no_route);
void kvc_routing_stats(kvc_routing_t *self, kvc_proxy_route_stats_t *out);

#endif
