/*
 * Unit tests of federation/health.c. Up to four real cores are wired
 * through one outbox in-process: every message a call leaves is delivered
 * at once to the core it is addressed to (unless the test cuts that link),
 * and the simulated clock is stepped by hand, so each assertion names the
 * millisecond a report must arrive. Hostile bytes are hand-built with the
 * generated protobuf-c structs; allocation failures use kvc_alloc_fail_after.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "health.h"
#include "health.pb-c.h"

#define NMAX 4

typedef struct {
    kvc_health_t *h[NMAX];
    char ids[NMAX][32];
    int n;
    uint64_t now;
    kvc_outbox_t out;
    int cut[NMAX][NMAX];
    uint64_t delivered[NMAX]; /* messages received, per core */
} net_t;

static kvc_health_config_t s_cfg(void)
{
    kvc_health_config_t c;
    kvc_health_config_default(&c);
    return c;
}

static int s_index(const net_t *w, const char *id)
{
    for (int i = 0; i < w->n; i++)
        if (strcmp(w->ids[i], id) == 0)
            return i;
    return -1;
}

/* Delivers what core `from` left in the outbox. */
static void s_flush(net_t *w, int from)
{
    kvc_outbox_t out;
    out = w->out; /* deliveries may append; take the batch */
    kvc_outbox_init(&w->out, 0);
    for (size_t k = 0; k < out.n_msgs; k++) {
        const kvc_out_msg_t *m = &out.msgs[k];
        assert_int_equal(m->channel, KVC_HEALTH_CHANNEL);
        assert_true(m->len <= KVC_HEALTH_WIRE_MAX);
        int to = s_index(w, m->to);
        if (to < 0 || !w->h[to] || w->cut[from][to])
            continue;
        assert_int_equal(kvc_health_receive(w->h[to], w->now, w->ids[from],
                                            kvc_outbox_data(&out, k), m->len, &w->out),
                         0);
        assert_int_equal(w->out.n_msgs, 0); /* receive never answers */
        w->delivered[to]++;
    }
    kvc_outbox_free(&out);
}

static void s_event(net_t *w, int at, kvc_member_event_type_t type, int about)
{
    kvc_member_event_t ev;
    memset(&ev, 0, sizeof ev);
    ev.type = type;
    kvc_strlcpy(ev.id, w->ids[about], sizeof ev.id);
    kvc_health_member_event(w->h[at], w->now, &ev, &w->out);
    assert_int_equal(w->out.n_msgs, 0);
}

/* Every core hears JOINED of every other. */
static void s_all_join(net_t *w)
{
    for (int i = 0; i < w->n; i++)
        for (int j = 0; j < w->n; j++)
            if (i != j)
                s_event(w, i, KVC_MEMBER_EV_JOINED, j);
}

static void s_net_init(net_t *w, int n, const kvc_health_config_t *cfg)
{
    memset(w, 0, sizeof *w);
    w->n = n;
    kvc_outbox_init(&w->out, 0);
    for (int i = 0; i < n; i++) {
        snprintf(w->ids[i], sizeof w->ids[i], "s%d/p", i);
        w->h[i] = kvc_health_new(w->ids[i], cfg, 100 + (uint64_t)i);
        assert_non_null(w->h[i]);
    }
}

static void s_net_free(net_t *w)
{
    for (int i = 0; i < w->n; i++)
        kvc_health_destroy(&w->h[i]);
    kvc_outbox_free(&w->out);
}

/* Ticks every core that is due now; returns how many messages left. */
static size_t s_tick(net_t *w)
{
    size_t sent = 0;
    for (int i = 0; i < w->n; i++) {
        if (!w->h[i] || kvc_health_next_deadline(w->h[i]) > w->now)
            continue;
        assert_int_equal(kvc_health_tick(w->h[i], w->now, &w->out), 0);
        sent += w->out.n_msgs;
        s_flush(w, i);
    }
    return sent;
}

/* Steps the clock to t one millisecond at a time, ticking what is due. */
static void s_run_to(net_t *w, uint64_t t)
{
    while (w->now < t) {
        w->now++;
        s_tick(w);
    }
}

static kvc_health_local_t *s_local_new(void)
{
    kvc_health_local_t *l = calloc(1, sizeof *l);
    assert_non_null(l);
    return l;
}

static void s_add_model(kvc_health_local_t *l, const char *name, int ready, uint32_t in_flight,
                        uint32_t capacity, int64_t p50, int64_t p99)
{
    kvc_health_model_t *m = &l->models[l->n_models++];
    memset(m, 0, sizeof *m);
    kvc_strlcpy(m->name, name, sizeof m->name);
    m->ready = ready;
    m->in_flight = in_flight;
    m->capacity = capacity;
    m->p50_us = p50;
    m->p99_us = p99;
}

/* A local report of one model m (ready, 1/10 in flight, 5 ms / 20 ms). */
static kvc_health_local_t *s_simple(void)
{
    kvc_health_local_t *l = s_local_new();
    kvc_strlcpy(l->region, "eu-west", sizeof l->region);
    kvc_strlcpy(l->arch, "x86_64", sizeof l->arch);
    l->accel = KVC_ACCEL_NVIDIA;
    l->accel_count = 2;
    kvc_strlcpy(l->forward, "tcp://10.0.0.1:7001", sizeof l->forward);
    s_add_model(l, "m", 1, 1, 10, 5000, 20000);
    return l;
}

static size_t s_lookup(net_t *w, int at, const char *model)
{
    kvc_health_view_t v[NMAX];
    return kvc_health_lookup(w->h[at], w->now, model, v, NMAX);
}

static kvc_health_stats_t s_stats(const kvc_health_t *h)
{
    kvc_health_stats_t st;
    kvc_health_stats(h, &st);
    return st;
}

/* --- tests --------------------------------------------------------------- */

/* Nothing goes out before set_local; the first tick after it reaches every
 * member, with every field intact. */
static void test_first_tick(void **state)
{
    (void)state;
    net_t w;
    s_net_init(&w, 3, NULL);
    s_all_join(&w);
    w.now = 1000;
    assert_int_equal(s_tick(&w), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(kvc_health_next_deadline(w.h[i]), KVC_DEADLINE_NONE);
    kvc_health_local_t *l = s_simple();
    assert_int_equal(kvc_health_set_local(w.h[0], w.now, l), 0);
    assert_int_equal(kvc_health_next_deadline(w.h[0]), 0);
    assert_int_equal(s_lookup(&w, 1, "m"), 0);
    w.now = 1001;
    assert_int_equal(s_tick(&w), 2);
    assert_int_equal(s_lookup(&w, 1, "m"), 1);
    assert_int_equal(s_lookup(&w, 2, "m"), 1);
    kvc_health_view_t v;
    assert_int_equal(kvc_health_lookup(w.h[2], w.now, "m", &v, 1), 1);
    assert_string_equal(v.member, "s0/p");
    assert_string_equal(v.site, "s0");
    assert_string_equal(v.region, "eu-west");
    assert_string_equal(v.arch, "x86_64");
    assert_string_equal(v.forward, "tcp://10.0.0.1:7001");
    assert_int_equal(v.accel, KVC_ACCEL_NVIDIA);
    assert_int_equal(v.accel_count, 2);
    assert_int_equal(v.age_ms, 0);
    assert_string_equal(v.model.name, "m");
    assert_true(v.model.ready);
    assert_int_equal(v.model.in_flight, 1);
    assert_int_equal(v.model.capacity, 10);
    assert_int_equal(v.model.p50_us, 5000);
    assert_int_equal(v.model.p99_us, 20000);
    /* the sender's counters */
    kvc_health_stats_t st = s_stats(w.h[0]);
    assert_int_equal(st.sent, 2);
    assert_int_equal(st.rounds, 1);
    assert_true(st.bytes_sent > 2 * 40 && st.bytes_sent < 2 * 120);
    assert_int_equal(st.members, 2);
    assert_int_equal(s_stats(w.h[1]).received, 1);
    assert_int_equal(s_stats(w.h[1]).held, 1);
    /* a report from a member we have no event for yet is kept too */
    assert_int_equal(kvc_health_set_local(w.h[1], w.now, l), 0);
    s_event(&w, 1, KVC_MEMBER_EV_LEFT, 2);
    s_tick(&w);
    assert_int_equal(s_lookup(&w, 0, "m"), 1);
    assert_int_equal(s_lookup(&w, 2, "m"), 1);
    free(l);
    s_net_free(&w);
}

/* A member heard of after our rounds started gets our report at the next
 * tick, alone; a restarted peer learns everything within one tick. */
static void test_joined_gets_report(void **state)
{
    (void)state;
    net_t w;
    s_net_init(&w, 3, NULL);
    kvc_health_local_t *l = s_simple();
    for (int i = 0; i < 3; i++)
        assert_int_equal(kvc_health_set_local(w.h[i], w.now, l), 0);
    s_event(&w, 0, KVC_MEMBER_EV_JOINED, 1);
    s_event(&w, 1, KVC_MEMBER_EV_JOINED, 0);
    s_run_to(&w, 500);
    assert_int_equal(s_lookup(&w, 1, "m"), 1);
    assert_int_equal(s_lookup(&w, 2, "m"), 0);
    /* 0 hears of 2 at 500: the next tick sends to 2 only, no new round */
    uint64_t rounds = s_stats(w.h[0]).rounds, sent = s_stats(w.h[0]).sent;
    s_event(&w, 0, KVC_MEMBER_EV_JOINED, 2);
    assert_int_equal(kvc_health_next_deadline(w.h[0]), 0);
    w.now = 501;
    s_tick(&w);
    assert_int_equal(s_stats(w.h[0]).rounds, rounds);
    assert_int_equal(s_stats(w.h[0]).sent, sent + 1);
    assert_int_equal(s_lookup(&w, 2, "m"), 1);
    assert_int_equal(kvc_health_next_deadline(w.h[0]), 2001); /* heartbeat unchanged (round at 1) */
    /* 1 restarts with a new epoch: its first tick reaches 0, and 0's
     * ALIVE event makes 0 send to it at its next tick */
    kvc_health_destroy(&w.h[1]);
    w.h[1] = kvc_health_new(w.ids[1], NULL, 1000);
    assert_non_null(w.h[1]);
    assert_int_equal(kvc_health_set_local(w.h[1], w.now, l), 0);
    s_event(&w, 1, KVC_MEMBER_EV_JOINED, 0);
    s_event(&w, 0, KVC_MEMBER_EV_ALIVE, 1);
    w.now = 700;
    s_tick(&w);
    assert_int_equal(s_lookup(&w, 1, "m"), 1);
    kvc_health_report_t *r = malloc(sizeof *r);
    assert_non_null(r);
    assert_int_equal(kvc_health_member(w.h[0], w.now, w.ids[1], r), 0);
    assert_int_equal(r->epoch, 1000);
    assert_int_equal(r->seq, 1);
    assert_int_equal(r->age_ms, 0);
    /* our own report, for status */
    assert_int_equal(kvc_health_member(w.h[1], w.now, w.ids[1], r), 0);
    assert_int_equal(r->epoch, 1000);
    assert_string_equal(r->body.site, "s1");
    assert_int_equal(r->body.n_models, 1);
    assert_int_equal(kvc_health_member(w.h[2], w.now, w.ids[1], r), KVC_ENOENT);
    assert_int_equal(kvc_health_member(w.h[2], w.now, "nobody/x", r), KVC_ENOENT);
    free(r);
    free(l);
    s_net_free(&w);
}

/* A significant change goes out within min_interval_ms of the last round;
 * small moves wait for the heartbeat; a change undone is not announced. */
static void test_change_debounce(void **state)
{
    (void)state;
    net_t w;
    s_net_init(&w, 2, NULL);
    s_all_join(&w);
    kvc_health_local_t *l = s_simple();
    assert_int_equal(kvc_health_set_local(w.h[0], 0, l), 0);
    s_tick(&w); /* round at 0 */
    assert_int_equal(w.delivered[1], 1);
    w.now = 50;
    l->models[0].ready = 0;
    assert_int_equal(kvc_health_set_local(w.h[0], w.now, l), 0);
    assert_int_equal(kvc_health_next_deadline(w.h[0]), 200);
    s_run_to(&w, 199);
    assert_int_equal(w.delivered[1], 1);
    s_run_to(&w, 200);
    assert_int_equal(w.delivered[1], 2);
    kvc_health_view_t v;
    assert_int_equal(kvc_health_lookup(w.h[1], w.now, "m", &v, 1), 1);
    assert_false(v.model.ready);
    /* long after the last round a change leaves at the next tick */
    s_run_to(&w, 1000);
    const struct {
        int what;
        int64_t value;
        int significant;
    } cases[] = {
        {0, 2, 0},     /* in_flight 1 -> 2 of 10 */
        {0, 10, 1},    /* ... to capacity: saturated */
        {0, 12, 0},    /* still saturated */
        {0, 9, 1},     /* back below */
        {1, 20, 1},    /* capacity 10 -> 20 */
        {2, 6000, 0},  /* p50 +20% */
        {2, 6300, 1},  /* p50 +26% of the 5000 last sent */
        {3, 24000, 0}, /* p99 +20% */
        {3, -1, 1},    /* p99 unknown */
        {3, -7, 0},    /* still unknown */
        {4, 1, 1},     /* ready again */
        {5, 0, 1},     /* a model added */
        {6, 0, 1},     /* a model removed */
        {7, 0, 1},     /* region changed */
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        w.now += 300; /* past min_interval since any round */
        switch (cases[k].what) {
        case 0:
            l->models[0].in_flight = (uint32_t)cases[k].value;
            break;
        case 1:
            l->models[0].capacity = (uint32_t)cases[k].value;
            break;
        case 2:
            l->models[0].p50_us = cases[k].value;
            break;
        case 3:
            l->models[0].p99_us = cases[k].value;
            break;
        case 4:
            l->models[0].ready = 1;
            break;
        case 5:
            s_add_model(l, "extra", 1, 0, 0, -1, -1);
            break;
        case 6:
            l->n_models--;
            break;
        default:
            kvc_strlcpy(l->region, "eu-east", sizeof l->region);
            break;
        }
        uint64_t before = w.delivered[1];
        assert_int_equal(kvc_health_set_local(w.h[0], w.now, l), 0);
        size_t n = s_tick(&w);
        if (cases[k].significant != (n == 1))
            fail_msg("case %zu: significant %d, sent %zu", k, cases[k].significant, n);
        assert_int_equal(w.delivered[1], before + (size_t)cases[k].significant);
        if (cases[k].significant) /* the heartbeat clock restarts at a round */
            assert_int_equal(kvc_health_next_deadline(w.h[0]), w.now + 2000);
    }
    /* a change undone before it went out announces nothing */
    uint64_t at = w.now;
    w.now += 10;
    l->models[0].ready = 0;
    assert_int_equal(kvc_health_set_local(w.h[0], w.now, l), 0);
    assert_int_equal(kvc_health_next_deadline(w.h[0]), at + 200);
    l->models[0].ready = 1;
    assert_int_equal(kvc_health_set_local(w.h[0], w.now, l), 0);
    assert_int_equal(kvc_health_next_deadline(w.h[0]), at + 2000);
    /* changes at 5 ms intervals: at most one round per min_interval */
    uint64_t rounds = s_stats(w.h[0]).rounds, start = w.now;
    for (int i = 0; i < 200; i++) {
        w.now += 5;
        l->models[0].ready = i % 2;
        assert_int_equal(kvc_health_set_local(w.h[0], w.now, l), 0);
        s_tick(&w);
    }
    uint64_t made = s_stats(w.h[0]).rounds - rounds;
    assert_true(made >= 4 && made <= (w.now - start) / 200 + 1);
    free(l);
    s_net_free(&w);
}

/* With nothing changing a report leaves every heartbeat_ms exactly. */
static void test_heartbeat(void **state)
{
    (void)state;
    net_t w;
    kvc_health_config_t c = s_cfg();
    s_net_init(&w, 3, &c);
    s_all_join(&w);
    kvc_health_local_t *l = s_simple();
    assert_int_equal(kvc_health_set_local(w.h[0], 0, l), 0);
    s_tick(&w);
    uint64_t got[16];
    size_t n = 0;
    uint64_t last = w.delivered[1];
    while (w.now < 10000) {
        w.now++;
        s_tick(&w);
        if (w.delivered[1] != last) {
            assert_true(n < 16);
            got[n++] = w.now;
            last = w.delivered[1];
        }
        if (w.now % 1000 == 0) /* in_flight moves: no extra sends */
            l->models[0].in_flight = (uint32_t)(w.now / 1000 % 5);
        assert_int_equal(kvc_health_set_local(w.h[0], w.now, l), 0);
    }
    assert_int_equal(n, 5);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(got[i], 2000 * (i + 1));
    assert_int_equal(w.delivered[2], 6);
    /* the heartbeat carries the latest small values (set at 9000) */
    kvc_health_view_t v;
    assert_int_equal(kvc_health_lookup(w.h[1], w.now, "m", &v, 1), 1);
    assert_int_equal(v.model.in_flight, 4);
    /* seq rises by one per report */
    kvc_health_report_t *r = malloc(sizeof *r);
    assert_int_equal(kvc_health_member(w.h[1], w.now, w.ids[0], r), 0);
    assert_int_equal(r->seq, 6);
    assert_int_equal(r->epoch, 100);
    free(r);
    free(l);
    s_net_free(&w);
}

/* A report not refreshed for ttl_ms is absent at once and freed at tick. */
static void test_ttl(void **state)
{
    (void)state;
    net_t w;
    s_net_init(&w, 2, NULL);
    s_all_join(&w);
    kvc_health_local_t *l = s_simple();
    assert_int_equal(kvc_health_set_local(w.h[0], 0, l), 0);
    w.now = 100;
    s_tick(&w);
    w.cut[0][1] = 1; /* the link drops every later report */
    s_run_to(&w, 6099);
    assert_int_equal(s_lookup(&w, 1, "m"), 1);
    assert_int_equal(kvc_health_next_deadline(w.h[1]), 6100);
    w.now = 6100;
    assert_int_equal(s_lookup(&w, 1, "m"), 0); /* before any tick */
    kvc_health_report_t *r = malloc(sizeof *r);
    assert_int_equal(kvc_health_member(w.h[1], w.now, w.ids[0], r), KVC_ENOENT);
    assert_int_equal(s_stats(w.h[1]).held, 1);
    s_tick(&w);
    assert_int_equal(s_stats(w.h[1]).held, 0);
    assert_int_equal(s_stats(w.h[1]).expired, 1);
    assert_int_equal(s_stats(w.h[1]).members, 1); /* still a member */
    assert_int_equal(kvc_health_next_deadline(w.h[1]), KVC_DEADLINE_NONE);
    /* the link heals: the next heartbeat brings it back */
    w.cut[0][1] = 0;
    s_run_to(&w, 8100);
    assert_int_equal(s_lookup(&w, 1, "m"), 1);
    free(r);
    free(l);
    s_net_free(&w);
}

/* DEAD, LEFT and REAPED forget the member's report at once and stop our
 * sends to it; SUSPECT keeps both. */
static void test_member_gone(void **state)
{
    (void)state;
    const kvc_member_event_type_t gone[] = {KVC_MEMBER_EV_DEAD, KVC_MEMBER_EV_LEFT,
                                            KVC_MEMBER_EV_REAPED};
    for (size_t k = 0; k < 3; k++) {
        net_t w;
        s_net_init(&w, 2, NULL);
        s_all_join(&w);
        kvc_health_local_t *l = s_simple();
        assert_int_equal(kvc_health_set_local(w.h[0], 0, l), 0);
        assert_int_equal(kvc_health_set_local(w.h[1], 0, l), 0);
        s_tick(&w);
        assert_int_equal(s_lookup(&w, 1, "m"), 1);
        w.now = 100;
        s_event(&w, 1, KVC_MEMBER_EV_SUSPECT, 0);
        s_event(&w, 0, KVC_MEMBER_EV_SUSPECT, 1);
        assert_int_equal(s_lookup(&w, 1, "m"), 1);
        assert_true(kvc_health_next_deadline(w.h[0]) > w.now); /* nothing owed */
        s_run_to(&w, 2000);
        assert_int_equal(w.delivered[1], 2); /* still sent to */
        s_event(&w, 1, gone[k], 0);
        s_event(&w, 0, gone[k], 1);
        assert_int_equal(s_lookup(&w, 1, "m"), 0);
        assert_int_equal(s_stats(w.h[1]).held, 0);
        assert_int_equal(s_stats(w.h[0]).members, 0);
        uint64_t sent = s_stats(w.h[0]).sent;
        s_run_to(&w, 10000);
        assert_int_equal(s_stats(w.h[0]).sent, sent);
        assert_int_equal(w.delivered[1], 2);
        /* forgetting an unknown member is harmless */
        s_event(&w, 1, gone[k], 0);
        free(l);
        s_net_free(&w);
    }
}

/* Packs a valid report of body at (epoch, seq). */
static size_t s_enc(const kvc_health_local_t *b, uint64_t epoch, uint64_t seq, uint8_t *buf)
{
    size_t len = 0;
    assert_int_equal(kvc_health_encode(b, epoch, seq, buf, KVC_HEALTH_WIRE_MAX, &len), 0);
    return len;
}

/* The highest (epoch, seq) wins; a new epoch replaces any seq; once the
 * held one expired, any epoch is heard again. */
static void test_stale_and_epoch(void **state)
{
    (void)state;
    kvc_health_t *h = kvc_health_new("a/p", NULL, 1);
    assert_non_null(h);
    kvc_outbox_t out;
    kvc_outbox_init(&out, 0);
    kvc_health_local_t *b = s_simple();
    kvc_strlcpy(b->site, "b", sizeof b->site);
    uint8_t buf[KVC_HEALTH_WIRE_MAX];
    const struct {
        uint64_t epoch, seq;
        int in_flight;
        int accepted;
    } seq[] = {
        {5, 10, 1, 1}, {5, 9, 2, 0},   {5, 10, 3, 0}, {5, 11, 4, 1},
        {6, 1, 5, 1},  {5, 100, 6, 0}, {6, 1, 7, 0},  {6, 2, 8, 1},
    };
    uint64_t t = 10, stale = 0;
    int want = 0;
    for (size_t k = 0; k < sizeof seq / sizeof seq[0]; k++) {
        b->models[0].in_flight = (uint32_t)seq[k].in_flight;
        size_t len = s_enc(b, seq[k].epoch, seq[k].seq, buf);
        assert_int_equal(kvc_health_receive(h, t++, "b/p", buf, len, &out), 0);
        if (seq[k].accepted)
            want = seq[k].in_flight;
        else
            stale++;
        kvc_health_view_t v;
        assert_int_equal(kvc_health_lookup(h, t, "m", &v, 1), 1);
        assert_int_equal(v.model.in_flight, want);
    }
    assert_int_equal(s_stats(h).dropped_stale, stale);
    assert_int_equal(s_stats(h).received, 4);
    /* after the ttl an older epoch (a peer whose start id went back) is
     * accepted, even before the tick freed the old one */
    t += 6000;
    b->models[0].in_flight = 9;
    size_t len = s_enc(b, 2, 1, buf);
    assert_int_equal(kvc_health_receive(h, t, "b/p", buf, len, &out), 0);
    kvc_health_view_t v;
    assert_int_equal(kvc_health_lookup(h, t, "m", &v, 1), 1);
    assert_int_equal(v.model.in_flight, 9);
    /* our own report looped back is ignored */
    kvc_strlcpy(b->site, "a", sizeof b->site);
    len = s_enc(b, 1, 1, buf);
    assert_int_equal(kvc_health_receive(h, t, "a/p", buf, len, &out), 0);
    assert_int_equal(s_stats(h).held, 1);
    assert_int_equal(out.n_msgs, 0);
    free(b);
    kvc_outbox_free(&out);
    kvc_health_destroy(&h);
    assert_null(h);
}

/* A report claiming another site than the sender's is dropped, counted. */
static void test_site_mismatch(void **state)
{
    (void)state;
    kvc_health_t *h = kvc_health_new("a/p", NULL, 1);
    kvc_outbox_t out;
    kvc_outbox_init(&out, 0);
    kvc_health_local_t *b = s_simple();
    uint8_t buf[KVC_HEALTH_WIRE_MAX];
    const char *claims[][2] = {{"c", "b/p"}, {"b", "bb/p"}, {"bb", "b/p"}, {"b", "b"}};
    for (size_t k = 0; k < 4; k++) {
        kvc_strlcpy(b->site, claims[k][0], sizeof b->site);
        size_t len = s_enc(b, 1, 1, buf);
        assert_int_equal(kvc_health_receive(h, 1, claims[k][1], buf, len, &out), KVC_EPARSE);
    }
    assert_int_equal(s_stats(h).dropped_site, 4);
    assert_int_equal(s_stats(h).held, 0);
    assert_int_equal(kvc_health_lookup(h, 1, "m", NULL, 0), 0);
    kvc_strlcpy(b->site, "b", sizeof b->site);
    size_t len = s_enc(b, 1, 1, buf);
    assert_int_equal(kvc_health_receive(h, 1, "b/p", buf, len, &out), 0);
    assert_int_equal(s_stats(h).held, 1);
    /* bad arguments */
    assert_int_equal(kvc_health_receive(h, 1, NULL, buf, len, &out), KVC_EINVAL);
    assert_int_equal(kvc_health_receive(h, 1, "", buf, len, &out), KVC_EINVAL);
    assert_int_equal(kvc_health_receive(NULL, 1, "b/p", buf, len, &out), KVC_EINVAL);
    assert_int_equal(kvc_health_receive(h, 1, "b/p", NULL, 3, &out), KVC_EINVAL);
    char longid[KVC_MEMBER_ID_MAX + 2];
    memset(longid, 'b', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    longid[1] = '/';
    assert_int_equal(kvc_health_receive(h, 1, longid, buf, len, &out), KVC_EINVAL);
    free(b);
    kvc_outbox_free(&out);
    kvc_health_destroy(&h);
}

/* At most KVC_HEALTH_MEMBERS_MAX members: new senders and member events
 * beyond are refused and counted; held ones still update; expiry frees
 * room. */
static void test_table_full(void **state)
{
    (void)state;
    kvc_health_t *h = kvc_health_new("a/p", NULL, 1);
    kvc_outbox_t out;
    kvc_outbox_init(&out, 0);
    kvc_health_local_t *b = s_simple();
    kvc_strlcpy(b->site, "b", sizeof b->site);
    uint8_t buf[KVC_HEALTH_WIRE_MAX];
    size_t len = s_enc(b, 1, 1, buf);
    char id[32];
    for (int i = 0; i < KVC_HEALTH_MEMBERS_MAX; i++) {
        snprintf(id, sizeof id, "b/p%d", i);
        assert_int_equal(kvc_health_receive(h, 1, id, buf, len, &out), 0);
    }
    assert_int_equal(s_stats(h).held, KVC_HEALTH_MEMBERS_MAX);
    assert_int_equal(kvc_health_receive(h, 2, "b/new", buf, len, &out), 0);
    assert_int_equal(s_stats(h).dropped_full, 1);
    assert_int_equal(s_stats(h).held, KVC_HEALTH_MEMBERS_MAX);
    kvc_member_event_t ev = {.type = KVC_MEMBER_EV_JOINED};
    kvc_strlcpy(ev.id, "c/q", sizeof ev.id);
    kvc_health_member_event(h, 2, &ev, &out);
    assert_int_equal(s_stats(h).members_refused, 1);
    /* a held one still updates; a member event about it is taken */
    size_t len2 = s_enc(b, 1, 2, buf);
    assert_int_equal(kvc_health_receive(h, 3000, "b/p7", buf, len2, &out), 0);
    kvc_strlcpy(ev.id, "b/p9", sizeof ev.id);
    kvc_health_member_event(h, 3000, &ev, &out);
    assert_int_equal(s_stats(h).members, 1);
    assert_int_equal(s_stats(h).members_refused, 1);
    kvc_health_view_t *v = calloc(KVC_HEALTH_MEMBERS_MAX, sizeof *v);
    assert_int_equal(kvc_health_lookup(h, 3000, "m", v, KVC_HEALTH_MEMBERS_MAX),
                     KVC_HEALTH_MEMBERS_MAX);
    /* expiry at 6001 frees all but p7 and p9 (a member: kept, report gone) */
    assert_int_equal(kvc_health_next_deadline(h), 6001);
    assert_int_equal(kvc_health_tick(h, 6001, &out), 0);
    assert_int_equal(s_stats(h).held, 1);
    assert_int_equal(s_stats(h).expired, KVC_HEALTH_MEMBERS_MAX - 1);
    assert_int_equal(kvc_health_next_deadline(h), 9000);
    assert_int_equal(kvc_health_lookup(h, 6001, "m", v, KVC_HEALTH_MEMBERS_MAX), 1);
    assert_string_equal(v[0].member, "b/p7");
    assert_int_equal(kvc_health_receive(h, 6002, "b/new", buf, len, &out), 0);
    assert_int_equal(s_stats(h).held, 2);
    free(v);
    free(b);
    kvc_outbox_free(&out);
    kvc_health_destroy(&h);
}

/* Packs a hand-built Report (bypassing every check of encode). */
static size_t s_pack_raw(Kvc__Health__Report *r, uint8_t *buf, size_t cap)
{
    size_t n = kvc__health__report__get_packed_size(r);
    assert_true(n <= cap);
    return kvc__health__report__pack(r, buf);
}

/* Malformed, truncated, oversized and invalid reports: KVC_EPARSE, counted,
 * nothing changed. */
static void test_malformed(void **state)
{
    (void)state;
    kvc_health_t *h = kvc_health_new("a/p", NULL, 1);
    kvc_outbox_t out;
    kvc_outbox_init(&out, 0);
    kvc_health_local_t *b = s_simple();
    kvc_strlcpy(b->site, "b", sizeof b->site);
    s_add_model(b, "n", 0, 0, 0, -1, -1);
    static uint8_t buf[4 * KVC_HEALTH_WIRE_MAX];
    size_t good = s_enc(b, 1, 5, buf);
    assert_int_equal(kvc_health_receive(h, 1, "b/p", buf, good, &out), 0);
    uint64_t bad = 0;
    /* garbage */
    const uint8_t junk[][6] = {
        {0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, {0x0a, 0x05, 'a'}, {0x08, 0x80}, {0x00, 0x01}};
    const size_t junk_len[] = {6, 3, 2, 2};
    for (size_t k = 0; k < 4; k++) {
        assert_int_equal(kvc_health_receive(h, 2, "b/p", junk[k], junk_len[k], &out), KVC_EPARSE);
        bad++;
    }
    /* empty: version 0 */
    assert_int_equal(kvc_health_receive(h, 2, "b/p", buf, 0, &out), KVC_EPARSE);
    bad++;
    /* cut inside the last model */
    uint8_t *copy = malloc(good);
    memcpy(copy, buf, good);
    assert_int_equal(kvc_health_receive(h, 2, "b/p", copy, good - 1, &out), KVC_EPARSE);
    bad++;
    /* every prefix: parse error, or a valid shorter report that is stale */
    for (size_t n = 0; n < good; n++) {
        int rc = kvc_health_receive(h, 2, "b/p", copy, n, &out);
        assert_true(rc == KVC_EPARSE || rc == 0);
        bad += rc == KVC_EPARSE;
    }
    free(copy);
    /* oversized: a valid report padded past the bound with an unknown field */
    {
        size_t n = good;
        buf[n++] = 0xfa; /* field 15, length-delimited */
        buf[n++] = 0x01;
        size_t pad = KVC_HEALTH_WIRE_MAX + 10 - n - 2;
        buf[n++] = (uint8_t)(0x80 | (pad & 0x7f));
        buf[n++] = (uint8_t)(pad >> 7);
        memset(buf + n, 0, pad);
        n += pad;
        assert_true(n > KVC_HEALTH_WIRE_MAX);
        assert_int_equal(kvc_health_receive(h, 2, "b/p", buf, n, &out), KVC_EPARSE);
        bad++;
    }
    /* well-formed protobuf, invalid values */
    Kvc__Health__ModelHealth mh[KVC_HEALTH_MODELS_MAX + 1];
    Kvc__Health__ModelHealth *mp[KVC_HEALTH_MODELS_MAX + 1];
    char names[KVC_HEALTH_MODELS_MAX + 1][8];
    for (int i = 0; i <= KVC_HEALTH_MODELS_MAX; i++) {
        kvc__health__model_health__init(&mh[i]);
        snprintf(names[i], sizeof names[i], "m%d", i);
        mh[i].name = names[i];
        mp[i] = &mh[i];
    }
    char longname[KVC_ROUTER_MODEL_MAX + 2];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    char longfwd[KVC_HEALTH_FORWARD_MAX + 2];
    memset(longfwd, 'f', sizeof longfwd - 1);
    longfwd[sizeof longfwd - 1] = '\0';
    for (int k = 0; k < 13; k++) {
        Kvc__Health__Report r = KVC__HEALTH__REPORT__INIT;
        r.version = 1;
        r.epoch = 9;
        r.seq = 9;
        r.site = "b";
        r.n_models = 2;
        r.models = mp;
        mh[0].name = names[0];
        mh[1].name = names[1];
        switch (k) {
        case 0:
            r.version = 2;
            break;
        case 1:
            r.site = "";
            break;
        case 2:
            r.site = "B";
            break;
        case 3:
            r.region = "eu west";
            break;
        case 4:
            r.arch = "x86/64";
            break;
        case 5:
            r.accel = 5;
            break;
        case 6:
            r.forward = "tcp://a b";
            break;
        case 7:
            r.forward = longfwd;
            break;
        case 8:
            r.n_models = KVC_HEALTH_MODELS_MAX + 1;
            break;
        case 9:
            mh[1].name = names[0];
            break; /* duplicate */
        case 10:
            mh[1].name = "";
            break;
        case 11:
            mh[1].name = longname;
            break;
        default:
            mh[1].name = "M";
            break;
        }
        size_t n = s_pack_raw(&r, buf, sizeof buf);
        if (kvc_health_receive(h, 2, "b/p", buf, n, &out) != KVC_EPARSE)
            fail_msg("invalid case %d accepted", k);
        bad++;
        kvc_health_report_t *d = malloc(sizeof *d);
        assert_int_equal(kvc_health_decode(buf, n, d), KVC_EPARSE);
        free(d);
    }
    mh[1].name = names[1];
    assert_int_equal(s_stats(h).dropped_malformed, bad);
    /* nothing changed: the first report stands */
    kvc_health_report_t *r = malloc(sizeof *r);
    assert_int_equal(kvc_health_member(h, 3, "b/p", r), 0);
    assert_int_equal(r->seq, 5);
    assert_int_equal(r->body.n_models, 2);
    assert_int_equal(s_stats(h).received, 1);
    /* 64 models, latencies < -1 read as unknown, unknown fields ignored */
    Kvc__Health__Report ok = KVC__HEALTH__REPORT__INIT;
    ok.version = 1;
    ok.epoch = 1;
    ok.seq = 6;
    ok.site = "b";
    ok.n_models = KVC_HEALTH_MODELS_MAX;
    ok.models = mp;
    mh[3].p50_us = -5;
    mh[3].p99_us = INT64_MIN;
    size_t n = s_pack_raw(&ok, buf, sizeof buf);
    buf[n++] = 0xf8; /* field 15 varint 7: from a newer version */
    buf[n++] = 0x01;
    buf[n++] = 0x07;
    assert_int_equal(kvc_health_receive(h, 3, "b/p", buf, n, &out), 0);
    assert_int_equal(kvc_health_member(h, 3, "b/p", r), 0);
    assert_int_equal(r->body.n_models, KVC_HEALTH_MODELS_MAX);
    for (size_t i = 1; i < r->body.n_models; i++)
        assert_true(strcmp(r->body.models[i - 1].name, r->body.models[i].name) < 0);
    kvc_health_view_t v;
    assert_int_equal(kvc_health_lookup(h, 3, "m3", &v, 1), 1);
    assert_int_equal(v.model.p50_us, -1);
    assert_int_equal(v.model.p99_us, -1);
    free(r);
    free(b);
    kvc_outbox_free(&out);
    kvc_health_destroy(&h);
}

/* set_local checks everything and keeps the old report on error; a report
 * that could not fit KVC_HEALTH_WIRE_MAX is refused. */
static void test_set_local_checks(void **state)
{
    (void)state;
    kvc_health_t *h = kvc_health_new("a/p", NULL, 1);
    kvc_health_local_t *l = s_simple();
    assert_int_equal(kvc_health_set_local(h, 0, l), 0);
    kvc_health_local_t *x = s_local_new();
    for (int k = 0; k < 12; k++) {
        *x = *l;
        int want = KVC_EINVAL;
        switch (k) {
        case 0:
            kvc_strlcpy(x->site, "b", sizeof x->site);
            break;
        case 1:
            kvc_strlcpy(x->region, "EU", sizeof x->region);
            break;
        case 2:
            kvc_strlcpy(x->arch, "a b", sizeof x->arch);
            break;
        case 3:
            kvc_strlcpy(x->forward, "tcp://\x01", sizeof x->forward);
            break;
        case 4:
            x->accel = 9;
            break;
        case 5:
            s_add_model(x, "m", 1, 0, 0, 0, 0);
            break; /* duplicate */
        case 6:
            x->models[0].name[0] = '\0';
            break;
        case 7:
            kvc_strlcpy(x->models[0].name, "Model", sizeof x->models[0].name);
            break;
        case 8:
            memset(x->region, 'r', sizeof x->region);
            break; /* no NUL */
        case 9:
            memset(x->models[0].name, 'n', sizeof x->models[0].name);
            break;
        case 10:
            x->n_models = KVC_HEALTH_MODELS_MAX + 1;
            want = KVC_ERANGE;
            break;
        default:
            /* 64 models of 128-byte names: 11365 bytes at worst */
            x->n_models = 0;
            memset(x->forward, 'f', KVC_HEALTH_FORWARD_MAX);
            x->forward[KVC_HEALTH_FORWARD_MAX] = '\0';
            for (int i = 0; i < KVC_HEALTH_MODELS_MAX; i++) {
                char name[KVC_ROUTER_MODEL_MAX + 1];
                memset(name, 'a', KVC_ROUTER_MODEL_MAX);
                snprintf(name + KVC_ROUTER_MODEL_MAX - 3, 4, "%03d", i);
                s_add_model(x, name, 1, UINT32_MAX, UINT32_MAX, INT64_MAX, -1);
            }
            want = KVC_ERANGE;
            break;
        }
        if (kvc_health_set_local(h, 1, x) != want)
            fail_msg("case %d: want %d", k, want);
    }
    /* the worst case of 45 models fits, and so does its encoding */
    x->n_models = 45;
    memset(x->region, 'r', KVC_HEALTH_NAME_MAX);
    x->region[KVC_HEALTH_NAME_MAX] = '\0';
    memset(x->arch, 'a', KVC_HEALTH_NAME_MAX);
    x->arch[KVC_HEALTH_NAME_MAX] = '\0';
    kvc_health_t *big = kvc_health_new(
        "sssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssss/p", NULL, UINT64_MAX);
    assert_non_null(big);
    assert_int_equal(kvc_health_set_local(big, 0, x), 0);
    kvc_outbox_t out;
    kvc_outbox_init(&out, 0);
    kvc_member_event_t ev = {.type = KVC_MEMBER_EV_JOINED};
    kvc_strlcpy(ev.id, "a/p", sizeof ev.id);
    kvc_health_member_event(big, 0, &ev, &out);
    assert_int_equal(kvc_health_tick(big, 0, &out), 0);
    assert_int_equal(out.n_msgs, 1);
    assert_true(out.msgs[0].len <= KVC_HEALTH_WIRE_MAX);
    assert_int_equal(kvc_health_receive(
                         h, 0, "sssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssss/p",
                         kvc_outbox_data(&out, 0), out.msgs[0].len, &out),
                     0);
    kvc_health_destroy(&big);
    kvc_outbox_free(&out);
    /* the old report stands after all those errors */
    kvc_health_report_t *r = malloc(sizeof *r);
    assert_int_equal(kvc_health_member(h, 1, "a/p", r), 0);
    assert_int_equal(r->body.n_models, 1);
    assert_string_equal(r->body.region, "eu-west");
    assert_string_equal(r->body.site, "a");
    /* the own site may be given */
    kvc_strlcpy(l->site, "a", sizeof l->site);
    assert_int_equal(kvc_health_set_local(h, 2, l), 0);
    assert_int_equal(kvc_health_set_local(h, 2, NULL), KVC_EINVAL);
    assert_int_equal(kvc_health_set_local(NULL, 2, l), KVC_EINVAL);
    /* encode checks too */
    size_t len;
    uint8_t buf[16];
    l->site[0] = '\0';
    assert_int_equal(kvc_health_encode(l, 1, 1, buf, sizeof buf, &len), KVC_EINVAL);
    kvc_strlcpy(l->site, "a", sizeof l->site);
    assert_int_equal(kvc_health_encode(l, 1, 1, buf, sizeof buf, &len), KVC_ERANGE);
    free(r);
    free(x);
    free(l);
    kvc_health_destroy(&h);
}

/* Lookup filters by model and freshness, skips ourselves, honours cap. */
static void test_lookup(void **state)
{
    (void)state;
    net_t w;
    s_net_init(&w, 4, NULL);
    s_all_join(&w);
    kvc_health_local_t *l = s_local_new();
    s_add_model(l, "m2", 1, 0, 4, 100, 200);
    s_add_model(l, "m1", 0, 0, 0, -1, -1);
    assert_int_equal(kvc_health_set_local(w.h[0], 0, l), 0);
    l->n_models = 1; /* m2 only */
    assert_int_equal(kvc_health_set_local(w.h[1], 0, l), 0);
    assert_int_equal(kvc_health_set_local(w.h[3], 0, l), 0);
    s_tick(&w);
    w.cut[3][2] = 1;
    s_run_to(&w, 3000); /* 3's report to 2 was sent at 0, not refreshed */
    kvc_health_view_t v[4];
    assert_int_equal(kvc_health_lookup(w.h[2], w.now, "m1", v, 4), 1);
    assert_string_equal(v[0].member, "s0/p");
    assert_false(v[0].model.ready);
    assert_int_equal(kvc_health_lookup(w.h[2], w.now, "m2", v, 4), 3);
    assert_string_equal(v[0].member, "s0/p");
    assert_string_equal(v[1].member, "s1/p");
    assert_string_equal(v[2].member, "s3/p");
    assert_int_equal(v[2].age_ms, 3000);
    assert_int_equal(v[0].age_ms, 1000);
    assert_int_equal(kvc_health_lookup(w.h[2], w.now, "m2", v, 2), 2);
    assert_int_equal(kvc_health_lookup(w.h[2], w.now, "m3", v, 4), 0);
    assert_int_equal(kvc_health_lookup(w.h[2], w.now, "m", v, 4), 0);
    assert_int_equal(kvc_health_lookup(w.h[2], 6000, "m2", v, 4), 2); /* 3's went stale */
    char ids[4][KVC_MEMBER_ID_MAX + 1];
    assert_int_equal(kvc_health_ids(w.h[2], w.now, ids, 4), 3);
    assert_string_equal(ids[0], "s0/p");
    assert_string_equal(ids[2], "s3/p");
    assert_int_equal(kvc_health_ids(w.h[2], w.now, ids, 1), 1);
    assert_int_equal(kvc_health_ids(w.h[2], 6000, ids, 4), 2);
    assert_string_equal(ids[1], "s1/p");
    assert_int_equal(kvc_health_ids(NULL, 6000, ids, 4), 0);
    /* ourselves never: 0 lists m1, 0's lookup of m1 is empty */
    assert_int_equal(kvc_health_lookup(w.h[0], w.now, "m1", v, 4), 0);
    assert_int_equal(kvc_health_lookup(w.h[0], w.now, "m2", v, 4), 2);
    assert_int_equal(kvc_health_lookup(NULL, w.now, "m2", v, 4), 0);
    assert_int_equal(kvc_health_lookup(w.h[0], w.now, NULL, v, 4), 0);
    free(l);
    s_net_free(&w);
}

/* Every allocation of new, member events, receive and tick may fail: the
 * core reports KVC_ENOMEM or carries on, never crashes or leaks, and ends
 * consistent. */
static void test_alloc_failures(void **state)
{
    (void)state;
    for (long fail = 0; fail < 4; fail++) {
        kvc_alloc_fail_after(fail);
        kvc_health_t *h = kvc_health_new("a/p", NULL, 1);
        kvc_alloc_fail_after(-1);
        kvc_health_destroy(&h);
    }
    kvc_health_local_t *b = s_simple();
    kvc_strlcpy(b->site, "b", sizeof b->site);
    for (int i = 0; i < 20; i++) {
        char name[16];
        snprintf(name, sizeof name, "model-%d", i);
        s_add_model(b, name, 1, 0, 0, 10, 20);
    }
    uint8_t buf[KVC_HEALTH_WIRE_MAX];
    size_t len = s_enc(b, 1, 1, buf);
    uint64_t enomem = 0;
    for (long fail = 0; fail < 200; fail++) {
        kvc_health_t *h = kvc_health_new("a/p", NULL, 1);
        assert_non_null(h);
        kvc_outbox_t out;
        kvc_outbox_init(&out, 0);
        len = s_enc(b, 1, 1, buf);
        /* a first report, under failure */
        kvc_alloc_fail_after(fail);
        int rc = kvc_health_receive(h, 1, "b/p", buf, len, &out);
        kvc_alloc_fail_after(-1);
        assert_true(rc == 0 || rc == KVC_ENOMEM);
        enomem += rc == KVC_ENOMEM;
        kvc_health_stats_t st = s_stats(h);
        assert_int_equal(st.held, rc == 0);
        assert_int_equal(st.dropped_malformed, 0);
        assert_int_equal(kvc_health_lookup(h, 1, "model-3", NULL, 0), 0);
        /* an update, under failure: the old one stays or the new one wins */
        len = s_enc(b, 1, 2, buf);
        kvc_alloc_fail_after(fail);
        int rc2 = kvc_health_receive(h, 2, "b/p", buf, len, &out);
        kvc_member_event_t ev = {.type = KVC_MEMBER_EV_JOINED};
        kvc_strlcpy(ev.id, "c/q", sizeof ev.id);
        kvc_health_member_event(h, 2, &ev, &out);
        kvc_health_local_t *l = s_simple();
        int rc3 = kvc_health_set_local(h, 2, l);
        int rc4 = kvc_health_tick(h, 3, &out);
        kvc_alloc_fail_after(-1);
        assert_true(rc2 == 0 || rc2 == KVC_ENOMEM);
        assert_int_equal(rc3, 0);
        assert_int_equal(rc4, 0);
        kvc_health_report_t *r = malloc(sizeof *r);
        int have = kvc_health_member(h, 3, "b/p", r);
        if (rc == 0 || rc2 == 0) {
            assert_int_equal(have, 0);
            assert_int_equal(r->seq, rc2 == 0 ? 2 : 1);
            assert_int_equal(r->body.n_models, 21);
        } else {
            assert_int_equal(have, KVC_ENOENT);
        }
        free(r);
        free(l);
        /* and it works again afterwards */
        len = s_enc(b, 1, 3, buf);
        assert_int_equal(kvc_health_receive(h, 4, "b/p", buf, len, &out), 0);
        kvc_health_view_t v;
        assert_int_equal(kvc_health_lookup(h, 4, "model-3", &v, 1), 1);
        kvc_outbox_free(&out);
        kvc_health_destroy(&h);
    }
    assert_true(enomem > 10);
    /* the outbox refusing a report is counted, not an error */
    kvc_health_t *h = kvc_health_new("a/p", NULL, 1);
    kvc_outbox_t small;
    kvc_outbox_init(&small, 16);
    kvc_member_event_t ev = {.type = KVC_MEMBER_EV_JOINED};
    kvc_strlcpy(ev.id, "c/q", sizeof ev.id);
    kvc_health_member_event(h, 0, &ev, &small);
    kvc_health_local_t *l = s_simple();
    assert_int_equal(kvc_health_set_local(h, 0, l), 0);
    assert_int_equal(kvc_health_tick(h, 0, &small), 0);
    assert_int_equal(small.n_msgs, 0);
    assert_int_equal(s_stats(h).send_refused, 1);
    kvc_outbox_free(&small);
    kvc_health_destroy(&h);
    free(l);
    free(b);
}

/* The config check, encode/decode round trip and the core.h table. */
static void test_config_codec_ops(void **state)
{
    (void)state;
    kvc_health_config_t c = s_cfg();
    assert_int_equal(c.min_interval_ms, 200);
    assert_int_equal(c.heartbeat_ms, 2000);
    assert_int_equal(c.ttl_ms, 6000);
    assert_int_equal(kvc_health_config_check(&c, NULL), 0);
    kvc_err_t err;
    c.ttl_ms = 2000;
    assert_int_equal(kvc_health_config_check(&c, &err), KVC_EINVAL);
    assert_non_null(strstr(err.msg, "ttl_ms"));
    c = s_cfg();
    c.min_interval_ms = 3000;
    assert_int_equal(kvc_health_config_check(&c, &err), KVC_EINVAL);
    c = s_cfg();
    c.heartbeat_ms = 0;
    assert_int_equal(kvc_health_config_check(&c, &err), KVC_EINVAL);
    assert_null(kvc_health_new("a/p", &c, 1));
    assert_int_equal(kvc_health_config_check(NULL, NULL), KVC_EINVAL);
    const char *bad_ids[] = {"ap", "/p", "a/", "a/p/q", "A/p", ""};
    for (size_t k = 0; k < 6; k++)
        assert_null(kvc_health_new(bad_ids[k], NULL, 1));
    assert_null(kvc_health_new(NULL, NULL, 1));
    /* round trip */
    kvc_health_local_t *l = s_simple();
    kvc_strlcpy(l->site, "a", sizeof l->site);
    s_add_model(l, "b-model", 0, 7, 0, -1, 123);
    uint8_t buf[KVC_HEALTH_WIRE_MAX];
    size_t len;
    assert_int_equal(kvc_health_encode(l, 77, 88, buf, sizeof buf, &len), 0);
    kvc_health_report_t *r = malloc(sizeof *r);
    assert_int_equal(kvc_health_decode(buf, len, r), 0);
    assert_int_equal(r->epoch, 77);
    assert_int_equal(r->seq, 88);
    assert_string_equal(r->body.site, "a");
    assert_string_equal(r->body.forward, l->forward);
    assert_int_equal(r->body.n_models, 2);
    assert_string_equal(r->body.models[0].name, "b-model"); /* sorted */
    assert_int_equal(r->body.models[0].in_flight, 7);
    assert_int_equal(r->body.models[0].p50_us, -1);
    assert_int_equal(r->body.models[0].p99_us, 123);
    assert_string_equal(r->body.models[1].name, "m");
    assert_int_equal(kvc_health_decode(NULL, 3, r), KVC_EINVAL);
    free(r);
    free(l);
    /* the core table */
    const kvc_core_ops_t *ops = kvc_health_core_ops();
    assert_string_equal(ops->name, "health");
    assert_int_equal(ops->channel, KVC_HEALTH_CHANNEL);
    kvc_core_set_t set;
    kvc_core_set_init(&set);
    kvc_health_t *h = kvc_health_new("a/p", NULL, 1);
    assert_int_equal(kvc_core_set_add(&set, ops, h), 0);
    kvc_outbox_t out;
    kvc_outbox_init(&out, 0);
    assert_int_equal(kvc_outbox_event(&out, KVC_MEMBER_EV_JOINED, "b/q", 1, 0), 0);
    kvc_core_set_deliver(&set, 0, &out);
    assert_int_equal(s_stats(h).members, 1);
    kvc_health_local_t *x = s_simple();
    assert_int_equal(kvc_health_set_local(h, 0, x), 0);
    assert_int_equal(kvc_core_set_next_deadline(&set), 0);
    assert_int_equal(kvc_core_set_tick(&set, 0, &out), 1);
    assert_int_equal(out.n_msgs, 1);
    assert_string_equal(out.msgs[0].to, "b/q");
    assert_int_equal(
        kvc_core_set_receive(&set, KVC_HEALTH_CHANNEL, 1, "b/q", (const uint8_t *)"\xff", 1, &out),
        KVC_EPARSE);
    free(x);
    kvc_outbox_free(&out);
    kvc_health_destroy(&h);
    assert_int_equal(kvc_health_next_deadline(NULL), KVC_DEADLINE_NONE);
    assert_int_equal(kvc_health_tick(NULL, 0, &out), KVC_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_tick),
        cmocka_unit_test(test_joined_gets_report),
        cmocka_unit_test(test_change_debounce),
        cmocka_unit_test(test_heartbeat),
        cmocka_unit_test(test_ttl),
        cmocka_unit_test(test_member_gone),
        cmocka_unit_test(test_stale_and_epoch),
        cmocka_unit_test(test_site_mismatch),
        cmocka_unit_test(test_table_full),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_set_local_checks),
        cmocka_unit_test(test_lookup),
        cmocka_unit_test(test_alloc_failures),
        cmocka_unit_test(test_config_codec_ops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
