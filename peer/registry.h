/*
 * registry.h - the model registry over a kv (kv.h; in kvc-peer the
 * federation-wide replicated map, repmap.h): publish, look up, list and
 * retire model versions (model.h), and each site's status for them.
 *
 * A retired version is deleted (the map keeps a tombstone until every
 * peer has seen it). Versions of one model share its framework and storage
 * base path: one model server per site mounts that path and finds every
 * version in it, so a version with other storage is refused.
 */
#ifndef KVC_REGISTRY_H
#define KVC_REGISTRY_H

#include "kv.h"
#include "model.h"

/* Checks m, stamps it (published_by, published_ms) and stores it.
 * KVC_EINVAL with err saying why for a bad entry or one that contradicts
 * the model's other versions; KVC_EEXIST when this version is held with
 * other files (storage, sha256, framework or tensors: publish a new
 * version); a republish of the same files updates placement, labels,
 * replicas and image. KVC_ERANGE when the registry or its store is full,
 * KVC_EIO when the store refused: then nothing is stored. */
int kvc_registry_publish(const kvc_kv_t *kv, kvc_model_t *m, const char *by, uint64_t now_ms,
                         kvc_err_t *err);

/* Version `version` of name, or its highest version when version is 0.
 * KVC_ENOENT when there is none. */
int kvc_registry_get(const kvc_kv_t *kv, const char *name, uint64_t version, kvc_model_t *m);

/* Calls fn for every model version held (damaged records are skipped and
 * counted in *damaged when not NULL), in no particular order; a non-zero
 * return from fn stops and is returned. */
typedef int (*kvc_registry_model_fn)(const kvc_model_t *m, void *arg);
int kvc_registry_each(const kvc_kv_t *kv, kvc_registry_model_fn fn, void *arg, size_t *damaged);

/* Retires a version (KVC_ENOENT when not held). */
int kvc_registry_retire(const kvc_kv_t *kv, const char *name, uint64_t version, kvc_err_t *err);

/* A site's status for a version (written by that site's coordinator). */
int kvc_registry_status_put(const kvc_kv_t *kv, const kvc_model_status_t *s);
int kvc_registry_status_del(const kvc_kv_t *kv, const char *site, const char *name,
                            uint64_t version);
typedef int (*kvc_registry_status_fn)(const kvc_model_status_t *s, void *arg);
int kvc_registry_status_each(const kvc_kv_t *kv, kvc_registry_status_fn fn, void *arg);

#endif
