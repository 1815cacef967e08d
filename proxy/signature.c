/*
 * signature.c - model input signatures from the model server's metadata and
 * the proxy's per-backend cache of them.
 *
 * Metadata comes from the network and is hostile: counts are bounded, names
 * copied with their lengths, unknown dtypes kept as "infer". A published set
 * is never changed or freed before the cache, so readers need no lock once
 * they hold the pointer. This module must never do I/O or read a clock.
 */
#include "signature.h"

#include "pb_decode.h"

#include <pthread.h>
#include <string.h>

/* Bounds on what a (hostile) metadata answer may make us keep. */
#define S_MAX_SIGNATURES 256
#define S_MAX_INPUTS 1024

typedef struct {
    char *name;
    kvc_json_tensor_spec_t *specs; /* names owned by this struct */
    size_t n_specs;
} s_sig_t;

struct kvc_signature_set {
    s_sig_t *sigs;
    size_t n;
};

typedef struct {
    kvc_signature_set_t *set;
    int failed;
    uint64_t failed_at;
} s_slot_t;

struct kvc_signature_cache {
    pthread_mutex_t lock;
    s_slot_t *slots;
    size_t n;
    uint32_t retry_ms;
};

void kvc_signature_set_destroy(kvc_signature_set_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    kvc_signature_set_t *self = *self_p;
    for (size_t i = 0; i < self->n; i++) {
        for (size_t j = 0; j < self->sigs[i].n_specs; j++)
            kvc_free((char *)self->sigs[i].specs[j].name);
        kvc_free(self->sigs[i].specs);
        kvc_free(self->sigs[i].name);
    }
    kvc_free(self->sigs);
    kvc_free(self);
    *self_p = NULL;
}

/* Allocates a set with room for n signatures (all zeroed). */
static kvc_signature_set_t *s_set_new(size_t n, kvc_err_t *err)
{
    kvc_signature_set_t *self = kvc_calloc(1, sizeof *self);
    if (self && n)
        self->sigs = kvc_calloc(n, sizeof *self->sigs);
    if (!self || (n && !self->sigs)) {
        kvc_free(self);
        kvc_err_set(err, KVC_ENOMEM, "out of memory");
        return NULL;
    }
    return self;
}

/* Fills sig's name and room for n inputs. */
static int s_sig_init(s_sig_t *sig, const char *name, size_t n, kvc_err_t *err)
{
    sig->name = kvc_strdup(name ? name : "");
    sig->specs = n ? kvc_calloc(n, sizeof *sig->specs) : NULL;
    if (!sig->name || (n && !sig->specs))
        return kvc_err_set(err, KVC_ENOMEM, "out of memory");
    return KVC_OK;
}

/* Appends one input (name copied) to sig. */
static int s_sig_add(s_sig_t *sig, const char *name, kvc_dtype_t dtype, kvc_err_t *err)
{
    if (!kvc_dtype_valid(dtype))
        return KVC_OK; /* not one the codec knows: left to inference */
    char *copy = kvc_strdup(name ? name : "");
    if (!copy)
        return kvc_err_set(err, KVC_ENOMEM, "out of memory");
    sig->specs[sig->n_specs].name = copy;
    sig->specs[sig->n_specs].dtype = dtype;
    sig->n_specs++;
    return KVC_OK;
}

kvc_signature_set_t *
kvc_signature_set_from_tfs(const Tensorflow__Serving__GetModelMetadataResponse *r, kvc_err_t *err)
{
    Tensorflow__Serving__SignatureDefMap *map = NULL;
    if (kvc_pb_unpack_sigmap(r, &map, err) != 0)
        return NULL;
    kvc_signature_set_t *self = NULL;
    if (map->n_signature_def > S_MAX_SIGNATURES) {
        kvc_err_set(err, KVC_ERANGE, "metadata has %zu signatures (at most %d)",
                    map->n_signature_def, S_MAX_SIGNATURES);
        goto done;
    }
    self = s_set_new(map->n_signature_def, err);
    if (!self)
        goto done;
    for (size_t i = 0; i < map->n_signature_def; i++) {
        const Tensorflow__Serving__SignatureDefMap__SignatureDefEntry *e = map->signature_def[i];
        const Tensorflow__SignatureDef *def = e ? e->value : NULL;
        size_t n_in = def ? def->n_inputs : 0;
        if (n_in > S_MAX_INPUTS) {
            kvc_err_set(err, KVC_ERANGE, "signature has %zu inputs (at most %d)", n_in,
                        S_MAX_INPUTS);
            kvc_signature_set_destroy(&self);
            goto done;
        }
        s_sig_t *sig = &self->sigs[self->n++];
        if (s_sig_init(sig, e ? e->key : "", n_in, err) != 0) {
            kvc_signature_set_destroy(&self);
            goto done;
        }
        for (size_t j = 0; j < n_in; j++) {
            const Tensorflow__SignatureDef__InputsEntry *in = def->inputs[j];
            kvc_dtype_t dt = in && in->value ? (kvc_dtype_t)in->value->dtype : KVC_DT_INVALID;
            if (s_sig_add(sig, in ? in->key : "", dt, err) != 0) {
                kvc_signature_set_destroy(&self);
                goto done;
            }
        }
    }
done:
    tensorflow__serving__signature_def_map__free_unpacked(map, kvc_pb_allocator());
    return self;
}

/* A set of one signature, "serving_default", with room for n inputs.
 * NULL with err set. */
static kvc_signature_set_t *s_set_default(size_t n, kvc_err_t *err)
{
    kvc_signature_set_t *self = s_set_new(1, err);
    if (!self)
        return NULL;
    if (s_sig_init(&self->sigs[self->n++], KVC_SIGNATURE_DEFAULT, n, err) != 0)
        kvc_signature_set_destroy(&self);
    return self;
}

kvc_signature_set_t *kvc_signature_set_from_kserve(const Inference__ModelMetadataResponse *r,
                                                   kvc_err_t *err)
{
    size_t n_in = r ? r->n_inputs : 0;
    if (n_in > S_MAX_INPUTS) {
        kvc_err_set(err, KVC_ERANGE, "model has %zu inputs (at most %d)", n_in, S_MAX_INPUTS);
        return NULL;
    }
    kvc_signature_set_t *self = s_set_default(n_in, err);
    if (!self)
        return NULL;
    s_sig_t *sig = &self->sigs[0];
    for (size_t j = 0; j < n_in; j++) {
        const Inference__ModelMetadataResponse__TensorMetadata *t = r->inputs[j];
        const char *dts = t && t->datatype ? t->datatype : "";
        kvc_dtype_t dt = kvc_dtype_from_kserve(dts, strlen(dts));
        if (s_sig_add(sig, t ? t->name : "", dt, err) != 0) {
            kvc_signature_set_destroy(&self);
            return NULL;
        }
    }
    return self;
}

kvc_signature_set_t *kvc_signature_set_declared(const kvc_json_tensor_spec_t *specs, size_t n,
                                               kvc_err_t *err)
{
    return kvc_signature_set_declared_as(NULL, specs, n, err);
}

kvc_signature_set_t *kvc_signature_set_declared_as(const char *name,
                                                   const kvc_json_tensor_spec_t *specs, size_t n,
                                                   kvc_err_t *err)
{
    if (n > S_MAX_INPUTS) {
        kvc_err_set(err, KVC_ERANGE, "%zu inputs declared (at most %d)", n, S_MAX_INPUTS);
        return NULL;
    }
    kvc_signature_set_t *self = s_set_new(1, err);
    if (!self)
        return NULL;
    if (s_sig_init(&self->sigs[self->n++], name && name[0] ? name : KVC_SIGNATURE_DEFAULT, n,
                   err) != 0) {
        kvc_signature_set_destroy(&self);
        return NULL;
    }
    s_sig_t *sig = &self->sigs[0];
    for (size_t j = 0; j < n; j++) {
        if (!specs[j].name || !specs[j].name[0] || !kvc_dtype_valid(specs[j].dtype)) {
            kvc_err_set(err, KVC_EINVAL, "declared input %zu has no name or no valid dtype", j);
            kvc_signature_set_destroy(&self);
            return NULL;
        }
        if (s_sig_add(sig, specs[j].name, specs[j].dtype, err) != 0) {
            kvc_signature_set_destroy(&self);
            return NULL;
        }
    }
    return self;
}

/* Finds a signature by exact name. */
static const s_sig_t *s_find(const kvc_signature_set_t *self, const char *name)
{
    for (size_t i = 0; i < self->n; i++)
        if (strcmp(self->sigs[i].name, name) == 0)
            return &self->sigs[i];
    return NULL;
}

int kvc_signature_set_inputs(const kvc_signature_set_t *self, const char *name,
                             const kvc_json_tensor_spec_t **specs, size_t *n)
{
    if (!self)
        return KVC_ENOENT;
    const s_sig_t *sig = NULL;
    if (name && name[0]) {
        sig = s_find(self, name);
    } else {
        sig = s_find(self, KVC_SIGNATURE_DEFAULT);
        if (!sig && self->n == 1)
            sig = &self->sigs[0];
    }
    if (!sig)
        return KVC_ENOENT;
    *specs = sig->specs;
    *n = sig->n_specs;
    return KVC_OK;
}

size_t kvc_signature_set_size(const kvc_signature_set_t *self)
{
    return self ? self->n : 0;
}

kvc_signature_cache_t *kvc_signature_cache_new(size_t n, uint32_t retry_ms)
{
    kvc_signature_cache_t *self = kvc_calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->slots = kvc_calloc(n ? n : 1, sizeof *self->slots);
    if (!self->slots || pthread_mutex_init(&self->lock, NULL) != 0) {
        kvc_free(self->slots);
        kvc_free(self);
        return NULL;
    }
    self->n = n;
    self->retry_ms = retry_ms;
    return self;
}

void kvc_signature_cache_destroy(kvc_signature_cache_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    kvc_signature_cache_t *self = *self_p;
    for (size_t i = 0; i < self->n; i++)
        kvc_signature_set_destroy(&self->slots[i].set);
    pthread_mutex_destroy(&self->lock);
    kvc_free(self->slots);
    kvc_free(self);
    *self_p = NULL;
}

const kvc_signature_set_t *kvc_signature_cache_get(kvc_signature_cache_t *self, size_t slot,
                                                   uint64_t now_ms, int *fetch)
{
    *fetch = 0;
    if (slot >= self->n)
        return NULL;
    pthread_mutex_lock(&self->lock);
    const s_slot_t *s = &self->slots[slot];
    const kvc_signature_set_t *set = s->set;
    if (!set)
        *fetch = !s->failed || now_ms < s->failed_at || now_ms - s->failed_at >= self->retry_ms;
    pthread_mutex_unlock(&self->lock);
    return set;
}

const kvc_signature_set_t *kvc_signature_cache_put(kvc_signature_cache_t *self, size_t slot,
                                                   kvc_signature_set_t **set_p)
{
    if (slot >= self->n) {
        kvc_signature_set_destroy(set_p);
        return NULL;
    }
    pthread_mutex_lock(&self->lock);
    s_slot_t *s = &self->slots[slot];
    if (!s->set) {
        s->set = *set_p;
        *set_p = NULL;
        s->failed = 0;
    }
    const kvc_signature_set_t *set = s->set;
    pthread_mutex_unlock(&self->lock);
    kvc_signature_set_destroy(set_p);
    return set;
}

void kvc_signature_cache_fail(kvc_signature_cache_t *self, size_t slot, uint64_t now_ms)
{
    if (slot >= self->n)
        return;
    pthread_mutex_lock(&self->lock);
    self->slots[slot].failed = 1;
    self->slots[slot].failed_at = now_ms;
    pthread_mutex_unlock(&self->lock);
}
