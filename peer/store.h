/*
 * store.h - the peer's durable state in LMDB: what must survive a kill -9
 * (model registry, node approvals, token audit log, the peer's own counters).
 *
 * A put returns only after LMDB has committed (and synced) the transaction,
 * so callers acknowledge nothing before it is on disk. Values are copied out
 * on get; no pointer into the map escapes a transaction.
 */
#ifndef KVC_STORE_H
#define KVC_STORE_H

#include "base.h"

#include <stddef.h>
#include <stdint.h>

typedef struct kvc_store kvc_store_t;

/* Opens (creating, 0700) the store under dir. NULL on failure with err set. */
kvc_store_t *kvc_store_open(const char *dir, size_t map_bytes, kvc_err_t *err);

/* Closes the environment and nulls *self_p; NULL is fine. */
void kvc_store_destroy(kvc_store_t **self_p);

/* Bytes kept free for the records a store's own writes need (its
 * bookkeeping, the election term) when kvc_store_room refuses others. */
#define KVC_STORE_HEADROOM (256u * 1024)
/* KVC_OK when a write of about need bytes fits: the pages used so far
 * (LMDB's high-water mark, so freed pages it could reuse count as used;
 * the answer errs on refusing) plus twice need plus KVC_STORE_HEADROOM
 * are within the map size; KVC_ERANGE when not. */
int kvc_store_room(kvc_store_t *self, size_t need);

/* A hot copy of the whole store into folder dir (absolute; created 0700 if
 * missing; refused if it already holds a data.mdb): one read transaction,
 * so a consistent snapshot while the peer keeps writing, compacted. A peer
 * started with that folder as its store directory has every record. */
int kvc_store_backup(kvc_store_t *self, const char *dir, kvc_err_t *err);

/* Stores key -> value in the named database (created on first use). */
int kvc_store_put(kvc_store_t *self, const char *db, const void *key, size_t klen,
                  const void *val, size_t vlen);

/* Copies the value of key into buf (cap bytes); *vlen gets its full length.
 * KVC_ENOENT if absent, KVC_ERANGE if buf is too small (nothing copied). */
int kvc_store_get(kvc_store_t *self, const char *db, const void *key, size_t klen, void *buf,
                  size_t cap, size_t *vlen);

/* Deletes key; KVC_ENOENT if absent. */
int kvc_store_del(kvc_store_t *self, const char *db, const void *key, size_t klen);

/* Atomically adds delta to a little-endian u64 counter (absent = 0) and
 * returns the new value in *out. */
int kvc_store_incr(kvc_store_t *self, const char *db, const char *key, uint64_t delta,
                   uint64_t *out);

/* Calls fn for every key/value in db (in key order) inside one read
 * transaction; the pointers are valid only during the call. A non-zero
 * return from fn stops the walk and is returned. KVC_OK for a missing db. */
typedef int (*kvc_store_each_fn)(const void *key, size_t klen, const void *val, size_t vlen,
                                 void *arg);
int kvc_store_foreach(kvc_store_t *self, const char *db, kvc_store_each_fn fn, void *arg);

/* Several writes to db in one transaction, committed (and synced) once:
 * fn calls kvc_store_batch_put/del on b; a non-zero return from fn, or a
 * failed write, aborts everything and is returned. */
typedef struct kvc_store_batch kvc_store_batch_t;
typedef int (*kvc_store_batch_fn)(kvc_store_batch_t *b, void *arg);
int kvc_store_update(kvc_store_t *self, const char *db, kvc_store_batch_fn fn, void *arg);
int kvc_store_batch_put(kvc_store_batch_t *b, const void *key, size_t klen, const void *val,
                        size_t vlen);
/* Deleting an absent key is not an error here. */
int kvc_store_batch_del(kvc_store_batch_t *b, const void *key, size_t klen);

#endif
