/*
 * backend_scrape.c - the model-server metrics scraper (see backend_scrape.h).
 *
 * One thread, one curl easy handle reused across rounds (keep-alive), one
 * mutex guarding the figures that the event loop and /metrics read. The
 * thread holds the mutex only to copy figures in, never across a transfer
 * or a parse, and it never touches the registry while holding it. It must
 * never follow a redirect, read a body past its bound, or publish figures
 * from a body that did not parse.
 */
#include "backend_scrape.h"

#include "log.h"
#include "promtext.h"

#include <curl/curl.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#define TF_REQUEST_COUNT ":tensorflow:serving:request_count"
#define TF_LATENCY_SUM ":tensorflow:serving:request_latency_sum"
#define TF_LATENCY_UNIT 1e-6 /* TF Serving records microseconds */

/* One model, the URL that reports it, and what we know. */
typedef struct {
    char url[KVC_BACKEND_SCRAPE_URL_MAX + 1];
    kvc_backend_figures_t fig; /* under lock */
} s_target_t;

struct kvc_backend_scrape {
    s_target_t targets[KVC_BACKEND_SCRAPE_MAX_TARGETS];
    size_t n_targets;
    uint32_t interval_ms, timeout_ms;
    size_t max_body;
    pthread_t thread;
    int started;
    atomic_int stop;
    pthread_mutex_t lock; /* guards every fig, rounds; cond waits on it */
    pthread_cond_t cond;
    uint64_t rounds;
};

static pthread_once_t s_curl_once = PTHREAD_ONCE_INIT;
static int s_curl_ready;

/* Initialises libcurl once per process (refcounted with the proxy's). */
static void s_curl_init(void)
{
    s_curl_ready = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
}

/* --- extraction (pure) --------------------------------------------------- */

typedef struct {
    const char *const *models;
    size_t n;
    double *requests;
    double *latency;
    kvc_err_t *err;
} s_extract_t;

/* Adds one TF Serving sample to its model's figures. */
static int s_on_sample(void *arg, const kvc_promtext_sample_t *s)
{
    s_extract_t *x = arg;
    int is_count = strcmp(s->name, TF_REQUEST_COUNT) == 0;
    int is_latency = !is_count && strcmp(s->name, TF_LATENCY_SUM) == 0;
    if (!is_count && !is_latency)
        return 0;
    const char *model = kvc_promtext_label(s, "model_name");
    if (!model)
        return 0;
    for (size_t i = 0; i < x->n; i++) {
        if (strcmp(x->models[i], model) != 0)
            continue;
        if (!isfinite(s->value) || s->value < 0)
            return kvc_err_set(x->err, KVC_EPARSE, "line %zu: %s: bad value for a counter", s->line,
                               s->name);
        if (is_count)
            x->requests[i] += s->value;
        else
            x->latency[i] += s->value * TF_LATENCY_UNIT;
    }
    return 0;
}

int kvc_backend_scrape_extract(const char *text, size_t len, const char *const *models, size_t n,
                               uint64_t *requests, double *latency_seconds, kvc_err_t *err)
{
    if (n > KVC_BACKEND_SCRAPE_MAX_TARGETS)
        return kvc_err_set(err, KVC_EINVAL, "too many models");
    double req[KVC_BACKEND_SCRAPE_MAX_TARGETS] = {0}, lat[KVC_BACKEND_SCRAPE_MAX_TARGETS] = {0};
    s_extract_t x = {.models = models, .n = n, .requests = req, .latency = lat, .err = err};
    int rc = kvc_promtext_parse(text, len, NULL, s_on_sample, &x, err);
    if (rc)
        return rc;
    for (size_t i = 0; i < n; i++) {
        /* sums of finite values may still overflow to Inf */
        if (!isfinite(req[i]) || req[i] >= 18446744073709551616.0 || !isfinite(lat[i]))
            return kvc_err_set(err, KVC_EPARSE, "%s: counters out of range", models[i]);
        requests[i] = (uint64_t)req[i];
        latency_seconds[i] = lat[i];
    }
    return KVC_OK;
}

/* --- fetching (scraper thread) ------------------------------------------- */

/* curl write callback: appends to the bounded body, failing past it. */
static size_t s_on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    kvc_buf_t *body = arg;
    size_t n = size * nmemb;
    return kvc_buf_append(body, data, n) == 0 ? n : 0;
}

/* curl progress callback: aborts the transfer when we are stopping. */
static int s_on_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    kvc_backend_scrape_t *self = arg;
    return atomic_load(&self->stop) ? 1 : 0;
}

/* GETs url into body; 0 on a 200 answer, else KVC_EIO/KVC_ERANGE with why. */
static int s_fetch(kvc_backend_scrape_t *self, CURL *e, const char *url, kvc_buf_t *body, char *why,
                   size_t why_size)
{
    kvc_buf_reset(body);
    char errbuf[CURL_ERROR_SIZE] = "";
    int bad = 0;
    bad |= curl_easy_setopt(e, CURLOPT_URL, url) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)self->timeout_ms) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)self->timeout_ms) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)self->max_body) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, s_on_body) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_WRITEDATA, body) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, s_on_progress) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_XFERINFODATA, self) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_USERAGENT, "kvc-peer") != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf) != CURLE_OK;
    if (bad) {
        kvc_strlcpy(why, "cannot set up the transfer", why_size);
        return KVC_EIO;
    }
    CURLcode cc = curl_easy_perform(e);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, NULL);
    if (cc == CURLE_WRITE_ERROR || cc == CURLE_FILESIZE_EXCEEDED) {
        snprintf(why, why_size, "body larger than %zu bytes", self->max_body);
        return KVC_ERANGE;
    }
    if (cc != CURLE_OK) {
        snprintf(why, why_size, "%s", errbuf[0] ? errbuf : curl_easy_strerror(cc));
        return KVC_EIO;
    }
    long code = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
    if (code != 200) {
        snprintf(why, why_size, "HTTP status %ld", code);
        return KVC_EIO;
    }
    return KVC_OK;
}

/* Scrapes the URL of target first (and every later target sharing it). */
static void s_scrape_url(kvc_backend_scrape_t *self, CURL *e, size_t first, kvc_buf_t *body)
{
    const char *url = self->targets[first].url;
    const char *models[KVC_BACKEND_SCRAPE_MAX_TARGETS];
    size_t idx[KVC_BACKEND_SCRAPE_MAX_TARGETS], n = 0;
    for (size_t i = first; i < self->n_targets; i++)
        if (strcmp(self->targets[i].url, url) == 0) {
            idx[n] = i;
            models[n++] = self->targets[i].fig.model;
        }
    uint64_t req[KVC_BACKEND_SCRAPE_MAX_TARGETS];
    double lat[KVC_BACKEND_SCRAPE_MAX_TARGETS];
    char why[KVC_ERR_MAX] = "";
    int rc = s_fetch(self, e, url, body, why, sizeof why);
    if (rc == 0) {
        kvc_err_t err = {0};
        rc = kvc_backend_scrape_extract(body->data, body->len, models, n, req, lat, &err);
        if (rc)
            kvc_strlcpy(why, err.msg, sizeof why);
    }
    int was_up = 1;
    pthread_mutex_lock(&self->lock);
    for (size_t k = 0; k < n; k++) {
        kvc_backend_figures_t *f = &self->targets[idx[k]].fig;
        was_up &= f->up || !f->scrapes;
        f->scrapes++;
        if (rc == 0) {
            f->up = f->known = 1;
            f->requests = req[k];
            f->latency_seconds = lat[k];
        } else {
            f->up = 0;
            f->errors++;
        }
    }
    pthread_mutex_unlock(&self->lock);
    if (rc && was_up)
        kvc_warn("backend metrics %s: %s", url, why);
    else if (rc == 0 && !was_up)
        kvc_info("backend metrics %s: scraping again", url);
}

/* The thread: one round per interval until stop. */
static void *s_run(void *arg)
{
    kvc_backend_scrape_t *self = arg;
    CURL *e = curl_easy_init();
    kvc_buf_t body;
    kvc_buf_init(&body, self->max_body);
    while (!atomic_load(&self->stop)) {
        struct timespec next;
        clock_gettime(CLOCK_MONOTONIC, &next);
        next.tv_sec += self->interval_ms / 1000;
        next.tv_nsec += (long)(self->interval_ms % 1000) * 1000000L;
        if (next.tv_nsec >= 1000000000L) {
            next.tv_sec++;
            next.tv_nsec -= 1000000000L;
        }
        for (size_t i = 0; e && i < self->n_targets && !atomic_load(&self->stop); i++) {
            int seen = 0; /* each URL once per round */
            for (size_t j = 0; j < i && !seen; j++)
                seen = strcmp(self->targets[j].url, self->targets[i].url) == 0;
            if (!seen)
                s_scrape_url(self, e, i, &body);
        }
        pthread_mutex_lock(&self->lock);
        self->rounds++;
        while (!atomic_load(&self->stop) &&
               pthread_cond_timedwait(&self->cond, &self->lock, &next) == 0)
            ;
        pthread_mutex_unlock(&self->lock);
    }
    kvc_buf_free(&body);
    if (e)
        curl_easy_cleanup(e);
    return NULL;
}

/* --- registry callbacks (HTTP threads) ------------------------------------ */

/* Emits one figure per model: which = 0 up, 1 errors, 2 requests, 3 latency. */
static void s_emit(kvc_backend_scrape_t *self, kvc_metrics_emitter_t *em, int which)
{
    pthread_mutex_lock(&self->lock);
    for (size_t i = 0; i < self->n_targets; i++) {
        const kvc_backend_figures_t *f = &self->targets[i].fig;
        const char *v[] = {f->model};
        if (which == 0)
            kvc_metrics_emit(em, v, f->up);
        else if (which == 1)
            kvc_metrics_emit(em, v, (double)f->errors);
        else if (f->known && which == 2)
            kvc_metrics_emit(em, v, (double)f->requests);
        else if (f->known && which == 3)
            kvc_metrics_emit(em, v, f->latency_seconds);
    }
    pthread_mutex_unlock(&self->lock);
}

static void s_emit_up(kvc_metrics_emitter_t *em, void *arg)
{
    s_emit(arg, em, 0);
}
static void s_emit_errors(kvc_metrics_emitter_t *em, void *arg)
{
    s_emit(arg, em, 1);
}
static void s_emit_requests(kvc_metrics_emitter_t *em, void *arg)
{
    s_emit(arg, em, 2);
}
static void s_emit_latency(kvc_metrics_emitter_t *em, void *arg)
{
    s_emit(arg, em, 3);
}

/* --- lifecycle ------------------------------------------------------------ */

/* Checks and copies target i. */
static int s_add_target(kvc_backend_scrape_t *self, const kvc_backend_scrape_target_t *t,
                        kvc_err_t *err)
{
    size_t ml = t->model ? strlen(t->model) : 0, ul = t->url ? strlen(t->url) : 0;
    if (ml == 0 || ml > KVC_BACKEND_SCRAPE_NAME_MAX)
        return kvc_err_set(err, KVC_EINVAL, "a backend model name is empty or too long");
    if (ul > KVC_BACKEND_SCRAPE_URL_MAX ||
        (strncmp(t->url, "http://", 7) != 0 && strncmp(t->url, "https://", 8) != 0))
        return kvc_err_set(err, KVC_EINVAL, "%s: metrics URL must be http(s)://, at most %d bytes",
                           t->model, KVC_BACKEND_SCRAPE_URL_MAX);
    for (size_t i = 0; i < self->n_targets; i++)
        if (strcmp(self->targets[i].fig.model, t->model) == 0)
            return kvc_err_set(err, KVC_EINVAL, "%s: model given twice", t->model);
    s_target_t *d = &self->targets[self->n_targets++];
    kvc_strlcpy(d->fig.model, t->model, sizeof d->fig.model);
    kvc_strlcpy(d->url, t->url, sizeof d->url);
    return KVC_OK;
}

kvc_backend_scrape_t *kvc_backend_scrape_new(const kvc_backend_scrape_opts_t *opts, kvc_err_t *err)
{
    if (!opts || !opts->targets || opts->n_targets == 0 ||
        opts->n_targets > KVC_BACKEND_SCRAPE_MAX_TARGETS) {
        kvc_err_set(err, KVC_EINVAL, "backend scrape: 1 to %d targets needed",
                    KVC_BACKEND_SCRAPE_MAX_TARGETS);
        return NULL;
    }
    kvc_backend_scrape_t *self = kvc_calloc(1, sizeof *self);
    if (!self) {
        kvc_err_set(err, KVC_ENOMEM, "out of memory");
        return NULL;
    }
    self->interval_ms = opts->interval_ms ? opts->interval_ms : KVC_BACKEND_SCRAPE_INTERVAL_MS;
    self->timeout_ms = opts->timeout_ms ? opts->timeout_ms : KVC_BACKEND_SCRAPE_TIMEOUT_MS;
    self->max_body = opts->max_body ? opts->max_body : KVC_BACKEND_SCRAPE_MAX_BODY;
    atomic_init(&self->stop, 0);
    pthread_mutex_init(&self->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&self->cond, &ca);
    pthread_condattr_destroy(&ca);
    for (size_t i = 0; i < opts->n_targets; i++)
        if (s_add_target(self, &opts->targets[i], err) != 0)
            goto fail;
    pthread_once(&s_curl_once, s_curl_init);
    if (!s_curl_ready) {
        kvc_err_set(err, KVC_EIO, "backend scrape: libcurl failed to initialise");
        goto fail;
    }
    if (pthread_create(&self->thread, NULL, s_run, self) != 0) {
        kvc_err_set(err, KVC_EIO, "backend scrape: cannot start the thread");
        goto fail;
    }
    self->started = 1;
    /* only now: a failed start must leave no callback pointing at us */
    if (opts->reg) {
        kvc_metrics_t *r = opts->reg;
        kvc_metrics_gauge_fn(r, "kvc_backend_scrape_up",
                             "1 if the last scrape of the model server's metrics succeeded.",
                             "model", s_emit_up, self);
        kvc_metrics_counter_fn(r, "kvc_backend_scrape_errors_total",
                               "Failed scrapes of the model server's metrics.", "model",
                               s_emit_errors, self);
        kvc_metrics_counter_fn(r, "kvc_backend_observed_requests_total",
                               "Requests the model server reports it served (all statuses).",
                               "model", s_emit_requests, self);
        kvc_metrics_counter_fn(r, "kvc_backend_observed_request_latency_seconds_total",
                               "Cumulative request latency the model server reports.", "model",
                               s_emit_latency, self);
    }
    return self;
fail:
    kvc_backend_scrape_destroy(&self);
    return NULL;
}

void kvc_backend_scrape_destroy(kvc_backend_scrape_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    kvc_backend_scrape_t *self = *self_p;
    if (self->started) {
        pthread_mutex_lock(&self->lock);
        atomic_store(&self->stop, 1);
        pthread_cond_broadcast(&self->cond);
        pthread_mutex_unlock(&self->lock);
        pthread_join(self->thread, NULL);
    }
    pthread_cond_destroy(&self->cond);
    pthread_mutex_destroy(&self->lock);
    kvc_free(self);
    *self_p = NULL;
}

size_t kvc_backend_scrape_snapshot(kvc_backend_scrape_t *self, kvc_backend_figures_t *out,
                                   size_t cap)
{
    pthread_mutex_lock(&self->lock);
    size_t n = self->n_targets < cap ? self->n_targets : cap;
    for (size_t i = 0; i < n; i++)
        out[i] = self->targets[i].fig;
    pthread_mutex_unlock(&self->lock);
    return n;
}

uint64_t kvc_backend_scrape_rounds(kvc_backend_scrape_t *self)
{
    pthread_mutex_lock(&self->lock);
    uint64_t r = self->rounds;
    pthread_mutex_unlock(&self->lock);
    return r;
}
