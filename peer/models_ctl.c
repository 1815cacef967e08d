/*
 * models_ctl.c - the registry's control commands. See models_ctl.h.
 */
#include "models_ctl.h"

#include "clock.h"
#include "log.h"

#include <stdlib.h>
#include <string.h>

#define LIST_MAX 100000

/* Appends one encoded model to the reply (grown as needed). */
typedef struct {
    kvc_ctl_ctx_t *ctx;
    ProtobufCBinaryData *items;
    size_t n, cap;
} s_bytes_t;

static int s_bytes_add(s_bytes_t *b, const uint8_t *data, size_t len)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 16;
        ProtobufCBinaryData *items = kvc_ctl_alloc(b->ctx, cap, sizeof *items);
        if (!items)
            return KVC_ENOMEM;
        if (b->n)
            memcpy(items, b->items, b->n * sizeof *items);
        b->items = items;
        b->cap = cap;
    }
    uint8_t *copy = kvc_ctl_alloc(b->ctx, len ? len : 1, 1);
    if (!copy)
        return KVC_ENOMEM;
    memcpy(copy, data, len);
    b->items[b->n].data = copy;
    b->items[b->n].len = len;
    b->n++;
    return KVC_OK;
}

static int s_add_model(s_bytes_t *b, const kvc_model_t *m)
{
    uint8_t rec[KVC_MODEL_RECORD_MAX];
    size_t len;
    int rc = kvc_model_encode(m, rec, sizeof rec, &len);
    return rc ? rc : s_bytes_add(b, rec, len);
}

static int s_add_status(s_bytes_t *b, const kvc_model_status_t *s)
{
    uint8_t rec[1024];
    size_t len;
    int rc = kvc_model_status_encode(s, rec, sizeof rec, &len);
    return rc ? rc : s_bytes_add(b, rec, len);
}

static int s_version_arg(const Kvc__Ctl__Request *req, uint64_t *v)
{
    const char *s = kvc_ctl_arg(req, "version");
    *v = 0;
    if (!s || !s[0])
        return KVC_OK;
    char *end;
    unsigned long long x = strtoull(s, &end, 10);
    if (*end || s[0] == '-' || x > KVC_MODEL_VERSION_MAX)
        return KVC_EINVAL;
    *v = x;
    return KVC_OK;
}

int kvc_models_ctl_publish(const kvc_models_ctl_t *mc, const Kvc__Ctl__Request *req,
                           kvc_ctl_ctx_t *ctx)
{
    kvc_model_t *m = kvc_malloc(sizeof *m);
    if (!m)
        return KVC_ENOMEM;
    kvc_err_t err = {0};
    int rc = kvc_model_decode(req->payload.data, req->payload.len, m, &err);
    if (rc == 0)
        rc = kvc_registry_publish(mc->kv, m, mc->self_id, kvc_clock_wall_ms(), &err);
    if (rc == 0) {
        kvc_info("registry: %s:%llu published", m->name, (unsigned long long)m->version);
        s_bytes_t b = {ctx, NULL, 0, 0};
        rc = s_add_model(&b, m);
        ctx->rep.models = b.items;
        ctx->rep.n_models = b.n;
    } else {
        kvc_ctl_fail(ctx, rc, "%s", err.msg);
    }
    kvc_free(m);
    return rc;
}

/* Models collected for sorting. */
typedef struct {
    kvc_model_t *v;
    size_t n, cap;
    const char *name; /* only this name, or NULL */
    const char *site, *region; /* only placed there, or NULL */
} s_models_t;

static int s_collect(const kvc_model_t *m, void *arg)
{
    s_models_t *l = arg;
    if ((l->name && strcmp(l->name, m->name) != 0) ||
        (l->site && !kvc_model_placed(m, l->site, l->region)))
        return 0;
    if (l->n == l->cap) {
        if (l->cap >= LIST_MAX)
            return KVC_ERANGE;
        size_t cap = l->cap ? l->cap * 2 : 8;
        kvc_model_t *v = kvc_realloc(l->v, cap * sizeof *v);
        if (!v)
            return KVC_ENOMEM;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = *m;
    return 0;
}

static int s_cmp(const void *a, const void *b)
{
    const kvc_model_t *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : x->version < y->version ? 1 : x->version > y->version ? -1 : 0;
}

static int s_reply_models(kvc_ctl_ctx_t *ctx, s_models_t *l)
{
    qsort(l->v, l->n, sizeof *l->v, s_cmp);
    s_bytes_t b = {ctx, NULL, 0, 0};
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < l->n; i++)
        rc = s_add_model(&b, &l->v[i]);
    ctx->rep.models = b.items;
    ctx->rep.n_models = b.n;
    return rc;
}

int kvc_models_ctl_list(const kvc_models_ctl_t *mc, const Kvc__Ctl__Request *req,
                        kvc_ctl_ctx_t *ctx)
{
    const char *site = kvc_ctl_arg(req, "site");
    s_models_t l = {0};
    if (site && site[0]) {
        if (!kvc_model_name_ok(site)) {
            kvc_ctl_fail(ctx, KVC_EINVAL, "site: not a site name");
            return KVC_EINVAL;
        }
        l.site = site;
        l.region = mc->region_of ? mc->region_of(mc->arg, site) : "";
    }
    size_t damaged = 0;
    int rc = kvc_registry_each(mc->kv, s_collect, &l, &damaged);
    if (damaged)
        kvc_warn("registry: %zu damaged records skipped", damaged);
    if (rc == 0)
        rc = s_reply_models(ctx, &l);
    kvc_free(l.v);
    if (rc)
        kvc_ctl_fail(ctx, rc, "cannot list the registry: %s", kvc_strerror(rc));
    return rc;
}

int kvc_models_ctl_show(const kvc_models_ctl_t *mc, const Kvc__Ctl__Request *req,
                        kvc_ctl_ctx_t *ctx)
{
    const char *name = kvc_ctl_arg(req, "name");
    uint64_t v;
    if (!kvc_model_name_ok(name) || s_version_arg(req, &v) != 0) {
        kvc_ctl_fail(ctx, KVC_EINVAL, "show NAME[:VERSION] (a model name, a positive version)");
        return KVC_EINVAL;
    }
    kvc_model_t *m = kvc_malloc(sizeof *m);
    if (!m)
        return KVC_ENOMEM;
    int rc = kvc_registry_get(mc->kv, name, v, m);
    if (rc == 0) {
        s_bytes_t b = {ctx, NULL, 0, 0};
        rc = s_add_model(&b, m);
        ctx->rep.models = b.items;
        ctx->rep.n_models = b.n;
    } else if (rc == KVC_ENOENT) {
        if (v)
            kvc_ctl_fail(ctx, rc, "%s:%llu is not in the registry", name, (unsigned long long)v);
        else
            kvc_ctl_fail(ctx, rc, "no model %s in the registry", name);
    } else {
        kvc_ctl_fail(ctx, rc, "cannot read the registry: %s", kvc_strerror(rc));
    }
    kvc_free(m);
    return rc;
}

int kvc_models_ctl_retire(const kvc_models_ctl_t *mc, const Kvc__Ctl__Request *req,
                          kvc_ctl_ctx_t *ctx)
{
    const char *name = kvc_ctl_arg(req, "name");
    uint64_t v;
    kvc_err_t err = {0};
    if (!kvc_model_name_ok(name) || s_version_arg(req, &v) != 0 || v == 0) {
        kvc_ctl_fail(ctx, KVC_EINVAL, "retire NAME:VERSION (a model name and a version)");
        return KVC_EINVAL;
    }
    int rc = kvc_registry_retire(mc->kv, name, v, &err);
    if (rc) {
        kvc_ctl_fail(ctx, rc, "%s", err.msg);
        return rc;
    }
    kvc_info("registry: %s:%llu retired", name, (unsigned long long)v);
    return KVC_OK;
}

typedef struct {
    const char *name;
    s_bytes_t *b;
} s_status_w_t;

static int s_status_one(const kvc_model_status_t *s, void *arg)
{
    s_status_w_t *w = arg;
    return strcmp(s->model, w->name) == 0 ? s_add_status(w->b, s) : 0;
}

int kvc_models_ctl_status(const kvc_models_ctl_t *mc, const Kvc__Ctl__Request *req,
                          kvc_ctl_ctx_t *ctx)
{
    const char *name = kvc_ctl_arg(req, "name");
    if (!kvc_model_name_ok(name)) {
        kvc_ctl_fail(ctx, KVC_EINVAL, "status NAME (a model name)");
        return KVC_EINVAL;
    }
    s_models_t l = {.name = name};
    int rc = kvc_registry_each(mc->kv, s_collect, &l, NULL);
    if (rc == 0 && l.n == 0)
        rc = kvc_ctl_fail(ctx, KVC_ENOENT, "no model %s in the registry", name);
    if (rc == 0)
        rc = s_reply_models(ctx, &l);
    s_bytes_t b = {ctx, NULL, 0, 0};
    s_status_w_t w = {name, &b};
    if (rc == 0)
        rc = kvc_registry_status_each(mc->kv, s_status_one, &w);
    ctx->rep.model_status = b.items;
    ctx->rep.n_model_status = b.n;
    /* the sites any version is placed on, of those membership knows */
    char (*sites)[64] = rc == 0 ? kvc_calloc(KVC_MODELS_SITES_MAX, sizeof *sites) : NULL;
    size_t n = sites && mc->sites ? mc->sites(mc->arg, sites, KVC_MODELS_SITES_MAX) : 0;
    char **placed = n ? kvc_ctl_alloc(ctx, n, sizeof *placed) : NULL;
    size_t np = 0;
    for (size_t i = 0; placed && i < n; i++) {
        const char *region = mc->region_of ? mc->region_of(mc->arg, sites[i]) : "";
        for (size_t j = 0; j < l.n; j++)
            if (kvc_model_placed(&l.v[j], sites[i], region)) {
                placed[np++] = kvc_ctl_strdup(ctx, sites[i]);
                break;
            }
    }
    ctx->rep.sites = placed;
    ctx->rep.n_sites = np;
    kvc_free(sites);
    kvc_free(l.v);
    return rc;
}
