/* Unit tests of peer/backend_scrape.c: exact figures from TF Serving's
 * series (sum over statuses, API and entrypoint; microseconds to seconds),
 * refusal of hostile values, and the real thread against a local HTTP server
 * whose answer the test switches: good text, HTTP 500, a redirect (never
 * followed), a body over the bound, a closed port. Waits poll a round
 * counter with a deadline. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "backend_scrape.h"
#include "http_server.h"
#include "metrics.h"

static const char TF_TEXT[] =
    "# TYPE :tensorflow:serving:request_count counter\n"
    ":tensorflow:serving:request_count{model_name=\"bert\",status=\"OK\"} 7\n"
    ":tensorflow:serving:request_count{model_name=\"bert\",status=\"INVALID_ARGUMENT\"} 2\n"
    ":tensorflow:serving:request_count{model_name=\"yolo\",status=\"OK\"} 5\n"
    "# TYPE :tensorflow:serving:request_latency histogram\n"
    ":tensorflow:serving:request_latency_bucket{model_name=\"bert\",API=\"predict\","
    "entrypoint=\"GRPC\",le=\"+Inf\"} 6\n"
    ":tensorflow:serving:request_latency_sum{model_name=\"bert\",API=\"predict\","
    "entrypoint=\"GRPC\"} 2500000\n"
    ":tensorflow:serving:request_latency_count{model_name=\"bert\",API=\"predict\","
    "entrypoint=\"GRPC\"} 6\n"
    ":tensorflow:serving:request_latency_sum{model_name=\"bert\",API=\"predict\","
    "entrypoint=\"REST_PREDICT\"} 500000\n"
    ":tensorflow:serving:request_latency_sum{model_name=\"yolo\",API=\"predict\","
    "entrypoint=\"GRPC\"} 250\n"
    ":tensorflow:serving:runtime_latency_sum{model_name=\"bert\",API=\"predict\","
    "runtime=\"TF1\"} 99999999\n"
    "other_metric{model_name=\"bert\"} NaN\n";

static void test_extract(void **state)
{
    const char *models[] = {"bert", "yolo", "absent"};
    uint64_t req[3];
    double lat[3];
    kvc_err_t err = {0};
    assert_int_equal(
        kvc_backend_scrape_extract(TF_TEXT, strlen(TF_TEXT), models, 3, req, lat, &err), KVC_OK);
    assert_int_equal(req[0], 9);
    assert_true(lat[0] == 3.0);
    assert_int_equal(req[1], 5);
    assert_true(lat[1] == 0.00025);
    assert_int_equal(req[2], 0);
    assert_true(lat[2] == 0.0);
}

static void test_extract_refuses(void **state)
{
    const char *models[] = {"bert"};
    uint64_t req[1];
    double lat[1];
    kvc_err_t err = {0};
    const char *nan = ":tensorflow:serving:request_count{model_name=\"bert\",status=\"OK\"} NaN\n";
    assert_int_equal(kvc_backend_scrape_extract(nan, strlen(nan), models, 1, req, lat, &err),
                     KVC_EPARSE);
    assert_string_equal(err.msg, "line 1: :tensorflow:serving:request_count: bad value for a "
                                 "counter");
    const char *neg = ":tensorflow:serving:request_latency_sum{model_name=\"bert\"} -1\n";
    assert_int_equal(kvc_backend_scrape_extract(neg, strlen(neg), models, 1, req, lat, &err),
                     KVC_EPARSE);
    const char *big = ":tensorflow:serving:request_count{model_name=\"bert\"} 1e300\n"
                      ":tensorflow:serving:request_count{model_name=\"bert\",status=\"x\"} 1e20\n";
    assert_int_equal(kvc_backend_scrape_extract(big, strlen(big), models, 1, req, lat, &err),
                     KVC_EPARSE);
    assert_string_equal(err.msg, "bert: counters out of range");
    const char *bad = "up 1\n:tensorflow:serving:request_count{model_name=\"bert\" 1\n";
    assert_int_equal(kvc_backend_scrape_extract(bad, strlen(bad), models, 1, req, lat, &err),
                     KVC_EPARSE);
    assert_string_equal(err.msg, "line 2: expected ',' or '}' after label model_name");
    /* another model's NaN is not ours to judge */
    const char *other = ":tensorflow:serving:request_count{model_name=\"x\"} NaN\n";
    assert_int_equal(kvc_backend_scrape_extract(other, strlen(other), models, 1, req, lat, &err),
                     KVC_OK);
    assert_int_equal(req[0], 0);
}

static void test_new_refuses(void **state)
{
    kvc_err_t err = {0};
    kvc_backend_scrape_target_t t[] = {{"bert", "ftp://x/metrics"}};
    kvc_backend_scrape_opts_t o = {.targets = t, .n_targets = 1};
    assert_null(kvc_backend_scrape_new(&o, &err));
    assert_int_equal(err.code, KVC_EINVAL);
    kvc_backend_scrape_target_t twice[] = {{"bert", "http://a/"}, {"bert", "http://b/"}};
    o.targets = twice;
    o.n_targets = 2;
    assert_null(kvc_backend_scrape_new(&o, &err));
    assert_string_equal(err.msg, "bert: model given twice");
    o.n_targets = 0;
    assert_null(kvc_backend_scrape_new(&o, &err));
}

/* --- a live model-server stand-in --------------------------------------- */

enum { MODE_OK, MODE_500, MODE_REDIRECT, MODE_HUGE };
static volatile int s_mode;

/* Answers /metrics according to s_mode. */
static void s_handler(void *arg, const kvc_http_req_t *req, kvc_http_resp_t *resp)
{
    snprintf(resp->content_type, sizeof resp->content_type, "text/plain");
    switch (s_mode) {
    case MODE_OK:
        resp->status = 200;
        kvc_buf_append(&resp->body, TF_TEXT, strlen(TF_TEXT));
        break;
    case MODE_500:
        resp->status = 500;
        kvc_buf_append(&resp->body, "no", 2);
        break;
    case MODE_REDIRECT:
        resp->status = 302;
        snprintf(resp->header_name, sizeof resp->header_name, "Location");
        snprintf(resp->header_value, sizeof resp->header_value, "%s", (const char *)arg);
        break;
    default:
        resp->status = 200;
        for (int i = 0; i < 200; i++) /* 200 * 20 bytes > the 2048-byte bound */
            kvc_buf_append(&resp->body, "padding_metric 1.0\n", 19);
        kvc_buf_append(&resp->body, TF_TEXT, strlen(TF_TEXT));
        break;
    }
}

/* Waits (deadline 10 s) until the scraper completed two more rounds, so the
 * last one surely saw the current mode. */
static void s_two_rounds(kvc_backend_scrape_t *sc)
{
    uint64_t want = kvc_backend_scrape_rounds(sc) + 2;
    for (int i = 0; i < 1000 && kvc_backend_scrape_rounds(sc) < want; i++)
        nanosleep(&(struct timespec){0, 10000000}, NULL);
    assert_true(kvc_backend_scrape_rounds(sc) >= want);
}

/* 1 if the registry's exposition holds line exactly. */
static int s_has_line(kvc_metrics_t *reg, const char *line)
{
    kvc_buf_t out;
    kvc_buf_init(&out, 1 << 20);
    assert_int_equal(kvc_metrics_write(reg, &out), 0);
    char want[256];
    snprintf(want, sizeof want, "\n%s\n", line);
    int found = strstr(out.data, want) != NULL;
    kvc_buf_free(&out);
    return found;
}

static void test_live(void **state)
{
    kvc_err_t err = {0};
    char elsewhere[64] = "http://127.0.0.2:1/metrics";
    kvc_http_opts_t ho = {.max_body = 1024, .max_response = 1 << 20};
    kvc_http_server_t *http = kvc_http_server_new("127.0.0.1:0", &ho, s_handler, elsewhere, &err);
    assert_non_null(http);
    char url[96], dead[96];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/monitoring/prometheus/metrics",
             kvc_http_server_port(http));
    /* a port that was just free: bind nothing there */
    kvc_http_server_t *tmp = kvc_http_server_new("127.0.0.1:0", &ho, s_handler, NULL, &err);
    assert_non_null(tmp);
    snprintf(dead, sizeof dead, "http://127.0.0.1:%u/metrics", kvc_http_server_port(tmp));
    kvc_http_server_destroy(&tmp);

    kvc_metrics_t *reg = kvc_metrics_new(NULL);
    kvc_backend_scrape_target_t t[] = {{"bert", url}, {"yolo", url}, {"gone", dead}};
    kvc_backend_scrape_opts_t o = {.targets = t,
                                   .n_targets = 3,
                                   .interval_ms = 20,
                                   .timeout_ms = 1000,
                                   .max_body = 2048,
                                   .reg = reg};
    s_mode = MODE_OK;
    kvc_backend_scrape_t *sc = kvc_backend_scrape_new(&o, &err);
    assert_non_null(sc);
    s_two_rounds(sc);
    kvc_backend_figures_t f[4];
    assert_int_equal(kvc_backend_scrape_snapshot(sc, f, 4), 3);
    assert_string_equal(f[0].model, "bert");
    assert_int_equal(f[0].up, 1);
    assert_int_equal(f[0].requests, 9);
    assert_true(f[0].latency_seconds == 3.0);
    assert_int_equal(f[0].errors, 0);
    assert_int_equal(f[1].requests, 5);
    assert_string_equal(f[2].model, "gone");
    assert_int_equal(f[2].up, 0);
    assert_int_equal(f[2].known, 0);
    assert_true(f[2].errors >= 2 && f[2].errors == f[2].scrapes);
    assert_true(s_has_line(reg, "kvc_backend_scrape_up{model=\"bert\"} 1"));
    assert_true(s_has_line(reg, "kvc_backend_scrape_up{model=\"gone\"} 0"));
    assert_true(s_has_line(reg, "kvc_backend_observed_requests_total{model=\"bert\"} 9"));
    assert_true(s_has_line(reg, "kvc_backend_observed_request_latency_seconds_total{model=\"bert\"}"
                                " 3"));
    assert_true(s_has_line(reg, "kvc_backend_scrape_errors_total{model=\"bert\"} 0"));
    /* an unknown model has no observed figures at all */
    assert_false(s_has_line(reg, "kvc_backend_observed_requests_total{model=\"gone\"} 0"));

    /* each failure mode: down, errors counted, last figures kept */
    int modes[] = {MODE_500, MODE_REDIRECT, MODE_HUGE};
    uint64_t errors = 0;
    for (size_t m = 0; m < 3; m++) {
        s_mode = modes[m];
        s_two_rounds(sc);
        assert_int_equal(kvc_backend_scrape_snapshot(sc, f, 4), 3);
        assert_int_equal(f[0].up, 0);
        assert_int_equal(f[0].known, 1);
        assert_int_equal(f[0].requests, 9);
        assert_true(f[0].errors > errors);
        errors = f[0].errors;
        assert_true(s_has_line(reg, "kvc_backend_scrape_up{model=\"bert\"} 0"));
    }
    s_mode = MODE_OK;
    s_two_rounds(sc);
    kvc_backend_scrape_snapshot(sc, f, 4);
    assert_int_equal(f[0].up, 1);
    assert_true(f[0].errors >= errors); /* a round in flight at the switch may still fail */

    kvc_backend_scrape_destroy(&sc);
    assert_null(sc);
    kvc_metrics_destroy(&reg);
    kvc_http_server_destroy(&http);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_extract),
        cmocka_unit_test(test_extract_refuses),
        cmocka_unit_test(test_new_refuses),
        cmocka_unit_test(test_live),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
