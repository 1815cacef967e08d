/*
 * lww.h - a replicated last-writer-wins map as a sans-IO core: bounded byte
 * keys to bounded opaque values, each entry stamped with a hybrid logical
 * clock and its writer, deletes kept as tombstones, new writes pushed at
 * once to the peers in scope and everything repaired by periodic
 * anti-entropy (bucket digests, then headers of the differing buckets, then
 * only the entries one side lacks or holds older).
 *
 * Anti-entropy in detail. A round: A sends B a Digest (64 bucket hashes, 64
 * GC horizons, sub = 1). B answers with its own hashes and, for each bucket
 * that differs (as many as fit msg_max; `next` says where to carry on), the
 * headers (key, hlc, writer, tomb) of its entries there; A then asks for
 * what B holds newer (Want) and sends what B lacks or holds older. When a
 * differing bucket holds at least 8 entries at B and is not empty at A, B
 * sends its 64 sub-bucket hashes instead (bits 6..11 of the key hash; 32
 * bits each); A sends back its headers of only the sub-buckets that differ
 * (the whole bucket if none does: a hash collision), and B wants and sends
 * as above. So a peer that missed C changes among E entries exchanges about
 * C sub-buckets' headers rather than every header of up to 64 buckets; a
 * fresh or far-behind peer still gets plain headers (its buckets are empty,
 * or A's answer for the first bucket does not fit one message and A carries
 * on without sub-hashes). A peer that does not set Digest.sub (an older
 * build) is answered with headers only, and never sends sub-hashes itself.
 *
 * kvc-peer runs two instances: the site's node approvals and enrollment
 * codes (scope: the site's peers, channel KVC_LWW_CHANNEL_NODES) and the
 * federation's model registry (scope: every member, KVC_LWW_CHANNEL_REGISTRY).
 *
 * Time. Every now_ms this core is given is WALL-CLOCK milliseconds since the
 * Unix epoch (CLOCK_REALTIME), not the monotonic time the other cores get:
 * it is the physical part of the hybrid logical clock, and last-writer-wins
 * is only meaningful when peers' physical clocks roughly agree. The daemon
 * passes wall-clock ms to this core for this one purpose (through its own
 * kvc_core_set_t or a wrapper). A wall clock that steps back is harmless to
 * correctness: the HLC never goes backwards (it is max(now << 16, last + 1)),
 * timers just fire early or late.
 *
 * HLC. A uint64: physical ms << 16 | a 16-bit logical counter (a counter
 * overflow carries into the physical part). A local write takes
 * max(now << 16, clock + 1); every entry stored and every digest heard
 * raises the clock to at least its hlc. The winner of two versions of a key
 * is the higher (hlc, writer) pair, writer compared as bytes: a
 * deterministic tie-break by member id.
 *
 * Durability (the caller's duty). After any call (put, del, receive, tick,
 * member_event, set_peers), if kvc_lww_needs_persist(m), call
 * kvc_lww_each_dirty to write every changed record to LMDB in one
 * transaction (store `rec` under `skey`, or delete `skey` when rec is NULL),
 * commit it, call kvc_lww_persisted, and only then flush the outbox and
 * acknowledge a local write. If the write fails, drop the outbox. At start,
 * hand every stored record to kvc_lww_load before the first other call:
 * the clock is restored above every loaded hlc, so it never goes backwards.
 *
 * Tombstone garbage collection. A tombstone T of key K in bucket b is
 * dropped only when both hold:
 *   1. now >= phys(T.hlc) + tomb_min_age_ms, and
 *   2. every peer in scope, alive or dead, has acknowledged it: we saw that
 *      peer's hash of bucket b equal to ours at a moment after T was stored
 *      here (so it held T or something newer, and entries only move
 *      forward), or that peer advertised a GC horizon for b >= T.hlc (it
 *      collected T or will refuse anything as old, see 3). Sub-bucket hashes
 *      are never taken as this acknowledgement (they are 32-bit and cover
 *      part of a bucket).
 * A dead or partitioned peer therefore blocks GC until it is back and in
 * sync, or until the caller removes it from scope with set_peers: a peer
 * that was cut off while holding an older value of K can never serve it
 * back after the others forgot T.
 *   3. Collecting T raises this bucket's horizon (persisted) to T.hlc. An
 * incoming entry for a key we do not hold whose hlc is <= the horizon is
 * refused: every peer that was in scope held T when it was collected, so
 * its clock is above T.hlc and none of its writes can be that old; the
 * entry can only be a re-sent collected tombstone (dropped), or an old
 * value from a peer that was out of scope (removed, then re-added after the
 * GC). That value is answered with a "horizon tombstone" (K, horizon + 1,
 * writer "") which beats it on the stale peer, so a peer that rejoins after
 * its tombstone partners collected never resurrects the deleted key, and
 * converges. Assumption: a peer new to scope writes with a clock no more
 * than tomb_min_age_ms behind the others (else a fresh write of its could
 * be refused as stale in a bucket whose horizon is above it; it would be
 * counted in stats.stale, and its writer still holds it).
 *
 * Bounds. Keys 1..KVC_LWW_KEY_MAX bytes, values <= cfg.value_max, at most
 * cfg.max_entries entries including tombstones: a local write beyond is
 * refused with KVC_ERANGE, never silently dropped; a remote entry beyond is
 * refused (stats.refused_full) and stays with its sender, which offers it
 * again at the next anti-entropy round. No message over cfg.msg_max is sent
 * or decoded.
 *
 * Outbox refusal. A push the outbox refuses is retried at the next tick
 * (after push_retry_ms); an anti-entropy reply that does not fit is lost
 * and the next round repeats it. Nothing is lost, only later.
 *
 * The core never reads a clock, a socket, a file or system randomness; the
 * bucket hash is FNV-1a 64 mixed with splitmix64 (no libsodium). Hashes are
 * not keyed: peers are authenticated members, not strangers.
 */
#ifndef KVC_LWW_H
#define KVC_LWW_H

#include <stddef.h>
#include <stdint.h>

#include "base.h"
#include "core.h"

#define KVC_LWW_CHANNEL_NODES 41    /* kvc.fed.Envelope: site node approvals */
#define KVC_LWW_CHANNEL_REGISTRY 50 /* kvc.fed.Envelope.registry */
#define KVC_LWW_KEY_MAX 255
#define KVC_LWW_VALUE_MAX (256u << 10) /* the largest cfg.value_max */
#define KVC_LWW_WIRE_MAX (1u << 20)    /* the largest cfg.msg_max */
#define KVC_LWW_PEERS_MAX 1024         /* the registry's scope is every member */
#define KVC_LWW_BUCKETS 64
#define KVC_LWW_SUBS 64 /* sub-buckets per bucket (second digest level) */

typedef struct {
    uint32_t max_entries;     /* entries including tombstones (1..1000000) */
    uint32_t value_max;       /* bytes per value (<= KVC_LWW_VALUE_MAX) */
    uint32_t msg_max;         /* bytes per message, >= value_max + 1024 */
    uint32_t ae_interval_ms;  /* anti-entropy round, jittered +-25% */
    uint32_t push_retry_ms;   /* retry of a push the outbox refused */
    uint32_t push_batch;      /* entries per Push message */
    uint64_t tomb_min_age_ms; /* no tombstone collected younger than this */
} kvc_lww_config_t;

/* Fills cfg with the defaults: 10000 entries, 8 KiB values, 64 KiB
 * messages, anti-entropy every 5 s, push retry 200 ms, 64 entries a push,
 * tombstones kept at least 24 h. */
void kvc_lww_config_default(kvc_lww_config_t *cfg);
/* Checks ranges; KVC_EINVAL with a message naming the field (err may be
 * NULL). */
int kvc_lww_config_check(const kvc_lww_config_t *cfg, kvc_err_t *err);

typedef struct kvc_lww kvc_lww_t;

/* Creates an empty map for member self_id ("site/name", copied) sending on
 * envelope channel `channel` (non-zero), with cfg (copied) and a seed for
 * its jitter and peer choice. No peers yet (kvc_lww_set_peers). Returns
 * NULL on bad arguments or allocation failure. */
kvc_lww_t *kvc_lww_new(const kvc_lww_config_t *cfg, const char *self_id, uint32_t channel,
                       uint64_t seed);
/* Frees the map and sets *self_p to NULL; NULL-safe. */
void kvc_lww_destroy(kvc_lww_t **self_p);

/* Restores one record the caller persisted (kvc_lww_each_dirty's rec), at
 * start, before any other call. KVC_EPARSE for bytes that are not a record,
 * KVC_ERANGE when the map is full, KVC_ENOMEM. A record older than what is
 * held for its key is ignored. Loading marks nothing dirty. */
int kvc_lww_load(kvc_lww_t *m, const uint8_t *rec, size_t len);

/* Replaces the replication scope with ids[0..n) (copied; our own id is
 * skipped; invalid ids or duplicates are KVC_EINVAL, more than
 * KVC_LWW_PEERS_MAX KVC_ERANGE). Peers that stay keep their state; new ones
 * start unacknowledged, alive, and are owed nothing by push (anti-entropy
 * brings them up to date). */
int kvc_lww_set_peers(kvc_lww_t *m, const char *const *ids, size_t n, uint64_t now_ms);

typedef struct {
    const uint8_t *key; /* valid until the next call that changes the map */
    size_t klen;
    const uint8_t *value; /* NULL-length for a tombstone; same lifetime */
    size_t vlen;
    uint64_t hlc;
    const char *writer; /* "" for a horizon tombstone; same lifetime */
    int tomb;
} kvc_lww_entry_t;

/* Sets key[0..klen) to val[0..vlen) (copied) with a fresh HLC stamp at
 * now_ms (wall clock) and pushes it to every alive peer in scope through
 * out. KVC_EINVAL for a NULL map/outbox or empty key, KVC_ERANGE for a key
 * over KVC_LWW_KEY_MAX, a value over value_max or a full map (a new key
 * when max_entries are held), KVC_ENOMEM; on error nothing changed. */
int kvc_lww_put(kvc_lww_t *m, uint64_t now_ms, const uint8_t *key, size_t klen, const uint8_t *val,
                size_t vlen, kvc_outbox_t *out);
/* Deletes key (a tombstone stamped like a put), also when we hold nothing
 * for it (a write elsewhere may not have reached us yet). Errors as put. */
int kvc_lww_del(kvc_lww_t *m, uint64_t now_ms, const uint8_t *key, size_t klen, kvc_outbox_t *out);

/* Looks key up. 0 and *e filled (if e) for a live entry; KVC_ENOENT when
 * absent or deleted (*e then filled with the tombstone, if any, tomb = 1). */
int kvc_lww_get(const kvc_lww_t *m, const uint8_t *key, size_t klen, kvc_lww_entry_t *e);
/* Calls fn for every live entry (and tombstones when with_tombs), in no
 * particular order; a non-zero return from fn stops and is returned. fn
 * must not change the map. */
int kvc_lww_each(const kvc_lww_t *m, int with_tombs, int (*fn)(void *arg, const kvc_lww_entry_t *e),
                 void *arg);
/* Live entries (tombstones not counted). */
size_t kvc_lww_count(const kvc_lww_t *m);
/* The current hybrid logical clock. */
uint64_t kvc_lww_hlc(const kvc_lww_t *m);

/* Handles one message from from_id (authenticated). Oversized (KVC_ERANGE)
 * or malformed (KVC_EPARSE) input is counted and dropped with the map
 * unchanged; KVC_ENOMEM when decoding ran out of memory. A message from a
 * peer not in scope is ignored (counted in dropped, returns 0). */
int kvc_lww_receive(kvc_lww_t *m, uint64_t now_ms, const char *from_id, const uint8_t *msg,
                    size_t len, kvc_outbox_t *out);
/* Runs what is due at now_ms: push retries, an anti-entropy round,
 * tombstone collection. */
int kvc_lww_tick(kvc_lww_t *m, uint64_t now_ms, kvc_outbox_t *out);
/* The earliest time tick has work; KVC_DEADLINE_NONE with neither peers
 * nor tombstones. */
uint64_t kvc_lww_next_deadline(const kvc_lww_t *m);
/* A member event: dead or left drops the member from pending pushes (it
 * stays in scope, and keeps blocking tombstone GC, until set_peers removes
 * it); joined or alive again, seen by a peer that had half or more of its
 * scope down (it was the one away, or new), brings an anti-entropy round
 * with that member forward; the others leave the returning member to their
 * regular rounds, so it is not sent the same entries by every peer. */
void kvc_lww_member_event(kvc_lww_t *m, uint64_t now_ms, const kvc_member_event_t *ev,
                          kvc_outbox_t *out);

/* 1 if records changed since the last kvc_lww_persisted. */
int kvc_lww_needs_persist(const kvc_lww_t *m);
/* Calls fn for every changed record: store rec[0..rlen) under
 * skey[0..sklen), or delete skey when rec is NULL. Pointers are valid
 * during the call only. A non-zero return from fn stops and is returned
 * (nothing is forgotten: call again after fixing the store). */
int kvc_lww_each_dirty(const kvc_lww_t *m,
                       int (*fn)(void *arg, const uint8_t *skey, size_t sklen, const uint8_t *rec,
                                 size_t rlen),
                       void *arg);
/* The caller committed every dirty record; messages may be flushed now. */
void kvc_lww_persisted(kvc_lww_t *m);

typedef struct {
    uint64_t pushes;          /* Push messages sent */
    uint64_t digests;         /* Digest messages sent (anti-entropy rounds) */
    uint64_t msgs_sent;       /* every message sent */
    uint64_t bytes_sent;      /* their bytes */
    uint64_t entries_sent;    /* entries in Push and Entries messages */
    uint64_t entries_recv;    /* entries received */
    uint64_t entries_applied; /* received entries that changed the map */
    uint64_t conflicts;       /* two versions of a key compared: one kept */
    uint64_t tombs_collected;
    uint64_t dropped;      /* malformed, oversized or from outside scope */
    uint64_t refused_full; /* remote entries refused: map full */
    uint64_t stale;        /* remote entries refused at a GC horizon */
    uint64_t push_retries; /* pushes the outbox refused, retried later */
    uint64_t tombstones;   /* tombstones held now */
    uint64_t sub_buckets;  /* differing buckets answered with sub-bucket hashes */
} kvc_lww_stats_t;

/* Copies the counters into *out. */
void kvc_lww_stats(const kvc_lww_t *m, kvc_lww_stats_t *out);

/* The core.h interface. A table holds one channel and kvc_core_set_add
 * dispatches on it, so each instance carries its own copy: register
 * kvc_lww_core_ops_of(m) (channel and name filled from the instance, valid
 * until kvc_lww_destroy). kvc_lww_core_ops is the template it is copied
 * from (channel 0: not to be registered itself). */
extern const kvc_core_ops_t kvc_lww_core_ops;
const kvc_core_ops_t *kvc_lww_core_ops_of(const kvc_lww_t *m);

#endif
