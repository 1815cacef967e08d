/*
 * Unit tests of proxy/grpc_client.c over h2c: kvc_grpc_call against a
 * scripted in-test HTTP/2 server (nghttp2) on a loopback TCP listener bound
 * to port 0.
 *
 * The server runs on its own thread: a poll() loop over its listener, its
 * connections and a pipe that tells it to stop. It works under a mutex and
 * broadcasts a condition after every round, so the test waits for what the
 * server saw with a deadline, never with a sleep. Each test scripts the
 * answer (a mode) before it starts the server, makes its calls (blocking)
 * on the test's thread, then checks the gRPC outcome, the client's counters
 * and what the server saw.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <linux/sockios.h>
#include <cmocka.h>
#include <nghttp2/nghttp2.h>

#include "base.h"
#include "grpc_client.h"

/* How long the test waits for the server to see something. */
#define S_WAIT_MS 10000
/* The timeout of calls that should succeed. */
#define S_CALL_MS 10000
#define S_SV_CONNS 8
#define S_SV_STREAMS 64
#define S_SV_BODY_MAX (1u << 20)
#define S_THREADS 16
#define S_PATH "/pkg.Svc/Method"

/* The monotonic clock in whole ms, truncated as the client's own clock is. */
static int64_t s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- The in-test server ---------------------------------------------------- */

/* How the server answers each complete request. */
typedef enum {
    S_ANSWER,        /* 200, one message (reply, or the request echoed), grpc-status 0 */
    S_NO_STATUS,     /* as S_ANSWER, but the trailers carry no grpc-status */
    S_TRAILERS_ONLY, /* one HEADERS with END_STREAM: 200, grpc-status 5, grpc-message */
    S_HTTP_ERROR,    /* :status `status`, END_STREAM, nothing else */
    S_NO_MESSAGE,    /* 200, then trailers with grpc-status 0: no DATA */
    S_TRUNCATED,     /* a prefix announcing 10 bytes, 3 bytes, trailers grpc-status 0 */
    S_BIG,           /* a 4096-byte message, trailers grpc-status 0 */
    S_RESET,         /* RST_STREAM with rst_code */
    S_GOAWAY,        /* S_ANSWER, then GOAWAY(last_stream_id = that stream) */
    S_DROP,          /* closes the TCP connection */
    S_IGNORE,        /* never answers */
    S_GATHER         /* holds requests until `gather` wait, then echoes them all */
} s_mode_t;

/* What follows an answer's body. */
typedef enum {
    S_TR_OK,       /* trailers: grpc-status 0 */
    S_TR_NO_STATUS /* trailers without grpc-status */
} s_trailers_t;

typedef struct s_server s_server_t;

/* One accepted connection. */
typedef struct {
    s_server_t *sv;
    int fd; /* -1 once closed */
    nghttp2_session *ns;
    int drop; /* close it once the current read is done */
} s_sconn_t;

/* What the server saw of one stream, and its answer. */
typedef struct {
    s_sconn_t *conn;
    int32_t id;
    char method[16], scheme[16], path[128], authority[64];
    char content_type[64], te[32], timeout[32];
    uint8_t *body; /* malloc'd */
    size_t body_len, body_cap;
    int complete; /* END_STREAM received */
    int closed;   /* closed on the server's side */
    int n_rst;    /* RST_STREAM frames received */
    uint32_t rst_code;
    uint8_t *resp; /* malloc'd: the answer's body, framed */
    size_t resp_len, resp_off;
    s_trailers_t trailers;
} s_sstream_t;

struct s_server {
    pthread_mutex_t mu;  /* held by the server thread while it works */
    pthread_cond_t cond; /* broadcast after each round (CLOCK_MONOTONIC) */
    pthread_t thread;
    int running;
    int wake[2]; /* a byte on wake[1] stops the thread */
    int listen_fd;
    char url[64];
    char authority[32];
    /* The script: set before s_sv_run, or later under mu. */
    s_mode_t mode;
    int first_only;     /* only the first request gets `mode`; later ones S_ANSWER */
    const char *status; /* S_HTTP_ERROR */
    uint32_t rst_code;  /* S_RESET */
    int gather;         /* S_GATHER */
    const void *reply;  /* S_ANSWER's message; NULL echoes the request */
    size_t reply_len;
    /* What it saw (under mu). */
    s_sconn_t conns[S_SV_CONNS];
    int n_conns;
    s_sstream_t st[S_SV_STREAMS];
    int n;
    int n_complete;
    int open, max_open; /* streams open now, and at most */
    int waiting[S_SV_STREAMS];
    int n_waiting; /* S_GATHER */
    int goaway_submitted, goaway_sent;
    int goaway_conn; /* the connection that sent it */
    int failed;      /* something went wrong in the server itself */
};

/* An nghttp2 header field from two strings. */
static nghttp2_nv s_nv(const char *name, const char *value)
{
    return (nghttp2_nv){(uint8_t *)name, (uint8_t *)value, strlen(name), strlen(value),
                        NGHTTP2_NV_FLAG_NONE};
}

/* The server's record of stream id on connection c, or NULL. */
static s_sstream_t *s_sv_find(s_server_t *sv, const s_sconn_t *c, int32_t id)
{
    for (int i = 0; i < sv->n; i++)
        if (sv->st[i].conn == c && sv->st[i].id == id)
            return &sv->st[i];
    return NULL;
}

/* nghttp2 send callback: straight to the non-blocking socket. */
static ssize_t s_sv_send(nghttp2_session *ns, const uint8_t *p, size_t n, int flags, void *ud)
{
    s_sconn_t *c = ud;
    ssize_t k = send(c->fd, p, n, MSG_NOSIGNAL);
    if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return NGHTTP2_ERR_WOULDBLOCK;
    if (k < 0)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    return k;
}

/* The answer's body, then its trailers. */
static ssize_t s_sv_read(nghttp2_session *ns, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                         nghttp2_data_source *src, void *ud)
{
    s_sconn_t *c = ud;
    s_sstream_t *st = src->ptr;
    size_t k = st->resp_len - st->resp_off;
    if (k > len)
        k = len;
    if (k > 0)
        memcpy(buf, st->resp + st->resp_off, k);
    st->resp_off += k;
    if (st->resp_off < st->resp_len)
        return (ssize_t)k;
    *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
    nghttp2_nv tr = st->trailers == S_TR_OK ? s_nv("grpc-status", "0") : s_nv("x-note", "none");
    if (nghttp2_submit_trailer(ns, id, &tr, 1) != 0)
        c->sv->failed = 1;
    return (ssize_t)k;
}

/* Sets st's answer: a prefix announcing `announce` bytes, then n bytes of
 * msg (of 'z' when msg is NULL). */
static void s_sv_message(s_server_t *sv, s_sstream_t *st, uint32_t announce, const void *msg,
                         size_t n)
{
    st->resp = malloc(5 + n);
    if (!st->resp) {
        sv->failed = 1;
        return;
    }
    st->resp[0] = 0;
    st->resp[1] = (uint8_t)(announce >> 24);
    st->resp[2] = (uint8_t)(announce >> 16);
    st->resp[3] = (uint8_t)(announce >> 8);
    st->resp[4] = (uint8_t)announce;
    if (msg)
        memcpy(st->resp + 5, msg, n);
    else
        memset(st->resp + 5, 'z', n);
    st->resp_len = 5 + n;
}

/* Sets st's answer to its own request body (prefix included). */
static void s_sv_echo(s_server_t *sv, s_sstream_t *st)
{
    st->resp = malloc(st->body_len ? st->body_len : 1);
    if (!st->resp) {
        sv->failed = 1;
        return;
    }
    if (st->body_len)
        memcpy(st->resp, st->body, st->body_len);
    st->resp_len = st->body_len;
}

/* Sends 200, application/grpc, st's answer body, then its trailers. */
static void s_sv_respond(s_sconn_t *c, s_sstream_t *st, s_trailers_t trailers)
{
    st->trailers = trailers;
    const nghttp2_nv hd[] = {s_nv(":status", "200"), s_nv("content-type", "application/grpc")};
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = s_sv_read};
    if (nghttp2_submit_response(c->ns, st->id, hd, 2, &prd) != 0)
        c->sv->failed = 1;
}

/* Answers a complete request as the script says. */
static void s_sv_act(s_sconn_t *c, s_sstream_t *st)
{
    s_server_t *sv = c->sv;
    s_mode_t mode = sv->first_only && sv->n_complete > 1 ? S_ANSWER : sv->mode;
    int rv = 0;
    switch (mode) {
    case S_ANSWER:
    case S_GOAWAY:
    case S_NO_STATUS:
        if (sv->reply)
            s_sv_message(sv, st, (uint32_t)sv->reply_len, sv->reply, sv->reply_len);
        else
            s_sv_echo(sv, st);
        s_sv_respond(c, st, mode == S_NO_STATUS ? S_TR_NO_STATUS : S_TR_OK);
        break;
    case S_TRAILERS_ONLY: {
        const nghttp2_nv hd[] = {s_nv(":status", "200"), s_nv("content-type", "application/grpc"),
                                 s_nv("grpc-status", "5"),
                                 s_nv("grpc-message", "no%20such%20model")};
        rv = nghttp2_submit_response(c->ns, st->id, hd, 4, NULL);
        break;
    }
    case S_HTTP_ERROR: {
        const nghttp2_nv hd[] = {s_nv(":status", sv->status), s_nv("content-type", "text/plain")};
        rv = nghttp2_submit_response(c->ns, st->id, hd, 2, NULL);
        break;
    }
    case S_NO_MESSAGE: {
        const nghttp2_nv hd[] = {s_nv(":status", "200"), s_nv("content-type", "application/grpc")};
        const nghttp2_nv tr = s_nv("grpc-status", "0");
        rv = nghttp2_submit_headers(c->ns, NGHTTP2_FLAG_NONE, st->id, NULL, hd, 2, NULL);
        if (rv == 0)
            rv = nghttp2_submit_headers(c->ns, NGHTTP2_FLAG_END_STREAM, st->id, NULL, &tr, 1, NULL);
        break;
    }
    case S_TRUNCATED:
        s_sv_message(sv, st, 10, "abc", 3);
        s_sv_respond(c, st, S_TR_OK);
        break;
    case S_BIG:
        s_sv_message(sv, st, 4096, NULL, 4096);
        s_sv_respond(c, st, S_TR_OK);
        break;
    case S_RESET:
        rv = nghttp2_submit_rst_stream(c->ns, NGHTTP2_FLAG_NONE, st->id, sv->rst_code);
        break;
    case S_DROP:
        c->drop = 1;
        break;
    case S_IGNORE:
        break;
    case S_GATHER:
        sv->waiting[sv->n_waiting++] = (int)(st - sv->st);
        if (sv->n_waiting < sv->gather)
            break;
        for (int i = 0; i < sv->n_waiting; i++) {
            s_sstream_t *w = &sv->st[sv->waiting[i]];
            s_sv_echo(sv, w);
            s_sv_respond(w->conn, w, S_TR_OK);
        }
        sv->n_waiting = 0;
        break;
    }
    if (rv != 0)
        sv->failed = 1;
}

/* A request's HEADERS begin: a new stream record. */
static int s_sv_begin_headers(nghttp2_session *ns, const nghttp2_frame *f, void *ud)
{
    s_sconn_t *c = ud;
    s_server_t *sv = c->sv;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    if (sv->n == S_SV_STREAMS) {
        sv->failed = 1;
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    s_sstream_t *st = &sv->st[sv->n++];
    st->conn = c;
    st->id = f->hd.stream_id;
    if (++sv->open > sv->max_open)
        sv->max_open = sv->open;
    return 0;
}

/* Keeps the request fields the tests look at. */
static int s_sv_header(nghttp2_session *ns, const nghttp2_frame *f, const uint8_t *name,
                       size_t nlen, const uint8_t *value, size_t vlen, uint8_t flags, void *ud)
{
    s_sconn_t *c = ud;
    s_sstream_t *st = s_sv_find(c->sv, c, f->hd.stream_id);
    if (!st)
        return 0;
    const struct {
        const char *name;
        char *dst;
        size_t cap;
    } keep[] = {
        {":method", st->method, sizeof st->method},
        {":scheme", st->scheme, sizeof st->scheme},
        {":path", st->path, sizeof st->path},
        {":authority", st->authority, sizeof st->authority},
        {"content-type", st->content_type, sizeof st->content_type},
        {"te", st->te, sizeof st->te},
        {"grpc-timeout", st->timeout, sizeof st->timeout},
    };
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++)
        if (strlen(keep[i].name) == nlen && memcmp(keep[i].name, name, nlen) == 0)
            snprintf(keep[i].dst, keep[i].cap, "%.*s", (int)vlen, (const char *)value);
    return 0;
}

/* Appends request body bytes (bounded by S_SV_BODY_MAX). */
static int s_sv_data(nghttp2_session *ns, uint8_t flags, int32_t id, const uint8_t *p, size_t n,
                     void *ud)
{
    s_sconn_t *c = ud;
    s_sstream_t *st = s_sv_find(c->sv, c, id);
    if (!st || st->body_len + n > S_SV_BODY_MAX) {
        c->sv->failed = 1;
        return 0;
    }
    if (st->body_len + n > st->body_cap) {
        size_t cap = st->body_cap ? st->body_cap : 256;
        while (cap < st->body_len + n)
            cap *= 2;
        uint8_t *b = realloc(st->body, cap);
        if (!b) {
            c->sv->failed = 1;
            return 0;
        }
        st->body = b;
        st->body_cap = cap;
    }
    memcpy(st->body + st->body_len, p, n);
    st->body_len += n;
    return 0;
}

/* Records resets; acts on a complete request. */
static int s_sv_frame_recv(nghttp2_session *ns, const nghttp2_frame *f, void *ud)
{
    s_sconn_t *c = ud;
    s_server_t *sv = c->sv;
    s_sstream_t *st = s_sv_find(sv, c, f->hd.stream_id);
    if (f->hd.type == NGHTTP2_RST_STREAM) {
        if (st) {
            st->n_rst++;
            st->rst_code = f->rst_stream.error_code;
        }
        return 0;
    }
    if ((f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA) ||
        !(f->hd.flags & NGHTTP2_FLAG_END_STREAM) || !st || st->complete)
        return 0;
    st->complete = 1;
    sv->n_complete++;
    s_sv_act(c, st);
    return 0;
}

/* S_GOAWAY: once the first answer's trailers are out, GOAWAY follows. */
static int s_sv_frame_send(nghttp2_session *ns, const nghttp2_frame *f, void *ud)
{
    s_sconn_t *c = ud;
    s_server_t *sv = c->sv;
    if (sv->mode == S_GOAWAY && !sv->goaway_submitted && f->hd.type == NGHTTP2_HEADERS &&
        (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        sv->goaway_submitted = 1;
        if (nghttp2_submit_goaway(ns, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_NO_ERROR, NULL,
                                  0) != 0)
            sv->failed = 1;
    }
    if (f->hd.type == NGHTTP2_GOAWAY) {
        sv->goaway_sent = 1;
        sv->goaway_conn = (int)(c - sv->conns);
    }
    return 0;
}

/*
 * Whether the client's TCP has acknowledged everything the server sent on
 * the connection that sent GOAWAY (or that connection is closed). "Sent"
 * above only means nghttp2 handed the frame to send(): the kernel may
 * still hold it (Nagle waits for the ACK of the trailers before it), and
 * a client cannot act on a GOAWAY it has not received. Acknowledged bytes
 * are in the client's receive queue, where its next read finds them.
 */
static int s_goaway_acked(const s_server_t *sv, int unused)
{
    if (!sv->goaway_sent)
        return 0;
    int fd = sv->conns[sv->goaway_conn].fd;
    int unacked = 0;
    if (fd < 0)
        return 1;
    return ioctl(fd, SIOCOUTQ, &unacked) == 0 && unacked == 0;
}

/* Marks a stream closed on the server's side. */
static int s_sv_stream_close(nghttp2_session *ns, int32_t id, uint32_t code, void *ud)
{
    s_sconn_t *c = ud;
    s_sstream_t *st = s_sv_find(c->sv, c, id);
    if (st && !st->closed) {
        st->closed = 1;
        c->sv->open--;
    }
    return 0;
}

/* Closes a connection; its open streams count as closed. */
static void s_sv_conn_close(s_sconn_t *c)
{
    s_server_t *sv = c->sv;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    nghttp2_session_del(c->ns);
    c->ns = NULL;
    for (int i = 0; i < sv->n; i++) {
        if (sv->st[i].conn == c && !sv->st[i].closed) {
            sv->st[i].closed = 1;
            sv->open--;
        }
    }
}

/* Takes a new connection and queues the server's SETTINGS. */
static void s_sv_accept(s_server_t *sv)
{
    int fd = accept(sv->listen_fd, NULL, NULL);
    if (fd < 0)
        return;
    if (sv->n_conns == S_SV_CONNS || fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0) {
        close(fd);
        sv->failed = 1;
        return;
    }
    s_sconn_t *c = &sv->conns[sv->n_conns++];
    c->sv = sv;
    c->fd = fd;
    nghttp2_session_callbacks *cbs;
    if (nghttp2_session_callbacks_new(&cbs) != 0) {
        sv->failed = 1;
        s_sv_conn_close(c);
        return;
    }
    nghttp2_session_callbacks_set_send_callback(cbs, s_sv_send);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, s_sv_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, s_sv_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, s_sv_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, s_sv_frame_recv);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, s_sv_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, s_sv_stream_close);
    int rv = nghttp2_session_server_new(&c->ns, cbs, c);
    nghttp2_session_callbacks_del(cbs);
    if (rv != 0 || nghttp2_submit_settings(c->ns, NGHTTP2_FLAG_NONE, NULL, 0) != 0) {
        sv->failed = 1;
        s_sv_conn_close(c);
    }
}

/* Reads what a connection has into its session; closes it when the client
 * went away or the script drops it. */
static void s_sv_read_conn(s_sconn_t *c, short revents)
{
    if (!(revents & (POLLIN | POLLHUP | POLLERR)))
        return;
    while (!c->drop) {
        uint8_t buf[16384];
        ssize_t n = recv(c->fd, buf, sizeof buf, 0);
        if (n > 0) {
            if (nghttp2_session_mem_recv(c->ns, buf, (size_t)n) != n)
                c->sv->failed = 1;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        break; /* the client closed, or the socket failed */
    }
    s_sv_conn_close(c);
}

/* The server thread: poll, read, answer, send, tell the test. */
static void *s_sv_main(void *arg)
{
    s_server_t *sv = arg;
    for (;;) {
        struct pollfd p[2 + S_SV_CONNS];
        int which[2 + S_SV_CONNS];
        nfds_t n = 0;
        pthread_mutex_lock(&sv->mu);
        p[n++] = (struct pollfd){.fd = sv->wake[0], .events = POLLIN};
        p[n++] = (struct pollfd){.fd = sv->listen_fd, .events = POLLIN};
        for (int i = 0; i < sv->n_conns; i++) {
            s_sconn_t *c = &sv->conns[i];
            if (c->fd < 0)
                continue;
            short ev = POLLIN;
            if (nghttp2_session_want_write(c->ns))
                ev |= POLLOUT;
            which[n] = i;
            p[n++] = (struct pollfd){.fd = c->fd, .events = ev};
        }
        /* An ACK wakes no poll: look again each ms until the GOAWAY's is in. */
        int timeout = sv->goaway_sent && !s_goaway_acked(sv, 0) ? 1 : -1;
        pthread_mutex_unlock(&sv->mu);
        if (poll(p, n, timeout) < 0 && errno != EINTR) {
            pthread_mutex_lock(&sv->mu);
            sv->failed = 1;
            pthread_cond_broadcast(&sv->cond);
            pthread_mutex_unlock(&sv->mu);
            return NULL;
        }
        if (p[0].revents)
            return NULL;
        pthread_mutex_lock(&sv->mu);
        if (p[1].revents & POLLIN)
            s_sv_accept(sv);
        for (nfds_t k = 2; k < n; k++)
            if (p[k].revents)
                s_sv_read_conn(&sv->conns[which[k]], p[k].revents);
        for (int i = 0; i < sv->n_conns; i++) {
            s_sconn_t *c = &sv->conns[i];
            if (c->ns && nghttp2_session_send(c->ns) != 0)
                s_sv_conn_close(c); /* the client is gone */
        }
        pthread_cond_broadcast(&sv->cond);
        pthread_mutex_unlock(&sv->mu);
    }
}

/* Prepares an idle server (no socket, no thread). */
static int s_sv_init(s_server_t *sv)
{
    sv->listen_fd = sv->wake[0] = sv->wake[1] = -1;
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0)
        return -1;
    int bad = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 ||
              pthread_cond_init(&sv->cond, &ca) != 0;
    pthread_condattr_destroy(&ca);
    if (bad)
        return -1;
    if (pthread_mutex_init(&sv->mu, NULL) != 0) {
        pthread_cond_destroy(&sv->cond);
        return -1;
    }
    return 0;
}

/* Binds 127.0.0.1 port 0 (listening or not); returns the socket and its port. */
static int s_bind(uint16_t *port, int listening)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    if (listening)
        assert_int_equal(listen(fd, 16), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

/* Starts the server, with its script already set, on a loopback listener. */
static void s_sv_run(s_server_t *sv)
{
    uint16_t port;
    sv->listen_fd = s_bind(&port, 1);
    snprintf(sv->authority, sizeof sv->authority, "127.0.0.1:%u", port);
    snprintf(sv->url, sizeof sv->url, "http://%s", sv->authority);
    assert_int_equal(pipe(sv->wake), 0);
    assert_int_equal(pthread_create(&sv->thread, NULL, s_sv_main, sv), 0);
    sv->running = 1;
}

/* Stops the server thread (if it runs) and frees everything it holds. */
static void s_sv_free(s_server_t *sv)
{
    if (sv->running) {
        ssize_t w;
        do
            w = write(sv->wake[1], "x", 1);
        while (w < 0 && errno == EINTR);
        pthread_join(sv->thread, NULL);
        sv->running = 0;
    }
    for (int i = 0; i < sv->n_conns; i++)
        s_sv_conn_close(&sv->conns[i]);
    for (int i = 0; i < sv->n; i++) {
        free(sv->st[i].body);
        free(sv->st[i].resp);
    }
    for (int i = 0; i < 2; i++)
        if (sv->wake[i] >= 0)
            close(sv->wake[i]);
    if (sv->listen_fd >= 0)
        close(sv->listen_fd);
    pthread_cond_destroy(&sv->cond);
    pthread_mutex_destroy(&sv->mu);
}

typedef int (*s_pred_fn)(const s_server_t *sv, int arg);

/* Waits, under the server's mutex, until pred(sv, arg) holds; 0 when
 * S_WAIT_MS passed first. */
static int s_sv_wait(s_server_t *sv, s_pred_fn pred, int arg)
{
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    dl.tv_sec += S_WAIT_MS / 1000;
    pthread_mutex_lock(&sv->mu);
    int ok;
    while (!(ok = pred(sv, arg)))
        if (pthread_cond_timedwait(&sv->cond, &sv->mu, &dl) == ETIMEDOUT) {
            ok = pred(sv, arg);
            break;
        }
    pthread_mutex_unlock(&sv->mu);
    return ok;
}

/* Predicates for s_sv_wait. */
static int s_got_rst(const s_server_t *sv, int i)
{
    return i < sv->n && sv->st[i].n_rst > 0;
}

static int s_conn_closed(const s_server_t *sv, int i)
{
    return i < sv->n_conns && sv->conns[i].fd < 0;
}

/* A copy of what the server saw of its i-th stream (pointers stay the server's). */
static s_sstream_t s_sv_stream(s_server_t *sv, int i)
{
    pthread_mutex_lock(&sv->mu);
    s_sstream_t st = i < sv->n ? sv->st[i] : (s_sstream_t){0};
    pthread_mutex_unlock(&sv->mu);
    return st;
}

/* Server counters, read under its mutex. */
typedef struct {
    int n, n_complete, n_conns, max_open, failed;
} s_sv_counts_t;

static s_sv_counts_t s_sv_counts(s_server_t *sv)
{
    pthread_mutex_lock(&sv->mu);
    s_sv_counts_t k = {sv->n, sv->n_complete, sv->n_conns, sv->max_open, sv->failed};
    pthread_mutex_unlock(&sv->mu);
    return k;
}

/* ---- Fixture ------------------------------------------------------------------ */

typedef struct {
    s_server_t sv;
    kvc_grpc_client_t *client;
    kvc_grpc_result_t res[S_THREADS];
} s_fix_t;

static int s_setup(void **state)
{
    s_fix_t *f = calloc(1, sizeof *f);
    if (!f || s_sv_init(&f->sv) != 0) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

/* Frees what the test left, whether it passed or not. */
static int s_teardown(void **state)
{
    s_fix_t *f = *state;
    kvc_grpc_client_destroy(&f->client);
    s_sv_free(&f->sv);
    for (int i = 0; i < S_THREADS; i++)
        kvc_grpc_result_free(&f->res[i]);
    free(f);
    return 0;
}

/* Creates the client (opts may be NULL). */
static void s_client(s_fix_t *f, const kvc_grpc_opts_t *opts)
{
    f->client = kvc_grpc_client_new(opts);
    assert_non_null(f->client);
}

/* Calls S_PATH on the server with req into f->res[0] (freed first); returns
 * kvc_grpc_call's result. */
static int s_call(s_fix_t *f, const char *req, size_t len, uint32_t timeout_ms)
{
    kvc_grpc_result_free(&f->res[0]);
    return kvc_grpc_call(f->client, f->sv.url, S_PATH, (const uint8_t *)req, len, timeout_ms,
                         &f->res[0]);
}

/* Checks a call's return value and outcome; msg NULL: not checked. */
static void s_assert_res(int rc, const kvc_grpc_result_t *r, int code, long http, const char *msg)
{
    assert_string_equal(kvc_grpc_status_name(r->code), kvc_grpc_status_name(code));
    assert_int_equal(rc, kvc_grpc_code_to_err(code));
    assert_int_equal(r->http_status, http);
    if (msg)
        assert_string_equal(r->message, msg);
    if (code != KVC_GRPC_OK) {
        assert_null(r->data);
        assert_int_equal(r->len, 0);
    }
}

/* Checks the client's counters. */
static void s_assert_stats(s_fix_t *f, uint64_t calls, uint64_t failures, uint64_t connections,
                           uint64_t retried)
{
    kvc_grpc_stats_t s;
    kvc_grpc_client_stats(f->client, &s);
    assert_int_equal(s.calls, calls);
    assert_int_equal(s.failures, failures);
    assert_int_equal(s.connections, connections);
    assert_int_equal(s.retried, retried);
}

/* The server had no trouble of its own. */
static void s_assert_sv_ok(s_fix_t *f)
{
    assert_int_equal(s_sv_counts(&f->sv).failed, 0);
}

/* Starts a server with mode and a default client. */
static void s_start(s_fix_t *f, s_mode_t mode, const kvc_grpc_opts_t *opts)
{
    f->sv.mode = mode;
    s_sv_run(&f->sv);
    s_client(f, opts);
}

/* ---- Tests -------------------------------------------------------------------- */

/* (1) A normal answer, and what the server received: method, scheme, path,
 * authority, gRPC fields, grpc-timeout, and the framed body. A second call
 * (empty request) reuses the connection. */
static void test_unary_ok(void **state)
{
    s_fix_t *f = *state;
    static const char reply[] = "answer\0\xff";
    f->sv.reply = reply;
    f->sv.reply_len = sizeof reply - 1;
    s_start(f, S_ANSWER, NULL);

    static const char req[] = "hello\0req";
    int rc = s_call(f, req, sizeof req - 1, 4321);
    s_assert_res(rc, &f->res[0], KVC_GRPC_OK, 200, "");
    assert_int_equal(f->res[0].len, sizeof reply - 1);
    assert_memory_equal(f->res[0].data, reply, sizeof reply - 1);

    s_sstream_t st = s_sv_stream(&f->sv, 0);
    assert_int_equal(st.id, 1);
    assert_string_equal(st.method, "POST");
    assert_string_equal(st.scheme, "http");
    assert_string_equal(st.path, S_PATH);
    assert_string_equal(st.authority, f->sv.authority);
    assert_string_equal(st.content_type, "application/grpc");
    assert_string_equal(st.te, "trailers");
    assert_string_equal(st.timeout, "4321m");
    assert_int_equal(st.body_len, 5 + sizeof req - 1);
    assert_memory_equal(st.body, "\0\0\0\0\x09", 5);
    assert_memory_equal(st.body + 5, req, sizeof req - 1);

    rc = s_call(f, NULL, 0, 1000);
    s_assert_res(rc, &f->res[0], KVC_GRPC_OK, 200, "");
    assert_memory_equal(f->res[0].data, reply, sizeof reply - 1);
    st = s_sv_stream(&f->sv, 1);
    assert_int_equal(st.id, 3);
    assert_string_equal(st.timeout, "1000m");
    assert_int_equal(st.body_len, 5);
    assert_memory_equal(st.body, "\0\0\0\0\0", 5);
    s_assert_stats(f, 2, 0, 1, 0);
    assert_int_equal(s_sv_counts(&f->sv).n_conns, 1);
    s_assert_sv_ok(f);
}

/* (2) A message, then trailers without grpc-status: never success. */
static void test_no_grpc_status(void **state)
{
    s_fix_t *f = *state;
    s_start(f, S_NO_STATUS, NULL);
    int rc = s_call(f, "q", 1, S_CALL_MS);
    s_assert_res(rc, &f->res[0], KVC_GRPC_INTERNAL, 200, "backend sent no grpc-status");
    s_assert_stats(f, 1, 1, 1, 0);
    s_assert_sv_ok(f);
}

/* (3) Trailers-only: the status and the percent-decoded message come from
 * the one HEADERS frame. */
static void test_trailers_only(void **state)
{
    s_fix_t *f = *state;
    s_start(f, S_TRAILERS_ONLY, NULL);
    int rc = s_call(f, "q", 1, S_CALL_MS);
    s_assert_res(rc, &f->res[0], KVC_GRPC_NOT_FOUND, 200, "no such model");
    s_assert_stats(f, 1, 1, 1, 0);
    s_assert_sv_ok(f);
}

/* (4) HTTP statuses other than 200, without grpc-status, map per the spec;
 * the connection stays in use. */
static void test_http_status(void **state)
{
    s_fix_t *f = *state;
    f->sv.status = "503";
    s_start(f, S_HTTP_ERROR, NULL);
    int rc = s_call(f, "q", 1, S_CALL_MS);
    s_assert_res(rc, &f->res[0], KVC_GRPC_UNAVAILABLE, 503, "HTTP status 503 from backend");

    pthread_mutex_lock(&f->sv.mu);
    f->sv.status = "404";
    pthread_mutex_unlock(&f->sv.mu);
    rc = s_call(f, "q", 1, S_CALL_MS);
    s_assert_res(rc, &f->res[0], KVC_GRPC_UNIMPLEMENTED, 404, "HTTP status 404 from backend");
    s_assert_stats(f, 2, 2, 1, 0);
    s_assert_sv_ok(f);
}

/* (5) grpc-status 0 with no message at all. */
static void test_ok_without_message(void **state)
{
    s_fix_t *f = *state;
    s_start(f, S_NO_MESSAGE, NULL);
    int rc = s_call(f, "q", 1, S_CALL_MS);
    s_assert_res(rc, &f->res[0], KVC_GRPC_INTERNAL, 200,
                 "backend sent OK without a response message");
    s_assert_stats(f, 1, 1, 1, 0);
    s_assert_sv_ok(f);
}

/* (6) The body ends inside the message its prefix announced. */
static void test_truncated_message(void **state)
{
    s_fix_t *f = *state;
    s_start(f, S_TRUNCATED, NULL);
    int rc = s_call(f, "q", 1, S_CALL_MS);
    s_assert_res(rc, &f->res[0], KVC_GRPC_INTERNAL, 200, "response ended inside a message");
    s_assert_stats(f, 1, 1, 1, 0);
    s_assert_sv_ok(f);
}

/* (7) A message over max_message_size: refused, and the stream is reset
 * (CANCEL) so the server stops sending. */
static void test_message_too_big(void **state)
{
    s_fix_t *f = *state;
    kvc_grpc_opts_t o = {.max_message_size = 1024};
    s_start(f, S_BIG, &o);
    int rc = s_call(f, "q", 1, S_CALL_MS);
    s_assert_res(rc, &f->res[0], KVC_GRPC_RESOURCE_EXHAUSTED, 200,
                 "response message larger than the limit of 1024 bytes");
    assert_true(s_sv_wait(&f->sv, s_got_rst, 0));
    s_sstream_t st = s_sv_stream(&f->sv, 0);
    assert_int_equal(st.n_rst, 1);
    assert_int_equal(st.rst_code, NGHTTP2_CANCEL);
    s_assert_stats(f, 1, 1, 1, 0);
    s_assert_sv_ok(f);
}

/* (8a) RST_STREAM from the server maps by its error code. */
static void test_reset_codes(void **state)
{
    s_fix_t *f = *state;
    f->sv.rst_code = NGHTTP2_ENHANCE_YOUR_CALM;
    s_start(f, S_RESET, NULL);
    int rc = s_call(f, "q", 1, S_CALL_MS);
    s_assert_res(rc, &f->res[0], KVC_GRPC_RESOURCE_EXHAUSTED, 0,
                 "stream reset by the backend (HTTP/2 error 11)");

    pthread_mutex_lock(&f->sv.mu);
    f->sv.rst_code = NGHTTP2_INTERNAL_ERROR;
    pthread_mutex_unlock(&f->sv.mu);
    rc = s_call(f, "q", 1, S_CALL_MS);
    s_assert_res(rc, &f->res[0], KVC_GRPC_INTERNAL, 0,
                 "stream reset by the backend (HTTP/2 error 2)");
    s_assert_stats(f, 2, 2, 1, 0);
    s_assert_sv_ok(f);
}

/* (8b) REFUSED_STREAM: the server never processed it, so the call is made
 * again transparently, even without retry_lost. */
static void test_refused_retried(void **state)
{
    s_fix_t *f = *state;
    f->sv.rst_code = NGHTTP2_REFUSED_STREAM;
    f->sv.first_only = 1;
    s_start(f, S_RESET, NULL);
    int rc = s_call(f, "again", 5, S_CALL_MS);
    s_assert_res(rc, &f->res[0], KVC_GRPC_OK, 200, "");
    assert_int_equal(f->res[0].len, 5);
    assert_memory_equal(f->res[0].data, "again", 5);
    s_assert_stats(f, 1, 0, 1, 1);
    s_sv_counts_t k = s_sv_counts(&f->sv);
    assert_int_equal(k.n, 2);
    assert_int_equal(k.n_complete, 2);
    s_sstream_t a = s_sv_stream(&f->sv, 0), b = s_sv_stream(&f->sv, 1);
    assert_int_equal(b.body_len, a.body_len);
    assert_memory_equal(b.body, a.body, a.body_len);
    s_assert_sv_ok(f);
}

/* (9) GOAWAY after an answer: the next call goes on a new connection, and
 * the old one, left open by the server, is closed by the client. The test
 * waits until the GOAWAY has reached the client's socket: a call made
 * while it is still on its way goes on the old connection, as RFC 9113
 * 6.8 allows, and is retried on a new one once the GOAWAY refuses it
 * (counted in `retried`), which is a different case. */
static void test_goaway_new_connection(void **state)
{
    s_fix_t *f = *state;
    s_start(f, S_GOAWAY, NULL);
    int rc = s_call(f, "one", 3, S_CALL_MS);
    s_assert_res(rc, &f->res[0], KVC_GRPC_OK, 200, "");
    assert_memory_equal(f->res[0].data, "one", 3);
    assert_true(s_sv_wait(&f->sv, s_goaway_acked, 0));

    rc = s_call(f, "two", 3, S_CALL_MS);
    s_assert_res(rc, &f->res[0], KVC_GRPC_OK, 200, "");
    assert_memory_equal(f->res[0].data, "two", 3);
    s_assert_stats(f, 2, 0, 2, 0);
    s_sv_counts_t k = s_sv_counts(&f->sv);
    assert_int_equal(k.n_conns, 2);
    assert_int_equal(k.n, 2);
    s_sstream_t st = s_sv_stream(&f->sv, 1);
    assert_ptr_equal(st.conn, &f->sv.conns[1]);
    assert_int_equal(st.id, 1);
    assert_true(s_sv_wait(&f->sv, s_conn_closed, 0));
    s_assert_sv_ok(f);
}

/* (10a) The server closes the connection under a call it read: without
 * retry_lost the call fails, saying the connection was lost. */
static void test_connection_lost(void **state)
{
    s_fix_t *f = *state;
    s_start(f, S_DROP, NULL);
    int rc = s_call(f, "q", 1, S_CALL_MS);
    s_assert_res(rc, &f->res[0], KVC_GRPC_UNAVAILABLE, 0, NULL);
    assert_non_null(strstr(f->res[0].message, "connection lost"));
    s_assert_stats(f, 1, 1, 1, 0);
    assert_int_equal(s_sv_counts(&f->sv).n_complete, 1);
    s_assert_sv_ok(f);
}

/* (10b) With retry_lost, a call lost with the first connection is made
 * again on a new one. */
static void test_connection_lost_retried(void **state)
{
    s_fix_t *f = *state;
    f->sv.first_only = 1;
    kvc_grpc_opts_t o = {.retry_lost = 1};
    s_start(f, S_DROP, &o);
    int rc = s_call(f, "lost", 4, S_CALL_MS);
    s_assert_res(rc, &f->res[0], KVC_GRPC_OK, 200, "");
    assert_int_equal(f->res[0].len, 4);
    assert_memory_equal(f->res[0].data, "lost", 4);
    s_assert_stats(f, 1, 0, 2, 1);
    s_sv_counts_t k = s_sv_counts(&f->sv);
    assert_int_equal(k.n_conns, 2);
    assert_int_equal(k.n_complete, 2);
    s_assert_sv_ok(f);
}

/* (11) A server that never answers: the local deadline ends the call, and
 * the stream is reset (CANCEL) so the server can stop working on it. */
static void test_deadline(void **state)
{
    s_fix_t *f = *state;
    s_start(f, S_IGNORE, NULL);
    /* Measured in whole ms, as the client sets its deadline (truncated now +
     * timeout): in ns the call may end up to 1 ms short of 200. */
    int64_t t0 = s_now_ms();
    int rc = s_call(f, "q", 1, 200);
    int64_t took = s_now_ms() - t0;
    s_assert_res(rc, &f->res[0], KVC_GRPC_DEADLINE_EXCEEDED, 0, "deadline of 200 ms exceeded");
    assert_true(took >= 200);
    assert_true(took < 2000);
    assert_true(s_sv_wait(&f->sv, s_got_rst, 0));
    s_sstream_t st = s_sv_stream(&f->sv, 0);
    assert_true(st.complete);
    assert_int_equal(st.rst_code, NGHTTP2_CANCEL);
    s_assert_stats(f, 1, 1, 1, 0);
    s_assert_sv_ok(f);
}

/* One of the concurrent callers. */
typedef struct {
    s_fix_t *f;
    int i;
    pthread_barrier_t *go;
    char req[32];
    size_t len;
    int rc;
} s_worker_t;

static void *s_worker(void *arg)
{
    s_worker_t *w = arg;
    pthread_barrier_wait(w->go);
    w->rc = kvc_grpc_call(w->f->client, w->f->sv.url, S_PATH, (const uint8_t *)w->req, w->len,
                          S_CALL_MS, &w->f->res[w->i]);
    return NULL;
}

/* S_THREADS callers at once, answered only when `gather` requests wait at
 * the server; each gets its own echo, over one connection. */
static void s_many(s_fix_t *f, uint32_t max_streams, int gather)
{
    f->sv.gather = gather;
    kvc_grpc_opts_t o = {.max_streams = max_streams};
    s_start(f, S_GATHER, &o);
    pthread_barrier_t go;
    assert_int_equal(pthread_barrier_init(&go, NULL, S_THREADS), 0);
    s_worker_t w[S_THREADS];
    pthread_t th[S_THREADS];
    int started = 0;
    for (int i = 0; i < S_THREADS; i++) {
        w[i] = (s_worker_t){.f = f, .i = i, .go = &go, .rc = -1};
        int n = snprintf(w[i].req, sizeof w[i].req, "caller %02d says %d", i, i * 7919);
        w[i].len = (size_t)n;
        if (pthread_create(&th[i], NULL, s_worker, &w[i]) != 0)
            break;
        started++;
    }
    /* A thread that failed to start would leave the others at the barrier. */
    assert_int_equal(started, S_THREADS);
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&go);

    for (int i = 0; i < S_THREADS; i++) {
        s_assert_res(w[i].rc, &f->res[i], KVC_GRPC_OK, 200, "");
        assert_int_equal(f->res[i].len, w[i].len);
        assert_memory_equal(f->res[i].data, w[i].req, w[i].len);
    }
    s_assert_stats(f, S_THREADS, 0, 1, 0);
    s_sv_counts_t k = s_sv_counts(&f->sv);
    assert_int_equal(k.n_conns, 1);
    assert_int_equal(k.n_complete, S_THREADS);
    assert_int_equal(k.max_open, gather);
    s_assert_sv_ok(f);
}

/* (12a) All calls multiplexed on one connection at once. */
static void test_concurrent(void **state)
{
    s_many(*state, 0, S_THREADS);
}

/* (12b) max_streams = 2: the rest wait, and the server never sees more than
 * two streams open. */
static void test_concurrent_limited(void **state)
{
    s_many(*state, 2, 2);
}

/* (13) Nothing listens: UNAVAILABLE with the connect error. The port stays
 * bound (not listening) during the call so no other test can take it. */
static void test_connection_refused(void **state)
{
    s_fix_t *f = *state;
    uint16_t port;
    int fd = s_bind(&port, 0);
    snprintf(f->sv.url, sizeof f->sv.url, "http://127.0.0.1:%u", port);
    s_client(f, NULL);
    int rc = s_call(f, "q", 1, 5000);
    close(fd);
    s_assert_res(rc, &f->res[0], KVC_GRPC_UNAVAILABLE, 0, NULL);
    assert_non_null(strstr(f->res[0].message, "Connection refused"));
    s_assert_stats(f, 1, 1, 1, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_unary_ok, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_no_grpc_status, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_trailers_only, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_http_status, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_ok_without_message, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_truncated_message, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_message_too_big, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_reset_codes, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_refused_retried, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_goaway_new_connection, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_connection_lost, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_connection_lost_retried, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_deadline, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_concurrent, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_limited, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_connection_refused, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
