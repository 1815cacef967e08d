/*
 * routing.c - the proxy's side of cross-site routing (see routing.h).
 *
 * One mutex guards the router (it is not thread-safe) and another the
 * local figures, so a request holds a lock only while it chooses or
 * records, never while it waits. The other sites come from the caller's
 * callback on every choice; nothing here caches them, so what membership
 * and the health gossip know now is what the route uses.
 */
#include "routing.h"

#include "latwin.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>

typedef struct {
    int used;
    char model[KVC_ROUTER_MODEL_MAX + 1];
    kvc_latwin_t win;
} s_stats_t;

struct kvc_routing {
    pthread_mutex_t mu; /* router */
    kvc_router_t *router;
    pthread_mutex_t stats_mu; /* stats, counters */
    s_stats_t stats[KVC_ROUTING_STATS_MODELS];
    kvc_proxy_route_stats_t counts;
    kvc_grpc_client_t *engine;
    kvc_proxy_sites_fn sites;
    void *sites_arg;
    kvc_proxy_remote_fn remote;
    void *remote_arg;
    char site[KVC_ROUTER_NAME_MAX + 1];
    char region[KVC_ROUTER_NAME_MAX + 1];
    char arch[KVC_ROUTER_NAME_MAX + 1];
    kvc_accel_t accel;
    uint32_t accel_count;
    uint32_t capacity;
};

#define S_WINDOW_MS 10000u

uint64_t kvc_routing_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* uname's machine, as the router names architectures (aarch64 -> arm64). */
static void s_default_arch(char *out, size_t cap)
{
    struct utsname u;
    if (uname(&u) != 0) {
        out[0] = '\0';
        return;
    }
    if (strcmp(u.machine, "aarch64") == 0)
        kvc_strlcpy(out, "arm64", cap);
    else if (strncmp(u.machine, "armv7", 5) == 0 || strncmp(u.machine, "armv6", 5) == 0)
        kvc_strlcpy(out, "armhf", cap);
    else
        kvc_strlcpy(out, u.machine, cap);
    if (!kvc_router_name_ok(out))
        out[0] = '\0';
}

kvc_routing_t *kvc_routing_new(const kvc_proxy_opts_t *opts, kvc_grpc_client_t *engine,
                               kvc_err_t *err)
{
    if (!opts->sites) {
        kvc_err_set(err, KVC_EINVAL, "routing: no sites callback");
        return NULL;
    }
    if (!kvc_router_name_ok(opts->site)) {
        kvc_err_set(err, KVC_EINVAL, "routing: this site's name is missing or not [a-z0-9._-]{1,63}");
        return NULL;
    }
    if (opts->region && opts->region[0] && !kvc_router_name_ok(opts->region)) {
        kvc_err_set(err, KVC_EINVAL, "routing: region \"%.64s\" is not [a-z0-9._-]{1,63}",
                    opts->region);
        return NULL;
    }
    if (opts->arch && opts->arch[0] && !kvc_router_name_ok(opts->arch)) {
        kvc_err_set(err, KVC_EINVAL, "routing: arch \"%.64s\" is not [a-z0-9._-]{1,63}",
                    opts->arch);
        return NULL;
    }
    if (opts->accel > KVC_ACCEL_NPU) {
        kvc_err_set(err, KVC_EINVAL, "routing: unknown accelerator kind %d", (int)opts->accel);
        return NULL;
    }
    kvc_routing_t *self = kvc_calloc(1, sizeof *self);
    if (!self) {
        kvc_err_set(err, KVC_ENOMEM, "out of memory");
        return NULL;
    }
    self->router = kvc_router_new(opts->router);
    if (!self->router) {
        if (opts->router)
            kvc_router_config_check(opts->router, err);
        else
            kvc_err_set(err, KVC_ENOMEM, "out of memory");
        kvc_free(self);
        return NULL;
    }
    pthread_mutex_init(&self->mu, NULL);
    pthread_mutex_init(&self->stats_mu, NULL);
    self->engine = engine;
    self->sites = opts->sites;
    self->sites_arg = opts->sites_arg;
    self->remote = opts->remote;
    self->remote_arg = opts->remote_arg;
    kvc_strlcpy(self->site, opts->site, sizeof self->site);
    if (opts->region)
        kvc_strlcpy(self->region, opts->region, sizeof self->region);
    if (opts->arch && opts->arch[0])
        kvc_strlcpy(self->arch, opts->arch, sizeof self->arch);
    else
        s_default_arch(self->arch, sizeof self->arch);
    self->accel = opts->accel;
    self->accel_count = opts->accel_count;
    self->capacity = opts->capacity;
    return self;
}

void kvc_routing_destroy(kvc_routing_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    kvc_routing_t *self = *self_p;
    kvc_router_destroy(&self->router);
    pthread_mutex_destroy(&self->mu);
    pthread_mutex_destroy(&self->stats_mu);
    kvc_free(self);
    *self_p = NULL;
}

const char *kvc_routing_site(const kvc_routing_t *self)
{
    return self->site;
}

/* The stats slot of model (stats_mu held): open addressing on a hash of
 * the name; NULL when the table is full and model is not in it. */
static s_stats_t *s_stats(kvc_routing_t *self, const char *model, int create)
{
    uint32_t h = 2166136261u;
    for (const char *p = model; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    for (size_t k = 0; k < KVC_ROUTING_STATS_MODELS; k++) {
        s_stats_t *s = &self->stats[(h + k) % KVC_ROUTING_STATS_MODELS];
        if (s->used && strcmp(s->model, model) == 0)
            return s;
        if (!s->used) {
            if (!create)
                return NULL;
            s->used = 1;
            kvc_strlcpy(s->model, model, sizeof s->model);
            kvc_latwin_init(&s->win, S_WINDOW_MS);
            return s;
        }
    }
    return NULL;
}

void kvc_routing_local_begin(kvc_routing_t *self, const char *model)
{
    pthread_mutex_lock(&self->stats_mu);
    s_stats_t *s = s_stats(self, model, 1);
    if (s)
        kvc_latwin_begin(&s->win);
    pthread_mutex_unlock(&self->stats_mu);
}

void kvc_routing_local_end(kvc_routing_t *self, const char *model, int64_t latency_us, int ok)
{
    uint64_t now = kvc_routing_now_ms();
    pthread_mutex_lock(&self->stats_mu);
    s_stats_t *s = s_stats(self, model, 0);
    if (s)
        kvc_latwin_end(&s->win, now, latency_us < 0 ? 0 : (uint64_t)latency_us, ok);
    pthread_mutex_unlock(&self->stats_mu);
}

void kvc_routing_local_health(kvc_routing_t *self, const char *model, kvc_proxy_model_health_t *h)
{
    uint64_t now = kvc_routing_now_ms();
    kvc_strlcpy(h->model, model, sizeof h->model);
    h->capacity = self->capacity;
    h->in_flight = 0;
    h->p50_us = h->p99_us = -1;
    pthread_mutex_lock(&self->stats_mu);
    s_stats_t *s = s_stats(self, model, 0);
    if (s) {
        h->in_flight = kvc_latwin_in_flight(&s->win);
        h->p50_us = kvc_latwin_quantile(&s->win, now, 0.50);
        h->p99_us = kvc_latwin_quantile(&s->win, now, 0.99);
    }
    pthread_mutex_unlock(&self->stats_mu);
    pthread_mutex_lock(&self->mu);
    h->ready = kvc_router_breaker_state(self->router, self->site, now) != KVC_BREAKER_OPEN;
    pthread_mutex_unlock(&self->mu);
}

int kvc_routing_local_meets(const kvc_routing_t *self, const kvc_router_constraint_t *c)
{
    kvc_router_site_t s = {.site = self->site,
                           .region = self->region,
                           .is_local = 1,
                           .arch = self->arch,
                           .accel = self->accel,
                           .accel_count = self->accel_count};
    return kvc_router_constraint_met(c, &s);
}

int kvc_routing_choose(kvc_routing_t *self, const char *model, int local_has,
                       const kvc_router_constraint_t *c, kvc_router_choice_t *out, kvc_err_t *err)
{
    /* The other sites first, outside any lock: the callback takes its own. */
    kvc_proxy_site_t others[KVC_ROUTER_SITES_MAX - 1];
    size_t n = self->sites(self->sites_arg, model, others, KVC_ROUTER_SITES_MAX - 1);
    if (n > KVC_ROUTER_SITES_MAX - 1)
        n = KVC_ROUTER_SITES_MAX - 1;
    kvc_router_site_t sites[KVC_ROUTER_SITES_MAX];
    size_t m = 0;
    kvc_proxy_model_health_t h;
    kvc_routing_local_health(self, model, &h);
    sites[m++] = (kvc_router_site_t){.site = self->site,
                                     .region = self->region,
                                     .is_local = 1,
                                     .placed = local_has,
                                     .ready = local_has,
                                     .in_flight = h.in_flight,
                                     .capacity = self->capacity,
                                     .p50_us = h.p50_us,
                                     .p99_us = h.p99_us,
                                     .arch = self->arch,
                                     .accel = self->accel,
                                     .accel_count = self->accel_count,
                                     .reachable = 1,
                                     .rtt_us = 0};
    for (size_t i = 0; i < n; i++) {
        kvc_proxy_site_t *o = &others[i];
        o->site[sizeof o->site - 1] = o->region[sizeof o->region - 1] =
            o->arch[sizeof o->arch - 1] = '\0';
        if (strcmp(o->site, self->site) == 0)
            continue; /* the caller's table must not hold us; never twice */
        sites[m] = o->s;
        sites[m].site = o->site;
        sites[m].region = o->region;
        sites[m].arch = o->arch;
        sites[m].is_local = 0;
        m++;
    }
    uint64_t now = kvc_routing_now_ms();
    pthread_mutex_lock(&self->mu);
    int rc = kvc_router_choose(self->router, now, model, sites, m, c, out, err);
    pthread_mutex_unlock(&self->mu);
    return rc;
}

int kvc_routing_begin(kvc_routing_t *self, const char *site)
{
    pthread_mutex_lock(&self->mu);
    int ok = kvc_router_begin(self->router, kvc_routing_now_ms(), site);
    pthread_mutex_unlock(&self->mu);
    return ok;
}

void kvc_routing_report(kvc_routing_t *self, const char *site, kvc_call_class_t cls)
{
    pthread_mutex_lock(&self->mu);
    kvc_router_report(self->router, kvc_routing_now_ms(), site, cls);
    pthread_mutex_unlock(&self->mu);
}

typedef struct {
    kvc_grpc_ext_t ext;
    kvc_grpc_client_t *engine;
} s_wait_t;

static void s_done(void *arg)
{
    s_wait_t *w = arg;
    kvc_grpc_ext_done(w->engine, &w->ext);
}

int kvc_routing_forward(kvc_routing_t *self, const char *site, const kvc_proxy_remote_req_t *req,
                        kvc_proxy_remote_resp_t *resp)
{
    memset(resp, 0, sizeof *resp);
    if (!self->remote) {
        snprintf(resp->error, sizeof resp->error, "no forwarding transport");
        return KVC_EUNAVAIL;
    }
    s_wait_t w;
    kvc_grpc_ext_init(&w.ext);
    w.engine = self->engine;
    int rc = self->remote(self->remote_arg, site, req, resp, s_done, &w);
    if (rc == 0)
        kvc_grpc_ext_wait(self->engine, &w.ext);
    kvc_grpc_ext_destroy(&w.ext);
    if (rc != 0 && !resp->error[0])
        snprintf(resp->error, sizeof resp->error, "no peer of site %s can be reached", site);
    return rc == 0 ? 0 : KVC_EUNAVAIL;
}

void kvc_routing_count(kvc_routing_t *self, int local, int forwarded, int retried, int failed,
                       int no_route)
{
    pthread_mutex_lock(&self->stats_mu);
    self->counts.local += (uint64_t)local;
    self->counts.forwarded += (uint64_t)forwarded;
    self->counts.retried += (uint64_t)retried;
    self->counts.failed += (uint64_t)failed;
    self->counts.no_route += (uint64_t)no_route;
    pthread_mutex_unlock(&self->stats_mu);
}

void kvc_routing_stats(kvc_routing_t *self, kvc_proxy_route_stats_t *out)
{
    pthread_mutex_lock(&self->stats_mu);
    *out = self->counts;
    pthread_mutex_unlock(&self->stats_mu);
}
