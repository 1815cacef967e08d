/*
 * bench_federate_size: bytes of the federated view (/federate) for 100 sites
 * with 1 and 3 peers each (issue 5 goal: under 100 KB). Every peer's summary
 * is realistic: 8 models with requests, errors and latency quantiles, 8
 * backends, encoded under the real gossip budget (which drops the entries
 * that do not fit, as a live peer does), then stored and written exactly as
 * GET /federate does. Also times the write (median of 21), and reports a
 * baseline in the same run: the same sites with no model traffic (summaries
 * without models or backends), so the per-model cost is visible.
 */
#include "metrics_summary.h"
#include "peer_metrics.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *s_models[] = {"bert",     "mobilenet",       "inception",  "yolov5",
                                 "resnet50", "efficientnet-b0", "gpt2-small", "whisper-base"};

/* Monotonic milliseconds as a double. */
static double s_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Compares doubles for qsort. */
static int s_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Fills a realistic summary for peer k of site i. */
static void s_fill(kvc_summary_t *s, size_t i, size_t k, int traffic)
{
    memset(s, 0, sizeof *s);
    s->version = 1700000000000ull * 1048576u + 1000 + i * 7 + k;
    s->timestamp_ms = 1700000000000ull;
    s->peers_up = 299;
    s->members_alive = 297;
    s->members_suspect = 1;
    s->members_dead = 1;
    s->cpu_seconds = 12345.67 + (double)i;
    s->rss_bytes = 48u * 1024 * 1024 + i * 4096;
    if (!traffic)
        return;
    s->n_models = KVC_SUMMARY_MAX_MODELS;
    s->n_backends = KVC_SUMMARY_MAX_BACKENDS;
    for (size_t m = 0; m < KVC_SUMMARY_MAX_MODELS; m++) {
        kvc_summary_model_t *x = &s->models[m];
        snprintf(x->model, sizeof x->model, "%s", s_models[m]);
        x->requests = 1000000 + i * 1000 + m * 37;
        x->errors = 12 + m;
        x->p50_seconds = 0.0123 + (double)m / 1000;
        x->p99_seconds = 0.2345 + (double)m / 100;
        s->proxy_requests += x->requests;
        s->proxy_errors += x->errors;
        kvc_summary_backend_t *b = &s->backends[m];
        snprintf(b->model, sizeof b->model, "%s", s_models[m]);
        b->requests = x->requests - 5;
        b->latency_seconds = (double)b->requests * 0.0117;
    }
}

/* Builds the set for sites x peers; returns /federate's size, its write
 * time (median ms) and the entries the gossip budget dropped per summary. */
static void s_run(size_t sites, size_t peers, int traffic, size_t *bytes, double *ms,
                  size_t *dropped, size_t *wire, const char *dump)
{
    kvc_summary_set_t *set = kvc_summary_set_new(0);
    if (!set)
        exit(1);
    *dropped = 0;
    for (size_t i = 0; i < sites; i++)
        for (size_t k = 0; k < peers; k++) {
            kvc_summary_t s;
            s_fill(&s, i, k, traffic);
            uint8_t buf[KVC_SUMMARY_WIRE_MAX];
            size_t len = 0, drop = 0;
            if (kvc_summary_encode(&s, KVC_SUMMARY_GOSSIP_BUDGET, buf, sizeof buf, &len, &drop))
                exit(1);
            *dropped = drop;
            *wire = len;
            char site[32], peer[80];
            snprintf(site, sizeof site, "site-%03zu", i);
            snprintf(peer, sizeof peer, "site-%03zu/p%zu", i, k + 1);
            if (kvc_summary_set_put(set, peer, site, i % 2 ? "eu-west-1" : "af-south-1", buf, len,
                                    s.version, 1700000000000))
                exit(1);
        }
    double t[21];
    kvc_buf_t out;
    kvc_buf_init(&out, 64u * 1024 * 1024);
    for (int r = 0; r < 21; r++) {
        kvc_buf_reset(&out);
        double t0 = s_ms();
        if (kvc_summary_set_write(set, NULL, 1700000001000, &out))
            exit(1);
        t[r] = s_ms() - t0;
    }
    qsort(t, 21, sizeof t[0], s_cmp);
    *bytes = out.len;
    *ms = t[10];
    FILE *f = dump ? fopen(dump, "w") : NULL;
    if (f) {
        fwrite(out.data, 1, out.len, f);
        fclose(f);
    }
    kvc_buf_free(&out);
    kvc_summary_set_destroy(&set);
}

/* usage: bench_federate_size [DUMP_PREFIX]: with a prefix, each view is also
 * written to PREFIX-<peers>x-<traffic|idle>.txt (for compressed sizes). */
int main(int argc, char **argv)
{
    const char *prefix = argc > 1 ? argv[1] : NULL;
    printf("| federated view | summary on the wire | entries dropped by the %d-byte gossip "
           "budget | /federate bytes | KB | goal < 100 KB | write ms (median of 21) |\n",
           KVC_SUMMARY_GOSSIP_BUDGET);
    printf("|---|---|---|---|---|---|---|\n");
    for (int traffic = 0; traffic <= 1; traffic++)
        for (size_t peers = 1; peers <= 3; peers += 2) {
            size_t bytes, dropped, wire;
            double ms;
            char dump[512];
            snprintf(dump, sizeof dump, "%s-%zux-%s.txt", prefix ? prefix : "", peers,
                     traffic ? "traffic" : "idle");
            s_run(100, peers, traffic, &bytes, &ms, &dropped, &wire, prefix ? dump : NULL);
            printf("| 100 sites x %zu peer%s, %s | %zu B | %zu | %zu | %.1f | %s | %.2f |\n", peers,
                   peers > 1 ? "s" : "",
                   traffic ? "8 models + 8 backends each" : "baseline: no model traffic", wire,
                   dropped, bytes, (double)bytes / 1000.0, bytes < 100000 ? "met" : "MISSED", ms);
        }
    return 0;
}
