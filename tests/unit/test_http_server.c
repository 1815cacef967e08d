/* Unit tests of proxy/http_server.c: real HTTP over loopback (port 0) with libcurl. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <cmocka.h>
#include <curl/curl.h>

#include "fiber.h"
#include "http_server.h"

/* Echoes "METHOD PATH LEN CTYPE" or answers an error for /fail. */
static void s_echo(void *arg, const kvc_http_req_t *req, kvc_http_resp_t *resp)
{
    if (strcmp(req->path, "/fail") == 0) {
        kvc_http_error(resp, 400, "bad \"thing\"\nat line %d", 3);
        return;
    }
    if (strcmp(req->path, "/silent") == 0)
        return; /* no status: the server must answer 500 */
    resp->status = 200;
    snprintf(resp->content_type, sizeof resp->content_type, "text/plain");
    snprintf(resp->header_name, sizeof resp->header_name, "X-Len");
    snprintf(resp->header_value, sizeof resp->header_value, "%zu", req->body_len);
    kvc_buf_printf(&resp->body, "%s %s %zu %s", req->method, req->path, req->body_len,
                   req->content_type ? req->content_type : "-");
}

typedef struct {
    char data[4096];
    size_t len;
} s_sink_t;

static size_t s_write(char *p, size_t size, size_t n, void *arg)
{
    s_sink_t *s = arg;
    size_t k = size * n;
    if (s->len + k >= sizeof s->data)
        k = sizeof s->data - 1 - s->len;
    memcpy(s->data + s->len, p, k);
    s->len += k;
    s->data[s->len] = '\0';
    return size * n;
}

/* Makes one request; returns the HTTP status and fills out with the body. */
static long s_request(uint16_t port, const char *method, const char *path, const char *body,
                      size_t len, int chunked, s_sink_t *out)
{
    CURL *c = curl_easy_init();
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%u%s", port, path);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    if (chunked)
        h = curl_slist_append(h, "Transfer-Encoding: chunked");
    h = curl_slist_append(h, "Expect:"); /* the body goes with the head */
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        if (!chunked)
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)len);
    }
    memset(out, 0, sizeof *out);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, s_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    long status = 0;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return status;
}

static kvc_http_server_t *s_server(size_t max_body)
{
    kvc_http_opts_t opts = {.max_body = max_body};
    kvc_err_t err;
    kvc_http_server_t *srv = kvc_http_server_new("127.0.0.1:0", &opts, s_echo, NULL, &err);
    assert_non_null(srv);
    assert_true(kvc_http_server_port(srv) > 0);
    return srv;
}

static void test_echo_and_errors(void **state)
{
    kvc_http_server_t *srv = s_server(1024);
    uint16_t port = kvc_http_server_port(srv);
    s_sink_t out;
    assert_int_equal(s_request(port, "POST", "/v1/x?q=1", "{\"a\":1}", 7, 0, &out), 200);
    assert_string_equal(out.data, "POST /v1/x 7 application/json");
    assert_int_equal(s_request(port, "GET", "/fail", NULL, 0, 0, &out), 400);
    assert_string_equal(out.data, "{\"error\": \"bad \\\"thing\\\"\\nat line 3\"}");
    assert_int_equal(s_request(port, "GET", "/silent", NULL, 0, 0, &out), 500);
    assert_non_null(strstr(out.data, "\"error\""));
    kvc_http_server_destroy(&srv);
    assert_null(srv);
}

/* Sends raw request head bytes and returns the status of the first answer
 * (0 when none arrives within 10 s): for requests whose body is never sent. */
static int s_raw_status(uint16_t port, const char *head)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int status = 0;
    char buf[512];
    if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        send(fd, head, strlen(head), MSG_NOSIGNAL) == (ssize_t)strlen(head)) {
        ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
        if (n > 12) {
            buf[n] = '\0';
            sscanf(buf, "HTTP/1.1 %d", &status);
        }
    }
    close(fd);
    return status;
}

static void test_body_limit(void **state)
{
    kvc_http_server_t *srv = s_server(1024);
    uint16_t port = kvc_http_server_port(srv);
    static char body[4096];
    memset(body, 'x', sizeof body);
    s_sink_t out;
    assert_int_equal(s_request(port, "POST", "/p", body, 1024, 0, &out), 200);
    assert_string_equal(out.data, "POST /p 1024 application/json");
    assert_int_equal(s_request(port, "POST", "/p", body, 1025, 0, &out), 413);
    assert_string_equal(out.data, "{\"error\": \"request body exceeds the limit of 1024 bytes\"}");
    /* a body far over the limit, sent whole: read and dropped, then 413 */
    static char large[(size_t)2 << 20];
    memset(large, 'y', sizeof large);
    for (int i = 0; i < 5; i++)
        assert_int_equal(s_request(port, "POST", "/p", large, sizeof large, 0, &out), 413);
    /* refused on the head alone: a client waiting for 100 Continue, and a
     * body too big to be worth reading */
    assert_int_equal(s_raw_status(port, "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n"
                                        "Expect: 100-continue\r\n\r\n"),
                     413);
    assert_int_equal(s_raw_status(port, "POST /p HTTP/1.1\r\nHost: x\r\n"
                                        "Content-Length: 1000000000000\r\n\r\n"),
                     413);
    /* chunked: no Content-Length, counted as it arrives */
    body[2000] = '\0';
    assert_int_equal(s_request(port, "POST", "/p", body, 2000, 1, &out), 413);
    body[1000] = '\0';
    assert_int_equal(s_request(port, "POST", "/p", body, 1000, 1, &out), 200);
    assert_string_equal(out.data, "POST /p 1000 application/json");
    kvc_http_server_destroy(&srv);
}

static uint16_t s_port;
static int s_ok[8];

static void *s_client(void *arg)
{
    int id = (int)(intptr_t)arg;
    char path[32], want[64];
    s_sink_t out;
    for (int i = 0; i < 25; i++) {
        snprintf(path, sizeof path, "/c%d/%d", id, i);
        snprintf(want, sizeof want, "POST %s 3 application/json", path);
        if (s_request(s_port, "POST", path, "abc", 3, 0, &out) == 200 &&
            strcmp(out.data, want) == 0)
            s_ok[id]++;
    }
    return NULL;
}

static void test_concurrent_clients(void **state)
{
    kvc_http_server_t *srv = s_server(1024);
    s_port = kvc_http_server_port(srv);
    pthread_t t[8];
    for (int i = 0; i < 8; i++)
        pthread_create(&t[i], NULL, s_client, (void *)(intptr_t)i);
    for (int i = 0; i < 8; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < 8; i++)
        assert_int_equal(s_ok[i], 25);
    kvc_http_server_destroy(&srv);
}

/* ---- A blocked handler holds up only its own connection ---------------- */

#define S_BLOCKERS 12 /* more than the 4 pool threads the server once had */

static pthread_mutex_t s_gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t s_gate_cv = PTHREAD_COND_INITIALIZER;
static int s_entered; /* handlers waiting at the gate */
static int s_open;    /* the gate: 1 lets them answer */
static long s_blocked_status[S_BLOCKERS];

/* /block waits until the test opens the gate (as a predict waits for a slow
 * model server); anything else answers at once. */
static void s_gated(void *arg, const kvc_http_req_t *req, kvc_http_resp_t *resp)
{
    if (strcmp(req->path, "/block") == 0) {
        pthread_mutex_lock(&s_gate_mu);
        s_entered++;
        pthread_cond_broadcast(&s_gate_cv);
        while (!s_open)
            pthread_cond_wait(&s_gate_cv, &s_gate_mu);
        pthread_mutex_unlock(&s_gate_mu);
    }
    resp->status = 200;
    snprintf(resp->content_type, sizeof resp->content_type, "text/plain");
    kvc_buf_printf(&resp->body, "%s", req->path);
}

static void *s_blocker(void *arg)
{
    int i = (int)(intptr_t)arg;
    s_sink_t out;
    s_blocked_status[i] = s_request(s_port, "GET", "/block", NULL, 0, 0, &out);
    return NULL;
}

/* Waits (deadline 10 s) until n handlers are at the gate; returns how many are. */
static int s_wait_entered(int n)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    pthread_mutex_lock(&s_gate_mu);
    while (s_entered < n && pthread_cond_timedwait(&s_gate_cv, &s_gate_mu, &until) == 0)
        ;
    int got = s_entered;
    pthread_mutex_unlock(&s_gate_mu);
    return got;
}

/* /live runs inline, in a fiber on the loop thread. */
static int s_inline_live(void *arg, const kvc_http_req_t *req)
{
    return strcmp(req->path, "/live") == 0;
}

static void test_blocked_handlers_do_not_stall_others(void **state)
{
    /* the blockers run on threads; /live on the loop, which must stay free */
    kvc_http_opts_t opts = {.max_body = 1024, .inline_ok = s_inline_live};
    kvc_err_t err;
    kvc_http_server_t *srv = kvc_http_server_new("127.0.0.1:0", &opts, s_gated, NULL, &err);
    assert_non_null(srv);
    s_port = kvc_http_server_port(srv);
    pthread_t t[S_BLOCKERS];
    for (int i = 0; i < S_BLOCKERS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, s_blocker, (void *)(intptr_t)i), 0);
    /* every blocked request has reached the handler at the same time ... */
    assert_int_equal(s_wait_entered(S_BLOCKERS), S_BLOCKERS);
    /* ... and another client still gets answered while all of them wait */
    s_sink_t out;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(s_request(s_port, "GET", "/live", NULL, 0, 0, &out), 200);
        assert_string_equal(out.data, "/live");
    }
    pthread_mutex_lock(&s_gate_mu);
    assert_int_equal(s_open, 0); /* none of them could have answered yet */
    s_open = 1;
    pthread_cond_broadcast(&s_gate_cv);
    pthread_mutex_unlock(&s_gate_mu);
    for (int i = 0; i < S_BLOCKERS; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(s_blocked_status[i], 200);
    }
    kvc_http_server_destroy(&srv);
}

/* destroy lets a request in progress finish and answer. */
static atomic_int s_destroy_called;

static void *s_destroyer(void *arg)
{
    atomic_store(&s_destroy_called, 1);
    kvc_http_server_destroy((kvc_http_server_t **)arg);
    return NULL;
}

static void test_destroy_waits_for_requests_in_progress(void **state)
{
    kvc_http_opts_t opts = {.max_body = 1024};
    kvc_err_t err;
    kvc_http_server_t *srv = kvc_http_server_new("127.0.0.1:0", &opts, s_gated, NULL, &err);
    assert_non_null(srv);
    s_port = kvc_http_server_port(srv);
    pthread_mutex_lock(&s_gate_mu);
    s_entered = 0;
    s_open = 0;
    pthread_mutex_unlock(&s_gate_mu);
    pthread_t blocker, destroyer;
    assert_int_equal(pthread_create(&blocker, NULL, s_blocker, (void *)(intptr_t)0), 0);
    assert_int_equal(s_wait_entered(1), 1);
    assert_int_equal(pthread_create(&destroyer, NULL, s_destroyer, &srv), 0);
    for (int i = 0; i < 10000 && !atomic_load(&s_destroy_called); i++)
        sched_yield();
    pthread_mutex_lock(&s_gate_mu);
    s_open = 1;
    pthread_cond_broadcast(&s_gate_cv);
    pthread_mutex_unlock(&s_gate_mu);
    pthread_join(blocker, NULL);
    pthread_join(destroyer, NULL);
    assert_int_equal(s_blocked_status[0], 200);
    assert_null(srv);
}

/* ---- Inline requests: fibers on the loop thread ------------------------ */

/* Answers where it ran ("fiber" or "thread") and how often it yielded:
 * /inline/yield/N yields N times first, readying itself each time as a
 * finished gRPC call readies its fiber. */
static void s_where(void *arg, const kvc_http_req_t *req, kvc_http_resp_t *resp)
{
    int n = 0;
    if (strncmp(req->path, "/inline/yield/", 14) == 0)
        n = atoi(req->path + 14);
    int yielded = 0;
    for (int i = 0; i < n && kvc_fiber_current(); i++, yielded++) {
        kvc_fiber_ready(kvc_fiber_current());
        kvc_fiber_yield();
    }
    resp->status = 200;
    snprintf(resp->content_type, sizeof resp->content_type, "text/plain");
    kvc_buf_printf(&resp->body, "%s %d", kvc_fiber_current() ? "fiber" : "thread", yielded);
}

static int s_inline_prefix(void *arg, const kvc_http_req_t *req)
{
    return strncmp(req->path, "/inline", 7) == 0;
}

static long s_yield_ok[8];

static void *s_yield_client(void *arg)
{
    int i = (int)(intptr_t)arg;
    s_sink_t out;
    for (int k = 0; k < 20; k++)
        if (s_request(s_port, "GET", "/inline/yield/5", NULL, 0, 0, &out) == 200 &&
            strcmp(out.data, "fiber 5") == 0)
            s_yield_ok[i]++;
    return NULL;
}

static void test_inline_requests_run_in_fibers(void **state)
{
    kvc_http_opts_t opts = {.max_body = 1024, .inline_ok = s_inline_prefix};
    kvc_err_t err;
    kvc_http_server_t *srv = kvc_http_server_new("127.0.0.1:0", &opts, s_where, NULL, &err);
    assert_non_null(srv);
    s_port = kvc_http_server_port(srv);
    s_sink_t out;
    assert_int_equal(s_request(s_port, "GET", "/inline", NULL, 0, 0, &out), 200);
    assert_string_equal(out.data, "fiber 0");
    assert_int_equal(s_request(s_port, "GET", "/elsewhere", NULL, 0, 0, &out), 200);
    assert_string_equal(out.data, "thread 0");
    assert_int_equal(s_request(s_port, "GET", "/inline/yield/3", NULL, 0, 0, &out), 200);
    assert_string_equal(out.data, "fiber 3");
    /* many suspended fibers at once, interleaved on the one loop thread */
    pthread_t t[8];
    for (int i = 0; i < 8; i++)
        assert_int_equal(pthread_create(&t[i], NULL, s_yield_client, (void *)(intptr_t)i), 0);
    for (int i = 0; i < 8; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < 8; i++)
        assert_int_equal(s_yield_ok[i], 20);
    kvc_http_server_destroy(&srv);
}

/* Answers a 4000-byte text body for /big, "small" for anything else. */
static void s_text(void *arg, const kvc_http_req_t *req, kvc_http_resp_t *resp)
{
    resp->status = 200;
    snprintf(resp->content_type, sizeof resp->content_type, "text/plain; version=0.0.4");
    if (strcmp(req->path, "/big") == 0)
        for (int i = 0; i < 400; i++)
            kvc_buf_printf(&resp->body, "line %04d\n", i);
    else
        kvc_buf_printf(&resp->body, "small");
}

typedef struct {
    long status;
    char encoding[64];
    s_sink_t body;
} s_got_t;

static size_t s_header(char *p, size_t size, size_t n, void *arg)
{
    s_got_t *g = arg;
    size_t k = size * n;
    if (k > 18 && strncasecmp(p, "Content-Encoding: ", 18) == 0) {
        size_t v = k - 18;
        while (v && (p[18 + v - 1] == '\r' || p[18 + v - 1] == '\n'))
            v--;
        if (v >= sizeof g->encoding)
            v = sizeof g->encoding - 1;
        memcpy(g->encoding, p + 18, v);
        g->encoding[v] = '\0';
    }
    return k;
}

/* GETs path with the given Accept-Encoding ("" = none); curl decodes gzip
 * itself when decode is set. */
static void s_get(uint16_t port, const char *path, const char *accept, int decode, s_got_t *g)
{
    memset(g, 0, sizeof *g);
    CURL *c = curl_easy_init();
    char url[128], hdr[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u%s", port, path);
    struct curl_slist *h = NULL;
    if (accept[0]) {
        snprintf(hdr, sizeof hdr, "Accept-Encoding: %s", accept);
        h = curl_slist_append(h, hdr);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    if (decode)
        curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "gzip");
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, s_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, g);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, s_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &g->body);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &g->status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
}

static void test_gzip_when_asked(void **state)
{
    kvc_http_opts_t opts = {.max_body = 1024};
    kvc_err_t err;
    kvc_http_server_t *srv = kvc_http_server_new("127.0.0.1:0", &opts, s_text, NULL, &err);
    assert_non_null(srv);
    uint16_t port = kvc_http_server_port(srv);
    s_got_t plain, z, refused, small;
    s_get(port, "/big", "", 0, &plain);
    assert_int_equal(plain.status, 200);
    assert_string_equal(plain.encoding, "");
    assert_int_equal(plain.body.len, 4000);
    s_get(port, "/big", "gzip", 1, &z); /* curl decodes: the same text */
    assert_string_equal(z.encoding, "gzip");
    assert_int_equal(z.body.len, 4000);
    assert_memory_equal(z.body.data, plain.body.data, 4000);
    s_get(port, "/big", "gzip", 0, &z); /* raw: a gzip stream, much smaller */
    assert_true(z.body.len > 18 && z.body.len < 1500);
    assert_int_equal((unsigned char)z.body.data[0], 0x1f);
    assert_int_equal((unsigned char)z.body.data[1], 0x8b);
    s_get(port, "/big", "br, gzip;q=0", 0, &refused);
    assert_string_equal(refused.encoding, "");
    assert_int_equal(refused.body.len, 4000);
    s_get(port, "/small", "gzip", 0, &small); /* not worth it under 1 KiB */
    assert_string_equal(small.encoding, "");
    assert_string_equal(small.body.data, "small");
    kvc_http_server_destroy(&srv);
}

static void test_bad_listen(void **state)
{
    kvc_http_opts_t opts = {.max_body = 10};
    kvc_err_t err;
    assert_null(kvc_http_server_new("nohostport", &opts, s_echo, NULL, &err));
    assert_string_equal(err.msg, "http.listen: expected HOST:PORT, got \"nohostport\"");
    assert_null(kvc_http_server_new("127.0.0.1:99999", &opts, s_echo, NULL, &err));
    assert_string_equal(err.msg, "http.listen: invalid port in \"127.0.0.1:99999\"");
}

/* ---- Loop hooks: a module served on the loop thread -------------------- */

typedef struct {
    int efd;               /* the hook's descriptor: an eventfd the test writes */
    atomic_int calls;      /* hook calls */
    atomic_int wakes;      /* calls that found the eventfd written */
    atomic_int busy_left;  /* the hook answers "more to do" (0) this many more times */
    atomic_int bound_ms;   /* otherwise it answers this bound on the wait (0: none, -1) */
    atomic_int wrong;      /* calls or fibers off the loop thread, or not in a fiber */
    atomic_int spawn_next; /* the next wake spawns s_spawned */
    atomic_int spawn_rc;   /* what kvc_http_loop_spawn returned in the hook */
    atomic_int inner_rc;   /* ... and what it returned inside the fiber */
    atomic_int started;    /* the spawned fiber ran */
    kvc_fiber_t *parked;   /* the spawned fiber, waiting for the next wake (loop only) */
    atomic_int done;       /* the spawned fiber returned */
    atomic_int have_loop;
    pthread_t loop; /* the thread of the first call */
    pthread_t test;
} s_hook_t;

static void s_dummy(void *arg)
{
    (void)arg;
}

/* The spawned fiber: checks where it runs, yields a few times (ready again
 * each time), then parks until the hook readies it at the next wake, as a
 * forwarded request's fiber waits for its model server call. */
static void s_spawned(void *arg)
{
    s_hook_t *h = arg;
    if (!kvc_fiber_current() || !pthread_equal(pthread_self(), h->loop))
        atomic_fetch_add(&h->wrong, 1);
    atomic_store(&h->inner_rc, kvc_http_loop_spawn(s_dummy, NULL)); /* not from a fiber */
    atomic_store(&h->started, 1);
    for (int i = 0; i < 3; i++) {
        kvc_fiber_ready(kvc_fiber_current());
        kvc_fiber_yield();
    }
    h->parked = kvc_fiber_current();
    kvc_fiber_yield();
    if (!pthread_equal(pthread_self(), h->loop))
        atomic_fetch_add(&h->wrong, 1);
    atomic_store(&h->done, 1);
}

static int s_hook(void *arg)
{
    s_hook_t *h = arg;
    if (!atomic_load(&h->have_loop)) {
        h->loop = pthread_self();
        atomic_store(&h->have_loop, 1);
    } else if (!pthread_equal(pthread_self(), h->loop)) {
        atomic_fetch_add(&h->wrong, 1);
    }
    if (pthread_equal(pthread_self(), h->test) || kvc_fiber_current())
        atomic_fetch_add(&h->wrong, 1);
    uint64_t v;
    if (read(h->efd, &v, sizeof v) == (ssize_t)sizeof v) {
        if (atomic_exchange(&h->spawn_next, 0))
            atomic_store(&h->spawn_rc, kvc_http_loop_spawn(s_spawned, h));
        else if (h->parked) {
            kvc_fiber_ready(h->parked);
            h->parked = NULL;
        }
        atomic_fetch_add(&h->wakes, 1);
    }
    atomic_fetch_add(&h->calls, 1);
    int busy = atomic_load(&h->busy_left) > 0;
    if (busy)
        atomic_fetch_sub(&h->busy_left, 1);
    int bound = atomic_load(&h->bound_ms);
    return busy ? 0 : bound > 0 ? bound : -1;
}

/* Waits until *v >= want, for at most ms; returns whether it got there. */
static int s_wait_atomic(atomic_int *v, int want, long ms)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (atomic_load(v) < want) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 > ms)
            return 0;
        sched_yield();
    }
    return 1;
}

static void s_poke(int efd)
{
    uint64_t one = 1;
    assert_int_equal(write(efd, &one, sizeof one), (ssize_t)sizeof one);
}

/* A wake must come from the descriptor: the loop otherwise waits a whole
 * turn (1 s, S_TURN_MS) between hook calls, so 600 ms tells them apart. */
#define S_WAKE_MS 600

static void test_hook_runs_on_loop_and_wakes(void **state)
{
    static s_hook_t h;
    memset(&h, 0, sizeof h);
    h.test = pthread_self();
    h.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    assert_true(h.efd >= 0);
    kvc_http_opts_t opts = {.max_body = 1024, .hook = s_hook, .hook_arg = &h, .n_hook_fds = 1};
    opts.hook_fds[0] = h.efd;
    kvc_err_t err;
    kvc_http_server_t *srv = kvc_http_server_new("127.0.0.1:0", &opts, s_echo, NULL, &err);
    assert_non_null(srv);
    assert_true(s_wait_atomic(&h.calls, 1, 5000)); /* the loop's first turn */
    /* each write wakes the loop at once (the last call just began a turn's wait) */
    for (int i = 1; i <= 3; i++) {
        s_poke(h.efd);
        assert_true(s_wait_atomic(&h.wakes, i, S_WAKE_MS));
    }
    /* "more to do": the next turns do not wait */
    int c0 = atomic_load(&h.calls);
    atomic_store(&h.busy_left, 10);
    s_poke(h.efd);
    assert_true(s_wait_atomic(&h.calls, c0 + 11, S_WAKE_MS));
    /* a bound of 20 ms: called again within it without any wake (a 1 s turn
     * would make the 10 calls below take 10 s) */
    c0 = atomic_load(&h.calls);
    atomic_store(&h.bound_ms, 20);
    s_poke(h.efd);
    assert_true(s_wait_atomic(&h.calls, c0 + 10, S_WAKE_MS * 2));
    atomic_store(&h.bound_ms, 0);
    /* the server still serves HTTP with a hook */
    s_sink_t out;
    assert_int_equal(s_request(kvc_http_server_port(srv), "GET", "/x", NULL, 0, 0, &out), 200);
    assert_string_equal(out.data, "GET /x 0 application/json");
    /* spawn from the hook: fn runs in a fiber on the loop, at once (until its
     * first yield) and again whenever it is readied */
    atomic_store(&h.spawn_rc, 99);
    atomic_store(&h.inner_rc, 99);
    atomic_store(&h.spawn_next, 1);
    s_poke(h.efd);
    assert_true(s_wait_atomic(&h.started, 1, 5000));
    assert_true(s_wait_atomic(&h.wakes, 6, 5000));
    assert_int_equal(atomic_load(&h.spawn_rc), KVC_OK);
    assert_int_equal(atomic_load(&h.inner_rc), KVC_ESTATE);
    assert_int_equal(atomic_load(&h.done), 0); /* parked: only the next wake readies it */
    s_poke(h.efd);
    assert_true(s_wait_atomic(&h.done, 1, 5000));
    kvc_http_server_destroy(&srv);
    assert_int_equal(atomic_load(&h.wrong), 0);
    assert_true(atomic_load(&h.have_loop));
    assert_false(pthread_equal(h.loop, h.test));
    /* not on a loop thread */
    assert_int_equal(kvc_http_loop_spawn(s_dummy, NULL), KVC_ESTATE);
    close(h.efd);
}

/* A handler on a request thread or in an inline fiber cannot spawn either. */
static void s_spawner(void *arg, const kvc_http_req_t *req, kvc_http_resp_t *resp)
{
    resp->status = 200;
    snprintf(resp->content_type, sizeof resp->content_type, "text/plain");
    kvc_buf_printf(&resp->body, "%s %d", kvc_fiber_current() ? "fiber" : "thread",
                   kvc_http_loop_spawn(s_dummy, NULL));
}

static void test_loop_spawn_refused_off_hook(void **state)
{
    kvc_http_opts_t opts = {.max_body = 1024, .inline_ok = s_inline_prefix};
    kvc_err_t err;
    kvc_http_server_t *srv = kvc_http_server_new("127.0.0.1:0", &opts, s_spawner, NULL, &err);
    assert_non_null(srv);
    uint16_t port = kvc_http_server_port(srv);
    s_sink_t out;
    char want[32];
    snprintf(want, sizeof want, "thread %d", KVC_ESTATE);
    assert_int_equal(s_request(port, "GET", "/elsewhere", NULL, 0, 0, &out), 200);
    assert_string_equal(out.data, want);
    snprintf(want, sizeof want, "fiber %d", KVC_ESTATE);
    assert_int_equal(s_request(port, "GET", "/inline", NULL, 0, 0, &out), 200);
    assert_string_equal(out.data, want);
    kvc_http_server_destroy(&srv);
    assert_int_equal(kvc_http_loop_spawn(s_dummy, NULL), KVC_ESTATE);
}

static void test_hook_opts_checked(void **state)
{
    s_hook_t h;
    memset(&h, 0, sizeof h);
    h.efd = -1;
    kvc_err_t err;
    kvc_http_opts_t three = {
        .max_body = 10, .hook = s_hook, .hook_arg = &h, .n_hook_fds = KVC_HTTP_HOOK_FDS + 1};
    memset(&err, 0, sizeof err);
    assert_null(kvc_http_server_new("127.0.0.1:0", &three, s_echo, NULL, &err));
    assert_int_equal(err.code, KVC_EINVAL);
    kvc_http_opts_t negative = {.max_body = 10, .hook = s_hook, .hook_arg = &h, .n_hook_fds = -1};
    memset(&err, 0, sizeof err);
    assert_null(kvc_http_server_new("127.0.0.1:0", &negative, s_echo, NULL, &err));
    assert_int_equal(err.code, KVC_EINVAL);
    kvc_http_opts_t no_hook = {.max_body = 10, .n_hook_fds = 1};
    memset(&err, 0, sizeof err);
    assert_null(kvc_http_server_new("127.0.0.1:0", &no_hook, s_echo, NULL, &err));
    assert_int_equal(err.code, KVC_EINVAL);
    /* two, with a hook: accepted */
    int a = eventfd(0, EFD_NONBLOCK), b = eventfd(0, EFD_NONBLOCK);
    assert_true(a >= 0 && b >= 0);
    h.efd = b;
    h.test = pthread_self();
    kvc_http_opts_t two = {
        .max_body = 10, .hook = s_hook, .hook_arg = &h, .n_hook_fds = 2, .hook_fds = {a, b}};
    kvc_http_server_t *srv = kvc_http_server_new("127.0.0.1:0", &two, s_echo, NULL, &err);
    assert_non_null(srv);
    /* the second descriptor wakes it too */
    assert_true(s_wait_atomic(&h.calls, 1, 5000));
    s_poke(b);
    assert_true(s_wait_atomic(&h.wakes, 1, S_WAKE_MS));
    kvc_http_server_destroy(&srv);
    assert_int_equal(atomic_load(&h.wrong), 0);
    close(a);
    close(b);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_echo_and_errors),
        cmocka_unit_test(test_body_limit),
        cmocka_unit_test(test_concurrent_clients),
        cmocka_unit_test(test_blocked_handlers_do_not_stall_others),
        cmocka_unit_test(test_inline_requests_run_in_fibers),
        cmocka_unit_test(test_destroy_waits_for_requests_in_progress),
        cmocka_unit_test(test_gzip_when_asked),
        cmocka_unit_test(test_bad_listen),
        cmocka_unit_test(test_hook_runs_on_loop_and_wakes),
        cmocka_unit_test(test_loop_spawn_refused_off_hook),
        cmocka_unit_test(test_hook_opts_checked),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
