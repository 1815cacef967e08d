/*
 * metrics.c - the metrics registry and its Prometheus text exposition.
 *
 * Hot path: a family maps label-value tuples to children through an
 * open-addressing table that readers probe without a lock (slots are only
 * ever filled, and a grown table is published with a release store; retired
 * tables live until destroy). Values are atomics (doubles stored as their
 * bits and updated by compare-and-swap; histogram buckets are plain atomic
 * counters). Only creating a child takes the family mutex. Scrapes take the
 * registry mutex, which also guards registration.
 *
 * This module must never do I/O, read a clock or log; it fills buffers.
 */
#include "metrics.h"
#include "promsel.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const double kvc_metrics_latency_buckets[] = {.0005, .001, .0025, .005, .01, .025, .05,
                                              .1,    .25,  .5,    1,    2.5, 5,    10};
const size_t kvc_metrics_latency_buckets_n =
    sizeof kvc_metrics_latency_buckets / sizeof kvc_metrics_latency_buckets[0];
const double kvc_metrics_size_buckets[] = {256,    1024,    4096,    16384,    65536,
                                           262144, 1048576, 4194304, 16777216, 67108864};
const size_t kvc_metrics_size_buckets_n =
    sizeof kvc_metrics_size_buckets / sizeof kvc_metrics_size_buckets[0];

#define S_DROPPED_NAME "kvc_metrics_dropped_series_total"
#define S_OVERFLOW "_overflow"

/* One child: a label-value tuple and its value(s). Allocated in one block
 * together with its bucket counters and value strings. */
typedef struct s_child {
    uint32_t hash;
    _Atomic uint64_t bits;     /* counter/gauge value, or histogram sum (double bits) */
    _Atomic uint64_t *buckets; /* histogram: n_bounds + 1 non-cumulative counts */
    const char *values[KVC_METRICS_MAX_LABELS];
} s_child_t;

/* A lookup table; power-of-two capacity, at most half full. */
typedef struct s_tab {
    struct s_tab *retired; /* older table, freed at destroy */
    size_t cap;
    _Atomic(s_child_t *) slots[];
} s_tab_t;

struct kvc_metric {
    kvc_metrics_t *reg;
    kvc_metric_type_t type;
    char *name;
    char *help;
    size_t n_labels;
    char *label_names[KVC_METRICS_MAX_LABELS];
    size_t n_bounds;
    double bounds[KVC_METRICS_MAX_BUCKETS];
    kvc_metrics_fn fn;
    void *fn_arg;
    pthread_mutex_t mutex; /* guards creation: children, n_children, tab growth */
    _Atomic(s_tab_t *) tab;
    s_child_t *_Atomic single;   /* the child of a label-less family */
    s_child_t *_Atomic overflow; /* created on first overflow */
    s_child_t **children;        /* creation order, overflow excluded */
    size_t n_children;
    size_t children_cap;
    s_child_t **sorted; /* scrape cache, guarded by the registry mutex */
    size_t n_sorted;
};

struct kvc_metrics {
    pthread_mutex_t mutex; /* registration and scrapes */
    kvc_metrics_opts_t opts;
    char *prefix;
    kvc_metric_t **families; /* sorted by name */
    size_t n_families;
    size_t cap_families;
    kvc_metric_t *dropped;
};

struct kvc_metrics_emitter {
    kvc_metric_t *m;
    s_child_t **samples;
    size_t n;
    size_t cap;
};

/* ---------------------------------------------------------------- helpers */

/* Stores a double in an atomic as its bits. */
static uint64_t s_bits(double v)
{
    uint64_t b;
    memcpy(&b, &v, sizeof b);
    return b;
}

/* Reads back a double from its bits. */
static double s_double(uint64_t b)
{
    double v;
    memcpy(&v, &b, sizeof v);
    return v;
}

/* Adds delta to the double held in a. */
static void s_atomic_add(_Atomic uint64_t *a, double delta)
{
    uint64_t old = atomic_load_explicit(a, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(a, &old, s_bits(s_double(old) + delta),
                                                  memory_order_relaxed, memory_order_relaxed))
        ;
}

/* FNV-1a over the label values, separated by 0xff (never valid UTF-8). */
static uint32_t s_hash(const char *const *values, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        for (const unsigned char *p = (const unsigned char *)values[i]; *p; p++)
            h = (h ^ *p) * 16777619u;
        h = (h ^ 0xffu) * 16777619u;
    }
    return h;
}

/* Length of the valid UTF-8 sequence at p (at most avail bytes), 0 if invalid. */
static size_t s_utf8_len(const unsigned char *p, size_t avail)
{
    unsigned c = p[0];
    size_t n;
    unsigned min;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        min = 0x10000;
    } else {
        return 0;
    }
    if (avail < n)
        return 0;
    unsigned cp = c & (0xffu >> (n + 1));
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3fu);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

/* 1 if s (NUL-terminated) is valid UTF-8. */
static int s_utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t len = strlen(s);
    for (size_t i = 0; i < len;) {
        size_t n = s_utf8_len(p + i, len - i);
        if (!n)
            return 0;
        i += n;
    }
    return 1;
}

/* Copies src to dst (KVC_METRICS_VALUE_MAX + 1 bytes): cut at a character
 * boundary, invalid bytes replaced by '?'. Returns 1 if dst differs. */
static int s_sanitize(const char *src, char *dst)
{
    const unsigned char *p = (const unsigned char *)src;
    size_t len = strlen(src), o = 0;
    int changed = 0;
    for (size_t i = 0; i < len;) {
        size_t n = s_utf8_len(p + i, len - i);
        if (!n) {
            if (o + 1 > KVC_METRICS_VALUE_MAX)
                return 1;
            dst[o++] = '?';
            dst[o] = '\0';
            i++;
            changed = 1;
            continue;
        }
        if (o + n > KVC_METRICS_VALUE_MAX)
            return 1;
        memcpy(dst + o, p + i, n);
        o += n;
        i += n;
        dst[o] = '\0';
    }
    dst[o] = '\0';
    return changed;
}

/* 1 if some value would change under s_sanitize (too long or not UTF-8). */
static int s_needs_sanitize(const char *const *values, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        size_t len = 0;
        for (const unsigned char *p = (const unsigned char *)values[i]; *p; p++, len++)
            if (*p >= 0x80 || len >= KVC_METRICS_VALUE_MAX)
                return 1;
    }
    return 0;
}

/* Allocates a child for values (already sanitized) of family m. */
static s_child_t *s_child_new(const kvc_metric_t *m, const char *const *values, uint32_t hash)
{
    size_t nb = m->type == KVC_METRIC_HISTOGRAM ? m->n_bounds + 1 : 0;
    size_t strs = 0;
    for (size_t i = 0; i < m->n_labels; i++)
        strs += strlen(values[i]) + 1;
    size_t size = sizeof(s_child_t) + nb * sizeof(_Atomic uint64_t) + strs;
    s_child_t *c = kvc_malloc(size);
    if (!c)
        return NULL;
    c->hash = hash;
    atomic_init(&c->bits, s_bits(0.0));
    c->buckets = nb ? (_Atomic uint64_t *)(c + 1) : NULL;
    for (size_t i = 0; i < nb; i++)
        atomic_init(&c->buckets[i], 0);
    char *s = (char *)(c + 1) + nb * sizeof(_Atomic uint64_t);
    for (size_t i = 0; i < KVC_METRICS_MAX_LABELS; i++) {
        if (i >= m->n_labels) {
            c->values[i] = NULL;
            continue;
        }
        size_t l = strlen(values[i]) + 1;
        memcpy(s, values[i], l);
        c->values[i] = s;
        s += l;
    }
    return c;
}

/* 1 if child c holds exactly these values. */
static int s_child_is(const s_child_t *c, const char *const *values, size_t n, uint32_t hash)
{
    if (c->hash != hash)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (strcmp(c->values[i], values[i]) != 0)
            return 0;
    return 1;
}

/* Probes table t for values; NULL if absent. Lock-free. */
static s_child_t *s_tab_find(s_tab_t *t, const char *const *values, size_t n, uint32_t hash)
{
    if (!t)
        return NULL;
    size_t mask = t->cap - 1;
    for (size_t i = hash & mask;; i = (i + 1) & mask) {
        s_child_t *c = atomic_load_explicit(&t->slots[i], memory_order_acquire);
        if (!c)
            return NULL;
        if (s_child_is(c, values, n, hash))
            return c;
    }
}

/* Places c in the first free slot of t (caller holds the family mutex). */
static void s_tab_put(s_tab_t *t, s_child_t *c)
{
    size_t mask = t->cap - 1;
    size_t i = c->hash & mask;
    while (atomic_load_explicit(&t->slots[i], memory_order_relaxed))
        i = (i + 1) & mask;
    atomic_store_explicit(&t->slots[i], c, memory_order_release);
}

/* Allocates an empty table of cap slots. */
static s_tab_t *s_tab_new(size_t cap)
{
    s_tab_t *t = kvc_malloc(sizeof *t + cap * sizeof(t->slots[0]));
    if (!t)
        return NULL;
    t->retired = NULL;
    t->cap = cap;
    for (size_t i = 0; i < cap; i++)
        atomic_init(&t->slots[i], NULL);
    return t;
}

/* Counts an update that went to the overflow child of m. */
static void s_count_dropped(kvc_metric_t *m)
{
    kvc_metric_t *d = m->reg->dropped;
    if (d && d != m)
        kvc_metrics_inc(d, (const char *const[]){m->name}, 1);
}

/* Returns the overflow child of m, creating it (caller holds the mutex). */
static s_child_t *s_overflow_locked(kvc_metric_t *m)
{
    s_child_t *o = atomic_load_explicit(&m->overflow, memory_order_acquire);
    if (o)
        return o;
    const char *vals[KVC_METRICS_MAX_LABELS] = {S_OVERFLOW, S_OVERFLOW, S_OVERFLOW, S_OVERFLOW};
    o = s_child_new(m, vals, s_hash(vals, m->n_labels));
    if (o)
        atomic_store_explicit(&m->overflow, o, memory_order_release);
    return o;
}

/* Slow path: finds or creates the child for values under the mutex. */
static s_child_t *s_child_create(kvc_metric_t *m, const char *const *raw)
{
    char buf[KVC_METRICS_MAX_LABELS][KVC_METRICS_VALUE_MAX + 1];
    const char *vals[KVC_METRICS_MAX_LABELS];
    for (size_t i = 0; i < m->n_labels; i++) {
        s_sanitize(raw[i], buf[i]);
        vals[i] = buf[i];
    }
    uint32_t hash = s_hash(vals, m->n_labels);
    s_child_t *c = NULL;
    int dropped = 0;
    pthread_mutex_lock(&m->mutex);
    s_tab_t *t = atomic_load_explicit(&m->tab, memory_order_acquire);
    c = s_tab_find(t, vals, m->n_labels, hash);
    if (c)
        goto out;
    size_t max = m->reg->opts.max_children;
    if (m->n_children >= max) {
        c = s_overflow_locked(m);
        dropped = 1;
        goto out;
    }
    if (m->n_children == m->children_cap) {
        size_t cap = m->children_cap ? m->children_cap * 2 : 8;
        s_child_t **ch = kvc_realloc(m->children, cap * sizeof *ch);
        if (!ch)
            goto out;
        m->children = ch;
        m->children_cap = cap;
    }
    if (!t || (m->n_children + 1) * 2 > t->cap) {
        s_tab_t *nt = s_tab_new(t ? t->cap * 2 : 16);
        if (!nt)
            goto out;
        for (size_t i = 0; t && i < t->cap; i++) {
            s_child_t *e = atomic_load_explicit(&t->slots[i], memory_order_relaxed);
            if (e)
                s_tab_put(nt, e);
        }
        nt->retired = t;
        atomic_store_explicit(&m->tab, nt, memory_order_release);
        t = nt;
    }
    c = s_child_new(m, vals, hash);
    if (!c)
        goto out;
    m->children[m->n_children++] = c;
    s_tab_put(t, c);
out:
    pthread_mutex_unlock(&m->mutex);
    if (dropped)
        s_count_dropped(m);
    return c;
}

/* Finds the child for values, creating it on first use; NULL on ENOMEM. */
static s_child_t *s_child_get(kvc_metric_t *m, const char *const *values)
{
    if (m->n_labels == 0) {
        s_child_t *c = atomic_load_explicit(&m->single, memory_order_acquire);
        if (c)
            return c;
        pthread_mutex_lock(&m->mutex);
        c = atomic_load_explicit(&m->single, memory_order_relaxed);
        if (!c) {
            c = s_child_new(m, NULL, 0);
            atomic_store_explicit(&m->single, c, memory_order_release);
        }
        pthread_mutex_unlock(&m->mutex);
        return c;
    }
    const char *vals[KVC_METRICS_MAX_LABELS];
    for (size_t i = 0; i < m->n_labels; i++)
        vals[i] = values && values[i] ? values[i] : "";
    uint32_t hash = s_hash(vals, m->n_labels);
    s_child_t *c =
        s_tab_find(atomic_load_explicit(&m->tab, memory_order_acquire), vals, m->n_labels, hash);
    if (c)
        return c;
    s_child_t *o = atomic_load_explicit(&m->overflow, memory_order_acquire);
    if (o && !s_needs_sanitize(vals, m->n_labels)) {
        /* Full family: don't take the mutex for every unknown tuple. */
        s_count_dropped(m);
        return o;
    }
    return s_child_create(m, vals);
}

/* ----------------------------------------------------------------- updates */

void kvc_metrics_inc(kvc_metric_t *m, const char *const *values, double v)
{
    if (!m || m->fn || m->type == KVC_METRIC_HISTOGRAM || !(v >= 0))
        return;
    s_child_t *c = s_child_get(m, values);
    if (c)
        s_atomic_add(&c->bits, v);
}

void kvc_metrics_add_gauge(kvc_metric_t *m, const char *const *values, double delta)
{
    if (!m || m->fn || m->type != KVC_METRIC_GAUGE)
        return;
    s_child_t *c = s_child_get(m, values);
    if (c)
        s_atomic_add(&c->bits, delta);
}

void kvc_metrics_set(kvc_metric_t *m, const char *const *values, double v)
{
    if (!m || m->fn || m->type != KVC_METRIC_GAUGE)
        return;
    s_child_t *c = s_child_get(m, values);
    if (c)
        atomic_store_explicit(&c->bits, s_bits(v), memory_order_relaxed);
}

void kvc_metrics_observe(kvc_metric_t *m, const char *const *values, double v)
{
    if (!m || m->type != KVC_METRIC_HISTOGRAM || isnan(v))
        return;
    s_child_t *c = s_child_get(m, values);
    if (!c)
        return;
    size_t lo = 0, hi = m->n_bounds; /* first bound >= v, or n_bounds (+Inf) */
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (v <= m->bounds[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    atomic_fetch_add_explicit(&c->buckets[lo], 1, memory_order_relaxed);
    s_atomic_add(&c->bits, v);
}

/* ------------------------------------------------------------ registration */

static const char *s_type_names[] = {"counter", "gauge", "histogram", "summary"};

/* 1 if s matches [a-zA-Z_:][a-zA-Z0-9_:]* (colon allowed only if colon). */
static int s_valid_ident(const char *s, int colon)
{
    if (!*s)
        return 0;
    for (const char *p = s; *p; p++) {
        char c = *p;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                 (colon && c == ':') || (p != s && c >= '0' && c <= '9');
        if (!ok)
            return 0;
    }
    return 1;
}

/* 1 if s ends with suffix. */
static int s_ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && memcmp(s + a - b, suffix, b) == 0;
}

/* The unit lint: promtool refuses abbreviated and non-base units. */
static int s_check_units(const char *name, kvc_err_t *err)
{
    static const char *abbrev[] = {"s",  "ms", "us", "ns", "sec", "b", "kb", "mb",
                                   "gb", "tb", "pb", "m",  "h",   "d", NULL};
    static const char *prefixes[] = {"pico",  "nano", "micro", "milli", "centi", "deci", "deca",
                                     "hecto", "kilo", "kibi",  "mega",  "mebi",  "giga", "gibi",
                                     "tera",  "tebi", "peta",  "pebi",  NULL};
    static const char *units[] = {"amperes", "bytes",  "celsius", "grams", "joules", "kelvin",
                                  "meters",  "metres", "seconds", "volts", NULL};
    static const char *nonbase[] = {"minutes", "hours", "days", "weeks", "bits", NULL};
    static const char *types[] = {"counter", "gauge", "histogram", "summary", "untyped", NULL};
    const char *p = name;
    while (*p) {
        const char *e = strchr(p, '_');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        char tok[KVC_METRICS_NAME_MAX + 1];
        memcpy(tok, p, n);
        tok[n] = '\0';
        for (size_t i = 0; abbrev[i]; i++)
            if (strcmp(tok, abbrev[i]) == 0)
                return kvc_err_set(err, KVC_EINVAL,
                                   "%s: metric names should not contain abbreviated units (%s)",
                                   name, tok);
        for (size_t i = 0; nonbase[i]; i++)
            if (strcmp(tok, nonbase[i]) == 0)
                return kvc_err_set(err, KVC_EINVAL, "%s: use a base unit instead of %s", name, tok);
        for (size_t i = 0; types[i]; i++)
            if (strcmp(tok, types[i]) == 0)
                return kvc_err_set(err, KVC_EINVAL, "%s: metric name should not include type '%s'",
                                   name, tok);
        for (size_t i = 0; prefixes[i]; i++) {
            size_t pl = strlen(prefixes[i]);
            if (n <= pl || memcmp(tok, prefixes[i], pl) != 0)
                continue;
            for (size_t u = 0; units[u]; u++)
                if (strcmp(tok + pl, units[u]) == 0)
                    return kvc_err_set(err, KVC_EINVAL,
                                       "%s: use base unit \"%s\" instead of \"%s\"", name, units[u],
                                       tok);
        }
        p += n;
        if (*p == '_')
            p++;
    }
    return KVC_OK;
}

int kvc_metrics_check_name(const kvc_metrics_opts_t *opts, kvc_metric_type_t type, const char *name,
                           kvc_err_t *err)
{
    if (!name || !*name)
        return kvc_err_set(err, KVC_EINVAL, "metric name is empty");
    if (strlen(name) > KVC_METRICS_NAME_MAX)
        return kvc_err_set(err, KVC_EINVAL, "%.32s...: metric name longer than %d bytes", name,
                           KVC_METRICS_NAME_MAX);
    if (!s_valid_ident(name, 1))
        return kvc_err_set(err, KVC_EINVAL, "%s: metric name must match [a-zA-Z_:][a-zA-Z0-9_:]*",
                           name);
    if (opts && opts->prefix && strncmp(name, opts->prefix, strlen(opts->prefix)) != 0)
        return kvc_err_set(err, KVC_EINVAL, "%s: metric name must start with \"%s\"", name,
                           opts->prefix);
    if (!opts || !opts->lint)
        return KVC_OK;
    for (const char *p = name; *p; p++) {
        if (*p == ':')
            return kvc_err_set(err, KVC_EINVAL,
                               "%s: metric names should not contain ':' (kept for recording rules)",
                               name);
        if (*p >= 'A' && *p <= 'Z')
            return kvc_err_set(err, KVC_EINVAL,
                               "%s: metric names should be written in 'snake_case' not 'camelCase'",
                               name);
    }
    if (type == KVC_METRIC_COUNTER && !s_ends_with(name, "_total"))
        return kvc_err_set(err, KVC_EINVAL, "%s: counter metrics should have \"_total\" suffix",
                           name);
    if (type != KVC_METRIC_COUNTER && s_ends_with(name, "_total"))
        return kvc_err_set(err, KVC_EINVAL,
                           "%s: non-counter metrics should not have \"_total\" suffix", name);
    if (s_ends_with(name, "_bucket") || s_ends_with(name, "_count") || s_ends_with(name, "_sum"))
        return kvc_err_set(err, KVC_EINVAL,
                           "%s: metric names should not end in _bucket, _count or _sum", name);
    return s_check_units(name, err);
}

/* Splits and checks the comma-separated label names of spec into m. */
static int s_parse_labels(kvc_metrics_t *reg, kvc_metric_t *m, const char *labels, kvc_err_t *err)
{
    if (!labels)
        return KVC_OK;
    const char *p = labels;
    while (*p) {
        while (*p == ' ')
            p++;
        const char *e = p;
        while (*e && *e != ',' && *e != ' ')
            e++;
        size_t n = (size_t)(e - p);
        if (m->n_labels == KVC_METRICS_MAX_LABELS)
            return kvc_err_set(err, KVC_EINVAL, "%s: more than %d labels", m->name,
                               KVC_METRICS_MAX_LABELS);
        if (n == 0 || n > KVC_METRICS_NAME_MAX)
            return kvc_err_set(err, KVC_EINVAL, "%s: empty or too long label name in \"%s\"",
                               m->name, labels);
        char *ln = kvc_strndup(p, n);
        if (!ln)
            return KVC_ENOMEM;
        m->label_names[m->n_labels++] = ln;
        if (!s_valid_ident(ln, 0))
            return kvc_err_set(err, KVC_EINVAL,
                               "%s: label name \"%s\" must match [a-zA-Z_][a-zA-Z0-9_]*", m->name,
                               ln);
        if (ln[0] == '_' && ln[1] == '_')
            return kvc_err_set(err, KVC_EINVAL,
                               "%s: label name \"%s\" is reserved (starts with __)", m->name, ln);
        if (m->type == KVC_METRIC_HISTOGRAM && strcmp(ln, "le") == 0)
            return kvc_err_set(err, KVC_EINVAL, "%s: histograms cannot have a label named le",
                               m->name);
        for (const char *q = ln; reg->opts.lint && *q; q++)
            if (*q >= 'A' && *q <= 'Z')
                return kvc_err_set(
                    err, KVC_EINVAL,
                    "%s: label names should be written in 'snake_case' not 'camelCase'", m->name);
        for (size_t i = 0; i + 1 < m->n_labels; i++)
            if (strcmp(m->label_names[i], ln) == 0)
                return kvc_err_set(err, KVC_EINVAL, "%s: duplicate label name \"%s\"", m->name, ln);
        while (*e == ' ')
            e++;
        if (*e == ',') {
            e++;
            if (!*e)
                return kvc_err_set(err, KVC_EINVAL, "%s: trailing comma in labels", m->name);
        } else if (*e) {
            return kvc_err_set(err, KVC_EINVAL, "%s: bad labels \"%s\"", m->name, labels);
        }
        p = e;
    }
    return KVC_OK;
}

/* Frees a family and all its children. */
static void s_family_free(kvc_metric_t *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n_children; i++)
        kvc_free(m->children[i]);
    kvc_free(m->children);
    kvc_free(atomic_load(&m->single));
    kvc_free(atomic_load(&m->overflow));
    s_tab_t *t = atomic_load(&m->tab);
    while (t) {
        s_tab_t *r = t->retired;
        kvc_free(t);
        t = r;
    }
    for (size_t i = 0; i < m->n_labels; i++)
        kvc_free(m->label_names[i]);
    kvc_free(m->sorted);
    kvc_free(m->name);
    kvc_free(m->help);
    pthread_mutex_destroy(&m->mutex);
    kvc_free(m);
}

/* Fills names[] with the series names family m produces; returns count. */
static size_t s_series_names(const char *name, kvc_metric_type_t type,
                             char names[4][KVC_METRICS_NAME_MAX + 8])
{
    snprintf(names[0], sizeof names[0], "%s", name);
    if (type != KVC_METRIC_HISTOGRAM)
        return 1;
    snprintf(names[1], sizeof names[1], "%s_bucket", name);
    snprintf(names[2], sizeof names[2], "%s_sum", name);
    snprintf(names[3], sizeof names[3], "%s_count", name);
    return 4;
}

/* 1 if family m is the same registration as spec (same type and labels). */
static int s_same_family(const kvc_metric_t *a, const kvc_metric_t *b)
{
    if (a->type != b->type || a->n_labels != b->n_labels || a->fn || b->fn ||
        a->n_bounds != b->n_bounds)
        return 0;
    for (size_t i = 0; i < a->n_labels; i++)
        if (strcmp(a->label_names[i], b->label_names[i]) != 0)
            return 0;
    for (size_t i = 0; i < a->n_bounds; i++)
        if (a->bounds[i] != b->bounds[i])
            return 0;
    return 1;
}

/* Builds (unregistered) family from spec; validates everything but clashes. */
static int s_family_build(kvc_metrics_t *reg, const kvc_metric_spec_t *spec, kvc_metric_t **out,
                          kvc_err_t *err)
{
    *out = NULL;
    if ((unsigned)spec->type > KVC_METRIC_HISTOGRAM)
        return kvc_err_set(err, KVC_EINVAL, "unknown metric type %d", (int)spec->type);
    int rc = kvc_metrics_check_name(&reg->opts, spec->type, spec->name, err);
    if (rc)
        return rc;
    if (!spec->help || (reg->opts.lint && !*spec->help))
        return kvc_err_set(err, KVC_EINVAL, "%s: no help text", spec->name);
    if (strlen(spec->help) > KVC_METRICS_HELP_MAX || !s_utf8_valid(spec->help))
        return kvc_err_set(err, KVC_EINVAL, "%s: help text too long or not UTF-8", spec->name);
    if (spec->fn && spec->type == KVC_METRIC_HISTOGRAM)
        return kvc_err_set(err, KVC_EINVAL, "%s: callback histograms are not supported",
                           spec->name);
    kvc_metric_t *m = kvc_calloc(1, sizeof *m);
    if (!m)
        return KVC_ENOMEM;
    pthread_mutex_init(&m->mutex, NULL);
    atomic_init(&m->tab, NULL);
    atomic_init(&m->single, NULL);
    atomic_init(&m->overflow, NULL);
    m->reg = reg;
    m->type = spec->type;
    m->fn = spec->fn;
    m->fn_arg = spec->fn_arg;
    m->name = kvc_strdup(spec->name);
    m->help = kvc_strdup(spec->help);
    if (!m->name || !m->help) {
        s_family_free(m);
        return KVC_ENOMEM;
    }
    rc = s_parse_labels(reg, m, spec->labels, err);
    if (rc) {
        s_family_free(m);
        return rc;
    }
    if (m->type == KVC_METRIC_HISTOGRAM) {
        const double *b = spec->buckets ? spec->buckets : kvc_metrics_latency_buckets;
        size_t n = spec->buckets ? spec->n_buckets : kvc_metrics_latency_buckets_n;
        if (n == 0 || n > KVC_METRICS_MAX_BUCKETS) {
            s_family_free(m);
            return kvc_err_set(err, KVC_EINVAL, "%s: 1 to %d buckets needed", spec->name,
                               KVC_METRICS_MAX_BUCKETS);
        }
        for (size_t i = 0; i < n; i++) {
            if (!isfinite(b[i]) || (i && b[i] <= b[i - 1])) {
                s_family_free(m);
                return kvc_err_set(err, KVC_EINVAL,
                                   "%s: bucket bounds must be finite and strictly increasing",
                                   spec->name);
            }
            m->bounds[i] = b[i];
        }
        m->n_bounds = n;
    }
    *out = m;
    return KVC_OK;
}

int kvc_metrics_add(kvc_metrics_t *reg, const kvc_metric_spec_t *spec, kvc_metric_t **out,
                    kvc_err_t *err)
{
    if (out)
        *out = NULL;
    if (!reg || !spec || !out)
        return kvc_err_set(err, KVC_EINVAL, "kvc_metrics_add: NULL argument");
    kvc_metric_t *m = NULL;
    int rc = s_family_build(reg, spec, &m, err);
    if (rc)
        return rc;
    char mine[4][KVC_METRICS_NAME_MAX + 8], theirs[4][KVC_METRICS_NAME_MAX + 8];
    size_t n_mine = s_series_names(m->name, m->type, mine);
    pthread_mutex_lock(&reg->mutex);
    size_t pos = 0;
    for (size_t i = 0; i < reg->n_families; i++) {
        kvc_metric_t *f = reg->families[i];
        int cmp = strcmp(f->name, m->name);
        if (cmp == 0 && s_same_family(f, m)) {
            pthread_mutex_unlock(&reg->mutex);
            s_family_free(m);
            *out = f;
            return KVC_OK;
        }
        if (cmp < 0)
            pos = i + 1;
        size_t n_theirs = s_series_names(f->name, f->type, theirs);
        for (size_t a = 0; a < n_mine; a++)
            for (size_t b = 0; b < n_theirs; b++)
                if (strcmp(mine[a], theirs[b]) == 0) {
                    pthread_mutex_unlock(&reg->mutex);
                    rc = kvc_err_set(err, KVC_EEXIST, "%s: clashes with registered %s %s", m->name,
                                     s_type_names[f->type], f->name);
                    s_family_free(m);
                    return rc;
                }
    }
    if (reg->n_families == reg->cap_families) {
        size_t cap = reg->cap_families ? reg->cap_families * 2 : 16;
        kvc_metric_t **fs = kvc_realloc(reg->families, cap * sizeof *fs);
        if (!fs) {
            pthread_mutex_unlock(&reg->mutex);
            s_family_free(m);
            return KVC_ENOMEM;
        }
        reg->families = fs;
        reg->cap_families = cap;
    }
    memmove(reg->families + pos + 1, reg->families + pos,
            (reg->n_families - pos) * sizeof *reg->families);
    reg->families[pos] = m;
    reg->n_families++;
    pthread_mutex_unlock(&reg->mutex);
    /* A label-less series exists from the start, so rate() sees its zero. */
    if (m->n_labels == 0 && !m->fn)
        s_child_get(m, NULL);
    *out = m;
    return KVC_OK;
}

/* Registration shortcut shared by the one-line helpers. */
static kvc_metric_t *s_add(kvc_metrics_t *reg, kvc_metric_type_t type, const char *name,
                           const char *help, const char *labels, const double *buckets,
                           size_t n_buckets, kvc_metrics_fn fn, void *arg)
{
    kvc_metric_spec_t spec = {.type = type,
                              .name = name,
                              .help = help,
                              .labels = labels,
                              .buckets = buckets,
                              .n_buckets = n_buckets,
                              .fn = fn,
                              .fn_arg = arg};
    kvc_metric_t *m = NULL;
    kvc_metrics_add(reg, &spec, &m, NULL);
    return m;
}

kvc_metric_t *kvc_metrics_counter(kvc_metrics_t *reg, const char *name, const char *help,
                                  const char *labels)
{
    return s_add(reg, KVC_METRIC_COUNTER, name, help, labels, NULL, 0, NULL, NULL);
}

kvc_metric_t *kvc_metrics_gauge(kvc_metrics_t *reg, const char *name, const char *help,
                                const char *labels)
{
    return s_add(reg, KVC_METRIC_GAUGE, name, help, labels, NULL, 0, NULL, NULL);
}

kvc_metric_t *kvc_metrics_histogram(kvc_metrics_t *reg, const char *name, const char *help,
                                    const char *labels, const double *buckets, size_t n_buckets)
{
    return s_add(reg, KVC_METRIC_HISTOGRAM, name, help, labels, buckets, n_buckets, NULL, NULL);
}

kvc_metric_t *kvc_metrics_gauge_fn(kvc_metrics_t *reg, const char *name, const char *help,
                                   const char *labels, kvc_metrics_fn fn, void *arg)
{
    return fn ? s_add(reg, KVC_METRIC_GAUGE, name, help, labels, NULL, 0, fn, arg) : NULL;
}

kvc_metric_t *kvc_metrics_counter_fn(kvc_metrics_t *reg, const char *name, const char *help,
                                     const char *labels, kvc_metrics_fn fn, void *arg)
{
    return fn ? s_add(reg, KVC_METRIC_COUNTER, name, help, labels, NULL, 0, fn, arg) : NULL;
}

kvc_metrics_t *kvc_metrics_new(const kvc_metrics_opts_t *opts)
{
    kvc_metrics_t *reg = kvc_calloc(1, sizeof *reg);
    if (!reg)
        return NULL;
    pthread_mutex_init(&reg->mutex, NULL);
    if (opts) {
        reg->opts = *opts;
    } else {
        reg->opts.prefix = "kvc_";
        reg->opts.lint = 1;
    }
    if (reg->opts.max_children == 0)
        reg->opts.max_children = KVC_METRICS_DEFAULT_CHILDREN;
    if (reg->opts.prefix) {
        reg->prefix = kvc_strdup(reg->opts.prefix);
        if (!reg->prefix) {
            kvc_metrics_destroy(&reg);
            return NULL;
        }
        reg->opts.prefix = reg->prefix;
    }
    /* Our own counter must pass any prefix the caller asked for. */
    kvc_metrics_opts_t saved = reg->opts;
    reg->opts.prefix = NULL;
    reg->dropped = kvc_metrics_counter(
        reg, S_DROPPED_NAME,
        "Updates sent to a family's _overflow child because it had too many series.", "metric");
    reg->opts = saved;
    if (!reg->dropped)
        kvc_metrics_destroy(&reg);
    return reg;
}

void kvc_metrics_destroy(kvc_metrics_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    kvc_metrics_t *reg = *self_p;
    for (size_t i = 0; i < reg->n_families; i++)
        s_family_free(reg->families[i]);
    kvc_free(reg->families);
    kvc_free(reg->prefix);
    pthread_mutex_destroy(&reg->mutex);
    kvc_free(reg);
    *self_p = NULL;
}

kvc_metric_t *kvc_metrics_find(kvc_metrics_t *reg, const char *name)
{
    if (!reg || !name)
        return NULL;
    kvc_metric_t *found = NULL;
    pthread_mutex_lock(&reg->mutex);
    for (size_t i = 0; i < reg->n_families && !found; i++)
        if (strcmp(reg->families[i]->name, name) == 0)
            found = reg->families[i];
    pthread_mutex_unlock(&reg->mutex);
    return found;
}

/* ---------------------------------------------------------------- readings */

/* Copies the current child pointers of m (overflow last) into a new array. */
static int s_snapshot(kvc_metric_t *m, s_child_t ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
    pthread_mutex_lock(&m->mutex);
    size_t cnt = m->n_children + 2;
    s_child_t **arr = kvc_malloc(cnt * sizeof *arr);
    if (!arr) {
        pthread_mutex_unlock(&m->mutex);
        return KVC_ENOMEM;
    }
    size_t k = 0;
    s_child_t *single = atomic_load(&m->single);
    if (single)
        arr[k++] = single;
    for (size_t i = 0; i < m->n_children; i++)
        arr[k++] = m->children[i];
    s_child_t *o = atomic_load(&m->overflow);
    if (o)
        arr[k++] = o;
    pthread_mutex_unlock(&m->mutex);
    *out = arr;
    *n = k;
    return KVC_OK;
}

/* Index of label in m, or -1. */
static int s_label_index(const kvc_metric_t *m, const char *label)
{
    for (size_t i = 0; i < m->n_labels; i++)
        if (strcmp(m->label_names[i], label) == 0)
            return (int)i;
    return -1;
}

int kvc_metrics_read(kvc_metric_t *m, const char *label, const char *value,
                     kvc_metrics_reading_t *out)
{
    if (!m || m->fn || !out)
        return KVC_EINVAL;
    memset(out, 0, sizeof *out);
    int li = -1;
    if (label) {
        li = s_label_index(m, label);
        if (li < 0)
            return KVC_ENOENT;
    }
    s_child_t **arr;
    size_t n;
    int rc = s_snapshot(m, &arr, &n);
    if (rc)
        return rc;
    out->n_bounds = m->n_bounds;
    memcpy(out->bounds, m->bounds, m->n_bounds * sizeof(double));
    for (size_t i = 0; i < n; i++) {
        s_child_t *c = arr[i];
        if (li >= 0 && strcmp(c->values[li], value ? value : "") != 0)
            continue;
        double v = s_double(atomic_load_explicit(&c->bits, memory_order_relaxed));
        if (m->type == KVC_METRIC_HISTOGRAM) {
            out->sum += v;
            for (size_t b = 0; b <= m->n_bounds; b++) {
                uint64_t k = atomic_load_explicit(&c->buckets[b], memory_order_relaxed);
                out->buckets[b] += k;
                out->count += k;
            }
        } else {
            out->value += v;
        }
    }
    kvc_free(arr);
    return KVC_OK;
}

int kvc_metrics_label_values(kvc_metric_t *m, const char *label,
                             void (*fn)(const char *value, void *arg), void *arg)
{
    if (!m || m->fn || !label || !fn)
        return KVC_EINVAL;
    int li = s_label_index(m, label);
    if (li < 0)
        return KVC_ENOENT;
    s_child_t **arr;
    size_t n;
    int rc = s_snapshot(m, &arr, &n);
    if (rc)
        return rc;
    for (size_t i = 0; i < n; i++) {
        int seen = 0;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcmp(arr[j]->values[li], arr[i]->values[li]) == 0;
        if (!seen)
            fn(arr[i]->values[li], arg);
    }
    kvc_free(arr);
    return KVC_OK;
}

double kvc_metrics_quantile(const kvc_metrics_reading_t *r, double q)
{
    if (!r || r->count == 0 || r->n_bounds == 0 || isnan(q))
        return NAN;
    if (q < 0)
        return -INFINITY;
    if (q > 1)
        return INFINITY;
    double rank = q * (double)r->count;
    uint64_t cum = 0;
    for (size_t b = 0; b < r->n_bounds; b++) {
        uint64_t prev = cum;
        cum += r->buckets[b];
        if ((double)cum >= rank && cum > 0) {
            double lo = b == 0 ? (r->bounds[0] > 0 ? 0 : r->bounds[0]) : r->bounds[b - 1];
            double hi = r->bounds[b];
            if (r->buckets[b] == 0)
                return hi;
            return lo + (hi - lo) * ((rank - (double)prev) / (double)r->buckets[b]);
        }
    }
    return r->bounds[r->n_bounds - 1];
}

/* -------------------------------------------------------------- exposition */

/* Formats v into tmp (40 bytes) the way Prometheus parses it; returns the
 * length. Integers below 1e15 print without exponent; others round-trip. */
static size_t s_fmt_value(double v, char tmp[40])
{
    if (isnan(v)) {
        memcpy(tmp, "NaN", 4);
        return 3;
    }
    if (isinf(v)) {
        memcpy(tmp, v > 0 ? "+Inf" : "-Inf", 5);
        return 4;
    }
    if (v == floor(v) && fabs(v) < 1e15) {
        if (v == 0) {
            size_t n = signbit(v) ? 2 : 1;
            memcpy(tmp, signbit(v) ? "-0" : "0", n + 1);
            return n;
        }
        char rev[24];
        size_t i = 0, o = 0;
        uint64_t u = v < 0 ? (uint64_t)(-v) : (uint64_t)v;
        while (u) {
            rev[i++] = (char)('0' + u % 10);
            u /= 10;
        }
        if (v < 0)
            tmp[o++] = '-';
        while (i)
            tmp[o++] = rev[--i];
        tmp[o] = '\0';
        return o;
    }
    int n = snprintf(tmp, 40, "%.15g", v);
    if (strtod(tmp, NULL) != v)
        n = snprintf(tmp, 40, "%.17g", v);
    return (size_t)n;
}

int kvc_metrics_append_value(kvc_buf_t *out, double v)
{
    char tmp[40];
    size_t n = s_fmt_value(v, tmp);
    return kvc_buf_append(out, tmp, n);
}

/* Appends s with the given characters escaped (label values: \ " \n;
 * HELP: \ \n). */
static int s_append_escaped(kvc_buf_t *out, const char *s, int quote)
{
    const char *run = s;
    const char *p = s;
    int rc = KVC_OK;
    for (; *p; p++) {
        const char *esc = NULL;
        if (*p == '\\')
            esc = "\\\\";
        else if (*p == '\n')
            esc = "\\n";
        else if (quote && *p == '"')
            esc = "\\\"";
        if (!esc)
            continue;
        if ((rc = kvc_buf_append(out, run, (size_t)(p - run))) != 0 ||
            (rc = kvc_buf_append(out, esc, 2)) != 0)
            return rc;
        run = p + 1;
    }
    return kvc_buf_append(out, run, (size_t)(p - run));
}

int kvc_metrics_append_header(kvc_buf_t *out, const char *name, const char *help,
                              kvc_metric_type_t type)
{
    int rc;
    if ((rc = kvc_buf_append(out, "# HELP ", 7)) ||
        (rc = kvc_buf_append(out, name, strlen(name))) || (rc = kvc_buf_append(out, " ", 1)) ||
        (rc = s_append_escaped(out, help, 0)) || (rc = kvc_buf_append(out, "\n# TYPE ", 8)) ||
        (rc = kvc_buf_append(out, name, strlen(name))) || (rc = kvc_buf_append(out, " ", 1)))
        return rc;
    const char *t = (unsigned)type <= KVC_METRIC_SUMMARY ? s_type_names[type] : "untyped";
    if ((rc = kvc_buf_append(out, t, strlen(t))))
        return rc;
    return kvc_buf_append(out, "\n", 1);
}

int kvc_metrics_append_sample(kvc_buf_t *out, const char *name, const char *suffix,
                              const char *const *names, const char *const *values, size_t n,
                              double v)
{
    int rc;
    if ((rc = kvc_buf_append(out, name, strlen(name))))
        return rc;
    if (suffix && (rc = kvc_buf_append(out, suffix, strlen(suffix))))
        return rc;
    for (size_t i = 0; i < n; i++) {
        if ((rc = kvc_buf_append(out, i ? "," : "{", 1)) ||
            (rc = kvc_buf_append(out, names[i], strlen(names[i]))) ||
            (rc = kvc_buf_append(out, "=\"", 2)) || (rc = s_append_escaped(out, values[i], 1)) ||
            (rc = kvc_buf_append(out, "\"", 1)))
            return rc;
    }
    if (n && (rc = kvc_buf_append(out, "}", 1)))
        return rc;
    if ((rc = kvc_buf_append(out, " ", 1)) || (rc = kvc_metrics_append_value(out, v)))
        return rc;
    return kvc_buf_append(out, "\n", 1);
}

/* Number of labels used by the comparator below (set before each qsort;
 * scrapes are serialised by the registry mutex). */
static _Thread_local size_t s_cmp_labels;

/* Orders children by their label values. */
static int s_child_cmp(const void *a, const void *b)
{
    const s_child_t *x = *(const s_child_t *const *)a, *y = *(const s_child_t *const *)b;
    for (size_t i = 0; i < s_cmp_labels; i++) {
        int c = strcmp(x->values[i], y->values[i]);
        if (c)
            return c;
    }
    return 0;
}

/* The state of one write: selection and extra labels. */
typedef struct {
    const kvc_promsel_set_t *sel;
    const char *const *extra_names;
    const char *const *extra_values;
    size_t n_extra;
    kvc_buf_t *out;
} s_writer_t;

/* Label arrays for one sample: family labels, extras not shadowed, le. */
typedef struct {
    const char *names[KVC_METRICS_MAX_LABELS + 8];
    const char *values[KVC_METRICS_MAX_LABELS + 8];
    size_t n;
} s_labels_t;

/* Writes one sample of family m if selected; header first if needed. */
static int s_write_sample(s_writer_t *w, kvc_metric_t *m, int *header, const char *suffix,
                          const s_labels_t *l, double v)
{
    if (w->sel) {
        char full[KVC_METRICS_NAME_MAX + 8];
        snprintf(full, sizeof full, "%s%s", m->name, suffix ? suffix : "");
        if (!kvc_promsel_set_match(w->sel, full, l->names, l->values, l->n))
            return KVC_OK;
    }
    int rc;
    if (!*header) {
        if ((rc = kvc_metrics_append_header(w->out, m->name, m->help, m->type)))
            return rc;
        *header = 1;
    }
    return kvc_metrics_append_sample(w->out, m->name, suffix, l->names, l->values, l->n, v);
}

/* Writes the children (already sorted) of family m. */
static int s_write_children(s_writer_t *w, kvc_metric_t *m, s_child_t **arr, size_t n)
{
    int header = 0, rc;
    s_labels_t l;
    l.n = 0;
    for (size_t i = 0; i < m->n_labels; i++)
        l.names[l.n++] = m->label_names[i];
    for (size_t e = 0; e < w->n_extra && e < 7; e++) {
        if (s_label_index(m, w->extra_names[e]) >= 0)
            continue;
        l.names[l.n] = w->extra_names[e];
        l.values[l.n++] = w->extra_values[e];
    }
    for (size_t i = 0; i < n; i++) {
        s_child_t *c = arr[i];
        for (size_t k = 0; k < m->n_labels; k++)
            l.values[k] = c->values[k];
        double v = s_double(atomic_load_explicit(&c->bits, memory_order_relaxed));
        if (m->type != KVC_METRIC_HISTOGRAM) {
            if ((rc = s_write_sample(w, m, &header, NULL, &l, v)))
                return rc;
            continue;
        }
        s_labels_t lb = l;
        lb.names[lb.n] = "le";
        lb.n++;
        uint64_t cum = 0;
        char le[40];
        for (size_t b = 0; b <= m->n_bounds; b++) {
            cum += atomic_load_explicit(&c->buckets[b], memory_order_relaxed);
            s_fmt_value(b < m->n_bounds ? m->bounds[b] : INFINITY, le);
            lb.values[lb.n - 1] = le;
            if ((rc = s_write_sample(w, m, &header, "_bucket", &lb, (double)cum)))
                return rc;
        }
        if ((rc = s_write_sample(w, m, &header, "_sum", &l, v)) ||
            (rc = s_write_sample(w, m, &header, "_count", &l, (double)cum)))
            return rc;
    }
    return KVC_OK;
}

/* Runs m's callback and writes what it emitted. */
static int s_write_callback(s_writer_t *w, kvc_metric_t *m)
{
    kvc_metrics_emitter_t em = {.m = m};
    m->fn(&em, m->fn_arg);
    s_cmp_labels = m->n_labels;
    qsort(em.samples, em.n, sizeof *em.samples, s_child_cmp);
    size_t k = 0;
    for (size_t i = 0; i < em.n; i++) {
        if (k && s_child_cmp(&em.samples[k - 1], &em.samples[i]) == 0) {
            kvc_free(em.samples[i]);
            continue;
        }
        em.samples[k++] = em.samples[i];
    }
    int rc = s_write_children(w, m, em.samples, k);
    for (size_t i = 0; i < k; i++)
        kvc_free(em.samples[i]);
    kvc_free(em.samples);
    return rc;
}

void kvc_metrics_emit(kvc_metrics_emitter_t *em, const char *const *values, double v)
{
    if (!em || em->n >= em->m->reg->opts.max_children)
        return;
    if (em->n == em->cap) {
        size_t cap = em->cap ? em->cap * 2 : 8;
        s_child_t **s = kvc_realloc(em->samples, cap * sizeof *s);
        if (!s)
            return;
        em->samples = s;
        em->cap = cap;
    }
    char buf[KVC_METRICS_MAX_LABELS][KVC_METRICS_VALUE_MAX + 1];
    const char *vals[KVC_METRICS_MAX_LABELS];
    for (size_t i = 0; i < em->m->n_labels; i++) {
        s_sanitize(values && values[i] ? values[i] : "", buf[i]);
        vals[i] = buf[i];
    }
    s_child_t *c = s_child_new(em->m, vals, 0);
    if (!c)
        return;
    atomic_store(&c->bits, s_bits(v));
    em->samples[em->n++] = c;
}

/* Writes family m: refreshes the sorted cache when children were added. */
static int s_write_family(s_writer_t *w, kvc_metric_t *m)
{
    if (w->sel) {
        char names[4][KVC_METRICS_NAME_MAX + 8];
        size_t k = s_series_names(m->name, m->type, names), hit = 0;
        for (size_t i = 0; i < k && !hit; i++)
            hit = (size_t)kvc_promsel_set_may_match_name(w->sel, names[i]);
        if (!hit)
            return KVC_OK;
    }
    if (m->fn)
        return s_write_callback(w, m);
    pthread_mutex_lock(&m->mutex);
    size_t n =
        m->n_children + (atomic_load(&m->single) ? 1 : 0) + (atomic_load(&m->overflow) ? 1 : 0);
    pthread_mutex_unlock(&m->mutex);
    if (n != m->n_sorted || !m->sorted) {
        s_child_t **arr;
        size_t got;
        int rc = s_snapshot(m, &arr, &got);
        if (rc)
            return rc;
        s_cmp_labels = m->n_labels;
        qsort(arr, got, sizeof *arr, s_child_cmp);
        kvc_free(m->sorted);
        m->sorted = arr;
        m->n_sorted = got;
    }
    return s_write_children(w, m, m->sorted, m->n_sorted);
}

/* Writes every family of reg through w. */
static int s_write_all(kvc_metrics_t *reg, s_writer_t *w)
{
    int rc = KVC_OK;
    pthread_mutex_lock(&reg->mutex);
    for (size_t i = 0; i < reg->n_families && !rc; i++)
        rc = s_write_family(w, reg->families[i]);
    pthread_mutex_unlock(&reg->mutex);
    return rc;
}

int kvc_metrics_write(kvc_metrics_t *reg, kvc_buf_t *out)
{
    if (!reg || !out)
        return KVC_EINVAL;
    s_writer_t w = {.out = out};
    return s_write_all(reg, &w);
}

int kvc_metrics_write_ext(kvc_metrics_t *reg, const kvc_promsel_set_t *sel,
                          const char *const *extra_names, const char *const *extra_values,
                          size_t n_extra, kvc_buf_t *out)
{
    if (!reg || !out || (n_extra && (!extra_names || !extra_values)) || n_extra > 7)
        return KVC_EINVAL;
    for (size_t i = 0; i < n_extra; i++)
        if (!extra_names[i] || !extra_values[i] || !s_valid_ident(extra_names[i], 0))
            return KVC_EINVAL;
    s_writer_t w = {.sel = sel,
                    .extra_names = extra_names,
                    .extra_values = extra_values,
                    .n_extra = n_extra,
                    .out = out};
    return s_write_all(reg, &w);
}
