/*
 * grpc_client.h - a unary gRPC client over HTTP/2.
 *
 * The proxy calls model servers (TF Serving, KServe v2) with this. One
 * client is driven by its callers in turn, or for good by an event loop
 * that owns it (see grpc_client.c); any number of threads may call
 * kvc_grpc_call() at once, and their requests are multiplexed as HTTP/2
 * streams over one connection per backend.
 *
 * Wire: POST base_url + path with `content-type: application/grpc`,
 * `te: trailers` and `grpc-timeout`; the body is one message framed with
 * the 5-byte gRPC prefix. The status comes from the grpc-status and
 * grpc-message trailers, or from the headers of a trailers-only answer.
 *
 * Transports: `http://` (the usual in-cluster model server) is HTTP/2 with
 * prior knowledge (h2c) on kvc's own connection code over nghttp2
 * (h2_conn.h): a call is one write and, answered in one segment, one read.
 * `https://` goes through libcurl, which negotiates h2 by ALPN and does
 * the TLS. libcurl served both once; the proxy's overhead on a small
 * request was +192 us p50 through it and is +136 us this way (README,
 * Performance).
 *
 * KVC_GRPC_VERBOSE=1 in the environment turns on libcurl's trace for
 * https calls (headers only, never bodies) for debugging.
 *
 * The framing, header parsing and status mappings are pure functions in
 * grpc_wire.h (included here, so callers need only this header). This
 * module never logs request or response bodies and never trusts a length
 * it has not bounded.
 */
#ifndef KVC_GRPC_CLIENT_H
#define KVC_GRPC_CLIENT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "grpc_wire.h"

/* Default bound on one response message: 64 MiB. */
#define KVC_GRPC_DEFAULT_MAX_MESSAGE (64u * 1024u * 1024u)

/* Client options; zero-filled fields take the defaults shown. */
typedef struct {
    size_t max_message_size;     /* response bound; 0 -> 64 MiB */
    uint32_t connect_timeout_ms; /* 0 -> 5000 */
    uint32_t max_streams;        /* concurrent streams per connection; 0 -> 100 */
    int accept_identity;         /* send `grpc-accept-encoding: identity` */
    const char *ca_file;         /* https: CA bundle; NULL -> system store.
                                    Copied by kvc_grpc_client_new. */
    int tls_insecure;            /* https: skip certificate checks (tests) */
    uint32_t idle_reopen_ms;     /* a backend idle this long gets a new connection
                                    (a middlebox may drop an idle one silently); 0 -> 100000 */
    int retry_lost;              /* make a call again (at most 3 transfers in all)
                                    when it was lost with its connection, as after a
                                    server's GOAWAY: only for methods safe to repeat */
} kvc_grpc_opts_t;

/*
 * The outcome of one call. `code` is the gRPC status (local failures are
 * mapped: no connection -> UNAVAILABLE, local deadline -> DEADLINE_EXCEEDED,
 * response over the bound -> RESOURCE_EXHAUSTED). `data`/`len` hold the
 * response message when code is OK (data may be non-NULL with len 0); the
 * result owns data until kvc_grpc_result_free().
 */
typedef struct {
    int code;
    char message[KVC_GRPC_MSG_MAX]; /* percent-decoded grpc-message or local reason */
    uint8_t *data;
    size_t len;
    long http_status; /* 0 when no response arrived */
} kvc_grpc_result_t;

/* Counters since the client was created. */
typedef struct {
    uint64_t calls;       /* calls submitted */
    uint64_t failures;    /* calls that ended with a code other than OK */
    uint64_t connections; /* connections opened (h2c, and libcurl's for https) */
    uint64_t retried;     /* calls cut off with their connection and made again */
} kvc_grpc_stats_t;

typedef struct kvc_grpc_client kvc_grpc_client_t;

/* Creates a client; NULL on failure (no memory, libcurl without HTTP/2).
 * opts may be NULL. */
kvc_grpc_client_t *kvc_grpc_client_new(const kvc_grpc_opts_t *opts);

/* Cancels what is still in flight (its callers get CANCELLED), waits for
 * them to return, and frees the client; sets *self_p to NULL. No call may
 * start during destroy. */
void kvc_grpc_client_destroy(kvc_grpc_client_t **self_p);

/*
 * Makes one unary call and blocks until it ends; thread-safe.
 * base_url is "http://host:port" or "https://host:port" (no trailing path),
 * path is "/package.Service/Method"; req/len is the serialized request
 * (borrowed for the duration of the call). timeout_ms (> 0) is both the
 * local deadline and the grpc-timeout sent to the server. res is always
 * filled (free it with kvc_grpc_result_free, even on failure).
 * Returns 0 when res->code is OK; KVC_EINVAL for bad arguments; otherwise
 * the KVC_E* code closest to res->code (kvc_grpc_code_to_err).
 */
int kvc_grpc_call(kvc_grpc_client_t *self, const char *base_url, const char *path,
                  const uint8_t *req, size_t len, uint32_t timeout_ms, kvc_grpc_result_t *res);

/*
 * Event-loop use. kvc_grpc_client_own makes the calling thread the client's
 * driver for good (after a caller driving now hands over): from then on
 * only that thread runs the transfer engine, one round per
 * kvc_grpc_client_run. A kvc_grpc_call made inside a fiber on that thread
 * yields (see fiber.h) and its fiber is made ready when the call ends; a
 * call from any other thread blocks as usual while the loop drives it.
 *
 * kvc_grpc_client_run (owner only): starts queued calls, moves transfers,
 * ends finished calls, then, unless a call ended, waits up to wait_ms for
 * network activity, a call from another thread, or one of fds (at most 8)
 * turning readable; revents (NULL, or n entries) tells which did (POLLIN
 * and the like; all 0 when the round did not wait). kvc_grpc_client_disown hands driving back to
 * the callers (leader/followers); the owner must call it before it stops running rounds, with no
 * fiber's call in flight, and before destroy.
 */
void kvc_grpc_client_own(kvc_grpc_client_t *self);
void kvc_grpc_client_run(kvc_grpc_client_t *self, const int *fds, short *revents, size_t n,
                         int wait_ms);
void kvc_grpc_client_disown(kvc_grpc_client_t *self);

/*
 * Waiting on something outside the client (a call forwarded to another
 * peer) without holding the owner's loop up. A waiter inits a
 * kvc_grpc_ext_t and calls kvc_grpc_ext_wait: inside a fiber on the
 * owner's thread it yields until kvc_grpc_ext_done is called (the loop
 * makes the fiber ready in its next round); anywhere else it blocks on a
 * condition variable. kvc_grpc_ext_done may be called from any thread,
 * exactly once, before or after the wait starts. Destroy after the wait
 * returned.
 */
typedef struct kvc_grpc_ext {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int done;
    struct kvc_fiber *fiber;        /* set by a fiber's wait */
    struct kvc_grpc_ext *next_ready; /* the client's list (under its mutex) */
} kvc_grpc_ext_t;

void kvc_grpc_ext_init(kvc_grpc_ext_t *w);
void kvc_grpc_ext_wait(kvc_grpc_client_t *self, kvc_grpc_ext_t *w);
void kvc_grpc_ext_done(kvc_grpc_client_t *self, kvc_grpc_ext_t *w);
void kvc_grpc_ext_destroy(kvc_grpc_ext_t *w);

/*
 * Cancellation. A caller names a flag that, once nonzero, asks its calls to
 * end: kvc_grpc_cancel_flag_set sets the calling context's flag (the
 * running fiber's, else this thread's; NULL: none; the flag must outlive
 * the calls made meanwhile) and returns the one it replaces, so a call
 * that serves others too can be made with none and the flag put back. A
 * call made with the flag raised ends at once with CANCELLED. kvc_grpc_client_cancel (owner only,
 * after raising the flag) ends every call made with that flag with
 * CANCELLED ("cancelled: the caller went away"), resetting the HTTP/2
 * streams of those in flight so the server learns of it; their callers
 * resume as for any other ending. Returns how many calls it ended, or -1
 * when the calling thread does not own the client.
 */
const atomic_int *kvc_grpc_cancel_flag_set(const atomic_int *flag);
int kvc_grpc_client_cancel(kvc_grpc_client_t *self, const atomic_int *flag);

/* Frees res->data and clears res; safe on a zeroed or already freed res. */
void kvc_grpc_result_free(kvc_grpc_result_t *res);

/* Copies the client's counters into *out. */
void kvc_grpc_client_stats(kvc_grpc_client_t *self, kvc_grpc_stats_t *out);

#endif
