/*
 * Interop tests of proxy/grpc_client.c against a real gRPC stack: the
 * grpcio model server in tests/interop/model_server.py, started as a child
 * process on ports it picks itself (port 0) and reports in a port file.
 *
 * Every expected number is computed here from the formulas documented in
 * model_server.py, in the same float64 order, then compared exactly.
 * Nothing sleeps to wait: the port file and child exits are polled with
 * deadlines.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base.h"
#include "fiber.h"
#include "grpc_client.h"
#include "kserve/grpc_predict_v2.pb-c.h"
#include "model_server_proc.h"
#include "tensorflow/core/protobuf/meta_graph.pb-c.h"
#include "tensorflow_serving/apis/get_model_metadata.pb-c.h"
#include "tensorflow_serving/apis/get_model_status.pb-c.h"
#include "tensorflow_serving/apis/predict.pb-c.h"
#include "yolo_expect.h"

extern char **environ;

#define PREDICT "/tensorflow.serving.PredictionService/Predict"
#define METADATA "/tensorflow.serving.PredictionService/GetModelMetadata"
#define STATUS "/tensorflow.serving.ModelService/GetModelStatus"
#define INFER "/inference.GRPCInferenceService/ModelInfer"
#define KV2 "/inference.GRPCInferenceService/"
#define TIMEOUT_MS 30000u

/* A model server child process. */
typedef struct {
    pid_t pid;
    int grpc_port;
    int rest_port;
    char dir[64];
    char port_file[128];
    char base[64]; /* http://127.0.0.1:PORT */
} server_t;

/* Everything the tests share: the main server and a default client. */
typedef struct {
    server_t srv;
    kvc_grpc_client_t *client;
} fixture_t;

/* Milliseconds on the monotonic clock. */
static int64_t s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Pauses between two polls of a condition that has its own deadline. */
static void s_poll_pause(void)
{
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
}

/* Reads the integer after "key": in a small JSON text; -1 if absent. */
static int s_json_int(const char *text, const char *key)
{
    char pat[32];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(text, pat);
    if (!p)
        return -1;
    p += strlen(pat);
    while (*p == ' ')
        p++;
    char *end = NULL;
    long v = strtol(p, &end, 10);
    if (end == p || v <= 0 || v > 65535)
        return -1;
    return (int)v;
}

/* Starts model_server.py with extra arguments; fails the test if it does
 * not report its ports before the deadline. */
static void s_server_start(server_t *s, const char *const *extra)
{
    memset(s, 0, sizeof *s);
    snprintf(s->dir, sizeof s->dir, "/tmp/kvc-interop-XXXXXX");
    assert_non_null(mkdtemp(s->dir));
    snprintf(s->port_file, sizeof s->port_file, "%s/ports.json", s->dir);
    const char *argv[16] = {KVC_PYTHON,           KVC_SOURCE_DIR "/tests/interop/model_server.py",
                            "--grpc-port",        "0",
                            "--rest-port",        "0",
                            "--exit-with-parent", "--port-file",
                            s->port_file};
    size_t n = 9;
    for (size_t i = 0; extra && extra[i] && n < 15; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    assert_int_equal(posix_spawn(&s->pid, KVC_PYTHON, NULL, NULL, (char *const *)argv, environ), 0);
    char text[256];
    int st = 0;
    int rc = kvc_it_wait_port_file(&s->pid, s->port_file, text, sizeof text, &st);
    if (rc == -1)
        fail_msg("model server exited during start-up (status %d)", st);
    if (rc == -2) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, &st, 0);
        fail_msg("model server did not report its ports within %d ms", KVC_IT_START_DEADLINE_MS);
    }
    s->grpc_port = s_json_int(text, "grpc");
    s->rest_port = s_json_int(text, "rest");
    assert_true(s->grpc_port > 0);
    assert_true(s->rest_port > 0);
    snprintf(s->base, sizeof s->base, "http://127.0.0.1:%d", s->grpc_port);
}

/* Stops the server with SIGTERM and checks that it exits cleanly in time. */
static void s_server_stop(server_t *s)
{
    if (s->pid <= 0)
        return;
    kill(s->pid, SIGTERM);
    int st = 0;
    int64_t deadline = s_now_ms() + 15000;
    pid_t r;
    while ((r = waitpid(s->pid, &st, WNOHANG)) == 0 && s_now_ms() < deadline)
        s_poll_pause();
    if (r == 0) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, &st, 0);
    }
    s->pid = 0;
    unlink(s->port_file);
    rmdir(s->dir);
    assert_int_not_equal(r, 0);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

static int s_setup(void **state)
{
    fixture_t *fx = calloc(1, sizeof *fx);
    if (!fx)
        return -1;
    s_server_start(&fx->srv, NULL);
    fx->client = kvc_grpc_client_new(NULL);
    if (!fx->client)
        return -1;
    *state = fx;
    return 0;
}

static int s_teardown(void **state)
{
    fixture_t *fx = *state;
    kvc_grpc_client_destroy(&fx->client);
    s_server_stop(&fx->srv);
    free(fx);
    return 0;
}

/* ---- Request builders and expected values --------------------------------- */

/* Serializes any protobuf-c message into a kvc_malloc'd buffer. */
static uint8_t *s_pack(const ProtobufCMessage *m, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = kvc_malloc(*len > 0 ? *len : 1);
    assert_non_null(buf);
    assert_int_equal(protobuf_c_message_pack(m, buf), *len);
    return buf;
}

/* A TF Serving tensor in caller-provided storage (dims must hold rank). */
typedef struct {
    Tensorflow__TensorProto t;
    Tensorflow__TensorShapeProto shape;
    Tensorflow__TensorShapeProto__Dim dims[4];
    Tensorflow__TensorShapeProto__Dim *dimp[4];
} tensor_t;

/* Fills a tensor's dtype and shape. */
static void s_tensor(tensor_t *x, Tensorflow__DataType dt, const int64_t *shape, size_t rank)
{
    tensorflow__tensor_proto__init(&x->t);
    tensorflow__tensor_shape_proto__init(&x->shape);
    for (size_t i = 0; i < rank; i++) {
        tensorflow__tensor_shape_proto__dim__init(&x->dims[i]);
        x->dims[i].size = shape[i];
        x->dimp[i] = &x->dims[i];
    }
    x->shape.n_dim = rank;
    x->shape.dim = x->dimp;
    x->t.dtype = dt;
    x->t.tensor_shape = &x->shape;
}

/* Packs a PredictRequest for one named input; version 0 means unset. */
static uint8_t *s_predict_req(const char *model, int64_t version, const char *input,
                              Tensorflow__TensorProto *t, size_t *len)
{
    Tensorflow__Serving__PredictRequest req = TENSORFLOW__SERVING__PREDICT_REQUEST__INIT;
    Tensorflow__Serving__ModelSpec spec = TENSORFLOW__SERVING__MODEL_SPEC__INIT;
    Google__Protobuf__Int64Value ver = GOOGLE__PROTOBUF__INT64_VALUE__INIT;
    Tensorflow__Serving__PredictRequest__InputsEntry e =
        TENSORFLOW__SERVING__PREDICT_REQUEST__INPUTS_ENTRY__INIT;
    Tensorflow__Serving__PredictRequest__InputsEntry *ents[1] = {&e};
    spec.name = (char *)model;
    if (version) {
        ver.value = version;
        spec.version_choice_case = TENSORFLOW__SERVING__MODEL_SPEC__VERSION_CHOICE_VERSION;
        spec.version = &ver;
    }
    req.model_spec = &spec;
    e.key = (char *)input;
    e.value = t;
    req.n_inputs = 1;
    req.inputs = ents;
    return s_pack(&req.base, len);
}

/* Token ids for the BERT shape: a deterministic sequence seeded by k. */
static void s_bert_ids(int32_t *ids, int k)
{
    for (int i = 0; i < 500; i++)
        ids[i] = (int32_t)((i * 7 + k * 13) % 1000 + k);
}

/* A serialized BERT Predict (ids from s_bert_ids seed 2, int_val). */
static uint8_t *s_bert_predict_req(size_t *len)
{
    int32_t ids[500];
    s_bert_ids(ids, 2);
    tensor_t x;
    const int64_t shape[] = {1, 500};
    s_tensor(&x, TENSORFLOW__DATA_TYPE__DT_INT32, shape, 2);
    x.t.n_int_val = 500;
    x.t.int_val = ids;
    return s_predict_req("bert", 0, "input_ids", &x.t, len);
}

/* BERT's logits for ids, per the server's documented formula. */
static void s_bert_expect(const int32_t *ids, float out[2])
{
    int64_t sum = 0;
    int32_t mn = ids[0], mx = ids[0];
    for (int i = 0; i < 500; i++) {
        sum += ids[i];
        mn = ids[i] < mn ? ids[i] : mn;
        mx = ids[i] > mx ? ids[i] : mx;
    }
    out[0] = (float)((double)sum / 1000);
    out[1] = (float)(double)(mx - mn);
}

/* Image pixels x[idx] = (idx % 256) / 256: sums stay exact in float64. */
static float *s_image(size_t side)
{
    size_t n = side * side * 3;
    float *x = kvc_malloc(n * sizeof *x);
    assert_non_null(x);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(i % 256) / 256.0f;
    return x;
}

/* mean(x) in float64, exact for s_image's values. */
static double s_mean(const float *x, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)x[i];
    return s / (double)n;
}

/* Expected 1001 scores of mobilenet (sign +1) or inception (sign -1). */
static void s_scores_expect(const float *x, size_t n, int inception, float *out)
{
    double m = s_mean(x, n);
    for (int j = 0; j < 1001; j++) {
        double p = (double)x[j % 3];
        out[j] = inception ? (float)(m * (double)(1001 - j) / 1001 - p)
                           : (float)(m * (double)(j + 1) / 1001 + p);
    }
}

/* Checks a float32 output tensor's shape and returns its values. */
static const float *s_check_float_tensor(const Tensorflow__TensorProto *t, const int64_t *shape,
                                         size_t rank, size_t count)
{
    assert_non_null(t);
    assert_int_equal(t->dtype, TENSORFLOW__DATA_TYPE__DT_FLOAT);
    assert_non_null(t->tensor_shape);
    assert_int_equal(t->tensor_shape->n_dim, rank);
    for (size_t i = 0; i < rank; i++)
        assert_int_equal(t->tensor_shape->dim[i]->size, shape[i]);
    assert_int_equal(t->tensor_content.len, count * sizeof(float));
    return (const float *)t->tensor_content.data;
}

/* Calls Predict and unpacks the response; the caller frees both. */
static Tensorflow__Serving__PredictResponse *s_predict_ok(kvc_grpc_client_t *c, const char *base,
                                                          const uint8_t *req, size_t len,
                                                          kvc_grpc_result_t *res)
{
    int rc = kvc_grpc_call(c, base, PREDICT, req, len, TIMEOUT_MS, res);
    if (rc != 0)
        fail_msg("Predict failed: %s: %s", kvc_grpc_status_name(res->code), res->message);
    assert_int_equal(res->http_status, 200);
    Tensorflow__Serving__PredictResponse *resp =
        tensorflow__serving__predict_response__unpack(NULL, res->len, res->data);
    assert_non_null(resp);
    return resp;
}

/* Finds an output tensor by name. */
static Tensorflow__TensorProto *s_output(Tensorflow__Serving__PredictResponse *r, const char *n)
{
    for (size_t i = 0; i < r->n_outputs; i++)
        if (strcmp(r->outputs[i]->key, n) == 0)
            return r->outputs[i]->value;
    return NULL;
}

/* ---- TF Serving API ------------------------------------------------------- */

static void test_bert_predict_int_val(void **state)
{
    fixture_t *fx = *state;
    int32_t ids[500];
    s_bert_ids(ids, 3);
    float want[2];
    s_bert_expect(ids, want);
    tensor_t x;
    const int64_t shape[] = {1, 500};
    s_tensor(&x, TENSORFLOW__DATA_TYPE__DT_INT32, shape, 2);
    x.t.n_int_val = 500;
    x.t.int_val = ids;
    size_t len;
    uint8_t *req = s_predict_req("bert", 1, "input_ids", &x.t, &len);
    kvc_grpc_result_t res;
    Tensorflow__Serving__PredictResponse *r =
        s_predict_ok(fx->client, fx->srv.base, req, len, &res);
    assert_string_equal(r->model_spec->name, "bert");
    assert_int_equal(r->model_spec->version_choice_case,
                     TENSORFLOW__SERVING__MODEL_SPEC__VERSION_CHOICE_VERSION);
    assert_int_equal(r->model_spec->version->value, 1);
    assert_string_equal(r->model_spec->signature_name, "serving_default");
    const int64_t oshape[] = {1, 2};
    const float *got = s_check_float_tensor(s_output(r, "logits"), oshape, 2, 2);
    assert_true(got[0] == want[0]);
    assert_true(got[1] == want[1]);
    /* Known values for k = 3: sum of ((7i + 39) % 1000 + 3), spread 999. */
    assert_true(want[1] == 999.0f);
    tensorflow__serving__predict_response__free_unpacked(r, NULL);
    kvc_grpc_result_free(&res);
    kvc_free(req);
}

static void test_bert_predict_int64_content(void **state)
{
    fixture_t *fx = *state;
    int32_t ids[500];
    int64_t ids64[500];
    s_bert_ids(ids, 11);
    for (int i = 0; i < 500; i++)
        ids64[i] = ids[i]; /* little-endian host: tensor_content is the raw array */
    float want[2];
    s_bert_expect(ids, want);
    tensor_t x;
    const int64_t shape[] = {1, 500};
    s_tensor(&x, TENSORFLOW__DATA_TYPE__DT_INT64, shape, 2);
    x.t.tensor_content.data = (uint8_t *)ids64;
    x.t.tensor_content.len = sizeof ids64;
    size_t len;
    uint8_t *req = s_predict_req("bert", 0, "input_ids", &x.t, &len);
    kvc_grpc_result_t res;
    Tensorflow__Serving__PredictResponse *r =
        s_predict_ok(fx->client, fx->srv.base, req, len, &res);
    const int64_t oshape[] = {1, 2};
    const float *got = s_check_float_tensor(s_output(r, "logits"), oshape, 2, 2);
    assert_true(got[0] == want[0]);
    assert_true(got[1] == want[1]);
    tensorflow__serving__predict_response__free_unpacked(r, NULL);
    kvc_grpc_result_free(&res);
    kvc_free(req);
}

/* Runs an image model through Predict with tensor_content or float_val. */
static void s_image_predict(fixture_t *fx, const char *model, size_t side, int inception,
                            int use_float_val)
{
    size_t n = side * side * 3;
    float *img = s_image(side);
    float want[1001];
    s_scores_expect(img, n, inception, want);
    tensor_t x;
    const int64_t shape[] = {1, (int64_t)side, (int64_t)side, 3};
    s_tensor(&x, TENSORFLOW__DATA_TYPE__DT_FLOAT, shape, 4);
    if (use_float_val) {
        x.t.n_float_val = n;
        x.t.float_val = img;
    } else {
        x.t.tensor_content.data = (uint8_t *)img;
        x.t.tensor_content.len = n * sizeof(float);
    }
    size_t len;
    uint8_t *req = s_predict_req(model, 0, "images", &x.t, &len);
    kvc_grpc_result_t res;
    Tensorflow__Serving__PredictResponse *r =
        s_predict_ok(fx->client, fx->srv.base, req, len, &res);
    assert_string_equal(r->model_spec->name, model);
    const int64_t oshape[] = {1, 1001};
    const float *got = s_check_float_tensor(s_output(r, "scores"), oshape, 2, 1001);
    assert_memory_equal(got, want, sizeof want);
    tensorflow__serving__predict_response__free_unpacked(r, NULL);
    kvc_grpc_result_free(&res);
    kvc_free(req);
    kvc_free(img);
}

static void test_mobilenet_tensor_content(void **state)
{
    s_image_predict(*state, "mobilenet", 224, 0, 0);
}

static void test_mobilenet_float_val(void **state)
{
    s_image_predict(*state, "mobilenet", 224, 0, 1);
}

static void test_inception_tensor_content(void **state)
{
    s_image_predict(*state, "inception", 299, 1, 0);
}

/* yolov5's input of 0.5 everywhere makes mean(x) exactly 0.5. */
static float *s_yolo_input(void)
{
    size_t n = 640 * 640 * 3;
    float *x = kvc_malloc(n * sizeof *x);
    assert_non_null(x);
    for (size_t i = 0; i < n; i++)
        x[i] = 0.5f;
    return x;
}

static void test_yolov5_predict(void **state)
{
    fixture_t *fx = *state;
    float *img = s_yolo_input();
    tensor_t x;
    const int64_t shape[] = {1, 640, 640, 3};
    s_tensor(&x, TENSORFLOW__DATA_TYPE__DT_FLOAT, shape, 4);
    x.t.tensor_content.data = (uint8_t *)img;
    x.t.tensor_content.len = 640 * 640 * 3 * sizeof(float);
    size_t len;
    uint8_t *req = s_predict_req("yolov5", 0, "images", &x.t, &len);
    assert_true(len > 4915200); /* over grpc's 4 MiB default: limits were raised */
    kvc_grpc_result_t res;
    Tensorflow__Serving__PredictResponse *r =
        s_predict_ok(fx->client, fx->srv.base, req, len, &res);
    const int64_t oshape[] = {1, 25200, 85};
    const float *got = s_check_float_tensor(s_output(r, "output0"), oshape, 3, 25200 * 85);
    /* Every value, recomputed from the formula (the mean is exactly 0.5). */
    uint64_t seed = yolo_expect_seed(0.5);
    for (uint32_t i = 0; i < 25200; i++)
        for (uint32_t k = 0; k < 85; k++) {
            float want = yolo_expect_at(seed, i, k);
            if (memcmp(&got[i * 85 + k], &want, sizeof want) != 0) {
                fprintf(stderr, "output0[%u,%u]: got %.9g want %.9g\n", i, k, got[i * 85 + k],
                        want);
                fail();
            }
        }
    /* And it looks like a detector's head: boxes in pixels around their cell
     * (the last row is the bottom-right 20x20 cell, stride 32), scores small
     * except in the few rows that hold an object. */
    assert_true(got[25199 * 85 + 0] >= 19 * 32 - 16 && got[25199 * 85 + 0] < 21 * 32 - 16);
    assert_true(got[25199 * 85 + 1] >= 19 * 32 - 16 && got[25199 * 85 + 1] < 21 * 32 - 16);
    size_t objects = 0, small = 0;
    for (size_t i = 0; i < 25200; i++) {
        const float *row = got + i * 85;
        assert_true(row[2] > 2.0f && row[2] < 840.0f && row[3] > 3.0f && row[3] < 734.0f);
        objects += row[4] >= 0.5f;
        for (int k = 4; k < 85; k++) {
            assert_true(row[k] > 1e-6f && row[k] <= 1.0f);
            small += row[k] < 0.02f;
        }
    }
    assert_true(objects > 50 && objects < 150); /* 1 row in 256 on average */
    assert_true(small == 25200 * 81 - 2 * objects);
    tensorflow__serving__predict_response__free_unpacked(r, NULL);
    kvc_grpc_result_free(&res);
    kvc_free(req);
    kvc_free(img);
}

static void test_get_model_metadata(void **state)
{
    fixture_t *fx = *state;
    Tensorflow__Serving__GetModelMetadataRequest req =
        TENSORFLOW__SERVING__GET_MODEL_METADATA_REQUEST__INIT;
    Tensorflow__Serving__ModelSpec spec = TENSORFLOW__SERVING__MODEL_SPEC__INIT;
    char *fields[] = {"signature_def"};
    spec.name = "mobilenet";
    req.model_spec = &spec;
    req.n_metadata_field = 1;
    req.metadata_field = fields;
    size_t len;
    uint8_t *buf = s_pack(&req.base, &len);
    kvc_grpc_result_t res;
    assert_int_equal(kvc_grpc_call(fx->client, fx->srv.base, METADATA, buf, len, TIMEOUT_MS, &res),
                     0);
    Tensorflow__Serving__GetModelMetadataResponse *r =
        tensorflow__serving__get_model_metadata_response__unpack(NULL, res.len, res.data);
    assert_non_null(r);
    assert_string_equal(r->model_spec->name, "mobilenet");
    assert_int_equal(r->n_metadata, 1);
    assert_string_equal(r->metadata[0]->key, "signature_def");
    Google__Protobuf__Any *any = r->metadata[0]->value;
    assert_string_equal(any->type_url, "type.googleapis.com/tensorflow.serving.SignatureDefMap");
    Tensorflow__Serving__SignatureDefMap *sdm =
        tensorflow__serving__signature_def_map__unpack(NULL, any->value.len, any->value.data);
    assert_non_null(sdm);
    assert_int_equal(sdm->n_signature_def, 1);
    assert_string_equal(sdm->signature_def[0]->key, "serving_default");
    Tensorflow__SignatureDef *sig = sdm->signature_def[0]->value;
    assert_string_equal(sig->method_name, "tensorflow/serving/predict");
    assert_int_equal(sig->n_inputs, 1);
    assert_string_equal(sig->inputs[0]->key, "images");
    Tensorflow__TensorInfo *in = sig->inputs[0]->value;
    assert_int_equal(in->dtype, TENSORFLOW__DATA_TYPE__DT_FLOAT);
    assert_int_equal(in->tensor_shape->n_dim, 4);
    const int64_t dims[] = {-1, 224, 224, 3};
    for (int i = 0; i < 4; i++)
        assert_int_equal(in->tensor_shape->dim[i]->size, dims[i]);
    assert_int_equal(sig->n_outputs, 1);
    assert_string_equal(sig->outputs[0]->key, "scores");
    assert_int_equal(sig->outputs[0]->value->tensor_shape->dim[1]->size, 1001);
    tensorflow__serving__signature_def_map__free_unpacked(sdm, NULL);
    tensorflow__serving__get_model_metadata_response__free_unpacked(r, NULL);
    kvc_grpc_result_free(&res);
    kvc_free(buf);
}

static void test_get_model_status(void **state)
{
    fixture_t *fx = *state;
    Tensorflow__Serving__GetModelStatusRequest req =
        TENSORFLOW__SERVING__GET_MODEL_STATUS_REQUEST__INIT;
    Tensorflow__Serving__ModelSpec spec = TENSORFLOW__SERVING__MODEL_SPEC__INIT;
    spec.name = "bert";
    req.model_spec = &spec;
    size_t len;
    uint8_t *buf = s_pack(&req.base, &len);
    kvc_grpc_result_t res;
    assert_int_equal(kvc_grpc_call(fx->client, fx->srv.base, STATUS, buf, len, TIMEOUT_MS, &res),
                     0);
    Tensorflow__Serving__GetModelStatusResponse *r =
        tensorflow__serving__get_model_status_response__unpack(NULL, res.len, res.data);
    assert_non_null(r);
    assert_int_equal(r->n_model_version_status, 1);
    assert_int_equal(r->model_version_status[0]->version, 1);
    assert_int_equal(r->model_version_status[0]->state,
                     TENSORFLOW__SERVING__MODEL_VERSION_STATUS__STATE__AVAILABLE);
    tensorflow__serving__get_model_status_response__free_unpacked(r, NULL);
    kvc_grpc_result_free(&res);
    kvc_free(buf);

    /* Unknown model: NOT_FOUND. */
    spec.name = "resnet";
    buf = s_pack(&req.base, &len);
    assert_int_equal(kvc_grpc_call(fx->client, fx->srv.base, STATUS, buf, len, TIMEOUT_MS, &res),
                     KVC_ENOENT);
    assert_int_equal(res.code, KVC_GRPC_NOT_FOUND);
    kvc_grpc_result_free(&res);
    kvc_free(buf);
}

/* ---- Errors ----------------------------------------------------------------- */

static void test_not_found_trailers_only(void **state)
{
    fixture_t *fx = *state;
    int32_t ids[500];
    s_bert_ids(ids, 1);
    tensor_t x;
    const int64_t shape[] = {1, 500};
    s_tensor(&x, TENSORFLOW__DATA_TYPE__DT_INT32, shape, 2);
    x.t.n_int_val = 500;
    x.t.int_val = ids;
    size_t len;
    uint8_t *req = s_predict_req("gpt9", 0, "input_ids", &x.t, &len);
    kvc_grpc_result_t res;
    assert_int_equal(kvc_grpc_call(fx->client, fx->srv.base, PREDICT, req, len, TIMEOUT_MS, &res),
                     KVC_ENOENT);
    assert_int_equal(res.code, KVC_GRPC_NOT_FOUND);
    assert_int_equal(res.http_status, 200);
    assert_string_equal(res.message, "Servable not found for request: Latest(gpt9)");
    assert_null(res.data);
    assert_int_equal(res.len, 0);
    kvc_grpc_result_free(&res);
    kvc_free(req);

    /* A version that does not exist is NOT_FOUND too. */
    req = s_predict_req("bert", 2, "input_ids", &x.t, &len);
    assert_int_equal(kvc_grpc_call(fx->client, fx->srv.base, PREDICT, req, len, TIMEOUT_MS, &res),
                     KVC_ENOENT);
    assert_string_equal(res.message, "Servable not found for request: Specific(bert, 2)");
    kvc_grpc_result_free(&res);
    kvc_free(req);

    /* An unknown method: grpcio answers UNIMPLEMENTED trailers-only at once
     * and resets the stream; libcurl 7.88 sometimes handles the reset before
     * the headers, and a reset without status is INTERNAL per the gRPC spec.
     * Either way the call fails cleanly and the connection stays usable. */
    assert_int_equal(kvc_grpc_call(fx->client, fx->srv.base,
                                   "/tensorflow.serving.PredictionService/Classify", NULL, 0,
                                   TIMEOUT_MS, &res),
                     KVC_EIO);
    assert_true(res.code == KVC_GRPC_UNIMPLEMENTED || res.code == KVC_GRPC_INTERNAL);
    kvc_grpc_result_free(&res);
    req = s_predict_req("gpt9", 0, "input_ids", &x.t, &len);
    assert_int_equal(kvc_grpc_call(fx->client, fx->srv.base, PREDICT, req, len, TIMEOUT_MS, &res),
                     KVC_ENOENT);
    kvc_grpc_result_free(&res);
    kvc_free(req);
}

static void test_invalid_argument(void **state)
{
    fixture_t *fx = *state;
    int32_t ids[500];
    s_bert_ids(ids, 1);
    tensor_t x;
    const int64_t shape[] = {1, 499};
    s_tensor(&x, TENSORFLOW__DATA_TYPE__DT_INT32, shape, 2);
    x.t.n_int_val = 499;
    x.t.int_val = ids;
    size_t len;
    uint8_t *req = s_predict_req("bert", 0, "input_ids", &x.t, &len);
    kvc_grpc_result_t res;
    assert_int_equal(kvc_grpc_call(fx->client, fx->srv.base, PREDICT, req, len, TIMEOUT_MS, &res),
                     KVC_EINVAL);
    assert_int_equal(res.code, KVC_GRPC_INVALID_ARGUMENT);
    assert_string_equal(res.message, "input 'input_ids' must have shape [1, 500], got [1, 499]");
    kvc_grpc_result_free(&res);
    kvc_free(req);

    /* Wrong dtype: bert wants integers. */
    float f[500] = {0};
    const int64_t shape2[] = {1, 500};
    s_tensor(&x, TENSORFLOW__DATA_TYPE__DT_FLOAT, shape2, 2);
    x.t.n_float_val = 500;
    x.t.float_val = f;
    req = s_predict_req("bert", 0, "input_ids", &x.t, &len);
    assert_int_equal(kvc_grpc_call(fx->client, fx->srv.base, PREDICT, req, len, TIMEOUT_MS, &res),
                     KVC_EINVAL);
    assert_int_equal(res.code, KVC_GRPC_INVALID_ARGUMENT);
    assert_string_equal(res.message, "input 'input_ids' must be int32 or int64, got float32");
    kvc_grpc_result_free(&res);
    kvc_free(req);

    /* Bytes that are not a PredictRequest: the server cannot parse them. */
    const uint8_t junk[] = {0xff, 0xff, 0xff};
    assert_int_not_equal(
        kvc_grpc_call(fx->client, fx->srv.base, PREDICT, junk, sizeof junk, TIMEOUT_MS, &res), 0);
    assert_int_equal(res.code, KVC_GRPC_INTERNAL);
    kvc_grpc_result_free(&res);
}

/* A port held bound but never listened on (so no other test can take it
 * meanwhile) refuses the connection: UNAVAILABLE, quickly. */
static void test_unavailable_when_nothing_listens(void **state)
{
    (void)state;
    int port = 0;
    int fd = kvc_it_hold_port(&port, 0);
    assert_true(fd >= 0);
    char base[64];
    snprintf(base, sizeof base, "http://127.0.0.1:%d", port);
    kvc_grpc_client_t *c = kvc_grpc_client_new(NULL);
    assert_non_null(c);
    kvc_grpc_result_t res;
    const uint8_t b[] = {0};
    int64_t t0 = s_now_ms();
    assert_int_equal(kvc_grpc_call(c, base, PREDICT, b, 0, 5000, &res), KVC_EUNAVAIL);
    assert_true(s_now_ms() - t0 < 4000);
    assert_int_equal(res.code, KVC_GRPC_UNAVAILABLE);
    assert_int_equal(res.http_status, 0);
    assert_non_null(strstr(res.message, "backend unavailable"));
    kvc_grpc_result_free(&res);
    kvc_grpc_stats_t st;
    kvc_grpc_client_stats(c, &st);
    assert_int_equal(st.calls, 1);
    assert_int_equal(st.failures, 1);
    kvc_grpc_client_destroy(&c);
    close(fd);
}

static void test_resource_exhausted(void **state)
{
    fixture_t *fx = *state;
    kvc_grpc_opts_t o = {0};
    o.max_message_size = 1024 * 1024;
    kvc_grpc_client_t *c = kvc_grpc_client_new(&o);
    assert_non_null(c);
    float *img = s_yolo_input();
    tensor_t x;
    const int64_t shape[] = {1, 640, 640, 3};
    s_tensor(&x, TENSORFLOW__DATA_TYPE__DT_FLOAT, shape, 4);
    x.t.tensor_content.data = (uint8_t *)img;
    x.t.tensor_content.len = 640 * 640 * 3 * sizeof(float);
    size_t len;
    uint8_t *req = s_predict_req("yolov5", 0, "images", &x.t, &len);
    kvc_grpc_result_t res;
    assert_int_equal(kvc_grpc_call(c, fx->srv.base, PREDICT, req, len, TIMEOUT_MS, &res),
                     KVC_ERANGE);
    assert_int_equal(res.code, KVC_GRPC_RESOURCE_EXHAUSTED);
    assert_string_equal(res.message, "response message larger than the limit of 1048576 bytes");
    assert_null(res.data);
    kvc_grpc_result_free(&res);
    kvc_free(req);
    kvc_free(img);

    /* The same client still serves small calls afterwards. */
    int32_t ids[500];
    s_bert_ids(ids, 5);
    float want[2];
    s_bert_expect(ids, want);
    const int64_t bshape[] = {1, 500};
    s_tensor(&x, TENSORFLOW__DATA_TYPE__DT_INT32, bshape, 2);
    x.t.n_int_val = 500;
    x.t.int_val = ids;
    req = s_predict_req("bert", 0, "input_ids", &x.t, &len);
    Tensorflow__Serving__PredictResponse *r = s_predict_ok(c, fx->srv.base, req, len, &res);
    const int64_t oshape[] = {1, 2};
    const float *got = s_check_float_tensor(s_output(r, "logits"), oshape, 2, 2);
    assert_true(got[0] == want[0] && got[1] == want[1]);
    tensorflow__serving__predict_response__free_unpacked(r, NULL);
    kvc_grpc_result_free(&res);
    kvc_free(req);
    kvc_grpc_client_destroy(&c);
}

/* A model server answering predicts after 5 s, a client, and a BERT
 * Predict for it (free req with kvc_free). */
static kvc_grpc_client_t *s_slow_start(server_t *slow, uint8_t **req, size_t *len)
{
    const char *const extra[] = {"--delay-ms", "5000", NULL};
    s_server_start(slow, extra);
    kvc_grpc_client_t *c = kvc_grpc_client_new(NULL);
    assert_non_null(c);
    *req = s_bert_predict_req(len);
    return c;
}

static void test_deadline_exceeded_on_slow_server(void **state)
{
    (void)state;
    server_t slow;
    size_t len;
    uint8_t *req;
    kvc_grpc_client_t *c = s_slow_start(&slow, &req, &len);
    kvc_grpc_result_t res;
    int64_t t0 = s_now_ms();
    assert_int_equal(kvc_grpc_call(c, slow.base, PREDICT, req, len, 300, &res), KVC_ETIMEDOUT);
    int64_t took = s_now_ms() - t0;
    assert_int_equal(res.code, KVC_GRPC_DEADLINE_EXCEEDED);
    assert_true(took >= 250);
    assert_true(took < 3000);
    kvc_grpc_result_free(&res);

    /* Without the delay on other methods, the connection still answers. */
    Inference__ServerLiveRequest lreq = INFERENCE__SERVER_LIVE_REQUEST__INIT;
    size_t llen;
    uint8_t *lbuf = s_pack(&lreq.base, &llen);
    assert_int_equal(kvc_grpc_call(c, slow.base, KV2 "ServerLive", lbuf, llen, TIMEOUT_MS, &res),
                     0);
    kvc_grpc_result_free(&res);
    kvc_free(lbuf);
    kvc_free(req);
    kvc_grpc_client_destroy(&c);
    s_server_stop(&slow);
}

/* A backend restarted on the same port: the client's connection is dead,
 * and the next call must notice before it is written there and open a
 * fresh one, without failing and without a retry. The test holds the port
 * (shared with the servers through SO_REUSEPORT) from before the first
 * server starts until after the second stops, so no other test can take
 * it while no server is up. */
static void test_backend_restart_reconnects(void **state)
{
    (void)state;
    server_t a, b;
    int held_port = 0;
    int held = kvc_it_hold_port(&held_port, 1);
    assert_true(held >= 0);
    char port[16];
    snprintf(port, sizeof port, "%d", held_port);
    const char *const extra[] = {"--grpc-port", port, NULL};
    s_server_start(&a, extra);
    assert_int_equal(a.grpc_port, held_port);
    kvc_grpc_client_t *c = kvc_grpc_client_new(NULL);
    assert_non_null(c);
    Inference__ServerLiveRequest lreq = INFERENCE__SERVER_LIVE_REQUEST__INIT;
    size_t len;
    uint8_t *buf = s_pack(&lreq.base, &len);
    kvc_grpc_result_t res;
    assert_int_equal(kvc_grpc_call(c, a.base, KV2 "ServerLive", buf, len, TIMEOUT_MS, &res), 0);
    kvc_grpc_result_free(&res);
    char base[64];
    memcpy(base, a.base, sizeof base);
    s_server_stop(&a);
    s_server_start(&b, extra);
    assert_string_equal(b.base, base);
    if (kvc_grpc_call(c, base, KV2 "ServerLive", buf, len, TIMEOUT_MS, &res) != 0)
        fail_msg("call after restart: %s: %s", kvc_grpc_status_name(res.code), res.message);
    kvc_grpc_result_free(&res);
    kvc_grpc_stats_t st;
    kvc_grpc_client_stats(c, &st);
    assert_int_equal(st.calls, 2);
    assert_int_equal(st.failures, 0);
    /* The first connection, found closed before the second call was
     * written to it, and the new one that call opened. */
    assert_int_equal(st.connections, 2);
    assert_int_equal(st.retried, 0);
    kvc_free(buf);
    kvc_grpc_client_destroy(&c);
    s_server_stop(&b);
    close(held);
}

/* ---- KServe v2 ---------------------------------------------------------------- */

/* Sends a ModelInfer and unpacks the answer; caller frees both. */
static Inference__ModelInferResponse *s_infer_ok(fixture_t *fx, Inference__ModelInferRequest *req,
                                                 kvc_grpc_result_t *res)
{
    size_t len;
    uint8_t *buf = s_pack(&req->base, &len);
    int rc = kvc_grpc_call(fx->client, fx->srv.base, INFER, buf, len, TIMEOUT_MS, res);
    kvc_free(buf);
    if (rc != 0)
        fail_msg("ModelInfer failed: %s: %s", kvc_grpc_status_name(res->code), res->message);
    Inference__ModelInferResponse *r =
        inference__model_infer_response__unpack(NULL, res->len, res->data);
    assert_non_null(r);
    return r;
}

static void test_kserve_bert_typed(void **state)
{
    fixture_t *fx = *state;
    int32_t ids[500];
    s_bert_ids(ids, 7);
    float want[2];
    s_bert_expect(ids, want);
    Inference__InferTensorContents contents = INFERENCE__INFER_TENSOR_CONTENTS__INIT;
    contents.n_int_contents = 500;
    contents.int_contents = ids;
    Inference__ModelInferRequest__InferInputTensor in =
        INFERENCE__MODEL_INFER_REQUEST__INFER_INPUT_TENSOR__INIT;
    int64_t shape[] = {1, 500};
    in.name = "input_ids";
    in.datatype = "INT32";
    in.n_shape = 2;
    in.shape = shape;
    in.contents = &contents;
    Inference__ModelInferRequest__InferInputTensor *ins[] = {&in};
    Inference__ModelInferRequest req = INFERENCE__MODEL_INFER_REQUEST__INIT;
    req.model_name = "bert";
    req.id = "req-42";
    req.n_inputs = 1;
    req.inputs = ins;
    kvc_grpc_result_t res;
    Inference__ModelInferResponse *r = s_infer_ok(fx, &req, &res);
    assert_string_equal(r->model_name, "bert");
    assert_string_equal(r->model_version, "1");
    assert_string_equal(r->id, "req-42");
    assert_int_equal(r->n_outputs, 1);
    assert_string_equal(r->outputs[0]->name, "logits");
    assert_string_equal(r->outputs[0]->datatype, "FP32");
    assert_int_equal(r->outputs[0]->n_shape, 2);
    assert_int_equal(r->outputs[0]->shape[1], 2);
    assert_int_equal(r->n_raw_output_contents, 0);
    assert_non_null(r->outputs[0]->contents);
    assert_int_equal(r->outputs[0]->contents->n_fp32_contents, 2);
    assert_true(r->outputs[0]->contents->fp32_contents[0] == want[0]);
    assert_true(r->outputs[0]->contents->fp32_contents[1] == want[1]);
    inference__model_infer_response__free_unpacked(r, NULL);
    kvc_grpc_result_free(&res);
}

static void test_kserve_mobilenet_raw(void **state)
{
    fixture_t *fx = *state;
    float *img = s_image(224);
    float want[1001];
    s_scores_expect(img, 224 * 224 * 3, 0, want);
    Inference__ModelInferRequest__InferInputTensor in =
        INFERENCE__MODEL_INFER_REQUEST__INFER_INPUT_TENSOR__INIT;
    int64_t shape[] = {1, 224, 224, 3};
    in.name = "images";
    in.datatype = "FP32";
    in.n_shape = 4;
    in.shape = shape;
    Inference__ModelInferRequest__InferInputTensor *ins[] = {&in};
    ProtobufCBinaryData raw = {224 * 224 * 3 * sizeof(float), (uint8_t *)img};
    Inference__ModelInferRequest req = INFERENCE__MODEL_INFER_REQUEST__INIT;
    req.model_name = "mobilenet";
    req.model_version = "1";
    req.n_inputs = 1;
    req.inputs = ins;
    req.n_raw_input_contents = 1;
    req.raw_input_contents = &raw;
    kvc_grpc_result_t res;
    Inference__ModelInferResponse *r = s_infer_ok(fx, &req, &res);
    assert_int_equal(r->n_outputs, 1);
    assert_string_equal(r->outputs[0]->name, "scores");
    assert_int_equal(r->outputs[0]->n_shape, 2);
    assert_int_equal(r->outputs[0]->shape[0], 1);
    assert_int_equal(r->outputs[0]->shape[1], 1001);
    assert_int_equal(r->n_raw_output_contents, 1);
    assert_int_equal(r->raw_output_contents[0].len, sizeof want);
    assert_memory_equal(r->raw_output_contents[0].data, want, sizeof want);
    inference__model_infer_response__free_unpacked(r, NULL);
    kvc_grpc_result_free(&res);

    /* A raw buffer of the wrong size is INVALID_ARGUMENT. */
    raw.len -= 4;
    size_t len;
    uint8_t *buf = s_pack(&req.base, &len);
    assert_int_equal(kvc_grpc_call(fx->client, fx->srv.base, INFER, buf, len, TIMEOUT_MS, &res),
                     KVC_EINVAL);
    assert_int_equal(res.code, KVC_GRPC_INVALID_ARGUMENT);
    assert_string_equal(res.message,
                        "input 'images': raw content has 602108 bytes, expected 602112");
    kvc_grpc_result_free(&res);
    kvc_free(buf);
    kvc_free(img);
}

static void test_kserve_health_and_metadata(void **state)
{
    fixture_t *fx = *state;
    kvc_grpc_result_t res;
    size_t len;
    uint8_t *buf;

    Inference__ServerLiveRequest live = INFERENCE__SERVER_LIVE_REQUEST__INIT;
    buf = s_pack(&live.base, &len);
    assert_int_equal(len, 0);
    assert_int_equal(
        kvc_grpc_call(fx->client, fx->srv.base, KV2 "ServerLive", buf, len, TIMEOUT_MS, &res), 0);
    Inference__ServerLiveResponse *lr =
        inference__server_live_response__unpack(NULL, res.len, res.data);
    assert_non_null(lr);
    assert_true(lr->live);
    inference__server_live_response__free_unpacked(lr, NULL);
    kvc_grpc_result_free(&res);
    kvc_free(buf);

    Inference__ServerReadyRequest ready = INFERENCE__SERVER_READY_REQUEST__INIT;
    buf = s_pack(&ready.base, &len);
    assert_int_equal(
        kvc_grpc_call(fx->client, fx->srv.base, KV2 "ServerReady", buf, len, TIMEOUT_MS, &res), 0);
    Inference__ServerReadyResponse *rr =
        inference__server_ready_response__unpack(NULL, res.len, res.data);
    assert_non_null(rr);
    assert_true(rr->ready);
    inference__server_ready_response__free_unpacked(rr, NULL);
    kvc_grpc_result_free(&res);
    kvc_free(buf);

    const char *names[] = {"bert", "nope"};
    for (int i = 0; i < 2; i++) {
        Inference__ModelReadyRequest mr = INFERENCE__MODEL_READY_REQUEST__INIT;
        mr.name = (char *)names[i];
        buf = s_pack(&mr.base, &len);
        assert_int_equal(
            kvc_grpc_call(fx->client, fx->srv.base, KV2 "ModelReady", buf, len, TIMEOUT_MS, &res),
            0);
        /* ready=false encodes as an empty message: data is non-NULL, len 0. */
        assert_non_null(res.data);
        Inference__ModelReadyResponse *m =
            inference__model_ready_response__unpack(NULL, res.len, res.data);
        assert_non_null(m);
        assert_int_equal(m->ready, i == 0);
        inference__model_ready_response__free_unpacked(m, NULL);
        kvc_grpc_result_free(&res);
        kvc_free(buf);
    }

    Inference__ModelMetadataRequest md = INFERENCE__MODEL_METADATA_REQUEST__INIT;
    md.name = "bert";
    buf = s_pack(&md.base, &len);
    assert_int_equal(
        kvc_grpc_call(fx->client, fx->srv.base, KV2 "ModelMetadata", buf, len, TIMEOUT_MS, &res),
        0);
    Inference__ModelMetadataResponse *mm =
        inference__model_metadata_response__unpack(NULL, res.len, res.data);
    assert_non_null(mm);
    assert_string_equal(mm->name, "bert");
    assert_int_equal(mm->n_versions, 1);
    assert_string_equal(mm->versions[0], "1");
    assert_int_equal(mm->n_inputs, 1);
    assert_string_equal(mm->inputs[0]->name, "input_ids");
    assert_string_equal(mm->inputs[0]->datatype, "INT32");
    assert_int_equal(mm->inputs[0]->n_shape, 2);
    assert_int_equal(mm->inputs[0]->shape[1], 500);
    assert_int_equal(mm->n_outputs, 1);
    assert_string_equal(mm->outputs[0]->name, "logits");
    inference__model_metadata_response__free_unpacked(mm, NULL);
    kvc_grpc_result_free(&res);
    kvc_free(buf);

    md.name = "nope";
    buf = s_pack(&md.base, &len);
    assert_int_equal(
        kvc_grpc_call(fx->client, fx->srv.base, KV2 "ModelMetadata", buf, len, TIMEOUT_MS, &res),
        KVC_ENOENT);
    assert_int_equal(res.code, KVC_GRPC_NOT_FOUND);
    kvc_grpc_result_free(&res);
    kvc_free(buf);
}

/* ---- Concurrency ------------------------------------------------------------ */

#define THREADS 16
#define CALLS_PER_THREAD 4

typedef struct {
    kvc_grpc_client_t *client;
    const char *base;
    int index;
    int ok; /* calls that returned exactly the expected logits */
    char err[128];
} worker_t;

/* One worker: several bert calls with inputs unique to the worker. */
static void *s_worker(void *arg)
{
    worker_t *w = arg;
    for (int k = 0; k < CALLS_PER_THREAD; k++) {
        int32_t ids[500];
        s_bert_ids(ids, 100 + w->index * CALLS_PER_THREAD + k);
        float want[2];
        s_bert_expect(ids, want);
        Tensorflow__TensorProto t = TENSORFLOW__TENSOR_PROTO__INIT;
        Tensorflow__TensorShapeProto sh = TENSORFLOW__TENSOR_SHAPE_PROTO__INIT;
        Tensorflow__TensorShapeProto__Dim d0 = TENSORFLOW__TENSOR_SHAPE_PROTO__DIM__INIT;
        Tensorflow__TensorShapeProto__Dim d1 = TENSORFLOW__TENSOR_SHAPE_PROTO__DIM__INIT;
        Tensorflow__TensorShapeProto__Dim *dims[] = {&d0, &d1};
        d0.size = 1;
        d1.size = 500;
        sh.n_dim = 2;
        sh.dim = dims;
        t.dtype = TENSORFLOW__DATA_TYPE__DT_INT32;
        t.tensor_shape = &sh;
        t.n_int_val = 500;
        t.int_val = ids;
        Tensorflow__Serving__PredictRequest req = TENSORFLOW__SERVING__PREDICT_REQUEST__INIT;
        Tensorflow__Serving__ModelSpec spec = TENSORFLOW__SERVING__MODEL_SPEC__INIT;
        Tensorflow__Serving__PredictRequest__InputsEntry e =
            TENSORFLOW__SERVING__PREDICT_REQUEST__INPUTS_ENTRY__INIT;
        Tensorflow__Serving__PredictRequest__InputsEntry *ents[] = {&e};
        spec.name = "bert";
        req.model_spec = &spec;
        e.key = "input_ids";
        e.value = &t;
        req.n_inputs = 1;
        req.inputs = ents;
        size_t len = tensorflow__serving__predict_request__get_packed_size(&req);
        uint8_t *buf = malloc(len);
        if (!buf)
            return NULL;
        tensorflow__serving__predict_request__pack(&req, buf);
        kvc_grpc_result_t res;
        int rc = kvc_grpc_call(w->client, w->base, PREDICT, buf, len, TIMEOUT_MS, &res);
        free(buf);
        if (rc != 0) {
            snprintf(w->err, sizeof w->err, "%s: %s", kvc_grpc_status_name(res.code), res.message);
            kvc_grpc_result_free(&res);
            continue;
        }
        Tensorflow__Serving__PredictResponse *r =
            tensorflow__serving__predict_response__unpack(NULL, res.len, res.data);
        if (r && r->n_outputs == 1 && r->outputs[0]->value->tensor_content.len == 8) {
            float got[2];
            memcpy(got, r->outputs[0]->value->tensor_content.data, 8);
            if (got[0] == want[0] && got[1] == want[1])
                w->ok++;
            else
                snprintf(w->err, sizeof w->err, "wrong logits %g %g", got[0], got[1]);
        }
        tensorflow__serving__predict_response__free_unpacked(r, NULL);
        kvc_grpc_result_free(&res);
    }
    return NULL;
}

#define GOAWAY_THREADS 8
#define GOAWAY_ROUNDS 30

/* Runs GOAWAY_ROUNDS rounds of s_worker's calls. */
static void *s_goaway_worker(void *arg)
{
    for (int r = 0; r < GOAWAY_ROUNDS; r++)
        s_worker(arg);
    return NULL;
}

/*
 * A server that closes every connection after 100 ms (grpc's
 * max_connection_age: GOAWAY, then close) under 8 threads of calls: every
 * call is answered right. libcurl 7.88 ends some streams of a connection
 * it closes after a GOAWAY as if complete, without their status, and fails
 * some whose answer had begun when a write to the closed socket breaks
 * ("Send failure: Broken pipe" after HTTP 200); with retry_lost such a
 * call is made again on a new connection. Without it about 1 call in 200
 * failed here ("backend sent no grpc-status"); without the second case,
 * about 1 run in 16 under load.
 */
static void test_calls_survive_goaway(void **state)
{
    (void)state;
    server_t aging;
    const char *const extra[] = {"--max-connection-age-ms", "100", NULL};
    s_server_start(&aging, extra);
    kvc_grpc_opts_t o = {.retry_lost = 1};
    kvc_grpc_client_t *c = kvc_grpc_client_new(&o);
    assert_non_null(c);
    worker_t w[GOAWAY_THREADS];
    pthread_t th[GOAWAY_THREADS];
    for (int i = 0; i < GOAWAY_THREADS; i++) {
        w[i] = (worker_t){.client = c, .base = aging.base, .index = i};
        assert_int_equal(pthread_create(&th[i], NULL, s_goaway_worker, &w[i]), 0);
    }
    for (int i = 0; i < GOAWAY_THREADS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < GOAWAY_THREADS; i++) {
        if (w[i].ok != GOAWAY_ROUNDS * CALLS_PER_THREAD)
            fail_msg("worker %d: %d/%d ok (%s)", i, w[i].ok, GOAWAY_ROUNDS * CALLS_PER_THREAD,
                     w[i].err);
    }
    kvc_grpc_stats_t st;
    kvc_grpc_client_stats(c, &st);
    assert_int_equal(st.failures, 0);
    assert_true(st.connections > 1); /* the server did close them */
    kvc_grpc_client_destroy(&c);
    s_server_stop(&aging);
}

/*
 * A backend idle for longer than idle_reopen_ms gets a new connection (with
 * h2c prior knowledge) even though libcurl still holds the old one: a
 * prior-knowledge transfer reusing it would break it in libcurl 7.88
 * ("Error in the HTTP2 framing layer", and every call after it until the
 * old connection aged out). Calls right after reuse the new connection.
 */
static void test_idle_connection_reopened(void **state)
{
    fixture_t *fx = *state;
    kvc_grpc_opts_t o = {.idle_reopen_ms = 50};
    kvc_grpc_client_t *c = kvc_grpc_client_new(&o);
    assert_non_null(c);
    size_t len;
    uint8_t *req = s_bert_predict_req(&len);
    for (int round = 0; round < 3; round++) {
        kvc_grpc_result_t res;
        int rc = kvc_grpc_call(c, fx->srv.base, PREDICT, req, len, TIMEOUT_MS, &res);
        if (rc != 0)
            fail_msg("round %d: %s", round, res.message);
        kvc_grpc_result_free(&res);
        assert_int_equal(kvc_grpc_call(c, fx->srv.base, PREDICT, req, len, TIMEOUT_MS, &res), 0);
        kvc_grpc_result_free(&res);
        /* the backend goes idle past idle_reopen_ms (the clock is the condition) */
        int64_t until = s_now_ms() + 60;
        while (s_now_ms() < until)
            sched_yield();
    }
    kvc_grpc_stats_t st;
    kvc_grpc_client_stats(c, &st);
    assert_int_equal(st.calls, 6);
    assert_int_equal(st.failures, 0);
    assert_int_equal(st.connections, 3); /* one per round, reused within it */
    kvc_free(req);
    kvc_grpc_client_destroy(&c);
}

static void test_concurrent_calls_share_one_connection(void **state)
{
    fixture_t *fx = *state;
    kvc_grpc_client_t *c = kvc_grpc_client_new(NULL);
    assert_non_null(c);
    pthread_t th[THREADS];
    worker_t w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].client = c;
        w[i].base = fx->srv.base;
        w[i].index = i;
        assert_int_equal(pthread_create(&th[i], NULL, s_worker, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < THREADS; i++) {
        if (w[i].ok != CALLS_PER_THREAD)
            fail_msg("worker %d: %d/%d ok (%s)", i, w[i].ok, CALLS_PER_THREAD, w[i].err);
    }
    kvc_grpc_stats_t st;
    kvc_grpc_client_stats(c, &st);
    assert_int_equal(st.calls, THREADS * CALLS_PER_THREAD);
    assert_int_equal(st.failures, 0);
    assert_int_equal(st.connections, 1);
    kvc_grpc_client_destroy(&c);
}

/* ---- An event loop owning the client (as the HTTP front does) --------- */

#define FIBERS 8
#define FOLLOWERS 4

typedef struct {
    kvc_grpc_client_t *client;
    worker_t *w; /* FIBERS workers run as fibers on the owner thread */
    atomic_int owned;
    atomic_int followers_left;
    int max_live;  /* most fibers waiting for a call at once */
    int timed_out; /* the loop gave up (a call never ended) */
} owner_t;

static void s_fiber_worker(void *arg)
{
    s_worker(arg);
}

/* Owns the client and runs the loop until every fiber has finished and
 * every follower thread is done (deadline 60 s). */
static void *s_owner(void *arg)
{
    owner_t *o = arg;
    kvc_grpc_client_own(o->client);
    atomic_store(&o->owned, 1);
    int live = 0;
    for (int i = 0; i < FIBERS; i++) {
        kvc_fiber_t *f = kvc_fiber_new(s_fiber_worker, &o->w[i]);
        if (f && !kvc_fiber_resume(f))
            live++; /* it yielded in its first call */
    }
    o->max_live = live;
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (live > 0 || atomic_load(&o->followers_left) > 0) {
        kvc_fiber_t *f;
        while ((f = kvc_fiber_next_ready()) != NULL)
            if (kvc_fiber_resume(f))
                live--;
        kvc_grpc_client_run(o->client, NULL, NULL, 0, 100);
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - t0.tv_sec > 60) {
            o->timed_out = 1;
            break;
        }
    }
    kvc_grpc_client_disown(o->client);
    kvc_fiber_thread_cleanup();
    return NULL;
}

typedef struct {
    worker_t *w;
    owner_t *o;
} follower_t;

static void *s_follower(void *arg)
{
    follower_t *f = arg;
    s_worker(f->w);
    atomic_fetch_sub(&f->o->followers_left, 1);
    return NULL;
}

static void test_owned_loop_drives_fibers_and_followers(void **state)
{
    fixture_t *fx = *state;
    kvc_grpc_client_t *c = kvc_grpc_client_new(NULL);
    assert_non_null(c);
    worker_t w[FIBERS + FOLLOWERS];
    for (int i = 0; i < FIBERS + FOLLOWERS; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].client = c;
        w[i].base = fx->srv.base;
        w[i].index = i;
    }
    owner_t o = {.client = c, .w = w};
    atomic_init(&o.owned, 0);
    atomic_init(&o.followers_left, FOLLOWERS);
    pthread_t owner, th[FOLLOWERS];
    follower_t fw[FOLLOWERS];
    assert_int_equal(pthread_create(&owner, NULL, s_owner, &o), 0);
    /* followers start once the loop owns the client, so none drives */
    for (int i = 0; i < 100000 && !atomic_load(&o.owned); i++)
        sched_yield();
    assert_int_equal(atomic_load(&o.owned), 1);
    for (int i = 0; i < FOLLOWERS; i++) {
        fw[i] = (follower_t){.w = &w[FIBERS + i], .o = &o};
        assert_int_equal(pthread_create(&th[i], NULL, s_follower, &fw[i]), 0);
    }
    for (int i = 0; i < FOLLOWERS; i++)
        pthread_join(th[i], NULL);
    pthread_join(owner, NULL);
    assert_int_equal(o.timed_out, 0);
    /* every fiber was waiting for its first call at the same time */
    assert_int_equal(o.max_live, FIBERS);
    for (int i = 0; i < FIBERS + FOLLOWERS; i++) {
        if (w[i].ok != CALLS_PER_THREAD)
            fail_msg("%s %d: %d/%d ok (%s)", i < FIBERS ? "fiber" : "follower", i, w[i].ok,
                     CALLS_PER_THREAD, w[i].err);
    }
    kvc_grpc_stats_t st;
    kvc_grpc_client_stats(c, &st);
    assert_int_equal(st.calls, (FIBERS + FOLLOWERS) * CALLS_PER_THREAD);
    assert_int_equal(st.failures, 0);
    assert_int_equal(st.connections, 1);
    /* disowned: a plain call drives again on its own thread */
    worker_t last = {.client = c, .base = fx->srv.base, .index = 99};
    s_worker(&last);
    assert_int_equal(last.ok, CALLS_PER_THREAD);
    kvc_grpc_client_destroy(&c);
}

/* ---- Cancelling calls by their caller's flag ------------------------------ */

/* One call made in a fiber with a cancel flag of its own. */
typedef struct {
    kvc_grpc_client_t *client;
    const char *base, *path;
    const uint8_t *req;
    size_t len;
    atomic_int flag;
    kvc_grpc_result_t res;
    int rc;
    int finished;
} cancel_call_t;

static void s_cancel_fiber(void *arg)
{
    cancel_call_t *cc = arg;
    kvc_grpc_cancel_flag_set(&cc->flag);
    cc->rc = kvc_grpc_call(cc->client, cc->base, cc->path, cc->req, cc->len, TIMEOUT_MS, &cc->res);
    cc->finished = 1;
}

static void *s_cancel_elsewhere(void *arg)
{
    cancel_call_t *cc = arg;
    cc->rc = kvc_grpc_client_cancel(cc->client, &cc->flag);
    return NULL;
}

/* Runs loop rounds until cc's fiber has finished (deadline 20 s). */
static void s_run_until_finished(kvc_grpc_client_t *c, cancel_call_t *cc)
{
    int64_t until = s_now_ms() + 20000;
    while (!cc->finished && s_now_ms() < until) {
        kvc_fiber_t *f;
        while ((f = kvc_fiber_next_ready()) != NULL)
            kvc_fiber_resume(f);
        if (!cc->finished)
            kvc_grpc_client_run(c, NULL, NULL, 0, 50);
    }
    assert_true(cc->finished);
}

/*
 * An owned client ends a call in flight when its caller's flag is raised
 * and kvc_grpc_client_cancel is run (the model server would answer after
 * 5 s, the call's deadline is 30 s): CANCELLED with the reason. A call made
 * with the flag already raised never starts. Only the owner may cancel.
 * The cancelled call was alone on its connection, which it closed: the
 * next call is still answered.
 */
static void test_owned_cancel_by_flag(void **state)
{
    (void)state;
    server_t slow;
    size_t len;
    uint8_t *req;
    kvc_grpc_client_t *c = s_slow_start(&slow, &req, &len);
    kvc_grpc_client_own(c);

    cancel_call_t a = {.client = c, .base = slow.base, .path = PREDICT, .req = req, .len = len};
    atomic_init(&a.flag, 0);
    kvc_fiber_t *f = kvc_fiber_new(s_cancel_fiber, &a);
    assert_non_null(f);
    assert_int_equal(kvc_fiber_resume(f), 0); /* waiting for its call */
    for (int i = 0; i < 5; i++)               /* connect and send it */
        kvc_grpc_client_run(c, NULL, NULL, 0, 20);
    assert_int_equal(a.finished, 0);
    /* another thread may not cancel: it does not drive */
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, s_cancel_elsewhere, &a), 0);
    pthread_join(t, NULL);
    assert_int_equal(a.rc, -1);
    assert_int_equal(a.finished, 0);
    atomic_store(&a.flag, 1);
    assert_int_equal(kvc_grpc_client_cancel(c, &a.flag), 1);
    s_run_until_finished(c, &a);
    assert_int_equal(a.res.code, KVC_GRPC_CANCELLED);
    assert_string_equal(a.res.message, "cancelled: the caller went away");
    assert_int_not_equal(a.rc, 0);
    kvc_grpc_result_free(&a.res);
    assert_int_equal(kvc_grpc_client_cancel(c, &a.flag), 0); /* nothing left */

    /* flag raised before the call: it ends at once, without yielding */
    cancel_call_t b = {.client = c, .base = slow.base, .path = PREDICT, .req = req, .len = len};
    atomic_init(&b.flag, 1);
    f = kvc_fiber_new(s_cancel_fiber, &b);
    assert_non_null(f);
    assert_int_equal(kvc_fiber_resume(f), 1);
    assert_int_equal(b.res.code, KVC_GRPC_CANCELLED);
    kvc_grpc_result_free(&b.res);

    /* the next call, unflagged, is answered on a new connection */
    Inference__ServerLiveRequest lreq = INFERENCE__SERVER_LIVE_REQUEST__INIT;
    size_t llen;
    uint8_t *lbuf = s_pack(&lreq.base, &llen);
    cancel_call_t d = {
        .client = c, .base = slow.base, .path = KV2 "ServerLive", .req = lbuf, .len = llen};
    atomic_init(&d.flag, 0);
    f = kvc_fiber_new(s_cancel_fiber, &d);
    assert_non_null(f);
    kvc_fiber_resume(f);
    s_run_until_finished(c, &d);
    assert_int_equal(d.rc, 0);
    assert_int_equal(d.res.code, KVC_GRPC_OK);
    kvc_grpc_result_free(&d.res);

    kvc_grpc_client_disown(c);
    kvc_fiber_thread_cleanup();
    kvc_free(lbuf);
    kvc_free(req);
    kvc_grpc_client_destroy(&c);
    s_server_stop(&slow);
}

/* ---- The REST side, for the JSON-vs-protobuf benchmark ------------------------ */

/* Appends libcurl's body bytes to a bounded buffer. */
static size_t s_collect(char *p, size_t size, size_t n, void *userp)
{
    return kvc_buf_append(userp, p, size * n) == KVC_OK ? size * n : 0;
}

/* Issues a REST request; returns the HTTP status and fills body. */
static long s_rest(const server_t *s, const char *path, const char *post, kvc_buf_t *body)
{
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", s->rest_port, path);
    CURL *e = curl_easy_init();
    assert_non_null(e);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, s_collect);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, body);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 30000L);
    if (post)
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, post);
    assert_int_equal(curl_easy_perform(e), CURLE_OK);
    long code = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(e);
    return code;
}

static void test_rest_predict_and_status(void **state)
{
    fixture_t *fx = *state;
    kvc_buf_t body;
    kvc_buf_init(&body, 1 << 20);
    assert_int_equal(s_rest(&fx->srv, "/v1/models/bert", NULL, &body), 200);
    assert_string_equal(body.data,
                        "{\"model_version_status\": [{\"version\": \"1\", \"state\": "
                        "\"AVAILABLE\", \"status\": {\"error_code\": \"OK\", \"error_message\": "
                        "\"\"}}]}");
    kvc_buf_reset(&body);

    /* ids 0..499: sum 124750 -> 124.75, spread 499. */
    kvc_buf_t req;
    kvc_buf_init(&req, 1 << 16);
    assert_int_equal(kvc_buf_printf(&req, "{\"instances\": [["), 0);
    for (int i = 0; i < 500; i++)
        assert_int_equal(kvc_buf_printf(&req, "%s%d", i ? "," : "", i), 0);
    assert_int_equal(kvc_buf_printf(&req, "]]}"), 0);
    assert_int_equal(s_rest(&fx->srv, "/v1/models/bert:predict", req.data, &body), 200);
    /* laid out as TF Serving's PrettyWriter writes it */
    assert_string_equal(body.data, "{\n    \"predictions\": [\n        [\n            124.75,\n"
                                   "            499.0\n        ]\n    ]\n}");
    /* numbers as TF Serving writes them: 1234.567f does not read back from
     * six digits ("1234.57"), so nine ("1234.56702"), never the shortest */
    kvc_buf_reset(&req);
    assert_int_equal(kvc_buf_printf(&req, "{\"instances\": [[2536"), 0);
    for (int i = 1; i < 500; i++)
        assert_int_equal(kvc_buf_printf(&req, ",2469"), 0);
    assert_int_equal(kvc_buf_printf(&req, "]]}"), 0);
    kvc_buf_reset(&body);
    assert_int_equal(s_rest(&fx->srv, "/v1/models/bert:predict", req.data, &body), 200);
    assert_string_equal(body.data, "{\n    \"predictions\": [\n        [\n            1234.56702,\n"
                                   "            67.0\n        ]\n    ]\n}");
    kvc_buf_reset(&body);
    assert_int_equal(s_rest(&fx->srv, "/v1/models/bert/versions/3:predict", req.data, &body), 404);
    assert_string_equal(body.data,
                        "{\"error\": \"Servable not found for request: Specific(bert, 3)\"}");
    kvc_buf_free(&req);
    kvc_buf_free(&body);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bert_predict_int_val),
        cmocka_unit_test(test_bert_predict_int64_content),
        cmocka_unit_test(test_mobilenet_tensor_content),
        cmocka_unit_test(test_mobilenet_float_val),
        cmocka_unit_test(test_inception_tensor_content),
        cmocka_unit_test(test_yolov5_predict),
        cmocka_unit_test(test_get_model_metadata),
        cmocka_unit_test(test_get_model_status),
        cmocka_unit_test(test_not_found_trailers_only),
        cmocka_unit_test(test_invalid_argument),
        cmocka_unit_test(test_unavailable_when_nothing_listens),
        cmocka_unit_test(test_resource_exhausted),
        cmocka_unit_test(test_deadline_exceeded_on_slow_server),
        cmocka_unit_test(test_backend_restart_reconnects),
        cmocka_unit_test(test_kserve_bert_typed),
        cmocka_unit_test(test_kserve_mobilenet_raw),
        cmocka_unit_test(test_kserve_health_and_metadata),
        cmocka_unit_test(test_concurrent_calls_share_one_connection),
        cmocka_unit_test(test_idle_connection_reopened),
        cmocka_unit_test(test_calls_survive_goaway),
        cmocka_unit_test(test_owned_loop_drives_fibers_and_followers),
        cmocka_unit_test(test_owned_cancel_by_flag),
        cmocka_unit_test(test_rest_predict_and_status),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
