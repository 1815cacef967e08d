/*
 * h2_conn.c - an HTTP/2 client connection over plain TCP, on nghttp2.
 *
 * Design: nghttp2 runs the session in memory; this file owns the socket.
 * Frames nghttp2 produces are appended to one output buffer (request bodies
 * copied once, straight from the caller's bytes) and sent with one send()
 * per flush, so a unary call costs one write and, answered in one segment,
 * one read. Host names are resolved by a short-lived detached thread that
 * signals an eventfd; the connection only polls that descriptor, so a slow
 * resolver never stalls the loop that drives it.
 *
 * Must never: write to a socket from inside an nghttp2 callback (the
 * session is mid-call), run a callback for a stream after it was cancelled
 * or its connection freed, or buffer without bound (output stops at
 * S_OUT_HIGH until the socket drains).
 */
#include "h2_conn.h"

#include "base.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define S_HOST_MAX 256
#define S_PORT_MAX 8
#define S_DEFAULT_CONNECT_MS 5000u
#define S_DEFAULT_STREAM_WINDOW (8u << 20)
#define S_DEFAULT_CONN_WINDOW (32u << 20)
/* Output buffered before nghttp2 is told to wait for the socket. */
#define S_OUT_HIGH (256u << 10)
#define S_READ_CHUNK (64u << 10)
/* Reads per kvc_h2_conn_io, so one busy connection cannot hold the loop. */
#define S_READS_PER_IO 16
#define S_MAX_FIELDS 16

/* A lookup handed to a helper thread; freed by whichever side lets go last. */
typedef struct {
    atomic_int refs;
    int efd;
    char host[S_HOST_MAX];
    char port[S_PORT_MAX];
    int gai_err;
    struct addrinfo *res;
} s_lookup_t;

typedef struct s_stream {
    struct s_stream *prev, *next;
    void *ud; /* NULL once cancelled */
    int32_t id;
    uint64_t sent_at; /* c->queued just past its HEADERS; 0 while they wait */
    int refused;      /* its data callback refused: ignore the rest */
    const uint8_t *prefix;
    size_t prefix_len;
    const uint8_t *body;
    size_t body_len;
    size_t off; /* body bytes (prefix included) handed to nghttp2 */
} s_stream_t;

struct kvc_h2_conn {
    kvc_h2_state_t state;
    int fd;
    int opened; /* was ever OPEN */
    char error[192];
    char host[S_HOST_MAX];
    char port[S_PORT_MAX];
    char *authority;
    kvc_h2_opts_t opts;
    kvc_h2_cb_t cb;
    int64_t deadline_ms;
    s_lookup_t *lookup;
    struct addrinfo *addrs; /* what is left to try */
    struct addrinfo *addrs_head;
    int addrs_numeric; /* addrs_head came from the numeric path */
    nghttp2_session *session;
    s_stream_t *streams;
    int n_streams;
    uint8_t *out;
    size_t out_len, out_off, out_cap;
    int out_full;             /* told nghttp2 to wait: output at S_OUT_HIGH */
    uint64_t queued, written; /* output bytes ever buffered, ever sent */
    char goaway[128];         /* the server's GOAWAY, for the error message ("" if none) */
    uint8_t *in;
};

/* ---- Authority ------------------------------------------------------------ */

int kvc_h2_authority_split(const char *authority, char *host, size_t host_cap, char *port,
                           size_t port_cap)
{
    if (!authority || !host || !port || host_cap == 0 || port_cap == 0)
        return KVC_EINVAL;
    const char *h = authority, *h_end, *colon;
    if (*h == '[') {
        h_end = strchr(h, ']');
        if (!h_end || h_end == h + 1)
            return KVC_EINVAL;
        h++;
        colon = h_end[1] == ':' ? h_end + 1 : NULL;
        if (!colon && h_end[1] != '\0')
            return KVC_EINVAL;
    } else {
        colon = strchr(h, ':');
        if (colon && strchr(colon + 1, ':'))
            return KVC_EINVAL; /* a bare IPv6 address needs brackets */
        h_end = colon ? colon : h + strlen(h);
        if (h_end == h)
            return KVC_EINVAL;
    }
    for (const char *p = h; p < h_end; p++)
        if ((unsigned char)*p <= ' ' || *p == '/' || *p == '@' || *p == 0x7f || *p == '[' ||
            *p == ']')
            return KVC_EINVAL;
    const char *pt = "80";
    if (colon) {
        pt = colon + 1;
        size_t n = strlen(pt);
        if (n == 0 || n > 5 || strspn(pt, "0123456789") != n)
            return KVC_EINVAL;
        long v = strtol(pt, NULL, 10);
        if (v < 1 || v > 65535)
            return KVC_EINVAL;
    }
    size_t hl = (size_t)(h_end - h);
    if (hl + 1 > host_cap || strlen(pt) + 1 > port_cap)
        return KVC_ERANGE;
    memcpy(host, h, hl);
    host[hl] = '\0';
    memcpy(port, pt, strlen(pt) + 1);
    return KVC_OK;
}

/* ---- Name lookup ---------------------------------------------------------- */

static void s_lookup_release(s_lookup_t *l)
{
    if (atomic_fetch_sub(&l->refs, 1) != 1)
        return;
    if (l->res)
        freeaddrinfo(l->res);
    if (l->efd >= 0)
        close(l->efd);
    kvc_free(l);
}

static void *s_lookup_main(void *arg)
{
    s_lookup_t *l = arg;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    l->gai_err = getaddrinfo(l->host, l->port, &hints, &l->res);
    uint64_t one = 1;
    /* The eventfd write publishes res to the reader (a system call orders it). */
    if (write(l->efd, &one, sizeof one) < 0) {
        /* Nothing to do: the connection then hits its deadline. */
    }
    s_lookup_release(l);
    return NULL;
}

/* ---- Dying ---------------------------------------------------------------- */

static void s_close_fd(kvc_h2_conn_t *c)
{
    if (c->fd >= 0 && (!c->lookup || c->fd != c->lookup->efd))
        close(c->fd);
    c->fd = -1;
}

/* Ends the connection: every stream still open is reported (refused when
 * its request never went out, else lost). */
static void s_die(kvc_h2_conn_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_die(kvc_h2_conn_t *c, const char *fmt, ...)
{
    if (c->state == KVC_H2_DEAD)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->error, sizeof c->error, fmt, ap);
    va_end(ap);
    c->state = KVC_H2_DEAD;
    s_close_fd(c);
    if (c->lookup) {
        s_lookup_release(c->lookup);
        c->lookup = NULL;
    }
    s_stream_t *s = c->streams;
    c->streams = NULL;
    c->n_streams = 0;
    while (s) {
        s_stream_t *next = s->next;
        if (s->ud)
            c->cb.closed(
                s->ud,
                s->sent_at && c->written >= s->sent_at ? KVC_H2_END_LOST : KVC_H2_END_REFUSED, 0);
        if (c->session)
            nghttp2_session_set_stream_user_data(c->session, s->id, NULL);
        kvc_free(s);
        s = next;
    }
}

/* ---- nghttp2 callbacks ---------------------------------------------------- */

/* Makes room for n more output bytes. */
static int s_out_reserve(kvc_h2_conn_t *c, size_t n)
{
    if (c->out_len + n <= c->out_cap)
        return 0;
    if (c->out_off > 0) {
        /* Drop what the socket took already before growing. */
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
        if (c->out_len + n <= c->out_cap)
            return 0;
    }
    size_t cap = c->out_cap ? c->out_cap : 16384;
    while (cap < c->out_len + n)
        cap *= 2;
    uint8_t *p = kvc_realloc(c->out, cap);
    if (!p)
        return -1;
    c->out = p;
    c->out_cap = cap;
    return 0;
}

/* Room for n more output bytes, or the nghttp2 error that says why not:
 * WOULDBLOCK at S_OUT_HIGH (the socket drains first), CALLBACK_FAILURE
 * when memory runs out. */
static int s_out_room(kvc_h2_conn_t *c, size_t n)
{
    if (c->out_len - c->out_off >= S_OUT_HIGH) {
        c->out_full = 1;
        return NGHTTP2_ERR_WOULDBLOCK;
    }
    return s_out_reserve(c, n) == 0 ? 0 : NGHTTP2_ERR_CALLBACK_FAILURE;
}

static ssize_t s_on_send(nghttp2_session *session, const uint8_t *data, size_t len, int flags,
                         void *user_data)
{
    (void)session;
    (void)flags;
    kvc_h2_conn_t *c = user_data;
    int rc = s_out_room(c, len);
    if (rc != 0)
        return rc;
    memcpy(c->out + c->out_len, data, len);
    c->out_len += len;
    c->queued += len;
    return (ssize_t)len;
}

/* DATA frames: the 9-byte header then the body, copied once from the caller. */
static int s_on_send_data(nghttp2_session *session, nghttp2_frame *frame, const uint8_t *framehd,
                          size_t length, nghttp2_data_source *source, void *user_data)
{
    (void)session;
    kvc_h2_conn_t *c = user_data;
    s_stream_t *s = source->ptr;
    size_t pad = frame->data.padlen;
    int rc = s_out_room(c, 9 + length + pad);
    if (rc != 0)
        return rc;
    uint8_t *o = c->out + c->out_len;
    memcpy(o, framehd, 9);
    o += 9;
    if (pad > 0)
        *o++ = (uint8_t)(pad - 1);
    size_t left = length;
    while (left > 0) {
        size_t k;
        if (!s->ud) {
            /* Cancelled: the caller's bytes are no longer ours; RST_STREAM follows. */
            k = left;
            memset(o, 0, k);
        } else if (s->off < s->prefix_len) {
            k = s->prefix_len - s->off;
            if (k > left)
                k = left;
            memcpy(o, s->prefix + s->off, k);
        } else {
            size_t at = s->off - s->prefix_len;
            k = s->body_len - at;
            if (k > left)
                k = left;
            memcpy(o, s->body + at, k);
        }
        o += k;
        s->off += k;
        left -= k;
    }
    if (pad > 1) {
        memset(o, 0, pad - 1);
        o += pad - 1;
    }
    c->queued += (size_t)(o - c->out) - c->out_len;
    c->out_len = (size_t)(o - c->out);
    return 0;
}

/* Data provider: says how much of the body is next, without copying it. */
static ssize_t s_on_read_body(nghttp2_session *session, int32_t stream_id, uint8_t *buf,
                              size_t length, uint32_t *data_flags, nghttp2_data_source *source,
                              void *user_data)
{
    (void)session;
    (void)stream_id;
    (void)buf;
    (void)user_data;
    s_stream_t *s = source->ptr;
    /* s->off moves only when the frame is written (s_on_send_data); nghttp2
     * asks for one frame at a time, so "the rest from off" is exact. */
    size_t total = s->prefix_len + s->body_len;
    size_t left = total - s->off;
    size_t k = left < length ? left : length;
    *data_flags |= NGHTTP2_DATA_FLAG_NO_COPY;
    if (k == left)
        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)k;
}

static s_stream_t *s_stream_of(nghttp2_session *session, int32_t id)
{
    return nghttp2_session_get_stream_user_data(session, id);
}

static int s_on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                       size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                       void *user_data)
{
    (void)flags;
    kvc_h2_conn_t *c = user_data;
    if (frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    s_stream_t *s = s_stream_of(session, frame->hd.stream_id);
    if (s && s->ud)
        c->cb.field(s->ud, (const char *)name, namelen, (const char *)value, valuelen);
    return 0;
}

static int s_on_data(nghttp2_session *session, uint8_t flags, int32_t stream_id,
                     const uint8_t *data, size_t len, void *user_data)
{
    (void)flags;
    kvc_h2_conn_t *c = user_data;
    s_stream_t *s = s_stream_of(session, stream_id);
    if (!s || !s->ud || s->refused)
        return 0;
    if (c->cb.data(s->ud, data, len) != 0) {
        s->refused = 1;
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, stream_id, NGHTTP2_CANCEL);
    }
    return 0;
}

static int s_on_frame_send(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    kvc_h2_conn_t *c = user_data;
    if (frame->hd.type == NGHTTP2_HEADERS) {
        s_stream_t *s = s_stream_of(session, frame->hd.stream_id);
        if (s)
            s->sent_at = c->queued;
    }
    return 0;
}

static int s_on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    (void)session;
    kvc_h2_conn_t *c = user_data;
    if (frame->hd.type != NGHTTP2_GOAWAY)
        return 0;
    if (c->state == KVC_H2_OPEN)
        c->state = KVC_H2_CLOSING;
    /* Kept for the message when the connection ends: the code, and the
     * debug text (gRPC servers say "too_many_pings" and the like) cut to
     * printable ASCII. */
    const nghttp2_goaway *g = &frame->goaway;
    char dbg[64];
    size_t n = 0;
    for (size_t i = 0; i < g->opaque_data_len && n + 1 < sizeof dbg; i++) {
        uint8_t b = g->opaque_data[i];
        dbg[n++] = b >= 0x20 && b < 0x7f ? (char)b : '?';
    }
    dbg[n] = '\0';
    snprintf(c->goaway, sizeof c->goaway, "GOAWAY %s%s%s", nghttp2_http2_strerror(g->error_code),
             n ? ", " : "", dbg);
    return 0;
}

static int s_on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                             void *user_data)
{
    kvc_h2_conn_t *c = user_data;
    s_stream_t *s = s_stream_of(session, stream_id);
    if (!s)
        return 0;
    nghttp2_session_set_stream_user_data(session, stream_id, NULL);
    if (s->prev)
        s->prev->next = s->next;
    else
        c->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    c->n_streams--;
    if (s->ud) {
        kvc_h2_end_t how = error_code == NGHTTP2_NO_ERROR         ? KVC_H2_END_DONE
                           : error_code == NGHTTP2_REFUSED_STREAM ? KVC_H2_END_REFUSED
                                                                  : KVC_H2_END_RESET;
        c->cb.closed(s->ud, how, error_code);
    }
    kvc_free(s);
    return 0;
}

/* ---- Life ----------------------------------------------------------------- */

static nghttp2_session_callbacks *s_callbacks(void)
{
    nghttp2_session_callbacks *cbs;
    if (nghttp2_session_callbacks_new(&cbs) != 0)
        return NULL;
    nghttp2_session_callbacks_set_send_callback(cbs, s_on_send);
    nghttp2_session_callbacks_set_send_data_callback(cbs, s_on_send_data);
    nghttp2_session_callbacks_set_on_header_callback(cbs, s_on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, s_on_data);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, s_on_frame_send);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, s_on_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, s_on_stream_close);
    return cbs;
}

/* Starts the lookup: at once for a numeric address, else on a helper thread. */
static int s_start_lookup(kvc_h2_conn_t *c)
{
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST};
    struct addrinfo *res = NULL;
    if (getaddrinfo(c->host, c->port, &hints, &res) == 0) {
        c->addrs_head = c->addrs = res;
        c->addrs_numeric = 1;
        return KVC_OK;
    }
    s_lookup_t *l = kvc_calloc(1, sizeof *l);
    if (!l)
        return KVC_ENOMEM;
    l->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (l->efd < 0) {
        kvc_free(l);
        return KVC_EIO;
    }
    memcpy(l->host, c->host, sizeof l->host);
    memcpy(l->port, c->port, sizeof l->port);
    atomic_init(&l->refs, 2);
    pthread_attr_t attr;
    pthread_t t;
    int ok = pthread_attr_init(&attr) == 0;
    ok = ok && pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED) == 0;
    ok = ok && pthread_create(&t, &attr, s_lookup_main, l) == 0;
    pthread_attr_destroy(&attr);
    if (!ok) {
        close(l->efd);
        kvc_free(l);
        return KVC_EIO;
    }
    c->lookup = l;
    c->fd = l->efd;
    c->state = KVC_H2_RESOLVING;
    return KVC_OK;
}

/* Tries the next address; dies when none is left. */
static void s_connect_next(kvc_h2_conn_t *c, int last_errno)
{
    while (c->addrs) {
        struct addrinfo *a = c->addrs;
        c->addrs = a->ai_next;
        int fd =
            socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            last_errno = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0 || errno == EINPROGRESS) {
            c->fd = fd;
            c->state = KVC_H2_CONNECTING;
            return;
        }
        last_errno = errno;
        close(fd);
    }
    s_die(c, "connect to %s port %s: %s", c->host, c->port,
          last_errno ? strerror(last_errno) : "no address");
}

/* Allocates a connection with its session, SETTINGS queued; NULL on failure. */
static kvc_h2_conn_t *s_conn_alloc(const char *authority, const kvc_h2_opts_t *opts,
                                   const kvc_h2_cb_t *cb)
{
    if (!authority || !cb || !cb->field || !cb->data || !cb->closed)
        return NULL;
    kvc_h2_conn_t *c = kvc_calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->fd = -1;
    c->cb = *cb;
    if (opts)
        c->opts = *opts;
    if (c->opts.connect_timeout_ms == 0)
        c->opts.connect_timeout_ms = S_DEFAULT_CONNECT_MS;
    if (c->opts.stream_window == 0 || c->opts.stream_window > NGHTTP2_MAX_WINDOW_SIZE)
        c->opts.stream_window = S_DEFAULT_STREAM_WINDOW;
    if (c->opts.conn_window == 0 || c->opts.conn_window > NGHTTP2_MAX_WINDOW_SIZE)
        c->opts.conn_window = S_DEFAULT_CONN_WINDOW;
    if (kvc_h2_authority_split(authority, c->host, sizeof c->host, c->port, sizeof c->port) !=
        KVC_OK)
        goto fail;
    c->authority = kvc_strdup(authority);
    c->in = kvc_malloc(S_READ_CHUNK);
    if (!c->authority || !c->in)
        goto fail;
    nghttp2_session_callbacks *cbs = s_callbacks();
    if (!cbs)
        goto fail;
    int rv = nghttp2_session_client_new(&c->session, cbs, c);
    nghttp2_session_callbacks_del(cbs);
    if (rv != 0)
        goto fail;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, c->opts.stream_window},
    };
    if (nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]) != 0 ||
        nghttp2_session_set_local_window_size(c->session, NGHTTP2_FLAG_NONE, 0,
                                              (int32_t)c->opts.conn_window) != 0)
        goto fail;
    c->state = KVC_H2_CONNECTING;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    c->deadline_ms =
        (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + (int64_t)c->opts.connect_timeout_ms;
    return c;

fail:
    kvc_h2_conn_free(c);
    return NULL;
}

kvc_h2_conn_t *kvc_h2_conn_new(const char *authority, const kvc_h2_opts_t *opts,
                               const kvc_h2_cb_t *cb)
{
    kvc_h2_conn_t *c = s_conn_alloc(authority, opts, cb);
    if (!c)
        return NULL;
    int rc = s_start_lookup(c);
    if (rc == KVC_ENOMEM) {
        kvc_h2_conn_free(c);
        return NULL;
    }
    if (rc != KVC_OK)
        s_die(c, "cannot start the lookup of %s", c->host);
    else if (!c->lookup)
        s_connect_next(c, 0);
    return c;
}

kvc_h2_conn_t *kvc_h2_conn_adopt(int fd, const char *authority, const kvc_h2_opts_t *opts,
                                 const kvc_h2_cb_t *cb)
{
    if (fd < 0)
        return NULL;
    kvc_h2_conn_t *c = s_conn_alloc(authority, opts, cb);
    if (!c)
        return NULL;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        kvc_h2_conn_free(c); /* fd is not c's yet: c->fd is -1 */
        return NULL;
    }
    c->fd = fd;
    c->state = KVC_H2_OPEN;
    c->opened = 1;
    kvc_h2_conn_flush(c);
    return c;
}

void kvc_h2_conn_free(kvc_h2_conn_t *c)
{
    if (!c)
        return;
    s_close_fd(c);
    if (c->lookup)
        s_lookup_release(c->lookup);
    if (c->addrs_head)
        freeaddrinfo(c->addrs_head);
    while (c->streams) {
        s_stream_t *s = c->streams;
        c->streams = s->next;
        kvc_free(s);
    }
    nghttp2_session_del(c->session);
    kvc_free(c->authority);
    kvc_free(c->out);
    kvc_free(c->in);
    kvc_free(c);
}

kvc_h2_state_t kvc_h2_conn_state(const kvc_h2_conn_t *c)
{
    return c->state;
}

const char *kvc_h2_conn_error(const kvc_h2_conn_t *c)
{
    return c->error;
}

int kvc_h2_conn_never_opened(const kvc_h2_conn_t *c)
{
    return c->state == KVC_H2_DEAD && !c->opened;
}

int kvc_h2_conn_streams(const kvc_h2_conn_t *c)
{
    return c->n_streams;
}

int kvc_h2_conn_pollfd(const kvc_h2_conn_t *c, short *events)
{
    short ev = 0;
    switch (c->state) {
    case KVC_H2_RESOLVING:
        ev = POLLIN;
        break;
    case KVC_H2_CONNECTING:
        ev = POLLOUT;
        break;
    case KVC_H2_OPEN:
    case KVC_H2_CLOSING:
        ev = POLLIN;
        if (c->out_len > c->out_off || c->out_full)
            ev |= POLLOUT;
        break;
    case KVC_H2_DEAD:
        break;
    }
    if (events)
        *events = ev;
    return c->state == KVC_H2_DEAD ? -1 : c->fd;
}

int64_t kvc_h2_conn_deadline(const kvc_h2_conn_t *c)
{
    return c->state == KVC_H2_RESOLVING || c->state == KVC_H2_CONNECTING ? c->deadline_ms
                                                                         : INT64_MAX;
}

/* ---- I/O ------------------------------------------------------------------ */

/* Sends buffered output; 0, or -1 when the connection died. */
static int s_write_out(kvc_h2_conn_t *c)
{
    while (c->out_len > c->out_off) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (size_t)n;
            c->written += (uint64_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        s_die(c, "send to the backend: %s", n < 0 ? strerror(errno) : "nothing written");
        return -1;
    }
    c->out_len = c->out_off = 0;
    return 0;
}

void kvc_h2_conn_flush(kvc_h2_conn_t *c)
{
    if (c->state != KVC_H2_OPEN && c->state != KVC_H2_CLOSING)
        return;
    for (;;) {
        c->out_full = 0;
        int rv = nghttp2_session_send(c->session);
        if (rv != 0) {
            s_die(c, "HTTP/2 session failed: %s", nghttp2_strerror(rv));
            return;
        }
        if (s_write_out(c) != 0)
            return;
        /* More to go only if nghttp2 stopped for room and the socket took it all. */
        if (!c->out_full || c->out_len > c->out_off)
            break;
    }
    if (!nghttp2_session_want_read(c->session) && !nghttp2_session_want_write(c->session) &&
        c->out_len == c->out_off)
        s_die(c, "the HTTP/2 session ended%s%s%s", c->goaway[0] ? " (" : "", c->goaway,
              c->goaway[0] ? ")" : "");
}

/* The TCP connect finished (writable): open, or try the next address. */
static void s_connected(kvc_h2_conn_t *c)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    if (err == EINPROGRESS || err == EALREADY)
        return;
    if (err != 0) {
        s_close_fd(c);
        s_connect_next(c, err);
        return;
    }
    c->state = KVC_H2_OPEN;
    c->opened = 1;
    kvc_h2_conn_flush(c); /* the preface and SETTINGS */
}

/* The lookup thread signalled: take its answer and connect. */
static void s_looked_up(kvc_h2_conn_t *c)
{
    uint64_t v;
    if (read(c->lookup->efd, &v, sizeof v) != (ssize_t)sizeof v)
        return; /* not yet */
    s_lookup_t *l = c->lookup;
    c->fd = -1; /* it was the lookup's eventfd */
    if (l->gai_err != 0) {
        s_die(c, "could not resolve %s: %s", c->host, gai_strerror(l->gai_err));
        return;
    }
    c->addrs_head = c->addrs = l->res;
    l->res = NULL;
    c->lookup = NULL;
    s_lookup_release(l);
    s_connect_next(c, 0);
}

/* Reads what the socket has and feeds it to nghttp2. */
static void s_read_in(kvc_h2_conn_t *c)
{
    for (int i = 0; i < S_READS_PER_IO; i++) {
        ssize_t n = recv(c->fd, c->in, S_READ_CHUNK, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            if (n == 0)
                s_die(c, "connection closed by the backend%s%s%s", c->goaway[0] ? " (" : "",
                      c->goaway, c->goaway[0] ? ")" : "");
            else
                s_die(c, "recv from the backend: %s", strerror(errno));
            return;
        }
        ssize_t used = nghttp2_session_mem_recv(c->session, c->in, (size_t)n);
        if (used < 0) {
            s_die(c, "HTTP/2 protocol error from the backend: %s", nghttp2_strerror((int)used));
            return;
        }
        if ((size_t)n < S_READ_CHUNK)
            return;
    }
}

void kvc_h2_conn_io(kvc_h2_conn_t *c, short revents, int64_t now_ms)
{
    if (c->state == KVC_H2_DEAD)
        return;
    if ((c->state == KVC_H2_RESOLVING || c->state == KVC_H2_CONNECTING) &&
        now_ms >= c->deadline_ms) {
        s_die(c, "%s %s port %s timed out after %u ms",
              c->state == KVC_H2_RESOLVING ? "looking up" : "connecting to", c->host, c->port,
              c->opts.connect_timeout_ms);
        return;
    }
    if (revents == 0)
        return;
    if (c->state == KVC_H2_RESOLVING) {
        s_looked_up(c);
        return;
    }
    if (c->state == KVC_H2_CONNECTING) {
        s_connected(c);
        return;
    }
    if (revents & (POLLIN | POLLHUP | POLLERR))
        s_read_in(c);
    /* Acknowledgements, window updates, resets and anything left to write. */
    kvc_h2_conn_flush(c);
}

int32_t kvc_h2_conn_submit(kvc_h2_conn_t *c, const kvc_h2_req_t *req, void *ud)
{
    if (!c || !req || !req->path || !ud || req->n_fields > S_MAX_FIELDS)
        return KVC_EINVAL;
    if (c->state != KVC_H2_OPEN)
        return KVC_ESTATE;
    s_stream_t *s = kvc_calloc(1, sizeof *s);
    if (!s)
        return KVC_ENOMEM;
    s->ud = ud;
    s->prefix = req->prefix;
    s->prefix_len = req->prefix_len;
    s->body = req->body;
    s->body_len = req->body_len;
#define S_NV(n, v)                                                                                 \
    {(uint8_t *)(n), (uint8_t *)(v), strlen(n), strlen(v),                                         \
     NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE}
    nghttp2_nv nva[4 + S_MAX_FIELDS] = {
        S_NV(":method", "POST"),
        S_NV(":scheme", "http"),
        S_NV(":path", req->path),
        S_NV(":authority", c->authority),
    };
#undef S_NV
    size_t nv = 4;
    for (size_t i = 0; i < req->n_fields; i++, nv++) {
        const char *n = req->fields[2 * i], *v = req->fields[2 * i + 1];
        nva[nv] =
            (nghttp2_nv){(uint8_t *)n, (uint8_t *)v, strlen(n), strlen(v), NGHTTP2_NV_FLAG_NONE};
    }
    nghttp2_data_provider prd = {.source.ptr = s, .read_callback = s_on_read_body};
    int32_t id = nghttp2_submit_request(c->session, NULL, nva, nv, &prd, s);
    if (id < 0) {
        kvc_free(s);
        /* Out of stream ids: this connection is done. */
        if (id == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE) {
            c->state = KVC_H2_CLOSING;
            return KVC_ESTATE;
        }
        return id == NGHTTP2_ERR_NOMEM ? KVC_ENOMEM : KVC_EINVAL;
    }
    s->id = id;
    s->next = c->streams;
    if (c->streams)
        c->streams->prev = s;
    c->streams = s;
    c->n_streams++;
    return id;
}

void kvc_h2_conn_cancel(kvc_h2_conn_t *c, int32_t stream_id)
{
    if (!c || !c->session || stream_id <= 0)
        return;
    /* Our own list: nghttp2 has no stream (nor its user data) for a request
     * whose HEADERS are still queued; RST_STREAM then drops them unsent. */
    s_stream_t *s = c->streams;
    while (s && s->id != stream_id)
        s = s->next;
    if (!s || !s->ud)
        return;
    s->ud = NULL;
    if (c->state == KVC_H2_OPEN || c->state == KVC_H2_CLOSING)
        nghttp2_submit_rst_stream(c->session, NGHTTP2_FLAG_NONE, stream_id, NGHTTP2_CANCEL);
}
