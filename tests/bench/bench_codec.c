/*
 * bench_codec - throughput of the JSON tensor codecs on the model shapes of
 * the original experiment, against a naive baseline measured in the same run:
 * a strtod-per-number parser and a printf("%.9g") writer.
 *
 * Usage: bench_codec [seconds-per-case]   (default 1.0)
 * Prints one table; MB/s counts JSON bytes (read or written) per second on
 * one core. Before timing, each case checks that the parsed tensor is
 * bit-identical to the source tensor, so the figures are for exact codecs.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base.h"
#include "json_tensor.h"
#include "kserve_json.h"
#include "tensor.h"

static double s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t s_rng = 0x2545F4914F6CDD1Dull;

/* xorshift64*, seeded: the same data every run. */
static uint64_t s_rand(void)
{
    s_rng ^= s_rng >> 12;
    s_rng ^= s_rng << 25;
    s_rng ^= s_rng >> 27;
    return s_rng * 2685821657736338717ull;
}

/* A float in [0, 1). */
static float s_unit(void)
{
    return (float)(s_rand() >> 40) * 0x1p-24f;
}

/* The naive baseline parser: strtod for every number, no shape checks. */
static size_t s_naive_parse(const char *s, size_t len, float *out, size_t cap)
{
    const char *p = s, *end = s + len;
    size_t n = 0;
    while (p < end && *p != '[')
        p++;
    while (p < end) {
        char ch = *p;
        if (ch == '-' || (ch >= '0' && ch <= '9')) {
            char *stop;
            double d = strtod(p, &stop);
            if (n < cap)
                out[n++] = (float)d;
            p = stop;
        } else {
            p++;
        }
    }
    return n;
}

/* The naive baseline writer: printf("%.9g") per value, nested by shape. */
static size_t s_naive_write(const float *v, size_t n, size_t row, char *out, size_t cap)
{
    size_t w = 0;
    w += (size_t)snprintf(out + w, cap - w, "{\"outputs\": [[");
    for (size_t i = 0; i < n && w + 40 < cap; i++) {
        if (i && i % row == 0)
            w += (size_t)snprintf(out + w, cap - w, "],[");
        else if (i)
            out[w++] = ',';
        w += (size_t)snprintf(out + w, cap - w, "%.9g", (double)v[i]);
    }
    w += (size_t)snprintf(out + w, cap - w, "]]}");
    return w;
}

typedef struct {
    const char *name;
    int64_t shape[4];
    int ndim;
    int yolo; /* value distribution */
} s_case_t;

/* Runs fn repeatedly for about secs seconds; returns the best time per run. */
#define S_TIME(secs, best, body)                                                                   \
    do {                                                                                           \
        double t_end_ = s_now() + (secs);                                                          \
        best = 1e30;                                                                               \
        int runs_ = 0;                                                                             \
        while (runs_ < 3 || s_now() < t_end_) {                                                    \
            double t0_ = s_now();                                                                  \
            body;                                                                                  \
            double dt_ = s_now() - t0_;                                                            \
            if (dt_ < best)                                                                        \
                best = dt_;                                                                        \
            runs_++;                                                                               \
        }                                                                                          \
    } while (0)

static void s_row(const char *what, size_t bytes, double ours, double base)
{
    double mo = (double)bytes / ours / 1e6, mb = (double)bytes / base / 1e6;
    printf("%-48s %10.3f %10.1f %10.1f %7.2fx\n", what, (double)bytes / 1e6, mo, mb, mo / mb);
}

/* The naive baseline for integers: strtoll for every number. */
static size_t s_naive_parse_int(const char *s, size_t len, int32_t *out, size_t cap)
{
    const char *p = s, *end = s + len;
    size_t n = 0;
    while (p < end) {
        char ch = *p;
        if (ch == '-' || (ch >= '0' && ch <= '9')) {
            char *stop;
            long long v = strtoll(p, &stop, 10);
            if (n < cap)
                out[n++] = (int32_t)v;
            p = stop;
        } else {
            p++;
        }
    }
    return n;
}

/* Token ids (BERT's int32 input, TF Serving rows): one 500-id request as
 * the latency benchmark sends it, and a batch of 64 x 512. */
static int s_token_ids(double secs, const kvc_tensor_limits_t *lim)
{
    const struct {
        const char *name;
        size_t rows, cols;
    } cases[] = {{"BERT ids 1x500 int32 JSON->tensor", 1, 500},
                 {"BERT ids 64x512 int32 JSON->tensor", 64, 512}};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        size_t n = cases[ci].rows * cases[ci].cols;
        int32_t *ids = malloc(n * sizeof *ids), *back = malloc(n * sizeof *back);
        kvc_buf_t js;
        kvc_buf_init(&js, 1ull << 30);
        kvc_buf_append(&js, "{\"instances\": [", 15);
        for (size_t i = 0; i < n; i++) {
            ids[i] = (int32_t)(s_rand() % 30522); /* BERT's vocabulary */
            char num[24];
            int k =
                snprintf(num, sizeof num, "%s%s%d", i % cases[ci].cols ? "" : (i ? "], [" : "["),
                         i % cases[ci].cols ? ", " : "", ids[i]);
            kvc_buf_append(&js, num, (size_t)k);
        }
        kvc_buf_append(&js, "]]}", 3);
        kvc_json_tensor_spec_t spec = {"ids", KVC_DT_INT32};
        kvc_json_tensor_opts_t opts = {*lim, &spec, 1, 0};
        kvc_json_tensor_request_t req;
        kvc_err_t err;
        if (kvc_json_tensor_parse_request(js.data, js.len, &opts, &req, &err)) {
            fprintf(stderr, "parse ids: %s\n", err.msg);
            return -1;
        }
        kvc_tensor_t *t = kvc_tensor_list_at(req.inputs, 0);
        if (kvc_tensor_count(t) != n || memcmp(kvc_tensor_data(t), ids, n * sizeof *ids) != 0 ||
            s_naive_parse_int(js.data, js.len, back, n) != n ||
            memcmp(back, ids, n * sizeof *ids) != 0) {
            fprintf(stderr, "token ids do not read back exactly\n");
            return -1;
        }
        kvc_json_tensor_request_clear(&req);
        double ours, base;
        S_TIME(secs, ours, {
            kvc_json_tensor_parse_request(js.data, js.len, &opts, &req, &err);
            kvc_json_tensor_request_clear(&req);
        });
        S_TIME(secs, base, { s_naive_parse_int(js.data, js.len, back, n); });
        s_row(cases[ci].name, js.len, ours, base);
        kvc_buf_free(&js);
        free(back);
        free(ids);
    }
    return 0;
}

int main(int argc, char **argv)
{
    double secs = argc > 1 ? atof(argv[1]) : 1.0;
    const s_case_t cases[] = {
        {"MobileNetV1 input 1x224x224x3", {1, 224, 224, 3}, 4, 0},
        {"YOLOv5 output 1x25200x85", {1, 25200, 85}, 3, 1},
    };
    kvc_tensor_limits_t lim = {1ull << 30, 1ull << 32};
    printf("%-48s %10s %10s %10s %8s\n", "case", "JSON MB", "kvc MB/s", "naive MB/s", "ratio");
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const s_case_t *cs = &cases[ci];
        uint64_t n;
        kvc_tensor_shape_count(cs->shape, cs->ndim, 0, &n);
        kvc_tensor_t *t = kvc_tensor_new("x", KVC_DT_FLOAT, &lim);
        float *vals = malloc(n * sizeof *vals);
        for (uint64_t i = 0; i < n; i++) {
            float v = s_unit();
            if (cs->yolo && i % 85 < 4)
                v *= 640.0f; /* box coordinates */
            else if (!cs->yolo)
                v = (float)(int)(v * 256.0f) / 255.0f; /* normalised pixels */
            vals[i] = v;
        }
        kvc_tensor_append(t, vals, n);
        kvc_tensor_set_shape(t, cs->shape, cs->ndim);
        kvc_tensor_list_t *outs = kvc_tensor_list_new();
        kvc_tensor_list_add(outs, &t);
        t = kvc_tensor_list_at(outs, 0);

        /* tensor -> JSON (columnar response), ours and naive. */
        kvc_buf_t json;
        kvc_buf_init(&json, 1ull << 31);
        kvc_err_t err;
        double ours, base;
        S_TIME(secs, ours, {
            kvc_buf_reset(&json);
            if (kvc_json_tensor_write_response(outs, KVC_JSON_TENSOR_COLUMNAR, &json, &err)) {
                fprintf(stderr, "write: %s\n", err.msg);
                return 1;
            }
        });
        size_t cap = n * 20 + 64;
        char *nbuf = malloc(cap);
        size_t nlen = 0;
        size_t row = (size_t)cs->shape[cs->ndim - 1];
        S_TIME(secs, base, { nlen = s_naive_write(vals, n, row, nbuf, cap); });
        char label[96];
        snprintf(label, sizeof label, "%s tensor->JSON", cs->name);
        /* Normalise to bytes per second of each one's own output. */
        double ours_mbs = (double)json.len / ours, base_mbs = (double)nlen / base;
        printf("%-48s %10.3f %10.1f %10.1f %7.2fx\n", label, (double)json.len / 1e6, ours_mbs / 1e6,
               base_mbs / 1e6, ours_mbs / base_mbs);

        /* JSON -> tensor: the request our writer produced, as TF Serving columnar. */
        memcpy(json.data + 1, "{\"inputs\"", 9);
        const char *req_json = json.data + 1;
        size_t req_len = json.len - 1;
        kvc_json_tensor_spec_t spec = {"x", KVC_DT_FLOAT};
        kvc_json_tensor_opts_t opts = {lim, &spec, 1, 0};
        kvc_json_tensor_request_t req;
        if (kvc_json_tensor_parse_request(req_json, req_len, &opts, &req, &err)) {
            fprintf(stderr, "parse: %s\n", err.msg);
            return 1;
        }
        if (!kvc_tensor_equal(kvc_tensor_list_at(req.inputs, 0), t)) {
            fprintf(stderr, "round trip is not exact\n");
            return 1;
        }
        kvc_json_tensor_request_clear(&req);
        S_TIME(secs, ours, {
            kvc_json_tensor_parse_request(req_json, req_len, &opts, &req, &err);
            kvc_json_tensor_request_clear(&req);
        });
        float *back = malloc(n * sizeof *back);
        S_TIME(secs, base, { s_naive_parse(req_json, req_len, back, n); });
        snprintf(label, sizeof label, "%s JSON->tensor", cs->name);
        s_row(label, req_len, ours, base);
        /* Same with the dtype inferred (no signature). */
        kvc_json_tensor_opts_t bare = {lim, NULL, 0, 0};
        S_TIME(secs, ours, {
            kvc_json_tensor_parse_request(req_json, req_len, &bare, &req, &err);
            kvc_json_tensor_request_clear(&req);
        });
        snprintf(label, sizeof label, "%s JSON->tensor (no sig)", cs->name);
        s_row(label, req_len, ours, base);

        /* KServe v2: flat data. */
        kvc_buf_t kj;
        kvc_buf_init(&kj, 1ull << 31);
        kvc_kserve_response_meta_t meta = {"m", NULL, NULL};
        size_t hl;
        S_TIME(secs, ours, {
            kvc_buf_reset(&kj);
            kvc_kserve_json_write_response(&meta, outs, NULL, &kj, &hl, &err);
        });
        S_TIME(secs, base, { nlen = s_naive_write(vals, n, n, nbuf, cap); });
        snprintf(label, sizeof label, "%s KServe tensor->JSON", cs->name);
        ours_mbs = (double)kj.len / ours;
        base_mbs = (double)nlen / base;
        printf("%-48s %10.3f %10.1f %10.1f %7.2fx\n", label, (double)kj.len / 1e6, ours_mbs / 1e6,
               base_mbs / 1e6, ours_mbs / base_mbs);
        memcpy(kj.data, "{\"model_name\":\"m\", \"inputs\":[", 29);
        kvc_kserve_request_t kr;
        if (kvc_kserve_json_parse_request(kj.data, kj.len, kj.len, &lim, &kr, &err)) {
            fprintf(stderr, "kserve parse: %s\n", err.msg);
            return 1;
        }
        kvc_kserve_json_request_clear(&kr);
        S_TIME(secs, ours, {
            kvc_kserve_json_parse_request(kj.data, kj.len, kj.len, &lim, &kr, &err);
            kvc_kserve_json_request_clear(&kr);
        });
        S_TIME(secs, base, { s_naive_parse(kj.data, kj.len, back, n); });
        snprintf(label, sizeof label, "%s KServe JSON->tensor", cs->name);
        s_row(label, kj.len, ours, base);

        kvc_buf_free(&kj);
        free(back);
        free(nbuf);
        free(vals);
        kvc_buf_free(&json);
        kvc_tensor_list_destroy(&outs);
    }
    return s_token_ids(secs, &lim) ? 1 : 0;
}
