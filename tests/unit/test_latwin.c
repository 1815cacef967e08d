/*
 * Unit tests of federation/latwin.c: quantiles of known distributions stay
 * within the stated 13.5% error, samples age out with their slot, an empty
 * window says -1, in-flight counting, and huge values neither overflow nor
 * break the histogram. Time is a plain counter; nothing sleeps.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "latwin.h"

#define ERR 0.135

/* |got - want| within ERR of want. */
static void s_near(int64_t got, double want)
{
    if (fabs((double)got - want) > ERR * want + 1e-9) {
        print_error("got %lld, want %.1f (+-%.1f%%)\n", (long long)got, want, ERR * 100);
        fail();
    }
}

static int s_cmp(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The exact q-quantile of sorted v[0..n) under latwin's rank rule. */
static int64_t s_exact(const int64_t *v, size_t n, double q)
{
    double r = q * (double)n;
    size_t rank = (size_t)r;
    if ((double)rank < r)
        rank++;
    if (rank < 1)
        rank = 1;
    return v[rank - 1];
}

static void test_empty(void **state)
{
    (void)state;
    kvc_latwin_t w;
    assert_int_equal(kvc_latwin_init(&w, 0), 0);
    assert_int_equal(w.window_ms, KVC_LATWIN_DEFAULT_MS);
    assert_int_equal(kvc_latwin_quantile(&w, 0, 0.5), -1);
    assert_int_equal(kvc_latwin_quantile(&w, 123456, 0.99), -1);
    uint64_t ok = 9, fail = 9;
    kvc_latwin_counts(&w, 5, &ok, &fail);
    assert_int_equal(ok, 0);
    assert_int_equal(fail, 0);
    assert_int_equal(kvc_latwin_in_flight(&w), 0);
    /* failures are counted, not timed */
    kvc_latwin_end(&w, 10, 5000, 0);
    assert_int_equal(kvc_latwin_quantile(&w, 10, 0.5), -1);
    kvc_latwin_counts(&w, 10, &ok, &fail);
    assert_int_equal(ok, 0);
    assert_int_equal(fail, 1);
    /* a too small window falls back to the default and says so */
    assert_int_equal(kvc_latwin_init(&w, 9), KVC_EINVAL);
    assert_int_equal(w.window_ms, KVC_LATWIN_DEFAULT_MS);
    assert_int_equal(kvc_latwin_init(NULL, 10), KVC_EINVAL);
    assert_int_equal(kvc_latwin_quantile(NULL, 0, 0.5), -1);
    kvc_latwin_counts(NULL, 0, &ok, NULL);
    assert_int_equal(ok, 0);
}

/* Every integer latency in [10 us, 100 s) is reported within the error
 * when it is the sample of its rank (the window's min and max are far
 * away so the clamp does not help). */
static void test_bucket_error(void **state)
{
    (void)state;
    for (int64_t v = 10; v < 100000000; v += v / 97 + 1) {
        kvc_latwin_t w;
        kvc_latwin_init(&w, 1000);
        kvc_latwin_end(&w, 0, 1, 1);
        kvc_latwin_end(&w, 0, (uint64_t)v, 1);
        kvc_latwin_end(&w, 0, 1000000000, 1);
        s_near(kvc_latwin_quantile(&w, 0, 0.5), (double)v);
    }
}

/* Uniform, exponential and log-normal samples: p50, p90, p99 against the
 * exact order statistics. */
static void test_distributions(void **state)
{
    (void)state;
    enum { N = 20000 };
    int64_t *v = malloc(N * sizeof *v);
    assert_non_null(v);
    srand(7);
    for (int dist = 0; dist < 3; dist++) {
        kvc_latwin_t w;
        kvc_latwin_init(&w, 10000);
        for (size_t i = 0; i < N; i++) {
            double u = (rand() + 1.0) / ((double)RAND_MAX + 2.0);
            double x;
            if (dist == 0)
                x = 100 + u * 99900; /* uniform 100 us .. 100 ms */
            else if (dist == 1)
                x = -log(u) * 20000; /* exponential, mean 20 ms */
            else {
                double u2 = (rand() + 1.0) / ((double)RAND_MAX + 2.0);
                double z = sqrt(-2 * log(u)) * cos(2 * M_PI * u2);
                x = exp(log(5000) + 1.5 * z); /* log-normal around 5 ms */
            }
            v[i] = (int64_t)x;
            if (v[i] < 1)
                v[i] = 1;
            /* spread over the window's slots, all still inside at 9999 */
            kvc_latwin_end(&w, i % 9000 + 1000, (uint64_t)v[i], 1);
        }
        qsort(v, N, sizeof *v, s_cmp);
        const double qs[] = {0.5, 0.9, 0.99, 0.999};
        for (size_t k = 0; k < 4; k++) {
            int64_t want = s_exact(v, N, qs[k]);
            if (want >= 10)
                s_near(kvc_latwin_quantile(&w, 9999, qs[k]), (double)want);
        }
        assert_int_equal(kvc_latwin_quantile(&w, 9999, 0), v[0]);
        assert_int_equal(kvc_latwin_quantile(&w, 9999, 1), v[N - 1]);
        assert_int_equal(kvc_latwin_quantile(&w, 9999, NAN), v[0]);
        uint64_t ok, fail;
        kvc_latwin_counts(&w, 9999, &ok, &fail);
        assert_int_equal(ok, N);
        assert_int_equal(fail, 0);
    }
    free(v);
}

/* A sample lives between 0.9 and 1.0 window; then only newer ones count. */
static void test_aging(void **state)
{
    (void)state;
    kvc_latwin_t w;
    kvc_latwin_init(&w, 10000);           /* slots of 1 s */
    kvc_latwin_end(&w, 5500, 1000000, 1); /* slot 5 */
    kvc_latwin_end(&w, 5600, 0, 0);
    assert_int_equal(kvc_latwin_quantile(&w, 5500, 0.5), 1000000);
    assert_int_equal(kvc_latwin_quantile(&w, 14999, 0.5), 1000000);
    uint64_t ok, fail;
    kvc_latwin_counts(&w, 14999, &ok, &fail);
    assert_int_equal(ok, 1);
    assert_int_equal(fail, 1);
    assert_int_equal(kvc_latwin_quantile(&w, 15000, 0.5), -1);
    kvc_latwin_counts(&w, 15000, &ok, &fail);
    assert_int_equal(ok + fail, 0);
    /* a newer sample in the same ring position replaces the old slot */
    kvc_latwin_end(&w, 8000, 200, 1);
    kvc_latwin_end(&w, 15200, 300, 1); /* slot 15 reuses slot 5's place */
    assert_int_equal(kvc_latwin_quantile(&w, 15200, 1), 300);
    assert_int_equal(kvc_latwin_quantile(&w, 15200, 0), 200);
    kvc_latwin_counts(&w, 15200, &ok, &fail);
    assert_int_equal(ok, 2);
    assert_int_equal(fail, 0);
    /* a long silence empties everything */
    assert_int_equal(kvc_latwin_quantile(&w, 1000000, 0.5), -1);
    /* a query before the samples (a caller bug) sees none of them */
    assert_int_equal(kvc_latwin_quantile(&w, 0, 0.5), -1);
    /* a slow stream: the quantile follows the recent values */
    kvc_latwin_init(&w, 1000);
    for (uint64_t t = 0; t < 5000; t++)
        kvc_latwin_end(&w, t, t < 2500 ? 100 : 100000, 1);
    s_near(kvc_latwin_quantile(&w, 4999, 0.5), 100000);
}

static void test_in_flight(void **state)
{
    (void)state;
    kvc_latwin_t w;
    kvc_latwin_init(&w, 0);
    for (int i = 0; i < 5; i++)
        kvc_latwin_begin(&w);
    assert_int_equal(kvc_latwin_in_flight(&w), 5);
    kvc_latwin_end(&w, 1, 10, 1);
    kvc_latwin_end(&w, 1, 10, 0);
    assert_int_equal(kvc_latwin_in_flight(&w), 3);
    for (int i = 0; i < 10; i++) /* more ends than begins: stays at 0 */
        kvc_latwin_end(&w, 1, 10, 1);
    assert_int_equal(kvc_latwin_in_flight(&w), 0);
    w.in_flight = UINT32_MAX;
    kvc_latwin_begin(&w);
    assert_int_equal(kvc_latwin_in_flight(&w), UINT32_MAX);
    kvc_latwin_begin(NULL);
    kvc_latwin_end(NULL, 0, 0, 1);
    assert_int_equal(kvc_latwin_in_flight(NULL), 0);
}

/* Huge latencies and times: no overflow, the result is the exact max. */
static void test_huge(void **state)
{
    (void)state;
    kvc_latwin_t w;
    kvc_latwin_init(&w, UINT32_MAX);
    uint64_t t = UINT64_MAX - 5;
    kvc_latwin_end(&w, t, UINT64_MAX, 1);
    kvc_latwin_end(&w, t, (uint64_t)INT64_MAX + 1, 1);
    kvc_latwin_end(&w, t, 200000000, 1); /* 200 s: past the last edge */
    assert_int_equal(kvc_latwin_quantile(&w, t, 1), INT64_MAX);
    assert_int_equal(kvc_latwin_quantile(&w, t, 0), 200000000);
    int64_t p50 = kvc_latwin_quantile(&w, t, 0.5);
    assert_true(p50 >= 200000000 && p50 <= INT64_MAX);
    assert_int_equal(kvc_latwin_quantile(&w, UINT64_MAX, 0.5), p50);
    /* tiny ones: below the first edge, clamped to the exact values */
    kvc_latwin_init(&w, 100);
    kvc_latwin_end(&w, 0, 0, 1);
    kvc_latwin_end(&w, 0, 3, 1);
    assert_int_equal(kvc_latwin_quantile(&w, 0, 0), 0);
    assert_int_equal(kvc_latwin_quantile(&w, 0, 1), 3);
    int64_t m = kvc_latwin_quantile(&w, 0, 0.5);
    assert_true(m >= 0 && m <= 3);
    /* many samples in one slot */
    kvc_latwin_init(&w, 100);
    w.slots[0].index = 0;
    w.slots[0].ok = UINT64_MAX / 2;
    w.slots[0].hist[10] = UINT64_MAX / 2;
    w.slots[0].min_us = 130;
    w.slots[0].max_us = 150;
    assert_int_equal(kvc_latwin_quantile(&w, 5, 0.99), 141);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),         cmocka_unit_test(test_bucket_error),
        cmocka_unit_test(test_distributions), cmocka_unit_test(test_aging),
        cmocka_unit_test(test_in_flight),     cmocka_unit_test(test_huge),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
