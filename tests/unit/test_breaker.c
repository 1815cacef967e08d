/* Unit tests of federation/breaker.c: the breaker's state machine at exact
 * virtual times, the error classification table and the retry budget. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <string.h>
#include <cmocka.h>

#include "breaker.h"

static kvc_breaker_t s_new(void)
{
    kvc_breaker_config_t cfg;
    kvc_breaker_config_default(&cfg);
    kvc_breaker_t b;
    kvc_breaker_init(&b, &cfg);
    return b;
}

/* Sends and records one call at now; asserts it was allowed. */
static void s_call(kvc_breaker_t *b, uint64_t now, kvc_call_class_t cls)
{
    assert_int_equal(kvc_breaker_allow(b, now), 1);
    kvc_breaker_record(b, now, cls);
}

/* closed -> open after 5 retryable failures in a row; a success between
 * them resets the count. */
static void test_opens_after_consecutive(void **state)
{
    kvc_breaker_t b = s_new();
    for (int i = 0; i < 4; i++)
        s_call(&b, 1000 + i, KVC_CALL_RETRY);
    s_call(&b, 1004, KVC_CALL_SUCCESS);
    for (int i = 0; i < 4; i++)
        s_call(&b, 1010 + i, KVC_CALL_RETRY);
    assert_int_equal(kvc_breaker_state(&b, 1013), KVC_BREAKER_CLOSED);
    s_call(&b, 1014, KVC_CALL_FAIL);
    assert_int_equal(kvc_breaker_state(&b, 1014), KVC_BREAKER_OPEN);
    assert_int_equal(kvc_breaker_allow(&b, 1015), 0);
    /* Rejected requests (bad input) never count against the backend. */
    kvc_breaker_t c = s_new();
    for (int i = 0; i < 50; i++)
        s_call(&c, 1000 + i, KVC_CALL_REJECT);
    assert_int_equal(kvc_breaker_state(&c, 2000), KVC_BREAKER_CLOSED);
}

/* The error ratio over the window opens it even without a run of 5. */
static void test_opens_on_ratio(void **state)
{
    kvc_breaker_t b = s_new();
    uint64_t t = 5000;
    /* success, failure alternating: 50% after 20 calls */
    for (int i = 0; i < 19; i++, t += 100)
        s_call(&b, t, i % 2 ? KVC_CALL_SUCCESS : KVC_CALL_RETRY);
    assert_int_equal(kvc_breaker_state(&b, t), KVC_BREAKER_CLOSED);
    s_call(&b, t, KVC_CALL_RETRY); /* call 20: 11 failures of 20 -> opens */
    assert_int_equal(kvc_breaker_state(&b, t), KVC_BREAKER_OPEN);
    /* Failures older than the window do not count. */
    kvc_breaker_t c = s_new();
    t = 5000;
    /* 16 failures in 19 calls, never 5 in a row: below ratio_min_calls. */
    for (int i = 0; i < 19; i++, t += 10)
        s_call(&c, t, i % 5 == 4 ? KVC_CALL_SUCCESS : KVC_CALL_RETRY);
    assert_int_equal(kvc_breaker_state(&c, t), KVC_BREAKER_CLOSED);
    t += 20000; /* two windows later: 18 of 29 would open it if they counted */
    s_call(&c, t, KVC_CALL_SUCCESS);
    for (int i = 0; i < 9; i++, t += 10)
        s_call(&c, t, i < 2 ? KVC_CALL_RETRY : KVC_CALL_SUCCESS);
    assert_int_equal(kvc_breaker_state(&c, t), KVC_BREAKER_CLOSED);
    uint64_t calls = 0;
    for (int i = 0; i < KVC_BREAKER_BUCKETS; i++)
        calls += c.bucket_calls[i] * (t - c.bucket_start_ms[i] < 10000);
    assert_int_equal(calls, 10);
}

/* open -> half-open after the cool-down with exactly one probe;
 * probe failure doubles the cool-down (capped); success closes. */
static void test_half_open_and_cooldown(void **state)
{
    kvc_breaker_t b = s_new();
    for (int i = 0; i < 5; i++)
        s_call(&b, 10000, KVC_CALL_RETRY);
    assert_int_equal(kvc_breaker_state(&b, 10999), KVC_BREAKER_OPEN);
    assert_int_equal(kvc_breaker_allow(&b, 10999), 0);
    assert_int_equal(kvc_breaker_state(&b, 11000), KVC_BREAKER_HALF_OPEN);
    assert_int_equal(kvc_breaker_allow(&b, 11000), 1); /* the probe */
    assert_int_equal(kvc_breaker_allow(&b, 11001), 0); /* only one */
    kvc_breaker_record(&b, 11010, KVC_CALL_RETRY);     /* fails: 2 s now */
    assert_int_equal(kvc_breaker_state(&b, 13009), KVC_BREAKER_OPEN);
    assert_int_equal(kvc_breaker_state(&b, 13010), KVC_BREAKER_HALF_OPEN);
    assert_int_equal(kvc_breaker_allow(&b, 13010), 1);
    kvc_breaker_record(&b, 13010, KVC_CALL_RETRY); /* 4 s */
    assert_int_equal(kvc_breaker_allow(&b, 17009), 0);
    assert_int_equal(kvc_breaker_allow(&b, 17010), 1);
    kvc_breaker_record(&b, 17010, KVC_CALL_FAIL); /* capped at 4 s */
    assert_int_equal(kvc_breaker_allow(&b, 21009), 0);
    assert_int_equal(kvc_breaker_allow(&b, 21010), 1);
    kvc_breaker_record(&b, 21020, KVC_CALL_SUCCESS);
    assert_int_equal(kvc_breaker_state(&b, 21020), KVC_BREAKER_CLOSED);
    /* Closed again with the short cool-down: the next open lasts 1 s. */
    for (int i = 0; i < 5; i++)
        s_call(&b, 30000, KVC_CALL_RETRY);
    assert_int_equal(kvc_breaker_allow(&b, 30999), 0);
    assert_int_equal(kvc_breaker_allow(&b, 31000), 1);
    assert_int_equal(b.opens, 5);
}

/* A probe that never reports is given up after probe_timeout_ms; an
 * abandoned probe frees the slot at once. */
static void test_probe_timeout_and_abandon(void **state)
{
    kvc_breaker_t b = s_new();
    for (int i = 0; i < 5; i++)
        s_call(&b, 0, KVC_CALL_RETRY);
    assert_int_equal(kvc_breaker_allow(&b, 1000), 1);
    assert_int_equal(kvc_breaker_allow(&b, 5999), 0);
    assert_int_equal(kvc_breaker_allow(&b, 6000), 1); /* silent probe given up */
    kvc_breaker_record(&b, 6001, KVC_CALL_ABANDON);
    assert_int_equal(kvc_breaker_state(&b, 6001), KVC_BREAKER_HALF_OPEN);
    assert_int_equal(kvc_breaker_allow(&b, 6002), 1);
    /* A reject (4xx) on the probe shows the backend answering: closes. */
    kvc_breaker_record(&b, 6003, KVC_CALL_REJECT);
    assert_int_equal(kvc_breaker_state(&b, 6003), KVC_BREAKER_CLOSED);
    /* Late outcomes of calls allowed before opening change nothing. */
    kvc_breaker_t c = s_new();
    for (int i = 0; i < 5; i++)
        s_call(&c, 0, KVC_CALL_RETRY);
    kvc_breaker_record(&c, 10, KVC_CALL_SUCCESS);
    assert_int_equal(kvc_breaker_state(&c, 10), KVC_BREAKER_OPEN);
}

static void test_config_check(void **state)
{
    kvc_breaker_config_t cfg;
    kvc_err_t err;
    kvc_breaker_config_default(&cfg);
    assert_int_equal(kvc_breaker_config_check(&cfg, &err), 0);
    cfg.cooldown_max_ms = 10;
    assert_int_equal(kvc_breaker_config_check(&cfg, &err), KVC_EINVAL);
    assert_non_null(strstr(err.msg, "cooldown_max_ms"));
    kvc_breaker_config_default(&cfg);
    cfg.ratio_permille = 1001;
    assert_int_equal(kvc_breaker_config_check(&cfg, &err), KVC_EINVAL);
    kvc_breaker_config_default(&cfg);
    cfg.window_ms = 5;
    assert_int_equal(kvc_breaker_config_check(&cfg, NULL), KVC_EINVAL);
    assert_int_equal(kvc_breaker_config_check(NULL, NULL), KVC_EINVAL);
}

/* The whole classification table. */
static void test_classify_table(void **state)
{
    static const struct {
        kvc_call_error_t e;
        int status, out;
        kvc_call_class_t want;
    } t[] = {
        {KVC_CALL_E_NONE, 0, 0, KVC_CALL_SUCCESS},
        {KVC_CALL_E_NONE, 0, 1, KVC_CALL_SUCCESS},
        {KVC_CALL_E_REFUSED, 0, 0, KVC_CALL_RETRY},
        {KVC_CALL_E_REFUSED, 0, 1, KVC_CALL_RETRY},
        {KVC_CALL_E_CONNECT, 0, 0, KVC_CALL_RETRY},
        {KVC_CALL_E_NONE, 14, 0, KVC_CALL_RETRY}, /* UNAVAILABLE */
        {KVC_CALL_E_NONE, 14, 1, KVC_CALL_FAIL},
        {KVC_CALL_E_NONE, 4, 0, KVC_CALL_RETRY}, /* DEADLINE_EXCEEDED */
        {KVC_CALL_E_NONE, 4, 1, KVC_CALL_FAIL},
        {KVC_CALL_E_TIMEOUT, 0, 0, KVC_CALL_RETRY},
        {KVC_CALL_E_TIMEOUT, 0, 1, KVC_CALL_FAIL},
        {KVC_CALL_E_NONE, 8, 0, KVC_CALL_RETRY}, /* RESOURCE_EXHAUSTED */
        {KVC_CALL_E_NONE, 5, 0, KVC_CALL_RETRY}, /* NOT_FOUND */
        {KVC_CALL_E_RESET, 0, 0, KVC_CALL_RETRY},
        {KVC_CALL_E_RESET, 0, 1, KVC_CALL_FAIL},
        {KVC_CALL_E_HTTP_5XX, 0, 0, KVC_CALL_RETRY},
        {KVC_CALL_E_NONE, 3, 0, KVC_CALL_REJECT}, /* INVALID_ARGUMENT */
        {KVC_CALL_E_NONE, 11, 0, KVC_CALL_REJECT},
        {KVC_CALL_E_NONE, 9, 0, KVC_CALL_REJECT},
        {KVC_CALL_E_NONE, 7, 0, KVC_CALL_REJECT},
        {KVC_CALL_E_NONE, 16, 0, KVC_CALL_REJECT},
        {KVC_CALL_E_NONE, 6, 0, KVC_CALL_REJECT},
        {KVC_CALL_E_BAD_INPUT, 0, 0, KVC_CALL_REJECT},
        {KVC_CALL_E_HTTP_4XX, 14, 0, KVC_CALL_REJECT}, /* status ignored */
        {KVC_CALL_E_NONE, 1, 0, KVC_CALL_ABANDON},
        {KVC_CALL_E_CANCELLED, 0, 0, KVC_CALL_ABANDON},
        {KVC_CALL_E_NONE, 2, 0, KVC_CALL_FAIL},
        {KVC_CALL_E_NONE, 10, 0, KVC_CALL_FAIL},
        {KVC_CALL_E_NONE, 12, 0, KVC_CALL_FAIL},
        {KVC_CALL_E_NONE, 13, 0, KVC_CALL_FAIL},
        {KVC_CALL_E_NONE, 15, 0, KVC_CALL_FAIL},
        {KVC_CALL_E_NONE, 17, 0, KVC_CALL_FAIL},
        {KVC_CALL_E_NONE, -1, 0, KVC_CALL_FAIL},
        {KVC_CALL_E_PROTOCOL, 0, 0, KVC_CALL_FAIL},
        {(kvc_call_error_t)99, 0, 0, KVC_CALL_FAIL},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        kvc_call_class_t got = kvc_breaker_classify(t[i].e, t[i].status, t[i].out);
        if (got != t[i].want)
            fail_msg("row %zu: err %d status %d out %d: got %s want %s", i, t[i].e, t[i].status,
                     t[i].out, kvc_breaker_class_name(got), kvc_breaker_class_name(t[i].want));
    }
    assert_string_equal(kvc_breaker_state_name(KVC_BREAKER_HALF_OPEN), "half-open");
}

static void test_retry_budget(void **state)
{
    /* 100 ms deadline, 30 used, next costs 40 + 10 margin: fits (80 <= 100). */
    assert_int_equal(kvc_breaker_retry_fits(100, 0, 30, 40.0, 10), 1);
    assert_int_equal(kvc_breaker_retry_fits(100, 0, 30, 60.0, 10), 1); /* exactly 100 */
    assert_int_equal(kvc_breaker_retry_fits(100, 0, 30, 60.5, 10), 0);
    assert_int_equal(kvc_breaker_retry_fits(100, 0, 100, 0.0, 0), 0); /* used up */
    assert_int_equal(kvc_breaker_retry_fits(100, 0, 150, 1.0, 0), 0);
    assert_int_equal(kvc_breaker_retry_fits(0, 5000, 30, 60.0, 10), 1); /* default budget */
    assert_int_equal(kvc_breaker_retry_fits(-1, 0, 0, 1.0, 0), 0);      /* no budget at all */
    assert_int_equal(kvc_breaker_retry_fits(100, 0, 0, NAN, 0), 0);
    assert_int_equal(kvc_breaker_retry_fits(100, 0, 0, INFINITY, 0), 0);
    assert_int_equal(kvc_breaker_retry_fits(100, 0, 0, -1.0, 0), 0);
    assert_int_equal(kvc_breaker_retry_fits(100, 0, -5, 1.0, 0), 0);
    assert_int_equal(kvc_breaker_retry_fits(INT64_MAX, 0, 0, 1e300, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_opens_after_consecutive),
        cmocka_unit_test(test_opens_on_ratio),
        cmocka_unit_test(test_half_open_and_cooldown),
        cmocka_unit_test(test_probe_timeout_and_abandon),
        cmocka_unit_test(test_config_check),
        cmocka_unit_test(test_classify_table),
        cmocka_unit_test(test_retry_budget),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
