/* Micro-benchmark of peer/metrics.c: time to write 200 series (a
 * registry shaped like the proxy's) and the cost of one increment, single
 * threaded and from 8 threads. Prints one line per figure. */
#include "metrics.h"

#include <pthread.h>
#include <stdio.h>
#include <time.h>

/* Monotonic nanoseconds (benchmarks may read the clock; cores may not). */
static double s_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static kvc_metric_t *s_counter;

/* Increments one shared child in a loop. */
static void *s_worker(void *arg)
{
    for (int i = 0; i < 1000000; i++)
        kvc_metrics_inc(s_counter, (const char *[]){"bert", "local", "200"}, 1);
    return arg;
}

int main(void)
{
    kvc_metrics_t *reg = kvc_metrics_new(NULL);
    s_counter =
        kvc_metrics_counter(reg, "kvc_proxy_requests_total", "Requests.", "model,route,code");
    kvc_metric_t *lat = kvc_metrics_histogram(reg, "kvc_proxy_request_duration_seconds", "Latency.",
                                              "model", NULL, 0);
    char model[32], code[8];
    size_t series = 0;
    for (int m = 0; m < 10 && series < 200; m++) {
        snprintf(model, sizeof model, "model-%d", m);
        kvc_metrics_observe(lat, (const char *[]){model}, 0.01); /* 17 series each */
        series += 17;
    }
    for (int i = 0; series < 200; i++, series++) {
        snprintf(model, sizeof model, "model-%d", i % 10);
        snprintf(code, sizeof code, "%d", 200 + i);
        kvc_metrics_inc(s_counter, (const char *[]){model, "local", code}, 1);
    }
    kvc_buf_t out;
    kvc_buf_init(&out, 1 << 20);
    kvc_metrics_write(reg, &out);
    int reps = 2000;
    double t0 = s_now_ns();
    for (int i = 0; i < reps; i++) {
        kvc_buf_reset(&out);
        kvc_metrics_write(reg, &out);
    }
    double t1 = s_now_ns();
    printf("bench_metrics: write %zu series (%zu bytes): %.1f us\n", series, out.len,
           (t1 - t0) / reps / 1000);
    t0 = s_now_ns();
    s_worker(NULL);
    t1 = s_now_ns();
    printf("bench_metrics: inc, 1 thread: %.1f ns\n", (t1 - t0) / 1e6);
    pthread_t th[8];
    t0 = s_now_ns();
    for (int i = 0; i < 8; i++)
        pthread_create(&th[i], NULL, s_worker, NULL);
    for (int i = 0; i < 8; i++)
        pthread_join(th[i], NULL);
    t1 = s_now_ns();
    printf("bench_metrics: inc, 8 threads on one child: %.1f ns per inc (wall/total)\n",
           (t1 - t0) / 8e6);
    kvc_buf_free(&out);
    kvc_metrics_destroy(&reg);
    return 0;
}
