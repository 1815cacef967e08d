/*
 * bench_payload: request/response payload bytes for the four model shapes
 * of the original experiment, TF Serving REST JSON (our codec's output,
 * shortest round-trip floats) against the protobuf the proxy sends
 * (PredictRequest / PredictResponse with tensor_content), next to the raw
 * tensor bytes, in MiB as the original table. Values are uniform floats in
 * [0, 1) from a fixed seed (token ids in [0, 30522) for BERT), so runs
 * repeat exactly; one more row holds YOLOv5's output with a real detector's
 * value distribution (tests/interop/yolo_expect.h: box coordinates in
 * pixels, then scores nearly all below 0.016, whose text is long).
 * Protobuf sizes include the 5-byte gRPC frame prefix.
 *
 * A second table gives each response's size as TF Serving lays it out
 * (RapidJSON's PrettyWriter: one value per line, 4-space indent), with the
 * numbers written as TF Serving writes them (six digits when they read back,
 * else nine), which is also the byte count of tests/interop/model_server.py's
 * REST answer for the same tensor.
 */
#include "json_tensor.h"
#include "tensor.h"
#include "tensor_pb.h"
#include "numfmt.h"
#include "tensorflow_serving/apis/predict.pb-c.h"

#include "../interop/yolo_expect.h"

#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

/* xorshift64*: a fixed, portable generator. */
static uint64_t s_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

/* A tensor of the shape filled from the generator. */
static kvc_tensor_t *s_tensor(const char *name, kvc_dtype_t dt, const int64_t *shape, int nd,
                              uint64_t *seed)
{
    kvc_tensor_limits_t lim = {1ull << 30, 1ull << 32};
    kvc_tensor_t *t = kvc_tensor_new(name, dt, &lim);
    if (!t || kvc_tensor_alloc(t, shape, nd) != 0)
        return NULL;
    uint64_t n = kvc_tensor_count(t);
    for (uint64_t i = 0; i < n; i++) {
        uint64_t r = s_next(seed);
        if (dt == KVC_DT_FLOAT)
            ((float *)kvc_tensor_data(t))[i] = (float)(r >> 40) / (float)(1u << 24);
        else
            ((int32_t *)kvc_tensor_data(t))[i] = (int32_t)(r % 30522);
    }
    return t;
}

/* JSON bytes of t as a row request ({"instances": ...}) or response. */
static size_t s_json(kvc_tensor_t **t, int request)
{
    kvc_tensor_list_t *l = kvc_tensor_list_new();
    kvc_tensor_list_add(l, t);
    kvc_buf_t b;
    kvc_buf_init(&b, (size_t)1 << 31);
    kvc_err_t err = {0};
    size_t n = 0;
    if (kvc_json_tensor_write_response(l, KVC_JSON_TENSOR_ROW, &b, &err) == 0)
        n = b.len - (request ? 2 : 0); /* "instances" is 2 bytes shorter than "predictions" */
    kvc_buf_free(&b);
    kvc_tensor_list_destroy(&l);
    return n;
}

/* Packed PredictRequest (request) or PredictResponse bytes for t. */
static size_t s_proto(const kvc_tensor_t *t, const char *model, int request)
{
    kvc_tfproto_view_t v;
    if (kvc_tfproto_view_init(&v, t) != 0)
        return 0;
    Tensorflow__Serving__ModelSpec spec = TENSORFLOW__SERVING__MODEL_SPEC__INIT;
    spec.name = (char *)model;
    size_t n;
    if (request) {
        Tensorflow__Serving__PredictRequest__InputsEntry e =
            TENSORFLOW__SERVING__PREDICT_REQUEST__INPUTS_ENTRY__INIT;
        Tensorflow__Serving__PredictRequest__InputsEntry *ep = &e;
        e.key = (char *)kvc_tensor_name(t);
        e.value = &v.proto;
        Tensorflow__Serving__PredictRequest r = TENSORFLOW__SERVING__PREDICT_REQUEST__INIT;
        r.model_spec = &spec;
        r.n_inputs = 1;
        r.inputs = &ep;
        n = tensorflow__serving__predict_request__get_packed_size(&r);
    } else {
        Tensorflow__Serving__PredictResponse__OutputsEntry e =
            TENSORFLOW__SERVING__PREDICT_RESPONSE__OUTPUTS_ENTRY__INIT;
        Tensorflow__Serving__PredictResponse__OutputsEntry *ep = &e;
        e.key = (char *)kvc_tensor_name(t);
        e.value = &v.proto;
        Tensorflow__Serving__PredictResponse r = TENSORFLOW__SERVING__PREDICT_RESPONSE__INIT;
        r.model_spec = &spec;
        r.n_outputs = 1;
        r.outputs = &ep;
        n = tensorflow__serving__predict_response__get_packed_size(&r);
    }
    kvc_tfproto_view_clear(&v);
    return n + 5; /* gRPC frame prefix */
}

/*
 * Writes v as TF Serving's REST API does (WriteDecimal in json_tensor.cc,
 * mirrored by model_server.py's _float_json): "%g" (six significant digits)
 * when that reads back to v, else "%.9g"; ".0" appended when there is
 * neither a '.' nor an exponent; NaN and infinities as TF Serving. buf needs
 * KVC_NUMFMT_MAX bytes; returns the length (no NUL).
 */
static size_t s_tfs_float(float v, char *buf)
{
    if (!isfinite(v))
        return kvc_numfmt_write_float(v, buf); /* NaN, Infinity, -Infinity */
    int n = snprintf(buf, KVC_NUMFMT_MAX, "%g", (double)v);
    if (strtof(buf, NULL) != v)
        n = snprintf(buf, KVC_NUMFMT_MAX, "%.9g", (double)v);
    if (!strchr(buf, '.') && !strchr(buf, 'e')) {
        memcpy(buf + n, ".0", 3);
        n += 2;
    }
    return (size_t)n;
}

/*
 * Bytes of model_server.py's _pretty_json() for nd dimensions of float32
 * values starting at *v (advanced past them): "[\n", items each on its own
 * line indented 4 * (level + 1), ",\n" between them, "\n", the closing
 * bracket indented 4 * level.
 */
static size_t s_pretty_size(const float **v, const int64_t *shape, int nd, int level)
{
    if (nd == 0) {
        char b[KVC_NUMFMT_MAX];
        return s_tfs_float(*(*v)++, b);
    }
    if (shape[0] == 0)
        return 2;
    size_t n = 2 + 1 + 4 * (size_t)level + 1 + 2 * (size_t)(shape[0] - 1);
    for (int64_t i = 0; i < shape[0]; i++)
        n += 4 * (size_t)(level + 1) + s_pretty_size(v, shape + 1, nd - 1, level + 1);
    return n;
}

/* The whole REST answer: {"predictions": ...} with TF Serving's layout. */
static size_t s_pretty_response(kvc_tensor_t *t)
{
    const float *v = kvc_tensor_data(t);
    /* '{\n    "predictions": ' ... '\n}' */
    return 21 + s_pretty_size(&v, kvc_tensor_shape(t), kvc_tensor_ndim(t), 1) + 2;
}

/* YOLOv5's output as the stand-in server answers an input of mean 0.5. */
static kvc_tensor_t *s_yolo_tensor(void)
{
    kvc_tensor_limits_t lim = {1ull << 30, 1ull << 32};
    const int64_t shape[] = {1, YOLO_EXPECT_ROWS, YOLO_EXPECT_COLS};
    kvc_tensor_t *t = kvc_tensor_new("output0", KVC_DT_FLOAT, &lim);
    if (!t || kvc_tensor_alloc(t, shape, 3) != 0) {
        kvc_tensor_destroy(&t);
        return NULL;
    }
    yolo_expect_fill(0.5, kvc_tensor_data(t));
    return t;
}

int main(void)
{
    static const struct {
        const char *model, *in, *out;
        kvc_dtype_t in_dt;
        int64_t in_shape[4];
        int in_nd;
        int64_t out_shape[3];
        int out_nd;
    } m[] = {
        {"mobilenet", "images", "scores", KVC_DT_FLOAT, {1, 224, 224, 3}, 4, {1, 1001}, 2},
        {"inception", "images", "scores", KVC_DT_FLOAT, {1, 299, 299, 3}, 4, {1, 1001}, 2},
        {"yolov5", "images", "output0", KVC_DT_FLOAT, {1, 640, 640, 3}, 4, {1, 25200, 85}, 3},
        {"bert", "input_ids", "logits", KVC_DT_INT32, {1, 500}, 2, {1, 2}, 2},
    };
    /* Responses, for the second table: model, values, compact JSON, pretty, protobuf. */
    struct {
        const char *model, *values;
        size_t js, pretty, pb;
    } resp[5];
    size_t nresp = 0;
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    printf("| model | tensor | raw MiB | JSON MiB | protobuf MiB | protobuf over raw | protobuf vs "
           "JSON |\n");
    printf("|---|---|---|---|---|---|---|\n");
    for (size_t i = 0; i <= sizeof m / sizeof m[0]; i++) {
        int extra = i == sizeof m / sizeof m[0]; /* the detector-like YOLOv5 output */
        for (int dir = extra; dir < 2; dir++) {
            int req = dir == 0;
            const char *model = extra ? "yolov5" : m[i].model;
            kvc_tensor_t *t =
                extra ? s_yolo_tensor()
                : req ? s_tensor(m[i].in, m[i].in_dt, m[i].in_shape, m[i].in_nd, &seed)
                      : s_tensor(m[i].out, KVC_DT_FLOAT, m[i].out_shape, m[i].out_nd, &seed);
            if (!t)
                return 1;
            size_t raw = kvc_tensor_nbytes(t);
            size_t pb = s_proto(t, model, req);
            size_t pretty = req ? 0 : s_pretty_response(t);
            size_t js = s_json(&t, req);
            const char *what = req ? "input" : extra ? "output, detector-like" : "output";
            printf("| %s | %s | %.3f | %.3f | %.3f | %+.3f%% | %+.1f%% |\n", model, what,
                   raw / 1048576.0, js / 1048576.0, pb / 1048576.0,
                   100.0 * ((double)pb - (double)raw) / (double)raw,
                   100.0 * ((double)pb / (double)js - 1.0));
            if (!req) {
                resp[nresp].model = model;
                resp[nresp].values = extra ? "detector-like" : "uniform [0, 1)";
                resp[nresp].js = js;
                resp[nresp].pretty = pretty;
                resp[nresp].pb = pb;
                nresp++;
            }
        }
    }
    printf("\nResponses as TF Serving lays them out (RapidJSON PrettyWriter, one value per line,\n"
           "4-space indent; numbers as TF Serving writes them: 6 digits, or 9 where 6 do not read "
           "back):\n\n");
    printf("| model | output values | our JSON MiB | PrettyWriter layout MiB | protobuf MiB | "
           "protobuf vs PrettyWriter |\n");
    printf("|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < nresp; i++)
        printf("| %s | %s | %.3f | %.3f | %.3f | %+.1f%% |\n", resp[i].model, resp[i].values,
               resp[i].js / 1048576.0, resp[i].pretty / 1048576.0, resp[i].pb / 1048576.0,
               100.0 * ((double)resp[i].pb / (double)resp[i].pretty - 1.0));
    return 0;
}
