/* Unit tests of peer/promsel.c: every selector form, Prometheus' error
 * texts (taken from promtool 2.42 on the same inputs), anchored regexes,
 * OR'ed match[] sets and the bounds on hostile input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "promsel.h"

/* Parses s, which must succeed; returns the selector. */
static kvc_promsel_t *s_ok(const char *s)
{
    kvc_promsel_t *sel = NULL;
    kvc_err_t err = {0};
    int rc = kvc_promsel_parse(s, strlen(s), &sel, &err);
    if (rc)
        print_error("parse of %s failed: %s\n", s, err.msg);
    assert_int_equal(rc, KVC_OK);
    assert_non_null(sel);
    return sel;
}

/* Parses s, which must fail with exactly msg. */
static void s_fails(const char *s, const char *msg)
{
    kvc_promsel_t *sel = NULL;
    kvc_err_t err = {0};
    int rc = kvc_promsel_parse(s, strlen(s), &sel, &err);
    assert_int_equal(rc, KVC_EPARSE);
    assert_null(sel);
    assert_string_equal(err.msg, msg);
}

/* Asserts matcher i of sel. */
static void s_matcher(const kvc_promsel_t *sel, size_t i, const char *label, kvc_promsel_op_t op,
                      const char *value)
{
    const char *l = NULL, *v = NULL;
    kvc_promsel_op_t o;
    assert_int_equal(kvc_promsel_matcher(sel, i, &l, &o, &v), KVC_OK);
    assert_string_equal(l, label);
    assert_int_equal(o, op);
    assert_string_equal(v, value);
}

static void test_forms(void **state)
{
    kvc_promsel_t *sel = s_ok("kvc_up");
    assert_int_equal(kvc_promsel_count(sel), 1);
    s_matcher(sel, 0, "__name__", KVC_PROMSEL_EQ, "kvc_up");
    kvc_promsel_destroy(&sel);
    assert_null(sel);

    sel = s_ok(" foo:bar { site = \"a\" , peer!='b', x=~`c.*`, y!~\"d\" , } ");
    assert_int_equal(kvc_promsel_count(sel), 5);
    s_matcher(sel, 0, "__name__", KVC_PROMSEL_EQ, "foo:bar");
    s_matcher(sel, 1, "site", KVC_PROMSEL_EQ, "a");
    s_matcher(sel, 2, "peer", KVC_PROMSEL_NE, "b");
    s_matcher(sel, 3, "x", KVC_PROMSEL_RE, "c.*");
    s_matcher(sel, 4, "y", KVC_PROMSEL_NRE, "d");
    kvc_promsel_destroy(&sel);

    sel = s_ok("{__name__=~\"kvc_.*\"}");
    s_matcher(sel, 0, "__name__", KVC_PROMSEL_RE, "kvc_.*");
    kvc_promsel_destroy(&sel);

    sel = s_ok("foo{}");
    assert_int_equal(kvc_promsel_count(sel), 1);
    kvc_promsel_destroy(&sel);

    /* Two __name__ matchers without an outside name are allowed. */
    sel = s_ok("{__name__=\"foo\", __name__=\"bar\"}");
    assert_int_equal(kvc_promsel_match(sel, "foo", NULL, NULL, 0), 0);
    kvc_promsel_destroy(&sel);
}

static void test_escapes(void **state)
{
    kvc_promsel_t *sel =
        s_ok("{a=\"q\\\"b\\\\s\\n\\t\\x41\\101\\u00e9\\U0001F600\", b='it\\'s', c=`raw\\n`}");
    s_matcher(sel, 0, "a", KVC_PROMSEL_EQ, "q\"b\\s\n\tAA\xc3\xa9\xf0\x9f\x98\x80");
    s_matcher(sel, 1, "b", KVC_PROMSEL_EQ, "it's");
    s_matcher(sel, 2, "c", KVC_PROMSEL_EQ, "raw\\n");
    kvc_promsel_destroy(&sel);
}

static void test_prometheus_errors(void **state)
{
    const char *ne =
        "1:1: parse error: vector selector must contain at least one non-empty matcher";
    s_fails("{}", ne);
    s_fails("{a=\"\"}", ne);
    s_fails("{a=~\".*\"}", ne);
    s_fails("{a!~\"x\"}", ne);
    s_fails("{a!=\"x\"}", ne);
    s_fails("foo{__name__=\"bar\"}",
            "1:1: parse error: metric name must not be set twice: \"foo\" or \"bar\"");
    s_fails("foo{__name__=~\"bar\"}",
            "1:1: parse error: metric name must not be set twice: \"foo\" or \"bar\"");
    s_fails("{a=\"b\"", "1:7: parse error: unexpected end of input inside braces");
    s_fails("foo{", "1:5: parse error: unexpected end of input inside braces");
    s_fails("{a=~\"b\"", "1:8: parse error: unexpected end of input inside braces");
    s_fails("{a=\"b}", "1:4: parse error: unterminated quoted string");
    s_fails("{a b}",
            "1:4: parse error: unexpected identifier \"b\" in label matching, expected label "
            "matching operator");
    s_fails("{a=\"\\q\"}", "1:4: parse error: unknown escape sequence U+0071 'q'");
    s_fails("{a='\\\"'}", "1:4: parse error: unknown escape sequence U+0022 '\"'");
    s_fails("{a!}", "1:3: parse error: unexpected character after '!' inside braces: '}'");
    s_fails("{1=\"a\"}", "1:2: parse error: unexpected character inside braces: '1'");
    s_fails("{a=\"b\",,}",
            "1:8: parse error: unexpected \",\" in label matching, expected identifier or \"}\"");
    s_fails("foo bar", "1:5: parse error: unexpected identifier \"bar\"");
    s_fails("foo}", "1:4: parse error: unexpected character: '}'");
    s_fails("foo{a=\"b\"}x", "1:11: parse error: unexpected identifier \"x\"");
    s_fails("{a=}", "1:4: parse error: unexpected \"}\" in label matching, expected string");
    s_fails("{a=b}",
            "1:4: parse error: unexpected identifier \"b\" in label matching, expected string");
    s_fails("{a=\"b\" c=\"d\"}",
            "1:8: parse error: unexpected identifier \"c\" in label matching, expected \",\" or "
            "\"}\"");
    s_fails("{=",
            "1:2: parse error: unexpected \"=\" in label matching, expected identifier or \"}\"");
    s_fails("{a=\"\\xZZ\"}", "1:4: parse error: illegal character U+005A 'Z' in escape sequence");
    s_fails("{a=\"\\u12\"}", "1:4: parse error: illegal character U+0022 '\"' in escape sequence");
    s_fails("{a=\"\\400\"}", "1:4: parse error: escape sequence is an invalid Unicode code point");
    s_fails("{a=\"b\",c}",
            "1:9: parse error: unexpected \"}\" in label matching, expected label matching "
            "operator");
    s_fails("{a=\"b\"}}", "1:8: parse error: unexpected character: '}'");
    s_fails("{a,}", "1:3: parse error: unexpected \",\" in label matching, expected label matching "
                    "operator");
    s_fails("{a=\"b\"}foo", "1:8: parse error: unexpected identifier \"foo\"");
    s_fails("{a=\"b\"} {", "1:9: parse error: unexpected \"{\"");
    s_fails("{\"a\"=\"b\"}",
            "1:2: parse error: unexpected string \"\\\"a\\\"\" in label matching, expected "
            "identifier or \"}\"");
    s_fails("foo;", "1:4: parse error: unexpected character: ';'");
    s_fails("", "1:1: parse error: unexpected end of input");
    s_fails("{a=~\"a\\\\1\"}",
            "1:2: parse error: error parsing regexp: invalid escape sequence: `\\1`");
    s_fails("{a=~\"a{1001}\"}",
            "1:2: parse error: error parsing regexp: invalid repeat count: `{1001}`");
    s_fails("{a=~\"(a{100}){100}\"}",
            "1:2: parse error: error parsing regexp: invalid repeat count: `{100}`");
    s_fails("{a=\"x\",\nb=\"y}", "2:3: parse error: unterminated quoted string");
}

static void test_bad_regex_reports_posix_error(void **state)
{
    /* Go's own texts for what we check before regcomp... */
    s_fails("{a=~\"(\"}", "1:2: parse error: error parsing regexp: missing closing ): `^(?:()$`");
    s_fails("{a=~\"a)\"}", "1:2: parse error: error parsing regexp: unexpected ): `^(?:a))$`");
    s_fails("{a=~\"[a\"}", "1:2: parse error: error parsing regexp: missing closing ]: `[a)$`");
    s_fails("{a=~\"a**\"}",
            "1:2: parse error: error parsing regexp: invalid nested repetition operator: `**`");
    s_fails("{a=~\"a{2}{3}\"}",
            "1:2: parse error: error parsing regexp: invalid nested repetition operator: `{2}{3}`");
    s_fails("{a=~\"x|*\"}",
            "1:2: parse error: error parsing regexp: missing argument to repetition operator: `*`");
    /* ...and regcomp's verdict, in Go's frame, for the rest. */
    kvc_promsel_t *sel = NULL;
    kvc_err_t err = {0};
    assert_int_equal(kvc_promsel_parse("{a=~\"a{2,1}\"}", 13, &sel, &err), KVC_EPARSE);
    assert_null(sel);
    assert_true(strncmp(err.msg, "1:2: parse error: error parsing regexp: ", 40) == 0);
    assert_non_null(strstr(err.msg, "`^(?:a{2,1})$`"));
}

/* glibc copies the tree for each + and {n}: stacked or nested ones are refused. */
static void test_regex_blowup_refused(void **state)
{
    s_fails("{a=~\"8)}0 *))}2)}+++++\"}",
            "1:2: parse error: error parsing regexp: unexpected ): `^(?:8)}0 *))}2)}+++++)$`");
    s_fails("{a=~\"((((((((((a+)+)+)+)+)+)+)+)+)+)+\"}",
            "1:2: parse error: error parsing regexp: invalid repeat count: `+`");
    char big[600] = "{a=~\"";
    size_t o = strlen(big);
    for (int i = 0; i < 11; i++)
        o += (size_t)snprintf(big + o, sizeof big - o, "a{1000}");
    o += (size_t)snprintf(big + o, sizeof big - o, "\"}");
    s_fails(big, "1:2: parse error: error parsing regexp: expression too large");
}

/* A group that can match empty, repeated, costs glibc the cube of its
 * expanded size (fuzz_promsel: 83 bytes took over 2 GB): refused past 128
 * nodes. The same sizes without an empty match compile in a few MB. */
static void test_nullable_repeat_refused(void **state)
{
    const char *why = "1:2: parse error: error parsing regexp: expression too large: a group that "
                      "can match empty, repeated: ";
    char want[256];
    snprintf(want, sizeof want, "%s`{500}`", why);
    s_fails("{a=~\"(a*|b*){500}\"}", want);
    snprintf(want, sizeof want, "%s`{73}`", why);
    s_fails("{a=~\"(|||||||||abcdefghij|klmn|){73}\"}", want);
    snprintf(want, sizeof want, "%s`{10}`", why);
    s_fails("{a=~\"((a*|b*){10}){10}\"}", want);
    /* 126 nodes, and groups far bigger that cannot match empty, still compile. */
    kvc_promsel_t *sel = s_ok("x{a=~\"(|a|b|c){21}\"}");
    assert_int_equal(kvc_promsel_match(sel, "x", (const char *[]){"a"}, (const char *[]){"abc"}, 1),
                     1);
    kvc_promsel_destroy(&sel);
    sel = s_ok("{a=~\"(abcdefghij){400}|(a|b){500}|x{1000}\"}");
    kvc_promsel_destroy(&sel);
}

static void test_anchored_regex(void **state)
{
    kvc_promsel_t *sel = s_ok("{__name__=~\"kvc\"}");
    assert_int_equal(kvc_promsel_match(sel, "kvc", NULL, NULL, 0), 1);
    assert_int_equal(kvc_promsel_match(sel, "kvc_x", NULL, NULL, 0), 0);
    assert_int_equal(kvc_promsel_match(sel, "x_kvc", NULL, NULL, 0), 0);
    kvc_promsel_destroy(&sel);

    sel = s_ok("{__name__=~\"kvc_.*|up\"}");
    assert_int_equal(kvc_promsel_match(sel, "kvc_x", NULL, NULL, 0), 1);
    assert_int_equal(kvc_promsel_match(sel, "up", NULL, NULL, 0), 1);
    assert_int_equal(kvc_promsel_match(sel, "upx", NULL, NULL, 0), 0);
    assert_int_equal(kvc_promsel_match(sel, "xkvc_x", NULL, NULL, 0), 0);
    kvc_promsel_destroy(&sel);

    /* . matches a newline, as in Prometheus 3. */
    sel = s_ok("{a=~\"x.y\"}");
    const char *n[] = {"a"}, *v[] = {"x\ny"};
    assert_int_equal(kvc_promsel_match(sel, "m", n, v, 1), 1);
    kvc_promsel_destroy(&sel);
}

static void test_match_semantics(void **state)
{
    const char *names[] = {"site", "peer", "model"};
    const char *vals[] = {"edge-1", "p1", "bert"};
    kvc_promsel_t *sel = s_ok("kvc_up{site=\"edge-1\", model!=\"resnet\", peer=~\"p[0-9]+\"}");
    assert_int_equal(kvc_promsel_match(sel, "kvc_up", names, vals, 3), 1);
    assert_int_equal(kvc_promsel_match(sel, "kvc_down", names, vals, 3), 0);
    vals[2] = "resnet";
    assert_int_equal(kvc_promsel_match(sel, "kvc_up", names, vals, 3), 0);
    kvc_promsel_destroy(&sel);

    /* A missing label is "": != "x" matches it, = "x" does not. */
    sel = s_ok("kvc_up{region!=\"eu\"}");
    assert_int_equal(kvc_promsel_match(sel, "kvc_up", names, vals, 3), 1);
    kvc_promsel_destroy(&sel);
    sel = s_ok("kvc_up{region=\"eu\"}");
    assert_int_equal(kvc_promsel_match(sel, "kvc_up", names, vals, 3), 0);
    kvc_promsel_destroy(&sel);
    sel = s_ok("kvc_up{region=~\"eu|\"}");
    assert_int_equal(kvc_promsel_match(sel, "kvc_up", names, vals, 3), 1);
    kvc_promsel_destroy(&sel);
}

static void test_set_is_ored(void **state)
{
    kvc_promsel_set_t *set = kvc_promsel_set_new();
    assert_non_null(set);
    assert_int_equal(kvc_promsel_set_match(set, "a", NULL, NULL, 0), 0); /* empty: nothing */
    kvc_err_t err = {0};
    assert_int_equal(kvc_promsel_set_add(set, "a", 1, &err), KVC_OK);
    assert_int_equal(kvc_promsel_set_add(set, "{__name__=~\"b.*\"}", 17, &err), KVC_OK);
    assert_int_equal(kvc_promsel_set_add(set, "{}", 2, &err), KVC_EPARSE);
    assert_int_equal(kvc_promsel_set_match(set, "a", NULL, NULL, 0), 1);
    assert_int_equal(kvc_promsel_set_match(set, "bcd", NULL, NULL, 0), 1);
    assert_int_equal(kvc_promsel_set_match(set, "c", NULL, NULL, 0), 0);
    assert_int_equal(kvc_promsel_set_may_match_name(set, "bx"), 1);
    assert_int_equal(kvc_promsel_set_may_match_name(set, "x"), 0);
    assert_int_equal(kvc_promsel_set_match(NULL, "c", NULL, NULL, 0), 1);
    for (int i = 2; i < KVC_PROMSEL_MAX_SELECTORS; i++)
        assert_int_equal(kvc_promsel_set_add(set, "a", 1, NULL), KVC_OK);
    assert_int_equal(kvc_promsel_set_add(set, "a", 1, &err), KVC_ERANGE);
    kvc_promsel_set_destroy(&set);
    assert_null(set);
}

static void test_bounds(void **state)
{
    char big[KVC_PROMSEL_MAX_LEN + 2];
    memset(big, 'a', sizeof big);
    kvc_promsel_t *sel = NULL;
    kvc_err_t err = {0};
    assert_int_equal(kvc_promsel_parse(big, KVC_PROMSEL_MAX_LEN + 1, &sel, &err), KVC_ERANGE);
    assert_null(sel);
    assert_int_equal(kvc_promsel_parse(big, KVC_PROMSEL_MAX_LEN, &sel, &err), KVC_OK);
    kvc_promsel_destroy(&sel);

    /* Too many matchers. */
    char many[1024] = "{";
    size_t o = 1;
    for (int i = 0; i <= KVC_PROMSEL_MAX_MATCHERS; i++)
        o += (size_t)snprintf(many + o, sizeof many - o, "l%d=\"v\",", i);
    many[o++] = '}';
    assert_int_equal(kvc_promsel_parse(many, o, &sel, &err), KVC_ERANGE);
    assert_null(sel);

    /* Not NUL-terminated input is read only up to len. */
    assert_int_equal(kvc_promsel_parse("kvc_upXXXX", 6, &sel, &err), KVC_OK);
    assert_int_equal(kvc_promsel_match(sel, "kvc_up", NULL, NULL, 0), 1);
    kvc_promsel_destroy(&sel);

    /* A NUL inside an equality value never matches a C string; in a regex it is refused. */
    assert_int_equal(kvc_promsel_parse("{a=\"x\\x00\"}", 11, &sel, &err), KVC_OK);
    const char *n[] = {"a"}, *v[] = {"x"};
    assert_int_equal(kvc_promsel_match(sel, "m", n, v, 1), 0);
    kvc_promsel_destroy(&sel);
    assert_int_equal(kvc_promsel_parse("{a=~\"x\\x00\"}", 12, &sel, &err), KVC_EPARSE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forms),
        cmocka_unit_test(test_escapes),
        cmocka_unit_test(test_prometheus_errors),
        cmocka_unit_test(test_bad_regex_reports_posix_error),
        cmocka_unit_test(test_regex_blowup_refused),
        cmocka_unit_test(test_nullable_repeat_refused),
        cmocka_unit_test(test_anchored_regex),
        cmocka_unit_test(test_match_semantics),
        cmocka_unit_test(test_set_is_ored),
        cmocka_unit_test(test_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
