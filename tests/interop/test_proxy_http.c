/*
 * Interop tests of the inference proxy: libcurl -> kvc_http_server ->
 * kvc_proxy_handle -> gRPC (libcurl HTTP/2) -> model_server.py (grpcio,
 * numpy). Every endpoint, both REST formats and both backend APIs, images,
 * the KServe binary extension, protobuf answers and the error mapping.
 *
 * Expected numbers come from the model server's documented formulas,
 * computed here independently; inputs are chosen (multiples of 1/4, small
 * integers) so every float64 sum is exact whatever order numpy adds in.
 * Servers bind port 0 and report ports through a file polled with a
 * deadline. KVC_MODEL_SERVER overrides the server script's path.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <math.h>
#include <png.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <turbojpeg.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "http_server.h"
#include "kserve/grpc_predict_v2.pb-c.h"
#include "model_server_proc.h"
#include "proxy.h"
#include "tensorflow_serving/apis/predict.pb-c.h"
#include "yolo_expect.h"

extern char **environ;

/* ---- Model server processes -------------------------------------------- */

typedef struct {
    pid_t pid;
    char dir[64];
    int grpc_port;
    int rest_port; /* its REST port, with /monitoring/prometheus/metrics */
} s_server_t;

/* Starts model_server.py on grpc_port ("0": any) with extra arguments
 * (NULL-terminated, at most 6); waits (deadline 90 s) for its port file. */
static int s_server_spawn(s_server_t *s, const char *grpc_port, const char *const *extra)
{
    const char *script = getenv("KVC_MODEL_SERVER");
    char path[512];
    if (!script || !script[0]) {
        snprintf(path, sizeof path, "%s/tests/interop/model_server.py", KVC_SOURCE_DIR);
        script = path;
    }
    snprintf(s->dir, sizeof s->dir, "/tmp/kvc-proxy-it-XXXXXX");
    if (!mkdtemp(s->dir))
        return -1;
    char port_file[128];
    snprintf(port_file, sizeof port_file, "%s/ports.json", s->dir);
    const char *argv[16] = {KVC_PYTHON,    script, "--grpc-port", grpc_port,
                            "--rest-port", "0",    "--port-file", port_file};
    size_t n = 8;
    for (size_t i = 0; extra[i] && n < 14; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    if (posix_spawn(&s->pid, KVC_PYTHON, NULL, NULL, (char *const *)argv, environ) != 0)
        return -1;
    char text[256];
    if (kvc_it_wait_port_file(&s->pid, port_file, text, sizeof text, NULL) != 0)
        return -1;
    const char *g = strstr(text, "\"grpc\":");
    const char *r = strstr(text, "\"rest\":");
    s->grpc_port = g ? (int)strtol(g + 7, NULL, 10) : -1;
    s->rest_port = r ? (int)strtol(r + 7, NULL, 10) : -1;
    return s->grpc_port > 0 && s->rest_port > 0 ? 0 : -1;
}

/* Starts model_server.py with a --delay-ms on every predict. */
static int s_server_start(s_server_t *s, const char *delay_ms)
{
    const char *extra[] = {"--delay-ms", delay_ms, NULL};
    return s_server_spawn(s, "0", extra);
}

/* Stops the server and removes its folder. */
static void s_server_stop(s_server_t *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        waitpid(s->pid, NULL, 0);
        s->pid = 0;
    }
    char port_file[128];
    snprintf(port_file, sizeof port_file, "%s/ports.json", s->dir);
    unlink(port_file);
    rmdir(s->dir);
}

/* ---- Proxies under test ------------------------------------------------- */

typedef struct {
    kvc_proxy_t *proxy;
    kvc_http_server_t *http;
    uint16_t port;
} s_front_t;

/* Observations collected from one proxy. */
typedef struct {
    pthread_mutex_t lock;
    int count;
    kvc_proxy_observation_t last;
    char model[64];
    char endpoint[32];
} s_observed_t;

static void s_observe(void *arg, const kvc_proxy_observation_t *o)
{
    s_observed_t *ob = arg;
    pthread_mutex_lock(&ob->lock);
    ob->count++;
    ob->last = *o;
    snprintf(ob->model, sizeof ob->model, "%s", o->model);
    snprintf(ob->endpoint, sizeof ob->endpoint, "%s", o->endpoint);
    pthread_mutex_unlock(&ob->lock);
}

static s_server_t g_fast, g_slow;
/* The dead backend's port: held bound, never listened on, for the whole
 * group (kvc_it_hold_port), so it refuses and nobody else can take it. */
static int g_dead_fd = -1;
static int g_dead_port;
static s_front_t g_tfs, g_kv, g_bad, g_hang, g_op, g_opk;
static s_observed_t g_obs = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* Log lines one proxy said. */
typedef struct {
    pthread_mutex_t lock;
    int count;
    char last[1024];
} s_logged_t;

static s_logged_t g_op_log = {.lock = PTHREAD_MUTEX_INITIALIZER};
static s_logged_t g_opk_log = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void s_log(void *arg, int level, const char *msg)
{
    s_logged_t *lg = arg;
    (void)level;
    pthread_mutex_lock(&lg->lock);
    lg->count++;
    snprintf(lg->last, sizeof lg->last, "%s", msg);
    pthread_mutex_unlock(&lg->lock);
}
static s_observed_t g_hang_obs = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* Starts a proxy with options o behind an HTTP server on port 0. */
static int s_front_start_opts(s_front_t *f, const kvc_proxy_opts_t *o, size_t max_body)
{
    kvc_err_t err = {0};
    f->proxy = kvc_proxy_new(o, &err);
    if (!f->proxy) {
        fprintf(stderr, "proxy: %s\n", err.msg);
        return -1;
    }
    /* As the daemon runs it: quick requests in fibers on the loop, which
     * drives the gRPC engine; the rest on threads. */
    kvc_http_opts_t ho = {.max_body = max_body,
                          .max_response = (size_t)256 << 20,
                          .inline_ok = kvc_proxy_inline_ok,
                          .engine = kvc_proxy_engine(f->proxy)};
    f->http = kvc_http_server_new("127.0.0.1:0", &ho, kvc_proxy_handle, f->proxy, &err);
    if (!f->http) {
        fprintf(stderr, "http: %s\n", err.msg);
        return -1;
    }
    f->port = kvc_http_server_port(f->http);
    return 0;
}

static int s_front_start_log(s_front_t *f, const kvc_proxy_backend_t *b, size_t n,
                             uint32_t timeout_ms, size_t max_body, s_observed_t *ob, s_logged_t *lg)
{
    kvc_proxy_opts_t o = {.backends = b, .n_backends = n, .timeout_ms = timeout_ms};
    if (lg) {
        o.log = s_log;
        o.log_arg = lg;
    }
    if (ob) {
        o.observe = s_observe;
        o.observe_arg = ob;
    }
    return s_front_start_opts(f, &o, max_body);
}

static int s_front_start(s_front_t *f, const kvc_proxy_backend_t *b, size_t n, uint32_t timeout_ms,
                         size_t max_body, s_observed_t *ob)
{
    return s_front_start_log(f, b, n, timeout_ms, max_body, ob, NULL);
}

static void s_front_stop(s_front_t *f)
{
    kvc_http_server_destroy(&f->http);
    kvc_proxy_destroy(&f->proxy);
}

static int s_setup(void **state)
{
    curl_global_init(CURL_GLOBAL_ALL);
    if (s_server_start(&g_fast, "0") != 0 || s_server_start(&g_slow, "3000") != 0)
        return -1;
    int dead_port = 0;
    g_dead_fd = kvc_it_hold_port(&dead_port, 0);
    g_dead_port = dead_port;
    if (g_dead_fd < 0)
        return -1;
    char fast[64], slow[64], dead[64];
    snprintf(fast, sizeof fast, "127.0.0.1:%d", g_fast.grpc_port);
    snprintf(slow, sizeof slow, "http://127.0.0.1:%d", g_slow.grpc_port);
    snprintf(dead, sizeof dead, "127.0.0.1:%d", dead_port);
    kvc_proxy_backend_t tfs[] = {
        {"mobilenet", fast, "tfserving", "224x224 rgb nhwc float32", "", NULL, 0, NULL, NULL, 0},
        {"inception", fast, "tfserving", "", "", NULL, 0, NULL, NULL, 0},
        {"yolov5", fast, "tfserving", "", "", NULL, 0, NULL, NULL, 0},
        {"bert", fast, "tfserving", "", "", NULL, 0, NULL, NULL, 0},
        {"mobilenet_u8", fast, "tfserving", "224x224 rgb nhwc uint8", "", NULL, 0, NULL, NULL, 0},
        {"hollow", fast, "tfserving", "", "", NULL, 0, NULL, NULL, 0},
    };
    kvc_proxy_backend_t kv[] = {
        {"mobilenet", fast, "kserve", "", "", NULL, 0, NULL, NULL, 0},
        {"inception", fast, "kserve", "299x299 rgb nhwc float32", "images", NULL, 0, NULL, NULL, 0},
        {"yolov5", fast, "kserve", "", "", NULL, 0, NULL, NULL, 0},
        {"bert", fast, "kserve", "", "", NULL, 0, NULL, NULL, 0},
        {"mobilenet_u8", fast, "kserve", "224x224 rgb nhwc uint8", "images", NULL, 0, NULL, NULL,
         0},
    };
    kvc_proxy_backend_t bad[] = {
        {"mobilenet", slow, "tfserving", "", "", NULL, 0, NULL, NULL, 0},
        {"bert", dead, "kserve", "", "", NULL, 0, NULL, NULL, 0},
        {"ghost", fast, "tfserving", "", "", NULL, 0, NULL, NULL, 0},
    };
    /* A model server without metadata: the config declares its input
     * (g_op), or declares nothing (g_opk). */
    static const kvc_proxy_input_t ids32[] = {{"input_ids", KVC_DT_INT32, NULL, 0}};
    kvc_proxy_backend_t op[] = {{"opaque", fast, "tfserving", "", "", ids32, 1, NULL, NULL, 0}};
    kvc_proxy_backend_t opk[] = {{"opaque", fast, "kserve", "", "", NULL, 0, NULL, NULL, 0}};
    if (s_front_start_log(&g_op, op, 1, 30000, (size_t)1 << 20, NULL, &g_op_log) != 0 ||
        s_front_start_log(&g_opk, opk, 1, 30000, (size_t)1 << 20, NULL, &g_opk_log) != 0)
        return -1;
    /* The slow server with time to spare: only a client hanging up ends a call. */
    kvc_proxy_backend_t hang[] = {{"bert", slow, "tfserving", "", "", NULL, 0, NULL, NULL, 0}};
    if (s_front_start(&g_tfs, tfs, 6, 30000, (size_t)64 << 20, &g_obs) != 0 ||
        s_front_start(&g_kv, kv, 5, 30000, (size_t)64 << 20, NULL) != 0 ||
        s_front_start(&g_bad, bad, 3, 700, (size_t)1 << 20, NULL) != 0 ||
        s_front_start(&g_hang, hang, 1, 30000, (size_t)1 << 20, &g_hang_obs) != 0)
        return -1;
    return 0;
}

static int s_teardown(void **state)
{
    s_front_stop(&g_tfs);
    s_front_stop(&g_kv);
    s_front_stop(&g_bad);
    s_front_stop(&g_hang);
    s_front_stop(&g_op);
    s_front_stop(&g_opk);
    s_server_stop(&g_fast);
    s_server_stop(&g_slow);
    if (g_dead_fd >= 0)
        close(g_dead_fd);
    g_dead_fd = -1;
    curl_global_cleanup();
    return 0;
}

/* ---- HTTP client -------------------------------------------------------- */

typedef struct {
    long status;
    char ctype[128];
    char ihcl[32]; /* Inference-Header-Content-Length, "" when absent */
    char *body;
    size_t len, cap;
} s_reply_t;

static size_t s_on_body(char *p, size_t size, size_t n, void *arg)
{
    s_reply_t *r = arg;
    size_t add = size * n;
    if (r->len + add + 1 > r->cap) {
        size_t cap = (r->len + add + 1) * 2;
        char *nb = realloc(r->body, cap);
        if (!nb)
            return 0;
        r->body = nb;
        r->cap = cap;
    }
    memcpy(r->body + r->len, p, add);
    r->len += add;
    r->body[r->len] = '\0';
    return add;
}

/* Copies header value (trimmed) into dst when line is "name: value". */
static void s_header_copy(const char *line, size_t n, const char *name, char *dst, size_t cap)
{
    size_t k = strlen(name);
    if (n <= k + 1 || strncasecmp(line, name, k) != 0 || line[k] != ':')
        return;
    const char *v = line + k + 1;
    size_t vn = n - k - 1;
    while (vn && (*v == ' '))
        v++, vn--;
    while (vn && (v[vn - 1] == '\r' || v[vn - 1] == '\n' || v[vn - 1] == ' '))
        vn--;
    snprintf(dst, cap, "%.*s", (int)vn, v);
}

static size_t s_on_header(char *p, size_t size, size_t n, void *arg)
{
    s_reply_t *r = arg;
    s_header_copy(p, size * n, "Content-Type", r->ctype, sizeof r->ctype);
    s_header_copy(p, size * n, "Inference-Header-Content-Length", r->ihcl, sizeof r->ihcl);
    return size * n;
}

/* One HTTP exchange; extra is one more header line or NULL. */
static void s_http(const s_front_t *f, const char *method, const char *path, const char *ctype,
                   const char *extra, const void *body, size_t len, s_reply_t *r)
{
    memset(r, 0, sizeof *r);
    r->body = calloc(1, 1);
    CURL *h = curl_easy_init();
    assert_non_null(h);
    char url[512];
    snprintf(url, sizeof url, "http://127.0.0.1:%u%s", f->port, path);
    struct curl_slist *hs = NULL;
    char line[256];
    if (ctype) {
        snprintf(line, sizeof line, "Content-Type: %s", ctype);
        hs = curl_slist_append(hs, line);
    }
    if (extra)
        hs = curl_slist_append(hs, extra);
    hs = curl_slist_append(hs, "Expect:");
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    if (body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, s_on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, s_on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 60L);
    CURLcode rc = curl_easy_perform(h);
    if (rc != CURLE_OK)
        fprintf(stderr, "curl %s %s: %s\n", method, path, curl_easy_strerror(rc));
    assert_int_equal(rc, CURLE_OK);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(hs);
    curl_easy_cleanup(h);
}

static void s_reply_free(s_reply_t *r)
{
    free(r->body);
    memset(r, 0, sizeof *r);
}

/* Asserts status and exact body. */
static void s_expect(const s_front_t *f, const char *method, const char *path, long status,
                     const char *want)
{
    s_reply_t r;
    s_http(f, method, path, NULL, NULL, NULL, 0, &r);
    if (r.status != status || strcmp(r.body, want) != 0)
        fprintf(stderr, "%s %s -> %ld %s\n", method, path, r.status, r.body);
    assert_int_equal(r.status, status);
    assert_string_equal(r.body, want);
    s_reply_free(&r);
}

/* Reads every number after the first occurrence of key into out; returns
 * how many (at most max). */
static size_t s_numbers(const char *text, const char *key, float *out, size_t max)
{
    const char *p = key ? strstr(text, key) : text;
    size_t n = 0;
    if (!p)
        return 0;
    p += key ? strlen(key) : 0;
    while (*p && n < max) {
        if ((*p >= '0' && *p <= '9') || *p == '-') {
            char *end = NULL;
            out[n++] = strtof(p, &end);
            p = end;
        } else if (*p == '}' && key) {
            break;
        } else {
            p++;
        }
    }
    return n;
}

/* ---- Expected values (the server's formulas) ----------------------------- */

/* mobilenet/inception scores from the image's float64 mean and first pixel. */
static void s_scores(const float *x, size_t count, int inception, float *out)
{
    double sum = 0;
    for (size_t i = 0; i < count; i++)
        sum += (double)x[i];
    double m = sum / (double)count;
    for (int j = 0; j < 1001; j++) {
        double p = (double)x[j % 3];
        out[j] = inception ? (float)(m * (double)(1001 - j) / 1001.0 - p)
                           : (float)(m * (double)(j + 1) / 1001.0 + p);
    }
}

/* A test image value for element i: multiples of 1/4 in [0, 8). */
static float s_pixel(size_t i)
{
    return (float)((i * 7 + i / 3) % 32) * 0.25f;
}

/* Builds a TF Serving JSON body for an image model: instances or inputs. */
static char *s_image_json(size_t h, size_t w, int columnar, size_t *len)
{
    size_t count = h * w * 3;
    size_t cap = count * 8 + 64;
    char *s = malloc(cap);
    size_t n = (size_t)snprintf(s, cap, columnar ? "{\"inputs\": [[" : "{\"instances\": [[");
    for (size_t y = 0; y < h; y++) {
        s[n++] = '[';
        for (size_t x = 0; x < w; x++) {
            size_t i = (y * w + x) * 3;
            n += (size_t)snprintf(s + n, cap - n, "[%g,%g,%g]%s", s_pixel(i), s_pixel(i + 1),
                                  s_pixel(i + 2), x + 1 < w ? "," : "");
        }
        s[n++] = ']';
        if (y + 1 < h)
            s[n++] = ',';
    }
    n += (size_t)snprintf(s + n, cap - n, "]]}");
    *len = n;
    return s;
}

/* ---- Tests ---------------------------------------------------------------- */

static void test_health_and_server(void **state)
{
    s_expect(&g_tfs, "GET", "/v2/health/live", 200, "{\"live\": true}");
    s_expect(
        &g_tfs, "GET", "/v2", 200,
        "{\"name\": \"kvc\", \"version\": \"0.1.0\", \"extensions\": [\"binary_tensor_data\"]}");
    s_expect(&g_tfs, "GET", "/v2/health/ready", 200,
             "{\"ready\": true, \"models\": [{\"model\": \"mobilenet\", \"ready\": true}, "
             "{\"model\": \"inception\", \"ready\": true}, {\"model\": \"yolov5\", \"ready\": "
             "true}, {\"model\": \"bert\", \"ready\": true}, {\"model\": \"mobilenet_u8\", "
             "\"ready\": true}, {\"model\": \"hollow\", \"ready\": true}]}");
    s_expect(&g_opk, "GET", "/v2/health/ready", 200,
             "{\"ready\": true, \"models\": [{\"model\": \"opaque\", \"ready\": true}]}");
    /* Not ready: each model server that is not says why. */
    char bad[768];
    snprintf(bad, sizeof bad,
             "{\"ready\": false, \"models\": [{\"model\": \"mobilenet\", \"ready\": true}, "
             "{\"model\": \"bert\", \"ready\": false, \"reason\": \"UNAVAILABLE: backend "
             "unavailable: connect to 127.0.0.1 port %d: Connection refused\"}, {\"model\": "
             "\"ghost\", \"ready\": false, \"reason\": \"NOT_FOUND: Servable not found for "
             "request: Latest(ghost)\"}]}",
             g_dead_port);
    s_expect(&g_bad, "GET", "/v2/health/ready", 503, bad);
    s_expect(&g_tfs, "GET", "/metrics", 404, "{\"error\": \"metrics are not enabled\"}");
    s_expect(&g_tfs, "GET", "/federate", 404, "{\"error\": \"metrics are not enabled\"}");
}

static void test_model_status(void **state)
{
    const char *ok = "{\"model_version_status\": [{\"version\": \"1\", \"state\": \"AVAILABLE\", "
                     "\"status\": {\"error_code\": \"OK\", \"error_message\": \"\"}}]}";
    s_expect(&g_tfs, "GET", "/v1/models/bert", 200, ok);
    s_expect(&g_tfs, "GET", "/v1/models/bert/versions/1", 200, ok);
    s_expect(&g_kv, "GET", "/v1/models/bert", 200, ok);
    s_expect(&g_kv, "GET", "/v1/models/bert/versions/1", 200, ok);
    s_expect(&g_tfs, "GET", "/v1/models/bert/versions/2", 404,
             "{\"error\": \"Servable not found for request: Specific(bert, 2)\"}");
    s_expect(&g_tfs, "GET", "/v2/models/bert/ready", 200, "{\"name\": \"bert\", \"ready\": true}");
    s_expect(&g_kv, "GET", "/v2/models/bert/ready", 200, "{\"name\": \"bert\", \"ready\": true}");
    s_expect(&g_kv, "GET", "/v2/models/bert/versions/2/ready", 400,
             "{\"name\": \"bert\", \"ready\": false}");
}

static void test_model_metadata(void **state)
{
    const char *dims = "{\"size\": \"-1\", \"name\": \"\"}, {\"size\": \"224\", \"name\": \"\"}, "
                       "{\"size\": \"224\", \"name\": \"\"}, {\"size\": \"3\", \"name\": \"\"}";
    char want[2048];
    snprintf(want, sizeof want,
             "{\"model_spec\": {\"name\": \"mobilenet\", \"signature_name\": \"serving_default\", "
             "\"version\": \"1\"}, \"metadata\": {\"signature_def\": {\"signature_def\": "
             "{\"serving_default\": {\"inputs\": {\"images\": {\"dtype\": \"DT_FLOAT\", "
             "\"tensor_shape\": {\"dim\": [%s], \"unknown_rank\": false}, \"name\": "
             "\"images:0\"}}, \"outputs\": {\"scores\": {\"dtype\": \"DT_FLOAT\", "
             "\"tensor_shape\": {\"dim\": [{\"size\": \"-1\", \"name\": \"\"}, {\"size\": "
             "\"1001\", \"name\": \"\"}], \"unknown_rank\": false}, \"name\": \"scores:0\"}}, "
             "\"method_name\": \"tensorflow/serving/predict\"}}}}}",
             dims);
    s_expect(&g_tfs, "GET", "/v1/models/mobilenet/metadata", 200, want);
    /* From a KServe backend: the same form, names without ":0", batch 1. */
    s_expect(&g_kv, "GET", "/v1/models/bert/metadata", 200,
             "{\"model_spec\": {\"name\": \"bert\", \"signature_name\": \"\", \"version\": \"1\"}, "
             "\"metadata\": {\"signature_def\": {\"signature_def\": {\"serving_default\": "
             "{\"inputs\": {\"input_ids\": {\"dtype\": \"DT_INT32\", \"tensor_shape\": {\"dim\": "
             "[{\"size\": \"1\", \"name\": \"\"}, {\"size\": \"500\", \"name\": \"\"}], "
             "\"unknown_rank\": false}, \"name\": \"input_ids\"}}, \"outputs\": {\"logits\": "
             "{\"dtype\": \"DT_FLOAT\", \"tensor_shape\": {\"dim\": [{\"size\": \"1\", \"name\": "
             "\"\"}, {\"size\": \"2\", \"name\": \"\"}], \"unknown_rank\": false}, \"name\": "
             "\"logits\"}}, \"method_name\": \"tensorflow/serving/predict\"}}}}}");
    s_expect(&g_kv, "GET", "/v2/models/yolov5", 200,
             "{\"name\": \"yolov5\", \"versions\": [\"1\"], \"platform\": \"kvc_numpy\", "
             "\"inputs\": [{\"name\": \"images\", \"datatype\": \"FP32\", \"shape\": [1, 640, "
             "640, 3]}], \"outputs\": [{\"name\": \"output0\", \"datatype\": \"FP32\", \"shape\": "
             "[1, 25200, 85]}]}");
    s_expect(&g_tfs, "GET", "/v2/models/bert/versions/1", 200,
             "{\"name\": \"bert\", \"versions\": [\"1\"], \"platform\": \"tensorflow_serving\", "
             "\"inputs\": [{\"name\": \"input_ids\", \"datatype\": \"INT32\", \"shape\": [-1, "
             "500]}], \"outputs\": [{\"name\": \"logits\", \"datatype\": \"FP32\", \"shape\": [-1, "
             "2]}]}");
}

/* bert ids: i*37 % 1000 - 200 (negatives too); fills the expected logits. */
static char *s_bert_body(const char *head, const char *tail, int n, float want[2])
{
    size_t cap = (size_t)n * 8 + strlen(head) + strlen(tail) + 16;
    char *s = malloc(cap);
    size_t k = strlen(head);
    memcpy(s, head, k);
    int64_t sum = 0, mx = INT64_MIN, mn = INT64_MAX;
    for (int i = 0; i < n; i++) {
        int64_t v = (int64_t)((i * 37) % 1000) - 200;
        sum += v;
        mx = v > mx ? v : mx;
        mn = v < mn ? v : mn;
        k += (size_t)snprintf(s + k, cap - k, "%s%lld", i ? "," : "", (long long)v);
    }
    memcpy(s + k, tail, strlen(tail) + 1);
    want[0] = (float)((double)sum / 1000.0);
    want[1] = (float)(double)(mx - mn);
    return s;
}

/* POSTs body as JSON to path and checks 200 and the two logits. */
static void s_expect_logits(const s_front_t *f, const char *path, const char *body,
                            const char *prefix, const char *key, const float want[2])
{
    s_reply_t r;
    s_http(f, "POST", path, "application/json", NULL, body, strlen(body), &r);
    if (r.status != 200)
        fprintf(stderr, "POST %s -> %ld %s\n", path, r.status, r.body);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.ctype, "application/json");
    assert_memory_equal(r.body, prefix, strlen(prefix));
    float got[3];
    assert_int_equal(s_numbers(r.body, key, got, 3), 2);
    assert_true(got[0] == want[0] && got[1] == want[1]);
    s_reply_free(&r);
}

static void test_predict_bert_both_formats(void **state)
{
    float want[2];
    char *row = s_bert_body("{\"instances\": [[", "]]}", 500, want);
    /* Signature says int32: the server accepts int32 or int64 and checks shape. */
    s_expect_logits(&g_tfs, "/v1/models/bert:predict", row, "{\"predictions\": [[",
                    "\"predictions\"", want);
    s_expect_logits(&g_kv, "/v1/models/bert/versions/1:predict", row, "{\"predictions\": [[",
                    "\"predictions\"", want);
    free(row);
    char *col = s_bert_body("{\"signature_name\": \"serving_default\", \"inputs\": "
                            "{\"input_ids\": [[",
                            "]]}}", 500, want);
    s_expect_logits(&g_tfs, "/v1/models/bert:predict", col, "{\"outputs\": [[", "\"outputs\"",
                    want);
    s_expect_logits(&g_kv, "/v1/models/bert:predict", col, "{\"outputs\": [[", "\"outputs\"", want);
    free(col);
    /* KServe v2 JSON with explicit INT64 and INT32, to both backend kinds. */
    char *v64 = s_bert_body("{\"id\": \"q1\", \"inputs\": [{\"name\": \"input_ids\", \"shape\": "
                            "[1, 500], \"datatype\": \"INT64\", \"data\": [",
                            "]}]}", 500, want);
    s_expect_logits(&g_kv, "/v2/models/bert/infer", v64,
                    "{\"model_name\":\"bert\",\"model_version\":\"1\",\"id\":\"q1\","
                    "\"outputs\":[{\"name\":\"logits\",\"datatype\":\"FP32\",\"shape\":[1,2],"
                    "\"data\":[",
                    "\"data\"", want);
    s_expect_logits(&g_tfs, "/v2/models/bert/infer", v64,
                    "{\"model_name\":\"bert\",\"model_version\":\"1\",\"id\":\"q1\",", "\"data\"",
                    want);
    free(v64);
    char *v32 = s_bert_body("{\"inputs\": [{\"name\": \"input_ids\", \"shape\": [1, 500], "
                            "\"datatype\": \"INT32\", \"data\": [",
                            "]}]}", 500, want);
    s_expect_logits(&g_tfs, "/v2/models/bert/versions/1/infer", v32, "{\"model_name\":\"bert\"",
                    "\"data\"", want);
    s_expect_logits(&g_kv, "/v2/models/bert/infer", v32, "{\"model_name\":\"bert\"", "\"data\"",
                    want);
    free(v32);
}

/* POSTs an image-model JSON body and checks every score. */
static void s_expect_scores(const s_front_t *f, const char *path, size_t side, int inception,
                            int columnar)
{
    size_t len;
    char *body = s_image_json(side, side, columnar, &len);
    size_t count = side * side * 3;
    float *x = malloc(count * sizeof *x);
    for (size_t i = 0; i < count; i++)
        x[i] = s_pixel(i);
    float want[1001], got[1002];
    s_scores(x, count, inception, want);
    s_reply_t r;
    s_http(f, "POST", path, "application/json", NULL, body, len, &r);
    if (r.status != 200)
        fprintf(stderr, "POST %s -> %ld %.300s\n", path, r.status, r.body);
    assert_int_equal(r.status, 200);
    assert_int_equal(s_numbers(r.body, NULL, got, 1002), 1001);
    for (int j = 0; j < 1001; j++)
        if (got[j] != want[j]) {
            fprintf(stderr, "score %d: got %.9g want %.9g\n", j, got[j], want[j]);
            fail();
        }
    s_reply_free(&r);
    free(body);
    free(x);
}

static void test_predict_image_models_json(void **state)
{
    /* Pixels are written as "0", "0.25", ...: integers among floats must
     * still reach the server as DT_FLOAT (signature-driven parsing). */
    s_expect_scores(&g_tfs, "/v1/models/mobilenet:predict", 224, 0, 0);
    s_expect_scores(&g_kv, "/v1/models/inception:predict", 299, 1, 1);
}

static void test_predict_yolov5(void **state)
{
    size_t len;
    char *body = s_image_json(640, 640, 0, &len);
    size_t count = 640 * 640 * 3;
    double sum = 0;
    for (size_t i = 0; i < count; i++)
        sum += (double)s_pixel(i);
    double m = sum / (double)count;
    s_reply_t r;
    s_http(&g_tfs, "POST", "/v1/models/yolov5:predict", "application/json", NULL, body, len, &r);
    assert_int_equal(r.status, 200);
    size_t n_out = 25200 * 85;
    float *got = malloc((n_out + 1) * sizeof *got);
    float *want = malloc(n_out * sizeof *want);
    assert_int_equal(s_numbers(r.body, NULL, got, n_out + 1), n_out);
    yolo_expect_fill(m, want); /* the pixels' sum is exact, so m is numpy's mean */
    for (size_t i = 0; i < 25200; i++)
        for (size_t k = 0; k < 85; k++)
            if (memcmp(&got[i * 85 + k], &want[i * 85 + k], sizeof *got) != 0) {
                fprintf(stderr, "output0[%zu,%zu]: got %.9g want %.9g\n", i, k, got[i * 85 + k],
                        want[i * 85 + k]);
                fail();
            }
    s_reply_free(&r);
    free(want);
    free(got);
    free(body);
}

/* Encodes a w x h RGB image of pattern pixels as JPEG (quality 90). */
static unsigned char *s_jpeg(const unsigned char *rgb, int w, int h, unsigned long *len)
{
    tjhandle tj = tjInitCompress();
    unsigned char *out = NULL;
    *len = 0;
    int rc = tjCompress2(tj, rgb, w, 0, h, TJPF_RGB, &out, len, TJSAMP_444, 90, 0);
    tjDestroy(tj);
    return rc == 0 ? out : NULL;
}

/* Writes an 8-bit RGB PNG into memory. */
typedef struct {
    unsigned char *data;
    size_t len, cap;
} s_mem_t;

static void s_png_write(png_structp png, png_bytep p, png_size_t n)
{
    s_mem_t *m = png_get_io_ptr(png);
    if (m->len + n > m->cap) {
        m->cap = (m->len + n) * 2;
        m->data = realloc(m->data, m->cap);
    }
    memcpy(m->data + m->len, p, n);
    m->len += n;
}

static void s_png_flush(png_structp png) {}

static unsigned char *s_png(const unsigned char *rgb, int w, int h, size_t *len)
{
    s_mem_t m = {0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        free(m.data);
        return NULL;
    }
    png_set_write_fn(png, &m, s_png_write, s_png_flush);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < h; y++)
        png_write_row(png, (png_bytep)(rgb + (size_t)y * (size_t)w * 3));
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    *len = m.len;
    return m.data;
}

/* A smooth RGB test picture (JPEG keeps it close; PNG keeps it exact). */
static unsigned char *s_picture(int w, int h)
{
    unsigned char *rgb = malloc((size_t)w * (size_t)h * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            unsigned char *p = rgb + ((size_t)y * (size_t)w + (size_t)x) * 3;
            p[0] = (unsigned char)(x * 255 / (w - 1));
            p[1] = (unsigned char)(y * 255 / (h - 1));
            p[2] = (unsigned char)((x + y) % 256);
        }
    return rgb;
}

/* Checks an image answer's scores against pixels (same size as the spec,
 * stretch, scale 1: the tensor is the pixels as floats). */
static void s_check_scores_of(const char *body, const char *key, const float *x, size_t count,
                              int inception);

/* Checks mobilenet (or inception) scores for an image given as 0..255 pixels. */
static void s_check_image_scores(const char *body, const char *key, const unsigned char *pix,
                                 size_t count, int inception)
{
    float *x = malloc(count * sizeof *x);
    for (size_t i = 0; i < count; i++)
        x[i] = (float)pix[i];
    s_check_scores_of(body, key, x, count, inception);
    free(x);
}

/* Checks the scores of a model that takes the image as uint8 and divides it
 * by 255 in float32 itself (model_server.py's *_u8 models): the proxy must
 * have sent the pixels unchanged, not scaled or converted. */
static void s_check_u8_scores(const char *body, const char *key, const unsigned char *pix,
                              size_t count)
{
    float *x = malloc(count * sizeof *x);
    for (size_t i = 0; i < count; i++)
        x[i] = (float)pix[i] / 255.0f;
    s_check_scores_of(body, key, x, count, 0);
    free(x);
}

/* Compares the 1001 scores found after key in body with the formula's. */
static void s_check_scores_of(const char *body, const char *key, const float *x, size_t count,
                              int inception)
{
    float want[1001], got[1002];
    s_scores(x, count, inception, want);
    assert_int_equal(s_numbers(body, key, got, 1002), 1001);
    for (int j = 0; j < 1001; j++)
        if (got[j] != want[j]) {
            fprintf(stderr, "score %d: got %.9g want %.9g\n", j, got[j], want[j]);
            fail();
        }
}

/* A JPEG of the side x side picture rgb (tjFree it) and its pixels decoded
 * independently of the proxy (*dec, free it). */
static unsigned char *s_jpeg_decoded(const unsigned char *rgb, int side, unsigned long *jlen,
                                     unsigned char **dec)
{
    unsigned char *jpg = s_jpeg(rgb, side, side, jlen);
    assert_non_null(jpg);
    *dec = malloc((size_t)side * (size_t)side * 3);
    tjhandle tj = tjInitDecompress();
    assert_int_equal(tjDecompress2(tj, jpg, *jlen, *dec, side, 0, side, TJPF_RGB, 0), 0);
    tjDestroy(tj);
    return jpg;
}

static void test_images(void **state)
{
    /* JPEG to :predict on a TF Serving backend; the input name comes from
     * the signature. Expected values use the JPEG decoded independently. */
    unsigned char *rgb = s_picture(224, 224), *dec = NULL;
    unsigned long jlen = 0;
    unsigned char *jpg = s_jpeg_decoded(rgb, 224, &jlen, &dec);
    s_reply_t r;
    s_http(&g_tfs, "POST", "/v1/models/mobilenet:predict", "image/jpeg", NULL, jpg, jlen, &r);
    if (r.status != 200)
        fprintf(stderr, "jpeg -> %ld %s\n", r.status, r.body);
    assert_int_equal(r.status, 200);
    assert_memory_equal(r.body, "{\"predictions\": [[", 18);
    s_check_image_scores(r.body, NULL, dec, 224 * 224 * 3, 0);
    s_reply_free(&r);
    tjFree(jpg);
    free(dec);
    free(rgb);

    /* PNG to /v2/.../infer on a KServe backend (image_input configured). */
    rgb = s_picture(299, 299);
    size_t plen = 0;
    unsigned char *png = s_png(rgb, 299, 299, &plen);
    assert_non_null(png);
    s_http(&g_kv, "POST", "/v2/models/inception/infer", "image/png", NULL, png, plen, &r);
    if (r.status != 200)
        fprintf(stderr, "png -> %ld %s\n", r.status, r.body);
    assert_int_equal(r.status, 200);
    assert_memory_equal(r.body,
                        "{\"model_name\":\"inception\",\"model_version\":\"1\",\"outputs\":"
                        "[{\"name\":\"scores\"",
                        strlen("{\"model_name\":\"inception\",\"model_version\":\"1\","
                               "\"outputs\":[{\"name\":\"scores\""));
    s_check_image_scores(r.body, "\"data\"", rgb, 299 * 299 * 3, 1);
    s_reply_free(&r);

    /* A model without a preprocessing spec refuses images, saying so. */
    s_http(&g_tfs, "POST", "/v1/models/bert:predict", "image/png", NULL, png, plen, &r);
    assert_int_equal(r.status, 400);
    assert_string_equal(r.body, "{\"error\": \"model bert has no image preprocessing spec "
                                "configured; send JSON tensors\"}");
    s_reply_free(&r);
    /* A body that is not the image it claims to be. */
    s_http(&g_tfs, "POST", "/v1/models/mobilenet:predict", "image/jpeg", NULL, png, plen, &r);
    assert_int_equal(r.status, 400);
    assert_memory_equal(r.body, "{\"error\": \"image: ", 18);
    s_reply_free(&r);
    free(png);
    free(rgb);
}

/* A model exported with a uint8 image input gets the decoded pixels as
 * uint8, a quarter of the float32 bytes: JPEG through TF Serving's API,
 * PNG (exact pixels) through KServe's, both checked value for value. */
static void test_images_uint8(void **state)
{
    (void)state;
    unsigned char *rgb = s_picture(224, 224), *dec = NULL;
    unsigned long jlen = 0;
    unsigned char *jpg = s_jpeg_decoded(rgb, 224, &jlen, &dec);
    s_reply_t r;
    s_http(&g_tfs, "POST", "/v1/models/mobilenet_u8:predict", "image/jpeg", NULL, jpg, jlen, &r);
    if (r.status != 200)
        fprintf(stderr, "jpeg -> %ld %s\n", r.status, r.body);
    assert_int_equal(r.status, 200);
    assert_memory_equal(r.body, "{\"predictions\": [[", 18);
    s_check_u8_scores(r.body, NULL, dec, 224 * 224 * 3);
    s_reply_free(&r);

    size_t plen = 0;
    unsigned char *png = s_png(rgb, 224, 224, &plen);
    assert_non_null(png);
    s_http(&g_kv, "POST", "/v2/models/mobilenet_u8/infer", "image/png", NULL, png, plen, &r);
    if (r.status != 200)
        fprintf(stderr, "png -> %ld %s\n", r.status, r.body);
    assert_int_equal(r.status, 200);
    s_check_u8_scores(r.body, "\"data\"", rgb, 224 * 224 * 3);
    s_reply_free(&r);

    /* JSON clients of the same model must send integers: the signature's
     * DT_UINT8 decides, and a float is refused where it stands. */
    const char *fl = "{\"instances\": [[[[0.5, 0.5, 0.5]]]]}";
    s_http(&g_tfs, "POST", "/v1/models/mobilenet_u8:predict", "application/json", NULL, fl,
           strlen(fl), &r);
    assert_int_equal(r.status, 400);
    assert_string_equal(r.body, "{\"error\": \"instances[0][0][0][0]: invalid number (expected "
                                "an integer)\"}");
    s_reply_free(&r);
    free(png);
    tjFree(jpg);
    free(dec);
    free(rgb);
}

/* Builds a KServe binary request for bert: JSON header + int64 ids. */
static size_t s_bert_binary(unsigned char *out, size_t cap, size_t *hlen, float want[2])
{
    int64_t ids[500];
    int64_t sum = 0, mx = INT64_MIN, mn = INT64_MAX;
    for (int i = 0; i < 500; i++) {
        ids[i] = (int64_t)(i * i % 9973) - 5000;
        sum += ids[i];
        mx = ids[i] > mx ? ids[i] : mx;
        mn = ids[i] < mn ? ids[i] : mn;
    }
    want[0] = (float)((double)sum / 1000.0);
    want[1] = (float)(double)(mx - mn);
    int n = snprintf((char *)out, cap,
                     "{\"inputs\": [{\"name\": \"input_ids\", \"shape\": [1, 500], \"datatype\": "
                     "\"INT64\", \"parameters\": {\"binary_data_size\": 4000}}], \"outputs\": "
                     "[{\"name\": \"logits\", \"parameters\": {\"binary_data\": true}}]}");
    *hlen = (size_t)n;
    memcpy(out + n, ids, sizeof ids); /* little-endian host */
    return (size_t)n + sizeof ids;
}

static void test_kserve_binary(void **state)
{
    unsigned char body[8192];
    size_t hlen = 0;
    float want[2];
    size_t len = s_bert_binary(body, sizeof body, &hlen, want);
    char hdr[80];
    snprintf(hdr, sizeof hdr, "Inference-Header-Content-Length: %zu", hlen);
    const s_front_t *fronts[] = {&g_kv, &g_tfs};
    for (int k = 0; k < 2; k++) {
        s_reply_t r;
        s_http(fronts[k], "POST", "/v2/models/bert/infer", "application/octet-stream", hdr, body,
               len, &r);
        if (r.status != 200)
            fprintf(stderr, "binary -> %ld %s\n", r.status, r.body);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.ctype, "application/octet-stream");
        const char *json = "{\"model_name\":\"bert\",\"model_version\":\"1\",\"outputs\":"
                           "[{\"name\":\"logits\",\"datatype\":\"FP32\",\"shape\":[1,2],"
                           "\"parameters\":{\"binary_data_size\":8}}]}";
        char want_h[16];
        snprintf(want_h, sizeof want_h, "%zu", strlen(json));
        assert_string_equal(r.ihcl, want_h);
        assert_int_equal(r.len, strlen(json) + 8);
        assert_memory_equal(r.body, json, strlen(json));
        float got[2];
        memcpy(got, r.body + strlen(json), 8);
        assert_true(got[0] == want[0] && got[1] == want[1]);
        s_reply_free(&r);
    }
    /* A header length past the body is the client's error. */
    s_reply_t r;
    s_http(&g_kv, "POST", "/v2/models/bert/infer", "application/octet-stream",
           "Inference-Header-Content-Length: 99999", body, len, &r);
    assert_int_equal(r.status, 400);
    s_reply_free(&r);
}

/* Each dtype reaches the backend as itself: the server names what it got. */
static void test_dtypes_reach_backend(void **state)
{
    static const struct {
        const s_front_t *f;
        const char *body;
        const char *error;
    } cases[] = {
        {&g_tfs,
         "{\"inputs\": [{\"name\": \"images\", \"shape\": [1, 1, 1, 3], \"datatype\": \"UINT8\", "
         "\"data\": [1, 2, 3]}]}",
         "{\"error\": \"input 'images' must be float32, got uint8\"}"},
        {&g_kv,
         "{\"inputs\": [{\"name\": \"images\", \"shape\": [1, 1, 1, 3], \"datatype\": \"UINT8\", "
         "\"data\": [1, 2, 3]}]}",
         "{\"error\": \"input 'images' must be float32, got uint8\"}"},
        {&g_tfs,
         "{\"inputs\": [{\"name\": \"images\", \"shape\": [1, 2], \"datatype\": \"BOOL\", "
         "\"data\": [true, false]}]}",
         "{\"error\": \"input 'images' must be float32, got bool\"}"},
        {&g_kv,
         "{\"inputs\": [{\"name\": \"images\", \"shape\": [2], \"datatype\": \"FP64\", "
         "\"data\": [1.5, 2]}]}",
         "{\"error\": \"input 'images' must be float32, got float64\"}"},
        {&g_tfs,
         "{\"inputs\": [{\"name\": \"images\", \"shape\": [1], \"datatype\": \"BYTES\", "
         "\"data\": [\"hello\"]}]}",
         "{\"error\": \"input 'images': unsupported dtype DT_STRING\"}"},
        {&g_kv,
         "{\"inputs\": [{\"name\": \"images\", \"shape\": [1], \"datatype\": \"BYTES\", "
         "\"data\": [\"hello\"]}]}",
         "{\"error\": \"input 'images': unsupported datatype 'BYTES'\"}"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        s_reply_t r;
        s_http(cases[i].f, "POST", "/v2/models/mobilenet/infer", "application/json", NULL,
               cases[i].body, strlen(cases[i].body), &r);
        if (r.status != 400 || strcmp(r.body, cases[i].error) != 0)
            fprintf(stderr, "case %zu -> %ld %s\n", i, r.status, r.body);
        assert_int_equal(r.status, 400);
        assert_string_equal(r.body, cases[i].error);
        s_reply_free(&r);
    }
}

static void test_accept_protobuf(void **state)
{
    float want[2];
    char *row = s_bert_body("{\"instances\": [[", "]]}", 500, want);
    s_reply_t r;
    s_http(&g_tfs, "POST", "/v1/models/bert:predict", "application/json",
           "Accept: application/x-protobuf", row, strlen(row), &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.ctype, "application/x-protobuf");
    Tensorflow__Serving__PredictResponse *pr =
        tensorflow__serving__predict_response__unpack(NULL, r.len, (uint8_t *)r.body);
    assert_non_null(pr);
    assert_int_equal(pr->n_outputs, 1);
    assert_string_equal(pr->outputs[0]->key, "logits");
    const Tensorflow__TensorProto *t = pr->outputs[0]->value;
    assert_int_equal(t->dtype, TENSORFLOW__DATA_TYPE__DT_FLOAT);
    assert_int_equal(t->tensor_content.len, 8);
    float got[2];
    memcpy(got, t->tensor_content.data, 8);
    assert_true(got[0] == want[0] && got[1] == want[1]);
    tensorflow__serving__predict_response__free_unpacked(pr, NULL);
    s_reply_free(&r);

    s_http(&g_kv, "POST", "/v1/models/bert:predict", "application/json",
           "Accept: application/x-protobuf", row, strlen(row), &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.ctype, "application/x-protobuf");
    Inference__ModelInferResponse *ir =
        inference__model_infer_response__unpack(NULL, r.len, (uint8_t *)r.body);
    assert_non_null(ir);
    assert_int_equal(ir->n_raw_output_contents, 1);
    assert_int_equal(ir->raw_output_contents[0].len, 8);
    memcpy(got, ir->raw_output_contents[0].data, 8);
    assert_true(got[0] == want[0] && got[1] == want[1]);
    inference__model_infer_response__free_unpacked(ir, NULL);
    s_reply_free(&r);
    free(row);
}

static void test_errors(void **state)
{
    s_reply_t r;
    const char *small = "{\"instances\": [[1, 2, 3]]}";
    s_http(&g_tfs, "POST", "/v1/models/nosuch:predict", "application/json", NULL, small,
           strlen(small), &r);
    assert_int_equal(r.status, 404);
    assert_string_equal(r.body, "{\"error\": \"Servable not found for request: Latest(nosuch)\"}");
    s_reply_free(&r);
    s_expect(&g_tfs, "GET", "/v1/models/nosuch/versions/3", 404,
             "{\"error\": \"Servable not found for request: Specific(nosuch, 3)\"}");
    s_expect(&g_tfs, "GET", "/v2/models/nosuch", 404,
             "{\"error\": \"Servable not found for request: Latest(nosuch)\"}");
    /* Wrong shape: the backend's INVALID_ARGUMENT and its message, as 400. */
    float want[2];
    char *short_ids = s_bert_body("{\"instances\": [[", "]]}", 499, want);
    s_http(&g_tfs, "POST", "/v1/models/bert:predict", "application/json", NULL, short_ids,
           strlen(short_ids), &r);
    assert_int_equal(r.status, 400);
    assert_string_equal(
        r.body, "{\"error\": \"input 'input_ids' must have shape [1, 500], got [1, 499]\"}");
    s_reply_free(&r);
    free(short_ids);
    /* Malformed JSON: 400 saying where. */
    const char *bad = "{\"instances\": [[1, 2,, 3]]}";
    s_http(&g_tfs, "POST", "/v1/models/bert:predict", "application/json", NULL, bad, strlen(bad),
           &r);
    assert_int_equal(r.status, 400);
    assert_string_equal(r.body, "{\"error\": \"instances[0][2]: expected an integer\"}");
    s_reply_free(&r);
    const char *bad2 = "{\"instances\" [[1]]}";
    s_http(&g_tfs, "POST", "/v1/models/bert:predict", "application/json", NULL, bad2, strlen(bad2),
           &r);
    assert_int_equal(r.status, 400);
    assert_string_equal(r.body,
                        "{\"error\": \"offset 13: unexpected character '[', expected ':'\"}");
    s_reply_free(&r);
    s_http(&g_tfs, "POST", "/v1/models/bert:classify", "application/json", NULL, small,
           strlen(small), &r);
    assert_int_equal(r.status, 400);
    assert_string_equal(r.body, "{\"error\": \"classify is not supported by this proxy\"}");
    s_reply_free(&r);
    s_http(&g_tfs, "POST", "/v1/models/bert:regress", "application/json", NULL, small,
           strlen(small), &r);
    assert_int_equal(r.status, 400);
    assert_string_equal(r.body, "{\"error\": \"regress is not supported by this proxy\"}");
    s_reply_free(&r);
    s_http(&g_tfs, "GET", "/v1/models/bert:predict", NULL, NULL, NULL, 0, &r);
    assert_int_equal(r.status, 405);
    s_reply_free(&r);
    s_expect(&g_tfs, "GET", "/nothing/here", 404, "{\"error\": \"no such endpoint\"}");

    /* Slow backend past the proxy's 700 ms deadline: 504. */
    s_http(&g_bad, "POST", "/v1/models/mobilenet:predict", "application/json", NULL, small,
           strlen(small), &r);
    if (r.status != 504)
        fprintf(stderr, "slow -> %ld %s\n", r.status, r.body);
    assert_int_equal(r.status, 504);
    s_reply_free(&r);
    /* Backend down: 503. */
    const char *one = "{\"inputs\": [{\"name\": \"input_ids\", \"shape\": [1], \"datatype\": "
                      "\"INT64\", \"data\": [1]}]}";
    s_http(&g_bad, "POST", "/v2/models/bert/infer", "application/json", NULL, one, strlen(one), &r);
    if (r.status != 503)
        fprintf(stderr, "down -> %ld %s\n", r.status, r.body);
    assert_int_equal(r.status, 503);
    s_reply_free(&r);
    /* Body over the HTTP server's 1 MiB limit: 413. */
    size_t big = (size_t)2 << 20;
    char *huge = malloc(big);
    memset(huge, ' ', big);
    s_http(&g_bad, "POST", "/v1/models/bert:predict", "application/json", NULL, huge, big, &r);
    assert_int_equal(r.status, 413);
    s_reply_free(&r);
    free(huge);
}

static void test_observation(void **state)
{
    float want[2];
    char *row = s_bert_body("{\"instances\": [[", "]]}", 500, want);
    pthread_mutex_lock(&g_obs.lock);
    int before = g_obs.count;
    pthread_mutex_unlock(&g_obs.lock);
    s_reply_t r;
    s_http(&g_tfs, "POST", "/v1/models/bert:predict", "application/json", NULL, row, strlen(row),
           &r);
    assert_int_equal(r.status, 200);
    pthread_mutex_lock(&g_obs.lock);
    assert_int_equal(g_obs.count, before + 1);
    assert_string_equal(g_obs.model, "bert");
    assert_string_equal(g_obs.endpoint, "predict");
    assert_int_equal(g_obs.last.http_status, 200);
    assert_int_equal(g_obs.last.grpc_status, 0);
    assert_int_equal(g_obs.last.request_bytes, strlen(row));
    assert_int_equal(g_obs.last.response_bytes, r.len);
    /* 500 int32 ids as tensor_content, plus the spec and framing. */
    assert_true(g_obs.last.backend_request_bytes >= 2000 &&
                g_obs.last.backend_request_bytes < 2100);
    assert_true(g_obs.last.backend_response_bytes > 8 && g_obs.last.backend_response_bytes < 200);
    assert_true(g_obs.last.seconds > 0);
    pthread_mutex_unlock(&g_obs.lock);
    s_reply_free(&r);
    free(row);
}

/* ---- Signature fetches across a backend restart; versions, labels,
 * signatures and media types end to end ---------------------------------- */

/* Starts model_server.py on grpc_port (0: any) with version label "stable"
 * -> 1; waits (deadline 90 s) for its port file. */
static int s_server_start_on(s_server_t *s, int grpc_port)
{
    char port[16];
    snprintf(port, sizeof port, "%d", grpc_port);
    const char *extra[] = {"--version-label", "stable=1", "--exit-with-parent", NULL};
    return s_server_spawn(s, port, extra);
}

/* POSTs a JSON body and checks status and exact body. */
static void s_expect_post(const s_front_t *f, const char *path, const char *accept,
                          const char *body, long status, const char *want)
{
    s_reply_t r;
    s_http(f, "POST", path, "application/json", accept, body, strlen(body), &r);
    if (r.status != status || strcmp(r.body, want) != 0)
        fprintf(stderr, "POST %s -> %ld %s\n", path, r.status, r.body);
    assert_int_equal(r.status, status);
    assert_string_equal(r.body, want);
    s_reply_free(&r);
}

/* A model server that gives no metadata: with the input declared in the
 * config, TF Serving REST is parsed as its dtype (int32; the server refuses
 * the int64 a guess would make) and nothing else is served; with none
 * declared, REST predicts are refused rather than guessed at, while KServe
 * v2 (which names each datatype) still works. Each proxy says it once. */
static void test_backend_without_metadata(void **state)
{
    float want[2];
    char *row = s_bert_body("{\"instances\": [[", "]]}", 500, want);
    for (int i = 0; i < 3; i++)
        s_expect_logits(&g_op, "/v1/models/opaque:predict", row, "{\"predictions\": [[",
                        "\"predictions\"", want);
    s_expect_post(&g_op, "/v1/models/opaque:predict", NULL, "{\"inputs\": {\"mask\": [1]}}", 400,
                  "{\"error\": \"inputs: 'mask' is not an input of this model ('input_ids')\"}");
    char *v64 = s_bert_body("{\"inputs\": [{\"name\": \"input_ids\", \"shape\": [1, 500], "
                            "\"datatype\": \"INT64\", \"data\": [",
                            "]}]}", 500, want);
    s_expect_post(&g_op, "/v2/models/opaque/infer", NULL, v64, 400,
                  "{\"error\": \"inputs[0]: 'input_ids' has datatype INT64, but model opaque "
                  "takes INT32\"}");
    char *v32 = s_bert_body("{\"inputs\": [{\"name\": \"input_ids\", \"shape\": [1, 500], "
                            "\"datatype\": \"INT32\", \"data\": [",
                            "]}]}", 500, want);
    s_expect_logits(&g_op, "/v2/models/opaque/infer", v32, "{\"model_name\":\"opaque\"",
                    "\"data\"", want);
    s_expect_post(&g_op, "/v2/models/opaque/infer", NULL,
                  "{\"inputs\": [{\"name\": \"ids\", \"shape\": [1], \"datatype\": \"INT32\", "
                  "\"data\": [1]}]}",
                  400, "{\"error\": \"inputs[0]: 'ids' is not an input of model opaque\"}");
    pthread_mutex_lock(&g_op_log.lock);
    assert_int_equal(g_op_log.count, 1);
    assert_string_equal(g_op_log.last,
                        "model opaque: its model server gives no metadata (UNIMPLEMENTED: "
                        "GetModelMetadata is not implemented); serving only the 1 inputs the "
                        "config declares: input_ids:int32");
    pthread_mutex_unlock(&g_op_log.lock);

    const char *refused = "{\"error\": \"model opaque: its model server gives no metadata and "
                          "the proxy's config declares no inputs for it "
                          "(proxy.backends[].inputs), so the input dtypes are unknown\"}";
    for (int i = 0; i < 2; i++)
        s_expect_post(&g_opk, "/v1/models/opaque:predict", NULL, row, 503, refused);
    s_expect_logits(&g_opk, "/v2/models/opaque/infer", v32, "{\"model_name\":\"opaque\"",
                    "\"data\"", want);
    pthread_mutex_lock(&g_opk_log.lock);
    assert_int_equal(g_opk_log.count, 1);
    assert_string_equal(g_opk_log.last,
                        "model opaque: its model server gives no metadata (UNIMPLEMENTED: "
                        "ModelMetadata is not implemented); the config declares no inputs "
                        "(proxy.backends[].inputs), so its TF Serving REST requests are refused "
                        "rather than guessed at");
    pthread_mutex_unlock(&g_opk_log.lock);
    free(row);
    free(v64);
    free(v32);
}

/* Where the registry says models are: bert at site-b, nothing else. */
static size_t s_where_registry(void *arg, const char *model, char *buf, size_t cap)
{
    (void)arg;
    if (strcmp(model, "bert") != 0)
        return 0;
    snprintf(buf, cap, "site-b");
    return 1;
}

/* A proxy that starts with no models and gets them at run time, as the
 * model registry hands them over: servers without metadata are served with
 * the signature and inputs the registry declares (opaque_sig's only
 * signature is "classify": a Predict without it is refused by the server),
 * declared shapes are checked before the server is asked, and a model that
 * leaves is 404 saying where it is served. */
static void test_models_at_run_time(void **state)
{
    (void)state;
    s_front_t f = {0};
    kvc_proxy_opts_t o = {.timeout_ms = 30000, .where = s_where_registry};
    assert_int_equal(s_front_start_opts(&f, &o, (size_t)1 << 20), 0);
    float want[2];
    char *row = s_bert_body("{\"instances\": [[", "]]}", 500, want);
    char *v32 = s_bert_body("{\"inputs\": [{\"name\": \"input_ids\", \"shape\": [1, 500], "
                            "\"datatype\": \"INT32\", \"data\": [",
                            "]}]}", 500, want);
    const char *absent = "{\"error\": \"model \\\"opaque_sig\\\" is not in the registry\"}";
    s_expect_post(&f, "/v1/models/opaque_sig:predict", NULL, row, 404, absent);
    s_expect_post(&f, "/v1/models/bert:predict", NULL, row, 404,
                  "{\"error\": \"model \\\"bert\\\" is not served at this site; it is served "
                  "at: site-b\"}");

    char grpc[64];
    snprintf(grpc, sizeof grpc, "127.0.0.1:%d", g_fast.grpc_port);
    static const int64_t one_by_500[] = {1, 500}, any_by_500[] = {-1, 500};
    const kvc_proxy_input_t tin[] = {
        {.name = "input_ids", .dtype = KVC_DT_INT32, .shape = one_by_500, .n_dims = 2}};
    const kvc_proxy_input_t kin[] = {
        {.name = "input_ids", .dtype = KVC_DT_INT32, .shape = any_by_500, .n_dims = 2}};
    const char *outs[] = {"logits"};
    kvc_proxy_backend_t m[] = {
        {.model = "opaque_sig",
         .grpc = grpc,
         .api = "tfserving",
         .inputs = tin,
         .n_inputs = 1,
         .outputs = outs,
         .n_outputs = 1},
        {.model = "opaque", .grpc = grpc, .api = "kserve", .inputs = kin, .n_inputs = 1}};
    kvc_err_t err = {0};
    /* Without its signature the server refuses: the name matters. */
    assert_int_equal(kvc_proxy_set_models(f.proxy, m, 2, &err), 0);
    s_expect_post(&f, "/v1/models/opaque_sig:predict", NULL, row, 400,
                  "{\"error\": \"Serving signature key \\\"serving_default\\\" not found.\"}");
    m[0].signature = "classify";
    assert_int_equal(kvc_proxy_set_models(f.proxy, m, 2, &err), 0);
    for (int i = 0; i < 2; i++)
        s_expect_logits(&f, "/v1/models/opaque_sig:predict", row, "{\"predictions\": [[",
                        "\"predictions\"", want);
    s_expect_logits(&f, "/v2/models/opaque/infer", v32, "{\"model_name\":\"opaque\"", "\"data\"",
                    want);
    /* Declared shapes: the proxy says what is wrong, naming both. */
    s_expect_post(&f, "/v1/models/opaque_sig:predict", NULL, "{\"instances\": [[1, 2, 3]]}", 400,
                  "{\"error\": \"input input_ids has shape [1, 3], but model opaque_sig takes "
                  "[1, 500] (-1: any size)\"}");
    s_expect_post(&f, "/v2/models/opaque/infer", NULL,
                  "{\"inputs\": [{\"name\": \"input_ids\", \"shape\": [2], \"datatype\": "
                  "\"INT32\", \"data\": [1, 2]}]}",
                  400,
                  "{\"error\": \"input input_ids has shape [2], but model opaque takes "
                  "[-1, 500] (-1: any size)\"}");
    /* A bad table changes nothing. */
    m[1].api = "triton";
    assert_int_equal(kvc_proxy_set_models(f.proxy, m, 2, &err), KVC_EINVAL);
    assert_string_equal(err.msg, "models[1].api: must be \"tfserving\" or \"kserve\"");
    s_expect_logits(&f, "/v2/models/opaque/infer", v32, "{\"model_name\":\"opaque\"", "\"data\"",
                    want);
    /* The models leave. */
    assert_int_equal(kvc_proxy_set_models(f.proxy, NULL, 0, &err), 0);
    s_expect_post(&f, "/v1/models/opaque_sig:predict", NULL, row, 404, absent);
    s_front_stop(&f);
    free(row);
    free(v32);
}

/* A predict while the backend is down is 503 saying why; once the backend
 * is back on the same port, the very next predicts fetch the signature
 * again and succeed: nothing is remembered from the outage, and no dtype
 * is guessed from the JSON (which made "f32": [1, 2] an int64 input, and
 * the server's answer a 400 blaming the client). The port is held (shared
 * with the servers, kvc_it_hold_port) throughout, so the outage refuses
 * connections and no other test can take the port meanwhile. */
static void test_signatures_after_backend_outage(void **state)
{
    s_server_t srv = {0};
    int port = 0;
    int held = kvc_it_hold_port(&port, 1);
    assert_true(held >= 0);
    assert_int_equal(s_server_start_on(&srv, port), 0);
    assert_int_equal(srv.grpc_port, port);
    char grpc[64];
    snprintf(grpc, sizeof grpc, "127.0.0.1:%d", port);
    kvc_proxy_backend_t b[] = {{"echo", grpc, "tfserving", "", "", NULL, 0, NULL, NULL, 0},
                               {"bert", grpc, "kserve", "", "", NULL, 0, NULL, NULL, 0}};
    s_front_t f = {0};
    assert_int_equal(s_front_start(&f, b, 2, 30000, (size_t)1 << 20, NULL), 0);
    s_server_stop(&srv);

    const char *body = "{\"inputs\": {\"f32\": [1, 2], \"u8\": [1]}}";
    const char *down = "{\"error\": \"cannot fetch the signatures of model echo from its model "
                       "server (UNAVAILABLE): ";
    for (int i = 0; i < 2; i++) {
        s_reply_t r;
        s_http(&f, "POST", "/v1/models/echo:predict", "application/json", NULL, body, strlen(body),
               &r);
        if (r.status != 503 || strncmp(r.body, down, strlen(down)) != 0)
            fprintf(stderr, "down -> %ld %s\n", r.status, r.body);
        assert_int_equal(r.status, 503);
        assert_memory_equal(r.body, down, strlen(down));
        s_reply_free(&r);
    }

    assert_int_equal(s_server_start_on(&srv, port), 0);
    assert_int_equal(srv.grpc_port, port);
    const char *want = "{\"outputs\": {\"f32_out\": [1.0,2.0], \"u8_out\": [1]}}";
    s_expect_post(&f, "/v1/models/echo:predict", NULL, body, 200, want);
    s_expect_post(&f, "/v1/models/echo:predict", NULL, body, 200, want);
    s_front_stop(&f);
    s_server_stop(&srv);
    close(held);
}

/* Version labels reach TF Serving as ModelSpec.version_label; an unknown
 * one is TF Serving's own 400. Version 0 is asked for as TF Serving would
 * (its int64), and is not found. KServe versions are strings, passed as
 * given; a TF Serving model's versions are numbers. */
static void test_versions_and_labels(void **state)
{
    s_server_t srv = {0};
    assert_int_equal(s_server_start_on(&srv, 0), 0);
    char grpc[64];
    snprintf(grpc, sizeof grpc, "127.0.0.1:%d", srv.grpc_port);
    kvc_proxy_backend_t tb[] = {{"bert", grpc, "tfserving", "", "", NULL, 0, NULL, NULL, 0}};
    kvc_proxy_backend_t kb[] = {{"bert", grpc, "kserve", "", "", NULL, 0, NULL, NULL, 0}};
    s_front_t tf = {0}, kf = {0};
    assert_int_equal(s_front_start(&tf, tb, 1, 30000, (size_t)1 << 20, NULL), 0);
    assert_int_equal(s_front_start(&kf, kb, 1, 30000, (size_t)1 << 20, NULL), 0);
    float want[2];
    char *row = s_bert_body("{\"instances\": [[", "]]}", 500, want);
    char *v2 = s_bert_body("{\"inputs\": [{\"name\": \"input_ids\", \"shape\": [1, 500], "
                           "\"datatype\": \"INT32\", \"data\": [",
                           "]}]}", 500, want);

    s_expect_logits(&tf, "/v1/models/bert/labels/stable:predict", row, "{\"predictions\": [[",
                    "\"predictions\"", want);
    s_expect_post(&tf, "/v1/models/bert/labels/nope:predict", NULL, row, 400,
                  "{\"error\": \"Unrecognized servable version label: nope\"}");
    s_expect(&tf, "GET", "/v1/models/bert/labels/stable", 200,
             "{\"model_version_status\": [{\"version\": \"1\", \"state\": \"AVAILABLE\", "
             "\"status\": {\"error_code\": \"OK\", \"error_message\": \"\"}}]}");
    s_expect(&tf, "GET", "/v1/models/bert/labels/canary", 400,
             "{\"error\": \"Unrecognized servable version label: canary\"}");
    s_expect_post(&tf, "/v1/models/bert/versions/0:predict", NULL, row, 404,
                  "{\"error\": \"Servable not found for request: Specific(bert, 0)\"}");
    s_expect_logits(&tf, "/v1/models/bert/versions/001:predict", row, "{\"predictions\": [[",
                    "\"predictions\"", want);
    s_expect_post(&tf, "/v2/models/bert/versions/v1/infer", NULL, v2, 404,
                  "{\"error\": \"invalid model version in the path: the TF Serving backend of "
                  "model bert has numeric versions only, not \\\"v1\\\"\"}");

    /* KServe: "v1" reaches the server as the string it is. */
    s_expect_post(&kf, "/v2/models/bert/versions/v1/infer", NULL, v2, 404,
                  "{\"error\": \"Servable not found for request: Specific(bert, v1)\"}");
    s_expect_logits(&kf, "/v2/models/bert/versions/1/infer", v2, "{\"model_name\":\"bert\"",
                    "\"data\"", want);
    s_expect(&kf, "GET", "/v2/models/bert/versions/v1/ready", 400,
             "{\"name\": \"bert\", \"ready\": false}");
    s_expect_post(&kf, "/v1/models/bert/labels/stable:predict", NULL, row, 400,
                  "{\"error\": \"version labels are not supported for KServe backends\"}");
    free(row);
    free(v2);
    s_front_stop(&tf);
    s_front_stop(&kf);
    s_server_stop(&srv);
}

/* A KServe model has one signature: "" and "serving_default" name it, any
 * other name is the client's 400, never silently ignored. */
static void test_kserve_signature_name(void **state)
{
    float want[2];
    char *def = s_bert_body("{\"signature_name\": \"serving_default\", \"instances\": [[", "]]}",
                            500, want);
    char *none = s_bert_body("{\"signature_name\": \"\", \"instances\": [[", "]]}", 500, want);
    char *other =
        s_bert_body("{\"signature_name\": \"other\", \"instances\": [[", "]]}", 500, want);
    s_expect_logits(&g_kv, "/v1/models/bert:predict", def, "{\"predictions\": [[", "predictions",
                    want);
    s_expect_logits(&g_kv, "/v1/models/bert:predict", none, "{\"predictions\": [[",
                    "\"predictions\"", want);
    s_expect_post(&g_kv, "/v1/models/bert:predict", NULL, other, 400,
                  "{\"error\": \"the KServe backend of model bert has no signature named "
                  "\\\"other\\\" (KServe models have only \\\"serving_default\\\")\"}");
    /* A TF Serving backend answers for its own signatures. */
    s_expect_post(&g_tfs, "/v1/models/bert:predict", NULL, other, 400,
                  "{\"error\": \"Serving signature name: \\\"other\\\" not found in signature "
                  "def\"}");
    free(def);
    free(none);
    free(other);
}

/* Accept is negotiated: application/protobuf (IANA's name) is answered as
 * such, q=0 refuses protobuf, JSON preferred over it gets JSON. */
static void test_accept_negotiation(void **state)
{
    float want[2];
    char *row = s_bert_body("{\"instances\": [[", "]]}", 500, want);
    static const struct {
        const char *accept, *ctype;
    } cases[] = {
        {"Accept: Application/Protobuf", "application/protobuf"},
        {"Accept: application/json;q=0.5, application/x-protobuf", "application/x-protobuf"},
        {"Accept: application/x-protobuf;q=0", "application/json"},
        {"Accept: application/json, application/x-protobuf;q=0.9", "application/json"},
        {"Accept: text/plain; note=\"application/x-protobuf\"", "application/json"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        s_reply_t r;
        s_http(&g_tfs, "POST", "/v1/models/bert:predict", "application/json", cases[i].accept, row,
               strlen(row), &r);
        if (r.status != 200 || strcmp(r.ctype, cases[i].ctype) != 0)
            fprintf(stderr, "%s -> %ld %s\n", cases[i].accept, r.status, r.ctype);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.ctype, cases[i].ctype);
        if (strcmp(cases[i].ctype, "application/json") == 0) {
            assert_memory_equal(r.body, "{\"predictions\": [[", 18);
        } else {
            Tensorflow__Serving__PredictResponse *pr =
                tensorflow__serving__predict_response__unpack(NULL, r.len, (uint8_t *)r.body);
            assert_non_null(pr);
            assert_int_equal(pr->n_outputs, 1);
            tensorflow__serving__predict_response__free_unpacked(pr, NULL);
        }
        s_reply_free(&r);
    }
    free(row);
}

/* Image media types are case-insensitive and may carry parameters. */
static void test_image_content_type_case(void **state)
{
    unsigned char *rgb = s_picture(224, 224), *dec = NULL;
    unsigned long jlen = 0;
    unsigned char *jpg = s_jpeg_decoded(rgb, 224, &jlen, &dec);
    const char *types[] = {"IMAGE/JPEG", "Image/Jpeg; charset=binary"};
    for (size_t i = 0; i < 2; i++) {
        s_reply_t r;
        s_http(&g_tfs, "POST", "/v1/models/mobilenet:predict", types[i], NULL, jpg, jlen, &r);
        if (r.status != 200)
            fprintf(stderr, "%s -> %ld %s\n", types[i], r.status, r.body);
        assert_int_equal(r.status, 200);
        assert_memory_equal(r.body, "{\"predictions\": [[", 18);
        s_check_image_scores(r.body, NULL, dec, 224 * 224 * 3, 0);
        s_reply_free(&r);
    }
    tjFree(jpg);
    free(dec);
    free(rgb);
}

/* A model server that answers OK but sends no outputs is at fault, not the
 * client: 502, saying so. */
static void test_backend_answer_without_outputs(void **state)
{
    (void)state;
    float want[2];
    char *body = s_bert_body("{\"instances\": [[", "]]}", 500, want);
    s_expect_post(&g_tfs, "/v1/models/hollow:predict", NULL, body, 502,
                  "{\"error\": \"model server answered with no outputs\"}");
    free(body);
}

/* The bert request_count with status in one scraped metrics text (0 when
 * absent). */
static long s_count_in(const char *text, const char *status)
{
    char key[128];
    snprintf(key, sizeof key,
             ":tensorflow:serving:request_count{model_name=\"bert\",status=\"%s\"} ", status);
    const char *at = strstr(text, key);
    return at ? strtol(at + strlen(key), NULL, 10) : 0;
}

/* The slow model server's bert calls it counted CANCELLED and OK, from one
 * scrape of its /monitoring/prometheus/metrics. */
static void s_backend_counts(long *cancelled, long *ok)
{
    s_front_t ms = {.port = (uint16_t)g_slow.rest_port};
    s_reply_t r;
    s_http(&ms, "GET", "/monitoring/prometheus/metrics", NULL, NULL, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    *cancelled = s_count_in(r.body, "CANCELLED");
    *ok = s_count_in(r.body, "OK");
    s_reply_free(&r);
}

static long s_backend_count(const char *status)
{
    long cancelled, ok;
    s_backend_counts(&cancelled, &ok);
    return strcmp(status, "OK") == 0 ? ok : cancelled;
}

static double s_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* What the hang-up tests wait for, and what was seen when the wait ended
 * (one scrape of the slow server, one read of g_hang's observations). */
typedef struct {
    long want_cancelled; /* < 0: any */
    int want_obs;        /* < 0: any */
    long cancelled, ok;  /* the slow server's bert counts */
    int obs, status;     /* g_hang's observations: count, last HTTP status */
} s_hang_wait_t;

/* Polls (deadline 10 s) until h's wants are met; the caller asserts. */
static void s_hang_wait(s_hang_wait_t *h)
{
    double until = s_now_s() + 10.0;
    for (;;) {
        s_backend_counts(&h->cancelled, &h->ok);
        pthread_mutex_lock(&g_hang_obs.lock);
        h->obs = g_hang_obs.count;
        h->status = g_hang_obs.last.http_status;
        pthread_mutex_unlock(&g_hang_obs.lock);
        if ((h->want_cancelled < 0 || h->cancelled == h->want_cancelled) &&
            (h->want_obs < 0 || h->obs == h->want_obs))
            return;
        if (s_now_s() > until)
            return;
        struct timespec pause = {0, 20 * 1000 * 1000};
        nanosleep(&pause, NULL); /* between polls of a condition with a deadline */
    }
}

/* Waits until the slow server counts want cancelled bert calls and g_hang
 * has observed want_obs requests; asserts both. */
static void s_wait_cancelled(long want, int want_obs)
{
    s_hang_wait_t h = {.want_cancelled = want, .want_obs = want_obs};
    s_hang_wait(&h);
    assert_int_equal(h.cancelled, want);
    assert_int_equal(h.obs, want_obs);
}

/* Posts a bert predict to g_hang and hangs up after ms, as a client that
 * gives up does (curl closes the connection on its timeout). */
static void s_post_and_hang_up(long ms)
{
    float want[2];
    char *body = s_bert_body("{\"instances\": [[", "]]}", 500, want);
    CURL *h = curl_easy_init();
    assert_non_null(h);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/v1/models/bert:predict", g_hang.port);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, ms);
    CURLcode rc = curl_easy_perform(h);
    curl_easy_cleanup(h);
    free(body);
    assert_int_equal(rc, CURLE_OPERATION_TIMEDOUT);
}

/*
 * A client that hangs up while its request waits for the model server
 * (3 s delay, 30 s proxy timeout) ends the gRPC call: the model server
 * sees it cancelled and serves nobody (a call that ran its course would
 * count as OK there, never as CANCELLED). Once from a request thread (the
 * model's first request, which also fetches its signatures: that fetch is
 * shared and must not be cancelled) and once from a fiber on the loop
 * (signatures cached).
 */
static void test_client_hangup_cancels_call(void **state)
{
    (void)state;
    assert_int_equal(s_backend_count("CANCELLED"), 0);
    /* Thread path: the signature fetch goes through, the predict is cut. */
    s_post_and_hang_up(400);
    s_wait_cancelled(1, 1);
    pthread_mutex_lock(&g_hang_obs.lock);
    assert_int_equal(g_hang_obs.last.grpc_status, 1 /* CANCELLED */);
    assert_int_equal(g_hang_obs.last.http_status, 499);
    pthread_mutex_unlock(&g_hang_obs.lock);
    /* Fiber path: signatures are cached now. */
    s_post_and_hang_up(400);
    s_wait_cancelled(2, 2);
    pthread_mutex_lock(&g_hang_obs.lock);
    assert_int_equal(g_hang_obs.last.grpc_status, 1);
    assert_int_equal(g_hang_obs.last.http_status, 499);
    pthread_mutex_unlock(&g_hang_obs.lock);
    /* Nothing was served, and the front still answers. */
    assert_int_equal(s_backend_count("OK"), 0);
    s_expect(&g_hang, "GET", "/v2/health/live", 200, "{\"live\": true}");
}

/* A bert predict to g_hang that waits for its answer (thread body). */
typedef struct {
    pthread_t t;
    long status;
    int answered; /* the body held predictions */
} s_waiter_t;

static void *s_waiter_main(void *arg)
{
    s_waiter_t *w = arg;
    float want[2];
    char *body = s_bert_body("{\"instances\": [[", "]]}", 500, want);
    s_reply_t r;
    s_http(&g_hang, "POST", "/v1/models/bert:predict", "application/json", NULL, body, strlen(body),
           &r);
    w->status = r.status;
    w->answered = r.body && strstr(r.body, "\"predictions\"") != NULL;
    s_reply_free(&r);
    free(body);
    return NULL;
}

/*
 * A call cancelled beside another one on the same HTTP/2 connection resets
 * only its own stream: the other is answered. Client B waits for its
 * answer (3 s model); client A hangs up after 1 s, and once kvc has
 * answered A (499), client C's request writes to the connection, which
 * carries A's RST_STREAM out. The model server must count A cancelled
 * before it has served anyone (B's and C's answers come 3 s after they
 * started), then serve B and C. (Were B not in flight yet when A is
 * cancelled, A would close the connection instead: still no call served
 * for nobody, and B and C still answered.)
 */
static void test_client_hangup_beside_other_calls(void **state)
{
    (void)state;
    long cancelled0, ok0, cancelled, ok;
    s_backend_counts(&cancelled0, &ok0);
    pthread_mutex_lock(&g_hang_obs.lock);
    int obs0 = g_hang_obs.count;
    pthread_mutex_unlock(&g_hang_obs.lock);
    s_waiter_t b = {0}, c = {0};
    assert_int_equal(pthread_create(&b.t, NULL, s_waiter_main, &b), 0);
    s_post_and_hang_up(1000); /* A */
    s_hang_wait_t a = {.want_cancelled = -1, .want_obs = obs0 + 1};
    s_hang_wait(&a);
    assert_int_equal(a.obs, obs0 + 1); /* A's call ended: its reset is queued */
    assert_int_equal(a.status, 499);
    assert_int_equal(pthread_create(&c.t, NULL, s_waiter_main, &c), 0);
    s_hang_wait_t reset = {.want_cancelled = cancelled0 + 1, .want_obs = -1};
    s_hang_wait(&reset);
    assert_int_equal(reset.cancelled, cancelled0 + 1);
    assert_int_equal(reset.ok, ok0); /* seen before B and C were served */
    pthread_join(b.t, NULL);
    pthread_join(c.t, NULL);
    assert_int_equal(b.status, 200);
    assert_true(b.answered);
    assert_int_equal(c.status, 200);
    assert_true(c.answered);
    s_backend_counts(&cancelled, &ok);
    assert_int_equal(cancelled, cancelled0 + 1);
    assert_int_equal(ok, ok0 + 2);
    pthread_mutex_lock(&g_hang_obs.lock);
    assert_int_equal(g_hang_obs.count, obs0 + 3);
    pthread_mutex_unlock(&g_hang_obs.lock);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_health_and_server),
        cmocka_unit_test(test_model_status),
        cmocka_unit_test(test_model_metadata),
        cmocka_unit_test(test_backend_without_metadata),
        cmocka_unit_test(test_models_at_run_time),
        cmocka_unit_test(test_predict_bert_both_formats),
        cmocka_unit_test(test_predict_image_models_json),
        cmocka_unit_test(test_predict_yolov5),
        cmocka_unit_test(test_images),
        cmocka_unit_test(test_images_uint8),
        cmocka_unit_test(test_backend_answer_without_outputs),
        cmocka_unit_test(test_client_hangup_cancels_call),
        cmocka_unit_test(test_client_hangup_beside_other_calls),
        cmocka_unit_test(test_kserve_binary),
        cmocka_unit_test(test_dtypes_reach_backend),
        cmocka_unit_test(test_accept_protobuf),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_observation),
        cmocka_unit_test(test_signatures_after_backend_outage),
        cmocka_unit_test(test_versions_and_labels),
        cmocka_unit_test(test_kserve_signature_name),
        cmocka_unit_test(test_accept_negotiation),
        cmocka_unit_test(test_image_content_type_case),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
