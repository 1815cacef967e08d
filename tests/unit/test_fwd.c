/*
 * Unit tests of the forwarding transport (peer/fwd.h): the codec, the auth
 * cache, and a real server and client over loopback CurveZMQ with the ZAP
 * handler of peer/zap.h on its own thread. Nothing sleeps to wait: every
 * wait is for a condition, with a deadline.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "breaker.h"
#include "clock.h"
#include "credential.h"
#include "forward.pb-c.h"
#include "fwd.h"
#include "zap.h"

#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/eventfd.h>

/* --- fixture: one federation, a foreign one, and their members ---------- */

static kvc_ca_t ca, other_ca;
static kvc_identity_t srv_id, cli_id, victim_id, foreign_id, expired_id;
static kvc_zap_thread_t *zap;

static pthread_mutex_t revoked_mu = PTHREAD_MUTEX_INITIALIZER;
static uint8_t zap_revoked_key[32], srv_revoked_key[32];
static int zap_revoked_set, srv_revoked_set;

/* The ZAP thread's revocation list: one key tests can set. */
static int s_zap_revoked(void *arg, const uint8_t key[32])
{
    pthread_mutex_lock(&revoked_mu);
    int r = zap_revoked_set && memcmp(key, zap_revoked_key, 32) == 0;
    pthread_mutex_unlock(&revoked_mu);
    return r;
}

/* The server's revocation list (asked per request). */
static int s_srv_revoked(void *arg, const uint8_t key[32])
{
    pthread_mutex_lock(&revoked_mu);
    int r = srv_revoked_set && memcmp(key, srv_revoked_key, 32) == 0;
    pthread_mutex_unlock(&revoked_mu);
    return r;
}

static void s_issue(const kvc_ca_t *c, const char *site, const char *name, int64_t now, int days,
                    kvc_identity_t *out)
{
    kvc_err_t err = {0};
    assert_int_equal(kvc_cred_issue(c, site, name, NULL, 0, now, days, out, &err), KVC_OK);
}

/* --- the handler: echo, optionally held at a gate ------------------------ */

typedef struct {
    atomic_int calls;
    atomic_int entered;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int gate_closed; /* handlers wait while set */
    /* what the last request looked like (checked by single-request tests) */
    char member[KVC_FWD_MEMBER_MAX], method[32], path[64], ctype[64], accept[64], ihl[32],
        constraint[64];
    uint32_t hops, timeout_ms;
} handler_t;

static handler_t H = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static void s_copy(char *dst, size_t n, const char *src)
{
    snprintf(dst, n, "%s", src ? src : "(null)");
}

/* Echoes the body back with status 200, its path in a header. */
static void s_handle(void *arg, const char *member, const kvc_fwd_req_t *req, kvc_fwd_resp_t *resp)
{
    handler_t *h = arg;
    atomic_fetch_add(&h->entered, 1);
    pthread_mutex_lock(&h->mu);
    while (h->gate_closed)
        pthread_cond_wait(&h->cv, &h->mu);
    s_copy(h->member, sizeof h->member, member);
    s_copy(h->method, sizeof h->method, req->method);
    s_copy(h->path, sizeof h->path, req->path);
    s_copy(h->ctype, sizeof h->ctype, req->content_type);
    s_copy(h->accept, sizeof h->accept, req->accept);
    s_copy(h->ihl, sizeof h->ihl, req->inference_header_length);
    s_copy(h->constraint, sizeof h->constraint, req->constraint);
    h->hops = req->hops;
    h->timeout_ms = req->timeout_ms;
    pthread_mutex_unlock(&h->mu);
    resp->status = 200;
    kvc_strlcpy(resp->content_type, "application/x-echo", sizeof resp->content_type);
    kvc_strlcpy(resp->header_name, "x-path", sizeof resp->header_name);
    kvc_strlcpy(resp->header_value, req->path ? req->path : "", sizeof resp->header_value);
    if (req->body_len) {
        resp->body = kvc_malloc(req->body_len);
        assert_non_null(resp->body);
        memcpy(resp->body, req->body, req->body_len);
        resp->body_len = req->body_len;
    }
    atomic_fetch_add(&h->calls, 1);
}

static void s_gate(int closed)
{
    pthread_mutex_lock(&H.mu);
    H.gate_closed = closed;
    pthread_cond_broadcast(&H.cv);
    pthread_mutex_unlock(&H.mu);
}

/* Waits (yielding, up to ms) until *v >= want. */
static int s_wait_int(atomic_int *v, int want, uint64_t ms)
{
    uint64_t end = kvc_clock_mono_ms() + ms;
    while (atomic_load(v) < want) {
        if (kvc_clock_mono_ms() > end)
            return 0;
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
    }
    return 1;
}

/* --- servers and clients ----------------------------------------------- */

static kvc_fwd_server_t *s_server(int workers, size_t max_queued)
{
    kvc_fwd_server_opts_t o;
    memset(&o, 0, sizeof o);
    o.bind = "tcp://127.0.0.1:0";
    memcpy(o.public_key, srv_id.cred.curve_public, 32);
    memcpy(o.secret_key, srv_id.curve_secret, 32);
    memcpy(o.trust, ca.public_key, 32);
    o.revoked = s_srv_revoked;
    o.handle = s_handle;
    o.handle_arg = &H;
    o.workers = workers;
    o.max_queued = max_queued;
    kvc_err_t err = {0};
    kvc_fwd_server_t *s = kvc_fwd_server_new(&o, &err);
    if (!s)
        fprintf(stderr, "server: %s\n", err.msg);
    assert_non_null(s);
    assert_true(strncmp(kvc_fwd_server_endpoint(s), "tcp://127.0.0.1:", 16) == 0);
    return s;
}

/* A client with id's keys presenting blob (NULL = id's own credential). */
static kvc_fwd_client_t *s_client_blob(const kvc_identity_t *id, const uint8_t *blob, size_t len)
{
    kvc_fwd_client_opts_t o;
    memset(&o, 0, sizeof o);
    memcpy(o.public_key, id->cred.curve_public, 32);
    memcpy(o.secret_key, id->curve_secret, 32);
    o.credential = blob ? blob : id->cred.blob;
    o.credential_len = blob ? len : id->cred.blob_len;
    kvc_err_t err = {0};
    kvc_fwd_client_t *c = kvc_fwd_client_new(&o, &err);
    assert_non_null(c);
    return c;
}

static kvc_fwd_client_t *s_client(const kvc_identity_t *id)
{
    return s_client_blob(id, NULL, 0);
}

static const kvc_fwd_req_t s_small = {.method = "POST",
                                      .path = "/v2/models/m/infer",
                                      .content_type = "application/json",
                                      .body = (const uint8_t *)"{}",
                                      .body_len = 2};

/* One blocking call with the small request. */
static void s_call(kvc_fwd_client_t *c, kvc_fwd_server_t *s, uint32_t timeout, kvc_fwd_resp_t *out)
{
    assert_int_equal(kvc_fwd_client_call(c, kvc_fwd_server_endpoint(s), srv_id.cred.curve_public,
                                         &s_small, timeout, out),
                     KVC_OK);
}

static int setup(void **state)
{
    atomic_store(&H.calls, 0);
    atomic_store(&H.entered, 0);
    s_gate(0);
    pthread_mutex_lock(&revoked_mu);
    zap_revoked_set = srv_revoked_set = 0;
    pthread_mutex_unlock(&revoked_mu);
    return 0;
}

/* --- pure parts ---------------------------------------------------------- */

static void test_codec(void **state)
{
    kvc_fwd_req_t r = {.method = "POST",
                       .path = "/v1/models/m:predict",
                       .accept = "*/*",
                       .inference_header_length = "12",
                       .constraint = "region=eu",
                       .body = (const uint8_t *)"abc",
                       .body_len = 3,
                       .timeout_ms = 500,
                       .hops = 2};
    uint8_t *buf;
    size_t len;
    assert_int_equal(kvc_fwd_request_encode((const uint8_t *)"cred", 4, 77, &r, 1024, &buf, &len),
                     KVC_OK);
    kvc_fwd_decoded_t d;
    int known;
    assert_int_equal(kvc_fwd_request_decode(buf, len, 1024, &d, &known), KVC_OK);
    assert_int_equal(d.id, 77);
    assert_string_equal(d.req.method, "POST");
    assert_string_equal(d.req.path, "/v1/models/m:predict");
    assert_null(d.req.content_type); /* absent stays absent */
    assert_string_equal(d.req.accept, "*/*");
    assert_string_equal(d.req.inference_header_length, "12");
    assert_string_equal(d.req.constraint, "region=eu");
    assert_int_equal(d.req.body_len, 3);
    assert_memory_equal(d.req.body, "abc", 3);
    assert_int_equal(d.req.timeout_ms, 500);
    assert_int_equal(d.req.hops, 2);
    assert_int_equal(d.credential_len, 4);
    kvc_fwd_decoded_free(&d);
    /* a body over the receiver's bound: refused with the id known */
    assert_int_equal(kvc_fwd_request_decode(buf, len, 2, &d, &known), KVC_EINVAL);
    assert_int_equal(known, 1);
    assert_int_equal(d.id, 77);
    kvc_free(buf);
    /* header injection is refused at both ends */
    kvc_fwd_req_t bad = r;
    bad.path = "/x\r\nHost: evil";
    assert_int_equal(kvc_fwd_request_encode(NULL, 0, 1, &bad, 1024, &buf, &len), KVC_EINVAL);
    assert_int_equal(kvc_fwd_request_decode((const uint8_t *)"\xff\xff\xff", 3, 1024, &d, &known),
                     KVC_EPARSE);
    assert_int_equal(known, 0);

    kvc_fwd_resp_t resp = {.code = KVC_FWD_OK,
                           .status = 201,
                           .content_type = "text/plain",
                           .header_name = "a",
                           .header_value = "b",
                           .error = "",
                           .call_class = KVC_CALL_RETRY,
                           .served_by = "site-b"};
    resp.body = (uint8_t *)"xyz";
    resp.body_len = 3;
    assert_int_equal(kvc_fwd_reply_encode(9, &resp, 16, &buf, &len), KVC_OK);
    kvc_fwd_resp_t out;
    uint64_t id;
    assert_int_equal(kvc_fwd_reply_decode(buf, len, 16, &id, &out), KVC_OK);
    assert_int_equal(id, 9);
    assert_int_equal(out.status, 201);
    assert_string_equal(out.content_type, "text/plain");
    assert_string_equal(out.header_value, "b");
    assert_memory_equal(out.body, "xyz", 3);
    assert_int_equal(out.call_class, KVC_CALL_RETRY);
    assert_string_equal(out.served_by, "site-b");
    kvc_fwd_resp_clear(&out);
    assert_int_equal(kvc_fwd_reply_decode(buf, len, 2, &id, &out), KVC_EINVAL);
    assert_null(out.body);
    kvc_free(buf);
    /* a call class outside kvc_call_class_t neither leaves nor enters */
    resp.call_class = KVC_CALL_ABANDON + 1;
    assert_int_equal(kvc_fwd_reply_encode(9, &resp, 16, &buf, &len), KVC_EINVAL);
    {
        Kvc__Fwd__ForwardReply m = KVC__FWD__FORWARD_REPLY__INIT;
        m.id = 3;
        m.call_class = KVC_CALL_ABANDON + 1;
        uint8_t raw[64];
        size_t rl = kvc__fwd__forward_reply__pack(&m, raw);
        assert_int_equal(kvc_fwd_reply_decode(raw, rl, 16, &id, &out), KVC_EINVAL);
        assert_null(out.body);
    }
    resp.call_class = KVC_CALL_SUCCESS;
    resp.code = KVC_FWD_UNREACHABLE; /* the client's own code never travels */
    assert_int_equal(kvc_fwd_reply_encode(9, &resp, 16, &buf, &len), KVC_EINVAL);
}

static void test_auth_cache(void **state)
{
    kvc_fwd_auth_t *a = kvc_fwd_auth_new(ca.public_key, 8);
    assert_non_null(a);
    char member[KVC_FWD_MEMBER_MAX];
    kvc_reject_t why;
    int64_t now = (int64_t)time(NULL);
    for (int i = 0; i < 10; i++)
        assert_int_equal(kvc_fwd_auth_check(a, cli_id.cred.curve_public, cli_id.cred.blob,
                                            cli_id.cred.blob_len, now, NULL, NULL, member, &why),
                         KVC_OK);
    assert_string_equal(member, "site-a/gw-a");
    assert_int_equal(kvc_fwd_auth_verifies(a), 1);
    /* the same credential from another key: a different entry, refused */
    assert_int_equal(kvc_fwd_auth_check(a, srv_id.cred.curve_public, cli_id.cred.blob,
                                        cli_id.cred.blob_len, now, NULL, NULL, member, &why),
                     KVC_EPERM);
    assert_int_equal(why, KVC_REJECT_KEY_MISMATCH);
    assert_string_equal(member, "");
    /* a cached credential is still checked for expiry */
    assert_int_equal(kvc_fwd_auth_check(a, cli_id.cred.curve_public, cli_id.cred.blob,
                                        cli_id.cred.blob_len, now + 400 * 86400, NULL, NULL, member,
                                        &why),
                     KVC_EPERM);
    assert_int_equal(why, KVC_REJECT_EXPIRED);
    assert_int_equal(kvc_fwd_auth_verifies(a), 2);
    kvc_fwd_auth_destroy(&a);
    assert_null(a);
}

/* --- over the wire ----------------------------------------------------- */

/* (1) a request arrives exactly; the answer comes back exactly. */
static void test_round_trip(void **state)
{
    kvc_fwd_server_t *s = s_server(2, 0);
    kvc_fwd_client_t *c = s_client(&cli_id);
    size_t sizes[] = {1, 64 * 1024, 4 * 1024 * 1024};
    for (size_t k = 0; k < 3; k++) {
        uint8_t *body = malloc(sizes[k]);
        for (size_t i = 0; i < sizes[k]; i++)
            body[i] = (uint8_t)(i * 31 + k);
        kvc_fwd_req_t r = {.method = "POST",
                           .path = "/v2/models/resnet/infer",
                           .content_type = "application/octet-stream",
                           .accept = "application/json",
                           .inference_header_length = "128",
                           .constraint = "gpu",
                           .body = body,
                           .body_len = sizes[k],
                           .hops = 1};
        kvc_fwd_resp_t out;
        assert_int_equal(kvc_fwd_client_call(c, kvc_fwd_server_endpoint(s),
                                             srv_id.cred.curve_public, &r, 10000, &out),
                         KVC_OK);
        assert_int_equal(out.code, KVC_FWD_OK);
        assert_int_equal(out.status, 200);
        assert_string_equal(out.content_type, "application/x-echo");
        assert_string_equal(out.header_name, "x-path");
        assert_string_equal(out.header_value, "/v2/models/resnet/infer");
        assert_int_equal(out.body_len, sizes[k]);
        assert_memory_equal(out.body, body, sizes[k]);
        assert_string_equal(H.member, "site-a/gw-a");
        assert_string_equal(H.method, "POST");
        assert_string_equal(H.path, "/v2/models/resnet/infer");
        assert_string_equal(H.ctype, "application/octet-stream");
        assert_string_equal(H.accept, "application/json");
        assert_string_equal(H.ihl, "128");
        assert_string_equal(H.constraint, "gpu");
        assert_int_equal(H.hops, 1);
        assert_int_equal(H.timeout_ms, 10000);
        kvc_fwd_resp_clear(&out);
        free(body);
    }
    assert_int_equal(atomic_load(&H.calls), 3);
    kvc_fwd_client_destroy(&c);
    kvc_fwd_server_destroy(&s);
    assert_null(s);
    assert_null(c);
}

/* Expects one call from c to be refused UNAUTHENTICATED for reason why. */
static void s_expect_refused(kvc_fwd_client_t *c, kvc_reject_t why)
{
    kvc_fwd_server_t *s = s_server(1, 0);
    kvc_fwd_resp_t out;
    s_call(c, s, 5000, &out);
    assert_int_equal(out.code, KVC_FWD_UNAUTHENTICATED);
    assert_string_equal(out.error, kvc_reject_name(why));
    assert_null(out.body);
    kvc_fwd_resp_clear(&out);
    kvc_fwd_server_stats_t st;
    kvc_fwd_server_stats(s, &st);
    assert_int_equal(st.refused[why], 1);
    assert_int_equal(st.unauthenticated, 1);
    assert_int_equal(st.answered, 0);
    assert_int_equal(atomic_load(&H.calls), 0);
    assert_int_equal(atomic_load(&H.entered), 0);
    kvc_fwd_server_destroy(&s);
}

/* (2) a credential from another federation. */
static void test_foreign(void **state)
{
    kvc_fwd_client_t *c = s_client(&foreign_id);
    s_expect_refused(c, KVC_REJECT_FOREIGN);
    kvc_fwd_client_destroy(&c);
}

/* (3) another member's valid credential, our own key. */
static void test_key_mismatch(void **state)
{
    kvc_fwd_client_t *c = s_client_blob(&cli_id, victim_id.cred.blob, victim_id.cred.blob_len);
    s_expect_refused(c, KVC_REJECT_KEY_MISMATCH);
    kvc_fwd_client_destroy(&c);
}

/* (4) an expired credential. */
static void test_expired(void **state)
{
    kvc_fwd_client_t *c = s_client(&expired_id);
    s_expect_refused(c, KVC_REJECT_EXPIRED);
    kvc_fwd_client_destroy(&c);
}

/* (5) no credential at all. */
static void test_empty_credential(void **state)
{
    kvc_fwd_client_t *c = s_client_blob(&cli_id, (const uint8_t *)"", 0);
    s_expect_refused(c, KVC_REJECT_NO_CREDENTIAL);
    kvc_fwd_client_destroy(&c);
}

/* (6) a revoked key: ZAP refuses the handshake; the server refuses it too. */
static void test_revoked(void **state)
{
    kvc_fwd_server_t *s = s_server(1, 0);
    pthread_mutex_lock(&revoked_mu);
    memcpy(zap_revoked_key, cli_id.cred.curve_public, 32);
    zap_revoked_set = 1;
    pthread_mutex_unlock(&revoked_mu);
    uint64_t refused0 = kvc_zap_thread_refused(zap);
    kvc_fwd_client_t *c = s_client(&cli_id);
    kvc_fwd_resp_t out;
    s_call(c, s, 300, &out);
    assert_true(out.code == KVC_FWD_TIMEOUT || out.code == KVC_FWD_UNREACHABLE);
    kvc_fwd_resp_clear(&out);
    assert_true(kvc_zap_thread_refused(zap) > refused0);
    assert_int_equal(atomic_load(&H.calls), 0);
    kvc_fwd_server_stats_t st;
    kvc_fwd_server_stats(s, &st);
    assert_int_equal(st.requests, 0);
    kvc_fwd_client_destroy(&c);
    pthread_mutex_lock(&revoked_mu);
    zap_revoked_set = 0;
    memcpy(srv_revoked_key, cli_id.cred.curve_public, 32);
    srv_revoked_set = 1; /* revoked after the connection was admitted */
    pthread_mutex_unlock(&revoked_mu);
    kvc_fwd_server_destroy(&s);
    c = s_client(&cli_id);
    s_expect_refused(c, KVC_REJECT_REVOKED);
    kvc_fwd_client_destroy(&c);
}

/* (7) a handler slower than the timeout: TIMEOUT in time, the late reply ignored. */
static void test_slow_handler(void **state)
{
    kvc_fwd_server_t *s = s_server(1, 0);
    kvc_fwd_client_t *c = s_client(&cli_id);
    s_gate(1);
    uint64_t t0 = kvc_clock_mono_ms();
    kvc_fwd_resp_t out;
    s_call(c, s, 200, &out);
    uint64_t took = kvc_clock_mono_ms() - t0;
    assert_int_equal(out.code, KVC_FWD_TIMEOUT);
    assert_non_null(strstr(out.error, "in 200 ms"));
    assert_true(took >= 200 && took < 2000);
    kvc_fwd_resp_clear(&out);
    s_gate(0);
    /* the late reply arrives and is counted, not delivered */
    uint64_t end = kvc_clock_mono_ms() + 5000;
    kvc_fwd_client_stats_t cs;
    do {
        kvc_fwd_client_stats(c, &cs);
        if (cs.late == 1)
            break;
        sched_yield();
    } while (kvc_clock_mono_ms() < end);
    assert_int_equal(cs.late, 1);
    assert_int_equal(cs.timeouts, 1);
    /* and the link still works */
    s_call(c, s, 5000, &out);
    assert_int_equal(out.code, KVC_FWD_OK);
    kvc_fwd_resp_clear(&out);
    kvc_fwd_client_destroy(&c);
    kvc_fwd_server_destroy(&s);
}

/* (8) nobody listening. */
static void test_no_server(void **state)
{
    char dir[] = "/tmp/kvc-fwd-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char ep[128];
    snprintf(ep, sizeof ep, "ipc://%s/nobody", dir);
    kvc_fwd_client_t *c = s_client(&cli_id);
    kvc_fwd_resp_t out;
    uint64_t t0 = kvc_clock_mono_ms();
    assert_int_equal(kvc_fwd_client_call(c, ep, srv_id.cred.curve_public, &s_small, 150, &out),
                     KVC_OK);
    assert_true(out.code == KVC_FWD_TIMEOUT || out.code == KVC_FWD_UNREACHABLE);
    assert_true(kvc_clock_mono_ms() - t0 < 2000);
    kvc_fwd_resp_clear(&out);
    /* a bad endpoint is refused at submit, and done is never called */
    assert_int_equal(
        kvc_fwd_client_call(c, "http://x", srv_id.cred.curve_public, &s_small, 150, &out),
        KVC_EINVAL);
    kvc_fwd_client_destroy(&c);
    rmdir(dir);
}

/* (9) many threads, one client. */
typedef struct {
    kvc_fwd_client_t *c;
    const char *ep;
    int t;
    int ok;
    uint64_t *lat_us;
} worker_t;

#define N_THREADS 8
#define N_CALLS 200

static void *s_caller(void *arg)
{
    worker_t *w = arg;
    for (int i = 0; i < N_CALLS; i++) {
        char body[64];
        int n = snprintf(body, sizeof body, "thread %d call %d", w->t, i);
        kvc_fwd_req_t r = {
            .method = "POST", .path = "/p", .body = (uint8_t *)body, .body_len = (size_t)n};
        kvc_fwd_resp_t out;
        uint64_t t0 = kvc_clock_mono_us();
        int rc = kvc_fwd_client_call(w->c, w->ep, srv_id.cred.curve_public, &r, 10000, &out);
        w->lat_us[i] = kvc_clock_mono_us() - t0;
        if (rc == 0 && out.code == KVC_FWD_OK && out.body_len == (size_t)n &&
            memcmp(out.body, body, (size_t)n) == 0)
            w->ok++;
        kvc_fwd_resp_clear(&out);
    }
    return NULL;
}

static int s_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void test_concurrent(void **state)
{
    kvc_fwd_server_t *s = s_server(4, 0);
    kvc_fwd_client_t *c = s_client(&cli_id);
    kvc_fwd_resp_t out;
    s_call(c, s, 5000, &out); /* connect and handshake once, outside the figures */
    kvc_fwd_resp_clear(&out);
    static uint64_t lat[N_THREADS * N_CALLS];
    pthread_t th[N_THREADS];
    worker_t w[N_THREADS];
    for (int t = 0; t < N_THREADS; t++) {
        w[t] = (worker_t){
            .c = c, .ep = kvc_fwd_server_endpoint(s), .t = t, .lat_us = lat + t * N_CALLS};
        assert_int_equal(pthread_create(&th[t], NULL, s_caller, &w[t]), 0);
    }
    for (int t = 0; t < N_THREADS; t++) {
        pthread_join(th[t], NULL);
        assert_int_equal(w[t].ok, N_CALLS);
    }
    qsort(lat, N_THREADS * N_CALLS, sizeof lat[0], s_cmp_u64);
    /* A single caller's round trip, for the figure without queueing. */
    static uint64_t one[200];
    for (int i = 0; i < 200; i++) {
        uint64_t t0 = kvc_clock_mono_us();
        s_call(c, s, 5000, &out);
        one[i] = kvc_clock_mono_us() - t0;
        assert_int_equal(out.code, KVC_FWD_OK);
        kvc_fwd_resp_clear(&out);
    }
    qsort(one, 200, sizeof one[0], s_cmp_u64);
    printf("# fwd round trip: 8x200 concurrent p50 %llu us p99 %llu us; one caller p50 %llu us "
           "p99 %llu us\n",
           (unsigned long long)lat[N_THREADS * N_CALLS / 2],
           (unsigned long long)lat[N_THREADS * N_CALLS * 99 / 100], (unsigned long long)one[100],
           (unsigned long long)one[198]);
    kvc_fwd_server_stats_t st;
    kvc_fwd_server_stats(s, &st);
    assert_int_equal(st.answered, 1 + N_THREADS * N_CALLS + 200);
    assert_int_equal(st.verifies, 1);
    kvc_fwd_client_destroy(&c);
    kvc_fwd_server_destroy(&s);
}

/* Records one async outcome. */
typedef struct {
    atomic_int n;
    int code;
} outcome_t;

static void s_done(void *arg, kvc_fwd_resp_t *resp)
{
    outcome_t *o = arg;
    o->code = resp->code;
    atomic_fetch_add(&o->n, 1);
}

/* (10) a full queue answers OVERLOADED at once. */
static void test_overloaded(void **state)
{
    kvc_fwd_server_t *s = s_server(1, 2);
    kvc_fwd_client_t *c = s_client(&cli_id);
    const char *ep = kvc_fwd_server_endpoint(s);
    s_gate(1);
    outcome_t o[4];
    memset(o, 0, sizeof o);
    assert_int_equal(
        kvc_fwd_client_submit(c, ep, srv_id.cred.curve_public, &s_small, 10000, s_done, &o[0]),
        KVC_OK);
    assert_true(s_wait_int(&H.entered, 1, 5000)); /* the worker holds it */
    for (int i = 1; i < 4; i++)
        assert_int_equal(
            kvc_fwd_client_submit(c, ep, srv_id.cred.curve_public, &s_small, 10000, s_done, &o[i]),
            KVC_OK);
    assert_true(s_wait_int(&o[3].n, 1, 5000));
    assert_int_equal(o[3].code, KVC_FWD_OVERLOADED);
    assert_int_equal(atomic_load(&o[0].n) + atomic_load(&o[1].n) + atomic_load(&o[2].n), 0);
    s_gate(0);
    for (int i = 0; i < 3; i++) {
        assert_true(s_wait_int(&o[i].n, 1, 5000));
        assert_int_equal(o[i].code, KVC_FWD_OK);
    }
    kvc_fwd_server_stats_t st;
    kvc_fwd_server_stats(s, &st);
    assert_int_equal(st.overloaded, 1);
    assert_int_equal(st.answered, 3);
    kvc_fwd_client_destroy(&c);
    kvc_fwd_server_destroy(&s);
    for (int i = 0; i < 4; i++)
        assert_int_equal(atomic_load(&o[i].n), 1);
}

/* (11) destroying a client completes what is pending, once each. */
static void test_destroy_pending(void **state)
{
    kvc_fwd_server_t *s = s_server(1, 0);
    kvc_fwd_client_t *c = s_client(&cli_id);
    s_gate(1);
    outcome_t o[5];
    memset(o, 0, sizeof o);
    for (int i = 0; i < 5; i++)
        assert_int_equal(kvc_fwd_client_submit(c, kvc_fwd_server_endpoint(s),
                                               srv_id.cred.curve_public, &s_small, 60000, s_done,
                                               &o[i]),
                         KVC_OK);
    assert_true(s_wait_int(&H.entered, 1, 5000));
    kvc_fwd_client_destroy(&c);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(atomic_load(&o[i].n), 1);
        assert_int_equal(o[i].code, KVC_FWD_SHUTDOWN);
    }
    s_gate(0);
    kvc_fwd_server_destroy(&s); /* the running handler finishes; its reply has nowhere to go */
}

/* (12) one credential, many requests: one verify. */
static void test_cache_one_verify(void **state)
{
    kvc_fwd_server_t *s = s_server(2, 0);
    kvc_fwd_client_t *c = s_client(&cli_id);
    for (int i = 0; i < 50; i++) {
        kvc_fwd_resp_t out;
        s_call(c, s, 5000, &out);
        assert_int_equal(out.code, KVC_FWD_OK);
        kvc_fwd_resp_clear(&out);
    }
    kvc_fwd_server_stats_t st;
    kvc_fwd_server_stats(s, &st);
    assert_int_equal(st.verifies, 1);
    assert_int_equal(st.answered, 50);
    assert_int_equal(st.requests, 50);
    kvc_fwd_client_destroy(&c);
    kvc_fwd_server_destroy(&s);
}

static void *s_open_gate(void *arg)
{
    s_gate(0);
    return arg;
}

/* A server shutting down answers what it queued with SHUTDOWN. */
static void test_server_shutdown(void **state)
{
    kvc_fwd_server_t *s = s_server(1, 0);
    kvc_fwd_client_t *c = s_client(&cli_id);
    s_gate(1);
    outcome_t o[3];
    memset(o, 0, sizeof o);
    for (int i = 0; i < 3; i++)
        assert_int_equal(kvc_fwd_client_submit(c, kvc_fwd_server_endpoint(s),
                                               srv_id.cred.curve_public, &s_small, 10000, s_done,
                                               &o[i]),
                         KVC_OK);
    assert_true(s_wait_int(&H.entered, 1, 5000));
    /* let the other two reach the queue: the server counts them */
    uint64_t end = kvc_clock_mono_ms() + 5000;
    kvc_fwd_server_stats_t st;
    do {
        kvc_fwd_server_stats(s, &st);
        sched_yield();
    } while (st.requests < 3 && kvc_clock_mono_ms() < end);
    assert_int_equal(st.requests, 3);
    /* destroy waits for the held handler: release it from another thread */
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, s_open_gate, NULL), 0);
    kvc_fwd_server_destroy(&s);
    pthread_join(t, NULL);
    for (int i = 0; i < 3; i++)
        assert_true(s_wait_int(&o[i].n, 1, 5000));
    assert_int_equal(o[0].code, KVC_FWD_OK);
    for (int i = 1; i < 3; i++) /* the release may beat the stop */
        assert_true(o[i].code == KVC_FWD_SHUTDOWN || o[i].code == KVC_FWD_OK);
    kvc_fwd_client_destroy(&c);
}

/* --- driven mode: the test's thread owns the sockets --------------------- */

/* What dispatch does with a request. */
enum { D_TAKE, D_HOLD, D_DECLINE };

#define D_HELD_MAX 16

/* The dispatcher's record: only the driving thread writes it while a driver
 * runs; the test reads it after joining the driver (or through the atomics). */
typedef struct {
    kvc_fwd_server_t *srv;
    atomic_int mode;
    atomic_int calls;
    atomic_int other_thread; /* calls not on the driver's thread */
    pthread_t driver;
    int have_driver;
    char member[KVC_FWD_MEMBER_MAX], path[64];
    kvc_fwd_job_t *held[D_HELD_MAX]; /* D_HOLD: answered by the driver after its pump */
    const kvc_fwd_req_t *held_req[D_HELD_MAX];
    int n_held;
} dispatch_t;

static dispatch_t D;

/* The answer a dispatcher gives: 201, "dispatched" and the request's body
 * read at answer time (so a request freed early shows under ASan). */
static void s_dispatch_answer(kvc_fwd_job_t *job, const kvc_fwd_req_t *req)
{
    kvc_fwd_resp_t r;
    memset(&r, 0, sizeof r);
    r.status = 201;
    kvc_strlcpy(r.content_type, "application/x-dispatched", sizeof r.content_type);
    kvc_strlcpy(r.header_name, "x-by", sizeof r.header_name);
    kvc_strlcpy(r.header_value, "dispatch", sizeof r.header_value);
    r.body = kvc_malloc(req->body_len + 1); /* no assert off the test's thread */
    if (r.body) {
        memcpy(r.body, req->body, req->body_len);
        r.body_len = req->body_len;
    }
    kvc_fwd_server_answer(D.srv, job, &r);
}

static int s_dispatch(void *arg, kvc_fwd_job_t *job, const char *member, const kvc_fwd_req_t *req)
{
    dispatch_t *d = &D;
    if (arg != &H) /* it gets handle_arg */
        atomic_fetch_add(&d->other_thread, 1000);
    if (!d->have_driver || !pthread_equal(pthread_self(), d->driver))
        atomic_fetch_add(&d->other_thread, 1);
    s_copy(d->member, sizeof d->member, member);
    s_copy(d->path, sizeof d->path, req->path);
    atomic_fetch_add(&d->calls, 1);
    int mode = atomic_load(&d->mode);
    if (mode == D_DECLINE)
        return 0;
    if (mode == D_HOLD && d->n_held < D_HELD_MAX) {
        d->held[d->n_held] = job;
        d->held_req[d->n_held++] = req;
        return 1;
    }
    s_dispatch_answer(job, req);
    return 1;
}

/* The driving loop: answer what dispatch holds, pump, then poll the two
 * descriptors (and the stop eventfd) with no timeout: a request is served
 * only if the descriptors wake it. */
typedef struct {
    kvc_fwd_server_t *srv;
    int stop_fd;
    pthread_t thread;
    atomic_int pumps;
} driver_t;

static void *s_drive(void *arg)
{
    driver_t *dr = arg;
    D.driver = pthread_self(); /* dispatch checks it runs here */
    D.have_driver = 1;
    int fds[2];
    kvc_fwd_server_fds(dr->srv, fds);
    for (;;) {
        for (int i = 0; i < D.n_held; i++)
            s_dispatch_answer(D.held[i], D.held_req[i]);
        D.n_held = 0;
        int more = kvc_fwd_server_pump(dr->srv);
        atomic_fetch_add(&dr->pumps, 1);
        if (D.n_held)
            continue; /* answer them now, then pump again (as the HTTP loop does) */
        struct pollfd p[3] = {{.fd = fds[0], .events = POLLIN},
                              {.fd = fds[1], .events = POLLIN},
                              {.fd = dr->stop_fd, .events = POLLIN}};
        poll(p, 3, more ? 0 : -1);
        if (p[2].revents)
            break;
    }
    return NULL;
}

static kvc_fwd_server_t *s_driven_server(int driven, int workers, int mode)
{
    kvc_fwd_server_opts_t o;
    memset(&o, 0, sizeof o);
    o.bind = "tcp://127.0.0.1:0";
    memcpy(o.public_key, srv_id.cred.curve_public, 32);
    memcpy(o.secret_key, srv_id.curve_secret, 32);
    memcpy(o.trust, ca.public_key, 32);
    o.revoked = s_srv_revoked;
    o.handle = s_handle;
    o.handle_arg = &H;
    o.workers = workers;
    o.driven = driven;
    o.dispatch = s_dispatch;
    kvc_err_t err = {0};
    kvc_fwd_server_t *s = kvc_fwd_server_new(&o, &err);
    if (!s)
        fprintf(stderr, "server: %s\n", err.msg);
    assert_non_null(s);
    memset(&D, 0, sizeof D);
    D.srv = s;
    atomic_store(&D.mode, mode);
    return s;
}

static void s_driver_start(driver_t *dr, kvc_fwd_server_t *s)
{
    memset(dr, 0, sizeof *dr);
    dr->srv = s;
    dr->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    assert_true(dr->stop_fd >= 0);
    assert_int_equal(pthread_create(&dr->thread, NULL, s_drive, dr), 0);
}

static void s_driver_stop(driver_t *dr)
{
    uint64_t one = 1;
    assert_int_equal(write(dr->stop_fd, &one, sizeof one), (ssize_t)sizeof one);
    pthread_join(dr->thread, NULL);
    close(dr->stop_fd);
}

/* One call with body "n=<i>", checked to be answered by dispatch. */
static void s_call_dispatched(kvc_fwd_client_t *c, kvc_fwd_server_t *s, int i)
{
    char body[32];
    int n = snprintf(body, sizeof body, "n=%d", i);
    kvc_fwd_req_t r = s_small;
    r.body = (const uint8_t *)body;
    r.body_len = (size_t)n;
    kvc_fwd_resp_t out;
    assert_int_equal(kvc_fwd_client_call(c, kvc_fwd_server_endpoint(s), srv_id.cred.curve_public,
                                         &r, 5000, &out),
                     KVC_OK);
    assert_int_equal(out.code, KVC_FWD_OK);
    assert_int_equal(out.status, 201);
    assert_string_equal(out.content_type, "application/x-dispatched");
    assert_string_equal(out.header_value, "dispatch");
    assert_int_equal(out.body_len, (size_t)n);
    assert_memory_equal(out.body, body, (size_t)n);
    kvc_fwd_resp_clear(&out);
}

/* (13) driven: until the driver pumps nothing serves the socket; then
 * dispatch takes each request on the driving thread and answers it, in the
 * call (TAKE) or later from the driver's loop (HOLD); the workers never run. */
static void test_driven_dispatch_answers(void **state)
{
    kvc_fwd_server_t *s = s_driven_server(1, 2, D_TAKE);
    kvc_fwd_client_t *c = s_client(&cli_id);
    /* no driver yet: no server thread reads the ROUTER */
    outcome_t early;
    memset(&early, 0, sizeof early);
    assert_int_equal(kvc_fwd_client_submit(c, kvc_fwd_server_endpoint(s), srv_id.cred.curve_public,
                                           &s_small, 200, s_done, &early),
                     KVC_OK);
    assert_true(s_wait_int(&early.n, 1, 5000));
    assert_int_equal(early.code, KVC_FWD_TIMEOUT);
    kvc_fwd_server_stats_t st;
    kvc_fwd_server_stats(s, &st);
    assert_int_equal(st.requests, 0);
    assert_int_equal(atomic_load(&D.calls), 0);

    driver_t dr;
    s_driver_start(&dr, s);
    /* the waiting request is read by the first pump (its answer is late) */
    assert_true(s_wait_int(&D.calls, 1, 5000));
    for (int i = 0; i < 20; i++)
        s_call_dispatched(c, s, i);
    atomic_store(&D.mode, D_HOLD);
    for (int i = 20; i < 40; i++)
        s_call_dispatched(c, s, i);
    s_driver_stop(&dr);
    assert_int_equal(atomic_load(&D.calls), 41);
    assert_int_equal(atomic_load(&D.other_thread), 0);
    assert_true(pthread_equal(D.driver, dr.thread));
    assert_string_equal(D.member, "site-a/gw-a");
    assert_string_equal(D.path, "/v2/models/m/infer");
    assert_int_equal(D.n_held, 0);
    assert_int_equal(atomic_load(&H.calls), 0);
    assert_int_equal(atomic_load(&H.entered), 0);
    assert_true(atomic_load(&dr.pumps) >= 1);
    kvc_fwd_server_stats(s, &st);
    assert_int_equal(st.requests, 41);
    assert_int_equal(st.answered, 41);
    assert_int_equal(st.send_failed, 0);
    kvc_fwd_client_stats_t cs;
    uint64_t end = kvc_clock_mono_ms() + 5000;
    do {
        kvc_fwd_client_stats(c, &cs);
        if (cs.late == 1)
            break;
        sched_yield();
    } while (kvc_clock_mono_ms() < end);
    assert_int_equal(cs.late, 1);
    kvc_fwd_client_destroy(&c);
    kvc_fwd_server_destroy(&s);
}

/* (14) driven: a request dispatch declines goes to the workers, and the
 * driver's pump sends their reply. */
static void test_driven_decline_to_workers(void **state)
{
    kvc_fwd_server_t *s = s_driven_server(1, 2, D_DECLINE);
    driver_t dr;
    s_driver_start(&dr, s);
    kvc_fwd_client_t *c = s_client(&cli_id);
    for (int i = 0; i < 20; i++) {
        kvc_fwd_resp_t out;
        s_call(c, s, 5000, &out);
        assert_int_equal(out.code, KVC_FWD_OK);
        assert_int_equal(out.status, 200);
        assert_string_equal(out.content_type, "application/x-echo");
        assert_string_equal(out.header_value, "/v2/models/m/infer");
        assert_int_equal(out.body_len, 2);
        assert_memory_equal(out.body, "{}", 2);
        kvc_fwd_resp_clear(&out);
    }
    s_driver_stop(&dr);
    assert_int_equal(atomic_load(&D.calls), 20);
    assert_int_equal(atomic_load(&D.other_thread), 0);
    assert_int_equal(atomic_load(&H.calls), 20);
    assert_string_equal(H.member, "site-a/gw-a");
    kvc_fwd_server_stats_t st;
    kvc_fwd_server_stats(s, &st);
    assert_int_equal(st.answered, 20);
    kvc_fwd_client_destroy(&c);
    kvc_fwd_server_destroy(&s);
}

/* (15) driven: a request that fails authentication is refused by the pump
 * and never offered to dispatch. */
static void test_driven_unauthenticated(void **state)
{
    kvc_fwd_server_t *s = s_driven_server(1, 1, D_TAKE);
    driver_t dr;
    s_driver_start(&dr, s);
    kvc_fwd_client_t *cs[3] = {
        s_client(&foreign_id), s_client(&expired_id),
        s_client_blob(&cli_id, victim_id.cred.blob, victim_id.cred.blob_len)};
    kvc_reject_t why[3] = {KVC_REJECT_FOREIGN, KVC_REJECT_EXPIRED, KVC_REJECT_KEY_MISMATCH};
    for (int k = 0; k < 3; k++) {
        kvc_fwd_resp_t out;
        s_call(cs[k], s, 5000, &out);
        assert_int_equal(out.code, KVC_FWD_UNAUTHENTICATED);
        assert_string_equal(out.error, kvc_reject_name(why[k]));
        assert_null(out.body);
        kvc_fwd_resp_clear(&out);
        kvc_fwd_client_destroy(&cs[k]);
    }
    /* and an authenticated one right after is dispatched */
    kvc_fwd_client_t *c = s_client(&cli_id);
    s_call_dispatched(c, s, 1);
    s_driver_stop(&dr);
    assert_int_equal(atomic_load(&D.calls), 1);
    assert_string_equal(D.member, "site-a/gw-a");
    assert_int_equal(atomic_load(&H.entered), 0);
    kvc_fwd_server_stats_t st;
    kvc_fwd_server_stats(s, &st);
    assert_int_equal(st.unauthenticated, 3);
    assert_int_equal(st.answered, 1);
    kvc_fwd_client_destroy(&c);
    kvc_fwd_server_destroy(&s);
}

/* (16) driven: destroy after the driver stopped sends the replies the
 * workers pushed since (the one the handler finished, SHUTDOWN for the rest). */
static void test_driven_destroy_sends_last_replies(void **state)
{
    kvc_fwd_server_t *s = s_driven_server(1, 1, D_DECLINE);
    driver_t dr;
    s_driver_start(&dr, s);
    kvc_fwd_client_t *c = s_client(&cli_id);
    s_gate(1);
    outcome_t o[3];
    memset(o, 0, sizeof o);
    for (int i = 0; i < 3; i++)
        assert_int_equal(kvc_fwd_client_submit(c, kvc_fwd_server_endpoint(s),
                                               srv_id.cred.curve_public, &s_small, 20000, s_done,
                                               &o[i]),
                         KVC_OK);
    assert_true(s_wait_int(&H.entered, 1, 5000)); /* the worker holds the first */
    assert_true(s_wait_int(&D.calls, 3, 5000));   /* the other two are queued */
    s_driver_stop(&dr);                           /* nobody pumps from here on */
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, s_open_gate, NULL), 0);
    kvc_fwd_server_destroy(&s); /* waits for the handler, then sends */
    pthread_join(t, NULL);
    for (int i = 0; i < 3; i++)
        assert_true(s_wait_int(&o[i].n, 1, 5000)); /* before the client gives up */
    assert_int_equal(o[0].code, KVC_FWD_OK);
    for (int i = 1; i < 3; i++) /* the release may beat the stop */
        assert_true(o[i].code == KVC_FWD_SHUTDOWN || o[i].code == KVC_FWD_OK);
    kvc_fwd_client_destroy(&c);
    for (int i = 0; i < 3; i++)
        assert_int_equal(atomic_load(&o[i].n), 1);
}

/* (17) dispatch is for driven mode only: a server with its own thread
 * gives everything to the workers. */
static void test_dispatch_ignored_when_not_driven(void **state)
{
    kvc_fwd_server_t *s = s_driven_server(0, 2, D_TAKE);
    kvc_fwd_client_t *c = s_client(&cli_id);
    for (int i = 0; i < 5; i++) {
        kvc_fwd_resp_t out;
        s_call(c, s, 5000, &out);
        assert_int_equal(out.code, KVC_FWD_OK);
        assert_int_equal(out.status, 200);
        assert_string_equal(out.content_type, "application/x-echo");
        kvc_fwd_resp_clear(&out);
    }
    assert_int_equal(atomic_load(&D.calls), 0);
    assert_int_equal(atomic_load(&H.calls), 5);
    kvc_fwd_client_destroy(&c);
    kvc_fwd_server_destroy(&s);
}

/* --- driven client: the test's thread owns the DEALERs ------------------- */

/* Polls kvc_fwd_client_fds and a stop eventfd with pump's wait as timeout. */
typedef struct {
    kvc_fwd_client_t *c;
    int stop_fd;
    pthread_t thread;
    atomic_int pumps;
} cdriver_t;

static void *s_cdrive(void *arg)
{
    cdriver_t *dr = arg;
    int fds[2];
    kvc_fwd_client_fds(dr->c, fds);
    for (;;) {
        int wait = kvc_fwd_client_pump(dr->c);
        atomic_fetch_add(&dr->pumps, 1);
        struct pollfd p[3] = {{.fd = fds[0], .events = POLLIN},
                              {.fd = fds[1], .events = POLLIN},
                              {.fd = dr->stop_fd, .events = POLLIN}};
        poll(p, 3, wait);
        if (p[2].revents)
            break;
    }
    return NULL;
}

static kvc_fwd_client_t *s_driven_client(void)
{
    kvc_fwd_client_opts_t o;
    memset(&o, 0, sizeof o);
    memcpy(o.public_key, cli_id.cred.curve_public, 32);
    memcpy(o.secret_key, cli_id.curve_secret, 32);
    o.credential = cli_id.cred.blob;
    o.credential_len = cli_id.cred.blob_len;
    o.driven = 1;
    kvc_err_t err = {0};
    kvc_fwd_client_t *c = kvc_fwd_client_new(&o, &err);
    assert_non_null(c);
    int fds[2];
    kvc_fwd_client_fds(c, fds);
    assert_true(fds[0] >= 0);
    assert_true(fds[1] >= 0);
    return c;
}

static void s_cdriver_start(cdriver_t *dr, kvc_fwd_client_t *c)
{
    memset(dr, 0, sizeof *dr);
    dr->c = c;
    dr->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    assert_true(dr->stop_fd >= 0);
    assert_int_equal(pthread_create(&dr->thread, NULL, s_cdrive, dr), 0);
}

static void s_cdriver_stop(cdriver_t *dr)
{
    uint64_t one = 1;
    assert_int_equal(write(dr->stop_fd, &one, sizeof one), (ssize_t)sizeof one);
    pthread_join(dr->thread, NULL);
    close(dr->stop_fd);
}

/* One driven outcome: which thread ran done, the code, the echoed body. */
typedef struct {
    atomic_int n;
    int code;
    int status;
    pthread_t by;
    uint64_t at_ms;
    char body[64];
    size_t body_len;
} coutcome_t;

static void s_cdone(void *arg, kvc_fwd_resp_t *resp)
{
    coutcome_t *o = arg;
    o->code = resp->code;
    o->status = resp->status;
    o->by = pthread_self();
    o->at_ms = kvc_clock_mono_ms();
    o->body_len = resp->body_len < sizeof o->body ? resp->body_len : sizeof o->body;
    if (resp->body)
        memcpy(o->body, resp->body, o->body_len);
    atomic_fetch_add(&o->n, 1);
}

/* (18) driven client: submissions from the test's thread are sent and
 * answered through the driver's pumps; done runs on the driver's thread. */
static void test_driven_client_answers(void **state)
{
    kvc_fwd_server_t *s = s_server(2, 0);
    kvc_fwd_client_t *c = s_driven_client();
    cdriver_t dr;
    s_cdriver_start(&dr, c);
    static coutcome_t o[5];
    memset(o, 0, sizeof o);
    for (int i = 0; i < 5; i++) {
        char body[32];
        int n = snprintf(body, sizeof body, "req %d", i);
        kvc_fwd_req_t r = s_small;
        r.body = (const uint8_t *)body;
        r.body_len = (size_t)n;
        assert_int_equal(kvc_fwd_client_submit(c, kvc_fwd_server_endpoint(s),
                                               srv_id.cred.curve_public, &r, 5000, s_cdone, &o[i]),
                         KVC_OK);
    }
    for (int i = 0; i < 5; i++)
        assert_true(s_wait_int(&o[i].n, 1, 5000));
    s_cdriver_stop(&dr);
    for (int i = 0; i < 5; i++) {
        char body[32];
        int n = snprintf(body, sizeof body, "req %d", i);
        assert_int_equal(atomic_load(&o[i].n), 1);
        assert_int_equal(o[i].code, KVC_FWD_OK);
        assert_int_equal(o[i].status, 200);
        assert_int_equal(o[i].body_len, (size_t)n);
        assert_memory_equal(o[i].body, body, (size_t)n);
        assert_true(pthread_equal(o[i].by, dr.thread));
    }
    assert_int_equal(atomic_load(&H.calls), 5);
    kvc_fwd_client_destroy(&c);
    kvc_fwd_server_destroy(&s);
}

/* (19) driven client: a request held at the server ends with TIMEOUT near
 * its deadline; only pump's bounded wait wakes the driver for it. */
static void test_driven_client_timeout(void **state)
{
    kvc_fwd_server_t *s = s_server(1, 0);
    kvc_fwd_client_t *c = s_driven_client();
    cdriver_t dr;
    s_cdriver_start(&dr, c);
    s_gate(1);
    static coutcome_t o;
    memset(&o, 0, sizeof o);
    uint64_t t0 = kvc_clock_mono_ms();
    assert_int_equal(kvc_fwd_client_submit(c, kvc_fwd_server_endpoint(s), srv_id.cred.curve_public,
                                           &s_small, 300, s_cdone, &o),
                     KVC_OK);
    assert_true(s_wait_int(&H.entered, 1, 5000)); /* sent; the handler holds it */
    assert_true(s_wait_int(&o.n, 1, 300 + 2000));
    uint64_t took = o.at_ms - t0;
    assert_int_equal(o.code, KVC_FWD_TIMEOUT);
    assert_true(took >= 300);
    assert_true(took <= 300 + 500);
    assert_true(pthread_equal(o.by, dr.thread));
    s_cdriver_stop(&dr);
    assert_int_equal(atomic_load(&o.n), 1);
    kvc_fwd_client_stats_t st;
    kvc_fwd_client_stats(c, &st);
    assert_int_equal(st.timeouts, 1);
    s_gate(0);
    kvc_fwd_client_destroy(&c);
    kvc_fwd_server_destroy(&s);
}

#define CD_THREADS 4
#define CD_CALLS 50

typedef struct {
    kvc_fwd_client_t *c;
    const char *ep;
    int t;
    int rc_bad;
    coutcome_t *o;
} csubmitter_t;

static void *s_csubmit(void *arg)
{
    csubmitter_t *w = arg;
    for (int i = 0; i < CD_CALLS; i++) {
        char body[32];
        int n = snprintf(body, sizeof body, "t%d c%d", w->t, i);
        kvc_fwd_req_t r = s_small;
        r.body = (const uint8_t *)body;
        r.body_len = (size_t)n;
        if (kvc_fwd_client_submit(w->c, w->ep, srv_id.cred.curve_public, &r, 10000, s_cdone,
                                  &w->o[i]) != KVC_OK)
            w->rc_bad++;
    }
    return NULL;
}

/* (20) driven client: 200 requests from 4 threads, each answered once with
 * its own body. */
static void test_driven_client_concurrent(void **state)
{
    kvc_fwd_server_t *s = s_server(4, 0);
    kvc_fwd_client_t *c = s_driven_client();
    cdriver_t dr;
    s_cdriver_start(&dr, c);
    static coutcome_t o[CD_THREADS * CD_CALLS];
    memset(o, 0, sizeof o);
    pthread_t th[CD_THREADS];
    csubmitter_t w[CD_THREADS];
    for (int t = 0; t < CD_THREADS; t++) {
        w[t] = (csubmitter_t){
            .c = c, .ep = kvc_fwd_server_endpoint(s), .t = t, .o = o + t * CD_CALLS};
        assert_int_equal(pthread_create(&th[t], NULL, s_csubmit, &w[t]), 0);
    }
    for (int t = 0; t < CD_THREADS; t++) {
        pthread_join(th[t], NULL);
        assert_int_equal(w[t].rc_bad, 0);
    }
    for (int i = 0; i < CD_THREADS * CD_CALLS; i++)
        assert_true(s_wait_int(&o[i].n, 1, 10000));
    s_cdriver_stop(&dr);
    for (int t = 0; t < CD_THREADS; t++)
        for (int i = 0; i < CD_CALLS; i++) {
            coutcome_t *x = &o[t * CD_CALLS + i];
            char body[32];
            int n = snprintf(body, sizeof body, "t%d c%d", t, i);
            assert_int_equal(atomic_load(&x->n), 1);
            assert_int_equal(x->code, KVC_FWD_OK);
            assert_int_equal(x->body_len, (size_t)n);
            assert_memory_equal(x->body, body, (size_t)n);
            assert_true(pthread_equal(x->by, dr.thread));
        }
    assert_int_equal(atomic_load(&H.calls), CD_THREADS * CD_CALLS);
    kvc_fwd_client_destroy(&c);
    kvc_fwd_server_destroy(&s);
}

/* (21) driven client: destroy after the driver stopped ends the sent and
 * the queued requests with SHUTDOWN, once each, on the destroying thread. */
static void test_driven_client_destroy_pending(void **state)
{
    kvc_fwd_server_t *s = s_server(1, 0);
    kvc_fwd_client_t *c = s_driven_client();
    cdriver_t dr;
    s_cdriver_start(&dr, c);
    s_gate(1);
    static coutcome_t o[6];
    memset(o, 0, sizeof o);
    const char *ep = kvc_fwd_server_endpoint(s);
    for (int i = 0; i < 3; i++) /* sent by the driver */
        assert_int_equal(kvc_fwd_client_submit(c, ep, srv_id.cred.curve_public, &s_small, 60000,
                                               s_cdone, &o[i]),
                         KVC_OK);
    assert_true(s_wait_int(&H.entered, 1, 5000));
    s_cdriver_stop(&dr);
    for (int i = 3; i < 6; i++) /* queued, never pumped */
        assert_int_equal(kvc_fwd_client_submit(c, ep, srv_id.cred.curve_public, &s_small, 60000,
                                               s_cdone, &o[i]),
                         KVC_OK);
    for (int i = 0; i < 6; i++)
        assert_int_equal(atomic_load(&o[i].n), 0);
    kvc_fwd_client_destroy(&c);
    assert_null(c);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(atomic_load(&o[i].n), 1);
        assert_int_equal(o[i].code, KVC_FWD_SHUTDOWN);
        assert_true(pthread_equal(o[i].by, pthread_self()));
    }
    s_gate(0);
    kvc_fwd_server_destroy(&s);
}

/* (22) pump and fds belong to driven mode: on a threaded client pump does
 * nothing and returns -1, and both descriptors are -1. */
static void test_pump_ignored_when_not_driven(void **state)
{
    kvc_fwd_server_t *s = s_server(1, 0);
    kvc_fwd_client_t *c = s_client(&cli_id);
    int fds[2] = {123, 456};
    kvc_fwd_client_fds(c, fds);
    assert_int_equal(fds[0], -1);
    assert_int_equal(fds[1], -1);
    s_gate(1);
    static coutcome_t o;
    memset(&o, 0, sizeof o);
    assert_int_equal(kvc_fwd_client_submit(c, kvc_fwd_server_endpoint(s), srv_id.cred.curve_public,
                                           &s_small, 100, s_cdone, &o),
                     KVC_OK);
    assert_true(s_wait_int(&H.entered, 1, 5000));
    for (int i = 0; i < 100; i++)
        assert_int_equal(kvc_fwd_client_pump(c), -1);
    /* the I/O thread, not the pumps, ends it */
    assert_true(s_wait_int(&o.n, 1, 5000));
    assert_int_equal(o.code, KVC_FWD_TIMEOUT);
    assert_false(pthread_equal(o.by, pthread_self()));
    s_gate(0);
    kvc_fwd_client_destroy(&c);
    kvc_fwd_server_destroy(&s);
    assert_int_equal(atomic_load(&o.n), 1);
}

int main(void)
{
    assert_int_equal(kvc_crypto_init(), 0);
    kvc_err_t err = {0};
    zap = kvc_zap_thread_start(s_zap_revoked, NULL, NULL, NULL, &err);
    if (!zap) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    int64_t now = (int64_t)time(NULL);
    if (kvc_ca_generate(&ca) || kvc_ca_generate(&other_ca))
        return 1;
    s_issue(&ca, "site-b", "gw-b", now, 30, &srv_id);
    s_issue(&ca, "site-a", "gw-a", now, 30, &cli_id);
    s_issue(&ca, "site-c", "gw-c", now, 30, &victim_id);
    s_issue(&other_ca, "site-x", "gw-x", now, 30, &foreign_id);
    s_issue(&ca, "site-a", "old", now - 10 * 86400, 1, &expired_id);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_codec, setup),
        cmocka_unit_test_setup(test_auth_cache, setup),
        cmocka_unit_test_setup(test_round_trip, setup),
        cmocka_unit_test_setup(test_foreign, setup),
        cmocka_unit_test_setup(test_key_mismatch, setup),
        cmocka_unit_test_setup(test_expired, setup),
        cmocka_unit_test_setup(test_empty_credential, setup),
        cmocka_unit_test_setup(test_revoked, setup),
        cmocka_unit_test_setup(test_slow_handler, setup),
        cmocka_unit_test_setup(test_no_server, setup),
        cmocka_unit_test_setup(test_concurrent, setup),
        cmocka_unit_test_setup(test_overloaded, setup),
        cmocka_unit_test_setup(test_destroy_pending, setup),
        cmocka_unit_test_setup(test_cache_one_verify, setup),
        cmocka_unit_test_setup(test_server_shutdown, setup),
        cmocka_unit_test_setup(test_driven_dispatch_answers, setup),
        cmocka_unit_test_setup(test_driven_decline_to_workers, setup),
        cmocka_unit_test_setup(test_driven_unauthenticated, setup),
        cmocka_unit_test_setup(test_driven_destroy_sends_last_replies, setup),
        cmocka_unit_test_setup(test_dispatch_ignored_when_not_driven, setup),
        cmocka_unit_test_setup(test_driven_client_answers, setup),
        cmocka_unit_test_setup(test_driven_client_timeout, setup),
        cmocka_unit_test_setup(test_driven_client_concurrent, setup),
        cmocka_unit_test_setup(test_driven_client_destroy_pending, setup),
        cmocka_unit_test_setup(test_pump_ignored_when_not_driven, setup),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    kvc_zap_thread_stop(&zap);
    kvc_identity_wipe(&srv_id);
    kvc_identity_wipe(&cli_id);
    kvc_identity_wipe(&victim_id);
    kvc_identity_wipe(&foreign_id);
    kvc_identity_wipe(&expired_id);
    sodium_memzero(&ca, sizeof ca);
    zsys_shutdown();
    return rc;
}
