/*
 * Unit tests of proxy/json_cursor.c alone (linked with numfmt.c and
 * base.c only): whitespace and literals, strings with every escape, UTF-8
 * and surrogate checks, name bounds, skipping every kind of value with the
 * depth limit, integers and booleans, the object and array iterators, and
 * exact "offset N: ..." messages. Every text is copied into a buffer of
 * exactly its length (no NUL after it) so that ASan catches any read past
 * the end.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "json_cursor.h"

/* A cursor over a heap copy of s without its NUL. */
typedef struct {
    char *buf;
    kvc_json_cursor_t c;
    kvc_err_t err;
} s_text_t;

static void s_open(s_text_t *t, const char *s, size_t n)
{
    t->buf = malloc(n ? n : 1);
    assert_non_null(t->buf);
    memcpy(t->buf, s, n);
    t->err.code = 0;
    t->err.msg[0] = '\0';
    kvc_json_cursor_init(&t->c, t->buf, n, &t->err);
}

#define S_OPEN(t, lit) s_open((t), (lit), sizeof(lit) - 1)

static void s_close(s_text_t *t)
{
    free(t->buf);
    t->buf = NULL;
}

/* Asserts the last call failed with code and exactly msg. */
static void s_want_err(s_text_t *t, int rc, int code, const char *msg)
{
    if (rc != code || strcmp(t->err.msg, msg) != 0)
        fail_msg("want %d \"%s\"\n  got  %d \"%s\"", code, msg, rc, t->err.msg);
}

/* Offset of the cursor in its text. */
static size_t s_at(const s_text_t *t)
{
    return (size_t)(t->c.p - t->c.base);
}

static void test_whitespace_peek_expect(void **state)
{
    s_text_t t;
    S_OPEN(&t, " \t\r\n{ }  ");
    assert_int_equal(kvc_json_cursor_peek(&t.c), '{');
    assert_int_equal(s_at(&t), 4);
    assert_int_equal(kvc_json_cursor_expect(&t.c, '{'), KVC_OK);
    assert_int_equal(kvc_json_cursor_expect(&t.c, '}'), KVC_OK);
    assert_int_equal(kvc_json_cursor_peek(&t.c), -1);
    assert_int_equal(s_at(&t), 9);
    s_want_err(&t, kvc_json_cursor_expect(&t.c, ':'), KVC_EPARSE,
               "offset 9: unexpected end of input, expected ':'");
    s_close(&t);

    /* A form feed is not JSON whitespace; a control byte is shown in hex. */
    S_OPEN(&t, "\f1");
    assert_int_equal(kvc_json_cursor_peek(&t.c), '\f');
    s_want_err(&t, kvc_json_cursor_expect(&t.c, '1'), KVC_EPARSE,
               "offset 0: unexpected byte 0x0c, expected '1'");
    s_close(&t);

    S_OPEN(&t, "  x");
    s_want_err(&t, kvc_json_cursor_expect(&t.c, ','), KVC_EPARSE,
               "offset 2: unexpected character 'x', expected ','");
    assert_true(kvc_json_cursor_lit(&t.c, "x", 1));
    assert_false(kvc_json_cursor_lit(&t.c, "xy", 2)); /* would pass the end */
    s_close(&t);

    /* An empty text. */
    s_open(&t, "", 0);
    assert_int_equal(kvc_json_cursor_peek(&t.c), -1);
    s_close(&t);
}

static void test_strings_and_escapes(void **state)
{
    s_text_t t;
    char buf[64];
    size_t n = 99;
    S_OPEN(&t, "\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\\u00e9\\u20ac\\ud83d\\ude00\" ,");
    assert_int_equal(kvc_json_cursor_read_string(&t.c, buf, sizeof buf, &n), KVC_OK);
    const char want[] = "a\"b\\c/d\b\f\n\r\t\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";
    assert_int_equal(n, sizeof want - 1);
    assert_memory_equal(buf, want, sizeof want);
    assert_int_equal(kvc_json_cursor_peek(&t.c), ',');
    s_close(&t);

    /* An escaped code point below 0x80 and the largest BMP one. */
    S_OPEN(&t, "\"\\u0041\\uFFFF\"");
    assert_int_equal(kvc_json_cursor_read_string(&t.c, buf, sizeof buf, &n), KVC_OK);
    assert_int_equal(n, 4);
    assert_memory_equal(buf, "A\xef\xbf\xbf", 5);
    s_close(&t);

    const char *bad[][2] = {
        {"\"ab", "offset 3: unterminated string"},
        {"\"ab\\", "offset 3: unterminated string"},
        {"\"a\nb\"", "offset 2: control character in string"},
        {"\"a\\x\"", "offset 2: invalid escape in string"},
        {"\"\\u12G4\"", "offset 1: invalid \\u escape"},
        {"\"\\ud800\"", "offset 1: unpaired surrogate in \\u escape"},
        {"\"\\ud800\\u0041\"", "offset 1: unpaired surrogate in \\u escape"},
        {"\"x\\udc00\"", "offset 2: unpaired surrogate in \\u escape"},
        {"\"a\\u0000b\"", "offset 0: NUL character in a name"},
        {"\"ok\xff\"", "offset 3: key is not valid UTF-8"},
        {"\"\xc0\xaf\"", "offset 1: key is not valid UTF-8"},
        {"12", "offset 0: unexpected character '1', expected a string"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        s_open(&t, bad[i][0], strlen(bad[i][0]));
        s_want_err(&t, kvc_json_cursor_read_string(&t.c, buf, sizeof buf, NULL), KVC_EPARSE,
                   bad[i][1]);
        s_close(&t);
    }

    /* what names the string in the UTF-8 message. */
    S_OPEN(&t, "  \"\xed\xa0\x80\"");
    s_want_err(&t, kvc_json_cursor_read_name(&t.c, "inputs[0].name", buf, sizeof buf, NULL),
               KVC_EPARSE, "offset 3: inputs[0].name is not valid UTF-8");
    s_close(&t);
}

/* A name fills the buffer up to size - 1 bytes, counted after decoding is
 * not needed: the raw length bounds it. */
static void test_name_bounds(void **state)
{
    s_text_t t;
    char buf[4];
    size_t n;
    S_OPEN(&t, "\"abc\"");
    assert_int_equal(kvc_json_cursor_read_string(&t.c, buf, sizeof buf, &n), KVC_OK);
    assert_string_equal(buf, "abc");
    assert_int_equal(n, 3);
    s_close(&t);

    S_OPEN(&t, " \"abcd\"");
    s_want_err(&t, kvc_json_cursor_read_string(&t.c, buf, sizeof buf, &n), KVC_ERANGE,
               "offset 1: string longer than 3 bytes");
    s_close(&t);

    /* The raw span is bounded even when its escapes would decode shorter. */
    S_OPEN(&t, "\"\\u0041\"");
    s_want_err(&t, kvc_json_cursor_read_string(&t.c, buf, sizeof buf, &n), KVC_ERANGE,
               "offset 0: string longer than 3 bytes");
    s_close(&t);
}

/* The span and unescape pair that string values use. */
static void test_span_and_unescape(void **state)
{
    s_text_t t;
    S_OPEN(&t, "\"x\\ty\"]");
    const char *raw;
    size_t n;
    int esc = 0;
    assert_int_equal(kvc_json_cursor_string_span(&t.c, &raw, &n, &esc), KVC_OK);
    assert_int_equal(n, 4);
    assert_int_equal(esc, 1);
    assert_int_equal(*t.c.p, ']');
    char out[4];
    size_t len = 0;
    assert_int_equal(kvc_json_cursor_unescape(&t.c, raw, n, out, &len), KVC_OK);
    assert_int_equal(len, 3);
    assert_memory_equal(out, "x\ty", 3);
    s_close(&t);

    S_OPEN(&t, "\"plain\"");
    assert_int_equal(kvc_json_cursor_string_span(&t.c, &raw, &n, &esc), KVC_OK);
    assert_int_equal(esc, 0);
    assert_int_equal(n, 5);
    assert_memory_equal(raw, "plain", 5);
    s_close(&t);

    /* \u escape cut short by the end of the span. */
    S_OPEN(&t, "\"\\u00\"");
    assert_int_equal(kvc_json_cursor_string_span(&t.c, &raw, &n, &esc), KVC_OK);
    s_want_err(&t, kvc_json_cursor_unescape(&t.c, raw, n, out, &len), KVC_EPARSE,
               "offset 1: invalid \\u escape");
    s_close(&t);
}

static void test_skip_values(void **state)
{
    const char *ok[] = {
        "0",
        "-0",
        "12.5e-3",
        "1E+9",
        "true",
        "false",
        "null",
        "NaN",
        "Infinity",
        "-Infinity",
        "\"s\\\"q\"",
        "[]",
        "{}",
        "[1, [2, {\"a\": [null]}], \"x\"]",
        "{\"a\": {\"b\": [true, false]}, \"c\": -1}",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        s_text_t t;
        size_t n = strlen(ok[i]);
        s_open(&t, ok[i], n);
        if (kvc_json_cursor_skip(&t.c) != KVC_OK)
            fail_msg("skip \"%s\": %s", ok[i], t.err.msg);
        assert_int_equal(s_at(&t), n);
        s_close(&t);
    }
    const char *bad[][2] = {
        {"1.", "offset 2: unexpected end of input, expected a digit"},
        {"1.x", "offset 2: unexpected character 'x', expected a digit"},
        {"2e", "offset 2: unexpected end of input, expected a digit"},
        {"-", "offset 0: unexpected character '-', expected a value"},
        {"tru", "offset 0: unexpected character 't', expected a value"},
        {"[1 2]", "offset 3: unexpected character '2', expected ',' or ']'"},
        {"{\"a\" 1}", "offset 5: unexpected character '1', expected ':'"},
        {"{1: 2}", "offset 1: unexpected character '1', expected a key"},
        {"{\"a\": 1", "offset 7: unexpected end of input, expected ',' or '}'"},
        {"", "offset 0: unexpected end of input, expected a value"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        s_text_t t;
        s_open(&t, bad[i][0], strlen(bad[i][0]));
        s_want_err(&t, kvc_json_cursor_skip(&t.c), KVC_EPARSE, bad[i][1]);
        s_close(&t);
    }
}

/* Nesting up to the limit is skipped; one level more is refused, without
 * recursing further. */
static void test_skip_depth_limit(void **state)
{
    char deep[2 * (KVC_JSON_CURSOR_SKIP_DEPTH + 2)];
    for (int extra = 0; extra <= 1; extra++) {
        size_t levels = KVC_JSON_CURSOR_SKIP_DEPTH + 1 + (size_t)extra, n = 0;
        for (size_t i = 0; i < levels; i++)
            deep[n++] = '[';
        for (size_t i = 0; i < levels; i++)
            deep[n++] = ']';
        s_text_t t;
        s_open(&t, deep, n);
        int rc = kvc_json_cursor_skip(&t.c);
        if (extra) {
            char want[64];
            snprintf(want, sizeof want, "offset %d: nesting deeper than %d",
                     KVC_JSON_CURSOR_SKIP_DEPTH + 1, KVC_JSON_CURSOR_SKIP_DEPTH);
            s_want_err(&t, rc, KVC_EPARSE, want);
        } else {
            assert_int_equal(rc, KVC_OK);
            assert_int_equal(s_at(&t), n);
        }
        s_close(&t);
    }
}

static void test_bool_and_u64(void **state)
{
    s_text_t t;
    int b = -1;
    S_OPEN(&t, " true false nul");
    assert_int_equal(kvc_json_cursor_read_bool(&t.c, &b), KVC_OK);
    assert_int_equal(b, 1);
    assert_int_equal(kvc_json_cursor_read_bool(&t.c, &b), KVC_OK);
    assert_int_equal(b, 0);
    s_want_err(&t, kvc_json_cursor_read_bool(&t.c, &b), KVC_EPARSE,
               "offset 12: unexpected character 'n', expected true or false");
    s_close(&t);

    uint64_t v = 0;
    S_OPEN(&t, " 18446744073709551615,");
    assert_int_equal(kvc_json_cursor_read_u64(&t.c, &v), KVC_OK);
    assert_true(v == UINT64_MAX);
    assert_int_equal(*t.c.p, ',');
    s_close(&t);

    const struct {
        const char *text;
        int code;
        const char *msg;
    } bad[] = {
        {" 18446744073709551616", KVC_ERANGE, "offset 1: integer out of range"},
        {" -1", KVC_EPARSE, "offset 1: unexpected character '-', expected a non-negative integer"},
        {"1.5", KVC_EPARSE, "offset 0: unexpected character '1', expected a non-negative integer"},
        {"\"7\"", KVC_EPARSE,
         "offset 0: unexpected character '\"', expected a non-negative integer"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        s_open(&t, bad[i].text, strlen(bad[i].text));
        s_want_err(&t, kvc_json_cursor_read_u64(&t.c, &v), bad[i].code, bad[i].msg);
        /* The cursor stays at the value, for the caller's own message. */
        assert_int_equal(kvc_json_cursor_peek(&t.c), (unsigned char)bad[i].text[s_at(&t)]);
        assert_true(t.c.p == t.c.base + (bad[i].text[0] == ' ' ? 1 : 0));
        s_close(&t);
    }
}

static void test_member_iterator(void **state)
{
    s_text_t t;
    char key[8];
    int st = 0;
    S_OPEN(&t, "{ \"a\" : 1 , \"bb\": [2, 3] } x");
    assert_int_equal(kvc_json_cursor_member(&t.c, &st, key, sizeof key), 1);
    assert_string_equal(key, "a");
    assert_int_equal(kvc_json_cursor_skip(&t.c), KVC_OK);
    assert_int_equal(kvc_json_cursor_member(&t.c, &st, key, sizeof key), 1);
    assert_string_equal(key, "bb");
    assert_int_equal(kvc_json_cursor_skip(&t.c), KVC_OK);
    assert_int_equal(kvc_json_cursor_member(&t.c, &st, key, sizeof key), 0);
    assert_int_equal(kvc_json_cursor_peek(&t.c), 'x');
    s_close(&t);

    st = 0;
    S_OPEN(&t, " {  }");
    assert_int_equal(kvc_json_cursor_member(&t.c, &st, key, sizeof key), 0);
    assert_int_equal(s_at(&t), 5);
    s_close(&t);

    const char *bad[][2] = {
        {"[1]", "offset 0: unexpected character '[', expected '{'"},
        {"{\"a\": 1,}", "offset 8: unexpected character '}', expected a key"},
        {"{\"a\": 1 \"b\": 2}", "offset 8: unexpected character '\"', expected ',' or '}'"},
        {"{\"a\" 1}", "offset 5: unexpected character '1', expected ':'"},
        {"{\"a\": 1", "offset 7: unexpected end of input, expected ',' or '}'"},
        {"{\"toolongkey\": 1}", "offset 1: string longer than 7 bytes"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        s_open(&t, bad[i][0], strlen(bad[i][0]));
        st = 0;
        int rc;
        while ((rc = kvc_json_cursor_member(&t.c, &st, key, sizeof key)) == 1)
            assert_int_equal(kvc_json_cursor_skip(&t.c), KVC_OK);
        assert_true(rc < 0);
        if (strcmp(t.err.msg, bad[i][1]) != 0)
            fail_msg("\"%s\": want \"%s\", got \"%s\"", bad[i][0], bad[i][1], t.err.msg);
        s_close(&t);
    }
}

static void test_element_iterator(void **state)
{
    s_text_t t;
    int st = 0, n = 0, rc;
    S_OPEN(&t, "[ 1, \"a\" ,[2] ]");
    while ((rc = kvc_json_cursor_element(&t.c, &st)) == 1) {
        n++;
        assert_int_equal(kvc_json_cursor_skip(&t.c), KVC_OK);
    }
    assert_int_equal(rc, 0);
    assert_int_equal(n, 3);
    assert_int_equal(kvc_json_cursor_peek(&t.c), -1);
    s_close(&t);

    st = 0;
    S_OPEN(&t, "[]");
    assert_int_equal(kvc_json_cursor_element(&t.c, &st), 0);
    s_close(&t);

    const char *bad[][2] = {
        {"{}", "offset 0: unexpected character '{', expected '['"},
        {"[1,]", "offset 3: unexpected character ']', expected a value"},
        {"[1 2]", "offset 3: unexpected character '2', expected ',' or ']'"},
        {"[1,", "offset 3: unexpected end of input, expected a value"},
        {"[", "offset 1: unexpected end of input, expected a value or ']'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        s_open(&t, bad[i][0], strlen(bad[i][0]));
        st = 0;
        while ((rc = kvc_json_cursor_element(&t.c, &st)) == 1)
            assert_int_equal(kvc_json_cursor_skip(&t.c), KVC_OK);
        assert_true(rc < 0);
        if (strcmp(t.err.msg, bad[i][1]) != 0)
            fail_msg("\"%s\": want \"%s\", got \"%s\"", bad[i][0], bad[i][1], t.err.msg);
        s_close(&t);
    }
}

static void test_utf8(void **state)
{
    const struct {
        const char *s;
        size_t n, prefix;
    } cases[] = {
        {"abc", 3, 3},
        {"\xc3\xa9", 2, 2},
        {"\xf4\x8f\xbf\xbf", 4, 4},  /* U+10FFFF */
        {"a\xf4\x90\x80\x80", 5, 1}, /* past U+10FFFF */
        {"ab\xc1\xbf", 4, 2},        /* overlong */
        {"\xe0\x80\xaf", 3, 0},      /* overlong 3-byte */
        {"x\xed\xa0\x80", 4, 1},     /* surrogate */
        {"\xe2\x82", 2, 0},          /* cut short */
        {"\xe2\x28\xa1", 3, 0},      /* bad continuation */
        {"ok\x80", 3, 2},            /* lone continuation */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const uint8_t *s = (const uint8_t *)cases[i].s;
        assert_int_equal(kvc_json_utf8_prefix(s, cases[i].n), cases[i].prefix);
        assert_int_equal(kvc_json_utf8_valid(s, cases[i].n), cases[i].prefix == cases[i].n);
    }
}

/* Errors go to a NULL kvc_err_t without harm. */
static void test_null_err(void **state)
{
    kvc_json_cursor_t c;
    kvc_json_cursor_init(&c, "x", 1, NULL);
    assert_int_equal(kvc_json_cursor_expect(&c, '{'), KVC_EPARSE);
    assert_int_equal(kvc_json_cursor_skip(&c), KVC_EPARSE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whitespace_peek_expect),
        cmocka_unit_test(test_strings_and_escapes),
        cmocka_unit_test(test_name_bounds),
        cmocka_unit_test(test_span_and_unescape),
        cmocka_unit_test(test_skip_values),
        cmocka_unit_test(test_skip_depth_limit),
        cmocka_unit_test(test_bool_and_u64),
        cmocka_unit_test(test_member_iterator),
        cmocka_unit_test(test_element_iterator),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_null_err),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
