/*
 * ctl_table.c - control command lookup, argument checks and reply memory.
 */
#include "ctl_table.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void kvc_ctl_ctx_init(kvc_ctl_ctx_t *ctx)
{
    memset(ctx, 0, sizeof *ctx);
    kvc__ctl__reply__init(&ctx->rep);
}

void kvc_ctl_ctx_free(kvc_ctl_ctx_t *ctx)
{
    for (size_t i = 0; i < ctx->n_owned; i++)
        kvc_free(ctx->owned[i]);
    kvc_free(ctx->owned);
    kvc_ctl_ctx_init(ctx);
}

void *kvc_ctl_alloc(kvc_ctl_ctx_t *ctx, size_t n, size_t size)
{
    if (ctx->n_owned == ctx->cap_owned) {
        size_t cap = ctx->cap_owned ? 2 * ctx->cap_owned : 16;
        void **p = kvc_realloc(ctx->owned, cap * sizeof *p);
        if (!p)
            return NULL;
        ctx->owned = p;
        ctx->cap_owned = cap;
    }
    void *mem = kvc_calloc(n ? n : 1, size ? size : 1);
    if (mem)
        ctx->owned[ctx->n_owned++] = mem;
    return mem;
}

char *kvc_ctl_strdup(kvc_ctl_ctx_t *ctx, const char *s)
{
    size_t len = s ? strlen(s) : 0;
    char *d = kvc_ctl_alloc(ctx, len + 1, 1);
    if (!d)
        return (char *)"";
    if (len)
        memcpy(d, s, len);
    return d;
}

int kvc_ctl_fail(kvc_ctl_ctx_t *ctx, int code, const char *fmt, ...)
{
    char msg[KVC_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ctx->rep.code = code;
    ctx->rep.error = kvc_ctl_strdup(ctx, msg);
    return code;
}

const char *kvc_ctl_arg(const Kvc__Ctl__Request *req, const char *name)
{
    for (size_t i = 0; req && i < req->n_args; i++)
        if (req->args[i]->key && strcmp(req->args[i]->key, name) == 0)
            return req->args[i]->value ? req->args[i]->value : "";
    return NULL;
}

const kvc_ctl_cmd_t *kvc_ctl_find(const kvc_ctl_cmd_t *table, size_t n, const char *name)
{
    for (size_t i = 0; name && i < n; i++)
        if (strcmp(table[i].name, name) == 0)
            return &table[i];
    return NULL;
}

int kvc_ctl_dispatch(const kvc_ctl_cmd_t *table, size_t n, void *self,
                     const Kvc__Ctl__Request *req, kvc_ctl_ctx_t *ctx)
{
    const kvc_ctl_cmd_t *cmd = kvc_ctl_find(table, n, req->command);
    if (!cmd)
        return kvc_ctl_fail(ctx, KVC_ENOENT, "unknown command: %.64s", req->command);
    for (size_t i = 0; i < req->n_args; i++)
        if (req->args[i]->value && strlen(req->args[i]->value) > KVC_CTL_ARG_MAX)
            return kvc_ctl_fail(ctx, KVC_EINVAL, "%s: argument %.64s is longer than %d bytes",
                                cmd->name, req->args[i]->key, KVC_CTL_ARG_MAX);
    for (size_t i = 0; i < 4 && cmd->required[i]; i++)
        if (!kvc_ctl_arg(req, cmd->required[i]))
            return kvc_ctl_fail(ctx, KVC_EINVAL, "%s: missing argument %s", cmd->name,
                                cmd->required[i]);
    int rc = cmd->fn(self, req, ctx);
    if (rc && ctx->rep.code == 0)
        kvc_ctl_fail(ctx, rc, "%s: %s", cmd->name, kvc_strerror(rc));
    return ctx->rep.code;
}
