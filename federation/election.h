/*
 * election.h - the site coordinator election core: Raft-style leader
 * election among a site's voters (terms, one vote per term, randomised
 * election timeouts, pre-vote, leader heartbeats) with a leader lease, as a
 * sans-IO state machine.
 *
 * The core never reads a clock, a socket, a file or system randomness. The
 * caller hands in monotonic time and every authenticated message, ticks it at
 * kvc_election_next_deadline and sends what it leaves in a kvc_outbox_t on
 * channel KVC_ELECTION_CHANNEL. The same core runs in kvc-peer and tests/sim.
 *
 * Durability (the caller's duty). The term and the vote (voted_for) must be
 * on disk before any message that depends on them leaves: after every call
 * that may append to the outbox (receive, tick, member_event, set_voters),
 * if kvc_election_needs_persist(e), read kvc_election_durable(), write it
 * durably (LMDB, fsync'd), call kvc_election_persisted(), and only then flush
 * the outbox. If the write fails, drop the outbox instead of sending it. A
 * restarted peer passes the restored term and vote to kvc_election_new.
 *
 * Protocol (details in election.c):
 *  - a follower that hears no leader for a random timeout in
 *    [election_timeout_min_ms, election_timeout_max_ms) asks every voter for a
 *    PRE-VOTE for term+1. A voter grants it only if that term is above its
 *    own and it has not heard a live leader (a heartbeat, or a vote it
 *    granted) within election_timeout_min_ms. Nothing changes on a pre-vote,
 *    so a peer that cannot win, or rejoins after a partition, never raises
 *    anyone's term and cannot depose a healthy leader.
 *  - with a majority of pre-votes it raises its term, votes for itself
 *    (persisted) and asks for real votes. A voter grants one vote per term
 *    and, while it heard a live leader within election_timeout_min_ms,
 *    refuses votes at any term without even adopting that term.
 *  - a majority of votes makes a leader. It sends a heartbeat every
 *    heartbeat_interval_ms and counts acks.
 *
 * Leader lease. The leader may act (kvc_election_can_act) only while
 * now < S + lease_ms, where S is the latest time such that a majority of
 * voters (itself included) acknowledged a heartbeat, or granted the vote,
 * that the leader SENT at or after S. A voter that acknowledges a heartbeat
 * or grants a vote at its local time r promises to grant no vote (and no
 * pre-vote) to anyone else before r + election_timeout_min_ms; a restarted
 * voter keeps that promise from its start, since it may have acked just
 * before it died. Any new leader needs a vote from a voter of that majority,
 * so it is elected only after the old lease ran out.
 *
 * Clock-drift bound. Only clock RATES matter (each side measures its own
 * interval on its own monotonic clock; offsets cancel). We assume every
 * peer's monotonic clock runs within rho = KVC_ELECTION_DRIFT_PPM (1%) of
 * real time. The old lease lasts at most lease_ms * (1 + rho) real time from
 * S; the promise lasts at least election_timeout_min_ms * (1 - rho) from
 * r >= S. Safety holds when
 *     lease_ms * (1 + rho) <= election_timeout_min_ms * (1 - rho),
 * roughly lease_ms <= election_timeout_min_ms * (1 - 2 rho), which
 * kvc_election_config_check enforces; the defaults leave another margin on
 * top (lan: 600 * 0.98 = 588, lease 540). Message delay does not matter:
 * it only shortens the lease the leader sees.
 *
 * Fencing. Every coordinator action carries kvc_election_term() of the
 * leader that took it; a peer refuses an action whose term is older than
 * the term it knows (kvc_election_fence_ok).
 *
 * What voters tolerate: with n voters a leader needs floor(n/2)+1 of them.
 * 1 voter elects itself at once; 2 voters tolerate no failure (both must be
 * up); 3 voters tolerate one crashed or partitioned voter.
 */
#ifndef KVC_ELECTION_H
#define KVC_ELECTION_H

#include <stddef.h>
#include <stdint.h>

#include "base.h"
#include "core.h"

#define KVC_ELECTION_CHANNEL 40 /* kvc.fed.Envelope.election */
#define KVC_ELECTION_VOTERS_MAX 32
#define KVC_ELECTION_WIRE_MAX 1024   /* never decode more */
#define KVC_ELECTION_DRIFT_PPM 10000 /* assumed clock-rate bound: 1% */

typedef enum {
    KVC_ELECTION_FOLLOWER = 0,
    KVC_ELECTION_PRECANDIDATE = 1, /* asking for pre-votes */
    KVC_ELECTION_CANDIDATE = 2,    /* asking for votes at its raised term */
    KVC_ELECTION_LEADER = 3
} kvc_election_state_t;

/* Timing, all in milliseconds of the caller's monotonic clock. */
typedef struct {
    uint32_t election_timeout_min_ms; /* also the voters' no-vote promise */
    uint32_t election_timeout_max_ms; /* timeouts are uniform in [min, max) */
    uint32_t heartbeat_interval_ms;
    uint32_t lease_ms; /* see the drift bound above */
} kvc_election_config_t;

typedef struct kvc_election kvc_election_t;

/* Fills cfg with the "lan" (600/1000/100/540) or "wan" (2000/4000/250/1800)
 * profile; KVC_EINVAL otherwise. */
int kvc_election_config_profile(kvc_election_config_t *cfg, const char *profile);
/* Checks ranges and the drift bound; KVC_EINVAL with a message naming the
 * field (err may be NULL). */
int kvc_election_config_check(const kvc_election_config_t *cfg, kvc_err_t *err);
/* Returns a static name for a state ("follower", ...). */
const char *kvc_election_state_name(kvc_election_state_t st);

/* Creates a core for member self_id ("site/name", copied) with cfg (copied),
 * the term and vote restored from disk (restored_vote NULL or "" for none;
 * copied) and a seed for its generator. It starts as a follower with no
 * voters (call kvc_election_set_voters) and keeps its no-vote promise until
 * now_ms + election_timeout_min_ms. Returns NULL on bad arguments or
 * allocation failure. */
kvc_election_t *kvc_election_new(const kvc_election_config_t *cfg, const char *self_id,
                                 uint64_t restored_term, const char *restored_vote, uint64_t seed,
                                 uint64_t now_ms);
/* Frees the core and sets *self_p to NULL; NULL-safe. */
void kvc_election_destroy(kvc_election_t **self_p);

/* Replaces the voter set with ids[0..n) (copied; duplicates and invalid
 * ids are KVC_EINVAL, more than KVC_ELECTION_VOTERS_MAX KVC_ERANGE). A
 * peer not in the set never campaigns and its messages are ignored; a set
 * holding only ourselves lets us elect ourselves at the next tick. A leader
 * whose new set it no longer belongs to steps down. */
int kvc_election_set_voters(kvc_election_t *e, const char *const *ids, size_t n, uint64_t now_ms);

/* Handles one message from from_id (already authenticated). A malformed,
 * oversized or unknown-version message is dropped and counted: KVC_EPARSE or
 * KVC_ERANGE, the core unchanged. A message from a non-voter is ignored
 * (counted, returns 0). */
int kvc_election_receive(kvc_election_t *e, uint64_t now_ms, const char *from_id,
                         const uint8_t *msg, size_t len, kvc_outbox_t *out);
/* Runs every timer due at now_ms: campaigns, heartbeats, lease loss. */
int kvc_election_tick(kvc_election_t *e, uint64_t now_ms, kvc_outbox_t *out);
/* The earliest time tick has work; KVC_DEADLINE_NONE if none. */
uint64_t kvc_election_next_deadline(const kvc_election_t *e);
/* A member event: the leader dead or left pulls our election timer forward
 * to when the voters' promises to it expire (an optimisation only; the
 * promises themselves are never shortened). */
void kvc_election_member_event(kvc_election_t *e, uint64_t now_ms, const kvc_member_event_t *ev,
                               kvc_outbox_t *out);

/* 1 only if we are the leader and now_ms is within our lease. */
int kvc_election_can_act(const kvc_election_t *e, uint64_t now_ms);
/* The current term (the fence every coordinator action carries). */
uint64_t kvc_election_term(const kvc_election_t *e);
/* 1 if an action fenced with action_term may be accepted: it is not older
 * than the term we know. */
int kvc_election_fence_ok(const kvc_election_t *e, uint64_t action_term);
kvc_election_state_t kvc_election_state(const kvc_election_t *e);
/* The leader of the current term as far as we know, or NULL (valid until
 * the next call that changes the core). */
const char *kvc_election_leader(const kvc_election_t *e);
/* When our lease ends (leader only; 0 otherwise). */
uint64_t kvc_election_lease_end(const kvc_election_t *e);

/* 1 if the term or vote changed since the last kvc_election_persisted. */
int kvc_election_needs_persist(const kvc_election_t *e);
/* Copies the durable state out: *term and voted_for ("" for none; the
 * buffer holds KVC_MEMBER_ID_MAX + 1 bytes). */
void kvc_election_durable(const kvc_election_t *e, uint64_t *term,
                          char voted_for[KVC_MEMBER_ID_MAX + 1]);
/* The caller wrote the durable state; messages may be flushed now. */
void kvc_election_persisted(kvc_election_t *e);

typedef struct {
    uint64_t dropped;             /* malformed or from non-voters */
    uint64_t prevotes;            /* pre-vote rounds started */
    uint64_t elections;           /* real campaigns (term raised) */
    uint64_t won;                 /* times we became leader */
    uint64_t step_downs;          /* leader -> follower (higher term, lost lease) */
    uint64_t votes_refused_lease; /* vote or pre-vote refused by the promise */
} kvc_election_stats_t;

/* Copies the counters into *out. */
void kvc_election_stats(const kvc_election_t *e, kvc_election_stats_t *out);

/* What a peer gossips about its election (membership metadata). */
#define KVC_ELECTION_VIEW_META_KEY "el"
#define KVC_ELECTION_VIEW_MAX 256 /* encoded bytes, never decode more */
typedef struct {
    uint64_t term;
    char leader[KVC_MEMBER_ID_MAX + 1]; /* "" unknown */
    kvc_election_state_t state;
    int voter;
} kvc_election_view_t;

/* Fills *v from the core (voter: whether we are in the voter set). */
void kvc_election_view(const kvc_election_t *e, kvc_election_view_t *v);
/* Encodes *v into out[0..cap); *len gets the size. KVC_ERANGE if it does
 * not fit, KVC_EINVAL for a leader that is not a member id. */
int kvc_election_view_encode(const kvc_election_view_t *v, uint8_t *out, size_t cap, size_t *len);
/* Decodes and checks a view from hostile bytes: KVC_EPARSE (malformed, an
 * unknown version, a state out of range, a leader that is not "site/name"),
 * KVC_ERANGE (over KVC_ELECTION_VIEW_MAX); *v untouched on error. */
int kvc_election_view_decode(const uint8_t *data, size_t len, kvc_election_view_t *v);

/* The election core on the core.h interface (state: a kvc_election_t). */
extern const kvc_core_ops_t kvc_election_core_ops;

#endif
