/*
 * bench_grpc_direct - small-request latency (BERT shape): a direct gRPC
 * Predict from C against the same request as TF Serving REST JSON through
 * kvc's proxy, measured in the same run, interleaved call by call so both
 * paths see the same machine noise. Also the backend's own throughput
 * ceiling (direct gRPC at a given concurrency), so a proxy's requests/s
 * can be read against what the model server can deliver at all.
 *
 * Each path is timed with two clients. With libraries: the direct path uses
 * the proxy's own gRPC client (proxy/grpc_client.h: h2c on nghttp2) and
 * the REST path libcurl's HTTP/1.1 easy interface. Library-free
 * (bench_raw.h): a prebuilt request on a bare socket for each, so the
 * difference between the two paths is what the proxy adds (an HTTP/1.1
 * hop, JSON parsing and writing, routing) without the difference between
 * two client stacks. Every direct answer is decoded, as a client would.
 *
 * Usage: bench_grpc_direct --grpc http://HOST:PORT [--proxy http://HOST:PORT]
 *            [--model bert] [-n CALLS] [--seconds S] [--concurrency C]
 * Without --grpc it prints a "skipped" line and exits 0: `make bench` runs
 * every bench_* binary without arguments, and this one needs a model server
 * (tests/bench/bench_overhead.sh starts one and calls it).
 *
 * Every run is bounded by CALLS (default 2000, at most 100000) and by S
 * seconds (default 10, at most 120). Answers are checked against the model
 * server's formula before timing; a wrong answer fails the run (exit 1).
 */
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base.h"
#include "bench_raw.h"
#include "grpc_client.h"
#include "tensor.h"
#include "tensor_pb.h"
#include "tensorflow_serving/apis/predict.pb-c.h"

#define S_PATH_PREDICT "/tensorflow.serving.PredictionService/Predict"
#define S_IDS 500
#define S_FIRST_ID 101
#define S_TIMEOUT_MS 10000u
#define S_MAX_CALLS 100000L
#define S_MAX_SECONDS 120L
#define S_MAX_THREADS 256L
#define S_BODY_MAX (64u * 1024u)

/* What the run was asked to do. */
typedef struct {
    const char *grpc;  /* http://host:port of the model server's gRPC */
    const char *proxy; /* http://host:port of kvc's HTTP front, or NULL */
    const char *model;
    long calls;
    long seconds;
    long concurrency; /* 0: latency mode */
} s_args_t;

/* The serialized request and the client shared by every call. */
typedef struct {
    kvc_grpc_client_t *client;
    const s_args_t *args;
    uint8_t *req;
    size_t req_len;
    double deadline;
    long done;   /* throughput mode: calls completed (under lock) */
    long failed; /* throughput mode: calls failed (under lock) */
    pthread_mutex_t lock;
} s_bench_t;

/* Monotonic seconds. */
static double s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Parses a whole decimal in [lo, hi] into *out; -1 if it is not one. */
static int s_parse_long(const char *s, long lo, long hi, long *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

/* Reads the command line into a; -1 with a message on a bad one. */
static int s_parse_args(int argc, char **argv, s_args_t *a)
{
    *a = (s_args_t){.model = "bert", .calls = 2000, .seconds = 10};
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (i + 1 >= argc) {
            fprintf(stderr, "bench_grpc_direct: %s needs a value\n", o);
            return -1;
        }
        const char *v = argv[++i];
        int rc = 0;
        if (strcmp(o, "--grpc") == 0)
            a->grpc = v;
        else if (strcmp(o, "--proxy") == 0)
            a->proxy = v;
        else if (strcmp(o, "--model") == 0)
            a->model = v;
        else if (strcmp(o, "-n") == 0)
            rc = s_parse_long(v, 1, S_MAX_CALLS, &a->calls);
        else if (strcmp(o, "--seconds") == 0)
            rc = s_parse_long(v, 1, S_MAX_SECONDS, &a->seconds);
        else if (strcmp(o, "--concurrency") == 0)
            rc = s_parse_long(v, 1, S_MAX_THREADS, &a->concurrency);
        else {
            fprintf(stderr, "bench_grpc_direct: unknown option %s\n", o);
            return -1;
        }
        if (rc) {
            fprintf(stderr, "bench_grpc_direct: %s: bad value %s\n", o, v);
            return -1;
        }
    }
    return 0;
}

/* Serializes the BERT-shaped PredictRequest (input_ids int32 [1,500] =
 * 101..600) exactly as the proxy builds it from the JSON below. */
static int s_build_request(const char *model, uint8_t **out, size_t *len)
{
    kvc_tensor_limits_t lim = {.max_elements = S_IDS, .max_bytes = S_IDS * 8};
    kvc_tensor_t *t = kvc_tensor_new("input_ids", KVC_DT_INT32, &lim);
    int64_t shape[2] = {1, S_IDS};
    if (!t || kvc_tensor_alloc(t, shape, 2) != 0) {
        kvc_tensor_destroy(&t);
        return -1;
    }
    int32_t *ids = kvc_tensor_data(t);
    for (int i = 0; i < S_IDS; i++)
        ids[i] = S_FIRST_ID + i;
    kvc_tfproto_view_t view;
    if (kvc_tfproto_view_init(&view, t) != 0) {
        kvc_tensor_destroy(&t);
        return -1;
    }
    Tensorflow__Serving__ModelSpec spec = TENSORFLOW__SERVING__MODEL_SPEC__INIT;
    spec.name = (char *)model;
    spec.signature_name = "";
    Tensorflow__Serving__PredictRequest__InputsEntry entry =
        TENSORFLOW__SERVING__PREDICT_REQUEST__INPUTS_ENTRY__INIT;
    entry.key = "input_ids";
    entry.value = &view.proto;
    Tensorflow__Serving__PredictRequest__InputsEntry *entries[1] = {&entry};
    Tensorflow__Serving__PredictRequest r = TENSORFLOW__SERVING__PREDICT_REQUEST__INIT;
    r.model_spec = &spec;
    r.n_inputs = 1;
    r.inputs = entries;
    *len = tensorflow__serving__predict_request__get_packed_size(&r);
    *out = kvc_malloc(*len ? *len : 1);
    int rc = -1;
    if (*out) {
        tensorflow__serving__predict_request__pack(&r, *out);
        rc = 0;
    }
    kvc_tfproto_view_clear(&view);
    kvc_tensor_destroy(&t);
    return rc;
}

/* Decodes a PredictResponse (every call, as a real client would); with
 * check, verifies logits = [175.25, 499]. */
static int s_answer(const uint8_t *data, size_t len, int check)
{
    Tensorflow__Serving__PredictResponse *pr =
        tensorflow__serving__predict_response__unpack(NULL, len, data);
    if (!pr)
        return -1;
    int rc = 0;
    if (check) {
        kvc_tensor_limits_t lim = {.max_elements = 16, .max_bytes = 64};
        kvc_tensor_t *t = NULL;
        kvc_err_t err = {0};
        rc = -1;
        if (pr->n_outputs == 1 && pr->outputs[0]->value &&
            kvc_tensor_from_tfproto(pr->outputs[0]->value, pr->outputs[0]->key, &lim, &t, &err) ==
                0 &&
            kvc_tensor_dtype(t) == KVC_DT_FLOAT && kvc_tensor_count(t) == 2) {
            const float *f = kvc_tensor_cdata(t);
            rc = (f[0] == 175.25f && f[1] == 499.0f) ? 0 : -1;
        }
        if (rc)
            fprintf(stderr, "bench_grpc_direct: direct Predict gave an unexpected answer\n");
        kvc_tensor_destroy(&t);
    }
    tensorflow__serving__predict_response__free_unpacked(pr, NULL);
    return rc;
}

/* One direct Predict with the proxy's gRPC client; check as s_answer. */
static int s_direct_call(s_bench_t *b, int check)
{
    kvc_grpc_result_t res = {0};
    int rc = kvc_grpc_call(b->client, b->args->grpc, S_PATH_PREDICT, b->req, b->req_len,
                           S_TIMEOUT_MS, &res);
    if (rc != 0) {
        if (check)
            fprintf(stderr, "bench_grpc_direct: Predict: %s %s\n", kvc_grpc_status_name(res.code),
                    res.message);
        kvc_grpc_result_free(&res);
        return -1;
    }
    rc = s_answer(res.data, res.len, check);
    kvc_grpc_result_free(&res);
    return rc;
}

/* One direct Predict with the library-free client; check as s_answer. */
static int s_direct_raw_call(kvcb_h2_t *h2, const s_bench_t *b, int check)
{
    const uint8_t *data;
    size_t len;
    if (kvcb_h2_call(h2, b->req, b->req_len, &data, &len) != 0) {
        if (check)
            fprintf(stderr, "bench_grpc_direct: library-free Predict: no answer\n");
        return -1;
    }
    return s_answer(data, len, check);
}

/* A bounded response body for the REST calls. */
typedef struct {
    char data[S_BODY_MAX];
    size_t len;
} s_body_t;

/* libcurl write callback: keeps at most S_BODY_MAX bytes (then fails). */
static size_t s_on_body(char *p, size_t size, size_t n, void *ud)
{
    s_body_t *b = ud;
    size_t len = size * n;
    if (len > sizeof b->data - 1 - b->len)
        return 0;
    memcpy(b->data + b->len, p, len);
    b->len += len;
    b->data[b->len] = '\0';
    return len;
}

/* Whether a REST answer is [[175.25,499.0]] in TF Serving's row format. */
static int s_rest_ok(const char *body)
{
    return strstr(body, "\"predictions\"") && strstr(body, "175.25") && strstr(body, "499");
}

/* One REST predict through the proxy with the library-free client. */
static int s_proxy_raw_call(kvcb_http_t *hc, int check)
{
    if (kvcb_http_call(hc) != 0 || hc->status != 200) {
        if (check)
            fprintf(stderr, "bench_grpc_direct: library-free proxy predict: HTTP %d\n", hc->status);
        return -1;
    }
    if (check && !s_rest_ok(hc->body)) {
        fprintf(stderr, "bench_grpc_direct: proxy gave an unexpected answer: %s\n", hc->body);
        return -1;
    }
    return 0;
}

/* One REST predict through the proxy on a kept-alive handle; with check,
 * verifies the answer as s_rest_ok. */
static int s_proxy_call(CURL *h, s_body_t *body, int check)
{
    body->len = 0;
    body->data[0] = '\0';
    long status = 0;
    if (curl_easy_perform(h) != CURLE_OK ||
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK || status != 200) {
        if (check)
            fprintf(stderr, "bench_grpc_direct: proxy predict: HTTP %ld %s\n", status, body->data);
        return -1;
    }
    if (check && !s_rest_ok(body->data)) {
        fprintf(stderr, "bench_grpc_direct: proxy gave an unexpected answer: %s\n", body->data);
        return -1;
    }
    return 0;
}

/* qsort order for doubles. */
static int s_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The q-quantile of sorted v[0..n) (nearest rank). */
static double s_quantile(const double *v, long n, double q)
{
    long i = (long)(q * (double)n + 0.999999) - 1;
    if (i < 0)
        i = 0;
    if (i >= n)
        i = n - 1;
    return v[i];
}

/* Prints one table row of sorted latencies (µs). */
static void s_row(const char *label, double *v, long n)
{
    qsort(v, (size_t)n, sizeof *v, s_cmp_double);
    double sum = 0;
    for (long i = 0; i < n; i++)
        sum += v[i];
    printf("| %s | %ld | %.0f | %.0f | %.0f | %.0f |\n", label, n, s_quantile(v, n, 0.5),
           s_quantile(v, n, 0.9), s_quantile(v, n, 0.99), sum / (double)n);
}

/* The overhead line: p50 and p99 of proxied minus direct (sorted arrays). */
static void s_overhead(const char *clients, const double *direct, const double *proxied, long n)
{
    printf("proxy overhead, %s: p50 %+.0f µs, p99 %+.0f µs\n", clients,
           s_quantile(proxied, n, 0.5) - s_quantile(direct, n, 0.5),
           s_quantile(proxied, n, 0.99) - s_quantile(direct, n, 0.99));
}

/*
 * Latency mode: until either bound, one round of four calls, each proxied
 * call right after a direct one with the same kind of client: library
 * direct, library through the proxy, library-free direct, library-free
 * through the proxy.
 */
static int s_latency(s_bench_t *b)
{
    const s_args_t *a = b->args;
    CURL *h = NULL;
    s_body_t *body = NULL;
    char url[512], path[256], json[8 * S_IDS + 64];
    struct curl_slist *hdrs = NULL;
    kvcb_h2_t h2;
    kvcb_http_t hc;
    memset(&hc, 0, sizeof hc);
    hc.fd = -1;
    int have_h2 = 0;
    double *lat[4];
    for (int i = 0; i < 4; i++)
        lat[i] = kvc_calloc((size_t)a->calls, sizeof *lat[i]);
    int rc = 1;
    if (!lat[0] || !lat[1] || !lat[2] || !lat[3])
        goto done;
    if (kvcb_h2_open(&h2, a->grpc, S_PATH_PREDICT) != 0)
        goto done;
    have_h2 = 1;
    if (a->proxy) {
        size_t off = (size_t)snprintf(json, sizeof json, "{\"instances\":[[");
        for (int i = 0; i < S_IDS; i++)
            off += (size_t)snprintf(json + off, sizeof json - off, "%s%d", i ? "," : "",
                                    S_FIRST_ID + i);
        snprintf(json + off, sizeof json - off, "]]}");
        int n = snprintf(url, sizeof url, "%s/v1/models/%s:predict", a->proxy, a->model);
        int m = snprintf(path, sizeof path, "/v1/models/%s:predict", a->model);
        body = kvc_malloc(sizeof *body);
        h = curl_easy_init();
        hdrs = curl_slist_append(NULL, "Content-Type: application/json");
        if (n < 0 || (size_t)n >= sizeof url || m < 0 || (size_t)m >= sizeof path || !body || !h ||
            !hdrs)
            goto done;
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, json);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, s_on_body);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, body);
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)S_TIMEOUT_MS);
        curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
        if (s_proxy_call(h, body, 1) != 0 ||
            kvcb_http_open(&hc, a->proxy, path, "application/json", json, strlen(json)) != 0 ||
            s_proxy_raw_call(&hc, 1) != 0)
            goto done;
    }
    if (s_direct_call(b, 1) != 0 || s_direct_raw_call(&h2, b, 1) != 0)
        goto done;
    /* Warm-up: connections, caches, the proxy's signature cache. */
    for (int i = 0; i < 50; i++) {
        if (s_direct_call(b, 0) != 0 || s_direct_raw_call(&h2, b, 0) != 0 ||
            (h && (s_proxy_call(h, body, 0) != 0 || s_proxy_raw_call(&hc, 0) != 0)))
            goto done;
    }
    long n = 0;
    double deadline = s_now() + (double)a->seconds;
    while (n < a->calls && s_now() < deadline) {
        double t0 = s_now();
        if (s_direct_call(b, 0) != 0)
            goto done;
        double t1 = s_now();
        lat[0][n] = (t1 - t0) * 1e6;
        if (h) {
            if (s_proxy_call(h, body, 0) != 0)
                goto done;
            t0 = t1;
            t1 = s_now();
            lat[1][n] = (t1 - t0) * 1e6;
        }
        if (s_direct_raw_call(&h2, b, 0) != 0)
            goto done;
        t0 = t1;
        t1 = s_now();
        lat[2][n] = (t1 - t0) * 1e6;
        if (h) {
            if (s_proxy_raw_call(&hc, 0) != 0)
                goto done;
            lat[3][n] = (s_now() - t1) * 1e6;
        }
        n++;
    }
    printf("| path (%s, sequential, interleaved) | client | calls | p50 µs | p90 µs | p99 µs | "
           "mean µs "
           "|\n",
           a->model);
    printf("|---|---|---|---|---|---|---|\n");
    s_row("direct gRPC Predict | kvc's gRPC client (nghttp2)", lat[0], n);
    if (h)
        s_row("REST JSON through kvc proxy | libcurl (HTTP/1.1 easy)", lat[1], n);
    s_row("direct gRPC Predict | library-free (h2c)", lat[2], n);
    if (h) {
        s_row("REST JSON through kvc proxy | library-free (HTTP/1.1)", lat[3], n);
        printf("\n");
        s_overhead("library clients", lat[0], lat[1], n);
        s_overhead("library-free clients", lat[2], lat[3], n);
        printf("(goal: p50 <= 150 µs)\n");
    }
    rc = 0;
done:
    if (rc)
        fprintf(stderr, "bench_grpc_direct: latency run failed\n");
    curl_slist_free_all(hdrs);
    if (h)
        curl_easy_cleanup(h);
    if (have_h2)
        kvcb_h2_close(&h2);
    kvcb_http_close(&hc);
    kvc_free(body);
    for (int i = 0; i < 4; i++)
        kvc_free(lat[i]);
    return rc;
}

/* Throughput worker: direct calls until the deadline. */
static void *s_worker(void *ud)
{
    s_bench_t *b = ud;
    long ok = 0, bad = 0;
    while (s_now() < b->deadline && bad < 1000) {
        if (s_direct_call(b, 0) == 0)
            ok++;
        else
            bad++;
    }
    pthread_mutex_lock(&b->lock);
    b->done += ok;
    b->failed += bad;
    pthread_mutex_unlock(&b->lock);
    return NULL;
}

/* Throughput mode: C threads of direct calls for the given seconds. */
static int s_throughput(s_bench_t *b)
{
    long c = b->args->concurrency;
    pthread_t th[S_MAX_THREADS];
    if (s_direct_call(b, 1) != 0)
        return 1;
    b->deadline = s_now() + 1.0; /* warm-up second, not counted */
    s_worker(b);
    b->done = b->failed = 0;
    double t0 = s_now();
    b->deadline = t0 + (double)b->args->seconds;
    long started = 0;
    for (; started < c; started++) {
        if (pthread_create(&th[started], NULL, s_worker, b) != 0)
            break;
    }
    for (long i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    double secs = s_now() - t0;
    if (started < c) {
        fprintf(stderr, "bench_grpc_direct: could start only %ld threads\n", started);
        return 1;
    }
    printf("direct gRPC Predict (%s), concurrency %ld, %.1f s: %ld calls, %ld failed, %.0f "
           "requests/s\n",
           b->args->model, c, secs, b->done, b->failed, (double)b->done / secs);
    return b->failed ? 1 : 0;
}

int main(int argc, char **argv)
{
    s_args_t args;
    if (argc == 1) {
        printf("bench_grpc_direct: skipped: needs a model server (--grpc URL); "
               "tests/bench/bench_overhead.sh runs it\n");
        return 0;
    }
    if (s_parse_args(argc, argv, &args) != 0 || !args.grpc) {
        fprintf(stderr, "usage: bench_grpc_direct --grpc http://HOST:PORT [--proxy "
                        "http://HOST:PORT] [--model bert] [-n CALLS] [--seconds S] "
                        "[--concurrency C]\n");
        return 2;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return 1;
    s_bench_t b = {.args = &args};
    pthread_mutex_init(&b.lock, NULL);
    int rc = 1;
    b.client = kvc_grpc_client_new(NULL);
    if (!b.client || s_build_request(args.model, &b.req, &b.req_len) != 0) {
        fprintf(stderr, "bench_grpc_direct: cannot create the client or the request\n");
        goto done;
    }
    rc = args.concurrency ? s_throughput(&b) : s_latency(&b);
done:
    kvc_free(b.req);
    kvc_grpc_client_destroy(&b.client);
    pthread_mutex_destroy(&b.lock);
    curl_global_cleanup();
    return rc;
}
