/*
 * bench_payload: request/response payload bytes for the four model shapes
 * of the original experiment, TF Serving REST JSON (our codec's output,
 * shortest round-trip floats) against the protobuf the proxy sends
 * (PredictRequest / PredictResponse with tensor_content), next to the raw
 * tensor bytes, in MiB as the original table. Values are uniform floats in
 * [0, 1) from a fixed seed (token ids in [0, 30522) for BERT), so runs
 * repeat exactly. Protobuf sizes include the 5-byte gRPC frame prefix.
 */
#include "json_tensor.h"
#include "tensor.h"
#include "tensor_pb.h"
#include "tensorflow_serving/apis/predict.pb-c.h"

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
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    printf("| model | tensor | raw MiB | JSON MiB | protobuf MiB | protobuf over raw | protobuf vs "
           "JSON |\n");
    printf("|---|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
        for (int dir = 0; dir < 2; dir++) {
            int req = dir == 0;
            kvc_tensor_t *t =
                req ? s_tensor(m[i].in, m[i].in_dt, m[i].in_shape, m[i].in_nd, &seed)
                    : s_tensor(m[i].out, KVC_DT_FLOAT, m[i].out_shape, m[i].out_nd, &seed);
            if (!t)
                return 1;
            size_t raw = kvc_tensor_nbytes(t);
            size_t pb = s_proto(t, m[i].model, req);
            size_t js = s_json(&t, req);
            printf("| %s | %s | %.3f | %.3f | %.3f | %+.3f%% | %+.1f%% |\n", m[i].model,
                   req ? "input" : "output", raw / 1048576.0, js / 1048576.0, pb / 1048576.0,
                   100.0 * ((double)pb - (double)raw) / (double)raw,
                   100.0 * ((double)pb / (double)js - 1.0));
        }
    }
    return 0;
}
