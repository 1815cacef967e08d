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
#include <unistd.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>

#include "proxy.h"

typedef struct {
    char site[64];
    int ready;
    int reachable;
    int transport_fails;  /* the remote fn returns nonzero */
    int no_answer;        /* answered = 0 (timed out) */
    int status;           /* the remote proxy's status */
    int call_class;
    int calls;
} s_site_t;

typedef struct {
    int fd;
    char grpc[32];
    s_site_t sites[3];
    size_t n_sites;
    pthread_mutex_t mu;
} s_world_t;

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
} s_job_t;

static void *s_answer(void *arg)
{
    s_job_t *j = arg;
    j->done(j->done_arg);
    free(j);
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
    *j = (s_job_t){resp, done, done_arg};
    pthread_t t;
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
    close(w->fd);
    pthread_mutex_destroy(&w->mu);
    free(w);
    return 0;
}

static kvc_proxy_t *s_proxy(s_world_t *w, int with_local)
{
    static kvc_proxy_input_t in[1] = {{"x", KVC_DT_FLOAT, NULL, 0}};
    kvc_proxy_backend_t b[1] = {{"m", w->grpc, "tfserving", "", "", in, 1, NULL, NULL, 0}};
    kvc_proxy_opts_t o = {.backends = b,
                          .n_backends = with_local ? 1 : 0,
                          .timeout_ms = 2000,
                          .sites = s_sites_fn,
                          .sites_arg = w,
                          .remote = s_remote_fn,
                          .remote_arg = w,
                          .site = "site-a",
                          .region = "r-a",
                          .arch = "arm64",
                          .capacity = 4};
    kvc_err_t err = {0};
    kvc_proxy_t *p = kvc_proxy_new(&o, &err);
    if (!p)
        fprintf(stderr, "proxy: %s\n", err.msg);
    assert_non_null(p);
    return p;
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
    assert_int_not_equal(kvc_proxy_explain(p, "m", "accelerator=quantum", NULL, buf, sizeof buf, &err),
                         0);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_failover_to_nearest, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_retry_rules, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_no_site, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_forwarded_is_local_only, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_options, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
