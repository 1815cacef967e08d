/*
 * grpc_client.c - unary gRPC over HTTP/2 on libcurl, multiplexed.
 *
 * Design: one curl multi handle per client and no thread of its own. A
 * caller builds its easy handle in its own thread and queues it. If nobody
 * is driving the multi handle, the caller drives it (leader/followers):
 * adds queued handles, runs transfers, signals each caller whose transfer
 * ends, until its own call ends; it then hands the engine to a caller still
 * waiting. Otherwise the caller wakes the driver (curl_multi_wakeup) and
 * waits on its own condition variable, ready to take over. A lone call thus
 * runs start to finish on its caller's thread, without the two thread
 * switches a dedicated I/O thread costs per call. With CURLPIPE_MULTIPLEX
 * and CURLOPT_PIPEWAIT all concurrent calls to one backend share one
 * HTTP/2 connection. "The driver" below is whichever caller drives. An
 * event loop may own the client instead (kvc_grpc_client_own): it is then
 * the driver for good, running one engine round per turn; its fibers'
 * calls yield to it, and calls from other threads wait as followers.
 *
 * Must never: let two threads touch the multi handle (only the driver
 * does), leave calls in flight without a driver, trust a length prefix
 * before bounding it, or treat a response without grpc-status as success.
 */
#include "grpc_client.h"

#include "base.h"
#include "fiber.h"

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
/* Easy handles kept for reuse: creating one per call (a large zeroed
 * allocation and its buffers) showed in the proxy's CPU profile. */
#define S_SPARE_MAX 64
#define S_MAX_BACKENDS 256
#define S_MAXAGE_CONN_S 118L
/* Default: trust an idle connection to be open for this long (< S_MAXAGE_CONN_S). */
#define S_IDLE_TRUST_MS 100000u
#define S_CANCEL_MSG "cancelled: the caller went away"
/* Transfers one call may take: a retry after an HTTP/1.1 upgrade the
 * server refused, and one after a connection lost under it (retry_lost). */
#define S_MAX_ATTEMPTS 3

/* This thread's cancel flag (kvc_grpc_cancel_flag_set); fibers have their own. */
static _Thread_local const atomic_int *s_caller_cancel;

struct s_backend;

/* One call in flight: owned by the caller, touched by the driver only
 * between submission and completion. */
typedef struct s_call {
    struct s_call *next; /* queue link, or in-flight list link */
    struct s_call *prev; /* in-flight list only */
    CURL *easy;
    pthread_cond_t cond;
    int done;             /* set by the driver under the client mutex */
    CURLcode curl_code;   /* transfer result, set by the driver */
    int cancelled;        /* client stopped before the call ended */
    const char *base_url; /* the caller's, valid for the call */
    int tls;
    int pk; /* this transfer opens with h2c prior knowledge */
    int attempts;
    int64_t deadline_ms; /* monotonic */
    size_t max_message;
    struct s_backend *be;     /* driver only */
    kvc_fiber_t *fiber;       /* a caller on the owner's loop: made ready when done */
    const atomic_int *cancel; /* the caller's cancel flag, or NULL */
    uint64_t connects;        /* connections opened, over all attempts */
    /* Request body: 5-byte prefix then the caller's bytes. */
    uint8_t prefix[5];
    const uint8_t *req;
    size_t req_len;
    size_t sent;
    /* Response, filled by curl callbacks in the driver. */
    kvc_grpc_headers_t hdrs;
    kvc_grpc_deframer_t deframer;
    int local_code; /* -1, or a gRPC code the body reader chose */
    char local_msg[128];
    char errbuf[CURL_ERROR_SIZE];
} s_call_t;

/* What the driver knows about one plain-HTTP backend's connection. */
enum { S_BE_NONE, S_BE_CONNECTING, S_BE_UP };
typedef struct s_backend {
    struct s_backend *next;
    char *key; /* base URL */
    int state;
    s_call_t *connector; /* the prior-knowledge transfer opening it */
    s_call_t *held_head; /* calls waiting for the connection */
    s_call_t *held_tail;
    int64_t last_ms;
    int inflight; /* transfers added to the multi */
} s_backend_t;

struct kvc_grpc_client {
    kvc_grpc_opts_t opts;
    char *ca_file;
    CURLM *multi;
    pthread_mutex_t mu;
    int driving;          /* a caller is running the transfer engine (under mu) */
    int callers;          /* calls inside kvc_grpc_call (under mu) */
    pthread_cond_t idle;  /* signalled when callers drops to 0 */
    s_call_t *queue_head; /* submitted, not yet added (under mu) */
    s_call_t *queue_tail;
    int stopping;          /* under mu */
    s_call_t *active;      /* added to multi; driver only */
    s_backend_t *backends; /* driver only */
    int n_backends;
    kvc_grpc_stats_t stats;   /* under mu */
    CURL *spare[S_SPARE_MAX]; /* reset easy handles for the next calls (under mu) */
    int n_spare;
    int verbose;     /* KVC_GRPC_VERBOSE, read once */
    int owned;       /* a loop thread drives for good (kvc_grpc_client_own; under mu) */
    pthread_t owner; /* that thread */
    int ended;       /* calls ended in the current engine round (driver only) */
};

static const char *s_names[] = {
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
};

/* Returns the static name of a gRPC status code. */
const char *kvc_grpc_status_name(int code)
{
    if (code < 0 || code > KVC_GRPC_UNAUTHENTICATED)
        return "UNKNOWN_CODE";
    return s_names[code];
}

/* Maps a gRPC status onto the nearest KVC_E* code. */
int kvc_grpc_code_to_err(int code)
{
    switch (code) {
    case KVC_GRPC_OK:
        return KVC_OK;
    case KVC_GRPC_INVALID_ARGUMENT:
    case KVC_GRPC_FAILED_PRECONDITION:
        return KVC_EINVAL;
    case KVC_GRPC_DEADLINE_EXCEEDED:
        return KVC_ETIMEDOUT;
    case KVC_GRPC_NOT_FOUND:
        return KVC_ENOENT;
    case KVC_GRPC_ALREADY_EXISTS:
        return KVC_EEXIST;
    case KVC_GRPC_PERMISSION_DENIED:
    case KVC_GRPC_UNAUTHENTICATED:
        return KVC_EPERM;
    case KVC_GRPC_RESOURCE_EXHAUSTED:
    case KVC_GRPC_OUT_OF_RANGE:
        return KVC_ERANGE;
    case KVC_GRPC_UNAVAILABLE:
        return KVC_EUNAVAIL;
    case KVC_GRPC_ABORTED:
        return KVC_EAGAIN;
    default:
        return KVC_EIO;
    }
}

/* ---- Pure parts -------------------------------------------------------- */

/* Writes the uncompressed-message prefix: flag 0, big-endian length. */
int kvc_grpc_frame_prefix(uint8_t out[5], size_t len)
{
    if ((uint64_t)len > UINT32_MAX)
        return KVC_ERANGE;
    out[0] = 0;
    out[1] = (uint8_t)(len >> 24);
    out[2] = (uint8_t)(len >> 16);
    out[3] = (uint8_t)(len >> 8);
    out[4] = (uint8_t)len;
    return KVC_OK;
}

/* Prepares an empty deframer bounded by max. */
void kvc_grpc_deframer_init(kvc_grpc_deframer_t *d, size_t max)
{
    memset(d, 0, sizeof *d);
    d->max = max;
}

/* Consumes bytes: prefixes are checked and bounded before any allocation. */
int kvc_grpc_deframer_feed(kvc_grpc_deframer_t *d, const uint8_t *p, size_t n)
{
    while (n > 0) {
        if (!d->in_message) {
            size_t want = 5 - d->prefix_have;
            size_t k = n < want ? n : want;
            memcpy(d->prefix + d->prefix_have, p, k);
            d->prefix_have += k;
            p += k;
            n -= k;
            if (d->prefix_have < 5)
                break;
            if (d->prefix[0] != 0)
                return KVC_EPARSE; /* compressed (none negotiated) or bad flag */
            if (d->messages > 0)
                return KVC_EPARSE; /* unary: a second message */
            uint64_t len = ((uint64_t)d->prefix[1] << 24) | ((uint64_t)d->prefix[2] << 16) |
                           ((uint64_t)d->prefix[3] << 8) | (uint64_t)d->prefix[4];
            if (len > d->max)
                return KVC_ERANGE;
            d->msg = kvc_malloc(len > 0 ? (size_t)len : 1);
            if (!d->msg)
                return KVC_ENOMEM;
            d->msg_len = (size_t)len;
            d->msg_have = 0;
            d->in_message = 1;
        }
        size_t want = d->msg_len - d->msg_have;
        size_t k = n < want ? n : want;
        if (k > 0) {
            memcpy(d->msg + d->msg_have, p, k);
            d->msg_have += k;
            p += k;
            n -= k;
        }
        if (d->msg_have == d->msg_len) {
            d->in_message = 0;
            d->prefix_have = 0;
            d->messages++;
        }
    }
    return KVC_OK;
}

/* Gives the caller the single complete message. */
int kvc_grpc_deframer_take(kvc_grpc_deframer_t *d, uint8_t **msg, size_t *len)
{
    *msg = NULL;
    *len = 0;
    if (d->in_message || d->prefix_have > 0)
        return KVC_EPARSE;
    if (d->messages == 0 || !d->msg)
        return KVC_ENOENT;
    *msg = d->msg;
    *len = d->msg_len;
    d->msg = NULL;
    d->msg_len = 0;
    return KVC_OK;
}

/* Frees a message not taken. */
void kvc_grpc_deframer_free(kvc_grpc_deframer_t *d)
{
    kvc_free(d->msg);
    d->msg = NULL;
    d->msg_len = d->msg_have = 0;
}

/* Resets the header state. */
void kvc_grpc_headers_init(kvc_grpc_headers_t *h)
{
    memset(h, 0, sizeof *h);
    h->grpc_status = -1;
}

/* Case-insensitive ASCII comparison of a length-bounded name. */
static int s_name_is(const char *name, size_t n, const char *want)
{
    size_t wl = strlen(want);
    if (n != wl)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char a = name[i], b = want[i];
        if (a >= 'A' && a <= 'Z')
            a = (char)(a - 'A' + 'a');
        if (a != b)
            return 0;
    }
    return 1;
}

/* Parses the status line "HTTP/2 200" (or HTTP/1.x) into h->http_status. */
static void s_parse_status_line(kvc_grpc_headers_t *h, const char *line, size_t n)
{
    size_t i = 0;
    while (i < n && line[i] != ' ')
        i++;
    while (i < n && line[i] == ' ')
        i++;
    long code = 0;
    size_t digits = 0;
    while (i < n && line[i] >= '0' && line[i] <= '9' && digits < 3) {
        code = code * 10 + (line[i] - '0');
        i++;
        digits++;
    }
    if (digits == 3)
        h->http_status = code;
}

/* Feeds one header or trailer line. */
void kvc_grpc_headers_feed(kvc_grpc_headers_t *h, const char *line, size_t n)
{
    while (n > 0 && (line[n - 1] == '\r' || line[n - 1] == '\n'))
        n--;
    if (n == 0)
        return;
    if (n >= 5 && memcmp(line, "HTTP/", 5) == 0) {
        s_parse_status_line(h, line, n);
        return;
    }
    const char *colon = memchr(line, ':', n);
    if (!colon || colon == line)
        return;
    size_t name_len = (size_t)(colon - line);
    const char *v = colon + 1;
    size_t vn = n - name_len - 1;
    while (vn > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        vn--;
    }
    while (vn > 0 && (v[vn - 1] == ' ' || v[vn - 1] == '\t'))
        vn--;
    if (s_name_is(line, name_len, "grpc-status")) {
        int code = 0;
        int ok = vn > 0 && vn <= 3;
        for (size_t i = 0; ok && i < vn; i++) {
            if (v[i] < '0' || v[i] > '9')
                ok = 0;
            else
                code = code * 10 + (v[i] - '0');
        }
        h->grpc_status = (ok && code <= KVC_GRPC_UNAUTHENTICATED) ? code : KVC_GRPC_UNKNOWN;
    } else if (s_name_is(line, name_len, "grpc-message")) {
        kvc_grpc_percent_decode(v, vn, h->grpc_message, sizeof h->grpc_message);
    } else if (s_name_is(line, name_len, "content-type")) {
        static const char ct[] = "application/grpc";
        size_t cl = sizeof ct - 1;
        h->content_type_grpc =
            vn >= cl && strncmp(v, ct, cl) == 0 && (vn == cl || v[cl] == '+' || v[cl] == ';');
    }
}

/* Value of one hex digit, or -1. */
static int s_hex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decodes, keeping malformed escapes literally. */
size_t kvc_grpc_percent_decode(const char *in, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < cap; i++) {
        if (in[i] == '%' && i + 2 < n && s_hex(in[i + 1]) >= 0 && s_hex(in[i + 2]) >= 0) {
            out[o++] = (char)(s_hex(in[i + 1]) * 16 + s_hex(in[i + 2]));
            i += 2;
        } else {
            out[o++] = in[i];
        }
    }
    out[o] = '\0';
    return o;
}

/* Formats a grpc-timeout header value. */
int kvc_grpc_timeout_format(uint32_t ms, char *out, size_t cap)
{
    int w;
    if (ms <= 99999999u)
        w = snprintf(out, cap, "%" PRIu32 "m", ms);
    else
        w = snprintf(out, cap, "%" PRIu32 "S", ms / 1000u + (ms % 1000u != 0));
    if (w < 0 || (size_t)w >= cap)
        return KVC_ERANGE;
    return KVC_OK;
}

/* gRPC spec, "HTTP to gRPC Status Code Mapping". */
int kvc_grpc_code_from_http(long http_status)
{
    switch (http_status) {
    case 400:
        return KVC_GRPC_INTERNAL;
    case 401:
        return KVC_GRPC_UNAUTHENTICATED;
    case 403:
        return KVC_GRPC_PERMISSION_DENIED;
    case 404:
        return KVC_GRPC_UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
        return KVC_GRPC_UNAVAILABLE;
    default:
        return KVC_GRPC_UNKNOWN;
    }
}

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

/* Write callback: de-frames the body; a refusal aborts the transfer. */
static size_t s_on_write(char *data, size_t size, size_t nmemb, void *userp)
{
    s_call_t *call = userp;
    size_t n = size * nmemb;
    if (call->local_code >= 0)
        return 0;
    if (call->hdrs.http_status != 200)
        return n; /* an error page: its status decides, the body is ignored */
    int rc = kvc_grpc_deframer_feed(&call->deframer, (const uint8_t *)data, n);
    if (rc == KVC_OK)
        return n;
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
    return 0;
}

/* Milliseconds on the monotonic clock. */
static int64_t s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
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

/* Unlinks a call from the driver's in-flight list. */
static void s_active_unlink(kvc_grpc_client_t *self, s_call_t *call)
{
    if (call->prev)
        call->prev->next = call->next;
    else
        self->active = call->next;
    if (call->next)
        call->next->prev = call->prev;
    call->next = call->prev = NULL;
}

/* Prereq callback: the connection is up and the request is about to go. */
static int s_on_prereq(void *clientp, char *ip, char *local_ip, int port, int local_port)
{
    s_call_t *call = clientp;
    s_backend_t *be = call->be;
    if (be && be->state == S_BE_CONNECTING && be->connector == call) {
        be->state = S_BE_UP;
        be->last_ms = s_now_ms();
    }
    return CURL_PREREQFUNC_OK;
}

/* Finds (or makes) the driver's record of a plain-HTTP backend. */
static s_backend_t *s_backend(kvc_grpc_client_t *self, const char *base_url)
{
    s_backend_t *spare = NULL;
    for (s_backend_t *b = self->backends; b; b = b->next) {
        if (strcmp(b->key, base_url) == 0)
            return b;
        if (!b->held_head && !b->inflight && b->state != S_BE_CONNECTING &&
            (!spare || b->last_ms < spare->last_ms))
            spare = b;
    }
    if (self->n_backends >= S_MAX_BACKENDS && spare) {
        /* Forget the least recently used idle backend: at worst one call
         * there later takes the fresh-connection path. */
        kvc_free(spare->key);
        spare->key = kvc_strdup(base_url);
        spare->state = S_BE_NONE;
        spare->connector = NULL;
        return spare->key ? spare : NULL;
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

/* Adds a call's transfer to the multi handle with the time it has left. */
static void s_start(kvc_grpc_client_t *self, s_call_t *call, long http_version)
{
    int64_t left = call->deadline_ms - s_now_ms();
    if (left <= 0) {
        s_complete(self, call, CURLE_OPERATION_TIMEDOUT, 0);
        return;
    }
    call->attempts++;
    curl_easy_setopt(call->easy, CURLOPT_HTTP_VERSION, http_version);
    /* A prior-knowledge transfer must open its own connection: reusing one
     * breaks it in libcurl 7.88 (see s_dispatch). With one connection per
     * host allowed, libcurl closes an idle one to make room. */
    curl_easy_setopt(call->easy, CURLOPT_FRESH_CONNECT,
                     http_version == (long)CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE ? 1L : 0L);
    curl_easy_setopt(call->easy, CURLOPT_TIMEOUT_MS, (long)left);
    if (curl_multi_add_handle(self->multi, call->easy) != CURLM_OK) {
        s_complete(self, call, CURLE_FAILED_INIT, 0);
        return;
    }
    if (call->be)
        call->be->inflight++;
    call->next = self->active;
    call->prev = NULL;
    if (self->active)
        self->active->prev = call;
    self->active = call;
}

/*
 * Routes a call. libcurl 7.88 (Debian 12) breaks an h2c prior-knowledge
 * connection when a second prior-knowledge transfer reuses it (curl issue
 * 10634, fixed in 8.0). So per plain-HTTP backend only one transfer opens
 * the connection with prior knowledge, always on a fresh connection
 * (s_start); the others wait until it is up and then ask for plain
 * HTTP/2, which reuses (multiplexes) it correctly. A backend idle past
 * idle_reopen_ms may have lost its connection (libcurl ages them out), so
 * its next call opens a new one rather than guess.
 */
static void s_dispatch(kvc_grpc_client_t *self, s_call_t *call)
{
    if (call->tls) {
        s_start(self, call, (long)CURL_HTTP_VERSION_2_0);
        return;
    }
    s_backend_t *be = call->be ? call->be : s_backend(self, call->base_url);
    if (!be) {
        s_complete(self, call, CURLE_OUT_OF_MEMORY, 0);
        return;
    }
    call->be = be;
    int64_t now = s_now_ms();
    if (be->state == S_BE_UP && now - be->last_ms > (int64_t)self->opts.idle_reopen_ms)
        be->state = S_BE_NONE; /* libcurl may have closed the idle connection */
    if (be->state == S_BE_UP) {
        call->pk = 0;
        be->last_ms = now;
        s_start(self, call, (long)CURL_HTTP_VERSION_2_0);
    } else if (be->state == S_BE_CONNECTING) {
        call->next = NULL;
        if (be->held_tail)
            be->held_tail->next = call;
        else
            be->held_head = call;
        be->held_tail = call;
    } else {
        call->pk = 1;
        be->state = S_BE_CONNECTING;
        be->connector = call;
        s_start(self, call, (long)CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE);
    }
}

/* Ends every call waiting for b's connection with code. */
static void s_held_end(kvc_grpc_client_t *self, s_backend_t *b, CURLcode code, int cancelled)
{
    while (b->held_head) {
        s_call_t *h = b->held_head;
        b->held_head = h->next;
        h->next = NULL;
        s_complete(self, h, code, cancelled);
    }
    b->held_tail = NULL;
}

/* Releases held calls of backends that are up, and expires late ones. */
static void s_release_held(kvc_grpc_client_t *self)
{
    int64_t now = s_now_ms();
    for (s_backend_t *b = self->backends; b; b = b->next) {
        s_call_t **pp = &b->held_head;
        s_call_t *last = NULL;
        while (*pp) {
            s_call_t *c = *pp;
            if (b->state != S_BE_CONNECTING || c->deadline_ms <= now) {
                *pp = c->next;
                c->next = NULL;
                if (c->deadline_ms <= now)
                    s_complete(self, c, CURLE_OPERATION_TIMEDOUT, 0);
                else
                    s_dispatch(self, c);
                continue;
            }
            last = c;
            pp = &c->next;
        }
        b->held_tail = last;
    }
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

/* Whether a transfer failed in the transport rather than by our choice. */
static int s_transport_error(CURLcode rc)
{
    return rc != CURLE_OK && rc != CURLE_OPERATION_TIMEDOUT && rc != CURLE_WRITE_ERROR &&
           rc != CURLE_ABORTED_BY_CALLBACK && rc != CURLE_OUT_OF_MEMORY;
}

/* Handles the end of one transfer: backend bookkeeping, retry or report. */
static void s_finished(kvc_grpc_client_t *self, s_call_t *c, CURLcode result)
{
    s_backend_t *be = c->be;
    int no_response = c->hdrs.http_status == 0;
    if (be)
        be->inflight--;
    long nc = 0;
    curl_easy_getinfo(c->easy, CURLINFO_NUM_CONNECTS, &nc);
    if (nc > 0)
        c->connects += (uint64_t)nc;
    if (be) {
        int failed = s_transport_error(result) && no_response;
        if (be->connector == c) {
            be->connector = NULL;
            /* Up once the request went out (prereq); else it never connected. */
            if (be->state == S_BE_CONNECTING) {
                be->state = S_BE_NONE;
                /* Calls waiting for this connection share its fate, as
                 * gRPC fails the calls waiting on a dead channel. */
                if (result == CURLE_COULDNT_CONNECT || result == CURLE_COULDNT_RESOLVE_HOST)
                    s_held_end(self, be, result, 0);
            }
        } else if (failed && !c->pk && nc > 0) {
            /* A plain-HTTP/2 transfer found no connection to reuse and
             * opened one of its own (HTTP/1.1 upgrade, which gRPC servers
             * refuse): it never reached the service, so reopen properly. */
            be->state = S_BE_NONE;
            if (c->attempts < S_MAX_ATTEMPTS) {
                s_reset_for_retry(c);
                s_dispatch(self, c);
                return;
            }
        }
        if (!no_response)
            be->last_ms = s_now_ms();
    }
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
        if (be)
            be->state = S_BE_NONE;
        pthread_mutex_lock(&self->mu);
        self->stats.retried++;
        pthread_mutex_unlock(&self->mu);
        s_reset_for_retry(c);
        s_dispatch(self, c);
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
            s_active_unlink(self, c);
            s_finished(self, c, result);
        }
    }
}

/*
 * Routes queued calls, drives transfers and reports endings, without
 * waiting; 0 if the client is stopping (every call has then ended). Only
 * the caller that holds `driving` runs it, so the multi handle, the active
 * list and the backends are never touched by two threads at once;
 * `call->done` is written only here, by that same thread.
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
            s_active_unlink(self, c);
            curl_multi_remove_handle(self->multi, c->easy);
            s_complete(self, c, CURLE_ABORTED_BY_CALLBACK, 1);
        }
        for (s_backend_t *b = self->backends; b; b = b->next)
            s_held_end(self, b, CURLE_ABORTED_BY_CALLBACK, 1);
        return 0;
    }
    s_perform(self);
    s_release_held(self);
    return 1;
}

/*
 * One round of the transfer engine: s_advance, then waits for activity
 * unless `mine` has ended (with no `mine`, the owner's loop: unless a call
 * ended this round; extra/n_extra are more descriptors to wake for, wait_ms
 * the longest wait).
 */
static void s_drive_round(kvc_grpc_client_t *self, const s_call_t *mine, struct curl_waitfd *extra,
                          unsigned n_extra, int wait_ms)
{
    self->ended = 0;
    if (!s_advance(self))
        return;
    if (mine ? mine->done : self->ended > 0)
        return;
    int held = 0;
    for (s_backend_t *b = self->backends; b && !held; b = b->next)
        held = b->held_head != NULL;
    int woke = 0;
    curl_multi_poll(self->multi, extra, n_extra, held && wait_ms > 10 ? 10 : wait_ms, &woke);
    if (!mine && woke > 0) {
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
    /*
     * In flight: taking a transfer out resets its HTTP/2 stream, but
     * libcurl 7.88 only queues that RST_STREAM until the connection's next
     * read or write. So a call alone on its connection takes the connection
     * with it (a server cancels the streams of a connection that closes)
     * and the next call opens a new one; beside other calls the reset goes
     * out with their traffic.
     */
    for (s_call_t *c = self->active, *next; c; c = next) {
        next = c->next;
        if (c->cancel != flag)
            continue;
        if (s_alone(self, c)) {
            curl_easy_setopt(c->easy, CURLOPT_FORBID_REUSE, 1L); /* read when it is taken out */
            if (c->be)
                c->be->state = S_BE_NONE; /* the next call reopens (prior knowledge) */
        }
        s_active_unlink(self, c);
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
    while (self->backends) {
        s_backend_t *b = self->backends;
        self->backends = b->next;
        kvc_free(b->key);
        kvc_free(b);
    }
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

/* Configures the easy handle of one call. */
static int s_setup_easy(kvc_grpc_client_t *self, s_call_t *call, const char *url, int tls,
                        struct curl_slist *headers, uint32_t timeout_ms)
{
    CURL *e = call->easy;
    int bad = 0;
    bad |= curl_easy_setopt(e, CURLOPT_URL, url) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, tls ? "https" : "http") != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, s_on_prereq) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_PREREQDATA, call) != CURLE_OK;
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
    bad |= curl_easy_setopt(e, CURLOPT_USERAGENT, "grpc-c-kvc/0.1") != CURLE_OK;
    if (self->verbose)
        curl_easy_setopt(e, CURLOPT_VERBOSE, 1L);
    if (tls) {
        if (self->ca_file)
            bad |= curl_easy_setopt(e, CURLOPT_CAINFO, self->ca_file) != CURLE_OK;
        if (self->opts.tls_insecure) {
            bad |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L) != CURLE_OK;
            bad |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L) != CURLE_OK;
        }
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
    call->base_url = base_url;
    call->tls = tls;
    call->deadline_ms = s_now_ms() + timeout_ms;
    call->max_message = self->opts.max_message_size;
    kvc_grpc_headers_init(&call->hdrs);
    kvc_grpc_deframer_init(&call->deframer, self->opts.max_message_size);
    if (kvc_grpc_frame_prefix(call->prefix, len) != KVC_OK) {
        kvc_free(call);
        s_result_set(res, KVC_GRPC_RESOURCE_EXHAUSTED, "request larger than 4 GiB");
        return KVC_ERANGE;
    }

    int rc = KVC_OK;
    struct curl_slist *headers = s_headers(self, timeout_ms);
    call->easy = s_easy_take(self);
    if (!headers || !call->easy || pthread_cond_init(&call->cond, NULL) != 0) {
        s_result_set(res, KVC_GRPC_RESOURCE_EXHAUSTED, "out of memory");
        rc = KVC_ENOMEM;
        goto out_nocond;
    }
    if (s_setup_easy(self, call, url, tls, headers, timeout_ms) != KVC_OK) {
        s_result_set(res, KVC_GRPC_INTERNAL, "libcurl refused an option");
        rc = KVC_EIO;
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
