/*
 * peer_metrics.c - kvc-peer's Prometheus metrics and federated view.
 *
 * The loop thread publishes (membership gauges, counter snapshots, its own
 * summary, the summaries it hears); HTTP threads observe proxy requests and
 * serve /metrics and /federate. Shared state is the thread-safe registry,
 * the summary set (its own mutex) and a small table of per-peer summaries
 * for `kvc metrics` under this module's mutex. Must never block the loop on
 * a scrape for longer than a copy, nor read the membership core off-loop.
 */
#include "peer_metrics.h"

#include "metrics_summary.h"
#include "promsel.h"

#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define MAX_SITES 1024
#define MAX_PEERS 4096

/* The last two summaries heard from one peer, for rates. */
typedef struct {
    char id[2 * KVC_SWIM_PART_MAX + 2];
    char site[KVC_SWIM_PART_MAX + 1];
    char region[KVC_SWIM_STR_MAX + 1];
    kvc_summary_t cur, prev;
    int has_prev;
    int down; /* membership says dead or gone */
    uint64_t heard_ms;
} s_peer_t;

struct kvc_peer_metrics {
    kvc_metrics_t *reg;
    kvc_summary_set_t *set;
    char site[KVC_SWIM_PART_MAX + 1];
    char id[2 * KVC_SWIM_PART_MAX + 2];
    char region[KVC_SWIM_STR_MAX + 1];
    uint64_t start_ms;
    uint64_t seq;
    uint64_t stale_ms; /* freshness window, from the last expire (under lock) */
    kvc_summary_t gossiped; /* the last summary worth gossiping (loop thread) */
    int have_gossiped;

    kvc_metric_t *rejects, *gossip_msgs, *gossip_bytes, *members, *peers_up;
    kvc_metric_t *routed;
    kvc_metric_t *requests, *errors, *latency, *req_bytes, *resp_bytes, *backend_errors;
    kvc_metric_t *backend_bytes;

    pthread_mutex_t lock;   /* guards what follows */
    kvc_swim_stats_t stats; /* last published snapshot */
    uint32_t local_health;
    char sites[MAX_SITES][KVC_SWIM_PART_MAX + 1]; /* every site seen, for zeroing */
    size_t n_sites;
    s_peer_t *peers;
    size_t n_peers;
    kvc_summary_backend_t backends[KVC_SUMMARY_MAX_BACKENDS]; /* from the scraper */
    size_t n_backends;
};

/* --- process metrics (any thread; read /proc) ---------------------------- */

/* This process's CPU seconds (user + system), or -1 if /proc says nothing. */
static double s_cpu_seconds(void)
{
    FILE *f = fopen("/proc/self/stat", "r");
    if (!f)
        return -1;
    char buf[1024];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the command may contain spaces */
    unsigned long utime = 0, stime = 0;
    if (!p ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2)
        return -1;
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

/* This process's resident set size in bytes, or -1. */
static double s_rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return -1;
    unsigned long size = 0, resident = 0;
    int ok = fscanf(f, "%lu %lu", &size, &resident) == 2;
    fclose(f);
    return ok ? (double)resident * (double)sysconf(_SC_PAGESIZE) : -1;
}

/* Emits this process's CPU seconds. */
static void s_cpu(kvc_metrics_emitter_t *em, void *arg)
{
    double v = s_cpu_seconds();
    if (v >= 0)
        kvc_metrics_emit(em, NULL, v);
}

/* Emits this process's resident set size in bytes. */
static void s_rss(kvc_metrics_emitter_t *em, void *arg)
{
    double v = s_rss_bytes();
    if (v >= 0)
        kvc_metrics_emit(em, NULL, v);
}

/* Emits the number of open file descriptors. */
static void s_fds(kvc_metrics_emitter_t *em, void *arg)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return;
    double n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    kvc_metrics_emit(em, NULL, n - 1); /* not the one opendir holds */
}

/* Emits the start time in unix seconds. */
static void s_start(kvc_metrics_emitter_t *em, void *arg)
{
    kvc_peer_metrics_t *self = arg;
    kvc_metrics_emit(em, NULL, (double)self->start_ms / 1000.0);
}

/* Emits the membership core's counters from the last snapshot. */
static void s_swim_counters(kvc_metrics_emitter_t *em, void *arg)
{
    kvc_peer_metrics_t *self = arg;
    pthread_mutex_lock(&self->lock);
    kvc_swim_stats_t st = self->stats;
    pthread_mutex_unlock(&self->lock);
    const struct {
        const char *kind;
        uint64_t v;
    } rows[] = {{"probe", st.probes},
                {"probe_failed", st.probe_failures},
                {"ack", st.acks},
                {"indirect_probe", st.indirect_probes},
                {"direct_lost", st.direct_lost},
                {"suspicion", st.suspicions},
                {"refutation", st.refutations},
                {"push_pull", st.push_pulls}};
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        kvc_metrics_emit(em, (const char *[]){rows[i].kind}, (double)rows[i].v);
}

/* Emits the Lifeguard local health score. */
static void s_health(kvc_metrics_emitter_t *em, void *arg)
{
    kvc_peer_metrics_t *self = arg;
    pthread_mutex_lock(&self->lock);
    double v = self->local_health;
    pthread_mutex_unlock(&self->lock);
    kvc_metrics_emit(em, NULL, v);
}

kvc_peer_metrics_t *kvc_peer_metrics_new(const char *site, const char *name, const char *region,
                                         uint64_t start_ms)
{
    kvc_peer_metrics_t *self = kvc_calloc(1, sizeof *self);
    if (!self)
        return NULL;
    pthread_mutex_init(&self->lock, NULL);
    kvc_strlcpy(self->site, site, sizeof self->site);
    snprintf(self->id, sizeof self->id, "%s/%s", site, name);
    kvc_strlcpy(self->region, region, sizeof self->region);
    self->start_ms = start_ms;
    self->stale_ms = kvc_summary_stale_ms(1);
    self->reg = kvc_metrics_new(NULL);
    self->set = kvc_summary_set_new(MAX_PEERS);
    self->peers = kvc_calloc(MAX_PEERS, sizeof *self->peers);
    if (!self->reg || !self->set || !self->peers) {
        kvc_peer_metrics_destroy(&self);
        return NULL;
    }
    kvc_metrics_t *r = self->reg;
    self->rejects = kvc_metrics_counter(r, "kvc_auth_rejects_total",
                                        "Federation messages refused, by reason.", "reason");
    self->gossip_msgs = kvc_metrics_counter(r, "kvc_gossip_messages_total",
                                            "Membership messages sent and received.", "direction");
    self->gossip_bytes = kvc_metrics_counter(
        r, "kvc_gossip_bytes_total", "Membership message bytes sent and received.", "direction");
    self->members =
        kvc_metrics_gauge(r, "kvc_membership_members",
                          "Members this peer knows, by their site and state.", "site,state");
    self->peers_up = kvc_metrics_gauge(r, "kvc_links_up",
                                       "Peers with an authenticated, live link to this one.", NULL);
    self->requests = kvc_metrics_counter(r, "kvc_proxy_requests_total",
                                         "Proxy HTTP requests by model, route and HTTP code.",
                                         "model,endpoint,route,code");
    self->routed = kvc_metrics_counter(
        r, "kvc_proxy_routed_requests_total",
        "Routed proxy requests by model, the site that answered (destination) and outcome: local, "
        "forwarded (answered at another site), retried (a second site answered after a "
        "retryable failure), failed (no site answered), served (answered here for another "
        "peer).",
        "model,destination,outcome");
    self->errors = kvc_metrics_counter(
        r, "kvc_proxy_errors_total", "Proxy requests answered with a 5xx code, by model.", "model");
    self->latency =
        kvc_metrics_histogram(r, "kvc_proxy_request_duration_seconds",
                              "Proxy request latency by model and route.", "model,route", NULL, 0);
    self->req_bytes = kvc_metrics_histogram(r, "kvc_proxy_request_size_bytes",
                                            "Proxy request body sizes by model.", "model",
                                            kvc_metrics_size_buckets, kvc_metrics_size_buckets_n);
    self->resp_bytes = kvc_metrics_histogram(r, "kvc_proxy_response_size_bytes",
                                             "Proxy response body sizes by model.", "model",
                                             kvc_metrics_size_buckets, kvc_metrics_size_buckets_n);
    self->backend_bytes =
        kvc_metrics_counter(r, "kvc_proxy_backend_bytes_total",
                            "Protobuf bytes exchanged with model servers.", "model,direction");
    self->backend_errors =
        kvc_metrics_counter(r, "kvc_proxy_backend_errors_total",
                            "Model server calls that failed, by gRPC status.", "model,grpc_status");
    kvc_metrics_counter_fn(r, "kvc_membership_events_total",
                           "Membership protocol events: probes, failed probes, acks, indirect "
                           "probes, probes acked only indirectly (direct path cut), "
                           "suspicions, refutations, push-pull rounds.",
                           "event", s_swim_counters, self);
    kvc_metrics_gauge_fn(r, "kvc_membership_local_health",
                         "Lifeguard local health score (0 = healthy).", NULL, s_health, self);
    kvc_metrics_counter_fn(r, "kvc_process_cpu_seconds_total", "CPU time used by kvc-peer.", NULL,
                           s_cpu, self);
    kvc_metrics_gauge_fn(r, "kvc_process_resident_memory_bytes", "Resident memory of kvc-peer.",
                         NULL, s_rss, self);
    kvc_metrics_gauge_fn(r, "kvc_process_open_fds", "Open file descriptors of kvc-peer.", NULL,
                         s_fds, self);
    kvc_metrics_gauge_fn(r, "kvc_process_start_time_seconds",
                         "Start time of kvc-peer, unix seconds.", NULL, s_start, self);
    return self;
}

void kvc_peer_metrics_destroy(kvc_peer_metrics_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    kvc_peer_metrics_t *self = *self_p;
    kvc_metrics_destroy(&self->reg);
    kvc_summary_set_destroy(&self->set);
    kvc_free(self->peers);
    pthread_mutex_destroy(&self->lock);
    kvc_free(self);
    *self_p = NULL;
}

kvc_metrics_t *kvc_peer_metrics_registry(kvc_peer_metrics_t *self)
{
    return self->reg;
}

void kvc_peer_metrics_reject(kvc_peer_metrics_t *self, const char *reason)
{
    kvc_metrics_inc(self->rejects, (const char *[]){reason}, 1);
}

void kvc_peer_metrics_gossip(kvc_peer_metrics_t *self, int out, size_t len)
{
    const char *dir[] = {out ? "out" : "in"};
    kvc_metrics_inc(self->gossip_msgs, dir, 1);
    kvc_metrics_inc(self->gossip_bytes, dir, (double)len);
}

/* Index of site in the seen-sites list, adding it; -1 when full. Locked. */
static int s_site_index(kvc_peer_metrics_t *self, const char *site)
{
    for (size_t i = 0; i < self->n_sites; i++)
        if (strcmp(self->sites[i], site) == 0)
            return (int)i;
    if (self->n_sites >= MAX_SITES)
        return -1;
    kvc_strlcpy(self->sites[self->n_sites], site, sizeof self->sites[0]);
    return (int)self->n_sites++;
}

void kvc_peer_metrics_publish(kvc_peer_metrics_t *self, const kvc_swim_t *swim, uint32_t peers_up)
{
    static uint32_t counts[MAX_SITES][4];
    memset(counts, 0, sizeof counts);
    pthread_mutex_lock(&self->lock);
    size_t n = kvc_swim_member_count(swim);
    for (size_t i = 0; i < n; i++) {
        kvc_swim_member_t m;
        if (kvc_swim_member_at(swim, i, &m) != 0 || (unsigned)m.state > 3)
            continue;
        int k = s_site_index(self, m.site);
        if (k >= 0)
            counts[k][m.state]++;
    }
    kvc_swim_stats(swim, &self->stats);
    self->local_health = kvc_swim_local_health(swim);
    size_t n_sites = self->n_sites;
    pthread_mutex_unlock(&self->lock);
    /* every site ever seen gets all four states, so a vanished count reads 0 */
    for (size_t k = 0; k < n_sites; k++)
        for (int st = 0; st < 4; st++)
            kvc_metrics_set(
                self->members,
                (const char *[]){self->sites[k], kvc_swim_state_name((kvc_swim_state_t)st)},
                counts[k][st]);
    kvc_metrics_set(self->peers_up, NULL, peers_up);
}

/* Collects the models seen by the proxy. */
typedef struct {
    char names[KVC_SUMMARY_MAX_MODELS * 4][KVC_SUMMARY_NAME_MAX + 1];
    size_t n;
} s_models_t;

static void s_collect_model(const char *value, void *arg)
{
    s_models_t *ms = arg;
    if (ms->n < sizeof ms->names / sizeof ms->names[0] && value[0])
        kvc_strlcpy(ms->names[ms->n++], value, sizeof ms->names[0]);
}

/* Reads one counter-like value from a registry family (0 if absent). */
static double s_read(kvc_metrics_t *reg, const char *family, const char *label, const char *value)
{
    kvc_metrics_reading_t r;
    kvc_metric_t *m = kvc_metrics_find(reg, family);
    if (!m || kvc_metrics_read(m, label, value, &r) != 0)
        return 0;
    return r.value;
}

/* Remembers a summary in the per-peer table (locked by caller). */
static void s_remember(kvc_peer_metrics_t *self, const char *id, const char *site,
                       const char *region, const kvc_summary_t *s, uint64_t now_ms)
{
    s_peer_t *p = NULL;
    for (size_t i = 0; i < self->n_peers; i++)
        if (strcmp(self->peers[i].id, id) == 0)
            p = &self->peers[i];
    if (!p) {
        if (self->n_peers >= MAX_PEERS)
            return;
        p = &self->peers[self->n_peers++];
        memset(p, 0, sizeof *p);
        kvc_strlcpy(p->id, id, sizeof p->id);
    }
    kvc_strlcpy(p->site, site, sizeof p->site);
    kvc_strlcpy(p->region, region, sizeof p->region);
    if (p->cur.version && p->cur.version < s->version) {
        p->prev = p->cur;
        p->has_prev = 1;
    }
    p->cur = *s;
    p->heard_ms = now_ms; /* p->down stays: only membership clears it */
}

int kvc_peer_metrics_summary(kvc_peer_metrics_t *self, uint64_t now_ms, int force, uint8_t *out,
                             size_t cap, size_t *len, int *gossip)
{
    kvc_summary_t s;
    memset(&s, 0, sizeof s);
    /* versions keep increasing across restarts: start time, then a counter */
    s.version = self->start_ms * 1048576u + (++self->seq & 0xfffff);
    s.timestamp_ms = now_ms;
    s.peers_up = (uint32_t)s_read(self->reg, "kvc_links_up", NULL, NULL);
    s.members_alive = (uint32_t)s_read(self->reg, "kvc_membership_members", "state", "alive");
    s.members_suspect = (uint32_t)s_read(self->reg, "kvc_membership_members", "state", "suspect");
    s.members_dead = (uint32_t)s_read(self->reg, "kvc_membership_members", "state", "dead");
    s.members_left = (uint32_t)s_read(self->reg, "kvc_membership_members", "state", "left");
    double cpu = s_cpu_seconds(), rss = s_rss_bytes();
    s.cpu_seconds = cpu > 0 ? cpu : 0;
    s.rss_bytes = rss > 0 ? (uint64_t)rss : 0;
    s.proxy_requests = (uint64_t)s_read(self->reg, "kvc_proxy_requests_total", NULL, NULL);
    s.proxy_errors = (uint64_t)s_read(self->reg, "kvc_proxy_errors_total", NULL, NULL);
    s_models_t ms = {.n = 0};
    kvc_metrics_label_values(self->requests, "model", s_collect_model, &ms);
    for (size_t i = 0; i < ms.n && s.n_models < KVC_SUMMARY_MAX_MODELS; i++) {
        kvc_summary_model_t *m = &s.models[s.n_models++];
        kvc_strlcpy(m->model, ms.names[i], sizeof m->model);
        m->requests = (uint64_t)s_read(self->reg, "kvc_proxy_requests_total", "model", m->model);
        m->errors = (uint64_t)s_read(self->reg, "kvc_proxy_errors_total", "model", m->model);
        kvc_metrics_reading_t r;
        if (kvc_metrics_read(self->latency, "model", m->model, &r) == 0 && r.count) {
            m->p50_seconds = kvc_metrics_quantile(&r, 0.5);
            m->p99_seconds = kvc_metrics_quantile(&r, 0.99);
        } else {
            m->p50_seconds = m->p99_seconds = NAN;
        }
    }
    pthread_mutex_lock(&self->lock);
    s.n_backends = self->n_backends;
    memcpy(s.backends, self->backends, sizeof s.backends);
    pthread_mutex_unlock(&self->lock);
    int rc = kvc_summary_encode(&s, KVC_SUMMARY_GOSSIP_BUDGET, out, cap, len, NULL);
    if (rc)
        return rc;
    *gossip = force || !self->have_gossiped || kvc_summary_news(&self->gossiped, &s);
    if (*gossip) {
        self->gossiped = s;
        self->have_gossiped = 1;
    }
    kvc_summary_t stored;
    if (kvc_summary_decode(out, *len, &stored) == 0) {
        kvc_summary_set_put(self->set, self->id, self->site, self->region, out, *len,
                            stored.version, (int64_t)now_ms);
        pthread_mutex_lock(&self->lock);
        s_remember(self, self->id, self->site, self->region, &stored, now_ms);
        pthread_mutex_unlock(&self->lock);
    }
    return KVC_OK;
}

void kvc_peer_metrics_backends(kvc_peer_metrics_t *self, const kvc_summary_backend_t *b, size_t n)
{
    if (n > KVC_SUMMARY_MAX_BACKENDS)
        n = KVC_SUMMARY_MAX_BACKENDS;
    pthread_mutex_lock(&self->lock);
    memcpy(self->backends, b, n * sizeof *b);
    self->n_backends = n;
    pthread_mutex_unlock(&self->lock);
}

int kvc_peer_metrics_heard(kvc_peer_metrics_t *self, const char *id, const char *site,
                           const char *region, const uint8_t *data, size_t len, uint64_t now_ms)
{
    kvc_summary_t s;
    int rc = kvc_summary_decode(data, len, &s);
    if (rc)
        return rc;
    rc = kvc_summary_set_put(self->set, id, site, region[0] ? region : "default", data, len,
                             s.version, (int64_t)now_ms);
    if (rc == 0) {
        pthread_mutex_lock(&self->lock);
        s_remember(self, id, site, region, &s, now_ms);
        pthread_mutex_unlock(&self->lock);
    }
    return rc == KVC_EEXIST ? KVC_OK : rc;
}

size_t kvc_peer_metrics_expire(kvc_peer_metrics_t *self, uint64_t now_ms, uint64_t stale_ms,
                               uint64_t remove_ms)
{
    size_t down = 0;
    kvc_summary_set_expire(self->set, (int64_t)now_ms, (int64_t)stale_ms, (int64_t)remove_ms,
                           &down);
    pthread_mutex_lock(&self->lock);
    self->stale_ms = stale_ms; /* kvc_peer_metrics_each judges freshness the same way */
    for (size_t i = 0; i < self->n_peers;) {
        if (now_ms > self->peers[i].heard_ms && now_ms - self->peers[i].heard_ms > remove_ms)
            self->peers[i] = self->peers[--self->n_peers];
        else
            i++;
    }
    pthread_mutex_unlock(&self->lock);
    return down;
}

void kvc_peer_metrics_member_down(kvc_peer_metrics_t *self, const char *id, int down)
{
    kvc_summary_set_mark_down(self->set, id, down);
    pthread_mutex_lock(&self->lock);
    for (size_t i = 0; i < self->n_peers; i++)
        if (strcmp(self->peers[i].id, id) == 0)
            self->peers[i].down = down != 0;
    pthread_mutex_unlock(&self->lock);
}

void kvc_peer_metrics_observe(void *arg, const kvc_proxy_observation_t *obs)
{
    kvc_peer_metrics_t *self = arg;
    char code[8];
    snprintf(code, sizeof code, "%d", obs->http_status);
    const char *model = obs->model && obs->model[0] ? obs->model : "_none";
    const char *route = obs->route ? obs->route : "local";
    kvc_metrics_inc(self->requests,
                    (const char *[]){model, obs->endpoint ? obs->endpoint : "", route, code}, 1);
    if (obs->http_status >= 500)
        kvc_metrics_inc(self->errors, (const char *[]){model}, 1);
    if (obs->site && (obs->site[0] || strcmp(route, "served") == 0)) {
        const char *outcome = strcmp(route, "served") == 0 ? "served"
                              : obs->http_status >= 500    ? "failed"
                              : obs->retried               ? "retried"
                                                           : route;
        kvc_metrics_inc(self->routed,
                        (const char *[]){model, obs->site[0] ? obs->site : "_none", outcome}, 1);
        /* obs->site "_none": no site could take it (proxy.c) */
    }
    kvc_metrics_observe(self->latency, (const char *[]){model, route}, obs->seconds);
    kvc_metrics_observe(self->req_bytes, (const char *[]){model}, (double)obs->request_bytes);
    kvc_metrics_observe(self->resp_bytes, (const char *[]){model}, (double)obs->response_bytes);
    if (obs->grpc_status >= 0) {
        kvc_metrics_inc(self->backend_bytes, (const char *[]){model, "out"},
                        (double)obs->backend_request_bytes);
        kvc_metrics_inc(self->backend_bytes, (const char *[]){model, "in"},
                        (double)obs->backend_response_bytes);
    }
    if (obs->grpc_status > 0) {
        char st[16];
        snprintf(st, sizeof st, "%d", obs->grpc_status);
        kvc_metrics_inc(self->backend_errors, (const char *[]){model, st}, 1);
    }
}

int kvc_peer_metrics_write(kvc_peer_metrics_t *self, kvc_buf_t *out)
{
    int rc = kvc_metrics_write(self->reg, out);
    if (rc)
        return rc;
    /* The probe RTT histogram comes from the core's fixed buckets. */
    static const double bounds_ms[] = KVC_SWIM_RTT_BOUNDS;
    pthread_mutex_lock(&self->lock);
    kvc_swim_stats_t st = self->stats;
    pthread_mutex_unlock(&self->lock);
    const char *name = "kvc_membership_probe_rtt_seconds";
    rc = kvc_metrics_append_header(out, name, "Round trip of direct membership probes.",
                                   KVC_METRIC_HISTOGRAM);
    uint64_t cum = 0;
    for (int i = 0; rc == 0 && i < KVC_SWIM_RTT_BUCKETS; i++) {
        cum += st.rtt_buckets[i];
        char le[32];
        if (i < KVC_SWIM_RTT_BUCKETS - 1)
            snprintf(le, sizeof le, "%g", bounds_ms[i] / 1000.0);
        else
            snprintf(le, sizeof le, "+Inf");
        rc = kvc_metrics_append_sample(out, name, "_bucket", (const char *[]){"le"},
                                       (const char *[]){le}, 1, (double)cum);
    }
    if (rc == 0)
        rc = kvc_metrics_append_sample(out, name, "_sum", NULL, NULL, 0, st.rtt_sum_ms / 1000.0);
    if (rc == 0)
        rc = kvc_metrics_append_sample(out, name, "_count", NULL, NULL, 0, (double)st.rtt_count);
    return rc;
}

int kvc_peer_metrics_federate(kvc_peer_metrics_t *self, const char *const *match, size_t n,
                              uint64_t now_ms, kvc_buf_t *out, kvc_err_t *err)
{
    kvc_promsel_set_t *sel = NULL;
    if (n) {
        sel = kvc_promsel_set_new();
        if (!sel)
            return kvc_err_set(err, KVC_ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
            int rc = kvc_promsel_set_add(sel, match[i], strlen(match[i]), err);
            if (rc) {
                kvc_promsel_set_destroy(&sel);
                return rc;
            }
        }
    }
    int rc = kvc_summary_set_write(self->set, sel, (int64_t)now_ms, out);
    kvc_promsel_set_destroy(&sel);
    return rc;
}

int kvc_peer_metrics_each(kvc_peer_metrics_t *self, uint64_t now_ms, kvc_peer_metrics_each_fn fn,
                          void *arg)
{
    pthread_mutex_lock(&self->lock);
    for (size_t i = 0; i < self->n_peers; i++) {
        const s_peer_t *p = &self->peers[i];
        uint64_t age = now_ms > p->heard_ms ? now_ms - p->heard_ms : 0;
        int fresh = !p->down && age <= self->stale_ms;
        const void *pair[2] = {&p->cur, p->has_prev ? &p->prev : NULL};
        fn(arg, p->site, p->id, p->region, fresh, age, pair);
    }
    pthread_mutex_unlock(&self->lock);
    return KVC_OK;
}
