/* Unit tests of the proxy's pure parts: TF Serving's gRPC -> HTTP mapping,
 * the signature set and cache, the status/metadata JSON answers, option
 * checks, and the handler's answers that need no backend; the run-time
 * model table (kvc_proxy_set_models): validation, config override, the
 * where callback's 404, declared shapes, and swaps under requests in
 * flight. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <time.h>

#include "proxy.h"
#include "proxy_json.h"
#include "signature.h"

static void test_http_status_mapping(void **state)
{
    static const int want[17] = {200, 499, 500, 400, 504, 404, 409, 403, 429,
                                 400, 409, 400, 501, 500, 503, 500, 401};
    for (int code = 0; code < 17; code++)
        assert_int_equal(kvc_proxy_http_status(code), want[code]);
    assert_int_equal(kvc_proxy_http_status(17), 500);
    assert_int_equal(kvc_proxy_http_status(-1), 500);
}

/* Packs a SignatureDefMap into a metadata reply. The caller frees *packed. */
static void s_metadata(Tensorflow__Serving__GetModelMetadataResponse *r, uint8_t **packed,
                       Google__Protobuf__Any *any,
                       Tensorflow__Serving__GetModelMetadataResponse__MetadataEntry *entry,
                       Tensorflow__Serving__GetModelMetadataResponse__MetadataEntry **entries,
                       Tensorflow__Serving__ModelSpec *spec, Google__Protobuf__Int64Value *ver)
{
    /* serving_default: images float [-1, 2]; ids int32 [3]; c complex64 (unknown). */
    static Tensorflow__TensorShapeProto__Dim d[3];
    static Tensorflow__TensorShapeProto__Dim *dp[3];
    static Tensorflow__TensorShapeProto sh_img, sh_ids;
    static Tensorflow__TensorInfo ti[4];
    static Tensorflow__SignatureDef__InputsEntry in[4];
    static Tensorflow__SignatureDef__InputsEntry *inp_a[3], *inp_b[1];
    static Tensorflow__SignatureDef__OutputsEntry out;
    static Tensorflow__SignatureDef__OutputsEntry *outp[1];
    static Tensorflow__SignatureDef def_a, def_b;
    static Tensorflow__Serving__SignatureDefMap__SignatureDefEntry se[2];
    static Tensorflow__Serving__SignatureDefMap__SignatureDefEntry *sep[2];
    Tensorflow__Serving__SignatureDefMap map = TENSORFLOW__SERVING__SIGNATURE_DEF_MAP__INIT;
    for (int i = 0; i < 3; i++) {
        tensorflow__tensor_shape_proto__dim__init(&d[i]);
        dp[i] = &d[i];
    }
    d[0].size = -1;
    d[1].size = 2;
    d[2].size = 3;
    tensorflow__tensor_shape_proto__init(&sh_img);
    sh_img.n_dim = 2;
    sh_img.dim = dp;
    tensorflow__tensor_shape_proto__init(&sh_ids);
    sh_ids.n_dim = 1;
    sh_ids.dim = dp + 2;
    const char *names[4] = {"images:0", "ids:0", "c:0", "out:0"};
    const int dts[4] = {1, 3, 8, 1};
    for (int i = 0; i < 4; i++) {
        tensorflow__tensor_info__init(&ti[i]);
        ti[i].encoding_case = TENSORFLOW__TENSOR_INFO__ENCODING_NAME;
        ti[i].name = (char *)names[i];
        ti[i].dtype = (Tensorflow__DataType)dts[i];
        ti[i].tensor_shape = i == 1 ? &sh_ids : &sh_img;
        tensorflow__signature_def__inputs_entry__init(&in[i]);
        in[i].value = &ti[i];
    }
    in[0].key = "images";
    in[1].key = "ids";
    in[2].key = "c";
    in[3].key = "x";
    inp_a[0] = &in[0];
    inp_a[1] = &in[1];
    inp_a[2] = &in[2];
    inp_b[0] = &in[3];
    tensorflow__signature_def__outputs_entry__init(&out);
    out.key = "out";
    out.value = &ti[3];
    outp[0] = &out;
    tensorflow__signature_def__init(&def_a);
    def_a.n_inputs = 3;
    def_a.inputs = inp_a;
    def_a.n_outputs = 1;
    def_a.outputs = outp;
    def_a.method_name = "tensorflow/serving/predict";
    tensorflow__signature_def__init(&def_b);
    def_b.n_inputs = 1;
    def_b.inputs = inp_b;
    def_b.method_name = "m";
    for (int i = 0; i < 2; i++) {
        tensorflow__serving__signature_def_map__signature_def_entry__init(&se[i]);
        sep[i] = &se[i];
    }
    se[0].key = "serving_default";
    se[0].value = &def_a;
    se[1].key = "other";
    se[1].value = &def_b;
    map.n_signature_def = 2;
    map.signature_def = sep;
    size_t len = tensorflow__serving__signature_def_map__get_packed_size(&map);
    *packed = test_malloc(len);
    tensorflow__serving__signature_def_map__pack(&map, *packed);
    google__protobuf__any__init(any);
    any->type_url = "type.googleapis.com/tensorflow.serving.SignatureDefMap";
    any->value.data = *packed;
    any->value.len = len;
    tensorflow__serving__get_model_metadata_response__metadata_entry__init(entry);
    entry->key = "signature_def";
    entry->value = any;
    entries[0] = entry;
    tensorflow__serving__model_spec__init(spec);
    google__protobuf__int64_value__init(ver);
    ver->value = 7;
    spec->name = "m";
    spec->version_choice_case = TENSORFLOW__SERVING__MODEL_SPEC__VERSION_CHOICE_VERSION;
    spec->version = ver;
    tensorflow__serving__get_model_metadata_response__init(r);
    r->model_spec = spec;
    r->n_metadata = 1;
    r->metadata = entries;
}

typedef struct {
    Tensorflow__Serving__GetModelMetadataResponse r;
    uint8_t *packed;
    Google__Protobuf__Any any;
    Tensorflow__Serving__GetModelMetadataResponse__MetadataEntry entry, *entries[1];
    Tensorflow__Serving__ModelSpec spec;
    Google__Protobuf__Int64Value ver;
} s_meta_t;

static void s_meta_init(s_meta_t *m)
{
    s_metadata(&m->r, &m->packed, &m->any, &m->entry, m->entries, &m->spec, &m->ver);
}

static void test_signature_set_from_tfs(void **state)
{
    s_meta_t m;
    s_meta_init(&m);
    kvc_err_t err = {0};
    kvc_signature_set_t *set = kvc_signature_set_from_tfs(&m.r, &err);
    assert_non_null(set);
    assert_int_equal(kvc_signature_set_size(set), 2);
    const kvc_json_tensor_spec_t *specs = NULL;
    size_t n = 0;
    assert_int_equal(kvc_signature_set_inputs(set, NULL, &specs, &n), 0);
    /* The complex64 input is left to inference. */
    assert_int_equal(n, 2);
    assert_string_equal(specs[0].name, "images");
    assert_int_equal(specs[0].dtype, KVC_DT_FLOAT);
    assert_string_equal(specs[1].name, "ids");
    assert_int_equal(specs[1].dtype, KVC_DT_INT32);
    assert_int_equal(kvc_signature_set_inputs(set, "", &specs, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(kvc_signature_set_inputs(set, "other", &specs, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(specs[0].name, "x");
    assert_int_equal(kvc_signature_set_inputs(set, "missing", &specs, &n), KVC_ENOENT);
    assert_int_equal(kvc_signature_set_inputs(NULL, NULL, &specs, &n), KVC_ENOENT);
    kvc_signature_set_destroy(&set);
    assert_null(set);

    /* Wrong Any type, garbage bytes, no entry at all. */
    m.any.type_url = "type.googleapis.com/tensorflow.Other";
    assert_null(kvc_signature_set_from_tfs(&m.r, &err));
    assert_string_equal(err.msg, "metadata signature_def has type "
                                 "\"type.googleapis.com/tensorflow.Other\"");
    m.any.type_url = "type.googleapis.com/tensorflow.serving.SignatureDefMap";
    uint8_t junk[] = {0x0a, 0x7f, 0x01};
    m.any.value.data = junk;
    m.any.value.len = sizeof junk;
    assert_null(kvc_signature_set_from_tfs(&m.r, &err));
    assert_string_equal(err.msg, "metadata signature_def is not a valid SignatureDefMap");
    m.r.n_metadata = 0;
    assert_null(kvc_signature_set_from_tfs(&m.r, &err));
    assert_string_equal(err.msg, "metadata has no signature_def");
    test_free(m.packed);
}

static void test_signature_set_from_kserve(void **state)
{
    Inference__ModelMetadataResponse r = INFERENCE__MODEL_METADATA_RESPONSE__INIT;
    Inference__ModelMetadataResponse__TensorMetadata t[2], *tp[2] = {&t[0], &t[1]};
    int64_t shape[2] = {1, 500};
    for (int i = 0; i < 2; i++) {
        inference__model_metadata_response__tensor_metadata__init(&t[i]);
        t[i].shape = shape;
        t[i].n_shape = 2;
    }
    t[0].name = "input_ids";
    t[0].datatype = "INT64";
    t[1].name = "mask";
    t[1].datatype = "NOPE";
    r.name = "bert";
    r.n_inputs = 2;
    r.inputs = tp;
    kvc_err_t err = {0};
    kvc_signature_set_t *set = kvc_signature_set_from_kserve(&r, &err);
    assert_non_null(set);
    const kvc_json_tensor_spec_t *specs = NULL;
    size_t n = 0;
    assert_int_equal(kvc_signature_set_inputs(set, NULL, &specs, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(specs[0].name, "input_ids");
    assert_int_equal(specs[0].dtype, KVC_DT_INT64);
    /* A one-signature set answers for any unnamed request. */
    assert_int_equal(kvc_signature_set_inputs(set, "serving_default", &specs, &n), 0);
    kvc_signature_set_destroy(&set);
}

static kvc_signature_set_t *s_kserve_set(const char *dtype)
{
    Inference__ModelMetadataResponse r = INFERENCE__MODEL_METADATA_RESPONSE__INIT;
    Inference__ModelMetadataResponse__TensorMetadata t, *tp = &t;
    inference__model_metadata_response__tensor_metadata__init(&t);
    t.name = "x";
    t.datatype = (char *)dtype;
    r.n_inputs = 1;
    r.inputs = &tp;
    return kvc_signature_set_from_kserve(&r, NULL);
}

static void test_signature_cache(void **state)
{
    kvc_signature_cache_t *c = kvc_signature_cache_new(2, 1000);
    assert_non_null(c);
    int fetch = -1;
    assert_null(kvc_signature_cache_get(c, 0, 50, &fetch));
    assert_int_equal(fetch, 1);
    /* A failed fetch pauses fetching for retry_ms, then allows it again. */
    kvc_signature_cache_fail(c, 0, 100);
    assert_null(kvc_signature_cache_get(c, 0, 1099, &fetch));
    assert_int_equal(fetch, 0);
    assert_null(kvc_signature_cache_get(c, 0, 1100, &fetch));
    assert_int_equal(fetch, 1);
    /* Other slots are independent. */
    assert_null(kvc_signature_cache_get(c, 1, 500, &fetch));
    assert_int_equal(fetch, 1);
    /* First publish wins; a later one is freed and the first returned. */
    kvc_signature_set_t *a = s_kserve_set("FP32"), *b = s_kserve_set("INT8");
    const kvc_signature_set_t *pa = a;
    assert_ptr_equal(kvc_signature_cache_put(c, 0, &a), pa);
    assert_null(a);
    assert_ptr_equal(kvc_signature_cache_put(c, 0, &b), pa);
    assert_null(b);
    assert_ptr_equal(kvc_signature_cache_get(c, 0, 0, &fetch), pa);
    assert_int_equal(fetch, 0);
    /* Out-of-range slots hold nothing and swallow what is given. */
    kvc_signature_set_t *d = s_kserve_set("FP32");
    assert_null(kvc_signature_cache_put(c, 2, &d));
    assert_null(d);
    assert_null(kvc_signature_cache_get(c, 9, 0, &fetch));
    assert_int_equal(fetch, 0);
    kvc_signature_cache_destroy(&c);
    assert_null(c);
}

static void s_buf_eq(kvc_buf_t *b, const char *want)
{
    assert_string_equal(b->data, want);
    kvc_buf_free(b);
}

static void test_status_json(void **state)
{
    Tensorflow__Serving__ModelVersionStatus v[2], *vp[2] = {&v[0], &v[1]};
    Tensorflow__Serving__StatusProto st;
    tensorflow__serving__status_proto__init(&st);
    st.error_code = TENSORFLOW__ERROR__CODE__NOT_FOUND;
    st.error_message = "gone \"x\"";
    for (int i = 0; i < 2; i++)
        tensorflow__serving__model_version_status__init(&v[i]);
    v[0].version = 1;
    v[0].state = TENSORFLOW__SERVING__MODEL_VERSION_STATUS__STATE__AVAILABLE;
    v[1].version = 12345678901;
    v[1].state = TENSORFLOW__SERVING__MODEL_VERSION_STATUS__STATE__END;
    v[1].status = &st;
    Tensorflow__Serving__GetModelStatusResponse r =
        TENSORFLOW__SERVING__GET_MODEL_STATUS_RESPONSE__INIT;
    r.n_model_version_status = 2;
    r.model_version_status = vp;
    kvc_buf_t b;
    kvc_buf_init(&b, 4096);
    assert_int_equal(kvc_proxy_status_json(&r, &b), 0);
    s_buf_eq(&b, "{\"model_version_status\": [{\"version\": \"1\", \"state\": \"AVAILABLE\", "
                 "\"status\": {\"error_code\": \"OK\", \"error_message\": \"\"}}, {\"version\": "
                 "\"12345678901\", \"state\": \"END\", \"status\": {\"error_code\": "
                 "\"NOT_FOUND\", \"error_message\": \"gone \\\"x\\\"\"}}]}");
    kvc_buf_init(&b, 4096);
    assert_int_equal(kvc_proxy_status_json_ready("3", 0, &b), 0);
    s_buf_eq(&b, "{\"model_version_status\": [{\"version\": \"3\", \"state\": \"UNKNOWN\", "
                 "\"status\": {\"error_code\": \"UNAVAILABLE\", \"error_message\": \"model is not "
                 "ready\"}}]}");
    /* A full buffer is reported, not overrun. */
    kvc_buf_init(&b, 20);
    assert_int_equal(kvc_proxy_status_json(&r, &b), KVC_ERANGE);
    kvc_buf_free(&b);
}

static void test_metadata_json(void **state)
{
    s_meta_t m;
    s_meta_init(&m);
    kvc_buf_t b;
    kvc_err_t err = {0};
    kvc_buf_init(&b, 8192);
    assert_int_equal(kvc_proxy_metadata_json(&m.r, &b, &err), 0);
    const char *img = "{\"dtype\": \"DT_FLOAT\", \"tensor_shape\": {\"dim\": [{\"size\": \"-1\", "
                      "\"name\": \"\"}, {\"size\": \"2\", \"name\": \"\"}], \"unknown_rank\": "
                      "false}, \"name\": ";
    char want[4096];
    snprintf(want, sizeof want,
             "{\"model_spec\": {\"name\": \"m\", \"signature_name\": \"\", \"version\": \"7\"}, "
             "\"metadata\": {\"signature_def\": {\"signature_def\": {\"serving_default\": "
             "{\"inputs\": {\"images\": %s\"images:0\"}, \"ids\": {\"dtype\": \"DT_INT32\", "
             "\"tensor_shape\": {\"dim\": [{\"size\": \"3\", \"name\": \"\"}], \"unknown_rank\": "
             "false}, \"name\": \"ids:0\"}, \"c\": {\"dtype\": \"DT_COMPLEX64\", \"tensor_shape\": "
             "{\"dim\": [{\"size\": \"-1\", \"name\": \"\"}, {\"size\": \"2\", \"name\": \"\"}], "
             "\"unknown_rank\": false}, \"name\": \"c:0\"}}, \"outputs\": {\"out\": %s\"out:0\"}}, "
             "\"method_name\": \"tensorflow/serving/predict\"}, \"other\": {\"inputs\": {\"x\": "
             "%s\"out:0\"}}, \"outputs\": {}, \"method_name\": \"m\"}}}}}",
             img, img, img);
    s_buf_eq(&b, want);

    kvc_buf_init(&b, 8192);
    assert_int_equal(kvc_proxy_v2_metadata_json_tfs(&m.r, NULL, &b, &err), 0);
    s_buf_eq(&b, "{\"name\": \"m\", \"versions\": [\"7\"], \"platform\": \"tensorflow_serving\", "
                 "\"inputs\": [{\"name\": \"images\", \"datatype\": \"FP32\", \"shape\": [-1, 2]}, "
                 "{\"name\": \"ids\", \"datatype\": \"INT32\", \"shape\": [3]}, {\"name\": \"c\", "
                 "\"datatype\": \"\", \"shape\": [-1, 2]}], \"outputs\": [{\"name\": \"out\", "
                 "\"datatype\": \"FP32\", \"shape\": [-1, 2]}]}");
    kvc_buf_init(&b, 8192);
    assert_int_equal(kvc_proxy_v2_metadata_json_tfs(&m.r, "nope", &b, &err), KVC_EPARSE);
    assert_string_equal(err.msg, "signature \"nope\" not found in metadata");
    kvc_buf_free(&b);
    test_free(m.packed);
}

static void test_kserve_metadata_json(void **state)
{
    Inference__ModelMetadataResponse r = INFERENCE__MODEL_METADATA_RESPONSE__INIT;
    Inference__ModelMetadataResponse__TensorMetadata t[2], *ip[1] = {&t[0]}, *op[1] = {&t[1]};
    int64_t s_in[2] = {1, 500}, s_out[2] = {1, 2};
    for (int i = 0; i < 2; i++)
        inference__model_metadata_response__tensor_metadata__init(&t[i]);
    t[0].name = "input_ids";
    t[0].datatype = "INT64";
    t[0].shape = s_in;
    t[0].n_shape = 2;
    t[1].name = "logits";
    t[1].datatype = "FP32";
    t[1].shape = s_out;
    t[1].n_shape = 2;
    char *versions[2] = {"2", "1"};
    r.name = "bert";
    r.platform = "p";
    r.n_versions = 2;
    r.versions = versions;
    r.n_inputs = 1;
    r.inputs = ip;
    r.n_outputs = 1;
    r.outputs = op;
    kvc_buf_t b;
    kvc_err_t err = {0};
    kvc_buf_init(&b, 4096);
    assert_int_equal(kvc_proxy_v2_metadata_json(&r, &b), 0);
    s_buf_eq(&b,
             "{\"name\": \"bert\", \"versions\": [\"2\", \"1\"], \"platform\": \"p\", \"inputs\": "
             "[{\"name\": \"input_ids\", \"datatype\": \"INT64\", \"shape\": [1, 500]}], "
             "\"outputs\": [{\"name\": \"logits\", \"datatype\": \"FP32\", \"shape\": [1, 2]}]}");
    kvc_buf_init(&b, 4096);
    assert_int_equal(kvc_proxy_metadata_json_kserve(&r, &b, &err), 0);
    s_buf_eq(&b, "{\"model_spec\": {\"name\": \"bert\", \"signature_name\": \"\", \"version\": "
                 "\"2\"}, \"metadata\": {\"signature_def\": {\"signature_def\": "
                 "{\"serving_default\": {\"inputs\": {\"input_ids\": {\"dtype\": \"DT_INT64\", "
                 "\"tensor_shape\": {\"dim\": [{\"size\": \"1\", \"name\": \"\"}, {\"size\": "
                 "\"500\", \"name\": \"\"}], \"unknown_rank\": false}, \"name\": \"input_ids\"}}, "
                 "\"outputs\": {\"logits\": {\"dtype\": \"DT_FLOAT\", \"tensor_shape\": {\"dim\": "
                 "[{\"size\": \"1\", \"name\": \"\"}, {\"size\": \"2\", \"name\": \"\"}], "
                 "\"unknown_rank\": false}, \"name\": \"logits\"}}, \"method_name\": "
                 "\"tensorflow/serving/predict\"}}}}}");
}

static void test_options(void **state)
{
    kvc_err_t err = {0};
    /* Options are only checked here: nothing dials these addresses. */
    kvc_proxy_backend_t b[2] = {{"m", "127.0.0.1:1", "tfserving", "", "", NULL, 0, NULL, NULL, 0},
                                {"m", "127.0.0.1:2", "kserve", "", "", NULL, 0, NULL, NULL, 0}};
    kvc_proxy_opts_t o = {.backends = b, .n_backends = 2};
    assert_null(kvc_proxy_new(&o, &err));
    assert_string_equal(err.msg, "proxy.backends[1].model: \"m\" is listed twice");
    b[1].model = "n";
    b[1].api = "triton";
    assert_null(kvc_proxy_new(&o, &err));
    assert_string_equal(err.msg, "proxy.backends[1].api: must be \"tfserving\" or \"kserve\"");
    b[1].api = "kserve";
    b[1].preprocess = "224x224 purple";
    assert_null(kvc_proxy_new(&o, &err));
    assert_memory_equal(err.msg, "proxy.backends[1].preprocess: ", 30);
    b[1].preprocess = "";
    b[0].grpc = "";
    assert_null(kvc_proxy_new(&o, &err));
    assert_string_equal(err.msg, "proxy.backends[0].grpc: must be HOST:PORT");
    b[0].grpc = "127.0.0.1:1";
    /* Declared inputs and images: images must go to a declared input of
     * the dtype the preprocessing writes. */
    const kvc_proxy_input_t two[] = {{"images", KVC_DT_FLOAT, NULL, 0},
                                     {"mask", KVC_DT_UINT8, NULL, 0}};
    b[1].preprocess = "224x224 rgb nhwc float32";
    b[1].inputs = two;
    b[1].n_inputs = 2;
    assert_null(kvc_proxy_new(&o, &err));
    assert_string_equal(err.msg, "proxy.backends[1]: 2 inputs are declared, so image_input must "
                                 "name the one images go to");
    b[1].image_input = "pixels";
    assert_null(kvc_proxy_new(&o, &err));
    assert_string_equal(err.msg,
                        "proxy.backends[1].image_input: pixels is not among the declared inputs");
    b[1].image_input = "mask";
    assert_null(kvc_proxy_new(&o, &err));
    assert_string_equal(err.msg,
                        "proxy.backends[1]: images become float32, but input mask is declared uint8");
    const kvc_proxy_input_t unnamed[] = {{"", KVC_DT_FLOAT, NULL, 0}};
    b[1].inputs = unnamed;
    b[1].n_inputs = 1;
    b[1].image_input = "";
    assert_null(kvc_proxy_new(&o, &err));
    assert_string_equal(err.msg, "proxy.backends[1].inputs: declared input 0 has no name or no "
                                 "valid dtype");
    b[1].image_input = "images";
    b[1].inputs = two;
    b[1].n_inputs = 2;
    kvc_proxy_t *p = kvc_proxy_new(&o, &err);
    assert_non_null(p);
    kvc_proxy_destroy(&p);
    assert_null(p);
}

/* Observations from the handler tests. */
static kvc_proxy_observation_t g_obs;
static int g_obs_n;
static char g_obs_endpoint[32], g_obs_model[64];

static void s_observe(void *arg, const kvc_proxy_observation_t *o)
{
    g_obs = *o;
    g_obs_n++;
    snprintf(g_obs_endpoint, sizeof g_obs_endpoint, "%s", o->endpoint);
    snprintf(g_obs_model, sizeof g_obs_model, "%s", o->model);
}

/* Runs the handler on method + path and checks status and body. */
static void s_handle(kvc_proxy_t *p, const char *method, const char *path, int status,
                     const char *body)
{
    kvc_http_req_t req = {
        .method = method, .path = path, .body = (const uint8_t *)"{}", .body_len = 2};
    kvc_http_resp_t resp;
    memset(&resp, 0, sizeof resp);
    kvc_buf_init(&resp.body, 1 << 16);
    kvc_proxy_handle(p, &req, &resp);
    assert_int_equal(resp.status, status);
    assert_string_equal(resp.body.data, body);
    assert_string_equal(resp.content_type, "application/json");
    assert_int_equal(g_obs.http_status, status);
    assert_int_equal(g_obs.response_bytes, strlen(body));
    assert_int_equal(g_obs.request_bytes, 2);
    assert_int_equal(g_obs.grpc_status, -1);
    assert_string_equal(g_obs.route, "local");
    kvc_buf_free(&resp.body);
}

/* 1 if text is want where each '#' of want stands for one or more digits
 * (libcurl's connect time in its message). */
static int s_like(const char *text, const char *want)
{
    while (*want) {
        if (*want == '#') {
            if (*text < '0' || *text > '9')
                return 0;
            while (*text >= '0' && *text <= '9')
                text++;
            want++;
        } else if (*text++ != *want++) {
            return 0;
        }
    }
    return *text == '\0';
}

/* Runs the handler on req and checks status and body (see s_like). */
static void s_request(kvc_proxy_t *p, const kvc_http_req_t *req, int status, const char *body)
{
    kvc_http_resp_t resp;
    memset(&resp, 0, sizeof resp);
    kvc_buf_init(&resp.body, 1 << 16);
    kvc_proxy_handle(p, req, &resp);
    if (resp.status != status || !s_like(resp.body.data, body))
        fprintf(stderr, "%s %s -> %d %s\n", req->method, req->path, resp.status, resp.body.data);
    assert_int_equal(resp.status, status);
    assert_true(s_like(resp.body.data, body));
    assert_string_equal(resp.content_type, "application/json");
    kvc_buf_free(&resp.body);
}

/* A backend that is down: 127.0.0.1 and a port held bound but never
 * listened on, so connections are refused (RST) and, while the test holds
 * it, no other test can be given the port (no port is assumed closed). */
typedef struct {
    int fd;
    char grpc[32];          /* HOST:PORT for proxy.backends */
    char no_signature[256]; /* what a TF Serving predict gets from it */
} s_down_t;

static int s_down_setup(void **state)
{
    s_down_t *d = calloc(1, sizeof *d);
    if (!d)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    d->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (d->fd < 0 || bind(d->fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(d->fd, (struct sockaddr *)&a, &len) != 0) {
        if (d->fd >= 0)
            close(d->fd);
        free(d);
        return -1;
    }
    unsigned port = ntohs(a.sin_port);
    snprintf(d->grpc, sizeof d->grpc, "127.0.0.1:%u", port);
    snprintf(d->no_signature, sizeof d->no_signature,
             "{\"error\": \"cannot fetch the signatures of model m from its model server "
             "(UNAVAILABLE): backend unavailable: connect to 127.0.0.1 port %u: Connection "
             "refused\"}",
             port);
    *state = d;
    return 0;
}

static int s_down_teardown(void **state)
{
    s_down_t *d = *state;
    close(d->fd);
    free(d);
    return 0;
}

static void test_handler_without_backend(void **state)
{
    s_down_t *d = *state;
    kvc_proxy_backend_t b[1] = {{"m", d->grpc, "tfserving", "", "", NULL, 0, NULL, NULL, 0}};
    kvc_proxy_opts_t o = {.backends = b, .n_backends = 1, .observe = s_observe};
    kvc_err_t err = {0};
    kvc_proxy_t *p = kvc_proxy_new(&o, &err);
    assert_non_null(p);
    g_obs_n = 0;
    s_handle(p, "GET", "/v2/health/live", 200, "{\"live\": true}");
    assert_string_equal(g_obs_endpoint, "live");
    s_handle(
        p, "GET", "/v2", 200,
        "{\"name\": \"kvc\", \"version\": \"0.1.0\", \"extensions\": [\"binary_tensor_data\"]}");
    s_handle(p, "POST", "/v1/models/x:predict", 404,
             "{\"error\": \"Servable not found for request: Latest(x)\"}");
    assert_string_equal(g_obs_model, "x");
    assert_string_equal(g_obs_endpoint, "predict");
    s_handle(p, "POST", "/v1/models/x/versions/4:predict", 404,
             "{\"error\": \"Servable not found for request: Specific(x, 4)\"}");
    s_handle(p, "POST", "/v2/models/x/versions/4/infer", 404,
             "{\"error\": \"Servable not found for request: Specific(x, 4)\"}");
    s_handle(p, "POST", "/v1/models/m:classify", 400,
             "{\"error\": \"classify is not supported by this proxy\"}");
    s_handle(p, "POST", "/v1/models/m:regress", 400,
             "{\"error\": \"regress is not supported by this proxy\"}");
    s_handle(p, "GET", "/metrics", 404, "{\"error\": \"metrics are not enabled\"}");
    s_handle(p, "GET", "/federate", 404, "{\"error\": \"metrics are not enabled\"}");
    assert_int_equal(g_obs_n, 9);
    /* A malformed KServe body is the codec's 400 before any backend is
     * asked (KServe JSON names its dtypes: no signature is needed). */
    kvc_http_req_t req = {.method = "POST",
                          .path = "/v2/models/m/infer",
                          .body = (const uint8_t *)"{\"inputs\": [{",
                          .body_len = 13};
    s_request(p, &req, 400,
              "{\"error\": \"offset 13: unexpected end of input, expected a string\"}");
    /* A TF Serving body needs the model's signature first; the backend
     * refuses, so the fetch fails, and that is said (503), not guessed
     * around and not blamed on the body. */
    req.path = "/v1/models/m:predict";
    req.body = (const uint8_t *)"{\"instances\": [1,";
    req.body_len = 17;
    s_request(p, &req, 503, d->no_signature);
    /* Nothing was remembered: the next request tries again, same answer. */
    s_request(p, &req, 503, d->no_signature);
    kvc_proxy_destroy(&p);
}

/* Accept negotiation: only a named protobuf type with q > 0 and at least
 * JSON's q gets protobuf; everything else, malformed included, gets JSON. */
static void test_accept_protobuf(void **state)
{
    static const struct {
        const char *accept;
        const char *want; /* NULL: JSON */
    } cases[] = {
        {NULL, NULL},
        {"", NULL},
        {"application/x-protobuf", "application/x-protobuf"},
        {"APPLICATION/X-PROTOBUF", "application/x-protobuf"},
        {"Application/X-Protobuf;Q=1", "application/x-protobuf"},
        {" \tapplication/x-protobuf\t ", "application/x-protobuf"},
        {",, application/x-protobuf ,,", "application/x-protobuf"},
        {"application/x-protobuf;", "application/x-protobuf"},
        {"application/x-protobuf;;q=1", "application/x-protobuf"},
        {"application/x-protobuf ; charset=\"a,b\" ; q=0.9", "application/x-protobuf"},
        {"application/x-protobuf;q=1.000", "application/x-protobuf"},
        {"application/x-protobuf;q=1.", "application/x-protobuf"},
        {"application/x-protobuf;q=0.001", "application/x-protobuf"},
        {"application/protobuf", "application/protobuf"},
        {"application/x-protobuffer", "application/x-protobuffer"},
        {"application/protobuf; encoding=BINARY", "application/protobuf"},
        {"application/protobuf; encoding=\"binary\"", "application/protobuf"},
        /* q=0 is "not acceptable". */
        {"application/x-protobuf;q=0", NULL},
        {"application/x-protobuf; q=0.000", NULL},
        {"application/x-protobuf;q=0.", NULL},
        /* Malformed ranges are ignored. */
        {"application/x-protobuf;q=", NULL},
        {"application/x-protobuf;q=1.5", NULL},
        {"application/x-protobuf;q=1.0000", NULL},
        {"application/x-protobuf;q=0.5x", NULL},
        {"application/x-protobuf;q=abc", NULL},
        {"application/x-protobuf;q=-1", NULL},
        {"application/x-protobuf;q=.5", NULL},
        {"application/x-protobuf;foo", NULL},
        {"application/x-protobuf; =1", NULL},
        {"application/x-protobuf;a=\"unterminated", NULL},
        {"application/x-protobuf junk", NULL},
        {"application /x-protobuf", NULL},
        {"application/ x-protobuf", NULL},
        {"application/x-protobuf/x", NULL},
        {"/x-protobuf", NULL},
        {"x-protobuf", NULL},
        {"application/x-protobuf;q=0.5x, application/protobuf", "application/protobuf"},
        /* Exactly the type, not a part of something else. */
        {"application/x-protobufs", NULL},
        {"application/x-protobuf-foo", NULL},
        {"xapplication/x-protobuf", NULL},
        {"text/application/x-protobuf", NULL},
        {"text/plain; note=\"application/x-protobuf\"", NULL},
        {"text/plain; note=\"a, application/x-protobuf\"", NULL},
        {"text/plain; note=\"a\\\", application/x-protobuf\"", NULL},
        {"application/protobuf; encoding=json", NULL},
        {"application/protobuf+json", NULL},
        /* Wildcards match protobuf, but only a named type asks for it. */
        {"*/*", NULL},
        {"application/*", NULL},
        /* Against JSON: the higher q wins, a tie goes to the named type. */
        {"application/x-protobuf, */*", "application/x-protobuf"},
        {"*/*, application/x-protobuf", "application/x-protobuf"},
        {"application/json, application/x-protobuf", "application/x-protobuf"},
        {"application/json, application/x-protobuf;q=0.5", NULL},
        {"application/json;q=0.5, application/x-protobuf", "application/x-protobuf"},
        {"application/x-protobuf;q=0.5, */*", NULL},
        {"application/x-protobuf;q=0.1, */*;q=0.1", "application/x-protobuf"},
        {"application/x-protobuf;q=0.5, application/*;q=0.9, */*;q=0.1", NULL},
        {"application/x-protobuf;q=0.5, application/*;q=0.1, */*;q=0.9", "application/x-protobuf"},
        {"application/x-protobuf;q=0.2, application/json;q=0, */*", "application/x-protobuf"},
        {"text/html, application/x-protobuf;q=0.3", "application/x-protobuf"},
        /* Several protobuf names: the highest q, then the first. */
        {"application/x-protobuf;q=0.5, application/protobuf;q=0.8", "application/protobuf"},
        {"application/x-protobuf, application/protobuf", "application/x-protobuf"},
        {"application/protobuf;q=0, application/x-protobuffer;q=0.1", "application/x-protobuffer"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *got = kvc_proxy_accept_protobuf(cases[i].accept);
        if ((got == NULL) != (cases[i].want == NULL) || (got && strcmp(got, cases[i].want) != 0))
            fprintf(stderr, "Accept: %s -> %s, want %s\n", cases[i].accept, got ? got : "JSON",
                    cases[i].want ? cases[i].want : "JSON");
        if (cases[i].want)
            assert_string_equal(got, cases[i].want);
        else
            assert_null(got);
    }
}

/* Image bodies are told by the media type, in any case, parameters allowed. */
static void test_image_content_type(void **state)
{
    static const char *yes[] = {
        "image/jpeg",
        "IMAGE/JPEG",
        "Image/Png",
        "image/png;",
        "image/jpeg; charset=binary",
        " image/png",
        "image/png ;q=1",
        "image/png\t",
        "image/x-anything",
    };
    static const char *no[] = {
        "",
        "image",
        "image/",
        "image/ png",
        "images/png",
        "xmage/png",
        "application/json",
        "image/png x",
        "image/png/x",
        "text/plain; type=image/png",
        "image/pn\"g",
    };
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (!kvc_proxy_is_image_type(yes[i]))
            fprintf(stderr, "not an image: %s\n", yes[i]);
        assert_true(kvc_proxy_is_image_type(yes[i]));
    }
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        if (kvc_proxy_is_image_type(no[i]))
            fprintf(stderr, "an image: %s\n", no[i]);
        assert_false(kvc_proxy_is_image_type(no[i]));
    }
    assert_false(kvc_proxy_is_image_type(NULL));
}

/* Versions and media types as the handler sees them, before any backend. */
static void test_handler_versions_and_types(void **state)
{
    s_down_t *d = *state;
    kvc_proxy_backend_t b[1] = {{"m", d->grpc, "tfserving", "", "", NULL, 0, NULL, NULL, 0}};
    kvc_proxy_opts_t o = {.backends = b, .n_backends = 1};
    kvc_err_t err = {0};
    kvc_proxy_t *p = kvc_proxy_new(&o, &err);
    assert_non_null(p);
    kvc_http_req_t req = {.method = "POST", .body = (const uint8_t *)"{}", .body_len = 2};
    /* A TF Serving model's versions are numbers; KServe's are strings. */
    req.path = "/v2/models/m/versions/v1/infer";
    s_request(p, &req, 404,
              "{\"error\": \"invalid model version in the path: the TF Serving backend of model "
              "m has numeric versions only, not \\\"v1\\\"\"}");
    req.path = "/v1/models/m/versions/99999999999999999999:predict";
    s_request(p, &req, 400,
              "{\"error\": \"Failed to convert version: 99999999999999999999 to numeric.\"}");
    req.path = "/v1/models/x/versions/007:predict";
    s_request(p, &req, 404, "{\"error\": \"Servable not found for request: Specific(x, 7)\"}");
    req.path = "/v2/models/x/versions/v1/infer";
    s_request(p, &req, 404, "{\"error\": \"Servable not found for request: Specific(x, v1)\"}");
    /* An image by its media type in any case: m has no preprocess spec
     * (as JSON, the body would have needed the unreachable signature). */
    req.path = "/v1/models/m:predict";
    const char *types[] = {"IMAGE/JPEG", "Image/Png; charset=binary"};
    for (size_t i = 0; i < 2; i++) {
        req.content_type = types[i];
        s_request(p, &req, 400,
                  "{\"error\": \"model m has no image preprocessing spec configured; send JSON "
                  "tensors\"}");
    }
    req.content_type = "application/json";
    s_request(p, &req, 503, d->no_signature);
    kvc_proxy_destroy(&p);
}

/* ---- The run-time model table (kvc_proxy_set_models) ---------------------- */

/* Answers a request whose parse fails after the model is found: 400 from
 * the codec when the proxy has the model, 404 when it does not. No
 * backend is asked. */
static void s_probe(kvc_proxy_t *p, const char *model, int status, const char *body)
{
    char path[128];
    snprintf(path, sizeof path, "/v2/models/%s/infer", model);
    kvc_http_req_t req = {
        .method = "POST", .path = path, .body = (const uint8_t *)"{", .body_len = 1};
    s_request(p, &req, status, body);
}

#define S_PARSE_400 "{\"error\": \"offset 1: unexpected end of input, expected a string\"}"

/* An image for a model: which entry serves it shows in the answer. */
static void s_image_probe(kvc_proxy_t *p, const char *model, int status, const char *body)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/models/%s:predict", model);
    kvc_http_req_t req = {.method = "POST",
                          .path = path,
                          .content_type = "image/png",
                          .body = (const uint8_t *)"x",
                          .body_len = 1};
    s_request(p, &req, status, body);
}

/* The same, for an answer only partly known: its status, body in buf. */
static int s_image_answer(kvc_proxy_t *p, const char *model, char *buf, size_t cap)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/models/%s:predict", model);
    kvc_http_req_t req = {.method = "POST",
                          .path = path,
                          .content_type = "image/png",
                          .body = (const uint8_t *)"x",
                          .body_len = 1};
    kvc_http_resp_t resp;
    memset(&resp, 0, sizeof resp);
    kvc_buf_init(&resp.body, 1 << 16);
    kvc_proxy_handle(p, &req, &resp);
    snprintf(buf, cap, "%s", resp.body.data ? resp.body.data : "");
    kvc_buf_free(&resp.body);
    return resp.status;
}

static void test_set_models_validation(void **state)
{
    (void)state;
    kvc_err_t err = {0};
    kvc_proxy_opts_t o = {0}; /* no backends: it gets its models later */
    kvc_proxy_t *p = kvc_proxy_new(&o, &err);
    assert_non_null(p);
    s_probe(p, "a", 404, "{\"error\": \"Servable not found for request: Latest(a)\"}");
    kvc_proxy_backend_t m[3] = {{.model = "a", .grpc = "127.0.0.1:1", .api = "tfserving"},
                                {.model = "b", .grpc = "127.0.0.1:1", .api = "kserve"}};
    assert_int_equal(kvc_proxy_set_models(p, m, 2, &err), 0);
    s_probe(p, "a", 400, S_PARSE_400);
    s_probe(p, "b", 400, S_PARSE_400);
    /* Each bad entry: an error naming it, and the table as it was. */
    m[2] = (kvc_proxy_backend_t){.model = "c", .grpc = "127.0.0.1:1", .api = "triton"};
    assert_int_equal(kvc_proxy_set_models(p, m, 3, &err), KVC_EINVAL);
    assert_string_equal(err.msg, "models[2].api: must be \"tfserving\" or \"kserve\"");
    m[2].api = "kserve";
    m[2].preprocess = "224x224 purple";
    assert_int_not_equal(kvc_proxy_set_models(p, m, 3, &err), 0);
    assert_memory_equal(err.msg, "models[2].preprocess: ", 22);
    m[2].preprocess = "";
    m[2].model = "a";
    assert_int_equal(kvc_proxy_set_models(p, m, 3, &err), KVC_EEXIST);
    assert_string_equal(err.msg, "models[2].model: \"a\" is listed twice");
    m[2].model = "c";
    const int64_t bad_dims[] = {1, -2};
    const kvc_proxy_input_t bad_shape[] = {
        {.name = "x", .dtype = KVC_DT_FLOAT, .shape = bad_dims, .n_dims = 2}};
    m[2].inputs = bad_shape;
    m[2].n_inputs = 1;
    assert_int_equal(kvc_proxy_set_models(p, m, 3, &err), KVC_EINVAL);
    assert_string_equal(err.msg, "models[2].inputs[0].shape[1]: -2 is not a size (>= 0, or -1 "
                                 "for any)");
    const kvc_proxy_input_t twice[] = {{.name = "x", .dtype = KVC_DT_FLOAT},
                                       {.name = "x", .dtype = KVC_DT_INT32}};
    m[2].inputs = twice;
    m[2].n_inputs = 2;
    assert_int_equal(kvc_proxy_set_models(p, m, 3, &err), KVC_EEXIST);
    assert_string_equal(err.msg, "models[2].inputs[1]: \"x\" is declared twice");
    m[2].inputs = NULL;
    m[2].n_inputs = 0;
    const char *outs[] = {"y", ""};
    m[2].outputs = outs;
    m[2].n_outputs = 2;
    assert_int_equal(kvc_proxy_set_models(p, m, 3, &err), KVC_EINVAL);
    assert_string_equal(err.msg, "models[2].outputs[1]: must be 1..256 bytes");
    m[2].n_outputs = 1;
    m[1].grpc = "";
    assert_int_equal(kvc_proxy_set_models(p, m, 3, &err), KVC_EINVAL);
    assert_string_equal(err.msg, "models[1].grpc: must be HOST:PORT");
    m[1].grpc = "127.0.0.1:1";
    /* Nothing of those took: a and b are served, c is not. */
    s_probe(p, "a", 400, S_PARSE_400);
    s_probe(p, "b", 400, S_PARSE_400);
    s_probe(p, "c", 404, "{\"error\": \"Servable not found for request: Latest(c)\"}");
    /* A good table replaces the whole run-time table. */
    assert_int_equal(kvc_proxy_set_models(p, &m[2], 1, &err), 0);
    s_probe(p, "a", 404, "{\"error\": \"Servable not found for request: Latest(a)\"}");
    s_probe(p, "c", 400, S_PARSE_400);
    assert_int_equal(kvc_proxy_set_models(p, NULL, 0, &err), 0);
    s_probe(p, "c", 404, "{\"error\": \"Servable not found for request: Latest(c)\"}");
    kvc_proxy_destroy(&p);
}

static void test_set_models_config_wins(void **state)
{
    (void)state;
    kvc_err_t err = {0};
    kvc_proxy_backend_t cfg[] = {{.model = "m", .grpc = "127.0.0.1:1", .api = "tfserving"}};
    kvc_proxy_opts_t o = {.backends = cfg, .n_backends = 1};
    kvc_proxy_t *p = kvc_proxy_new(&o, &err);
    assert_non_null(p);
    /* The registry's m has an image spec, the config's none: the config's
     * serves m; n, only in the registry, is served with its spec. */
    kvc_proxy_backend_t m[] = {
        {.model = "m", .grpc = "127.0.0.1:2", .api = "kserve", .preprocess = "4x4 rgb nhwc uint8"},
        {.model = "n",
         .grpc = "127.0.0.1:2",
         .api = "tfserving",
         .preprocess = "4x4 rgb nhwc uint8",
         .image_input = "images"}};
    assert_int_equal(kvc_proxy_set_models(p, m, 2, &err), 0);
    s_image_probe(p, "m", 400,
                  "{\"error\": \"model m has no image preprocessing spec configured; send JSON "
                  "tensors\"}");
    char body[512];
    assert_int_equal(s_image_answer(p, "n", body, sizeof body), 400);
    assert_null(strstr(body, "preprocessing spec")); /* decoded, not refused for want of one */
    /* Emptying the run-time table leaves the config's. */
    assert_int_equal(kvc_proxy_set_models(p, NULL, 0, &err), 0);
    s_probe(p, "m", 400, S_PARSE_400);
    s_probe(p, "n", 404, "{\"error\": \"Servable not found for request: Latest(n)\"}");
    kvc_proxy_destroy(&p);
}

/* A where callback: x is served at two sites (one with a quote in its
 * name, to be escaped), anything else nowhere. */
static atomic_int g_where_calls;
static size_t s_where(void *arg, const char *model, char *buf, size_t cap)
{
    (void)arg;
    atomic_fetch_add(&g_where_calls, 1);
    if (strcmp(model, "x") != 0)
        return 0;
    snprintf(buf, cap, "east-1, we\"st");
    return 2;
}

static void test_where(void **state)
{
    (void)state;
    kvc_err_t err = {0};
    kvc_proxy_opts_t o = {.where = s_where};
    kvc_proxy_t *p = kvc_proxy_new(&o, &err);
    assert_non_null(p);
    s_probe(p, "x", 404,
            "{\"error\": \"model \\\"x\\\" is not served at this site; it is served at: east-1, "
            "we\\\"st\"}");
    s_probe(p, "y", 404, "{\"error\": \"model \\\"y\\\" is not in the registry\"}");
    kvc_http_req_t req = {.method = "GET", .path = "/v1/models/y/versions/3"};
    s_request(p, &req, 404, "{\"error\": \"model \\\"y\\\" is not in the registry\"}");
    assert_int_equal(atomic_load(&g_where_calls), 3);
    /* A model the proxy has never asks. */
    kvc_proxy_backend_t m[] = {{.model = "x", .grpc = "127.0.0.1:1", .api = "kserve"}};
    assert_int_equal(kvc_proxy_set_models(p, m, 1, &err), 0);
    s_probe(p, "x", 400, S_PARSE_400);
    assert_int_equal(atomic_load(&g_where_calls), 3);
    kvc_proxy_destroy(&p);
}

static void test_shape_mismatch(void **state)
{
    (void)state;
    kvc_err_t err = {0};
    kvc_proxy_opts_t o = {0};
    kvc_proxy_t *p = kvc_proxy_new(&o, &err);
    assert_non_null(p);
    const int64_t dims[] = {-1, 3};
    const kvc_proxy_input_t in[] = {
        {.name = "x", .dtype = KVC_DT_FLOAT, .shape = dims, .n_dims = 2},
        {.name = "k", .dtype = KVC_DT_INT32}};
    kvc_proxy_backend_t m[] = {
        {.model = "s", .grpc = "127.0.0.1:1", .api = "kserve", .inputs = in, .n_inputs = 2}};
    assert_int_equal(kvc_proxy_set_models(p, m, 1, &err), 0);
    const char *wrong[] = {
        "{\"inputs\": [{\"name\": \"x\", \"datatype\": \"FP32\", \"shape\": [2, 2], "
        "\"data\": [1, 2, 3, 4]}]}",
        "{\"inputs\": [{\"name\": \"x\", \"datatype\": \"FP32\", \"shape\": [3], "
        "\"data\": [1, 2, 3]}]}"};
    const char *said[] = {
        "{\"error\": \"input x has shape [2, 2], but model s takes [-1, 3] (-1: any size)\"}",
        "{\"error\": \"input x has shape [3], but model s takes [-1, 3] (-1: any size)\"}"};
    for (size_t i = 0; i < 2; i++) {
        kvc_http_req_t req = {.method = "POST",
                              .path = "/v2/models/s/infer",
                              .body = (const uint8_t *)wrong[i],
                              .body_len = strlen(wrong[i])};
        s_request(p, &req, 400, said[i]);
    }
    kvc_proxy_destroy(&p);
}

/* ---- Swaps under requests in flight ----------------------------------------- */

/* Monotonic milliseconds. */
static long s_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

typedef struct {
    kvc_proxy_t *p;
    const char *path;
    const char *body;
    int status;
    char answer[512];
} s_inflight_t;

/* Runs one request on a thread of its own and keeps its answer. */
static void *s_inflight_run(void *arg)
{
    s_inflight_t *f = arg;
    kvc_http_req_t req = {.method = "POST",
                          .path = f->path,
                          .body = (const uint8_t *)f->body,
                          .body_len = strlen(f->body)};
    kvc_http_resp_t resp;
    memset(&resp, 0, sizeof resp);
    kvc_buf_init(&resp.body, 1 << 16);
    kvc_proxy_handle(f->p, &req, &resp);
    f->status = resp.status;
    snprintf(f->answer, sizeof f->answer, "%s", resp.body.data ? resp.body.data : "");
    kvc_buf_free(&resp.body);
    return NULL;
}

/* A request in flight when its model leaves the table finishes with the
 * table it started with (its backend's state stays alive: ASan would see
 * a use after free); requests after the swap see the new table. The model
 * server is a socket that listens and never answers: the request is in
 * flight from the moment its connection is accepted. */
static void test_set_models_in_flight(void **state)
{
    (void)state;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(lfd >= 0);
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&a, &len), 0);
    assert_int_equal(listen(lfd, 8), 0);
    char grpc[32];
    snprintf(grpc, sizeof grpc, "127.0.0.1:%u", (unsigned)ntohs(a.sin_port));
    kvc_err_t err = {0};
    kvc_proxy_opts_t o = {.timeout_ms = 20000, .where = s_where};
    kvc_proxy_t *p = kvc_proxy_new(&o, &err);
    assert_non_null(p);
    kvc_proxy_backend_t m[] = {{.model = "m", .grpc = grpc, .api = "tfserving"}};
    assert_int_equal(kvc_proxy_set_models(p, m, 1, &err), 0);
    /* TF Serving JSON needs m's signatures: the fetch waits on the server. */
    s_inflight_t f = {.p = p, .path = "/v1/models/m:predict", .body = "{\"instances\": [1]}"};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, s_inflight_run, &f), 0);
    struct pollfd pfd = {.fd = lfd, .events = POLLIN};
    long deadline = s_ms() + 30000;
    while (poll(&pfd, 1, 50) == 0 && s_ms() < deadline)
        ; /* waits for the proxy's connection, with a deadline */
    int cfd = accept(lfd, NULL, NULL);
    assert_true(cfd >= 0);
    /* m leaves while its request is in flight. */
    assert_int_equal(kvc_proxy_set_models(p, NULL, 0, &err), 0);
    s_probe(p, "m", 404, "{\"error\": \"model \\\"m\\\" is not in the registry\"}");
    /* The server goes: the request ends, said about m, its model. */
    close(cfd);
    close(lfd);
    assert_int_equal(pthread_join(th, NULL), 0);
    if (f.status != 503)
        fprintf(stderr, "in flight: %d %s\n", f.status, f.answer);
    assert_int_equal(f.status, 503);
    assert_non_null(strstr(f.answer, "the signatures of model m"));
    kvc_proxy_destroy(&p);
}

#define S_STRESS_THREADS 4
#define S_STRESS_ROUNDS 300

typedef struct {
    kvc_proxy_t *p;
    atomic_int *stop;
    int bad; /* answers neither of the two tables could give */
    int seen_a, seen_b;
} s_stress_t;

/* Asks for model a over and over: each answer must be one table's, a's
 * (its image spec or none) or its absence, never anything half-built. */
static void *s_stress_run(void *arg)
{
    s_stress_t *s = arg;
    while (!atomic_load(s->stop)) {
        kvc_http_req_t req = {.method = "POST",
                              .path = "/v1/models/a:predict",
                              .content_type = "image/png",
                              .body = (const uint8_t *)"x",
                              .body_len = 1};
        kvc_http_resp_t resp;
        memset(&resp, 0, sizeof resp);
        kvc_buf_init(&resp.body, 1 << 16);
        kvc_proxy_handle(s->p, &req, &resp);
        const char *b = resp.body.data ? resp.body.data : "";
        if (resp.status == 400 && strstr(b, "no image preprocessing spec"))
            s->seen_a++;
        else if (resp.status == 400) /* a with its spec: the image is decoded and refused */
            s->seen_b++;
        else if (resp.status != 404 || !strstr(b, "Latest(a)")) {
            fprintf(stderr, "unexpected: %d %s\n", resp.status, b);
            s->bad++;
        }
        kvc_buf_free(&resp.body);
    }
    return NULL;
}

/* Threads request while the table swaps between three versions of it. */
static void test_set_models_swap_stress(void **state)
{
    (void)state;
    kvc_err_t err = {0};
    kvc_proxy_opts_t o = {0};
    kvc_proxy_t *p = kvc_proxy_new(&o, &err);
    assert_non_null(p);
    atomic_int stop;
    atomic_init(&stop, 0);
    s_stress_t st[S_STRESS_THREADS];
    pthread_t th[S_STRESS_THREADS];
    for (size_t i = 0; i < S_STRESS_THREADS; i++) {
        st[i] = (s_stress_t){.p = p, .stop = &stop};
        assert_int_equal(pthread_create(&th[i], NULL, s_stress_run, &st[i]), 0);
    }
    kvc_proxy_backend_t plain[] = {{.model = "z", .grpc = "127.0.0.1:1", .api = "kserve"},
                                   {.model = "a", .grpc = "127.0.0.1:1", .api = "tfserving"}};
    kvc_proxy_backend_t spec[] = {{.model = "a",
                                   .grpc = "127.0.0.1:1",
                                   .api = "tfserving",
                                   .preprocess = "4x4 rgb nhwc float32",
                                   .image_input = "images"}};
    for (int r = 0; r < S_STRESS_ROUNDS; r++) {
        switch (r % 3) {
        case 0:
            assert_int_equal(kvc_proxy_set_models(p, plain, 2, &err), 0);
            break;
        case 1:
            assert_int_equal(kvc_proxy_set_models(p, spec, 1, &err), 0);
            break;
        default:
            assert_int_equal(kvc_proxy_set_models(p, NULL, 0, &err), 0);
        }
    }
    atomic_store(&stop, 1);
    int bad = 0;
    for (size_t i = 0; i < S_STRESS_THREADS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        bad += st[i].bad;
    }
    assert_int_equal(bad, 0);
    kvc_proxy_destroy(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_status_mapping),
        cmocka_unit_test(test_signature_set_from_tfs),
        cmocka_unit_test(test_signature_set_from_kserve),
        cmocka_unit_test(test_signature_cache),
        cmocka_unit_test(test_status_json),
        cmocka_unit_test(test_metadata_json),
        cmocka_unit_test(test_kserve_metadata_json),
        cmocka_unit_test(test_options),
        cmocka_unit_test_setup_teardown(test_handler_without_backend, s_down_setup,
                                        s_down_teardown),
        cmocka_unit_test(test_accept_protobuf),
        cmocka_unit_test(test_image_content_type),
        cmocka_unit_test_setup_teardown(test_handler_versions_and_types, s_down_setup,
                                        s_down_teardown),
        cmocka_unit_test(test_set_models_validation),
        cmocka_unit_test(test_set_models_config_wins),
        cmocka_unit_test(test_where),
        cmocka_unit_test(test_shape_mismatch),
        cmocka_unit_test(test_set_models_in_flight),
        cmocka_unit_test(test_set_models_swap_stress),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
