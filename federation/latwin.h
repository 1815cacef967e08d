/*
 * latwin.h - per-model request statistics over a sliding time window: the
 * latency quantiles, ok/failed counts and in-flight count that a peer
 * publishes in its health report (health.h) and the router scores.
 *
 * A plain value with no allocation and no clock: the caller passes its
 * monotonic milliseconds and does the locking (the proxy updates one
 * window per model from many threads under its own mutex).
 *
 * The window is KVC_LATWIN_SLOTS time slots of window_ms / KVC_LATWIN_SLOTS
 * each; a query at now counts the slot now falls in and the nine before it,
 * so a sample stays in the window for between 0.9 and 1.0 window_ms and
 * ages out whole slots at a time. Each slot holds a histogram of
 * KVC_LATWIN_BUCKETS log-scale buckets covering [10 us, 100 s): bucket i
 * holds [10 * r^i, 10 * r^(i+1)) us with r = 10^(7/64) ~ 1.2863; samples
 * below 10 us fall in bucket 0 and at or above 100 s in the last. A
 * quantile is the geometric middle of its bucket, clamped to the smallest
 * and largest sample in the window, so for latencies in [10 us, 100 s) the
 * answer is within a factor sqrt(r) ~ 1.134 of a sample of that rank:
 * relative error at most 13.5% (outside that range only the clamp to the
 * exact min and max bounds it). Counts are 64-bit; latencies above
 * INT64_MAX are kept as INT64_MAX.
 *
 * Only successful requests are timed; failed ones are counted, not timed:
 * a backend that refuses at once would otherwise look fast, and slow
 * failures are the circuit breaker's business.
 *
 * Size: about 5.6 KiB per window.
 */
#ifndef KVC_LATWIN_H
#define KVC_LATWIN_H

#include <stddef.h>
#include <stdint.h>

#include "base.h"

#define KVC_LATWIN_SLOTS 10
#define KVC_LATWIN_BUCKETS 64
#define KVC_LATWIN_DEFAULT_MS 10000
#define KVC_LATWIN_MIN_US 10          /* lower edge of bucket 1 .. */
#define KVC_LATWIN_MAX_US 100000000LL /* .. upper edge of the last but one */

/* One time slot; fields are private to latwin.c. */
typedef struct {
    uint64_t index; /* now_ms / slot_ms of its samples; UINT64_MAX empty */
    uint64_t ok, fail;
    int64_t min_us, max_us; /* of the timed samples */
    uint64_t hist[KVC_LATWIN_BUCKETS];
} kvc_latwin_slot_t;

/* The window: a plain value the caller owns (embed it, copy it, no free). */
typedef struct {
    uint32_t window_ms;
    uint32_t slot_ms;
    uint32_t in_flight;
    kvc_latwin_slot_t slots[KVC_LATWIN_SLOTS];
} kvc_latwin_t;

/* Empties *w with a window of window_ms (0: KVC_LATWIN_DEFAULT_MS).
 * KVC_EINVAL for a NULL w or a window under KVC_LATWIN_SLOTS ms (w is
 * then set up with the default). */
int kvc_latwin_init(kvc_latwin_t *w, uint32_t window_ms);

/* A request started: in_flight + 1 (saturates at UINT32_MAX). */
void kvc_latwin_begin(kvc_latwin_t *w);

/* A request that began ended at now_ms after latency_us: in_flight - 1
 * (never below 0), counted as ok or failed; an ok one is timed. */
void kvc_latwin_end(kvc_latwin_t *w, uint64_t now_ms, uint64_t latency_us, int ok);

/* The q-quantile (q in [0, 1]; q <= 0 the minimum, q >= 1 the maximum,
 * NaN as 0) of the ok latencies in the window at now_ms, in microseconds;
 * -1 when the window holds none. */
int64_t kvc_latwin_quantile(const kvc_latwin_t *w, uint64_t now_ms, double q);

/* Requests begun and not yet ended. */
uint32_t kvc_latwin_in_flight(const kvc_latwin_t *w);

/* Requests that ended ok and failed in the window at now_ms (either
 * pointer may be NULL). */
void kvc_latwin_counts(const kvc_latwin_t *w, uint64_t now_ms, uint64_t *ok, uint64_t *fail);

#endif
