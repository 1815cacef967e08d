/*
 * Unit tests of proxy/pb_decode.c and of every decoder of model-server
 * replies built on it (infer_reply.c, signature.c, proxy_json.c): each
 * representative reply is packed here, then decoded with the Nth
 * allocation failing, for every N until decoding succeeds. Every failure
 * must be a clean KVC_ENOMEM "out of memory" (never a crash, never a
 * "model server sent an invalid ..." for our own lack of memory) with
 * nothing returned; ASan's leak check at exit sees anything left behind.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "base.h"
#include "infer_reply.h"
#include "kserve/grpc_predict_v2.pb-c.h"
#include "pb_decode.h"
#include "proxy_json.h"
#include "signature.h"
#include "tensor.h"
#include "tensorflow_serving/apis/get_model_metadata.pb-c.h"
#include "tensorflow_serving/apis/get_model_status.pb-c.h"
#include "tensorflow_serving/apis/predict.pb-c.h"

static const kvc_tensor_limits_t s_lim = {1000000, 64 << 20};

/* Packs msg into a test_malloc'ed buffer. */
static uint8_t *s_pack(const ProtobufCMessage *msg, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = test_malloc(*len ? *len : 1);
    protobuf_c_message_pack(msg, buf);
    return buf;
}

/*
 * Runs one decode with allocation n failing (and all after it), for
 * n = 0, 1, ... until it succeeds; fn returns its code and checks its own
 * success. Asserts every failure was KVC_ENOMEM "out of memory" and that
 * at least min_allocs allocations were made on the way. Returns how many
 * allocations the successful decode needed.
 */
static long s_every_allocation(int (*fn)(void *arg, kvc_err_t *err), void *arg, long min_allocs)
{
    for (long n = 0; n < 100000; n++) {
        kvc_err_t err = {0, ""};
        kvc_alloc_fail_after(n);
        int rc = fn(arg, &err);
        kvc_alloc_fail_after(-1);
        if (rc == 0) {
            if (n < min_allocs)
                fail_msg("decoding needed only %ld allocations, expected at least %ld", n,
                         min_allocs);
            return n;
        }
        if (rc != KVC_ENOMEM || strcmp(err.msg, "out of memory") != 0)
            fail_msg("allocation %ld failing: got %d \"%s\", want KVC_ENOMEM \"out of memory\"", n,
                     rc, err.msg);
    }
    fail_msg("decoding never succeeded");
    return -1;
}

/* ---- pb_decode itself ---------------------------------------------------- */

static void test_unpack_tells_memory_from_bad_bytes(void **state)
{
    Inference__ModelReadyResponse m = INFERENCE__MODEL_READY_RESPONSE__INIT;
    m.ready = 1;
    size_t len;
    uint8_t *buf = s_pack(&m.base, &len);
    ProtobufCMessage *out = NULL;
    kvc_err_t err = {0, ""};

    /* With the allocator in use, the very first allocation failing shows. */
    kvc_alloc_fail_after(0);
    int rc = kvc_pb_unpack(&inference__model_ready_response__descriptor, buf, len,
                           "ModelReadyResponse", &out, &err);
    kvc_alloc_fail_after(-1);
    assert_int_equal(rc, KVC_ENOMEM);
    assert_null(out);
    assert_string_equal(err.msg, "out of memory");

    assert_int_equal(kvc_pb_unpack(&inference__model_ready_response__descriptor, buf, len,
                                   "ModelReadyResponse", &out, &err),
                     KVC_OK);
    assert_true(((Inference__ModelReadyResponse *)out)->ready);
    protobuf_c_message_free_unpacked(out, kvc_pb_allocator());

    /* A field of wire type 7 does not exist: the bytes are bad. */
    const uint8_t bad[] = {0x0f, 0x01};
    rc = kvc_pb_unpack(&inference__model_ready_response__descriptor, bad, sizeof bad,
                       "ModelReadyResponse", &out, &err);
    assert_int_equal(rc, KVC_EPARSE);
    assert_null(out);
    assert_string_equal(err.msg, "model server sent an invalid ModelReadyResponse");

    /* The tracked allocator's flag, used directly. */
    kvc_pb_alloc_t a;
    kvc_alloc_fail_after(0);
    Inference__ModelReadyResponse *r =
        inference__model_ready_response__unpack(kvc_pb_alloc_init(&a), len, buf);
    kvc_alloc_fail_after(-1);
    assert_null(r);
    assert_int_equal(kvc_pb_alloc_error(&a), KVC_ENOMEM);
    r = inference__model_ready_response__unpack(kvc_pb_alloc_init(&a), sizeof bad, bad);
    assert_null(r);
    assert_int_equal(kvc_pb_alloc_error(&a), KVC_EPARSE);
    test_free(buf);
}

/* ---- PredictResponse ------------------------------------------------------ */

typedef struct {
    uint8_t *buf;
    size_t len;
} s_bytes_t;

/* A PredictResponse for version 7 with a float32 [1,3] output in
 * tensor_content, a string [2] output and an int64 [2] output in their
 * typed fields, listed out of name order. */
static void s_predict_bytes(s_bytes_t *b)
{
    static const float scores[3] = {0.25f, 0.5f, 0.75f};
    Tensorflow__TensorShapeProto__Dim d[3], *dp[3];
    for (int i = 0; i < 3; i++) {
        tensorflow__tensor_shape_proto__dim__init(&d[i]);
        dp[i] = &d[i];
    }
    d[0].size = 1;
    d[1].size = 3;
    d[2].size = 2;
    Tensorflow__TensorShapeProto sh13 = TENSORFLOW__TENSOR_SHAPE_PROTO__INIT,
                                 sh2 = TENSORFLOW__TENSOR_SHAPE_PROTO__INIT;
    sh13.n_dim = 2;
    sh13.dim = dp;
    sh2.n_dim = 1;
    sh2.dim = dp + 2;
    Tensorflow__TensorProto t[3];
    for (int i = 0; i < 3; i++)
        tensorflow__tensor_proto__init(&t[i]);
    t[0].dtype = TENSORFLOW__DATA_TYPE__DT_FLOAT;
    t[0].tensor_shape = &sh13;
    t[0].tensor_content.data = (uint8_t *)scores;
    t[0].tensor_content.len = sizeof scores;
    ProtobufCBinaryData strs[2] = {{5, (uint8_t *)"hello"}, {3, (uint8_t *)"\xff\x00z"}};
    t[1].dtype = TENSORFLOW__DATA_TYPE__DT_STRING;
    t[1].tensor_shape = &sh2;
    t[1].n_string_val = 2;
    t[1].string_val = strs;
    int64_t ids[2] = {-3, 1LL << 40};
    t[2].dtype = TENSORFLOW__DATA_TYPE__DT_INT64;
    t[2].tensor_shape = &sh2;
    t[2].n_int64_val = 2;
    t[2].int64_val = ids;
    Tensorflow__Serving__PredictResponse__OutputsEntry e[3], *ep[3];
    const char *keys[3] = {"scores", "labels", "ids"};
    for (int i = 0; i < 3; i++) {
        tensorflow__serving__predict_response__outputs_entry__init(&e[i]);
        e[i].key = (char *)keys[i];
        e[i].value = &t[i];
        ep[i] = &e[i];
    }
    Google__Protobuf__Int64Value ver = GOOGLE__PROTOBUF__INT64_VALUE__INIT;
    ver.value = 7;
    Tensorflow__Serving__ModelSpec spec = TENSORFLOW__SERVING__MODEL_SPEC__INIT;
    spec.name = "m";
    spec.version_choice_case = TENSORFLOW__SERVING__MODEL_SPEC__VERSION_CHOICE_VERSION;
    spec.version = &ver;
    Tensorflow__Serving__PredictResponse r = TENSORFLOW__SERVING__PREDICT_RESPONSE__INIT;
    r.model_spec = &spec;
    r.n_outputs = 3;
    r.outputs = ep;
    b->buf = s_pack(&r.base, &b->len);
}

static int s_decode_predict(void *arg, kvc_err_t *err)
{
    const s_bytes_t *b = arg;
    kvc_tensor_list_t *out = (kvc_tensor_list_t *)0x1;
    char version[16] = "x";
    int rc = kvc_infer_reply_tfs(b->buf, b->len, &s_lim, &out, version, sizeof version, err);
    if (rc) {
        assert_null(out);
        return rc;
    }
    assert_string_equal(version, "7");
    assert_int_equal(kvc_tensor_list_size(out), 3);
    /* Sorted by name. */
    const kvc_tensor_t *ids = kvc_tensor_list_at(out, 0);
    const kvc_tensor_t *labels = kvc_tensor_list_at(out, 1);
    const kvc_tensor_t *scores = kvc_tensor_list_at(out, 2);
    assert_string_equal(kvc_tensor_name(ids), "ids");
    assert_string_equal(kvc_tensor_name(labels), "labels");
    assert_string_equal(kvc_tensor_name(scores), "scores");
    const int64_t *iv = kvc_tensor_cdata(ids);
    assert_true(iv[0] == -3 && iv[1] == 1LL << 40);
    size_t n;
    const uint8_t *s = kvc_tensor_string(labels, 1, &n);
    assert_int_equal(n, 3);
    assert_memory_equal(s, "\xff\x00z", 3);
    assert_int_equal(kvc_tensor_ndim(scores), 2);
    const float *fv = kvc_tensor_cdata(scores);
    assert_true(fv[2] == 0.75f);
    kvc_tensor_list_destroy(&out);
    return KVC_OK;
}

static void test_predict_reply_every_allocation_fails_cleanly(void **state)
{
    s_bytes_t b;
    s_predict_bytes(&b);
    /* The unpack alone allocates the message, its spec, 3 entries and 3
     * tensors; more follow for the list and the tensors. */
    s_every_allocation(s_decode_predict, &b, 8);
    /* Bad bytes are the model server's fault, not a lack of memory. */
    kvc_err_t err = {0, ""};
    kvc_tensor_list_t *out = NULL;
    char version[8];
    assert_int_equal(
        kvc_infer_reply_tfs(b.buf, b.len - 1, &s_lim, &out, version, sizeof version, &err),
        KVC_EPARSE);
    assert_null(out);
    assert_string_equal(err.msg, "model server sent an invalid PredictResponse");
    test_free(b.buf);
}

/* ---- ModelInferResponse --------------------------------------------------- */

/* Two outputs in raw_output_contents: FP32 [2] and BYTES [1]. */
static void s_infer_raw_bytes(s_bytes_t *b)
{
    static const float a[2] = {1.5f, -2.0f};
    static const uint8_t s[7] = {3, 0, 0, 0, 'a', 'b', 'c'};
    int64_t sh_a[1] = {2}, sh_s[1] = {1};
    Inference__ModelInferResponse__InferOutputTensor o[2], *op[2];
    for (int i = 0; i < 2; i++) {
        inference__model_infer_response__infer_output_tensor__init(&o[i]);
        op[i] = &o[i];
    }
    o[0].name = "a";
    o[0].datatype = "FP32";
    o[0].n_shape = 1;
    o[0].shape = sh_a;
    o[1].name = "s";
    o[1].datatype = "BYTES";
    o[1].n_shape = 1;
    o[1].shape = sh_s;
    ProtobufCBinaryData raw[2] = {{sizeof a, (uint8_t *)a}, {sizeof s, (uint8_t *)s}};
    Inference__ModelInferResponse r = INFERENCE__MODEL_INFER_RESPONSE__INIT;
    r.model_name = "m";
    r.model_version = "3";
    r.id = "req";
    r.n_outputs = 2;
    r.outputs = op;
    r.n_raw_output_contents = 2;
    r.raw_output_contents = raw;
    b->buf = s_pack(&r.base, &b->len);
}

/* One INT64 [3] output in typed contents. */
static void s_infer_typed_bytes(s_bytes_t *b)
{
    int64_t sh[1] = {3}, v[3] = {4, 5, -6};
    Inference__InferTensorContents contents = INFERENCE__INFER_TENSOR_CONTENTS__INIT;
    contents.n_int64_contents = 3;
    contents.int64_contents = v;
    Inference__ModelInferResponse__InferOutputTensor o, *op = &o;
    inference__model_infer_response__infer_output_tensor__init(&o);
    o.name = "y";
    o.datatype = "INT64";
    o.n_shape = 1;
    o.shape = sh;
    o.contents = &contents;
    Inference__ModelInferResponse r = INFERENCE__MODEL_INFER_RESPONSE__INIT;
    r.model_name = "m";
    r.n_outputs = 1;
    r.outputs = &op;
    b->buf = s_pack(&r.base, &b->len);
}

static int s_decode_infer_raw(void *arg, kvc_err_t *err)
{
    const s_bytes_t *b = arg;
    kvc_tensor_list_t *out = NULL;
    char version[16];
    int rc = kvc_infer_reply_kserve(b->buf, b->len, &s_lim, &out, version, sizeof version, err);
    if (rc) {
        assert_null(out);
        return rc;
    }
    assert_string_equal(version, "3");
    assert_int_equal(kvc_tensor_list_size(out), 2);
    const float *f = kvc_tensor_cdata(kvc_tensor_list_at(out, 0));
    assert_true(f[0] == 1.5f && f[1] == -2.0f);
    size_t n;
    const uint8_t *s = kvc_tensor_string(kvc_tensor_list_at(out, 1), 0, &n);
    assert_int_equal(n, 3);
    assert_memory_equal(s, "abc", 3);
    kvc_tensor_list_destroy(&out);
    return KVC_OK;
}

static int s_decode_infer_typed(void *arg, kvc_err_t *err)
{
    const s_bytes_t *b = arg;
    kvc_tensor_list_t *out = NULL;
    char version[16];
    int rc = kvc_infer_reply_kserve(b->buf, b->len, &s_lim, &out, version, sizeof version, err);
    if (rc) {
        assert_null(out);
        return rc;
    }
    assert_string_equal(version, "");
    const int64_t *v = kvc_tensor_cdata(kvc_tensor_list_at(out, 0));
    assert_true(v[0] == 4 && v[2] == -6);
    kvc_tensor_list_destroy(&out);
    return KVC_OK;
}

static void test_infer_reply_every_allocation_fails_cleanly(void **state)
{
    s_bytes_t raw, typed;
    s_infer_raw_bytes(&raw);
    s_infer_typed_bytes(&typed);
    s_every_allocation(s_decode_infer_raw, &raw, 6);
    s_every_allocation(s_decode_infer_typed, &typed, 4);
    test_free(raw.buf);
    test_free(typed.buf);
}

/* ---- Metadata and status -------------------------------------------------- */

/* A GetModelMetadataResponse whose signature_def Any holds a map of two
 * signatures: serving_default (images float, ids int32 -> out float) and
 * other (x string). */
static void s_tfs_metadata_bytes(s_bytes_t *b)
{
    Tensorflow__TensorShapeProto__Dim d[2], *dp[2];
    for (int i = 0; i < 2; i++) {
        tensorflow__tensor_shape_proto__dim__init(&d[i]);
        dp[i] = &d[i];
    }
    d[0].size = -1;
    d[1].size = 4;
    Tensorflow__TensorShapeProto sh = TENSORFLOW__TENSOR_SHAPE_PROTO__INIT;
    sh.n_dim = 2;
    sh.dim = dp;
    const char *names[4] = {"images:0", "ids:0", "x:0", "out:0"};
    const Tensorflow__DataType dts[4] = {
        TENSORFLOW__DATA_TYPE__DT_FLOAT, TENSORFLOW__DATA_TYPE__DT_INT32,
        TENSORFLOW__DATA_TYPE__DT_STRING, TENSORFLOW__DATA_TYPE__DT_FLOAT};
    const char *keys[4] = {"images", "ids", "x", "out"};
    Tensorflow__TensorInfo ti[4];
    Tensorflow__SignatureDef__InputsEntry in[3], *ina[2], *inb[1];
    for (int i = 0; i < 4; i++) {
        tensorflow__tensor_info__init(&ti[i]);
        ti[i].encoding_case = TENSORFLOW__TENSOR_INFO__ENCODING_NAME;
        ti[i].name = (char *)names[i];
        ti[i].dtype = dts[i];
        ti[i].tensor_shape = &sh;
    }
    for (int i = 0; i < 3; i++) {
        tensorflow__signature_def__inputs_entry__init(&in[i]);
        in[i].key = (char *)keys[i];
        in[i].value = &ti[i];
    }
    ina[0] = &in[0];
    ina[1] = &in[1];
    inb[0] = &in[2];
    Tensorflow__SignatureDef__OutputsEntry out, *outp = &out;
    tensorflow__signature_def__outputs_entry__init(&out);
    out.key = (char *)keys[3];
    out.value = &ti[3];
    Tensorflow__SignatureDef da = TENSORFLOW__SIGNATURE_DEF__INIT,
                             db = TENSORFLOW__SIGNATURE_DEF__INIT;
    da.n_inputs = 2;
    da.inputs = ina;
    da.n_outputs = 1;
    da.outputs = &outp;
    da.method_name = "tensorflow/serving/predict";
    db.n_inputs = 1;
    db.inputs = inb;
    db.method_name = "tensorflow/serving/predict";
    Tensorflow__Serving__SignatureDefMap__SignatureDefEntry se[2], *sep[2];
    for (int i = 0; i < 2; i++) {
        tensorflow__serving__signature_def_map__signature_def_entry__init(&se[i]);
        sep[i] = &se[i];
    }
    se[0].key = "serving_default";
    se[0].value = &da;
    se[1].key = "other";
    se[1].value = &db;
    Tensorflow__Serving__SignatureDefMap map = TENSORFLOW__SERVING__SIGNATURE_DEF_MAP__INIT;
    map.n_signature_def = 2;
    map.signature_def = sep;
    size_t mlen;
    uint8_t *mbuf = s_pack(&map.base, &mlen);
    Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT;
    any.type_url = "type.googleapis.com/tensorflow.serving.SignatureDefMap";
    any.value.data = mbuf;
    any.value.len = mlen;
    Tensorflow__Serving__GetModelMetadataResponse__MetadataEntry me, *mep = &me;
    tensorflow__serving__get_model_metadata_response__metadata_entry__init(&me);
    me.key = "signature_def";
    me.value = &any;
    Google__Protobuf__Int64Value ver = GOOGLE__PROTOBUF__INT64_VALUE__INIT;
    ver.value = 2;
    Tensorflow__Serving__ModelSpec spec = TENSORFLOW__SERVING__MODEL_SPEC__INIT;
    spec.name = "m";
    spec.version_choice_case = TENSORFLOW__SERVING__MODEL_SPEC__VERSION_CHOICE_VERSION;
    spec.version = &ver;
    Tensorflow__Serving__GetModelMetadataResponse r =
        TENSORFLOW__SERVING__GET_MODEL_METADATA_RESPONSE__INIT;
    r.model_spec = &spec;
    r.n_metadata = 1;
    r.metadata = &mep;
    b->buf = s_pack(&r.base, &b->len);
    test_free(mbuf);
}

/* What the proxy does with a TF Serving metadata reply: unpack it, build
 * the signature set, and render both JSON answers. */
static int s_decode_tfs_metadata(void *arg, kvc_err_t *err)
{
    const s_bytes_t *b = arg;
    ProtobufCMessage *m = NULL;
    int rc = kvc_pb_unpack(&tensorflow__serving__get_model_metadata_response__descriptor, b->buf,
                           b->len, "GetModelMetadataResponse", &m, err);
    if (rc)
        return rc;
    const Tensorflow__Serving__GetModelMetadataResponse *r = (void *)m;
    kvc_signature_set_t *set = kvc_signature_set_from_tfs(r, err);
    kvc_buf_t json, v2;
    kvc_buf_init(&json, 1 << 16);
    kvc_buf_init(&v2, 1 << 16);
    if (!set) {
        rc = err->code;
        goto done;
    }
    const kvc_json_tensor_spec_t *specs;
    size_t n;
    assert_int_equal(kvc_signature_set_size(set), 2);
    assert_int_equal(kvc_signature_set_inputs(set, NULL, &specs, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(specs[1].name, "ids");
    assert_int_equal(specs[1].dtype, KVC_DT_INT32);
    if ((rc = kvc_proxy_metadata_json(r, &json, err)) != 0 ||
        (rc = kvc_proxy_v2_metadata_json_tfs(r, "other", &v2, err)) != 0) {
        if (rc == KVC_ENOMEM)
            kvc_err_set(err, KVC_ENOMEM, "out of memory");
        goto done;
    }
    assert_non_null(strstr(json.data, "\"serving_default\""));
    assert_non_null(strstr(v2.data, "\"name\": \"x\""));
done:
    kvc_buf_free(&json);
    kvc_buf_free(&v2);
    kvc_signature_set_destroy(&set);
    protobuf_c_message_free_unpacked(m, kvc_pb_allocator());
    return rc;
}

static void test_tfs_metadata_every_allocation_fails_cleanly(void **state)
{
    s_bytes_t b;
    s_tfs_metadata_bytes(&b);
    s_every_allocation(s_decode_tfs_metadata, &b, 10);
    test_free(b.buf);
}

/* A KServe ModelMetadataResponse with two inputs and one output. */
static void s_kserve_metadata_bytes(s_bytes_t *b)
{
    int64_t sh[2] = {-1, 3};
    Inference__ModelMetadataResponse__TensorMetadata t[3], *in[2], *out[1];
    const char *names[3] = {"a", "b", "y"}, *dts[3] = {"FP32", "BYTES", "FP32"};
    for (int i = 0; i < 3; i++) {
        inference__model_metadata_response__tensor_metadata__init(&t[i]);
        t[i].name = (char *)names[i];
        t[i].datatype = (char *)dts[i];
        t[i].n_shape = 2;
        t[i].shape = sh;
    }
    in[0] = &t[0];
    in[1] = &t[1];
    out[0] = &t[2];
    char *versions[1] = {"1"};
    Inference__ModelMetadataResponse r = INFERENCE__MODEL_METADATA_RESPONSE__INIT;
    r.name = "m";
    r.n_versions = 1;
    r.versions = versions;
    r.platform = "p";
    r.n_inputs = 2;
    r.inputs = in;
    r.n_outputs = 1;
    r.outputs = out;
    b->buf = s_pack(&r.base, &b->len);
}

static int s_decode_kserve_metadata(void *arg, kvc_err_t *err)
{
    const s_bytes_t *b = arg;
    ProtobufCMessage *m = NULL;
    int rc = kvc_pb_unpack(&inference__model_metadata_response__descriptor, b->buf, b->len,
                           "ModelMetadataResponse", &m, err);
    if (rc)
        return rc;
    const Inference__ModelMetadataResponse *r = (void *)m;
    kvc_signature_set_t *set = kvc_signature_set_from_kserve(r, err);
    kvc_buf_t json;
    kvc_buf_init(&json, 1 << 16);
    if (!set) {
        rc = err->code;
        goto done;
    }
    const kvc_json_tensor_spec_t *specs;
    size_t n;
    assert_int_equal(kvc_signature_set_inputs(set, NULL, &specs, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(specs[1].dtype, KVC_DT_STRING);
    if ((rc = kvc_proxy_v2_metadata_json(r, &json)) != 0) {
        kvc_err_set(err, rc, "out of memory");
        goto done;
    }
    assert_non_null(strstr(json.data, "\"platform\": \"p\""));
done:
    kvc_buf_free(&json);
    kvc_signature_set_destroy(&set);
    protobuf_c_message_free_unpacked(m, kvc_pb_allocator());
    return rc;
}

static void test_kserve_metadata_every_allocation_fails_cleanly(void **state)
{
    s_bytes_t b;
    s_kserve_metadata_bytes(&b);
    s_every_allocation(s_decode_kserve_metadata, &b, 6);
    test_free(b.buf);
}

/* A status reply with two versions, and its TF Serving JSON. */
static int s_decode_status(void *arg, kvc_err_t *err)
{
    const s_bytes_t *b = arg;
    ProtobufCMessage *m = NULL;
    int rc = kvc_pb_unpack(&tensorflow__serving__get_model_status_response__descriptor, b->buf,
                           b->len, "GetModelStatusResponse", &m, err);
    if (rc)
        return rc;
    kvc_buf_t json;
    kvc_buf_init(&json, 1 << 16);
    rc = kvc_proxy_status_json((const Tensorflow__Serving__GetModelStatusResponse *)m, &json);
    if (rc)
        kvc_err_set(err, rc, "out of memory");
    else
        assert_non_null(strstr(json.data, "\"version\": \"4\""));
    kvc_buf_free(&json);
    protobuf_c_message_free_unpacked(m, kvc_pb_allocator());
    return rc;
}

static void test_status_every_allocation_fails_cleanly(void **state)
{
    Tensorflow__Serving__StatusProto st = TENSORFLOW__SERVING__STATUS_PROTO__INIT;
    st.error_message = "fine";
    Tensorflow__Serving__ModelVersionStatus v[2], *vp[2];
    for (int i = 0; i < 2; i++) {
        tensorflow__serving__model_version_status__init(&v[i]);
        v[i].version = 3 + i;
        v[i].state = TENSORFLOW__SERVING__MODEL_VERSION_STATUS__STATE__AVAILABLE;
        v[i].status = &st;
        vp[i] = &v[i];
    }
    Tensorflow__Serving__GetModelStatusResponse r =
        TENSORFLOW__SERVING__GET_MODEL_STATUS_RESPONSE__INIT;
    r.n_model_version_status = 2;
    r.model_version_status = vp;
    s_bytes_t b;
    b.buf = s_pack(&r.base, &b.len);
    s_every_allocation(s_decode_status, &b, 5);
    test_free(b.buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unpack_tells_memory_from_bad_bytes),
        cmocka_unit_test(test_predict_reply_every_allocation_fails_cleanly),
        cmocka_unit_test(test_infer_reply_every_allocation_fails_cleanly),
        cmocka_unit_test(test_tfs_metadata_every_allocation_fails_cleanly),
        cmocka_unit_test(test_kserve_metadata_every_allocation_fails_cleanly),
        cmocka_unit_test(test_status_every_allocation_fails_cleanly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
