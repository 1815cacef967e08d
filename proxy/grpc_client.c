/*
 * grpc_client.c - unary gRPC over HTTP/2, multiplexed: h2c on h2_conn
 * (nghttp2), https on libcurl.
 *
 * Design: no thread of its own. A caller builds its call in its own thread
 * and queues it. If nobody is driving the engine, the caller drives it
 * (leader/followers): routes queued calls, moves the connections, signals
 * each caller whose call ends, until its own call ends; it then hands the
 * engine to a caller still waiting. Otherwise the caller wakes the driver
 * (curl_multi_wakeup) and waits on its own condition variable, ready to
 * take over. A lone call thus runs start to finish on its caller's thread,
 * without the two thread switches a dedicated I/O thread costs per call.
 * An event loop may own the client instead (kvc_grpc_client_own): it is
 * then the driver for good, running one engine round per turn; its fibers'
 * calls yield to it, and calls from other threads wait as followers.
 *
 * Plain-HTTP backends: one h2_conn per backend carries every call as a
 * stream (up to max_streams; more wait on the backend's queue). A call is
 * written the moment it is routed, so a fiber's request leaves before the
 * fiber yields. https backends: one easy handle per call on one curl multi
 * handle, with CURLPIPE_MULTIPLEX and CURLOPT_PIPEWAIT sharing a
 * connection. Each round waits once, in curl_multi_poll, on libcurl's
 * sockets, the h2c connections and the owner's descriptors together.
 *
 * The wire format (framing, headers and trailers, status mappings) is in
 * grpc_wire.c, pure functions this file feeds what the transports deliver.
 *
 * Must never: let two threads touch the engine (only the driver does),
 * leave calls in flight without a driver, trust a length prefix before
 * bounding it, or treat a response without grpc-status as success.
 */
#include "grpc_client.h"

#include "base.h"
#include "fiber.h"
#include "h2_conn.h"

#include <curl/curl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>

#define S_URL_MAX 4096
#define S_DEFAULT_CONNECT_MS 5000u
#define S_DEFAULT_STREAMS 100u
/* Easy handles kept for reuse: creating one per call (a large zeroed
 * allocation and its buffers) showed in the proxy's CPU profile. */
#define S_SPARE_MAX 64
#define S_MAX_BACKENDS 256
#define S_MAXAGE_CONN_S 118L
/* Default: trust an idle connection to be open for this long (< S_MAXAGE_CONN_S). */
#define S_IDLE_TRUST_MS 100000u
#define S_CANCEL_MSG "cancelled: the caller went away"
#define S_USER_AGENT "grpc-c-kvc/0.1"
/* Times one call may be sent: retries after a connection that did not take
 * it or lost it (see s_h2_finished, s_finished). */
#define S_MAX_ATTEMPTS 3

/* This thread's cancel flag (kvc_grpc_cancel_flag_set); fibers have their own. */
static _Thread_local const atomic_int *s_caller_cancel;

struct s_conn;
typedef struct kvc_grpc_client kvc_grpc_client_t;

/* One call in flight: owned by the caller, touched by the driver only
 * between submission and completion. */
typedef struct s_call {
    struct s_call *next; /* queue link, or in-flight list link */
    struct s_call *prev; /* in-flight list only */
    kvc_grpc_client_t *client;
    CURL *easy; /* https only */
    pthread_cond_t cond;
    int done;             /* set by the driver under the client mutex */
    CURLcode curl_code;   /* outcome, set by the driver (h2c endings mapped to it) */
    int cancelled;        /* client stopped before the call ended */
    const char *base_url; /* the caller's, valid for the call */
    const char *path;     /* the caller's, valid for the call */
    int tls;
    int attempts;
    int64_t deadline_ms; /* monotonic */
    size_t max_message;
    kvc_fiber_t *fiber;       /* a caller on the owner's loop: made ready when done */
    const atomic_int *cancel; /* the caller's cancel flag, or NULL */
    uint64_t connects;        /* https: connections opened, over all attempts */
    char timeout[16];         /* h2c: the grpc-timeout value */
    struct s_conn *conn;      /* h2c: the connection carrying its stream (driver only) */
    int32_t stream;           /* h2c: that stream */
    int h2_how;               /* h2c: how the stream ended (kvc_h2_end_t) */
    uint32_t h2_error;        /* h2c: the reset's HTTP/2 error code */
    /* Request body: 5-byte prefix then the caller's bytes. */
    uint8_t prefix[5];
    const uint8_t *req;
    size_t req_len;
    size_t sent;
    /* Response, filled by the transport's callbacks in the driver. */
    kvc_grpc_headers_t hdrs;
    kvc_grpc_deframer_t deframer;
    int local_code; /* -1, or a gRPC code the body reader chose */
    char local_msg[128];
    char errbuf[CURL_ERROR_SIZE];
} s_call_t;

struct s_backend;

/* One h2c connection (driver only). */
typedef struct s_conn {
    struct s_conn *next;
    kvc_h2_conn_t *h;
    struct s_backend *be; /* the backend it is current for; NULL once retired */
    int dirty;            /* streams submitted or reset since the last flush */
    int unwatched;        /* idle and not polled since: may hold an unread close */
    int slot;             /* its index in the round's wait set, or -1 */
} s_conn_t;

/* What the driver knows about one plain-HTTP backend. */
typedef struct s_backend {
    struct s_backend *next;
    char *key;           /* base URL */
    s_conn_t *conn;      /* the connection new calls go to, or NULL */
    s_call_t *held_head; /* calls waiting for it to open or for a free stream */
    s_call_t *held_tail;
    int64_t last_ms; /* a stream last started or ended */
} s_backend_t;

struct kvc_grpc_client {
    kvc_grpc_opts_t opts;
    char *ca_file;
    CURLM *multi;
    pthread_mutex_t mu;
    int driving;          /* a caller is running the transfer engine (under mu) */
    int callers;          /* calls inside kvc_grpc_call (under mu) */
    pthread_cond_t idle;  /* signalled when callers drops to 0 */
    s_call_t *queue_head; /* submitted, not yet routed (under mu) */
    s_call_t *queue_tail;
    int stopping;        /* under mu */
    s_call_t *active;    /* https: added to multi; driver only */
    s_call_t *h2_active; /* h2c: streams in flight; driver only */
    s_call_t *finished;  /* h2c: streams closed, not yet handled; driver only */
    s_conn_t *conns;     /* h2c connections, retired ones too; driver only */
    int n_conns;
    s_backend_t *backends; /* driver only */
    int n_backends;
    struct curl_waitfd *w; /* the round's wait set; driver only */
    size_t w_cap;
    kvc_grpc_stats_t stats;   /* under mu */
    CURL *spare[S_SPARE_MAX]; /* reset easy handles for the next calls (under mu) */
    int n_spare;
    int verbose;     /* KVC_GRPC_VERBOSE, read once */
    int owned;       /* a loop thread drives for good (kvc_grpc_client_own; under mu) */
    pthread_t owner; /* that thread */
    int ended;       /* calls ended in the current engine round (driver only) */
};

/* ---- Transfers ----------------------------------------------------------- */

static pthread_once_t s_curl_once = PTHREAD_ONCE_INIT;
static int s_curl_ready;

/* Initialises libcurl once per process, before any thread uses it. */
static void s_curl_init(void)
{
    s_curl_ready = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
}

/* Read callback: the 5-byte prefix, then the caller's request bytes. */
static size_t s_on_read(char *buf, size_t size, size_t nitems, void *userp)
{
    s_call_t *call = userp;
    size_t room = size * nitems;
    size_t total = 5 + call->req_len;
    size_t out = 0;
    while (room > 0 && call->sent < total) {
        size_t k;
        if (call->sent < 5) {
            k = 5 - call->sent;
            if (k > room)
                k = room;
            memcpy(buf + out, call->prefix + call->sent, k);
        } else {
            size_t off = call->sent - 5;
            k = call->req_len - off;
            if (k > room)
                k = room;
            memcpy(buf + out, call->req + off, k);
        }
        call->sent += k;
        out += k;
        room -= k;
    }
    return out;
}

/* Seek callback: lets libcurl rewind the body when it resends a request. */
static int s_on_seek(void *userp, curl_off_t offset, int origin)
{
    s_call_t *call = userp;
    if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > 5 + (uint64_t)call->req_len)
        return CURL_SEEKFUNC_FAIL;
    call->sent = (size_t)offset;
    return CURL_SEEKFUNC_OK;
}

/* Header callback: sees the headers and, for HTTP/2, the trailers too. */
static size_t s_on_header(char *line, size_t size, size_t nitems, void *userp)
{
    s_call_t *call = userp;
    kvc_grpc_headers_feed(&call->hdrs, line, size * nitems);
    return size * nitems;
}

/* Takes response body bytes for a call (either transport); nonzero refuses
 * them, with the reason in local_code/local_msg. */
static int s_body(s_call_t *call, const uint8_t *data, size_t n)
{
    if (call->local_code >= 0)
        return -1;
    if (call->hdrs.http_status != 200)
        return 0; /* an error page: its status decides, the body is ignored */
    int rc = kvc_grpc_deframer_feed(&call->deframer, data, n);
    if (rc == KVC_OK)
        return 0;
    if (rc == KVC_ERANGE) {
        call->local_code = KVC_GRPC_RESOURCE_EXHAUSTED;
        snprintf(call->local_msg, sizeof call->local_msg,
                 "response message larger than the limit of %zu bytes", call->deframer.max);
    } else if (rc == KVC_ENOMEM) {
        call->local_code = KVC_GRPC_RESOURCE_EXHAUSTED;
        snprintf(call->local_msg, sizeof call->local_msg, "out of memory reading response");
    } else {
        call->local_code = KVC_GRPC_INTERNAL;
        snprintf(call->local_msg, sizeof call->local_msg,
                 "malformed response framing (compressed, bad flag or several messages)");
    }
    return -1;
}

/* Write callback: de-frames the body; a refusal aborts the transfer. */
static size_t s_on_write(char *data, size_t size, size_t nmemb, void *userp)
{
    size_t n = size * nmemb;
    return s_body(userp, (const uint8_t *)data, n) == 0 ? n : 0;
}

/* Milliseconds on the monotonic clock. */
static int64_t s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The monotonic clock rounded up to a millisecond: a deadline built on it
 * never passes before its full timeout has. */
static int64_t s_now_ms_up(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + (ts.tv_nsec + 999999) / 1000000;
}

/* Marks a call finished and wakes its caller; takes the client mutex. */
static void s_complete(kvc_grpc_client_t *self, s_call_t *call, CURLcode code, int cancelled)
{
    pthread_mutex_lock(&self->mu);
    call->curl_code = code;
    call->cancelled = cancelled;
    call->done = 1;
    /* A fiber's call lives on until the fiber runs again on this very
     * thread; any other call may be freed by its thread once unlocked. */
    kvc_fiber_t *fiber = call->fiber;
    pthread_cond_signal(&call->cond);
    pthread_mutex_unlock(&self->mu);
    if (fiber)
        kvc_fiber_ready(fiber); /* the driver is the owner's thread, the fiber's own */
    self->ended++;
}

/* Unlinks a call from a doubly linked in-flight list. */
static void s_list_unlink(s_call_t **head, s_call_t *call)
{
    if (call->prev)
        call->prev->next = call->next;
    else
        *head = call->next;
    if (call->next)
        call->next->prev = call->prev;
    call->next = call->prev = NULL;
}

/* Pushes a call on a doubly linked in-flight list. */
static void s_list_push(s_call_t **head, s_call_t *call)
{
    call->next = *head;
    call->prev = NULL;
    if (*head)
        (*head)->prev = call;
    *head = call;
}

/* Appends a call to its backend's queue of calls waiting for a stream. */
static void s_hold(s_backend_t *be, s_call_t *call)
{
    call->next = NULL;
    if (be->held_tail)
        be->held_tail->next = call;
    else
        be->held_head = call;
    be->held_tail = call;
}

/* ---- h2c: plain-HTTP backends on h2_conn (nghttp2) ------------------------- */

static void s_h2_field(void *ud, const char *name, size_t nlen, const char *value, size_t vlen)
{
    s_call_t *call = ud;
    kvc_grpc_headers_field(&call->hdrs, name, nlen, value, vlen);
}

static int s_h2_data(void *ud, const uint8_t *p, size_t n)
{
    return s_body(ud, p, n);
}

/* A stream ended: the call waits on the finished list, handled after the
 * connection's I/O returns (never from inside it). */
static void s_h2_closed(void *ud, kvc_h2_end_t how, uint32_t h2_error)
{
    s_call_t *call = ud;
    kvc_grpc_client_t *self = call->client;
    s_list_unlink(&self->h2_active, call);
    call->h2_how = (int)how;
    call->h2_error = h2_error;
    call->next = self->finished;
    self->finished = call;
}

static const kvc_h2_cb_t s_h2_cb = {s_h2_field, s_h2_data, s_h2_closed};

/* Makes a connection no backend's current one; it is freed once idle. */
static void s_conn_retire(s_conn_t *sc)
{
    if (sc->be && sc->be->conn == sc)
        sc->be->conn = NULL;
    sc->be = NULL;
}

/* Finds (or makes) the driver's record of a plain-HTTP backend. */
static s_backend_t *s_backend(kvc_grpc_client_t *self, const char *base_url)
{
    s_backend_t *spare = NULL;
    for (s_backend_t *b = self->backends; b; b = b->next) {
        if (strcmp(b->key, base_url) == 0)
            return b;
        if (!b->held_head && (!b->conn || kvc_h2_conn_streams(b->conn->h) == 0) &&
            (!spare || b->last_ms < spare->last_ms))
            spare = b;
    }
    if (self->n_backends >= S_MAX_BACKENDS && spare) {
        /* Forget the least recently used idle backend. */
        char *key = kvc_strdup(base_url);
        if (!key)
            return NULL;
        kvc_free(spare->key);
        spare->key = key;
        if (spare->conn)
            s_conn_retire(spare->conn);
        return spare;
    }
    s_backend_t *b = kvc_calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->key = kvc_strdup(base_url);
    if (!b->key) {
        kvc_free(b);
        return NULL;
    }
    b->next = self->backends;
    self->backends = b;
    self->n_backends++;
    return b;
}

/* Opens a new connection to be and makes it be's current one. */
static s_conn_t *s_conn_open(kvc_grpc_client_t *self, s_backend_t *be)
{
    s_conn_t *sc = kvc_calloc(1, sizeof *sc);
    if (!sc)
        return NULL;
    kvc_h2_opts_t o = {.connect_timeout_ms = self->opts.connect_timeout_ms};
    sc->h = kvc_h2_conn_new(be->key + strlen("http://"), &o, &s_h2_cb);
    if (!sc->h) {
        kvc_free(sc);
        return NULL;
    }
    sc->be = be;
    be->conn = sc;
    sc->next = self->conns;
    self->conns = sc;
    self->n_conns++;
    pthread_mutex_lock(&self->mu);
    self->stats.connections++;
    pthread_mutex_unlock(&self->mu);
    return sc;
}

/* Sends a call as a new stream on sc; KVC_OK or the submit error. */
static int s_h2_submit(kvc_grpc_client_t *self, s_conn_t *sc, s_call_t *call)
{
    const char *fields[] = {
        "content-type",         "application/grpc", "te",         "trailers",
        "grpc-timeout",         call->timeout,      "user-agent", S_USER_AGENT,
        "grpc-accept-encoding", "identity",
    };
    kvc_h2_req_t r = {
        .path = call->path,
        .fields = fields,
        .n_fields = self->opts.accept_identity ? 5 : 4,
        .prefix = call->prefix,
        .prefix_len = sizeof call->prefix,
        .body = call->req,
        .body_len = call->req_len,
    };
    int32_t id = kvc_h2_conn_submit(sc->h, &r, call);
    if (id < 0)
        return (int)id;
    call->stream = id;
    call->conn = sc;
    call->attempts++;
    s_list_push(&self->h2_active, call);
    sc->dirty = 1;
    return KVC_OK;
}

/*
 * Routes a plain-HTTP call: a stream on its backend's connection when that
 * is open and has room (max_streams), else it waits on the backend's queue
 * while the connection opens or streams end. A connection the server is
 * closing (GOAWAY), one that died, or one idle past idle_reopen_ms (a
 * middlebox may have dropped it without a word) is retired, and the call
 * opens a new one.
 */
static void s_h2_dispatch(kvc_grpc_client_t *self, s_call_t *call)
{
    int64_t now = s_now_ms();
    if (call->deadline_ms <= now) {
        s_complete(self, call, CURLE_OPERATION_TIMEDOUT, 0);
        return;
    }
    s_backend_t *be = s_backend(self, call->base_url);
    if (!be) {
        s_complete(self, call, CURLE_OUT_OF_MEMORY, 0);
        return;
    }
    s_conn_t *sc = be->conn;
    if (sc && sc->unwatched && kvc_h2_conn_streams(sc->h) == 0) {
        /* Callers driving in turn poll nobody between calls: read what the
         * server may have sent meanwhile (a close, a GOAWAY) before using it. */
        sc->unwatched = 0;
        kvc_h2_conn_io(sc->h, POLLIN, now);
    }
    if (sc) {
        kvc_h2_state_t st = kvc_h2_conn_state(sc->h);
        int idle = st == KVC_H2_OPEN && kvc_h2_conn_streams(sc->h) == 0 &&
                   now - be->last_ms > (int64_t)self->opts.idle_reopen_ms;
        if (st == KVC_H2_CLOSING || st == KVC_H2_DEAD || idle) {
            s_conn_retire(sc);
            sc = NULL;
        }
    }
    if (!sc) {
        sc = s_conn_open(self, be);
        if (!sc) {
            s_complete(self, call, CURLE_OUT_OF_MEMORY, 0);
            return;
        }
        be->last_ms = now;
    }
    if (kvc_h2_conn_state(sc->h) == KVC_H2_OPEN && !be->held_head &&
        kvc_h2_conn_streams(sc->h) < (int)self->opts.max_streams) {
        int rc = s_h2_submit(self, sc, call);
        if (rc == KVC_OK) {
            be->last_ms = now;
            return;
        }
        if (rc != KVC_ESTATE) {
            s_complete(self, call, CURLE_OUT_OF_MEMORY, 0);
            return;
        }
        /* Out of stream ids: the connection is retired, the call waits for the next. */
    }
    s_hold(be, call);
}

/* Resets a call's response state before it is tried again. */
static void s_reset_for_retry(s_call_t *call)
{
    kvc_grpc_headers_init(&call->hdrs);
    kvc_grpc_deframer_free(&call->deframer);
    kvc_grpc_deframer_init(&call->deframer, call->max_message);
    call->sent = 0;
    call->local_code = -1;
    call->errbuf[0] = '\0';
}

static void s_dispatch(kvc_grpc_client_t *self, s_call_t *call);

/* Sends a call again, counted in the stats. */
static void s_retry(kvc_grpc_client_t *self, s_call_t *call)
{
    pthread_mutex_lock(&self->mu);
    self->stats.retried++;
    pthread_mutex_unlock(&self->mu);
    s_reset_for_retry(call);
    s_dispatch(self, call);
}

/*
 * Ends (or retries) one plain-HTTP call whose stream closed. A stream the
 * server never processed (refused, above a GOAWAY's last stream, or on a
 * connection gone before it was written) is sent again on a new
 * connection, as gRPC's transparent retry does; one lost with its
 * connection after it went out only with retry_lost. Both at most
 * S_MAX_ATTEMPTS times in all.
 */
static void s_h2_finished(kvc_grpc_client_t *self, s_call_t *c)
{
    s_conn_t *sc = c->conn;
    if (sc && sc->be)
        sc->be->last_ms = s_now_ms();
    if (sc && kvc_h2_conn_streams(sc->h) == 0)
        sc->unwatched = 1;
    const char *why = sc ? kvc_h2_conn_error(sc->h) : "";
    c->conn = NULL;
    c->stream = 0;
    kvc_grpc_headers_t *h = &c->hdrs;
    int no_status = h->grpc_status < 0 && c->local_code < 0;
    CURLcode code = CURLE_OK;
    switch ((kvc_h2_end_t)c->h2_how) {
    case KVC_H2_END_DONE:
        break;
    case KVC_H2_END_RESET:
        if (c->local_code < 0 && !(h->grpc_status >= 0 && h->http_status == 200)) {
            c->local_code = kvc_grpc_code_from_rst(c->h2_error);
            snprintf(c->local_msg, sizeof c->local_msg,
                     "stream reset by the backend (HTTP/2 error %" PRIu32 ")", c->h2_error);
        }
        break;
    case KVC_H2_END_REFUSED:
        code = CURLE_SEND_ERROR;
        snprintf(c->errbuf, sizeof c->errbuf, "%s", "the backend did not take the call");
        break;
    case KVC_H2_END_LOST:
        code = CURLE_RECV_ERROR;
        snprintf(c->errbuf, sizeof c->errbuf, "connection lost: %s", why[0] ? why : "closed");
        break;
    }
    int refused = c->h2_how == KVC_H2_END_REFUSED && no_status;
    int lost =
        c->h2_how == KVC_H2_END_LOST && no_status && (h->http_status == 0 || h->http_status == 200);
    if ((refused || (lost && self->opts.retry_lost)) && c->attempts < S_MAX_ATTEMPTS) {
        s_retry(self, c);
        return;
    }
    s_complete(self, c, code, 0);
}

/* Ends every call waiting on be's queue with code (why in errbuf). */
static void s_held_end(kvc_grpc_client_t *self, s_backend_t *be, CURLcode code, int cancelled,
                       const char *why)
{
    while (be->held_head) {
        s_call_t *c = be->held_head;
        be->held_head = c->next;
        c->next = NULL;
        if (why)
            snprintf(c->errbuf, sizeof c->errbuf, "%s", why);
        s_complete(self, c, code, cancelled);
    }
    be->held_tail = NULL;
}

/*
 * After connections moved: ends calls past their deadline (resetting their
 * streams), ends or retries calls whose streams closed, routes waiting
 * calls, flushes what was submitted, and frees retired connections with no
 * stream left (driver only).
 */
static void s_h2_settle(kvc_grpc_client_t *self)
{
    int64_t now = s_now_ms();
    for (s_call_t *c = self->h2_active, *next; c; c = next) {
        next = c->next;
        if (c->deadline_ms > now)
            continue;
        kvc_h2_conn_cancel(c->conn->h, c->stream);
        c->conn->dirty = 1;
        s_list_unlink(&self->h2_active, c);
        c->conn = NULL;
        s_complete(self, c, CURLE_OPERATION_TIMEDOUT, 0);
    }
    for (int pass = 0; pass < 2 * S_MAX_ATTEMPTS + 2; pass++) {
        while (self->finished) {
            s_call_t *c = self->finished;
            self->finished = c->next;
            c->next = NULL;
            s_h2_finished(self, c);
        }
        for (s_backend_t *be = self->backends; be; be = be->next) {
            if (!be->held_head)
                continue;
            /* Late ones end whatever they wait for. */
            s_call_t **pp = &be->held_head, *last = NULL;
            while (*pp) {
                s_call_t *c = *pp;
                if (c->deadline_ms <= now) {
                    *pp = c->next;
                    c->next = NULL;
                    s_complete(self, c, CURLE_OPERATION_TIMEDOUT, 0);
                    continue;
                }
                last = c;
                pp = &c->next;
            }
            be->held_tail = last;
            s_conn_t *sc = be->conn;
            if (sc && kvc_h2_conn_never_opened(sc->h)) {
                /* Calls waiting for a connection that could not be made
                 * share its fate, as gRPC fails a dead channel's calls. */
                s_held_end(self, be, CURLE_COULDNT_CONNECT, 0, kvc_h2_conn_error(sc->h));
                s_conn_retire(sc);
                continue;
            }
            kvc_h2_state_t st = sc ? kvc_h2_conn_state(sc->h) : KVC_H2_DEAD;
            if (st == KVC_H2_RESOLVING || st == KVC_H2_CONNECTING ||
                (st == KVC_H2_OPEN && kvc_h2_conn_streams(sc->h) >= (int)self->opts.max_streams))
                continue; /* still opening, or no free stream yet */
            s_call_t *q = be->held_head;
            be->held_head = be->held_tail = NULL;
            while (q) {
                s_call_t *c = q;
                q = c->next;
                c->next = NULL;
                s_h2_dispatch(self, c);
            }
        }
        for (s_conn_t *sc = self->conns; sc; sc = sc->next) {
            if (sc->dirty) {
                sc->dirty = 0;
                kvc_h2_conn_flush(sc->h);
            }
        }
        if (!self->finished)
            break;
    }
    for (s_conn_t **pp = &self->conns; *pp;) {
        s_conn_t *sc = *pp;
        if (!sc->be && kvc_h2_conn_streams(sc->h) == 0) {
            *pp = sc->next;
            kvc_h2_conn_free(sc->h);
            kvc_free(sc);
            self->n_conns--;
            continue;
        }
        pp = &sc->next;
    }
}

/* Ends every plain-HTTP call (the client is stopping). */
static void s_h2_stop(kvc_grpc_client_t *self)
{
    while (self->h2_active) {
        s_call_t *c = self->h2_active;
        kvc_h2_conn_cancel(c->conn->h, c->stream);
        s_list_unlink(&self->h2_active, c);
        s_complete(self, c, CURLE_ABORTED_BY_CALLBACK, 1);
    }
    while (self->finished) {
        s_call_t *c = self->finished;
        self->finished = c->next;
        c->next = NULL;
        s_complete(self, c, CURLE_ABORTED_BY_CALLBACK, 1);
    }
    for (s_backend_t *b = self->backends; b; b = b->next)
        s_held_end(self, b, CURLE_ABORTED_BY_CALLBACK, 1, NULL);
}

/* ---- https: libcurl -------------------------------------------------------- */

/* Adds a call's transfer to the multi handle with the time it has left. */
static void s_start(kvc_grpc_client_t *self, s_call_t *call)
{
    int64_t left = call->deadline_ms - s_now_ms();
    if (left <= 0) {
        s_complete(self, call, CURLE_OPERATION_TIMEDOUT, 0);
        return;
    }
    call->attempts++;
    curl_easy_setopt(call->easy, CURLOPT_TIMEOUT_MS, (long)left);
    if (curl_multi_add_handle(self->multi, call->easy) != CURLM_OK) {
        s_complete(self, call, CURLE_FAILED_INIT, 0);
        return;
    }
    s_list_push(&self->active, call);
}

/* Routes a call to its transport. */
static void s_dispatch(kvc_grpc_client_t *self, s_call_t *call)
{
    if (call->tls)
        s_start(self, call);
    else
        s_h2_dispatch(self, call);
}

/* Whether a transfer failed in the transport rather than by our choice. */
static int s_transport_error(CURLcode rc)
{
    return rc != CURLE_OK && rc != CURLE_OPERATION_TIMEDOUT && rc != CURLE_WRITE_ERROR &&
           rc != CURLE_ABORTED_BY_CALLBACK && rc != CURLE_OUT_OF_MEMORY;
}

/* Handles the end of one libcurl transfer: retry or report. */
static void s_finished(kvc_grpc_client_t *self, s_call_t *c, CURLcode result)
{
    int no_response = c->hdrs.http_status == 0;
    long nc = 0;
    curl_easy_getinfo(c->easy, CURLINFO_NUM_CONNECTS, &nc);
    if (nc > 0)
        c->connects += (uint64_t)nc;
    /*
     * Lost with its connection: no status, and either an answer begun (HTTP
     * 200) that ended without error, or a connection that failed under the
     * call (sending or reading, not connecting) before any answer or after
     * its 200. Servers set to a maximum connection age send GOAWAY and
     * close every few minutes; libcurl 7.88 then ends some of the
     * connection's streams as if complete, may write a new call to it as it
     * closes, and may fail a call whose answer has begun when a write to
     * the closed socket breaks. With retry_lost such a call is made again,
     * on a new connection, up to S_MAX_ATTEMPTS transfers in all.
     */
    int no_status = c->hdrs.grpc_status < 0 && c->local_code < 0;
    int cut_off = result == CURLE_OK && c->hdrs.http_status == 200 && no_status;
    int dropped = s_transport_error(result) && result != CURLE_COULDNT_CONNECT &&
                  result != CURLE_COULDNT_RESOLVE_HOST &&
                  (no_response || (c->hdrs.http_status == 200 && no_status));
    if ((cut_off || dropped) && self->opts.retry_lost && c->attempts < S_MAX_ATTEMPTS) {
        s_retry(self, c);
        return;
    }
    s_complete(self, c, result, 0);
}

/* A call whose caller is waiting, to take over driving (driver, under mu). */
static s_call_t *s_waiter(kvc_grpc_client_t *self)
{
    if (self->queue_head)
        return self->queue_head;
    if (self->active)
        return self->active;
    if (self->h2_active)
        return self->h2_active;
    if (self->finished)
        return self->finished;
    for (s_backend_t *b = self->backends; b; b = b->next)
        if (b->held_head)
            return b->held_head;
    return NULL;
}

/* Moves the transfers along and ends those that finished (driver only). */
static void s_perform(kvc_grpc_client_t *self)
{
    int running = 0;
    curl_multi_perform(self->multi, &running);
    CURLMsg *m;
    int left = 0;
    while ((m = curl_multi_info_read(self->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        CURL *easy = m->easy_handle;
        CURLcode result = m->data.result;
        s_call_t *c = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&c);
        curl_multi_remove_handle(self->multi, easy);
        if (c) {
            s_list_unlink(&self->active, c);
            s_finished(self, c, result);
        }
    }
}

/*
 * Routes queued calls, moves transfers and reports endings, without
 * waiting; 0 if the client is stopping (every call has then ended). Only
 * the caller that holds `driving` runs it, so the multi handle, the
 * connections, the in-flight lists and the backends are never touched by
 * two threads at once; `call->done` is written only here, by that thread.
 */
static int s_advance(kvc_grpc_client_t *self)
{
    pthread_mutex_lock(&self->mu);
    s_call_t *q = self->queue_head;
    self->queue_head = self->queue_tail = NULL;
    int stopping = self->stopping;
    pthread_mutex_unlock(&self->mu);

    while (q) {
        s_call_t *next = q->next;
        q->next = q->prev = NULL;
        if (stopping)
            s_complete(self, q, CURLE_ABORTED_BY_CALLBACK, 1);
        else
            s_dispatch(self, q);
        q = next;
    }
    if (stopping) {
        while (self->active) {
            s_call_t *c = self->active;
            s_list_unlink(&self->active, c);
            curl_multi_remove_handle(self->multi, c->easy);
            s_complete(self, c, CURLE_ABORTED_BY_CALLBACK, 1);
        }
        s_h2_stop(self);
        return 0;
    }
    if (self->active)
        s_perform(self);
    s_h2_settle(self);
    return 1;
}

/* Maps poll(2) events to libcurl's wait bits and back. */
static short s_to_curl(short ev)
{
    return (short)(((ev & POLLIN) ? CURL_WAIT_POLLIN : 0) |
                   ((ev & POLLOUT) ? CURL_WAIT_POLLOUT : 0));
}

static short s_from_curl(short ev)
{
    return (short)(((ev & CURL_WAIT_POLLIN) ? POLLIN : 0) |
                   ((ev & CURL_WAIT_POLLOUT) ? POLLOUT : 0));
}

/*
 * One round of the transfer engine: s_advance, then waits for activity
 * unless `mine` has ended (with no `mine`, the owner's loop: unless a call
 * ended this round; extra/n_extra are more descriptors to wake for, wait_ms
 * the longest wait). The wait covers libcurl's sockets, every h2c
 * connection and the deadlines of the plain-HTTP calls and connects.
 */
static void s_drive_round(kvc_grpc_client_t *self, const s_call_t *mine, struct curl_waitfd *extra,
                          unsigned n_extra, int wait_ms)
{
    self->ended = 0;
    if (!s_advance(self))
        return;
    if (mine ? mine->done : self->ended > 0)
        return;
    size_t need = n_extra + (size_t)self->n_conns;
    if (need > self->w_cap) {
        struct curl_waitfd *w = kvc_realloc(self->w, need * sizeof *w);
        if (!w)
            return; /* the next round tries again */
        self->w = w;
        self->w_cap = need;
    }
    unsigned k = 0;
    for (; k < n_extra; k++)
        self->w[k] = extra[k];
    int64_t now = s_now_ms();
    int64_t wake = now + wait_ms;
    for (s_conn_t *sc = self->conns; sc; sc = sc->next) {
        short ev = 0;
        int fd = kvc_h2_conn_pollfd(sc->h, &ev);
        sc->slot = -1;
        if (fd >= 0) {
            sc->slot = (int)k;
            self->w[k++] = (struct curl_waitfd){.fd = fd, .events = s_to_curl(ev), .revents = 0};
        }
        int64_t d = kvc_h2_conn_deadline(sc->h);
        if (d < wake)
            wake = d;
    }
    for (const s_call_t *c = self->h2_active; c; c = c->next)
        if (c->deadline_ms < wake)
            wake = c->deadline_ms;
    for (const s_backend_t *b = self->backends; b; b = b->next)
        for (const s_call_t *c = b->held_head; c; c = c->next)
            if (c->deadline_ms < wake)
                wake = c->deadline_ms;
    int timeout = wake <= now ? 0 : (int)(wake - now);
    int woke = 0;
    curl_multi_poll(self->multi, self->w, k, timeout, &woke);
    for (unsigned i = 0; i < n_extra; i++)
        extra[i].revents = self->w[i].revents;
    if (self->conns) {
        now = s_now_ms();
        for (s_conn_t *sc = self->conns; sc; sc = sc->next) {
            short rev = 0;
            if (sc->slot >= 0) {
                sc->unwatched = 0; /* this wait covered it */
                rev = s_from_curl(self->w[sc->slot].revents);
            }
            kvc_h2_conn_io(sc->h, rev, now);
        }
        s_h2_settle(self);
    }
    if (!mine && woke > 0 && self->active) {
        /* The owner's loop: move what arrived now, so a fiber whose answer
         * just came runs this turn rather than the next. */
        s_perform(self);
    }
}

static void s_drive_once(kvc_grpc_client_t *self, const s_call_t *mine)
{
    s_drive_round(self, mine, NULL, 0, 1000);
}

void kvc_grpc_client_own(kvc_grpc_client_t *self)
{
    pthread_mutex_lock(&self->mu);
    /* Wait for a caller driving now to hand over (it does when its call ends). */
    while (self->driving && !self->owned) {
        pthread_mutex_unlock(&self->mu);
        curl_multi_wakeup(self->multi);
        sched_yield();
        pthread_mutex_lock(&self->mu);
    }
    self->owned = 1;
    self->driving = 1;
    self->owner = pthread_self();
    pthread_mutex_unlock(&self->mu);
}

void kvc_grpc_client_run(kvc_grpc_client_t *self, const int *fds, short *revents, size_t n,
                         int wait_ms)
{
    struct curl_waitfd w[8];
    if (n > 8)
        n = 8;
    for (size_t i = 0; i < n; i++)
        w[i] = (struct curl_waitfd){.fd = fds[i], .events = CURL_WAIT_POLLIN, .revents = 0};
    s_drive_round(self, NULL, w, (unsigned)n, wait_ms < 0 ? 1000 : wait_ms);
    for (size_t i = 0; revents && i < n; i++)
        revents[i] = w[i].revents;
}

void kvc_grpc_client_disown(kvc_grpc_client_t *self)
{
    pthread_mutex_lock(&self->mu);
    if (self->owned) {
        self->owned = 0;
        self->driving = 0;
        s_call_t *heir = s_waiter(self);
        if (heir)
            pthread_cond_signal(&heir->cond);
    }
    pthread_mutex_unlock(&self->mu);
}

/* The calling context's cancel flag: the running fiber's, else this thread's. */
static const atomic_int *s_cancel_flag(void)
{
    return kvc_fiber_current() ? kvc_fiber_cancel_flag() : s_caller_cancel;
}

const atomic_int *kvc_grpc_cancel_flag_set(const atomic_int *flag)
{
    const atomic_int *was = s_cancel_flag();
    kvc_fiber_t *fiber = kvc_fiber_current();
    if (fiber)
        kvc_fiber_set_cancel(fiber, flag);
    else
        s_caller_cancel = flag;
    return was;
}

/* Marks a call ended by its caller's cancel flag. */
static void s_mark_cancelled(s_call_t *c)
{
    c->local_code = KVC_GRPC_CANCELLED;
    snprintf(c->local_msg, sizeof c->local_msg, "%s", S_CANCEL_MSG);
}

/* Whether c is the only transfer in flight to its backend (its connection's only stream). */
static int s_alone(const kvc_grpc_client_t *self, const s_call_t *c)
{
    for (const s_call_t *o = self->active; o; o = o->next)
        if (o != c && strcmp(o->base_url, c->base_url) == 0)
            return 0;
    return 1;
}

/* Unlinks from the list head..tail every call made with flag; returns
 * them linked by next. */
static s_call_t *s_unlink_flagged(s_call_t **head, s_call_t **tail, const atomic_int *flag)
{
    s_call_t *gone = NULL, *last = NULL;
    for (s_call_t **pp = head; *pp;) {
        s_call_t *c = *pp;
        if (c->cancel == flag) {
            *pp = c->next;
            c->next = gone;
            gone = c;
        } else {
            last = c;
            pp = &c->next;
        }
    }
    *tail = last;
    return gone;
}

/* Ends the unstarted calls of a list from s_unlink_flagged; returns how many. */
static int s_cancel_unstarted(kvc_grpc_client_t *self, s_call_t *gone)
{
    int n = 0;
    while (gone) {
        s_call_t *c = gone;
        gone = c->next;
        c->next = NULL;
        s_mark_cancelled(c);
        s_complete(self, c, CURLE_ABORTED_BY_CALLBACK, 0);
        n++;
    }
    return n;
}

int kvc_grpc_client_cancel(kvc_grpc_client_t *self, const atomic_int *flag)
{
    if (!self || !flag)
        return -1;
    pthread_mutex_lock(&self->mu);
    if (!self->owned || !pthread_equal(self->owner, pthread_self())) {
        pthread_mutex_unlock(&self->mu);
        return -1;
    }
    s_call_t *queued = s_unlink_flagged(&self->queue_head, &self->queue_tail, flag);
    pthread_mutex_unlock(&self->mu);
    /* Queued, or waiting for their backend's connection to open. */
    int n = s_cancel_unstarted(self, queued);
    for (s_backend_t *b = self->backends; b; b = b->next)
        n += s_cancel_unstarted(self, s_unlink_flagged(&b->held_head, &b->held_tail, flag));
    /* h2c streams in flight: reset at once (the server learns of it now). */
    for (s_call_t *c = self->h2_active, *next; c; c = next) {
        next = c->next;
        if (c->cancel != flag)
            continue;
        kvc_h2_conn_cancel(c->conn->h, c->stream);
        c->conn->dirty = 1;
        s_list_unlink(&self->h2_active, c);
        c->conn = NULL;
        s_mark_cancelled(c);
        s_complete(self, c, CURLE_ABORTED_BY_CALLBACK, 0);
        n++;
    }
    s_h2_settle(self);
    /*
     * https transfers in flight: taking one out resets its HTTP/2 stream,
     * but libcurl 7.88 only queues that RST_STREAM until the connection's
     * next read or write. So a call alone on its connection takes the
     * connection with it (a server cancels the streams of a connection that
     * closes); beside other calls the reset goes out with their traffic.
     */
    for (s_call_t *c = self->active, *next; c; c = next) {
        next = c->next;
        if (c->cancel != flag)
            continue;
        if (s_alone(self, c))
            curl_easy_setopt(c->easy, CURLOPT_FORBID_REUSE, 1L); /* read when it is taken out */
        s_list_unlink(&self->active, c);
        curl_multi_remove_handle(self->multi, c->easy);
        s_mark_cancelled(c);
        s_finished(self, c, CURLE_ABORTED_BY_CALLBACK);
        n++;
    }
    return n;
}

/* Creates the client, and its multi handle. */
kvc_grpc_client_t *kvc_grpc_client_new(const kvc_grpc_opts_t *opts)
{
    pthread_once(&s_curl_once, s_curl_init);
    if (!s_curl_ready)
        return NULL;
    const curl_version_info_data *vi = curl_version_info(CURLVERSION_NOW);
    if (!vi || !(vi->features & CURL_VERSION_HTTP2))
        return NULL;

    kvc_grpc_client_t *self = kvc_calloc(1, sizeof *self);
    if (!self)
        return NULL;
    if (opts)
        self->opts = *opts;
    if (self->opts.max_message_size == 0)
        self->opts.max_message_size = KVC_GRPC_DEFAULT_MAX_MESSAGE;
    if (self->opts.connect_timeout_ms == 0)
        self->opts.connect_timeout_ms = S_DEFAULT_CONNECT_MS;
    if (self->opts.max_streams == 0)
        self->opts.max_streams = S_DEFAULT_STREAMS;
    if (self->opts.idle_reopen_ms == 0)
        self->opts.idle_reopen_ms = S_IDLE_TRUST_MS;
    self->opts.ca_file = NULL;
    if (opts && opts->ca_file) {
        self->ca_file = kvc_strdup(opts->ca_file);
        if (!self->ca_file)
            goto fail;
    }
    self->verbose = getenv("KVC_GRPC_VERBOSE") != NULL;
    if (pthread_mutex_init(&self->mu, NULL) != 0)
        goto fail;
    if (pthread_cond_init(&self->idle, NULL) != 0) {
        pthread_mutex_destroy(&self->mu);
        goto fail;
    }
    self->multi = curl_multi_init();
    if (!self->multi)
        goto fail_mutex;
    curl_multi_setopt(self->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    curl_multi_setopt(self->multi, CURLMOPT_MAX_CONCURRENT_STREAMS, (long)self->opts.max_streams);
    /* One connection per backend: extra calls queue for a free stream. */
    curl_multi_setopt(self->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 1L);
    return self;

fail_mutex:
    pthread_cond_destroy(&self->idle);
    pthread_mutex_destroy(&self->mu);
fail:
    kvc_free(self->ca_file);
    kvc_free(self);
    return NULL;
}

/* Stops the thread, cancels leftovers, frees everything. */
void kvc_grpc_client_destroy(kvc_grpc_client_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    kvc_grpc_client_t *self = *self_p;
    /* Calls in flight are ended (CANCELLED) by whichever caller drives;
     * wait until every caller has left. */
    pthread_mutex_lock(&self->mu);
    self->stopping = 1;
    pthread_mutex_unlock(&self->mu);
    curl_multi_wakeup(self->multi);
    pthread_mutex_lock(&self->mu);
    while (self->callers > 0)
        pthread_cond_wait(&self->idle, &self->mu);
    pthread_mutex_unlock(&self->mu);
    curl_multi_cleanup(self->multi);
    for (int i = 0; i < self->n_spare; i++)
        curl_easy_cleanup(self->spare[i]);
    while (self->conns) {
        s_conn_t *sc = self->conns;
        self->conns = sc->next;
        kvc_h2_conn_free(sc->h);
        kvc_free(sc);
    }
    while (self->backends) {
        s_backend_t *b = self->backends;
        self->backends = b->next;
        kvc_free(b->key);
        kvc_free(b);
    }
    kvc_free(self->w);
    pthread_cond_destroy(&self->idle);
    pthread_mutex_destroy(&self->mu);
    kvc_free(self->ca_file);
    kvc_free(self);
    *self_p = NULL;
}

/* Frees the response bytes of a result. */
void kvc_grpc_result_free(kvc_grpc_result_t *res)
{
    if (!res)
        return;
    kvc_free(res->data);
    res->data = NULL;
    res->len = 0;
}

/* Copies the counters. */
void kvc_grpc_client_stats(kvc_grpc_client_t *self, kvc_grpc_stats_t *out)
{
    pthread_mutex_lock(&self->mu);
    *out = self->stats;
    pthread_mutex_unlock(&self->mu);
}

/* Sets a result's code and formatted message. */
static void s_result_set(kvc_grpc_result_t *res, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void s_result_set(kvc_grpc_result_t *res, int code, const char *fmt, ...)
{
    va_list ap;
    res->code = code;
    va_start(ap, fmt);
    vsnprintf(res->message, sizeof res->message, fmt, ap);
    va_end(ap);
}

/* A base URL is http(s)://authority with no path, spaces or controls. */
static int s_url_ok(const char *base_url, int *tls)
{
    size_t skip;
    if (strncmp(base_url, "http://", 7) == 0) {
        skip = 7;
        *tls = 0;
    } else if (strncmp(base_url, "https://", 8) == 0) {
        skip = 8;
        *tls = 1;
    } else {
        return 0;
    }
    const char *a = base_url + skip;
    if (*a == '\0')
        return 0;
    for (const char *p = a; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == '/' || *p == '?' || *p == '#' || *p == 0x7f)
            return 0;
    return 1;
}

/* A path is /Service/Method: printable, no spaces, no query. */
static int s_path_ok(const char *path)
{
    if (path[0] != '/' || path[1] == '\0')
        return 0;
    for (const char *p = path; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == '?' || *p == '#' || *p == 0x7f)
            return 0;
    return 1;
}

/* Turns a finished transfer into a gRPC outcome in res. */
static void s_resolve(kvc_grpc_client_t *self, s_call_t *call, int tls, uint32_t timeout_ms,
                      kvc_grpc_result_t *res)
{
    kvc_grpc_headers_t *h = &call->hdrs;
    res->http_status = h->http_status;
    if (call->cancelled) {
        s_result_set(res, KVC_GRPC_CANCELLED, "client shut down before the call ended");
        return;
    }
    if (call->local_code >= 0) {
        s_result_set(res, call->local_code, "%s", call->local_msg);
        return;
    }
    /* A status the server finished with wins over a late transport error. */
    int have_status = h->grpc_status >= 0 && h->http_status == 200;
    if (call->curl_code != CURLE_OK && !have_status) {
        const char *why = call->errbuf[0] ? call->errbuf : curl_easy_strerror(call->curl_code);
        switch (call->curl_code) {
        case CURLE_OPERATION_TIMEDOUT:
            s_result_set(res, KVC_GRPC_DEADLINE_EXCEEDED, "deadline of %" PRIu32 " ms exceeded",
                         timeout_ms);
            return;
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY:
        case CURLE_COULDNT_CONNECT:
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SEND_ERROR:
        case CURLE_RECV_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_HTTP2:
        case CURLE_PARTIAL_FILE:
            s_result_set(res, KVC_GRPC_UNAVAILABLE, "backend unavailable: %s", why);
            return;
        case CURLE_OUT_OF_MEMORY:
            s_result_set(res, KVC_GRPC_RESOURCE_EXHAUSTED, "out of memory");
            return;
        default:
            s_result_set(res, KVC_GRPC_INTERNAL, "transport error: %s", why);
            return;
        }
    }
    if (tls) {
        long ver = 0;
        curl_easy_getinfo(call->easy, CURLINFO_HTTP_VERSION, &ver);
        if (ver != CURL_HTTP_VERSION_2_0) {
            s_result_set(res, KVC_GRPC_UNAVAILABLE, "backend did not negotiate HTTP/2");
            return;
        }
    }
    if (h->http_status != 200) {
        int code = kvc_grpc_code_from_http(h->http_status);
        s_result_set(res, code, "HTTP status %ld from backend%s%s", h->http_status,
                     h->grpc_message[0] ? ": " : "", h->grpc_message);
        return;
    }
    if (h->grpc_status < 0) {
        s_result_set(res, KVC_GRPC_INTERNAL, "backend sent no grpc-status");
        return;
    }
    if (h->grpc_status != KVC_GRPC_OK) {
        s_result_set(res, h->grpc_status, "%s", h->grpc_message);
        return;
    }
    int rc = kvc_grpc_deframer_take(&call->deframer, &res->data, &res->len);
    if (rc == KVC_ENOENT) {
        s_result_set(res, KVC_GRPC_INTERNAL, "backend sent OK without a response message");
        return;
    }
    if (rc != KVC_OK) {
        s_result_set(res, KVC_GRPC_INTERNAL, "response ended inside a message");
        return;
    }
    (void)self;
    res->code = KVC_GRPC_OK;
    res->message[0] = '\0';
}

/* Configures the easy handle of one https call. */
static int s_setup_easy(kvc_grpc_client_t *self, s_call_t *call, const char *url,
                        struct curl_slist *headers)
{
    CURL *e = call->easy;
    int bad = 0;
    bad |= curl_easy_setopt(e, CURLOPT_URL, url) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https") != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2_0) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_MAXAGE_CONN, S_MAXAGE_CONN_S) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_POST, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(5 + call->req_len)) !=
           CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_READFUNCTION, s_on_read) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_READDATA, call) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, s_on_seek) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_SEEKDATA, call) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, s_on_header) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_HEADERDATA, call) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, s_on_write) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_WRITEDATA, call) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)self->opts.connect_timeout_ms) !=
           CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, call->errbuf) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)call) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_USERAGENT, S_USER_AGENT) != CURLE_OK;
    if (self->verbose)
        curl_easy_setopt(e, CURLOPT_VERBOSE, 1L);
    if (self->ca_file)
        bad |= curl_easy_setopt(e, CURLOPT_CAINFO, self->ca_file) != CURLE_OK;
    if (self->opts.tls_insecure) {
        bad |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L) != CURLE_OK;
        bad |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L) != CURLE_OK;
    }
    return bad ? KVC_EINVAL : KVC_OK;
}

/* An easy handle for a call: a spare one (already reset) or a new one. */
static CURL *s_easy_take(kvc_grpc_client_t *self)
{
    CURL *e = NULL;
    pthread_mutex_lock(&self->mu);
    if (self->n_spare > 0)
        e = self->spare[--self->n_spare];
    pthread_mutex_unlock(&self->mu);
    return e ? e : curl_easy_init();
}

/* Gives back a call's easy handle (no longer in the multi): reset to its
 * defaults and kept for the next call, or freed when enough are kept. */
static void s_easy_give(kvc_grpc_client_t *self, CURL *e)
{
    if (!e)
        return;
    curl_easy_reset(e);
    pthread_mutex_lock(&self->mu);
    if (self->n_spare < S_SPARE_MAX) {
        self->spare[self->n_spare++] = e;
        e = NULL;
    }
    pthread_mutex_unlock(&self->mu);
    if (e)
        curl_easy_cleanup(e);
}

/* Builds the request header list; NULL on allocation failure. */
static struct curl_slist *s_headers(kvc_grpc_client_t *self, uint32_t timeout_ms)
{
    char timeout[32] = "grpc-timeout: ";
    size_t used = strlen(timeout);
    if (kvc_grpc_timeout_format(timeout_ms, timeout + used, sizeof timeout - used) != KVC_OK)
        return NULL;
    const char *fixed[] = {
        "content-type: application/grpc",
        "te: trailers",
        timeout,
        self->opts.accept_identity ? "grpc-accept-encoding: identity" : NULL,
        "Accept:", /* drop curl's default Accept */
        "Expect:", /* never wait for 100-continue */
    };
    struct curl_slist *list = NULL;
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        if (!fixed[i])
            continue;
        struct curl_slist *n = curl_slist_append(list, fixed[i]);
        if (!n) {
            curl_slist_free_all(list);
            return NULL;
        }
        list = n;
    }
    return list;
}

/* One blocking unary call (see the design note at the top). */
int kvc_grpc_call(kvc_grpc_client_t *self, const char *base_url, const char *path,
                  const uint8_t *req, size_t len, uint32_t timeout_ms, kvc_grpc_result_t *res)
{
    if (!res)
        return KVC_EINVAL;
    memset(res, 0, sizeof *res);
    int tls = 0;
    if (!self || !base_url || !path || (!req && len > 0) || timeout_ms == 0 ||
        !s_url_ok(base_url, &tls) || !s_path_ok(path)) {
        s_result_set(res, KVC_GRPC_INVALID_ARGUMENT, "invalid gRPC call arguments");
        return KVC_EINVAL;
    }
    char url[S_URL_MAX];
    int w = snprintf(url, sizeof url, "%s%s", base_url, path);
    if (w < 0 || (size_t)w >= sizeof url) {
        s_result_set(res, KVC_GRPC_INVALID_ARGUMENT, "URL too long");
        return KVC_EINVAL;
    }

    s_call_t *call = kvc_calloc(1, sizeof *call);
    if (!call) {
        s_result_set(res, KVC_GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return KVC_ENOMEM;
    }
    call->req = req;
    call->req_len = len;
    call->local_code = -1;
    call->client = self;
    call->base_url = base_url;
    call->path = path;
    call->tls = tls;
    call->deadline_ms = s_now_ms_up() + timeout_ms;
    call->max_message = self->opts.max_message_size;
    kvc_grpc_headers_init(&call->hdrs);
    kvc_grpc_deframer_init(&call->deframer, self->opts.max_message_size);
    if (kvc_grpc_frame_prefix(call->prefix, len) != KVC_OK) {
        kvc_free(call);
        s_result_set(res, KVC_GRPC_RESOURCE_EXHAUSTED, "request larger than 4 GiB");
        return KVC_ERANGE;
    }

    int rc = KVC_OK;
    struct curl_slist *headers = NULL;
    if (pthread_cond_init(&call->cond, NULL) != 0) {
        s_result_set(res, KVC_GRPC_RESOURCE_EXHAUSTED, "out of memory");
        rc = KVC_ENOMEM;
        goto out_nocond;
    }
    if (tls) {
        headers = s_headers(self, timeout_ms);
        call->easy = s_easy_take(self);
        if (!headers || !call->easy) {
            s_result_set(res, KVC_GRPC_RESOURCE_EXHAUSTED, "out of memory");
            rc = KVC_ENOMEM;
            goto out;
        }
        if (s_setup_easy(self, call, url, headers) != KVC_OK) {
            s_result_set(res, KVC_GRPC_INTERNAL, "libcurl refused an option");
            rc = KVC_EIO;
            goto out;
        }
    } else if (kvc_grpc_timeout_format(timeout_ms, call->timeout, sizeof call->timeout) != KVC_OK) {
        s_result_set(res, KVC_GRPC_INVALID_ARGUMENT, "bad timeout");
        rc = KVC_EINVAL;
        goto out;
    }

    /* Checked under the mutex: kvc_grpc_client_cancel, which the owner runs
     * after raising the flag, then finds the call queued if it got past. */
    call->cancel = s_cancel_flag();
    pthread_mutex_lock(&self->mu);
    if (self->stopping) {
        pthread_mutex_unlock(&self->mu);
        s_result_set(res, KVC_GRPC_CANCELLED, "client is shutting down");
        rc = KVC_ESTATE;
        goto out;
    }
    if (call->cancel && atomic_load(call->cancel)) {
        pthread_mutex_unlock(&self->mu);
        s_result_set(res, KVC_GRPC_CANCELLED, S_CANCEL_MSG);
        rc = kvc_grpc_code_to_err(KVC_GRPC_CANCELLED);
        goto out;
    }
    self->stats.calls++;
    if (self->queue_tail)
        self->queue_tail->next = call;
    else
        self->queue_head = call;
    self->queue_tail = call;
    self->callers++;
    /*
     * No I/O thread: the first caller to find nobody driving runs the
     * transfer engine until its own call ends, then hands the engine to a
     * caller still waiting. A lone call thus never changes threads; others
     * wake the driver (curl_multi_wakeup) so it picks their call up. An
     * owned client is always driven by its owner's loop: a fiber there
     * yields until its call ends, any other thread waits as a follower.
     */
    int on_owner = self->owned && pthread_equal(self->owner, pthread_self());
    kvc_fiber_t *fiber = on_owner ? kvc_fiber_current() : NULL;
    call->fiber = fiber;
    int drive = !self->driving;
    if (drive)
        self->driving = 1;
    pthread_mutex_unlock(&self->mu);
    if (!drive && !on_owner)
        curl_multi_wakeup(self->multi);
    if (on_owner) {
        /* done is written by this very thread (the driver). A fiber sends
         * its call before it yields: the request is on its way while the
         * loop parks the fiber's HTTP connection and goes round. Fibers
         * run from the loop, never inside libcurl, so this is no reentry. */
        if (fiber)
            s_advance(self);
        while (!call->done) {
            if (fiber)
                kvc_fiber_yield();
            else
                s_drive_once(self, call);
        }
        pthread_mutex_lock(&self->mu);
    }
    for (; !on_owner;) {
        if (drive) {
            s_drive_once(self, call);
            if (!call->done)
                continue;
            pthread_mutex_lock(&self->mu);
            self->driving = 0;
            s_call_t *heir = s_waiter(self);
            if (heir)
                pthread_cond_signal(&heir->cond);
            break;
        }
        pthread_mutex_lock(&self->mu);
        while (!call->done && self->driving)
            pthread_cond_wait(&call->cond, &self->mu);
        if (call->done)
            break;
        self->driving = 1; /* the driver left with calls in flight: take over */
        drive = 1;
        pthread_mutex_unlock(&self->mu);
    }
    if (--self->callers == 0)
        pthread_cond_broadcast(&self->idle);
    pthread_mutex_unlock(&self->mu);

    s_resolve(self, call, tls, timeout_ms, res);
    pthread_mutex_lock(&self->mu);
    self->stats.connections += call->connects;
    if (res->code != KVC_GRPC_OK)
        self->stats.failures++;
    pthread_mutex_unlock(&self->mu);
    rc = kvc_grpc_code_to_err(res->code);

out:
    pthread_cond_destroy(&call->cond);
out_nocond:
    s_easy_give(self, call->easy);
    curl_slist_free_all(headers);
    kvc_grpc_deframer_free(&call->deframer);
    kvc_free(call);
    return rc;
}
