/*
 * latwin.c - the sliding latency window (the reasoning is in latwin.h).
 *
 * Pure arithmetic on a caller-owned value: no allocation, no clock, no
 * locks, no floating point on the hot path (bucket edges are a constant
 * table, found by binary search). It must never read a clock or allocate:
 * the proxy calls it under a mutex on every request.
 */
#include "latwin.h"

#include <string.h>

/* Bucket i holds integer latencies [s_edge[i], s_edge[i+1]); s_edge[i] is
 * ceil(10 * 10^(7i/64)), so (s_edge[i+1] - 1) / s_edge[i] < 10^(7/64). */
static const int64_t s_edge[KVC_LATWIN_BUCKETS + 1] = {
    10,       13,       17,       22,       28,       36,       46,       59,       75,
    97,       125,      160,      206,      265,      340,      438,      563,      724,
    931,      1198,     1540,     1981,     2549,     3279,     4217,     5425,     6979,
    8977,     11548,    14856,    19110,    24583,    31623,    40680,    52330,    67318,
    86597,    111398,   143302,   184343,   237138,   305053,   392419,   504807,   649382,
    835363,   1074608,  1382373,  1778280,  2287574,  2942728,  3785516,  4869676,  6264336,
    8058422,  10366330, 13335215, 17154379, 22067341, 28387360, 36517413, 46975889, 60429640,
    77736504, 100000000};

/* The value reported for bucket i: round(sqrt(s_edge[i] * (s_edge[i+1] - 1))),
 * within 13.43% of every integer in the bucket. */
static const int64_t s_mid[KVC_LATWIN_BUCKETS] = {
    11,       14,       19,       24,       31,       40,       52,       66,
    85,       110,      141,      181,      233,      300,      385,      496,
    638,      821,      1056,     1358,     1746,     2247,     2891,     3718,
    4783,     6153,     7915,     10181,    13098,    16849,    21674,    27881,
    35866,    46138,    59352,    76351,    98217,    126347,   162532,   209080,
    268960,   345989,   445079,   572549,   736525,   947463,   1218814,  1567879,
    2016915,  2594553,  3337625,  4293511,  5523159,  7104974,  9139817,  11757433,
    15124725, 19456400, 25028654, 32196784, 41417845, 53279790, 68538959, 88168307};

#define EMPTY UINT64_MAX

/* The bucket of a latency: the last i with s_edge[i] <= us (0 below). */
static size_t s_bucket(int64_t us)
{
    size_t lo = 0, hi = KVC_LATWIN_BUCKETS - 1;
    while (lo < hi) {
        size_t mid = (lo + hi + 1) / 2;
        if (s_edge[mid] <= us)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

static void s_slot_clear(kvc_latwin_slot_t *s, uint64_t index)
{
    memset(s, 0, sizeof *s);
    s->index = index;
    s->min_us = INT64_MAX;
    s->max_us = -1;
}

/* 1 if slot s holds samples of the window that ends in slot index now_i. */
static int s_live(const kvc_latwin_slot_t *s, uint64_t now_i)
{
    return s->index != EMPTY && s->index <= now_i && now_i - s->index < KVC_LATWIN_SLOTS;
}

int kvc_latwin_init(kvc_latwin_t *w, uint32_t window_ms)
{
    if (!w)
        return KVC_EINVAL;
    int rc = KVC_OK;
    if (window_ms == 0)
        window_ms = KVC_LATWIN_DEFAULT_MS;
    if (window_ms < KVC_LATWIN_SLOTS) {
        window_ms = KVC_LATWIN_DEFAULT_MS;
        rc = KVC_EINVAL;
    }
    memset(w, 0, sizeof *w);
    w->window_ms = window_ms;
    w->slot_ms = window_ms / KVC_LATWIN_SLOTS;
    for (size_t i = 0; i < KVC_LATWIN_SLOTS; i++)
        s_slot_clear(&w->slots[i], EMPTY);
    return rc;
}

void kvc_latwin_begin(kvc_latwin_t *w)
{
    if (w && w->in_flight < UINT32_MAX)
        w->in_flight++;
}

void kvc_latwin_end(kvc_latwin_t *w, uint64_t now_ms, uint64_t latency_us, int ok)
{
    if (!w || !w->slot_ms)
        return;
    if (w->in_flight > 0)
        w->in_flight--;
    uint64_t idx = now_ms / w->slot_ms;
    kvc_latwin_slot_t *s = &w->slots[idx % KVC_LATWIN_SLOTS];
    if (s->index != idx)
        s_slot_clear(s, idx);
    if (!ok) {
        s->fail++;
        return;
    }
    s->ok++;
    int64_t us = latency_us > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)latency_us;
    s->hist[s_bucket(us)]++;
    if (us < s->min_us)
        s->min_us = us;
    if (us > s->max_us)
        s->max_us = us;
}

int64_t kvc_latwin_quantile(const kvc_latwin_t *w, uint64_t now_ms, double q)
{
    if (!w || !w->slot_ms)
        return -1;
    uint64_t now_i = now_ms / w->slot_ms;
    uint64_t hist[KVC_LATWIN_BUCKETS] = {0};
    uint64_t n = 0;
    int64_t lo = INT64_MAX, hi = -1;
    for (size_t k = 0; k < KVC_LATWIN_SLOTS; k++) {
        const kvc_latwin_slot_t *s = &w->slots[k];
        if (!s_live(s, now_i) || s->ok == 0)
            continue;
        for (size_t b = 0; b < KVC_LATWIN_BUCKETS; b++)
            hist[b] += s->hist[b];
        n += s->ok;
        if (s->min_us < lo)
            lo = s->min_us;
        if (s->max_us > hi)
            hi = s->max_us;
    }
    if (n == 0)
        return -1;
    if (!(q > 0)) /* also NaN */
        return lo;
    if (q >= 1)
        return hi;
    /* rank in 1..n: the smallest sample with at least q * n at or below */
    double r = q * (double)n;
    uint64_t rank = (uint64_t)r;
    if ((double)rank < r)
        rank++;
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    uint64_t acc = 0;
    size_t b = 0;
    for (; b < KVC_LATWIN_BUCKETS - 1; b++) {
        acc += hist[b];
        if (acc >= rank)
            break;
    }
    int64_t v = s_mid[b];
    if (v < lo)
        v = lo;
    if (v > hi)
        v = hi;
    return v;
}

uint32_t kvc_latwin_in_flight(const kvc_latwin_t *w)
{
    return w ? w->in_flight : 0;
}

void kvc_latwin_counts(const kvc_latwin_t *w, uint64_t now_ms, uint64_t *ok, uint64_t *fail)
{
    uint64_t o = 0, f = 0;
    if (w && w->slot_ms) {
        uint64_t now_i = now_ms / w->slot_ms;
        for (size_t k = 0; k < KVC_LATWIN_SLOTS; k++)
            if (s_live(&w->slots[k], now_i)) {
                o += w->slots[k].ok;
                f += w->slots[k].fail;
            }
    }
    if (ok)
        *ok = o;
    if (fail)
        *fail = f;
}
