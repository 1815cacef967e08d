/*
 * Unit tests of proxy/h2_conn.c: authority parsing, then real HTTP/2 against
 * an in-test nghttp2 server, on the other end of a socketpair given to
 * kvc_h2_conn_adopt or on a loopback TCP listener bound to port 0.
 *
 * Both ends run in this one thread: s_pump polls the server's socket and
 * the connection's descriptor and moves each on, until a condition holds or
 * a deadline passes. Nothing sleeps; a test that waits in vain fails at the
 * deadline. Callbacks only record what they saw; the tests assert after.
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
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <cmocka.h>
#include <nghttp2/nghttp2.h>

#include "base.h"
#include "h2_conn.h"

/* How long any one wait may take before the test fails. */
#define S_WAIT_MS 10000
#define S_SV_STREAMS 64
#define S_SV_BODY_MAX (4u << 20)
#define S_CALL_FIELDS 1024

/* The monotonic clock in ms, as kvc_h2_conn_io takes it. */
static int64_t s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Appends "name<sep>value\n" to a fixed text buffer, cutting what does not fit. */
static void s_text_add(char *buf, size_t cap, size_t *len, const char *name, size_t nlen,
                       const char *sep, const char *value, size_t vlen)
{
    int n =
        snprintf(buf + *len, cap - *len, "%.*s%s%.*s\n", (int)nlen, name, sep, (int)vlen, value);
    if (n > 0)
        *len += (size_t)n < cap - *len ? (size_t)n : cap - *len - 1;
}

/* ---- The in-test server ---------------------------------------------------- */

typedef enum {
    S_RESPOND, /* answers each complete request: 200, a DATA payload, trailers */
    S_HOLD,    /* records requests; the test answers with s_sv_respond */
    S_RESET,   /* resets each complete request with rst_code */
    S_EARLY    /* answers the request's HEADERS at once (trailers-only), then resets
                  it with NO_ERROR */
} s_mode_t;

/* What the server saw of one stream, and its answer. */
typedef struct {
    int32_t id;
    char method[16], scheme[16], path[128], authority[128];
    char fields[1024]; /* the other fields, "name=value\n" */
    size_t fields_len;
    uint8_t *body;
    size_t body_len, body_cap;
    int complete; /* END_STREAM received */
    int n_rst;    /* RST_STREAM frames received */
    uint32_t rst_code;
    int closed;
    uint32_t close_code;
    const uint8_t *resp; /* borrowed: the body (echo) or a literal */
    size_t resp_len, resp_off;
} s_sstream_t;

typedef struct {
    int fd;        /* the server's socket; -1 before accept and after close */
    int listen_fd; /* TCP tests: accepted from here while fd < 0 */
    nghttp2_session *ns;
    s_mode_t mode;
    uint32_t rst_code;    /* S_RESET */
    int echo;             /* the answer's payload is the request body (else "pong") */
    int hold_end;         /* after the payload, hold the stream open (no trailers) */
    uint32_t max_streams; /* our SETTINGS_MAX_CONCURRENT_STREAMS; 0: none sent */
    uint32_t window;      /* our stream and connection windows; 0: 65535 */
    s_sstream_t st[S_SV_STREAMS];
    int n;
    int n_rst;      /* RST_STREAM frames received, all streams */
    int n_ping_ack; /* PING acknowledgements received */
    int failed;     /* an nghttp2 or socket error */
} s_server_t;

/* The server's record of stream id, or NULL. */
static s_sstream_t *s_sv_find(s_server_t *sv, int32_t id)
{
    for (int i = 0; i < sv->n; i++)
        if (sv->st[i].id == id)
            return &sv->st[i];
    return NULL;
}

/* nghttp2 send callback: straight to the non-blocking socket. */
static ssize_t s_sv_send(nghttp2_session *ns, const uint8_t *p, size_t n, int flags, void *ud)
{
    s_server_t *sv = ud;
    ssize_t k = send(sv->fd, p, n, MSG_NOSIGNAL);
    if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return NGHTTP2_ERR_WOULDBLOCK;
    if (k < 0)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    return k;
}

/* The answer's body, then trailers (or a hold when hold_end). */
static ssize_t s_sv_read(nghttp2_session *ns, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                         nghttp2_data_source *src, void *ud)
{
    s_server_t *sv = ud;
    s_sstream_t *st = src->ptr;
    size_t k = st->resp_len - st->resp_off;
    if (k > len)
        k = len;
    if (k > 0)
        memcpy(buf, st->resp + st->resp_off, k);
    st->resp_off += k;
    if (st->resp_off < st->resp_len)
        return (ssize_t)k;
    if (sv->hold_end)
        return k > 0 ? (ssize_t)k : NGHTTP2_ERR_DEFERRED;
    *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
    const nghttp2_nv tr[] = {
        {(uint8_t *)"grpc-status", (uint8_t *)"0", 11, 1, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"grpc-message", (uint8_t *)"ok", 12, 2, NGHTTP2_NV_FLAG_NONE},
    };
    if (nghttp2_submit_trailer(ns, id, tr, 2) != 0)
        sv->failed = 1;
    return (ssize_t)k;
}

/* Answers stream st: 200, application/grpc, the payload, then trailers. */
static void s_sv_respond(s_server_t *sv, s_sstream_t *st)
{
    if (sv->echo) {
        st->resp = st->body;
        st->resp_len = st->body_len;
    } else {
        st->resp = (const uint8_t *)"pong";
        st->resp_len = 4;
    }
    const nghttp2_nv hd[] = {
        {(uint8_t *)":status", (uint8_t *)"200", 7, 3, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16, NGHTTP2_NV_FLAG_NONE},
    };
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = s_sv_read};
    if (nghttp2_submit_response(sv->ns, st->id, hd, 2, &prd) != 0)
        sv->failed = 1;
}

/* A request's HEADERS begin: a new stream record. */
static int s_sv_begin_headers(nghttp2_session *ns, const nghttp2_frame *f, void *ud)
{
    s_server_t *sv = ud;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    if (sv->n == S_SV_STREAMS) {
        sv->failed = 1;
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    s_sstream_t *st = &sv->st[sv->n++];
    st->id = f->hd.stream_id;
    return 0;
}

/* Copies n bytes as a terminated string, cut to cap. */
static void s_copy(char *dst, size_t cap, const uint8_t *p, size_t n)
{
    snprintf(dst, cap, "%.*s", (int)n, (const char *)p);
}

/* Records the pseudo-headers, and the other fields in order. */
static int s_sv_header(nghttp2_session *ns, const nghttp2_frame *f, const uint8_t *name,
                       size_t nlen, const uint8_t *value, size_t vlen, uint8_t flags, void *ud)
{
    s_sstream_t *st = s_sv_find(ud, f->hd.stream_id);
    if (!st)
        return 0;
    if (nlen == 7 && memcmp(name, ":method", 7) == 0)
        s_copy(st->method, sizeof st->method, value, vlen);
    else if (nlen == 7 && memcmp(name, ":scheme", 7) == 0)
        s_copy(st->scheme, sizeof st->scheme, value, vlen);
    else if (nlen == 5 && memcmp(name, ":path", 5) == 0)
        s_copy(st->path, sizeof st->path, value, vlen);
    else if (nlen == 10 && memcmp(name, ":authority", 10) == 0)
        s_copy(st->authority, sizeof st->authority, value, vlen);
    else
        s_text_add(st->fields, sizeof st->fields, &st->fields_len, (const char *)name, nlen, "=",
                   (const char *)value, vlen);
    return 0;
}

/* Appends request body bytes (bounded by S_SV_BODY_MAX). */
static int s_sv_data(nghttp2_session *ns, uint8_t flags, int32_t id, const uint8_t *p, size_t n,
                     void *ud)
{
    s_server_t *sv = ud;
    s_sstream_t *st = s_sv_find(sv, id);
    if (!st || st->body_len + n > S_SV_BODY_MAX) {
        sv->failed = 1;
        return 0;
    }
    if (st->body_len + n > st->body_cap) {
        size_t cap = st->body_cap ? st->body_cap : 4096;
        while (cap < st->body_len + n)
            cap *= 2;
        uint8_t *b = realloc(st->body, cap);
        if (!b) {
            sv->failed = 1;
            return 0;
        }
        st->body = b;
        st->body_cap = cap;
    }
    memcpy(st->body + st->body_len, p, n);
    st->body_len += n;
    return 0;
}

/* Counts resets; acts on a complete request as the mode says. */
static int s_sv_frame_recv(nghttp2_session *ns, const nghttp2_frame *f, void *ud)
{
    s_server_t *sv = ud;
    s_sstream_t *st = s_sv_find(sv, f->hd.stream_id);
    if (f->hd.type == NGHTTP2_PING && (f->hd.flags & NGHTTP2_FLAG_ACK)) {
        sv->n_ping_ack++;
        return 0;
    }
    if (sv->mode == S_EARLY && f->hd.type == NGHTTP2_HEADERS && st &&
        f->headers.cat == NGHTTP2_HCAT_REQUEST) {
        const nghttp2_nv hd[] = {
            {(uint8_t *)":status", (uint8_t *)"200", 7, 3, NGHTTP2_NV_FLAG_NONE},
            {(uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16,
             NGHTTP2_NV_FLAG_NONE},
            {(uint8_t *)"grpc-status", (uint8_t *)"12", 11, 2, NGHTTP2_NV_FLAG_NONE},
        };
        if (nghttp2_submit_response(ns, st->id, hd, 3, NULL) != 0)
            sv->failed = 1;
        return 0;
    }
    if (f->hd.type == NGHTTP2_RST_STREAM) {
        sv->n_rst++;
        if (st) {
            st->n_rst++;
            st->rst_code = f->rst_stream.error_code;
        }
        return 0;
    }
    if ((f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA) ||
        !(f->hd.flags & NGHTTP2_FLAG_END_STREAM) || !st)
        return 0;
    st->complete = 1;
    if (sv->mode == S_RESPOND)
        s_sv_respond(sv, st);
    else if (sv->mode == S_RESET &&
             nghttp2_submit_rst_stream(ns, NGHTTP2_FLAG_NONE, st->id, sv->rst_code) != 0)
        sv->failed = 1;
    return 0;
}

/* S_EARLY: once the answer is out, stops the upload with RST_STREAM(NO_ERROR)
 * (queued together, nghttp2 would send the reset first). */
static int s_sv_frame_send(nghttp2_session *ns, const nghttp2_frame *f, void *ud)
{
    s_server_t *sv = ud;
    if (sv->mode == S_EARLY && f->hd.type == NGHTTP2_HEADERS &&
        (f->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
        nghttp2_submit_rst_stream(ns, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_NO_ERROR) != 0)
        sv->failed = 1;
    return 0;
}

/* Records how the server side of a stream closed. */
static int s_sv_stream_close(nghttp2_session *ns, int32_t id, uint32_t code, void *ud)
{
    s_sstream_t *st = s_sv_find(ud, id);
    if (st) {
        st->closed = 1;
        st->close_code = code;
    }
    return 0;
}

/* Starts the server session on fd (made non-blocking) and sends its SETTINGS. */
static void s_sv_start(s_server_t *sv, int fd)
{
    int fl = fcntl(fd, F_GETFL);
    assert_int_equal(fcntl(fd, F_SETFL, fl | O_NONBLOCK), 0);
    sv->fd = fd;
    nghttp2_session_callbacks *cbs;
    assert_int_equal(nghttp2_session_callbacks_new(&cbs), 0);
    nghttp2_session_callbacks_set_send_callback(cbs, s_sv_send);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, s_sv_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, s_sv_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, s_sv_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, s_sv_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, s_sv_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, s_sv_frame_send);
    int rv = nghttp2_session_server_new(&sv->ns, cbs, sv);
    nghttp2_session_callbacks_del(cbs);
    assert_int_equal(rv, 0);
    nghttp2_settings_entry iv[2];
    size_t niv = 0;
    if (sv->max_streams)
        iv[niv++] =
            (nghttp2_settings_entry){NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, sv->max_streams};
    if (sv->window)
        iv[niv++] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, sv->window};
    assert_int_equal(nghttp2_submit_settings(sv->ns, NGHTTP2_FLAG_NONE, iv, niv), 0);
    if (sv->window)
        assert_int_equal(nghttp2_session_set_local_window_size(sv->ns, NGHTTP2_FLAG_NONE, 0,
                                                               (int32_t)sv->window),
                         0);
    assert_int_equal(nghttp2_session_send(sv->ns), 0);
}

/* Closes the server's socket, keeping what it saw. */
static void s_sv_close(s_server_t *sv)
{
    if (sv->fd >= 0)
        close(sv->fd);
    sv->fd = -1;
}

/* Frees the server: its sockets, session and bodies. */
static void s_sv_free(s_server_t *sv)
{
    s_sv_close(sv);
    if (sv->listen_fd >= 0)
        close(sv->listen_fd);
    sv->listen_fd = -1;
    nghttp2_session_del(sv->ns);
    sv->ns = NULL;
    for (int i = 0; i < sv->n; i++)
        free(sv->st[i].body);
    sv->n = 0;
}

/* Reads what the socket has into the session, then sends what it has. */
static void s_sv_io(s_server_t *sv, short revents)
{
    if (revents & (POLLIN | POLLHUP | POLLERR)) {
        for (;;) {
            uint8_t buf[16384];
            ssize_t n = recv(sv->fd, buf, sizeof buf, 0);
            if (n > 0) {
                if (nghttp2_session_mem_recv(sv->ns, buf, (size_t)n) != n)
                    sv->failed = 1;
                continue;
            }
            if (n < 0 && errno == EINTR)
                continue;
            if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
                s_sv_close(sv); /* the client went away */
                return;
            }
            break;
        }
    }
    if (nghttp2_session_send(sv->ns) != 0)
        sv->failed = 1;
}

/* ---- The client's callbacks ------------------------------------------------ */

/* Test memory, freed by s_teardown even when an assertion ends the test early. */
#define S_ALLOCS 256
static void *s_allocs[S_ALLOCS];
static int s_n_allocs;

/* malloc that s_teardown undoes; never NULL. */
static void *s_alloc(size_t n)
{
    assert_true(s_n_allocs < S_ALLOCS);
    void *p = malloc(n ? n : 1);
    assert_non_null(p);
    s_allocs[s_n_allocs++] = p;
    return p;
}

/* Frees what s_alloc gave. */
static void s_allocs_free(void)
{
    while (s_n_allocs > 0)
        free(s_allocs[--s_n_allocs]);
}

/* What one call saw through its callbacks. */
typedef struct {
    char fields[S_CALL_FIELDS]; /* "name: value\n" */
    size_t fields_len;
    uint8_t *data; /* data_cap bytes from s_alloc */
    size_t data_len, data_cap;
    int n_data;
    int refuse; /* the data callback refuses */
    int n_closed;
    kvc_h2_end_t how;
    uint32_t h2_error;
    int cancelled;    /* the test cancelled it */
    int after_closed; /* callbacks after closed */
    int after_cancel; /* callbacks after the cancel */
} s_call_t;

/* Empties a call record with room for data_cap body bytes. */
static void s_call_init(s_call_t *k, size_t data_cap)
{
    memset(k, 0, sizeof *k);
    k->data_cap = data_cap;
    k->data = s_alloc(data_cap);
}

/* Counts a callback that came after closed or after a cancel. */
static void s_note(s_call_t *k)
{
    if (k->n_closed)
        k->after_closed++;
    if (k->cancelled)
        k->after_cancel++;
}

/* Client field callback: "name: value\n" into the record. */
static void s_on_field(void *ud, const char *name, size_t nlen, const char *value, size_t vlen)
{
    s_call_t *k = ud;
    s_note(k);
    s_text_add(k->fields, sizeof k->fields, &k->fields_len, name, nlen, ": ", value, vlen);
}

/* Client data callback: keeps the bytes; refuses them when asked. */
static int s_on_data(void *ud, const uint8_t *p, size_t n)
{
    s_call_t *k = ud;
    s_note(k);
    k->n_data++;
    size_t room = k->data_cap - k->data_len;
    memcpy(k->data + k->data_len, p, n < room ? n : room);
    k->data_len += n < room ? n : room;
    return k->refuse;
}

/* Client closed callback. */
static void s_on_closed(void *ud, kvc_h2_end_t how, uint32_t h2_error)
{
    s_call_t *k = ud;
    s_note(k);
    k->n_closed++;
    k->how = how;
    k->h2_error = h2_error;
}

static const kvc_h2_cb_t s_cb = {s_on_field, s_on_data, s_on_closed};

/* ---- Driving both ends ----------------------------------------------------- */

typedef int (*s_until_fn)(void *arg);

/* Moves the server (sv, may be NULL) and the connection (c) on in turn until
 * until(arg) holds; 0 when S_WAIT_MS passed first. */
static int s_pump(s_server_t *sv, kvc_h2_conn_t *c, s_until_fn until, void *arg)
{
    int64_t deadline = s_now_ms() + S_WAIT_MS;
    for (;;) {
        if (until(arg))
            return 1;
        int64_t now = s_now_ms();
        if (now >= deadline)
            return 0;
        struct pollfd p[2];
        int n = 0, si = -1, ci = -1;
        if (sv && sv->fd >= 0) {
            short ev = POLLIN;
            if (sv->ns && nghttp2_session_want_write(sv->ns))
                ev |= POLLOUT;
            p[n] = (struct pollfd){.fd = sv->fd, .events = ev};
            si = n++;
        } else if (sv && sv->listen_fd >= 0) {
            p[n] = (struct pollfd){.fd = sv->listen_fd, .events = POLLIN};
            si = n++;
        }
        short cev = 0;
        int cfd = kvc_h2_conn_pollfd(c, &cev);
        if (cfd >= 0) {
            p[n] = (struct pollfd){.fd = cfd, .events = cev};
            ci = n++;
        }
        int64_t wait = deadline - now;
        int64_t cd = kvc_h2_conn_deadline(c);
        if (cd - now < wait)
            wait = cd > now ? cd - now : 0;
        int r = poll(p, (nfds_t)n, (int)wait);
        assert_true(r >= 0 || errno == EINTR);
        now = s_now_ms();
        if (si >= 0 && p[si].revents) {
            if (sv->fd >= 0) {
                s_sv_io(sv, p[si].revents);
            } else {
                int fd = accept(sv->listen_fd, NULL, NULL);
                assert_true(fd >= 0);
                s_sv_start(sv, fd);
            }
        }
        kvc_h2_conn_io(c, ci >= 0 ? p[ci].revents : 0, now);
    }
}

/* Conditions for s_pump: the call is closed. */
static int s_call_closed(void *arg)
{
    return ((s_call_t *)arg)->n_closed > 0;
}

/* A server stream and what must hold of it. */
typedef struct {
    s_server_t *sv;
    int32_t id;
} s_sv_at_t;

/* The server has the whole request on a->id. */
static int s_sv_complete(void *arg)
{
    s_sv_at_t *a = arg;
    s_sstream_t *st = s_sv_find(a->sv, a->id);
    return st && st->complete;
}

/* The server got RST_STREAM on a->id. */
static int s_sv_got_rst(void *arg)
{
    s_sv_at_t *a = arg;
    s_sstream_t *st = s_sv_find(a->sv, a->id);
    return st && st->n_rst > 0;
}

/* The server has the client's SETTINGS (its preface arrived). */
static int s_sv_has_settings(void *arg)
{
    s_server_t *sv = arg;
    return sv->ns && nghttp2_session_get_remote_settings(sv->ns, NGHTTP2_SETTINGS_ENABLE_PUSH) == 0;
}

/* The client acknowledged the server's SETTINGS (so it applies them); only
 * for a server that sets max_streams or window. */
static int s_sv_acked(void *arg)
{
    s_server_t *sv = arg;
    nghttp2_session *ns = sv->ns;
    return (!sv->max_streams ||
            nghttp2_session_get_local_settings(ns, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS) ==
                sv->max_streams) &&
           (!sv->window || nghttp2_session_get_local_settings(
                               ns, NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE) == sv->window);
}

/* The connection is open. */
static int s_conn_open(void *arg)
{
    return kvc_h2_conn_state(arg) == KVC_H2_OPEN;
}

/* The connection is dead. */
static int s_conn_dead(void *arg)
{
    return kvc_h2_conn_state(arg) == KVC_H2_DEAD;
}

/* The connection has no stream left. */
static int s_conn_idle(void *arg)
{
    return kvc_h2_conn_streams(arg) == 0;
}

/* ---- Fixture: a server on one end of a socketpair, the client on the other - */

typedef struct {
    s_server_t sv;
    kvc_h2_conn_t *c;
} s_fix_t;

/* A fixture with no server socket and no connection yet. */
static int s_setup(void **state)
{
    s_fix_t *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    f->sv.fd = f->sv.listen_fd = -1;
    *state = f;
    return 0;
}

/* Frees what the test left, whether it passed or not. */
static int s_teardown(void **state)
{
    s_fix_t *f = *state;
    kvc_h2_conn_free(f->c);
    s_sv_free(&f->sv);
    free(f);
    s_allocs_free();
    return 0;
}

/* Connects a fresh server (already configured in f->sv) and client. */
static void s_pair(s_fix_t *f, const kvc_h2_opts_t *opts)
{
    int sp[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
    s_sv_start(&f->sv, sp[0]);
    f->c = kvc_h2_conn_adopt(sp[1], "backend:50051", opts, &s_cb);
    assert_non_null(f->c);
    assert_int_equal(kvc_h2_conn_state(f->c), KVC_H2_OPEN);
    assert_string_equal(kvc_h2_conn_error(f->c), "");
    assert_false(kvc_h2_conn_never_opened(f->c));
    assert_true(s_pump(&f->sv, f->c, s_sv_has_settings, &f->sv));
}

static const uint8_t s_prefix[5] = {0, 0, 0, 0, 5};
static const char *const s_fields[] = {"content-type", "application/grpc", "te", "trailers"};

/* Submits POST path with the gRPC fields and prefix + body; returns the id. */
static int32_t s_submit(kvc_h2_conn_t *c, const char *path, const void *body, size_t len,
                        s_call_t *k)
{
    kvc_h2_req_t r = {
        .path = path,
        .fields = s_fields,
        .n_fields = 2,
        .prefix = s_prefix,
        .prefix_len = sizeof s_prefix,
        .body = body,
        .body_len = len,
    };
    return kvc_h2_conn_submit(c, &r, k);
}

/* The fields a call sees from s_sv_respond, trailers included. */
#define S_OK_FIELDS                                                                                \
    ":status: 200\ncontent-type: application/grpc\ngrpc-status: 0\ngrpc-message: ok\n"

/* Checks a call ended normally with the body want. */
static void s_assert_ok(const s_call_t *k, const void *want, size_t want_len)
{
    assert_int_equal(k->n_closed, 1);
    assert_int_equal(k->how, KVC_H2_END_DONE);
    assert_int_equal(k->h2_error, 0);
    assert_int_equal(k->after_closed, 0);
    assert_string_equal(k->fields, S_OK_FIELDS);
    assert_int_equal(k->data_len, want_len);
    assert_memory_equal(k->data, want, want_len);
}

/* ---- kvc_h2_authority_split ------------------------------------------------ */

static void s_split_ok(const char *a, const char *want_host, const char *want_port)
{
    char host[64], port[8];
    memset(host, 'x', sizeof host);
    memset(port, 'x', sizeof port);
    assert_int_equal(kvc_h2_authority_split(a, host, sizeof host, port, sizeof port), KVC_OK);
    assert_string_equal(host, want_host);
    assert_string_equal(port, want_port);
}

/* Well-formed authorities, the default port, IPv6 literals. */
static void test_split_good(void **state)
{
    s_split_ok("backend:50051", "backend", "50051");
    s_split_ok("backend", "backend", "80");
    s_split_ok("10.1.2.3:1", "10.1.2.3", "1");
    s_split_ok("h:65535", "h", "65535");
    s_split_ok("[::1]:8500", "::1", "8500");
    s_split_ok("[fe80::1]", "fe80::1", "80");
    s_split_ok("a.b-c.example:08080", "a.b-c.example", "08080");
}

/* Malformed authorities: empty host, bad ports, bare IPv6, brackets, spaces. */
static void test_split_bad(void **state)
{
    static const char *const bad[] = {
        "",           ":80",         "host:",   "host:0",       "host:00000", "host:65536",
        "host:99999", "host:123456", "host:8a", "host:+80",     "host:-1",    "host: 80",
        "host:80 ",   "::1",         "::1:80",  "fe80::1:80",   "[::1",       "[::1:80",
        "[::1]80",    "[::1]:",      "[::1]:0", "[]:80",        "[]",         "a b:80",
        " host:80",   "host :80",    "ho\tst",  "user@host:80", "host/x:80",
    };
    char host[64], port[8];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = kvc_h2_authority_split(bad[i], host, sizeof host, port, sizeof port);
        if (rc != KVC_EINVAL)
            fail_msg("\"%s\": %d, want KVC_EINVAL", bad[i], rc);
    }
    assert_int_equal(kvc_h2_authority_split(NULL, host, sizeof host, port, sizeof port),
                     KVC_EINVAL);
}

/* A bracket outside an IPv6 literal is as unbalanced as a missing one. */
static void test_split_stray_bracket(void **state)
{
    static const char *const bad[] = {"host]:80", "ho]st", "host[:80", "[[::1]:80", "[::1]]:80"};
    char host[64], port[8];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = kvc_h2_authority_split(bad[i], host, sizeof host, port, sizeof port);
        if (rc != KVC_EINVAL)
            fail_msg("\"%s\": %d, want KVC_EINVAL", bad[i], rc);
    }
}

/* Buffers one byte too small for the host or the port: KVC_ERANGE. */
static void test_split_range(void **state)
{
    char host[16], port[8];
    /* "backend" needs 8 bytes, "50051" 6. */
    assert_int_equal(kvc_h2_authority_split("backend:50051", host, 8, port, 6), KVC_OK);
    assert_string_equal(host, "backend");
    assert_string_equal(port, "50051");
    assert_int_equal(kvc_h2_authority_split("backend:50051", host, 7, port, 6), KVC_ERANGE);
    assert_int_equal(kvc_h2_authority_split("backend:50051", host, 8, port, 5), KVC_ERANGE);
    /* The default port needs 3. */
    assert_int_equal(kvc_h2_authority_split("backend", host, 8, port, 3), KVC_OK);
    assert_string_equal(port, "80");
    assert_int_equal(kvc_h2_authority_split("backend", host, 8, port, 2), KVC_ERANGE);
    /* The brackets are not part of the host. */
    assert_int_equal(kvc_h2_authority_split("[::1]:8500", host, 4, port, 5), KVC_OK);
    assert_string_equal(host, "::1");
    assert_int_equal(kvc_h2_authority_split("[::1]:8500", host, 3, port, 5), KVC_ERANGE);
    assert_int_equal(kvc_h2_authority_split("[::1]:8500", host, 4, port, 4), KVC_ERANGE);
}

/* ---- Construction ---------------------------------------------------------- */

static void test_new_rejects(void **state)
{
    assert_null(kvc_h2_conn_new("", NULL, &s_cb));
    assert_null(kvc_h2_conn_new("host:0", NULL, &s_cb));
    assert_null(kvc_h2_conn_new("::1:80", NULL, &s_cb));
    assert_null(kvc_h2_conn_new(NULL, NULL, &s_cb));
    assert_null(kvc_h2_conn_new("host:80", NULL, NULL));
    kvc_h2_cb_t partial = {s_on_field, NULL, s_on_closed};
    assert_null(kvc_h2_conn_new("host:80", NULL, &partial));
    assert_null(kvc_h2_conn_adopt(-1, "host:80", NULL, &s_cb));
    int sp[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
    assert_null(kvc_h2_conn_adopt(sp[1], "host:0", NULL, &s_cb));
    assert_null(kvc_h2_conn_adopt(sp[1], "host:80", NULL, &partial));
    /* Still ours after a refusal. */
    assert_int_equal(close(sp[1]), 0);
    assert_int_equal(close(sp[0]), 0);
    kvc_h2_conn_free(NULL);
}

/* adopt sends the preface at once, with our window settings. */
static void test_adopt_sends_settings(void **state)
{
    s_fix_t *f = *state;
    s_pair(f, NULL);
    nghttp2_session *ns = f->sv.ns;
    assert_int_equal(nghttp2_session_get_remote_settings(ns, NGHTTP2_SETTINGS_ENABLE_PUSH), 0);
    assert_int_equal(nghttp2_session_get_remote_settings(ns, NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE),
                     8u << 20);
    assert_int_equal(nghttp2_session_get_remote_window_size(ns), 32 << 20);
    assert_int_equal(kvc_h2_conn_streams(f->c), 0);
    short ev = 0;
    assert_true(kvc_h2_conn_pollfd(f->c, &ev) >= 0);
    assert_int_equal(ev, POLLIN);
    assert_true(kvc_h2_conn_deadline(f->c) == INT64_MAX);
}

/* Our window options reach the server. */
static void test_adopt_window_opts(void **state)
{
    s_fix_t *f = *state;
    kvc_h2_opts_t o = {.stream_window = 100000, .conn_window = 1 << 20};
    s_pair(f, &o);
    nghttp2_session *ns = f->sv.ns;
    assert_int_equal(nghttp2_session_get_remote_settings(ns, NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE),
                     100000);
    assert_int_equal(nghttp2_session_get_remote_window_size(ns), 1 << 20);
}

/* ---- Calls over a socketpair ----------------------------------------------- */

/* (a) One unary call: the request on the wire, the answer through the callbacks. */
static void test_unary_call(void **state)
{
    s_fix_t *f = *state;
    f->sv.mode = S_RESPOND;
    f->sv.echo = 1;
    s_pair(f, NULL);
    s_call_t k;
    s_call_init(&k, 64);
    const char *extra[] = {"content-type", "application/grpc", "te",
                           "trailers",     "grpc-timeout",     "5000m",
                           "user-agent",   "kvc-test/1"};
    kvc_h2_req_t r = {
        .path = "/inference.GRPCInferenceService/ModelInfer",
        .fields = extra,
        .n_fields = 4,
        .prefix = s_prefix,
        .prefix_len = sizeof s_prefix,
        .body = (const uint8_t *)"hello",
        .body_len = 5,
    };
    int32_t id = kvc_h2_conn_submit(f->c, &r, &k);
    assert_int_equal(id, 1);
    assert_int_equal(kvc_h2_conn_streams(f->c), 1);
    kvc_h2_conn_flush(f->c);
    assert_true(s_pump(&f->sv, f->c, s_call_closed, &k));

    s_sstream_t *st = s_sv_find(&f->sv, 1);
    assert_non_null(st);
    assert_int_equal(f->sv.n, 1);
    assert_string_equal(st->method, "POST");
    assert_string_equal(st->scheme, "http");
    assert_string_equal(st->path, "/inference.GRPCInferenceService/ModelInfer");
    assert_string_equal(st->authority, "backend:50051");
    assert_string_equal(st->fields, "content-type=application/grpc\nte=trailers\n"
                                    "grpc-timeout=5000m\nuser-agent=kvc-test/1\n");
    assert_true(st->complete);
    assert_int_equal(st->body_len, 10);
    assert_memory_equal(st->body, "\0\0\0\0\5hello", 10);

    s_assert_ok(&k, "\0\0\0\0\5hello", 10);
    assert_int_equal(k.n_data, 1);
    assert_int_equal(kvc_h2_conn_streams(f->c), 0);
    assert_int_equal(kvc_h2_conn_state(f->c), KVC_H2_OPEN);
    assert_string_equal(kvc_h2_conn_error(f->c), "");
    assert_int_equal(f->sv.failed, 0);
    assert_int_equal(f->sv.n_rst, 0);
}

/* A request with no body at all still ends its stream; the next one takes id 3. */
static void test_empty_body_then_next(void **state)
{
    s_fix_t *f = *state;
    f->sv.mode = S_RESPOND;
    f->sv.echo = 1;
    s_pair(f, NULL);
    s_call_t k1, k2;
    s_call_init(&k1, 16);
    s_call_init(&k2, 16);
    kvc_h2_req_t r = {.path = "/a"};
    assert_int_equal(kvc_h2_conn_submit(f->c, &r, &k1), 1);
    kvc_h2_conn_flush(f->c);
    assert_true(s_pump(&f->sv, f->c, s_call_closed, &k1));
    s_assert_ok(&k1, "", 0);
    assert_int_equal(s_sv_find(&f->sv, 1)->body_len, 0);
    assert_string_equal(s_sv_find(&f->sv, 1)->fields, "");
    assert_int_equal(s_submit(f->c, "/b", "x", 1, &k2), 3);
    kvc_h2_conn_flush(f->c);
    assert_true(s_pump(&f->sv, f->c, s_call_closed, &k2));
    s_assert_ok(&k2, "\0\0\0\0\5x", 6);
}

/* Bad requests: KVC_EINVAL, and no stream is counted. */
static void test_submit_rejects(void **state)
{
    s_fix_t *f = *state;
    s_pair(f, NULL);
    s_call_t k;
    kvc_h2_req_t r = {.path = "/a"};
    assert_int_equal(kvc_h2_conn_submit(f->c, &r, NULL), KVC_EINVAL);
    assert_int_equal(kvc_h2_conn_submit(f->c, NULL, &k), KVC_EINVAL);
    assert_int_equal(kvc_h2_conn_submit(NULL, &r, &k), KVC_EINVAL);
    r.path = NULL;
    assert_int_equal(kvc_h2_conn_submit(f->c, &r, &k), KVC_EINVAL);
    const char *many[34];
    for (int i = 0; i < 34; i++)
        many[i] = i % 2 ? "v" : "x-f";
    kvc_h2_req_t r17 = {.path = "/a", .fields = many, .n_fields = 17};
    assert_int_equal(kvc_h2_conn_submit(f->c, &r17, &k), KVC_EINVAL);
    assert_int_equal(kvc_h2_conn_streams(f->c), 0);
}

/* Fills n bytes with a pattern that differs between nearby offsets and seeds. */
static void s_pattern(uint8_t *p, size_t n, unsigned seed)
{
    uint32_t x = 2166136261u ^ seed;
    for (size_t i = 0; i < n; i++) {
        x = x * 16777619u + (uint32_t)i;
        p[i] = (uint8_t)(x >> 24);
    }
}

/* (b) A body far larger than the server's 65535-byte windows arrives intact. */
static void test_big_request_body(void **state)
{
    s_fix_t *f = *state;
    f->sv.mode = S_RESPOND;
    s_pair(f, NULL);
    assert_int_equal(
        nghttp2_session_get_local_settings(f->sv.ns, NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE), 65535);
    size_t n = 1u << 20;
    uint8_t *body = s_alloc(n);
    s_pattern(body, n, 1);
    s_call_t k;
    s_call_init(&k, 16);
    assert_int_equal(s_submit(f->c, "/big", body, n, &k), 1);
    kvc_h2_conn_flush(f->c);
    assert_true(s_pump(&f->sv, f->c, s_call_closed, &k));
    s_sstream_t *st = s_sv_find(&f->sv, 1);
    assert_int_equal(st->body_len, 5 + n);
    assert_memory_equal(st->body, "\0\0\0\0\5", 5);
    assert_memory_equal(st->body + 5, body, n);
    s_assert_ok(&k, "pong", 4);
    assert_int_equal(f->sv.failed, 0);
}

/* A response far larger than our own small windows: we must send WINDOW_UPDATEs. */
static void test_big_response_small_window(void **state)
{
    s_fix_t *f = *state;
    f->sv.mode = S_RESPOND;
    f->sv.echo = 1;
    kvc_h2_opts_t o = {.stream_window = 16384, .conn_window = 65535};
    s_pair(f, &o);
    size_t n = 300000;
    uint8_t *body = s_alloc(n);
    uint8_t *want = s_alloc(5 + n);
    s_pattern(body, n, 2);
    memcpy(want, s_prefix, 5);
    memcpy(want + 5, body, n);
    s_call_t k;
    s_call_init(&k, 5 + n);
    assert_int_equal(s_submit(f->c, "/echo", body, n, &k), 1);
    kvc_h2_conn_flush(f->c);
    assert_true(s_pump(&f->sv, f->c, s_call_closed, &k));
    s_assert_ok(&k, want, 5 + n);
    assert_true(k.n_data > 1);
    assert_int_equal(f->sv.failed, 0);
}

/* (c) Resets from the server: the code decides how the stream ended. */
static void test_server_reset(void **state)
{
    s_fix_t *f = *state;
    f->sv.mode = S_RESET;
    s_pair(f, NULL);
    static const struct {
        uint32_t code;
        kvc_h2_end_t how;
    } cases[] = {
        {NGHTTP2_INTERNAL_ERROR, KVC_H2_END_RESET},
        {NGHTTP2_ENHANCE_YOUR_CALM, KVC_H2_END_RESET},
        {NGHTTP2_REFUSED_STREAM, KVC_H2_END_REFUSED},
        {NGHTTP2_NO_ERROR, KVC_H2_END_DONE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        f->sv.rst_code = cases[i].code;
        s_call_t k;
        s_call_init(&k, 16);
        assert_int_equal(s_submit(f->c, "/r", "x", 1, &k), (int32_t)(1 + 2 * i));
        kvc_h2_conn_flush(f->c);
        assert_true(s_pump(&f->sv, f->c, s_call_closed, &k));
        assert_int_equal(k.n_closed, 1);
        assert_int_equal(k.how, cases[i].how);
        assert_int_equal(k.h2_error, cases[i].code);
        assert_int_equal(k.fields_len, 0);
        assert_int_equal(k.n_data, 0);
        assert_int_equal(kvc_h2_conn_streams(f->c), 0);
        assert_int_equal(kvc_h2_conn_state(f->c), KVC_H2_OPEN);
    }
}

/* A gRPC error answered at once (trailers-only) while the body is still
 * going out, then RST_STREAM(NO_ERROR) to stop it: a normal end. */
static void test_early_answer(void **state)
{
    s_fix_t *f = *state;
    f->sv.mode = S_EARLY;
    s_pair(f, NULL);
    size_t n = 1u << 20;
    uint8_t *body = s_alloc(n);
    s_pattern(body, n, 3);
    s_call_t k;
    s_call_init(&k, 16);
    assert_int_equal(s_submit(f->c, "/no.Such/Method", body, n, &k), 1);
    kvc_h2_conn_flush(f->c);
    assert_true(s_pump(&f->sv, f->c, s_call_closed, &k));
    assert_int_equal(k.n_closed, 1);
    assert_int_equal(k.how, KVC_H2_END_DONE);
    assert_int_equal(k.h2_error, 0);
    assert_string_equal(k.fields,
                        ":status: 200\ncontent-type: application/grpc\ngrpc-status: 12\n");
    assert_int_equal(k.n_data, 0);
    assert_int_equal(kvc_h2_conn_streams(f->c), 0);
    assert_int_equal(kvc_h2_conn_state(f->c), KVC_H2_OPEN);
    assert_true(s_sv_find(&f->sv, 1)->body_len < 5 + n);
    /* The connection is still good for the next call. */
    f->sv.mode = S_RESPOND;
    s_call_t k2;
    s_call_init(&k2, 16);
    assert_int_equal(s_submit(f->c, "/a", "a", 1, &k2), 3);
    kvc_h2_conn_flush(f->c);
    assert_true(s_pump(&f->sv, f->c, s_call_closed, &k2));
    s_assert_ok(&k2, "pong", 4);
    assert_int_equal(k.after_closed, 0);
}

/* Condition for s_pump: the server's PING came back. */
static int s_sv_ping_acked(void *arg)
{
    return ((s_server_t *)arg)->n_ping_ack > 0;
}

/* A server's PING is answered by kvc_h2_conn_io on its own, with no stream open. */
static void test_ping_answered(void **state)
{
    s_fix_t *f = *state;
    s_pair(f, NULL);
    assert_int_equal(nghttp2_submit_ping(f->sv.ns, NGHTTP2_FLAG_NONE, NULL), 0);
    assert_true(s_pump(&f->sv, f->c, s_sv_ping_acked, &f->sv));
    assert_int_equal(f->sv.n_ping_ack, 1);
    assert_int_equal(kvc_h2_conn_state(f->c), KVC_H2_OPEN);
}

/* (d) GOAWAY: streams above its last id are refused, the rest finish, none start. */
static void test_goaway(void **state)
{
    s_fix_t *f = *state;
    f->sv.mode = S_HOLD;
    s_pair(f, NULL);
    s_call_t a, b, c;
    s_call_init(&a, 16);
    s_call_init(&b, 16);
    s_call_init(&c, 16);
    assert_int_equal(s_submit(f->c, "/a", "a", 1, &a), 1);
    assert_int_equal(s_submit(f->c, "/b", "b", 1, &b), 3);
    kvc_h2_conn_flush(f->c);
    s_sv_at_t at = {&f->sv, 3};
    assert_true(s_pump(&f->sv, f->c, s_sv_complete, &at));
    assert_int_equal(
        nghttp2_submit_goaway(f->sv.ns, NGHTTP2_FLAG_NONE, 1, NGHTTP2_NO_ERROR, NULL, 0), 0);
    assert_true(s_pump(&f->sv, f->c, s_call_closed, &b));
    assert_int_equal(b.how, KVC_H2_END_REFUSED);
    assert_int_equal(b.h2_error, NGHTTP2_REFUSED_STREAM);
    assert_int_equal(b.fields_len, 0);
    assert_int_equal(a.n_closed, 0);
    assert_int_equal(kvc_h2_conn_state(f->c), KVC_H2_CLOSING);
    assert_int_equal(kvc_h2_conn_streams(f->c), 1);
    assert_string_equal(kvc_h2_conn_error(f->c), "");
    assert_int_equal(s_submit(f->c, "/c", "c", 1, &c), KVC_ESTATE);
    assert_int_equal(kvc_h2_conn_streams(f->c), 1);

    /* Stream 1 is still answered; with it the connection has nothing left. */
    s_sv_respond(&f->sv, s_sv_find(&f->sv, 1));
    assert_true(s_pump(&f->sv, f->c, s_call_closed, &a));
    s_assert_ok(&a, "pong", 4);
    assert_int_equal(b.n_closed, 1);
    assert_int_equal(b.after_closed, 0);
    assert_int_equal(c.n_closed + c.n_data + (int)c.fields_len, 0);
    assert_int_equal(kvc_h2_conn_streams(f->c), 0);
    assert_int_equal(kvc_h2_conn_state(f->c), KVC_H2_DEAD);
    assert_string_not_equal(kvc_h2_conn_error(f->c), "");
    assert_false(kvc_h2_conn_never_opened(f->c));
}

/* (e) The server's end closes under a stream whose request went out. */
static void test_server_closes(void **state)
{
    s_fix_t *f = *state;
    f->sv.mode = S_HOLD;
    s_pair(f, NULL);
    s_call_t k;
    s_call_init(&k, 16);
    assert_int_equal(s_submit(f->c, "/a", "abc", 3, &k), 1);
    kvc_h2_conn_flush(f->c);
    s_sv_at_t at = {&f->sv, 1};
    assert_true(s_pump(&f->sv, f->c, s_sv_complete, &at));
    s_sv_close(&f->sv);
    assert_true(s_pump(&f->sv, f->c, s_call_closed, &k));
    assert_int_equal(k.n_closed, 1);
    assert_int_equal(k.how, KVC_H2_END_LOST);
    assert_int_equal(k.h2_error, 0);
    assert_int_equal(k.fields_len, 0);
    assert_int_equal(kvc_h2_conn_state(f->c), KVC_H2_DEAD);
    assert_string_not_equal(kvc_h2_conn_error(f->c), "");
    assert_non_null(strstr(kvc_h2_conn_error(f->c), "closed"));
    assert_false(kvc_h2_conn_never_opened(f->c));
    assert_int_equal(kvc_h2_conn_streams(f->c), 0);
    short ev = 123;
    assert_int_equal(kvc_h2_conn_pollfd(f->c, &ev), -1);
    assert_int_equal(ev, 0);
    /* Dead stays dead, quietly. */
    assert_int_equal(s_submit(f->c, "/b", "b", 1, &k), KVC_ESTATE);
    kvc_h2_conn_io(f->c, POLLIN, s_now_ms());
    kvc_h2_conn_flush(f->c);
    assert_int_equal(k.n_closed, 1);
    assert_int_equal(k.after_closed, 0);
}

/* A request submitted after the server's end closed never went out: the
 * header promises REFUSED (safe to send again), not LOST. */
static void test_closed_before_written(void **state)
{
    s_fix_t *f = *state;
    f->sv.mode = S_HOLD;
    s_pair(f, NULL);
    s_sv_close(&f->sv);
    s_call_t k;
    s_call_init(&k, 16);
    assert_int_equal(s_submit(f->c, "/a", "abc", 3, &k), 1);
    kvc_h2_conn_flush(f->c);
    assert_true(s_pump(&f->sv, f->c, s_call_closed, &k));
    assert_int_equal(kvc_h2_conn_state(f->c), KVC_H2_DEAD);
    assert_int_equal(k.n_closed, 1);
    assert_int_equal(k.how, KVC_H2_END_REFUSED);
}

/* (f) The data callback refuses: the stream is reset with CANCEL. */
static void test_data_refused(void **state)
{
    s_fix_t *f = *state;
    f->sv.mode = S_RESPOND;
    f->sv.hold_end = 1; /* headers and data, then the server waits */
    s_pair(f, NULL);
    s_call_t k;
    s_call_init(&k, 16);
    k.refuse = 1;
    assert_int_equal(s_submit(f->c, "/a", "abc", 3, &k), 1);
    kvc_h2_conn_flush(f->c);
    assert_true(s_pump(&f->sv, f->c, s_call_closed, &k));
    assert_int_equal(k.n_closed, 1);
    assert_int_equal(k.how, KVC_H2_END_RESET);
    assert_int_equal(k.h2_error, NGHTTP2_CANCEL);
    assert_int_equal(k.n_data, 1);
    assert_int_equal(k.data_len, 4);
    assert_memory_equal(k.data, "pong", 4);
    assert_string_equal(k.fields, ":status: 200\ncontent-type: application/grpc\n");
    s_sv_at_t at = {&f->sv, 1};
    assert_true(s_pump(&f->sv, f->c, s_sv_got_rst, &at));
    assert_int_equal(s_sv_find(&f->sv, 1)->n_rst, 1);
    assert_int_equal(s_sv_find(&f->sv, 1)->rst_code, NGHTTP2_CANCEL);
    assert_int_equal(f->sv.n_rst, 1);
    assert_int_equal(kvc_h2_conn_state(f->c), KVC_H2_OPEN);
    assert_int_equal(kvc_h2_conn_streams(f->c), 0);
    assert_int_equal(k.after_closed, 0);
}

/* (f) The same when the whole answer, trailers too, arrives in one read:
 * the refusal still wins, and nothing after it reaches the callbacks. */
static void test_data_refused_whole_answer(void **state)
{
    s_fix_t *f = *state;
    f->sv.mode = S_HOLD;
    s_pair(f, NULL);
    s_call_t k;
    s_call_init(&k, 16);
    k.refuse = 1;
    assert_int_equal(s_submit(f->c, "/a", "abc", 3, &k), 1);
    kvc_h2_conn_flush(f->c);
    s_sv_at_t at = {&f->sv, 1};
    assert_true(s_pump(&f->sv, f->c, s_sv_complete, &at));
    s_sv_respond(&f->sv, s_sv_find(&f->sv, 1));
    assert_int_equal(nghttp2_session_send(f->sv.ns), 0);
    assert_false(nghttp2_session_want_write(f->sv.ns));
    kvc_h2_conn_io(f->c, POLLIN, s_now_ms());
    assert_int_equal(k.n_closed, 1);
    assert_int_equal(k.how, KVC_H2_END_RESET);
    assert_int_equal(k.h2_error, NGHTTP2_CANCEL);
    assert_int_equal(k.n_data, 1);
    assert_string_equal(k.fields, ":status: 200\ncontent-type: application/grpc\n");
    assert_true(s_pump(&f->sv, f->c, s_sv_got_rst, &at));
    assert_int_equal(s_sv_find(&f->sv, 1)->rst_code, NGHTTP2_CANCEL);
    assert_int_equal(kvc_h2_conn_state(f->c), KVC_H2_OPEN);
    assert_int_equal(kvc_h2_conn_streams(f->c), 0);
    assert_int_equal(k.after_closed, 0);
}

/* (g) Cancelling a stream in flight: RST_STREAM(CANCEL) goes out, and the
 * answer that was already on its way reaches no callback. */
static void test_cancel_in_flight(void **state)
{
    s_fix_t *f = *state;
    f->sv.mode = S_HOLD;
    s_pair(f, NULL);
    s_call_t k, k2;
    s_call_init(&k, 16);
    s_call_init(&k2, 16);
    int32_t id = s_submit(f->c, "/a", "abc", 3, &k);
    assert_int_equal(id, 1);
    kvc_h2_conn_flush(f->c);
    s_sv_at_t at = {&f->sv, 1};
    assert_true(s_pump(&f->sv, f->c, s_sv_complete, &at));
    /* The whole answer is in the client's socket before it cancels. */
    s_sv_respond(&f->sv, s_sv_find(&f->sv, 1));
    assert_int_equal(nghttp2_session_send(f->sv.ns), 0);
    assert_false(nghttp2_session_want_write(f->sv.ns));
    kvc_h2_conn_cancel(f->c, id);
    k.cancelled = 1;
    assert_int_equal(kvc_h2_conn_streams(f->c), 1);
    kvc_h2_conn_io(f->c, POLLIN, s_now_ms()); /* reads the answer, then flushes */
    assert_true(s_pump(&f->sv, f->c, s_sv_got_rst, &at));
    assert_int_equal(s_sv_find(&f->sv, 1)->rst_code, NGHTTP2_CANCEL);
    assert_true(s_pump(&f->sv, f->c, s_conn_idle, f->c));
    assert_int_equal(k.after_cancel, 0);
    assert_int_equal(k.n_closed, 0);
    assert_int_equal(k.n_data, 0);
    assert_int_equal(k.fields_len, 0);

    /* The connection carries on. */
    f->sv.mode = S_RESPOND;
    assert_int_equal(s_submit(f->c, "/b", "b", 1, &k2), 3);
    kvc_h2_conn_flush(f->c);
    assert_true(s_pump(&f->sv, f->c, s_call_closed, &k2));
    s_assert_ok(&k2, "pong", 4);
    assert_int_equal(k.after_cancel, 0);
    assert_int_equal(f->sv.n_rst, 1);
}

/* (g) Cancelling while the server still holds the call: it sees the reset,
 * its later answer cannot reach us, and cancelling again is harmless. */
static void test_cancel_waiting(void **state)
{
    s_fix_t *f = *state;
    f->sv.mode = S_HOLD;
    s_pair(f, NULL);
    s_call_t k;
    s_call_init(&k, 16);
    int32_t id = s_submit(f->c, "/a", "abc", 3, &k);
    kvc_h2_conn_flush(f->c);
    s_sv_at_t at = {&f->sv, id};
    assert_true(s_pump(&f->sv, f->c, s_sv_complete, &at));
    kvc_h2_conn_cancel(f->c, id);
    k.cancelled = 1;
    kvc_h2_conn_flush(f->c);
    assert_true(s_pump(&f->sv, f->c, s_sv_got_rst, &at));
    s_sstream_t *st = s_sv_find(&f->sv, id);
    assert_int_equal(st->rst_code, NGHTTP2_CANCEL);
    assert_true(st->closed);
    assert_int_equal(st->close_code, NGHTTP2_CANCEL);
    assert_int_equal(kvc_h2_conn_streams(f->c), 0);
    kvc_h2_conn_cancel(f->c, id);
    kvc_h2_conn_cancel(f->c, 99);
    kvc_h2_conn_cancel(f->c, 0);
    kvc_h2_conn_flush(f->c);
    assert_int_equal(f->sv.n_rst, 1);
    assert_int_equal(k.after_cancel + k.n_closed + k.n_data + (int)k.fields_len, 0);
}

/* (g) Cancelling a stream before its request left (submitted, not flushed):
 * none of its callbacks may ever run (the owner may free ud at once). */
static void test_cancel_before_flush(void **state)
{
    s_fix_t *f = *state;
    f->sv.mode = S_RESPOND;
    s_pair(f, NULL);
    s_call_t k, k2;
    s_call_init(&k, 16);
    s_call_init(&k2, 16);
    int32_t id = s_submit(f->c, "/a", "abc", 3, &k);
    assert_int_equal(id, 1);
    kvc_h2_conn_cancel(f->c, id);
    k.cancelled = 1;
    assert_int_equal(s_submit(f->c, "/b", "b", 1, &k2), 3);
    kvc_h2_conn_flush(f->c);
    assert_true(s_pump(&f->sv, f->c, s_call_closed, &k2));
    s_assert_ok(&k2, "pong", 4);
    assert_true(s_pump(&f->sv, f->c, s_conn_idle, f->c));
    assert_int_equal(k.after_cancel, 0);
    assert_int_equal(k.n_closed + k.n_data + (int)k.fields_len, 0);
    /* Cancelled before a byte of it was written, stream 1 never went out:
     * nghttp2 drops a stream whose HEADERS are still queued rather than
     * reset a stream the server never saw (an idle stream, which RST_STREAM
     * must not name). The server saw only stream 3, and no reset. */
    assert_null(s_sv_find(&f->sv, 1));
    assert_int_equal(f->sv.n, 1);
    assert_int_equal(f->sv.st[0].id, 3);
    assert_int_equal(f->sv.n_rst, 0);
}

/* (g) Cancelling a stream while its body is still going out: from the
 * cancel on the body is no longer borrowed (the owner may free it), so not
 * one more byte of it may be read. The socket is full when it cancels. */
static void test_cancel_mid_body(void **state)
{
    s_fix_t *f = *state;
    f->sv.mode = S_HOLD;
    f->sv.window = 16u << 20;
    s_pair(f, NULL);
    assert_true(s_pump(&f->sv, f->c, s_sv_acked, &f->sv));
    size_t n = 4u << 20;
    uint8_t *body = s_alloc(n);
    for (size_t i = 0; i < n; i++)
        body[i] = (uint8_t)('a' + i % 26);
    s_call_t k;
    s_call_init(&k, 16);
    int32_t id = s_submit(f->c, "/up", body, n, &k);
    assert_int_equal(id, 1);
    kvc_h2_conn_flush(f->c);
    short ev = 0;
    kvc_h2_conn_pollfd(f->c, &ev);
    assert_true(ev & POLLOUT); /* more than the socket took is waiting */
    kvc_h2_conn_cancel(f->c, id);
    k.cancelled = 1;
    memset(body, 0xee, n); /* what freeing it could leave there */
    s_sv_at_t at = {&f->sv, id};
    assert_true(s_pump(&f->sv, f->c, s_sv_got_rst, &at));
    s_sstream_t *st = s_sv_find(&f->sv, id);
    assert_int_equal(st->rst_code, NGHTTP2_CANCEL);
    assert_false(st->complete);
    assert_true(st->body_len > 0 && st->body_len < 5 + n);
    if (memchr(st->body, 0xee, st->body_len))
        fail_msg("the server got body bytes read after the cancel");
    assert_true(s_pump(&f->sv, f->c, s_conn_idle, f->c));
    assert_int_equal(k.after_cancel + k.n_closed + k.n_data + (int)k.fields_len, 0);
    assert_int_equal(kvc_h2_conn_state(f->c), KVC_H2_OPEN);
}

/* (g) Cancelling a request that waits in nghttp2's queue (the server allows
 * one stream at a time): it never leaves, and none of its callbacks run. */
static void test_cancel_queued(void **state)
{
    s_fix_t *f = *state;
    f->sv.mode = S_HOLD;
    f->sv.max_streams = 1;
    s_pair(f, NULL);
    assert_true(s_pump(&f->sv, f->c, s_sv_acked, &f->sv));
    s_call_t a, b, c;
    s_call_init(&a, 16);
    s_call_init(&b, 16);
    s_call_init(&c, 16);
    assert_int_equal(s_submit(f->c, "/a", "a", 1, &a), 1);
    assert_int_equal(s_submit(f->c, "/b", "b", 1, &b), 3);
    kvc_h2_conn_flush(f->c);
    s_sv_at_t at = {&f->sv, 1};
    assert_true(s_pump(&f->sv, f->c, s_sv_complete, &at));
    assert_int_equal(f->sv.n, 1);
    kvc_h2_conn_cancel(f->c, 3);
    b.cancelled = 1;
    kvc_h2_conn_flush(f->c);
    f->sv.mode = S_RESPOND;
    s_sv_respond(&f->sv, s_sv_find(&f->sv, 1));
    assert_true(s_pump(&f->sv, f->c, s_call_closed, &a));
    s_assert_ok(&a, "pong", 4);
    /* The next request goes out in the freed slot; stream 3 never does. */
    assert_int_equal(s_submit(f->c, "/c", "c", 1, &c), 5);
    kvc_h2_conn_flush(f->c);
    assert_true(s_pump(&f->sv, f->c, s_call_closed, &c));
    s_assert_ok(&c, "pong", 4);
    assert_int_equal(kvc_h2_conn_streams(f->c), 0);
    assert_null(s_sv_find(&f->sv, 3));
    assert_int_equal(b.after_cancel + b.n_closed + b.n_data + (int)b.fields_len, 0);
}

/* Freeing a connection with a stream in flight runs no callback. */
static void test_free_runs_no_callback(void **state)
{
    s_fix_t *f = *state;
    f->sv.mode = S_HOLD;
    s_pair(f, NULL);
    s_call_t k;
    s_call_init(&k, 16);
    assert_int_equal(s_submit(f->c, "/a", "a", 1, &k), 1);
    kvc_h2_conn_flush(f->c);
    s_sv_at_t at = {&f->sv, 1};
    assert_true(s_pump(&f->sv, f->c, s_sv_complete, &at));
    kvc_h2_conn_free(f->c);
    f->c = NULL;
    assert_int_equal(k.n_closed + k.n_data + (int)k.fields_len, 0);
}

/* (h) Many streams at once on one connection, each with its own payload. */
#define S_MANY 50
/* Runs S_MANY echo calls at once and checks each got its own body back. */
static void s_many(s_fix_t *f)
{
    static s_call_t k[S_MANY];
    static uint8_t body[S_MANY][300];
    for (int i = 0; i < S_MANY; i++) {
        s_call_init(&k[i], sizeof body[i] + 5);
        s_pattern(body[i], sizeof body[i], (unsigned)i + 100);
        snprintf((char *)body[i], 16, "call-%02d", i);
        /* Each call's length differs too. */
        assert_int_equal(s_submit(f->c, "/m", body[i], sizeof body[i] - (size_t)i, &k[i]),
                         1 + 2 * i);
    }
    assert_int_equal(kvc_h2_conn_streams(f->c), S_MANY);
    kvc_h2_conn_flush(f->c);
    assert_true(s_pump(&f->sv, f->c, s_conn_idle, f->c));
    uint8_t want[sizeof body[0] + 5];
    for (int i = 0; i < S_MANY; i++) {
        size_t n = sizeof body[i] - (size_t)i;
        memcpy(want, s_prefix, 5);
        memcpy(want + 5, body[i], n);
        s_assert_ok(&k[i], want, 5 + n);
    }
    assert_int_equal(f->sv.n, S_MANY);
    assert_int_equal(f->sv.failed, 0);
    assert_int_equal(kvc_h2_conn_state(f->c), KVC_H2_OPEN);
}

/* (h) All at once, as far as nghttp2 lets them go. */
static void test_many_streams(void **state)
{
    s_fix_t *f = *state;
    f->sv.mode = S_RESPOND;
    f->sv.echo = 1;
    s_pair(f, NULL);
    s_many(f);
}

/* The same when the server allows 3 streams at a time: nghttp2 queues the rest. */
static void test_many_streams_limited(void **state)
{
    s_fix_t *f = *state;
    f->sv.mode = S_RESPOND;
    f->sv.echo = 1;
    f->sv.max_streams = 3;
    s_pair(f, NULL);
    assert_true(s_pump(&f->sv, f->c, s_sv_acked, &f->sv));
    s_many(f);
}

/* ---- Real TCP --------------------------------------------------------------- */

/* Binds 127.0.0.1 port 0 and listens unless refusing; returns the socket
 * and its port. A refusing socket stays bound but never listens, so
 * connections to it get a RST, and while it is open nobody else can take
 * the port (a port bound and closed again could be handed to another test). */
static int s_bind(uint16_t *port, int refusing)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    if (!refusing)
        assert_int_equal(listen(fd, 8), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

/* Binds a listener on 127.0.0.1 port 0; returns it and its port. */
static int s_listen(uint16_t *port)
{
    return s_bind(port, 0);
}

/* Connects to authority through the listener in f->sv, then makes one call. */
static void s_tcp_call(s_fix_t *f, const char *authority, kvc_h2_state_t first)
{
    int64_t before = s_now_ms();
    f->c = kvc_h2_conn_new(authority, NULL, &s_cb);
    assert_non_null(f->c);
    assert_int_equal(kvc_h2_conn_state(f->c), first);
    short ev = 0;
    assert_true(kvc_h2_conn_pollfd(f->c, &ev) >= 0);
    assert_int_equal(ev, first == KVC_H2_RESOLVING ? POLLIN : POLLOUT);
    int64_t d = kvc_h2_conn_deadline(f->c);
    assert_true(d >= before + 5000 && d <= s_now_ms() + 5000);
    s_call_t k;
    assert_int_equal(s_submit(f->c, "/a", "x", 1, &k), KVC_ESTATE);
    assert_true(s_pump(&f->sv, f->c, s_conn_open, f->c));
    assert_true(kvc_h2_conn_deadline(f->c) == INT64_MAX);
    assert_false(kvc_h2_conn_never_opened(f->c));
    s_call_init(&k, 16);
    assert_int_equal(s_submit(f->c, "/pkg.S/M", "tcp", 3, &k), 1);
    kvc_h2_conn_flush(f->c);
    assert_true(s_pump(&f->sv, f->c, s_call_closed, &k));
    s_assert_ok(&k, "\0\0\0\0\5tcp", 8);
    s_sstream_t *st = s_sv_find(&f->sv, 1);
    assert_string_equal(st->authority, authority);
    assert_string_equal(st->path, "/pkg.S/M");
    assert_string_equal(kvc_h2_conn_error(f->c), "");
}

/* A numeric address connects at once, without the lookup thread. */
static void test_tcp_numeric(void **state)
{
    s_fix_t *f = *state;
    f->sv.mode = S_RESPOND;
    f->sv.echo = 1;
    uint16_t port;
    f->sv.listen_fd = s_listen(&port);
    char auth[32];
    snprintf(auth, sizeof auth, "127.0.0.1:%u", port);
    s_tcp_call(f, auth, KVC_H2_CONNECTING);
}

/* A host name goes through the lookup thread first. */
static void test_tcp_resolved(void **state)
{
    s_fix_t *f = *state;
    f->sv.mode = S_RESPOND;
    f->sv.echo = 1;
    uint16_t port;
    f->sv.listen_fd = s_listen(&port);
    char auth[32];
    snprintf(auth, sizeof auth, "localhost:%u", port);
    s_tcp_call(f, auth, KVC_H2_RESOLVING);
}

/* A port that refuses: bound, never listened on, held until the teardown
 * closes it (the server is not pumped here, so it never accepts from it). */
static void test_tcp_refused(void **state)
{
    s_fix_t *f = *state;
    uint16_t port;
    f->sv.listen_fd = s_bind(&port, 1);
    char auth[32];
    snprintf(auth, sizeof auth, "127.0.0.1:%u", port);
    s_call_t k;
    s_call_init(&k, 16);
    f->c = kvc_h2_conn_new(auth, NULL, &s_cb);
    assert_non_null(f->c);
    assert_true(s_pump(NULL, f->c, s_conn_dead, f->c));
    assert_true(kvc_h2_conn_never_opened(f->c));
    assert_non_null(strstr(kvc_h2_conn_error(f->c), "Connection refused"));
    assert_int_equal(kvc_h2_conn_pollfd(f->c, NULL), -1);
    assert_true(kvc_h2_conn_deadline(f->c) == INT64_MAX);
    assert_int_equal(s_submit(f->c, "/a", "x", 1, &k), KVC_ESTATE);
    assert_int_equal(k.n_closed, 0);
}

/* A name that cannot resolve: dead, never opened, and the error says so. */
static void test_unresolvable(void **state)
{
    s_fix_t *f = *state;
    f->c = kvc_h2_conn_new("no-such-host.invalid:80", NULL, &s_cb);
    assert_non_null(f->c);
    assert_int_equal(kvc_h2_conn_state(f->c), KVC_H2_RESOLVING);
    assert_true(s_pump(NULL, f->c, s_conn_dead, f->c));
    assert_true(kvc_h2_conn_never_opened(f->c));
    assert_non_null(strstr(kvc_h2_conn_error(f->c), "could not resolve"));
    assert_non_null(strstr(kvc_h2_conn_error(f->c), "no-such-host.invalid"));
}

/* The connect deadline, given as now_ms: no waiting. */
static void test_connect_deadline(void **state)
{
    s_fix_t *f = *state;
    uint16_t port;
    f->sv.listen_fd = s_listen(&port); /* never accepted */
    char auth[32];
    snprintf(auth, sizeof auth, "127.0.0.1:%u", port);
    kvc_h2_opts_t o = {.connect_timeout_ms = 1234};
    int64_t before = s_now_ms();
    f->c = kvc_h2_conn_new(auth, &o, &s_cb);
    assert_non_null(f->c);
    int64_t d = kvc_h2_conn_deadline(f->c);
    assert_true(d >= before + 1234 && d <= s_now_ms() + 1234);
    kvc_h2_conn_io(f->c, 0, d - 1);
    assert_int_equal(kvc_h2_conn_state(f->c), KVC_H2_CONNECTING);
    kvc_h2_conn_io(f->c, 0, d);
    assert_int_equal(kvc_h2_conn_state(f->c), KVC_H2_DEAD);
    assert_true(kvc_h2_conn_never_opened(f->c));
    char want[96];
    snprintf(want, sizeof want, "connecting to 127.0.0.1 port %u timed out after 1234 ms", port);
    assert_string_equal(kvc_h2_conn_error(f->c), want);
}

/* The same while the lookup thread runs; freeing it then leaks nothing. */
static void test_lookup_deadline(void **state)
{
    s_fix_t *f = *state;
    f->c = kvc_h2_conn_new("localhost:1", NULL, &s_cb);
    assert_non_null(f->c);
    assert_int_equal(kvc_h2_conn_state(f->c), KVC_H2_RESOLVING);
    kvc_h2_conn_io(f->c, 0, kvc_h2_conn_deadline(f->c));
    assert_int_equal(kvc_h2_conn_state(f->c), KVC_H2_DEAD);
    assert_true(kvc_h2_conn_never_opened(f->c));
    assert_string_equal(kvc_h2_conn_error(f->c),
                        "looking up localhost port 1 timed out after 5000 ms");
    kvc_h2_conn_t *c2 = kvc_h2_conn_new("localhost:2", NULL, &s_cb);
    assert_non_null(c2);
    kvc_h2_conn_free(c2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_good),
        cmocka_unit_test(test_split_bad),
        cmocka_unit_test(test_split_stray_bracket),
        cmocka_unit_test(test_split_range),
        cmocka_unit_test(test_new_rejects),
        cmocka_unit_test_setup_teardown(test_adopt_sends_settings, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_adopt_window_opts, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_unary_call, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_empty_body_then_next, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_submit_rejects, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_big_request_body, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_big_response_small_window, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_server_reset, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_early_answer, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_ping_answered, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_goaway, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_server_closes, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_closed_before_written, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_data_refused, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_data_refused_whole_answer, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_cancel_in_flight, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_cancel_waiting, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_cancel_before_flush, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_cancel_mid_body, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_cancel_queued, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_free_runs_no_callback, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_many_streams, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_many_streams_limited, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_tcp_numeric, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_tcp_resolved, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_tcp_refused, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_unresolvable, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_connect_deadline, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_lookup_deadline, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
