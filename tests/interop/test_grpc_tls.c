/*
 * Interop tests of the gRPC client's https:// path (gRPC over TLS, h2 by
 * ALPN) against the grpcio model server started with --tls-cert/--tls-key,
 * directly and through the inference proxy.
 *
 * A throwaway CA and a server certificate for 127.0.0.1 and localhost are
 * made at setup with the openssl CLI in a temporary folder (and a second,
 * unrelated CA to play the untrusted one); the folder and its keys are
 * removed at teardown, and no key is ever committed. Expected numbers follow
 * model_server.py's documented bert formula. Nothing sleeps to wait: child
 * processes and the port file are polled with deadlines; ports are 0.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base.h"
#include "grpc_client.h"
#include "http_server.h"
#include "model_server_proc.h"
#include "proxy.h"
#include "tensorflow_serving/apis/predict.pb-c.h"

extern char **environ;

#define PREDICT "/tensorflow.serving.PredictionService/Predict"
#define TIMEOUT_MS 30000u
#define THREADS 6
#define CALLS_PER_THREAD 4

/* The certificates' folder and the TLS model server. */
typedef struct {
    char dir[64];
    char ca[128];       /* the CA that signed server.pem */
    char other_ca[128]; /* a CA that signed nothing we serve */
    pid_t pid;
    int port;
    char base_ip[64];   /* https://127.0.0.1:PORT */
    char base_name[64]; /* https://localhost:PORT */
} s_env_t;

static s_env_t g_env;

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

/* Runs argv (argv[0] looked up on PATH) with stdout/stderr to /dev/null;
 * 0 when it exits 0 within 60 s. */
static int s_run(const char *const *argv)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        return -1;
    int st = 0;
    int64_t deadline = s_now_ms() + 60000;
    pid_t r;
    while ((r = waitpid(pid, &st, WNOHANG)) == 0 && s_now_ms() < deadline)
        s_poll_pause();
    if (r == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        return -1;
    }
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

/* Makes ca.pem, other-ca.pem and server.pem/server.key (signed by ca.pem,
 * for IP 127.0.0.1 and DNS localhost) in dir. */
static int s_make_certs(const char *dir)
{
    char ca_key[128], ca[128], oca_key[128], oca[128], key[128], crt[128];
    snprintf(ca_key, sizeof ca_key, "%s/ca.key", dir);
    snprintf(ca, sizeof ca, "%s/ca.pem", dir);
    snprintf(oca_key, sizeof oca_key, "%s/other-ca.key", dir);
    snprintf(oca, sizeof oca, "%s/other-ca.pem", dir);
    snprintf(key, sizeof key, "%s/server.key", dir);
    snprintf(crt, sizeof crt, "%s/server.pem", dir);
    const char *mk_ca[] = {"openssl",
                           "req",
                           "-x509",
                           "-newkey",
                           "ec",
                           "-pkeyopt",
                           "ec_paramgen_curve:P-256",
                           "-nodes",
                           "-keyout",
                           ca_key,
                           "-out",
                           ca,
                           "-days",
                           "1",
                           "-subj",
                           "/CN=kvc-test-ca",
                           "-addext",
                           "basicConstraints=critical,CA:TRUE",
                           "-addext",
                           "keyUsage=critical,keyCertSign",
                           NULL};
    const char *mk_oca[] = {"openssl",
                            "req",
                            "-x509",
                            "-newkey",
                            "ec",
                            "-pkeyopt",
                            "ec_paramgen_curve:P-256",
                            "-nodes",
                            "-keyout",
                            oca_key,
                            "-out",
                            oca,
                            "-days",
                            "1",
                            "-subj",
                            "/CN=kvc-test-ca",
                            "-addext",
                            "basicConstraints=critical,CA:TRUE",
                            "-addext",
                            "keyUsage=critical,keyCertSign",
                            NULL};
    const char *mk_srv[] = {"openssl",
                            "req",
                            "-x509",
                            "-newkey",
                            "ec",
                            "-pkeyopt",
                            "ec_paramgen_curve:P-256",
                            "-nodes",
                            "-keyout",
                            key,
                            "-out",
                            crt,
                            "-days",
                            "1",
                            "-subj",
                            "/CN=localhost",
                            "-CA",
                            ca,
                            "-CAkey",
                            ca_key,
                            "-addext",
                            "subjectAltName=IP:127.0.0.1,DNS:localhost",
                            "-addext",
                            "basicConstraints=CA:FALSE",
                            "-addext",
                            "extendedKeyUsage=serverAuth",
                            NULL};
    return s_run(mk_ca) || s_run(mk_oca) || s_run(mk_srv) ? -1 : 0;
}

/* Removes every file setup may have made, then the folder. */
static void s_remove_dir(const char *dir)
{
    static const char *const names[] = {"ca.key",       "ca.pem",         "other-ca.key",
                                        "other-ca.pem", "server.key",     "server.pem",
                                        "ports.json",   "ports.json.tmp", "ca.srl"};
    char path[160];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
}

/* Starts the model server over TLS; 0 once it reported its ports. */
static int s_server_start(s_env_t *e)
{
    char port_file[128], crt[128], key[128];
    snprintf(port_file, sizeof port_file, "%s/ports.json", e->dir);
    snprintf(crt, sizeof crt, "%s/server.pem", e->dir);
    snprintf(key, sizeof key, "%s/server.key", e->dir);
    const char *argv[] = {KVC_PYTHON,           KVC_SOURCE_DIR "/tests/interop/model_server.py",
                          "--grpc-port",        "0",
                          "--rest-port",        "0",
                          "--port-file",        port_file,
                          "--tls-cert",         crt,
                          "--tls-key",          key,
                          "--exit-with-parent", NULL};
    if (posix_spawn(&e->pid, KVC_PYTHON, NULL, NULL, (char *const *)argv, environ) != 0)
        return -1;
    char text[256];
    if (kvc_it_wait_port_file(&e->pid, port_file, text, sizeof text, NULL) != 0)
        return -1;
    const char *g = strstr(text, "\"grpc\": ");
    if (!g || !strstr(text, "\"tls\": 1"))
        return -1;
    e->port = (int)strtol(g + 8, NULL, 10);
    snprintf(e->base_ip, sizeof e->base_ip, "https://127.0.0.1:%d", e->port);
    snprintf(e->base_name, sizeof e->base_name, "https://localhost:%d", e->port);
    return e->port > 0 ? 0 : -1;
}

static int s_setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_ALL);
    snprintf(g_env.dir, sizeof g_env.dir, "/tmp/kvc-tls-it-XXXXXX");
    if (!mkdtemp(g_env.dir))
        return -1;
    snprintf(g_env.ca, sizeof g_env.ca, "%s/ca.pem", g_env.dir);
    snprintf(g_env.other_ca, sizeof g_env.other_ca, "%s/other-ca.pem", g_env.dir);
    if (s_make_certs(g_env.dir) != 0) {
        fprintf(stderr, "openssl could not make the test certificates\n");
        return -1;
    }
    if (s_server_start(&g_env) != 0) {
        fprintf(stderr, "the TLS model server did not start\n");
        return -1;
    }
    return 0;
}

static int s_teardown(void **state)
{
    (void)state;
    if (g_env.pid > 0) {
        kill(g_env.pid, SIGTERM);
        int64_t deadline = s_now_ms() + 15000;
        while (waitpid(g_env.pid, NULL, WNOHANG) == 0) {
            if (s_now_ms() > deadline) {
                kill(g_env.pid, SIGKILL);
                waitpid(g_env.pid, NULL, 0);
                break;
            }
            s_poll_pause();
        }
    }
    s_remove_dir(g_env.dir);
    curl_global_cleanup();
    return 0;
}

/* ---- Requests and expected values --------------------------------------- */

/* Token ids for the bert shape, seeded by k. */
static void s_bert_ids(int32_t *ids, int k)
{
    for (int i = 0; i < 500; i++)
        ids[i] = (int32_t)((i * 11 + k * 17) % 997 + k);
}

/* bert's logits per model_server.py: sum/1000 and max-min, float64 then
 * float32. */
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

/* Makes one bert Predict over base; returns the client's code and, when OK,
 * whether the logits were exactly right (*exact), else the message. */
static int s_bert_call(kvc_grpc_client_t *c, const char *base, int k, int *exact, char *msg,
                       size_t cap)
{
    int32_t ids[500];
    s_bert_ids(ids, k);
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
    t.tensor_content.data = (uint8_t *)ids;
    t.tensor_content.len = sizeof ids;
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
        return -1;
    tensorflow__serving__predict_request__pack(&req, buf);
    kvc_grpc_result_t res;
    int rc = kvc_grpc_call(c, base, PREDICT, buf, len, TIMEOUT_MS, &res);
    free(buf);
    *exact = 0;
    snprintf(msg, cap, "%s", res.message);
    int code = res.code;
    if (rc == 0) {
        Tensorflow__Serving__PredictResponse *r =
            tensorflow__serving__predict_response__unpack(NULL, res.len, res.data);
        if (r && r->n_outputs == 1 && !strcmp(r->outputs[0]->key, "logits") &&
            r->outputs[0]->value->tensor_content.len == 8) {
            float got[2];
            memcpy(got, r->outputs[0]->value->tensor_content.data, 8);
            *exact = got[0] == want[0] && got[1] == want[1];
            if (!*exact)
                snprintf(msg, cap, "wrong logits %.9g %.9g, want %.9g %.9g", got[0], got[1],
                         want[0], want[1]);
        } else {
            snprintf(msg, cap, "unexpected PredictResponse");
        }
        tensorflow__serving__predict_response__free_unpacked(r, NULL);
    } else if (rc != kvc_grpc_code_to_err(code)) {
        snprintf(msg, cap, "return %d does not match code %d", rc, code);
        code = -1;
    }
    kvc_grpc_result_free(&res);
    return code;
}

/* ---- gRPC client over TLS ------------------------------------------------- */

/* With the CA that signed the server's certificate, by IP and by name. */
static void test_predict_with_ca_file(void **state)
{
    (void)state;
    kvc_grpc_opts_t o = {.ca_file = g_env.ca};
    kvc_grpc_client_t *c = kvc_grpc_client_new(&o);
    assert_non_null(c);
    char msg[KVC_GRPC_MSG_MAX];
    int exact = 0;
    assert_int_equal(s_bert_call(c, g_env.base_ip, 1, &exact, msg, sizeof msg), KVC_GRPC_OK);
    if (!exact)
        fail_msg("%s", msg);
    assert_int_equal(s_bert_call(c, g_env.base_name, 2, &exact, msg, sizeof msg), KVC_GRPC_OK);
    if (!exact)
        fail_msg("%s", msg);
    kvc_grpc_stats_t st;
    kvc_grpc_client_stats(c, &st);
    assert_int_equal(st.calls, 2);
    assert_int_equal(st.failures, 0);
    assert_int_equal(st.connections, 2); /* 127.0.0.1 and localhost are two hosts to libcurl */
    kvc_grpc_client_destroy(&c);
}

typedef struct {
    kvc_grpc_client_t *client;
    int index;
    int ok;
    char err[KVC_GRPC_MSG_MAX];
} s_worker_t;

/* One worker: CALLS_PER_THREAD bert calls with its own inputs. */
static void *s_worker(void *arg)
{
    s_worker_t *w = arg;
    for (int k = 0; k < CALLS_PER_THREAD; k++) {
        int exact = 0;
        int code = s_bert_call(w->client, g_env.base_ip, 10 + w->index * CALLS_PER_THREAD + k,
                               &exact, w->err, sizeof w->err);
        w->ok += code == KVC_GRPC_OK && exact;
    }
    return NULL;
}

/* Concurrent calls from a cold client open one TLS connection and
 * multiplex over it. */
static void test_concurrent_calls_share_one_connection(void **state)
{
    (void)state;
    kvc_grpc_opts_t o = {.ca_file = g_env.ca};
    kvc_grpc_client_t *c = kvc_grpc_client_new(&o);
    assert_non_null(c);
    pthread_t th[THREADS];
    s_worker_t w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].client = c;
        w[i].index = i;
        assert_int_equal(pthread_create(&th[i], NULL, s_worker, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < THREADS; i++)
        if (w[i].ok != CALLS_PER_THREAD)
            fail_msg("worker %d: %d/%d exact (%s)", i, w[i].ok, CALLS_PER_THREAD, w[i].err);
    kvc_grpc_stats_t st;
    kvc_grpc_client_stats(c, &st);
    assert_int_equal(st.calls, THREADS * CALLS_PER_THREAD);
    assert_int_equal(st.failures, 0);
    assert_int_equal(st.connections, 1);
    kvc_grpc_client_destroy(&c);
}

/* A server certificate no given CA vouches for: UNAVAILABLE, saying why. */
static void test_untrusted_certificate_unavailable(void **state)
{
    (void)state;
    const char *cas[] = {g_env.other_ca, NULL}; /* another CA; the system store */
    for (size_t i = 0; i < 2; i++) {
        kvc_grpc_opts_t o = {.ca_file = cas[i]};
        kvc_grpc_client_t *c = kvc_grpc_client_new(&o);
        assert_non_null(c);
        char msg[KVC_GRPC_MSG_MAX];
        int exact = 1;
        assert_int_equal(s_bert_call(c, g_env.base_ip, 3, &exact, msg, sizeof msg),
                         KVC_GRPC_UNAVAILABLE);
        assert_int_equal(exact, 0);
        if (strncmp(msg, "backend unavailable: SSL certificate problem: ", 46) != 0 ||
            !strstr(msg, "local issuer certificate"))
            fail_msg("unclear message: %s", msg);
        kvc_grpc_stats_t st;
        kvc_grpc_client_stats(c, &st);
        assert_int_equal(st.calls, 1);
        assert_int_equal(st.failures, 1);
        kvc_grpc_client_destroy(&c);
    }
}

/* tls_insecure skips the checks: the same untrusted server answers. */
static void test_tls_insecure_succeeds(void **state)
{
    (void)state;
    kvc_grpc_opts_t o = {.tls_insecure = 1};
    kvc_grpc_client_t *c = kvc_grpc_client_new(&o);
    assert_non_null(c);
    char msg[KVC_GRPC_MSG_MAX];
    int exact = 0;
    assert_int_equal(s_bert_call(c, g_env.base_ip, 5, &exact, msg, sizeof msg), KVC_GRPC_OK);
    if (!exact)
        fail_msg("%s", msg);
    kvc_grpc_client_destroy(&c);
}

/* h2c to a TLS port never yields a result: the server drops the bytes. */
static void test_plaintext_to_tls_port_fails(void **state)
{
    (void)state;
    kvc_grpc_client_t *c = kvc_grpc_client_new(NULL);
    assert_non_null(c);
    char base[64], msg[KVC_GRPC_MSG_MAX];
    snprintf(base, sizeof base, "http://127.0.0.1:%d", g_env.port);
    int exact = 1;
    int code = s_bert_call(c, base, 6, &exact, msg, sizeof msg);
    assert_int_equal(code, KVC_GRPC_UNAVAILABLE);
    assert_int_equal(exact, 0);
    kvc_grpc_client_destroy(&c);
}

/* ---- Through the proxy ---------------------------------------------------- */

typedef struct {
    long status;
    char body[4096];
    size_t len;
} s_reply_t;

static size_t s_on_body(char *p, size_t size, size_t n, void *arg)
{
    s_reply_t *r = arg;
    size_t add = size * n;
    if (r->len + add >= sizeof r->body)
        return 0;
    memcpy(r->body + r->len, p, add);
    r->len += add;
    r->body[r->len] = '\0';
    return add;
}

/* POSTs body to path on a proxy front listening on port. */
static void s_post(uint16_t port, const char *path, const char *body, s_reply_t *r)
{
    memset(r, 0, sizeof *r);
    CURL *h = curl_easy_init();
    assert_non_null(h);
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%u%s", port, path);
    struct curl_slist *hs = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, s_on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 60L);
    assert_int_equal(curl_easy_perform(h), CURLE_OK);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(hs);
    curl_easy_cleanup(h);
}

/* A proxy whose backends are https:// answers exactly with the CA, and 503
 * with the reason without it (system store only). */
static void test_proxy_https_backend(void **state)
{
    (void)state;
    char grpc[64];
    snprintf(grpc, sizeof grpc, "https://127.0.0.1:%d", g_env.port);
    kvc_proxy_backend_t b[] = {{"bert", grpc, "tfserving", "", "", NULL, 0, NULL, NULL, 0},
                               {"echo", grpc, "kserve", "", "", NULL, 0, NULL, NULL, 0}};
    const char *cas[] = {g_env.ca, NULL};
    for (size_t i = 0; i < 2; i++) {
        kvc_err_t err = {0};
        kvc_proxy_opts_t po = {.backends = b, .n_backends = 2, .grpc_ca_file = cas[i]};
        kvc_proxy_t *p = kvc_proxy_new(&po, &err);
        assert_non_null(p);
        kvc_http_opts_t ho = {.max_body = 1 << 20,
                              .max_response = 1 << 20,
                              .inline_ok = kvc_proxy_inline_ok,
                              .engine = kvc_proxy_engine(p)};
        kvc_http_server_t *http =
            kvc_http_server_new("127.0.0.1:0", &ho, kvc_proxy_handle, p, &err);
        assert_non_null(http);
        uint16_t port = kvc_http_server_port(http);
        /* bert: ids 0..499 -> sum 124750 -> 124.75; max - min 499. */
        char body[4096];
        size_t o = (size_t)snprintf(body, sizeof body, "{\"instances\": [[");
        for (int k = 0; k < 500; k++)
            o += (size_t)snprintf(body + o, sizeof body - o, "%s%d", k ? "," : "", k);
        snprintf(body + o, sizeof body - o, "]]}");
        s_reply_t r;
        s_post(port, "/v1/models/bert:predict", body, &r);
        if (cas[i]) {
            assert_int_equal(r.status, 200);
            assert_string_equal(r.body, "{\"predictions\": [[124.75,499.0]]}");
            s_post(port, "/v2/models/echo/infer",
                   "{\"inputs\": [{\"name\": \"i64\", \"datatype\": \"INT64\", \"shape\": [2], "
                   "\"data\": [-9223372036854775808, 9223372036854775807]}]}",
                   &r);
            assert_int_equal(r.status, 200);
            assert_string_equal(r.body,
                                "{\"model_name\":\"echo\",\"model_version\":\"1\",\"outputs\":"
                                "[{\"name\":\"i64_out\",\"datatype\":\"INT64\",\"shape\":[2],"
                                "\"data\":[-9223372036854775808,9223372036854775807]}]}");
        } else {
            /* The first call is the signature fetch: it says so, and why. */
            static const char want[] =
                "{\"error\": \"cannot fetch the signatures of model bert from its model server "
                "(UNAVAILABLE): backend unavailable: SSL certificate problem: ";
            assert_int_equal(r.status, 503);
            if (strncmp(r.body, want, sizeof want - 1) != 0)
                fail_msg("unclear error: %s", r.body);
        }
        kvc_http_server_destroy(&http);
        kvc_proxy_destroy(&p);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_predict_with_ca_file),
        cmocka_unit_test(test_concurrent_calls_share_one_connection),
        cmocka_unit_test(test_untrusted_certificate_unavailable),
        cmocka_unit_test(test_tls_insecure_succeeds),
        cmocka_unit_test(test_plaintext_to_tls_port_fails),
        cmocka_unit_test(test_proxy_https_backend),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
