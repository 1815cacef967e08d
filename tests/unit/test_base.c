/* Unit tests of federation/base.c: error strings, bounded buffers, parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "base.h"

static void test_strerror(void **state)
{
    assert_string_equal(kvc_strerror(KVC_OK), "success");
    assert_string_equal(kvc_strerror(KVC_EEXPIRED), "expired");
    assert_string_equal(kvc_strerror(KVC_E_LAST), "unknown error");
    assert_string_equal(kvc_strerror(5), "unknown error");
}

static void test_buf_is_bounded(void **state)
{
    kvc_buf_t b;
    kvc_buf_init(&b, 8);
    assert_int_equal(kvc_buf_append(&b, "12345", 5), KVC_OK);
    assert_int_equal(kvc_buf_append(&b, "678", 3), KVC_OK);
    assert_int_equal(kvc_buf_append(&b, "9", 1), KVC_ERANGE);
    assert_int_equal(b.len, 8);
    assert_string_equal(b.data, "12345678");
    kvc_buf_reset(&b);
    assert_int_equal(kvc_buf_printf(&b, "%d-%s", 42, "x"), KVC_OK);
    assert_string_equal(b.data, "42-x");
    assert_int_equal(kvc_buf_printf(&b, "%s", "toolong"), KVC_ERANGE);
    kvc_buf_free(&b);
}

static void test_alloc_failure_is_reported(void **state)
{
    kvc_buf_t b;
    kvc_buf_init(&b, 1024);
    kvc_alloc_fail_after(0);
    assert_int_equal(kvc_buf_append(&b, "x", 1), KVC_ENOMEM);
    kvc_alloc_fail_after(-1);
    assert_int_equal(kvc_buf_append(&b, "x", 1), KVC_OK);
    kvc_buf_free(&b);
}

static void test_err_prefix(void **state)
{
    kvc_err_t err;
    kvc_err_set(&err, KVC_EINVAL, "peer.site: must match %s", "[a-z]");
    kvc_err_prefix(&err, "%s:%d:%d: ", "c.yaml", 3, 5);
    assert_string_equal(err.msg, "c.yaml:3:5: peer.site: must match [a-z]");
    assert_int_equal(err.code, KVC_EINVAL);

    /* too long together: the prefix stays whole, the old message is cut */
    char old[400], pre[300];
    memset(old, 'o', sizeof old - 1);
    old[sizeof old - 1] = 0;
    memset(pre, 'p', sizeof pre - 1);
    pre[sizeof pre - 1] = 0;
    kvc_err_set(&err, KVC_EIO, "%s", old);
    kvc_err_prefix(&err, "%s", pre);
    assert_int_equal(strlen(err.msg), KVC_ERR_MAX - 1);
    assert_memory_equal(err.msg, pre, sizeof pre - 1);
    assert_int_equal(err.msg[sizeof pre - 1], 'o');
    assert_int_equal(err.msg[KVC_ERR_MAX - 2], 'o');
}

static void test_parse_i64(void **state)
{
    int64_t v = 0;
    assert_int_equal(kvc_parse_i64("42", 0, 100, &v), KVC_OK);
    assert_int_equal(v, 42);
    assert_int_equal(kvc_parse_i64("101", 0, 100, &v), KVC_ERANGE);
    assert_int_equal(kvc_parse_i64("4x", 0, 100, &v), KVC_EPARSE);
    assert_int_equal(kvc_parse_i64("", 0, 100, &v), KVC_EPARSE);
    assert_int_equal(kvc_parse_i64("99999999999999999999", 0, 100, &v), KVC_ERANGE);
}

static void test_strlcpy(void **state)
{
    char dst[4];
    assert_int_equal(kvc_strlcpy(dst, "abc", sizeof dst), KVC_OK);
    assert_string_equal(dst, "abc");
    assert_int_equal(kvc_strlcpy(dst, "abcd", sizeof dst), KVC_ERANGE);
    assert_string_equal(dst, "abc");
}

static void test_hex_digit(void **state)
{
    (void)state;
    const char *digits = "0123456789abcdef", *upper = "ABCDEF";
    for (int i = 0; i < 16; i++)
        assert_int_equal(kvc_hex_digit(digits[i]), i);
    for (int i = 0; i < 6; i++)
        assert_int_equal(kvc_hex_digit(upper[i]), 10 + i);
    const char *bad = "gG/:@`% \0";
    for (const char *p = bad; *p; p++)
        assert_int_equal(kvc_hex_digit(*p), -1);
    assert_int_equal(kvc_hex_digit(0), -1);
    assert_int_equal(kvc_hex_digit(0xe9), -1); /* a Latin-1 byte, as unsigned char */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strerror),
        cmocka_unit_test(test_buf_is_bounded),
        cmocka_unit_test(test_alloc_failure_is_reported),
        cmocka_unit_test(test_err_prefix),
        cmocka_unit_test(test_parse_i64),
        cmocka_unit_test(test_hex_digit),
        cmocka_unit_test(test_strlcpy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
