/*
 * registry.c - the model registry over a kv. See registry.h.
 */
#include "registry.h"

#include <stdio.h>
#include <string.h>

static int s_tensors_eq(const kvc_model_tensor_t *a, size_t na, const kvc_model_tensor_t *b,
                        size_t nb)
{
    if (na != nb)
        return 0;
    for (size_t i = 0; i < na; i++)
        if (strcmp(a[i].name, b[i].name) != 0 || a[i].dtype != b[i].dtype ||
            a[i].n_dims != b[i].n_dims ||
            memcmp(a[i].dims, b[i].dims, a[i].n_dims * sizeof a[i].dims[0]) != 0)
            return 0;
    return 1;
}

/* Same files and serving contract: what a republish may not change. */
static int s_same_files(const kvc_model_t *a, const kvc_model_t *b)
{
    return a->framework == b->framework && strcmp(a->storage, b->storage) == 0 &&
           strcmp(a->sha256, b->sha256) == 0 && strcmp(a->signature, b->signature) == 0 &&
           s_tensors_eq(a->inputs, a->n_inputs, b->inputs, b->n_inputs) &&
           s_tensors_eq(a->outputs, a->n_outputs, b->outputs, b->n_outputs);
}

typedef struct {
    const kvc_model_t *m;
    kvc_err_t *err;
    int rc;
} s_consistent_t;

static int s_consistent_one(const kvc_model_t *o, void *arg)
{
    s_consistent_t *c = arg;
    if (strcmp(o->name, c->m->name) != 0 || o->version == c->m->version)
        return 0;
    if (o->framework != c->m->framework)
        c->rc = kvc_err_set(c->err, KVC_EINVAL,
                            "framework: version %llu of %s is served by %s; all versions of a "
                            "model share one server",
                            (unsigned long long)o->version, o->name,
                            kvc_model_fw_name(o->framework));
    else if (strcmp(o->storage, c->m->storage) != 0)
        c->rc = kvc_err_set(c->err, KVC_EINVAL,
                            "storage: version %llu of %s is in %s; all versions of a model share "
                            "one base path (each in its numbered folder)",
                            (unsigned long long)o->version, o->name, o->storage);
    return c->rc;
}

int kvc_registry_publish(const kvc_kv_t *kv, kvc_model_t *m, const char *by, uint64_t now_ms,
                         kvc_err_t *err)
{
    kvc_strlcpy(m->published_by, by ? by : "", sizeof m->published_by);
    m->published_ms = now_ms;
    int rc = kvc_model_check(m, err);
    if (rc)
        return rc;
    s_consistent_t c = {m, err, 0};
    rc = kvc_registry_each(kv, s_consistent_one, &c, NULL);
    if (rc)
        return rc;
    kvc_model_t *old = kvc_malloc(sizeof *old);
    if (!old)
        return kvc_err_set(err, KVC_ENOMEM, "out of memory");
    if (kvc_registry_get(kv, m->name, m->version, old) == 0 && !s_same_files(old, m))
        rc = kvc_err_set(err, KVC_EEXIST,
                         "%s:%llu is published with other files or tensors; publish a new "
                         "version",
                         m->name, (unsigned long long)m->version);
    kvc_free(old);
    if (rc)
        return rc;
    uint8_t key[KVC_MODEL_KEY_MAX], rec[KVC_MODEL_RECORD_MAX];
    size_t klen = kvc_model_key(m->name, m->version, key, sizeof key), rlen = 0;
    rc = kvc_model_encode(m, rec, sizeof rec, &rlen);
    if (rc)
        return kvc_err_set(err, rc, "the entry does not fit in %d bytes", KVC_MODEL_RECORD_MAX);
    rc = kv->put(kv->self, KVC_MODEL_NS, key, klen, rec, rlen);
    if (rc == KVC_ERANGE)
        return kvc_err_set(err, rc, "the registry or its store is full (registry.store_max_bytes): "
                                    "retire versions first; nothing was stored");
    if (rc)
        return kvc_err_set(err, rc, "the store refused the write: %s (nothing was stored)",
                           kvc_strerror(rc));
    return KVC_OK;
}

typedef struct {
    const char *name;
    uint64_t best;
    kvc_model_t *m;
    int found;
} s_latest_t;

static int s_latest_one(const kvc_model_t *m, void *arg)
{
    s_latest_t *l = arg;
    if (strcmp(m->name, l->name) == 0 && m->version > l->best) {
        l->best = m->version;
        *l->m = *m;
        l->found = 1;
    }
    return 0;
}

int kvc_registry_get(const kvc_kv_t *kv, const char *name, uint64_t version, kvc_model_t *m)
{
    if (!kvc_model_name_ok(name))
        return KVC_EINVAL;
    if (version == 0) {
        s_latest_t l = {name, 0, m, 0};
        int rc = kvc_registry_each(kv, s_latest_one, &l, NULL);
        return rc ? rc : l.found ? KVC_OK : KVC_ENOENT;
    }
    uint8_t key[KVC_MODEL_KEY_MAX];
    size_t klen = kvc_model_key(name, version, key, sizeof key), vlen = 0;
    uint8_t *rec = kvc_malloc(KVC_MODEL_RECORD_MAX);
    if (!rec)
        return KVC_ENOMEM;
    int rc = kv->get(kv->self, KVC_MODEL_NS, key, klen, rec, KVC_MODEL_RECORD_MAX, &vlen);
    if (rc == 0)
        rc = kvc_model_decode(rec, vlen, m, NULL) == 0 ? KVC_OK : KVC_EPARSE;
    kvc_free(rec);
    return rc == KVC_ERANGE ? KVC_EPARSE : rc;
}

typedef struct {
    kvc_registry_model_fn fn;
    void *arg;
    kvc_model_t *m;
    size_t damaged;
} s_each_t;

static int s_each_one(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    s_each_t *w = arg;
    char name[KVC_MODEL_NAME_MAX];
    uint64_t version;
    if (kvc_model_key_parse(key, klen, name, sizeof name, &version) != 0 ||
        kvc_model_decode(val, vlen, w->m, NULL) != 0 || strcmp(name, w->m->name) != 0 ||
        version != w->m->version) {
        w->damaged++;
        return 0;
    }
    return w->fn(w->m, w->arg);
}

int kvc_registry_each(const kvc_kv_t *kv, kvc_registry_model_fn fn, void *arg, size_t *damaged)
{
    s_each_t w = {fn, arg, kvc_malloc(sizeof(kvc_model_t)), 0};
    if (!w.m)
        return KVC_ENOMEM;
    int rc = kv->each(kv->self, KVC_MODEL_NS, s_each_one, &w);
    kvc_free(w.m);
    if (damaged)
        *damaged = w.damaged;
    return rc;
}

int kvc_registry_retire(const kvc_kv_t *kv, const char *name, uint64_t version, kvc_err_t *err)
{
    uint8_t key[KVC_MODEL_KEY_MAX];
    size_t klen = kvc_model_key(name, version, key, sizeof key);
    if (!klen || version == 0)
        return kvc_err_set(err, KVC_EINVAL, "retire NAME:VERSION (a model name and a version)");
    int rc = kv->del(kv->self, KVC_MODEL_NS, key, klen);
    if (rc == KVC_ENOENT)
        return kvc_err_set(err, rc, "%s:%llu is not in the registry", name,
                           (unsigned long long)version);
    if (rc)
        return kvc_err_set(err, rc, "the store refused the write: %s", kvc_strerror(rc));
    return KVC_OK;
}

int kvc_registry_status_put(const kvc_kv_t *kv, const kvc_model_status_t *s)
{
    uint8_t key[KVC_MODEL_KEY_MAX + 64], rec[1024];
    size_t klen = kvc_model_status_key(s->site, s->model, s->version, key, sizeof key), rlen = 0;
    if (!klen)
        return KVC_EINVAL;
    int rc = kvc_model_status_encode(s, rec, sizeof rec, &rlen);
    return rc ? rc : kv->put(kv->self, KVC_MODEL_STATUS_NS, key, klen, rec, rlen);
}

int kvc_registry_status_del(const kvc_kv_t *kv, const char *site, const char *name,
                            uint64_t version)
{
    uint8_t key[KVC_MODEL_KEY_MAX + 64];
    size_t klen = kvc_model_status_key(site, name, version, key, sizeof key);
    return klen ? kv->del(kv->self, KVC_MODEL_STATUS_NS, key, klen) : KVC_EINVAL;
}

typedef struct {
    kvc_registry_status_fn fn;
    void *arg;
} s_status_each_t;

static int s_status_one(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    s_status_each_t *w = arg;
    kvc_model_status_t s;
    (void)key;
    (void)klen;
    if (kvc_model_status_decode(val, vlen, &s, NULL) != 0)
        return 0;
    return w->fn(&s, w->arg);
}

int kvc_registry_status_each(const kvc_kv_t *kv, kvc_registry_status_fn fn, void *arg)
{
    s_status_each_t w = {fn, arg};
    return kv->each(kv->self, KVC_MODEL_STATUS_NS, s_status_one, &w);
}
