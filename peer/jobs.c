/*
 * jobs.c - job records and logs in the site map. See jobs.h.
 */
#include "jobs.h"

#include "jobs.pb-c.h"
#include "pb_alloc.h"

#include <ctype.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define NS_JOBS 'j'
#define NS_LOGS 'l'

static const char *s_states[] = {"queued", "running", "ok", "failed", "interrupted", "cancelled"};
static const char *s_kinds[] = {"node-setup", "cluster-create"};

const char *kvc_job_state_name(kvc_job_state_t st)
{
    return (unsigned)st < 6 ? s_states[st] : "?";
}

const char *kvc_job_kind_name(kvc_job_kind_t k)
{
    return (unsigned)k < 2 ? s_kinds[k] : "?";
}

int kvc_job_state_parse(const char *s, kvc_job_state_t *out)
{
    for (int i = 0; i < 6; i++)
        if (strcmp(s, s_states[i]) == 0) {
            *out = (kvc_job_state_t)i;
            return KVC_OK;
        }
    return KVC_EINVAL;
}

int kvc_job_finished(kvc_job_state_t st)
{
    return st >= KVC_JOB_OK;
}

static int s_id_ok(const char *id)
{
    if (strlen(id) != KVC_JOB_ID_LEN)
        return 0;
    for (size_t i = 0; i < KVC_JOB_ID_LEN; i++)
        if (!isxdigit((unsigned char)id[i]) || isupper((unsigned char)id[i]))
            return 0;
    return 1;
}

void kvc_job_new_id(char id[KVC_JOB_ID_LEN + 1])
{
    uint8_t r[KVC_JOB_ID_LEN / 2];
    randombytes_buf(r, sizeof r);
    for (size_t i = 0; i < sizeof r; i++)
        snprintf(id + 2 * i, 3, "%02x", r[i]);
}

int kvc_job_encode(const kvc_job_t *j, uint8_t *buf, size_t cap, size_t *len)
{
    Kvc__Jobs__Job r;
    kvc__jobs__job__init(&r);
    Kvc__Jobs__Var v[KVC_JOB_VARS_MAX], *vp[KVC_JOB_VARS_MAX];
    r.id = (char *)j->id;
    r.site = (char *)j->site;
    r.kind = (char *)kvc_job_kind_name(j->kind);
    r.playbook = (char *)j->playbook;
    r.node = (char *)j->node;
    r.role = (char *)j->role;
    r.requested_by = (char *)j->requested_by;
    r.requested_ms = j->requested_ms;
    r.state = (char *)kvc_job_state_name(j->state);
    r.task = j->task;
    r.tasks = j->tasks;
    r.changed = j->changed;
    r.current_task = (char *)j->current_task;
    r.started_ms = j->started_ms;
    r.finished_ms = j->finished_ms;
    r.reason = (char *)j->reason;
    r.coordinator = (char *)j->coordinator;
    r.term = j->term;
    r.log_chunks = j->log_chunks;
    r.cancel = j->cancel != 0;
    for (size_t i = 0; i < j->n_vars && i < KVC_JOB_VARS_MAX; i++) {
        kvc__jobs__var__init(&v[i]);
        v[i].key = (char *)j->vars[i].key;
        v[i].value = (char *)j->vars[i].value;
        vp[i] = &v[i];
    }
    r.vars = vp;
    r.n_vars = j->n_vars < KVC_JOB_VARS_MAX ? j->n_vars : KVC_JOB_VARS_MAX;
    size_t need = kvc__jobs__job__get_packed_size(&r);
    if (need > cap || need > KVC_JOB_RECORD_MAX)
        return KVC_ERANGE;
    *len = kvc__jobs__job__pack(&r, buf);
    return KVC_OK;
}

#define S_COPY(dst, src) (strlen(src) < sizeof(dst) ? (kvc_strlcpy(dst, src, sizeof(dst)), 1) : 0)

int kvc_job_decode(const uint8_t *buf, size_t len, kvc_job_t *j)
{
    if (len > KVC_JOB_RECORD_MAX || (!buf && len))
        return KVC_EPARSE;
    kvc_pb_alloc_t alloc;
    Kvc__Jobs__Job *r = kvc__jobs__job__unpack(kvc_pb_alloc_init(&alloc), len, buf);
    if (!r)
        return kvc_pb_alloc_error(&alloc) == KVC_ENOMEM ? KVC_ENOMEM : KVC_EPARSE;
    kvc_job_t t;
    memset(&t, 0, sizeof t);
    int ok = S_COPY(t.id, r->id) && s_id_ok(t.id) && S_COPY(t.site, r->site) &&
             S_COPY(t.playbook, r->playbook) && S_COPY(t.node, r->node) &&
             S_COPY(t.role, r->role) && S_COPY(t.requested_by, r->requested_by) &&
             S_COPY(t.current_task, r->current_task) && S_COPY(t.reason, r->reason) &&
             S_COPY(t.coordinator, r->coordinator) &&
             kvc_job_state_parse(r->state, &t.state) == 0 && r->n_vars <= KVC_JOB_VARS_MAX &&
             r->log_chunks <= KVC_JOB_LOG_CHUNKS;
    if (ok) {
        if (strcmp(r->kind, "node-setup") == 0)
            t.kind = KVC_JOB_NODE_SETUP;
        else if (strcmp(r->kind, "cluster-create") == 0)
            t.kind = KVC_JOB_CLUSTER_CREATE;
        else
            ok = 0;
    }
    for (size_t i = 0; ok && i < r->n_vars; i++)
        ok = S_COPY(t.vars[i].key, r->vars[i]->key) && S_COPY(t.vars[i].value, r->vars[i]->value);
    if (ok) {
        t.n_vars = r->n_vars;
        t.requested_ms = r->requested_ms;
        t.task = r->task;
        t.tasks = r->tasks;
        t.changed = r->changed;
        t.started_ms = r->started_ms;
        t.finished_ms = r->finished_ms;
        t.term = r->term;
        t.log_chunks = r->log_chunks;
        t.cancel = r->cancel;
        *j = t;
    }
    kvc__jobs__job__free_unpacked(r, kvc_pb_allocator());
    return ok ? KVC_OK : KVC_EPARSE;
}

int kvc_jobs_put(const kvc_kv_t *kv, const kvc_job_t *j)
{
    uint8_t buf[KVC_JOB_RECORD_MAX];
    size_t len;
    if (!s_id_ok(j->id))
        return KVC_EINVAL;
    int rc = kvc_job_encode(j, buf, sizeof buf, &len);
    return rc ? rc : kv->put(kv->self, NS_JOBS, j->id, KVC_JOB_ID_LEN, buf, len);
}

int kvc_jobs_get(const kvc_kv_t *kv, const char *id, kvc_job_t *j)
{
    if (!id || !s_id_ok(id))
        return KVC_EINVAL;
    uint8_t buf[KVC_JOB_RECORD_MAX];
    size_t len = 0;
    int rc = kv->get(kv->self, NS_JOBS, id, KVC_JOB_ID_LEN, buf, sizeof buf, &len);
    if (rc)
        return rc == KVC_ERANGE ? KVC_EPARSE : rc;
    return kvc_job_decode(buf, len, j);
}

typedef struct {
    kvc_jobs_each_fn fn;
    void *arg;
} s_each_t;

static int s_each_one(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    s_each_t *w = arg;
    kvc_job_t j;
    if (klen != KVC_JOB_ID_LEN || kvc_job_decode(val, vlen, &j) != 0 ||
        memcmp(j.id, key, KVC_JOB_ID_LEN) != 0)
        return 0;
    return w->fn(&j, w->arg);
}

int kvc_jobs_each(const kvc_kv_t *kv, kvc_jobs_each_fn fn, void *arg)
{
    s_each_t w = {fn, arg};
    return kv->each(kv->self, NS_JOBS, s_each_one, &w);
}

/* --- logs ---------------------------------------------------------------- */

static void s_log_key(const char *id, uint32_t i, uint8_t key[KVC_JOB_ID_LEN + 4])
{
    memcpy(key, id, KVC_JOB_ID_LEN);
    key[KVC_JOB_ID_LEN] = (uint8_t)(i >> 24);
    key[KVC_JOB_ID_LEN + 1] = (uint8_t)(i >> 16);
    key[KVC_JOB_ID_LEN + 2] = (uint8_t)(i >> 8);
    key[KVC_JOB_ID_LEN + 3] = (uint8_t)i;
}

static int s_chunk_put(const kvc_kv_t *kv, const char *id, uint32_t i, const char *text,
                       size_t len)
{
    Kvc__Jobs__LogChunk c;
    kvc__jobs__log_chunk__init(&c);
    char tmp[KVC_JOB_CHUNK_MAX + 1];
    memcpy(tmp, text, len);
    tmp[len] = '\0';
    c.text = tmp;
    uint8_t buf[KVC_JOB_CHUNK_MAX + 16], key[KVC_JOB_ID_LEN + 4];
    size_t n = kvc__jobs__log_chunk__pack(&c, buf);
    s_log_key(id, i, key);
    return kv->put(kv->self, NS_LOGS, key, sizeof key, buf, n);
}

int kvc_jobs_log_get(const kvc_kv_t *kv, const char *id, uint32_t i, char *out, size_t cap)
{
    if (!s_id_ok(id) || cap == 0)
        return KVC_EINVAL;
    uint8_t key[KVC_JOB_ID_LEN + 4], buf[KVC_JOB_CHUNK_MAX + 16];
    size_t len = 0;
    s_log_key(id, i, key);
    int rc = kv->get(kv->self, NS_LOGS, key, sizeof key, buf, sizeof buf, &len);
    if (rc)
        return rc == KVC_ERANGE ? KVC_EPARSE : rc;
    kvc_pb_alloc_t alloc;
    Kvc__Jobs__LogChunk *c = kvc__jobs__log_chunk__unpack(kvc_pb_alloc_init(&alloc), len, buf);
    if (!c)
        return KVC_EPARSE;
    kvc_strlcpy(out, c->text, cap);
    kvc__jobs__log_chunk__free_unpacked(c, kvc_pb_allocator());
    return KVC_OK;
}

int kvc_jobs_log_append(const kvc_kv_t *kv, kvc_job_t *j, const char *text, size_t len)
{
    char cur[KVC_JOB_CHUNK_MAX + 1];
    size_t used = 0;
    uint32_t idx = j->log_chunks ? j->log_chunks - 1 : 0;
    if (j->log_chunks && kvc_jobs_log_get(kv, j->id, idx, cur, sizeof cur) == 0)
        used = strlen(cur);
    else
        idx = j->log_chunks, used = 0;
    while (len > 0) {
        if (used == KVC_JOB_CHUNK_MAX) {
            if (idx + 1 >= KVC_JOB_LOG_CHUNKS)
                return KVC_ERANGE; /* the log is full: the rest is dropped */
            idx++;
            used = 0;
        }
        size_t take = KVC_JOB_CHUNK_MAX - used < len ? KVC_JOB_CHUNK_MAX - used : len;
        memcpy(cur + used, text, take);
        kvc_job_redact(cur + used, take);
        used += take;
        text += take;
        len -= take;
        int rc = s_chunk_put(kv, j->id, idx, cur, used);
        if (rc)
            return rc;
        j->log_chunks = idx + 1;
    }
    return KVC_OK;
}

int kvc_jobs_delete(const kvc_kv_t *kv, const kvc_job_t *j)
{
    if (!s_id_ok(j->id))
        return KVC_EINVAL;
    for (uint32_t i = 0; i < j->log_chunks && i < KVC_JOB_LOG_CHUNKS; i++) {
        uint8_t key[KVC_JOB_ID_LEN + 4];
        s_log_key(j->id, i, key);
        (void)kv->del(kv->self, NS_LOGS, key, sizeof key);
    }
    (void)kv->del(kv->self, 'c', j->id, KVC_JOB_ID_LEN);
    int rc = kv->del(kv->self, NS_JOBS, j->id, KVC_JOB_ID_LEN);
    return rc == KVC_ENOENT ? KVC_OK : rc;
}

typedef struct {
    kvc_job_t *v;
    size_t n, cap;
} s_finished_t;

static int s_finished_one(const kvc_job_t *j, void *arg)
{
    s_finished_t *f = arg;
    if (!kvc_job_finished(j->state))
        return 0;
    if (f->n == f->cap) {
        size_t cap = f->cap ? 2 * f->cap : 64;
        kvc_job_t *v = kvc_realloc(f->v, cap * sizeof *v);
        if (!v)
            return KVC_ENOMEM;
        f->v = v;
        f->cap = cap;
    }
    f->v[f->n++] = *j;
    return 0;
}

static int s_newest_first(const void *a, const void *b)
{
    const kvc_job_t *x = a, *y = b;
    return x->requested_ms < y->requested_ms ? 1 : x->requested_ms > y->requested_ms ? -1 : 0;
}

size_t kvc_jobs_prune(const kvc_kv_t *kv)
{
    s_finished_t f = {0};
    size_t gone = 0;
    if (kvc_jobs_each(kv, s_finished_one, &f) == 0 && f.n > KVC_JOBS_KEEP) {
        qsort(f.v, f.n, sizeof *f.v, s_newest_first);
        for (size_t i = KVC_JOBS_KEEP; i < f.n; i++)
            gone += kvc_jobs_delete(kv, &f.v[i]) == 0;
    }
    kvc_free(f.v);
    return gone;
}

/* --- redaction ------------------------------------------------------------ */

static int s_tok(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static void s_star(char *p, size_t n)
{
    memset(p, '*', n);
}

void kvc_job_redact(char *t, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        /* a bootstrap token: [a-z0-9]{6}.[a-z0-9]{16}, not inside a longer word */
        if (i + 23 <= len && t[i + 6] == '.' && (i == 0 || !s_tok((unsigned char)t[i - 1])) &&
            (i + 23 == len || !s_tok((unsigned char)t[i + 23]))) {
            int ok = 1;
            for (size_t k = 0; k < 23 && ok; k++)
                ok = k == 6 || s_tok((unsigned char)t[i + k]);
            if (ok) {
                s_star(t + i, 23);
                i += 22;
                continue;
            }
        }
        /* a k3s K10 token, an enrollment code: to the end of the word */
        if ((i + 3 <= len && memcmp(t + i, "K10", 3) == 0) ||
            (i + 5 <= len && memcmp(t + i, "kvce-", 5) == 0)) {
            size_t k = i;
            while (k < len && !isspace((unsigned char)t[k]) && t[k] != '"' && t[k] != '\'')
                k++;
            if (k - i > 8) {
                s_star(t + i, k - i);
                i = k;
                continue;
            }
        }
        /* token=..., "password": "..." and the like: the value after the
         * key (and the rest of its word) and a ':' or '=' */
        static const char *keys[] = {"token", "password", "secret", "enroll"};
        for (size_t w = 0; w < 4; w++) {
            size_t kl = strlen(keys[w]);
            if (i + kl >= len || strncasecmp(t + i, keys[w], kl) != 0 ||
                (i > 0 && isalnum((unsigned char)t[i - 1])))
                continue;
            size_t k = i + kl;
            while (k < len && (isalnum((unsigned char)t[k]) || t[k] == '_' || t[k] == '-'))
                k++;
            if (k < len && (t[k] == '"' || t[k] == '\''))
                k++;
            int sep = 0;
            while (k < len && (t[k] == ' ' || t[k] == ':' || t[k] == '='))
                sep |= t[k] != ' ', k++;
            if (!sep || k >= len)
                continue;
            char q = t[k] == '"' || t[k] == '\'' ? t[k] : 0;
            size_t v = q ? k + 1 : k, e = v;
            while (e < len && (q ? t[e] != q
                                 : !isspace((unsigned char)t[e]) && t[e] != ',' && t[e] != '}'))
                e++;
            s_star(t + v, e - v);
            i = e;
            break;
        }
    }
}
