/* Unit tests of peer/promtext.c: every sample form, TF Serving's own
 * output, comments, escapes, NaN/Inf, timestamps, and exact errors for
 * malformed and oversized input. Each parse is rendered back as one line per
 * sample (`name|l=v|l=v value [@ts]`) and compared as a whole string. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "promtext.h"

/* Renders samples into a buffer. */
typedef struct {
    char text[8192];
    size_t len;
    int stop_after; /* > 0: return -99 from that sample */
    int seen;
} s_out_t;

/* The callback: appends `name|l=v... value[ @ts]\n`. */
static int s_render(void *arg, const kvc_promtext_sample_t *s)
{
    s_out_t *o = arg;
    size_t room = sizeof o->text - o->len;
    int n = snprintf(o->text + o->len, room, "%s", s->name);
    o->len += (size_t)n;
    for (size_t i = 0; i < s->n_labels; i++)
        o->len += (size_t)snprintf(o->text + o->len, sizeof o->text - o->len, "|%s=%s",
                                   s->label_names[i], s->label_values[i]);
    o->len += (size_t)snprintf(o->text + o->len, sizeof o->text - o->len, " %.17g", s->value);
    if (s->has_timestamp)
        o->len += (size_t)snprintf(o->text + o->len, sizeof o->text - o->len, " @%lld",
                                   (long long)s->timestamp_ms);
    o->len += (size_t)snprintf(o->text + o->len, sizeof o->text - o->len, "\n");
    assert_true(o->len < sizeof o->text);
    o->seen++;
    if (o->stop_after && o->seen == o->stop_after)
        return -99;
    return 0;
}

/* Parses text, which must succeed, and compares the rendering with want. */
static void s_ok(const char *text, const char *want)
{
    s_out_t o = {.len = 0};
    kvc_err_t err = {0};
    int rc = kvc_promtext_parse(text, strlen(text), NULL, s_render, &o, &err);
    if (rc)
        print_error("parse failed: %s\n", err.msg);
    assert_int_equal(rc, KVC_OK);
    assert_string_equal(o.text, want);
}

/* Parses text, which must fail with code and exactly msg. */
static void s_fails(const char *text, size_t len, int code, const char *msg)
{
    s_out_t o = {.len = 0};
    kvc_err_t err = {0};
    int rc = kvc_promtext_parse(text, len, NULL, s_render, &o, &err);
    assert_int_equal(rc, code);
    assert_string_equal(err.msg, msg);
}

static void test_simple_samples(void **state)
{
    s_ok("", "");
    s_ok("\n\n   \n\t\n", "");
    s_ok("up 1\n", "up 1\n");
    s_ok("up 1", "up 1\n"); /* last line without newline */
    s_ok("a_b:c 2.5\r\nx{} -3e2\n", "a_b:c 2.5\nx -300\n");
    s_ok("  m{a=\"1\",b=\"two\"} 42 1700000000000\n", "m|a=1|b=two 42 @1700000000000\n");
    s_ok("m{ a = \"1\" , b=\"\" , } 0 -5\n", "m|a=1|b= 0 @-5\n"); /* blanks, trailing comma */
    s_ok("m{a=\"1\"}7\n", "m|a=1 7\n");
    s_ok("m\t\t8\t9\n", "m 8 @9\n");
}

static void test_special_values(void **state)
{
    s_ok("a NaN\nb +Inf\nc -Inf\nd Inf\ne 1e400\nf -0\ng 0x10\nh 1.5E-3\n",
         "a nan\nb inf\nc -inf\nd inf\ne inf\nf -0\ng 16\nh 0.0015\n");
    s_ok("big 18446744073709551616\n", "big 1.8446744073709552e+19\n");
}

static void test_escapes(void **state)
{
    s_ok("m{v=\"a\\\\b\\\"c\\nd\"} 1\n", "m|v=a\\b\"c\nd 1\n");
    s_ok("m{v=\"caf\xc3\xa9 \xe2\x82\xac\"} 1\n", "m|v=caf\xc3\xa9 \xe2\x82\xac 1\n");
    s_ok("m{v=\"}{,=\"} 1\n", "m|v=}{,= 1\n");
}

static void test_comments(void **state)
{
    s_ok("# just a comment\n#\n# HELP up Whether it is up.\n# TYPE up gauge\nup 1\n"
         "# HELP x\n# TYPE x untyped\n#HELP y help\n# other words here\n",
         "up 1\n");
    s_fails("# TYPE up gauges\n", 17, KVC_EPARSE, "line 1: unknown type for up");
    s_fails("# TYPE 1up gauge\n", 17, KVC_EPARSE, "line 1: # TYPE needs a valid metric name");
    s_fails("# HELP\n", 7, KVC_EPARSE, "line 1: # HELP needs a valid metric name");
    s_fails("# TYPE up gauge extra\n", 22, KVC_EPARSE, "line 1: text after the type of up");
}

/* The text TF Serving 2.x writes on /monitoring/prometheus/metrics. */
static void test_tf_serving(void **state)
{
    s_ok("# TYPE :tensorflow:serving:request_count counter\n"
         ":tensorflow:serving:request_count{model_name=\"bert\",status=\"OK\"} 7\n"
         ":tensorflow:serving:request_count{model_name=\"bert\",status=\"INVALID_ARGUMENT\"} 2\n"
         "# TYPE :tensorflow:serving:request_latency histogram\n"
         ":tensorflow:serving:request_latency_bucket{model_name=\"bert\",API=\"predict\","
         "entrypoint=\"GRPC\",le=\"10\"} 0\n"
         ":tensorflow:serving:request_latency_bucket{model_name=\"bert\",API=\"predict\","
         "entrypoint=\"GRPC\",le=\"+Inf\"} 9\n"
         ":tensorflow:serving:request_latency_sum{model_name=\"bert\",API=\"predict\","
         "entrypoint=\"GRPC\"} 12345\n"
         ":tensorflow:serving:request_latency_count{model_name=\"bert\",API=\"predict\","
         "entrypoint=\"GRPC\"} 9\n",
         ":tensorflow:serving:request_count|model_name=bert|status=OK 7\n"
         ":tensorflow:serving:request_count|model_name=bert|status=INVALID_ARGUMENT 2\n"
         ":tensorflow:serving:request_latency_bucket|model_name=bert|API=predict|entrypoint=GRPC"
         "|le=10 0\n"
         ":tensorflow:serving:request_latency_bucket|model_name=bert|API=predict|entrypoint=GRPC"
         "|le=+Inf 9\n"
         ":tensorflow:serving:request_latency_sum|model_name=bert|API=predict|entrypoint=GRPC "
         "12345\n"
         ":tensorflow:serving:request_latency_count|model_name=bert|API=predict|entrypoint=GRPC "
         "9\n");
}

static void test_malformed(void **state)
{
#define F(text, msg) s_fails(text, sizeof(text) - 1, KVC_EPARSE, msg)
    F("up\n", "line 1: up: expected a float value");
    F("up one\n", "line 1: up: expected a float value");
    F("up 1x\n", "line 1: up: expected a float value");
    F("ok 1\nup 1 2 3\n", "line 2: up: text after the timestamp");
    F("up 1 2.5\n", "line 1: up: expected an integer timestamp");
    F("up 1 99999999999999999999\n", "line 1: up: expected an integer timestamp");
    F("1up 1\n", "line 1: expected a metric name");
    F("{a=\"b\"} 1\n", "line 1: expected a metric name");
    F("m{a=\"b\" 1\n", "line 1: expected ',' or '}' after label a");
    F("m{a=\"b} 1\n", "line 1: label value without a closing quote");
    F("m{a=b} 1\n", "line 1: expected '\"' to open label a");
    F("m{a} 1\n", "line 1: expected '=' after label a");
    F("m{:a=\"b\"} 1\n", "line 1: expected a label name or '}'");
    F("m{a=\"1\",a=\"2\"} 1\n", "line 1: label a given twice");
    F("m{a=\"\\t\"} 1\n", "line 1: invalid escape \\t in a label value");
    F("m{a=\"\\", "line 1: label value ends in a backslash");
    F("m{a=\"\xff\"} 1\n", "line 1: label value is not valid UTF-8");
    F("m{a=\"\xed\xa0\x80\"} 1\n", "line 1: label value is not valid UTF-8"); /* surrogate */
    F("m{a=\"\xc0\xaf\"} 1\n", "line 1: label value is not valid UTF-8");     /* overlong */
    F("m 1\nn\0 1\n", "line 2: contains a NUL byte");
    F("m 123456789012345678901234567890123456789012345678901234567890123456789\n",
      "line 1: m: expected a float value"); /* a value token longer than any float */
#undef F
}

static void test_limits(void **state)
{
    kvc_err_t err = {0};
    s_out_t o = {.len = 0};
    kvc_promtext_limits_t lim = {.max_line = 8, .max_samples = 2, .max_labels = 1};
    /* a line of exactly max_line bytes passes, one more fails */
    assert_int_equal(kvc_promtext_parse("abcdef 1\n", 9, &lim, s_render, &o, &err), KVC_OK);
    assert_int_equal(kvc_promtext_parse("abcdefg 1\n", 10, &lim, s_render, &o, &err), KVC_ERANGE);
    assert_string_equal(err.msg, "line 1: longer than 8 bytes");
    assert_int_equal(kvc_promtext_parse("a 1\nb 2\nc 3\n", 12, &lim, s_render, &o, &err),
                     KVC_ERANGE);
    assert_string_equal(err.msg, "line 3: more than 2 samples");
    lim.max_line = 0;
    assert_int_equal(kvc_promtext_parse("m{a=\"1\",b=\"2\"} 1\n", 18, &lim, s_render, &o, &err),
                     KVC_ERANGE);
    assert_string_equal(err.msg, "line 1: more than 1 labels");
    assert_int_equal(kvc_promtext_parse(NULL, 1, NULL, s_render, &o, &err), KVC_EINVAL);
    assert_int_equal(kvc_promtext_parse("a 1", 3, NULL, NULL, NULL, &err), KVC_EINVAL);
    assert_int_equal(kvc_promtext_parse(NULL, 0, NULL, s_render, &o, NULL), KVC_OK);
}

static void test_callback_stops(void **state)
{
    s_out_t o = {.len = 0, .stop_after = 2};
    assert_int_equal(kvc_promtext_parse("a 1\nb 2\nc 3\n", 12, NULL, s_render, &o, NULL), -99);
    assert_string_equal(o.text, "a 1\nb 2\n");
}

/* Finds labels by name. */
static int s_check_label(void *arg, const kvc_promtext_sample_t *s)
{
    assert_string_equal(kvc_promtext_label(s, "model_name"), "bert");
    assert_string_equal(kvc_promtext_label(s, "status"), "");
    assert_null(kvc_promtext_label(s, "model"));
    assert_int_equal(s->line, 2);
    (*(int *)arg)++;
    return 0;
}

static void test_label_lookup(void **state)
{
    int calls = 0;
    const char *t = "# x\nm{model_name=\"bert\",status=\"\"} 1\n";
    assert_int_equal(kvc_promtext_parse(t, strlen(t), NULL, s_check_label, &calls, NULL), 0);
    assert_int_equal(calls, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_samples), cmocka_unit_test(test_special_values),
        cmocka_unit_test(test_escapes),        cmocka_unit_test(test_comments),
        cmocka_unit_test(test_tf_serving),     cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_limits),         cmocka_unit_test(test_callback_stops),
        cmocka_unit_test(test_label_lookup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
