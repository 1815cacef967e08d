/*
 * repmap.h - a replicated map: a kvc_kv_t (kv.h) kept in LMDB and
 * replicated by the LWW map core (federation/lww.h) to the peers in its
 * scope. kvc-peer runs two:
 *   - the site map (scope: this peer's site; channel KVC_LWW_CHANNEL_NODES
 *     = kvc.fed.Envelope.nodes, db "sitemap"): node records, enrollment
 *     codes and the token audit log (nodes.h);
 *   - the model registry (scope: every member; channel
 *     KVC_LWW_CHANNEL_REGISTRY = kvc.fed.Envelope.registry, db "registry"):
 *     model versions and each site's status for them (model.h).
 * A put is in LMDB before it returns and is pushed to the peers in scope at
 * the daemon's next flush; a peer back from a partition, or new, catches up
 * by anti-entropy. Conflicting writes resolve by hybrid logical clock,
 * deterministic by member id.
 */
#ifndef KVC_REPMAP_H
#define KVC_REPMAP_H

#include "base.h"
#include "core.h"
#include "kv.h"
#include "lww.h"
#include "store.h"

typedef struct kvc_repmap kvc_repmap_t;

typedef struct {
    const char *name;    /* for logs and the core table: "site map" */
    const char *db;      /* LMDB database: "sitemap" */
    uint32_t channel;    /* envelope channel */
    int federation_wide; /* scope: every member (else the site's peers) */
    uint32_t max_entries; /* 0: the LWW default */
    uint32_t value_max;   /* 0: the LWW default */
} kvc_repmap_opts_t;

/* The site map's options. */
extern const kvc_repmap_opts_t kvc_repmap_site_opts;
/* The model registry's. */
extern const kvc_repmap_opts_t kvc_repmap_registry_opts;

/* Creates the map of member self_id, loading it from store (borrowed).
 * Local writes append their pushes to out (borrowed: the daemon's outbox,
 * which it flushes). NULL with err set on failure. */
kvc_repmap_t *kvc_repmap_new(kvc_store_t *store, const char *self_id, kvc_outbox_t *out,
                             const kvc_repmap_opts_t *opts, kvc_err_t *err);
void kvc_repmap_destroy(kvc_repmap_t **self_p);

/* The map as a kv (valid until destroy). A put the store refuses is
 * KVC_EIO and nothing changed; a full map is KVC_ERANGE. */
kvc_kv_t kvc_repmap_kv(kvc_repmap_t *rm);

/* The core on the core.h interface, for kvc_core_set_add with rm as its
 * state (valid until destroy). Member events set the replication scope. */
const kvc_core_ops_t *kvc_repmap_core_ops(const kvc_repmap_t *rm);

void kvc_repmap_stats(const kvc_repmap_t *rm, kvc_lww_stats_t *out);
/* Writes the store refused (their messages were dropped). */
uint64_t kvc_repmap_persist_failures(const kvc_repmap_t *rm);
/* Grows with every change of the contents (a local write, an entry from a
 * peer, a tombstone collected): compare it to see whether to look again. */
uint64_t kvc_repmap_generation(const kvc_repmap_t *rm);
/* Live entries held. */
size_t kvc_repmap_count(const kvc_repmap_t *rm);
/* The peers in its scope now. */
size_t kvc_repmap_scope_size(const kvc_repmap_t *rm);

#endif
