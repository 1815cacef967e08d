/*
 * backend_scrape.h - scrapes the Prometheus endpoints of the model servers
 * this peer's proxy talks to (proxy.backends[].metrics_url, e.g. TF Serving's
 * /monitoring/prometheus/metrics) and keeps, per model, the requests it
 * served and their cumulative latency, plus the scrape's health.
 *
 * From TF Serving's series (names as its Prometheus exporter writes them):
 *   :tensorflow:serving:request_count{model_name,status}        counter
 *       -> requests: the sum over every status;
 *   :tensorflow:serving:request_latency_sum{model_name,API,entrypoint}
 *       -> latency: the sum over API and entrypoint, in microseconds in TF
 *          Serving ("Distribution of wall time (in microseconds)"), kept in
 *          seconds.
 * A model with no series yet (TF Serving creates them at its first request)
 * reads 0 requests while its scrape is up.
 *
 * A thread of its own fetches every distinct URL once per interval with
 * libcurl (timeout, body bound, http/https only, redirects not followed, so
 * a metrics URL can never send us to another host), parses the whole body
 * and commits the figures under a mutex only when the body was valid. The
 * event loop takes a copy with kvc_backend_scrape_snapshot(); it never waits
 * for the network.
 *
 * In the registry given at creation it registers (read at scrape time):
 *   kvc_backend_scrape_up{model}                               gauge 1/0
 *   kvc_backend_scrape_errors_total{model}                     counter
 *   kvc_backend_observed_requests_total{model}                 counter
 *   kvc_backend_observed_request_latency_seconds_total{model}  counter
 * ("observed": /federate already carries kvc_backend_requests_total and
 * kvc_backend_latency_seconds_total with site/peer/region labels, built from
 * these figures; distinct names keep one Prometheus scraping both sane).
 */
#ifndef KVC_BACKEND_SCRAPE_H
#define KVC_BACKEND_SCRAPE_H

#include "base.h"
#include "metrics.h"

#include <stddef.h>
#include <stdint.h>

#define KVC_BACKEND_SCRAPE_INTERVAL_MS 5000
#define KVC_BACKEND_SCRAPE_TIMEOUT_MS 2000
#define KVC_BACKEND_SCRAPE_MAX_BODY (4u * 1024 * 1024)
#define KVC_BACKEND_SCRAPE_MAX_TARGETS 16
#define KVC_BACKEND_SCRAPE_NAME_MAX 127 /* bytes of a model name */
#define KVC_BACKEND_SCRAPE_URL_MAX 255  /* bytes of a URL */

typedef struct kvc_backend_scrape kvc_backend_scrape_t;

/* One model and the endpoint that reports it (strings borrowed for _new). */
typedef struct {
    const char *model;
    const char *url;
} kvc_backend_scrape_target_t;

typedef struct {
    const kvc_backend_scrape_target_t *targets; /* copied */
    size_t n_targets;
    uint32_t interval_ms; /* 0: KVC_BACKEND_SCRAPE_INTERVAL_MS */
    uint32_t timeout_ms;  /* 0: KVC_BACKEND_SCRAPE_TIMEOUT_MS */
    size_t max_body;      /* 0: KVC_BACKEND_SCRAPE_MAX_BODY */
    kvc_metrics_t *reg;   /* where the series above go; NULL: none. Must
                           * outlive the scraper, and must not be written
                           * after kvc_backend_scrape_destroy(). */
} kvc_backend_scrape_opts_t;

/* What is known of one model. */
typedef struct {
    char model[KVC_BACKEND_SCRAPE_NAME_MAX + 1];
    int up;                 /* 1: the last scrape succeeded */
    int known;              /* 1: at least one scrape succeeded */
    uint64_t requests;      /* from the last successful scrape */
    double latency_seconds; /* cumulative, from the last successful scrape */
    uint64_t errors;        /* failed scrapes */
    uint64_t scrapes;       /* attempted scrapes */
} kvc_backend_figures_t;

/*
 * Copies the targets and starts the scraping thread; the first scrape
 * starts at once. NULL on failure with err set (KVC_EINVAL: no targets, too
 * many, a model or URL empty, too long or not http(s)://, a model twice;
 * KVC_ENOMEM; KVC_EIO: the thread or libcurl could not start).
 */
kvc_backend_scrape_t *kvc_backend_scrape_new(const kvc_backend_scrape_opts_t *opts, kvc_err_t *err);
/* Stops the thread (an in-flight transfer is aborted) and frees everything;
 * *self_p becomes NULL. */
void kvc_backend_scrape_destroy(kvc_backend_scrape_t **self_p);

/* Copies the figures of up to cap models, in the order of the targets, into
 * out (caller-owned); returns how many. Thread-safe, never blocks on I/O. */
size_t kvc_backend_scrape_snapshot(kvc_backend_scrape_t *self, kvc_backend_figures_t *out,
                                   size_t cap);

/* Total scrape rounds completed (for tests that wait for "one more"). */
uint64_t kvc_backend_scrape_rounds(kvc_backend_scrape_t *self);

/*
 * Pure: reads TF Serving's series for the n models in models[] out of one
 * metrics text; requests[i] and latency_seconds[i] get model i's figures.
 * Errors: the parser's (KVC_EPARSE, KVC_ERANGE, with err), and KVC_EPARSE
 * when one of the series above has a negative or non-finite value.
 */
int kvc_backend_scrape_extract(const char *text, size_t len, const char *const *models, size_t n,
                               uint64_t *requests, double *latency_seconds, kvc_err_t *err);

#endif
