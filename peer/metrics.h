/*
 * metrics.h - the metrics registry: counters, gauges and histograms with up to
 * four labels, callback metrics read at scrape time, and Prometheus text
 * exposition (format 0.0.4).
 *
 * Every subsystem registers its families once at start-up and then updates
 * them from any thread; scrapes run concurrently with updates. Adding a metric
 * is one line:
 *
 *   m = kvc_metrics_counter(reg, "kvc_proxy_requests_total", "Proxy requests.",
 *                           "model,route,code");
 *   kvc_metrics_inc(m, (const char *[]){"bert", "local", "200"}, 1);
 *
 * Label values often come from users (model names in URLs), so the number of
 * children per family is bounded: past the bound, updates go to one child
 * whose every label value is "_overflow" and kvc_metrics_dropped_series_total
 * counts them. Label values are cut to KVC_METRICS_VALUE_MAX bytes and invalid
 * UTF-8 bytes become '?', so the exposition stays valid whatever users send.
 *
 * This module never does I/O, never reads a clock and never logs: it only
 * fills caller-owned buffers.
 */
#ifndef KVC_METRICS_H
#define KVC_METRICS_H

#include "base.h"

#include <stddef.h>
#include <stdint.h>

#define KVC_METRICS_MAX_LABELS 4   /* label names per family */
#define KVC_METRICS_MAX_BUCKETS 32 /* finite histogram bounds */
#define KVC_METRICS_NAME_MAX 128   /* bytes in a metric or label name */
#define KVC_METRICS_HELP_MAX 512   /* bytes of HELP text */
#define KVC_METRICS_VALUE_MAX 128  /* bytes kept of a label value */
#define KVC_METRICS_DEFAULT_CHILDREN 1000

typedef struct kvc_metrics kvc_metrics_t; /* a registry */
typedef struct kvc_metric kvc_metric_t;   /* one family */
typedef struct kvc_metrics_emitter kvc_metrics_emitter_t;
struct kvc_promsel_set; /* promsel.h */

typedef enum {
    KVC_METRIC_COUNTER = 0,
    KVC_METRIC_GAUGE = 1,
    KVC_METRIC_HISTOGRAM = 2,
    KVC_METRIC_SUMMARY = 3, /* exposition only (quantile series); not registrable */
} kvc_metric_type_t;

/* Registry options. A NULL options pointer means the kvc defaults:
 * prefix "kvc_", lint on, KVC_METRICS_DEFAULT_CHILDREN children. */
typedef struct {
    const char *prefix;  /* every name must start with it; NULL = any */
    int lint;            /* 1: enforce promtool's naming lints (see .c) */
    size_t max_children; /* per family, overflow child excluded; 0 = default */
} kvc_metrics_opts_t;

/* A callback that reports samples at scrape time through kvc_metrics_emit().
 * It runs on the scraping thread while the registry's scrape lock is held:
 * it must be thread-safe against its own subsystem and must not call back
 * into this registry. */
typedef void (*kvc_metrics_fn)(kvc_metrics_emitter_t *em, void *arg);

/* Everything needed to register a family; used by kvc_metrics_add(). */
typedef struct {
    kvc_metric_type_t type;
    const char *name;
    const char *help;
    const char *labels;    /* comma-separated label names; NULL or "" = none */
    const double *buckets; /* histograms: strictly increasing finite bounds */
    size_t n_buckets;      /* 0 = kvc_metrics_latency_buckets */
    kvc_metrics_fn fn;     /* non-NULL: callback family (counter or gauge) */
    void *fn_arg;          /* passed to fn; owned by the caller */
} kvc_metric_spec_t;

/* Default bounds: latency in seconds (.0005 .. 10, 14 bounds) and sizes in
 * bytes (powers of 4 from 256 B to 64 MiB, 10 bounds). Static storage. */
extern const double kvc_metrics_latency_buckets[];
extern const size_t kvc_metrics_latency_buckets_n;
extern const double kvc_metrics_size_buckets[];
extern const size_t kvc_metrics_size_buckets_n;

/* Creates a registry; opts is copied (the prefix string too). NULL on failure.
 * The registry registers kvc_metrics_dropped_series_total{metric} itself. */
kvc_metrics_t *kvc_metrics_new(const kvc_metrics_opts_t *opts);
/* Frees the registry and every family; *self_p becomes NULL. No update or
 * scrape may run concurrently, and every kvc_metric_t of it becomes invalid. */
void kvc_metrics_destroy(kvc_metrics_t **self_p);

/*
 * Registers a family and stores it in *out. The returned pointer belongs to
 * the registry and stays valid until kvc_metrics_destroy(). Registering the
 * same name again with the same type and labels returns the existing family
 * (so a subsystem may register in its init without coordination).
 * Errors: KVC_EINVAL (bad name, label, help, buckets or spec; err says which),
 * KVC_EEXIST (name or a derived _bucket/_sum/_count name taken by a different
 * family), KVC_ENOMEM.
 */
int kvc_metrics_add(kvc_metrics_t *reg, const kvc_metric_spec_t *spec, kvc_metric_t **out,
                    kvc_err_t *err);

/* One-line registration; NULL on any error (updates on NULL are no-ops, so
 * a bad name costs the metric, never the process; unit tests catch it). */
kvc_metric_t *kvc_metrics_counter(kvc_metrics_t *reg, const char *name, const char *help,
                                  const char *labels);
kvc_metric_t *kvc_metrics_gauge(kvc_metrics_t *reg, const char *name, const char *help,
                                const char *labels);
/* buckets NULL = latency buckets; the array is copied. */
kvc_metric_t *kvc_metrics_histogram(kvc_metrics_t *reg, const char *name, const char *help,
                                    const char *labels, const double *buckets, size_t n_buckets);
/* A gauge whose samples fn emits at each scrape (labels as in the others). */
kvc_metric_t *kvc_metrics_gauge_fn(kvc_metrics_t *reg, const char *name, const char *help,
                                   const char *labels, kvc_metrics_fn fn, void *arg);
/* The same for a counter (e.g. kvc_process_cpu_seconds_total). */
kvc_metric_t *kvc_metrics_counter_fn(kvc_metrics_t *reg, const char *name, const char *help,
                                     const char *labels, kvc_metrics_fn fn, void *arg);

/*
 * Updates. values holds exactly as many strings as the family has labels
 * (NULL is allowed when it has none; a NULL string counts as ""); they are
 * copied when a child is created. Thread-safe, lock-free once the child
 * exists. A NULL metric, a wrong type, a negative or NaN counter increment
 * are ignored (no error path on hot paths).
 */
void kvc_metrics_inc(kvc_metric_t *m, const char *const *values, double v);
void kvc_metrics_set(kvc_metric_t *m, const char *const *values, double v);
void kvc_metrics_add_gauge(kvc_metric_t *m, const char *const *values, double delta);
void kvc_metrics_observe(kvc_metric_t *m, const char *const *values, double v);

/* Called by a callback: one sample with the family's label values. Samples
 * with a label set already emitted in this scrape, or past max_children,
 * are dropped. */
void kvc_metrics_emit(kvc_metrics_emitter_t *em, const char *const *values, double v);

/* Returns the family registered under name, or NULL. Valid until destroy. */
kvc_metric_t *kvc_metrics_find(kvc_metrics_t *reg, const char *name);

/*
 * A reading: the sum over the children of a family whose label `label`
 * equals `value` (label NULL: all children). For counters and gauges `value`
 * is the sum; for histograms `count`, `sum` and the merged per-bucket counts
 * (non-cumulative; bucket n_bounds is +Inf).
 */
typedef struct {
    double value;
    uint64_t count;
    double sum;
    size_t n_bounds;
    double bounds[KVC_METRICS_MAX_BUCKETS];
    uint64_t buckets[KVC_METRICS_MAX_BUCKETS + 1];
} kvc_metrics_reading_t;

/* Fills *out. KVC_EINVAL if m is NULL or a callback family, KVC_ENOENT if the
 * label is not one of the family's. Thread-safe. */
int kvc_metrics_read(kvc_metric_t *m, const char *label, const char *value,
                     kvc_metrics_reading_t *out);
/* Calls fn once per distinct value of label among m's children, in no
 * particular order. fn must not touch the registry. */
int kvc_metrics_label_values(kvc_metric_t *m, const char *label,
                             void (*fn)(const char *value, void *arg), void *arg);
/* Prometheus' histogram_quantile() over a histogram reading: linear
 * interpolation inside the bucket; NaN if empty; the highest finite bound if
 * the rank falls in +Inf. */
double kvc_metrics_quantile(const kvc_metrics_reading_t *r, double q);

/*
 * Writes the whole registry in text format 0.0.4 to out: families sorted by
 * name, children sorted by label values. Returns 0, KVC_ERANGE if out's
 * maximum is reached (out then holds a truncated text) or KVC_ENOMEM.
 * Thread-safe against updates; scrapes are serialised.
 */
int kvc_metrics_write(kvc_metrics_t *reg, kvc_buf_t *out);

/*
 * The same, for /federate: only samples whose series (name with its
 * _bucket/_sum/_count suffix, labels) match sel (NULL: all; an empty set:
 * none), each with extra labels appended (e.g. site, peer, region) unless
 * the family already has a label of that name. extra_names/values hold
 * n_extra strings, borrowed for the call.
 */
int kvc_metrics_write_ext(kvc_metrics_t *reg, const struct kvc_promsel_set *sel,
                          const char *const *extra_names, const char *const *extra_values,
                          size_t n_extra, kvc_buf_t *out);

/* --- exposition helpers shared with metrics_summary.c ------------------- */

/* Appends v as Prometheus parses it: +Inf, -Inf, NaN, integers without
 * exponent where exact, otherwise the shortest form that round-trips. */
int kvc_metrics_append_value(kvc_buf_t *out, double v);
/* Appends `# HELP name help` and `# TYPE name type` lines (help escaped). */
int kvc_metrics_append_header(kvc_buf_t *out, const char *name, const char *help,
                              kvc_metric_type_t type);
/* Appends one sample line: name suffix {n[i]="v[i]"...} value. Values are
 * escaped. suffix may be NULL. */
int kvc_metrics_append_sample(kvc_buf_t *out, const char *name, const char *suffix,
                              const char *const *names, const char *const *values, size_t n,
                              double v);

/* Checks a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*) against the registry rules
 * for type; fills err. Exposed for tests and other writers. */
int kvc_metrics_check_name(const kvc_metrics_opts_t *opts, kvc_metric_type_t type, const char *name,
                           kvc_err_t *err);

#endif
