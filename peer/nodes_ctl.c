/*
 * nodes_ctl.c - the control commands over the site's node records,
 * enrollment codes and token audit log (peer/nodes.h): "nodes",
 * "node-decide", "enroll-create", "enroll-list", "tokens". The daemon's
 * command table points at these through thin wrappers.
 */
#include "nodes_ctl.h"

#include "clock.h"
#include "credential.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LIST_MAX 4096

/* Fills a NodeRecord owned by the reply from n. */
static void s_node_pb(kvc_ctl_ctx_t *ctx, const kvc_node_t *n, Kvc__Join__NodeRecord *r)
{
    kvc__join__node_record__init(r);
    uint8_t *key = kvc_ctl_alloc(ctx, 1, 32);
    if (key) {
        memcpy(key, n->key, 32);
        r->key.data = key;
        r->key.len = 32;
    }
    r->site = kvc_ctl_strdup(ctx, n->site);
    r->state = (char *)kvc_node_state_name(n->state);
    r->name = kvc_ctl_strdup(ctx, n->name);
    r->arch = kvc_ctl_strdup(ctx, n->arch);
    char **addrs = kvc_ctl_alloc(ctx, n->n_addresses ? n->n_addresses : 1, sizeof *addrs);
    if (addrs) {
        for (size_t i = 0; i < n->n_addresses; i++)
            addrs[i] = kvc_ctl_strdup(ctx, n->addresses[i]);
        r->addresses = addrs;
        r->n_addresses = n->n_addresses;
    }
    r->first_seen_unix = n->first_seen_unix;
    r->updated_unix = n->updated_unix;
    r->updated_by = kvc_ctl_strdup(ctx, n->updated_by);
    r->joined_unix = n->joined_unix;
}

typedef struct {
    kvc_ctl_ctx_t *ctx;
    int filter; /* -1 all */
    Kvc__Join__NodeRecord **out;
    size_t n, cap;
} s_list_t;

static int s_count(const kvc_node_t *n, void *arg)
{
    s_list_t *l = arg;
    if (l->filter < 0 || (int)n->state == l->filter)
        l->cap++;
    return 0;
}

static int s_collect(const kvc_node_t *n, void *arg)
{
    s_list_t *l = arg;
    if ((l->filter >= 0 && (int)n->state != l->filter) || l->n >= l->cap)
        return 0;
    Kvc__Join__NodeRecord *r = kvc_ctl_alloc(l->ctx, 1, sizeof *r);
    if (!r)
        return KVC_ENOMEM;
    s_node_pb(l->ctx, n, r);
    l->out[l->n++] = r;
    return 0;
}

int kvc_nodes_ctl_list(const kvc_kv_t *kv, const Kvc__Ctl__Request *req, kvc_ctl_ctx_t *ctx)
{
    const char *state = kvc_ctl_arg(req, "state");
    s_list_t l = {ctx, -1, NULL, 0, 0};
    if (state && state[0]) {
        static const char *names[] = {"pending", "approved", "rejected", "revoked"};
        for (int i = 0; i < 4; i++)
            if (strcmp(state, names[i]) == 0)
                l.filter = i;
        if (l.filter < 0)
            return kvc_ctl_fail(ctx, KVC_EINVAL,
                                "state must be pending, approved, rejected or revoked");
    }
    int rc = kvc_nodes_each(kv, s_count, &l);
    if (l.cap > LIST_MAX)
        l.cap = LIST_MAX;
    if (rc == 0 && l.cap) {
        l.out = kvc_ctl_alloc(ctx, l.cap, sizeof *l.out);
        rc = l.out ? kvc_nodes_each(kv, s_collect, &l) : KVC_ENOMEM;
    }
    if (rc)
        return kvc_ctl_fail(ctx, rc, "cannot read the node records: %s", kvc_strerror(rc));
    ctx->rep.nodes = l.out;
    ctx->rep.n_nodes = l.n;
    return 0;
}

int kvc_nodes_ctl_decide(const kvc_kv_t *kv, const char *by, const Kvc__Ctl__Request *req,
                         kvc_ctl_ctx_t *ctx)
{
    const char *id = kvc_ctl_arg(req, "id"), *to = kvc_ctl_arg(req, "to");
    kvc_node_state_t st;
    if (strcmp(to, "approve") == 0)
        st = KVC_NODE_APPROVED;
    else if (strcmp(to, "reject") == 0)
        st = KVC_NODE_REJECTED;
    else if (strcmp(to, "revoke") == 0)
        st = KVC_NODE_REVOKED;
    else
        return kvc_ctl_fail(ctx, KVC_EINVAL, "to must be approve, reject or revoke");
    kvc_node_t n;
    kvc_err_t err = {0};
    int rc = kvc_nodes_decide(kv, id, st, by, kvc_clock_wall_s(), &n, &err);
    if (rc)
        return kvc_ctl_fail(ctx, rc, "%s", err.msg);
    char hex[65];
    kvc_key_hex(n.key, hex);
    kvc_info("node %.12s (%s) %s by the operator", hex, n.name, kvc_node_state_name(st));
    Kvc__Join__NodeRecord *r = kvc_ctl_alloc(ctx, 1, sizeof *r);
    Kvc__Join__NodeRecord **rp = kvc_ctl_alloc(ctx, 1, sizeof *rp);
    if (!r || !rp)
        return KVC_ENOMEM;
    s_node_pb(ctx, &n, r);
    rp[0] = r;
    ctx->rep.nodes = rp;
    ctx->rep.n_nodes = 1;
    return 0;
}

static void s_code_pb(kvc_ctl_ctx_t *ctx, const kvc_enroll_t *e, Kvc__Join__EnrollCode *c)
{
    kvc__join__enroll_code__init(c);
    c->id = kvc_ctl_strdup(ctx, e->id);
    c->site = kvc_ctl_strdup(ctx, e->site);
    c->expires_unix = e->expires_unix;
    c->uses_left = e->uses_left;
    c->created_by = kvc_ctl_strdup(ctx, e->created_by);
    c->created_unix = e->created_unix;
}

/* A whole number in [lo, hi], or -1. */
static long long s_num(const char *s, long long lo, long long hi)
{
    if (!s || !*s || strlen(s) > 18)
        return -1;
    long long v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (*p - '0');
    }
    return v < lo || v > hi ? -1 : v;
}

int kvc_nodes_ctl_enroll_create(const kvc_kv_t *kv, const char *site, const char *by,
                                const Kvc__Ctl__Request *req, kvc_ctl_ctx_t *ctx)
{
    const char *want = kvc_ctl_arg(req, "site");
    if (want && want[0] && strcmp(want, site) != 0)
        return kvc_ctl_fail(ctx, KVC_EINVAL,
                            "this peer is in site %s; create a code for %.63s on a peer of it",
                            site, want);
    long long ttl = s_num(kvc_ctl_arg(req, "ttl_s"), 1, KVC_ENROLL_TTL_MAX_S);
    long long uses = s_num(kvc_ctl_arg(req, "uses"), 1, KVC_ENROLL_USES_MAX);
    if (ttl < 0)
        return kvc_ctl_fail(ctx, KVC_ERANGE, "ttl must be 1s to 7d");
    if (uses < 0)
        return kvc_ctl_fail(ctx, KVC_ERANGE, "uses must be 1 to %d", KVC_ENROLL_USES_MAX);
    char code[KVC_ENROLL_CODE_LEN + 1];
    kvc_enroll_t e;
    kvc_err_t err = {0};
    int rc = kvc_enroll_create(kv, site, ttl, (uint32_t)uses, by, kvc_clock_wall_s(), code, &e,
                               &err);
    if (rc)
        return kvc_ctl_fail(ctx, rc, "%s", err.msg);
    kvc_info("enrollment code %s created for site %s (%lld s, %lld use%s)", e.id, site, ttl,
             uses, uses == 1 ? "" : "s");
    Kvc__Join__EnrollCode *c = kvc_ctl_alloc(ctx, 1, sizeof *c);
    Kvc__Join__EnrollCode **cp = kvc_ctl_alloc(ctx, 1, sizeof *cp);
    if (!c || !cp)
        return KVC_ENOMEM;
    s_code_pb(ctx, &e, c);
    cp[0] = c;
    ctx->rep.codes = cp;
    ctx->rep.n_codes = 1;
    ctx->rep.secret = kvc_ctl_strdup(ctx, code);
    sodium_memzero(code, sizeof code);
    return 0;
}

typedef struct {
    kvc_ctl_ctx_t *ctx;
    Kvc__Join__EnrollCode **out;
    size_t n, cap;
} s_codes_t;

static int s_code_one(const kvc_enroll_t *e, void *arg)
{
    s_codes_t *c = arg;
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 16;
        Kvc__Join__EnrollCode **grown = kvc_ctl_alloc(c->ctx, cap, sizeof *grown);
        if (!grown)
            return KVC_ENOMEM;
        if (c->n)
            memcpy(grown, c->out, c->n * sizeof *grown);
        c->out = grown;
        c->cap = cap;
    }
    Kvc__Join__EnrollCode *pb = kvc_ctl_alloc(c->ctx, 1, sizeof *pb);
    if (!pb)
        return KVC_ENOMEM;
    s_code_pb(c->ctx, e, pb);
    c->out[c->n++] = pb;
    return c->n >= LIST_MAX;
}

int kvc_nodes_ctl_enroll_list(const kvc_kv_t *kv, const Kvc__Ctl__Request *req,
                              kvc_ctl_ctx_t *ctx)
{
    s_codes_t c = {ctx, NULL, 0, 0};
    int rc = kvc_enroll_each(kv, s_code_one, &c);
    if (rc < 0)
        return kvc_ctl_fail(ctx, rc, "cannot read the enrollment codes: %s", kvc_strerror(rc));
    ctx->rep.codes = c.out;
    ctx->rep.n_codes = c.n;
    return 0;
}

typedef struct {
    kvc_ctl_ctx_t *ctx;
    Kvc__Join__TokenAudit **out;
    size_t n, cap;
} s_audit_list_t;

static int s_audit_one(const kvc_audit_t *a, void *arg)
{
    s_audit_list_t *l = arg;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 32;
        Kvc__Join__TokenAudit **grown = kvc_ctl_alloc(l->ctx, cap, sizeof *grown);
        if (!grown)
            return KVC_ENOMEM;
        if (l->n)
            memcpy(grown, l->out, l->n * sizeof *grown);
        l->out = grown;
        l->cap = cap;
    }
    Kvc__Join__TokenAudit *t = kvc_ctl_alloc(l->ctx, 1, sizeof *t);
    uint8_t *key = kvc_ctl_alloc(l->ctx, 1, 32);
    if (!t || !key)
        return KVC_ENOMEM;
    kvc__join__token_audit__init(t);
    t->at_unix_ms = a->at_unix_ms;
    memcpy(key, a->node_key, 32);
    t->node_key.data = key;
    t->node_key.len = 32;
    t->node = kvc_ctl_strdup(l->ctx, a->node);
    t->token_id = kvc_ctl_strdup(l->ctx, a->token_id);
    t->outcome = kvc_ctl_strdup(l->ctx, a->outcome);
    t->detail = kvc_ctl_strdup(l->ctx, a->detail);
    t->term = a->term;
    t->coordinator = kvc_ctl_strdup(l->ctx, a->coordinator);
    l->out[l->n++] = t;
    return 0;
}

int kvc_nodes_ctl_tokens(const kvc_kv_t *kv, const Kvc__Ctl__Request *req, kvc_ctl_ctx_t *ctx)
{
    s_audit_list_t l = {ctx, NULL, 0, 0};
    int rc = kvc_audit_each(kv, s_audit_one, &l);
    if (rc)
        return kvc_ctl_fail(ctx, rc, "cannot read the token audit log: %s", kvc_strerror(rc));
    ctx->rep.audit = l.out;
    ctx->rep.n_audit = l.n;
    return 0;
}
