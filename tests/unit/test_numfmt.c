/*
 * Unit tests of proxy/numfmt.c: shortest output must read back exactly and
 * be no longer than the shortest printf("%.Ne") that reads back; parsing
 * must agree bit-for-bit with strtod/strtof on random and adversarial
 * decimals (long mantissas, exact halfway points, extremes).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "numfmt.h"

static uint64_t s_rng = 0x9E3779B97F4A7C15ull;

/* xorshift64*: a seeded, reproducible generator. */
static uint64_t s_rand(void)
{
    s_rng ^= s_rng >> 12;
    s_rng ^= s_rng << 25;
    s_rng ^= s_rng >> 27;
    return s_rng * 2685821657736338717ull;
}

/* Writes v with our writer and NUL-terminates it. */
static size_t s_fmt_d(double v, char *buf)
{
    size_t n = kvc_numfmt_write_double(v, buf);
    buf[n] = '\0';
    return n;
}

static size_t s_fmt_f(float v, char *buf)
{
    size_t n = kvc_numfmt_write_float(v, buf);
    buf[n] = '\0';
    return n;
}

/* Number of significant digits that printf's shortest round trip needs. */
static int s_printf_shortest_d(double v)
{
    char buf[64];
    for (int p = 0; p < 17; p++) {
        snprintf(buf, sizeof buf, "%.*e", p, v);
        if (strtod(buf, NULL) == v)
            return p + 1;
    }
    return 17;
}

static int s_printf_shortest_f(float v)
{
    char buf[64];
    for (int p = 0; p < 9; p++) {
        snprintf(buf, sizeof buf, "%.*e", p, (double)v);
        if (strtof(buf, NULL) == v)
            return p + 1;
    }
    return 9;
}

static int s_ndigits(uint64_t d)
{
    int n = 1;
    while (d >= 10) {
        d /= 10;
        n++;
    }
    return n;
}

/* Checks one double: exact round trip and shortest length. */
static void s_check_double(double v)
{
    char buf[KVC_NUMFMT_MAX + 1];
    s_fmt_d(v, buf);
    double back = strtod(buf, NULL);
    if (memcmp(&back, &v, sizeof v) != 0)
        fail_msg("double %a wrote %s which reads %a", v, buf, back);
    if (v != 0) {
        uint64_t digits;
        int e;
        kvc_numfmt_shortest_double(v, &digits, &e);
        if (s_ndigits(digits) > s_printf_shortest_d(v))
            fail_msg("double %a: %s longer than printf's %d digits", v, buf,
                     s_printf_shortest_d(v));
    }
}

static void s_check_float(float v)
{
    char buf[KVC_NUMFMT_MAX + 1];
    s_fmt_f(v, buf);
    float back = strtof(buf, NULL);
    if (memcmp(&back, &v, sizeof v) != 0)
        fail_msg("float %a wrote %s which reads %a", (double)v, buf, (double)back);
    if (v != 0) {
        uint64_t digits;
        int e;
        kvc_numfmt_shortest_float(v, &digits, &e);
        if (s_ndigits(digits) > s_printf_shortest_f(v))
            fail_msg("float %a: %s longer than printf's %d digits", (double)v, buf,
                     s_printf_shortest_f(v));
    }
}

static void test_write_exact_forms(void **state)
{
    char buf[KVC_NUMFMT_MAX + 1];
    s_fmt_f(0.1f, buf);
    assert_string_equal(buf, "0.1");
    s_fmt_d(0.1, buf);
    assert_string_equal(buf, "0.1");
    s_fmt_f(1.0f, buf);
    assert_string_equal(buf, "1.0");
    s_fmt_f(-0.0f, buf);
    assert_string_equal(buf, "-0.0");
    s_fmt_d(0.0, buf);
    assert_string_equal(buf, "0.0");
    s_fmt_f(NAN, buf);
    assert_string_equal(buf, "NaN");
    s_fmt_d(INFINITY, buf);
    assert_string_equal(buf, "Infinity");
    s_fmt_f(-INFINITY, buf);
    assert_string_equal(buf, "-Infinity");
    s_fmt_f(FLT_MAX, buf);
    assert_string_equal(buf, "3.4028235e38");
    s_fmt_f(1e-45f, buf);
    assert_string_equal(buf, "1e-45");
    s_fmt_f(FLT_MIN, buf);
    assert_string_equal(buf, "1.1754944e-38");
    s_fmt_d(DBL_MAX, buf);
    assert_string_equal(buf, "1.7976931348623157e308");
    s_fmt_d(5e-324, buf);
    assert_string_equal(buf, "5e-324");
    s_fmt_d(1e23, buf);
    assert_string_equal(buf, "1e23");
    s_fmt_d(123456.75, buf);
    assert_string_equal(buf, "123456.75");
    s_fmt_d(1e21, buf);
    assert_string_equal(buf, "1e21");
    s_fmt_d(1e20, buf);
    assert_string_equal(buf, "100000000000000000000.0");
    s_fmt_d(0.000001, buf);
    assert_string_equal(buf, "0.000001");
    s_fmt_d(1e-7, buf);
    assert_string_equal(buf, "1e-7");
    s_fmt_f(0.3f, buf);
    assert_string_equal(buf, "0.3");
    s_fmt_f(16777216.0f, buf);
    assert_string_equal(buf, "16777216.0");
    s_fmt_f(-1.5e-10f, buf);
    assert_string_equal(buf, "-1.5e-10");
    s_fmt_d(9007199254740993.0, buf); /* rounds to 2^53 */
    assert_string_equal(buf, "9007199254740992.0");
    assert_int_equal(kvc_numfmt_write_i64(INT64_MIN, buf), 20);
    buf[20] = '\0';
    assert_string_equal(buf, "-9223372036854775808");
    buf[kvc_numfmt_write_u64(UINT64_MAX, buf)] = '\0';
    assert_string_equal(buf, "18446744073709551615");
    buf[kvc_numfmt_write_i64(0, buf)] = '\0';
    assert_string_equal(buf, "0");
    buf[kvc_numfmt_write_i64(-7, buf)] = '\0';
    assert_string_equal(buf, "-7");
}

static void test_write_float_edges_and_random(void **state)
{
    const float edges[] = {0.0f,         -0.0f,    FLT_MIN,   FLT_MAX,          1e-45f,
                           FLT_TRUE_MIN, -FLT_MAX, 0x1p-149f, 0x1.fffffcp-127f, 1.0f,
                           0.5f,         3.0f,     1e10f,     1e-10f,           16777217.0f,
                           0.1f,         0.2f,     0.7f,      9.999999e9f};
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++)
        s_check_float(edges[i]);
    for (int e = -149; e <= 127; e++) {
        s_check_float(ldexpf(1.0f, e));
        s_check_float(nextafterf(ldexpf(1.0f, e), 0));
        s_check_float(nextafterf(ldexpf(1.0f, e), INFINITY));
    }
    for (int e = -45; e <= 38; e++)
        s_check_float((float)pow(10.0, e));
    for (int i = 0; i < 1000000; i++) {
        uint32_t bits = (uint32_t)s_rand();
        float f;
        memcpy(&f, &bits, sizeof f);
        if (!isfinite(f))
            continue;
        s_check_float(f);
    }
}

static void test_write_double_edges_and_random(void **state)
{
    const double edges[] = {0.0,
                            -0.0,
                            DBL_MIN,
                            DBL_MAX,
                            5e-324,
                            2.2250738585072011e-308,
                            2.2250738585072014e-308,
                            1e23,
                            9007199254740993.0,
                            0.1,
                            1.0 / 3};
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++)
        s_check_double(edges[i]);
    for (int e = -1074; e <= 1023; e++) {
        s_check_double(ldexp(1.0, e));
        s_check_double(nextafter(ldexp(1.0, e), 0));
    }
    for (int e = -323; e <= 308; e++)
        s_check_double(pow(10.0, e));
    for (int i = 0; i < 200000; i++) {
        uint64_t bits = s_rand();
        double d;
        memcpy(&d, &bits, sizeof d);
        if (!isfinite(d))
            continue;
        s_check_double(d);
    }
}

/* Parses s with our parser and with strtod/strtof and compares bits. */
static void s_check_parse(const char *s)
{
    const char *end = s + strlen(s), *stop = NULL;
    double d = 0;
    assert_int_equal(kvc_numfmt_parse_double(s, end, &d, &stop), KVC_OK);
    assert_ptr_equal(stop, end);
    double want = strtod(s, NULL);
    if (memcmp(&d, &want, sizeof d) != 0)
        fail_msg("parse_double(%s) = %a, strtod = %a", s, d, want);
    float f = 0;
    assert_int_equal(kvc_numfmt_parse_float(s, end, &f, &stop), KVC_OK);
    float wantf = strtof(s, NULL);
    if (memcmp(&f, &wantf, sizeof f) != 0)
        fail_msg("parse_float(%s) = %a, strtof = %a", s, (double)f, (double)wantf);
}

static void test_parse_adversarial(void **state)
{
    const char *cases[] = {
        "0",
        "-0",
        "0.0",
        "-0.0",
        "1",
        "1e23",
        "9007199254740993",
        "9007199254740992",
        "9007199254740993.0000000001",
        "2.2250738585072011e-308",
        "2.2250738585072012e-308",
        "2.2250738585072014e-308",
        "4.9406564584124654e-324",
        "2.4703282292062327e-324",
        "2.4703282292062328e-324",
        "1.7976931348623157e308",
        "1.7976931348623158e308",
        "1.7976931348623159e308",
        "1e309",
        "1e-400",
        "123456789012345678901234567890",
        "0.000000000000000000000000000000000000000000001",
        "3.4028235e38",
        "3.4028236e38",
        "3.40282357e38",
        "3.4028235677973366e38",
        "1.17549435e-38",
        "1.4e-45",
        "7e-46",
        "7.006492321624085e-46",
        "7.0064923216240862e-46",
        "1.00000005960464477539062500001",
        "1.000000059604644775390625",
        "1.0000000596046447753906249999",
        "16777217",
        "33554435",
        "0.1",
        "0.3",
        "123.456e-2",
        "1E+2",
        "1e-0",
        "8.589973e9",
        "1.00000017881393432617187499",
        "144115188075855877",
        "7.038531e-26",
        "4.1855804968213567e298",
        "5.5626846462680035e-309",
        "2.22507385850720113605e-308",
        "1.0000000000000000000000000000000000000000000000000000000000000000001",
        "0.99999999999999999999999999999999999999999999999999999999999999999999",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        s_check_parse(cases[i]);
}

static void test_parse_halfway_points(void **state)
{
    char buf[1200];
    for (int i = 0; i < 20000; i++) {
        /* Exact midpoints between adjacent floats, printed exactly, and their neighbours. */
        uint32_t bits = (uint32_t)s_rand() & 0x7f7fffff;
        float f, g;
        memcpy(&f, &bits, sizeof f);
        g = nextafterf(f, INFINITY);
        double mid = ((double)f + (double)g) / 2;
        snprintf(buf, sizeof buf, "%.120e", mid);
        s_check_parse(buf);
        snprintf(buf, sizeof buf, "%.8e", mid);
        s_check_parse(buf);
        snprintf(buf, sizeof buf, "%.16e", mid);
        s_check_parse(buf);
        /* Midpoints between adjacent doubles via long double. */
        uint64_t b64 = s_rand() & 0x7fefffffffffffffull;
        double d;
        memcpy(&d, &b64, sizeof d);
        long double lm = ((long double)d + (long double)nextafter(d, INFINITY)) / 2;
        snprintf(buf, sizeof buf, "%.40Le", lm);
        s_check_parse(buf);
        snprintf(buf, sizeof buf, "%.17Le", lm);
        s_check_parse(buf);
    }
}

static void test_parse_random_decimals(void **state)
{
    char buf[96];
    for (int i = 0; i < 1000000; i++) {
        size_t n = 0;
        if (s_rand() & 1)
            buf[n++] = '-';
        int ndig = 1 + (int)(s_rand() % 24);
        int point = (int)(s_rand() % (uint64_t)(ndig + 1));
        buf[n++] = (char)('1' + s_rand() % 9);
        for (int k = 1; k < ndig; k++) {
            if (k == point)
                buf[n++] = '.';
            buf[n++] = (char)('0' + s_rand() % 10);
        }
        if (s_rand() & 1) {
            int e = (int)(s_rand() % 700) - 350;
            n += (size_t)snprintf(buf + n, sizeof buf - n, "e%d", e);
        }
        buf[n] = '\0';
        s_check_parse(buf);
    }
}

static void test_parse_rejects_and_integers(void **state)
{
    const char *bad[] = {"", "-", "+1", ".5", "1.", "1e", "1e+", "-.1", "-a", "abc"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        double d;
        const char *stop;
        assert_int_equal(kvc_numfmt_parse_double(bad[i], bad[i] + strlen(bad[i]), &d, &stop),
                         KVC_EPARSE);
    }
    /* "01" is a 0 followed by a stray byte: the caller sees the stop. */
    const char *s = "01";
    const char *stop = NULL;
    double d = -1;
    assert_int_equal(kvc_numfmt_parse_double(s, s + 2, &d, &stop), KVC_OK);
    assert_ptr_equal(stop, s + 1);
    int64_t v;
    s = "-9223372036854775808";
    assert_int_equal(kvc_numfmt_parse_i64(s, s + strlen(s), &v, &stop), KVC_OK);
    assert_true(v == INT64_MIN);
    s = "9223372036854775808";
    assert_int_equal(kvc_numfmt_parse_i64(s, s + strlen(s), &v, &stop), KVC_ERANGE);
    s = "9223372036854775807]";
    assert_int_equal(kvc_numfmt_parse_i64(s, s + strlen(s), &v, &stop), KVC_OK);
    assert_true(v == INT64_MAX);
    assert_int_equal(*stop, ']');
    s = "1.5";
    assert_int_equal(kvc_numfmt_parse_i64(s, s + 3, &v, &stop), KVC_EPARSE);
    s = "1e3";
    assert_int_equal(kvc_numfmt_parse_i64(s, s + 3, &v, &stop), KVC_EPARSE);
    uint64_t u;
    s = "18446744073709551615";
    assert_int_equal(kvc_numfmt_parse_u64(s, s + strlen(s), &u, &stop), KVC_OK);
    assert_true(u == UINT64_MAX);
    s = "18446744073709551616";
    assert_int_equal(kvc_numfmt_parse_u64(s, s + strlen(s), &u, &stop), KVC_ERANGE);
    s = "-1";
    assert_int_equal(kvc_numfmt_parse_u64(s, s + 2, &u, &stop), KVC_ERANGE);
    /* 19 digits are read unchecked, any more with overflow checks. */
    s = "9999999999999999999";
    assert_int_equal(kvc_numfmt_parse_u64(s, s + strlen(s), &u, &stop), KVC_OK);
    assert_true(u == 9999999999999999999ull);
    assert_int_equal(kvc_numfmt_parse_i64(s, s + strlen(s), &v, &stop), KVC_ERANGE);
    s = "-9223372036854775809";
    assert_int_equal(kvc_numfmt_parse_i64(s, s + strlen(s), &v, &stop), KVC_ERANGE);
    s = "1844674407370955161500";
    assert_int_equal(kvc_numfmt_parse_u64(s, s + strlen(s), &u, &stop), KVC_ERANGE);
    s = "12345678901234567890123456789.5";
    assert_int_equal(kvc_numfmt_parse_i64(s, s + strlen(s), &v, &stop), KVC_EPARSE);
    /* The scanner never reads past end: "12" cut after one byte is 1. */
    s = "12";
    assert_int_equal(kvc_numfmt_parse_i64(s, s + 1, &v, &stop), KVC_OK);
    assert_int_equal(v, 1);
}

static void test_half(void **state)
{
    assert_int_equal(kvc_numfmt_float_to_half(1.0f), 0x3c00);
    assert_int_equal(kvc_numfmt_float_to_half(-2.0f), 0xc000);
    assert_int_equal(kvc_numfmt_float_to_half(65504.0f), 0x7bff);
    assert_int_equal(kvc_numfmt_float_to_half(65520.0f), 0x7c00);
    assert_int_equal(kvc_numfmt_float_to_half(65519.0f), 0x7bff);
    assert_int_equal(kvc_numfmt_float_to_half(0x1p-24f), 0x0001);
    assert_int_equal(kvc_numfmt_float_to_half(0x1p-25f), 0x0000); /* tie to even */
    assert_int_equal(kvc_numfmt_float_to_half(0x1.8p-24f), 0x0002);
    assert_int_equal(kvc_numfmt_float_to_half(1.0f + 0x1p-11f), 0x3c00); /* tie to even */
    assert_int_equal(kvc_numfmt_float_to_half(1.0f + 0x1.8p-10f), 0x3c02);
    /* Every half value converts to float and back unchanged. */
    for (uint32_t h = 0; h < 0x10000; h++) {
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff))
            continue; /* NaN payloads */
        assert_int_equal(kvc_numfmt_float_to_half(kvc_numfmt_half_to_float((uint16_t)h)), h);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_write_exact_forms),
        cmocka_unit_test(test_write_float_edges_and_random),
        cmocka_unit_test(test_write_double_edges_and_random),
        cmocka_unit_test(test_parse_adversarial),
        cmocka_unit_test(test_parse_halfway_points),
        cmocka_unit_test(test_parse_random_decimals),
        cmocka_unit_test(test_parse_rejects_and_integers),
        cmocka_unit_test(test_half),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
