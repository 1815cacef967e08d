/* Unit tests of peer/metrics_summary.c: encode/decode round trip, the
 * byte budget, hostile bytes, newer-version-wins, staleness with site_up,
 * and the exact /federate text with selectors. Time is stepped by hand. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "metrics_summary.h"
#include "promsel.h"

/* A summary with n models named m0.. (requests 10*i+1) and n backends. */
static kvc_summary_t s_make(uint64_t version, size_t n)
{
    kvc_summary_t s;
    memset(&s, 0, sizeof s);
    s.version = version;
    s.timestamp_ms = 1000;
    s.peers_up = 3;
    s.members_alive = 3;
    s.members_suspect = 1;
    s.cpu_seconds = 1.5;
    s.rss_bytes = 1 << 20;
    s.proxy_requests = 1000;
    s.proxy_errors = 4;
    for (size_t i = 0; i < n; i++) {
        snprintf(s.models[i].model, sizeof s.models[i].model, "model-%zu-%0*d", i, 40, 0);
        s.models[i].requests = 10 * i + 1;
        s.models[i].errors = i;
        s.models[i].p50_seconds = 0.25;
        s.models[i].p99_seconds = NAN;
        snprintf(s.backends[i].model, sizeof s.backends[i].model, "backend-%zu-%0*d", i, 40, 0);
        s.backends[i].requests = i;
        s.backends[i].latency_seconds = 0.5 * (double)i;
    }
    s.n_models = s.n_backends = n;
    return s;
}

static void test_round_trip(void **state)
{
    kvc_summary_t s = s_make(7, 2);
    uint8_t buf[KVC_SUMMARY_BUDGET];
    size_t len = 0, dropped = 99;
    assert_int_equal(kvc_summary_encode(&s, sizeof buf, buf, sizeof buf, &len, &dropped), KVC_OK);
    assert_int_equal(dropped, 0);
    kvc_summary_t d;
    assert_int_equal(kvc_summary_decode(buf, len, &d), KVC_OK);
    assert_int_equal(d.version, 7);
    assert_int_equal(d.timestamp_ms, 1000);
    assert_int_equal(d.members_suspect, 1);
    assert_true(d.cpu_seconds == 1.5);
    assert_int_equal(d.proxy_requests, 1000);
    assert_int_equal(d.n_models, 2);
    /* Sorted by requests, most first. */
    assert_string_equal(d.models[0].model, s.models[1].model);
    assert_int_equal(d.models[0].requests, 11);
    assert_true(d.models[0].p50_seconds == 0.25);
    assert_true(isnan(d.models[0].p99_seconds));
    assert_int_equal(d.n_backends, 2);
    assert_true(d.backends[0].latency_seconds == 0.5);
}

static void test_budget(void **state)
{
    kvc_summary_t s = s_make(1, 8);
    uint8_t buf[4096];
    size_t len = 0, dropped = 0;
    assert_int_equal(kvc_summary_encode(&s, 4096, buf, sizeof buf, &len, &dropped), KVC_OK);
    assert_true(len > KVC_SUMMARY_BUDGET);
    assert_int_equal(dropped, 0);
    assert_int_equal(kvc_summary_encode(&s, KVC_SUMMARY_BUDGET, buf, sizeof buf, &len, &dropped),
                     KVC_OK);
    assert_true(len <= KVC_SUMMARY_BUDGET);
    kvc_summary_t d;
    assert_int_equal(kvc_summary_decode(buf, len, &d), KVC_OK);
    /* Backends go first (least used first)... */
    assert_int_equal(d.n_models, 8);
    assert_true(d.n_backends < 8);
    assert_int_equal(dropped, 8 - d.n_backends);
    assert_int_equal(d.backends[0].requests, 7);
    /* ...then the least-used models. */
    assert_int_equal(kvc_summary_encode(&s, 400, buf, sizeof buf, &len, &dropped), KVC_OK);
    assert_true(len <= 400);
    assert_int_equal(kvc_summary_decode(buf, len, &d), KVC_OK);
    assert_int_equal(d.n_backends, 0);
    assert_true(d.n_models > 0 && d.n_models < 8);
    assert_int_equal(dropped, 8 + (8 - d.n_models));
    assert_int_equal(d.models[0].requests, 71);
    for (size_t i = 1; i < d.n_models; i++)
        assert_true(d.models[i].requests < d.models[i - 1].requests);
    /* A budget below the fixed part fails. */
    assert_int_equal(kvc_summary_encode(&s, 10, buf, sizeof buf, &len, NULL), KVC_ERANGE);
    /* Duplicate or empty names are refused at the source. */
    s = s_make(1, 2);
    memcpy(s.models[1].model, s.models[0].model, sizeof s.models[0].model);
    assert_int_equal(kvc_summary_encode(&s, 1024, buf, sizeof buf, &len, NULL), KVC_EINVAL);
    s.models[1].model[0] = '\0';
    assert_int_equal(kvc_summary_encode(&s, 1024, buf, sizeof buf, &len, NULL), KVC_EINVAL);
}

static void test_hostile_decode(void **state)
{
    kvc_summary_t d;
    uint8_t junk[] = {0xff, 0xff, 0xff, 0xff};
    assert_int_equal(kvc_summary_decode(junk, sizeof junk, &d), KVC_EPARSE);
    /* An empty message has schema 0: refused. */
    assert_int_equal(kvc_summary_decode(junk, 0, &d), KVC_EPARSE);
    static uint8_t big[KVC_SUMMARY_WIRE_MAX + 1];
    assert_int_equal(kvc_summary_decode(big, sizeof big, &d), KVC_ERANGE);
    /* schema=1, models = {model: "\xff"} : not UTF-8. */
    uint8_t bad_name[] = {0x08, 0x01, 0x6a, 0x03, 0x0a, 0x01, 0xff};
    assert_int_equal(kvc_summary_decode(bad_name, sizeof bad_name, &d), KVC_EPARSE);
    /* schema=1, cpu_seconds = -1.0 */
    uint8_t neg[] = {0x08, 0x01, 0x49, 0, 0, 0, 0, 0, 0, 0xf0, 0xbf};
    assert_int_equal(kvc_summary_decode(neg, sizeof neg, &d), KVC_EPARSE);
    /* Nine models: too many. */
    uint8_t nine[2 + 9 * 5];
    size_t o = 0;
    nine[o++] = 0x08;
    nine[o++] = 0x01;
    for (int i = 0; i < 9; i++) {
        nine[o++] = 0x6a;
        nine[o++] = 0x03;
        nine[o++] = 0x0a;
        nine[o++] = 0x01;
        nine[o++] = (uint8_t)('a' + i);
    }
    assert_int_equal(kvc_summary_decode(nine, o, &d), KVC_ERANGE);
    assert_int_equal(kvc_summary_decode(nine, o - 5, &d), KVC_OK);
    assert_int_equal(d.n_models, 8);
}

/* Encodes a summary and puts it for peer. */
static int s_put(kvc_summary_set_t *set, const char *peer, const char *site, uint64_t version,
                 size_t n, int64_t now)
{
    kvc_summary_t s = s_make(version, n);
    uint8_t buf[KVC_SUMMARY_BUDGET];
    size_t len = 0;
    assert_int_equal(kvc_summary_encode(&s, sizeof buf, buf, sizeof buf, &len, NULL), KVC_OK);
    return kvc_summary_set_put(set, peer, site, "eu", buf, len, version, now);
}

static void test_newer_version_wins(void **state)
{
    kvc_summary_set_t *set = kvc_summary_set_new(2);
    assert_int_equal(s_put(set, "p1", "a", 5, 1, 0), KVC_OK);
    assert_int_equal(s_put(set, "p1", "a", 5, 2, 10), KVC_EEXIST);
    assert_int_equal(s_put(set, "p1", "a", 4, 2, 10), KVC_EEXIST);
    kvc_summary_t got;
    assert_int_equal(kvc_summary_set_get(set, "p1", &got), KVC_OK);
    assert_int_equal(got.version, 5);
    assert_int_equal(got.n_models, 1);
    assert_int_equal(s_put(set, "p1", "a", 6, 2, 10), KVC_OK);
    assert_int_equal(kvc_summary_set_get(set, "p1", &got), KVC_OK);
    assert_int_equal(got.n_models, 2);
    /* The announced version must be the encoded one. */
    kvc_summary_t s = s_make(9, 0);
    uint8_t buf[256];
    size_t len;
    assert_int_equal(kvc_summary_encode(&s, sizeof buf, buf, sizeof buf, &len, NULL), KVC_OK);
    assert_int_equal(kvc_summary_set_put(set, "p1", "a", "eu", buf, len, 10, 0), KVC_EINVAL);
    assert_int_equal(kvc_summary_set_put(set, "p\n", "a", "eu", buf, len, 9, 0), KVC_EINVAL);
    assert_int_equal(s_put(set, "p2", "b", 1, 0, 0), KVC_OK);
    assert_int_equal(s_put(set, "p3", "b", 1, 0, 0), KVC_ERANGE); /* full */
    assert_int_equal(kvc_summary_set_count(set), 2);
    kvc_summary_set_destroy(&set);
    assert_null(set);
}

static void test_staleness_and_site_up(void **state)
{
    kvc_summary_set_t *set = kvc_summary_set_new(0);
    assert_int_equal(s_put(set, "a1", "a", 1, 0, 0), KVC_OK);
    assert_int_equal(s_put(set, "a2", "a", 1, 0, 4000), KVC_OK);
    assert_int_equal(s_put(set, "b1", "b", 1, 0, 0), KVC_OK);
    size_t down = 99;
    assert_int_equal(kvc_summary_set_expire(set, 5000, 5000, 20000, &down), 0);
    assert_int_equal(down, 0);
    assert_int_equal(kvc_summary_set_site_up(set, "a"), 1);
    /* At 5001 ms a1 and b1 are stale: site b is down, a still up via a2. */
    assert_int_equal(kvc_summary_set_expire(set, 5001, 5000, 20000, &down), 0);
    assert_int_equal(down, 1);
    assert_int_equal(kvc_summary_set_site_up(set, "a"), 1);
    assert_int_equal(kvc_summary_set_site_up(set, "b"), 0);
    assert_int_equal(kvc_summary_set_site_up(set, "zz"), KVC_ENOENT);

    kvc_promsel_set_t *sel = kvc_promsel_set_new();
    const char *q = "{__name__=~\"kvc_(site|peer)_up\"}";
    assert_int_equal(kvc_promsel_set_add(sel, q, strlen(q), NULL), KVC_OK);
    kvc_buf_t b;
    kvc_buf_init(&b, 1 << 16);
    assert_int_equal(kvc_summary_set_write(set, sel, 5001, &b), KVC_OK);
    assert_string_equal(
        b.data, "# HELP kvc_peer_up 1 if the peer's summary is fresh, 0 while it is stale.\n"
                "# TYPE kvc_peer_up gauge\n"
                "kvc_peer_up{site=\"a\",peer=\"a1\",region=\"eu\"} 0\n"
                "kvc_peer_up{site=\"a\",peer=\"a2\",region=\"eu\"} 1\n"
                "kvc_peer_up{site=\"b\",peer=\"b1\",region=\"eu\"} 0\n"
                "# HELP kvc_site_up 1 if any peer of the site is fresh, 0 while all are stale.\n"
                "# TYPE kvc_site_up gauge\n"
                "kvc_site_up{site=\"a\",region=\"eu\"} 1\n"
                "kvc_site_up{site=\"b\",region=\"eu\"} 0\n");
    /* Stale peers' other series are gone, not frozen. */
    kvc_promsel_set_t *rss = kvc_promsel_set_new();
    assert_int_equal(kvc_promsel_set_add(rss, "kvc_process_resident_memory_bytes", 33, NULL),
                     KVC_OK);
    kvc_buf_reset(&b);
    assert_int_equal(kvc_summary_set_write(set, rss, 5001, &b), KVC_OK);
    assert_string_equal(b.data, "# HELP kvc_process_resident_memory_bytes Resident memory of the "
                                "peer process.\n"
                                "# TYPE kvc_process_resident_memory_bytes gauge\n"
                                "kvc_process_resident_memory_bytes{site=\"a\",peer=\"a2\","
                                "region=\"eu\"} 1048576\n");
    /* A newer summary revives b1. */
    assert_int_equal(s_put(set, "b1", "b", 2, 0, 6000), KVC_OK);
    assert_int_equal(kvc_summary_set_site_up(set, "b"), 1);
    /* After the removal window site a's peers are gone; b1 (heard at 6000) is stale. */
    assert_int_equal(kvc_summary_set_expire(set, 24500, 5000, 20000, &down), 2);
    assert_int_equal(kvc_summary_set_count(set), 1);
    assert_int_equal(down, 1);
    assert_int_equal(kvc_summary_set_site_up(set, "a"), KVC_ENOENT);
    assert_int_equal(kvc_summary_set_site_up(set, "b"), 0);
    assert_int_equal(kvc_summary_set_expire(set, 26001, 5000, 20000, &down), 1);
    assert_int_equal(kvc_summary_set_count(set), 0);
    assert_int_equal(down, 0);
    assert_int_equal(kvc_summary_set_expire(set, 0, 10, 5, NULL), KVC_EINVAL);
    kvc_buf_free(&b);
    kvc_promsel_set_destroy(&rss);
    kvc_promsel_set_destroy(&sel);
    kvc_summary_set_destroy(&set);
}

/* A member membership has gone stays down whatever summaries of it still
 * arrive (a push-pull carries a departed member's newer metadata after its
 * leave); only membership's "alive again" lets a summary count. */
static void test_down_until_membership(void **state)
{
    kvc_summary_set_t *set = kvc_summary_set_new(0);
    assert_int_equal(s_put(set, "c1", "c", 1, 0, 0), KVC_OK);
    assert_int_equal(kvc_summary_set_site_up(set, "c"), 1);
    assert_int_equal(kvc_summary_set_mark_down(set, "c1", 1), KVC_OK);
    assert_int_equal(kvc_summary_set_mark_down(set, "zz", 1), KVC_ENOENT);
    assert_int_equal(kvc_summary_set_site_up(set, "c"), 0);
    /* a newer summary, heard after the leave */
    assert_int_equal(s_put(set, "c1", "c", 2, 0, 100), KVC_OK);
    assert_int_equal(kvc_summary_set_site_up(set, "c"), 0);
    size_t down = 0;
    assert_int_equal(kvc_summary_set_expire(set, 200, 5000, 20000, &down), 0);
    assert_int_equal(down, 1);
    assert_int_equal(kvc_summary_set_site_up(set, "c"), 0);
    kvc_summary_t got;
    assert_int_equal(kvc_summary_set_get(set, "c1", &got), KVC_OK);
    assert_int_equal(got.version, 2); /* kept, just not counted */
    /* back: membership says alive, then its summary counts again */
    assert_int_equal(kvc_summary_set_mark_down(set, "c1", 0), KVC_OK);
    assert_int_equal(s_put(set, "c1", "c", 3, 0, 300), KVC_OK);
    assert_int_equal(kvc_summary_set_site_up(set, "c"), 1);
    assert_int_equal(kvc_summary_set_expire(set, 400, 5000, 20000, &down), 0);
    assert_int_equal(down, 0);
    kvc_summary_set_destroy(&set);
}

static void test_federate_text(void **state)
{
    kvc_summary_set_t *set = kvc_summary_set_new(0);
    kvc_summary_t s;
    memset(&s, 0, sizeof s);
    s.version = 1;
    s.timestamp_ms = 1000;
    s.proxy_requests = 12;
    s.proxy_errors = 1;
    s.n_models = 1;
    memcpy(s.models[0].model, "be\"rt", 6);
    s.models[0].requests = 10;
    s.models[0].errors = 1;
    s.models[0].p50_seconds = 0.5;
    s.models[0].p99_seconds = 2;
    uint8_t buf[KVC_SUMMARY_BUDGET];
    size_t len;
    assert_int_equal(kvc_summary_encode(&s, sizeof buf, buf, sizeof buf, &len, NULL), KVC_OK);
    assert_int_equal(kvc_summary_set_put(set, "p1", "edge-1", "eu", buf, len, 1, 0), KVC_OK);
    kvc_promsel_set_t *sel = kvc_promsel_set_new();
    const char *q = "{__name__=~\"kvc_proxy_.*\", site=\"edge-1\"}";
    assert_int_equal(kvc_promsel_set_add(sel, q, strlen(q), NULL), KVC_OK);
    kvc_buf_t b;
    kvc_buf_init(&b, 1 << 16);
    assert_int_equal(kvc_summary_set_write(set, sel, 3500, &b), KVC_OK);
    assert_string_equal(
        b.data,
        "# HELP kvc_proxy_errors_total Proxy errors per model (top models; _other for the "
        "rest).\n"
        "# TYPE kvc_proxy_errors_total counter\n"
        "kvc_proxy_errors_total{site=\"edge-1\",peer=\"p1\",region=\"eu\",model=\"be\\\"rt\"} 1\n"
        "# HELP kvc_proxy_latency_seconds Proxy latency quantiles per model.\n"
        "# TYPE kvc_proxy_latency_seconds summary\n"
        "kvc_proxy_latency_seconds{site=\"edge-1\",peer=\"p1\",region=\"eu\",model=\"be\\\"rt\","
        "quantile=\"0.5\"} 0.5\n"
        "kvc_proxy_latency_seconds{site=\"edge-1\",peer=\"p1\",region=\"eu\",model=\"be\\\"rt\","
        "quantile=\"0.99\"} 2\n"
        "# HELP kvc_proxy_requests_total Proxy requests per model (top models; _other for the "
        "rest).\n"
        "# TYPE kvc_proxy_requests_total counter\n"
        "kvc_proxy_requests_total{site=\"edge-1\",peer=\"p1\",region=\"eu\",model=\"be\\\"rt\"} "
        "10\n"
        "kvc_proxy_requests_total{site=\"edge-1\",peer=\"p1\",region=\"eu\",model=\"_other\"} 2\n");
    /* Everything (NULL selector) includes the age: since it was heard (put at 0). */
    kvc_buf_reset(&b);
    assert_int_equal(kvc_summary_set_write(set, NULL, 3500, &b), KVC_OK);
    assert_non_null(
        strstr(b.data, "kvc_report_age_seconds{site=\"edge-1\",peer=\"p1\",region=\"eu\"} 3.5\n"));
    assert_non_null(strstr(
        b.data, "kvc_members{site=\"edge-1\",peer=\"p1\",region=\"eu\",state=\"alive\"} 0\n"));
    kvc_buf_free(&b);
    kvc_promsel_set_destroy(&sel);
    kvc_summary_set_destroy(&set);
}

/* News: what moves every time (version, timestamp, CPU) is none; any
 * other figure is, and RSS only past its threshold. */
static void test_news(void **state)
{
    (void)state;
    kvc_summary_t a = s_make(7, 2), b = a;
    b.version = 8;
    b.timestamp_ms += 2000;
    b.cpu_seconds += 0.25;
    b.rss_bytes += (1 << 20) / 100 * KVC_SUMMARY_RSS_NEWS_PCT; /* exactly the threshold */
    assert_int_equal(kvc_summary_news(&a, &b), 0);
    b.rss_bytes += 1;
    assert_int_equal(kvc_summary_news(&a, &b), 1);
    b.rss_bytes = a.rss_bytes - (1 << 20) / 100 * KVC_SUMMARY_RSS_NEWS_PCT - 1;
    assert_int_equal(kvc_summary_news(&a, &b), 1);
#define NEWS_IF(field_change)                                                                   \
    do {                                                                                        \
        kvc_summary_t c = a;                                                                    \
        field_change;                                                                           \
        assert_int_equal(kvc_summary_news(&a, &c), 1);                                          \
    } while (0)
    NEWS_IF(c.peers_up--);
    NEWS_IF(c.members_alive++);
    NEWS_IF(c.members_suspect = 0);
    NEWS_IF(c.members_dead = 1);
    NEWS_IF(c.members_left = 1);
    NEWS_IF(c.proxy_requests++);
    NEWS_IF(c.proxy_errors++);
    NEWS_IF(c.n_models = 1);
    NEWS_IF(c.n_backends = 1);
    NEWS_IF(c.models[1].requests++);
    NEWS_IF(c.models[0].errors++);
    NEWS_IF(c.models[1].model[0] = 'x');
    NEWS_IF(c.models[0].p50_seconds = NAN);
    NEWS_IF(c.models[0].p99_seconds = 0.5); /* was NaN */
    NEWS_IF(c.backends[1].requests++);
    NEWS_IF(c.backends[1].latency_seconds += 0.001);
    NEWS_IF(c.backends[0].model[0] = 'x');
#undef NEWS_IF
    kvc_summary_t same = a; /* NaN p99 on both sides is no news */
    assert_int_equal(kvc_summary_news(&a, &same), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_budget),
        cmocka_unit_test(test_hostile_decode),
        cmocka_unit_test(test_newer_version_wins),
        cmocka_unit_test(test_staleness_and_site_up),
        cmocka_unit_test(test_down_until_membership),
        cmocka_unit_test(test_federate_text),
        cmocka_unit_test(test_news),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
