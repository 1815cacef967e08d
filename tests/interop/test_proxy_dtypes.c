/*
 * Interop tests: every dtype the proxy's codecs claim, end to end, through
 * libcurl -> kvc_http_server -> kvc_proxy_handle -> gRPC -> the model
 * server's "echo" model (model_server.py), which returns each input
 * unchanged as NAME_out (raw_bytes -> raw_out_bytes).
 *
 * Both REST dialects: TF Serving row and columnar JSON (to a TF Serving
 * backend, which answers in the typed *_val fields), KServe v2 JSON and
 * the binary tensor extension (to a KServe backend, answering raw
 * contents). Edge values: NaN, +-Infinity, -0.0, the largest and the
 * smallest (denormal) floats, integer limits, empty and non-UTF-8 strings,
 * exactly representable halves. Every answer is compared as exact text (and
 * binary sections byte for byte). The server binds port 0 and reports it
 * in a file polled with a deadline; its folder is removed at teardown.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "http_server.h"
#include "model_server_proc.h"
#include "proxy.h"

extern char **environ;

/* ---- The model server and the two proxies -------------------------------- */

typedef struct {
    pid_t pid;
    char dir[64];
    int grpc_port;
} s_server_t;

typedef struct {
    kvc_proxy_t *proxy;
    kvc_http_server_t *http;
    uint16_t port;
} s_front_t;

static s_server_t g_srv;
static s_front_t g_tfs, g_kv;

/* Milliseconds on the monotonic clock. */
static int64_t s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Starts model_server.py; 0 once it reported its ports (deadline 90 s). */
static int s_server_start(s_server_t *s)
{
    snprintf(s->dir, sizeof s->dir, "/tmp/kvc-dtypes-it-XXXXXX");
    if (!mkdtemp(s->dir))
        return -1;
    char port_file[128];
    snprintf(port_file, sizeof port_file, "%s/ports.json", s->dir);
    const char *argv[] = {KVC_PYTHON,           KVC_SOURCE_DIR "/tests/interop/model_server.py",
                          "--grpc-port",        "0",
                          "--rest-port",        "0",
                          "--port-file",        port_file,
                          "--exit-with-parent", NULL};
    if (posix_spawn(&s->pid, KVC_PYTHON, NULL, NULL, (char *const *)argv, environ) != 0)
        return -1;
    char text[256];
    if (kvc_it_wait_port_file(&s->pid, port_file, text, sizeof text, NULL) != 0)
        return -1;
    const char *g = strstr(text, "\"grpc\": ");
    s->grpc_port = g ? (int)strtol(g + 8, NULL, 10) : -1;
    return s->grpc_port > 0 ? 0 : -1;
}

/* Stops the server (SIGTERM, then SIGKILL after 15 s) and removes its folder. */
static void s_server_stop(s_server_t *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        int64_t deadline = s_now_ms() + 15000;
        struct timespec step = {0, 20 * 1000 * 1000};
        while (waitpid(s->pid, NULL, WNOHANG) == 0) {
            if (s_now_ms() > deadline) {
                kill(s->pid, SIGKILL);
                waitpid(s->pid, NULL, 0);
                break;
            }
            nanosleep(&step, NULL);
        }
        s->pid = 0;
    }
    char port_file[128];
    snprintf(port_file, sizeof port_file, "%s/ports.json", s->dir);
    unlink(port_file);
    rmdir(s->dir);
}

/* Starts a proxy with the echo model on api behind an HTTP front. */
static int s_front_start(s_front_t *f, const char *grpc, const char *api)
{
    kvc_err_t err = {0};
    kvc_proxy_backend_t b = {"echo", grpc, api, "", "", NULL, 0, NULL, NULL, 0};
    kvc_proxy_opts_t o = {.backends = &b, .n_backends = 1, .timeout_ms = 30000};
    f->proxy = kvc_proxy_new(&o, &err);
    if (!f->proxy) {
        fprintf(stderr, "proxy: %s\n", err.msg);
        return -1;
    }
    kvc_http_opts_t ho = {.max_body = 1 << 20,
                          .max_response = 1 << 20,
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

static int s_setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_ALL);
    if (s_server_start(&g_srv) != 0)
        return -1;
    char grpc[64];
    snprintf(grpc, sizeof grpc, "127.0.0.1:%d", g_srv.grpc_port);
    if (s_front_start(&g_tfs, grpc, "tfserving") != 0 || s_front_start(&g_kv, grpc, "kserve") != 0)
        return -1;
    return 0;
}

static int s_teardown(void **state)
{
    (void)state;
    kvc_http_server_destroy(&g_tfs.http);
    kvc_proxy_destroy(&g_tfs.proxy);
    kvc_http_server_destroy(&g_kv.http);
    kvc_proxy_destroy(&g_kv.proxy);
    s_server_stop(&g_srv);
    curl_global_cleanup();
    return 0;
}

/* ---- HTTP client ---------------------------------------------------------- */

typedef struct {
    long status;
    char ihcl[32]; /* Inference-Header-Content-Length, "" when absent */
    char body[16384];
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

static size_t s_on_header(char *p, size_t size, size_t n, void *arg)
{
    s_reply_t *r = arg;
    static const char name[] = "inference-header-content-length:";
    size_t k = sizeof name - 1, len = size * n;
    if (len > k && strncasecmp(p, name, k) == 0) {
        size_t v = k;
        while (v < len && p[v] == ' ')
            v++;
        size_t e = len;
        while (e > v && (p[e - 1] == '\r' || p[e - 1] == '\n'))
            e--;
        snprintf(r->ihcl, sizeof r->ihcl, "%.*s", (int)(e - v), p + v);
    }
    return len;
}

/* POSTs len bytes of body to path on front f; extra is a header or NULL. */
static void s_post(const s_front_t *f, const char *path, const char *extra, const void *body,
                   size_t len, s_reply_t *r)
{
    memset(r, 0, sizeof *r);
    CURL *h = curl_easy_init();
    assert_non_null(h);
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%u%s", f->port, path);
    struct curl_slist *hs = curl_slist_append(NULL, "Content-Type: application/json");
    hs = curl_slist_append(hs, "Expect:");
    if (extra)
        hs = curl_slist_append(hs, extra);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, s_on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, s_on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 60L);
    assert_int_equal(curl_easy_perform(h), CURLE_OK);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(hs);
    curl_easy_cleanup(h);
}

/* POSTs a JSON text and expects status and the exact answer. */
static void s_expect_json(const s_front_t *f, const char *path, const char *body, long status,
                          const char *want)
{
    s_reply_t r;
    s_post(f, path, NULL, body, strlen(body), &r);
    if (r.status != status || strcmp(r.body, want) != 0)
        fprintf(stderr, "POST %s\n  got  %ld %s\n  want %ld %s\n", path, r.status, r.body, status,
                want);
    assert_int_equal(r.status, status);
    assert_string_equal(r.body, want);
    assert_string_equal(r.ihcl, "");
}

#define TFS_PREDICT "/v1/models/echo:predict"
#define KV_INFER "/v2/models/echo/infer"

/* ---- TF Serving REST ------------------------------------------------------ */

/* echo has one input per dtype: a value not keyed by input name is refused
 * before it reaches the model server, whether the request names the
 * signature or not, in both formats. */
static void test_tfs_unnamed_value_multi_input(void **state)
{
    (void)state;
    /* The names come in the model server's (map) order. */
    s_reply_t r;
    s_post(&g_tfs, TFS_PREDICT, NULL, "{\"inputs\": 1.5}", strlen("{\"inputs\": 1.5}"), &r);
    assert_int_equal(r.status, 400);
    const char *head = "{\"error\": \"offset 11: inputs: the signature has 14 inputs ('";
    const char *tail = "'), so 'inputs' must be an object keyed by input name\"}";
    assert_memory_equal(r.body, head, strlen(head));
    assert_true(strlen(r.body) > strlen(head) + strlen(tail));
    assert_string_equal(r.body + strlen(r.body) - strlen(tail), tail);
    assert_non_null(strstr(r.body, "'raw_bytes'"));
    s_expect_json(&g_tfs, TFS_PREDICT, "{\"signature_name\": \"serving_default\", \"inputs\": 1.5}",
                  400,
                  "{\"error\": \"inputs: the signature \\\"serving_default\\\" has 14 inputs, so "
                  "'inputs' must be an object keyed by input name\"}");
    s_expect_json(
        &g_tfs, TFS_PREDICT, "{\"instances\": [1.5], \"signature_name\": \"serving_default\"}", 400,
        "{\"error\": \"instances: the signature \\\"serving_default\\\" has 14 inputs, so "
        "each instance must be an object keyed by input name\"}");
}

/* Columnar: every dtype's edge values in, the same values out. Halves are
 * written as the shortest float32 text of the half (2^-14 as 0.000061035156);
 * 0.1, not a half, comes back as the nearest half, 0.0999755859375. Floats
 * past float32's precision come back rounded to float32, 2^53 + 1 as a double
 * to 2^53. */
static void test_tfs_columnar_every_dtype(void **state)
{
    (void)state;
    s_expect_json(
        &g_tfs, TFS_PREDICT,
        "{\"inputs\": {"
        "\"f32\": [NaN, Infinity, -Infinity, -0.0, 0.0, 3.4028234663852886e38, "
        "1e-45, 1.1754942e-38, 1.17549435e-38, 0.1, 16777216, -1.5],"
        "\"f64\": [NaN, Infinity, -Infinity, -0.0, 1.7976931348623157e308, 5e-324, "
        "2.225073858507201e-308, 2.2250738585072014e-308, 0.1, 9007199254740993, -1e-300],"
        "\"f16\": [0.5, -2, 65504, -65504, 6.103515625e-05, 5.960464477539063e-08, "
        "6.097555160522461e-05, -0.0, 0.0, Infinity, -Infinity, NaN, 1.0009765625, 0.1],"
        "\"i8\": [-128, 127, 0, -1],"
        "\"i16\": [-32768, 32767],"
        "\"i32\": [[-2147483648, 2147483647], [0, -1]],"
        "\"i64\": [-9223372036854775808, 9223372036854775807, 0],"
        "\"u8\": [0, 255, 128],"
        "\"u16\": [0, 65535],"
        "\"u32\": [0, 4294967295],"
        "\"u64\": [0, 18446744073709551615, 9223372036854775808],"
        "\"b\": [[true, false], [false, true]],"
        "\"str\": [\"\", \"hello\", \"\\u00fcn\\u00efc\\u00f6d\\u00e9 \\ud83d\\ude00\", "
        "{\"b64\": \"/wA=\"}, \"q\\\"\\\\\\n\\t\\u0001\"],"
        "\"raw_bytes\": [{\"b64\": \"AAEC/w==\"}, \"abc\", \"\", {\"b64\": \"\"}]"
        "}}",
        200,
        "{\"outputs\": {\"b_out\": [[true,false],[false,true]], \"f16_out\": [0.5,-2.0,"
        "65504.0,-65504.0,0.000061035156,5.9604645e-8,0.00006097555,-0.0,0.0,"
        "Infinity,-Infinity,NaN,1.0009766,0.099975586], \"f32_out\": [NaN,Infinity,"
        "-Infinity,-0.0,0.0,3.4028235e38,1e-45,1.1754942e-38,1.1754944e-38,0.1,"
        "16777216.0,-1.5], \"f64_out\": [NaN,Infinity,-Infinity,-0.0,1.7976931348623157e308,"
        "5e-324,2.225073858507201e-308,2.2250738585072014e-308,0.1,9007199254740992.0,"
        "-1e-300], \"i16_out\": [-32768,32767], \"i32_out\": [[-2147483648,2147483647],"
        "[0,-1]], \"i64_out\": [-9223372036854775808,9223372036854775807,0], \"i8_out\": [-128,"
        "127,0,-1], \"raw_out_bytes\": [{\"b64\": \"AAEC/w==\"},{\"b64\": \"YWJj\"},{\"b64\": "
        "\"\"},"
        "{\"b64\": \"\"}], \"str_out\": [\"\",\"hello\",\"ünïcödé 😀\",{\"b64\": "
        "\"/wA=\"},\"q\\\"\\\\\\n\\t\\u0001\"],"
        " \"u16_out\": [0,65535], \"u32_out\": [0,4294967295], \"u64_out\": "
        "[0,18446744073709551615,"
        "9223372036854775808], \"u8_out\": [0,255,128]}}");
}

/* Row: two instances naming every input; scalars and lists per instance. */
static void test_tfs_row_every_dtype(void **state)
{
    (void)state;
    s_expect_json(
        &g_tfs, TFS_PREDICT,
        "{\"signature_name\": \"serving_default\", \"instances\": ["
        "{\"f32\": -0.0, \"f64\": 5e-324, \"f16\": 65504, \"i8\": -128, \"i16\": 32767, "
        "\"i32\": [-2147483648, 1], \"i64\": 9223372036854775807, \"u8\": 255, "
        "\"u16\": 65535, \"u32\": 4294967295, \"u64\": 18446744073709551615, "
        "\"b\": true, \"str\": {\"b64\": \"gA==\"}, \"raw_bytes\": \"x\"},"
        "{\"f32\": NaN, \"f64\": -Infinity, \"f16\": -0.0, \"i8\": 127, \"i16\": -32768, "
        "\"i32\": [2147483647, -2], \"i64\": -9223372036854775808, \"u8\": 0, "
        "\"u16\": 0, \"u32\": 0, \"u64\": 0, \"b\": false, \"str\": \"\", "
        "\"raw_bytes\": {\"b64\": \"//79\"}}]}",
        200,
        "{\"predictions\": [{\"b_out\": true, \"f16_out\": 65504.0, \"f32_out\": -0.0,"
        " \"f64_out\": 5e-324, \"i16_out\": 32767, \"i32_out\": [-2147483648,1], \"i64_out\": "
        "9223372036854775807,"
        " \"i8_out\": -128, \"raw_out_bytes\": {\"b64\": \"eA==\"}, \"str_out\": {\"b64\": "
        "\"gA==\"},"
        " \"u16_out\": 65535, \"u32_out\": 4294967295, \"u64_out\": 18446744073709551615,"
        " \"u8_out\": 255},{\"b_out\": false, \"f16_out\": -0.0, \"f32_out\": NaN, \"f64_out\": "
        "-Infinity,"
        " \"i16_out\": -32768, \"i32_out\": [2147483647,-2], \"i64_out\": -9223372036854775808,"
        " \"i8_out\": 127, \"raw_out_bytes\": {\"b64\": \"//79\"}, \"str_out\": \"\", \"u16_out\": "
        "0,"
        " \"u32_out\": 0, \"u64_out\": 0, \"u8_out\": 0}]}");
}

/* ---- KServe v2 JSON --------------------------------------------------------- */

static void test_kserve_json_every_dtype(void **state)
{
    (void)state;
    s_expect_json(
        &g_kv, KV_INFER,
        "{\"id\": \"dt-1\", \"inputs\": ["
        "{\"name\": \"f32\", \"datatype\": \"FP32\", \"shape\": [2, 4], \"data\": "
        "[NaN, Infinity, -Infinity, -0.0, 3.4028234663852886e38, 1e-45, 1.1754942e-38, 0.1]},"
        "{\"name\": \"f64\", \"datatype\": \"FP64\", \"shape\": [6], \"data\": "
        "[NaN, -Infinity, -0.0, 1.7976931348623157e308, 5e-324, 0.1]},"
        "{\"name\": \"f16\", \"datatype\": \"FP16\", \"shape\": [6], \"data\": "
        "[0.5, -65504, 5.960464477539063e-08, -0.0, Infinity, NaN]},"
        "{\"name\": \"i8\", \"datatype\": \"INT8\", \"shape\": [2], \"data\": [-128, 127]},"
        "{\"name\": \"i16\", \"datatype\": \"INT16\", \"shape\": [2], \"data\": [-32768, 32767]},"
        "{\"name\": \"i32\", \"datatype\": \"INT32\", \"shape\": [2, 1], \"data\": "
        "[[-2147483648], [2147483647]]},"
        "{\"name\": \"i64\", \"datatype\": \"INT64\", \"shape\": [2], \"data\": "
        "[-9223372036854775808, 9223372036854775807]},"
        "{\"name\": \"u8\", \"datatype\": \"UINT8\", \"shape\": [2], \"data\": [0, 255]},"
        "{\"name\": \"u16\", \"datatype\": \"UINT16\", \"shape\": [2], \"data\": [0, 65535]},"
        "{\"name\": \"u32\", \"datatype\": \"UINT32\", \"shape\": [2], \"data\": [0, 4294967295]},"
        "{\"name\": \"u64\", \"datatype\": \"UINT64\", \"shape\": [2], \"data\": "
        "[0, 18446744073709551615]},"
        "{\"name\": \"b\", \"datatype\": \"BOOL\", \"shape\": [3], \"data\": [true, false, true]},"
        "{\"name\": \"str\", \"datatype\": \"BYTES\", \"shape\": [3], \"data\": "
        "[\"\", \"h\\u00e9llo\", \"tab\\there\"]},"
        "{\"name\": \"raw_bytes\", \"datatype\": \"BYTES\", \"shape\": [1], \"data\": [\"ok\"]}"
        "]}",
        200,
        "{\"model_name\":\"echo\",\"model_version\":\"1\",\"id\":\"dt-1\",\"outputs\":[{\"name\":"
        "\"f32_out\","
        "\"datatype\":\"FP32\",\"shape\":[2,4],\"data\":[NaN,Infinity,-Infinity,-0.0,"
        "3.4028235e38,1e-45,1.1754942e-38,0.1]},{\"name\":\"f64_out\",\"datatype\":\"FP64\","
        "\"shape\":[6],\"data\":[NaN,-Infinity,-0.0,1.7976931348623157e308,5e-324,"
        "0.1]},{\"name\":\"f16_out\",\"datatype\":\"FP16\",\"shape\":[6],\"data\":[0.5,-65504.0,"
        "5.9604645e-8,-0.0,Infinity,NaN]},{\"name\":\"i8_out\",\"datatype\":\"INT8\","
        "\"shape\":[2],\"data\":[-128,127]},{\"name\":\"i16_out\",\"datatype\":\"INT16\","
        "\"shape\":[2],\"data\":[-32768,32767]},{\"name\":\"i32_out\",\"datatype\":\"INT32\","
        "\"shape\":[2,1],\"data\":[-2147483648,2147483647]},{\"name\":\"i64_out\",\"datatype\":"
        "\"INT64\","
        "\"shape\":[2],\"data\":[-9223372036854775808,9223372036854775807]},{\"name\":\"u8_out\","
        "\"datatype\":\"UINT8\",\"shape\":[2],\"data\":[0,255]},{\"name\":\"u16_out\",\"datatype\":"
        "\"UINT16\","
        "\"shape\":[2],\"data\":[0,65535]},{\"name\":\"u32_out\",\"datatype\":\"UINT32\","
        "\"shape\":[2],\"data\":[0,4294967295]},{\"name\":\"u64_out\",\"datatype\":\"UINT64\","
        "\"shape\":[2],\"data\":[0,18446744073709551615]},{\"name\":\"b_out\",\"datatype\":"
        "\"BOOL\","
        "\"shape\":[3],\"data\":[true,false,true]},{\"name\":\"str_out\",\"datatype\":\"BYTES\","
        "\"shape\":[3],\"data\":[\"\",\"héllo\",\"tab\\there\"]},{\"name\":\"raw_out_bytes\","
        "\"datatype\":\"BYTES\",\"shape\":[1],\"data\":[\"ok\"]}]}");
}

/* ---- KServe v2 binary tensor extension -------------------------------------- */

/* One binary input: its JSON description and raw little-endian bytes. */
typedef struct {
    const char *name;
    const char *datatype;
    const char *shape; /* JSON list */
    const void *raw;
    size_t len;
} s_bin_t;

/* Builds header JSON + binary section for inputs; more is JSON inputs
 * after them ("" or ", {...}"), tail the JSON after the inputs list (e.g.
 * outputs, parameters). Returns the body length and the header length in
 * *hlen. */
static size_t s_bin_body(const s_bin_t *in, size_t n, const char *more, const char *tail,
                         char *body, size_t cap, size_t *hlen)
{
    size_t o = (size_t)snprintf(body, cap, "{\"inputs\": [");
    for (size_t i = 0; i < n; i++)
        o += (size_t)snprintf(body + o, cap - o,
                              "%s{\"name\": \"%s\", \"datatype\": \"%s\", \"shape\": %s, "
                              "\"parameters\": {\"binary_data_size\": %zu}}",
                              i ? ", " : "", in[i].name, in[i].datatype, in[i].shape, in[i].len);
    o += (size_t)snprintf(body + o, cap - o, "%s]%s}", more, tail);
    assert_true(o < cap);
    *hlen = o;
    for (size_t i = 0; i < n; i++) {
        assert_true(o + in[i].len <= cap);
        memcpy(body + o, in[i].raw, in[i].len);
        o += in[i].len;
    }
    return o;
}

/* Every dtype as raw bytes in and, with binary_data_output, raw bytes out:
 * the same bits (NaN payloads, -0.0, denormals, half bit patterns). */
static void test_kserve_binary_every_dtype(void **state)
{
    (void)state;
    uint32_t f32[] = {0x7fc00001u, 0x7f800000u, 0xff800000u, 0x80000000u,
                      0x7f7fffffu, 0x00000001u, 0x00800000u, 0x3dcccccdu};
    uint64_t f64[] = {0x7ff8000000000001ull, 0xfff0000000000000ull, 0x8000000000000000ull,
                      0x7fefffffffffffffull, 0x0000000000000001ull, 0x3fb999999999999aull};
    uint16_t f16[] = {0x3800, 0x7bff, 0x0001, 0x03ff, 0x8000, 0x7c00, 0xfc00, 0x7e00};
    int8_t i8[] = {INT8_MIN, INT8_MAX};
    int16_t i16[] = {INT16_MIN, INT16_MAX};
    int32_t i32[] = {INT32_MIN, INT32_MAX, 0, -1};
    int64_t i64[] = {INT64_MIN, INT64_MAX};
    uint8_t u8[] = {0, UINT8_MAX};
    uint16_t u16[] = {0, UINT16_MAX};
    uint32_t u32[] = {0, UINT32_MAX};
    uint64_t u64[] = {0, UINT64_MAX};
    uint8_t b[] = {1, 0, 1};
    /* BYTES: "", ff fe 00, "ok" with 4-byte little-endian lengths. */
    static const char str[] = "\0\0\0\0"
                              "\3\0\0\0\xff\xfe\0"
                              "\2\0\0\0ok";
    static const char rawb[] = "\2\0\0\0\0\1";
    const s_bin_t in[] = {
        {"f32", "FP32", "[2, 4]", f32, sizeof f32},   {"f64", "FP64", "[6]", f64, sizeof f64},
        {"f16", "FP16", "[8]", f16, sizeof f16},      {"i8", "INT8", "[2]", i8, sizeof i8},
        {"i16", "INT16", "[2]", i16, sizeof i16},     {"i32", "INT32", "[2, 2]", i32, sizeof i32},
        {"i64", "INT64", "[2]", i64, sizeof i64},     {"u8", "UINT8", "[2]", u8, sizeof u8},
        {"u16", "UINT16", "[2]", u16, sizeof u16},    {"u32", "UINT32", "[2]", u32, sizeof u32},
        {"u64", "UINT64", "[2]", u64, sizeof u64},    {"b", "BOOL", "[3]", b, sizeof b},
        {"str", "BYTES", "[3]", str, sizeof str - 1}, {"raw_bytes", "BYTES", "[1]", rawb, 6},
    };
    size_t n = sizeof in / sizeof in[0];
    static char body[8192];
    size_t hlen;
    size_t len = s_bin_body(in, n, "", ", \"parameters\": {\"binary_data_output\": true}", body,
                            sizeof body, &hlen);
    char hdr[64];
    snprintf(hdr, sizeof hdr, "Inference-Header-Content-Length: %zu", hlen);
    s_reply_t r;
    s_post(&g_kv, KV_INFER, hdr, body, len, &r);
    if (r.status != 200)
        fprintf(stderr, "%ld %s\n", r.status, r.body);
    assert_int_equal(r.status, 200);
    static const char want[] =
        "{\"model_name\":\"echo\",\"model_version\":\"1\",\"outputs\":[{\"name\":\"f32_out\","
        "\"datatype\":\"FP32\",\"shape\":[2,4],\"parameters\":{\"binary_data_size\":32}},"
        "{\"name\":\"f64_out\",\"datatype\":\"FP64\",\"shape\":[6],\"parameters\":{\"binary_data_"
        "size\":48}},"
        "{\"name\":\"f16_out\",\"datatype\":\"FP16\",\"shape\":[8],\"parameters\":{\"binary_data_"
        "size\":16}},"
        "{\"name\":\"i8_out\",\"datatype\":\"INT8\",\"shape\":[2],\"parameters\":{\"binary_data_"
        "size\":2}},"
        "{\"name\":\"i16_out\",\"datatype\":\"INT16\",\"shape\":[2],\"parameters\":{\"binary_data_"
        "size\":4}},"
        "{\"name\":\"i32_out\",\"datatype\":\"INT32\",\"shape\":[2,2],\"parameters\":{\"binary_"
        "data_size\":16}},"
        "{\"name\":\"i64_out\",\"datatype\":\"INT64\",\"shape\":[2],\"parameters\":{\"binary_data_"
        "size\":16}},"
        "{\"name\":\"u8_out\",\"datatype\":\"UINT8\",\"shape\":[2],\"parameters\":{\"binary_data_"
        "size\":2}},"
        "{\"name\":\"u16_out\",\"datatype\":\"UINT16\",\"shape\":[2],\"parameters\":{\"binary_data_"
        "size\":4}},"
        "{\"name\":\"u32_out\",\"datatype\":\"UINT32\",\"shape\":[2],\"parameters\":{\"binary_data_"
        "size\":8}},"
        "{\"name\":\"u64_out\",\"datatype\":\"UINT64\",\"shape\":[2],\"parameters\":{\"binary_data_"
        "size\":16}},"
        "{\"name\":\"b_out\",\"datatype\":\"BOOL\",\"shape\":[3],\"parameters\":{\"binary_data_"
        "size\":3}},"
        "{\"name\":\"str_out\",\"datatype\":\"BYTES\",\"shape\":[3],\"parameters\":{\"binary_data_"
        "size\":17}},"
        "{\"name\":\"raw_out_bytes\",\"datatype\":\"BYTES\",\"shape\":[1],\"parameters\":{\"binary_"
        "data_size\":6}}]}";
    assert_string_equal(r.ihcl, "1268");
    assert_int_equal(sizeof want - 1, 1268);
    size_t rh = sizeof want - 1;
    assert_true(r.len >= rh);
    if (memcmp(r.body, want, rh) != 0)
        fail_msg("header: %.*s", (int)rh, r.body);
    /* The binary section is every input's bytes again, in order. */
    size_t at = rh;
    for (size_t i = 0; i < n; i++) {
        assert_true(at + in[i].len <= r.len);
        if (memcmp(r.body + at, in[i].raw, in[i].len) != 0)
            fail_msg("output of %s differs", in[i].name);
        at += in[i].len;
    }
    assert_int_equal(at, r.len);
}

/* JSON and binary mixed both ways: a binary input, a JSON input, an output
 * filter asking one output in binary and one as JSON. Then bytes that are
 * not UTF-8 asked for as JSON: refused with the reason. */
static void test_kserve_binary_mixed(void **state)
{
    (void)state;
    uint16_t f16[] = {0x3c00, 0xc000, 0x0001}; /* 1.0, -2.0, 2^-24 */
    const s_bin_t in[] = {{"f16", "FP16", "[3]", f16, sizeof f16}};
    static char body[4096];
    size_t hlen;
    size_t len = s_bin_body(
        in, 1,
        ", {\"name\": \"str\", \"datatype\": \"BYTES\", \"shape\": [2], \"data\": [\"\", \"z\"]}",
        ", \"outputs\": [{\"name\": \"str_out\", \"parameters\": {\"binary_data\": true}}, "
        "{\"name\": \"f16_out\"}]",
        body, sizeof body, &hlen);
    char hdr[64];
    snprintf(hdr, sizeof hdr, "Inference-Header-Content-Length: %zu", hlen);
    s_reply_t r;
    s_post(&g_kv, KV_INFER, hdr, body, len, &r);
    static const char want[] =
        "{\"model_name\":\"echo\",\"model_version\":\"1\",\"outputs\":[{\"name\":\"f16_out\","
        "\"datatype\":\"FP16\",\"shape\":[3],\"data\":[1.0,-2.0,5.9604645e-8]},{\"name\":"
        "\"str_out\",\"datatype\":\"BYTES\",\"shape\":[2],\"parameters\":"
        "{\"binary_data_size\":9}}]}"
        "\0\0\0\0\1\0\0\0z";
    assert_int_equal(r.status, 200);
    char want_hl[16];
    snprintf(want_hl, sizeof want_hl, "%zu", sizeof want - 1 - 9); /* all but str_out's bytes */
    assert_string_equal(r.ihcl, want_hl);
    assert_int_equal(r.len, sizeof want - 1);
    if (memcmp(r.body, want, sizeof want - 1) != 0)
        fail_msg("got %.*s", (int)r.len, r.body);

    static const char bad[] = "\1\0\0\0\xff";
    const s_bin_t in2[] = {{"str", "BYTES", "[1]", bad, 5}};
    len = s_bin_body(in2, 1, "", "", body, sizeof body, &hlen);
    snprintf(hdr, sizeof hdr, "Inference-Header-Content-Length: %zu", hlen);
    s_post(&g_kv, KV_INFER, hdr, body, len, &r);
    assert_int_equal(r.status, 400);
    assert_string_equal(r.body, "{\"error\": \"output 'str_out' holds bytes that are not UTF-8; "
                                "request it with binary_data\"}");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tfs_unnamed_value_multi_input),
        cmocka_unit_test(test_tfs_columnar_every_dtype),
        cmocka_unit_test(test_tfs_row_every_dtype),
        cmocka_unit_test(test_kserve_json_every_dtype),
        cmocka_unit_test(test_kserve_binary_every_dtype),
        cmocka_unit_test(test_kserve_binary_mixed),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
