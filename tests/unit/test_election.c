/*
 * Unit tests of federation/election.c. A small deterministic network of
 * real cores is stepped one simulated millisecond at a time: every node has
 * its own clock rate (within the 1% drift bound the lease assumes), messages
 * have latency and may be lost, nodes crash, restart from their "disk",
 * pause (still judged by can_act at the real instant) and get partitioned.
 * The harness honours the durability contract: it persists the term and
 * vote before it puts a node's messages on the network.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "election.h"
#include "election.pb-c.h"
#include "rng.h"

#define NMAX 7
#define QMAX 4096
#define TERMS_MAX 8192

typedef struct {
    uint64_t at;
    int from, to;
    size_t len;
    uint8_t data[256];
} wmsg_t;

typedef struct {
    kvc_election_t *e;
    int up, paused;
    uint64_t disk_term;
    char disk_vote[KVC_MEMBER_ID_MAX + 1];
    uint32_t rate_ppm; /* local clock rate; 1000000 is exact */
    uint64_t off;      /* local time at global 0 */
} node_t;

typedef struct {
    node_t n[NMAX];
    int N;
    char ids[NMAX][32];
    const char *idp[NMAX];
    uint64_t now; /* global ms */
    kvc_rng_t rng;
    uint32_t loss_ppm;
    int cut[NMAX][NMAX];
    wmsg_t *q;
    size_t nq;
    uint32_t lat_min, lat_max;
    kvc_election_config_t cfg;
    kvc_outbox_t out;
    uint64_t violations;  /* instants with two nodes that can act */
    uint64_t two_in_term; /* terms with two different leaders */
    int term_leader[TERMS_MAX];
    uint64_t won;
} net_t;

static uint64_t s_local(const net_t *w, int i, uint64_t g)
{
    return w->n[i].off + g * w->n[i].rate_ppm / 1000000u;
}

/* Persists, then sends what node i left in the outbox. */
static void s_flush(net_t *w, int i)
{
    node_t *nd = &w->n[i];
    if (kvc_election_needs_persist(nd->e)) {
        kvc_election_durable(nd->e, &nd->disk_term, nd->disk_vote);
        kvc_election_persisted(nd->e);
    }
    for (size_t k = 0; k < w->out.n_msgs; k++) {
        const kvc_out_msg_t *m = &w->out.msgs[k];
        assert_int_equal(m->channel, KVC_ELECTION_CHANNEL);
        assert_true(m->len <= sizeof w->q[0].data);
        int to = -1;
        for (int j = 0; j < w->N; j++)
            if (strcmp(w->ids[j], m->to) == 0)
                to = j;
        assert_true(to >= 0 && to != i);
        if (w->cut[i][to] || kvc_rng_below(&w->rng, 1000000) < w->loss_ppm)
            continue;
        assert_true(w->nq < QMAX);
        wmsg_t *q = &w->q[w->nq++];
        q->at = w->now + w->lat_min + kvc_rng_below(&w->rng, w->lat_max - w->lat_min + 1);
        q->from = i;
        q->to = to;
        q->len = m->len;
        memcpy(q->data, kvc_outbox_data(&w->out, k), m->len);
    }
    kvc_outbox_reset(&w->out);
}

static void s_start(net_t *w, int i)
{
    node_t *nd = &w->n[i];
    nd->e = kvc_election_new(&w->cfg, w->ids[i], nd->disk_term, nd->disk_vote,
                             kvc_rng_next(&w->rng), s_local(w, i, w->now));
    assert_non_null(nd->e);
    assert_int_equal(kvc_election_set_voters(nd->e, w->idp, (size_t)w->N, s_local(w, i, w->now)),
                     0);
    nd->up = 1;
    nd->paused = 0;
}

static void s_crash(net_t *w, int i)
{
    kvc_election_destroy(&w->n[i].e);
    w->n[i].up = 0;
}

static void s_net_init(net_t *w, int N, uint64_t seed, int drift)
{
    memset(w, 0, sizeof *w);
    w->N = N;
    kvc_rng_seed(&w->rng, seed);
    kvc_election_config_profile(&w->cfg, "lan");
    w->lat_min = 1;
    w->lat_max = 5;
    w->q = calloc(QMAX, sizeof *w->q);
    assert_non_null(w->q);
    kvc_outbox_init(&w->out, 0);
    for (int i = 0; i < N; i++) {
        snprintf(w->ids[i], sizeof w->ids[i], "site-a/p%d", i);
        w->idp[i] = w->ids[i];
        w->n[i].rate_ppm = drift ? 990000u + (uint32_t)kvc_rng_below(&w->rng, 20001) : 1000000u;
        w->n[i].off = 1000 + kvc_rng_below(&w->rng, 100000);
    }
    for (int i = 0; i < TERMS_MAX; i++)
        w->term_leader[i] = -1;
    for (int i = 0; i < N; i++)
        s_start(w, i);
}

static void s_net_free(net_t *w)
{
    for (int i = 0; i < w->N; i++)
        kvc_election_destroy(&w->n[i].e);
    kvc_outbox_free(&w->out);
    free(w->q);
}

/* Number of nodes that may act at this instant (paused ones included: a
 * process that wakes up judges its lease by the clock, not by the pause). */
static int s_acting(net_t *w, int *who)
{
    int n = 0;
    for (int i = 0; i < w->N; i++)
        if (w->n[i].up && kvc_election_can_act(w->n[i].e, s_local(w, i, w->now))) {
            n++;
            if (who)
                *who = i;
        }
    return n;
}

/* One simulated millisecond: deliver, tick, check the invariants. */
static void s_step(net_t *w)
{
    w->now++;
    for (size_t k = 0; k < w->nq;) {
        wmsg_t *q = &w->q[k];
        if (q->at > w->now) {
            k++;
            continue;
        }
        node_t *nd = &w->n[q->to];
        if (nd->up && !nd->paused) {
            kvc_election_stats_t st;
            kvc_election_stats(nd->e, &st);
            assert_int_equal(kvc_election_receive(nd->e, s_local(w, q->to, w->now), w->ids[q->from],
                                                  q->data, q->len, &w->out),
                             0);
            kvc_election_stats_t st2;
            kvc_election_stats(nd->e, &st2);
            w->won += st2.won - st.won;
            s_flush(w, q->to);
        }
        w->q[k] = w->q[--w->nq];
    }
    for (int i = 0; i < w->N; i++) {
        node_t *nd = &w->n[i];
        if (!nd->up || nd->paused)
            continue;
        uint64_t t = s_local(w, i, w->now);
        if (kvc_election_next_deadline(nd->e) <= t) {
            kvc_election_stats_t st;
            kvc_election_stats(nd->e, &st);
            assert_int_equal(kvc_election_tick(nd->e, t, &w->out), 0);
            kvc_election_stats_t st2;
            kvc_election_stats(nd->e, &st2);
            w->won += st2.won - st.won;
            s_flush(w, i);
        }
    }
    if (s_acting(w, NULL) > 1)
        w->violations++;
    for (int i = 0; i < w->N; i++) {
        if (!w->n[i].up || kvc_election_state(w->n[i].e) != KVC_ELECTION_LEADER)
            continue;
        uint64_t term = kvc_election_term(w->n[i].e);
        assert_true(term < TERMS_MAX);
        if (w->term_leader[term] == -1)
            w->term_leader[term] = i;
        else if (w->term_leader[term] != i)
            w->two_in_term++;
    }
}

static void s_run(net_t *w, uint64_t ms)
{
    for (uint64_t k = 0; k < ms; k++)
        s_step(w);
}

/* Runs until someone can act (or `limit` ms pass); returns the ms taken. */
static uint64_t s_run_until_acting(net_t *w, uint64_t limit, int *who)
{
    uint64_t start = w->now;
    while (w->now - start < limit) {
        s_step(w);
        if (s_acting(w, who) == 1)
            return w->now - start;
    }
    return UINT64_MAX;
}

static void s_partition(net_t *w, int i, int on)
{
    for (int j = 0; j < w->N; j++)
        if (j != i)
            w->cut[i][j] = w->cut[j][i] = on;
}

/* ------------------------------------------------------------------------ */

static void test_config(void **state)
{
    kvc_election_config_t c;
    assert_int_equal(kvc_election_config_profile(&c, "lan"), 0);
    assert_int_equal(kvc_election_config_check(&c, NULL), 0);
    assert_int_equal(kvc_election_config_profile(&c, "wan"), 0);
    assert_int_equal(kvc_election_config_check(&c, NULL), 0);
    assert_int_equal(kvc_election_config_profile(&c, "nope"), KVC_EINVAL);
    kvc_election_config_profile(&c, "lan");
    c.lease_ms = 590; /* 590 * 1.01 > 600 * 0.99 */
    kvc_err_t err = {0};
    assert_int_equal(kvc_election_config_check(&c, &err), KVC_EINVAL);
    assert_non_null(strstr(err.msg, "lease_ms"));
    c.lease_ms = 588; /* 593.9 <= 594 */
    assert_int_equal(kvc_election_config_check(&c, NULL), 0);
    kvc_election_config_profile(&c, "lan");
    c.election_timeout_max_ms = c.election_timeout_min_ms;
    assert_int_equal(kvc_election_config_check(&c, NULL), KVC_EINVAL);
    assert_null(kvc_election_new(&c, "site-a/p0", 0, NULL, 1, 0));
    kvc_election_config_profile(&c, "lan");
    assert_null(kvc_election_new(&c, "no-slash", 0, NULL, 1, 0));
    assert_null(kvc_election_new(&c, "site-a/p0", 0, "Bad/Id", 1, 0));
}

/* The gossiped view: what the core says about itself, round-tripped, and
 * hostile bytes refused without touching the output. */
static void test_view(void **state)
{
    kvc_election_config_t c;
    kvc_election_config_profile(&c, "lan");
    kvc_election_t *e = kvc_election_new(&c, "site-a/solo", 4, NULL, 7, 5000);
    assert_non_null(e);
    kvc_election_view_t v, w;
    kvc_election_view(e, &v);
    assert_int_equal(v.term, 4);
    assert_int_equal(v.state, KVC_ELECTION_FOLLOWER);
    assert_false(v.voter);
    assert_string_equal(v.leader, "");
    const char *ids[] = {"site-a/solo"};
    assert_int_equal(kvc_election_set_voters(e, ids, 1, 5000), 0);
    kvc_outbox_t out;
    kvc_outbox_init(&out, 0);
    assert_int_equal(kvc_election_tick(e, 5000, &out), 0);
    kvc_election_view(e, &v);
    assert_int_equal(v.term, 5);
    assert_int_equal(v.state, KVC_ELECTION_LEADER);
    assert_true(v.voter);
    assert_string_equal(v.leader, "site-a/solo");
    uint8_t buf[KVC_ELECTION_VIEW_MAX];
    size_t n = 0;
    assert_int_equal(kvc_election_view_encode(&v, buf, sizeof buf, &n), 0);
    assert_true(n > 0 && n < 64);
    memset(&w, 0x5a, sizeof w);
    assert_int_equal(kvc_election_view_decode(buf, n, &w), 0);
    assert_int_equal(w.term, 5);
    assert_int_equal(w.state, KVC_ELECTION_LEADER);
    assert_true(w.voter);
    assert_string_equal(w.leader, "site-a/solo");
    assert_int_equal(kvc_election_view_encode(&v, buf, 3, &n), KVC_ERANGE);
    /* hostile: garbage, too long, a leader that is no member id, a state out of range */
    kvc_election_view_t keep = w;
    static const uint8_t junk[] = {0xff, 0xff, 0xff};
    assert_int_equal(kvc_election_view_decode(junk, sizeof junk, &w), KVC_EPARSE);
    uint8_t big[KVC_ELECTION_VIEW_MAX + 1] = {0};
    assert_int_equal(kvc_election_view_decode(big, sizeof big, &w), KVC_ERANGE);
    static const uint8_t bad_leader[] = {0x08, 0x01, 0x1a, 0x03, 'A', '/', 'b'};
    assert_int_equal(kvc_election_view_decode(bad_leader, sizeof bad_leader, &w), KVC_EPARSE);
    static const uint8_t bad_state[] = {0x08, 0x01, 0x20, 0x09};
    assert_int_equal(kvc_election_view_decode(bad_state, sizeof bad_state, &w), KVC_EPARSE);
    static const uint8_t bad_version[] = {0x08, 0x02};
    assert_int_equal(kvc_election_view_decode(bad_version, sizeof bad_version, &w), KVC_EPARSE);
    assert_memory_equal(&w, &keep, sizeof w);
    kvc_outbox_free(&out);
    kvc_election_destroy(&e);
}

static void test_one_voter_elects_itself(void **state)
{
    kvc_election_config_t c;
    kvc_election_config_profile(&c, "lan");
    kvc_election_t *e = kvc_election_new(&c, "site-a/solo", 0, NULL, 7, 5000);
    assert_non_null(e);
    const char *ids[] = {"site-a/solo"};
    assert_int_equal(kvc_election_set_voters(e, ids, 1, 5000), 0);
    assert_int_equal(kvc_election_next_deadline(e), 5000);
    kvc_outbox_t out;
    kvc_outbox_init(&out, 0);
    assert_int_equal(kvc_election_tick(e, 5000, &out), 0);
    assert_int_equal(kvc_election_state(e), KVC_ELECTION_LEADER);
    assert_true(kvc_election_can_act(e, 5000));
    assert_int_equal(kvc_election_term(e), 1);
    assert_string_equal(kvc_election_leader(e), "site-a/solo");
    assert_true(kvc_election_needs_persist(e));
    uint64_t term;
    char vote[KVC_MEMBER_ID_MAX + 1];
    kvc_election_durable(e, &term, vote);
    assert_int_equal(term, 1);
    assert_string_equal(vote, "site-a/solo");
    kvc_election_persisted(e);
    assert_false(kvc_election_needs_persist(e));
    assert_int_equal(out.n_msgs, 0);
    /* It keeps its lease by ticking; without ticks the lease runs out. */
    for (uint64_t t = 5000; t < 15000; t += 10)
        if (kvc_election_next_deadline(e) <= t)
            kvc_election_tick(e, t, &out);
    assert_true(kvc_election_can_act(e, 15000));
    assert_false(kvc_election_can_act(e, 15000 + c.lease_ms + c.heartbeat_interval_ms));
    assert_int_equal(kvc_election_term(e), 1);
    kvc_outbox_free(&out);
    kvc_election_destroy(&e);
    assert_null(e);
}

static void test_three_elect_one(void **state)
{
    for (uint64_t seed = 1; seed <= 20; seed++) {
        net_t w;
        s_net_init(&w, 3, seed, 1);
        int who = -1;
        uint64_t took = s_run_until_acting(&w, 10000, &who);
        assert_true(took != UINT64_MAX);
        s_run(&w, 3000);
        assert_int_equal(s_acting(&w, &who), 1);
        const char *leader = w.ids[who];
        uint64_t term = kvc_election_term(w.n[who].e);
        for (int i = 0; i < 3; i++) {
            assert_int_equal(kvc_election_term(w.n[i].e), term);
            assert_string_equal(kvc_election_leader(w.n[i].e), leader);
        }
        assert_int_equal(w.violations, 0);
        assert_int_equal(w.two_in_term, 0);
        s_net_free(&w);
    }
}

static void test_leader_crash_failover(void **state)
{
    uint64_t worst = 0, sum = 0;
    const int runs = 30;
    for (uint64_t seed = 100; seed < 100 + (uint64_t)runs; seed++) {
        net_t w;
        s_net_init(&w, 3, seed, 1);
        int who = -1;
        assert_true(s_run_until_acting(&w, 10000, &who) != UINT64_MAX);
        s_run(&w, 2000);
        assert_int_equal(s_acting(&w, &who), 1);
        uint64_t old_term = kvc_election_term(w.n[who].e);
        s_crash(&w, who);
        int next = -1;
        uint64_t took = s_run_until_acting(&w, 10000, &next);
        assert_true(took != UINT64_MAX);
        assert_true(next != who);
        assert_true(kvc_election_term(w.n[next].e) > old_term);
        /* followers' timers run from the last heartbeat: at most the max
         * timeout (1% slow clock) plus a pre-vote, a vote and a heartbeat;
         * a split vote costs one more timeout */
        assert_true(took <= 2 * 1010 + 50);
        if (took > worst)
            worst = took;
        sum += took;
        assert_int_equal(w.violations, 0);
        s_net_free(&w);
    }
    print_message("failover over %d runs: mean %llu ms, max %llu ms\n", runs,
                  (unsigned long long)(sum / runs), (unsigned long long)worst);
}

/* A voter cut off from the others cannot raise its term (pre-vote); one
 * that comes back with a higher term (restored from a later vote) does not
 * depose the healthy leader, which never stops being able to act. */
static void test_rejoin_does_not_depose(void **state)
{
    net_t w;
    s_net_init(&w, 3, 42, 1);
    int L = -1;
    assert_true(s_run_until_acting(&w, 10000, &L) != UINT64_MAX);
    s_run(&w, 1000);
    assert_int_equal(s_acting(&w, &L), 1);
    uint64_t term = kvc_election_term(w.n[L].e);
    int M = (L + 1) % 3;
    s_partition(&w, M, 1);
    s_run(&w, 10000);
    kvc_election_stats_t st;
    kvc_election_stats(w.n[M].e, &st);
    assert_true(st.prevotes >= 5);
    assert_int_equal(st.elections, 0);
    assert_int_equal(kvc_election_term(w.n[M].e), term);
    /* now it comes back with a term far ahead */
    s_crash(&w, M);
    w.n[M].disk_term = term + 5;
    w.n[M].disk_vote[0] = '\0';
    s_start(&w, M);
    s_partition(&w, M, 0);
    for (int k = 0; k < 10000; k++) {
        s_step(&w);
        assert_true(kvc_election_can_act(w.n[L].e, s_local(&w, L, w.now)));
    }
    assert_int_equal(kvc_election_term(w.n[L].e), term);
    assert_int_equal(kvc_election_state(w.n[L].e), KVC_ELECTION_LEADER);
    /* it heard a live leader of an older term: it neither acked (its term
     * is higher) nor campaigned */
    kvc_election_stats(w.n[M].e, &st);
    assert_int_equal(st.elections, 0);
    assert_int_equal(kvc_election_term(w.n[M].e), term + 5);
    /* when the leader dies, the one that ran ahead may win, at a higher term */
    s_crash(&w, L);
    int next = -1;
    assert_true(s_run_until_acting(&w, 10000, &next) != UINT64_MAX);
    assert_true(kvc_election_term(w.n[next].e) > term + 5);
    assert_int_equal(w.violations, 0);
    assert_int_equal(w.two_in_term, 0);
    s_net_free(&w);
}

/* Builds one election message. */
static size_t s_msg(uint8_t *buf, int kind, uint64_t term, const char *leader, uint64_t seq)
{
    Kvc__Election__Message m = KVC__ELECTION__MESSAGE__INIT;
    Kvc__Election__Vote v = KVC__ELECTION__VOTE__INIT;
    Kvc__Election__PreVote p = KVC__ELECTION__PRE_VOTE__INIT;
    Kvc__Election__Heartbeat h = KVC__ELECTION__HEARTBEAT__INIT;
    m.version = 1;
    if (kind == 'v') {
        v.term = term;
        m.body_case = KVC__ELECTION__MESSAGE__BODY_VOTE;
        m.vote = &v;
    } else if (kind == 'p') {
        p.term = term;
        m.body_case = KVC__ELECTION__MESSAGE__BODY_PRE_VOTE;
        m.pre_vote = &p;
    } else {
        h.term = term;
        h.leader = (char *)leader;
        h.seq = seq;
        m.body_case = KVC__ELECTION__MESSAGE__BODY_HEARTBEAT;
        m.heartbeat = &h;
    }
    return kvc__election__message__pack(&m, buf);
}

/* The reply in out->msgs[i], decoded (free with free_unpacked). */
static Kvc__Election__Message *s_reply(kvc_outbox_t *out, size_t i)
{
    assert_true(i < out->n_msgs);
    Kvc__Election__Message *m =
        kvc__election__message__unpack(NULL, out->msgs[i].len, kvc_outbox_data(out, i));
    assert_non_null(m);
    return m;
}

static const char *s_three[] = {"site-a/a", "site-a/b", "site-a/v"};

/* One vote per term, across a restart from the persisted state. */
static void test_vote_persistence(void **state)
{
    kvc_election_config_t c;
    kvc_election_config_profile(&c, "lan");
    uint64_t now = 1000;
    kvc_election_t *e = kvc_election_new(&c, "site-a/v", 2, NULL, 3, now);
    kvc_election_set_voters(e, s_three, 3, now);
    kvc_outbox_t out;
    kvc_outbox_init(&out, 0);
    uint8_t buf[256];
    /* Within the restart promise no vote is granted, nor the term adopted. */
    size_t n = s_msg(buf, 'v', 3, NULL, 0);
    assert_int_equal(kvc_election_receive(e, now + 10, "site-a/a", buf, n, &out), 0);
    Kvc__Election__Message *r = s_reply(&out, 0);
    assert_false(r->vote_reply->granted);
    assert_int_equal(r->vote_reply->term, 2);
    kvc__election__message__free_unpacked(r, NULL);
    kvc_outbox_reset(&out);
    assert_false(kvc_election_needs_persist(e));
    now += c.election_timeout_min_ms;
    assert_int_equal(kvc_election_receive(e, now, "site-a/a", buf, n, &out), 0);
    r = s_reply(&out, 0);
    assert_true(r->vote_reply->granted);
    kvc__election__message__free_unpacked(r, NULL);
    /* the grant is in the outbox: the caller must persist first */
    assert_true(kvc_election_needs_persist(e));
    uint64_t term;
    char vote[KVC_MEMBER_ID_MAX + 1];
    kvc_election_durable(e, &term, vote);
    assert_int_equal(term, 3);
    assert_string_equal(vote, "site-a/a");
    kvc_election_persisted(e);
    kvc_outbox_reset(&out);
    /* restart from disk */
    kvc_election_destroy(&e);
    now += 5;
    e = kvc_election_new(&c, "site-a/v", term, vote, 4, now);
    kvc_election_set_voters(e, s_three, 3, now);
    now += c.election_timeout_min_ms;
    n = s_msg(buf, 'v', 3, NULL, 0);
    assert_int_equal(kvc_election_receive(e, now, "site-a/b", buf, n, &out), 0);
    r = s_reply(&out, 0);
    assert_false(r->vote_reply->granted); /* already voted for a in term 3 */
    kvc__election__message__free_unpacked(r, NULL);
    kvc_outbox_reset(&out);
    assert_int_equal(kvc_election_receive(e, now, "site-a/a", buf, n, &out), 0);
    r = s_reply(&out, 0);
    assert_true(r->vote_reply->granted); /* a repeat to the same candidate */
    kvc__election__message__free_unpacked(r, NULL);
    kvc_outbox_reset(&out);
    /* a later term frees the vote; an older term is refused */
    now += c.election_timeout_min_ms;
    n = s_msg(buf, 'v', 2, NULL, 0);
    assert_int_equal(kvc_election_receive(e, now, "site-a/b", buf, n, &out), 0);
    r = s_reply(&out, 0);
    assert_false(r->vote_reply->granted);
    assert_int_equal(r->vote_reply->term, 3);
    kvc__election__message__free_unpacked(r, NULL);
    kvc_outbox_reset(&out);
    n = s_msg(buf, 'v', 4, NULL, 0);
    assert_int_equal(kvc_election_receive(e, now, "site-a/b", buf, n, &out), 0);
    r = s_reply(&out, 0);
    assert_true(r->vote_reply->granted);
    kvc__election__message__free_unpacked(r, NULL);
    kvc_election_durable(e, &term, vote);
    assert_int_equal(term, 4);
    assert_string_equal(vote, "site-a/b");
    kvc_outbox_free(&out);
    kvc_election_destroy(&e);
}

/* Pre-votes are refused while a live leader was heard, and change nothing. */
static void test_prevote_rules(void **state)
{
    kvc_election_config_t c;
    kvc_election_config_profile(&c, "lan");
    uint64_t now = 1000 + c.election_timeout_min_ms;
    kvc_election_t *e = kvc_election_new(&c, "site-a/v", 5, NULL, 3, 1000);
    kvc_election_set_voters(e, s_three, 3, now);
    kvc_outbox_t out;
    kvc_outbox_init(&out, 0);
    uint8_t buf[256];
    size_t n = s_msg(buf, 'p', 6, NULL, 0);
    assert_int_equal(kvc_election_receive(e, now, "site-a/b", buf, n, &out), 0);
    Kvc__Election__Message *r = s_reply(&out, 0);
    assert_true(r->pre_vote_reply->granted);
    assert_int_equal(r->pre_vote_reply->asked_term, 6);
    kvc__election__message__free_unpacked(r, NULL);
    kvc_outbox_reset(&out);
    assert_int_equal(kvc_election_term(e), 5);
    assert_false(kvc_election_needs_persist(e));
    /* a heartbeat from a at term 5 */
    n = s_msg(buf, 'h', 5, "site-a/a", 1);
    assert_int_equal(kvc_election_receive(e, now, "site-a/a", buf, n, &out), 0);
    r = s_reply(&out, 0);
    assert_true(r->heartbeat_ack->ok);
    kvc__election__message__free_unpacked(r, NULL);
    kvc_outbox_reset(&out);
    assert_string_equal(kvc_election_leader(e), "site-a/a");
    n = s_msg(buf, 'p', 9, NULL, 0);
    assert_int_equal(
        kvc_election_receive(e, now + c.election_timeout_min_ms - 1, "site-a/b", buf, n, &out), 0);
    r = s_reply(&out, 0);
    assert_false(r->pre_vote_reply->granted);
    kvc__election__message__free_unpacked(r, NULL);
    kvc_outbox_reset(&out);
    /* and a real vote at a higher term is refused without adopting it */
    n = s_msg(buf, 'v', 9, NULL, 0);
    assert_int_equal(kvc_election_receive(e, now + 10, "site-a/b", buf, n, &out), 0);
    r = s_reply(&out, 0);
    assert_false(r->vote_reply->granted);
    kvc__election__message__free_unpacked(r, NULL);
    kvc_outbox_reset(&out);
    assert_int_equal(kvc_election_term(e), 5);
    /* once the promise ran out, the pre-vote is granted */
    n = s_msg(buf, 'p', 9, NULL, 0);
    assert_int_equal(
        kvc_election_receive(e, now + c.election_timeout_min_ms, "site-a/b", buf, n, &out), 0);
    r = s_reply(&out, 0);
    assert_true(r->pre_vote_reply->granted);
    kvc__election__message__free_unpacked(r, NULL);
    kvc_election_stats_t st;
    kvc_election_stats(e, &st);
    assert_int_equal(st.votes_refused_lease, 2);
    kvc_outbox_free(&out);
    kvc_election_destroy(&e);
}

/* Fencing: actions of an older term are refused, by leaders and followers. */
static void test_fencing(void **state)
{
    net_t w;
    s_net_init(&w, 3, 9, 0);
    int L = -1;
    assert_true(s_run_until_acting(&w, 10000, &L) != UINT64_MAX);
    s_run(&w, 500);
    uint64_t term = kvc_election_term(w.n[L].e);
    for (int i = 0; i < 3; i++) {
        assert_true(kvc_election_fence_ok(w.n[i].e, term));
        assert_true(kvc_election_fence_ok(w.n[i].e, term + 1));
        assert_false(kvc_election_fence_ok(w.n[i].e, term - 1));
    }
    /* the leader is cut off: it stops acting by its lease, steps down, and
     * the rest elect a new one whose term fences the old one out */
    s_partition(&w, L, 1);
    uint64_t cut_at = w.now;
    while (kvc_election_can_act(w.n[L].e, s_local(&w, L, w.now)))
        s_step(&w);
    assert_true(w.now - cut_at <= w.cfg.lease_ms + 10);
    s_run(&w, 5);
    assert_int_equal(kvc_election_state(w.n[L].e), KVC_ELECTION_FOLLOWER);
    int next = -1;
    assert_true(s_run_until_acting(&w, 10000, &next) != UINT64_MAX);
    assert_true(next != L);
    uint64_t t2 = kvc_election_term(w.n[next].e);
    assert_true(t2 > term);
    assert_false(kvc_election_fence_ok(w.n[next].e, term));
    s_partition(&w, L, 0);
    s_run(&w, 1000);
    assert_int_equal(kvc_election_term(w.n[L].e), t2);
    assert_false(kvc_election_fence_ok(w.n[L].e, term));
    assert_int_equal(w.violations, 0);
    s_net_free(&w);
}

/* Many seeded runs with loss, crashes, restarts, pauses and partitions:
 * never two nodes that can act at one instant, never two leaders in a term,
 * and elections do happen (so the check can fail). */
static void test_safety_random(void **state)
{
    const int runs = 120;
    uint64_t violations = 0, two = 0, won = 0, acting_ms = 0, total_ms = 0;
    for (int run = 0; run < runs; run++) {
        net_t w;
        int N = run % 3 == 0 ? 5 : 3;
        s_net_init(&w, N, 1000 + (uint64_t)run, 1);
        w.loss_ppm = (uint32_t)kvc_rng_below(&w.rng, 200000); /* up to 20% */
        w.lat_max = 1 + (uint32_t)kvc_rng_below(&w.rng, 40);
        for (int sec = 0; sec < 20; sec++) {
            for (int k = 0; k < 1000; k++) {
                s_step(&w);
                acting_ms += s_acting(&w, NULL) > 0;
            }
            total_ms += 1000;
            int i = (int)kvc_rng_below(&w.rng, (uint64_t)N);
            int j = (int)kvc_rng_below(&w.rng, (uint64_t)N);
            switch (kvc_rng_below(&w.rng, 10)) {
            case 0:
                if (w.n[i].up)
                    s_crash(&w, i);
                break;
            case 1:
            case 2:
                if (!w.n[i].up)
                    s_start(&w, i);
                break;
            case 3:
                if (w.n[i].up)
                    w.n[i].paused = !w.n[i].paused;
                break;
            case 4:
                s_partition(&w, i, 1);
                break;
            case 5:
                memset(w.cut, 0, sizeof w.cut);
                break;
            case 6: /* one link, both ways: a partial partition */
                if (i != j)
                    w.cut[i][j] = w.cut[j][i] = 1;
                break;
            case 7: /* one way only */
                if (i != j)
                    w.cut[i][j] = 1;
                break;
            default: /* crash the leader */
                for (int k = 0; k < N; k++)
                    if (w.n[k].up && kvc_election_state(w.n[k].e) == KVC_ELECTION_LEADER) {
                        s_crash(&w, k);
                        break;
                    }
                break;
            }
        }
        violations += w.violations;
        two += w.two_in_term;
        won += w.won;
        s_net_free(&w);
    }
    print_message("%d seeded runs (%llu s simulated): %llu elections won, leader acting %.0f%% "
                  "of the time, %llu violations, %llu terms with two leaders\n",
                  runs, (unsigned long long)(total_ms / 1000), (unsigned long long)won,
                  100.0 * (double)acting_ms / (double)total_ms, (unsigned long long)violations,
                  (unsigned long long)two);
    assert_int_equal(violations, 0);
    assert_int_equal(two, 0);
    /* the chaos leaves no majority up part of the time */
    assert_true(won >= (uint64_t)runs * 2);
    assert_true(acting_ms > total_ms / 5);
}

/* Hostile bytes never crash, are counted, and change nothing. */
static void test_hostile_bytes(void **state)
{
    kvc_election_config_t c;
    kvc_election_config_profile(&c, "lan");
    uint64_t now = 5000;
    kvc_election_t *e = kvc_election_new(&c, "site-a/v", 5, NULL, 3, 1000);
    kvc_election_set_voters(e, s_three, 3, now);
    kvc_outbox_t out;
    kvc_outbox_init(&out, 0);
    uint8_t buf[2048];
    kvc_rng_t r;
    kvc_rng_seed(&r, 77);
    for (int k = 0; k < 20000; k++) {
        size_t n = kvc_rng_below(&r, 64);
        for (size_t i = 0; i < n; i++)
            buf[i] = (uint8_t)kvc_rng_next(&r);
        int rc = kvc_election_receive(e, now, "site-a/a", buf, n, &out);
        assert_true(rc == 0 || rc == KVC_EPARSE);
    }
    kvc_outbox_reset(&out);
    kvc_election_stats_t st0, st;
    kvc_election_stats(e, &st0);
    uint64_t term0 = kvc_election_term(e);
    /* oversize */
    memset(buf, 0, sizeof buf);
    assert_int_equal(kvc_election_receive(e, now, "site-a/a", buf, KVC_ELECTION_WIRE_MAX + 1, &out),
                     KVC_ERANGE);
    /* truncated */
    size_t n = s_msg(buf, 'h', 9, "site-a/a", 1);
    assert_int_equal(kvc_election_receive(e, now, "site-a/a", buf, n - 1, &out), KVC_EPARSE);
    /* leader is not the sender */
    n = s_msg(buf, 'h', 9, "site-a/b", 1);
    assert_int_equal(kvc_election_receive(e, now, "site-a/a", buf, n, &out), KVC_EPARSE);
    /* term 0 and the largest term */
    n = s_msg(buf, 'v', 0, NULL, 0);
    assert_int_equal(kvc_election_receive(e, now, "site-a/a", buf, n, &out), KVC_EPARSE);
    n = s_msg(buf, 'p', UINT64_MAX, NULL, 0);
    assert_int_equal(kvc_election_receive(e, now, "site-a/a", buf, n, &out), KVC_EPARSE);
    /* wrong version */
    n = s_msg(buf, 'v', 9, NULL, 0);
    assert_int_equal(buf[0], 0x08);
    buf[1] = 2;
    assert_int_equal(kvc_election_receive(e, now, "site-a/a", buf, n, &out), KVC_EPARSE);
    /* a non-voter is ignored */
    n = s_msg(buf, 'h', 9, "site-b/x", 1);
    assert_int_equal(kvc_election_receive(e, now, "site-b/x", buf, n, &out), 0);
    /* an empty message has no body */
    assert_int_equal(kvc_election_receive(e, now, "site-a/a", buf, 0, &out), KVC_EPARSE);
    assert_int_equal(kvc_election_receive(e, now, "site-a/a", NULL, 3, &out), KVC_EINVAL);
    assert_int_equal(out.n_msgs, 0);
    assert_int_equal(kvc_election_term(e), term0);
    kvc_election_stats(e, &st);
    assert_int_equal(st.dropped - st0.dropped, 8);
    /* allocation failure inside the decoder is ours, not the sender's */
    n = s_msg(buf, 'h', 9, "site-a/a", 1);
    kvc_alloc_fail_after(0);
    int rc = kvc_election_receive(e, now, "site-a/a", buf, n, &out);
    kvc_alloc_fail_after(-1);
    assert_int_equal(rc, KVC_ENOMEM);
    kvc_outbox_free(&out);
    kvc_election_destroy(&e);
}

/* The core.h table and member events. */
static void test_core_ops(void **state)
{
    kvc_core_set_t set;
    kvc_core_set_init(&set);
    kvc_election_config_t c;
    kvc_election_config_profile(&c, "lan");
    kvc_election_t *e = kvc_election_new(&c, "site-a/v", 0, NULL, 3, 1000);
    kvc_election_set_voters(e, s_three, 3, 1000);
    assert_int_equal(kvc_core_set_add(&set, &kvc_election_core_ops, e), 0);
    assert_non_null(kvc_core_set_find(&set, 40));
    kvc_outbox_t out;
    kvc_outbox_init(&out, 0);
    uint8_t buf[256];
    uint64_t now = 1000 + c.election_timeout_min_ms;
    size_t n = s_msg(buf, 'h', 1, "site-a/a", 1);
    assert_int_equal(kvc_core_set_receive(&set, 40, now, "site-a/a", buf, n, &out), 0);
    assert_int_equal(out.n_msgs, 1);
    uint64_t d = kvc_core_set_next_deadline(&set);
    assert_true(d >= now + c.election_timeout_min_ms);
    /* the leader declared dead: our timer comes forward to the promise */
    kvc_outbox_event(&out, KVC_MEMBER_EV_DEAD, "site-a/a", 0, 0);
    kvc_core_set_deliver(&set, now + 50, &out);
    assert_true(kvc_core_set_next_deadline(&set) <
                now + c.election_timeout_min_ms + c.heartbeat_interval_ms);
    assert_null(kvc_election_leader(e));
    kvc_outbox_free(&out);
    kvc_election_destroy(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_one_voter_elects_itself),
        cmocka_unit_test(test_three_elect_one),
        cmocka_unit_test(test_leader_crash_failover),
        cmocka_unit_test(test_rejoin_does_not_depose),
        cmocka_unit_test(test_vote_persistence),
        cmocka_unit_test(test_prevote_rules),
        cmocka_unit_test(test_fencing),
        cmocka_unit_test(test_safety_random),
        cmocka_unit_test(test_hostile_bytes),
        cmocka_unit_test(test_core_ops),
        cmocka_unit_test(test_view),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
