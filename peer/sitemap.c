/*
 * sitemap.c - the site map: a kvc_kv_t replicated to every peer of the
 * site through the LWW map core (federation/lww.h) on channel
 * KVC_LWW_CHANNEL_NODES, kept in LMDB. See sitemap.h.
 *
 * The LWW core runs on wall-clock time (its hybrid logical clock); this
 * wrapper gives it wall-clock ms and turns its deadlines into the monotonic
 * time every other core uses. Every change, local or remote, is in LMDB
 * (one synced transaction, db "sitemap") before the call returns, so before
 * the daemon flushes what the core said and before a write is acknowledged.
 */
#include "sitemap.h"

#include "clock.h"
#include "log.h"

#include <sodium.h>
#include <string.h>

#define DB_SITEMAP "sitemap"

struct kvc_sitemap {
    kvc_lww_t *m;
    kvc_core_ops_t ops; /* the LWW core's, wrapped */
    kvc_store_t *store;
    kvc_outbox_t *out; /* the daemon's, for local writes */
    char self[KVC_MEMBER_ID_MAX + 1];
    char site[64];
    char (*scope)[KVC_MEMBER_ID_MAX + 1];
    size_t n_scope;
    uint64_t persist_failures;
};

/* --- persistence --------------------------------------------------------- */

static int s_dirty_one(void *arg, const uint8_t *skey, size_t sklen, const uint8_t *rec,
                       size_t rlen)
{
    kvc_store_batch_t *b = arg;
    return rec ? kvc_store_batch_put(b, skey, sklen, rec, rlen)
               : kvc_store_batch_del(b, skey, sklen);
}

static int s_write_dirty(kvc_store_batch_t *b, void *arg)
{
    return kvc_lww_each_dirty(arg, s_dirty_one, b);
}

/* Writes what changed; KVC_EIO if the store refused (nothing is forgotten:
 * the records stay dirty for the next call). */
static int s_persist(kvc_sitemap_t *sm)
{
    if (!kvc_lww_needs_persist(sm->m))
        return KVC_OK;
    int rc = kvc_store_update(sm->store, DB_SITEMAP, s_write_dirty, sm->m);
    if (rc) {
        sm->persist_failures++;
        kvc_error("site map: cannot write the store: %s; its messages are dropped",
                  kvc_strerror(rc));
        return KVC_EIO;
    }
    kvc_lww_persisted(sm->m);
    return KVC_OK;
}

/* What a core call appended to out is sent only if it is on disk. */
static void s_after(kvc_sitemap_t *sm, kvc_outbox_t *out, size_t n_msgs, size_t n_bytes)
{
    if (s_persist(sm) != 0 && out->n_msgs >= n_msgs) {
        out->n_msgs = n_msgs;
        out->n_bytes = n_bytes;
    }
}

static int s_load_one(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    int rc = kvc_lww_load(arg, val, vlen);
    if (rc == KVC_EPARSE) {
        kvc_warn("site map: skipped a damaged record in the store");
        return 0;
    }
    return rc;
}

/* --- kvc_kv_t over the map ------------------------------------------------ */

static int s_key(char ns, const void *key, size_t klen, uint8_t *out)
{
    if (klen + 1 > KVC_LWW_KEY_MAX)
        return KVC_ERANGE;
    out[0] = (uint8_t)ns;
    memcpy(out + 1, key, klen);
    return KVC_OK;
}

static int s_get(void *self, char ns, const void *key, size_t klen, void *buf, size_t cap,
                 size_t *vlen)
{
    kvc_sitemap_t *sm = self;
    uint8_t k[KVC_LWW_KEY_MAX];
    int rc = s_key(ns, key, klen, k);
    if (rc)
        return rc;
    kvc_lww_entry_t e;
    rc = kvc_lww_get(sm->m, k, klen + 1, &e);
    if (rc || e.tomb)
        return KVC_ENOENT;
    *vlen = e.vlen;
    if (e.vlen > cap)
        return KVC_ERANGE;
    memcpy(buf, e.value, e.vlen);
    return KVC_OK;
}

static int s_put(void *self, char ns, const void *key, size_t klen, const void *val, size_t vlen)
{
    kvc_sitemap_t *sm = self;
    uint8_t k[KVC_LWW_KEY_MAX];
    int rc = s_key(ns, key, klen, k);
    if (rc)
        return rc;
    size_t n0 = sm->out->n_msgs, b0 = sm->out->n_bytes;
    rc = kvc_lww_put(sm->m, kvc_clock_wall_ms(), k, klen + 1, val, vlen, sm->out);
    if (rc)
        return rc;
    if (s_persist(sm) != 0) {
        sm->out->n_msgs = n0;
        sm->out->n_bytes = b0;
        return KVC_EIO;
    }
    return KVC_OK;
}

static int s_del(void *self, char ns, const void *key, size_t klen)
{
    kvc_sitemap_t *sm = self;
    uint8_t k[KVC_LWW_KEY_MAX];
    int rc = s_key(ns, key, klen, k);
    if (rc)
        return rc;
    kvc_lww_entry_t e;
    if (kvc_lww_get(sm->m, k, klen + 1, &e) != 0 || e.tomb)
        return KVC_ENOENT;
    size_t n0 = sm->out->n_msgs, b0 = sm->out->n_bytes;
    rc = kvc_lww_del(sm->m, kvc_clock_wall_ms(), k, klen + 1, sm->out);
    if (rc)
        return rc;
    if (s_persist(sm) != 0) {
        sm->out->n_msgs = n0;
        sm->out->n_bytes = b0;
        return KVC_EIO;
    }
    return KVC_OK;
}

typedef struct {
    char ns;
    kvc_kv_each_fn fn;
    void *arg;
} s_each_t;

static int s_each_one(void *arg, const kvc_lww_entry_t *e)
{
    s_each_t *w = arg;
    if (e->klen < 1 || e->key[0] != (uint8_t)w->ns)
        return 0;
    return w->fn(e->key + 1, e->klen - 1, e->value, e->vlen, w->arg);
}

static int s_each(void *self, char ns, kvc_kv_each_fn fn, void *arg)
{
    kvc_sitemap_t *sm = self;
    s_each_t w = {ns, fn, arg};
    return kvc_lww_each(sm->m, 0, s_each_one, &w);
}

kvc_kv_t kvc_sitemap_kv(kvc_sitemap_t *sm)
{
    kvc_kv_t kv = {s_get, s_put, s_del, s_each, sm};
    return kv;
}

/* --- the wrapped core ---------------------------------------------------- */

/* Monotonic ms of a wall-clock deadline. */
static uint64_t s_to_mono(uint64_t wall_deadline)
{
    if (wall_deadline == KVC_DEADLINE_NONE)
        return KVC_DEADLINE_NONE;
    uint64_t wall = kvc_clock_wall_ms(), mono = kvc_clock_mono_ms();
    return mono + (wall_deadline > wall ? wall_deadline - wall : 0);
}

static int s_receive(void *core, uint64_t now_ms, const char *from, const uint8_t *msg,
                     size_t len, kvc_outbox_t *out)
{
    kvc_sitemap_t *sm = core;
    size_t n0 = out->n_msgs, b0 = out->n_bytes;
    int rc = sm->ops.receive(sm->m, kvc_clock_wall_ms(), from, msg, len, out);
    s_after(sm, out, n0, b0);
    return rc;
}

static int s_tick(void *core, uint64_t now_ms, kvc_outbox_t *out)
{
    kvc_sitemap_t *sm = core;
    size_t n0 = out->n_msgs, b0 = out->n_bytes;
    int rc = sm->ops.tick(sm->m, kvc_clock_wall_ms(), out);
    s_after(sm, out, n0, b0);
    return rc;
}

static uint64_t s_deadline(const void *core)
{
    const kvc_sitemap_t *sm = core;
    return s_to_mono(sm->ops.next_deadline(sm->m));
}

/* Our own site's peers, not ourselves. */
static int s_in_site(const kvc_sitemap_t *sm, const char *id)
{
    return kvc_member_in_site(id, sm->site) && strcmp(id, sm->self) != 0;
}

static void s_apply_scope(kvc_sitemap_t *sm, uint64_t wall)
{
    const char *ids[KVC_LWW_PEERS_MAX];
    for (size_t i = 0; i < sm->n_scope; i++)
        ids[i] = sm->scope[i];
    if (kvc_lww_set_peers(sm->m, ids, sm->n_scope, wall) != 0)
        kvc_warn("site map: cannot set its %zu peers", sm->n_scope);
}

static void s_event(void *core, uint64_t now_ms, const kvc_member_event_t *ev, kvc_outbox_t *out)
{
    kvc_sitemap_t *sm = core;
    uint64_t wall = kvc_clock_wall_ms();
    size_t n0 = out->n_msgs, b0 = out->n_bytes;
    if (s_in_site(sm, ev->id)) {
        size_t i = 0;
        while (i < sm->n_scope && strcmp(sm->scope[i], ev->id) != 0)
            i++;
        int live = ev->type == KVC_MEMBER_EV_JOINED || ev->type == KVC_MEMBER_EV_ALIVE;
        int gone = ev->type == KVC_MEMBER_EV_LEFT || ev->type == KVC_MEMBER_EV_REAPED;
        if (live && i == sm->n_scope && sm->n_scope < KVC_LWW_PEERS_MAX) {
            kvc_strlcpy(sm->scope[sm->n_scope++], ev->id, sizeof sm->scope[0]);
            s_apply_scope(sm, wall);
        } else if (gone && i < sm->n_scope) {
            memcpy(sm->scope[i], sm->scope[--sm->n_scope], sizeof sm->scope[0]);
            s_apply_scope(sm, wall);
        }
    }
    sm->ops.member_event(sm->m, wall, ev, out);
    s_after(sm, out, n0, b0);
}

const kvc_core_ops_t kvc_sitemap_core_ops = {
    .name = "site map",
    .channel = KVC_LWW_CHANNEL_NODES,
    .receive = s_receive,
    .tick = s_tick,
    .next_deadline = s_deadline,
    .member_event = s_event,
};

/* --- life ---------------------------------------------------------------- */

kvc_sitemap_t *kvc_sitemap_new(kvc_store_t *store, const char *self_id, kvc_outbox_t *out,
                               kvc_err_t *err)
{
    kvc_sitemap_t *sm = kvc_calloc(1, sizeof *sm);
    if (!sm || !(sm->scope = kvc_calloc(KVC_LWW_PEERS_MAX, sizeof *sm->scope))) {
        kvc_free(sm);
        kvc_err_set(err, KVC_ENOMEM, "site map: out of memory");
        return NULL;
    }
    sm->store = store;
    sm->out = out;
    kvc_strlcpy(sm->self, self_id, sizeof sm->self);
    kvc_strlcpy(sm->site, self_id, sizeof sm->site);
    char *slash = strchr(sm->site, '/');
    if (slash)
        *slash = '\0';
    kvc_lww_config_t cfg;
    kvc_lww_config_default(&cfg);
    uint64_t seed;
    randombytes_buf(&seed, sizeof seed);
    sm->m = kvc_lww_new(&cfg, self_id, KVC_LWW_CHANNEL_NODES, seed);
    if (!sm->m) {
        kvc_sitemap_destroy(&sm);
        kvc_err_set(err, KVC_ENOMEM, "site map: cannot create its core");
        return NULL;
    }
    sm->ops = *kvc_lww_core_ops_of(sm->m);
    int rc = kvc_store_foreach(store, DB_SITEMAP, s_load_one, sm->m);
    if (rc) {
        kvc_sitemap_destroy(&sm);
        kvc_err_set(err, rc, "site map: cannot load it from the store: %s", kvc_strerror(rc));
        return NULL;
    }
    return sm;
}

void kvc_sitemap_destroy(kvc_sitemap_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    kvc_lww_destroy(&(*self_p)->m);
    kvc_free((*self_p)->scope);
    kvc_free(*self_p);
    *self_p = NULL;
}

void kvc_sitemap_stats(const kvc_sitemap_t *sm, kvc_lww_stats_t *out)
{
    kvc_lww_stats(sm->m, out);
}
