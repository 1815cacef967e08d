/*
 * site_models.c - the registry's models placed on this site: handed to the
 * proxy, and reconciled to Kubernetes by the coordinator on a worker
 * thread. See site_models.h.
 *
 * Threads. The loop thread owns the registry, the election and every
 * field but the job slot; the worker owns the Kubernetes client. They meet
 * in one slot under a mutex: the loop posts a job (a copy of the placed
 * models and the term) when the slot is idle, the worker runs it and
 * leaves the statuses there, writes the eventfd, and the loop collects
 * them in tick.
 */
#include "site_models.h"

#include "clock.h"
#include "kube.h"
#include "log.h"
#include "reconcile.h"
#include "registry.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define RESCAN_MS 500       /* after a change, look again this soon */
#define PLACED_MAX 4096     /* versions one site serves */
#define BUSY_POLL_MS 1000   /* while a job runs, tick this often anyway */
#define RETRY_MS 5000       /* a failed reconciliation runs again this soon */

typedef enum { SLOT_IDLE = 0, SLOT_QUEUED, SLOT_RUNNING, SLOT_DONE } s_slot_state_t;

struct kvc_site_models {
    /* loop thread */
    kvc_kv_t registry;
    const kvc_election_t *election;
    kvc_site_models_serve_fn serve;
    kvc_site_models_env_t env;
    void *serve_arg;
    /* the where-table: "NAME\tSITE, SITE\n" per model not placed here */
    pthread_mutex_t where_mu;
    char *where;
    size_t where_len;
    char self[KVC_MEMBER_ID_MAX + 1];
    char site[64], region[64];
    uint64_t interval_ms;
    uint64_t next_scan_ms;  /* monotonic */
    uint64_t next_apply_ms; /* a full reconciliation is due */
    uint64_t next_check_ms; /* a job runs, or one may start when we coordinate */
    int dirty;              /* the registry changed since the last scan */
    uint64_t served_fp;     /* fingerprint of what serve was last given */
    int served_once;
    uint64_t applied_fp;    /* ... and of what the last run applied */
    kvc_model_t *placed;    /* the last scan */
    size_t n_placed;
    uint64_t placed_fp;     /* ... its fingerprint */
    kvc_model_status_t *written; /* statuses as last written */
    size_t n_written;
    kvc_site_models_stats_t stats;

    /* the slot, under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int has_worker, stop;
    s_slot_state_t slot;
    kvc_model_t *job;
    size_t n_job;
    uint64_t job_term, job_fp;
    kvc_model_status_t *result;
    size_t n_result;
    int result_rc;
    char result_err[256];
    uint64_t result_ms;
    pthread_t thread;
    int efd;

    /* the worker's */
    char kubeconfig[KVC_PATH_MAX];
    kvc_kube_t *kube;
    char ns[64], tf_image[256], ks_image[256];
    unsigned poll_s;
    char http[KVC_ENDPOINT_MAX + 8]; /* this peer's proxy, under mu; "" = none */
};

/* --- the worker ------------------------------------------------------------- */

static int s_kube_open(kvc_site_models_t *sm, kvc_err_t *err)
{
    if (sm->kube)
        return KVC_OK;
    kvc_kubeconfig_t kc;
    int rc = kvc_kubeconfig_load(sm->kubeconfig, &kc, err);
    if (rc)
        return rc;
    sm->kube = kvc_kube_new(&kc, NULL, err);
    kvc_kubeconfig_free(&kc);
    return sm->kube ? KVC_OK : KVC_EINVAL;
}

#define VERSION_BODY_MAX (64 * 1024)
#define VERSION_TIMEOUT_MS 2000

typedef struct {
    char *buf;
    size_t len;
} s_body_t;

static size_t s_body_write(char *data, size_t size, size_t n, void *arg)
{
    s_body_t *b = arg;
    size_t k = size * n;
    if (b->len + k > VERSION_BODY_MAX)
        return 0; /* too big: curl stops */
    memcpy(b->buf + b->len, data, k);
    b->len += k;
    return k;
}

/* The version the model server reports, asked through this peer's own
 * proxy (which reaches it at registry.grpc): "" when it does not answer. */
static void s_served_version(const char *http, const kvc_model_t *m, char *out, size_t cap)
{
    out[0] = '\0';
    if (!http[0])
        return;
    char url[KVC_ENDPOINT_MAX + 128];
    snprintf(url, sizeof url, "http://%s/%s/models/%s", http,
             m->framework == KVC_FW_KSERVE_V2 ? "v2" : "v1", m->name);
    s_body_t b = {kvc_malloc(VERSION_BODY_MAX), 0};
    CURL *h = b.buf ? curl_easy_init() : NULL;
    if (h) {
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)VERSION_TIMEOUT_MS);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http");
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, s_body_write);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
        long code = 0;
        uint64_t v = 0;
        if (curl_easy_perform(h) == CURLE_OK &&
            curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code) == CURLE_OK && code == 200 &&
            kvc_model_served_version_parse(b.buf, b.len, &v, NULL) == 0)
            snprintf(out, cap, "%llu", (unsigned long long)v);
        curl_easy_cleanup(h);
    }
    kvc_free(b.buf);
}

static void s_run(kvc_site_models_t *sm, const kvc_model_t *models, size_t n,
                  kvc_model_status_t *st, size_t *n_st, int *rc_out, char *msg, size_t cap)
{
    kvc_err_t err = {0};
    *n_st = 0;
    int rc = s_kube_open(sm, &err);
    kvc_reconcile_plan_t *plan = NULL;
    kvc_reconcile_opts_t o = {.ns = sm->ns, .site = sm->site,
                              .tfserving_image = sm->tf_image[0] ? sm->tf_image : NULL,
                              .kserve_image = sm->ks_image[0] ? sm->ks_image : NULL,
                              .poll_s = sm->poll_s};
    if (rc == 0)
        rc = kvc_reconcile_build(&o, models, n, &plan, &err);
    if (rc == 0)
        rc = kvc_reconcile_apply(sm->kube, plan, st, n, n_st, &err);
    kvc_reconcile_plan_destroy(&plan);
    /* what each server says it serves, once per model */
    char http[sizeof sm->http];
    pthread_mutex_lock(&sm->mu);
    kvc_strlcpy(http, sm->http, sizeof http);
    pthread_mutex_unlock(&sm->mu);
    for (size_t i = 0; i < *n_st; i++) {
        size_t k = 0;
        while (k < i && strcmp(st[k].model, st[i].model) != 0)
            k++;
        if (k < i) {
            memcpy(st[i].server_version, st[k].server_version, sizeof st[i].server_version);
            continue;
        }
        const kvc_model_t *m = NULL;
        for (size_t j = 0; j < n && !m; j++)
            if (strcmp(models[j].name, st[i].model) == 0)
                m = &models[j];
        if (m && st[i].applied)
            s_served_version(http, m, st[i].server_version, sizeof st[i].server_version);
    }
    if (rc && *n_st == 0) {
        /* nothing reached the API: every version shares the reason */
        for (size_t i = 0; i < n; i++) {
            memset(&st[i], 0, sizeof st[i]);
            kvc_strlcpy(st[i].site, sm->site, sizeof st[i].site);
            kvc_strlcpy(st[i].model, models[i].name, sizeof st[i].model);
            st[i].version = models[i].version;
            st[i].desired_replicas = models[i].replicas;
            kvc_strlcpy(st[i].error, err.msg[0] ? err.msg : kvc_strerror(rc), sizeof st[i].error);
        }
        *n_st = n;
    }
    *rc_out = rc;
    kvc_strlcpy(msg, rc ? err.msg : "", cap);
}

static void *s_worker(void *arg)
{
    kvc_site_models_t *sm = arg;
    pthread_mutex_lock(&sm->mu);
    for (;;) {
        while (!sm->stop && sm->slot != SLOT_QUEUED)
            pthread_cond_wait(&sm->cv, &sm->mu);
        if (sm->stop)
            break;
        sm->slot = SLOT_RUNNING;
        kvc_model_t *job = sm->job;
        size_t n = sm->n_job;
        pthread_mutex_unlock(&sm->mu);

        uint64_t t0 = kvc_clock_mono_ms();
        kvc_model_status_t *st = kvc_calloc(n ? n : 1, sizeof *st);
        size_t n_st = 0;
        int rc = KVC_ENOMEM;
        char msg[256] = "out of memory";
        if (st)
            s_run(sm, job, n, st, &n_st, &rc, msg, sizeof msg);
        uint64_t took = kvc_clock_mono_ms() - t0;

        pthread_mutex_lock(&sm->mu);
        sm->result = st;
        sm->n_result = n_st;
        sm->result_rc = rc;
        kvc_strlcpy(sm->result_err, msg, sizeof sm->result_err);
        sm->result_ms = took;
        sm->slot = SLOT_DONE;
        uint64_t one = 1;
        if (write(sm->efd, &one, sizeof one) < 0 && errno != EAGAIN)
            kvc_warn("registry: cannot wake the loop: %s", strerror(errno));
    }
    pthread_mutex_unlock(&sm->mu);
    return NULL;
}

/* --- the loop thread --------------------------------------------------------- */

#define WHERE_MAX (1u << 20) /* bytes of the where-table */
#define SITES_MAX 1024

typedef struct {
    kvc_site_models_t *sm;
    kvc_model_t *v;
    size_t n;
    int over;
    /* the where-table being built */
    char (*sites)[64];
    char (*regions)[64];
    size_t n_sites;
    char *where;
    size_t where_len;
} s_scan_t;

/* Adds the sites version m is placed on to the where-table line of its
 * name (a line per name; sites not repeated). */
static void s_where_add(s_scan_t *s, const kvc_model_t *m)
{
    if (!s->where)
        return;
    size_t nl = strlen(m->name);
    /* find the name's line */
    char *line = NULL;
    for (char *p = s->where; p < s->where + s->where_len;) {
        char *end = memchr(p, '\n', (size_t)(s->where + s->where_len - p));
        if (!end)
            break;
        if ((size_t)(end - p) > nl && memcmp(p, m->name, nl) == 0 && p[nl] == '\t') {
            line = p;
            break;
        }
        p = end + 1;
    }
    for (size_t i = 0; i < s->n_sites; i++) {
        if (!kvc_model_placed(m, s->sites[i], s->regions[i]))
            continue;
        char piece[80];
        if (line) {
            /* already listed on the line? */
            char *end = memchr(line, '\n', (size_t)(s->where + s->where_len - line));
            size_t sl = strlen(s->sites[i]);
            int seen = 0;
            for (char *q = line + nl + 1; q + sl <= end && !seen; q++)
                seen = memcmp(q, s->sites[i], sl) == 0 && (q[sl] == ',' || q[sl] == '\n') &&
                       (q[-1] == '\t' || q[-1] == ' ');
            if (seen)
                continue;
            int w = snprintf(piece, sizeof piece, "%s%s", end == line + nl + 1 ? "" : ", ",
                             s->sites[i]);
            if (s->where_len + (size_t)w + 1 > WHERE_MAX)
                return;
            size_t at = (size_t)(end - s->where);
            memmove(s->where + at + w, s->where + at, s->where_len - at);
            memcpy(s->where + at, piece, (size_t)w);
            s->where_len += (size_t)w;
        } else {
            int w = snprintf(piece, sizeof piece, "%s\t%s\n", m->name, s->sites[i]);
            if (s->where_len + (size_t)w + 1 > WHERE_MAX)
                return;
            line = s->where + s->where_len;
            memcpy(line, piece, (size_t)w);
            s->where_len += (size_t)w;
        }
    }
    if (!line && s->where_len + nl + 3 <= WHERE_MAX) {
        /* in the registry, but on no site membership knows now */
        memcpy(s->where + s->where_len, m->name, nl);
        memcpy(s->where + s->where_len + nl, "\t\n", 2);
        s->where_len += nl + 2;
    }
}

static int s_scan_one(const kvc_model_t *m, void *arg)
{
    s_scan_t *s = arg;
    if (!kvc_model_placed(m, s->sm->site, s->sm->region)) {
        s_where_add(s, m);
        return 0;
    }
    if (s->n == PLACED_MAX) {
        s->over = 1;
        return 0;
    }
    s->v[s->n++] = *m;
    return 0;
}

static int s_cmp(const void *a, const void *b)
{
    const kvc_model_t *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : x->version < y->version ? 1 : x->version > y->version ? -1 : 0;
}

/* Order-independent: the sum of each record's FNV-1a. */
static uint64_t s_fingerprint(const kvc_model_t *v, size_t n)
{
    uint64_t fp = n;
    uint8_t rec[KVC_MODEL_RECORD_MAX];
    for (size_t i = 0; i < n; i++) {
        size_t len = 0;
        if (kvc_model_encode(&v[i], rec, sizeof rec, &len) != 0)
            continue;
        uint64_t h = 1469598103934665603ull;
        for (size_t k = 0; k < len; k++)
            h = (h ^ rec[k]) * 1099511628211ull;
        fp += h;
    }
    return fp;
}

/* Reads what is placed here into sm->placed, and where the others are. */
static int s_scan(kvc_site_models_t *sm)
{
    s_scan_t s = {.sm = sm, .v = kvc_malloc(PLACED_MAX * sizeof(kvc_model_t))};
    if (!s.v)
        return KVC_ENOMEM;
    if (sm->env.sites) {
        s.sites = kvc_calloc(SITES_MAX, sizeof *s.sites);
        s.regions = kvc_calloc(SITES_MAX, sizeof *s.regions);
        s.where = kvc_malloc(WHERE_MAX);
        if (s.sites && s.regions && s.where) {
            s.n_sites = sm->env.sites(sm->serve_arg, s.sites, SITES_MAX);
            for (size_t i = 0; i < s.n_sites; i++)
                kvc_strlcpy(s.regions[i],
                            sm->env.region_of ? sm->env.region_of(sm->serve_arg, s.sites[i]) : "",
                            sizeof s.regions[i]);
        } else {
            kvc_free(s.where);
            s.where = NULL;
        }
    }
    int rc = kvc_registry_each(&sm->registry, s_scan_one, &s, NULL);
    kvc_free(s.sites);
    kvc_free(s.regions);
    if (rc) {
        kvc_free(s.where);
        kvc_free(s.v);
        return rc;
    }
    /* a name with a version placed here is served here: drop its line */
    if (s.where) {
        size_t out = 0;
        for (size_t p = 0; p < s.where_len;) {
            char *end = memchr(s.where + p, '\n', s.where_len - p);
            size_t len = (size_t)(end - (s.where + p)) + 1;
            char *tab = memchr(s.where + p, '\t', len);
            int here = 0;
            for (size_t i = 0; tab && i < s.n && !here; i++)
                here = strlen(s.v[i].name) == (size_t)(tab - (s.where + p)) &&
                       memcmp(s.v[i].name, s.where + p, (size_t)(tab - (s.where + p))) == 0;
            if (!here) {
                memmove(s.where + out, s.where + p, len);
                out += len;
            }
            p += len;
        }
        s.where_len = out;
        pthread_mutex_lock(&sm->where_mu);
        kvc_free(sm->where);
        sm->where = s.where;
        sm->where_len = s.where_len;
        pthread_mutex_unlock(&sm->where_mu);
    }
    if (s.over)
        kvc_warn("registry: over %d versions placed on site %s; the rest are not served",
                 PLACED_MAX, sm->site);
    qsort(s.v, s.n, sizeof *s.v, s_cmp);
    kvc_model_t *shrunk = s.n ? kvc_realloc(s.v, s.n * sizeof *s.v) : NULL;
    if (s.n && shrunk)
        s.v = shrunk;
    kvc_free(sm->placed);
    sm->placed = s.n ? s.v : (kvc_free(s.v), NULL);
    sm->n_placed = s.n;
    sm->placed_fp = s_fingerprint(sm->placed, sm->n_placed);
    sm->stats.placed = s.n;
    return KVC_OK;
}

static int s_same_status(const kvc_model_status_t *a, const kvc_model_status_t *b)
{
    return strcmp(a->model, b->model) == 0 && a->version == b->version &&
           a->applied == b->applied && a->desired_replicas == b->desired_replicas &&
           a->ready_replicas == b->ready_replicas && strcmp(a->error, b->error) == 0 &&
           strcmp(a->server_version, b->server_version) == 0 &&
           strcmp(a->coordinator, b->coordinator) == 0;
}

typedef struct {
    kvc_site_models_t *sm;
    const kvc_model_status_t *keep;
    size_t n_keep;
    kvc_model_status_t *gone;
    size_t n_gone;
} s_prune_t;

static int s_prune_one(const kvc_model_status_t *s, void *arg)
{
    s_prune_t *p = arg;
    if (strcmp(s->site, p->sm->site) != 0 || p->n_gone == PLACED_MAX)
        return 0;
    for (size_t i = 0; i < p->n_keep; i++)
        if (strcmp(p->keep[i].model, s->model) == 0 && p->keep[i].version == s->version)
            return 0;
    p->gone[p->n_gone++] = *s;
    return 0;
}

/* Writes the statuses that changed and removes our site's statuses of
 * versions no longer placed here. */
static void s_publish_status(kvc_site_models_t *sm, kvc_model_status_t *st, size_t n)
{
    uint64_t wall = kvc_clock_wall_ms();
    for (size_t i = 0; i < n; i++) {
        kvc_strlcpy(st[i].site, sm->site, sizeof st[i].site);
        kvc_strlcpy(st[i].coordinator, sm->self, sizeof st[i].coordinator);
        int same = 0;
        for (size_t k = 0; k < sm->n_written && !same; k++)
            if (s_same_status(&sm->written[k], &st[i])) {
                same = 1;
                st[i].updated_ms = sm->written[k].updated_ms;
            }
        if (same)
            continue;
        st[i].updated_ms = wall;
        int rc = kvc_registry_status_put(&sm->registry, &st[i]);
        if (rc)
            kvc_warn("registry: cannot write the status of %s:%llu: %s", st[i].model,
                     (unsigned long long)st[i].version, kvc_strerror(rc));
        else
            sm->stats.statuses_written++;
    }
    s_prune_t p = {sm, st, n, kvc_malloc(PLACED_MAX * sizeof(kvc_model_status_t)), 0};
    if (p.gone && kvc_registry_status_each(&sm->registry, s_prune_one, &p) == 0)
        for (size_t i = 0; i < p.n_gone; i++)
            (void)kvc_registry_status_del(&sm->registry, sm->site, p.gone[i].model,
                                          p.gone[i].version);
    kvc_free(p.gone);
    kvc_free(sm->written);
    sm->written = n ? kvc_malloc(n * sizeof *st) : NULL;
    sm->n_written = sm->written ? n : 0;
    if (sm->written)
        memcpy(sm->written, st, n * sizeof *st);
}

/* Collects a finished job, if any. */
static void s_collect(kvc_site_models_t *sm, uint64_t now)
{
    pthread_mutex_lock(&sm->mu);
    if (sm->slot != SLOT_DONE) {
        pthread_mutex_unlock(&sm->mu);
        return;
    }
    kvc_model_status_t *st = sm->result;
    size_t n = sm->n_result;
    int rc = sm->result_rc;
    uint64_t term = sm->job_term, fp = sm->job_fp;
    sm->result = NULL;
    sm->n_result = 0;
    kvc_free(sm->job);
    sm->job = NULL;
    sm->slot = SLOT_IDLE;
    sm->stats.last_run_ms = sm->result_ms;
    kvc_strlcpy(sm->stats.last_error, sm->result_err, sizeof sm->stats.last_error);
    pthread_mutex_unlock(&sm->mu);
    uint64_t drain;
    if (read(sm->efd, &drain, sizeof drain) < 0 && errno != EAGAIN)
        kvc_warn("registry: eventfd: %s", strerror(errno));

    sm->stats.runs++;
    if (rc) {
        sm->stats.failed_runs++;
        kvc_warn("registry: reconciling site %s: %s", sm->site, sm->stats.last_error);
    }
    if (kvc_election_can_act(sm->election, now) && kvc_election_term(sm->election) == term) {
        s_publish_status(sm, st, n);
        sm->applied_fp = fp;
        if (rc && sm->next_apply_ms > now + RETRY_MS) /* retry failures sooner */
            sm->next_apply_ms = now + RETRY_MS;
    } else {
        kvc_info("registry: no longer the coordinator of %s; statuses not written", sm->site);
    }
    kvc_free(st);
}

/* Posts a job when this peer coordinates and one is due. */
static void s_maybe_start(kvc_site_models_t *sm, uint64_t now, uint64_t fp)
{
    if (!sm->has_worker || !kvc_election_can_act(sm->election, now))
        return;
    if (fp == sm->applied_fp && now < sm->next_apply_ms)
        return;
    kvc_model_t *job = sm->n_placed ? kvc_malloc(sm->n_placed * sizeof *job) : NULL;
    if (sm->n_placed && !job)
        return;
    if (job)
        memcpy(job, sm->placed, sm->n_placed * sizeof *job);
    pthread_mutex_lock(&sm->mu);
    if (sm->slot != SLOT_IDLE) {
        pthread_mutex_unlock(&sm->mu);
        kvc_free(job);
        return;
    }
    sm->job = job;
    sm->n_job = sm->n_placed;
    sm->job_term = kvc_election_term(sm->election);
    sm->job_fp = fp;
    sm->slot = SLOT_QUEUED;
    pthread_cond_signal(&sm->cv);
    pthread_mutex_unlock(&sm->mu);
    sm->next_apply_ms = now + sm->interval_ms;
}

static int s_tick(void *core, uint64_t now, kvc_outbox_t *out)
{
    kvc_site_models_t *sm = core;
    (void)out;
    if (sm->has_worker)
        s_collect(sm, now);
    if ((sm->dirty && now >= sm->next_scan_ms) || !sm->served_once || now >= sm->next_apply_ms) {
        if (s_scan(sm) != 0)
            return KVC_ENOMEM;
        sm->dirty = 0;
        sm->next_scan_ms = KVC_DEADLINE_NONE;
    }
    uint64_t fp = sm->placed_fp;
    if (!sm->served_once || fp != sm->served_fp) {
        if (sm->serve)
            sm->serve(sm->serve_arg, sm->placed, sm->n_placed);
        sm->served_fp = fp;
        sm->served_once = 1;
    }
    s_maybe_start(sm, now, fp);
    if (now >= sm->next_apply_ms)
        sm->next_apply_ms = now + sm->interval_ms;
    sm->next_check_ms = KVC_DEADLINE_NONE;
    if (sm->has_worker) {
        pthread_mutex_lock(&sm->mu);
        int busy = sm->slot != SLOT_IDLE;
        pthread_mutex_unlock(&sm->mu);
        if (busy || fp != sm->applied_fp)
            sm->next_check_ms = now + BUSY_POLL_MS;
    }
    return KVC_OK;
}

static uint64_t s_deadline(const void *core)
{
    const kvc_site_models_t *sm = core;
    uint64_t d = sm->dirty ? sm->next_scan_ms : KVC_DEADLINE_NONE;
    if (!sm->served_once)
        d = 0;
    if (sm->has_worker && sm->next_apply_ms < d)
        d = sm->next_apply_ms;
    if (sm->next_check_ms < d)
        d = sm->next_check_ms;
    return d;
}

void kvc_site_models_changed(kvc_site_models_t *sm)
{
    uint64_t now = kvc_clock_mono_ms();
    sm->dirty = 1;
    if (sm->next_scan_ms > now + RESCAN_MS)
        sm->next_scan_ms = now + RESCAN_MS;
}

const kvc_core_ops_t kvc_site_models_core_ops = {
    .name = "site models",
    .channel = 0,
    .tick = s_tick,
    .next_deadline = s_deadline,
};

/* --- life ---------------------------------------------------------------- */

kvc_site_models_t *kvc_site_models_new(const kvc_config_t *cfg, const char *self_id,
                                       const kvc_kv_t *registry, const kvc_election_t *election,
                                       kvc_site_models_serve_fn serve,
                                       const kvc_site_models_env_t *env, void *arg,
                                       kvc_err_t *err)
{
    kvc_site_models_t *sm = kvc_calloc(1, sizeof *sm);
    if (!sm) {
        kvc_err_set(err, KVC_ENOMEM, "registry: out of memory");
        return NULL;
    }
    sm->registry = *registry;
    sm->election = election;
    sm->serve = serve;
    sm->serve_arg = arg;
    if (env)
        sm->env = *env;
    pthread_mutex_init(&sm->where_mu, NULL);
    sm->efd = -1;
    kvc_strlcpy(sm->self, self_id, sizeof sm->self);
    kvc_strlcpy(sm->site, cfg->site, sizeof sm->site);
    kvc_strlcpy(sm->region, cfg->region, sizeof sm->region);
    sm->interval_ms = (uint64_t)(cfg->registry_reconcile_s ? cfg->registry_reconcile_s : 30) * 1000;
    uint64_t now = kvc_clock_mono_ms();
    sm->next_scan_ms = now;
    sm->next_apply_ms = now + sm->interval_ms;
    sm->next_check_ms = KVC_DEADLINE_NONE;
    kvc_strlcpy(sm->kubeconfig, cfg->kube_kubeconfig, sizeof sm->kubeconfig);
    kvc_strlcpy(sm->ns, cfg->registry_namespace, sizeof sm->ns);
    kvc_strlcpy(sm->tf_image, cfg->registry_tfserving_image, sizeof sm->tf_image);
    kvc_strlcpy(sm->ks_image, cfg->registry_kserve_image, sizeof sm->ks_image);
    sm->poll_s = 0;
    pthread_mutex_init(&sm->mu, NULL);
    pthread_cond_init(&sm->cv, NULL);
    if (!sm->kubeconfig[0])
        return sm; /* this peer reconciles nothing; the proxy still gets its models */
    /* read the kubeconfig now, so a bad one is an error at start */
    if (s_kube_open(sm, err) != 0) {
        kvc_err_prefix(err, "kubernetes.kubeconfig: %s: ", sm->kubeconfig);
        kvc_site_models_destroy(&sm);
        return NULL;
    }
    sm->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (sm->efd < 0) {
        kvc_err_set(err, KVC_EIO, "registry: eventfd: %s", strerror(errno));
        kvc_site_models_destroy(&sm);
        return NULL;
    }
    if (pthread_create(&sm->thread, NULL, s_worker, sm) != 0) {
        kvc_err_set(err, KVC_EIO, "registry: cannot start its worker thread");
        kvc_site_models_destroy(&sm);
        return NULL;
    }
    sm->has_worker = 1;
    return sm;
}

void kvc_site_models_destroy(kvc_site_models_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    kvc_site_models_t *sm = *self_p;
    if (sm->has_worker) {
        pthread_mutex_lock(&sm->mu);
        sm->stop = 1;
        pthread_cond_signal(&sm->cv);
        pthread_mutex_unlock(&sm->mu);
        pthread_join(sm->thread, NULL);
    }
    if (sm->efd >= 0)
        close(sm->efd);
    kvc_kube_destroy(&sm->kube);
    kvc_free(sm->job);
    kvc_free(sm->result);
    kvc_free(sm->placed);
    kvc_free(sm->written);
    pthread_mutex_destroy(&sm->mu);
    pthread_cond_destroy(&sm->cv);
    pthread_mutex_destroy(&sm->where_mu);
    kvc_free(sm->where);
    kvc_free(sm);
    *self_p = NULL;
}

size_t kvc_site_models_where(kvc_site_models_t *sm, const char *model, char *buf, size_t cap)
{
    size_t n = 0, nl = strlen(model);
    if (cap)
        buf[0] = '\0';
    pthread_mutex_lock(&sm->where_mu);
    for (size_t p = 0; sm->where && p < sm->where_len;) {
        const char *line = sm->where + p;
        const char *end = memchr(line, '\n', sm->where_len - p);
        size_t len = (size_t)(end - line);
        if (len > nl && memcmp(line, model, nl) == 0 && line[nl] == '\t') {
            size_t sl = len - nl - 1;
            n = 1;
            for (size_t i = 0; i < sl; i++)
                n += line[nl + 1 + i] == ',';
            if (sl == 0)
                kvc_strlcpy(buf, "no site that is up now", cap);
            else if (cap) {
                size_t c = sl < cap - 1 ? sl : cap - 1;
                memcpy(buf, line + nl + 1, c);
                buf[c] = '\0';
            }
            break;
        }
        p += len + 1;
    }
    pthread_mutex_unlock(&sm->where_mu);
    return n;
}

void kvc_site_models_set_http(kvc_site_models_t *sm, const char *host_port)
{
    pthread_mutex_lock(&sm->mu);
    kvc_strlcpy(sm->http, host_port ? host_port : "", sizeof sm->http);
    pthread_mutex_unlock(&sm->mu);
}

int kvc_site_models_fd(const kvc_site_models_t *sm)
{
    return sm->has_worker ? sm->efd : -1;
}

void kvc_site_models_stats(const kvc_site_models_t *sm, kvc_site_models_stats_t *out)
{
    *out = sm->stats;
}
