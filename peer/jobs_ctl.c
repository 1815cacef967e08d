/*
 * jobs_ctl.c - the jobs' control commands. See jobs_ctl.h.
 */
#include "jobs_ctl.h"

#include "log.h"

#include <stdlib.h>
#include <string.h>

#define LIST_MAX 1024
#define LOG_CHUNKS_PER_CALL 64

/* Puts one encoded job into the reply. */
static int s_reply_job(kvc_ctl_ctx_t *ctx, const kvc_job_t *j)
{
    uint8_t buf[KVC_JOB_RECORD_MAX];
    size_t len;
    int rc = kvc_job_encode(j, buf, sizeof buf, &len);
    ProtobufCBinaryData *b = rc ? NULL : kvc_ctl_alloc(ctx, 1, sizeof *b);
    uint8_t *copy = b ? kvc_ctl_alloc(ctx, len ? len : 1, 1) : NULL;
    if (!copy)
        return rc ? rc : KVC_ENOMEM;
    memcpy(copy, buf, len);
    b->data = copy;
    b->len = len;
    ctx->rep.jobs = b;
    ctx->rep.n_jobs = 1;
    return KVC_OK;
}

int kvc_jobs_ctl_setup(const kvc_jobs_ctl_t *jc, const Kvc__Ctl__Request *req, kvc_ctl_ctx_t *ctx)
{
    kvc_job_t j;
    kvc_err_t err = {0};
    int rc = kvc_jobs_request(jc->kv, jc->site, jc->self_id, KVC_JOB_NODE_SETUP,
                              kvc_ctl_arg(req, "node"), kvc_ctl_arg(req, "role"), NULL, 0, &j,
                              &err);
    if (rc)
        return kvc_ctl_fail(ctx, rc, "%s", err.msg);
    kvc_info("job %s queued: set up node %s (%s)", j.id, j.node, j.role);
    return s_reply_job(ctx, &j);
}

int kvc_jobs_ctl_cluster(const kvc_jobs_ctl_t *jc, const Kvc__Ctl__Request *req,
                         kvc_ctl_ctx_t *ctx)
{
    const char *site = kvc_ctl_arg(req, "site");
    if (site && site[0] && strcmp(site, jc->site) != 0)
        return kvc_ctl_fail(ctx, KVC_EINVAL,
                            "this peer is of site %s: ask a peer of site %s (--site names the "
                            "site a cluster is created for)",
                            jc->site, site);
    static const char *keys[] = {"name", "pod_cidr", "kind", "service_cidr", "advertise"};
    static const char *vars[] = {"cluster_name", "pod_cidr", "kind", "service_cidr",
                                 "advertise_address"};
    kvc_job_var_t v[5];
    size_t n = 0;
    for (size_t i = 0; i < 5; i++) {
        const char *a = kvc_ctl_arg(req, keys[i]);
        if (!a || !a[0])
            continue;
        kvc_strlcpy(v[n].key, vars[i], sizeof v[n].key);
        if (kvc_strlcpy(v[n].value, a, sizeof v[n].value))
            return kvc_ctl_fail(ctx, KVC_EINVAL, "%s: too long", keys[i]);
        n++;
    }
    kvc_job_t j;
    kvc_err_t err = {0};
    int rc = kvc_jobs_request(jc->kv, jc->site, jc->self_id, KVC_JOB_CLUSTER_CREATE,
                              kvc_ctl_arg(req, "node"), "server", v, n, &j, &err);
    if (rc)
        return kvc_ctl_fail(ctx, rc, "%s", err.msg);
    kvc_info("job %s queued: create cluster on node %s", j.id, j.node);
    return s_reply_job(ctx, &j);
}

typedef struct {
    kvc_job_t *v;
    size_t n, cap;
} s_list_t;

static int s_collect(const kvc_job_t *j, void *arg)
{
    s_list_t *l = arg;
    if (l->n == l->cap) {
        if (l->cap >= LIST_MAX)
            return 0;
        size_t cap = l->cap ? 2 * l->cap : 16;
        kvc_job_t *v = kvc_realloc(l->v, cap * sizeof *v);
        if (!v)
            return KVC_ENOMEM;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = *j;
    return 0;
}

static int s_newest_first(const void *a, const void *b)
{
    const kvc_job_t *x = a, *y = b;
    return x->requested_ms < y->requested_ms ? 1 : x->requested_ms > y->requested_ms ? -1 : 0;
}

int kvc_jobs_ctl_list(const kvc_jobs_ctl_t *jc, const Kvc__Ctl__Request *req, kvc_ctl_ctx_t *ctx)
{
    (void)req;
    s_list_t l = {0};
    int rc = kvc_jobs_each(jc->kv, s_collect, &l);
    if (rc) {
        kvc_free(l.v);
        return kvc_ctl_fail(ctx, rc, "cannot read the jobs: %s", kvc_strerror(rc));
    }
    qsort(l.v, l.n, sizeof *l.v, s_newest_first);
    ProtobufCBinaryData *b = kvc_ctl_alloc(ctx, l.n ? l.n : 1, sizeof *b);
    size_t k = 0;
    for (size_t i = 0; b && i < l.n; i++) {
        uint8_t buf[KVC_JOB_RECORD_MAX];
        size_t len;
        uint8_t *copy;
        if (kvc_job_encode(&l.v[i], buf, sizeof buf, &len) != 0 ||
            !(copy = kvc_ctl_alloc(ctx, len ? len : 1, 1)))
            continue;
        memcpy(copy, buf, len);
        b[k].data = copy;
        b[k++].len = len;
    }
    kvc_free(l.v);
    ctx->rep.jobs = b;
    ctx->rep.n_jobs = b ? k : 0;
    return b ? KVC_OK : KVC_ENOMEM;
}

static int s_get(const kvc_jobs_ctl_t *jc, const Kvc__Ctl__Request *req, kvc_ctl_ctx_t *ctx,
                 kvc_job_t *j)
{
    const char *id = kvc_ctl_arg(req, "id");
    int rc = kvc_jobs_get(jc->kv, id ? id : "", j);
    if (rc == KVC_EINVAL)
        return kvc_ctl_fail(ctx, rc, "'%.40s' is not a job id (16 hex digits; kvc jobs list)",
                            id ? id : "");
    if (rc)
        return kvc_ctl_fail(ctx, KVC_ENOENT, "no job %.20s (kvc jobs list)", id);
    return KVC_OK;
}

int kvc_jobs_ctl_show(const kvc_jobs_ctl_t *jc, const Kvc__Ctl__Request *req, kvc_ctl_ctx_t *ctx)
{
    kvc_job_t j;
    int rc = s_get(jc, req, ctx, &j);
    return rc ? rc : s_reply_job(ctx, &j);
}

int kvc_jobs_ctl_logs(const kvc_jobs_ctl_t *jc, const Kvc__Ctl__Request *req, kvc_ctl_ctx_t *ctx)
{
    kvc_job_t j;
    int rc = s_get(jc, req, ctx, &j);
    if (rc)
        return rc;
    const char *from_s = kvc_ctl_arg(req, "from");
    char *end;
    unsigned long from = from_s && from_s[0] ? strtoul(from_s, &end, 10) : 0;
    if (from_s && from_s[0] && (*end || from > KVC_JOB_LOG_CHUNKS))
        return kvc_ctl_fail(ctx, KVC_EINVAL, "from: a chunk number");
    /* the last chunk may still grow: a follower asks for it again */
    size_t n = 0;
    char **log = kvc_ctl_alloc(ctx, LOG_CHUNKS_PER_CALL, sizeof *log);
    uint32_t i = (uint32_t)from;
    for (; log && i < j.log_chunks && n < LOG_CHUNKS_PER_CALL; i++) {
        char *text = kvc_ctl_alloc(ctx, KVC_JOB_CHUNK_MAX + 1, 1);
        if (!text || kvc_jobs_log_get(jc->kv, j.id, i, text, KVC_JOB_CHUNK_MAX + 1) != 0)
            break;
        log[n++] = text;
    }
    ctx->rep.log = log;
    ctx->rep.n_log = n;
    ctx->rep.next_chunk = i;
    return s_reply_job(ctx, &j);
}

int kvc_jobs_ctl_cancel(const kvc_jobs_ctl_t *jc, const Kvc__Ctl__Request *req,
                        kvc_ctl_ctx_t *ctx)
{
    kvc_err_t err = {0};
    const char *id = kvc_ctl_arg(req, "id");
    int rc = kvc_jobs_cancel(jc->kv, id ? id : "", &err);
    if (rc)
        return kvc_ctl_fail(ctx, rc, "%s", err.msg);
    kvc_info("job %s: cancellation asked", id);
    kvc_job_t j;
    return kvc_jobs_get(jc->kv, id, &j) == 0 ? s_reply_job(ctx, &j) : KVC_OK;
}

int kvc_jobs_ctl_retry(const kvc_jobs_ctl_t *jc, const Kvc__Ctl__Request *req, kvc_ctl_ctx_t *ctx)
{
    kvc_err_t err = {0};
    kvc_job_t j;
    const char *id = kvc_ctl_arg(req, "id");
    int rc = kvc_jobs_retry(jc->kv, id ? id : "", jc->self_id, &j, &err);
    if (rc)
        return kvc_ctl_fail(ctx, rc, "%s", err.msg);
    kvc_info("job %s queued again as %s", id, j.id);
    return s_reply_job(ctx, &j);
}
