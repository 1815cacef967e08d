/*
 * metrics_summary.c - encodes and decodes the gossiped per-peer metrics
 * summary under a byte budget, keeps the newest summary of every peer with
 * staleness windows, and writes them as /federate series.
 *
 * Summaries arrive from other peers: decode treats them as hostile (size
 * bound first, then protobuf, then every field checked). This module must
 * never do I/O or read a clock; time is an argument.
 */
#include "pb_alloc.h"
#include "metrics_summary.h"
#include "metrics.h"
#include "promsel.h"
#include "metrics.pb-c.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 1 if s[0..len) is non-empty UTF-8 without control characters. */
static int s_name_ok(const char *s, size_t len)
{
    if (len == 0 || len > KVC_SUMMARY_NAME_MAX)
        return 0;
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        unsigned c = p[i];
        if (c < 0x20 || c == 0x7f)
            return 0;
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n = c >= 0xc2 && c <= 0xdf   ? 2
                   : c >= 0xe0 && c <= 0xef ? 3
                   : c >= 0xf0 && c <= 0xf4 ? 4
                                            : 0;
        if (!n || i + n > len)
            return 0;
        unsigned cp = c & (0xffu >> (n + 1));
        for (size_t k = 1; k < n; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (p[i + k] & 0x3fu);
        }
        if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
            (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
            return 0;
        i += n;
    }
    return 1;
}

/* Orders models by requests, most first (ties by name, for determinism). */
static int s_model_cmp(const void *a, const void *b)
{
    const kvc_summary_model_t *x = a, *y = b;
    if (x->requests != y->requests)
        return x->requests > y->requests ? -1 : 1;
    return strcmp(x->model, y->model);
}

/* Orders backends by requests, most first. */
static int s_backend_cmp(const void *a, const void *b)
{
    const kvc_summary_backend_t *x = a, *y = b;
    if (x->requests != y->requests)
        return x->requests > y->requests ? -1 : 1;
    return strcmp(x->model, y->model);
}

int kvc_summary_encode(const kvc_summary_t *s, size_t budget, uint8_t *out, size_t out_size,
                       size_t *out_len, size_t *dropped)
{
    if (!s || !out || !out_len || s->n_models > KVC_SUMMARY_MAX_MODELS ||
        s->n_backends > KVC_SUMMARY_MAX_BACKENDS)
        return KVC_EINVAL;
    kvc_summary_t c = *s;
    for (size_t i = 0; i < c.n_models; i++) {
        c.models[i].model[KVC_SUMMARY_NAME_MAX] = '\0';
        if (!s_name_ok(c.models[i].model, strlen(c.models[i].model)))
            return KVC_EINVAL;
        for (size_t j = 0; j < i; j++)
            if (strcmp(c.models[i].model, c.models[j].model) == 0)
                return KVC_EINVAL;
    }
    for (size_t i = 0; i < c.n_backends; i++) {
        c.backends[i].model[KVC_SUMMARY_NAME_MAX] = '\0';
        if (!s_name_ok(c.backends[i].model, strlen(c.backends[i].model)))
            return KVC_EINVAL;
        for (size_t j = 0; j < i; j++)
            if (strcmp(c.backends[i].model, c.backends[j].model) == 0)
                return KVC_EINVAL;
    }
    qsort(c.models, c.n_models, sizeof c.models[0], s_model_cmp);
    qsort(c.backends, c.n_backends, sizeof c.backends[0], s_backend_cmp);

    Kvc__Metrics__ModelStat ms[KVC_SUMMARY_MAX_MODELS], *msp[KVC_SUMMARY_MAX_MODELS];
    Kvc__Metrics__BackendStat bs[KVC_SUMMARY_MAX_BACKENDS], *bsp[KVC_SUMMARY_MAX_BACKENDS];
    for (size_t i = 0; i < c.n_models; i++) {
        kvc__metrics__model_stat__init(&ms[i]);
        ms[i].model = c.models[i].model;
        ms[i].requests = c.models[i].requests;
        ms[i].errors = c.models[i].errors;
        ms[i].p50_seconds = (float)c.models[i].p50_seconds;
        ms[i].p99_seconds = (float)c.models[i].p99_seconds;
        msp[i] = &ms[i];
    }
    for (size_t i = 0; i < c.n_backends; i++) {
        kvc__metrics__backend_stat__init(&bs[i]);
        bs[i].model = c.backends[i].model;
        bs[i].requests = c.backends[i].requests;
        bs[i].latency_seconds = c.backends[i].latency_seconds;
        bsp[i] = &bs[i];
    }
    Kvc__Metrics__Summary pb = KVC__METRICS__SUMMARY__INIT;
    pb.schema = 1;
    pb.version = c.version;
    pb.timestamp_ms = c.timestamp_ms;
    pb.peers_up = c.peers_up;
    pb.members_alive = c.members_alive;
    pb.members_suspect = c.members_suspect;
    pb.members_dead = c.members_dead;
    pb.members_left = c.members_left;
    pb.cpu_seconds = c.cpu_seconds;
    pb.rss_bytes = c.rss_bytes;
    pb.proxy_requests = c.proxy_requests;
    pb.proxy_errors = c.proxy_errors;
    pb.models = msp;
    pb.n_models = c.n_models;
    pb.backends = bsp;
    pb.n_backends = c.n_backends;
    size_t size = kvc__metrics__summary__get_packed_size(&pb);
    size_t cut = 0;
    /* Lowest priority first: backends from the least used, then models. */
    while (size > budget && (pb.n_backends || pb.n_models)) {
        if (pb.n_backends)
            pb.n_backends--;
        else
            pb.n_models--;
        cut++;
        size = kvc__metrics__summary__get_packed_size(&pb);
    }
    if (size > budget || size > out_size)
        return KVC_ERANGE;
    *out_len = kvc__metrics__summary__pack(&pb, out);
    if (dropped)
        *dropped = cut;
    return KVC_OK;
}

/* 1 if v is a finite, non-negative number (or NaN when nan_ok). */
static int s_amount_ok(double v, int nan_ok)
{
    if (isnan(v))
        return nan_ok;
    return isfinite(v) && v >= 0;
}

/* Equal, with NaN (unknown) equal to NaN. */
static int s_same(double a, double b)
{
    return (isnan(a) && isnan(b)) || a == b;
}

int kvc_summary_news(const kvc_summary_t *last, const kvc_summary_t *now)
{
    if (last->peers_up != now->peers_up || last->members_alive != now->members_alive ||
        last->members_suspect != now->members_suspect || last->members_dead != now->members_dead ||
        last->members_left != now->members_left || last->proxy_requests != now->proxy_requests ||
        last->proxy_errors != now->proxy_errors || last->n_models != now->n_models ||
        last->n_backends != now->n_backends)
        return 1;
    for (size_t i = 0; i < now->n_models; i++) {
        const kvc_summary_model_t *a = &last->models[i], *b = &now->models[i];
        if (strcmp(a->model, b->model) != 0 || a->requests != b->requests ||
            a->errors != b->errors || !s_same(a->p50_seconds, b->p50_seconds) ||
            !s_same(a->p99_seconds, b->p99_seconds))
            return 1;
    }
    for (size_t i = 0; i < now->n_backends; i++) {
        const kvc_summary_backend_t *a = &last->backends[i], *b = &now->backends[i];
        if (strcmp(a->model, b->model) != 0 || a->requests != b->requests ||
            !s_same(a->latency_seconds, b->latency_seconds))
            return 1;
    }
    uint64_t d = now->rss_bytes > last->rss_bytes ? now->rss_bytes - last->rss_bytes
                                                  : last->rss_bytes - now->rss_bytes;
    return d > last->rss_bytes / 100 * KVC_SUMMARY_RSS_NEWS_PCT;
}

int kvc_summary_decode(const uint8_t *data, size_t len, kvc_summary_t *out)
{
    if (!out)
        return KVC_EINVAL;
    memset(out, 0, sizeof *out);
    if (!data && len)
        return KVC_EINVAL;
    if (len > KVC_SUMMARY_WIRE_MAX)
        return KVC_ERANGE;
    Kvc__Metrics__Summary *pb = kvc__metrics__summary__unpack(kvc_pb_allocator(), len, data);
    if (!pb)
        return KVC_EPARSE;
    int rc = KVC_OK;
    if (pb->schema != 1 || !s_amount_ok(pb->cpu_seconds, 0)) {
        rc = KVC_EPARSE;
        goto done;
    }
    if (pb->n_models > KVC_SUMMARY_MAX_MODELS || pb->n_backends > KVC_SUMMARY_MAX_BACKENDS) {
        rc = KVC_ERANGE;
        goto done;
    }
    out->version = pb->version;
    out->timestamp_ms = pb->timestamp_ms;
    out->peers_up = pb->peers_up;
    out->members_alive = pb->members_alive;
    out->members_suspect = pb->members_suspect;
    out->members_dead = pb->members_dead;
    out->members_left = pb->members_left;
    out->cpu_seconds = pb->cpu_seconds;
    out->rss_bytes = pb->rss_bytes;
    out->proxy_requests = pb->proxy_requests;
    out->proxy_errors = pb->proxy_errors;
    for (size_t i = 0; i < pb->n_models; i++) {
        const Kvc__Metrics__ModelStat *m = pb->models[i];
        size_t l = m->model ? strlen(m->model) : 0;
        if (l > KVC_SUMMARY_NAME_MAX) {
            rc = KVC_ERANGE;
            goto done;
        }
        if (!s_name_ok(m->model, l) || !s_amount_ok(m->p50_seconds, 1) ||
            !s_amount_ok(m->p99_seconds, 1)) {
            rc = KVC_EPARSE;
            goto done;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(out->models[j].model, m->model) == 0) {
                rc = KVC_EPARSE;
                goto done;
            }
        kvc_summary_model_t *d = &out->models[out->n_models++];
        memcpy(d->model, m->model, l + 1);
        d->requests = m->requests;
        d->errors = m->errors;
        d->p50_seconds = m->p50_seconds;
        d->p99_seconds = m->p99_seconds;
    }
    for (size_t i = 0; i < pb->n_backends; i++) {
        const Kvc__Metrics__BackendStat *b = pb->backends[i];
        size_t l = b->model ? strlen(b->model) : 0;
        if (l > KVC_SUMMARY_NAME_MAX) {
            rc = KVC_ERANGE;
            goto done;
        }
        if (!s_name_ok(b->model, l) || !s_amount_ok(b->latency_seconds, 0)) {
            rc = KVC_EPARSE;
            goto done;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(out->backends[j].model, b->model) == 0) {
                rc = KVC_EPARSE;
                goto done;
            }
        kvc_summary_backend_t *d = &out->backends[out->n_backends++];
        memcpy(d->model, b->model, l + 1);
        d->requests = b->requests;
        d->latency_seconds = b->latency_seconds;
    }
done:
    kvc__metrics__summary__free_unpacked(pb, kvc_pb_allocator());
    if (rc)
        memset(out, 0, sizeof *out);
    return rc;
}

/* ------------------------------------------------------------------ the set */

typedef struct {
    char peer[KVC_SUMMARY_NAME_MAX + 1];
    char site[KVC_SUMMARY_NAME_MAX + 1];
    char region[KVC_SUMMARY_NAME_MAX + 1];
    int64_t seen_ms;
    int stale;
    int down; /* membership says the peer is dead or gone */
    kvc_summary_t s;
} s_entry_t;

struct kvc_summary_set {
    pthread_mutex_t mutex;
    size_t max;
    size_t n;
    s_entry_t **e; /* sorted by (site, peer) */
};

kvc_summary_set_t *kvc_summary_set_new(size_t max_peers)
{
    kvc_summary_set_t *set = kvc_calloc(1, sizeof *set);
    if (!set)
        return NULL;
    set->max = max_peers ? max_peers : KVC_SUMMARY_MAX_PEERS;
    set->e = kvc_calloc(set->max, sizeof *set->e);
    if (!set->e) {
        kvc_free(set);
        return NULL;
    }
    pthread_mutex_init(&set->mutex, NULL);
    return set;
}

void kvc_summary_set_destroy(kvc_summary_set_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    kvc_summary_set_t *set = *self_p;
    for (size_t i = 0; i < set->n; i++)
        kvc_free(set->e[i]);
    kvc_free(set->e);
    pthread_mutex_destroy(&set->mutex);
    kvc_free(set);
    *self_p = NULL;
}

/* Index of peer in the set, or -1 (caller holds the mutex). */
static long s_find(const kvc_summary_set_t *set, const char *peer)
{
    for (size_t i = 0; i < set->n; i++)
        if (strcmp(set->e[i]->peer, peer) == 0)
            return (long)i;
    return -1;
}

/* Orders entries by (site, peer). */
static int s_entry_cmp(const s_entry_t *a, const s_entry_t *b)
{
    int c = strcmp(a->site, b->site);
    return c ? c : strcmp(a->peer, b->peer);
}

/* Moves entry i to its sorted place (after a site change). */
static void s_resort(kvc_summary_set_t *set, size_t i)
{
    s_entry_t *x = set->e[i];
    while (i > 0 && s_entry_cmp(set->e[i - 1], x) > 0) {
        set->e[i] = set->e[i - 1];
        i--;
    }
    while (i + 1 < set->n && s_entry_cmp(set->e[i + 1], x) < 0) {
        set->e[i] = set->e[i + 1];
        i++;
    }
    set->e[i] = x;
}

int kvc_summary_set_put(kvc_summary_set_t *set, const char *peer, const char *site,
                        const char *region, const uint8_t *bytes, size_t len, uint64_t version,
                        int64_t now_ms)
{
    if (!set || !peer || !site || !region || !s_name_ok(peer, strlen(peer)) ||
        !s_name_ok(site, strlen(site)) || !s_name_ok(region, strlen(region)))
        return KVC_EINVAL;
    pthread_mutex_lock(&set->mutex);
    long idx = s_find(set, peer);
    int rc = KVC_OK;
    if (idx >= 0 && set->e[idx]->s.version >= version) {
        rc = KVC_EEXIST; /* cheap check first: no decode for old news */
        goto out;
    }
    kvc_summary_t s;
    if ((rc = kvc_summary_decode(bytes, len, &s)) != 0)
        goto out;
    if (s.version != version) {
        rc = KVC_EINVAL;
        goto out;
    }
    s_entry_t *e;
    if (idx < 0) {
        if (set->n >= set->max) {
            rc = KVC_ERANGE;
            goto out;
        }
        e = kvc_calloc(1, sizeof *e);
        if (!e) {
            rc = KVC_ENOMEM;
            goto out;
        }
        kvc_strlcpy(e->peer, peer, sizeof e->peer);
        idx = (long)set->n;
        set->e[set->n++] = e;
    }
    e = set->e[idx];
    kvc_strlcpy(e->site, site, sizeof e->site);
    kvc_strlcpy(e->region, region, sizeof e->region);
    e->s = s;
    e->seen_ms = now_ms;
    e->stale = e->down; /* only membership brings a down peer back */
    s_resort(set, (size_t)idx);
out:
    pthread_mutex_unlock(&set->mutex);
    return rc;
}

/* Counts sites whose peers are all stale (caller holds the mutex). */
static size_t s_sites_down(const kvc_summary_set_t *set)
{
    size_t down = 0;
    for (size_t i = 0; i < set->n;) {
        size_t j = i;
        int up = 0;
        while (j < set->n && strcmp(set->e[j]->site, set->e[i]->site) == 0)
            up |= !set->e[j++]->stale;
        down += !up;
        i = j;
    }
    return down;
}

int kvc_summary_set_expire(kvc_summary_set_t *set, int64_t now_ms, int64_t stale_ms,
                           int64_t remove_ms, size_t *sites_down)
{
    if (!set || stale_ms < 0 || remove_ms < stale_ms)
        return KVC_EINVAL;
    pthread_mutex_lock(&set->mutex);
    size_t k = 0;
    int removed = 0;
    for (size_t i = 0; i < set->n; i++) {
        s_entry_t *e = set->e[i];
        int64_t age = now_ms > e->seen_ms ? now_ms - e->seen_ms : 0;
        if (age > remove_ms) {
            kvc_free(e);
            removed++;
            continue;
        }
        e->stale = e->down || age > stale_ms;
        set->e[k++] = e;
    }
    set->n = k;
    if (sites_down)
        *sites_down = s_sites_down(set);
    pthread_mutex_unlock(&set->mutex);
    return removed;
}

int kvc_summary_set_mark_down(kvc_summary_set_t *set, const char *peer, int down)
{
    if (!set || !peer)
        return KVC_EINVAL;
    int rc = KVC_ENOENT;
    pthread_mutex_lock(&set->mutex);
    for (size_t i = 0; i < set->n; i++)
        if (strcmp(set->e[i]->peer, peer) == 0) {
            set->e[i]->down = down != 0;
            if (down)
                set->e[i]->stale = 1;
            rc = KVC_OK;
        }
    pthread_mutex_unlock(&set->mutex);
    return rc;
}

int kvc_summary_set_site_up(kvc_summary_set_t *set, const char *site)
{
    if (!set || !site)
        return KVC_EINVAL;
    int rc = KVC_ENOENT;
    pthread_mutex_lock(&set->mutex);
    for (size_t i = 0; i < set->n; i++) {
        if (strcmp(set->e[i]->site, site) != 0)
            continue;
        if (rc == KVC_ENOENT)
            rc = 0;
        if (!set->e[i]->stale)
            rc = 1;
    }
    pthread_mutex_unlock(&set->mutex);
    return rc;
}

size_t kvc_summary_set_count(kvc_summary_set_t *set)
{
    if (!set)
        return 0;
    pthread_mutex_lock(&set->mutex);
    size_t n = set->n;
    pthread_mutex_unlock(&set->mutex);
    return n;
}

int kvc_summary_set_get(kvc_summary_set_t *set, const char *peer, kvc_summary_t *out)
{
    if (!set || !peer || !out)
        return KVC_EINVAL;
    pthread_mutex_lock(&set->mutex);
    long i = s_find(set, peer);
    if (i >= 0)
        *out = set->e[i]->s;
    pthread_mutex_unlock(&set->mutex);
    return i >= 0 ? KVC_OK : KVC_ENOENT;
}

/* ------------------------------------------------------------------ writing */

/* One family being written: header written lazily on its first sample. */
typedef struct {
    const struct kvc_promsel_set *sel;
    kvc_buf_t *out;
    const char *name;
    const char *help;
    kvc_metric_type_t type;
    int header;
    int rc;
} s_fam_t;

/* Writes one sample of e (site, peer, region + up to two more labels). */
static void s_sample(s_fam_t *f, const s_entry_t *e, int with_peer, const char *n1, const char *v1,
                     const char *n2, const char *v2, double v)
{
    if (f->rc)
        return;
    const char *names[5], *values[5];
    size_t n = 0;
    names[n] = "site";
    values[n++] = e->site;
    if (with_peer) {
        names[n] = "peer";
        values[n++] = e->peer;
    }
    names[n] = "region";
    values[n++] = e->region;
    if (n1) {
        names[n] = n1;
        values[n++] = v1;
    }
    if (n2) {
        names[n] = n2;
        values[n++] = v2;
    }
    if (!kvc_promsel_set_match(f->sel, f->name, names, values, n))
        return;
    if (!f->header) {
        f->rc = kvc_metrics_append_header(f->out, f->name, f->help, f->type);
        f->header = 1;
        if (f->rc)
            return;
    }
    f->rc = kvc_metrics_append_sample(f->out, f->name, NULL, names, values, n, v);
}

/* Starts a family; returns 0 if the selectors rule it out entirely. */
static int s_fam(s_fam_t *f, const struct kvc_promsel_set *sel, kvc_buf_t *out, const char *name,
                 const char *help, kvc_metric_type_t type)
{
    *f = (s_fam_t){.sel = sel, .out = out, .name = name, .help = help, .type = type};
    return kvc_promsel_set_may_match_name(sel, name);
}

/* The per-peer families, each a function of one fresh entry. */
typedef enum {
    F_BACKEND_LAT,
    F_BACKEND_REQ,
    F_MEMBERS,
    F_PEER_UP,
    F_PEERS_UP,
    F_CPU,
    F_RSS,
    F_PROXY_ERR,
    F_PROXY_LAT,
    F_PROXY_REQ,
    F_SITE_UP,
    F_AGE,
    F__COUNT
} s_family_id_t;

static const struct {
    const char *name;
    const char *help;
    kvc_metric_type_t type;
} s_families[F__COUNT] = {
    {"kvc_backend_latency_seconds_total", "Model-server request latency, summed, per model.",
     KVC_METRIC_COUNTER},
    {"kvc_backend_requests_total", "Model-server requests per model.", KVC_METRIC_COUNTER},
    {"kvc_members", "Federation members by state, as the peer sees them.", KVC_METRIC_GAUGE},
    {"kvc_peer_up", "1 if the peer's summary is fresh, 0 while it is stale.", KVC_METRIC_GAUGE},
    {"kvc_peers_up", "Federation peers the peer sees alive.", KVC_METRIC_GAUGE},
    {"kvc_process_cpu_seconds_total", "CPU time of the peer process.", KVC_METRIC_COUNTER},
    {"kvc_process_resident_memory_bytes", "Resident memory of the peer process.", KVC_METRIC_GAUGE},
    {"kvc_proxy_errors_total", "Proxy errors per model (top models; _other for the rest).",
     KVC_METRIC_COUNTER},
    {"kvc_proxy_latency_seconds", "Proxy latency quantiles per model.", KVC_METRIC_SUMMARY},
    {"kvc_proxy_requests_total", "Proxy requests per model (top models; _other for the rest).",
     KVC_METRIC_COUNTER},
    {"kvc_site_up", "1 if any peer of the site is fresh, 0 while all are stale.", KVC_METRIC_GAUGE},
    {"kvc_report_age_seconds", "Seconds since this peer heard the summary (peers' clocks are never compared).",
     KVC_METRIC_GAUGE},
};

/* Writes family id's samples for entry e (fresh, or stale for peer_up). */
static void s_write_entry(s_fam_t *f, s_family_id_t id, const s_entry_t *e, int64_t now_ms)
{
    const kvc_summary_t *s = &e->s;
    if (id == F_PEER_UP) {
        s_sample(f, e, 1, NULL, NULL, NULL, NULL, e->stale ? 0 : 1);
        return;
    }
    if (e->stale)
        return;
    switch (id) {
    case F_BACKEND_LAT:
    case F_BACKEND_REQ:
        for (size_t i = 0; i < s->n_backends; i++)
            s_sample(f, e, 1, "model", s->backends[i].model, NULL, NULL,
                     id == F_BACKEND_REQ ? (double)s->backends[i].requests
                                         : s->backends[i].latency_seconds);
        break;
    case F_MEMBERS:
        s_sample(f, e, 1, "state", "alive", NULL, NULL, s->members_alive);
        s_sample(f, e, 1, "state", "dead", NULL, NULL, s->members_dead);
        s_sample(f, e, 1, "state", "left", NULL, NULL, s->members_left);
        s_sample(f, e, 1, "state", "suspect", NULL, NULL, s->members_suspect);
        break;
    case F_PEERS_UP:
        s_sample(f, e, 1, NULL, NULL, NULL, NULL, s->peers_up);
        break;
    case F_CPU:
        s_sample(f, e, 1, NULL, NULL, NULL, NULL, s->cpu_seconds);
        break;
    case F_RSS:
        s_sample(f, e, 1, NULL, NULL, NULL, NULL, (double)s->rss_bytes);
        break;
    case F_PROXY_ERR:
    case F_PROXY_REQ: {
        uint64_t listed = 0;
        for (size_t i = 0; i < s->n_models; i++) {
            uint64_t v = id == F_PROXY_REQ ? s->models[i].requests : s->models[i].errors;
            listed += v;
            s_sample(f, e, 1, "model", s->models[i].model, NULL, NULL, (double)v);
        }
        uint64_t total = id == F_PROXY_REQ ? s->proxy_requests : s->proxy_errors;
        if (total > listed)
            s_sample(f, e, 1, "model", "_other", NULL, NULL, (double)(total - listed));
        break;
    }
    case F_PROXY_LAT:
        for (size_t i = 0; i < s->n_models; i++) {
            s_sample(f, e, 1, "model", s->models[i].model, "quantile", "0.5",
                     s->models[i].p50_seconds);
            s_sample(f, e, 1, "model", s->models[i].model, "quantile", "0.99",
                     s->models[i].p99_seconds);
        }
        break;
    case F_AGE: {
        /* since we heard it: the sender's timestamp is its own clock */
        double age = now_ms > e->seen_ms ? (double)(now_ms - e->seen_ms) / 1000.0 : 0.0;
        s_sample(f, e, 1, NULL, NULL, NULL, NULL, age);
        break;
    }
    default:
        break;
    }
}

int kvc_summary_set_write(kvc_summary_set_t *set, const struct kvc_promsel_set *sel, int64_t now_ms,
                          kvc_buf_t *out)
{
    if (!set || !out)
        return KVC_EINVAL;
    int rc = KVC_OK;
    pthread_mutex_lock(&set->mutex);
    for (int id = 0; id < F__COUNT && !rc; id++) {
        s_fam_t f;
        if (!s_fam(&f, sel, out, s_families[id].name, s_families[id].help, s_families[id].type))
            continue;
        if (id == F_SITE_UP) {
            for (size_t i = 0; i < set->n;) {
                size_t j = i;
                int up = 0;
                while (j < set->n && strcmp(set->e[j]->site, set->e[i]->site) == 0)
                    up |= !set->e[j++]->stale;
                s_sample(&f, set->e[i], 0, NULL, NULL, NULL, NULL, up);
                i = j;
            }
        } else {
            for (size_t i = 0; i < set->n; i++)
                s_write_entry(&f, (s_family_id_t)id, set->e[i], now_ms);
        }
        rc = f.rc;
    }
    pthread_mutex_unlock(&set->mutex);
    return rc;
}
