/*
 * router.h - the routing choice for one inference request: which site
 * serves model M, in what order to try the others, and why each site that
 * is not tried was left out. A sans-IO core: the caller hands in the table
 * of candidate sites (from the registry's placement, the gossiped health and
 * capacity, Vivaldi RTT estimates and membership reachability) and the time
 * as monotonic milliseconds; it never reads a clock, a socket or a file and
 * draws no random numbers. kvc-peer's proxy and tests/sim run it unchanged.
 * It does not forward anything: the transport is the caller's.
 *
 * The choice (kvc_router_choose), in tiers:
 *   0. the local site, when it serves M, is ready, its breaker is closed,
 *      it is not saturated and not held down. If its breaker is half-open
 *      (cool-down over) it goes first as the probe: on a retryable failure
 *      the request moves on to the next candidate, on success the breaker
 *      closes and traffic is local again (fail back).
 *   1. other eligible sites, best score first:
 *        score_ms = rtt_ms + latency_ms + load_ms
 *        rtt_ms     Vivaldi estimate (unknown_rtt_ms when there is none)
 *        latency_ms p50 + (p99 - p50) / 4 over the site's short window
 *                   (unknown_latency_ms when not reported)
 *        load_ms    latency_ms * u / (1 - u), u = in_flight / capacity
 *                   (the M/M/1 queueing wait), capped at load_penalty_max_ms;
 *                   0 when capacity is unknown (0).
 *      A site whose breaker is half-open ranks here too (flagged probe): if
 *      it is the best, one request probes it and the rest go on as before.
 *      Hysteresis: the site chosen last time for M stays first unless the
 *      best is better by switch_margin_pct percent (and at least
 *      switch_margin_ms), or has been the better one for switch_hold_ms.
 *   2. sites held down (seen not ready within holddown_ms), still usable
 *      as a last resort.
 *      A site that flaps every tick therefore stays in this tier and never
 *      pulls the choice back and forth.
 * Excluded (never tried), with the first reason that applies:
 *   not placed, constraint unmet, unreachable (partitioned link), not
 *   ready, circuit open, saturated (in_flight >= capacity; it stays
 *   saturated until in_flight <= saturation_low_pct of capacity).
 *
 * Constraint (kvc_router_constraint_parse), from a request header value:
 * comma-separated key=value items, spaces around items allowed:
 *   accelerator=gpu|nvidia|amd|tpu|npu|none   gpu means any GPU kind
 *                    (nvidia or amd); tpu and npu are not GPUs. A site
 *                    with kind K and count 0 has no accelerator.
 *   site=NAME        only that site       region=NAME  only that region
 *   arch=NAME        CPU architecture as reported (x86_64, arm64, ...)
 * Names are [a-z0-9._-]{1,63}, read case-insensitively; each key at most
 * once; at most KVC_ROUTER_CONSTRAINT_MAX bytes; anything else is an error
 * naming the offset and the item.
 *
 * State: per site (breaker, hold-down, saturation latch) and per model (the
 * current choice and a challenger), each in a bounded table; the entry
 * unused longest is forgotten when a table is full. The router is not
 * thread-safe; the caller serialises calls.
 */
#ifndef KVC_ROUTER_H
#define KVC_ROUTER_H

#include <stddef.h>
#include <stdint.h>

#include "base.h"
#include "breaker.h"

#define KVC_ROUTER_NAME_MAX 63        /* site, region, arch names */
#define KVC_ROUTER_MODEL_MAX 128      /* model names */
#define KVC_ROUTER_SITES_MAX 64       /* candidates per choice */
#define KVC_ROUTER_STATE_SITES 256    /* sites the router remembers */
#define KVC_ROUTER_STATE_MODELS 256   /* models the router remembers */
#define KVC_ROUTER_CONSTRAINT_MAX 256 /* bytes of a constraint header */

typedef enum {
    KVC_ACCEL_NONE = 0,
    KVC_ACCEL_NVIDIA = 1, /* a GPU kind */
    KVC_ACCEL_AMD = 2,    /* a GPU kind */
    KVC_ACCEL_TPU = 3,
    KVC_ACCEL_NPU = 4
} kvc_accel_t;

/* One candidate site for model M, as the caller knows it now. The strings
 * are borrowed for the duration of the call only. */
typedef struct {
    const char *site;   /* [a-z0-9._-]{1,63}, unique in the table */
    const char *region; /* NULL or "" = unknown */
    int is_local;       /* this peer's own site (at most one) */
    int placed;         /* the registry places M here */
    int ready;          /* the backend for M is healthy */
    uint32_t in_flight; /* requests in progress */
    uint32_t capacity;  /* in_flight at which it is saturated; 0 = unknown */
    int64_t p50_us;     /* latency over the short window; < 0 = unknown */
    int64_t p99_us;
    const char *arch; /* NULL or "" = unknown */
    kvc_accel_t accel;
    uint32_t accel_count;
    int reachable;  /* membership sees the link up (ignored for local) */
    int64_t rtt_us; /* Vivaldi estimate; < 0 = unknown (ignored for local) */
} kvc_router_site_t;

typedef enum {
    KVC_ROUTER_WANT_ANY = 0, /* no accelerator constraint */
    KVC_ROUTER_WANT_GPU,
    KVC_ROUTER_WANT_NVIDIA,
    KVC_ROUTER_WANT_AMD,
    KVC_ROUTER_WANT_TPU,
    KVC_ROUTER_WANT_NPU,
    KVC_ROUTER_WANT_NONE /* a site without an accelerator */
} kvc_router_want_t;

/* A parsed constraint; "" fields are unconstrained. A plain value. */
typedef struct {
    kvc_router_want_t accel;
    char site[KVC_ROUTER_NAME_MAX + 1];
    char region[KVC_ROUTER_NAME_MAX + 1];
    char arch[KVC_ROUTER_NAME_MAX + 1];
} kvc_router_constraint_t;

/* Why a site is not in the ranked list. */
typedef enum {
    KVC_ROUTER_ELIGIBLE = 0,
    KVC_ROUTER_NOT_PLACED,
    KVC_ROUTER_CONSTRAINT_UNMET,
    KVC_ROUTER_UNREACHABLE,
    KVC_ROUTER_NOT_READY,
    KVC_ROUTER_CIRCUIT_OPEN,
    KVC_ROUTER_SATURATED
} kvc_router_reason_t;

/* One site of a choice: ranked (reason ELIGIBLE) or excluded. */
typedef struct {
    char site[KVC_ROUTER_NAME_MAX + 1];
    char region[KVC_ROUTER_NAME_MAX + 1];
    int is_local;
    kvc_router_reason_t reason;
    double score_ms; /* rtt_ms + latency_ms + load_ms; ranked only */
    double rtt_ms;
    double latency_ms;
    double load_ms;
    int held;    /* tier 2: seen not ready within holddown_ms */
    int probe;   /* its breaker is half-open: this call is the probe */
    int current; /* it was the choice last time (hysteresis kept it) */
} kvc_router_cand_t;

/* The result: cands[0..n_ranked) best first (a retry takes the next),
 * then cands[n_ranked..n) excluded, in the input's order. */
typedef struct {
    char model[KVC_ROUTER_MODEL_MAX + 1];
    size_t n;
    size_t n_ranked;
    kvc_router_cand_t cands[KVC_ROUTER_SITES_MAX];
    int changed; /* the first candidate differs from the last choice for M */
} kvc_router_choice_t;

/* Tuning; times in milliseconds of the caller's monotonic clock. */
typedef struct {
    kvc_breaker_config_t breaker;
    uint32_t holddown_ms;         /* a site seen not ready is held this long (2000) */
    uint32_t switch_margin_pct;   /* a better site displaces the current by (20) */
    uint32_t switch_margin_ms;    /* ... and by at least (5) */
    uint32_t switch_hold_ms;      /* or after being better this long (10000) */
    uint32_t saturation_low_pct;  /* saturation ends at this % of capacity (80) */
    uint32_t unknown_rtt_ms;      /* RTT assumed without a coordinate (100) */
    uint32_t unknown_latency_ms;  /* latency assumed when not reported (50) */
    uint32_t load_penalty_max_ms; /* cap of load_ms (1000) */
} kvc_router_config_t;

typedef struct kvc_router kvc_router_t;

/* Fills cfg with the defaults above (breaker: kvc_breaker_config_default). */
void kvc_router_config_default(kvc_router_config_t *cfg);
/* Checks ranges; KVC_EINVAL with a message naming the field (err may be NULL). */
int kvc_router_config_check(const kvc_router_config_t *cfg, kvc_err_t *err);

/* Returns a new router with cfg (copied; NULL for the defaults), or NULL on
 * a bad config or allocation failure. */
kvc_router_t *kvc_router_new(const kvc_router_config_t *cfg);
/* Frees the router and sets *self_p to NULL; NULL-safe. */
void kvc_router_destroy(kvc_router_t **self_p);

/*
 * Parses a constraint header value text[0..len) into *out (zeroed first;
 * len 0 = no constraint). Returns 0, or KVC_EPARSE (bad syntax, unknown key
 * or value, duplicate key) or KVC_ERANGE (too long) with err (may be NULL)
 * saying which item at which offset.
 */
int kvc_router_constraint_parse(const char *text, size_t len, kvc_router_constraint_t *out,
                                kvc_err_t *err);
/* Returns 1 if the site meets c (NULL = no constraint). */
int kvc_router_constraint_met(const kvc_router_constraint_t *c, const kvc_router_site_t *s);

/*
 * Chooses for model (copied into out) among sites[0..n) at now_ms, under
 * constraint c (NULL = none), and fills *out. Updates the router's state
 * (hold-downs, saturation latches, the current choice for model).
 * Returns 0 when at least one site is ranked; KVC_EUNAVAIL when none
 * qualifies, with out still filled and err saying why for each site
 * ("no site can serve M: a: not ready; b: unreachable; ..."; cut at
 * KVC_ERR_MAX, the full list is in out and kvc_router_explain_json);
 * KVC_EINVAL on a bad table (NULL or invalid or duplicate site name, two
 * local sites, bad model name), KVC_ERANGE when n > KVC_ROUTER_SITES_MAX.
 */
int kvc_router_choose(kvc_router_t *r, uint64_t now_ms, const char *model,
                      const kvc_router_site_t *sites, size_t n, const kvc_router_constraint_t *c,
                      kvc_router_choice_t *out, kvc_err_t *err);

/*
 * Before sending a call to site at now_ms: returns 1 if its breaker lets
 * it go (taking the half-open probe slot if that is the case), 0 if not
 * (try the next candidate). Every call it allowed must be reported.
 */
int kvc_router_begin(kvc_router_t *r, uint64_t now_ms, const char *site);
/* Reports how a call to site ended (classify it with kvc_breaker_classify). */
void kvc_router_report(kvc_router_t *r, uint64_t now_ms, const char *site, kvc_call_class_t cls);
/* The breaker state of site at now_ms (CLOSED for a site never seen). */
kvc_breaker_state_t kvc_router_breaker_state(const kvc_router_t *r, const char *site,
                                             uint64_t now_ms);

/* The expected cost of trying a candidate (rtt_ms + latency_ms), for
 * kvc_breaker_retry_fits. */
double kvc_router_cand_cost_ms(const kvc_router_cand_t *cand);
/* 1 if s is a valid site, region or arch name: [A-Za-z0-9._-]{1,63}. */
int kvc_router_name_ok(const char *s);
/* Static text of a reason ("not placed", "circuit open", ...). */
const char *kvc_router_reason_name(kvc_router_reason_t reason);

/*
 * Writes the choice as one JSON object into buf[0..size) (NUL-terminated):
 *   {"model":"m","chosen":"a"|null,"candidates":[{"site","region","local",
 *    "rank","score_ms","rtt_ms","latency_ms","load_ms","held","probe",
 *    "current"}...],"excluded":[{"site","region","local","reason"}...]}
 * Returns 0 and sets *len (may be NULL) to the bytes written, or
 * KVC_ERANGE when it does not fit (buf then holds "" if size > 0).
 */
int kvc_router_explain_json(const kvc_router_choice_t *choice, char *buf, size_t size, size_t *len);

#endif
