/*
 * Unit tests of proxy/json_tensor.c: TF Serving REST requests (row and
 * columnar, named and unnamed, b64, NaN/Infinity, dtype inference and
 * signature dtypes), exact error messages, limits, allocation failures,
 * and responses written exactly as TF Serving lays them out.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base.h"
#include "json_tensor.h"
#include "tensor.h"

static const kvc_json_tensor_opts_t s_open = {{1000000, 64 << 20}, NULL, 0, 0};

/* Parses s with opts, asserting success. */
static void s_parse_ok(const char *s, const kvc_json_tensor_opts_t *opts,
                       kvc_json_tensor_request_t *req)
{
    kvc_err_t err = {0, ""};
    int rc = kvc_json_tensor_parse_request(s, strlen(s), opts, req, &err);
    if (rc)
        fail_msg("parse failed (%d): %s\n  input: %s", rc, err.msg, s);
}

/* Parses s expecting failure with exactly code and message. */
static void s_parse_err(const char *s, const kvc_json_tensor_opts_t *opts, int code,
                        const char *msg)
{
    kvc_json_tensor_request_t req;
    kvc_err_t err = {0, ""};
    int rc = kvc_json_tensor_parse_request(s, strlen(s), opts, &req, &err);
    if (rc != code || strcmp(err.msg, msg) != 0)
        fail_msg("input: %s\n  want %d \"%s\"\n  got  %d \"%s\"", s, code, msg, rc, err.msg);
    assert_null(req.inputs);
}

static void s_assert_shape(const kvc_tensor_t *t, int nd, const int64_t *want)
{
    assert_int_equal(kvc_tensor_ndim(t), nd);
    for (int i = 0; i < nd; i++)
        assert_int_equal(kvc_tensor_shape(t)[i], want[i]);
}

static void test_columnar_unnamed_float(void **state)
{
    kvc_json_tensor_request_t req;
    s_parse_ok("{\"inputs\": [[1.5, 2], [3, -4e-1]]}", &s_open, &req);
    assert_int_equal(req.format, KVC_JSON_TENSOR_COLUMNAR);
    assert_null(req.signature_name);
    assert_int_equal(kvc_tensor_list_size(req.inputs), 1);
    kvc_tensor_t *t = kvc_tensor_list_at(req.inputs, 0);
    assert_string_equal(kvc_tensor_name(t), "");
    assert_int_equal(kvc_tensor_dtype(t), KVC_DT_FLOAT);
    s_assert_shape(t, 2, (int64_t[]){2, 2});
    const float *f = kvc_tensor_data(t);
    assert_true(f[0] == 1.5f && f[1] == 2.0f && f[2] == 3.0f && f[3] == -0.4f);
    kvc_json_tensor_request_clear(&req);
}

static void test_inference_int_bool_string_promotion(void **state)
{
    kvc_json_tensor_request_t req;
    s_parse_ok("{\"inputs\": {\"ids\": [1, -2, 9007199254740993], \"flag\": [true, false],"
               " \"mix\": [1, 2.5], \"s\": [\"a\\u00e9\\n\", {\"b64\": \"AP8=\"}], \"x\": 7}}",
               &s_open, &req);
    assert_int_equal(kvc_tensor_list_size(req.inputs), 5);
    kvc_tensor_t *ids = kvc_tensor_list_find(req.inputs, "ids");
    assert_int_equal(kvc_tensor_dtype(ids), KVC_DT_INT64);
    const int64_t *iv = kvc_tensor_data(ids);
    assert_true(iv[0] == 1 && iv[1] == -2 && iv[2] == 9007199254740993LL);
    kvc_tensor_t *flag = kvc_tensor_list_find(req.inputs, "flag");
    assert_int_equal(kvc_tensor_dtype(flag), KVC_DT_BOOL);
    assert_memory_equal(kvc_tensor_data(flag), "\1\0", 2);
    kvc_tensor_t *mix = kvc_tensor_list_find(req.inputs, "mix");
    assert_int_equal(kvc_tensor_dtype(mix), KVC_DT_FLOAT);
    const float *mf = kvc_tensor_data(mix);
    assert_true(mf[0] == 1.0f && mf[1] == 2.5f);
    kvc_tensor_t *s = kvc_tensor_list_find(req.inputs, "s");
    assert_int_equal(kvc_tensor_dtype(s), KVC_DT_STRING);
    size_t n;
    const uint8_t *b = kvc_tensor_string(s, 0, &n);
    assert_int_equal(n, 4);
    assert_memory_equal(b, "a\xc3\xa9\n", 4);
    b = kvc_tensor_string(s, 1, &n);
    assert_int_equal(n, 2);
    assert_memory_equal(b, "\x00\xff", 2);
    kvc_tensor_t *x = kvc_tensor_list_find(req.inputs, "x");
    assert_int_equal(kvc_tensor_ndim(x), 0);
    assert_int_equal(kvc_tensor_count(x), 1);
    kvc_json_tensor_request_clear(&req);
}

static void test_row_plain_with_signature(void **state)
{
    kvc_json_tensor_spec_t spec = {"x", KVC_DT_INT32};
    kvc_json_tensor_opts_t opts = {{1000, 1 << 20}, &spec, 1, 0};
    kvc_json_tensor_request_t req;
    s_parse_ok(
        "{\"signature_name\": \"serving_default\", \"instances\": [[1, 2], [3, 4], [5, -6]]}",
        &opts, &req);
    assert_int_equal(req.format, KVC_JSON_TENSOR_ROW);
    assert_string_equal(req.signature_name, "serving_default");
    kvc_tensor_t *t = kvc_tensor_list_at(req.inputs, 0);
    assert_string_equal(kvc_tensor_name(t), "x");
    assert_int_equal(kvc_tensor_dtype(t), KVC_DT_INT32);
    s_assert_shape(t, 2, (int64_t[]){3, 2});
    const int32_t *v = kvc_tensor_data(t);
    assert_true(v[0] == 1 && v[5] == -6);
    kvc_json_tensor_request_clear(&req);
}

static void test_row_named_objects(void **state)
{
    kvc_json_tensor_request_t req;
    s_parse_ok("{\"instances\": [{\"a\": [1, 2], \"b\": \"s\"}, {\"b\": {\"b64\": \"aGk=\"}, "
               "\"a\": [3, 4]}]}",
               &s_open, &req);
    kvc_tensor_t *a = kvc_tensor_list_find(req.inputs, "a");
    kvc_tensor_t *b = kvc_tensor_list_find(req.inputs, "b");
    s_assert_shape(a, 2, (int64_t[]){2, 2});
    s_assert_shape(b, 1, (int64_t[]){2});
    const int64_t *av = kvc_tensor_data(a);
    assert_true(av[0] == 1 && av[3] == 4);
    size_t n;
    const uint8_t *s = kvc_tensor_string(b, 1, &n);
    assert_int_equal(n, 2);
    assert_memory_equal(s, "hi", 2);
    kvc_json_tensor_request_clear(&req);
    /* Instances that are b64 objects are values, not named inputs. */
    s_parse_ok("{\"instances\": [{\"b64\": \"AQID\"}, {\"b64\": \"BA\"}]}", &s_open, &req);
    kvc_tensor_t *t = kvc_tensor_list_at(req.inputs, 0);
    assert_int_equal(kvc_tensor_dtype(t), KVC_DT_STRING);
    s_assert_shape(t, 1, (int64_t[]){2});
    s = kvc_tensor_string(t, 1, &n);
    assert_int_equal(n, 1);
    assert_int_equal(s[0], 4);
    kvc_json_tensor_request_clear(&req);
}

static void test_nan_infinity(void **state)
{
    kvc_json_tensor_spec_t spec = {"", KVC_DT_DOUBLE};
    kvc_json_tensor_opts_t opts = {{1000, 1 << 20}, &spec, 1, 0};
    kvc_json_tensor_request_t req;
    s_parse_ok("{\"inputs\": [NaN, Infinity, -Infinity, 1e308, 2.2250738585072011e-308]}", &opts,
               &req);
    const double *d = kvc_tensor_data(kvc_tensor_list_at(req.inputs, 0));
    assert_true(isnan(d[0]) && d[1] == INFINITY && d[2] == -INFINITY && d[3] == 1e308);
    assert_true(d[4] == 2.2250738585072011e-308);
    kvc_json_tensor_request_clear(&req);
    s_parse_ok("{\"inputs\": [NaN, -Infinity]}", &s_open, &req);
    kvc_tensor_t *t = kvc_tensor_list_at(req.inputs, 0);
    assert_int_equal(kvc_tensor_dtype(t), KVC_DT_FLOAT);
    kvc_json_tensor_request_clear(&req);
}

static void test_errors_say_where_and_what(void **state)
{
    kvc_json_tensor_spec_t fspec = {"images", KVC_DT_FLOAT};
    kvc_json_tensor_opts_t fopts = {{1000, 1 << 20}, &fspec, 1, 0};
    s_parse_err("{\"instances\": [[1, 2, 3], [1, 2, 3], [1, 2, 3], [1, 2]]}", &s_open, KVC_EPARSE,
                "instances[3]: expected 3 elements in dimension 1, got 2");
    s_parse_err("{\"inputs\": {\"images\": [[1, 2], [3, -]]}}", &fopts, KVC_EPARSE,
                "inputs.images[1][1]: invalid number (expected a number)");
    s_parse_err("{\"inputs\": {\"images\": [[1, 2], [3, \"x\"]]}}", &fopts, KVC_EPARSE,
                "inputs.images[1][1]: expected a number");
    s_parse_err("{\"inputs\": {\"images\": [[1, 2], [3, 4}}}", &fopts, KVC_EPARSE,
                "offset 36: unexpected character '}', expected ',' or ']'");
    s_parse_err("{\"inputs\": [1, 2", &s_open, KVC_EPARSE,
                "offset 16: unexpected end of input, expected ',' or ']'");
    s_parse_err("{\"instances\": [1], \"inputs\": [1]}", &s_open, KVC_EPARSE,
                "offset 28: 'inputs': a request has either 'instances' or 'inputs', not both");
    s_parse_err("{\"signature_name\": \"x\"}", &s_open, KVC_EPARSE,
                "missing 'instances' or 'inputs'");
    s_parse_err("{\"inputs\": [1]} x", &s_open, KVC_EPARSE,
                "offset 16: trailing bytes after the request object");
    s_parse_err("{\"instances\": [{\"a\": 1, \"b\": 2}, {\"a\": 3}]}", &s_open, KVC_EPARSE,
                "instances[1]: missing input 'b'");
    s_parse_err("{\"instances\": [{\"a\": 1}, {\"a\": 3, \"c\": 1}]}", &s_open, KVC_EPARSE,
                "instances[1]: input 'c' is not in instances[0]");
    s_parse_err("{\"instances\": [{\"a\": 1}, [1]]}", &s_open, KVC_EPARSE,
                "offset 25: instances[1]: expected an object of named inputs like instances[0]");
    s_parse_err("{\"instances\": [{\"a\": [1, 2]}, {\"a\": [1, 2, 3]}]}", &s_open, KVC_EPARSE,
                "instances[1].a: expected 2 elements in dimension 1, got 3");
    s_parse_err("{\"instances\": [[1], [[2]]]}", &s_open, KVC_EPARSE,
                "instances[1][0]: expected a scalar, got a list (elements must have the same "
                "shape)");
    s_parse_err("{\"instances\": [[1], 2]}", &s_open, KVC_EPARSE,
                "instances[1]: expected a list of 1 elements in dimension 1");
    s_parse_err("{\"inputs\": [\"a\", 1]}", &s_open, KVC_EPARSE,
                "inputs[1]: expected a string or {\"b64\": ...}");
    s_parse_err("{\"inputs\": [{\"b64\": \"!!\"}]}", &s_open, KVC_EPARSE,
                "inputs[0]: invalid base64");
    s_parse_err("{\"inputs\": [\"\\ud800x\"]}", &s_open, KVC_EPARSE,
                "offset 13: unpaired surrogate in \\u escape");
    s_parse_err("{\"inputs\": [[[[[[[[[1]]]]]]]]]}", &s_open, KVC_EPARSE,
                "inputs[0][0][0][0][0][0][0][0]: more than 8 dimensions");
    kvc_json_tensor_spec_t i8 = {"", KVC_DT_INT8};
    kvc_json_tensor_opts_t i8opts = {{1000, 1 << 20}, &i8, 1, 0};
    s_parse_err("{\"inputs\": [127, 128]}", &i8opts, KVC_EPARSE,
                "inputs[1]: number out of range for DT_INT8");
    s_parse_err("{\"inputs\": [1, 1.5]}", &i8opts, KVC_EPARSE,
                "inputs[1]: invalid number (expected an integer)");
}

/* int32/int64 lists take the parser's fast path: its edges must be exact and
 * anything it cannot take must still get the full message. */
static void test_int_list_edges(void **state)
{
    kvc_json_tensor_spec_t i32 = {"", KVC_DT_INT32}, i64 = {"", KVC_DT_INT64};
    kvc_json_tensor_opts_t o32 = {{1000, 1 << 20}, &i32, 1, 0}, o64 = {{1000, 1 << 20}, &i64, 1, 0};
    kvc_json_tensor_request_t req;
    s_parse_ok("{\"inputs\": [2147483647, -2147483648, 0, -0, 7]}", &o32, &req);
    const int32_t *v32 = kvc_tensor_data(kvc_tensor_list_at(req.inputs, 0));
    assert_true(v32[0] == INT32_MAX && v32[1] == INT32_MIN && v32[2] == 0 && v32[3] == 0 &&
                v32[4] == 7);
    kvc_json_tensor_request_clear(&req);
    s_parse_ok("{\"inputs\": [9223372036854775807,-9223372036854775808, 1000000000000000000]}",
               &o64, &req);
    const int64_t *v64 = kvc_tensor_data(kvc_tensor_list_at(req.inputs, 0));
    assert_true(v64[0] == INT64_MAX && v64[1] == INT64_MIN && v64[2] == 1000000000000000000);
    kvc_json_tensor_request_clear(&req);
    s_parse_err("{\"inputs\": [1, 2147483648]}", &o32, KVC_EPARSE,
                "inputs[1]: number out of range for DT_INT32");
    s_parse_err("{\"inputs\": [1, -2147483649]}", &o32, KVC_EPARSE,
                "inputs[1]: number out of range for DT_INT32");
    s_parse_err("{\"inputs\": [1, 9223372036854775808]}", &o64, KVC_EPARSE,
                "inputs[1]: number out of range for DT_INT64");
    s_parse_err("{\"inputs\": [1, 99999999999999999999999]}", &o64, KVC_EPARSE,
                "inputs[1]: number out of range for DT_INT64");
    s_parse_err("{\"inputs\": [1, 2.5]}", &o32, KVC_EPARSE,
                "inputs[1]: invalid number (expected an integer)");
    s_parse_err("{\"inputs\": [1, 1e3]}", &o64, KVC_EPARSE,
                "inputs[1]: invalid number (expected an integer)");
    s_parse_err("{\"inputs\": [1, 01]}", &o32, KVC_EPARSE,
                "offset 16: unexpected character '1', expected ',' or ']'");
}

/* Value slots grow with the inputs met; many named inputs all read back. */
static void test_many_named_inputs(void **state)
{
    char json[4096];
    size_t w = (size_t)snprintf(json, sizeof json, "{\"instances\": [");
    for (int inst = 0; inst < 2; inst++) {
        w += (size_t)snprintf(json + w, sizeof json - w, "%s{", inst ? ", " : "");
        for (int i = 0; i < 40; i++)
            w += (size_t)snprintf(json + w, sizeof json - w, "%s\"in%d\": [%d]", i ? ", " : "",
                                  (i * 7) % 40, inst * 100 + (i * 7) % 40);
        w += (size_t)snprintf(json + w, sizeof json - w, "}");
    }
    snprintf(json + w, sizeof json - w, "]}");
    kvc_json_tensor_request_t req;
    s_parse_ok(json, &s_open, &req);
    assert_int_equal(kvc_tensor_list_size(req.inputs), 40);
    for (int i = 0; i < 40; i++) {
        char name[16];
        snprintf(name, sizeof name, "in%d", i);
        kvc_tensor_t *t = kvc_tensor_list_find(req.inputs, name);
        assert_non_null(t);
        s_assert_shape(t, 2, (int64_t[]){2, 1});
        const int64_t *v = kvc_tensor_data(t);
        assert_true(v[0] == i && v[1] == 100 + i);
    }
    kvc_json_tensor_request_clear(&req);
}

/* Names land in protobuf string fields (map keys, signature_name): invalid
 * UTF-8 there is a 400 saying which string and where; string values are
 * bytes and stay allowed. */
static void test_names_must_be_utf8(void **state)
{
    s_parse_err("{\"inputs\": {\"\xff\xfe\": [1]}}", &s_open, KVC_EPARSE,
                "offset 13: inputs: input name is not valid UTF-8");
    s_parse_err("{\"inputs\": {\"a\": [1], \"\xc3\xa9\xff\": [2]}}", &s_open, KVC_EPARSE,
                "offset 25: inputs: input name is not valid UTF-8");
    /* An overlong NUL (0xe0 0x80 0x80). */
    s_parse_err("{\"instances\": [{\"a\": 1}, {\"\xe0\x80\x80\": 2}]}", &s_open, KVC_EPARSE,
                "offset 27: instances[1]: input name is not valid UTF-8");
    s_parse_err("{\"signature_name\": \"s\xf8\", \"inputs\": [1]}", &s_open, KVC_EPARSE,
                "offset 21: signature_name is not valid UTF-8");
    s_parse_err("{\"x\x80\": 1, \"inputs\": [1]}", &s_open, KVC_EPARSE,
                "offset 3: key is not valid UTF-8");
    /* Escapes: a lone surrogate decodes to no UTF-8 and is refused. */
    s_parse_err("{\"inputs\": {\"a\\udc00\": [1]}}", &s_open, KVC_EPARSE,
                "offset 14: unpaired surrogate in \\u escape");

    kvc_json_tensor_request_t req;
    s_parse_ok("{\"signature_name\": \"\xe2\x82\xac\", \"inputs\": {\"\\ud83d\\ude00\xc3\xa9\": "
               "[\"\xff\", {\"b64\": \"/w==\"}]}}",
               &s_open, &req);
    assert_string_equal(req.signature_name, "\xe2\x82\xac");
    kvc_tensor_t *t = kvc_tensor_list_at(req.inputs, 0);
    assert_string_equal(kvc_tensor_name(t), "\xf0\x9f\x98\x80\xc3\xa9");
    size_t n;
    const uint8_t *b = kvc_tensor_string(t, 0, &n);
    assert_int_equal(n, 1);
    assert_int_equal(b[0], 0xff);
    kvc_json_tensor_request_clear(&req);
}

/* An unnamed value for a signature of several inputs would reach the
 * backend as an input named ''; it is a 400 that says how to fix it. */
static void test_unnamed_with_several_inputs(void **state)
{
    kvc_json_tensor_spec_t specs[2] = {{"a", KVC_DT_FLOAT}, {"b", KVC_DT_INT64}};
    kvc_json_tensor_opts_t opts = {{1000, 1 << 20}, specs, 2, 0};
    const char *columnar = "offset 11: inputs: the signature has 2 inputs ('a', 'b'), so "
                           "'inputs' must be an object keyed by input name";
    s_parse_err("{\"inputs\": 1.5}", &opts, KVC_EPARSE, columnar);
    s_parse_err("{\"inputs\": [1.5, 2]}", &opts, KVC_EPARSE, columnar);
    s_parse_err("{\"inputs\": {\"b64\": \"AA==\"}}", &opts, KVC_EPARSE, columnar);
    s_parse_err("{\"instances\": [1.5]}", &opts, KVC_EPARSE,
                "offset 15: instances[0]: the signature has 2 inputs ('a', 'b'), so each "
                "instance must be an object keyed by input name");
    s_parse_err("{\"signature_name\": \"\", \"instances\": [ 1.5]}", &opts, KVC_EPARSE,
                "offset 38: instances[0]: the signature has 2 inputs ('a', 'b'), so each "
                "instance must be an object keyed by input name");
    /* Many inputs: the list is cut short. */
    kvc_json_tensor_spec_t many[20];
    char names[20][16];
    for (int i = 0; i < 20; i++) {
        snprintf(names[i], sizeof names[i], "input_%02d", i);
        many[i].name = names[i];
        many[i].dtype = KVC_DT_FLOAT;
    }
    kvc_json_tensor_opts_t mopts = {{1000, 1 << 20}, many, 20, 0};
    s_parse_err(
        "{\"inputs\": [1]}", &mopts, KVC_EPARSE,
        "offset 11: inputs: the signature has 20 inputs ('input_00', 'input_01', "
        "'input_02', 'input_03', 'input_04', 'input_05', 'input_06', 'input_07', "
        "'input_08', 'input_09', 'input_10', 'input_11', 'input_12', ...), so 'inputs' must "
        "be an object keyed by input name");

    /* Named inputs are fine; so is a request naming another signature,
     * which the caller parses again with that signature's inputs. */
    kvc_json_tensor_request_t req;
    s_parse_ok("{\"inputs\": {\"a\": [1.5], \"b\": [2]}}", &opts, &req);
    assert_int_equal(kvc_tensor_list_size(req.inputs), 2);
    kvc_json_tensor_request_clear(&req);
    s_parse_ok("{\"instances\": [1.5], \"signature_name\": \"single\"}", &opts, &req);
    assert_string_equal(kvc_tensor_name(kvc_tensor_list_at(req.inputs, 0)), "");
    kvc_json_tensor_request_clear(&req);
}

/* A decimal past the dtype's range is refused, as TF Serving refuses lossy
 * conversions; the bare NaN/Infinity tokens are still accepted. */
/* Strict specs (a config's declared inputs): every input takes its
 * declared dtype, and anything else is refused, never inferred. */
static void test_strict_declared_inputs(void **state)
{
    (void)state;
    kvc_json_tensor_spec_t one = {"ids", KVC_DT_INT32};
    kvc_json_tensor_opts_t o1 = {{1000, 1 << 20}, &one, 1, 1};
    kvc_json_tensor_request_t r = {0};
    s_parse_ok("{\"instances\": [[1, 2, 3]]}", &o1, &r);
    assert_int_equal(kvc_tensor_list_size(r.inputs), 1);
    const kvc_tensor_t *t = kvc_tensor_list_at(r.inputs, 0);
    assert_string_equal(kvc_tensor_name(t), "ids");
    assert_int_equal(kvc_tensor_dtype(t), KVC_DT_INT32);
    kvc_json_tensor_request_clear(&r);
    s_parse_ok("{\"inputs\": {\"ids\": [7]}}", &o1, &r);
    assert_int_equal(kvc_tensor_dtype(kvc_tensor_list_at(r.inputs, 0)), KVC_DT_INT32);
    kvc_json_tensor_request_clear(&r);
    s_parse_err("{\"inputs\": {\"x\": [1.5]}}", &o1, KVC_EPARSE,
                "inputs: 'x' is not an input of this model ('ids')");
    s_parse_err("{\"instances\": [{\"ids\": 1, \"mask\": 1}]}", &o1, KVC_EPARSE,
                "instances[0]: 'mask' is not an input of this model ('ids')");
    /* Not strict, the same unknown input has its dtype inferred. */
    kvc_json_tensor_opts_t loose = o1;
    loose.strict = 0;
    s_parse_ok("{\"inputs\": {\"x\": [1.5]}}", &loose, &r);
    assert_int_equal(kvc_tensor_dtype(kvc_tensor_list_at(r.inputs, 0)), KVC_DT_FLOAT);
    kvc_json_tensor_request_clear(&r);
    /* Two declared inputs: an unnamed value has no input to go to. */
    kvc_json_tensor_spec_t two[2] = {{"a", KVC_DT_FLOAT}, {"b", KVC_DT_INT64}};
    kvc_json_tensor_opts_t o2 = {{1000, 1 << 20}, two, 2, 1};
    s_parse_err("{\"inputs\": [1.5]}", &o2, KVC_EPARSE,
                "inputs: an unnamed input, but the model's 2 inputs ('a', 'b') must each be "
                "sent by name");
    s_parse_ok("{\"inputs\": {\"a\": [1], \"b\": [2]}}", &o2, &r);
    assert_int_equal(kvc_tensor_dtype(kvc_tensor_list_at(r.inputs, 0)), KVC_DT_FLOAT);
    assert_int_equal(kvc_tensor_dtype(kvc_tensor_list_at(r.inputs, 1)), KVC_DT_INT64);
    kvc_json_tensor_request_clear(&r);
    /* Nothing declared: nothing can be sent. */
    kvc_json_tensor_opts_t none = {{1000, 1 << 20}, NULL, 0, 1};
    s_parse_err("{\"instances\": [1]}", &none, KVC_EPARSE,
                "instances: this model declares no inputs, so none can be sent");
}

static void test_float_out_of_range(void **state)
{
    kvc_json_tensor_spec_t dspec = {"x", KVC_DT_DOUBLE};
    kvc_json_tensor_opts_t dopts = {{1000, 1 << 20}, &dspec, 1, 0};
    s_parse_err("{\"inputs\": {\"x\": [[1, 2], [3, 1e400]]}}", &dopts, KVC_EPARSE,
                "inputs.x[1][1]: number out of range for DT_DOUBLE");
    s_parse_err("{\"instances\": [{\"x\": -2e308}]}", &dopts, KVC_EPARSE,
                "instances[0].x: number out of range for DT_DOUBLE");
    kvc_json_tensor_spec_t fspec = {"x", KVC_DT_FLOAT};
    kvc_json_tensor_opts_t fopts = {{1000, 1 << 20}, &fspec, 1, 0};
    s_parse_err("{\"inputs\": [1, 1e39]}", &fopts, KVC_EPARSE,
                "inputs[1]: number out of range for DT_FLOAT");
    kvc_json_tensor_spec_t hspec = {"x", KVC_DT_HALF};
    kvc_json_tensor_opts_t hopts = {{1000, 1 << 20}, &hspec, 1, 0};
    s_parse_err("{\"inputs\": [-1e5]}", &hopts, KVC_EPARSE,
                "inputs[0]: number out of range for DT_HALF");
    /* Inferred float32 (no signature): the same rule. */
    s_parse_err("{\"inputs\": [0.5, 3.5e38]}", &s_open, KVC_EPARSE,
                "inputs[1]: number out of range for DT_FLOAT");
    s_parse_err("{\"inputs\": [1, 2, 1e39]}", &s_open, KVC_EPARSE,
                "inputs[2]: number out of range for DT_FLOAT");

    kvc_json_tensor_request_t req;
    s_parse_ok("{\"inputs\": [3.4028234e38, -Infinity, 1e-50, NaN]}", &fopts, &req);
    const float *f = kvc_tensor_data(kvc_tensor_list_at(req.inputs, 0));
    assert_true(f[0] == 3.4028234e38f && f[1] == -INFINITY && f[2] == 0.0f && isnan(f[3]));
    kvc_json_tensor_request_clear(&req);
    s_parse_ok("{\"inputs\": [65504, -Infinity]}", &hopts, &req);
    const uint16_t *h = kvc_tensor_data(kvc_tensor_list_at(req.inputs, 0));
    assert_int_equal(h[0], 0x7bff);
    assert_int_equal(h[1], 0xfc00);
    kvc_json_tensor_request_clear(&req);
}

static void test_limits(void **state)
{
    kvc_json_tensor_opts_t small = {{4, 1 << 20}, NULL, 0, 0};
    s_parse_err("{\"inputs\": [1.0, 2, 3, 4, 5]}", &small, KVC_ERANGE,
                "inputs[4]: tensor larger than the request limits");
    kvc_json_tensor_opts_t bytes = {{1000, 16}, NULL, 0, 0};
    s_parse_err("{\"inputs\": {\"a\": [1.0, 2, 3], \"b\": [1.0, 2]}}", &bytes, KVC_ERANGE,
                "request too large (limits: 1000 elements, 16 bytes)");
    kvc_json_tensor_request_t req;
    s_parse_ok("{\"inputs\": [1.0, 2, 3, 4]}", &small, &req);
    kvc_json_tensor_request_clear(&req);
}

static void test_alloc_failures_never_leak(void **state)
{
    const char *s = "{\"signature_name\": \"a\", \"instances\": [{\"a\": [1.5, 2], \"b\": "
                    "\"xyz\", \"c\": [1, 2]}, {\"a\": [3, 4], \"b\": \"q\", \"c\": [3, 4.5]}]}";
    int ok = 0;
    for (long n = 0; n < 200 && !ok; n++) {
        kvc_json_tensor_request_t req;
        kvc_err_t err;
        kvc_alloc_fail_after(n);
        int rc = kvc_json_tensor_parse_request(s, strlen(s), &s_open, &req, &err);
        kvc_alloc_fail_after(-1);
        if (rc == KVC_OK) {
            ok = 1;
            assert_int_equal(kvc_tensor_list_size(req.inputs), 3);
        } else {
            assert_int_equal(rc, KVC_ENOMEM);
        }
        kvc_json_tensor_request_clear(&req);
    }
    assert_true(ok);
}

/* Writes outputs and compares the JSON exactly. */
static void s_write_eq(kvc_tensor_list_t *outs, kvc_json_tensor_format_t fmt, const char *want)
{
    kvc_buf_t b;
    kvc_buf_init(&b, 1 << 20);
    kvc_err_t err = {0, ""};
    int rc = kvc_json_tensor_write_response(outs, fmt, &b, &err);
    if (rc)
        fail_msg("write failed: %s", err.msg);
    assert_string_equal(b.data, want);
    kvc_buf_free(&b);
}

static void test_write_responses(void **state)
{
    kvc_tensor_limits_t lim = {1000, 1 << 20};
    kvc_tensor_list_t *outs = kvc_tensor_list_new();
    kvc_tensor_t *t = kvc_tensor_new("scores", KVC_DT_FLOAT, &lim);
    float f[4] = {1.5f, 0.1f, NAN, -INFINITY};
    assert_int_equal(kvc_tensor_append(t, f, 4), 0);
    assert_int_equal(kvc_tensor_set_shape(t, (int64_t[]){2, 2}, 2), 0);
    assert_int_equal(kvc_tensor_list_add(outs, &t), 0);
    s_write_eq(outs, KVC_JSON_TENSOR_COLUMNAR, "{\"outputs\": [[1.5,0.1],[NaN,-Infinity]]}");
    s_write_eq(outs, KVC_JSON_TENSOR_ROW, "{\"predictions\": [[1.5,0.1],[NaN,-Infinity]]}");
    t = kvc_tensor_new("label", KVC_DT_STRING, &lim);
    assert_int_equal(kvc_tensor_append_string(t, "cat \"1\"", 7), 0);
    assert_int_equal(kvc_tensor_append_string(t, "\xff\x00", 2), 0);
    assert_int_equal(kvc_tensor_set_shape(t, (int64_t[]){2}, 1), 0);
    assert_int_equal(kvc_tensor_list_add(outs, &t), 0);
    t = kvc_tensor_new("img_bytes", KVC_DT_STRING, &lim);
    assert_int_equal(kvc_tensor_append_string(t, "ab", 2), 0);
    assert_int_equal(kvc_tensor_append_string(t, "", 0), 0);
    assert_int_equal(kvc_tensor_set_shape(t, (int64_t[]){2}, 1), 0);
    assert_int_equal(kvc_tensor_list_add(outs, &t), 0);
    s_write_eq(outs, KVC_JSON_TENSOR_ROW,
               "{\"predictions\": [{\"scores\": [1.5,0.1], \"label\": \"cat \\\"1\\\"\", "
               "\"img_bytes\": {\"b64\": \"YWI=\"}},{\"scores\": [NaN,-Infinity], \"label\": "
               "{\"b64\": \"/wA=\"}, \"img_bytes\": {\"b64\": \"\"}}]}");
    s_write_eq(outs, KVC_JSON_TENSOR_COLUMNAR,
               "{\"outputs\": {\"scores\": [[1.5,0.1],[NaN,-Infinity]], \"label\": [\"cat "
               "\\\"1\\\"\",{\"b64\": \"/wA=\"}], \"img_bytes\": [{\"b64\": \"YWI=\"},{\"b64\": "
               "\"\"}]}}");
    /* Different batch sizes cannot be written as rows. */
    t = kvc_tensor_new("odd", KVC_DT_INT64, &lim);
    int64_t v[3] = {1, 2, 3};
    assert_int_equal(kvc_tensor_append(t, v, 3), 0);
    assert_int_equal(kvc_tensor_list_add(outs, &t), 0);
    kvc_buf_t b;
    kvc_buf_init(&b, 1 << 20);
    kvc_err_t err;
    assert_int_equal(kvc_json_tensor_write_response(outs, KVC_JSON_TENSOR_ROW, &b, &err),
                     KVC_EINVAL);
    assert_string_equal(err.msg, "outputs have different batch sizes (3 for 'odd', 2)");
    assert_int_equal(b.len, 0);
    kvc_buf_free(&b);
    /* A full buffer is an error, never a cut response. */
    kvc_buf_init(&b, 20);
    assert_int_equal(kvc_json_tensor_write_response(outs, KVC_JSON_TENSOR_COLUMNAR, &b, &err),
                     KVC_ERANGE);
    assert_int_equal(b.len, 0);
    kvc_buf_free(&b);
    kvc_tensor_list_destroy(&outs);
    assert_null(outs);
}

static void test_round_trip_random_floats(void **state)
{
    kvc_tensor_limits_t lim = {100000, 1 << 22};
    uint64_t x = 12345;
    kvc_tensor_list_t *outs = kvc_tensor_list_new();
    kvc_tensor_t *t = kvc_tensor_new("y", KVC_DT_FLOAT, &lim);
    for (int i = 0; i < 20000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint32_t bits = (uint32_t)x;
        float f;
        memcpy(&f, &bits, 4);
        if (isnan(f))
            f = 0.25f; /* NaN payloads are not kept by text */
        assert_int_equal(kvc_tensor_append(t, &f, 1), 0);
    }
    assert_int_equal(kvc_tensor_set_shape(t, (int64_t[]){100, 50, 4}, 3), 0);
    assert_int_equal(kvc_tensor_list_add(outs, &t), 0);
    kvc_buf_t b;
    kvc_buf_init(&b, 1 << 24);
    kvc_err_t err;
    assert_int_equal(kvc_json_tensor_write_response(outs, KVC_JSON_TENSOR_COLUMNAR, &b, &err), 0);
    /* "outputs" -> "inputs" to read it back. */
    char *in = b.data + 1;
    memcpy(in, "{\"inputs\"", 9);
    kvc_json_tensor_spec_t spec = {"y", KVC_DT_FLOAT};
    kvc_json_tensor_opts_t opts = {lim, &spec, 1, 0};
    kvc_json_tensor_request_t req;
    s_parse_ok(in, &opts, &req);
    assert_true(kvc_tensor_equal(kvc_tensor_list_at(req.inputs, 0), kvc_tensor_list_at(outs, 0)));
    kvc_json_tensor_request_clear(&req);
    kvc_buf_free(&b);
    kvc_tensor_list_destroy(&outs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_columnar_unnamed_float),
        cmocka_unit_test(test_inference_int_bool_string_promotion),
        cmocka_unit_test(test_row_plain_with_signature),
        cmocka_unit_test(test_row_named_objects),
        cmocka_unit_test(test_int_list_edges),
        cmocka_unit_test(test_many_named_inputs),
        cmocka_unit_test(test_nan_infinity),
        cmocka_unit_test(test_errors_say_where_and_what),
        cmocka_unit_test(test_names_must_be_utf8),
        cmocka_unit_test(test_unnamed_with_several_inputs),
        cmocka_unit_test(test_float_out_of_range),
        cmocka_unit_test(test_strict_declared_inputs),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_alloc_failures_never_leak),
        cmocka_unit_test(test_write_responses),
        cmocka_unit_test(test_round_trip_random_floats),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
