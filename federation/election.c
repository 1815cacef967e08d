/*
 * election.c - the site coordinator election core: pre-vote, vote, leader
 * heartbeats and the leader lease (the reasoning is in election.h).
 *
 * It is a pure state machine over (time, message) inputs. It must never read
 * a clock, call rand(), or touch a socket or file: time comes in as now_ms,
 * randomness from the seeded kvc_rng_t, messages leave through the caller's
 * kvc_outbox_t, and the term and vote leave through kvc_election_durable for
 * the caller to persist before it sends. Every byte it decodes is hostile.
 *
 * Choices worth knowing:
 *  - a leader ignores the term in a refused HeartbeatAck: a voter that ran
 *    ahead (restored, or partitioned mid-campaign) proves no rival leader,
 *    since a rival needs votes from a majority that now acks us. It only
 *    stops counting toward our lease; a higher term in a Heartbeat (a rival
 *    leader) or in a vote or pre-vote reply steps us down at once.
 *  - a granted vote counts as that voter's ack of the candidate's lease from
 *    the moment the Vote was sent: the voter promises no other vote for
 *    election_timeout_min_ms from the grant, exactly as after a heartbeat.
 */
#include "election.h"

#include <string.h>

#include "election.pb-c.h"
#include "pb_alloc.h"
#include "rng.h"

#define WIRE_VERSION 1
#define HB_RING 64 /* heartbeat send times remembered for acks */

typedef struct {
    char id[KVC_MEMBER_ID_MAX + 1];
    int granted;       /* pre-vote or vote in the current round */
    uint64_t acked_ms; /* leader: latest send time this voter acked; 0 none */
} voter_t;

struct kvc_election {
    kvc_election_config_t cfg;
    char self[KVC_MEMBER_ID_MAX + 1];
    kvc_rng_t rng;
    /* durable */
    uint64_t term;
    char voted_for[KVC_MEMBER_ID_MAX + 1];
    int dirty;
    /* volatile */
    kvc_election_state_t state;
    char leader[KVC_MEMBER_ID_MAX + 1];
    voter_t voters[KVC_ELECTION_VOTERS_MAX];
    size_t n_voters;
    int self_voter;
    uint64_t promise_until;     /* no votes to anyone before this */
    uint64_t election_deadline; /* follower / (pre)candidate timer */
    uint64_t prevote_term;
    uint64_t campaign_ms; /* when our Vote requests left */
    uint64_t hb_deadline;
    uint64_t hb_seq;
    uint64_t hb_sent[HB_RING]; /* send time of seq, by seq % HB_RING */
    uint64_t hb_seq_at[HB_RING];
    uint64_t self_acked_ms;
    uint64_t lease_end;
    kvc_election_stats_t stats;
};

static const char *s_state_names[] = {"follower", "precandidate", "candidate", "leader"};

const char *kvc_election_state_name(kvc_election_state_t st)
{
    if ((unsigned)st > KVC_ELECTION_LEADER)
        return "unknown";
    return s_state_names[st];
}

int kvc_election_config_profile(kvc_election_config_t *cfg, const char *profile)
{
    if (!cfg || !profile)
        return KVC_EINVAL;
    if (strcmp(profile, "lan") == 0) {
        *cfg = (kvc_election_config_t){600, 1000, 100, 540};
        return KVC_OK;
    }
    if (strcmp(profile, "wan") == 0) {
        *cfg = (kvc_election_config_t){2000, 4000, 250, 1800};
        return KVC_OK;
    }
    return KVC_EINVAL;
}

int kvc_election_config_check(const kvc_election_config_t *c, kvc_err_t *err)
{
    if (!c)
        return kvc_err_set(err, KVC_EINVAL, "election: no config");
    if (c->heartbeat_interval_ms < 1 || c->heartbeat_interval_ms > 60000)
        return kvc_err_set(err, KVC_EINVAL, "election.heartbeat_interval_ms: must be 1..60000");
    if (c->election_timeout_min_ms < 2 * c->heartbeat_interval_ms ||
        c->election_timeout_min_ms > 600000)
        return kvc_err_set(err, KVC_EINVAL,
                           "election.election_timeout_min_ms: must be 2 heartbeats..600000");
    if (c->election_timeout_max_ms <= c->election_timeout_min_ms ||
        c->election_timeout_max_ms > 1200000)
        return kvc_err_set(err, KVC_EINVAL,
                           "election.election_timeout_max_ms: must be above the min, <= 1200000");
    if (c->lease_ms < 2 * c->heartbeat_interval_ms)
        return kvc_err_set(err, KVC_EINVAL, "election.lease_ms: must be >= 2 heartbeats");
    /* lease * (1 + rho) <= timeout_min * (1 - rho), rho in ppm. */
    if ((uint64_t)c->lease_ms * (1000000u + KVC_ELECTION_DRIFT_PPM) >
        (uint64_t)c->election_timeout_min_ms * (1000000u - KVC_ELECTION_DRIFT_PPM))
        return kvc_err_set(err, KVC_EINVAL,
                           "election.lease_ms: must be <= election_timeout_min_ms * (1-%g)/(1+%g) "
                           "(clock drift bound)",
                           KVC_ELECTION_DRIFT_PPM / 1e6, KVC_ELECTION_DRIFT_PPM / 1e6);
    return KVC_OK;
}

/* Is s a well-formed "site/name" ([a-z0-9-]{1,63} each)? */
static int s_id_valid(const char *s)
{
    if (!s)
        return 0;
    size_t part = 0, parts = 1;
    for (const char *p = s; *p; p++) {
        if (*p == '/') {
            if (part == 0 || ++parts > 2)
                return 0;
            part = 0;
            continue;
        }
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-'))
            return 0;
        if (++part > 63)
            return 0;
    }
    return parts == 2 && part > 0;
}

/* A random election timeout in [min, max). */
static uint64_t s_timeout(kvc_election_t *e)
{
    uint64_t span = e->cfg.election_timeout_max_ms - e->cfg.election_timeout_min_ms;
    return e->cfg.election_timeout_min_ms + kvc_rng_below(&e->rng, span);
}

/* The voter entry of id, or NULL. */
static voter_t *s_voter(kvc_election_t *e, const char *id)
{
    for (size_t i = 0; i < e->n_voters; i++)
        if (strcmp(e->voters[i].id, id) == 0)
            return &e->voters[i];
    return NULL;
}

static size_t s_majority(const kvc_election_t *e)
{
    return e->n_voters / 2 + 1;
}

/* Sets term (a raise forgets the vote and the leader); marks it dirty. */
static void s_set_term(kvc_election_t *e, uint64_t term)
{
    if (term == e->term)
        return;
    e->term = term;
    e->voted_for[0] = '\0';
    e->leader[0] = '\0';
    e->dirty = 1;
}

/* Becomes a follower with a fresh election timer. */
static void s_follow(kvc_election_t *e, uint64_t now_ms)
{
    if (e->state == KVC_ELECTION_LEADER)
        e->stats.step_downs++;
    e->state = KVC_ELECTION_FOLLOWER;
    e->lease_end = 0;
    e->election_deadline = now_ms + s_timeout(e);
}

/* Packs m into the outbox for `to`. A full outbox drops it (counted there):
 * the protocol survives loss. */
static void s_send(kvc_election_t *e, kvc_outbox_t *out, const char *to, Kvc__Election__Message *m)
{
    m->version = WIRE_VERSION;
    size_t n = kvc__election__message__get_packed_size(m);
    if (n > KVC_ELECTION_WIRE_MAX)
        return;
    uint8_t *buf = kvc_outbox_reserve(out, n ? n : 1);
    if (!buf)
        return;
    kvc__election__message__pack(m, buf);
    (void)kvc_outbox_commit(out, to, KVC_ELECTION_CHANNEL, n);
}

/* Sends m to every voter but ourselves. */
static void s_broadcast(kvc_election_t *e, kvc_outbox_t *out, Kvc__Election__Message *m)
{
    for (size_t i = 0; i < e->n_voters; i++)
        if (strcmp(e->voters[i].id, e->self) != 0)
            s_send(e, out, e->voters[i].id, m);
}

/* Recomputes the lease end from the voters' acks: the majority-th latest
 * acked send time plus lease_ms. */
static void s_update_lease(kvc_election_t *e)
{
    uint64_t v[KVC_ELECTION_VOTERS_MAX];
    size_t n = 0;
    for (size_t i = 0; i < e->n_voters; i++) {
        uint64_t a =
            strcmp(e->voters[i].id, e->self) == 0 ? e->self_acked_ms : e->voters[i].acked_ms;
        if (a)
            v[n++] = a;
    }
    size_t k = s_majority(e);
    if (n < k) {
        e->lease_end = 0;
        return;
    }
    /* partial selection sort, descending, to the k-th */
    for (size_t i = 0; i < k; i++)
        for (size_t j = i + 1; j < n; j++)
            if (v[j] > v[i]) {
                uint64_t t = v[i];
                v[i] = v[j];
                v[j] = t;
            }
    e->lease_end = v[k - 1] + e->cfg.lease_ms;
}

/* Leader: sends one heartbeat round and remembers when. */
static void s_heartbeat(kvc_election_t *e, uint64_t now_ms, kvc_outbox_t *out)
{
    e->hb_seq++;
    e->hb_sent[e->hb_seq % HB_RING] = now_ms;
    e->hb_seq_at[e->hb_seq % HB_RING] = e->hb_seq;
    /* our own ack: we promise nothing to ourselves beyond leading, and we
     * stop acting the moment we step down */
    e->self_acked_ms = now_ms ? now_ms : 1;
    e->hb_deadline = now_ms + e->cfg.heartbeat_interval_ms;
    Kvc__Election__Message m = KVC__ELECTION__MESSAGE__INIT;
    Kvc__Election__Heartbeat hb = KVC__ELECTION__HEARTBEAT__INIT;
    hb.term = e->term;
    hb.leader = e->self;
    hb.seq = e->hb_seq;
    hb.lease_ms = e->cfg.lease_ms;
    m.body_case = KVC__ELECTION__MESSAGE__BODY_HEARTBEAT;
    m.heartbeat = &hb;
    s_broadcast(e, out, &m);
    s_update_lease(e);
}

/* Candidate -> leader: the grants are the first acks of the lease. */
static void s_become_leader(kvc_election_t *e, uint64_t now_ms, kvc_outbox_t *out)
{
    e->state = KVC_ELECTION_LEADER;
    kvc_strlcpy(e->leader, e->self, sizeof e->leader);
    e->stats.won++;
    /* a grant covers the lease from when the Vote left, not from now */
    for (size_t i = 0; i < e->n_voters; i++)
        e->voters[i].acked_ms = e->voters[i].granted ? e->campaign_ms : 0;
    s_heartbeat(e, now_ms, out);
}

/* Counts grants of the current round. */
static size_t s_grants(const kvc_election_t *e)
{
    size_t n = 0;
    for (size_t i = 0; i < e->n_voters; i++)
        n += e->voters[i].granted != 0;
    return n;
}

/* Pre-vote won: raise the term, vote for ourselves (dirty: the caller
 * persists before the Votes leave), ask for votes. */
static void s_campaign(kvc_election_t *e, uint64_t now_ms, kvc_outbox_t *out)
{
    s_set_term(e, e->term + 1);
    kvc_strlcpy(e->voted_for, e->self, sizeof e->voted_for);
    e->dirty = 1;
    e->state = KVC_ELECTION_CANDIDATE;
    e->campaign_ms = now_ms ? now_ms : 1;
    e->stats.elections++;
    for (size_t i = 0; i < e->n_voters; i++)
        e->voters[i].granted = strcmp(e->voters[i].id, e->self) == 0;
    e->election_deadline = now_ms + s_timeout(e);
    if (s_grants(e) >= s_majority(e)) {
        s_become_leader(e, now_ms, out);
        return;
    }
    Kvc__Election__Message m = KVC__ELECTION__MESSAGE__INIT;
    Kvc__Election__Vote v = KVC__ELECTION__VOTE__INIT;
    v.term = e->term;
    m.body_case = KVC__ELECTION__MESSAGE__BODY_VOTE;
    m.vote = &v;
    s_broadcast(e, out, &m);
}

/* Election timer fired: ask for pre-votes at term + 1. */
static void s_prevote(kvc_election_t *e, uint64_t now_ms, kvc_outbox_t *out)
{
    e->state = KVC_ELECTION_PRECANDIDATE;
    e->leader[0] = '\0';
    e->prevote_term = e->term + 1;
    e->stats.prevotes++;
    for (size_t i = 0; i < e->n_voters; i++)
        e->voters[i].granted = strcmp(e->voters[i].id, e->self) == 0;
    e->election_deadline = now_ms + s_timeout(e);
    if (s_grants(e) >= s_majority(e)) {
        s_campaign(e, now_ms, out);
        return;
    }
    Kvc__Election__Message m = KVC__ELECTION__MESSAGE__INIT;
    Kvc__Election__PreVote p = KVC__ELECTION__PRE_VOTE__INIT;
    p.term = e->prevote_term;
    m.body_case = KVC__ELECTION__MESSAGE__BODY_PRE_VOTE;
    m.pre_vote = &p;
    s_broadcast(e, out, &m);
}

kvc_election_t *kvc_election_new(const kvc_election_config_t *cfg, const char *self_id,
                                 uint64_t restored_term, const char *restored_vote, uint64_t seed,
                                 uint64_t now_ms)
{
    if (kvc_election_config_check(cfg, NULL) != 0 || !s_id_valid(self_id) ||
        restored_term == UINT64_MAX)
        return NULL;
    if (restored_vote && restored_vote[0] && !s_id_valid(restored_vote))
        return NULL;
    kvc_election_t *e = kvc_calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->cfg = *cfg;
    kvc_strlcpy(e->self, self_id, sizeof e->self);
    kvc_rng_seed(&e->rng, seed);
    e->term = restored_term;
    if (restored_vote)
        kvc_strlcpy(e->voted_for, restored_vote, sizeof e->voted_for);
    e->state = KVC_ELECTION_FOLLOWER;
    /* We may have acked a heartbeat just before a crash: keep the promise. */
    e->promise_until = now_ms + cfg->election_timeout_min_ms;
    e->election_deadline = now_ms + s_timeout(e);
    return e;
}

void kvc_election_destroy(kvc_election_t **self_p)
{
    if (self_p && *self_p) {
        kvc_free(*self_p);
        *self_p = NULL;
    }
}

int kvc_election_set_voters(kvc_election_t *e, const char *const *ids, size_t n, uint64_t now_ms)
{
    if (!e || (!ids && n))
        return KVC_EINVAL;
    if (n > KVC_ELECTION_VOTERS_MAX)
        return KVC_ERANGE;
    for (size_t i = 0; i < n; i++) {
        if (!s_id_valid(ids[i]))
            return KVC_EINVAL;
        for (size_t j = 0; j < i; j++)
            if (strcmp(ids[i], ids[j]) == 0)
                return KVC_EINVAL;
    }
    /* Keep the acks of voters that stay, so a leader keeps its lease. */
    voter_t next[KVC_ELECTION_VOTERS_MAX];
    int self_voter = 0;
    for (size_t i = 0; i < n; i++) {
        voter_t *old = s_voter(e, ids[i]);
        memset(&next[i], 0, sizeof next[i]);
        kvc_strlcpy(next[i].id, ids[i], sizeof next[i].id);
        if (old)
            next[i].acked_ms = old->acked_ms;
        if (strcmp(ids[i], e->self) == 0)
            self_voter = 1;
    }
    if (n)
        memcpy(e->voters, next, n * sizeof next[0]);
    e->n_voters = n;
    e->self_voter = self_voter;
    if (e->state == KVC_ELECTION_LEADER && self_voter) {
        s_update_lease(e); /* the majority changed */
    } else if (e->state != KVC_ELECTION_FOLLOWER) {
        s_follow(e, now_ms); /* a round counted against the old set */
        e->leader[0] = '\0';
    }
    if (self_voter && n == 1 && e->state != KVC_ELECTION_LEADER)
        e->election_deadline = now_ms; /* nobody to wait for */
    return KVC_OK;
}

/* --- receiving ----------------------------------------------------------- */

static void s_on_prevote(kvc_election_t *e, uint64_t now_ms, const char *from,
                         const Kvc__Election__PreVote *p, kvc_outbox_t *out)
{
    int granted =
        p->term > e->term && now_ms >= e->promise_until && e->state != KVC_ELECTION_LEADER;
    if (p->term > e->term && !granted)
        e->stats.votes_refused_lease++;
    Kvc__Election__Message m = KVC__ELECTION__MESSAGE__INIT;
    Kvc__Election__PreVoteReply r = KVC__ELECTION__PRE_VOTE_REPLY__INIT;
    r.term = e->term;
    r.asked_term = p->term;
    r.granted = granted;
    m.body_case = KVC__ELECTION__MESSAGE__BODY_PRE_VOTE_REPLY;
    m.pre_vote_reply = &r;
    s_send(e, out, from, &m);
}

static void s_on_prevote_reply(kvc_election_t *e, uint64_t now_ms, voter_t *v,
                               const Kvc__Election__PreVoteReply *r, kvc_outbox_t *out)
{
    if (r->term > e->term && !r->granted && e->state != KVC_ELECTION_LEADER) {
        /* we are behind: catch up (raising a term never breaks safety) */
        s_set_term(e, r->term);
        s_follow(e, now_ms);
        return;
    }
    if (e->state != KVC_ELECTION_PRECANDIDATE || r->asked_term != e->prevote_term || !r->granted)
        return;
    v->granted = 1;
    if (s_grants(e) >= s_majority(e))
        s_campaign(e, now_ms, out);
}

static void s_on_vote(kvc_election_t *e, uint64_t now_ms, const char *from,
                      const Kvc__Election__Vote *q, kvc_outbox_t *out)
{
    int granted = 0;
    if (q->term > e->term && (now_ms < e->promise_until || e->state == KVC_ELECTION_LEADER)) {
        /* a live leader: refuse without adopting the term */
        e->stats.votes_refused_lease++;
    } else if (q->term >= e->term) {
        if (q->term > e->term) {
            s_set_term(e, q->term);
            s_follow(e, now_ms);
        }
        if (e->voted_for[0] == '\0' || strcmp(e->voted_for, from) == 0) {
            if (e->voted_for[0] == '\0') {
                kvc_strlcpy(e->voted_for, from, sizeof e->voted_for);
                e->dirty = 1;
            }
            granted = 1;
            e->promise_until = now_ms + e->cfg.election_timeout_min_ms;
            e->election_deadline = now_ms + s_timeout(e);
        }
    }
    Kvc__Election__Message m = KVC__ELECTION__MESSAGE__INIT;
    Kvc__Election__VoteReply r = KVC__ELECTION__VOTE_REPLY__INIT;
    r.term = e->term;
    r.granted = granted;
    m.body_case = KVC__ELECTION__MESSAGE__BODY_VOTE_REPLY;
    m.vote_reply = &r;
    s_send(e, out, from, &m);
}

static void s_on_vote_reply(kvc_election_t *e, uint64_t now_ms, voter_t *v,
                            const Kvc__Election__VoteReply *r, kvc_outbox_t *out)
{
    if (r->term > e->term) {
        s_set_term(e, r->term);
        s_follow(e, now_ms);
        return;
    }
    if (e->state != KVC_ELECTION_CANDIDATE || r->term != e->term || !r->granted)
        return;
    v->granted = 1;
    if (s_grants(e) >= s_majority(e))
        s_become_leader(e, now_ms, out);
}

static void s_on_heartbeat(kvc_election_t *e, uint64_t now_ms, const char *from,
                           const Kvc__Election__Heartbeat *h, kvc_outbox_t *out)
{
    int ok = 0;
    if (h->term < e->term) {
        /* a live leader of an older term: we ran ahead. No campaign of
         * ours would be granted while it lives; wait instead of pestering. */
        if (e->state == KVC_ELECTION_FOLLOWER)
            e->election_deadline = now_ms + s_timeout(e);
    } else if (h->term == e->term && e->state == KVC_ELECTION_LEADER) {
        /* two leaders in one term cannot be: a buggy or lying peer */
        e->stats.dropped++;
        return;
    } else {
        s_set_term(e, h->term);
        if (e->state != KVC_ELECTION_FOLLOWER)
            s_follow(e, now_ms);
        kvc_strlcpy(e->leader, from, sizeof e->leader);
        e->promise_until = now_ms + e->cfg.election_timeout_min_ms;
        e->election_deadline = now_ms + s_timeout(e);
        ok = 1;
    }
    Kvc__Election__Message m = KVC__ELECTION__MESSAGE__INIT;
    Kvc__Election__HeartbeatAck a = KVC__ELECTION__HEARTBEAT_ACK__INIT;
    a.term = e->term;
    a.seq = h->seq;
    a.ok = ok;
    m.body_case = KVC__ELECTION__MESSAGE__BODY_HEARTBEAT_ACK;
    m.heartbeat_ack = &a;
    s_send(e, out, from, &m);
}

static void s_on_heartbeat_ack(kvc_election_t *e, voter_t *v, const Kvc__Election__HeartbeatAck *a)
{
    /* A refusal's higher term is ignored on purpose (see the top). */
    if (e->state != KVC_ELECTION_LEADER || !a->ok || a->term != e->term)
        return;
    size_t slot = a->seq % HB_RING;
    if (a->seq == 0 || a->seq > e->hb_seq || e->hb_seq_at[slot] != a->seq)
        return;
    if (e->hb_sent[slot] > v->acked_ms) {
        v->acked_ms = e->hb_sent[slot] ? e->hb_sent[slot] : 1;
        s_update_lease(e);
    }
}

/* Checks what the handlers read beyond the generated bounds. */
static int s_valid(const Kvc__Election__Message *m, const char *from)
{
    if (m->version != WIRE_VERSION)
        return 0;
    switch (m->body_case) {
    case KVC__ELECTION__MESSAGE__BODY_PRE_VOTE:
        /* term 0 is nobody's campaign; UINT64_MAX could not be raised past */
        return m->pre_vote->term > 0 && m->pre_vote->term < UINT64_MAX;
    case KVC__ELECTION__MESSAGE__BODY_VOTE:
        return m->vote->term > 0 && m->vote->term < UINT64_MAX;
    case KVC__ELECTION__MESSAGE__BODY_HEARTBEAT:
        return m->heartbeat->term > 0 && m->heartbeat->term < UINT64_MAX &&
               strcmp(m->heartbeat->leader, from) == 0;
    case KVC__ELECTION__MESSAGE__BODY_PRE_VOTE_REPLY:
    case KVC__ELECTION__MESSAGE__BODY_VOTE_REPLY:
    case KVC__ELECTION__MESSAGE__BODY_HEARTBEAT_ACK:
        return 1;
    default:
        return 0;
    }
}

int kvc_election_receive(kvc_election_t *e, uint64_t now_ms, const char *from_id,
                         const uint8_t *data, size_t len, kvc_outbox_t *out)
{
    if (!e || !out || !from_id || (!data && len))
        return KVC_EINVAL;
    if (len > KVC_ELECTION_WIRE_MAX) {
        e->stats.dropped++;
        return KVC_ERANGE;
    }
    kvc_pb_alloc_t alloc;
    Kvc__Election__Message *m =
        kvc__election__message__unpack(kvc_pb_alloc_init(&alloc), len, data);
    if (!m) {
        int rc = kvc_pb_alloc_error(&alloc);
        if (rc == KVC_EPARSE)
            e->stats.dropped++;
        return rc;
    }
    if (!s_valid(m, from_id)) {
        kvc__election__message__free_unpacked(m, kvc_pb_allocator());
        e->stats.dropped++;
        return KVC_EPARSE;
    }
    voter_t *v = s_voter(e, from_id);
    if (!v || !e->self_voter || strcmp(from_id, e->self) == 0) {
        kvc__election__message__free_unpacked(m, kvc_pb_allocator());
        e->stats.dropped++;
        return 0;
    }
    switch (m->body_case) {
    case KVC__ELECTION__MESSAGE__BODY_PRE_VOTE:
        s_on_prevote(e, now_ms, from_id, m->pre_vote, out);
        break;
    case KVC__ELECTION__MESSAGE__BODY_PRE_VOTE_REPLY:
        s_on_prevote_reply(e, now_ms, v, m->pre_vote_reply, out);
        break;
    case KVC__ELECTION__MESSAGE__BODY_VOTE:
        s_on_vote(e, now_ms, from_id, m->vote, out);
        break;
    case KVC__ELECTION__MESSAGE__BODY_VOTE_REPLY:
        s_on_vote_reply(e, now_ms, v, m->vote_reply, out);
        break;
    case KVC__ELECTION__MESSAGE__BODY_HEARTBEAT:
        s_on_heartbeat(e, now_ms, from_id, m->heartbeat, out);
        break;
    case KVC__ELECTION__MESSAGE__BODY_HEARTBEAT_ACK:
        s_on_heartbeat_ack(e, v, m->heartbeat_ack);
        break;
    default:
        break;
    }
    kvc__election__message__free_unpacked(m, kvc_pb_allocator());
    return 0;
}

/* --- timers -------------------------------------------------------------- */

int kvc_election_tick(kvc_election_t *e, uint64_t now_ms, kvc_outbox_t *out)
{
    if (!e || !out)
        return KVC_EINVAL;
    if (e->state == KVC_ELECTION_LEADER) {
        if (now_ms >= e->lease_end) {
            s_follow(e, now_ms); /* lost the lease: step down at once */
            e->leader[0] = '\0';
        } else if (now_ms >= e->hb_deadline) {
            s_heartbeat(e, now_ms, out);
        }
        return 0;
    }
    if (e->self_voter && now_ms >= e->election_deadline)
        s_prevote(e, now_ms, out);
    return 0;
}

uint64_t kvc_election_next_deadline(const kvc_election_t *e)
{
    if (!e)
        return KVC_DEADLINE_NONE;
    if (e->state == KVC_ELECTION_LEADER)
        return e->hb_deadline < e->lease_end ? e->hb_deadline : e->lease_end;
    return e->self_voter ? e->election_deadline : KVC_DEADLINE_NONE;
}

void kvc_election_member_event(kvc_election_t *e, uint64_t now_ms, const kvc_member_event_t *ev,
                               kvc_outbox_t *out)
{
    if (!e || !ev || e->state != KVC_ELECTION_FOLLOWER || !e->leader[0])
        return;
    if ((ev->type != KVC_MEMBER_EV_DEAD && ev->type != KVC_MEMBER_EV_LEFT) ||
        strcmp(ev->id, e->leader) != 0)
        return;
    /* The others' promises to it run out about when ours does. */
    uint64_t at = (now_ms > e->promise_until ? now_ms : e->promise_until) +
                  kvc_rng_below(&e->rng, e->cfg.heartbeat_interval_ms);
    if (at < e->election_deadline)
        e->election_deadline = at;
    e->leader[0] = '\0';
}

/* --- queries ------------------------------------------------------------- */

int kvc_election_can_act(const kvc_election_t *e, uint64_t now_ms)
{
    return e && e->state == KVC_ELECTION_LEADER && now_ms < e->lease_end;
}

uint64_t kvc_election_term(const kvc_election_t *e)
{
    return e ? e->term : 0;
}

int kvc_election_fence_ok(const kvc_election_t *e, uint64_t action_term)
{
    return e && action_term >= e->term;
}

kvc_election_state_t kvc_election_state(const kvc_election_t *e)
{
    return e ? e->state : KVC_ELECTION_FOLLOWER;
}

const char *kvc_election_leader(const kvc_election_t *e)
{
    return e && e->leader[0] ? e->leader : NULL;
}

uint64_t kvc_election_lease_end(const kvc_election_t *e)
{
    return e && e->state == KVC_ELECTION_LEADER ? e->lease_end : 0;
}

int kvc_election_needs_persist(const kvc_election_t *e)
{
    return e && e->dirty;
}

void kvc_election_durable(const kvc_election_t *e, uint64_t *term,
                          char voted_for[KVC_MEMBER_ID_MAX + 1])
{
    if (term)
        *term = e->term;
    if (voted_for)
        kvc_strlcpy(voted_for, e->voted_for, KVC_MEMBER_ID_MAX + 1);
}

void kvc_election_persisted(kvc_election_t *e)
{
    if (e)
        e->dirty = 0;
}

void kvc_election_stats(const kvc_election_t *e, kvc_election_stats_t *out)
{
    if (e && out)
        *out = e->stats;
}

/* --- the gossiped view --------------------------------------------------- */

void kvc_election_view(const kvc_election_t *e, kvc_election_view_t *v)
{
    memset(v, 0, sizeof *v);
    v->term = e->term;
    v->state = e->state;
    v->voter = e->self_voter;
    const char *leader = kvc_election_leader(e);
    if (leader)
        kvc_strlcpy(v->leader, leader, sizeof v->leader);
}

int kvc_election_view_encode(const kvc_election_view_t *v, uint8_t *out, size_t cap, size_t *len)
{
    if (!v || !out || !len || (v->leader[0] && !s_id_valid(v->leader)) ||
        (unsigned)v->state > KVC_ELECTION_LEADER)
        return KVC_EINVAL;
    Kvc__Election__View m = KVC__ELECTION__VIEW__INIT;
    m.version = WIRE_VERSION;
    m.term = v->term;
    m.leader = (char *)v->leader;
    m.state = (uint32_t)v->state;
    m.voter = v->voter != 0;
    size_t n = kvc__election__view__get_packed_size(&m);
    if (n > cap || n > KVC_ELECTION_VIEW_MAX)
        return KVC_ERANGE;
    *len = kvc__election__view__pack(&m, out);
    return KVC_OK;
}

int kvc_election_view_decode(const uint8_t *data, size_t len, kvc_election_view_t *v)
{
    if (!v || (!data && len))
        return KVC_EINVAL;
    if (len > KVC_ELECTION_VIEW_MAX)
        return KVC_ERANGE;
    kvc_pb_alloc_t alloc;
    Kvc__Election__View *m = kvc__election__view__unpack(kvc_pb_alloc_init(&alloc), len, data);
    if (!m) {
        int rc = kvc_pb_alloc_error(&alloc);
        return rc == KVC_ENOMEM ? rc : KVC_EPARSE;
    }
    int ok = m->version == WIRE_VERSION && m->state <= KVC_ELECTION_LEADER &&
             strlen(m->leader) <= KVC_MEMBER_ID_MAX && (!m->leader[0] || s_id_valid(m->leader));
    if (ok) {
        memset(v, 0, sizeof *v);
        v->term = m->term;
        kvc_strlcpy(v->leader, m->leader, sizeof v->leader);
        v->state = (kvc_election_state_t)m->state;
        v->voter = m->voter;
    }
    kvc__election__view__free_unpacked(m, kvc_pb_allocator());
    return ok ? KVC_OK : KVC_EPARSE;
}

/* --- the core.h interface ------------------------------------------------ */

static int s_core_receive(void *core, uint64_t now_ms, const char *from, const uint8_t *msg,
                          size_t len, kvc_outbox_t *out)
{
    return kvc_election_receive(core, now_ms, from, msg, len, out);
}

static int s_core_tick(void *core, uint64_t now_ms, kvc_outbox_t *out)
{
    return kvc_election_tick(core, now_ms, out);
}

static uint64_t s_core_deadline(const void *core)
{
    return kvc_election_next_deadline(core);
}

static void s_core_event(void *core, uint64_t now_ms, const kvc_member_event_t *ev,
                         kvc_outbox_t *out)
{
    kvc_election_member_event(core, now_ms, ev, out);
}

const kvc_core_ops_t kvc_election_core_ops = {
    .name = "election",
    .channel = KVC_ELECTION_CHANNEL,
    .receive = s_core_receive,
    .tick = s_core_tick,
    .next_deadline = s_core_deadline,
    .member_event = s_core_event,
};
