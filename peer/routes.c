/*
 * routes.c - the other sites' snapshot for the router (see routes.h).
 *
 * The snapshot is an array of (model, site) entries sorted by model then
 * site, so a request's lookup is a binary search and a short walk, under
 * the mutex for the time of a copy. The daemon's loop builds a new array
 * off the lock and swaps it in.
 */
#include "routes.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char member[128];
    char endpoint[256];
    uint8_t key[32];
    int ready, reachable;
    int64_t rtt_us;
} s_peer_t;

typedef struct {
    char model[KVC_ROUTER_MODEL_MAX + 1];
    char site[KVC_ROUTER_NAME_MAX + 1];
    char region[KVC_ROUTER_NAME_MAX + 1];
    char arch[KVC_ROUTER_NAME_MAX + 1];
    uint32_t accel, accel_count;
    int ready, reachable, cap_unknown;
    uint32_t in_flight, capacity;
    int64_t p50_us, p99_us, rtt_us;
    size_t n_peers;
    s_peer_t peers[KVC_ROUTES_PEERS_MAX];
} s_entry_t;

struct kvc_routes {
    pthread_mutex_t mu;
    s_entry_t *entries; /* sorted; under mu */
    size_t n;
    char site[KVC_ROUTER_NAME_MAX + 1];
    kvc_routes_where_fn where;
    void *where_arg;
};

kvc_routes_t *kvc_routes_new(const char *self_site, kvc_routes_where_fn where, void *where_arg)
{
    kvc_routes_t *self = kvc_calloc(1, sizeof *self);
    if (!self)
        return NULL;
    pthread_mutex_init(&self->mu, NULL);
    kvc_strlcpy(self->site, self_site, sizeof self->site);
    self->where = where;
    self->where_arg = where_arg;
    return self;
}

void kvc_routes_destroy(kvc_routes_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    kvc_routes_t *self = *self_p;
    kvc_free(self->entries);
    pthread_mutex_destroy(&self->mu);
    kvc_free(self);
    *self_p = NULL;
}

static int s_cmp(const void *a, const void *b)
{
    const s_entry_t *x = a, *y = b;
    int c = strcmp(x->model, y->model);
    return c ? c : strcmp(x->site, y->site);
}

/* The entry of (model, site) in e[0..n) (unsorted while building). */
static s_entry_t *s_find(s_entry_t *e, size_t n, const char *model, const char *site)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(e[i].model, model) == 0 && strcmp(e[i].site, site) == 0)
            return &e[i];
    return NULL;
}

/* The better of two peers for a forward: ready and reachable first, then
 * the lower RTT (unknown last). */
static int s_peer_better(const s_peer_t *a, const s_peer_t *b)
{
    int ga = a->ready && a->reachable, gb = b->ready && b->reachable;
    if (ga != gb)
        return ga > gb;
    if ((a->rtt_us < 0) != (b->rtt_us < 0))
        return a->rtt_us >= 0;
    return a->rtt_us < b->rtt_us;
}

int kvc_routes_update(kvc_routes_t *self, const kvc_routes_member_t *members, size_t n)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += members[i].n_models;
    if (total > KVC_ROUTES_ENTRIES_MAX)
        total = KVC_ROUTES_ENTRIES_MAX;
    s_entry_t *e = kvc_calloc(total ? total : 1, sizeof *e);
    if (!e)
        return KVC_ENOMEM;
    /* Built with a linear find: the daemon's loop does this a few times a
     * second, for at most KVC_ROUTES_ENTRIES_MAX pairs; a hash would pay
     * off only well beyond the sizes we run at. */
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        const kvc_routes_member_t *mb = &members[i];
        if (!mb->site || strcmp(mb->site, self->site) == 0)
            continue;
        for (size_t j = 0; j < mb->n_models; j++) {
            const kvc_routes_model_t *md = &mb->models[j];
            if (!md->name || strlen(md->name) > KVC_ROUTER_MODEL_MAX ||
                strlen(mb->site) > KVC_ROUTER_NAME_MAX)
                continue;
            s_entry_t *x = s_find(e, m, md->name, mb->site);
            if (!x) {
                if (m == total)
                    continue;
                x = &e[m++];
                kvc_strlcpy(x->model, md->name, sizeof x->model);
                kvc_strlcpy(x->site, mb->site, sizeof x->site);
                kvc_strlcpy(x->region, mb->region ? mb->region : "", sizeof x->region);
                kvc_strlcpy(x->arch, mb->arch ? mb->arch : "", sizeof x->arch);
                x->accel = mb->accel;
                x->accel_count = mb->accel_count;
                x->p50_us = x->p99_us = x->rtt_us = -1;
            }
            int usable = mb->reachable && mb->forward && mb->forward[0];
            if (usable) {
                x->reachable = 1;
                if (md->ready)
                    x->ready = 1;
                x->in_flight += md->in_flight;
                if (md->capacity == 0)
                    x->cap_unknown = 1;
                x->capacity += md->capacity;
                if (md->ready && md->p50_us >= 0 && (x->p50_us < 0 || md->p50_us < x->p50_us)) {
                    x->p50_us = md->p50_us;
                    x->p99_us = md->p99_us;
                }
                if (mb->rtt_us >= 0 && (x->rtt_us < 0 || mb->rtt_us < x->rtt_us))
                    x->rtt_us = mb->rtt_us;
            }
            s_peer_t p = {.ready = md->ready, .reachable = usable, .rtt_us = mb->rtt_us};
            kvc_strlcpy(p.member, mb->id ? mb->id : "", sizeof p.member);
            kvc_strlcpy(p.endpoint, mb->forward ? mb->forward : "", sizeof p.endpoint);
            if (mb->curve_key)
                memcpy(p.key, mb->curve_key, 32);
            /* Keep the best KVC_ROUTES_PEERS_MAX, best first. */
            size_t k = x->n_peers;
            if (k == KVC_ROUTES_PEERS_MAX) {
                if (!s_peer_better(&p, &x->peers[k - 1]))
                    continue;
                k--;
            } else {
                x->n_peers++;
            }
            while (k > 0 && s_peer_better(&p, &x->peers[k - 1])) {
                x->peers[k] = x->peers[k - 1];
                k--;
            }
            x->peers[k] = p;
        }
    }
    for (size_t i = 0; i < m; i++)
        if (e[i].cap_unknown)
            e[i].capacity = 0;
    qsort(e, m, sizeof *e, s_cmp);
    pthread_mutex_lock(&self->mu);
    s_entry_t *old = self->entries;
    self->entries = e;
    self->n = m;
    pthread_mutex_unlock(&self->mu);
    kvc_free(old);
    return KVC_OK;
}

/* Index of the first entry of model (mu held), or n. */
static size_t s_first(const kvc_routes_t *self, const char *model)
{
    size_t lo = 0, hi = self->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(self->entries[mid].model, model) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

size_t kvc_routes_sites(void *arg, const char *model, kvc_proxy_site_t *out, size_t cap)
{
    kvc_routes_t *self = arg;
    char placed[1024] = "";
    if (self->where)
        self->where(self->where_arg, model, placed, sizeof placed);
    size_t k = 0;
    pthread_mutex_lock(&self->mu);
    for (size_t i = s_first(self, model); i < self->n && k < cap; i++) {
        const s_entry_t *x = &self->entries[i];
        if (strcmp(x->model, model) != 0)
            break;
        kvc_proxy_site_t *o = &out[k++];
        memset(o, 0, sizeof *o);
        kvc_strlcpy(o->site, x->site, sizeof o->site);
        kvc_strlcpy(o->region, x->region, sizeof o->region);
        kvc_strlcpy(o->arch, x->arch, sizeof o->arch);
        o->s.placed = 1; /* it reports the model: it serves it */
        o->s.ready = x->ready;
        o->s.in_flight = x->in_flight;
        o->s.capacity = x->capacity;
        o->s.p50_us = x->p50_us;
        o->s.p99_us = x->p99_us;
        o->s.accel = (kvc_accel_t)(x->accel <= KVC_ACCEL_NPU ? x->accel : KVC_ACCEL_NONE);
        o->s.accel_count = x->accel_count;
        o->s.reachable = x->reachable;
        o->s.rtt_us = x->rtt_us;
    }
    pthread_mutex_unlock(&self->mu);
    /* Placed by the registry but reported by no peer: down, or not yet
     * heard from. Shown so that a route explains why it is not used. */
    for (const char *p = placed; *p && k < cap;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char name[KVC_ROUTER_NAME_MAX + 1];
        if (len > 0 && len <= KVC_ROUTER_NAME_MAX) {
            memcpy(name, p, len);
            name[len] = '\0';
            int have = strcmp(name, self->site) == 0;
            for (size_t i = 0; i < k && !have; i++)
                have = strcmp(out[i].site, name) == 0;
            if (!have) {
                kvc_proxy_site_t *o = &out[k++];
                memset(o, 0, sizeof *o);
                kvc_strlcpy(o->site, name, sizeof o->site);
                o->s.placed = 1;
                o->s.p50_us = o->s.p99_us = o->s.rtt_us = -1;
            }
        }
        if (!end)
            break;
        p = end + 1;
        while (*p == ' ')
            p++;
    }
    return k;
}

int kvc_routes_pick(kvc_routes_t *self, const char *site, const char *model,
                    kvc_routes_peer_t *out)
{
    int rc = KVC_ENOENT;
    pthread_mutex_lock(&self->mu);
    for (size_t i = s_first(self, model); i < self->n; i++) {
        const s_entry_t *x = &self->entries[i];
        if (strcmp(x->model, model) != 0)
            break;
        if (strcmp(x->site, site) != 0)
            continue;
        /* peers are best first: the first reachable one */
        for (size_t j = 0; j < x->n_peers; j++) {
            if (!x->peers[j].reachable)
                continue;
            kvc_strlcpy(out->member, x->peers[j].member, sizeof out->member);
            kvc_strlcpy(out->endpoint, x->peers[j].endpoint, sizeof out->endpoint);
            memcpy(out->curve_key, x->peers[j].key, 32);
            rc = KVC_OK;
            break;
        }
        break;
    }
    pthread_mutex_unlock(&self->mu);
    return rc;
}
