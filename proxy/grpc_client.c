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
 * This file owns the public API and a call's life on its caller's side:
 * checking and building it, queueing it, driving or waiting (the
 * leader/followers hand-over, the owner's rounds), cancel flags, and
 * turning the ending into a result. Where a call goes once routed
 * (backends, h2c connections, GOAWAY, retries, the libcurl transfers, the
 * round's wait) is grpc_channel.c; the wire format (framing, headers and
 * trailers, status mappings) is grpc_wire.c, pure functions.
 *
 * Must never: let two threads touch the engine (only the driver does),
 * leave calls in flight without a driver, trust a length prefix before
 * bounding it, or treat a response without grpc-status as success.
 */
#include "grpc_client.h"

#include "base.h"
#include "fiber.h"
#include "grpc_channel.h"

#include <curl/curl.h>
#include <inttypes.h>
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
/* Default: trust an idle connection to be open for this long (less than the
 * 118 s libcurl may keep one, S_MAXAGE_CONN_S in grpc_channel.c). */
#define S_IDLE_TRUST_MS 100000u

/* This thread's cancel flag (kvc_grpc_cancel_flag_set); fibers have their own. */
static _Thread_local const atomic_int *s_caller_cancel;

/* ---- The driver ----------------------------------------------------------- */

static pthread_once_t s_curl_once = PTHREAD_ONCE_INIT;
static int s_curl_ready;

/* Initialises libcurl once per process, before any thread uses it. */
static void s_curl_init(void)
{
    s_curl_ready = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
}

/* The monotonic clock rounded up to a millisecond: a deadline built on it
 * never passes before its full timeout has. */
static int64_t s_now_ms_up(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + (ts.tv_nsec + 999999) / 1000000;
}

/* A call whose caller is waiting, to take over driving (driver, under mu). */
static kvc_grpc_rpc_t *s_waiter(kvc_grpc_client_t *self)
{
    if (self->queue_head)
        return self->queue_head;
    if (self->active)
        return self->active;
    if (self->h2_active)
        return self->h2_active;
    if (self->finished)
        return self->finished;
    for (kvc_grpc_backend_t *b = self->backends; b; b = b->next)
        if (b->held_head)
            return b->held_head;
    return NULL;
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
    kvc_grpc_rpc_t *q = self->queue_head;
    self->queue_head = self->queue_tail = NULL;
    int stopping = self->stopping;
    kvc_grpc_ext_t *ext = self->ext_ready;
    self->ext_ready = NULL;
    pthread_mutex_unlock(&self->mu);

    for (; ext; ext = ext->next_ready) {
        kvc_fiber_ready(ext->fiber);
        self->ended++; /* a fiber runs this turn: do not wait */
    }

    while (q) {
        kvc_grpc_rpc_t *next = q->next;
        q->next = q->prev = NULL;
        if (stopping)
            kvc_grpc_rpc_complete(self, q, CURLE_ABORTED_BY_CALLBACK, 1);
        else
            kvc_grpc_channel_dispatch(self, q);
        q = next;
    }
    if (stopping) {
        kvc_grpc_channel_stop(self);
        return 0;
    }
    if (self->active)
        kvc_grpc_channel_perform(self);
    kvc_grpc_channel_settle(self);
    return 1;
}

/*
 * One round of the transfer engine: s_advance, then waits for activity
 * unless `mine` has ended (with no `mine`, the owner's loop: unless a call
 * ended this round; extra/n_extra are more descriptors to wake for, wait_ms
 * the longest wait). The wait covers libcurl's sockets, every h2c
 * connection and the deadlines of the plain-HTTP calls and connects.
 */
static void s_drive_round(kvc_grpc_client_t *self, const kvc_grpc_rpc_t *mine,
                          struct curl_waitfd *extra, unsigned n_extra, int wait_ms)
{
    self->ended = 0;
    if (!s_advance(self))
        return;
    if (mine ? mine->done : self->ended > 0)
        return;
    int woke = kvc_grpc_channel_wait(self, extra, n_extra, wait_ms);
    if (!mine && woke > 0 && self->active) {
        /* The owner's loop: move what arrived now, so a fiber whose answer
         * just came runs this turn rather than the next. */
        kvc_grpc_channel_perform(self);
    }
}

static void s_drive_once(kvc_grpc_client_t *self, const kvc_grpc_rpc_t *mine)
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
        kvc_grpc_rpc_t *heir = s_waiter(self);
        if (heir)
            pthread_cond_signal(&heir->cond);
    }
    pthread_mutex_unlock(&self->mu);
}

void kvc_grpc_ext_init(kvc_grpc_ext_t *w)
{
    memset(w, 0, sizeof *w);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cond, NULL);
}

void kvc_grpc_ext_wait(kvc_grpc_client_t *self, kvc_grpc_ext_t *w)
{
    kvc_fiber_t *fiber = kvc_fiber_current();
    pthread_mutex_lock(&self->mu);
    int on_owner = self->owned && pthread_equal(self->owner, pthread_self());
    pthread_mutex_unlock(&self->mu);
    if (fiber && on_owner) {
        pthread_mutex_lock(&w->mu);
        w->fiber = fiber;
        pthread_mutex_unlock(&w->mu);
        for (;;) {
            pthread_mutex_lock(&w->mu);
            int done = w->done;
            pthread_mutex_unlock(&w->mu);
            if (done)
                break;
            kvc_fiber_yield();
        }
    } else {
        pthread_mutex_lock(&w->mu);
        while (!w->done)
            pthread_cond_wait(&w->cond, &w->mu);
        pthread_mutex_unlock(&w->mu);
    }
}

void kvc_grpc_ext_done(kvc_grpc_client_t *self, kvc_grpc_ext_t *w)
{
    /* Lock order: the client's mutex, then the wait's. The fiber is read
     * and the wait marked done in one step, so a fiber that set itself
     * after this saw done == 0 is always queued. */
    pthread_mutex_lock(&self->mu);
    pthread_mutex_lock(&w->mu);
    w->done = 1;
    int queued = 0;
    if (w->fiber) {
        w->next_ready = self->ext_ready;
        self->ext_ready = w;
        queued = 1;
    } else {
        pthread_cond_signal(&w->cond);
    }
    pthread_mutex_unlock(&w->mu);
    pthread_mutex_unlock(&self->mu);
    if (queued)
        curl_multi_wakeup(self->multi);
}

void kvc_grpc_ext_destroy(kvc_grpc_ext_t *w)
{
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->mu);
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

int kvc_grpc_client_cancel(kvc_grpc_client_t *self, const atomic_int *flag)
{
    if (!self || !flag)
        return -1;
    pthread_mutex_lock(&self->mu);
    if (!self->owned || !pthread_equal(self->owner, pthread_self())) {
        pthread_mutex_unlock(&self->mu);
        return -1;
    }
    kvc_grpc_rpc_t *queued =
        kvc_grpc_rpc_unlink_flagged(&self->queue_head, &self->queue_tail, flag);
    pthread_mutex_unlock(&self->mu);
    /* Queued, not yet routed; then those the channel holds (waiting for a
     * connection, or in flight). */
    int n = kvc_grpc_rpc_cancel_unstarted(self, queued);
    n += kvc_grpc_channel_cancel(self, flag);
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
    kvc_grpc_channel_free(self);
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
static void s_resolve(kvc_grpc_client_t *self, kvc_grpc_rpc_t *call, int tls, uint32_t timeout_ms,
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

    kvc_grpc_rpc_t *call = kvc_calloc(1, sizeof *call);
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
        headers = kvc_grpc_https_headers(self, timeout_ms);
        call->easy = kvc_grpc_easy_take(self);
        if (!headers || !call->easy) {
            s_result_set(res, KVC_GRPC_RESOURCE_EXHAUSTED, "out of memory");
            rc = KVC_ENOMEM;
            goto out;
        }
        if (kvc_grpc_easy_setup(self, call, url, headers) != KVC_OK) {
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
        s_result_set(res, KVC_GRPC_CANCELLED, KVC_GRPC_CANCEL_MSG);
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
            kvc_grpc_rpc_t *heir = s_waiter(self);
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
    kvc_grpc_easy_give(self, call->easy);
    curl_slist_free_all(headers);
    kvc_grpc_deframer_free(&call->deframer);
    kvc_free(call);
    return rc;
}
