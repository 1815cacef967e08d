/*
 * swim.h - the membership core: SWIM failure detection with the Lifeguard
 * refinements, piggybacked dissemination, push-pull anti-entropy, versioned
 * per-member metadata and Vivaldi coordinates, as a sans-IO state machine.
 *
 * The core never touches a socket, a clock or system randomness. The caller
 * (kvc-peer's loop, or tests/sim) hands in the time and every authenticated
 * message, calls kvc_swim_tick at kvc_swim_next_deadline, and sends what the
 * core leaves in a kvc_outbox_t. The same core runs unchanged in both.
 *
 * Members are named "site/name" (each part [a-z0-9-]{1,63}). States:
 * alive -> suspect -> dead, or left after a graceful leave; a member refutes
 * a suspicion about itself by raising its incarnation.
 *
 * Protocol summary (details in swim.c):
 *  - every probe period (probe_interval * local health) probe the next member
 *    of a shuffled round-robin list; no ack after probe_timeout (* local
 *    health): ask indirect_probes members to probe it (they answer with an
 *    ack or a nack) and ping it once more directly; no ack by the end of the
 *    period: suspect it and tell it so.
 *  - Lifeguard: a local health score in [0, local_health_max) grows on
 *    missed nacks, failed probes and refutations and shrinks on acks; it
 *    multiplies our own probe interval and timeout so a slow peer stretches
 *    its patience instead of accusing others.
 *  - suspicion timeout = max(min, max - (max-min)*log(C+1)/log(K+1)) where C
 *    counts independent confirmations (up to K); min = suspicion_mult *
 *    max(1, log10(n)) * probe_interval, max = suspicion_max_mult * min.
 *  - updates ride on every probe, ack and a gossip round every
 *    gossip_interval to gossip_fanout random members; each is sent
 *    retransmit_mult * ceil(log10(n+1)) times, least-sent then newest first,
 *    and no message passes max_message_bytes.
 *  - push-pull: every push_pull_interval (scaled up with log2(n) above 32
 *    members, as memberlist does) send one random member our digest
 *    (id, incarnation, state, meta version) in id ranges; it answers with only
 *    the entries that differ (full entries for what it knows better, a Want
 *    list for what we know better).
 *  - every reconnect_interval ping a random dead member, or a seed we do not
 *    see alive; an ack starts a push-pull, which heals partitions.
 *  - dead and left members are forgotten after reap_ms.
 *
 * Profiles (kvc_swim_config_profile), chosen with tests/sim to meet issue 3's
 * goals (1000 peers lan at 1% loss: update everywhere < 1 s, dead everywhere
 * < 5 s, < 4 KB/s per peer; no false positives at 10% loss; wan 50-150 ms
 * RTT: dead everywhere < 15 s):
 *                          lan     wan     why
 *   probe_interval_ms      400    1000     ~1 probe of each member per period
 *                                          means a dead member collects K
 *                                          confirmations within a few periods
 *   probe_timeout_ms       150     500     >> RTT (LAN <= 2 ms, WAN <= 150 ms)
 *                                          leaving room for indirect probes
 *   indirect_probes          3       3     at 10% loss, direct+3 indirect
 *                                          paths + a re-ping all fail ~1e-3
 *   suspicion_mult         1.5     2.0     min 1.8 s at n=1000 lan
 *   suspicion_max_mult       6       6     a lone accuser waits 6x min: ample
 *                                          time for the suspect to refute
 *   suspicion_confirmations  3       3     K in the Lifeguard formula
 *   retransmit_mult          6       6     6*4=24 sends per update at n=1000
 *                                          leaves ~1e-9 chance a peer misses a
 *                                          refutation at 10% loss
 *   gossip_interval_ms      40     100     a few hops per 100 ms on a LAN
 *   gossip_fanout            3       4
 *   push_pull_interval_ms 30000  60000
 *   reconnect_interval_ms  5000  10000
 *   reap_ms              120000 600000     partitions shorter than this heal
 *                                          through the dead list, longer ones
 *                                          through the seeds
 *   max_message_bytes     1400    1400     fits a UDP datagram
 *   local_health_max         8       8
 */
#ifndef KVC_SWIM_H
#define KVC_SWIM_H

#include <stddef.h>
#include <stdint.h>

#include "base.h"
#include "core.h"
#include "vivaldi.h"

#define KVC_SWIM_PART_MAX 63                        /* site or name */
#define KVC_SWIM_ID_MAX (2 * KVC_SWIM_PART_MAX + 1) /* "site/name" */
#define KVC_SWIM_STR_MAX 255                        /* region, roles, endpoint */
#define KVC_SWIM_KEY_LEN 32
#define KVC_SWIM_META_KEYS_MAX 16
#define KVC_SWIM_META_KEY_MAX 63
#define KVC_SWIM_META_BYTES_MAX 512     /* keys + values per member */
#define KVC_SWIM_WIRE_MAX 65536         /* never decode more */
#define KVC_SWIM_MIN_MESSAGE_BYTES 1024 /* full entries must fit */

typedef enum {
    KVC_SWIM_ALIVE = 0,
    KVC_SWIM_SUSPECT = 1,
    KVC_SWIM_DEAD = 2,
    KVC_SWIM_LEFT = 3
} kvc_swim_state_t;

/* Timing and size parameters; see the table at the top of this file. */
typedef struct {
    uint32_t probe_interval_ms;
    uint32_t probe_timeout_ms;
    uint32_t indirect_probes;
    double suspicion_mult;
    double suspicion_max_mult;
    uint32_t suspicion_confirmations;
    uint32_t retransmit_mult;
    uint32_t gossip_interval_ms;
    uint32_t gossip_fanout;
    uint32_t push_pull_interval_ms;
    uint32_t reconnect_interval_ms;
    uint32_t reap_ms;
    uint32_t max_message_bytes;
    uint32_t local_health_max;
} kvc_swim_config_t;

/* What a member says about itself. All pointers are borrowed for the call
 * that takes the struct (the core copies); NULL strings mean "". roles is a
 * comma-separated list. */
typedef struct {
    const char *site;
    const char *name;
    const char *region;
    const char *roles;
    const char *endpoint;
    uint8_t public_key[KVC_SWIM_KEY_LEN];
    uint64_t capabilities;
} kvc_member_info_t;

/* Membership events (kvc_member_event_t, core.h) go into the outbox: joined,
 * alive, suspect, dead, left, meta, reaped. Messages carry KVC_SWIM_CHANNEL. */
#define KVC_SWIM_CHANNEL 20 /* kvc.fed.Envelope.membership */

/* A read-only view of one member. Every pointer points into the core and is
 * valid only until the next call that changes the core (receive, tick, ...). */
typedef struct {
    const char *id;
    char site[KVC_SWIM_PART_MAX + 1];
    int has_info; /* 0: only heard of; info strings are "" */
    const char *region;
    const char *roles;
    const char *endpoint;
    const uint8_t *public_key; /* KVC_SWIM_KEY_LEN bytes, or NULL */
    uint64_t capabilities;
    kvc_swim_state_t state;
    uint64_t incarnation;
    uint64_t last_change_ms;
    /* 1: our last probe of it was answered only through other members
     * (indirect acks), so our own path to it is cut though it is alive
     * (a partial partition); 0 again at its next direct ack. */
    int direct_lost;
    int has_coord;
    kvc_vivaldi_coord_t coord;
    uint64_t meta_version;
    size_t meta_count;
    int is_self;
} kvc_swim_member_t;

typedef struct kvc_swim kvc_swim_t;

/* Fills cfg with the "lan" or "wan" profile, or "memberlist" (memberlist's
 * default LAN parameters, a baseline for benchmarks); KVC_EINVAL otherwise. */
int kvc_swim_config_profile(kvc_swim_config_t *cfg, const char *profile);
/* Checks ranges; KVC_EINVAL with a message naming the field. */
int kvc_swim_config_check(const kvc_swim_config_t *cfg, kvc_err_t *err);
/* Returns 1 if id is a well-formed "site/name". */
int kvc_swim_id_valid(const char *id);
/* Returns a static name for a state ("alive", ...). */
const char *kvc_swim_state_name(kvc_swim_state_t st);

/* Creates a core for member *self (copied) with the given config (copied) and
 * seed for its generator. Returns NULL on bad arguments or allocation
 * failure. The new member is alive at incarnation 0 and knows only itself. */
kvc_swim_t *kvc_swim_new(const kvc_swim_config_t *cfg, const kvc_member_info_t *self, uint64_t seed,
                         uint64_t now_ms);
/* Frees the core and sets *self_p to NULL; NULL-safe. */
void kvc_swim_destroy(kvc_swim_t **self_p);

/* Remembers seed_ids (copied, invalid ones and our own id skipped) for
 * reconnecting and sends each our digest so it answers with the whole
 * membership. KVC_EINVAL if no valid seed was given. */
int kvc_swim_join(kvc_swim_t *s, const char *const *seed_ids, size_t n, uint64_t now_ms,
                  kvc_outbox_t *out);
/* Runs every timer due at now_ms. */
int kvc_swim_tick(kvc_swim_t *s, uint64_t now_ms, kvc_outbox_t *out);
/* Handles one message from from_id (already authenticated by the transport).
 * A malformed or oversized message is dropped and counted: KVC_EPARSE or
 * KVC_ERANGE, and the core is unchanged. */
int kvc_swim_receive(kvc_swim_t *s, uint64_t now_ms, const char *from_id, const uint8_t *msg,
                     size_t len, kvc_outbox_t *out);
/* Announces a graceful leave (higher incarnation, state left). Afterwards the
 * core only finishes gossiping; keep ticking for a few gossip intervals to
 * let the news spread, then destroy it. */
int kvc_swim_leave(kvc_swim_t *s, uint64_t now_ms, kvc_outbox_t *out);
/* The earliest time kvc_swim_tick has work; UINT64_MAX if none. */
uint64_t kvc_swim_next_deadline(const kvc_swim_t *s);
/* Sets (val != NULL) or deletes (val == NULL) one metadata key of our own
 * member and disseminates the new version. KVC_ERANGE if the keys or bytes
 * would exceed KVC_SWIM_META_KEYS_MAX / KVC_SWIM_META_BYTES_MAX. */
int kvc_swim_set_meta(kvc_swim_t *s, const char *key, const uint8_t *val, size_t len,
                      uint64_t now_ms);

/* Number of known members, ourselves included. */
size_t kvc_swim_member_count(const kvc_swim_t *s);
/* Fills *m with member i (0 <= i < count; order changes when members are
 * added or reaped). KVC_ERANGE if i is out of range. */
int kvc_swim_member_at(const kvc_swim_t *s, size_t i, kvc_swim_member_t *m);
/* Fills *m for id; KVC_ENOENT if unknown. */
int kvc_swim_member_get(const kvc_swim_t *s, const char *id, kvc_swim_member_t *m);
/* Points *val and *len at the value of key in member id's metadata (valid until
 * the next call that changes the core). KVC_ENOENT if absent. */
int kvc_swim_member_meta(const kvc_swim_t *s, const char *id, const char *key, const uint8_t **val,
                         size_t *len);
/* Our own id, state and incarnation. */
const char *kvc_swim_self_id(const kvc_swim_t *s);
kvc_swim_state_t kvc_swim_self_state(const kvc_swim_t *s);
uint64_t kvc_swim_self_incarnation(const kvc_swim_t *s);
/* Our current Lifeguard local health score, 0 = healthy. */
uint32_t kvc_swim_local_health(const kvc_swim_t *s);
/* Our coordinate (valid until the next call that changes the core). */
const kvc_vivaldi_coord_t *kvc_swim_coord(const kvc_swim_t *s);
/* Estimated RTT in ms from us to member id; KVC_ENOENT if it has no
 * coordinate yet. */
int kvc_swim_estimate_rtt_ms(const kvc_swim_t *s, const char *id, double *rtt_ms);
/* Protocol counters since creation, for metrics. RTT buckets are upper
 * bounds in ms (KVC_SWIM_RTT_BOUNDS), the last one +Inf; counts are per
 * bucket (not cumulative). */
#define KVC_SWIM_RTT_BUCKETS 12
#define KVC_SWIM_RTT_BOUNDS {0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000}
typedef struct {
    uint64_t probes;          /* direct probes started */
    uint64_t probe_failures;  /* probe periods that ended without any ack */
    uint64_t acks;            /* acks received for our probes */
    uint64_t indirect_probes; /* indirect probe rounds started */
    uint64_t direct_lost;     /* probes acked only through others (path cut) */
    uint64_t suspicions;      /* members we started suspecting */
    uint64_t refutations;     /* times we refuted a suspicion about ourselves */
    uint64_t push_pulls;      /* push-pull exchanges we started */
    uint64_t rtt_count;
    double rtt_sum_ms;
    uint64_t rtt_buckets[KVC_SWIM_RTT_BUCKETS];
} kvc_swim_stats_t;

/* Copies the counters into *out. */
void kvc_swim_stats(const kvc_swim_t *s, kvc_swim_stats_t *out);

/* Messages dropped as malformed since creation. */
uint64_t kvc_swim_dropped(const kvc_swim_t *s);

/* The transport proved that member id holds public key `key` and is reachable
 * at `endpoint` (it presented a credential for id over a connection
 * authenticated with key). If the core's info for id names another key or
 * endpoint, that info came from someone else and is replaced; the corrected
 * entry is disseminated. KVC_ENOENT if id is unknown; 0 if nothing changed,
 * 1 if the info was replaced. */
int kvc_swim_vouch(kvc_swim_t *s, const char *id, const uint8_t key[KVC_SWIM_KEY_LEN],
                   const char *endpoint, uint64_t now_ms);

/* Marks member id as left on the operator's word (Serf's force-leave): for a
 * member that is dead and will not come back, so it is reaped without
 * waiting. KVC_ENOENT if unknown, KVC_EINVAL for ourselves, KVC_ESTATE if it
 * is alive (a live member refutes; make it leave instead). */
int kvc_swim_force_leave(kvc_swim_t *s, const char *id, uint64_t now_ms, kvc_outbox_t *out);

/* The membership core on the core.h interface (state: a kvc_swim_t). */
extern const kvc_core_ops_t kvc_swim_core_ops;

#endif
