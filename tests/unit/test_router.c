/* Unit tests of federation/router.c on fixed tables: local first when
 * healthy, nearest by RTT + latency otherwise, constraints and their 503
 * reasons, partitions, hysteresis under flapping health, fail back within
 * the configured time, hostile constraint strings and the explain JSON. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "router.h"

/* Four sites: a (local, cpu), b (near, nvidia), c (far, tpu), d (unplaced). */
static void s_table(kvc_router_site_t t[4])
{
    memset(t, 0, 4 * sizeof(t[0]));
    t[0] = (kvc_router_site_t){.site = "a",
                               .region = "eu-west",
                               .is_local = 1,
                               .placed = 1,
                               .ready = 1,
                               .capacity = 10,
                               .p50_us = 5000,
                               .p99_us = 9000,
                               .arch = "x86_64",
                               .reachable = 1,
                               .rtt_us = 0};
    t[1] = (kvc_router_site_t){.site = "b",
                               .region = "eu-west",
                               .placed = 1,
                               .ready = 1,
                               .capacity = 10,
                               .p50_us = 6000,
                               .p99_us = 10000,
                               .arch = "x86_64",
                               .accel = KVC_ACCEL_NVIDIA,
                               .accel_count = 2,
                               .reachable = 1,
                               .rtt_us = 10000};
    t[2] = (kvc_router_site_t){.site = "c",
                               .region = "us-east",
                               .placed = 1,
                               .ready = 1,
                               .capacity = 10,
                               .p50_us = 4000,
                               .p99_us = 4000,
                               .arch = "arm64",
                               .accel = KVC_ACCEL_TPU,
                               .accel_count = 4,
                               .reachable = 1,
                               .rtt_us = 80000};
    t[3] = (kvc_router_site_t){.site = "d",
                               .region = "us-east",
                               .placed = 0,
                               .ready = 1,
                               .capacity = 10,
                               .p50_us = 1000,
                               .p99_us = 1000,
                               .reachable = 1,
                               .rtt_us = 1000};
}

static kvc_router_t *s_router(void)
{
    kvc_router_t *r = kvc_router_new(NULL);
    assert_non_null(r);
    return r;
}

/* Index of site in the choice, or -1. */
static int s_find(const kvc_router_choice_t *ch, const char *site)
{
    for (size_t i = 0; i < ch->n; i++)
        if (strcmp(ch->cands[i].site, site) == 0)
            return (int)i;
    return -1;
}

static kvc_router_reason_t s_reason(const kvc_router_choice_t *ch, const char *site)
{
    int i = s_find(ch, site);
    assert_true(i >= 0);
    return ch->cands[i].reason;
}

static void test_local_preferred(void **state)
{
    kvc_router_t *r = s_router();
    kvc_router_site_t t[4];
    s_table(t);
    kvc_router_choice_t ch;
    kvc_err_t err;
    assert_int_equal(kvc_router_choose(r, 1000, "m", t, 4, NULL, &ch, &err), 0);
    assert_string_equal(ch.model, "m");
    assert_int_equal(ch.n, 4);
    assert_int_equal(ch.n_ranked, 3);
    assert_string_equal(ch.cands[0].site, "a");
    assert_true(ch.cands[0].is_local);
    /* Then by score: b = 10 + 7 + load 0 = 17 ms; c = 80 + 4 = 84 ms. */
    assert_string_equal(ch.cands[1].site, "b");
    assert_float_equal(ch.cands[1].score_ms, 17.0, 1e-9);
    assert_string_equal(ch.cands[2].site, "c");
    assert_float_equal(ch.cands[2].score_ms, 84.0, 1e-9);
    assert_int_equal(s_reason(&ch, "d"), KVC_ROUTER_NOT_PLACED);
    /* Local wins even when a remote scores better. */
    t[0].p50_us = t[0].p99_us = 200000;
    assert_int_equal(kvc_router_choose(r, 1010, "m", t, 4, NULL, &ch, &err), 0);
    assert_string_equal(ch.cands[0].site, "a");
    kvc_router_destroy(&r);
    assert_null(r);
    kvc_router_destroy(&r);
}

static void test_nearest_when_local_down(void **state)
{
    kvc_router_t *r = s_router();
    kvc_router_site_t t[4];
    s_table(t);
    kvc_router_choice_t ch;
    t[0].ready = 0;
    assert_int_equal(kvc_router_choose(r, 1000, "m", t, 4, NULL, &ch, NULL), 0);
    assert_string_equal(ch.cands[0].site, "b");
    assert_int_equal(s_reason(&ch, "a"), KVC_ROUTER_NOT_READY);
    /* Load moves the choice: b at 9/10 in flight pays 7 * 9 = 63 ms -> 80 ms
     * is not below c's 84 ms; at 10/10 it is saturated and excluded. */
    t[1].in_flight = 9;
    assert_int_equal(kvc_router_choose(r, 1001, "m2", t, 4, NULL, &ch, NULL), 0);
    assert_string_equal(ch.cands[0].site, "b");
    assert_float_equal(ch.cands[0].load_ms, 63.0, 1e-9);
    t[1].in_flight = 10;
    assert_int_equal(kvc_router_choose(r, 1002, "m3", t, 4, NULL, &ch, NULL), 0);
    assert_string_equal(ch.cands[0].site, "c");
    assert_int_equal(s_reason(&ch, "b"), KVC_ROUTER_SATURATED);
    /* Saturation latches until 80% of capacity. */
    t[1].in_flight = 9;
    assert_int_equal(kvc_router_choose(r, 1003, "m3", t, 4, NULL, &ch, NULL), 0);
    assert_int_equal(s_reason(&ch, "b"), KVC_ROUTER_SATURATED);
    t[1].in_flight = 8;
    assert_int_equal(kvc_router_choose(r, 1004, "m4", t, 4, NULL, &ch, NULL), 0);
    assert_int_equal(s_reason(&ch, "b"), KVC_ROUTER_ELIGIBLE);
    /* Unknown RTT costs unknown_rtt_ms (100): b at 100 + 7 > c's 84. */
    t[1].in_flight = 0;
    t[1].rtt_us = -1;
    assert_int_equal(kvc_router_choose(r, 1005, "m5", t, 4, NULL, &ch, NULL), 0);
    assert_string_equal(ch.cands[0].site, "c");
    assert_float_equal(ch.cands[1].rtt_ms, 100.0, 1e-9);
    /* Local saturated overflows to the others. */
    s_table(t);
    t[0].in_flight = 10;
    assert_int_equal(kvc_router_choose(r, 1006, "m6", t, 4, NULL, &ch, NULL), 0);
    assert_string_equal(ch.cands[0].site, "b");
    assert_int_equal(s_reason(&ch, "a"), KVC_ROUTER_SATURATED);
    kvc_router_destroy(&r);
}

static void test_partitioned_never_chosen(void **state)
{
    kvc_router_t *r = s_router();
    kvc_router_site_t t[4];
    s_table(t);
    kvc_router_choice_t ch;
    t[0].ready = 0;
    t[1].reachable = 0; /* the nearest is cut off */
    for (uint64_t now = 0; now < 30000; now += 100) {
        assert_int_equal(kvc_router_choose(r, now, "m", t, 4, NULL, &ch, NULL), 0);
        assert_string_equal(ch.cands[0].site, "c");
        for (size_t i = 0; i < ch.n_ranked; i++)
            assert_string_not_equal(ch.cands[i].site, "b");
        assert_int_equal(s_reason(&ch, "b"), KVC_ROUTER_UNREACHABLE);
    }
    /* Everything cut off: 503 with a reason per site. */
    t[2].reachable = 0;
    kvc_err_t err;
    assert_int_equal(kvc_router_choose(r, 40000, "m", t, 4, NULL, &ch, &err), KVC_EUNAVAIL);
    assert_int_equal(ch.n_ranked, 0);
    assert_string_equal(err.msg,
                        "no site can serve m: a: not ready; b: unreachable; c: unreachable; "
                        "d: not placed");
    kvc_router_destroy(&r);
}

static void test_constraints(void **state)
{
    kvc_router_t *r = s_router();
    kvc_router_site_t t[4];
    s_table(t);
    kvc_router_choice_t ch;
    kvc_router_constraint_t c;
    kvc_err_t err;
    /* accelerator=gpu: only b (nvidia) qualifies, local a is cpu-only. */
    assert_int_equal(kvc_router_constraint_parse("accelerator=gpu", 15, &c, &err), 0);
    assert_int_equal(kvc_router_choose(r, 1000, "m", t, 4, &c, &ch, &err), 0);
    assert_int_equal(ch.n_ranked, 1);
    assert_string_equal(ch.cands[0].site, "b");
    assert_int_equal(s_reason(&ch, "a"), KVC_ROUTER_CONSTRAINT_UNMET);
    assert_int_equal(s_reason(&ch, "c"), KVC_ROUTER_CONSTRAINT_UNMET);
    /* region=us-east: c (d is unplaced). */
    const char *txt = " region=US-East , arch=arm64";
    assert_int_equal(kvc_router_constraint_parse(txt, strlen(txt), &c, &err), 0);
    assert_string_equal(c.region, "us-east");
    assert_int_equal(kvc_router_choose(r, 1001, "m", t, 4, &c, &ch, &err), 0);
    assert_int_equal(ch.n_ranked, 1);
    assert_string_equal(ch.cands[0].site, "c");
    /* site=a pins local. */
    assert_int_equal(kvc_router_constraint_parse("site=a", 6, &c, &err), 0);
    assert_int_equal(kvc_router_choose(r, 1002, "m", t, 4, &c, &ch, &err), 0);
    assert_int_equal(ch.n_ranked, 1);
    assert_string_equal(ch.cands[0].site, "a");
    /* tpu in eu-west: nobody. 503 with every site's reason. */
    txt = "accelerator=tpu,region=eu-west";
    assert_int_equal(kvc_router_constraint_parse(txt, strlen(txt), &c, &err), 0);
    assert_int_equal(kvc_router_choose(r, 1003, "m", t, 4, &c, &ch, &err), KVC_EUNAVAIL);
    assert_int_equal(err.code, KVC_EUNAVAIL);
    assert_string_equal(err.msg, "no site can serve m: a: constraint unmet; b: constraint unmet; "
                                 "c: constraint unmet; d: not placed");
    /* accelerator=none matches a (no accelerator) and a site whose count is 0. */
    assert_int_equal(kvc_router_constraint_parse("accelerator=none", 16, &c, &err), 0);
    t[2].accel_count = 0;
    assert_int_equal(kvc_router_choose(r, 1004, "m", t, 4, &c, &ch, &err), 0);
    assert_int_equal(ch.n_ranked, 2);
    assert_int_equal(s_reason(&ch, "b"), KVC_ROUTER_CONSTRAINT_UNMET);
    /* Met-function details: gpu covers amd, not tpu/npu. */
    kvc_router_site_t s = t[1];
    assert_int_equal(kvc_router_constraint_parse("accelerator=gpu", 15, &c, &err), 0);
    s.accel = KVC_ACCEL_AMD;
    assert_true(kvc_router_constraint_met(&c, &s));
    s.accel = KVC_ACCEL_NPU;
    assert_false(kvc_router_constraint_met(&c, &s));
    s.accel = KVC_ACCEL_NVIDIA;
    s.accel_count = 0;
    assert_false(kvc_router_constraint_met(&c, &s));
    assert_true(kvc_router_constraint_met(NULL, &s));
    s.region = NULL;
    assert_int_equal(kvc_router_constraint_parse("region=x", 8, &c, &err), 0);
    assert_false(kvc_router_constraint_met(&c, &s));
    /* No sites at all. */
    assert_int_equal(kvc_router_choose(r, 1005, "m", NULL, 0, NULL, &ch, &err), KVC_EUNAVAIL);
    assert_string_equal(err.msg, "no site can serve m: no sites");
    kvc_router_destroy(&r);
}

static void test_constraint_hostile(void **state)
{
    kvc_router_constraint_t c;
    kvc_err_t err;
    static const struct {
        const char *s;
        int rc;
        const char *msg; /* substring */
    } t[] = {
        {"accelerator=gpu,site=b,region=eu-west,arch=x86_64", 0, NULL},
        {"", 0, NULL},
        {"   ", 0, NULL},
        {"ACCELERATOR = NVIDIA", 0, NULL},
        {"accelerator=gpu,", KVC_EPARSE, "empty item at offset 16"},
        {",site=a", KVC_EPARSE, "empty item at offset 0"},
        {"site=a,,region=b", KVC_EPARSE, "empty item at offset 7"},
        {"site", KVC_EPARSE, "want key=value"},
        {"site=", KVC_EPARSE, "want a name"},
        {"site=a b", KVC_EPARSE, "want a name"},
        {"site=a=b", KVC_EPARSE, "want a name"},
        {"site=a,site=b", KVC_EPARSE, "key given twice"},
        {"accelerator=gpu,accelerator=tpu", KVC_EPARSE, "key given twice"},
        {"accelerator=fpga", KVC_EPARSE, "gpu, nvidia, amd, tpu, npu or none"},
        {"colour=blue", KVC_EPARSE, "unknown key"},
        {"=gpu", KVC_EPARSE, "unknown key"},
        {"site=\"a\"", KVC_EPARSE, "want a name"},
        {"site=a\r\nX-Evil: 1", KVC_EPARSE, "byte 0x0d at offset 6"},
        {"site=\xc3\xa9", KVC_EPARSE, "byte 0xc3"},
        {"site=a\x7f", KVC_EPARSE, "byte 0x7f"},
        {"region=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", KVC_EPARSE,
         "want a name"}, /* 64 chars */
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        memset(&err, 0, sizeof(err));
        int rc = kvc_router_constraint_parse(t[i].s, strlen(t[i].s), &c, &err);
        if (rc != t[i].rc)
            fail_msg("row %zu '%s': rc %d want %d (%s)", i, t[i].s, rc, t[i].rc, err.msg);
        if (t[i].msg && !strstr(err.msg, t[i].msg))
            fail_msg("row %zu '%s': message '%s' lacks '%s'", i, t[i].s, err.msg, t[i].msg);
        if (rc != 0) { /* nothing half-parsed is left behind */
            assert_int_equal(c.accel, KVC_ROUTER_WANT_ANY);
            assert_string_equal(c.site, "");
        }
    }
    assert_int_equal(kvc_router_constraint_parse("ACCELERATOR = NVIDIA", 20, &c, &err), 0);
    assert_int_equal(c.accel, KVC_ROUTER_WANT_NVIDIA);
    /* An embedded NUL inside len is refused, not read as the end. */
    assert_int_equal(kvc_router_constraint_parse("site=a\0region=b", 15, &c, &err), KVC_EPARSE);
    assert_non_null(strstr(err.msg, "byte 0x00 at offset 6"));
    /* 63-char names are fine; longer than the header bound is ERANGE. */
    char big[KVC_ROUTER_CONSTRAINT_MAX + 2];
    memset(big, 'a', sizeof(big));
    memcpy(big, "site=", 5);
    assert_int_equal(kvc_router_constraint_parse(big, 5 + 63, &c, &err), 0);
    assert_int_equal(strlen(c.site), 63);
    assert_int_equal(kvc_router_constraint_parse(big, sizeof(big), &c, &err), KVC_ERANGE);
    assert_int_equal(kvc_router_constraint_parse(NULL, 0, &c, NULL), 0);
    assert_int_equal(kvc_router_constraint_parse(NULL, 3, &c, NULL), KVC_EINVAL);
    assert_int_equal(kvc_router_constraint_parse("site=a", 6, NULL, NULL), KVC_EINVAL);
}

/* b's health flaps every tick for a minute: the choice never oscillates. */
static void test_flapping_no_oscillation(void **state)
{
    kvc_router_t *r = s_router();
    kvc_router_site_t t[4];
    s_table(t);
    kvc_router_choice_t ch;
    t[0].ready = 0; /* local down, so the others matter */
    int changes = 0;
    char prev[KVC_ROUTER_NAME_MAX + 1] = "";
    for (uint64_t now = 0; now < 60000; now += 100) {
        t[1].ready = (now / 100) % 2 == 0;
        assert_int_equal(kvc_router_choose(r, now, "m", t, 4, NULL, &ch, NULL), 0);
        if (strcmp(prev, ch.cands[0].site) != 0) {
            changes++;
            snprintf(prev, sizeof(prev), "%s", ch.cands[0].site);
        }
        /* b may be tried after c, never before, while it flaps. */
        if (now > 0)
            assert_string_equal(ch.cands[0].site, "c");
    }
    assert_true(changes <= 2); /* b at t=0 (first seen ready), then c */
    /* b steady again: it comes back once holddown_ms (2 s) has passed
     * since it was last seen not ready (its score is far better). */
    t[1].ready = 1;
    uint64_t last_bad = 59900, back = 0;
    for (uint64_t now = 60000; now < 70000 && !back; now += 100) {
        assert_int_equal(kvc_router_choose(r, now, "m", t, 4, NULL, &ch, NULL), 0);
        if (strcmp(ch.cands[0].site, "b") == 0)
            back = now;
    }
    assert_int_equal(back, last_bad + 2000);
    kvc_router_destroy(&r);
}

/* Among remotes, a small improvement does not displace the current
 * choice; a large one does at once; a small lasting one after the hold. */
static void test_switch_margin_and_hold(void **state)
{
    kvc_router_t *r = s_router();
    kvc_router_site_t t[4];
    s_table(t);
    kvc_router_choice_t ch;
    t[0].ready = 0;
    t[1].rtt_us = 70000; /* b: 70 + 7 = 77 ms; c: 84 ms */
    assert_int_equal(kvc_router_choose(r, 10000, "m", t, 4, NULL, &ch, NULL), 0);
    assert_string_equal(ch.cands[0].site, "b");
    /* c gets 10 ms better than b: 74 vs 77 is under the 20% margin. */
    t[2].rtt_us = 70000;
    for (uint64_t now = 10100; now < 20100; now += 100) {
        assert_int_equal(kvc_router_choose(r, now, "m", t, 4, NULL, &ch, NULL), 0);
        assert_string_equal(ch.cands[0].site, "b");
        assert_true(ch.cands[0].current);
        assert_string_equal(ch.cands[1].site, "c");
    }
    /* ... until it has been better for switch_hold_ms (10 s). */
    assert_int_equal(kvc_router_choose(r, 20100, "m", t, 4, NULL, &ch, NULL), 0);
    assert_string_equal(ch.cands[0].site, "c");
    assert_true(ch.changed);
    /* b becomes much better (20 ms vs 74): switches at once. */
    t[1].rtt_us = 10000;
    assert_int_equal(kvc_router_choose(r, 20200, "m", t, 4, NULL, &ch, NULL), 0);
    assert_string_equal(ch.cands[0].site, "b");
    kvc_router_destroy(&r);
}

/* The breaker per site drives exclusion, probing and fail back. */
static void test_breaker_fail_over_and_back(void **state)
{
    kvc_router_t *r = s_router();
    kvc_router_site_t t[4];
    s_table(t);
    kvc_router_choice_t ch;
    uint64_t now = 1000;
    /* Local refuses connections (its health check has not noticed yet). */
    for (int i = 0; i < 5; i++, now += 10) {
        assert_int_equal(kvc_router_choose(r, now, "m", t, 4, NULL, &ch, NULL), 0);
        assert_string_equal(ch.cands[0].site, "a");
        assert_int_equal(kvc_router_begin(r, now, "a"), 1);
        kvc_router_report(r, now, "a",
                          kvc_breaker_classify(KVC_CALL_E_REFUSED, 0, 0)); /* retry at b */
    }
    uint64_t opened = now - 10;
    assert_int_equal(kvc_router_breaker_state(r, "a", now), KVC_BREAKER_OPEN);
    assert_int_equal(kvc_router_choose(r, now, "m", t, 4, NULL, &ch, NULL), 0);
    assert_string_equal(ch.cands[0].site, "b");
    assert_int_equal(s_reason(&ch, "a"), KVC_ROUTER_CIRCUIT_OPEN);
    /* After the 1 s cool-down local is first again, as the probe. */
    now = opened + 1000;
    assert_int_equal(kvc_router_choose(r, now, "m", t, 4, NULL, &ch, NULL), 0);
    assert_string_equal(ch.cands[0].site, "a");
    assert_true(ch.cands[0].probe);
    assert_int_equal(kvc_router_begin(r, now, "a"), 1);
    /* A concurrent request sees the probe slot taken: a is out. */
    assert_int_equal(kvc_router_choose(r, now + 1, "m", t, 4, NULL, &ch, NULL), 0);
    assert_string_equal(ch.cands[0].site, "b");
    assert_int_equal(kvc_router_begin(r, now + 1, "a"), 0);
    kvc_router_report(r, now + 2, "a", KVC_CALL_RETRY); /* still down: 2 s */
    /* The backend recovers at R; traffic flows every 50 ms; it must be
     * local again within cooldown_max_ms (4 s) < the 5 s goal. */
    uint64_t recovered = now + 500, back = 0;
    int probes = 0;
    for (now = now + 3; now < recovered + 10000 && !back; now += 50) {
        assert_int_equal(kvc_router_choose(r, now, "m", t, 4, NULL, &ch, NULL), 0);
        for (size_t i = 0; i < ch.n_ranked; i++) {
            if (!kvc_router_begin(r, now, ch.cands[i].site))
                continue;
            int up = strcmp(ch.cands[i].site, "a") != 0 || now >= recovered;
            if (ch.cands[i].probe)
                probes++;
            kvc_router_report(r, now, ch.cands[i].site, up ? KVC_CALL_SUCCESS : KVC_CALL_RETRY);
            if (up && i == 0 && strcmp(ch.cands[0].site, "a") == 0 && !ch.cands[0].probe)
                back = now;
            if (up)
                break;
        }
    }
    assert_true(back > 0);
    assert_true(back - recovered <= 5000);
    assert_true(probes >= 1);
    assert_int_equal(kvc_router_breaker_state(r, "a", now), KVC_BREAKER_CLOSED);
    /* Unknown site names are harmless. */
    assert_int_equal(kvc_router_breaker_state(r, "zz", now), KVC_BREAKER_CLOSED);
    assert_int_equal(kvc_router_begin(r, now, "bad name"), 0);
    kvc_router_report(r, now, NULL, KVC_CALL_RETRY);
    kvc_router_destroy(&r);
}

/* Local health flapping: local is held down while it flaps, and comes
 * back holddown_ms after it steadies. */
static void test_local_flapping_held(void **state)
{
    kvc_router_t *r = s_router();
    kvc_router_site_t t[4];
    s_table(t);
    kvc_router_choice_t ch;
    int changes = 0;
    char prev[KVC_ROUTER_NAME_MAX + 1] = "a";
    for (uint64_t now = 1000; now < 20000; now += 100) {
        t[0].ready = (now / 100) % 2;
        assert_int_equal(kvc_router_choose(r, now, "m", t, 4, NULL, &ch, NULL), 0);
        if (strcmp(prev, ch.cands[0].site) != 0) {
            changes++;
            snprintf(prev, sizeof(prev), "%s", ch.cands[0].site);
        }
    }
    assert_int_equal(changes, 1); /* a -> b once */
    assert_string_equal(prev, "b");
    t[0].ready = 1;
    assert_int_equal(kvc_router_choose(r, 21700, "m", t, 4, NULL, &ch, NULL), 0);
    assert_string_equal(ch.cands[0].site, "b");
    assert_true(s_find(&ch, "a") >= 0 && ch.cands[s_find(&ch, "a")].held);
    assert_int_equal(kvc_router_choose(r, 21800, "m", t, 4, NULL, &ch, NULL), 0);
    assert_string_equal(ch.cands[0].site, "a"); /* last not ready at 19800, + 2000 */
    kvc_router_destroy(&r);
}

static void test_bad_tables(void **state)
{
    kvc_router_t *r = s_router();
    kvc_router_site_t t[4];
    kvc_router_choice_t ch;
    kvc_err_t err;
    s_table(t);
    t[1].site = "a";
    assert_int_equal(kvc_router_choose(r, 0, "m", t, 4, NULL, &ch, &err), KVC_EINVAL);
    assert_non_null(strstr(err.msg, "twice"));
    s_table(t);
    t[1].is_local = 1;
    assert_int_equal(kvc_router_choose(r, 0, "m", t, 4, NULL, &ch, &err), KVC_EINVAL);
    s_table(t);
    t[2].site = NULL;
    assert_int_equal(kvc_router_choose(r, 0, "m", t, 4, NULL, &ch, &err), KVC_EINVAL);
    s_table(t);
    t[2].site = "c\"x";
    assert_int_equal(kvc_router_choose(r, 0, "m", t, 4, NULL, &ch, &err), KVC_EINVAL);
    s_table(t);
    assert_int_equal(kvc_router_choose(r, 0, "", t, 4, NULL, &ch, &err), KVC_EINVAL);
    assert_int_equal(kvc_router_choose(r, 0, NULL, t, 4, NULL, &ch, &err), KVC_EINVAL);
    assert_int_equal(kvc_router_choose(r, 0, "m", t, KVC_ROUTER_SITES_MAX + 1, NULL, &ch, &err),
                     KVC_ERANGE);
    assert_int_equal(kvc_router_choose(NULL, 0, "m", t, 4, NULL, &ch, &err), KVC_EINVAL);
    kvc_router_config_t cfg;
    kvc_router_config_default(&cfg);
    cfg.saturation_low_pct = 0;
    assert_null(kvc_router_new(&cfg));
    assert_int_equal(kvc_router_config_check(&cfg, &err), KVC_EINVAL);
    kvc_router_config_default(&cfg);
    cfg.breaker.cooldown_ms = 0;
    assert_int_equal(kvc_router_config_check(&cfg, &err), KVC_EINVAL);
    assert_non_null(strstr(err.msg, "router.breaker.cooldown_ms"));
    /* Many models and sites over time: the bounded tables evict, no growth. */
    char names[KVC_ROUTER_SITES_MAX][16];
    kvc_router_site_t many[KVC_ROUTER_SITES_MAX];
    for (int round = 0; round < 10; round++) {
        for (int i = 0; i < KVC_ROUTER_SITES_MAX; i++) {
            snprintf(names[i], sizeof(names[i]), "s%d-%d", round, i);
            many[i] = t[1];
            many[i].site = names[i];
        }
        char model[32];
        for (int m = 0; m < 40; m++) {
            snprintf(model, sizeof(model), "model-%d-%d", round, m);
            assert_int_equal(kvc_router_choose(r, (uint64_t)round * 1000 + (uint64_t)m, model, many,
                                               KVC_ROUTER_SITES_MAX, NULL, &ch, &err),
                             0);
            assert_int_equal(ch.n_ranked, KVC_ROUTER_SITES_MAX);
        }
    }
    kvc_router_destroy(&r);
}

static void test_explain_json(void **state)
{
    kvc_router_t *r = s_router();
    kvc_router_site_t t[4];
    s_table(t);
    t[2].reachable = 0;
    kvc_router_choice_t ch;
    assert_int_equal(kvc_router_choose(r, 1000, "m\"1", t, 4, NULL, &ch, NULL), 0);
    char buf[4096];
    size_t len = 0;
    assert_int_equal(kvc_router_explain_json(&ch, buf, sizeof(buf), &len), 0);
    assert_int_equal(len, strlen(buf));
    assert_string_equal(
        buf,
        "{\"model\":\"m\\\"1\",\"chosen\":\"a\",\"candidates\":["
        "{\"site\":\"a\",\"region\":\"eu-west\",\"local\":true,\"rank\":1,\"score_ms\":6.000,"
        "\"rtt_ms\":0.000,\"latency_ms\":6.000,\"load_ms\":0.000,\"held\":false,\"probe\":false,"
        "\"current\":false},"
        "{\"site\":\"b\",\"region\":\"eu-west\",\"local\":false,\"rank\":2,\"score_ms\":17.000,"
        "\"rtt_ms\":10.000,\"latency_ms\":7.000,\"load_ms\":0.000,\"held\":false,\"probe\":false,"
        "\"current\":false}],"
        "\"excluded\":[{\"site\":\"c\",\"region\":\"us-east\",\"local\":false,\"reason\":"
        "\"unreachable\"},{\"site\":\"d\",\"region\":\"us-east\",\"local\":false,\"reason\":"
        "\"not placed\"}]}");
    /* Every size short of the whole fails cleanly with "" in buf. */
    for (size_t sz = 1; sz <= len; sz++) {
        assert_int_equal(kvc_router_explain_json(&ch, buf, sz, &len), KVC_ERANGE);
        assert_string_equal(buf, "");
    }
    assert_int_equal(kvc_router_explain_json(&ch, buf, 0, NULL), KVC_ERANGE);
    /* A 503 choice explains too: chosen is null. */
    kvc_router_constraint_t c;
    assert_int_equal(kvc_router_constraint_parse("accelerator=npu", 15, &c, NULL), 0);
    assert_int_equal(kvc_router_choose(r, 1001, "m", t, 4, &c, &ch, NULL), KVC_EUNAVAIL);
    assert_int_equal(kvc_router_explain_json(&ch, buf, sizeof(buf), NULL), 0);
    assert_non_null(strstr(buf, "\"chosen\":null,\"candidates\":[],"));
    assert_non_null(strstr(buf, "\"reason\":\"constraint unmet\""));
    kvc_router_destroy(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_local_preferred),
        cmocka_unit_test(test_nearest_when_local_down),
        cmocka_unit_test(test_partitioned_never_chosen),
        cmocka_unit_test(test_constraints),
        cmocka_unit_test(test_constraint_hostile),
        cmocka_unit_test(test_flapping_no_oscillation),
        cmocka_unit_test(test_switch_margin_and_hold),
        cmocka_unit_test(test_breaker_fail_over_and_back),
        cmocka_unit_test(test_local_flapping_held),
        cmocka_unit_test(test_bad_tables),
        cmocka_unit_test(test_explain_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
