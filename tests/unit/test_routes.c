/* Unit tests of the other sites' snapshot (peer/routes.c): aggregation of
 * a site's peers, members of our own site left out, the registry's placed
 * sites nobody reports, the peer a forward goes to, and bounds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "routes.h"

static const char *g_placed = "";

static size_t s_where(void *arg, const char *model, char *buf, size_t cap)
{
    (void)arg;
    (void)model;
    snprintf(buf, cap, "%s", g_placed);
    return g_placed[0] ? 1 : 0;
}

static const uint8_t k1[32] = {1}, k2[32] = {2}, k3[32] = {3}, k4[32] = {4};

static const kvc_proxy_site_t *s_find(const kvc_proxy_site_t *s, size_t n, const char *site)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(s[i].site, site) == 0)
            return &s[i];
    return NULL;
}

/* Two peers of site-b: ready if one is; in flight summed; the capacity
 * summed (unknown if one is); the best peer's latency and RTT; forwards go
 * to the ready, reachable, nearest one. Site-a (ours) never appears. */
static void test_aggregate(void **state)
{
    (void)state;
    g_placed = "";
    kvc_routes_t *r = kvc_routes_new("site-a", s_where, NULL);
    assert_non_null(r);
    kvc_routes_model_t b1m[] = {{"m", 0, 3, 8, 900, 2000}, {"n", 1, 0, 0, -1, -1}};
    kvc_routes_model_t b2m[] = {{"m", 1, 2, 8, 1500, 3000}};
    kvc_routes_model_t a2m[] = {{"m", 1, 0, 8, 100, 200}};
    kvc_routes_model_t c1m[] = {{"m", 1, 1, 0, 5000, 9000}};
    kvc_routes_member_t mb[] = {
        {"site-b/b1", "site-b", "eu", "arm64", 0, 0, "tcp://10.0.0.2:7000", k1, 1, 500, b1m, 2},
        {"site-b/b2", "site-b", "eu", "arm64", 0, 0, "tcp://10.0.0.3:7000", k2, 1, 800, b2m, 1},
        {"site-a/a2", "site-a", "eu", "x86_64", 0, 0, "tcp://10.0.0.9:7000", k3, 1, 10, a2m, 1},
        {"site-c/c1", "site-c", "us", "x86_64", 1, 2, "tcp://10.0.1.2:7000", k4, 1, 40000, c1m,
         1},
    };
    assert_int_equal(kvc_routes_update(r, mb, 4), 0);
    kvc_proxy_site_t out[8];
    size_t n = kvc_routes_sites(r, "m", out, 8);
    assert_int_equal(n, 2);
    assert_null(s_find(out, n, "site-a"));
    const kvc_proxy_site_t *b = s_find(out, n, "site-b");
    assert_non_null(b);
    assert_true(b->s.ready);
    assert_true(b->s.placed);
    assert_true(b->s.reachable);
    assert_int_equal(b->s.in_flight, 5);
    assert_int_equal(b->s.capacity, 16);
    assert_int_equal(b->s.p50_us, 1500); /* the ready peer's; b1 is not ready */
    assert_int_equal(b->s.rtt_us, 500);
    assert_string_equal(b->region, "eu");
    assert_string_equal(b->arch, "arm64");
    const kvc_proxy_site_t *c = s_find(out, n, "site-c");
    assert_non_null(c);
    assert_int_equal(c->s.capacity, 0); /* unknown */
    assert_int_equal(c->s.accel, KVC_ACCEL_NVIDIA);
    assert_int_equal(c->s.accel_count, 2);
    kvc_routes_peer_t p;
    assert_int_equal(kvc_routes_pick(r, "site-b", "m", &p), 0);
    assert_string_equal(p.member, "site-b/b2"); /* ready beats nearer */
    assert_memory_equal(p.curve_key, k2, 32);
    assert_string_equal(p.endpoint, "tcp://10.0.0.3:7000");
    assert_int_equal(kvc_routes_pick(r, "site-b", "n", &p), 0);
    assert_string_equal(p.member, "site-b/b1");
    assert_int_equal(kvc_routes_pick(r, "site-a", "m", &p), KVC_ENOENT);
    assert_int_equal(kvc_routes_pick(r, "site-z", "m", &p), KVC_ENOENT);
    assert_int_equal(kvc_routes_sites(r, "zzz", out, 8), 0);
    kvc_routes_destroy(&r);
    assert_null(r);
}

/* Unreachable peers (partitioned, or no forwarding endpoint) make the
 * site unreachable and are never picked; placed sites nobody reports are
 * listed placed, not ready, unreachable. */
static void test_unreachable_and_placed(void **state)
{
    (void)state;
    g_placed = "site-b, site-d, site-a";
    kvc_routes_t *r = kvc_routes_new("site-a", s_where, NULL);
    kvc_routes_model_t bm[] = {{"m", 1, 0, 4, 100, 200}};
    kvc_routes_member_t mb[] = {
        {"site-b/b1", "site-b", "eu", "", 0, 0, "tcp://10.0.0.2:7000", k1, 0, 500, bm, 1},
        {"site-b/b2", "site-b", "eu", "", 0, 0, "", k2, 1, 500, bm, 1},
    };
    assert_int_equal(kvc_routes_update(r, mb, 2), 0);
    kvc_proxy_site_t out[8];
    size_t n = kvc_routes_sites(r, "m", out, 8);
    assert_int_equal(n, 2); /* site-b, site-d; not site-a (ours) */
    const kvc_proxy_site_t *b = s_find(out, n, "site-b");
    assert_false(b->s.reachable);
    assert_false(b->s.ready);
    const kvc_proxy_site_t *d = s_find(out, n, "site-d");
    assert_non_null(d);
    assert_true(d->s.placed);
    assert_false(d->s.ready);
    assert_false(d->s.reachable);
    assert_int_equal(d->s.rtt_us, -1);
    kvc_routes_peer_t p;
    assert_int_equal(kvc_routes_pick(r, "site-b", "m", &p), KVC_ENOENT);
    /* the cap is honoured */
    assert_int_equal(kvc_routes_sites(r, "m", out, 1), 1);
    /* an update replaces the snapshot */
    assert_int_equal(kvc_routes_update(r, NULL, 0), 0);
    g_placed = "";
    assert_int_equal(kvc_routes_sites(r, "m", out, 8), 0);
    kvc_routes_destroy(&r);
}

/* Many models and sites: the lookup finds each, sorted data or not; more
 * than KVC_ROUTES_PEERS_MAX peers of one site keep the best ones. */
static void test_many(void **state)
{
    (void)state;
    g_placed = "";
    kvc_routes_t *r = kvc_routes_new("site-a", s_where, NULL);
    enum { M = 40, P = 6 };
    static char names[M][16], ids[P][32];
    static kvc_routes_model_t models[M];
    for (int i = 0; i < M; i++) {
        snprintf(names[i], sizeof names[i], "model-%02d", M - 1 - i);
        models[i] = (kvc_routes_model_t){names[i], 1, 0, 0, 1000, 2000};
    }
    kvc_routes_member_t mb[P];
    for (int i = 0; i < P; i++) {
        snprintf(ids[i], sizeof ids[i], "site-x/p%d", i);
        mb[i] = (kvc_routes_member_t){ids[i], "site-x", "", "", 0, 0, "tcp://h:1", k1, 1,
                                      (int64_t)(P - i) * 100, models, M};
    }
    assert_int_equal(kvc_routes_update(r, mb, P), 0);
    kvc_proxy_site_t out[4];
    for (int i = 0; i < M; i++) {
        assert_int_equal(kvc_routes_sites(r, names[i], out, 4), 1);
        assert_int_equal(out[0].s.rtt_us, 100);
    }
    kvc_routes_peer_t p;
    assert_int_equal(kvc_routes_pick(r, "site-x", "model-07", &p), 0);
    assert_string_equal(p.member, "site-x/p5"); /* nearest */
    kvc_routes_destroy(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_aggregate),
        cmocka_unit_test(test_unreachable_and_placed),
        cmocka_unit_test(test_many),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
