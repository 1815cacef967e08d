/*
 * breaker.h - what the router needs to fail over inside one request: a
 * circuit breaker per backend, the classification of a failed call as
 * retryable or not, and the retry budget check.
 *
 * All of it is sans-IO: time comes in as the caller's monotonic
 * milliseconds, nothing here reads a clock, a socket or a file, or draws a
 * random number. The same code runs in kvc-peer's proxy and in tests/sim.
 *
 * Breaker (one per backend; kvc_router keeps one per site):
 *   CLOSED    requests flow. Every outcome is counted in a sliding window
 *             of window_ms (10 buckets). It opens after open_after_failures
 *             retryable failures in a row, or when the window holds at least
 *             ratio_min_calls calls and failures/calls >= ratio_permille/1000.
 *   OPEN      nothing is sent for the cool-down. The cool-down starts at
 *             cooldown_ms and doubles each time a probe fails, up to
 *             cooldown_max_ms, so a dead backend is probed ever more rarely
 *             while fail back stays bounded by cooldown_max_ms.
 *   HALF_OPEN after the cool-down exactly one call (the probe) is let
 *             through; a probe that reports nothing for probe_timeout_ms is
 *             given up and another may go. Success closes the breaker (and
 *             resets the cool-down to cooldown_ms); failure opens it again.
 * Defaults: 5 in a row, 50% of >= 20 calls in 10 s, cool-down 1 s doubling
 * to 4 s, probe timeout 5 s. With traffic flowing, a recovered backend is
 * back in use within cooldown_max_ms plus one request interval.
 *
 * Classification (kvc_breaker_classify) is a pure table, see below. A call
 * is retried at another site only when the backend failed before it did any
 * work the client could see (connection refused, UNAVAILABLE, deadline at
 * the backend before any output). Bad input and 4xx are never retried and
 * do not count against the backend: it answered.
 */
#ifndef KVC_BREAKER_H
#define KVC_BREAKER_H

#include <stddef.h>
#include <stdint.h>

#include "base.h"

#define KVC_BREAKER_BUCKETS 10

typedef enum {
    KVC_BREAKER_CLOSED = 0,
    KVC_BREAKER_OPEN = 1,
    KVC_BREAKER_HALF_OPEN = 2
} kvc_breaker_state_t;

/* Tuning; all times in milliseconds of the caller's monotonic clock. */
typedef struct {
    uint32_t open_after_failures; /* retryable failures in a row that open it (5) */
    uint32_t window_ms;           /* error-ratio window (10000) */
    uint32_t ratio_min_calls;     /* ratio is judged only on this many calls (20) */
    uint32_t ratio_permille;      /* failures per 1000 calls that open it (500) */
    uint32_t cooldown_ms;         /* first open -> half-open delay (1000) */
    uint32_t cooldown_max_ms;     /* cap of the doubling cool-down (4000) */
    uint32_t probe_timeout_ms;    /* a silent probe is given up after (5000) */
} kvc_breaker_config_t;

/*
 * One breaker: a plain value owned by whoever embeds it (no allocation).
 * Treat the fields as private; use the functions.
 */
typedef struct {
    kvc_breaker_config_t cfg;
    kvc_breaker_state_t state;
    uint32_t consecutive;     /* retryable failures in a row */
    uint32_t cooldown_cur_ms; /* the cool-down of the current open period */
    uint64_t opened_at_ms;
    int probe_out; /* half-open: a probe is in flight */
    uint64_t probe_at_ms;
    uint64_t bucket_start_ms[KVC_BREAKER_BUCKETS];
    uint32_t bucket_calls[KVC_BREAKER_BUCKETS];
    uint32_t bucket_fails[KVC_BREAKER_BUCKETS];
    uint32_t opens; /* times it opened, for metrics */
} kvc_breaker_t;

/* What a finished call means for routing. */
typedef enum {
    KVC_CALL_SUCCESS = 0, /* the backend answered; breaker success */
    KVC_CALL_RETRY = 1,   /* backend failed before any output: retry elsewhere; breaker failure */
    KVC_CALL_FAIL = 2,    /* backend failed, not safe or useless to retry; breaker failure */
    KVC_CALL_REJECT = 3,  /* the request's own fault (bad input, 4xx): never retried;
                           * the backend answered, so breaker success */
    KVC_CALL_ABANDON = 4  /* the client cancelled: neutral, frees a probe slot */
} kvc_call_class_t;

/* How a call to a backend ended, as the transport saw it. */
typedef enum {
    KVC_CALL_E_NONE = 0,      /* the call completed; judge by the gRPC status */
    KVC_CALL_E_REFUSED = 1,   /* connection refused (nothing listening) */
    KVC_CALL_E_CONNECT = 2,   /* connect failed or timed out, no route to host */
    KVC_CALL_E_RESET = 3,     /* connection dropped during the call */
    KVC_CALL_E_TIMEOUT = 4,   /* our deadline for the backend fired */
    KVC_CALL_E_BAD_INPUT = 5, /* request refused before sending (codec, size) */
    KVC_CALL_E_HTTP_4XX = 6,  /* the backend answered with an HTTP 4xx */
    KVC_CALL_E_HTTP_5XX = 7,  /* the backend answered with an HTTP 5xx, no gRPC status */
    KVC_CALL_E_PROTOCOL = 8,  /* the answer was malformed */
    KVC_CALL_E_CANCELLED = 9, /* the client went away */
} kvc_call_error_t;

/* Fills cfg with the defaults above. */
void kvc_breaker_config_default(kvc_breaker_config_t *cfg);
/* Checks ranges (every field > 0, ratio_permille <= 1000, cooldown_ms <=
 * cooldown_max_ms, window_ms >= KVC_BREAKER_BUCKETS); KVC_EINVAL with a
 * message naming the field (err may be NULL). */
int kvc_breaker_config_check(const kvc_breaker_config_t *cfg, kvc_err_t *err);

/* Initialises b closed with cfg (copied; must have passed the check). */
void kvc_breaker_init(kvc_breaker_t *b, const kvc_breaker_config_t *cfg);

/*
 * Asks to send one call at now_ms. Returns 1 if it may go (closed; or the
 * cool-down is over and this call becomes the half-open probe), 0 if not
 * (open, or a probe is already in flight). Every call that was allowed must
 * be followed by kvc_breaker_record with its class.
 */
int kvc_breaker_allow(kvc_breaker_t *b, uint64_t now_ms);
/* Would kvc_breaker_allow say yes at now_ms? Changes nothing. */
int kvc_breaker_would_allow(const kvc_breaker_t *b, uint64_t now_ms);
/* Records the outcome of an allowed call that finished at now_ms. */
void kvc_breaker_record(kvc_breaker_t *b, uint64_t now_ms, kvc_call_class_t cls);
/* The state at now_ms, without changing it: OPEN whose cool-down is over
 * reads as HALF_OPEN (the next allow takes the probe). */
kvc_breaker_state_t kvc_breaker_state(const kvc_breaker_t *b, uint64_t now_ms);
/* Static name of a state ("closed", "open", "half-open"). */
const char *kvc_breaker_state_name(kvc_breaker_state_t st);

/*
 * Classifies a finished call: err from the transport, grpc_status (0-16;
 * read only when err is KVC_CALL_E_NONE; out of range reads as UNKNOWN) and
 * output_sent (nonzero once any part of the answer reached the client, so
 * a retry could show it twice). The table:
 *   E_NONE + OK                                    SUCCESS
 *   E_REFUSED, E_CONNECT                           RETRY (nothing reached the backend)
 *   E_NONE + UNAVAILABLE(14)/RESOURCE_EXHAUSTED(8) RETRY before output, else FAIL
 *   E_NONE + DEADLINE_EXCEEDED(4), E_TIMEOUT       RETRY before output, else FAIL
 *   E_RESET, E_HTTP_5XX                            RETRY before output, else FAIL
 *   E_NONE + NOT_FOUND(5)                          RETRY before output (model absent
 *                                                  here, another site may hold it)
 *   E_NONE + INVALID_ARGUMENT(3), OUT_OF_RANGE(11),
 *     FAILED_PRECONDITION(9), ALREADY_EXISTS(6),
 *     PERMISSION_DENIED(7), UNAUTHENTICATED(16)    REJECT
 *   E_BAD_INPUT, E_HTTP_4XX                        REJECT
 *   E_NONE + CANCELLED(1), E_CANCELLED             ABANDON
 *   E_NONE + UNKNOWN(2), ABORTED(10),
 *     UNIMPLEMENTED(12), INTERNAL(13), DATA_LOSS(15),
 *     E_PROTOCOL                                   FAIL (the backend is broken
 *                                                  for this call; not retried)
 */
kvc_call_class_t kvc_breaker_classify(kvc_call_error_t err, int grpc_status, int output_sent);
/* Static name of a class ("success", "retry", ...). */
const char *kvc_breaker_class_name(kvc_call_class_t cls);

/*
 * The retry budget: returns 1 if a retry at the next site fits in the
 * client's deadline. budget_ms is the client's whole deadline (0 or less:
 * none given, use default_budget_ms), elapsed_ms what this request has used
 * so far, next_cost_ms the next candidate's expected cost (estimated RTT +
 * reported latency, as kvc_router gives it) and margin_ms what to keep in
 * hand for answering. A negative or non-finite next_cost_ms never fits.
 */
int kvc_breaker_retry_fits(int64_t budget_ms, int64_t default_budget_ms, int64_t elapsed_ms,
                           double next_cost_ms, uint32_t margin_ms);

#endif
