/*
 * grpc_channel.h - INTERNAL to the gRPC client: shared by grpc_client.c
 * (the public API, the callers' side of a call, the driver) and
 * grpc_channel.c (backends, connections, transports). Nothing outside
 * those two files may include it; everyone else uses grpc_client.h.
 *
 * The structs below are the client's state. A call (kvc_grpc_rpc_t) is
 * owned by the thread in kvc_grpc_call and touched by the driver only
 * between submission and completion; connections and backends belong to
 * the driver alone. "Under mu" marks what other threads read too.
 */
#ifndef KVC_GRPC_CHANNEL_H
#define KVC_GRPC_CHANNEL_H

#include "grpc_client.h"

#include "fiber.h"
#include "h2_conn.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* Easy handles kept for reuse: creating one per call (a large zeroed
 * allocation and its buffers) showed in the proxy's CPU profile. */
#define KVC_GRPC_SPARE_MAX 64
/* The message of a call ended by its caller's cancel flag. */
#define KVC_GRPC_CANCEL_MSG "cancelled: the caller went away"

/* One call in flight: owned by the caller, touched by the driver only
 * between submission and completion. */
typedef struct kvc_grpc_rpc {
    struct kvc_grpc_rpc *next; /* queue link, or in-flight list link */
    struct kvc_grpc_rpc *prev; /* in-flight list only */
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
    kvc_fiber_t *fiber;         /* a caller on the owner's loop: made ready when done */
    const atomic_int *cancel;   /* the caller's cancel flag, or NULL */
    uint64_t connects;          /* https: connections opened, over all attempts */
    char timeout[16];           /* h2c: the grpc-timeout value */
    struct kvc_grpc_conn *conn; /* h2c: the connection carrying its stream (driver only) */
    int32_t stream;             /* h2c: that stream */
    int h2_how;                 /* h2c: how the stream ended (kvc_h2_end_t) */
    uint32_t h2_error;          /* h2c: the reset's HTTP/2 error code */
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
} kvc_grpc_rpc_t;

/* One h2c connection (driver only). */
typedef struct kvc_grpc_conn {
    struct kvc_grpc_conn *next;
    kvc_h2_conn_t *h;
    struct kvc_grpc_backend *be; /* the backend it is current for; NULL once retired */
    int dirty;                   /* streams submitted or reset since the last flush */
    int unwatched;               /* idle and not polled since: may hold an unread close */
    int slot;                    /* its index in the round's wait set, or -1 */
} kvc_grpc_conn_t;

/* What the driver knows about one plain-HTTP backend. */
typedef struct kvc_grpc_backend {
    struct kvc_grpc_backend *next;
    char *key;                 /* base URL */
    kvc_grpc_conn_t *conn;     /* the connection new calls go to, or NULL */
    kvc_grpc_rpc_t *held_head; /* calls waiting for it to open or for a free stream */
    kvc_grpc_rpc_t *held_tail;
    int64_t last_ms; /* a stream last started or ended */
} kvc_grpc_backend_t;

struct kvc_grpc_client {
    kvc_grpc_opts_t opts;
    char *ca_file;
    CURLM *multi;
    pthread_mutex_t mu;
    int driving;                /* a caller is running the transfer engine (under mu) */
    int callers;                /* calls inside kvc_grpc_call (under mu) */
    pthread_cond_t idle;        /* signalled when callers drops to 0 */
    kvc_grpc_rpc_t *queue_head; /* submitted, not yet routed (under mu) */
    kvc_grpc_rpc_t *queue_tail;
    int stopping;              /* under mu */
    kvc_grpc_rpc_t *active;    /* https: added to multi; driver only */
    kvc_grpc_rpc_t *h2_active; /* h2c: streams in flight; driver only */
    kvc_grpc_rpc_t *finished;  /* h2c: streams closed, not yet handled; driver only */
    kvc_grpc_conn_t *conns;    /* h2c connections, retired ones too; driver only */
    int n_conns;
    kvc_grpc_backend_t *backends; /* driver only */
    int n_backends;
    struct curl_waitfd *w; /* the round's wait set; driver only */
    size_t w_cap;
    kvc_grpc_stats_t stats;          /* under mu */
    CURL *spare[KVC_GRPC_SPARE_MAX]; /* reset easy handles for the next calls (under mu) */
    int n_spare;
    int verbose;     /* KVC_GRPC_VERBOSE, read once */
    int owned;       /* a loop thread drives for good (kvc_grpc_client_own; under mu) */
    pthread_t owner; /* that thread */
    int ended;       /* calls ended in the current engine round (driver only) */
    struct kvc_grpc_ext *ext_ready; /* fibers' outside waits that ended (under mu) */
};

/* ---- grpc_channel.c, for grpc_client.c (driver only unless said) ---------- */

/* Milliseconds on the monotonic clock. */
int64_t kvc_grpc_now_ms(void);

/* Marks a call finished with code (cancelled: the client stopped under it)
 * and wakes its caller, or makes its fiber ready; takes the client mutex.
 * Every ending goes through here, once per call. */
void kvc_grpc_rpc_complete(kvc_grpc_client_t *self, kvc_grpc_rpc_t *call, CURLcode code,
                           int cancelled);

/* Routes a call to its transport: a stream on its backend's h2c connection
 * (or the backend's queue), or a libcurl transfer for https. */
void kvc_grpc_channel_dispatch(kvc_grpc_client_t *self, kvc_grpc_rpc_t *call);

/* Moves the libcurl transfers and ends (or retries) those that finished. */
void kvc_grpc_channel_perform(kvc_grpc_client_t *self);

/* After h2c connections moved: ends late calls, ends or retries calls whose
 * streams closed, routes waiting calls, flushes, frees retired idle
 * connections. */
void kvc_grpc_channel_settle(kvc_grpc_client_t *self);

/* Waits once on every connection and extra/n_extra (revents filled in) for
 * at most wait_ms or the next deadline, then moves and settles the h2c
 * connections. Returns how many descriptors were ready (0: none, or no
 * memory for the wait set, tried again next round). */
int kvc_grpc_channel_wait(kvc_grpc_client_t *self, struct curl_waitfd *extra, unsigned n_extra,
                          int wait_ms);

/* Ends every call the channel holds, CANCELLED (the client is stopping). */
void kvc_grpc_channel_stop(kvc_grpc_client_t *self);

/* Ends the calls made with flag that wait for a connection or are in
 * flight (streams reset); returns how many. */
int kvc_grpc_channel_cancel(kvc_grpc_client_t *self, const atomic_int *flag);

/* Frees connections, backend records, spare easy handles and the wait set
 * (destroy; no call left, multi handle already cleaned up). */
void kvc_grpc_channel_free(kvc_grpc_client_t *self);

/* Sets a call's outcome to CANCELLED with KVC_GRPC_CANCEL_MSG. */
void kvc_grpc_rpc_mark_cancelled(kvc_grpc_rpc_t *c);

/* Unlinks from the singly linked list head..tail every call made with
 * flag; returns them linked by next (the caller ends them). */
kvc_grpc_rpc_t *kvc_grpc_rpc_unlink_flagged(kvc_grpc_rpc_t **head, kvc_grpc_rpc_t **tail,
                                            const atomic_int *flag);

/* Ends each call of a list from kvc_grpc_rpc_unlink_flagged, CANCELLED;
 * returns how many. */
int kvc_grpc_rpc_cancel_unstarted(kvc_grpc_client_t *self, kvc_grpc_rpc_t *gone);

/* ---- https on libcurl, for kvc_grpc_call (the caller's thread) ------------ */

/* The request header list of an https call; NULL on allocation failure.
 * The caller frees it with curl_slist_free_all after the call. */
struct curl_slist *kvc_grpc_https_headers(kvc_grpc_client_t *self, uint32_t timeout_ms);

/* An easy handle for a call: a spare one (already reset) or a new one;
 * NULL when none can be made. Under mu inside. */
CURL *kvc_grpc_easy_take(kvc_grpc_client_t *self);

/* Configures call->easy for url with headers (both borrowed for the call);
 * KVC_EINVAL when libcurl refuses an option. */
int kvc_grpc_easy_setup(kvc_grpc_client_t *self, kvc_grpc_rpc_t *call, const char *url,
                        struct curl_slist *headers);

/* Gives back an easy handle no longer in the multi: reset and kept for the
 * next call, or freed when enough are kept. NULL is a no-op. */
void kvc_grpc_easy_give(kvc_grpc_client_t *self, CURL *e);

#endif
