/*
 * kv.h - the small key/value interface the site's records (nodes.h) are
 * kept through: namespaced byte keys to byte values. Two implementations:
 * kvc_kv_store, this peer's LMDB alone (one database per namespace), and
 * the site map (repmap.h), replicated to every peer of the site. Every put
 * and del returns only once the change is durable here.
 */
#ifndef KVC_KV_H
#define KVC_KV_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

typedef int (*kvc_kv_each_fn)(const void *key, size_t klen, const void *val, size_t vlen,
                              void *arg);

typedef struct {
    /* Copies the value into buf (cap): KVC_ENOENT absent, KVC_ERANGE too small. */
    int (*get)(void *self, char ns, const void *key, size_t klen, void *buf, size_t cap,
               size_t *vlen);
    int (*put)(void *self, char ns, const void *key, size_t klen, const void *val, size_t vlen);
    /* KVC_ENOENT if absent. */
    int (*del)(void *self, char ns, const void *key, size_t klen);
    /* Every live key of namespace ns; a non-zero return from fn stops and is returned. */
    int (*each)(void *self, char ns, kvc_kv_each_fn fn, void *arg);
    void *self;
} kvc_kv_t;

/* A kv over store (borrowed): namespace c is LMDB database "kv_c". */
kvc_kv_t kvc_kv_store(kvc_store_t *store);

#endif
