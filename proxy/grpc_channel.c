/*
 * grpc_channel.c - the gRPC client's connections: one record per
 * plain-HTTP backend, the h2c connection (h2_conn) new calls go to, when
 * to open, reuse or retire one (GOAWAY, death, long idleness), a call
 * submitted as a stream, the end of each stream (done, reset, refused,
 * lost) and the transparent retry of a call the server never processed;
 * and the https path on libcurl (easy handles, their options and request
 * headers, the multi handle's transfers). It also owns the round's wait
 * on every connection's descriptor at once, and cancelling calls in
 * flight.
 *
 * Everything here runs on the client's driver, one thread at a time (see
 * grpc_client.c); only the counters, the spare easy handles and a call's
 * `done` are touched under the client mutex. The wire format comes from
 * grpc_wire.c; the public API and the callers' side of a call (queueing,
 * driving, waiting, the result) stay in grpc_client.c.
 *
 * Must never: run a connection's callbacks from inside another
 * connection's I/O, send a call again that the server may have processed
 * (unless retry_lost says the method is safe to repeat), or trust a
 * length prefix before bounding it.
 */
#include "grpc_channel.h"

#include "base.h"

#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define S_MAX_BACKENDS 256
#define S_MAXAGE_CONN_S 118L
#define S_USER_AGENT "grpc-c-kvc/0.1"
/* Times one call may be sent: retries after a connection that did not take
 * it or lost it (see s_h2_finished, s_finished). */
#define S_MAX_ATTEMPTS 3

/* ---- Shared by both transports ----------------------------------------------- */

/* Milliseconds on the monotonic clock. */
int64_t kvc_grpc_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Marks a call finished and wakes its caller; takes the client mutex. */
void kvc_grpc_rpc_complete(kvc_grpc_client_t *self, kvc_grpc_rpc_t *call, CURLcode code,
                           int cancelled)
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
static void s_list_unlink(kvc_grpc_rpc_t **head, kvc_grpc_rpc_t *call)
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
static void s_list_push(kvc_grpc_rpc_t **head, kvc_grpc_rpc_t *call)
{
    call->next = *head;
    call->prev = NULL;
    if (*head)
        (*head)->prev = call;
    *head = call;
}

/* Appends a call to its backend's queue of calls waiting for a stream. */
static void s_hold(kvc_grpc_backend_t *be, kvc_grpc_rpc_t *call)
{
    call->next = NULL;
    if (be->held_tail)
        be->held_tail->next = call;
    else
        be->held_head = call;
    be->held_tail = call;
}

/* Takes response body bytes for a call (either transport); nonzero refuses
 * them, with the reason in local_code/local_msg. */
static int s_body(kvc_grpc_rpc_t *call, const uint8_t *data, size_t n)
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

/* ---- h2c: plain-HTTP backends on h2_conn (nghttp2) ------------------------- */

static void s_h2_field(void *ud, const char *name, size_t nlen, const char *value, size_t vlen)
{
    kvc_grpc_rpc_t *call = ud;
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
    kvc_grpc_rpc_t *call = ud;
    kvc_grpc_client_t *self = call->client;
    s_list_unlink(&self->h2_active, call);
    call->h2_how = (int)how;
    call->h2_error = h2_error;
    call->next = self->finished;
    self->finished = call;
}

static const kvc_h2_cb_t s_h2_cb = {s_h2_field, s_h2_data, s_h2_closed};

/* Makes a connection no backend's current one; it is freed once idle. */
static void s_conn_retire(kvc_grpc_conn_t *sc)
{
    if (sc->be && sc->be->conn == sc)
        sc->be->conn = NULL;
    sc->be = NULL;
}

/* Finds (or makes) the driver's record of a plain-HTTP backend. */
static kvc_grpc_backend_t *s_backend(kvc_grpc_client_t *self, const char *base_url)
{
    kvc_grpc_backend_t *spare = NULL;
    for (kvc_grpc_backend_t *b = self->backends; b; b = b->next) {
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
    kvc_grpc_backend_t *b = kvc_calloc(1, sizeof *b);
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
static kvc_grpc_conn_t *s_conn_open(kvc_grpc_client_t *self, kvc_grpc_backend_t *be)
{
    kvc_grpc_conn_t *sc = kvc_calloc(1, sizeof *sc);
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
static int s_h2_submit(kvc_grpc_client_t *self, kvc_grpc_conn_t *sc, kvc_grpc_rpc_t *call)
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
static void s_h2_dispatch(kvc_grpc_client_t *self, kvc_grpc_rpc_t *call)
{
    int64_t now = kvc_grpc_now_ms();
    if (call->deadline_ms <= now) {
        kvc_grpc_rpc_complete(self, call, CURLE_OPERATION_TIMEDOUT, 0);
        return;
    }
    kvc_grpc_backend_t *be = s_backend(self, call->base_url);
    if (!be) {
        kvc_grpc_rpc_complete(self, call, CURLE_OUT_OF_MEMORY, 0);
        return;
    }
    kvc_grpc_conn_t *sc = be->conn;
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
            kvc_grpc_rpc_complete(self, call, CURLE_OUT_OF_MEMORY, 0);
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
            kvc_grpc_rpc_complete(self, call, CURLE_OUT_OF_MEMORY, 0);
            return;
        }
        /* Out of stream ids: the connection is retired, the call waits for the next. */
    }
    s_hold(be, call);
}

/* Resets a call's response state before it is tried again. */
static void s_reset_for_retry(kvc_grpc_rpc_t *call)
{
    kvc_grpc_headers_init(&call->hdrs);
    kvc_grpc_deframer_free(&call->deframer);
    kvc_grpc_deframer_init(&call->deframer, call->max_message);
    call->sent = 0;
    call->local_code = -1;
    call->errbuf[0] = '\0';
}

/* Sends a call again, counted in the stats. */
static void s_retry(kvc_grpc_client_t *self, kvc_grpc_rpc_t *call)
{
    pthread_mutex_lock(&self->mu);
    self->stats.retried++;
    pthread_mutex_unlock(&self->mu);
    s_reset_for_retry(call);
    kvc_grpc_channel_dispatch(self, call);
}

/*
 * Ends (or retries) one plain-HTTP call whose stream closed. A stream the
 * server never processed (refused, above a GOAWAY's last stream, or on a
 * connection gone before it was written) is sent again on a new
 * connection, as gRPC's transparent retry does; one lost with its
 * connection after it went out only with retry_lost. Both at most
 * S_MAX_ATTEMPTS times in all.
 */
static void s_h2_finished(kvc_grpc_client_t *self, kvc_grpc_rpc_t *c)
{
    kvc_grpc_conn_t *sc = c->conn;
    if (sc && sc->be)
        sc->be->last_ms = kvc_grpc_now_ms();
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
    kvc_grpc_rpc_complete(self, c, code, 0);
}

/* Ends every call waiting on be's queue with code (why in errbuf). */
static void s_held_end(kvc_grpc_client_t *self, kvc_grpc_backend_t *be, CURLcode code,
                       int cancelled, const char *why)
{
    while (be->held_head) {
        kvc_grpc_rpc_t *c = be->held_head;
        be->held_head = c->next;
        c->next = NULL;
        if (why)
            snprintf(c->errbuf, sizeof c->errbuf, "%s", why);
        kvc_grpc_rpc_complete(self, c, code, cancelled);
    }
    be->held_tail = NULL;
}

/*
 * After connections moved: ends calls past their deadline (resetting their
 * streams), ends or retries calls whose streams closed, routes waiting
 * calls, flushes what was submitted, and frees retired connections with no
 * stream left (driver only).
 */
void kvc_grpc_channel_settle(kvc_grpc_client_t *self)
{
    int64_t now = kvc_grpc_now_ms();
    for (kvc_grpc_rpc_t *c = self->h2_active, *next; c; c = next) {
        next = c->next;
        if (c->deadline_ms > now)
            continue;
        kvc_h2_conn_cancel(c->conn->h, c->stream);
        c->conn->dirty = 1;
        s_list_unlink(&self->h2_active, c);
        c->conn = NULL;
        kvc_grpc_rpc_complete(self, c, CURLE_OPERATION_TIMEDOUT, 0);
    }
    for (int pass = 0; pass < 2 * S_MAX_ATTEMPTS + 2; pass++) {
        while (self->finished) {
            kvc_grpc_rpc_t *c = self->finished;
            self->finished = c->next;
            c->next = NULL;
            s_h2_finished(self, c);
        }
        for (kvc_grpc_backend_t *be = self->backends; be; be = be->next) {
            if (!be->held_head)
                continue;
            /* Late ones end whatever they wait for. */
            kvc_grpc_rpc_t **pp = &be->held_head, *last = NULL;
            while (*pp) {
                kvc_grpc_rpc_t *c = *pp;
                if (c->deadline_ms <= now) {
                    *pp = c->next;
                    c->next = NULL;
                    kvc_grpc_rpc_complete(self, c, CURLE_OPERATION_TIMEDOUT, 0);
                    continue;
                }
                last = c;
                pp = &c->next;
            }
            be->held_tail = last;
            kvc_grpc_conn_t *sc = be->conn;
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
            kvc_grpc_rpc_t *q = be->held_head;
            be->held_head = be->held_tail = NULL;
            while (q) {
                kvc_grpc_rpc_t *c = q;
                q = c->next;
                c->next = NULL;
                s_h2_dispatch(self, c);
            }
        }
        for (kvc_grpc_conn_t *sc = self->conns; sc; sc = sc->next) {
            if (sc->dirty) {
                sc->dirty = 0;
                kvc_h2_conn_flush(sc->h);
            }
        }
        if (!self->finished)
            break;
    }
    for (kvc_grpc_conn_t **pp = &self->conns; *pp;) {
        kvc_grpc_conn_t *sc = *pp;
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
        kvc_grpc_rpc_t *c = self->h2_active;
        kvc_h2_conn_cancel(c->conn->h, c->stream);
        s_list_unlink(&self->h2_active, c);
        kvc_grpc_rpc_complete(self, c, CURLE_ABORTED_BY_CALLBACK, 1);
    }
    while (self->finished) {
        kvc_grpc_rpc_t *c = self->finished;
        self->finished = c->next;
        c->next = NULL;
        kvc_grpc_rpc_complete(self, c, CURLE_ABORTED_BY_CALLBACK, 1);
    }
    for (kvc_grpc_backend_t *b = self->backends; b; b = b->next)
        s_held_end(self, b, CURLE_ABORTED_BY_CALLBACK, 1, NULL);
}

/* ---- https: libcurl -------------------------------------------------------- */

/* Read callback: the 5-byte prefix, then the caller's request bytes. */
static size_t s_on_read(char *buf, size_t size, size_t nitems, void *userp)
{
    kvc_grpc_rpc_t *call = userp;
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
    kvc_grpc_rpc_t *call = userp;
    if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > 5 + (uint64_t)call->req_len)
        return CURL_SEEKFUNC_FAIL;
    call->sent = (size_t)offset;
    return CURL_SEEKFUNC_OK;
}

/* Header callback: sees the headers and, for HTTP/2, the trailers too. */
static size_t s_on_header(char *line, size_t size, size_t nitems, void *userp)
{
    kvc_grpc_rpc_t *call = userp;
    kvc_grpc_headers_feed(&call->hdrs, line, size * nitems);
    return size * nitems;
}

/* Write callback: de-frames the body; a refusal aborts the transfer. */
static size_t s_on_write(char *data, size_t size, size_t nmemb, void *userp)
{
    size_t n = size * nmemb;
    return s_body(userp, (const uint8_t *)data, n) == 0 ? n : 0;
}

/* Configures the easy handle of one https call. */
int kvc_grpc_easy_setup(kvc_grpc_client_t *self, kvc_grpc_rpc_t *call, const char *url,
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
CURL *kvc_grpc_easy_take(kvc_grpc_client_t *self)
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
void kvc_grpc_easy_give(kvc_grpc_client_t *self, CURL *e)
{
    if (!e)
        return;
    curl_easy_reset(e);
    pthread_mutex_lock(&self->mu);
    if (self->n_spare < KVC_GRPC_SPARE_MAX) {
        self->spare[self->n_spare++] = e;
        e = NULL;
    }
    pthread_mutex_unlock(&self->mu);
    if (e)
        curl_easy_cleanup(e);
}

/* Builds the request header list; NULL on allocation failure. */
struct curl_slist *kvc_grpc_https_headers(kvc_grpc_client_t *self, uint32_t timeout_ms)
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

/* Adds a call's transfer to the multi handle with the time it has left. */
static void s_start(kvc_grpc_client_t *self, kvc_grpc_rpc_t *call)
{
    int64_t left = call->deadline_ms - kvc_grpc_now_ms();
    if (left <= 0) {
        kvc_grpc_rpc_complete(self, call, CURLE_OPERATION_TIMEDOUT, 0);
        return;
    }
    call->attempts++;
    curl_easy_setopt(call->easy, CURLOPT_TIMEOUT_MS, (long)left);
    if (curl_multi_add_handle(self->multi, call->easy) != CURLM_OK) {
        kvc_grpc_rpc_complete(self, call, CURLE_FAILED_INIT, 0);
        return;
    }
    s_list_push(&self->active, call);
}

/* Routes a call to its transport. */
void kvc_grpc_channel_dispatch(kvc_grpc_client_t *self, kvc_grpc_rpc_t *call)
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
static void s_finished(kvc_grpc_client_t *self, kvc_grpc_rpc_t *c, CURLcode result)
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
    kvc_grpc_rpc_complete(self, c, result, 0);
}

/* Moves the transfers along and ends those that finished (driver only). */
void kvc_grpc_channel_perform(kvc_grpc_client_t *self)
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
        kvc_grpc_rpc_t *c = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&c);
        curl_multi_remove_handle(self->multi, easy);
        if (c) {
            s_list_unlink(&self->active, c);
            s_finished(self, c, result);
        }
    }
}

/* ---- The round's wait, cancelling, teardown ---------------------------------- */

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
 * The wait of one engine round: on libcurl's sockets, every h2c connection
 * and extra/n_extra (their revents are filled in), for at most wait_ms or
 * until the first deadline of a plain-HTTP call or connect; then moves the
 * h2c connections and settles what they did. Returns the count of
 * descriptors curl_multi_poll saw ready (0 when it could not wait).
 */
int kvc_grpc_channel_wait(kvc_grpc_client_t *self, struct curl_waitfd *extra, unsigned n_extra,
                          int wait_ms)
{
    size_t need = n_extra + (size_t)self->n_conns;
    if (need > self->w_cap) {
        struct curl_waitfd *w = kvc_realloc(self->w, need * sizeof *w);
        if (!w)
            return 0; /* the next round tries again */
        self->w = w;
        self->w_cap = need;
    }
    unsigned k = 0;
    for (; k < n_extra; k++)
        self->w[k] = extra[k];
    int64_t now = kvc_grpc_now_ms();
    int64_t wake = now + wait_ms;
    for (kvc_grpc_conn_t *sc = self->conns; sc; sc = sc->next) {
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
    for (const kvc_grpc_rpc_t *c = self->h2_active; c; c = c->next)
        if (c->deadline_ms < wake)
            wake = c->deadline_ms;
    for (const kvc_grpc_backend_t *b = self->backends; b; b = b->next)
        for (const kvc_grpc_rpc_t *c = b->held_head; c; c = c->next)
            if (c->deadline_ms < wake)
                wake = c->deadline_ms;
    int timeout = wake <= now ? 0 : (int)(wake - now);
    int woke = 0;
    curl_multi_poll(self->multi, self->w, k, timeout, &woke);
    for (unsigned i = 0; i < n_extra; i++)
        extra[i].revents = self->w[i].revents;
    if (self->conns) {
        now = kvc_grpc_now_ms();
        for (kvc_grpc_conn_t *sc = self->conns; sc; sc = sc->next) {
            short rev = 0;
            if (sc->slot >= 0) {
                sc->unwatched = 0; /* this wait covered it */
                rev = s_from_curl(self->w[sc->slot].revents);
            }
            kvc_h2_conn_io(sc->h, rev, now);
        }
        kvc_grpc_channel_settle(self);
    }
    return woke;
}

/* Marks a call ended by its caller's cancel flag. */
void kvc_grpc_rpc_mark_cancelled(kvc_grpc_rpc_t *c)
{
    c->local_code = KVC_GRPC_CANCELLED;
    snprintf(c->local_msg, sizeof c->local_msg, "%s", KVC_GRPC_CANCEL_MSG);
}

/* Whether c is the only transfer in flight to its backend (its connection's only stream). */
static int s_alone(const kvc_grpc_client_t *self, const kvc_grpc_rpc_t *c)
{
    for (const kvc_grpc_rpc_t *o = self->active; o; o = o->next)
        if (o != c && strcmp(o->base_url, c->base_url) == 0)
            return 0;
    return 1;
}

/* Unlinks from the list head..tail every call made with flag; returns
 * them linked by next. */
kvc_grpc_rpc_t *kvc_grpc_rpc_unlink_flagged(kvc_grpc_rpc_t **head, kvc_grpc_rpc_t **tail,
                                            const atomic_int *flag)
{
    kvc_grpc_rpc_t *gone = NULL, *last = NULL;
    for (kvc_grpc_rpc_t **pp = head; *pp;) {
        kvc_grpc_rpc_t *c = *pp;
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

/* Ends the unstarted calls of a list from kvc_grpc_rpc_unlink_flagged; returns how many. */
int kvc_grpc_rpc_cancel_unstarted(kvc_grpc_client_t *self, kvc_grpc_rpc_t *gone)
{
    int n = 0;
    while (gone) {
        kvc_grpc_rpc_t *c = gone;
        gone = c->next;
        c->next = NULL;
        kvc_grpc_rpc_mark_cancelled(c);
        kvc_grpc_rpc_complete(self, c, CURLE_ABORTED_BY_CALLBACK, 0);
        n++;
    }
    return n;
}

/* Ends every call made with flag that waits for a connection or is in
 * flight, CANCELLED, resetting the streams of those on the wire; returns
 * how many (kvc_grpc_client_cancel, the owner only). */
int kvc_grpc_channel_cancel(kvc_grpc_client_t *self, const atomic_int *flag)
{
    int n = 0;
    /* Waiting for their backend's connection to open, or for a free stream. */
    for (kvc_grpc_backend_t *b = self->backends; b; b = b->next)
        n += kvc_grpc_rpc_cancel_unstarted(
            self, kvc_grpc_rpc_unlink_flagged(&b->held_head, &b->held_tail, flag));
    /* h2c streams in flight: reset at once (the server learns of it now). */
    for (kvc_grpc_rpc_t *c = self->h2_active, *next; c; c = next) {
        next = c->next;
        if (c->cancel != flag)
            continue;
        kvc_h2_conn_cancel(c->conn->h, c->stream);
        c->conn->dirty = 1;
        s_list_unlink(&self->h2_active, c);
        c->conn = NULL;
        kvc_grpc_rpc_mark_cancelled(c);
        kvc_grpc_rpc_complete(self, c, CURLE_ABORTED_BY_CALLBACK, 0);
        n++;
    }
    kvc_grpc_channel_settle(self);
    /*
     * https transfers in flight: taking one out resets its HTTP/2 stream,
     * but libcurl 7.88 only queues that RST_STREAM until the connection's
     * next read or write. So a call alone on its connection takes the
     * connection with it (a server cancels the streams of a connection that
     * closes); beside other calls the reset goes out with their traffic.
     */
    for (kvc_grpc_rpc_t *c = self->active, *next; c; c = next) {
        next = c->next;
        if (c->cancel != flag)
            continue;
        if (s_alone(self, c))
            curl_easy_setopt(c->easy, CURLOPT_FORBID_REUSE, 1L); /* read when it is taken out */
        s_list_unlink(&self->active, c);
        curl_multi_remove_handle(self->multi, c->easy);
        kvc_grpc_rpc_mark_cancelled(c);
        s_finished(self, c, CURLE_ABORTED_BY_CALLBACK);
        n++;
    }
    return n;
}

/* Ends every call the channel holds, https and h2c, CANCELLED (the client
 * is stopping). */
void kvc_grpc_channel_stop(kvc_grpc_client_t *self)
{
    while (self->active) {
        kvc_grpc_rpc_t *c = self->active;
        s_list_unlink(&self->active, c);
        curl_multi_remove_handle(self->multi, c->easy);
        kvc_grpc_rpc_complete(self, c, CURLE_ABORTED_BY_CALLBACK, 1);
    }
    s_h2_stop(self);
}

/* Frees the spare easy handles, the connections, the backend records and
 * the wait set (destroy, once no call is left). */
void kvc_grpc_channel_free(kvc_grpc_client_t *self)
{
    for (int i = 0; i < self->n_spare; i++)
        curl_easy_cleanup(self->spare[i]);
    while (self->conns) {
        kvc_grpc_conn_t *sc = self->conns;
        self->conns = sc->next;
        kvc_h2_conn_free(sc->h);
        kvc_free(sc);
    }
    while (self->backends) {
        kvc_grpc_backend_t *b = self->backends;
        self->backends = b->next;
        kvc_free(b->key);
        kvc_free(b);
    }
    kvc_free(self->w);
}
