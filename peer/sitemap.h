/*
 * sitemap.h - the site map: a kvc_kv_t (kv.h) replicated to every peer of
 * this peer's site (LWW map core, federation/lww.h, channel
 * KVC_LWW_CHANNEL_NODES = kvc.fed.Envelope.nodes) and kept in LMDB. It
 * holds what a site's peers must agree on: node records, enrollment codes
 * and the token audit log (nodes.h). A put is in LMDB before it returns and
 * is pushed to the site's peers at the daemon's next flush; a peer back from
 * a partition, or new, catches up by anti-entropy. Conflicting writes
 * resolve by hybrid logical clock, deterministic by member id.
 */
#ifndef KVC_SITEMAP_H
#define KVC_SITEMAP_H

#include "base.h"
#include "core.h"
#include "kv.h"
#include "lww.h"
#include "store.h"

typedef struct kvc_sitemap kvc_sitemap_t;

/* Creates the map of member self_id, loading it from store (borrowed).
 * Local writes append their pushes to out (borrowed: the daemon's outbox,
 * which it flushes). NULL with err set on failure. */
kvc_sitemap_t *kvc_sitemap_new(kvc_store_t *store, const char *self_id, kvc_outbox_t *out,
                               kvc_err_t *err);
void kvc_sitemap_destroy(kvc_sitemap_t **self_p);

/* The map as a kv (valid until destroy). */
kvc_kv_t kvc_sitemap_kv(kvc_sitemap_t *sm);

/* The core on the core.h interface; state: a kvc_sitemap_t. Member events
 * of our site's peers set the replication scope. */
extern const kvc_core_ops_t kvc_sitemap_core_ops;

void kvc_sitemap_stats(const kvc_sitemap_t *sm, kvc_lww_stats_t *out);

#endif
