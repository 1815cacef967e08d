/*
 * coordinator.h - the peer's side of the site coordinator election: it owns
 * the election core (federation/election.h), keeps its term and vote in
 * LMDB, keeps the site's voter set, and says what to gossip about it.
 *
 * Durability. kvc_coord_persist must run after every call into the core and
 * before the outbox is flushed: it writes the term and vote (one LMDB
 * transaction, synced) when they changed. If it fails, the caller drops the
 * election messages of that flush; the core survives their loss.
 *
 * Voters. A member is a voter of our site when its credential, verified by
 * the transport, is for our site and holds the role "voter"
 * (KVC_COORD_VOTER_ROLE). The set only grows from what credentials show and
 * is stored, so a restarted peer starts with the voters it knew. It shrinks
 * only when a voter leaves (a graceful leave, or `kvc force-leave` of a dead
 * one) or presents a credential without the role. A voter that is merely
 * dead, suspect or reaped stays in the set: shrinking the set on failures
 * would let both sides of a partition count a majority of their own.
 */
#ifndef KVC_COORDINATOR_H
#define KVC_COORDINATOR_H

#include <stddef.h>
#include <stdint.h>

#include "base.h"
#include "core.h"
#include "election.h"
#include "store.h"

#define KVC_COORD_VOTER_ROLE "voter"

typedef struct kvc_coord kvc_coord_t;

/* Creates the election side of member self_id ("site/name") with timing
 * cfg, restoring term, vote and voters from store (borrowed; outlives the
 * result). self_voter: our own credential holds the voter role. NULL on
 * failure with err set (an unreadable store record is an error, not a
 * fresh start: it would forget a vote). */
kvc_coord_t *kvc_coord_new(kvc_store_t *store, const kvc_election_config_t *cfg,
                           const char *self_id, int self_voter, uint64_t seed, uint64_t now_ms,
                           kvc_err_t *err);
/* Frees it and nulls *self_p; NULL-safe. */
void kvc_coord_destroy(kvc_coord_t **self_p);

/* Bootstrap. A new peer that is told of seeds and knows no other voter yet
 * would be a one-voter site and elect itself at once, beside the site's
 * real coordinator. kvc_coord_hold keeps it out of elections (an empty
 * voter set: it neither campaigns nor votes) until kvc_coord_release, which
 * the caller calls once it has verified the credentials of the site's
 * members it hears of. Returns 1 if held, 0 when the stored voter set
 * already names others (a restart: safe at once). */
int kvc_coord_hold(kvc_coord_t *c, uint64_t now_ms);
int kvc_coord_held(const kvc_coord_t *c);
void kvc_coord_release(kvc_coord_t *c, uint64_t now_ms);

/* The core, for the registration table and for reading its state
 * (borrowed, valid until destroy). */
kvc_election_t *kvc_coord_election(kvc_coord_t *c);

/* The transport verified member id's credential; voter: it is for our site
 * and holds the voter role. Adds or removes it from the voter set (stored
 * first). KVC_ERANGE past KVC_ELECTION_VOTERS_MAX voters, KVC_EIO if the
 * store refused (the set is unchanged then). */
int kvc_coord_credential(kvc_coord_t *c, const char *id, int voter, uint64_t now_ms);

/* Writes the term and vote if the core changed them. 0: the outbox may be
 * flushed; KVC_EIO: drop the election messages. */
int kvc_coord_persist(kvc_coord_t *c);

/* If what we gossip about the election changed since the last call, encodes
 * the new view into buf (cap >= KVC_ELECTION_VIEW_MAX) and returns 1 (also
 * logging a change of coordinator); 0 if unchanged; < 0 on error. */
int kvc_coord_view_changed(kvc_coord_t *c, uint8_t *buf, size_t cap, size_t *len);

/* Number of voters in the set, ourselves included when we are one. */
size_t kvc_coord_voters(const kvc_coord_t *c);

/* The core on the core.h interface, channel KVC_ELECTION_CHANNEL; state: a
 * kvc_coord_t. Member events also maintain the voter set (a voter that
 * left is removed). */
extern const kvc_core_ops_t kvc_coord_core_ops;

#endif
