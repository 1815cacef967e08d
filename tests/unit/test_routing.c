/* Unit tests of the proxy's cross-site routing (proxy/routing.c and the
 * routed path of proxy.c): a request whose local backend refuses is
 * answered by another site in the same request; the local breaker opens
 * and later requests go straight to the other site; a request the remote
 * rejects (bad input) is never retried; an unreachable site is passed
 * over for the next; no site qualifying is a 503 naming why; forwarded
 * requests are served locally only and honour the constraint; the local
 * figures count requests in flight; the explanation names every site.
 *
 * The local backend is a port held bound but never listened on (refused);
 * the other sites are a transport stub that answers from another thread,
 * as the real one (peer/fwd.c) does. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <time.h>
#include <curl/curl.h>

#include "http_server.h"
#include "proxy.h"

typedef struct {
    char site[64];
    int ready;
    int reachable;
    int transport_fails; /* the remote fn returns nonzero */
    int no_answer;       /* answered = 0 (timed out) */
    int status;          /* the remote proxy's status */
    int call_class;
    int calls;
    int hold;        /* the answer waits until the test clears hold */
    int delay_ms;    /* the answer comes this long after the call */
    int answered;    /* done calls made */
    int64_t call_ms; /* monotonic time of the last call */
} s_site_t;

typedef struct {
    int fd;
    char grpc[32];
    s_site_t sites[3];
    size_t n_sites;
    pthread_mutex_t mu;
    pthread_cond_t cond; /* hold released, or an answer made */
    int threads;         /* answering threads not yet ended */
} s_world_t;

/* Monotonic milliseconds. */
static int64_t s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static s_world_t *g_w;

static size_t s_sites_fn(void *arg, const char *model, kvc_proxy_site_t *out, size_t cap)
{
    s_world_t *w = arg;
    (void)model;
    size_t k = 0;
    for (size_t i = 0; i < w->n_sites && k < cap; i++) {
        kvc_proxy_site_t *o = &out[k++];
        memset(o, 0, sizeof *o);
        snprintf(o->site, sizeof o->site, "%s", w->sites[i].site);
        snprintf(o->region, sizeof o->region, "r%zu", i);
        snprintf(o->arch, sizeof o->arch, "x86_64");
        o->s.placed = 1;
        o->s.ready = w->sites[i].ready;
        o->s.reachable = w->sites[i].reachable;
        o->s.p50_us = o->s.p99_us = 1000;
        o->s.rtt_us = 1000 * (int64_t)(i + 1); /* b nearer than c */
        o->s.accel = i == 1 ? KVC_ACCEL_NVIDIA : KVC_ACCEL_NONE;
        o->s.accel_count = i == 1 ? 1 : 0;
    }
    return k;
}

typedef struct {
    kvc_proxy_remote_resp_t *resp;
    void (*done)(void *);
    void *done_arg;
    s_site_t *site;
} s_job_t;

/* The stub's answering thread: a slow site's answer comes after its delay
 * (a timed wait, the site's simulated latency) or when the test releases
 * a held one. */
static void *s_answer(void *arg)
{
    s_job_t *j = arg;
    s_world_t *w = g_w;
    s_site_t *site = j->site;
    pthread_mutex_lock(&w->mu);
    int64_t until = j->site->call_ms + j->site->delay_ms;
    while (j->site->hold || s_now_ms() < until) {
        if (j->site->hold) {
            pthread_cond_wait(&w->cond, &w->mu);
            continue;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t ns = ts.tv_nsec + (until - s_now_ms()) * 1000000;
        ts.tv_sec += ns / 1000000000;
        ts.tv_nsec = ns % 1000000000;
        pthread_cond_timedwait(&w->cond, &w->mu, &ts);
    }
    pthread_mutex_unlock(&w->mu);
    j->done(j->done_arg);
    free(j);
    pthread_mutex_lock(&w->mu);
    site->answered++;
    w->threads--; /* teardown waits for this before it frees w */
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

static int s_remote_fn(void *arg, const char *site, const kvc_proxy_remote_req_t *req,
                       kvc_proxy_remote_resp_t *resp, void (*done)(void *), void *done_arg)
{
    s_world_t *w = arg;
    s_site_t *s = NULL;
    for (size_t i = 0; i < w->n_sites; i++)
        if (strcmp(w->sites[i].site, site) == 0)
            s = &w->sites[i];
    assert_non_null(s);
    pthread_mutex_lock(&w->mu);
    s->calls++;
    s->call_ms = s_now_ms();
    pthread_mutex_unlock(&w->mu);
    assert_true(req->timeout_ms > 0);
    if (s->transport_fails) {
        snprintf(resp->error, sizeof resp->error, "no peer");
        return -1;
    }
    if (s->no_answer) {
        resp->answered = 0;
        resp->timed_out = 1;
        snprintf(resp->error, sizeof resp->error, "no answer in %u ms", req->timeout_ms);
    } else {
        resp->answered = 1;
        resp->status = s->status;
        resp->call_class = s->call_class;
        snprintf(resp->content_type, sizeof resp->content_type, "application/json");
        char body[160];
        int n = snprintf(body, sizeof body, "{\"from\": \"%s\", \"path\": \"%s\", \"len\": %zu}",
                         site, req->path, req->body_len);
        resp->body = kvc_malloc((size_t)n);
        memcpy(resp->body, body, (size_t)n);
        resp->body_len = (size_t)n;
        snprintf(resp->served_by, sizeof resp->served_by, "%s", site);
    }
    /* answered from another thread, as the real transport does */
    s_job_t *j = malloc(sizeof *j);
    assert_non_null(j);
    *j = (s_job_t){resp, done, done_arg, s};
    pthread_t t;
    pthread_mutex_lock(&w->mu);
    w->threads++;
    pthread_mutex_unlock(&w->mu);
    assert_int_equal(pthread_create(&t, NULL, s_answer, j), 0);
    pthread_detach(t);
    return 0;
}

static int s_setup(void **state)
{
    s_world_t *w = calloc(1, sizeof *w);
    if (!w)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    w->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (w->fd < 0 || bind(w->fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(w->fd, (struct sockaddr *)&a, &len) != 0) {
        free(w);
        return -1;
    }
    snprintf(w->grpc, sizeof w->grpc, "127.0.0.1:%u", ntohs(a.sin_port));
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cond, NULL);
    const char *names[] = {"site-b", "site-c"};
    for (size_t i = 0; i < 2; i++) {
        snprintf(w->sites[i].site, sizeof w->sites[i].site, "%s", names[i]);
        w->sites[i].ready = w->sites[i].reachable = 1;
        w->sites[i].status = 200;
        w->sites[i].call_class = KVC_CALL_SUCCESS;
    }
    w->n_sites = 2;
    g_w = w;
    *state = w;
    return 0;
}

static int s_teardown(void **state)
{
    s_world_t *w = *state;
    pthread_mutex_lock(&w->mu);
    while (w->threads > 0) /* the stub's answers still on their way */
        pthread_cond_wait(&w->cond, &w->mu);
    pthread_mutex_unlock(&w->mu);
    close(w->fd);
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->mu);
    free(w);
    return 0;
}

static kvc_proxy_t *s_proxy_ex(s_world_t *w, int with_local, uint32_t hedge_ms, uint32_t timeout_ms)
{
    static kvc_proxy_input_t in[1] = {{"x", KVC_DT_FLOAT, NULL, 0}};
    kvc_proxy_backend_t b[1] = {{"m", w->grpc, "tfserving", "", "", in, 1, NULL, NULL, 0}};
    kvc_proxy_opts_t o = {.backends = b,
                          .n_backends = with_local ? 1 : 0,
                          .timeout_ms = timeout_ms,
                          .sites = s_sites_fn,
                          .sites_arg = w,
                          .remote = s_remote_fn,
                          .remote_arg = w,
                          .site = "site-a",
                          .region = "r-a",
                          .arch = "arm64",
                          .capacity = 4,
                          .hedge_ms = hedge_ms};
    kvc_err_t err = {0};
    kvc_proxy_t *p = kvc_proxy_new(&o, &err);
    if (!p)
        fprintf(stderr, "proxy: %s\n", err.msg);
    assert_non_null(p);
    return p;
}

static kvc_proxy_t *s_proxy(s_world_t *w, int with_local)
{
    return s_proxy_ex(w, with_local, 0, 2000);
}

typedef struct {
    int status;
    char body[512];
    char served_by[64];
    char route[16];
} s_out_t;

static s_out_t s_predict(kvc_proxy_t *p)
{
    kvc_http_req_t req = {.method = "POST",
                          .path = "/v1/models/m:predict",
                          .content_type = "application/json",
                          .body = (const uint8_t *)"{\"instances\": [1.5]}",
                          .body_len = 20};
    kvc_http_resp_t resp;
    memset(&resp, 0, sizeof resp);
    kvc_buf_init(&resp.body, 1 << 16);
    kvc_proxy_handle(p, &req, &resp);
    s_out_t o;
    memset(&o, 0, sizeof o);
    o.status = resp.status;
    snprintf(o.body, sizeof o.body, "%.*s", (int)resp.body.len,
             resp.body.data ? resp.body.data : "");
    snprintf(o.served_by, sizeof o.served_by, "%s", resp.served_by);
    snprintf(o.route, sizeof o.route, "%s", resp.route);
    kvc_buf_free(&resp.body);
    return o;
}

/* The local backend refuses: every request is still answered, by site-b
 * (the nearer), first after a failed local try (retried), and once the
 * local breaker opened (5 retryable failures) straight away (forwarded);
 * the local figures then say not ready. */
static void test_failover_to_nearest(void **state)
{
    s_world_t *w = *state;
    kvc_proxy_t *p = s_proxy(w, 1);
    for (int i = 0; i < 5; i++) {
        s_out_t o = s_predict(p);
        assert_int_equal(o.status, 200);
        assert_string_equal(o.served_by, "site-b");
        assert_string_equal(o.route, "retried");
        assert_non_null(strstr(o.body, "\"from\": \"site-b\""));
        assert_non_null(strstr(o.body, "\"len\": 20"));
    }
    assert_int_equal(w->sites[0].calls, 5);
    kvc_proxy_model_health_t h[4];
    assert_int_equal(kvc_proxy_local_health(p, h, 4), 1);
    assert_string_equal(h[0].model, "m");
    assert_int_equal(h[0].ready, 0); /* its breaker is open */
    assert_int_equal(h[0].in_flight, 0);
    assert_int_equal(h[0].capacity, 4);
    s_out_t o = s_predict(p);
    assert_int_equal(o.status, 200);
    assert_string_equal(o.route, "forwarded"); /* no local try any more */
    assert_int_equal(w->sites[0].calls, 6);
    assert_int_equal(w->sites[1].calls, 0);
    kvc_proxy_route_stats_t st;
    kvc_proxy_route_stats(p, &st);
    assert_int_equal(st.retried, 5);
    assert_int_equal(st.forwarded, 6);
    assert_int_equal(st.local, 0);
    assert_int_equal(st.failed, 0);
    kvc_proxy_destroy(&p);
}

/* A rejected request (the remote's backend said bad input) is not
 * retried; an unreachable site is passed over; a site that times out is
 * retried once at the next, never a third time. */
static void test_retry_rules(void **state)
{
    s_world_t *w = *state;
    kvc_proxy_t *p = s_proxy(w, 0); /* the model is not served here */
    w->sites[0].status = 400;
    w->sites[0].call_class = KVC_CALL_REJECT;
    s_out_t o = s_predict(p);
    assert_int_equal(o.status, 400);
    assert_string_equal(o.served_by, "site-b");
    assert_int_equal(w->sites[1].calls, 0);

    w->sites[0].status = 200;
    w->sites[0].call_class = KVC_CALL_SUCCESS;
    w->sites[0].transport_fails = 1;
    o = s_predict(p);
    assert_int_equal(o.status, 200);
    assert_string_equal(o.served_by, "site-c");
    assert_string_equal(o.route, "retried");

    w->sites[0].transport_fails = 0;
    w->sites[0].no_answer = 1;
    w->sites[1].no_answer = 1;
    int c_before = w->sites[1].calls;
    o = s_predict(p);
    assert_int_equal(o.status, 504);
    assert_non_null(strstr(o.body, "no answer"));
    assert_int_equal(w->sites[1].calls, c_before + 1); /* tried once more, at c */
    kvc_proxy_route_stats_t st;
    kvc_proxy_route_stats(p, &st);
    assert_int_equal(st.failed, 1);
    kvc_proxy_destroy(&p);
}

/* No site qualifies: 503 naming each site and why. */
static void test_no_site(void **state)
{
    s_world_t *w = *state;
    kvc_proxy_t *p = s_proxy(w, 0);
    w->sites[0].ready = 0;
    w->sites[1].reachable = 0;
    s_out_t o = s_predict(p);
    assert_int_equal(o.status, 503);
    assert_non_null(strstr(o.body, "site-b: not ready"));
    assert_non_null(strstr(o.body, "site-c: unreachable"));
    assert_int_equal(w->sites[0].calls + w->sites[1].calls, 0);
    char buf[4096];
    kvc_err_t err = {0};
    assert_int_equal(kvc_proxy_explain(p, "m", NULL, NULL, buf, sizeof buf, &err), 0);
    assert_non_null(strstr(buf, "\"chosen\":null"));
    assert_non_null(strstr(buf, "\"reason\":\"not placed\"")); /* site-a itself */
    assert_non_null(strstr(buf, "\"reason\":\"not ready\""));
    assert_non_null(strstr(buf, "\"reason\":\"unreachable\""));
    /* a constraint only site-c meets, while it is reachable */
    w->sites[1].reachable = 1;
    assert_int_equal(kvc_proxy_explain(p, "m", "accelerator=gpu", NULL, buf, sizeof buf, &err), 0);
    assert_non_null(strstr(buf, "\"chosen\":\"site-c\""));
    assert_non_null(strstr(buf, "\"reason\":\"constraint unmet\""));
    assert_int_not_equal(
        kvc_proxy_explain(p, "m", "accelerator=quantum", NULL, buf, sizeof buf, &err), 0);
    assert_non_null(strstr(err.msg, "quantum"));
    kvc_proxy_destroy(&p);
}

/* A forwarded request is served here only: the model is not here, so a
 * 404 that says so (retryable for the sender), and never a forward; one
 * with a constraint this site does not meet is refused with 503. */
static void test_forwarded_is_local_only(void **state)
{
    s_world_t *w = *state;
    kvc_proxy_t *p = s_proxy(w, 0);
    kvc_http_req_t req = {.method = "POST",
                          .path = "/v1/models/m:predict",
                          .body = (const uint8_t *)"{\"instances\": [1]}",
                          .body_len = 18};
    kvc_http_resp_t resp;
    memset(&resp, 0, sizeof resp);
    kvc_buf_init(&resp.body, 1 << 16);
    int cls = -1;
    kvc_proxy_handle_forwarded(p, &req, NULL, &resp, &cls);
    assert_int_equal(resp.status, 404);
    assert_int_equal(cls, KVC_CALL_RETRY);
    assert_int_equal(w->sites[0].calls + w->sites[1].calls, 0);
    kvc_buf_reset(&resp.body);
    kvc_proxy_handle_forwarded(p, &req, "accelerator=tpu", &resp, &cls);
    assert_int_equal(resp.status, 503);
    assert_non_null(strstr(resp.body.data, "does not meet"));
    assert_int_equal(cls, KVC_CALL_RETRY);
    kvc_buf_reset(&resp.body);
    kvc_proxy_handle_forwarded(p, &req, "arch=arm64", &resp, &cls);
    assert_int_equal(resp.status, 404); /* met; the model is just not here */
    kvc_buf_reset(&resp.body);
    kvc_proxy_handle_forwarded(p, &req, "colour=blue", &resp, &cls);
    assert_int_equal(resp.status, 400);
    assert_int_equal(cls, KVC_CALL_REJECT);
    kvc_buf_free(&resp.body);
    kvc_proxy_destroy(&p);
}

/* Options: routing needs this site's name; names are checked. */
static void test_options(void **state)
{
    s_world_t *w = *state;
    kvc_proxy_opts_t o = {.sites = s_sites_fn, .sites_arg = w, .remote = s_remote_fn};
    kvc_err_t err = {0};
    assert_null(kvc_proxy_new(&o, &err));
    assert_non_null(strstr(err.msg, "site"));
    o.site = "Site_A!";
    assert_null(kvc_proxy_new(&o, &err));
    o.site = "site-a";
    o.arch = "x 86";
    assert_null(kvc_proxy_new(&o, &err));
    assert_non_null(strstr(err.msg, "arch"));
    o.arch = NULL;
    kvc_proxy_t *p = kvc_proxy_new(&o, &err);
    assert_non_null(p);
    kvc_proxy_destroy(&p);
}

/* ---- Hedging: through the real HTTP front, which is where the
 * Kvc-Idempotent header is read (a request for a model served only
 * elsewhere runs in a fiber on the HTTP loop; one for a local model, whose
 * signatures are not known yet, on a thread). ---------------------------- */

typedef struct {
    long status;
    char body[1024];
    size_t len;
    char route[32];
    char served_by[64];
} s_http_out_t;

static size_t s_body_cb(char *p, size_t size, size_t n, void *arg)
{
    s_http_out_t *o = arg;
    size_t k = size * n;
    if (o->len + k >= sizeof o->body)
        k = sizeof o->body - 1 - o->len;
    memcpy(o->body + o->len, p, k);
    o->len += k;
    o->body[o->len] = '\0';
    return size * n;
}

/* Copies the value of header line p (size n) into out when it is name. */
static void s_header_value(const char *p, size_t n, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    if (n <= nl + 1 || strncasecmp(p, name, nl) != 0 || p[nl] != ':')
        return;
    const char *v = p + nl + 1;
    size_t vn = n - nl - 1;
    while (vn && (*v == ' '))
        v++, vn--;
    while (vn && (v[vn - 1] == '\r' || v[vn - 1] == '\n' || v[vn - 1] == ' '))
        vn--;
    snprintf(out, cap, "%.*s", (int)vn, v);
}

static size_t s_header_cb(char *p, size_t size, size_t n, void *arg)
{
    s_http_out_t *o = arg;
    s_header_value(p, size * n, "Kvc-Route", o->route, sizeof o->route);
    s_header_value(p, size * n, "Kvc-Served-By", o->served_by, sizeof o->served_by);
    return size * n;
}

/* One predict through the front; flag: the Kvc-Idempotent value (NULL: none). */
static s_http_out_t s_http_predict_h(uint16_t port, const char *flag, const char *extra)
{
    s_http_out_t o;
    memset(&o, 0, sizeof o);
    CURL *c = curl_easy_init();
    assert_non_null(c);
    char url[128], hdr[96];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/v1/models/m:predict", port);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    h = curl_slist_append(h, "Expect:");
    if (flag) {
        snprintf(hdr, sizeof hdr, "Kvc-Idempotent: %s", flag);
        h = curl_slist_append(h, hdr);
    }
    if (extra)
        h = curl_slist_append(h, extra);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, "{\"instances\": [1.5]}");
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, 20L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, s_body_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &o);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, s_header_cb);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &o);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &o.status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return o;
}

static s_http_out_t s_http_predict(uint16_t port, const char *flag)
{
    return s_http_predict_h(port, flag, NULL);
}

static kvc_http_server_t *s_front(kvc_proxy_t *p)
{
    kvc_http_opts_t ho = {.max_body = 1 << 20,
                          .max_response = 1 << 20,
                          .inline_ok = kvc_proxy_inline_ok,
                          .engine = kvc_proxy_engine(p)};
    kvc_err_t err = {0};
    kvc_http_server_t *srv = kvc_http_server_new("127.0.0.1:0", &ho, kvc_proxy_handle, p, &err);
    if (!srv)
        fprintf(stderr, "http: %s\n", err.msg);
    assert_non_null(srv);
    return srv;
}

/* Waits (polling, with a deadline) until site i has made n answers. */
static int s_wait_answered(s_world_t *w, size_t i, int n)
{
    int64_t until = s_now_ms() + 10000;
    pthread_mutex_lock(&w->mu);
    while (w->sites[i].answered < n && s_now_ms() < until) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20 * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&w->cond, &w->mu, &ts);
    }
    int ok = w->sites[i].answered >= n;
    pthread_mutex_unlock(&w->mu);
    return ok;
}

/* Hedging off (the default): a flagged request whose first site is slow
 * waits for it; the next site is never asked. */
static void test_hedge_off(void **state)
{
    s_world_t *w = *state;
    kvc_proxy_t *p = s_proxy_ex(w, 0, 0, 2000);
    kvc_http_server_t *srv = s_front(p);
    w->sites[0].delay_ms = 120;
    s_http_out_t o = s_http_predict(kvc_http_server_port(srv), "true");
    assert_int_equal(o.status, 200);
    assert_string_equal(o.served_by, "site-b");
    assert_string_equal(o.route, "forwarded");
    assert_int_equal(w->sites[1].calls, 0);
    kvc_proxy_route_stats_t st;
    kvc_proxy_route_stats(p, &st);
    assert_int_equal(st.hedged, 0);
    assert_int_equal(st.hedge_wins, 0);
    kvc_http_server_destroy(&srv);
    kvc_proxy_destroy(&p);
}

/* Hedging on: a flagged request whose first site (site-b) holds its
 * answer is sent to site-c too, no sooner than hedge_ms after it started
 * (measured on the monotonic clock), and site-c's answer is returned as
 * "hedged"; site-b's answer, released after the response went out, is
 * dropped (ASan would see a use after free or a leak). Unflagged, or
 * flagged with any other value, the same slow site is waited for. */
static void test_hedge_wins(void **state)
{
    s_world_t *w = *state;
    const uint32_t hedge_ms = 60;
    kvc_proxy_t *p = s_proxy_ex(w, 0, hedge_ms, 2000);
    kvc_http_server_t *srv = s_front(p);
    uint16_t port = kvc_http_server_port(srv);
    w->sites[0].hold = 1;
    int64_t t0 = s_now_ms();
    s_http_out_t o = s_http_predict(port, "true");
    assert_int_equal(o.status, 200);
    assert_string_equal(o.served_by, "site-c");
    assert_string_equal(o.route, "hedged");
    assert_non_null(strstr(o.body, "\"from\": \"site-c\""));
    assert_int_equal(w->sites[0].calls, 1);
    assert_int_equal(w->sites[1].calls, 1);
    pthread_mutex_lock(&w->mu);
    int64_t b_at = w->sites[0].call_ms, c_at = w->sites[1].call_ms;
    assert_int_equal(w->sites[0].answered, 0); /* still held */
    pthread_mutex_unlock(&w->mu);
    assert_true(b_at - t0 < (int64_t)hedge_ms);
    assert_true(c_at - b_at >= (int64_t)hedge_ms);
    kvc_proxy_route_stats_t st;
    kvc_proxy_route_stats(p, &st);
    assert_int_equal(st.hedged, 1);
    assert_int_equal(st.hedge_wins, 1);
    assert_int_equal(st.forwarded, 1);
    assert_int_equal(st.failed, 0);
    /* The loser answers now, into a request that is gone. */
    pthread_mutex_lock(&w->mu);
    w->sites[0].hold = 0;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->mu);
    assert_true(s_wait_answered(w, 0, 1));
    /* site-b's breaker heard no failure: it is still the first choice. */
    w->sites[0].delay_ms = 150;
    const char *not_flags[] = {NULL, "false", "yes", "truee", ""};
    for (size_t k = 0; k < sizeof not_flags / sizeof not_flags[0]; k++) {
        o = s_http_predict(port, not_flags[k]);
        assert_int_equal(o.status, 200);
        assert_string_equal(o.served_by, "site-b");
        assert_string_equal(o.route, "forwarded");
    }
    assert_int_equal(w->sites[1].calls, 1); /* never hedged */
    /* A fast first answer is never hedged either (TRUE and 1 are flags). */
    w->sites[0].delay_ms = 0;
    o = s_http_predict(port, "TRUE");
    assert_string_equal(o.route, "forwarded");
    o = s_http_predict(port, "1");
    assert_string_equal(o.route, "forwarded");
    assert_int_equal(w->sites[1].calls, 1);
    kvc_proxy_route_stats(p, &st);
    assert_int_equal(st.hedged, 1);
    assert_int_equal(st.hedge_wins, 1);
    kvc_http_server_destroy(&srv);
    kvc_proxy_destroy(&p);
}

/* Hedging on, a flagged request: a first answer that is a non-retryable
 * failure (bad input) is the answer, never hedged; a retryable one before
 * hedge_ms is retried as without hedging ("retried"); with both sites
 * holding their answers past the client's Kvc-Timeout-Ms the answer is a
 * 504 at the deadline, and both late answers are dropped. */
static void test_hedge_rules(void **state)
{
    s_world_t *w = *state;
    kvc_proxy_t *p = s_proxy_ex(w, 0, 200, 2000);
    kvc_http_server_t *srv = s_front(p);
    uint16_t port = kvc_http_server_port(srv);
    w->sites[0].status = 400;
    w->sites[0].call_class = KVC_CALL_REJECT;
    s_http_out_t o = s_http_predict(port, "true");
    assert_int_equal(o.status, 400);
    assert_string_equal(o.served_by, "site-b");
    assert_int_equal(w->sites[1].calls, 0);
    w->sites[0].status = 200;
    w->sites[0].call_class = KVC_CALL_SUCCESS;
    w->sites[0].transport_fails = 1;
    o = s_http_predict(port, "true");
    assert_int_equal(o.status, 200);
    assert_string_equal(o.served_by, "site-c");
    assert_string_equal(o.route, "retried");
    kvc_proxy_route_stats_t st;
    kvc_proxy_route_stats(p, &st);
    assert_int_equal(st.hedged, 0);
    assert_int_equal(st.retried, 1);
    w->sites[0].transport_fails = 0;
    w->sites[0].hold = w->sites[1].hold = 1;
    int64_t t0 = s_now_ms();
    o = s_http_predict_h(port, "true", "Kvc-Timeout-Ms: 400");
    int64_t took = s_now_ms() - t0;
    assert_int_equal(o.status, 504);
    assert_true(took >= 400);
    assert_true(took < 1500);
    kvc_proxy_route_stats(p, &st);
    assert_int_equal(st.hedged, 1);
    assert_int_equal(st.hedge_wins, 0);
    assert_int_equal(st.failed, 1);
    pthread_mutex_lock(&w->mu);
    w->sites[0].hold = w->sites[1].hold = 0;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->mu);
    assert_true(s_wait_answered(w, 0, 1));
    assert_true(s_wait_answered(w, 1, 2));
    kvc_http_server_destroy(&srv);
    kvc_proxy_destroy(&p);
}

/* Hedging on, the first attempt local: the local backend accepts the
 * connection but never answers. The hedge to site-b answers long before
 * the local call's timeout; the local attempt, which lost, ends on its
 * own thread at its timeout, and its figures are balanced (in flight back
 * to 0). A first site that fails at once (site-b refusing) is retried as
 * before, not hedged. */
static void test_hedge_local_slow(void **state)
{
    s_world_t *w = *state;
    assert_int_equal(listen(w->fd, 16), 0); /* accepts into the backlog, never answers */
    const uint32_t hedge_ms = 50, timeout_ms = 1500;
    kvc_proxy_t *p = s_proxy_ex(w, 1, hedge_ms, timeout_ms);
    kvc_http_server_t *srv = s_front(p);
    int64_t t0 = s_now_ms();
    s_http_out_t o = s_http_predict(kvc_http_server_port(srv), "true");
    int64_t took = s_now_ms() - t0;
    assert_int_equal(o.status, 200);
    assert_string_equal(o.served_by, "site-b");
    assert_string_equal(o.route, "hedged");
    assert_true(w->sites[0].call_ms - t0 >= (int64_t)hedge_ms);
    assert_true(took < (int64_t)timeout_ms);
    kvc_proxy_route_stats_t st;
    kvc_proxy_route_stats(p, &st);
    assert_int_equal(st.hedged, 1);
    assert_int_equal(st.hedge_wins, 1);
    assert_int_equal(st.forwarded, 1);
    /* The local loser ends at its timeout: poll with a deadline. */
    kvc_proxy_model_health_t h[2];
    int64_t until = s_now_ms() + 10000;
    uint32_t in_flight = 1;
    while (in_flight && s_now_ms() < until) {
        assert_int_equal(kvc_proxy_local_health(p, h, 2), 1);
        in_flight = h[0].in_flight;
        if (in_flight) { /* the poll's interval: a timed wait on the world */
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 10 * 1000000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            pthread_mutex_lock(&w->mu);
            pthread_cond_timedwait(&w->cond, &w->mu, &ts);
            pthread_mutex_unlock(&w->mu);
        }
    }
    assert_int_equal(in_flight, 0);
    kvc_http_server_destroy(&srv);
    kvc_proxy_destroy(&p);
}

/* Destroying the proxy while a hedge's local loser still runs waits for
 * it (no use after free of the backends on its thread). */
static void test_hedge_destroy_waits(void **state)
{
    s_world_t *w = *state;
    assert_int_equal(listen(w->fd, 16), 0);
    kvc_proxy_t *p = s_proxy_ex(w, 1, 30, 600);
    kvc_http_server_t *srv = s_front(p);
    s_http_out_t o = s_http_predict(kvc_http_server_port(srv), "true");
    assert_int_equal(o.status, 200);
    assert_string_equal(o.route, "hedged");
    kvc_http_server_destroy(&srv);
    kvc_proxy_destroy(&p); /* returns once the local attempt timed out */
    assert_null(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_failover_to_nearest, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_retry_rules, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_no_site, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_forwarded_is_local_only, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_options, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_hedge_off, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_hedge_wins, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_hedge_rules, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_hedge_local_slow, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_hedge_destroy_waits, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
