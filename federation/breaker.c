/*
 * breaker.c - circuit breaker, call classification and retry budget (see
 * breaker.h). Pure state and arithmetic: it must never read a clock or do
 * I/O, so the simulator can drive it with virtual time.
 */
#include "breaker.h"

#include <math.h>
#include <string.h>

void kvc_breaker_config_default(kvc_breaker_config_t *cfg)
{
    cfg->open_after_failures = 5;
    cfg->window_ms = 10000;
    cfg->ratio_min_calls = 20;
    cfg->ratio_permille = 500;
    cfg->cooldown_ms = 1000;
    cfg->cooldown_max_ms = 4000;
    cfg->probe_timeout_ms = 5000;
}

int kvc_breaker_config_check(const kvc_breaker_config_t *cfg, kvc_err_t *err)
{
    if (!cfg)
        return kvc_err_set(err, KVC_EINVAL, "breaker: no config");
    if (cfg->open_after_failures == 0)
        return kvc_err_set(err, KVC_EINVAL, "breaker.open_after_failures: must be > 0");
    if (cfg->window_ms < KVC_BREAKER_BUCKETS)
        return kvc_err_set(err, KVC_EINVAL, "breaker.window_ms: must be >= %d",
                           KVC_BREAKER_BUCKETS);
    if (cfg->ratio_min_calls == 0)
        return kvc_err_set(err, KVC_EINVAL, "breaker.ratio_min_calls: must be > 0");
    if (cfg->ratio_permille == 0 || cfg->ratio_permille > 1000)
        return kvc_err_set(err, KVC_EINVAL, "breaker.ratio_permille: must be in [1, 1000]");
    if (cfg->cooldown_ms == 0)
        return kvc_err_set(err, KVC_EINVAL, "breaker.cooldown_ms: must be > 0");
    if (cfg->cooldown_max_ms < cfg->cooldown_ms)
        return kvc_err_set(err, KVC_EINVAL, "breaker.cooldown_max_ms: must be >= cooldown_ms");
    if (cfg->probe_timeout_ms == 0)
        return kvc_err_set(err, KVC_EINVAL, "breaker.probe_timeout_ms: must be > 0");
    return 0;
}

void kvc_breaker_init(kvc_breaker_t *b, const kvc_breaker_config_t *cfg)
{
    memset(b, 0, sizeof(*b));
    b->cfg = *cfg;
    b->state = KVC_BREAKER_CLOSED;
    b->cooldown_cur_ms = cfg->cooldown_ms;
}

/* Empties the error-ratio window. */
static void s_window_clear(kvc_breaker_t *b)
{
    memset(b->bucket_start_ms, 0, sizeof(b->bucket_start_ms));
    memset(b->bucket_calls, 0, sizeof(b->bucket_calls));
    memset(b->bucket_fails, 0, sizeof(b->bucket_fails));
}

/* Counts one call (and maybe a failure) in the bucket that holds now_ms. */
static void s_window_add(kvc_breaker_t *b, uint64_t now_ms, int failed)
{
    uint64_t width = b->cfg.window_ms / KVC_BREAKER_BUCKETS;
    uint64_t start = now_ms / width * width;
    size_t i = (size_t)(now_ms / width % KVC_BREAKER_BUCKETS);
    if (b->bucket_start_ms[i] != start || (b->bucket_calls[i] == 0 && b->bucket_fails[i] == 0)) {
        b->bucket_start_ms[i] = start;
        b->bucket_calls[i] = 0;
        b->bucket_fails[i] = 0;
    }
    if (b->bucket_calls[i] < UINT32_MAX)
        b->bucket_calls[i]++;
    if (failed && b->bucket_fails[i] < UINT32_MAX)
        b->bucket_fails[i]++;
}

/* Calls and failures in the window that ends at now_ms. */
static void s_window_sum(const kvc_breaker_t *b, uint64_t now_ms, uint64_t *calls, uint64_t *fails)
{
    uint64_t width = b->cfg.window_ms / KVC_BREAKER_BUCKETS;
    uint64_t cur = now_ms / width * width;
    *calls = *fails = 0;
    for (size_t i = 0; i < KVC_BREAKER_BUCKETS; i++) {
        uint64_t st = b->bucket_start_ms[i];
        /* A bucket counts while it is one of the last BUCKETS widths. */
        if (st <= cur && cur - st < (uint64_t)KVC_BREAKER_BUCKETS * width) {
            *calls += b->bucket_calls[i];
            *fails += b->bucket_fails[i];
        }
    }
}

/* Moves to OPEN at now_ms with the cool-down already chosen. */
static void s_open(kvc_breaker_t *b, uint64_t now_ms)
{
    b->state = KVC_BREAKER_OPEN;
    b->opened_at_ms = now_ms;
    b->probe_out = 0;
    b->consecutive = 0;
    s_window_clear(b);
    if (b->opens < UINT32_MAX)
        b->opens++;
}

kvc_breaker_state_t kvc_breaker_state(const kvc_breaker_t *b, uint64_t now_ms)
{
    if (b->state == KVC_BREAKER_OPEN && now_ms >= b->opened_at_ms + b->cooldown_cur_ms)
        return KVC_BREAKER_HALF_OPEN;
    return b->state;
}

int kvc_breaker_would_allow(const kvc_breaker_t *b, uint64_t now_ms)
{
    switch (kvc_breaker_state(b, now_ms)) {
    case KVC_BREAKER_CLOSED:
        return 1;
    case KVC_BREAKER_HALF_OPEN:
        /* One probe at a time; a silent one is given up after its timeout. */
        return !(b->state == KVC_BREAKER_HALF_OPEN && b->probe_out &&
                 now_ms < b->probe_at_ms + b->cfg.probe_timeout_ms);
    default:
        return 0;
    }
}

int kvc_breaker_allow(kvc_breaker_t *b, uint64_t now_ms)
{
    if (!kvc_breaker_would_allow(b, now_ms))
        return 0;
    if (b->state == KVC_BREAKER_CLOSED)
        return 1;
    b->state = KVC_BREAKER_HALF_OPEN;
    b->probe_out = 1;
    b->probe_at_ms = now_ms;
    return 1;
}

void kvc_breaker_record(kvc_breaker_t *b, uint64_t now_ms, kvc_call_class_t cls)
{
    int failed = cls == KVC_CALL_RETRY || cls == KVC_CALL_FAIL;
    if (cls == KVC_CALL_ABANDON) {
        if (b->state == KVC_BREAKER_HALF_OPEN)
            b->probe_out = 0; /* let another call probe */
        return;
    }
    switch (b->state) {
    case KVC_BREAKER_HALF_OPEN:
        if (failed) {
            uint64_t next = (uint64_t)b->cooldown_cur_ms * 2;
            b->cooldown_cur_ms =
                next > b->cfg.cooldown_max_ms ? b->cfg.cooldown_max_ms : (uint32_t)next;
            s_open(b, now_ms);
        } else {
            b->state = KVC_BREAKER_CLOSED;
            b->probe_out = 0;
            b->consecutive = 0;
            b->cooldown_cur_ms = b->cfg.cooldown_ms;
            s_window_clear(b);
        }
        return;
    case KVC_BREAKER_OPEN:
        /* A call allowed before the breaker opened finished late: its
         * outcome says nothing new about the open period. */
        return;
    case KVC_BREAKER_CLOSED:
        break;
    }
    s_window_add(b, now_ms, failed);
    if (!failed) {
        b->consecutive = 0;
        return;
    }
    if (b->consecutive < UINT32_MAX)
        b->consecutive++;
    uint64_t calls, fails;
    s_window_sum(b, now_ms, &calls, &fails);
    if (b->consecutive >= b->cfg.open_after_failures ||
        (calls >= b->cfg.ratio_min_calls && fails * 1000 >= calls * b->cfg.ratio_permille)) {
        b->cooldown_cur_ms = b->cfg.cooldown_ms;
        s_open(b, now_ms);
    }
}

const char *kvc_breaker_state_name(kvc_breaker_state_t st)
{
    switch (st) {
    case KVC_BREAKER_CLOSED:
        return "closed";
    case KVC_BREAKER_OPEN:
        return "open";
    case KVC_BREAKER_HALF_OPEN:
        return "half-open";
    }
    return "unknown";
}

/* RETRY while nothing reached the client, FAIL after. */
static kvc_call_class_t s_retry_unless_output(int output_sent)
{
    return output_sent ? KVC_CALL_FAIL : KVC_CALL_RETRY;
}

kvc_call_class_t kvc_breaker_classify(kvc_call_error_t err, int grpc_status, int output_sent)
{
    switch (err) {
    case KVC_CALL_E_REFUSED:
    case KVC_CALL_E_CONNECT:
        /* Nothing was sent, so nothing can have been seen. */
        return KVC_CALL_RETRY;
    case KVC_CALL_E_RESET:
    case KVC_CALL_E_TIMEOUT:
    case KVC_CALL_E_HTTP_5XX:
        return s_retry_unless_output(output_sent);
    case KVC_CALL_E_BAD_INPUT:
    case KVC_CALL_E_HTTP_4XX:
        return KVC_CALL_REJECT;
    case KVC_CALL_E_PROTOCOL:
        return KVC_CALL_FAIL;
    case KVC_CALL_E_CANCELLED:
        return KVC_CALL_ABANDON;
    case KVC_CALL_E_NONE:
        break;
    default:
        return KVC_CALL_FAIL;
    }
    switch (grpc_status) {
    case 0: /* OK */
        return KVC_CALL_SUCCESS;
    case 1: /* CANCELLED */
        return KVC_CALL_ABANDON;
    case 4:  /* DEADLINE_EXCEEDED */
    case 5:  /* NOT_FOUND: the model is absent here */
    case 8:  /* RESOURCE_EXHAUSTED: shed before running */
    case 14: /* UNAVAILABLE */
        return s_retry_unless_output(output_sent);
    case 3:  /* INVALID_ARGUMENT */
    case 6:  /* ALREADY_EXISTS */
    case 7:  /* PERMISSION_DENIED */
    case 9:  /* FAILED_PRECONDITION */
    case 11: /* OUT_OF_RANGE */
    case 16: /* UNAUTHENTICATED */
        return KVC_CALL_REJECT;
    default: /* UNKNOWN, ABORTED, UNIMPLEMENTED, INTERNAL, DATA_LOSS, junk */
        return KVC_CALL_FAIL;
    }
}

const char *kvc_breaker_class_name(kvc_call_class_t cls)
{
    switch (cls) {
    case KVC_CALL_SUCCESS:
        return "success";
    case KVC_CALL_RETRY:
        return "retry";
    case KVC_CALL_FAIL:
        return "fail";
    case KVC_CALL_REJECT:
        return "reject";
    case KVC_CALL_ABANDON:
        return "abandon";
    }
    return "unknown";
}

int kvc_breaker_retry_fits(int64_t budget_ms, int64_t default_budget_ms, int64_t elapsed_ms,
                           double next_cost_ms, uint32_t margin_ms)
{
    if (budget_ms <= 0)
        budget_ms = default_budget_ms;
    if (budget_ms <= 0 || elapsed_ms < 0 || !isfinite(next_cost_ms) || next_cost_ms < 0)
        return 0;
    if (elapsed_ms >= budget_ms)
        return 0;
    double left = (double)(budget_ms - elapsed_ms);
    return next_cost_ms + (double)margin_ms <= left;
}
