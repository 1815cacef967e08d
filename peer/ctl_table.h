/*
 * ctl_table.h - the control command table of kvc-peer. A command is a name,
 * the arguments it requires and a handler that fills a reply; memory a
 * handler allocates for the reply is owned by the reply context and freed
 * after the reply is sent. Adding a command is one row in a table.
 */
#ifndef KVC_CTL_TABLE_H
#define KVC_CTL_TABLE_H

#include <stddef.h>

#include "base.h"
#include "control.pb-c.h"

#define KVC_CTL_ARG_MAX 256 /* bytes of one argument value */

typedef struct {
    Kvc__Ctl__Reply rep;
    void **owned;
    size_t n_owned, cap_owned;
} kvc_ctl_ctx_t;

/* A handler: fills ctx->rep (code 0 by default). Returns 0 or a kvc error
 * code, which becomes rep.code if the handler left it 0. */
typedef int (*kvc_ctl_fn)(void *self, const Kvc__Ctl__Request *req, kvc_ctl_ctx_t *ctx);

typedef struct {
    const char *name;
    kvc_ctl_fn fn;
    const char *required[4]; /* argument names that must be present, NULL-ended */
    const char *help;        /* one line */
} kvc_ctl_cmd_t;

void kvc_ctl_ctx_init(kvc_ctl_ctx_t *ctx);
/* Frees everything the reply owns. */
void kvc_ctl_ctx_free(kvc_ctl_ctx_t *ctx);
/* Zeroed memory owned by the reply; NULL on allocation failure. */
void *kvc_ctl_alloc(kvc_ctl_ctx_t *ctx, size_t n, size_t size);
/* A copy of s owned by the reply ("" on allocation failure, never NULL). */
char *kvc_ctl_strdup(kvc_ctl_ctx_t *ctx, const char *s);
/* Sets rep.code and a printf-style error owned by the reply; returns code. */
int kvc_ctl_fail(kvc_ctl_ctx_t *ctx, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The value of argument name, or NULL. */
const char *kvc_ctl_arg(const Kvc__Ctl__Request *req, const char *name);
/* The row for name, or NULL. */
const kvc_ctl_cmd_t *kvc_ctl_find(const kvc_ctl_cmd_t *table, size_t n, const char *name);
/* Runs the command req names: KVC_ENOENT "unknown command: X" if none,
 * KVC_EINVAL naming a missing or oversized argument, else the handler. */
int kvc_ctl_dispatch(const kvc_ctl_cmd_t *table, size_t n, void *self,
                     const Kvc__Ctl__Request *req, kvc_ctl_ctx_t *ctx);

#endif
