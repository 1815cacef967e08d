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
 * The framing and header parsing below are pure functions, exported so the
 * unit tests can check them byte by byte. This module never logs request or
 * response bodies and never trusts a length it has not bounded.
 */
#ifndef KVC_GRPC_CLIENT_H
#define KVC_GRPC_CLIENT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* gRPC status codes, the numbers on the wire. */
typedef enum {
    KVC_GRPC_OK = 0,
    KVC_GRPC_CANCELLED = 1,
    KVC_GRPC_UNKNOWN = 2,
    KVC_GRPC_INVALID_ARGUMENT = 3,
    KVC_GRPC_DEADLINE_EXCEEDED = 4,
    KVC_GRPC_NOT_FOUND = 5,
    KVC_GRPC_ALREADY_EXISTS = 6,
    KVC_GRPC_PERMISSION_DENIED = 7,
    KVC_GRPC_RESOURCE_EXHAUSTED = 8,
    KVC_GRPC_FAILED_PRECONDITION = 9,
    KVC_GRPC_ABORTED = 10,
    KVC_GRPC_OUT_OF_RANGE = 11,
    KVC_GRPC_UNIMPLEMENTED = 12,
    KVC_GRPC_INTERNAL = 13,
    KVC_GRPC_UNAVAILABLE = 14,
    KVC_GRPC_DATA_LOSS = 15,
    KVC_GRPC_UNAUTHENTICATED = 16
} kvc_grpc_code_t;

/* Default bound on one response message: 64 MiB. */
#define KVC_GRPC_DEFAULT_MAX_MESSAGE (64u * 1024u * 1024u)
/* Longest status message kept (longer ones are cut). */
#define KVC_GRPC_MSG_MAX 512

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

/* Static upper-case name of a status ("NOT_FOUND"); "UNKNOWN_CODE" if out
 * of range. */
const char *kvc_grpc_status_name(int code);

/* The KVC_E* error nearest a gRPC status (OK -> 0, NOT_FOUND -> KVC_ENOENT,
 * UNAVAILABLE -> KVC_EUNAVAIL, DEADLINE_EXCEEDED -> KVC_ETIMEDOUT, ...). */
int kvc_grpc_code_to_err(int code);

/* ---- Pure parts, exported for tests ------------------------------------ */

/* Writes the 5-byte prefix of an uncompressed message of len bytes.
 * KVC_ERANGE if len does not fit in 32 bits. */
int kvc_grpc_frame_prefix(uint8_t out[5], size_t len);

/*
 * Incremental reader of the response body of a unary call: exactly one
 * length-prefixed, uncompressed message no bigger than max. Fields are
 * private; use the functions.
 */
typedef struct {
    size_t max;
    uint8_t prefix[5];
    size_t prefix_have;
    uint8_t *msg; /* owned until taken by kvc_grpc_deframer_take */
    size_t msg_len;
    size_t msg_have;
    int in_message; /* 1 while reading a message body */
    int messages;   /* complete messages seen */
} kvc_grpc_deframer_t;

/* Prepares d to read messages of at most max bytes. */
void kvc_grpc_deframer_init(kvc_grpc_deframer_t *d, size_t max);
/* Feeds n bytes. KVC_ERANGE: a message longer than max was announced
 * (nothing is allocated for it); KVC_EPARSE: compressed or bad flag byte,
 * or a second message; KVC_ENOMEM. After an error, d must only be freed. */
int kvc_grpc_deframer_feed(kvc_grpc_deframer_t *d, const uint8_t *p, size_t n);
/* Hands over the one complete message (caller frees *msg with kvc_free;
 * *msg is non-NULL even for an empty message). KVC_ENOENT: no message at
 * all; KVC_EPARSE: the body ended inside a frame. */
int kvc_grpc_deframer_take(kvc_grpc_deframer_t *d, uint8_t **msg, size_t *len);
/* Frees whatever d still holds. */
void kvc_grpc_deframer_free(kvc_grpc_deframer_t *d);

/* What the response headers and trailers said. */
typedef struct {
    long http_status;                    /* 0 until a status line is seen */
    int grpc_status;                     /* -1 until grpc-status is seen */
    int content_type_grpc;               /* 1 if content-type is application/grpc[+...] */
    char grpc_message[KVC_GRPC_MSG_MAX]; /* percent-decoded, NUL-terminated */
} kvc_grpc_headers_t;

/* Resets h to "nothing seen". */
void kvc_grpc_headers_init(kvc_grpc_headers_t *h);
/* Feeds one header or trailer line as libcurl delivers it ("HTTP/2 200\r\n",
 * "grpc-status: 5\r\n", ...). Unknown headers are ignored; a malformed or
 * out-of-range grpc-status becomes UNKNOWN. Never fails. */
void kvc_grpc_headers_feed(kvc_grpc_headers_t *h, const char *line, size_t n);

/* Feeds one field by name and value (HTTP/2's form, ":status" included;
 * the value is trimmed of blanks). Never fails. */
void kvc_grpc_headers_field(kvc_grpc_headers_t *h, const char *name, size_t name_len,
                            const char *value, size_t value_len);

/* Percent-decodes n bytes of in into out (cap > 0), always NUL-terminated,
 * cut at cap - 1 bytes; a '%' not followed by two hex digits is kept as is.
 * Returns the number of bytes written (without the NUL). */
size_t kvc_grpc_percent_decode(const char *in, size_t n, char *out, size_t cap);

/* Formats a grpc-timeout value for ms (> 0) into out: "<ms>m" while that
 * fits the 8 digits the spec allows, else whole seconds rounded up ("<s>S").
 * KVC_ERANGE if out is too small. */
int kvc_grpc_timeout_format(uint32_t ms, char *out, size_t cap);

/* The gRPC status for an HTTP status other than 200, per the gRPC spec's
 * mapping (400 -> INTERNAL, 401 -> UNAUTHENTICATED, 403 -> PERMISSION_DENIED,
 * 404 -> UNIMPLEMENTED, 429/502/503/504 -> UNAVAILABLE, else UNKNOWN). */
int kvc_grpc_code_from_http(long http_status);

#endif
