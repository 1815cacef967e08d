/*
 * signature.h - what the proxy knows of a model's inputs (name and dtype per
 * signature), learnt from the model server's metadata, and the per-backend
 * cache that keeps it once fetched.
 *
 * The JSON codec needs the input dtypes before it parses, so numbers go
 * straight into the model's dtype (ints for a float input become floats).
 * A signature set is immutable once built; the cache publishes each set at
 * most once per slot and frees it only when the cache is destroyed, so a
 * pointer handed out stays valid for the cache's lifetime. No I/O and no
 * clock here: the caller fetches and passes the time in.
 */
#ifndef KVC_SIGNATURE_H
#define KVC_SIGNATURE_H

#include "base.h"
#include "json_tensor.h"
#include "kserve/grpc_predict_v2.pb-c.h"
#include "tensorflow_serving/apis/get_model_metadata.pb-c.h"

#include <stddef.h>
#include <stdint.h>

/* The name TF Serving uses when a request names no signature. */
#define KVC_SIGNATURE_DEFAULT "serving_default"

typedef struct kvc_signature_set kvc_signature_set_t;

/*
 * Builds a set from a GetModelMetadataResponse: its "signature_def" Any is
 * unpacked as a SignatureDefMap. Inputs whose dtype the proxy does not
 * handle are left out (the codec then infers them).
 * NULL with err set (KVC_EPARSE: no signature_def, bad Any; KVC_ENOMEM).
 */
kvc_signature_set_t *
kvc_signature_set_from_tfs(const Tensorflow__Serving__GetModelMetadataResponse *r, kvc_err_t *err);

/* Builds a one-signature set (named "serving_default") from KServe
 * ModelMetadata inputs. NULL with err set. */
kvc_signature_set_t *kvc_signature_set_from_kserve(const Inference__ModelMetadataResponse *r,
                                                   kvc_err_t *err);

/* Builds a one-signature set (named "serving_default") from inputs a
 * config declares for a model server that gives no metadata: n specs,
 * each with a name and a valid dtype (names copied). NULL with err set. */
kvc_signature_set_t *kvc_signature_set_declared(const kvc_json_tensor_spec_t *specs, size_t n,
                                               kvc_err_t *err);

/* The same, with the signature named name (NULL or "" = "serving_default";
 * copied). */
kvc_signature_set_t *kvc_signature_set_declared_as(const char *name,
                                                   const kvc_json_tensor_spec_t *specs, size_t n,
                                                   kvc_err_t *err);

/* Frees the set; NULL-safe, nulls *self_p. */
void kvc_signature_set_destroy(kvc_signature_set_t **self_p);

/*
 * Finds signature name (NULL or "" = "serving_default"; when that is absent
 * and the set has exactly one signature, that one). Sets *specs / *n to its
 * inputs (borrowed from the set, valid while it lives) and returns
 * 0, or KVC_ENOENT.
 */
int kvc_signature_set_inputs(const kvc_signature_set_t *self, const char *name,
                             const kvc_json_tensor_spec_t **specs, size_t *n);

/* Number of signatures in the set. */
size_t kvc_signature_set_size(const kvc_signature_set_t *self);

/* A fixed number of slots (one per backend), each empty or holding one set. */
typedef struct kvc_signature_cache kvc_signature_cache_t;

/* Creates a cache of n slots; after a failed fetch a slot is not fetched
 * again for retry_ms. NULL on allocation failure. */
kvc_signature_cache_t *kvc_signature_cache_new(size_t n, uint32_t retry_ms);
/* Frees the cache and every set in it; nulls *self_p. */
void kvc_signature_cache_destroy(kvc_signature_cache_t **self_p);

/*
 * Looks a slot up at time now_ms (any monotonic milliseconds). Returns the
 * set (valid until the cache is destroyed) or NULL; when NULL, *fetch says
 * whether the caller should fetch now (1) or fall back to inference (0,
 * a recent fetch failed). Thread-safe.
 */
const kvc_signature_set_t *kvc_signature_cache_get(kvc_signature_cache_t *self, size_t slot,
                                                   uint64_t now_ms, int *fetch);

/*
 * Publishes a fetched set, taking ownership (*set_p becomes NULL). If the
 * slot already holds one (another thread was faster), the new one is freed.
 * Returns the slot's set. Thread-safe.
 */
const kvc_signature_set_t *kvc_signature_cache_put(kvc_signature_cache_t *self, size_t slot,
                                                   kvc_signature_set_t **set_p);

/* Records a failed fetch at now_ms. Thread-safe. */
void kvc_signature_cache_fail(kvc_signature_cache_t *self, size_t slot, uint64_t now_ms);

#endif
