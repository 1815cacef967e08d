/* Unit tests of peer/metrics.c: exact exposition text, escaping, number
 * formatting, concurrent updates, overflow, name validation, readings and
 * quantiles, the /federate writer, and promtool's verdict on real output. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "metrics.h"
#include "promsel.h"

/* Writes reg into a fresh buffer and returns it (caller frees). */
static char *s_expo(kvc_metrics_t *reg)
{
    kvc_buf_t b;
    kvc_buf_init(&b, 1 << 20);
    assert_int_equal(kvc_metrics_write(reg, &b), KVC_OK);
    return kvc_buf_detach(&b, NULL);
}

static void test_exact_exposition(void **state)
{
    kvc_metrics_t *reg = kvc_metrics_new(NULL);
    assert_non_null(reg);
    kvc_metric_t *req =
        kvc_metrics_counter(reg, "kvc_proxy_requests_total",
                            "Proxy requests by model, route and HTTP code.", "model,route,code");
    kvc_metric_t *g =
        kvc_metrics_gauge(reg, "kvc_members", "Members by state.\nSecond \\ line.", "state");
    const double b[] = {0.1, 1, 2.5};
    kvc_metric_t *h =
        kvc_metrics_histogram(reg, "kvc_probe_rtt_seconds", "Probe round trips.", NULL, b, 3);
    kvc_metric_t *up = kvc_metrics_gauge(reg, "kvc_up", "Always 1.", NULL);
    assert_non_null(req);
    assert_non_null(g);
    assert_non_null(h);
    assert_non_null(up);
    kvc_metrics_inc(req, (const char *[]){"bert", "local", "200"}, 1);
    kvc_metrics_inc(req, (const char *[]){"bert", "local", "200"}, 2);
    kvc_metrics_inc(req, (const char *[]){"a\"b\\c\nd", "remote", "503"}, 1);
    kvc_metrics_set(g, (const char *[]){"alive"}, 3);
    kvc_metrics_set(g, (const char *[]){"suspect"}, 0.25);
    kvc_metrics_add_gauge(g, (const char *[]){"suspect"}, 1);
    kvc_metrics_set(up, NULL, 1);
    kvc_metrics_observe(h, NULL, 0.05);
    kvc_metrics_observe(h, NULL, 0.1); /* le is inclusive */
    kvc_metrics_observe(h, NULL, 2);
    kvc_metrics_observe(h, NULL, 100);
    char *text = s_expo(reg);
    char want[4096];
    /* Families without samples (the dropped counter here) write nothing. */
    snprintf(want, sizeof want, "%s",
             "# HELP kvc_members Members by state.\\nSecond \\\\ line.\n"
             "# TYPE kvc_members gauge\n"
             "kvc_members{state=\"alive\"} 3\n"
             "kvc_members{state=\"suspect\"} 1.25\n");
    strncat(want,
            "# HELP kvc_probe_rtt_seconds Probe round trips.\n"
            "# TYPE kvc_probe_rtt_seconds histogram\n"
            "kvc_probe_rtt_seconds_bucket{le=\"0.1\"} 2\n"
            "kvc_probe_rtt_seconds_bucket{le=\"1\"} 2\n"
            "kvc_probe_rtt_seconds_bucket{le=\"2.5\"} 3\n"
            "kvc_probe_rtt_seconds_bucket{le=\"+Inf\"} 4\n"
            "kvc_probe_rtt_seconds_sum 102.15\n"
            "kvc_probe_rtt_seconds_count 4\n"
            "# HELP kvc_proxy_requests_total Proxy requests by model, route and HTTP code.\n"
            "# TYPE kvc_proxy_requests_total counter\n"
            "kvc_proxy_requests_total{model=\"a\\\"b\\\\c\\nd\",route=\"remote\",code=\"503\"} 1\n"
            "kvc_proxy_requests_total{model=\"bert\",route=\"local\",code=\"200\"} 3\n"
            "# HELP kvc_up Always 1.\n"
            "# TYPE kvc_up gauge\n"
            "kvc_up 1\n",
            sizeof want - strlen(want) - 1);
    assert_string_equal(text, want);
    kvc_free(text);
    kvc_metrics_destroy(&reg);
    assert_null(reg);
}

static void test_value_format(void **state)
{
    const struct {
        double v;
        const char *s;
    } cases[] = {{0, "0"},
                 {-0.0, "-0"},
                 {42, "42"},
                 {-7, "-7"},
                 {0.1, "0.1"},
                 {2.5, "2.5"},
                 {1e15, "1e+15"},
                 {123456789012345, "123456789012345"},
                 {1.0 / 3, "0.33333333333333331"},
                 {INFINITY, "+Inf"},
                 {-INFINITY, "-Inf"},
                 {NAN, "NaN"},
                 {0.0005, "0.0005"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kvc_buf_t b;
        kvc_buf_init(&b, 64);
        assert_int_equal(kvc_metrics_append_value(&b, cases[i].v), KVC_OK);
        assert_string_equal(b.data, cases[i].s);
        kvc_buf_free(&b);
    }
}

typedef struct {
    kvc_metric_t *c;
    kvc_metric_t *h;
    int id;
} s_thread_arg_t;

enum { S_THREADS = 8, S_ITERS = 20000 };

/* Hammers one shared and one per-thread child of a counter and a histogram. */
static void *s_worker(void *p)
{
    s_thread_arg_t *a = p;
    char mine[16];
    snprintf(mine, sizeof mine, "t%d", a->id);
    for (int i = 0; i < S_ITERS; i++) {
        kvc_metrics_inc(a->c, (const char *[]){"shared"}, 1);
        kvc_metrics_inc(a->c, (const char *[]){mine}, 2);
        kvc_metrics_observe(a->h, (const char *[]){i % 2 ? "odd" : "even"}, 0.5);
    }
    return NULL;
}

/* Scrapes while workers run. */
static void *s_scraper(void *p)
{
    kvc_metrics_t *reg = p;
    for (int i = 0; i < 50; i++) {
        kvc_buf_t b;
        kvc_buf_init(&b, 1 << 20);
        kvc_metrics_write(reg, &b);
        kvc_buf_free(&b);
    }
    return NULL;
}

static void test_concurrent_increments(void **state)
{
    kvc_metrics_t *reg = kvc_metrics_new(NULL);
    kvc_metric_t *c = kvc_metrics_counter(reg, "kvc_test_events_total", "Events.", "who");
    kvc_metric_t *h =
        kvc_metrics_histogram(reg, "kvc_test_latency_seconds", "Latency.", "parity", NULL, 0);
    assert_non_null(c);
    assert_non_null(h);
    pthread_t th[S_THREADS], scr;
    s_thread_arg_t args[S_THREADS];
    assert_int_equal(pthread_create(&scr, NULL, s_scraper, reg), 0);
    for (int i = 0; i < S_THREADS; i++) {
        args[i] = (s_thread_arg_t){c, h, i};
        assert_int_equal(pthread_create(&th[i], NULL, s_worker, &args[i]), 0);
    }
    for (int i = 0; i < S_THREADS; i++)
        pthread_join(th[i], NULL);
    pthread_join(scr, NULL);
    kvc_metrics_reading_t r;
    assert_int_equal(kvc_metrics_read(c, "who", "shared", &r), KVC_OK);
    assert_true(r.value == (double)S_THREADS * S_ITERS);
    assert_int_equal(kvc_metrics_read(c, "who", "t3", &r), KVC_OK);
    assert_true(r.value == 2.0 * S_ITERS);
    assert_int_equal(kvc_metrics_read(c, NULL, NULL, &r), KVC_OK);
    assert_true(r.value == 3.0 * S_THREADS * S_ITERS);
    assert_int_equal(kvc_metrics_read(h, NULL, NULL, &r), KVC_OK);
    assert_int_equal(r.count, (uint64_t)S_THREADS * S_ITERS);
    assert_true(r.sum == 0.5 * S_THREADS * S_ITERS);
    assert_int_equal(kvc_metrics_read(h, "parity", "odd", &r), KVC_OK);
    assert_int_equal(r.count, (uint64_t)S_THREADS * S_ITERS / 2);
    kvc_metrics_destroy(&reg);
}

static void test_overflow_child(void **state)
{
    kvc_metrics_opts_t o = {.prefix = "kvc_", .lint = 1, .max_children = 3};
    kvc_metrics_t *reg = kvc_metrics_new(&o);
    kvc_metric_t *c = kvc_metrics_counter(reg, "kvc_x_total", "X.", "model,code");
    const char *models[] = {"a", "b", "c", "d", "e", "a"};
    for (size_t i = 0; i < 6; i++)
        kvc_metrics_inc(c, (const char *[]){models[i], "200"}, 1);
    char *text = s_expo(reg);
    const char *want =
        "# HELP kvc_metrics_dropped_series_total Updates sent to a family's _overflow child "
        "because it had too many series.\n"
        "# TYPE kvc_metrics_dropped_series_total counter\n"
        "kvc_metrics_dropped_series_total{metric=\"kvc_x_total\"} 2\n"
        "# HELP kvc_x_total X.\n"
        "# TYPE kvc_x_total counter\n"
        "kvc_x_total{model=\"_overflow\",code=\"_overflow\"} 2\n"
        "kvc_x_total{model=\"a\",code=\"200\"} 2\n"
        "kvc_x_total{model=\"b\",code=\"200\"} 1\n"
        "kvc_x_total{model=\"c\",code=\"200\"} 1\n";
    assert_string_equal(text, want);
    kvc_free(text);
    kvc_metrics_destroy(&reg);
}

static void test_hostile_label_values(void **state)
{
    kvc_metrics_t *reg = kvc_metrics_new(NULL);
    kvc_metric_t *c = kvc_metrics_counter(reg, "kvc_x_total", "X.", "model");
    char longv[300];
    memset(longv, 'm', sizeof longv - 1);
    longv[sizeof longv - 1] = '\0';
    kvc_metrics_inc(c, (const char *[]){"bad\xff\xfe"}, 1);
    kvc_metrics_inc(c, (const char *[]){"bad\xff\xfe"}, 1);
    kvc_metrics_inc(c, (const char *[]){longv}, 1);
    kvc_metrics_inc(c, (const char *[]){NULL}, 1);
    kvc_metrics_reading_t r;
    assert_int_equal(kvc_metrics_read(c, "model", "bad??", &r), KVC_OK);
    assert_true(r.value == 2);
    longv[KVC_METRICS_VALUE_MAX] = '\0';
    assert_int_equal(kvc_metrics_read(c, "model", longv, &r), KVC_OK);
    assert_true(r.value == 1);
    assert_int_equal(kvc_metrics_read(c, "model", "", &r), KVC_OK);
    assert_true(r.value == 1);
    assert_int_equal(kvc_metrics_read(c, "nope", "", &r), KVC_ENOENT);
    /* Negative and NaN counter increments are ignored; NULL metrics too. */
    kvc_metrics_inc(c, (const char *[]){""}, -1);
    kvc_metrics_inc(c, (const char *[]){""}, NAN);
    kvc_metrics_inc(NULL, NULL, 1);
    assert_int_equal(kvc_metrics_read(c, "model", "", &r), KVC_OK);
    assert_true(r.value == 1);
    kvc_metrics_destroy(&reg);
}

/* Registers spec-like arguments and expects rc and an exact message. */
static void s_bad(kvc_metrics_t *reg, kvc_metric_type_t t, const char *name, const char *labels,
                  int rc, const char *msg)
{
    kvc_metric_spec_t spec = {.type = t, .name = name, .help = "Help.", .labels = labels};
    kvc_metric_t *m = (kvc_metric_t *)1;
    kvc_err_t err = {0};
    assert_int_equal(kvc_metrics_add(reg, &spec, &m, &err), rc);
    assert_null(m);
    assert_string_equal(err.msg, msg);
}

static void test_name_validation(void **state)
{
    kvc_metrics_t *reg = kvc_metrics_new(NULL);
    s_bad(reg, KVC_METRIC_COUNTER, "", NULL, KVC_EINVAL, "metric name is empty");
    s_bad(reg, KVC_METRIC_COUNTER, "kvc_9-x_total", NULL, KVC_EINVAL,
          "kvc_9-x_total: metric name must match [a-zA-Z_:][a-zA-Z0-9_:]*");
    s_bad(reg, KVC_METRIC_COUNTER, "9kvc_total", NULL, KVC_EINVAL,
          "9kvc_total: metric name must match [a-zA-Z_:][a-zA-Z0-9_:]*");
    s_bad(reg, KVC_METRIC_COUNTER, "proxy_requests_total", NULL, KVC_EINVAL,
          "proxy_requests_total: metric name must start with \"kvc_\"");
    s_bad(reg, KVC_METRIC_COUNTER, "kvc_requests", NULL, KVC_EINVAL,
          "kvc_requests: counter metrics should have \"_total\" suffix");
    s_bad(reg, KVC_METRIC_GAUGE, "kvc_requests_total", NULL, KVC_EINVAL,
          "kvc_requests_total: non-counter metrics should not have \"_total\" suffix");
    s_bad(reg, KVC_METRIC_GAUGE, "kvc_latency_ms", NULL, KVC_EINVAL,
          "kvc_latency_ms: metric names should not contain abbreviated units (ms)");
    s_bad(reg, KVC_METRIC_HISTOGRAM, "kvc_latency_milliseconds", NULL, KVC_EINVAL,
          "kvc_latency_milliseconds: use base unit \"seconds\" instead of \"milliseconds\"");
    s_bad(reg, KVC_METRIC_GAUGE, "kvc_rss_kilobytes", NULL, KVC_EINVAL,
          "kvc_rss_kilobytes: use base unit \"bytes\" instead of \"kilobytes\"");
    s_bad(reg, KVC_METRIC_GAUGE, "kvc_proxyRequests", NULL, KVC_EINVAL,
          "kvc_proxyRequests: metric names should be written in 'snake_case' not 'camelCase'");
    s_bad(reg, KVC_METRIC_GAUGE, "kvc_a:x", NULL, KVC_EINVAL,
          "kvc_a:x: metric names should not contain ':' (kept for recording rules)");
    s_bad(reg, KVC_METRIC_GAUGE, "kvc_x_count", NULL, KVC_EINVAL,
          "kvc_x_count: metric names should not end in _bucket, _count or _sum");
    s_bad(reg, KVC_METRIC_GAUGE, "kvc_x", "a,__b", KVC_EINVAL,
          "kvc_x: label name \"__b\" is reserved (starts with __)");
    s_bad(reg, KVC_METRIC_GAUGE, "kvc_x", "a,a", KVC_EINVAL, "kvc_x: duplicate label name \"a\"");
    s_bad(reg, KVC_METRIC_GAUGE, "kvc_x", "a,b,c,d,e", KVC_EINVAL, "kvc_x: more than 4 labels");
    s_bad(reg, KVC_METRIC_GAUGE, "kvc_x", "a-b", KVC_EINVAL,
          "kvc_x: label name \"a-b\" must match [a-zA-Z_][a-zA-Z0-9_]*");
    s_bad(reg, KVC_METRIC_GAUGE, "kvc_x", "1a", KVC_EINVAL,
          "kvc_x: label name \"1a\" must match [a-zA-Z_][a-zA-Z0-9_]*");
    s_bad(reg, KVC_METRIC_HISTOGRAM, "kvc_x_seconds", "le", KVC_EINVAL,
          "kvc_x_seconds: histograms cannot have a label named le");
    /* Clashes with derived names; same registration twice is the same family. */
    kvc_metric_t *h = kvc_metrics_histogram(reg, "kvc_rtt_seconds", "RTT.", "peer", NULL, 0);
    assert_non_null(h);
    assert_ptr_equal(kvc_metrics_histogram(reg, "kvc_rtt_seconds", "RTT.", "peer", NULL, 0), h);
    assert_null(kvc_metrics_histogram(reg, "kvc_rtt_seconds", "RTT.", "site", NULL, 0));
    kvc_metrics_opts_t loose = {0};
    kvc_metrics_t *any = kvc_metrics_new(&loose);
    assert_non_null(kvc_metrics_gauge(any, "up", "", NULL));
    assert_non_null(kvc_metrics_histogram(any, "x", "X.", NULL, NULL, 0));
    kvc_metric_spec_t spec = {.type = KVC_METRIC_GAUGE, .name = "x_sum", .help = "S."};
    kvc_metric_t *m = NULL;
    kvc_err_t err = {0};
    assert_int_equal(kvc_metrics_add(any, &spec, &m, &err), KVC_EEXIST);
    assert_string_equal(err.msg, "x_sum: clashes with registered histogram x");
    const double bad[] = {1, 1};
    assert_null(kvc_metrics_histogram(any, "y", "Y.", NULL, bad, 2));
    kvc_metrics_destroy(&any);
    kvc_metrics_destroy(&reg);
}

/* A callback emitting two labelled samples and a duplicate. */
static void s_fds(kvc_metrics_emitter_t *em, void *arg)
{
    int *calls = arg;
    (*calls)++;
    kvc_metrics_emit(em, (const char *[]){"sockets"}, 7);
    kvc_metrics_emit(em, (const char *[]){"files"}, 3);
    kvc_metrics_emit(em, (const char *[]){"files"}, 99);
}

/* A label-less counter callback. */
static void s_cpu(kvc_metrics_emitter_t *em, void *arg)
{
    kvc_metrics_emit(em, NULL, 1.5);
}

static void test_callbacks(void **state)
{
    kvc_metrics_t *reg = kvc_metrics_new(NULL);
    int calls = 0;
    assert_non_null(
        kvc_metrics_gauge_fn(reg, "kvc_process_open_fds", "Open fds.", "kind", s_fds, &calls));
    assert_non_null(
        kvc_metrics_counter_fn(reg, "kvc_process_cpu_seconds_total", "CPU.", NULL, s_cpu, NULL));
    char *text = s_expo(reg);
    assert_int_equal(calls, 1);
    const char *want = "# HELP kvc_process_cpu_seconds_total CPU.\n"
                       "# TYPE kvc_process_cpu_seconds_total counter\n"
                       "kvc_process_cpu_seconds_total 1.5\n"
                       "# HELP kvc_process_open_fds Open fds.\n"
                       "# TYPE kvc_process_open_fds gauge\n"
                       "kvc_process_open_fds{kind=\"files\"} 3\n"
                       "kvc_process_open_fds{kind=\"sockets\"} 7\n";
    assert_non_null(strstr(text, want));
    kvc_free(text);
    kvc_metrics_destroy(&reg);
}

static void test_quantile(void **state)
{
    kvc_metrics_t *reg = kvc_metrics_new(NULL);
    const double b[] = {1, 2, 4};
    kvc_metric_t *h = kvc_metrics_histogram(reg, "kvc_x_seconds", "X.", "model", b, 3);
    kvc_metrics_reading_t r;
    assert_int_equal(kvc_metrics_read(h, NULL, NULL, &r), KVC_OK);
    assert_true(isnan(kvc_metrics_quantile(&r, 0.5)));
    for (int i = 0; i < 10; i++)
        kvc_metrics_observe(h, (const char *[]){"a"}, 0.5); /* bucket le=1 */
    for (int i = 0; i < 10; i++)
        kvc_metrics_observe(h, (const char *[]){"b"}, 3); /* bucket le=4 */
    assert_int_equal(kvc_metrics_read(h, NULL, NULL, &r), KVC_OK);
    assert_int_equal(r.count, 20);
    /* rank 10 is the top of bucket (0,1]; rank 15 is half-way through (2,4]. */
    assert_true(kvc_metrics_quantile(&r, 0.5) == 1.0);
    assert_true(kvc_metrics_quantile(&r, 0.75) == 3.0);
    kvc_metrics_observe(h, (const char *[]){"c"}, 100);
    assert_int_equal(kvc_metrics_read(h, "model", "c", &r), KVC_OK);
    assert_true(kvc_metrics_quantile(&r, 0.99) == 4.0);
    kvc_metrics_destroy(&reg);
}

static void test_write_ext_selects_and_labels(void **state)
{
    kvc_metrics_t *reg = kvc_metrics_new(NULL);
    kvc_metric_t *c = kvc_metrics_counter(reg, "kvc_a_total", "A.", "site");
    kvc_metric_t *g = kvc_metrics_gauge(reg, "kvc_beta", "B.", NULL);
    kvc_metrics_inc(c, (const char *[]){"own"}, 1);
    kvc_metrics_set(g, NULL, 2);
    kvc_promsel_set_t *sel = kvc_promsel_set_new();
    assert_int_equal(kvc_promsel_set_add(sel, "{__name__=~\"kvc_(a_total|beta)\"}", 32, NULL),
                     KVC_OK);
    const char *en[] = {"site", "peer"}, *ev[] = {"edge-1", "p\"1"};
    kvc_buf_t b;
    kvc_buf_init(&b, 4096);
    assert_int_equal(kvc_metrics_write_ext(reg, sel, en, ev, 2, &b), KVC_OK);
    assert_string_equal(b.data, "# HELP kvc_a_total A.\n"
                                "# TYPE kvc_a_total counter\n"
                                "kvc_a_total{site=\"own\",peer=\"p\\\"1\"} 1\n"
                                "# HELP kvc_beta B.\n"
                                "# TYPE kvc_beta gauge\n"
                                "kvc_beta{site=\"edge-1\",peer=\"p\\\"1\"} 2\n");
    kvc_promsel_set_destroy(&sel);
    sel = kvc_promsel_set_new();
    assert_int_equal(kvc_promsel_set_add(sel, "{site=\"edge-1\"}", 15, NULL), KVC_OK);
    kvc_buf_reset(&b);
    assert_int_equal(kvc_metrics_write_ext(reg, sel, en, ev, 2, &b), KVC_OK);
    assert_string_equal(b.data, "# HELP kvc_beta B.\n"
                                "# TYPE kvc_beta gauge\n"
                                "kvc_beta{site=\"edge-1\",peer=\"p\\\"1\"} 2\n");
    /* A full buffer is reported, never overrun. */
    kvc_buf_t small;
    kvc_buf_init(&small, 20);
    assert_int_equal(kvc_metrics_write(reg, &small), KVC_ERANGE);
    assert_true(small.len <= 20);
    kvc_buf_free(&small);
    kvc_buf_free(&b);
    kvc_promsel_set_destroy(&sel);
    kvc_metrics_destroy(&reg);
}

/* Runs `promtool check metrics < path`; returns its exit status or -1. */
static int s_promtool(const char *text)
{
    char path[] = "/tmp/kvc-test-metrics-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t len = strlen(text);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "promtool check metrics < %s > /dev/null 2>&1", path);
    int st = system(cmd);
    unlink(path);
    return st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_promtool_accepts_output(void **state)
{
    if (system("command -v promtool > /dev/null 2>&1") != 0) {
        print_message("promtool not installed (ops/install-deps.sh); skipping\n");
        skip();
    }
    kvc_metrics_t *reg = kvc_metrics_new(NULL);
    kvc_metric_t *req =
        kvc_metrics_counter(reg, "kvc_proxy_requests_total", "Proxy requests.", "model,route,code");
    kvc_metric_t *lat = kvc_metrics_histogram(reg, "kvc_proxy_request_duration_seconds",
                                              "Proxy latency.", "model", NULL, 0);
    kvc_metric_t *sz =
        kvc_metrics_histogram(reg, "kvc_proxy_request_size_bytes", "Request sizes.", "model",
                              kvc_metrics_size_buckets, kvc_metrics_size_buckets_n);
    kvc_metric_t *mem =
        kvc_metrics_gauge(reg, "kvc_members", "Members by state and site.", "state,site");
    int calls = 0;
    kvc_metrics_gauge_fn(reg, "kvc_process_open_fds", "Open fds.", "kind", s_fds, &calls);
    kvc_metrics_inc(req, (const char *[]){"a\"b\\c\nd\xff", "local", "200"}, 5);
    kvc_metrics_observe(lat, (const char *[]){"bert"}, 0.0123);
    kvc_metrics_observe(sz, (const char *[]){"bert"}, 70000);
    kvc_metrics_set(mem, (const char *[]){"alive", "edge-1"}, 3);
    kvc_metrics_set(mem, (const char *[]){"dead", "edge-2"}, NAN);
    char *text = s_expo(reg);
    assert_int_equal(s_promtool(text), 0);
    kvc_free(text);
    kvc_metrics_destroy(&reg);
    /* The check is real: a counter without _total and a broken line fail. */
    assert_int_not_equal(s_promtool("# HELP kvc_x X.\n# TYPE kvc_x counter\nkvc_x 1\n"), 0);
    assert_int_not_equal(s_promtool("# TYPE kvc_y gauge\nkvc_y{a=\"b} 1\n"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_exposition),
        cmocka_unit_test(test_value_format),
        cmocka_unit_test(test_concurrent_increments),
        cmocka_unit_test(test_overflow_child),
        cmocka_unit_test(test_hostile_label_values),
        cmocka_unit_test(test_name_validation),
        cmocka_unit_test(test_callbacks),
        cmocka_unit_test(test_quantile),
        cmocka_unit_test(test_write_ext_selects_and_labels),
        cmocka_unit_test(test_promtool_accepts_output),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
