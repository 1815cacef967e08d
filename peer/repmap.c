/*
 * repmap.c - a kvc_kv_t replicated through the LWW map core
 * (federation/lww.h) to the peers in its scope (the site's, or every
 * member), kept in LMDB. See repmap.h.
 *
 * The LWW core runs on wall-clock time (its hybrid logical clock); this
 * wrapper gives it wall-clock ms and turns its deadlines into the monotonic
 * time every other core uses. Every change, local or remote, is in LMDB
 * (one synced transaction, in its db) before the call returns, so before
 * the daemon flushes what the core said and before a write is acknowledged.
 */
#include "repmap.h"

#include "clock.h"
#include "log.h"

#include <sodium.h>
#include <string.h>


struct kvc_repmap {
    kvc_lww_t *m;
    kvc_core_ops_t ops;  /* the LWW core's, wrapped */
    kvc_core_ops_t wrap; /* ours, on the LWW core's channel */
    kvc_repmap_opts_t o;
    char name[32], db[32];
    kvc_store_t *store;
    kvc_outbox_t *out; /* the daemon's, for local writes */
    char self[KVC_MEMBER_ID_MAX + 1];
    char site[64];
    char (*scope)[KVC_MEMBER_ID_MAX + 1];
    size_t n_scope;
    uint64_t persist_failures;
    uint64_t gen, seen_applied, seen_collected; /* kvc_repmap_generation */
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
static int s_persist(kvc_repmap_t *sm)
{
    if (!kvc_lww_needs_persist(sm->m))
        return KVC_OK;
    int rc = kvc_store_update(sm->store, sm->db, s_write_dirty, sm->m);
    if (rc) {
        sm->persist_failures++;
        kvc_error("%s: cannot write the store: %s; its messages are dropped", sm->name,
                  kvc_strerror(rc));
        return KVC_EIO;
    }
    kvc_lww_persisted(sm->m);
    return KVC_OK;
}

/* Counts a change the core made on its own (entries from peers, tombstones
 * collected). */
static void s_note_changes(kvc_repmap_t *sm)
{
    kvc_lww_stats_t st;
    kvc_lww_stats(sm->m, &st);
    if (st.entries_applied != sm->seen_applied || st.tombs_collected != sm->seen_collected) {
        sm->seen_applied = st.entries_applied;
        sm->seen_collected = st.tombs_collected;
        sm->gen++;
    }
}

/* What a core call appended to out is sent only if it is on disk. */
static void s_after(kvc_repmap_t *sm, kvc_outbox_t *out, size_t n_msgs, size_t n_bytes)
{
    s_note_changes(sm);
    if (s_persist(sm) != 0 && out->n_msgs >= n_msgs) {
        out->n_msgs = n_msgs;
        out->n_bytes = n_bytes;
    }
}

static int s_load_one(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    int rc = kvc_lww_load(arg, val, vlen);
    if (rc == KVC_EPARSE) {
        kvc_warn("replicated map: skipped a damaged record in the store");
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
    kvc_repmap_t *sm = self;
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

/* A local write the core took: on disk before it returns, or its pushes
 * (appended since n0/b0) are withdrawn and the write fails. */
static int s_commit_local(kvc_repmap_t *sm, size_t n0, size_t b0)
{
    if (s_persist(sm) != 0) {
        sm->out->n_msgs = n0;
        sm->out->n_bytes = b0;
        return KVC_EIO;
    }
    sm->gen++;
    return KVC_OK;
}

static int s_put(void *self, char ns, const void *key, size_t klen, const void *val, size_t vlen)
{
    kvc_repmap_t *sm = self;
    uint8_t k[KVC_LWW_KEY_MAX];
    int rc = s_key(ns, key, klen, k);
    if (rc)
        return rc;
    /* refused before the core holds it: a write the store cannot take
     * must not stay in memory to be written later */
    if (kvc_store_room(sm->store, klen + vlen + 128) != 0)
        return KVC_ERANGE;
    size_t n0 = sm->out->n_msgs, b0 = sm->out->n_bytes;
    rc = kvc_lww_put(sm->m, kvc_clock_wall_ms(), k, klen + 1, val, vlen, sm->out);
    return rc ? rc : s_commit_local(sm, n0, b0);
}

static int s_del(void *self, char ns, const void *key, size_t klen)
{
    kvc_repmap_t *sm = self;
    uint8_t k[KVC_LWW_KEY_MAX];
    int rc = s_key(ns, key, klen, k);
    if (rc)
        return rc;
    kvc_lww_entry_t e;
    if (kvc_lww_get(sm->m, k, klen + 1, &e) != 0 || e.tomb)
        return KVC_ENOENT;
    size_t n0 = sm->out->n_msgs, b0 = sm->out->n_bytes;
    rc = kvc_lww_del(sm->m, kvc_clock_wall_ms(), k, klen + 1, sm->out);
    return rc ? rc : s_commit_local(sm, n0, b0);
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
    kvc_repmap_t *sm = self;
    s_each_t w = {ns, fn, arg};
    return kvc_lww_each(sm->m, 0, s_each_one, &w);
}

kvc_kv_t kvc_repmap_kv(kvc_repmap_t *sm)
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
    kvc_repmap_t *sm = core;
    size_t n0 = out->n_msgs, b0 = out->n_bytes;
    int rc = sm->ops.receive(sm->m, kvc_clock_wall_ms(), from, msg, len, out);
    s_after(sm, out, n0, b0);
    return rc;
}

static int s_tick(void *core, uint64_t now_ms, kvc_outbox_t *out)
{
    kvc_repmap_t *sm = core;
    size_t n0 = out->n_msgs, b0 = out->n_bytes;
    int rc = sm->ops.tick(sm->m, kvc_clock_wall_ms(), out);
    s_after(sm, out, n0, b0);
    return rc;
}

static uint64_t s_deadline(const void *core)
{
    const kvc_repmap_t *sm = core;
    return s_to_mono(sm->ops.next_deadline(sm->m));
}

/* The peers in scope: our site's, or every member; not ourselves. */
static int s_in_scope(const kvc_repmap_t *sm, const char *id)
{
    return (sm->o.federation_wide || kvc_member_in_site(id, sm->site)) &&
           strcmp(id, sm->self) != 0;
}

static void s_apply_scope(kvc_repmap_t *sm, uint64_t wall)
{
    const char *ids[KVC_LWW_PEERS_MAX];
    for (size_t i = 0; i < sm->n_scope; i++)
        ids[i] = sm->scope[i];
    if (kvc_lww_set_peers(sm->m, ids, sm->n_scope, wall) != 0)
        kvc_warn("%s: cannot set its %zu peers", sm->name, sm->n_scope);
}

static void s_event(void *core, uint64_t now_ms, const kvc_member_event_t *ev, kvc_outbox_t *out)
{
    kvc_repmap_t *sm = core;
    uint64_t wall = kvc_clock_wall_ms();
    size_t n0 = out->n_msgs, b0 = out->n_bytes;
    if (s_in_scope(sm, ev->id)) {
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

static const kvc_core_ops_t s_wrap_template = {
    .receive = s_receive,
    .tick = s_tick,
    .next_deadline = s_deadline,
    .member_event = s_event,
};

const kvc_core_ops_t *kvc_repmap_core_ops(const kvc_repmap_t *rm)
{
    return &rm->wrap;
}

/* Node records, codes, the token audit (4096) and jobs (50 kept, 64 log
 * chunks each): 50000 entries leave room for all of them. */
const kvc_repmap_opts_t kvc_repmap_site_opts = {.name = "site map",
                                                .db = "sitemap",
                                                .channel = KVC_LWW_CHANNEL_NODES,
                                                .max_entries = 50000};

/* Model records are at most KVC_MODEL_RECORD_MAX (8 KiB), the LWW default
 * value bound; 100000 entries hold 50000 versions and their statuses. */
const kvc_repmap_opts_t kvc_repmap_registry_opts = {.name = "registry",
                                                    .db = "registry",
                                                    .channel = KVC_LWW_CHANNEL_REGISTRY,
                                                    .federation_wide = 1,
                                                    .max_entries = 100000};

/* --- life ---------------------------------------------------------------- */

kvc_repmap_t *kvc_repmap_new(kvc_store_t *store, const char *self_id, kvc_outbox_t *out,
                             const kvc_repmap_opts_t *opts, kvc_err_t *err)
{
    if (!opts || !opts->name || !opts->db || !opts->channel) {
        kvc_err_set(err, KVC_EINVAL, "replicated map: bad options");
        return NULL;
    }
    kvc_repmap_t *sm = kvc_calloc(1, sizeof *sm);
    if (!sm || !(sm->scope = kvc_calloc(KVC_LWW_PEERS_MAX, sizeof *sm->scope))) {
        kvc_free(sm);
        kvc_err_set(err, KVC_ENOMEM, "%s: out of memory", opts->name);
        return NULL;
    }
    sm->o = *opts;
    kvc_strlcpy(sm->name, opts->name, sizeof sm->name);
    kvc_strlcpy(sm->db, opts->db, sizeof sm->db);
    sm->o.name = sm->name;
    sm->o.db = sm->db;
    sm->store = store;
    sm->out = out;
    kvc_strlcpy(sm->self, self_id, sizeof sm->self);
    kvc_strlcpy(sm->site, self_id, sizeof sm->site);
    char *slash = strchr(sm->site, '/');
    if (slash)
        *slash = '\0';
    kvc_lww_config_t cfg;
    kvc_lww_config_default(&cfg);
    if (opts->max_entries)
        cfg.max_entries = opts->max_entries;
    if (opts->value_max)
        cfg.value_max = opts->value_max;
    if (kvc_lww_config_check(&cfg, err) != 0) {
        kvc_repmap_destroy(&sm);
        return NULL;
    }
    uint64_t seed;
    randombytes_buf(&seed, sizeof seed);
    sm->m = kvc_lww_new(&cfg, self_id, opts->channel, seed);
    if (!sm->m) {
        kvc_repmap_destroy(&sm);
        kvc_err_set(err, KVC_ENOMEM, "%s: cannot create its core", opts->name);
        return NULL;
    }
    sm->ops = *kvc_lww_core_ops_of(sm->m);
    sm->wrap = s_wrap_template;
    sm->wrap.name = sm->name;
    sm->wrap.channel = opts->channel;
    int rc = kvc_store_foreach(store, sm->db, s_load_one, sm->m);
    if (rc) {
        kvc_repmap_destroy(&sm);
        kvc_err_set(err, rc, "%s: cannot load it from the store: %s", opts->name, kvc_strerror(rc));
        return NULL;
    }
    return sm;
}

void kvc_repmap_destroy(kvc_repmap_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    kvc_lww_destroy(&(*self_p)->m);
    kvc_free((*self_p)->scope);
    kvc_free(*self_p);
    *self_p = NULL;
}

void kvc_repmap_stats(const kvc_repmap_t *sm, kvc_lww_stats_t *out)
{
    kvc_lww_stats(sm->m, out);
}

uint64_t kvc_repmap_persist_failures(const kvc_repmap_t *rm)
{
    return rm->persist_failures;
}

size_t kvc_repmap_scope_size(const kvc_repmap_t *rm)
{
    return rm->n_scope;
}

size_t kvc_repmap_count(const kvc_repmap_t *rm)
{
    return kvc_lww_count(rm->m);
}

uint64_t kvc_repmap_generation(const kvc_repmap_t *rm)
{
    return rm->gen;
}
