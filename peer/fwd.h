/*
 * fwd.h - the authenticated peer-to-peer transport that forwards whole HTTP
 * inference requests to a peer of another site (issue 18, point 2).
 *
 * The link uses the identities of gossip: CurveZMQ with each peer's
 * Curve25519 keypair, and in every request the sender's federation
 * credential, which must verify against the federation key and name the
 * connection's CURVE key (the User-Id the ZAP handler of zap.h records).
 * A verified (key, credential) pair is cached, so a steady stream costs a
 * hash and a memcmp per request, not an Ed25519 verify; validity and
 * revocation are still checked on every request.
 *
 * Server: one thread owns the ROUTER and does decode + authentication;
 * `workers` threads run the handler and hand replies back through inproc
 * PUSH sockets (a ZeroMQ socket is never shared between threads).
 * Client: one I/O thread owns one DEALER per destination; callers on any
 * thread submit (the request is encoded on the caller's thread) and are
 * told the outcome exactly once, on the I/O thread.
 *
 * The wire format is proto/forward.proto; no protobuf type appears here.
 * Nothing in this module logs a credential or a body.
 */
#ifndef KVC_FWD_H
#define KVC_FWD_H

#include "base.h"
#include "wire.h"

#include <stddef.h>
#include <stdint.h>

#define KVC_FWD_VERSION 1
#define KVC_FWD_MAX_BODY_DEFAULT (64u << 20)     /* request/reply body, bytes */
#define KVC_FWD_ENDPOINT_MAX 256                 /* "tcp://host:port", "ipc://path" */
#define KVC_FWD_TIMEOUT_MAX_MS (10u * 60 * 1000) /* longest timeout a request may ask */
#define KVC_FWD_MEMBER_MAX 128                   /* "site/name" + NUL (2 * KVC_NAME_MAX) */

/* Outcome of a forwarded request (kvc_fwd_resp_t.code). 0..5 travel on the
 * wire (ForwardReply.code); UNREACHABLE is the client's own. */
enum {
    KVC_FWD_OK = 0,              /* answered: status/body are the remote proxy's */
    KVC_FWD_UNAUTHENTICATED = 1, /* the server refused our key or credential */
    KVC_FWD_MALFORMED = 2,       /* the request (or the reply) did not decode or pass checks */
    KVC_FWD_OVERLOADED = 3,      /* the server's queue was full */
    KVC_FWD_TIMEOUT = 4,         /* no answer in time (server queue or client deadline) */
    KVC_FWD_SHUTDOWN = 5,        /* the server or the client is shutting down */
    KVC_FWD_UNREACHABLE = 6,     /* client: cannot send to that destination */
};

/* Returns the stable snake_case name of a code ("ok", "unauthenticated", ...). */
const char *kvc_fwd_code_name(int code);

/* A request. Strings may be NULL (absent); on the wire absent and "" are the
 * same, so a decoded empty string is NULL. Every pointer is borrowed. */
typedef struct {
    const char *method, *path, *content_type, *accept, *inference_header_length, *constraint;
    const uint8_t *body;
    size_t body_len;
    uint32_t timeout_ms; /* filled by the client from submit's timeout */
    uint32_t hops;       /* passed through; policy is the caller's */
} kvc_fwd_req_t;

/* A response. body is kvc_malloc'd and owned by whoever holds the struct
 * (see each function); kvc_fwd_resp_clear frees it. */
typedef struct {
    int code;   /* KVC_FWD_* */
    int status; /* HTTP status (code KVC_FWD_OK) */
    char content_type[96];
    uint8_t *body;
    size_t body_len;
    char header_name[64], header_value[64]; /* one extra header, "" = none */
    char error[256];                        /* short reason when code != 0 */
    int call_class;                         /* code OK: a kvc_call_class_t (0..4) */
    char served_by[64];                     /* code OK: the answering site, "" unknown */
} kvc_fwd_resp_t;

/* Frees resp->body and zeroes *resp. */
void kvc_fwd_resp_clear(kvc_fwd_resp_t *resp);

/* --- codec and checks (pure: no sockets, threads or clocks) --------------
 * Exposed for the server, the client, the fuzzer and kvc_intruder. */

/*
 * Encodes a ForwardRequest with credential blob (cred_len <= KVC_CRED_BLOB_MAX)
 * and id into a new buffer (*out, free with kvc_free). Strings longer than
 * the server accepts, or holding control characters, are KVC_EINVAL; a body
 * over max_body KVC_ERANGE; KVC_ENOMEM.
 */
int kvc_fwd_request_encode(const uint8_t *cred, size_t cred_len, uint64_t id,
                           const kvc_fwd_req_t *req, size_t max_body, uint8_t **out, size_t *len);

/* A decoded request; req's pointers stay valid until kvc_fwd_decoded_free. */
typedef struct {
    kvc_fwd_req_t req;
    uint64_t id;
    const uint8_t *credential; /* NULL when absent */
    size_t credential_len;
    void *pb; /* private: the unpacked message */
} kvc_fwd_decoded_t;

/*
 * Decodes and checks len bytes from the network: version 1, every string
 * bounded and free of control characters, credential <= KVC_CRED_BLOB_MAX,
 * body <= max_body, timeout <= KVC_FWD_TIMEOUT_MAX_MS. Returns 0 and fills
 * out; or KVC_EPARSE (not a ForwardRequest: *id_known = 0) or KVC_EINVAL
 * (decoded but refused: *id_known = 1, out->id is its id so the sender can be
 * told), or KVC_ENOMEM. On failure out holds nothing to free. Never trusts
 * any length in the input.
 */
int kvc_fwd_request_decode(const uint8_t *data, size_t len, size_t max_body, kvc_fwd_decoded_t *out,
                           int *id_known);

/* Frees what kvc_fwd_request_decode allocated; safe on a zeroed struct. */
void kvc_fwd_decoded_free(kvc_fwd_decoded_t *d);

/* Encodes a ForwardReply for id from resp (code 0..5) into a new buffer (*out,
 * free with kvc_free). KVC_ERANGE if the body is over max_body, KVC_EINVAL for
 * a code that does not travel, KVC_ENOMEM. */
int kvc_fwd_reply_encode(uint64_t id, const kvc_fwd_resp_t *resp, size_t max_body, uint8_t **out,
                         size_t *len);

/*
 * Decodes a ForwardReply from the network into *out (zeroed first; the
 * caller owns out->body then, even on failure it holds nothing). Checks
 * code <= 5, status in [0, 999], body <= max_body, content type and header
 * fit their fields without control characters; the error text is cut to
 * fit. Returns 0, KVC_EPARSE, KVC_EINVAL or KVC_ENOMEM.
 */
int kvc_fwd_reply_decode(const uint8_t *data, size_t len, size_t max_body, uint64_t *id,
                         kvc_fwd_resp_t *out);

/* The bounded cache of verified (CURVE key, credential) pairs. */
typedef struct kvc_fwd_auth kvc_fwd_auth_t;

/* A cache of `capacity` entries (rounded up to a multiple of 4; 0 = 1024)
 * checking credentials against the federation key trust. NULL on ENOMEM. */
kvc_fwd_auth_t *kvc_fwd_auth_new(const uint8_t trust[32], size_t capacity);
void kvc_fwd_auth_destroy(kvc_fwd_auth_t **self_p);

/*
 * Authenticates one request: cred (may be NULL/0) must verify against the
 * trust key at now_s and name `key` (the connection's User-Id) as its
 * curve_public; not_before/not_after are checked at now_s every time, and
 * revoked (may be NULL) is asked every time. Returns 0 and writes the member
 * id "site/name" into member, or
 * KVC_EPERM with *why set. A cache hit costs one hash and one memcmp; a miss
 * one kvc_cred_verify, then the result is kept (evicting the oldest of its
 * set of 4). Not thread-safe: one thread owns an auth cache.
 */
int kvc_fwd_auth_check(kvc_fwd_auth_t *self, const uint8_t key[32], const uint8_t *cred,
                       size_t cred_len, int64_t now_s,
                       int (*revoked)(void *arg, const uint8_t key[32]), void *arg,
                       char member[KVC_FWD_MEMBER_MAX], kvc_reject_t *why);

/* Ed25519 verifies performed so far (cache misses that reached verify). */
uint64_t kvc_fwd_auth_verifies(const kvc_fwd_auth_t *self);

/* --- server ---------------------------------------------------------------- */

typedef struct kvc_fwd_server kvc_fwd_server_t;

/*
 * Runs on a worker thread for each authenticated request. member_id is the
 * client's verified "site/name". req and its strings are valid only during
 * the call. Fill resp (zeroed, code KVC_FWD_OK): status, content_type, a
 * kvc_malloc'd body (the server frees it), one header, or a non-zero code
 * with error. Must be thread-safe when workers > 1.
 */
typedef void (*kvc_fwd_handle_fn)(void *arg, const char *member_id, const kvc_fwd_req_t *req,
                                  kvc_fwd_resp_t *resp);

/* An accepted request held by a dispatcher (driven mode, below). */
typedef struct s_job kvc_fwd_job_t;

/*
 * Driven mode: offered each authenticated request on the driving thread,
 * with the client's member id and the request (valid until the job is
 * answered). Returns 1 to take it, and then answers it exactly once with
 * kvc_fwd_server_answer on the driving thread; 0 leaves it to the workers.
 */
typedef int (*kvc_fwd_dispatch_fn)(void *arg, kvc_fwd_job_t *job, const char *member_id,
                                   const kvc_fwd_req_t *req);

typedef struct {
    const char *bind;       /* tcp://127.0.0.1:0, tcp://0.0.0.0:0, ipc://PATH */
    uint8_t public_key[32]; /* own CURVE keypair */
    uint8_t secret_key[32];
    uint8_t trust[32];                                /* federation CA public key (Ed25519) */
    int (*revoked)(void *arg, const uint8_t key[32]); /* thread-safe; NULL = none */
    void *revoked_arg;
    kvc_fwd_handle_fn handle;
    void *handle_arg;
    int workers;              /* 0 = 4 */
    size_t max_request_bytes; /* body bound, 0 = KVC_FWD_MAX_BODY_DEFAULT; the socket's
                                 ZMQ_MAXMSGSIZE is this plus 64 KiB for the other fields */
    size_t max_queued;        /* 0 = 256; beyond it requests are answered OVERLOADED */
    size_t auth_cache;        /* 0 = 1024 entries */
    /* 1: no server thread of its own. Another thread's loop (the HTTP
     * loop, which also runs the model server calls) polls the descriptors
     * of kvc_fwd_server_fds and calls kvc_fwd_server_pump at every turn;
     * from its first pump it alone touches the server's sockets, until it
     * stops pumping (before destroy). A request dispatch takes is answered
     * on that thread with no thread switch; the rest go to the workers. */
    int driven;
    kvc_fwd_dispatch_fn dispatch; /* driven mode only; NULL: all to workers */
} kvc_fwd_server_opts_t;

/* Counters, all since kvc_fwd_server_new. */
typedef struct {
    uint64_t requests;                   /* frames received */
    uint64_t answered;                   /* replies from the handler */
    uint64_t refused[KVC_REJECT__COUNT]; /* unauthenticated, by reason */
    uint64_t unauthenticated;            /* sum of refused */
    uint64_t malformed;                  /* did not decode or pass checks */
    uint64_t overloaded;                 /* queue full */
    uint64_t expired;                    /* waited longer than its timeout; not run */
    uint64_t shutdown;                   /* answered SHUTDOWN while stopping */
    uint64_t send_failed;                /* reply could not be sent (client gone, HWM) */
    uint64_t verifies;                   /* Ed25519 verifies (auth cache misses) */
} kvc_fwd_server_stats_t;

/*
 * Binds o->bind as a CURVE server (ZAP domain "kvc": the process's ZAP
 * handler must be bound, zap.h) and starts the server thread and workers.
 * opts is copied. NULL with err set on a bad option, a bind failure or
 * ENOMEM.
 */
kvc_fwd_server_t *kvc_fwd_server_new(const kvc_fwd_server_opts_t *o, kvc_err_t *err);

/* The bound endpoint with its real port ("tcp://127.0.0.1:40123"); valid
 * until destroy. */
const char *kvc_fwd_server_endpoint(const kvc_fwd_server_t *self);

/* Driven mode: the two descriptors to poll for reading (ZeroMQ's: they
 * say "look", pump then reads until nothing is left). */
void kvc_fwd_server_fds(const kvc_fwd_server_t *self, int fds[2]);

/* Driven mode, on the driving thread: sends the workers' replies, takes
 * requests (offering each to dispatch). Returns 1 when it stopped at its
 * batch bound with more waiting (pump again without waiting), else 0. */
int kvc_fwd_server_pump(kvc_fwd_server_t *self);

/* Driven mode, on the driving thread: answers a job dispatch took with
 * resp (as a worker would: the body is the server's to free) and frees it. */
void kvc_fwd_server_answer(kvc_fwd_server_t *self, kvc_fwd_job_t *job, kvc_fwd_resp_t *resp);

/* Copies the counters (thread-safe). */
void kvc_fwd_server_stats(kvc_fwd_server_t *self, kvc_fwd_server_stats_t *out);

/* Stops accepting, answers queued requests SHUTDOWN, lets running handlers
 * finish and sends their replies, joins every thread, frees; nulls *self_p. */
void kvc_fwd_server_destroy(kvc_fwd_server_t **self_p);

/* --- client ---------------------------------------------------------------- */

typedef struct kvc_fwd_client kvc_fwd_client_t;

typedef struct {
    uint8_t public_key[32]; /* own CURVE keypair */
    uint8_t secret_key[32];
    const uint8_t *credential; /* own serialised credential (copied) */
    size_t credential_len;     /* <= KVC_CRED_BLOB_MAX */
    size_t max_inflight;       /* 0 = 1024, at most 65536 */
    size_t max_reply_bytes;    /* reply body bound, 0 = KVC_FWD_MAX_BODY_DEFAULT */
    size_t max_destinations;   /* 0 = 256 open DEALERs; idle ones close after idle_ms */
    uint32_t idle_ms;          /* 0 = 60000 */
    /* 1: no I/O thread of its own. Another thread's loop (the HTTP loop)
     * polls the descriptors of kvc_fwd_client_fds and calls
     * kvc_fwd_client_pump at every turn; done callbacks then run on that
     * thread, and a request submitted from it (a fiber) costs no thread
     * switch. Submitting from other threads works as before. */
    int driven;
} kvc_fwd_client_opts_t;

/*
 * Told the outcome of one submitted request, exactly once, on the client's
 * I/O thread (driven mode: the driver's). resp is valid only during the call; to keep the body, take it
 * (keep resp->body and set resp->body = NULL; free it with kvc_free). Must
 * not block for long (it delays every other request of the client) and must
 * not call kvc_fwd_client_call or kvc_fwd_client_destroy; it may submit.
 */
typedef void (*kvc_fwd_done_fn)(void *arg, kvc_fwd_resp_t *resp);

typedef struct {
    uint64_t submitted, answered; /* answered: any reply from a server */
    uint64_t timeouts, unreachable, shutdown;
    uint64_t late;      /* replies for a request already timed out (ignored) */
    uint64_t bad_reply; /* replies that did not decode or came from the wrong server */
} kvc_fwd_client_stats_t;

/* Starts the I/O thread. opts is copied. NULL with err on a bad option or
 * ENOMEM. */
kvc_fwd_client_t *kvc_fwd_client_new(const kvc_fwd_client_opts_t *o, kvc_err_t *err);

/*
 * Sends req to the server at endpoint whose CURVE public key is server_key,
 * without blocking; thread-safe. The request is encoded (copied) before
 * return. On success (0) done is called exactly once: KVC_FWD_OK or a
 * server's refusal code, KVC_FWD_TIMEOUT when no reply came within
 * timeout_ms (1..KVC_FWD_TIMEOUT_MAX_MS), KVC_FWD_UNREACHABLE when the
 * destination cannot be used, KVC_FWD_SHUTDOWN on destroy. On error done is
 * never called: KVC_EINVAL (bad endpoint, timeout or request), KVC_EAGAIN
 * (max_inflight requests pending), KVC_ESTATE (the client is being
 * destroyed), KVC_ENOMEM.
 */
int kvc_fwd_client_submit(kvc_fwd_client_t *self, const char *endpoint,
                          const uint8_t server_key[32], const kvc_fwd_req_t *req,
                          uint32_t timeout_ms, kvc_fwd_done_fn done, void *arg);

/* Blocking kvc_fwd_client_submit: waits for the outcome and moves it into
 * *out (the caller then owns out->body: kvc_fwd_resp_clear). Returns 0 or
 * submit's error (out then has code KVC_FWD_UNREACHABLE and the reason).
 * Never call it from a done callback, nor in driven mode on the driver. */
int kvc_fwd_client_call(kvc_fwd_client_t *self, const char *endpoint, const uint8_t server_key[32],
                        const kvc_fwd_req_t *req, uint32_t timeout_ms, kvc_fwd_resp_t *out);

/* Copies the counters (thread-safe). */
void kvc_fwd_client_stats(kvc_fwd_client_t *self, kvc_fwd_client_stats_t *out);

/* Driven mode: the two descriptors to poll for reading (submissions from
 * other threads; an epoll set of the DEALERs). */
void kvc_fwd_client_fds(const kvc_fwd_client_t *self, int fds[2]);

/* Driven mode, on the driving thread: reads replies (calling done), sends
 * what was submitted, ends requests past their deadline. Returns the
 * longest the driver may wait before the next pump in ms (-1: until a
 * descriptor is readable; 0: at once). */
int kvc_fwd_client_pump(kvc_fwd_client_t *self);

/* Completes every pending request with KVC_FWD_SHUTDOWN (done still runs on
 * the I/O thread; in driven mode, once the driver has stopped, on the
 * caller's), joins it, closes every DEALER, frees; nulls *self_p. */
void kvc_fwd_client_destroy(kvc_fwd_client_t **self_p);

#endif
