/*
 * Unit tests of federation/swim.c. One real core talks to scripted peers
 * (they ack pings unless told to stay silent) and time is stepped exactly,
 * so every assertion names the millisecond something must happen. A small
 * network of real cores checks partition healing and metadata spread.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <cmocka.h>

#include "swim.h"
#include "swim.pb-c.h"

#define LOG_MAX 8192

typedef struct {
    uint64_t t;
    char to[KVC_SWIM_ID_MAX + 1];
    Kvc__Swim__Message *msg;
    size_t len;
} sent_t;

typedef struct {
    uint64_t t;
    kvc_member_event_t ev;
} evlog_t;

typedef struct {
    kvc_swim_t *core;
    kvc_outbox_t out;
    uint64_t now;
    const char *silent[8];
    int n_silent;
    int nack_relays;
    sent_t *log;
    size_t n_log;
    evlog_t *evs;
    size_t n_evs;
} h_t;

/* Test config: round numbers so expectations are easy to compute. */
static kvc_swim_config_t s_cfg(void)
{
    kvc_swim_config_t c;
    kvc_swim_config_profile(&c, "lan");
    c.probe_interval_ms = 1000;
    c.probe_timeout_ms = 200;
    c.indirect_probes = 3;
    c.suspicion_mult = 2.0;
    c.suspicion_max_mult = 4.0;
    c.suspicion_confirmations = 3;
    c.retransmit_mult = 2;
    c.gossip_interval_ms = 100;
    c.gossip_fanout = 2;
    c.push_pull_interval_ms = 600000;
    c.reconnect_interval_ms = 600000;
    c.reap_ms = 30000;
    return c;
}

/* Is `id` scripted to ignore everything? */
static int s_is_silent(const h_t *h, const char *id)
{
    for (int i = 0; i < h->n_silent; i++)
        if (strcmp(h->silent[i], id) == 0)
            return 1;
    return 0;
}

static void s_deliver(h_t *h, const char *from, const uint8_t *data, size_t len);

/* Logs the core's output and lets the scripted peers answer, until quiet. */
static void s_process(h_t *h)
{
    while (h->out.n_msgs > 0 || h->out.n_events > 0) {
        kvc_outbox_t out = h->out;
        kvc_outbox_init(&h->out, 0);
        for (size_t i = 0; i < out.n_events; i++) {
            assert_true(h->n_evs < LOG_MAX);
            h->evs[h->n_evs].t = h->now;
            h->evs[h->n_evs++].ev = out.events[i];
        }
        for (size_t i = 0; i < out.n_msgs; i++) {
            const kvc_out_msg_t *m = &out.msgs[i];
            assert_true(m->len <= 1400);
            Kvc__Swim__Message *msg =
                kvc__swim__message__unpack(NULL, m->len, kvc_outbox_data(&out, i));
            assert_non_null(msg);
            assert_true(h->n_log < LOG_MAX);
            sent_t *l = &h->log[h->n_log++];
            l->t = h->now;
            kvc_strlcpy(l->to, m->to, sizeof(l->to));
            l->msg = msg;
            l->len = m->len;
            if (s_is_silent(h, m->to))
                continue;
            if (msg->body_case == KVC__SWIM__MESSAGE__BODY_PING) {
                Kvc__Swim__Message r = KVC__SWIM__MESSAGE__INIT;
                Kvc__Swim__Ack ack = KVC__SWIM__ACK__INIT;
                uint8_t buf[64];
                r.version = 1;
                ack.seq = msg->ping->seq;
                r.body_case = KVC__SWIM__MESSAGE__BODY_ACK;
                r.ack = &ack;
                size_t n = kvc__swim__message__pack(&r, buf);
                s_deliver(h, m->to, buf, n);
            } else if (msg->body_case == KVC__SWIM__MESSAGE__BODY_PING_REQ && h->nack_relays) {
                Kvc__Swim__Message r = KVC__SWIM__MESSAGE__INIT;
                Kvc__Swim__Nack nack = KVC__SWIM__NACK__INIT;
                uint8_t buf[64];
                r.version = 1;
                nack.seq = msg->ping_req->seq;
                r.body_case = KVC__SWIM__MESSAGE__BODY_NACK;
                r.nack = &nack;
                size_t n = kvc__swim__message__pack(&r, buf);
                s_deliver(h, m->to, buf, n);
            }
        }
        kvc_outbox_free(&out);
    }
}

/* Hands a message from a scripted peer to the core. */
static void s_deliver(h_t *h, const char *from, const uint8_t *data, size_t len)
{
    assert_int_equal(kvc_swim_receive(h->core, h->now, from, data, len, &h->out), 0);
}

/* Sends the core one update about `id` from scripted peer `from`. */
static void s_update(h_t *h, const char *from, int state, const char *id, uint64_t inc,
                     const char *accuser)
{
    Kvc__Swim__Message m = KVC__SWIM__MESSAGE__INIT;
    Kvc__Swim__Update u = KVC__SWIM__UPDATE__INIT;
    Kvc__Swim__Update *up = &u;
    uint8_t buf[512];
    m.version = 1;
    u.state = (Kvc__Swim__State)state;
    u.id = (char *)id;
    u.incarnation = inc;
    u.accuser = (char *)(accuser ? accuser : "");
    m.n_updates = 1;
    m.updates = &up;
    size_t n = kvc__swim__message__pack(&m, buf);
    s_deliver(h, from, buf, n);
    s_process(h);
}

/* Runs the core's timers up to and including time t. */
static void s_run_until(h_t *h, uint64_t t)
{
    for (;;) {
        uint64_t d = kvc_swim_next_deadline(h->core);
        if (d > t)
            break;
        if (d > h->now)
            h->now = d;
        assert_int_equal(kvc_swim_tick(h->core, h->now, &h->out), 0);
        s_process(h);
    }
    h->now = t;
}

/* A core "site0/a" at t=1000 that knows b, c, d, e and x (all alive). */
static h_t *s_harness(void)
{
    h_t *h = calloc(1, sizeof(*h));
    h->log = calloc(LOG_MAX, sizeof(*h->log));
    h->evs = calloc(LOG_MAX, sizeof(*h->evs));
    kvc_swim_config_t c = s_cfg();
    kvc_member_info_t me = {.site = "site0",
                            .name = "a",
                            .region = "eu",
                            .roles = "gateway",
                            .endpoint = "tcp://127.0.0.1:1"};
    h->now = 1000;
    h->core = kvc_swim_new(&c, &me, 42, h->now);
    assert_non_null(h->core);
    kvc_outbox_init(&h->out, 0);
    const char *ids[] = {"site0/b", "site0/c", "site0/d", "site0/e", "site0/x"};
    for (int i = 0; i < 5; i++)
        s_update(h, "site0/b", KVC_SWIM_ALIVE, ids[i], 0, NULL);
    return h;
}

/* Frees the harness. */
static void s_harness_free(h_t *h)
{
    for (size_t i = 0; i < h->n_log; i++)
        kvc__swim__message__free_unpacked(h->log[i].msg, NULL);
    free(h->log);
    free(h->evs);
    kvc_outbox_free(&h->out);
    kvc_swim_destroy(&h->core);
    assert_null(h->core);
    free(h);
}

/* Time of the first logged message to `to` with body `body` at or after t0
 * (UINT64_MAX if none). */
static uint64_t s_first_sent(const h_t *h, const char *to, int body, uint64_t t0, size_t *idx)
{
    for (size_t i = 0; i < h->n_log; i++)
        if (h->log[i].t >= t0 && (int)h->log[i].msg->body_case == body &&
            (!to || strcmp(h->log[i].to, to) == 0)) {
            if (idx)
                *idx = i;
            return h->log[i].t;
        }
    return UINT64_MAX;
}

/* Time of the first event of `type` about `id` (UINT64_MAX if none). */
static uint64_t s_first_event(const h_t *h, int type, const char *id)
{
    for (size_t i = 0; i < h->n_evs; i++)
        if ((int)h->evs[i].ev.type == type && strcmp(h->evs[i].ev.id, id) == 0)
            return h->evs[i].t;
    return UINT64_MAX;
}

/* State of id in the core. */
static int s_state(const h_t *h, const char *id)
{
    kvc_swim_member_t m;
    if (kvc_swim_member_get(h->core, id, &m) != 0)
        return -1;
    return (int)m.state;
}

static void test_new_validates(void **state)
{
    kvc_swim_config_t c = s_cfg();
    kvc_member_info_t bad = {.site = "Site", .name = "a"};
    assert_null(kvc_swim_new(&c, &bad, 1, 0));
    kvc_member_info_t ok = {.site = "s", .name = "a"};
    c.max_message_bytes = 100;
    assert_null(kvc_swim_new(&c, &ok, 1, 0));
    kvc_err_t err;
    assert_int_equal(kvc_swim_config_check(&c, &err), KVC_EINVAL);
    assert_non_null(strstr(err.msg, "max_message_bytes"));
    assert_int_equal(kvc_swim_config_profile(&c, "moon"), KVC_EINVAL);
    assert_true(kvc_swim_id_valid("site-1/p0"));
    assert_false(kvc_swim_id_valid("site1"));
    assert_false(kvc_swim_id_valid("site1/"));
    assert_false(kvc_swim_id_valid("/p"));
    assert_false(kvc_swim_id_valid("a/b/c"));
}

/* Probe -> ack: the first ping goes out within one interval, the member
 * stays alive, local health stays 0, and the ack's round trip is used. */
static void test_probe_ack(void **state)
{
    h_t *h = s_harness();
    assert_int_equal(kvc_swim_member_count(h->core), 6);
    s_run_until(h, 10000);
    uint64_t t0 = s_first_sent(h, NULL, KVC__SWIM__MESSAGE__BODY_PING, 0, NULL);
    assert_true(t0 >= 1000 && t0 < 2000);
    /* One probe per period, round robin over the 5 others: 9 pings by t=10000. */
    size_t pings = 0;
    for (size_t i = 0; i < h->n_log; i++)
        pings += h->log[i].msg->body_case == KVC__SWIM__MESSAGE__BODY_PING;
    assert_int_equal(pings, 9);
    for (size_t i = 0; i < h->n_log; i++)
        assert_int_not_equal(h->log[i].msg->body_case, KVC__SWIM__MESSAGE__BODY_PING_REQ);
    assert_int_equal(kvc_swim_local_health(h->core), 0);
    assert_int_equal(s_first_event(h, KVC_MEMBER_EV_SUSPECT, "site0/x"), UINT64_MAX);
    /* Every member pinged at least once in the first round of 5. */
    const char *ids[] = {"site0/b", "site0/c", "site0/d", "site0/e", "site0/x"};
    for (int i = 0; i < 5; i++)
        assert_true(s_first_sent(h, ids[i], KVC__SWIM__MESSAGE__BODY_PING, 0, NULL) < t0 + 5000);
    /* The counters agree with what was sent and answered. */
    kvc_swim_stats_t st;
    kvc_swim_stats(h->core, &st);
    assert_int_equal(st.probes, 9);
    assert_int_equal(st.probe_failures, 0);
    assert_int_equal(st.indirect_probes, 0);
    assert_int_equal(st.suspicions, 0);
    assert_int_equal(st.acks, 9); /* scripted peers answer at once */
    assert_int_equal(st.rtt_count, st.acks);
    uint64_t in_buckets = 0;
    for (int i = 0; i < KVC_SWIM_RTT_BUCKETS; i++)
        in_buckets += st.rtt_buckets[i];
    assert_int_equal(in_buckets, st.rtt_count);
    s_harness_free(h);
}

/* No ack: indirect probes at exactly probe_timeout, suspicion at exactly the
 * end of the period, the suspect told directly, dead after the max timeout
 * (a lone accuser), reaped after reap_ms. */
static void test_suspect_dead_reap(void **state)
{
    h_t *h = s_harness();
    h->silent[h->n_silent++] = "site0/x";
    h->nack_relays = 1;
    s_run_until(h, 8000);
    uint64_t t0 = s_first_sent(h, "site0/x", KVC__SWIM__MESSAGE__BODY_PING, 0, NULL);
    assert_true(t0 < 7000);
    /* Indirect probes exactly at the timeout, to the 3 others... */
    size_t idx;
    assert_int_equal(s_first_sent(h, NULL, KVC__SWIM__MESSAGE__BODY_PING_REQ, t0, &idx), t0 + 200);
    size_t reqs = 0;
    for (size_t i = 0; i < h->n_log; i++)
        if (h->log[i].msg->body_case == KVC__SWIM__MESSAGE__BODY_PING_REQ &&
            h->log[i].t == t0 + 200) {
            reqs++;
            assert_string_equal(h->log[i].msg->ping_req->target, "site0/x");
            assert_string_not_equal(h->log[i].to, "site0/x");
        }
    assert_int_equal(reqs, 3);
    /* ...plus one more direct ping. */
    assert_int_equal(s_first_sent(h, "site0/x", KVC__SWIM__MESSAGE__BODY_PING, t0 + 1, NULL),
                     t0 + 200);
    /* Suspect at the end of the period; all relays nacked, so health is 0. */
    uint64_t ts = s_first_event(h, KVC_MEMBER_EV_SUSPECT, "site0/x");
    assert_int_equal(ts, t0 + 1000);
    assert_int_equal(kvc_swim_local_health(h->core), 0);
    /* Lifeguard: the suspect is told right away. */
    int told = 0;
    for (size_t i = 0; i < h->n_log; i++) {
        const sent_t *l = &h->log[i];
        if (l->t != ts || strcmp(l->to, "site0/x") != 0)
            continue;
        for (size_t j = 0; j < l->msg->n_updates; j++)
            told |= l->msg->updates[j]->state == KVC__SWIM__STATE__SUSPECT &&
                    strcmp(l->msg->updates[j]->id, "site0/x") == 0 &&
                    strcmp(l->msg->updates[j]->accuser, "site0/a") == 0;
    }
    assert_true(told);
    kvc_swim_stats_t st;
    kvc_swim_stats(h->core, &st);
    assert_int_equal(st.suspicions, 1);
    /* Seed 42 and the simulated clock fix the schedule: x's next period
     * starts at t0 + 3000, sends its indirect round at +200 and is still
     * open at t=8000. So one period has failed and two indirect rounds
     * went out. */
    assert_int_equal(s_first_sent(h, "site0/x", KVC__SWIM__MESSAGE__BODY_PING, t0 + 201, NULL),
                     t0 + 3000);
    assert_true(t0 + 3000 + 1000 > 8000);
    assert_int_equal(s_first_sent(h, NULL, KVC__SWIM__MESSAGE__BODY_PING_REQ, t0 + 201, NULL),
                     t0 + 3200);
    assert_int_equal(st.probe_failures, 1);
    assert_int_equal(st.indirect_probes, 2);
    assert_int_equal(st.refutations, 0);
    /* 6 live members, K=3: a lone accuser waits max = 4 * (2 * 1000) ms. */
    s_run_until(h, ts + 8000 - 1);
    assert_int_equal(s_state(h, "site0/x"), KVC_SWIM_SUSPECT);
    s_run_until(h, ts + 8000);
    assert_int_equal(s_state(h, "site0/x"), KVC_SWIM_DEAD);
    assert_int_equal(s_first_event(h, KVC_MEMBER_EV_DEAD, "site0/x"), ts + 8000);
    /* Reaped exactly reap_ms after it died. */
    s_run_until(h, ts + 8000 + 30000 - 1);
    assert_int_equal(s_state(h, "site0/x"), KVC_SWIM_DEAD);
    s_run_until(h, ts + 8000 + 30000);
    assert_int_equal(s_state(h, "site0/x"), -1);
    assert_int_equal(s_first_event(h, KVC_MEMBER_EV_REAPED, "site0/x"), ts + 8000 + 30000);
    assert_int_equal(kvc_swim_member_count(h->core), 5);
    s_harness_free(h);
}

/* Lifeguard local health: relays that do not even nack mean the problem may
 * be ours, so the score rises by the missed nacks and stretches our period. */
static void test_missed_nacks_raise_local_health(void **state)
{
    h_t *h = s_harness();
    h->silent[h->n_silent++] = "site0/x";
    h->nack_relays = 0;
    s_run_until(h, 8000);
    uint64_t t0 = s_first_sent(h, "site0/x", KVC__SWIM__MESSAGE__BODY_PING, 0, NULL);
    assert_true(t0 < 7000);
    uint64_t ts = s_first_event(h, KVC_MEMBER_EV_SUSPECT, "site0/x");
    assert_int_equal(ts, t0 + 1000);
    /* None of the 3 relays nacked: +3, so the next period is 4x longer. */
    s_run_until(h, ts);
    assert_int_equal(kvc_swim_local_health(h->core), 3);
    uint64_t t1 = s_first_sent(h, NULL, KVC__SWIM__MESSAGE__BODY_PING, ts, NULL);
    assert_int_equal(t1, ts);
    s_run_until(h, ts + 20000);
    uint64_t t2 = s_first_sent(h, NULL, KVC__SWIM__MESSAGE__BODY_PING, t1 + 1, NULL);
    /* With seed 42 the probes at t1 and t2 go to members that ack, so health
     * drops by one per period: periods of 4x, then 3x the interval. */
    assert_string_not_equal(h->log[0].to, "site0/x");
    assert_int_equal(t2, t1 + 4000);
    uint64_t t3 = s_first_sent(h, NULL, KVC__SWIM__MESSAGE__BODY_PING, t2 + 1, NULL);
    assert_int_equal(t3, t2 + 3000);
    s_harness_free(h);
}

/* Refutation: a suspicion about ourselves raises our incarnation above it
 * and our next message says we are alive. */
static void test_refutation(void **state)
{
    h_t *h = s_harness();
    assert_int_equal(kvc_swim_self_incarnation(h->core), 0);
    size_t before = h->n_log;
    s_update(h, "site0/b", KVC_SWIM_SUSPECT, "site0/a", 5, "site0/b");
    assert_int_equal(kvc_swim_self_incarnation(h->core), 6);
    assert_int_equal(kvc_swim_self_state(h->core), KVC_SWIM_ALIVE);
    assert_int_equal(kvc_swim_local_health(h->core), 1);
    /* An older accusation is ignored. */
    s_update(h, "site0/c", KVC_SWIM_DEAD, "site0/a", 3, "site0/c");
    assert_int_equal(kvc_swim_self_incarnation(h->core), 6);
    s_run_until(h, h->now + 100);
    int seen = 0;
    for (size_t i = before; i < h->n_log; i++)
        for (size_t j = 0; j < h->log[i].msg->n_updates; j++) {
            Kvc__Swim__Update *u = h->log[i].msg->updates[j];
            seen |= strcmp(u->id, "site0/a") == 0 && u->state == KVC__SWIM__STATE__ALIVE &&
                    u->incarnation == 6;
        }
    assert_true(seen);
    /* And a member that refutes clears our suspicion of it. */
    s_update(h, "site0/b", KVC_SWIM_SUSPECT, "site0/c", 0, "site0/b");
    assert_int_equal(s_state(h, "site0/c"), KVC_SWIM_SUSPECT);
    s_update(h, "site0/c", KVC_SWIM_ALIVE, "site0/c", 0, NULL);
    assert_int_equal(s_state(h, "site0/c"), KVC_SWIM_SUSPECT); /* same incarnation: no */
    s_update(h, "site0/c", KVC_SWIM_ALIVE, "site0/c", 1, NULL);
    assert_int_equal(s_state(h, "site0/c"), KVC_SWIM_ALIVE);
    s_harness_free(h);
}

/* Independent confirmations shorten the timeout by
 * max(min, max - (max-min) * log(C+1)/log(K+1)), min 2000, max 8000, K 3. */
static void test_confirmations_shorten_timeout(void **state)
{
    h_t *h = s_harness();
    uint64_t T = h->now;
    s_update(h, "site0/b", KVC_SWIM_SUSPECT, "site0/x", 0, "site0/b");
    assert_int_equal(s_state(h, "site0/x"), KVC_SWIM_SUSPECT);
    /* The same accuser again is not a confirmation. */
    s_update(h, "site0/b", KVC_SWIM_SUSPECT, "site0/x", 0, "site0/b");
    s_run_until(h, T + 100);
    s_update(h, "site0/c", KVC_SWIM_SUSPECT, "site0/x", 0, "site0/c");
    s_run_until(h, T + 200);
    s_update(h, "site0/d", KVC_SWIM_SUSPECT, "site0/x", 0, "site0/d");
    uint64_t expect = (uint64_t)floor(8000.0 - 6000.0 * log(3.0) / log(4.0));
    assert_int_equal(expect, 3245);
    s_run_until(h, T + expect - 1);
    assert_int_equal(s_state(h, "site0/x"), KVC_SWIM_SUSPECT);
    s_run_until(h, T + expect);
    assert_int_equal(s_state(h, "site0/x"), KVC_SWIM_DEAD);
    assert_int_equal(s_first_event(h, KVC_MEMBER_EV_DEAD, "site0/x"), T + expect);

    /* C = K reaches min: a second suspect dies exactly 2000 ms after. */
    uint64_t T2 = h->now;
    s_update(h, "site0/b", KVC_SWIM_SUSPECT, "site0/e", 0, "site0/b");
    s_update(h, "site0/c", KVC_SWIM_SUSPECT, "site0/e", 0, "site0/c");
    s_update(h, "site0/d", KVC_SWIM_SUSPECT, "site0/e", 0, "site0/d");
    s_update(h, "site0/x", KVC_SWIM_SUSPECT, "site0/e", 0, "site0/x");
    s_run_until(h, T2 + 1999);
    assert_int_equal(s_state(h, "site0/e"), KVC_SWIM_SUSPECT);
    s_run_until(h, T2 + 2000);
    assert_int_equal(s_state(h, "site0/e"), KVC_SWIM_DEAD);
    s_harness_free(h);
}

/* Leave: our incarnation rises, state left, and the news goes out; a member
 * that leaves becomes left here. */
static void test_leave(void **state)
{
    h_t *h = s_harness();
    s_update(h, "site0/b", KVC_SWIM_LEFT, "site0/b", 1, NULL);
    assert_int_equal(s_state(h, "site0/b"), KVC_SWIM_LEFT);
    assert_int_not_equal(s_first_event(h, KVC_MEMBER_EV_LEFT, "site0/b"), UINT64_MAX);
    /* A left member is not resurrected by an old alive... */
    s_update(h, "site0/c", KVC_SWIM_ALIVE, "site0/b", 0, NULL);
    assert_int_equal(s_state(h, "site0/b"), KVC_SWIM_LEFT);
    size_t before = h->n_log;
    assert_int_equal(kvc_swim_leave(h->core, h->now, &h->out), 0);
    s_process(h);
    assert_int_equal(kvc_swim_self_state(h->core), KVC_SWIM_LEFT);
    assert_int_equal(kvc_swim_self_incarnation(h->core), 1);
    assert_int_equal(kvc_swim_leave(h->core, h->now, &h->out), KVC_ESTATE);
    size_t told = 0;
    for (size_t i = before; i < h->n_log; i++)
        for (size_t j = 0; j < h->log[i].msg->n_updates; j++)
            told += h->log[i].msg->updates[j]->state == KVC__SWIM__STATE__LEFT &&
                    strcmp(h->log[i].msg->updates[j]->id, "site0/a") == 0;
    assert_int_equal(told, 4); /* 2 * fanout, capped by the 4 live others */
    /* After leaving: no more probes. */
    size_t n = h->n_log;
    s_run_until(h, h->now + 10000);
    for (size_t i = n; i < h->n_log; i++)
        assert_int_not_equal(h->log[i].msg->body_case, KVC__SWIM__MESSAGE__BODY_PING);
    s_harness_free(h);
}

/* Hostile input is dropped and counted, never trusted. */
static void test_bad_input(void **state)
{
    h_t *h = s_harness();
    uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
    assert_int_equal(kvc_swim_receive(h->core, h->now, "site0/b", junk, sizeof(junk), &h->out),
                     KVC_EPARSE);
    /* A well-formed update with a bad id drops the whole message. */
    Kvc__Swim__Message m = KVC__SWIM__MESSAGE__INIT;
    Kvc__Swim__Update u = KVC__SWIM__UPDATE__INIT;
    Kvc__Swim__Update *up = &u;
    uint8_t buf[256];
    m.version = 1;
    u.id = "NOT VALID";
    m.n_updates = 1;
    m.updates = &up;
    size_t n = kvc__swim__message__pack(&m, buf);
    assert_int_equal(kvc_swim_receive(h->core, h->now, "site0/b", buf, n, &h->out), KVC_EPARSE);
    m.version = 2;
    u.id = "site9/z";
    n = kvc__swim__message__pack(&m, buf);
    assert_int_equal(kvc_swim_receive(h->core, h->now, "site0/b", buf, n, &h->out), KVC_EPARSE);
    assert_int_equal(kvc_swim_member_get(h->core, "site9/z", &(kvc_swim_member_t){0}), KVC_ENOENT);
    assert_int_equal(kvc_swim_receive(h->core, h->now, "bogus", buf, n, &h->out), KVC_EINVAL);
    assert_int_equal(kvc_swim_dropped(h->core), 4);
    s_harness_free(h);
}

/* Message size bound: with 400 members and full metadata every message the
 * core sends fits max_message_bytes, and the push-pull digest chunks cover
 * every member exactly once. */
static void test_message_size_bound(void **state)
{
    h_t *h = s_harness();
    char id[64];
    for (int i = 0; i < 400; i++) {
        snprintf(id, sizeof(id), "site%d/peer-with-a-long-name-%d", i % 7, i);
        s_update(h, "site0/b", KVC_SWIM_ALIVE, id, (uint64_t)i, NULL);
    }
    uint8_t val[200];
    memset(val, 'v', sizeof(val));
    assert_int_equal(kvc_swim_set_meta(h->core, "k1", val, sizeof(val), h->now), 0);
    assert_int_equal(kvc_swim_set_meta(h->core, "k2", val, sizeof(val), h->now), 0);
    assert_int_equal(kvc_swim_set_meta(h->core, "k3", val, sizeof(val), h->now), KVC_ERANGE);
    /* Push-pull to b: s_process asserts each message <= 1400 bytes. */
    const char *seed = "site0/b";
    size_t before = h->n_log;
    assert_int_equal(kvc_swim_join(h->core, &seed, 1, h->now, &h->out), 0);
    s_process(h);
    size_t covered = 0, chunks = 0;
    for (size_t i = before; i < h->n_log; i++) {
        if (h->log[i].msg->body_case != KVC__SWIM__MESSAGE__BODY_DIGEST)
            continue;
        chunks++;
        covered += h->log[i].msg->digest->n_entries;
        assert_true(h->log[i].len <= 1400);
    }
    assert_int_equal(covered, 406);
    /* The digest's encoding fixes how many 1400-byte chunks 406 entries take. */
    assert_int_equal(chunks, 12);
    s_run_until(h, h->now + 5000);
    s_harness_free(h);
}

/* ---- a network of real cores ------------------------------------------- */

typedef struct {
    kvc_swim_t *c[4];
    int n;
    uint64_t now;
    uint64_t cut_from, cut_to; /* core 0 is cut off from the rest */
    uint64_t pair_from, pair_to; /* only cores 0 and 2 cannot reach each other */
    kvc_outbox_t out;
} net_t;

/* Delivers one core's output (instantly, minus the partition). */
static void s_net_flush(net_t *n, int from)
{
    while (n->out.n_msgs > 0 || n->out.n_events > 0) {
        kvc_outbox_t out = n->out;
        kvc_outbox_init(&n->out, 0);
        for (size_t i = 0; i < out.n_msgs; i++) {
            int to = -1;
            for (int k = 0; k < n->n; k++)
                if (strcmp(kvc_swim_self_id(n->c[k]), out.msgs[i].to) == 0)
                    to = k;
            if (to < 0)
                continue;
            int cut = n->now >= n->cut_from && n->now < n->cut_to && ((from == 0) != (to == 0));
            int pair = n->now >= n->pair_from && n->now < n->pair_to && from + to == 2 &&
                       from != to;
            if (cut || pair)
                continue;
            kvc_swim_receive(n->c[to], n->now, kvc_swim_self_id(n->c[from]),
                             kvc_outbox_data(&out, i), out.msgs[i].len, &n->out);
            s_net_flush(n, to);
        }
        kvc_outbox_free(&out);
    }
}

/* Runs every core's timers up to t. */
static void s_net_run(net_t *n, uint64_t t)
{
    for (;;) {
        int best = -1;
        uint64_t d = UINT64_MAX;
        for (int k = 0; k < n->n; k++) {
            uint64_t x = kvc_swim_next_deadline(n->c[k]);
            if (x < d) {
                d = x;
                best = k;
            }
        }
        if (best < 0 || d > t)
            break;
        if (d > n->now)
            n->now = d;
        kvc_swim_tick(n->c[best], n->now, &n->out);
        s_net_flush(n, best);
    }
    n->now = t;
}

/* State of member `id` at core k. */
static int s_net_state(net_t *n, int k, int of)
{
    kvc_swim_member_t m;
    if (kvc_swim_member_get(n->c[k], kvc_swim_self_id(n->c[of]), &m) != 0)
        return -1;
    return (int)m.state;
}

/* Builds a 3-core network that joined through core 1. */
static void s_net_init(net_t *n)
{
    memset(n, 0, sizeof(*n));
    kvc_swim_config_t c = s_cfg();
    c.reconnect_interval_ms = 5000;
    c.push_pull_interval_ms = 20000;
    c.reap_ms = 60000;
    const char *names[] = {"a", "b", "c"};
    const char *sites[] = {"site0", "site1", "site1"};
    n->n = 3;
    n->now = 0;
    kvc_outbox_init(&n->out, 0);
    for (int k = 0; k < 3; k++) {
        kvc_member_info_t me = {
            .site = sites[k], .name = names[k], .region = "eu", .endpoint = "tcp://x:1"};
        n->c[k] = kvc_swim_new(&c, &me, 100 + (uint64_t)k, 0);
        assert_non_null(n->c[k]);
    }
    const char *seed = "site1/b";
    for (int k = 0; k < 3; k += 2) {
        assert_int_equal(kvc_swim_join(n->c[k], &seed, 1, 0, &n->out), 0);
        s_net_flush(n, k);
    }
}

/* Frees the network. */
static void s_net_free(net_t *n)
{
    for (int k = 0; k < n->n; k++)
        kvc_swim_destroy(&n->c[k]);
    kvc_outbox_free(&n->out);
}

/* Join, then a partition: each side declares the other dead; after it heals
 * the reconnect pings merge the views again with higher incarnations. */
static void test_rejoin_after_partition(void **state)
{
    net_t n;
    s_net_init(&n);
    s_net_run(&n, 3000);
    for (int k = 0; k < 3; k++)
        for (int o = 0; o < 3; o++)
            assert_int_equal(s_net_state(&n, k, o), KVC_SWIM_ALIVE);
    /* Info travelled with the full entries. */
    kvc_swim_member_t m;
    assert_int_equal(kvc_swim_member_get(n.c[2], "site0/a", &m), 0);
    assert_true(m.has_info);
    assert_string_equal(m.region, "eu");
    n.cut_from = 3000;
    n.cut_to = 40000;
    s_net_run(&n, 39999);
    assert_int_equal(s_net_state(&n, 0, 1), KVC_SWIM_DEAD);
    assert_int_equal(s_net_state(&n, 0, 2), KVC_SWIM_DEAD);
    assert_int_equal(s_net_state(&n, 1, 0), KVC_SWIM_DEAD);
    assert_int_equal(s_net_state(&n, 2, 0), KVC_SWIM_DEAD);
    assert_int_equal(s_net_state(&n, 1, 2), KVC_SWIM_ALIVE);
    uint64_t inc_a = kvc_swim_self_incarnation(n.c[0]);
    /* Healed at 40 s; reconnect runs every 5 s, so by 50 s all is well. */
    s_net_run(&n, 50000);
    for (int k = 0; k < 3; k++)
        for (int o = 0; o < 3; o++)
            assert_int_equal(s_net_state(&n, k, o), KVC_SWIM_ALIVE);
    assert_true(kvc_swim_self_incarnation(n.c[0]) > inc_a);
    s_net_free(&n);
}

/* direct_lost of member `of` at core k. */
static int s_net_direct_lost(net_t *n, int k, int of)
{
    kvc_swim_member_t m;
    assert_int_equal(kvc_swim_member_get(n->c[k], kvc_swim_self_id(n->c[of]), &m), 0);
    return m.direct_lost;
}

/* A partial partition: a and c cannot reach each other, both reach b. The
 * indirect probes through b keep a and c alive to each other (SWIM's job),
 * but each flags the other direct_lost, so routing can avoid the cut path;
 * b sees nothing lost. Healed, the next direct acks clear the flags. */
static void test_partial_partition_direct_lost(void **state)
{
    net_t n;
    s_net_init(&n);
    s_net_run(&n, 3000);
    for (int k = 0; k < 3; k++)
        for (int o = 0; o < 3; o++)
            if (k != o)
                assert_int_equal(s_net_direct_lost(&n, k, o), 0);
    n.pair_from = 3000;
    n.pair_to = 20000;
    s_net_run(&n, 19999);
    for (int k = 0; k < 3; k++)
        for (int o = 0; o < 3; o++)
            if (k != o)
                assert_int_equal(s_net_state(&n, k, o), KVC_SWIM_ALIVE);
    assert_int_equal(s_net_direct_lost(&n, 0, 2), 1);
    assert_int_equal(s_net_direct_lost(&n, 2, 0), 1);
    assert_int_equal(s_net_direct_lost(&n, 0, 1), 0);
    assert_int_equal(s_net_direct_lost(&n, 1, 0), 0);
    assert_int_equal(s_net_direct_lost(&n, 1, 2), 0);
    kvc_swim_stats_t st;
    kvc_swim_stats(n.c[0], &st);
    assert_true(st.direct_lost > 0);
    kvc_swim_stats(n.c[1], &st);
    assert_int_equal(st.direct_lost, 0);
    s_net_run(&n, 30000);
    assert_int_equal(s_net_direct_lost(&n, 0, 2), 0);
    assert_int_equal(s_net_direct_lost(&n, 2, 0), 0);
    s_net_free(&n);
}

/* Metadata set on one core reaches the others with its version. */
static void test_meta_spreads(void **state)
{
    net_t n;
    s_net_init(&n);
    s_net_run(&n, 3000);
    assert_int_equal(kvc_swim_set_meta(n.c[2], "model", (const uint8_t *)"resnet", 6, n.now), 0);
    s_net_run(&n, 3500);
    const uint8_t *v;
    size_t len;
    for (int k = 0; k < 2; k++) {
        assert_int_equal(kvc_swim_member_meta(n.c[k], "site1/c", "model", &v, &len), 0);
        assert_int_equal(len, 6);
        assert_memory_equal(v, "resnet", 6);
        kvc_swim_member_t m;
        assert_int_equal(kvc_swim_member_get(n.c[k], "site1/c", &m), 0);
        assert_int_equal(m.meta_version, 1);
    }
    assert_int_equal(kvc_swim_set_meta(n.c[2], "model", NULL, 0, n.now), 0);
    s_net_run(&n, 4000);
    assert_int_equal(kvc_swim_member_meta(n.c[0], "site1/c", "model", &v, &len), KVC_ENOENT);
    /* Probe round trips gave everyone coordinates for everyone. */
    double rtt;
    assert_int_equal(kvc_swim_estimate_rtt_ms(n.c[0], "site1/b", &rtt), 0);
    assert_true(rtt >= 0 && rtt < 50);
    s_net_free(&n);
}

/* Allocation failures never crash the core or leak. */
static void test_alloc_failures(void **state)
{
    kvc_swim_config_t c = s_cfg();
    kvc_member_info_t me = {.site = "s", .name = "a"};
    /* kvc_swim_new: NULL while an allocation fails, then a working core. */
    long ok_at = -1;
    for (long i = 0; i < 400 && ok_at < 0; i++) {
        kvc_alloc_fail_after(i);
        kvc_swim_t *s = kvc_swim_new(&c, &me, 1, 0);
        kvc_alloc_fail_after(-1);
        if (s) {
            ok_at = i;
            assert_int_equal(kvc_swim_member_count(s), 1);
            assert_string_equal(kvc_swim_self_id(s), "s/a");
        }
        kvc_swim_destroy(&s);
        assert_null(s);
    }
    assert_true(ok_at > 0); /* some allocation was made to fail, and recovered */
    /* Ticks under failing allocations: no crash, no leak (ASan), and the
     * member table survives. A tick never fails: what it cannot build is
     * not sent, as if the network had lost it, so it returns 0 every time
     * (it used to be allowed KVC_ENOMEM, which it never returns). That the
     * failures were really injected is checked with one allocation right
     * after the tick: it fails when the tick made at least i allocations,
     * so the armed failure was at or before the tick's last one. */
    h_t *h = s_harness();
    int reached = 0;
    for (long k = 0; k < 60; k++) {
        long i = 1 + k % 3; /* a tick makes only a few allocations */
        kvc_alloc_fail_after(i);
        int rc = kvc_swim_tick(h->core, h->now, &h->out);
        void *probe = kvc_malloc(1);
        kvc_alloc_fail_after(-1);
        reached += probe == NULL;
        kvc_free(probe);
        assert_int_equal(rc, 0);
        h->now += 137;
        s_process(h);
    }
    /* Not pinned: how many ticks allocate that much follows the core's
     * allocation pattern, not its behaviour. None would make the loop void. */
    assert_true(reached > 0);
    assert_int_equal(kvc_swim_member_count(h->core), 6);
    /* Once allocations succeed again the core probes every member again. */
    uint64_t t0 = h->now;
    s_run_until(h, t0 + 10000);
    const char *ids[] = {"site0/b", "site0/c", "site0/d", "site0/e", "site0/x"};
    for (int i = 0; i < 5; i++)
        assert_true(s_first_sent(h, ids[i], KVC__SWIM__MESSAGE__BODY_PING, t0, NULL) < t0 + 10000);
    s_harness_free(h);
}

/* Sends an alive update for id carrying info (key byte k, endpoint ep). */
static void s_update_info(h_t *h, const char *from, const char *id, uint64_t inc, uint8_t k,
                          const char *ep)
{
    Kvc__Swim__Message m = KVC__SWIM__MESSAGE__INIT;
    Kvc__Swim__Update u = KVC__SWIM__UPDATE__INIT;
    Kvc__Swim__Info info = KVC__SWIM__INFO__INIT;
    Kvc__Swim__Update *up = &u;
    uint8_t key[KVC_SWIM_KEY_LEN], buf[512];
    memset(key, k, sizeof key);
    info.region = "eu";
    info.endpoint = (char *)ep;
    info.public_key.data = key;
    info.public_key.len = sizeof key;
    m.version = 1;
    u.state = KVC__SWIM__STATE__ALIVE;
    u.id = (char *)id;
    u.incarnation = inc;
    u.accuser = "";
    u.info = &info;
    m.n_updates = 1;
    m.updates = &up;
    size_t n = kvc__swim__message__pack(&m, buf);
    s_deliver(h, from, buf, n);
    s_process(h);
}

/* The key byte and endpoint the core holds for id. */
static uint8_t s_key_of(const h_t *h, const char *id, char *ep, size_t ep_size)
{
    kvc_swim_member_t m;
    assert_int_equal(kvc_swim_member_get(h->core, id, &m), 0);
    assert_true(m.has_info);
    assert_non_null(m.public_key);
    kvc_strlcpy(ep, m.endpoint, ep_size);
    return m.public_key[0];
}

/* Member info is versioned by incarnation and the member's own word wins:
 * a peer gossiping first cannot pin another member's key. */
static void test_info_freshness(void **state)
{
    h_t *h = s_harness();
    char ep[64];
    /* site0/b pre-seeds a stranger's entry with its own key. */
    s_update_info(h, "site0/b", "site0/n", 0, 0xbb, "tcp://10.0.0.2:1");
    assert_int_equal(s_key_of(h, "site0/n", ep, sizeof ep), 0xbb);
    /* A third party repeating other info at the same incarnation changes nothing. */
    s_update_info(h, "site0/c", "site0/n", 0, 0xcc, "tcp://10.0.0.3:1");
    assert_int_equal(s_key_of(h, "site0/n", ep, sizeof ep), 0xbb);
    /* The member itself says who it is: that wins at the same incarnation. */
    s_update_info(h, "site0/n", "site0/n", 0, 0x11, "tcp://10.0.0.9:1");
    assert_int_equal(s_key_of(h, "site0/n", ep, sizeof ep), 0x11);
    assert_string_equal(ep, "tcp://10.0.0.9:1");
    /* ... and the corrected entry is passed on with its info. */
    size_t from = h->n_log;
    s_run_until(h, h->now + 1000);
    int spread = 0;
    for (size_t i = from; i < h->n_log; i++)
        for (size_t k = 0; k < h->log[i].msg->n_updates; k++) {
            const Kvc__Swim__Update *u = h->log[i].msg->updates[k];
            if (strcmp(u->id, "site0/n") == 0 && u->info && u->info->public_key.len == 32 &&
                u->info->public_key.data[0] == 0x11)
                spread++;
        }
    /* Sent exactly its retransmit limit: retransmit_mult (2) times
     * ceil(log10(live members + 1)) (1), within the second of gossip. */
    assert_int_equal(spread, 2);
    /* A restart: a higher incarnation replaces the info, from anyone. */
    s_update_info(h, "site0/c", "site0/n", 3, 0x22, "tcp://10.0.0.10:1");
    assert_int_equal(s_key_of(h, "site0/n", ep, sizeof ep), 0x22);
    assert_string_equal(ep, "tcp://10.0.0.10:1");
    /* An older incarnation never brings old info back. */
    s_update_info(h, "site0/d", "site0/n", 2, 0x11, "tcp://10.0.0.9:1");
    assert_int_equal(s_key_of(h, "site0/n", ep, sizeof ep), 0x22);
    /* The transport's proof (a credential on an authenticated link) wins too. */
    uint8_t real[KVC_SWIM_KEY_LEN];
    memset(real, 0x33, sizeof real);
    assert_int_equal(kvc_swim_vouch(h->core, "site0/n", real, "tcp://10.0.0.11:1", h->now), 1);
    assert_int_equal(s_key_of(h, "site0/n", ep, sizeof ep), 0x33);
    assert_string_equal(ep, "tcp://10.0.0.11:1");
    assert_int_equal(kvc_swim_vouch(h->core, "site0/n", real, "tcp://10.0.0.11:1", h->now), 0);
    assert_int_equal(kvc_swim_vouch(h->core, "site0/zz", real, "", h->now), KVC_ENOENT);
    s_harness_free(h);
}

/* force-leave: only for members that are not alive; they become left. */
static void test_force_leave(void **state)
{
    h_t *h = s_harness();
    assert_int_equal(kvc_swim_force_leave(h->core, "site0/b", h->now, &h->out), KVC_ESTATE);
    assert_int_equal(kvc_swim_force_leave(h->core, "site0/a", h->now, &h->out), KVC_EINVAL);
    assert_int_equal(kvc_swim_force_leave(h->core, "site0/q", h->now, &h->out), KVC_ENOENT);
    s_update(h, "site0/b", KVC_SWIM_DEAD, "site0/x", 0, "site0/b");
    assert_int_equal(s_state(h, "site0/x"), KVC_SWIM_DEAD);
    assert_int_equal(kvc_swim_force_leave(h->core, "site0/x", h->now, &h->out), 0);
    s_process(h);
    assert_int_equal(s_state(h, "site0/x"), KVC_SWIM_LEFT);
    assert_int_equal(s_first_event(h, KVC_MEMBER_EV_LEFT, "site0/x"), h->now);
    s_harness_free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_validates),
        cmocka_unit_test(test_probe_ack),
        cmocka_unit_test(test_suspect_dead_reap),
        cmocka_unit_test(test_missed_nacks_raise_local_health),
        cmocka_unit_test(test_refutation),
        cmocka_unit_test(test_confirmations_shorten_timeout),
        cmocka_unit_test(test_leave),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_message_size_bound),
        cmocka_unit_test(test_rejoin_after_partition),
        cmocka_unit_test(test_partial_partition_direct_lost),
        cmocka_unit_test(test_meta_spreads),
        cmocka_unit_test(test_alloc_failures),
        cmocka_unit_test(test_info_freshness),
        cmocka_unit_test(test_force_leave),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
