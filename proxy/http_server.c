/*
 * http_server.c - libmicrohttpd behind a one-function interface. Bodies are
 * collected up to opts.max_body (Content-Length over the limit is refused
 * before reading; chunked bodies are counted as they come) and the handler
 * gets the whole request. Must never buffer more than the limit nor crash
 * on any request line, header or body.
 *
 * One loop thread owns libmicrohttpd (external epoll mode) and, when given,
 * the gRPC engine: each turn it resumes fibers whose calls ended, resumes
 * connections whose request threads finished, lets libmicrohttpd read and
 * write, then waits on all of it at once. A request being answered is
 * suspended (MHD_suspend_connection) and its state stays put until
 * libmicrohttpd reports the request finished, so neither a fiber nor a
 * request thread can outlive what it points into.
 *
 * libmicrohttpd does not watch a suspended connection, so the loop does:
 * with a gRPC engine, each suspended connection's socket sits in an epoll
 * set of its own (watch_ep) for the client hanging up. Then the request's
 * cancel flag is raised and its gRPC call ended (kvc_grpc_client_cancel),
 * which resets the call's stream: a client that gives up does not leave
 * the model server working for nobody.
 */
#define _GNU_SOURCE /* pthread_setaffinity_np, pthread_setname_np */
#include "http_server.h"

#include "fiber.h"
#include "grpc_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

/* Each request thread's stack. Handlers keep big data on the heap; 1 MiB
 * keeps 1024 of them within 1 GiB of address space, which a 32-bit ARM
 * gateway can spare (glibc's default would be 8 MiB each). */
#define S_STACK_SIZE (1u << 20)
/* Most bytes past the limit read and dropped before answering 413. */
#define S_DRAIN_MAX (64ull << 20)
/* Longest wait of one loop turn (the stop flag is also checked then). */
#define S_TURN_MS 1000

typedef struct s_req_state s_req_state_t;

struct kvc_http_server {
    struct MHD_Daemon *mhd;
    kvc_http_handler_fn handler;
    void *arg;
    kvc_http_opts_t opts;
    uint16_t port;
    pthread_t loop;
    int loop_started;
    int evfd;             /* wakes the loop: a request thread finished, or stop */
    atomic_int signalled; /* evfd was written and not yet drained */
    atomic_int stopping;  /* destroy was called */
    int inflight;         /* requests in a fiber or a thread (loop thread only) */
    int watch_ep;         /* suspended connections watched for hang-ups, or -1 */
    pthread_mutex_t mu;
    s_req_state_t *finished; /* request threads done, to resume (under mu) */
};

/* Per-request state kept by MHD between calls of the access handler. */
enum { S_COLLECTING, S_RUNNING, S_ANSWERED };
struct s_req_state {
    kvc_http_server_t *srv;
    struct MHD_Connection *conn;
    kvc_buf_t body;
    int too_big;
    int phase;
    int suspended;
    int watch_fd;         /* the socket while in watch_ep, else -1 (loop thread) */
    atomic_int cancelled; /* the client hung up: the handler's calls end */
    kvc_http_req_t req;
    kvc_http_resp_t resp;
    s_req_state_t *next; /* on srv->finished */
};

int kvc_json_append_str(kvc_buf_t *buf, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    int rc = kvc_buf_append(buf, "\"", 1);
    size_t start = 0;
    for (size_t i = 0; i < len && rc == 0; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        rc = kvc_buf_append(buf, s + start, i - start);
        char esc[7] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15], 0};
        if (rc == 0) {
            if (c == '"' || c == '\\') {
                esc[1] = (char)c;
                rc = kvc_buf_append(buf, esc, 2);
            } else if (c == '\n') {
                rc = kvc_buf_append(buf, "\\n", 2);
            } else {
                rc = kvc_buf_append(buf, esc, 6);
            }
        }
        start = i + 1;
    }
    if (rc == 0)
        rc = kvc_buf_append(buf, s + start, len - start);
    if (rc == 0)
        rc = kvc_buf_append(buf, "\"", 1);
    return rc;
}

void kvc_http_error(kvc_http_resp_t *resp, int status, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    resp->status = status;
    snprintf(resp->content_type, sizeof resp->content_type, "application/json");
    resp->header_name[0] = '\0';
    kvc_buf_reset(&resp->body);
    if (kvc_buf_append(&resp->body, "{\"error\": ", 10) != 0 ||
        kvc_json_append_str(&resp->body, msg, strlen(msg)) != 0 ||
        kvc_buf_append(&resp->body, "}", 1) != 0) {
        kvc_buf_reset(&resp->body);
        kvc_buf_append(&resp->body, "{\"error\": \"error\"}", 18);
    }
}

const char *kvc_http_header(const kvc_http_req_t *req, const char *name)
{
    if (!req->conn) /* a request that did not come over HTTP (forwarded) */
        return NULL;
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

typedef struct {
    const char *key;
    const char **values;
    size_t max, n;
} s_query_t;

/* MHD iterator: keeps the values whose key matches. */
static enum MHD_Result s_query_it(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *value)
{
    s_query_t *q = cls;
    if (key && strcmp(key, q->key) == 0 && q->n < q->max)
        q->values[q->n++] = value ? value : "";
    return MHD_YES;
}

size_t kvc_http_query_all(const kvc_http_req_t *req, const char *key, const char **values,
                          size_t max)
{
    s_query_t q = {key, values, max, 0};
    MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, s_query_it, &q);
    return q.n;
}

/* 1 if Accept-Encoding lists gzip without refusing it (q=0). */
static int s_accepts_gzip(struct MHD_Connection *conn)
{
    const char *ae =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT_ENCODING);
    const char *g = ae ? strstr(ae, "gzip") : NULL;
    if (!g)
        return 0;
    const char *p = g + 4;
    p += strspn(p, " ");
    if (*p != ';')
        return 1;
    p++;
    p += strspn(p, " ");
    if (p[0] != 'q' || p[1] != '=')
        return 1;
    return strtod(p + 2, NULL) > 0;
}

/* gzip-compresses data into a new buffer; NULL on failure (send it plain). */
static char *s_gzip(const char *data, size_t len, size_t *out_len)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return NULL;
    uLong bound = deflateBound(&zs, (uLong)len);
    char *out = kvc_malloc(bound);
    if (!out) {
        deflateEnd(&zs);
        return NULL;
    }
    zs.next_in = (Bytef *)data;
    zs.avail_in = (uInt)len;
    zs.next_out = (Bytef *)out;
    zs.avail_out = (uInt)bound;
    int rc = deflate(&zs, Z_FINISH);
    *out_len = zs.total_out;
    deflateEnd(&zs);
    if (rc != Z_STREAM_END) {
        kvc_free(out);
        return NULL;
    }
    return out;
}

/* Queues resp on connection and releases everything. Text and JSON bodies
 * over 1 KiB are gzip-compressed when the client asks (Prometheus always
 * does), which keeps a 100-site /federate well under 100 KB on the wire. */
static enum MHD_Result s_send(struct MHD_Connection *conn, kvc_http_resp_t *resp)
{
    size_t len = 0;
    char *data = kvc_buf_detach(&resp->body, &len);
    int gzipped = 0;
    if (data && len > 1024 && len <= 0x7fffffffu && !resp->header_name[0] &&
        (strncmp(resp->content_type, "text/", 5) == 0 ||
         strncmp(resp->content_type, "application/json", 16) == 0) &&
        s_accepts_gzip(conn)) {
        size_t zlen = 0;
        char *z = s_gzip(data, len, &zlen);
        if (z) {
            kvc_free(data);
            data = z;
            len = zlen;
            gzipped = 1;
        }
    }
    struct MHD_Response *r =
        data ? MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE) : NULL;
    if (!r) {
        kvc_free(data);
        return MHD_NO;
    }
    if (resp->content_type[0])
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, resp->content_type);
    if (resp->header_name[0])
        MHD_add_response_header(r, resp->header_name, resp->header_value);
    if (resp->served_by[0])
        MHD_add_response_header(r, "Kvc-Served-By", resp->served_by);
    if (resp->route[0])
        MHD_add_response_header(r, "Kvc-Route", resp->route);
    if (gzipped)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_ENCODING, "gzip");
    MHD_add_response_header(r, MHD_HTTP_HEADER_VARY, "Accept-Encoding");
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)resp->status, r);
    MHD_destroy_response(r);
    return ret;
}

/* Answers an error without calling the handler. */
static enum MHD_Result s_send_error(kvc_http_server_t *self, struct MHD_Connection *conn,
                                    int status, const char *msg)
{
    kvc_http_resp_t resp;
    memset(&resp, 0, sizeof resp);
    kvc_buf_init(&resp.body, 4096);
    kvc_http_error(&resp, status, "%s", msg);
    return s_send(conn, &resp);
}

/* Answers 413 for a body over the limit. */
static enum MHD_Result s_send_too_big(kvc_http_server_t *self, struct MHD_Connection *conn)
{
    char msg[128];
    snprintf(msg, sizeof msg, "request body exceeds the limit of %zu bytes", self->opts.max_body);
    return s_send_error(self, conn, 413, msg);
}

/* Wakes the loop thread (any thread). */
static void s_wake(kvc_http_server_t *self)
{
    uint64_t one = 1;
    ssize_t w = write(self->evfd, &one, sizeof one);
    (void)w; /* a full counter still wakes the loop */
    /* After the write: the loop drains evfd only once it sees this, so a
     * drain can never come between this write and the loop noticing. */
    atomic_store(&self->signalled, 1);
}

/* Watches a suspended request's connection for the client hanging up
 * (EPOLLRDHUP: it closed, or shut its sending side, as nginx also takes
 * for giving up). */
static void s_watch(kvc_http_server_t *self, s_req_state_t *st)
{
    if (self->watch_ep < 0 || st->watch_fd >= 0)
        return;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(st->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci)
        return;
    struct epoll_event ev = {.events = EPOLLRDHUP, .data.ptr = st};
    if (epoll_ctl(self->watch_ep, EPOLL_CTL_ADD, ci->connect_fd, &ev) == 0)
        st->watch_fd = ci->connect_fd;
}

/* Stops watching (before the connection is resumed or closed). */
static void s_unwatch(kvc_http_server_t *self, s_req_state_t *st)
{
    if (st->watch_fd < 0)
        return;
    epoll_ctl(self->watch_ep, EPOLL_CTL_DEL, st->watch_fd, NULL);
    st->watch_fd = -1;
}

/* Parks a request's connection while a fiber or thread answers it. */
static void s_park(kvc_http_server_t *self, s_req_state_t *st)
{
    MHD_suspend_connection(st->conn);
    st->suspended = 1;
    self->inflight++;
    s_watch(self, st);
}

/* Wakes a parked connection to send its answer (loop thread). */
static void s_unpark(kvc_http_server_t *self, s_req_state_t *st)
{
    st->suspended = 0;
    self->inflight--;
    s_unwatch(self, st);
    MHD_resume_connection(st->conn);
}

/* Ends the gRPC calls of requests whose clients hung up. */
static void s_check_hangups(kvc_http_server_t *self)
{
    struct epoll_event ev[32];
    int n = epoll_wait(self->watch_ep, ev, 32, 0);
    for (int i = 0; i < n; i++) {
        s_req_state_t *st = ev[i].data.ptr;
        s_unwatch(self, st);
        atomic_store(&st->cancelled, 1);
        kvc_grpc_client_cancel(self->opts.engine, &st->cancelled);
    }
}

/* The server whose loop runs on this thread (kvc_http_loop_spawn). */
static __thread kvc_http_server_t *s_loop_self;

typedef struct {
    kvc_http_server_t *srv;
    void (*fn)(void *);
    void *arg;
} s_task_t;

/* A spawned task's fiber (loop thread). */
static void s_task_main(void *arg)
{
    s_task_t t = *(s_task_t *)arg;
    kvc_free(arg);
    t.fn(t.arg);
    t.srv->inflight--;
}

int kvc_http_loop_spawn(void (*fn)(void *arg), void *arg)
{
    kvc_http_server_t *self = s_loop_self;
    if (!self || kvc_fiber_current())
        return KVC_ESTATE;
    s_task_t *t = kvc_malloc(sizeof *t);
    if (!t)
        return KVC_ENOMEM;
    *t = (s_task_t){.srv = self, .fn = fn, .arg = arg};
    kvc_fiber_t *f = kvc_fiber_new(s_task_main, t);
    if (!f) {
        kvc_free(t);
        return KVC_ENOMEM;
    }
    self->inflight++;
    kvc_fiber_resume(f); /* runs until its first wait, or to its end */
    return KVC_OK;
}

/* Runs the handler and checks it answered. */
static void s_run_handler(s_req_state_t *st)
{
    kvc_http_server_t *self = st->srv;
    self->handler(self->arg, &st->req, &st->resp);
    if (st->resp.status < 100 || st->resp.status > 599)
        kvc_http_error(&st->resp, 500, "internal error: handler gave no answer");
}

/* A request's fiber (loop thread): answers, then wakes its connection if
 * the access handler parked it. */
static void s_fiber_main(void *arg)
{
    s_req_state_t *st = arg;
    kvc_grpc_cancel_flag_set(&st->cancelled); /* this fiber's */
    s_run_handler(st);
    st->phase = S_ANSWERED;
    if (st->suspended)
        s_unpark(st->srv, st);
}

/* A request's thread: answers, then hands the request back to the loop,
 * which resumes the connection (libmicrohttpd is the loop's alone). */
static void *s_thread_main(void *arg)
{
    s_req_state_t *st = arg;
    kvc_http_server_t *self = st->srv;
    kvc_grpc_cancel_flag_set(&st->cancelled);
    s_run_handler(st);
    kvc_grpc_cancel_flag_set(NULL);
    pthread_mutex_lock(&self->mu);
    st->next = self->finished;
    self->finished = st;
    pthread_mutex_unlock(&self->mu);
    s_wake(self);
    return NULL;
}

/* libmicrohttpd's access handler: collects the body, then calls ours. */
static enum MHD_Result s_access(void *cls, struct MHD_Connection *conn, const char *url,
                                const char *method, const char *version, const char *upload,
                                size_t *upload_size, void **con_cls)
{
    kvc_http_server_t *self = cls;
    s_req_state_t *st = *con_cls;
    if (!st) {
        /*
         * First call: headers only. A declared oversize body is refused now
         * when the client waits for "100 Continue" or the body is absurd;
         * otherwise it is read and dropped first, as a lingering close
         * would: answering with the body still coming makes the kernel
         * reset the connection, and the client may never see the 413.
         */
        int drain = 0;
        const char *cl =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl) {
            char *end = NULL;
            unsigned long long n = strtoull(cl, &end, 10);
            if (end == cl || *end || n > self->opts.max_body) {
                const char *expect =
                    MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_EXPECT);
                drain = end != cl && !*end && !expect && n - self->opts.max_body <= S_DRAIN_MAX;
                if (!drain)
                    return s_send_too_big(self, conn);
            }
        }
        st = kvc_calloc(1, sizeof *st);
        if (!st)
            return MHD_NO;
        st->too_big = drain;
        st->watch_fd = -1;
        kvc_buf_init(&st->body, self->opts.max_body);
        *con_cls = st;
        return MHD_YES;
    }
    if (*upload_size) {
        if (!st->too_big && kvc_buf_append(&st->body, upload, *upload_size) != 0)
            st->too_big = 1;
        *upload_size = 0;
        return MHD_YES;
    }
    if (st->too_big)
        return s_send_too_big(self, conn);
    if (st->phase == S_ANSWERED)
        return s_send(conn, &st->resp);
    if (st->phase == S_RUNNING)
        return MHD_YES; /* not ours to answer yet (never expected: suspended) */
    st->req = (kvc_http_req_t){
        .method = method,
        .path = url,
        .content_type =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE),
        .accept = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT),
        .inference_header_length =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Inference-Header-Content-Length"),
        .body = (const uint8_t *)(st->body.data ? st->body.data : ""),
        .body_len = st->body.len,
        .conn = conn,
    };
    memset(&st->resp, 0, sizeof st->resp);
    kvc_buf_init(&st->resp.body, self->opts.max_response);
    st->srv = self;
    st->conn = conn;
    st->phase = S_RUNNING;
    if (self->opts.inline_ok && self->opts.inline_ok(self->arg, &st->req)) {
        kvc_fiber_t *f = kvc_fiber_new(s_fiber_main, st);
        if (f && kvc_fiber_resume(f))
            return s_send(conn, &st->resp); /* answered without blocking */
        if (f) {
            /* It waits for a call: park the connection until it ends. */
            s_park(self, st);
            return MHD_YES;
        }
        /* no memory for a fiber: a thread may still do */
    }
    /* The thread hands the request back through the loop (this thread),
     * which cannot resume the connection before it is suspended below. */
    pthread_attr_t attr;
    pthread_t t;
    int ok = pthread_attr_init(&attr) == 0;
    if (ok) {
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attr, S_STACK_SIZE);
        ok = pthread_create(&t, &attr, s_thread_main, st) == 0;
        pthread_attr_destroy(&attr);
    }
    if (!ok) {
        st->phase = S_ANSWERED;
        kvc_http_error(&st->resp, 503, "server busy: cannot start a request thread");
        return s_send(conn, &st->resp);
    }
    s_park(self, st); /* before the loop can see the thread finish */
    return MHD_YES;
}

/* Frees the per-request state when MHD is done with the request. */
static void s_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                        enum MHD_RequestTerminationCode toe)
{
    s_req_state_t *st = *con_cls;
    if (st) {
        kvc_buf_free(&st->body);
        kvc_buf_free(&st->resp.body);
        kvc_free(st);
        *con_cls = NULL;
    }
}

/* Resumes the connections whose request threads have finished. */
static void s_resume_finished(kvc_http_server_t *self)
{
    if (!atomic_exchange(&self->signalled, 0))
        return;
    uint64_t n;
    ssize_t r = read(self->evfd, &n, sizeof n);
    (void)r; /* drained: the next write wakes the loop again */
    pthread_mutex_lock(&self->mu);
    s_req_state_t *st = self->finished;
    self->finished = NULL;
    pthread_mutex_unlock(&self->mu);
    while (st) {
        s_req_state_t *next = st->next;
        st->next = NULL;
        st->phase = S_ANSWERED;
        s_unpark(self, st);
        st = next;
    }
}

/* The loop thread (see the top of this file). */
static void *s_loop_main(void *arg)
{
    kvc_http_server_t *self = arg;
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(self->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    /* fds: libmicrohttpd, evfd, the hook's, and watch_ep last */
    int fds[3 + KVC_HTTP_HOOK_FDS] = {info ? info->epoll_fd : -1, self->evfd};
    short revents[3 + KVC_HTTP_HOOK_FDS] = {0};
    int n_fds = 2;
    for (int i = 0; i < self->opts.n_hook_fds && i < KVC_HTTP_HOOK_FDS; i++)
        fds[n_fds++] = self->opts.hook_fds[i];
    int watch_ix = -1;
    if (self->watch_ep >= 0) {
        watch_ix = n_fds;
        fds[n_fds++] = self->watch_ep;
    }
    s_loop_self = self;
    if (self->opts.engine)
        kvc_grpc_client_own(self->opts.engine);
    int last_turn = 0, quiet = 0;
    for (;;) {
        kvc_fiber_t *f;
        while ((f = kvc_fiber_next_ready()) != NULL)
            kvc_fiber_resume(f);
        s_resume_finished(self);
        int hook_wait = self->opts.hook && !quiet ? self->opts.hook(self->opts.hook_arg) : -1;
        MHD_run(self->mhd);
        /* A request that came in on a kept-alive connection during the last
         * turn is in progress: it must end before libmicrohttpd stops. */
        if (last_turn && self->inflight == 0)
            break;
        last_turn = 0;
        if (atomic_load(&self->stopping) && !quiet) {
            /* No new connections from here on (the socket is ours to close). */
            MHD_socket s = MHD_quiesce_daemon(self->mhd);
            if (s != MHD_INVALID_SOCKET)
                close(s);
            quiet = 1;
        }
        /* Stop once nothing is in progress; one more turn sends the last answers. */
        if (quiet && self->inflight == 0)
            last_turn = 1;
        int wait_ms = S_TURN_MS;
        MHD_UNSIGNED_LONG_LONG to = 0;
        if (last_turn || hook_wait == 0 || kvc_fiber_has_ready())
            wait_ms = 0;
        else if (hook_wait > 0 && hook_wait < wait_ms)
            wait_ms = hook_wait;
        else if (MHD_get_timeout(self->mhd, &to) == MHD_YES && to < (MHD_UNSIGNED_LONG_LONG)wait_ms)
            wait_ms = (int)to;
        if (self->opts.engine) {
            kvc_grpc_client_run(self->opts.engine, fds, revents, n_fds, wait_ms);
            if (watch_ix >= 0 && revents[watch_ix])
                s_check_hangups(self);
        } else {
            struct pollfd p[3 + KVC_HTTP_HOOK_FDS];
            for (int i = 0; i < n_fds; i++)
                p[i] = (struct pollfd){.fd = fds[i], .events = POLLIN};
            poll(p, (nfds_t)n_fds, wait_ms);
        }
    }
    s_loop_self = NULL;
    if (self->opts.engine)
        kvc_grpc_client_disown(self->opts.engine);
    kvc_fiber_thread_cleanup();
    return NULL;
}

/* Frees the server once its loop and libmicrohttpd are stopped. */
static void s_free(kvc_http_server_t *self)
{
    pthread_mutex_destroy(&self->mu);
    if (self->evfd >= 0)
        close(self->evfd);
    if (self->watch_ep >= 0)
        close(self->watch_ep);
    kvc_free(self);
}

/* Resolves "HOST:PORT" (HOST may be [v6]) into addr. */
static int s_parse_listen(const char *listen, struct sockaddr_storage *addr, kvc_err_t *err)
{
    char host[256];
    const char *colon = strrchr(listen, ':');
    if (!colon || colon == listen || strlen(colon + 1) == 0)
        return kvc_err_set(err, KVC_EINVAL, "http.listen: expected HOST:PORT, got \"%s\"", listen);
    size_t hlen = (size_t)(colon - listen);
    const char *h = listen;
    if (h[0] == '[' && hlen >= 2 && h[hlen - 1] == ']') {
        h++;
        hlen -= 2;
    }
    if (hlen >= sizeof host)
        return kvc_err_set(err, KVC_EINVAL, "http.listen: host too long");
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    int64_t port;
    if (kvc_parse_i64(colon + 1, 0, 65535, &port) != 0)
        return kvc_err_set(err, KVC_EINVAL, "http.listen: invalid port in \"%s\"", listen);
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *res = NULL;
    char ps[8];
    snprintf(ps, sizeof ps, "%d", (int)port);
    int rc = getaddrinfo(host, ps, &hints, &res);
    if (rc != 0 || !res)
        return kvc_err_set(err, KVC_EINVAL, "http.listen: cannot resolve \"%s\": %s", host,
                           gai_strerror(rc));
    memcpy(addr, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return KVC_OK;
}

kvc_http_server_t *kvc_http_server_new(const char *listen, const kvc_http_opts_t *opts,
                                       kvc_http_handler_fn handler, void *arg, kvc_err_t *err)
{
    struct sockaddr_storage addr;
    memset(&addr, 0, sizeof addr);
    if (s_parse_listen(listen, &addr, err) != 0)
        return NULL;
    kvc_http_server_t *self = kvc_calloc(1, sizeof *self);
    if (!self) {
        kvc_err_set(err, KVC_ENOMEM, "out of memory");
        return NULL;
    }
    if (opts->n_hook_fds < 0 || opts->n_hook_fds > KVC_HTTP_HOOK_FDS ||
        (opts->n_hook_fds && !opts->hook)) {
        kvc_free(self);
        kvc_err_set(err, KVC_EINVAL, "http: at most %d hook descriptors, with a hook",
                    KVC_HTTP_HOOK_FDS);
        return NULL;
    }
    self->handler = handler;
    self->arg = arg;
    self->opts = *opts;
    if (!self->opts.max_connections)
        self->opts.max_connections = 1024;
    if (!self->opts.timeout_s)
        self->opts.timeout_s = 30;
    if (!self->opts.max_response)
        self->opts.max_response = (size_t)256 << 20;
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (addr.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    if (pthread_mutex_init(&self->mu, NULL) != 0) {
        kvc_err_set(err, KVC_EIO, "http: cannot create the loop's lock");
        kvc_free(self);
        return NULL;
    }
    self->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    /* Hang-ups can only end calls the loop drives: no engine, no watching. */
    self->watch_ep = self->opts.engine ? epoll_create1(EPOLL_CLOEXEC) : -1;
    if (self->evfd < 0 || (self->opts.engine && self->watch_ep < 0)) {
        kvc_err_set(err, KVC_EIO, "http: cannot create the loop's event descriptors");
        goto fail;
    }
    self->mhd = MHD_start_daemon(
        flags, 0, NULL, NULL, s_access, self, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_CONNECTION_TIMEOUT, self->opts.timeout_s, MHD_OPTION_CONNECTION_LIMIT,
        self->opts.max_connections, MHD_OPTION_NOTIFY_COMPLETED, s_completed, self, MHD_OPTION_END);
    if (!self->mhd) {
        kvc_err_set(err, KVC_EIO, "http.listen: cannot serve on %s (in use?)", listen);
        goto fail;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(self->mhd, MHD_DAEMON_INFO_BIND_PORT);
    self->port = info ? info->port : 0;
    if (pthread_create(&self->loop, NULL, s_loop_main, self) != 0) {
        kvc_err_set(err, KVC_EIO, "http: cannot start the loop thread");
        MHD_stop_daemon(self->mhd);
        goto fail;
    }
    self->loop_started = 1;
    if (self->opts.pin) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(self->opts.cpu, &set);
        int rc = self->opts.cpu >= 0 && self->opts.cpu < CPU_SETSIZE
                     ? pthread_setaffinity_np(self->loop, sizeof set, &set)
                     : EINVAL;
        if (rc != 0) {
            kvc_err_set(err, KVC_EINVAL, "http: cannot pin the loop thread to CPU %d: %s",
                        self->opts.cpu, strerror(rc));
            kvc_http_server_destroy(&self);
            return NULL;
        }
    }
    pthread_setname_np(self->loop, "kvc-http");
    return self;

fail:
    s_free(self);
    return NULL;
}

uint16_t kvc_http_server_port(const kvc_http_server_t *self)
{
    return self->port;
}

void kvc_http_server_destroy(kvc_http_server_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    kvc_http_server_t *self = *self_p;
    if (self->loop_started) {
        atomic_store(&self->stopping, 1);
        s_wake(self);
        pthread_join(self->loop, NULL);
    }
    MHD_stop_daemon(self->mhd);
    s_free(self);
    *self_p = NULL;
}
