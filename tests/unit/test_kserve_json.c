/*
 * Unit tests of proxy/kserve_json.c: KServe v2 JSON requests (flat and
 * nested data, every datatype string, data before datatype), the binary
 * tensor extension with hostile sizes, exact error messages (UTF-8 names,
 * shapes, ragged data, floats out of range), and responses in JSON and
 * binary form with the header length reported.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "base.h"
#include "kserve_json.h"
#include "tensor.h"

static const kvc_tensor_limits_t s_lim = {1000000, 64 << 20};

static void s_ok(const char *body, size_t len, size_t hlen, kvc_kserve_request_t *req)
{
    kvc_err_t err = {0, ""};
    int rc = kvc_kserve_json_parse_request(body, len, hlen, &s_lim, req, &err);
    if (rc)
        fail_msg("parse failed (%d): %s", rc, err.msg);
}

static void s_err(const char *body, size_t len, size_t hlen, int code, const char *msg)
{
    kvc_kserve_request_t req;
    kvc_err_t err = {0, ""};
    int rc = kvc_kserve_json_parse_request(body, len, hlen, &s_lim, &req, &err);
    if (rc != code || strcmp(err.msg, msg) != 0)
        fail_msg("want %d \"%s\"\n  got  %d \"%s\"", code, msg, rc, err.msg);
    assert_null(req.inputs);
}

static void test_dtype_names(void **state)
{
    const char *names[] = {"FP32",  "FP64", "INT32",  "UINT8", "INT16",  "INT8",  "BYTES",
                           "INT64", "BOOL", "UINT16", "FP16",  "UINT32", "UINT64"};
    const kvc_dtype_t dts[] = {KVC_DT_FLOAT, KVC_DT_DOUBLE, KVC_DT_INT32,  KVC_DT_UINT8,
                               KVC_DT_INT16, KVC_DT_INT8,   KVC_DT_STRING, KVC_DT_INT64,
                               KVC_DT_BOOL,  KVC_DT_UINT16, KVC_DT_HALF,   KVC_DT_UINT32,
                               KVC_DT_UINT64};
    for (size_t i = 0; i < sizeof dts / sizeof dts[0]; i++) {
        assert_string_equal(kvc_dtype_kserve_name(dts[i]), names[i]);
        assert_int_equal(kvc_dtype_from_kserve(names[i], strlen(names[i])), dts[i]);
    }
    assert_int_equal(kvc_dtype_from_kserve("FP3", 3), KVC_DT_INVALID);
    assert_int_equal(KVC_DT_HALF, 19);
    assert_int_equal(KVC_DT_UINT64, 23);
}

static void test_json_request(void **state)
{
    const char *s =
        "{\"id\": \"r1\", \"parameters\": {\"binary_data_output\": false, \"x\": 1},"
        " \"inputs\": [{\"name\": \"in0\", \"shape\": [2, 2], \"datatype\": \"FP32\","
        " \"data\": [[1.5, 2], [3, NaN]]},"
        " {\"data\": [1, -2, 3], \"name\": \"ids\", \"datatype\": \"INT64\", \"shape\": [3]},"
        " {\"name\": \"txt\", \"shape\": [2], \"datatype\": \"BYTES\", \"data\": [\"a\", \"\"]},"
        " {\"name\": \"h\", \"shape\": [1], \"datatype\": \"FP16\", \"data\": [0.5]},"
        " {\"name\": \"b\", \"shape\": [2], \"datatype\": \"BOOL\", \"data\": [false, true]}],"
        " \"outputs\": [{\"name\": \"out0\", \"parameters\": {\"binary_data\": true}},"
        " {\"name\": \"out1\"}]}";
    kvc_kserve_request_t req;
    s_ok(s, strlen(s), strlen(s), &req);
    assert_string_equal(req.id, "r1");
    assert_int_equal(req.binary_output, 0);
    assert_int_equal(kvc_tensor_list_size(req.inputs), 5);
    kvc_tensor_t *t = kvc_tensor_list_at(req.inputs, 0);
    assert_string_equal(kvc_tensor_name(t), "in0");
    assert_int_equal(kvc_tensor_ndim(t), 2);
    const float *f = kvc_tensor_data(t);
    assert_true(f[0] == 1.5f && f[2] == 3.0f && f[3] != f[3]);
    t = kvc_tensor_list_at(req.inputs, 1);
    assert_string_equal(kvc_tensor_name(t), "ids");
    assert_int_equal(((const int64_t *)kvc_tensor_data(t))[1], -2);
    t = kvc_tensor_list_at(req.inputs, 2);
    assert_int_equal(kvc_tensor_count(t), 2);
    t = kvc_tensor_list_at(req.inputs, 3);
    assert_int_equal(((const uint16_t *)kvc_tensor_data(t))[0], 0x3800);
    t = kvc_tensor_list_at(req.inputs, 4);
    assert_memory_equal(kvc_tensor_data(t), "\0\1", 2);
    assert_int_equal(req.n_outputs, 2);
    assert_true(kvc_kserve_json_wants_binary(&req, "out0"));
    assert_false(kvc_kserve_json_wants_binary(&req, "out1"));
    assert_false(kvc_kserve_json_wants_binary(&req, "other"));
    kvc_kserve_json_request_clear(&req);
}

/* Builds header + binary payload into buf; returns the total length. */
static size_t s_binary_body(char *buf, const char *header, const void *bin, size_t bin_len,
                            size_t *hlen)
{
    *hlen = strlen(header);
    memcpy(buf, header, *hlen);
    memcpy(buf + *hlen, bin, bin_len);
    return *hlen + bin_len;
}

static void test_binary_extension(void **state)
{
    char body[512];
    size_t hlen;
    float f[3] = {1.0f, -2.5f, 3.25f};
    uint8_t bin[64];
    memcpy(bin, f, 12);
    /* Two BYTES elements "ab" and "" with 4-byte little-endian prefixes. */
    memcpy(bin + 12,
           "\x02\x00\x00\x00"
           "ab"
           "\x00\x00\x00\x00",
           10);
    size_t len = s_binary_body(body,
                               "{\"inputs\": [{\"name\": \"x\", \"shape\": [1, 3], \"datatype\": "
                               "\"FP32\", \"parameters\": {\"binary_data_size\": 12}},"
                               " {\"name\": \"y\", \"shape\": [1], \"datatype\": \"INT32\","
                               " \"data\": [7]},"
                               " {\"name\": \"s\", \"shape\": [2], \"datatype\": \"BYTES\","
                               " \"parameters\": {\"binary_data_size\": 10}}]}",
                               bin, 22, &hlen);
    kvc_kserve_request_t req;
    s_ok(body, len, hlen, &req);
    assert_int_equal(kvc_tensor_list_size(req.inputs), 3);
    kvc_tensor_t *x = kvc_tensor_list_at(req.inputs, 0);
    assert_string_equal(kvc_tensor_name(x), "x");
    assert_memory_equal(kvc_tensor_data(x), f, 12);
    assert_string_equal(kvc_tensor_name(kvc_tensor_list_at(req.inputs, 1)), "y");
    kvc_tensor_t *s = kvc_tensor_list_at(req.inputs, 2);
    size_t n;
    const uint8_t *e = kvc_tensor_string(s, 0, &n);
    assert_int_equal(n, 2);
    assert_memory_equal(e, "ab", 2);
    kvc_tensor_string(s, 1, &n);
    assert_int_equal(n, 0);
    kvc_kserve_json_request_clear(&req);

    const char *h12 = "{\"inputs\": [{\"name\": \"x\", \"shape\": [1, 3], \"datatype\": "
                      "\"FP32\", \"parameters\": {\"binary_data_size\": 12}}]}";
    /* Fewer bytes than binary_data_size. */
    len = s_binary_body(body, h12, bin, 11, &hlen);
    s_err(body, len, hlen, KVC_EPARSE,
          "inputs[0] 'x': binary_data_size 12 exceeds the 11 bytes left");
    /* Extra bytes after the last tensor. */
    len = s_binary_body(body, h12, bin, 13, &hlen);
    s_err(body, len, hlen, KVC_EPARSE, "1 bytes after the last binary tensor");
    /* Size that does not match the shape. */
    len = s_binary_body(body,
                        "{\"inputs\": [{\"name\": \"x\", \"shape\": [1, 3], \"datatype\": "
                        "\"FP32\", \"parameters\": {\"binary_data_size\": 8}}]}",
                        bin, 8, &hlen);
    s_err(body, len, hlen, KVC_EPARSE,
          "inputs[0] 'x': binary_data_size 8 does not match shape [1, 3] of FP32");
    /* A BYTES length prefix that points past the section. */
    len = s_binary_body(body,
                        "{\"inputs\": [{\"name\": \"s\", \"shape\": [1], \"datatype\": "
                        "\"BYTES\", \"parameters\": {\"binary_data_size\": 6}}]}",
                        "\xff\xff\xff\x7f"
                        "ab",
                        6, &hlen);
    s_err(body, len, hlen, KVC_EPARSE,
          "inputs[0] 's': element 0: 2147483647 bytes past binary_data_size");
    /* Header length longer than the body. */
    s_err(body, 10, 11, KVC_EPARSE,
          "Inference-Header-Content-Length 11 is larger than the body (10)");
    /* A header cut inside the JSON. */
    s_err(h12, strlen(h12), 20, KVC_EPARSE,
          "offset 20: unexpected end of input, expected a string");
}

static void test_json_errors(void **state)
{
    const char *cases[][2] = {
        {"{\"inputs\": [{\"name\": \"x\", \"shape\": [2], \"datatype\": \"FP32\", \"data\": [1]}]}",
         "inputs[0] 'x': data has 1 elements, shape [2] needs 2"},
        {"{\"inputs\": [{\"name\": \"x\", \"shape\": [1], \"datatype\": \"FP8\", \"data\": [1]}]}",
         "inputs[0] 'x': unknown datatype 'FP8'"},
        {"{\"inputs\": [{\"name\": \"x\", \"shape\": [1], \"datatype\": \"INT8\", \"data\": "
         "[300]}]}",
         "inputs[0].data[0]: number out of range for DT_INT8"},
        {"{\"inputs\": [{\"name\": \"x\", \"shape\": [1], \"datatype\": \"FP32\"}]}",
         "inputs[0] 'x': missing 'data'"},
        {"{\"inputs\": [{\"name\": \"x\", \"datatype\": \"FP32\", \"data\": [1]}]}",
         "inputs[0] 'x': missing 'shape'"},
        {"{\"inputs\": []}", "inputs: must not be empty"},
        {"{\"id\": \"a\"}", "missing 'inputs'"},
        {"{\"inputs\": [{\"name\": \"x\", \"shape\": [1], \"datatype\": \"FP32\", \"data\": [1]},"
         " {\"name\": \"x\", \"shape\": [1], \"datatype\": \"FP32\", \"data\": [1]}]}",
         "inputs[1]: duplicate input 'x'"},
        {"{\"inputs\": [{\"name\": \"x\", \"shape\": [1], \"datatype\": \"BYTES\", \"data\": "
         "[1]}]}",
         "inputs[0].data[0]: expected a string or {\"b64\": ...}"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        s_err(cases[i][0], strlen(cases[i][0]), strlen(cases[i][0]), KVC_EPARSE, cases[i][1]);
    const char *huge = "{\"inputs\": [{\"name\": \"x\", \"shape\": [1000000, 1000000],"
                       " \"datatype\": \"FP32\", \"data\": [1]}]}";
    s_err(huge, strlen(huge), strlen(huge), KVC_ERANGE,
          "inputs[0] 'x': shape too large for the limits");
    const char *over = "{\"inputs\": [{\"name\": \"x\", \"shape\": [4611686018427387904, 4],"
                       " \"datatype\": \"FP32\", \"data\": [1]}]}";
    s_err(over, strlen(over), strlen(over), KVC_ERANGE,
          "inputs[0] 'x': shape too large for the limits");
}

/* Names land in protobuf string fields: invalid UTF-8 is a 400 that says
 * which string and where, while BYTES values stay raw bytes. */
static void test_names_must_be_utf8(void **state)
{
    const char *cases[][2] = {
        {"{\"inputs\": [{\"name\": \"a\xff\", \"shape\": [1], \"datatype\": \"FP32\", \"data\": "
         "[1]}]}",
         "offset 23: inputs[0].name is not valid UTF-8"},
        /* An overlong '/' (0xc0 0xaf) and a UTF-16 surrogate written in UTF-8. */
        {"{\"inputs\": [{\"name\": \"x\", \"shape\": [1], \"datatype\": \"FP32\", \"data\": [1]},"
         " {\"name\": \"\xc0\xaf\", \"shape\": [1], \"datatype\": \"FP32\", \"data\": [1]}]}",
         "offset 84: inputs[1].name is not valid UTF-8"},
        {"{\"inputs\": [{\"name\": \"x\", \"shape\": [1], \"datatype\": \"FP\xed\xa0\x80\", "
         "\"data\": [1]}]}",
         "offset 55: inputs[0].datatype is not valid UTF-8"},
        {"{\"id\": \"r\xe2\x82\", \"inputs\": []}", "offset 9: id is not valid UTF-8"},
        {"{\"outputs\": [{\"name\": \"ok\"}, {\"name\": \"\\u00e9\xf5\"}], \"inputs\": []}",
         "offset 45: outputs[1].name is not valid UTF-8"},
        {"{\"\xfe\": 1}", "offset 2: key is not valid UTF-8"},
        /* A lone surrogate escape is refused too (it decodes to no UTF-8). */
        {"{\"inputs\": [{\"name\": \"\\ud800\", \"shape\": [1], \"datatype\": \"FP32\", \"data\": "
         "[1]}]}",
         "offset 22: unpaired surrogate in \\u escape"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        s_err(cases[i][0], strlen(cases[i][0]), strlen(cases[i][0]), KVC_EPARSE, cases[i][1]);

    /* Valid multi-byte names and escapes pass; BYTES data may be any bytes. */
    const char *ok = "{\"id\": \"\xe6\x97\xa5\\u00e9\", \"inputs\": [{\"name\": "
                     "\"\xf0\x9f\x98\x80\\ud83d\\ude00\", \"shape\": [1], \"datatype\": "
                     "\"BYTES\", \"data\": [\"\xff\xfe\"]}], \"outputs\": [{\"name\": "
                     "\"\xc3\xa9\"}]}";
    kvc_kserve_request_t req;
    s_ok(ok, strlen(ok), strlen(ok), &req);
    assert_string_equal(req.id, "\xe6\x97\xa5\xc3\xa9");
    kvc_tensor_t *t = kvc_tensor_list_at(req.inputs, 0);
    assert_string_equal(kvc_tensor_name(t), "\xf0\x9f\x98\x80\xf0\x9f\x98\x80");
    size_t n;
    const uint8_t *b = kvc_tensor_string(t, 0, &n);
    assert_int_equal(n, 2);
    assert_memory_equal(b, "\xff\xfe", 2);
    assert_string_equal(req.outputs[0].name, "\xc3\xa9");
    kvc_kserve_json_request_clear(&req);
}

/* Shape dimensions and binary_data_size: path, offset and what is wanted. */
static void test_shape_errors_say_where(void **state)
{
    const char *cases[][2] = {
        {"{\"inputs\": [{\"name\": \"x\", \"shape\": [-2], \"datatype\": \"FP32\", \"data\": "
         "[1]}]}",
         "offset 36: inputs[0].shape[0]: must be a non-negative integer"},
        {"{\"inputs\": [{\"name\": \"x\", \"shape\": [2, 1.5], \"datatype\": \"FP32\", \"data\": "
         "[1]}]}",
         "offset 39: inputs[0].shape[1]: must be a non-negative integer"},
        {"{\"inputs\": [{\"name\": \"x\", \"shape\": [\"2\"], \"datatype\": \"FP32\", \"data\": "
         "[1]}]}",
         "offset 36: inputs[0].shape[0]: must be a non-negative integer"},
        {"{\"inputs\": [{\"name\": \"x\", \"shape\": [1, 9223372036854775808], \"datatype\": "
         "\"FP32\", \"data\": [1]}]}",
         "offset 39: inputs[0].shape[1]: dimension too large"},
        {"{\"inputs\": [{\"name\": \"x\", \"shape\": [18446744073709551616], \"datatype\": "
         "\"FP32\", \"data\": [1]}]}",
         "offset 36: inputs[0].shape[0]: dimension too large"},
        {"{\"inputs\": [{\"name\": \"x\", \"shape\": [1, 1, 1, 1, 1, 1, 1, 1, 1], \"datatype\": "
         "\"FP32\", \"data\": [1]}]}",
         "offset 60: inputs[0].shape: more than 8 dimensions"},
        {"{\"inputs\": [{\"name\": \"x\", \"shape\": [1], \"datatype\": \"FP32\", \"parameters\": "
         "{\"binary_data_size\": -4}}]}",
         "offset 95: inputs[0].parameters.binary_data_size: must be a non-negative integer"},
        {"{\"inputs\": [{\"name\": \"x\", \"shape\": [1], \"datatype\": \"FP32\", \"parameters\": "
         "{\"binary_data_size\": 4.0}}]}",
         "offset 95: inputs[0].parameters.binary_data_size: must be a non-negative integer"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        s_err(cases[i][0], strlen(cases[i][0]), strlen(cases[i][0]), KVC_EPARSE, cases[i][1]);
    /* -0 is 0. */
    const char *z = "{\"inputs\": [{\"name\": \"x\", \"shape\": [-0], \"datatype\": \"FP32\", "
                    "\"data\": []}]}";
    kvc_kserve_request_t req;
    s_ok(z, strlen(z), strlen(z), &req);
    assert_int_equal(kvc_tensor_shape(kvc_tensor_list_at(req.inputs, 0))[0], 0);
    kvc_kserve_json_request_clear(&req);
}

/*
 * "data" is row-major, flat or nested (the protocol allows either). Nested
 * data must be regular, like a tensor; its flattened count must match the
 * shape (Triton accepts any nesting with the right count, so we do too).
 */
static void test_nested_data(void **state)
{
    const char *ok[] = {
        "{\"inputs\": [{\"name\": \"x\", \"shape\": [2, 2], \"datatype\": \"INT32\", \"data\": "
        "[[1, 2], [3, 4]]}]}",
        "{\"inputs\": [{\"name\": \"x\", \"shape\": [2, 2], \"datatype\": \"INT32\", \"data\": "
        "[1, 2, 3, 4]}]}",
        "{\"inputs\": [{\"name\": \"x\", \"shape\": [2, 2], \"datatype\": \"INT32\", \"data\": "
        "[[1, 2, 3, 4]]}]}",
        "{\"inputs\": [{\"data\": [[[1], [2]], [[3], [4]]], \"name\": \"x\", \"shape\": [2, 2], "
        "\"datatype\": \"INT32\"}]}",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        kvc_kserve_request_t req;
        s_ok(ok[i], strlen(ok[i]), strlen(ok[i]), &req);
        kvc_tensor_t *t = kvc_tensor_list_at(req.inputs, 0);
        assert_int_equal(kvc_tensor_ndim(t), 2);
        assert_int_equal(kvc_tensor_shape(t)[0], 2);
        assert_int_equal(kvc_tensor_shape(t)[1], 2);
        const int32_t *v = kvc_tensor_data(t);
        assert_true(v[0] == 1 && v[1] == 2 && v[2] == 3 && v[3] == 4);
        kvc_kserve_json_request_clear(&req);
    }
    const char *bad[][2] = {
        {"{\"inputs\": [{\"name\": \"x\", \"shape\": [2, 2], \"datatype\": \"FP32\", \"data\": "
         "[[1, 2, 3], [4]]}]}",
         "inputs[0].data[1]: expected 3 elements in dimension 1, got 1"},
        {"{\"inputs\": [{\"data\": [[1, 2], [3, 4], [5]], \"name\": \"x\", \"shape\": [5], "
         "\"datatype\": \"FP32\"}]}",
         "inputs[0].data[2]: expected 2 elements in dimension 1, got 1"},
        {"{\"inputs\": [{\"name\": \"x\", \"shape\": [3], \"datatype\": \"INT64\", \"data\": "
         "[[1, 2], 3]}]}",
         "inputs[0].data[1]: expected a list of 2 elements in dimension 1"},
        {"{\"inputs\": [{\"name\": \"x\", \"shape\": [2], \"datatype\": \"FP32\", \"data\": "
         "[1, [2]]}]}",
         "inputs[0].data[1]: expected a scalar, got a list (elements must have the same shape)"},
        {"{\"inputs\": [{\"name\": \"x\", \"shape\": [2], \"datatype\": \"BYTES\", \"data\": "
         "[[\"a\"], [\"b\", \"c\"]]}]}",
         "inputs[0].data[1]: expected 1 elements in dimension 1, got 2"},
        /* Triton reads no elements from a bare scalar, so neither do we. */
        {"{\"inputs\": [{\"name\": \"x\", \"shape\": [1], \"datatype\": \"FP32\", \"data\": 1}]}",
         "offset 68: inputs[0].data: expected a list"},
        {"{\"inputs\": [{\"data\": 1, \"name\": \"x\", \"shape\": [], \"datatype\": \"FP32\"}]}",
         "offset 21: inputs[0].data: expected a list"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        s_err(bad[i][0], strlen(bad[i][0]), strlen(bad[i][0]), KVC_EPARSE, bad[i][1]);
}

/* A decimal past the dtype's range is refused, not turned into infinity;
 * the bare Infinity tokens still give infinities. */
static void test_float_out_of_range(void **state)
{
    const char *bad[][2] = {
        {"{\"inputs\": [{\"name\": \"x\", \"shape\": [2], \"datatype\": \"FP64\", \"data\": "
         "[1, 1e400]}]}",
         "inputs[0].data[1]: number out of range for DT_DOUBLE"},
        {"{\"inputs\": [{\"name\": \"x\", \"shape\": [1], \"datatype\": \"FP64\", \"data\": "
         "[-1.8e308]}]}",
         "inputs[0].data[0]: number out of range for DT_DOUBLE"},
        {"{\"inputs\": [{\"name\": \"x\", \"shape\": [1], \"datatype\": \"FP32\", \"data\": "
         "[1e39]}]}",
         "inputs[0].data[0]: number out of range for DT_FLOAT"},
        {"{\"inputs\": [{\"name\": \"x\", \"shape\": [1], \"datatype\": \"FP16\", \"data\": "
         "[65520]}]}",
         "inputs[0].data[0]: number out of range for DT_HALF"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        s_err(bad[i][0], strlen(bad[i][0]), strlen(bad[i][0]), KVC_EPARSE, bad[i][1]);
    const char *ok = "{\"inputs\": [{\"name\": \"d\", \"shape\": [3], \"datatype\": \"FP64\", "
                     "\"data\": [1.7976931348623157e308, Infinity, 1e-400]},"
                     " {\"name\": \"f\", \"shape\": [2], \"datatype\": \"FP32\", \"data\": "
                     "[3.4028234e38, -Infinity]},"
                     " {\"name\": \"h\", \"shape\": [2], \"datatype\": \"FP16\", \"data\": "
                     "[65504, Infinity]}]}";
    kvc_kserve_request_t req;
    s_ok(ok, strlen(ok), strlen(ok), &req);
    const double *d = kvc_tensor_data(kvc_tensor_list_at(req.inputs, 0));
    assert_true(d[0] == 1.7976931348623157e308 && d[1] == INFINITY && d[2] == 0.0);
    const float *f = kvc_tensor_data(kvc_tensor_list_at(req.inputs, 1));
    assert_true(f[0] == 3.4028234e38f && f[1] == -INFINITY);
    const uint16_t *h = kvc_tensor_data(kvc_tensor_list_at(req.inputs, 2));
    assert_int_equal(h[0], 0x7bff);
    assert_int_equal(h[1], 0x7c00);
    kvc_kserve_json_request_clear(&req);
}

static void test_write_json_and_binary(void **state)
{
    kvc_tensor_list_t *outs = kvc_tensor_list_new();
    kvc_tensor_t *t = kvc_tensor_new("out0", KVC_DT_FLOAT, &s_lim);
    float f[2] = {0.1f, -1.0f};
    assert_int_equal(kvc_tensor_append(t, f, 2), 0);
    assert_int_equal(kvc_tensor_set_shape(t, (int64_t[]){1, 2}, 2), 0);
    assert_int_equal(kvc_tensor_list_add(outs, &t), 0);
    t = kvc_tensor_new("out1", KVC_DT_STRING, &s_lim);
    assert_int_equal(kvc_tensor_append_string(t, "hi", 2), 0);
    assert_int_equal(kvc_tensor_list_add(outs, &t), 0);
    kvc_kserve_response_meta_t meta = {"m", "1", "r1"};
    kvc_buf_t b;
    kvc_buf_init(&b, 1 << 20);
    kvc_err_t err;
    size_t hlen = 99;
    assert_int_equal(kvc_kserve_json_write_response(&meta, outs, NULL, &b, &hlen, &err), 0);
    assert_int_equal(hlen, 0);
    assert_string_equal(b.data,
                        "{\"model_name\":\"m\",\"model_version\":\"1\",\"id\":\"r1\",\"outputs\":["
                        "{\"name\":\"out0\",\"datatype\":\"FP32\",\"shape\":[1,2],\"data\":[0.1,-1."
                        "0]},{\"name\":\"out1\",\"datatype\":\"BYTES\",\"shape\":[1],\"data\":["
                        "\"hi\"]}]}");
    /* Binary for every output. */
    const char *rq = "{\"parameters\": {\"binary_data_output\": true}, \"inputs\": [{\"name\": "
                     "\"i\", \"shape\": [1], \"datatype\": \"BOOL\", \"data\": [true]}]}";
    kvc_kserve_request_t req;
    s_ok(rq, strlen(rq), strlen(rq), &req);
    kvc_buf_reset(&b);
    meta.model_version = NULL;
    meta.id = NULL;
    assert_int_equal(kvc_kserve_json_write_response(&meta, outs, &req, &b, &hlen, &err), 0);
    const char *hdr = "{\"model_name\":\"m\",\"outputs\":[{\"name\":\"out0\",\"datatype\":\"FP32\","
                      "\"shape\":[1,2],\"parameters\":{\"binary_data_size\":8}},{\"name\":"
                      "\"out1\",\"datatype\":\"BYTES\",\"shape\":[1],\"parameters\":{\"binary_"
                      "data_size\":6}}]}";
    assert_int_equal(hlen, strlen(hdr));
    assert_memory_equal(b.data, hdr, hlen);
    assert_int_equal(b.len, hlen + 14);
    assert_memory_equal(b.data + hlen, f, 8);
    assert_memory_equal(b.data + hlen + 8, "\x02\x00\x00\x00hi", 6);
    kvc_kserve_json_request_clear(&req);
    /* Not UTF-8 cannot go in JSON. */
    t = kvc_tensor_new("raw", KVC_DT_STRING, &s_lim);
    assert_int_equal(kvc_tensor_append_string(t, "\xc3", 1), 0);
    assert_int_equal(kvc_tensor_list_add(outs, &t), 0);
    kvc_buf_reset(&b);
    assert_int_equal(kvc_kserve_json_write_response(&meta, outs, NULL, &b, &hlen, &err),
                     KVC_EINVAL);
    assert_int_equal(b.len, 0);
    kvc_buf_free(&b);
    kvc_tensor_list_destroy(&outs);
}

static void test_alloc_failures_never_leak(void **state)
{
    char body[512];
    size_t hlen;
    float f[2] = {1, 2};
    size_t len = s_binary_body(body,
                               "{\"id\": \"a\", \"inputs\": [{\"name\": \"x\", \"shape\": [2], "
                               "\"datatype\": \"FP32\", \"parameters\": {\"binary_data_size\": "
                               "8}}, {\"name\": \"s\", \"shape\": [1], \"datatype\": \"BYTES\", "
                               "\"data\": [\"q\"]}], \"outputs\": [{\"name\": \"o\"}]}",
                               f, 8, &hlen);
    int ok = 0;
    for (long n = 0; n < 100 && !ok; n++) {
        kvc_kserve_request_t req;
        kvc_err_t err;
        kvc_alloc_fail_after(n);
        int rc = kvc_kserve_json_parse_request(body, len, hlen, &s_lim, &req, &err);
        kvc_alloc_fail_after(-1);
        if (rc == KVC_OK)
            ok = 1;
        else
            assert_int_equal(rc, KVC_ENOMEM);
        kvc_kserve_json_request_clear(&req);
    }
    assert_true(ok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dtype_names),
        cmocka_unit_test(test_json_request),
        cmocka_unit_test(test_binary_extension),
        cmocka_unit_test(test_json_errors),
        cmocka_unit_test(test_names_must_be_utf8),
        cmocka_unit_test(test_shape_errors_say_where),
        cmocka_unit_test(test_nested_data),
        cmocka_unit_test(test_float_out_of_range),
        cmocka_unit_test(test_write_json_and_binary),
        cmocka_unit_test(test_alloc_failures_never_leak),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
