/*
 * lww.c - the replicated last-writer-wins map core (the rules, the time base
 * and the tombstone GC argument are in lww.h).
 *
 * It is a pure state machine over (time, message) inputs. It must never read
 * a clock, call rand(), or touch a socket or file: time comes in as now_ms
 * (wall clock, for the HLC), randomness from the seeded kvc_rng_t, messages
 * leave through the caller's kvc_outbox_t, and changed records leave through
 * kvc_lww_each_dirty for the caller to persist before it sends. Every byte
 * it decodes is hostile: a message is validated whole before any of it is
 * applied.
 *
 * Layout: entries live in one chained hash table of a power-of-two size
 * (>= 64 slots) indexed by FNV-1a 64 of the key; the digest bucket of a key
 * is the low 6 bits of that hash, so bucket b is the slots s with
 * s % 64 == b, whatever the table size of each peer. A bucket's hash is the
 * XOR of its entries' hashes, kept up to date on every change.
 */
#include "lww.h"

#include <stdlib.h>
#include <string.h>

#include "lww.pb-c.h"
#include "pb_alloc.h"
#include "rng.h"

#define WIRE_VERSION 1
#define HLC_MAX (UINT64_C(1) << 62) /* no valid stamp reaches this */
#define AE_MSGS_MAX 8               /* Entries messages per anti-entropy step */
#define FIXED_OVERHEAD 2048         /* digest part of a BucketHeaders, tags */
#define SUB_MIN 8                   /* entries from which a bucket is answered with sub-hashes */
#define SUB_COST (KVC_LWW_SUBS * 4 + 16) /* bytes one bucket's sub-hashes add, generously */

typedef struct entry {
    struct entry *next; /* hash chain */
    uint64_t khash;     /* FNV-1a of the key */
    uint64_t h;         /* this version's contribution to its bucket hash */
    uint64_t hlc;
    uint64_t seq;      /* local change counter when it last changed here */
    uint64_t push_seq; /* local write number; 0 if never written here */
    uint32_t mark;     /* anti-entropy scratch */
    uint32_t vlen;
    uint16_t klen;
    uint8_t tomb;
    uint8_t dirty;
    uint8_t *val;
    char writer[KVC_MEMBER_ID_MAX + 1];
    uint8_t key[];
} entry_t;

typedef struct {
    char id[KVC_MEMBER_ID_MAX + 1];
    int alive;
    uint64_t push_next;                /* first push_seq it is owed */
    uint64_t synced[KVC_LWW_BUCKETS];  /* our seq when its bucket equalled ours */
    uint64_t horizon[KVC_LWW_BUCKETS]; /* its advertised GC horizons */
} peer_t;

typedef struct {
    uint16_t klen;
    uint8_t key[KVC_LWW_KEY_MAX];
} erase_t;

struct kvc_lww {
    kvc_lww_config_t cfg;
    char self[KVC_MEMBER_ID_MAX + 1];
    uint32_t channel;
    kvc_core_ops_t ops;
    kvc_rng_t rng;
    uint64_t clock;    /* the HLC */
    uint64_t seq;      /* local change counter */
    uint64_t push_seq; /* local write counter */
    entry_t **slots;
    size_t n_slots;
    size_t n_entries, n_tombs;
    uint64_t bucket[KVC_LWW_BUCKETS];
    uint64_t sub[KVC_LWW_BUCKETS][KVC_LWW_SUBS]; /* the same XOR per sub-bucket */
    uint32_t bucket_n[KVC_LWW_BUCKETS];          /* entries (tombstones too) per bucket */
    uint64_t horizon[KVC_LWW_BUCKETS];
    int horizon_dirty;
    entry_t **dirty;
    size_t n_dirty;
    erase_t *erase;
    size_t n_erase, cap_erase;
    peer_t *peers;
    size_t n_peers;
    int ae_force;         /* peer to sync with at the next round, or -1 */
    uint64_t ae_deadline; /* 0: schedule at the first tick */
    uint64_t retry_deadline;
    uint32_t gen;
    kvc_lww_stats_t stats;
};

/* --- helpers ------------------------------------------------------------- */

void kvc_lww_config_default(kvc_lww_config_t *cfg)
{
    if (!cfg)
        return;
    cfg->max_entries = 10000;
    cfg->value_max = 8192;
    cfg->msg_max = 64u << 10;
    cfg->ae_interval_ms = 5000;
    cfg->push_retry_ms = 200;
    cfg->push_batch = 64;
    cfg->tomb_min_age_ms = 24ull * 3600 * 1000;
}

int kvc_lww_config_check(const kvc_lww_config_t *c, kvc_err_t *err)
{
    if (!c)
        return kvc_err_set(err, KVC_EINVAL, "lww: no config");
    if (c->max_entries < 1 || c->max_entries > 1000000)
        return kvc_err_set(err, KVC_EINVAL, "lww.max_entries: must be 1..1000000");
    if (c->value_max > KVC_LWW_VALUE_MAX)
        return kvc_err_set(err, KVC_EINVAL, "lww.value_max: must be <= %u", KVC_LWW_VALUE_MAX);
    if (c->msg_max > KVC_LWW_WIRE_MAX || c->msg_max < c->value_max + 1024u || c->msg_max < 4096)
        return kvc_err_set(err, KVC_EINVAL, "lww.msg_max: must be 4096..%u and >= value_max + 1024",
                           KVC_LWW_WIRE_MAX);
    if (c->ae_interval_ms < 4 || c->ae_interval_ms > 3600000)
        return kvc_err_set(err, KVC_EINVAL, "lww.ae_interval_ms: must be 4..3600000");
    if (c->push_retry_ms < 1 || c->push_retry_ms > 600000)
        return kvc_err_set(err, KVC_EINVAL, "lww.push_retry_ms: must be 1..600000");
    if (c->push_batch < 1 || c->push_batch > 4096)
        return kvc_err_set(err, KVC_EINVAL, "lww.push_batch: must be 1..4096");
    if (c->tomb_min_age_ms > (uint64_t)1 << 40)
        return kvc_err_set(err, KVC_EINVAL, "lww.tomb_min_age_ms: too large");
    return KVC_OK;
}

/* Is s a well-formed "site/name" ([a-z0-9-]{1,63} each)? */
static int s_id_valid(const char *s)
{
    if (!s)
        return 0;
    size_t part = 0, parts = 1;
    for (const char *p = s; *p; p++) {
        if (*p == '/') {
            if (part == 0 || ++parts > 2)
                return 0;
            part = 0;
            continue;
        }
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-'))
            return 0;
        if (++part > 63)
            return 0;
    }
    return parts == 2 && part > 0;
}

/* FNV-1a 64 over data, continuing from h. */
static uint64_t s_fnv(uint64_t h, const void *data, size_t len)
{
    const uint8_t *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= UINT64_C(0x100000001b3);
    }
    return h;
}

#define FNV_BASIS UINT64_C(0xcbf29ce484222325)

/* A version's bucket contribution: (key, hlc, writer, tomb), well mixed so
 * XOR of many stays a good set hash. */
static uint64_t s_version_hash(uint64_t khash, uint64_t hlc, const char *writer, int tomb)
{
    uint64_t h = s_fnv(khash, writer, strlen(writer) + 1);
    return kvc_rng_mix(h ^ kvc_rng_mix(hlc ^ ((uint64_t)(tomb != 0) << 63)));
}

/* The digest bucket of a key hash: its low 6 bits. */
static unsigned s_bucket_of(uint64_t khash)
{
    return (unsigned)(khash & (KVC_LWW_BUCKETS - 1));
}

/* The sub-bucket of a key hash within its bucket: bits 6..11. */
static unsigned s_sub_of(uint64_t khash)
{
    return (unsigned)((khash >> 6) & (KVC_LWW_SUBS - 1));
}

/* Compares versions: >0 if (h1, w1) wins over (h2, w2). */
static int s_cmp(uint64_t h1, const char *w1, uint64_t h2, const char *w2)
{
    if (h1 != h2)
        return h1 > h2 ? 1 : -1;
    return strcmp(w1, w2);
}

/* Raises the clock to at least hlc. */
static void s_clock_see(kvc_lww_t *m, uint64_t hlc)
{
    if (hlc > m->clock && hlc < HLC_MAX)
        m->clock = hlc;
}

/* A fresh stamp for a local write at wall-clock now_ms. */
static uint64_t s_clock_next(kvc_lww_t *m, uint64_t now_ms)
{
    uint64_t pt = now_ms < (HLC_MAX >> 17) ? now_ms << 16 : (HLC_MAX >> 1);
    uint64_t c = m->clock + 1 > pt ? m->clock + 1 : pt;
    m->clock = c;
    return c;
}

/* The entry of key, or NULL. */
static entry_t *s_find(const kvc_lww_t *m, const uint8_t *key, size_t klen, uint64_t khash)
{
    for (entry_t *e = m->slots[khash & (m->n_slots - 1)]; e; e = e->next)
        if (e->klen == klen && memcmp(e->key, key, klen) == 0)
            return e;
    return NULL;
}

/* The caller's view of e (pointers into it). */
static void s_fill_view(const entry_t *e, kvc_lww_entry_t *v)
{
    v->key = e->key;
    v->klen = e->klen;
    v->value = e->val;
    v->vlen = e->vlen;
    v->hlc = e->hlc;
    v->writer = e->writer;
    v->tomb = e->tomb;
}

/* Puts e on the dirty list once. */
static void s_mark_dirty(kvc_lww_t *m, entry_t *e)
{
    if (e->dirty)
        return;
    e->dirty = 1;
    m->dirty[m->n_dirty++] = e; /* room: at most one per entry */
}

/*
 * Stores version (key, val, hlc, writer, tomb), replacing what is held if
 * it is older (the caller checked). dirty: a change to persist (0 when
 * loading). Returns 1 stored, KVC_ERANGE full, KVC_ENOMEM (nothing changed).
 */
static int s_store(kvc_lww_t *m, const uint8_t *key, size_t klen, uint64_t khash,
                   const uint8_t *val, size_t vlen, uint64_t hlc, const char *writer, int tomb,
                   int dirty, entry_t **stored)
{
    entry_t *e = s_find(m, key, klen, khash);
    uint8_t *nv = NULL;
    if (!tomb && vlen) {
        nv = kvc_malloc(vlen);
        if (!nv)
            return KVC_ENOMEM;
        memcpy(nv, val, vlen);
    }
    if (!e) {
        if (m->n_entries >= m->cfg.max_entries) {
            kvc_free(nv);
            return KVC_ERANGE;
        }
        e = kvc_calloc(1, sizeof *e + klen);
        if (!e) {
            kvc_free(nv);
            return KVC_ENOMEM;
        }
        memcpy(e->key, key, klen);
        e->klen = (uint16_t)klen;
        e->khash = khash;
        size_t slot = khash & (m->n_slots - 1);
        e->next = m->slots[slot];
        m->slots[slot] = e;
        m->n_entries++;
        m->bucket_n[s_bucket_of(khash)]++;
    } else {
        m->bucket[s_bucket_of(khash)] ^= e->h;
        m->sub[s_bucket_of(khash)][s_sub_of(khash)] ^= e->h;
        if (e->tomb)
            m->n_tombs--;
        kvc_free(e->val);
    }
    e->val = nv;
    e->vlen = tomb ? 0 : (uint32_t)vlen;
    e->hlc = hlc;
    e->tomb = (uint8_t)(tomb != 0);
    kvc_strlcpy(e->writer, writer, sizeof e->writer);
    e->h = s_version_hash(khash, hlc, e->writer, e->tomb);
    m->bucket[s_bucket_of(khash)] ^= e->h;
    m->sub[s_bucket_of(khash)][s_sub_of(khash)] ^= e->h;
    if (e->tomb)
        m->n_tombs++;
    e->seq = ++m->seq;
    if (dirty)
        s_mark_dirty(m, e);
    s_clock_see(m, hlc);
    if (stored)
        *stored = e;
    return 1;
}

/* Collects tombstone e: forgets it, raises its bucket's horizon and
 * remembers to erase its record. KVC_ENOMEM (nothing changed) if the erase
 * cannot be remembered. */
static int s_collect(kvc_lww_t *m, entry_t *e)
{
    if (m->n_erase == m->cap_erase) {
        size_t cap = m->cap_erase ? 2 * m->cap_erase : 16;
        erase_t *p = kvc_realloc(m->erase, cap * sizeof *p);
        if (!p)
            return KVC_ENOMEM;
        m->erase = p;
        m->cap_erase = cap;
    }
    erase_t *er = &m->erase[m->n_erase++];
    er->klen = e->klen;
    memcpy(er->key, e->key, e->klen);
    unsigned b = s_bucket_of(e->khash);
    if (e->hlc > m->horizon[b]) {
        m->horizon[b] = e->hlc;
        m->horizon_dirty = 1;
    }
    m->bucket[b] ^= e->h;
    m->sub[b][s_sub_of(e->khash)] ^= e->h;
    m->bucket_n[b]--;
    if (e->dirty)
        for (size_t i = 0; i < m->n_dirty; i++)
            if (m->dirty[i] == e) {
                m->dirty[i] = m->dirty[--m->n_dirty];
                break;
            }
    entry_t **pp = &m->slots[e->khash & (m->n_slots - 1)];
    while (*pp != e)
        pp = &(*pp)->next;
    *pp = e->next;
    m->n_entries--;
    m->n_tombs--;
    m->stats.tombs_collected++;
    kvc_free(e->val);
    kvc_free(e);
    return KVC_OK;
}

/* The peer in scope with that id (and its index), or NULL. */
static peer_t *s_peer(kvc_lww_t *m, const char *id, int *idx)
{
    for (size_t i = 0; i < m->n_peers; i++)
        if (strcmp(m->peers[i].id, id) == 0) {
            if (idx)
                *idx = (int)i;
            return &m->peers[i];
        }
    return NULL;
}

/* --- sending ------------------------------------------------------------- */

/* Packs msg for `to`. KVC_ERANGE when too big or the outbox refused it. */
static int s_send(kvc_lww_t *m, kvc_outbox_t *out, const char *to, Kvc__Lww__Message *msg)
{
    msg->version = WIRE_VERSION;
    size_t n = kvc__lww__message__get_packed_size(msg);
    if (n > m->cfg.msg_max)
        return KVC_ERANGE;
    uint8_t *buf = kvc_outbox_reserve(out, n ? n : 1);
    if (!buf)
        return KVC_ERANGE;
    kvc__lww__message__pack(msg, buf);
    int rc = kvc_outbox_commit(out, to, m->channel, n);
    if (rc != 0)
        return rc;
    m->stats.msgs_sent++;
    m->stats.bytes_sent += n;
    return KVC_OK;
}

/* Wire form of e (pointing into it). */
static void s_entry_wire(const entry_t *e, Kvc__Lww__Entry *w)
{
    kvc__lww__entry__init(w);
    w->key.data = (uint8_t *)e->key;
    w->key.len = e->klen;
    w->value.data = e->val;
    w->value.len = e->vlen;
    w->hlc = e->hlc;
    w->writer = (char *)e->writer;
    w->tomb = e->tomb;
}

/* Bytes e adds to a message, generously. */
static size_t s_entry_cost(const entry_t *e)
{
    return (size_t)e->klen + e->vlen + strlen(e->writer) + 32;
}

/*
 * Sends ents[0..n) (wire entries already built) to `to` as Push or Entries
 * messages of at most push_batch entries (Push) and msg_max bytes. Returns
 * how many were sent before the outbox refused, or n.
 */
static size_t s_send_entries(kvc_lww_t *m, kvc_outbox_t *out, const char *to,
                             Kvc__Lww__Entry **ents, const size_t *cost, size_t n, int push,
                             size_t max_msgs)
{
    size_t i = 0, msgs = 0;
    while (i < n && msgs < max_msgs) {
        size_t j = i, bytes = 64;
        while (j < n && (!push || j - i < m->cfg.push_batch) &&
               (j == i || bytes + cost[j] <= m->cfg.msg_max))
            bytes += cost[j++];
        Kvc__Lww__Message msg = KVC__LWW__MESSAGE__INIT;
        Kvc__Lww__Push p = KVC__LWW__PUSH__INIT;
        Kvc__Lww__Entries en = KVC__LWW__ENTRIES__INIT;
        if (push) {
            p.n_entries = j - i;
            p.entries = ents + i;
            msg.body_case = KVC__LWW__MESSAGE__BODY_PUSH;
            msg.push = &p;
        } else {
            en.n_entries = j - i;
            en.entries = ents + i;
            msg.body_case = KVC__LWW__MESSAGE__BODY_ENTRIES;
            msg.entries = &en;
        }
        if (s_send(m, out, to, &msg) != 0)
            break;
        if (push)
            m->stats.pushes++;
        m->stats.entries_sent += j - i;
        msgs++;
        i = j;
    }
    return i;
}

/* qsort order of pending pushes: oldest local write first. */
static int s_push_cmp(const void *a, const void *b)
{
    const entry_t *x = *(entry_t *const *)a, *y = *(entry_t *const *)b;
    return x->push_seq < y->push_seq ? -1 : x->push_seq > y->push_seq;
}

/* Pushes every local write an alive peer is owed. A refusal leaves it owed
 * and arms the retry timer. */
static void s_push_all(kvc_lww_t *m, uint64_t now_ms, kvc_outbox_t *out)
{
    uint64_t from = UINT64_MAX;
    for (size_t i = 0; i < m->n_peers; i++)
        if (m->peers[i].alive && m->peers[i].push_next <= m->push_seq &&
            m->peers[i].push_next < from)
            from = m->peers[i].push_next;
    if (from == UINT64_MAX)
        return;
    size_t n = 0;
    for (size_t s = 0; s < m->n_slots; s++)
        for (entry_t *e = m->slots[s]; e; e = e->next)
            n += e->push_seq >= from;
    if (!n) {
        for (size_t i = 0; i < m->n_peers; i++)
            m->peers[i].push_next = m->push_seq + 1; /* owed entries were collected */
        return;
    }
    entry_t **pend = kvc_malloc(n * sizeof *pend);
    Kvc__Lww__Entry *w = kvc_malloc(n * sizeof *w);
    Kvc__Lww__Entry **wp = kvc_malloc(n * sizeof *wp);
    size_t *cost = kvc_malloc(n * sizeof *cost);
    if (!pend || !w || !wp || !cost) {
        kvc_free(pend), kvc_free(w), kvc_free(wp), kvc_free(cost);
        m->retry_deadline = now_ms + m->cfg.push_retry_ms;
        return;
    }
    size_t k = 0;
    for (size_t s = 0; s < m->n_slots; s++)
        for (entry_t *e = m->slots[s]; e; e = e->next)
            if (e->push_seq >= from)
                pend[k++] = e;
    qsort(pend, n, sizeof *pend, s_push_cmp);
    for (size_t i = 0; i < n; i++) {
        s_entry_wire(pend[i], &w[i]);
        wp[i] = &w[i];
        cost[i] = s_entry_cost(pend[i]);
    }
    for (size_t i = 0; i < m->n_peers; i++) {
        peer_t *p = &m->peers[i];
        if (!p->alive || p->push_next > m->push_seq)
            continue;
        size_t first = 0;
        while (first < n && pend[first]->push_seq < p->push_next)
            first++;
        size_t sent =
            s_send_entries(m, out, p->id, wp + first, cost + first, n - first, 1, SIZE_MAX);
        if (first + sent == n) {
            p->push_next = m->push_seq + 1;
        } else {
            if (sent)
                p->push_next = pend[first + sent - 1]->push_seq + 1;
            m->stats.push_retries++;
            m->retry_deadline = now_ms + m->cfg.push_retry_ms;
        }
    }
    kvc_free(pend), kvc_free(w), kvc_free(wp), kvc_free(cost);
}

/* --- life cycle ---------------------------------------------------------- */

kvc_lww_t *kvc_lww_new(const kvc_lww_config_t *cfg, const char *self_id, uint32_t channel,
                       uint64_t seed)
{
    if (kvc_lww_config_check(cfg, NULL) != 0 || !s_id_valid(self_id) || channel == 0)
        return NULL;
    kvc_lww_t *m = kvc_calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->cfg = *cfg;
    kvc_strlcpy(m->self, self_id, sizeof m->self);
    m->channel = channel;
    m->ops = kvc_lww_core_ops;
    m->ops.channel = channel;
    m->ops.name = channel == KVC_LWW_CHANNEL_NODES      ? "lww-nodes"
                  : channel == KVC_LWW_CHANNEL_REGISTRY ? "registry"
                                                        : "lww";
    kvc_rng_seed(&m->rng, seed);
    m->n_slots = KVC_LWW_BUCKETS;
    while (m->n_slots < cfg->max_entries)
        m->n_slots *= 2;
    m->slots = kvc_calloc(m->n_slots, sizeof *m->slots);
    m->dirty = kvc_calloc(cfg->max_entries, sizeof *m->dirty);
    if (!m->slots || !m->dirty) {
        kvc_lww_destroy(&m);
        return NULL;
    }
    m->ae_force = -1;
    return m;
}

void kvc_lww_destroy(kvc_lww_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    kvc_lww_t *m = *self_p;
    if (m->slots)
        for (size_t s = 0; s < m->n_slots; s++)
            for (entry_t *e = m->slots[s], *nx; e; e = nx) {
                nx = e->next;
                kvc_free(e->val);
                kvc_free(e);
            }
    kvc_free(m->slots);
    kvc_free(m->dirty);
    kvc_free(m->erase);
    kvc_free(m->peers);
    kvc_free(m);
    *self_p = NULL;
}

int kvc_lww_set_peers(kvc_lww_t *m, const char *const *ids, size_t n, uint64_t now_ms)
{
    (void)now_ms;
    if (!m || (!ids && n))
        return KVC_EINVAL;
    if (n > KVC_LWW_PEERS_MAX + 1)
        return KVC_ERANGE;
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        if (!s_id_valid(ids[i]))
            return KVC_EINVAL;
        for (size_t j = 0; j < i; j++)
            if (strcmp(ids[i], ids[j]) == 0)
                return KVC_EINVAL;
        count += strcmp(ids[i], m->self) != 0;
    }
    if (count > KVC_LWW_PEERS_MAX)
        return KVC_ERANGE;
    peer_t *next = count ? kvc_calloc(count, sizeof *next) : NULL;
    if (count && !next)
        return KVC_ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(ids[i], m->self) == 0)
            continue;
        peer_t *old = s_peer(m, ids[i], NULL);
        if (old) {
            next[k] = *old;
        } else {
            kvc_strlcpy(next[k].id, ids[i], sizeof next[k].id);
            next[k].alive = 1;
            next[k].push_next = m->push_seq + 1;
        }
        k++;
    }
    kvc_free(m->peers);
    m->peers = next;
    m->n_peers = count;
    m->ae_force = -1;
    return KVC_OK;
}

/* --- local writes -------------------------------------------------------- */

/* put and del: a stamped local write, then its push. */
static int s_write(kvc_lww_t *m, uint64_t now_ms, const uint8_t *key, size_t klen,
                   const uint8_t *val, size_t vlen, int tomb, kvc_outbox_t *out)
{
    if (!m || !out || !key || klen == 0 || (!val && vlen))
        return KVC_EINVAL;
    if (klen > KVC_LWW_KEY_MAX || vlen > m->cfg.value_max)
        return KVC_ERANGE;
    uint64_t khash = s_fnv(FNV_BASIS, key, klen);
    if (!s_find(m, key, klen, khash) && m->n_entries >= m->cfg.max_entries)
        return KVC_ERANGE;
    uint64_t saved = m->clock;
    uint64_t hlc = s_clock_next(m, now_ms);
    entry_t *e = NULL;
    int rc = s_store(m, key, klen, khash, val, vlen, hlc, m->self, tomb, 1, &e);
    if (rc < 0) {
        m->clock = saved;
        return rc;
    }
    e->push_seq = ++m->push_seq;
    s_push_all(m, now_ms, out);
    return KVC_OK;
}

int kvc_lww_put(kvc_lww_t *m, uint64_t now_ms, const uint8_t *key, size_t klen, const uint8_t *val,
                size_t vlen, kvc_outbox_t *out)
{
    return s_write(m, now_ms, key, klen, val, vlen, 0, out);
}

int kvc_lww_del(kvc_lww_t *m, uint64_t now_ms, const uint8_t *key, size_t klen, kvc_outbox_t *out)
{
    return s_write(m, now_ms, key, klen, NULL, 0, 1, out);
}

/* --- reads --------------------------------------------------------------- */

int kvc_lww_get(const kvc_lww_t *m, const uint8_t *key, size_t klen, kvc_lww_entry_t *v)
{
    if (!m || !key || klen == 0 || klen > KVC_LWW_KEY_MAX)
        return KVC_ENOENT;
    const entry_t *e = s_find(m, key, klen, s_fnv(FNV_BASIS, key, klen));
    if (!e)
        return KVC_ENOENT;
    if (v)
        s_fill_view(e, v);
    return e->tomb ? KVC_ENOENT : KVC_OK;
}

int kvc_lww_each(const kvc_lww_t *m, int with_tombs, int (*fn)(void *arg, const kvc_lww_entry_t *e),
                 void *arg)
{
    if (!m || !fn)
        return KVC_EINVAL;
    for (size_t s = 0; s < m->n_slots; s++)
        for (const entry_t *e = m->slots[s]; e; e = e->next) {
            if (e->tomb && !with_tombs)
                continue;
            kvc_lww_entry_t v;
            s_fill_view(e, &v);
            int rc = fn(arg, &v);
            if (rc)
                return rc;
        }
    return KVC_OK;
}

size_t kvc_lww_count(const kvc_lww_t *m)
{
    return m ? m->n_entries - m->n_tombs : 0;
}

uint64_t kvc_lww_hlc(const kvc_lww_t *m)
{
    return m ? m->clock : 0;
}

/* --- validation of decoded input ----------------------------------------- */

/* 1..KVC_LWW_KEY_MAX bytes. */
static int s_valid_key(const ProtobufCBinaryData *k)
{
    return k->len >= 1 && k->len <= KVC_LWW_KEY_MAX && k->data;
}

/* A stamp below HLC_MAX and a member id (or "" for a horizon tombstone). */
static int s_valid_version(uint64_t hlc, const char *writer, int tomb)
{
    if (hlc == 0 || hlc >= HLC_MAX || !writer)
        return 0;
    return s_id_valid(writer) || (tomb && writer[0] == '\0');
}

/* A whole entry within the bounds; a tombstone carries no value. */
static int s_valid_entry(const kvc_lww_t *m, const Kvc__Lww__Entry *e)
{
    if (!e || !s_valid_key(&e->key) || !s_valid_version(e->hlc, e->writer, e->tomb))
        return 0;
    if (e->value.len > m->cfg.value_max || (e->tomb && e->value.len))
        return 0;
    return 1;
}

/* Exactly 64 bucket hashes and 64 horizons, each a possible stamp. */
static int s_valid_sums(size_t nb, const uint64_t *b, size_t nh, const uint64_t *h)
{
    (void)b;
    if (nb != KVC_LWW_BUCKETS || nh != KVC_LWW_BUCKETS)
        return 0;
    for (size_t i = 0; i < nh; i++)
        if (h[i] >= HLC_MAX)
            return 0;
    return 1;
}

/* Checks everything the handlers read beyond the generated bounds, so a
 * message is refused whole before any of it applies. */
static int s_valid(const kvc_lww_t *m, const Kvc__Lww__Message *msg)
{
    if (msg->version != WIRE_VERSION)
        return 0;
    switch (msg->body_case) {
    case KVC__LWW__MESSAGE__BODY_PUSH:
        for (size_t i = 0; i < msg->push->n_entries; i++)
            if (!s_valid_entry(m, msg->push->entries[i]))
                return 0;
        return 1;
    case KVC__LWW__MESSAGE__BODY_ENTRIES:
        for (size_t i = 0; i < msg->entries->n_entries; i++)
            if (!s_valid_entry(m, msg->entries->entries[i]))
                return 0;
        return 1;
    case KVC__LWW__MESSAGE__BODY_DIGEST: {
        const Kvc__Lww__Digest *d = msg->digest;
        return d->hlc < HLC_MAX && d->start < KVC_LWW_BUCKETS &&
               s_valid_sums(d->n_buckets, d->buckets, d->n_horizons, d->horizons);
    }
    case KVC__LWW__MESSAGE__BODY_HEADERS: {
        const Kvc__Lww__BucketHeaders *h = msg->headers;
        if (h->hlc >= HLC_MAX || h->next > KVC_LWW_BUCKETS || h->partial > KVC_LWW_BUCKETS ||
            !s_valid_sums(h->n_buckets, h->buckets, h->n_horizons, h->horizons))
            return 0;
        uint64_t covered = 0;
        for (size_t i = 0; i < h->n_covered; i++) {
            if (h->covered[i] >= KVC_LWW_BUCKETS)
                return 0;
            covered |= UINT64_C(1) << h->covered[i];
        }
        if (h->partial)
            covered |= UINT64_C(1) << (h->partial - 1);
        /* sub-bucket hashes: increasing buckets, 64 hashes each */
        if (h->n_sub_buckets > KVC_LWW_BUCKETS ||
            h->n_sub_hashes != h->n_sub_buckets * (size_t)KVC_LWW_SUBS)
            return 0;
        for (size_t i = 0; i < h->n_sub_buckets; i++)
            if (h->sub_buckets[i] >= KVC_LWW_BUCKETS ||
                (i && h->sub_buckets[i] <= h->sub_buckets[i - 1]))
                return 0;
        uint64_t subs[KVC_LWW_BUCKETS] = {0};
        for (size_t i = 0; i < h->n_covered_sub; i++) {
            if (h->covered_sub[i] >= KVC_LWW_BUCKETS * KVC_LWW_SUBS)
                return 0;
            subs[h->covered_sub[i] / KVC_LWW_SUBS] |= UINT64_C(1)
                                                      << (h->covered_sub[i] % KVC_LWW_SUBS);
        }
        for (size_t i = 0; i < h->n_headers; i++) {
            const Kvc__Lww__Header *x = h->headers[i];
            if (!s_valid_key(&x->key) || !s_valid_version(x->hlc, x->writer, x->tomb))
                return 0;
            uint64_t khash = s_fnv(FNV_BASIS, x->key.data, x->key.len);
            unsigned b = s_bucket_of(khash);
            if (!(covered >> b & 1) && !(subs[b] >> s_sub_of(khash) & 1))
                return 0;
        }
        return 1;
    }
    case KVC__LWW__MESSAGE__BODY_WANT:
        for (size_t i = 0; i < msg->want->n_keys; i++)
            if (!s_valid_key(&msg->want->keys[i]))
                return 0;
        return 1;
    default:
        return 0;
    }
}

/* --- receiving ----------------------------------------------------------- */

/* Records what a peer's bucket hashes and horizons tell: every bucket equal
 * to ours now means it held all our entries of that bucket. */
static void s_learn(kvc_lww_t *m, peer_t *p, const uint64_t *buckets, const uint64_t *horizons)
{
    for (unsigned b = 0; b < KVC_LWW_BUCKETS; b++) {
        if (buckets[b] == m->bucket[b])
            p->synced[b] = m->seq;
        if (horizons[b] > p->horizon[b])
            p->horizon[b] = horizons[b];
    }
}

/* Merges received entries; sends a horizon tombstone back for each stale
 * live value. */
static void s_on_entries(kvc_lww_t *m, peer_t *p, Kvc__Lww__Entry **ents, size_t n,
                         kvc_outbox_t *out)
{
    Kvc__Lww__Entry *syn = NULL;
    Kvc__Lww__Entry **synp = NULL;
    size_t *cost = NULL;
    size_t n_syn = 0;
    for (size_t i = 0; i < n; i++) {
        const Kvc__Lww__Entry *w = ents[i];
        m->stats.entries_recv++;
        uint64_t khash = s_fnv(FNV_BASIS, w->key.data, w->key.len);
        entry_t *e = s_find(m, w->key.data, w->key.len, khash);
        if (e) {
            int c = s_cmp(w->hlc, w->writer, e->hlc, e->writer);
            if (c == 0)
                continue;
            m->stats.conflicts++;
            if (c < 0)
                continue;
        } else if (w->hlc <= m->horizon[s_bucket_of(khash)]) {
            m->stats.stale++;
            if (w->tomb)
                continue;
            if (!syn) {
                syn = kvc_calloc(n, sizeof *syn);
                synp = kvc_calloc(n, sizeof *synp);
                cost = kvc_calloc(n, sizeof *cost);
                if (!syn || !synp || !cost) {
                    kvc_free(syn), kvc_free(synp), kvc_free(cost);
                    syn = NULL, synp = NULL, cost = NULL;
                    continue; /* the next round answers it */
                }
            }
            Kvc__Lww__Entry *s = &syn[n_syn];
            kvc__lww__entry__init(s);
            s->key = w->key;
            s->hlc = m->horizon[s_bucket_of(khash)] + 1;
            s->writer = (char *)"";
            s->tomb = 1;
            synp[n_syn] = s;
            cost[n_syn++] = w->key.len + 32;
            continue;
        }
        int rc = s_store(m, w->key.data, w->key.len, khash, w->value.data, w->value.len, w->hlc,
                         w->writer, w->tomb, 1, NULL);
        if (rc == KVC_ERANGE)
            m->stats.refused_full++;
        else if (rc > 0)
            m->stats.entries_applied++;
    }
    if (n_syn)
        (void)s_send_entries(m, out, p->id, synp, cost, n_syn, 0, AE_MSGS_MAX);
    kvc_free(syn), kvc_free(synp), kvc_free(cost);
}

/* Appends our digest part to a Digest or BucketHeaders. */
static void s_digest_sends(kvc_lww_t *m, uint64_t *buckets, uint64_t *horizons)
{
    memcpy(buckets, m->bucket, sizeof m->bucket);
    memcpy(horizons, m->horizon, sizeof m->horizon);
}

/* Sends a Digest to p starting at bucket start; sub: we take sub-bucket
 * hashes in the answer. */
static void s_send_digest(kvc_lww_t *m, peer_t *p, unsigned start, int sub, kvc_outbox_t *out)
{
    uint64_t b[KVC_LWW_BUCKETS], h[KVC_LWW_BUCKETS];
    s_digest_sends(m, b, h);
    Kvc__Lww__Message msg = KVC__LWW__MESSAGE__INIT;
    Kvc__Lww__Digest d = KVC__LWW__DIGEST__INIT;
    d.hlc = m->clock;
    d.n_buckets = KVC_LWW_BUCKETS;
    d.buckets = b;
    d.n_horizons = KVC_LWW_BUCKETS;
    d.horizons = h;
    d.start = start;
    d.sub = sub ? 1 : 0;
    msg.body_case = KVC__LWW__MESSAGE__BODY_DIGEST;
    msg.digest = &d;
    if (s_send(m, out, p->id, &msg) == 0)
        m->stats.digests++;
}

/* The entries of bucket b, in table order, into a kvc_malloc'd array. */
static entry_t **s_bucket_entries(const kvc_lww_t *m, unsigned b, size_t *n)
{
    size_t k = 0;
    for (size_t s = b; s < m->n_slots; s += KVC_LWW_BUCKETS)
        for (entry_t *e = m->slots[s]; e; e = e->next)
            k++;
    entry_t **v = kvc_malloc((k ? k : 1) * sizeof *v);
    if (!v)
        return NULL;
    k = 0;
    for (size_t s = b; s < m->n_slots; s += KVC_LWW_BUCKETS)
        for (entry_t *e = m->slots[s]; e; e = e->next)
            v[k++] = e;
    *n = k;
    return v;
}

/* Bytes a header adds to a BucketHeaders, generously. */
static size_t s_header_cost(const entry_t *e)
{
    return (size_t)e->klen + strlen(e->writer) + 24;
}

/* A Digest from p: learn, then answer with our hashes and, for the
 * differing buckets from d->start on (as many as fit), the headers of our
 * entries; or, when p takes them (d->sub), the bucket is not empty there
 * and we hold at least SUB_MIN entries in it, its 64 sub-bucket hashes
 * (cheaper than headers when few of its entries differ). */
static void s_on_digest(kvc_lww_t *m, peer_t *p, const Kvc__Lww__Digest *d, kvc_outbox_t *out)
{
    s_clock_see(m, d->hlc);
    s_learn(m, p, d->buckets, d->horizons);
    size_t cap = 0, n_h = 0, budget = m->cfg.msg_max - FIXED_OVERHEAD, used = 0;
    uint32_t covered[KVC_LWW_BUCKETS];
    size_t n_cov = 0;
    uint32_t next = KVC_LWW_BUCKETS, partial = 0;
    uint32_t sub_b[KVC_LWW_BUCKETS];
    uint32_t sub_h[KVC_LWW_BUCKETS * KVC_LWW_SUBS];
    size_t n_sub = 0;
    Kvc__Lww__Header *hs = NULL;
    Kvc__Lww__Header **hp = NULL;
    for (unsigned b = d->start; b < KVC_LWW_BUCKETS; b++) {
        if (d->buckets[b] == m->bucket[b])
            continue;
        if (d->sub && d->buckets[b] != 0 && m->bucket_n[b] >= SUB_MIN) {
            if (used + SUB_COST > budget) {
                next = b; /* budget >= 2048 > SUB_COST: something went before */
                break;
            }
            for (unsigned k = 0; k < KVC_LWW_SUBS; k++)
                sub_h[n_sub * KVC_LWW_SUBS + k] = (uint32_t)m->sub[b][k];
            sub_b[n_sub++] = b;
            used += SUB_COST;
            m->stats.sub_buckets++;
            continue;
        }
        size_t n = 0;
        entry_t **v = s_bucket_entries(m, b, &n);
        if (!v) {
            /* out of memory: carry on later, never at the same start (no
             * ping-pong of digests while memory stays short) */
            next = b > d->start ? b : KVC_LWW_BUCKETS;
            break;
        }
        size_t need = 0;
        for (size_t i = 0; i < n; i++)
            need += s_header_cost(v[i]);
        size_t first = 0, take = n;
        if (used + need > budget) {
            if (n_cov || used || n_sub) {
                kvc_free(v);
                next = b;
                break;
            }
            /* too big alone: a cut from a random place, for wants only */
            first = n ? (size_t)kvc_rng_below(&m->rng, n) : 0;
            take = 0;
            for (size_t i = 0, c = 0; i < n; i++) {
                c += s_header_cost(v[(first + i) % n]);
                if (c > budget)
                    break;
                take++;
            }
            partial = b + 1;
            next = b + 1 < KVC_LWW_BUCKETS ? b + 1 : KVC_LWW_BUCKETS;
        }
        if (n_h + take > cap) {
            size_t nc = cap ? cap : 64;
            while (nc < n_h + take)
                nc *= 2;
            Kvc__Lww__Header *nhs = kvc_realloc(hs, nc * sizeof *hs);
            if (!nhs) {
                kvc_free(v);
                next = b > d->start ? b : KVC_LWW_BUCKETS;
                partial = 0;
                break;
            }
            hs = nhs;
            cap = nc;
        }
        for (size_t i = 0; i < take; i++) {
            const entry_t *e = v[(first + i) % n];
            Kvc__Lww__Header *x = &hs[n_h++];
            kvc__lww__header__init(x);
            x->key.data = (uint8_t *)e->key;
            x->key.len = e->klen;
            x->hlc = e->hlc;
            x->writer = (char *)e->writer;
            x->tomb = e->tomb;
            used += s_header_cost(e);
        }
        kvc_free(v);
        if (partial)
            break;
        covered[n_cov++] = b;
    }
    hp = n_h ? kvc_malloc(n_h * sizeof *hp) : NULL;
    if (n_h && !hp) {
        kvc_free(hs);
        return;
    }
    for (size_t i = 0; i < n_h; i++)
        hp[i] = &hs[i];
    uint64_t bs[KVC_LWW_BUCKETS], hz[KVC_LWW_BUCKETS];
    s_digest_sends(m, bs, hz);
    Kvc__Lww__Message msg = KVC__LWW__MESSAGE__INIT;
    Kvc__Lww__BucketHeaders bh = KVC__LWW__BUCKET_HEADERS__INIT;
    bh.hlc = m->clock;
    bh.n_buckets = KVC_LWW_BUCKETS;
    bh.buckets = bs;
    bh.n_horizons = KVC_LWW_BUCKETS;
    bh.horizons = hz;
    bh.n_covered = n_cov;
    bh.covered = covered;
    bh.n_headers = n_h;
    bh.headers = hp;
    bh.next = next;
    bh.partial = partial;
    bh.n_sub_buckets = n_sub;
    bh.sub_buckets = sub_b;
    bh.n_sub_hashes = n_sub * KVC_LWW_SUBS;
    bh.sub_hashes = sub_h;
    msg.body_case = KVC__LWW__MESSAGE__BODY_HEADERS;
    msg.headers = &bh;
    (void)s_send(m, out, p->id, &msg);
    kvc_free(hp);
    kvc_free(hs);
}

/*
 * The sub-bucket hashes in BucketHeaders h from p: for each listed bucket
 * still differing, our headers of the sub-buckets whose hashes differ from
 * p's (all of the bucket when every sub-bucket hash agrees: a 32-bit
 * collision), sent as one BucketHeaders with those sub-buckets covered, as
 * many whole buckets as fit. Returns the first listed bucket left out
 * (KVC_LWW_BUCKETS: none); *progress is set when one or more went out.
 */
static unsigned s_answer_subs(kvc_lww_t *m, peer_t *p, const Kvc__Lww__BucketHeaders *h,
                              int *progress, kvc_outbox_t *out)
{
    size_t budget = m->cfg.msg_max - FIXED_OVERHEAD, used = 0;
    unsigned stop = KVC_LWW_BUCKETS;
    size_t n_h = 0, cap = 0, n_cov = 0, n_whole = 0;
    uint32_t whole[KVC_LWW_BUCKETS];
    uint32_t *cov = kvc_malloc(KVC_LWW_BUCKETS * KVC_LWW_SUBS * sizeof *cov);
    Kvc__Lww__Header *hs = NULL;
    *progress = 0;
    if (!cov)
        return h->n_sub_buckets ? h->sub_buckets[0] : KVC_LWW_BUCKETS;
    for (size_t i = 0; i < h->n_sub_buckets; i++) {
        unsigned b = h->sub_buckets[i];
        if (h->buckets[b] == m->bucket[b])
            continue; /* equal by now */
        const uint32_t *theirs = h->sub_hashes + i * KVC_LWW_SUBS;
        uint64_t diff = 0;
        for (unsigned k = 0; k < KVC_LWW_SUBS; k++)
            if ((uint32_t)m->sub[b][k] != theirs[k])
                diff |= UINT64_C(1) << k;
        int all = diff == 0;
        size_t h0 = n_h, c0 = n_cov, w0 = n_whole, u0 = used;
        int fits = 1;
        for (size_t sl = b; sl < m->n_slots && fits; sl += KVC_LWW_BUCKETS)
            for (entry_t *e = m->slots[sl]; e && fits; e = e->next) {
                if (!all && !(diff >> s_sub_of(e->khash) & 1))
                    continue;
                size_t c = s_header_cost(e);
                if (used + c > budget) {
                    fits = 0;
                    break;
                }
                if (n_h == cap) {
                    size_t nc = cap ? 2 * cap : 64;
                    Kvc__Lww__Header *nhs = kvc_realloc(hs, nc * sizeof *hs);
                    if (!nhs) {
                        fits = 0;
                        break;
                    }
                    hs = nhs;
                    cap = nc;
                }
                Kvc__Lww__Header *x = &hs[n_h++];
                kvc__lww__header__init(x);
                x->key.data = (uint8_t *)e->key;
                x->key.len = e->klen;
                x->hlc = e->hlc;
                x->writer = (char *)e->writer;
                x->tomb = e->tomb;
                used += c;
            }
        if (fits && all) {
            whole[n_whole++] = b;
            used += 4;
        }
        for (unsigned k = 0; fits && !all && k < KVC_LWW_SUBS; k++)
            if (diff >> k & 1) {
                if (used + 4 > budget) {
                    fits = 0;
                    break;
                }
                cov[n_cov++] = b * KVC_LWW_SUBS + k;
                used += 4;
            }
        if (!fits) {
            n_h = h0, n_cov = c0, n_whole = w0, used = u0;
            stop = b;
            break;
        }
        *progress = 1;
    }
    Kvc__Lww__Header **hp = n_h ? kvc_malloc(n_h * sizeof *hp) : NULL;
    if ((n_h && !hp) || (!n_h && !n_cov && !n_whole)) {
        if (n_h && !hp)
            stop = h->sub_buckets[0], *progress = 0;
        kvc_free(hp), kvc_free(hs), kvc_free(cov);
        return stop;
    }
    for (size_t i = 0; i < n_h; i++)
        hp[i] = &hs[i];
    uint64_t bs[KVC_LWW_BUCKETS], hz[KVC_LWW_BUCKETS];
    s_digest_sends(m, bs, hz);
    Kvc__Lww__Message msg = KVC__LWW__MESSAGE__INIT;
    Kvc__Lww__BucketHeaders bh = KVC__LWW__BUCKET_HEADERS__INIT;
    bh.hlc = m->clock;
    bh.n_buckets = KVC_LWW_BUCKETS;
    bh.buckets = bs;
    bh.n_horizons = KVC_LWW_BUCKETS;
    bh.horizons = hz;
    bh.n_covered = n_whole;
    bh.covered = whole;
    bh.n_headers = n_h;
    bh.headers = hp;
    bh.next = KVC_LWW_BUCKETS;
    bh.n_covered_sub = n_cov;
    bh.covered_sub = cov;
    msg.body_case = KVC__LWW__MESSAGE__BODY_HEADERS;
    msg.headers = &bh;
    (void)s_send(m, out, p->id, &msg);
    kvc_free(hp), kvc_free(hs), kvc_free(cov);
    return stop;
}

/* Sends the entries to p as Entries messages (bounded). */
static void s_send_list(kvc_lww_t *m, peer_t *p, entry_t **v, size_t n, kvc_outbox_t *out)
{
    if (!n)
        return;
    Kvc__Lww__Entry *w = kvc_malloc(n * sizeof *w);
    Kvc__Lww__Entry **wp = kvc_malloc(n * sizeof *wp);
    size_t *cost = kvc_malloc(n * sizeof *cost);
    if (w && wp && cost) {
        for (size_t i = 0; i < n; i++) {
            s_entry_wire(v[i], &w[i]);
            wp[i] = &w[i];
            cost[i] = s_entry_cost(v[i]);
        }
        (void)s_send_entries(m, out, p->id, wp, cost, n, 0, AE_MSGS_MAX);
    }
    kvc_free(w), kvc_free(wp), kvc_free(cost);
}

/* BucketHeaders from p: learn, then want what it has newer, send what we
 * have newer or it lacks, and carry on with the buckets left out. */
static void s_on_headers(kvc_lww_t *m, peer_t *p, const Kvc__Lww__BucketHeaders *h,
                         kvc_outbox_t *out)
{
    s_clock_see(m, h->hlc);
    s_learn(m, p, h->buckets, h->horizons);
    uint32_t gen = ++m->gen;
    size_t n = h->n_headers;
    ProtobufCBinaryData *want = kvc_malloc((n ? n : 1) * sizeof *want);
    size_t n_want = 0, cap_send = 64, n_send = 0;
    entry_t **send = kvc_malloc(cap_send * sizeof *send);
    Kvc__Lww__Entry *syn = kvc_malloc((n ? n : 1) * sizeof *syn);
    Kvc__Lww__Entry **synp = kvc_malloc((n ? n : 1) * sizeof *synp);
    size_t *syncost = kvc_malloc((n ? n : 1) * sizeof *syncost);
    size_t n_syn = 0;
    int oom = !want || !send || !syn || !synp || !syncost;
    for (size_t i = 0; i < n && !oom; i++) {
        const Kvc__Lww__Header *x = h->headers[i];
        uint64_t khash = s_fnv(FNV_BASIS, x->key.data, x->key.len);
        unsigned b = s_bucket_of(khash);
        entry_t *e = s_find(m, x->key.data, x->key.len, khash);
        if (!e) {
            if (x->hlc > m->horizon[b]) {
                want[n_want++] = x->key;
            } else if (!x->tomb) {
                /* a stale value from a peer that missed our GC */
                m->stats.stale++;
                Kvc__Lww__Entry *s = &syn[n_syn];
                kvc__lww__entry__init(s);
                s->key = x->key;
                s->hlc = m->horizon[b] + 1;
                s->writer = (char *)"";
                s->tomb = 1;
                synp[n_syn] = s;
                syncost[n_syn++] = x->key.len + 32;
            }
            continue;
        }
        e->mark = gen;
        int c = s_cmp(x->hlc, x->writer, e->hlc, e->writer);
        if (c > 0) {
            want[n_want++] = x->key;
        } else if (c < 0) {
            if (n_send == cap_send) {
                entry_t **ns = kvc_realloc(send, 2 * cap_send * sizeof *ns);
                if (!ns) {
                    oom = 1;
                    break;
                }
                send = ns;
                cap_send *= 2;
            }
            send[n_send++] = e;
        }
    }
    /* whole buckets: what it lacks (unless its horizon would refuse it) */
    for (size_t i = 0; i < h->n_covered && !oom; i++) {
        unsigned b = h->covered[i];
        for (size_t s = b; s < m->n_slots && !oom; s += KVC_LWW_BUCKETS)
            for (entry_t *e = m->slots[s]; e; e = e->next) {
                if (e->mark == gen || (e->tomb && e->hlc <= p->horizon[b]))
                    continue;
                e->mark = gen;
                if (n_send == cap_send) {
                    entry_t **ns = kvc_realloc(send, 2 * cap_send * sizeof *ns);
                    if (!ns) {
                        oom = 1;
                        break;
                    }
                    send = ns;
                    cap_send *= 2;
                }
                send[n_send++] = e;
            }
    }
    /* whole sub-buckets: the same, per sub-bucket */
    uint64_t subs[KVC_LWW_BUCKETS] = {0};
    for (size_t i = 0; i < h->n_covered_sub; i++)
        subs[h->covered_sub[i] / KVC_LWW_SUBS] |= UINT64_C(1) << (h->covered_sub[i] % KVC_LWW_SUBS);
    for (unsigned b = 0; b < KVC_LWW_BUCKETS && !oom; b++) {
        if (!subs[b])
            continue;
        for (size_t s = b; s < m->n_slots && !oom; s += KVC_LWW_BUCKETS)
            for (entry_t *e = m->slots[s]; e; e = e->next) {
                if (e->mark == gen || !(subs[b] >> s_sub_of(e->khash) & 1) ||
                    (e->tomb && e->hlc <= p->horizon[b]))
                    continue;
                e->mark = gen;
                if (n_send == cap_send) {
                    entry_t **ns = kvc_realloc(send, 2 * cap_send * sizeof *ns);
                    if (!ns) {
                        oom = 1;
                        break;
                    }
                    send = ns;
                    cap_send *= 2;
                }
                send[n_send++] = e;
            }
    }
    if (!oom) {
        /* Want, split into messages of at most msg_max */
        size_t i = 0;
        while (i < n_want) {
            size_t j = i, bytes = 64;
            while (j < n_want && (j == i || bytes + want[j].len + 4 <= m->cfg.msg_max))
                bytes += want[j++].len + 4;
            Kvc__Lww__Message msg = KVC__LWW__MESSAGE__INIT;
            Kvc__Lww__Want wm = KVC__LWW__WANT__INIT;
            wm.n_keys = j - i;
            wm.keys = want + i;
            msg.body_case = KVC__LWW__MESSAGE__BODY_WANT;
            msg.want = &wm;
            if (s_send(m, out, p->id, &msg) != 0)
                break;
            i = j;
        }
        s_send_list(m, p, send, n_send, out);
        if (n_syn)
            (void)s_send_entries(m, out, p->id, synp, syncost, n_syn, 0, AE_MSGS_MAX);
        /* carry on with the buckets left out: from h->next, or from the
         * first sub-bucket list left out (without sub-hashes if not even
         * one bucket of it fitted, so the classic path cuts it) */
        unsigned cont = h->next;
        int cont_sub = 1;
        if (h->n_sub_buckets) {
            int progress = 0;
            unsigned stop = s_answer_subs(m, p, h, &progress, out);
            if (stop < KVC_LWW_BUCKETS)
                cont = stop, cont_sub = progress;
        }
        if (cont < KVC_LWW_BUCKETS)
            s_send_digest(m, p, cont, cont_sub, out);
    }
    kvc_free(want), kvc_free(send), kvc_free(syn), kvc_free(synp), kvc_free(syncost);
}

/* Want from p: send what we hold of those keys. */
static void s_on_want(kvc_lww_t *m, peer_t *p, const Kvc__Lww__Want *w, kvc_outbox_t *out)
{
    entry_t **v = kvc_malloc((w->n_keys ? w->n_keys : 1) * sizeof *v);
    if (!v)
        return;
    size_t n = 0;
    for (size_t i = 0; i < w->n_keys; i++) {
        entry_t *e = s_find(m, w->keys[i].data, w->keys[i].len,
                            s_fnv(FNV_BASIS, w->keys[i].data, w->keys[i].len));
        if (e)
            v[n++] = e;
    }
    s_send_list(m, p, v, n, out);
    kvc_free(v);
}

int kvc_lww_receive(kvc_lww_t *m, uint64_t now_ms, const char *from_id, const uint8_t *data,
                    size_t len, kvc_outbox_t *out)
{
    if (!m || !out || !from_id || (!data && len))
        return KVC_EINVAL;
    if (len > m->cfg.msg_max) {
        m->stats.dropped++;
        return KVC_ERANGE;
    }
    kvc_pb_alloc_t alloc;
    Kvc__Lww__Message *msg = kvc__lww__message__unpack(kvc_pb_alloc_init(&alloc), len, data);
    if (!msg) {
        int rc = kvc_pb_alloc_error(&alloc);
        if (rc == KVC_EPARSE)
            m->stats.dropped++;
        return rc;
    }
    if (!s_valid(m, msg)) {
        kvc__lww__message__free_unpacked(msg, kvc_pb_allocator());
        m->stats.dropped++;
        return KVC_EPARSE;
    }
    peer_t *p = s_peer(m, from_id, NULL);
    if (!p) {
        kvc__lww__message__free_unpacked(msg, kvc_pb_allocator());
        m->stats.dropped++;
        return 0;
    }
    (void)now_ms;
    switch (msg->body_case) {
    case KVC__LWW__MESSAGE__BODY_PUSH:
        s_on_entries(m, p, msg->push->entries, msg->push->n_entries, out);
        break;
    case KVC__LWW__MESSAGE__BODY_ENTRIES:
        s_on_entries(m, p, msg->entries->entries, msg->entries->n_entries, out);
        break;
    case KVC__LWW__MESSAGE__BODY_DIGEST:
        s_on_digest(m, p, msg->digest, out);
        break;
    case KVC__LWW__MESSAGE__BODY_HEADERS:
        s_on_headers(m, p, msg->headers, out);
        break;
    case KVC__LWW__MESSAGE__BODY_WANT:
        s_on_want(m, p, msg->want, out);
        break;
    default:
        break;
    }
    kvc__lww__message__free_unpacked(msg, kvc_pb_allocator());
    return 0;
}

/* --- timers -------------------------------------------------------------- */

/* The next round, jittered to [0.75, 1.25) intervals. */
static uint64_t s_ae_next(kvc_lww_t *m, uint64_t now_ms)
{
    uint64_t iv = m->cfg.ae_interval_ms;
    return now_ms + iv - iv / 4 + kvc_rng_below(&m->rng, iv / 2);
}

/* Collects every tombstone old enough and acknowledged by every peer in
 * scope (the rule in lww.h). */
static void s_gc(kvc_lww_t *m, uint64_t now_ms)
{
    if (!m->n_tombs)
        return;
    for (size_t s = 0; s < m->n_slots; s++)
        for (entry_t *e = m->slots[s], *nx; e; e = nx) {
            nx = e->next;
            if (!e->tomb || (e->hlc >> 16) + m->cfg.tomb_min_age_ms > now_ms)
                continue;
            unsigned b = s_bucket_of(e->khash);
            size_t i = 0;
            for (; i < m->n_peers; i++)
                if (m->peers[i].synced[b] < e->seq && m->peers[i].horizon[b] < e->hlc)
                    break;
            if (i == m->n_peers && s_collect(m, e) != 0)
                return;
        }
}

int kvc_lww_tick(kvc_lww_t *m, uint64_t now_ms, kvc_outbox_t *out)
{
    if (!m || !out)
        return KVC_EINVAL;
    uint64_t iv = m->cfg.ae_interval_ms;
    if (m->ae_deadline == 0 || m->ae_deadline > now_ms + 2 * iv) /* first, or clock stepped back */
        m->ae_deadline = s_ae_next(m, now_ms);
    if (m->retry_deadline && now_ms >= m->retry_deadline) {
        m->retry_deadline = 0;
        s_push_all(m, now_ms, out);
    }
    if (now_ms < m->ae_deadline)
        return 0;
    m->ae_deadline = s_ae_next(m, now_ms);
    s_gc(m, now_ms);
    int pick = -1;
    if (m->ae_force >= 0 && (size_t)m->ae_force < m->n_peers && m->peers[m->ae_force].alive) {
        pick = m->ae_force;
    } else {
        size_t alive = 0;
        for (size_t i = 0; i < m->n_peers; i++)
            alive += m->peers[i].alive != 0;
        if (alive) {
            size_t k = (size_t)kvc_rng_below(&m->rng, alive);
            for (size_t i = 0; i < m->n_peers; i++)
                if (m->peers[i].alive && k-- == 0) {
                    pick = (int)i;
                    break;
                }
        }
    }
    m->ae_force = -1;
    if (pick >= 0)
        s_send_digest(m, &m->peers[pick], 0, 1, out);
    return 0;
}

uint64_t kvc_lww_next_deadline(const kvc_lww_t *m)
{
    if (!m || (!m->n_peers && !m->n_tombs))
        return KVC_DEADLINE_NONE;
    uint64_t d = m->ae_deadline;
    if (m->retry_deadline && m->retry_deadline < d)
        d = m->retry_deadline;
    return d;
}

void kvc_lww_member_event(kvc_lww_t *m, uint64_t now_ms, const kvc_member_event_t *ev,
                          kvc_outbox_t *out)
{
    (void)out;
    if (!m || !ev)
        return;
    int idx = -1;
    peer_t *p = s_peer(m, ev->id, &idx);
    if (!p)
        return;
    switch (ev->type) {
    case KVC_MEMBER_EV_DEAD:
    case KVC_MEMBER_EV_LEFT:
        p->alive = 0;
        p->push_next = m->push_seq + 1; /* anti-entropy catches it up later */
        break;
    case KVC_MEMBER_EV_JOINED:
    case KVC_MEMBER_EV_ALIVE:
        if (!p->alive) {
            /* Who was away? The peer that sees most of its scope come back
             * (it was cut off, or new) runs a round at once, with this
             * member; the others leave the returning peer to their regular
             * rounds, so it is not sent the same entries by every one of
             * them at the same moment. */
            size_t down = 0;
            for (size_t i = 0; i < m->n_peers; i++)
                down += !m->peers[i].alive;
            p->alive = 1;
            if (2 * down >= m->n_peers) {
                m->ae_force = idx;
                m->ae_deadline = now_ms ? now_ms : 1;
            }
        }
        break;
    default:
        break;
    }
}

/* --- durability ---------------------------------------------------------- */

int kvc_lww_needs_persist(const kvc_lww_t *m)
{
    return m && (m->n_dirty || m->n_erase || m->horizon_dirty);
}

int kvc_lww_each_dirty(const kvc_lww_t *m,
                       int (*fn)(void *arg, const uint8_t *skey, size_t sklen, const uint8_t *rec,
                                 size_t rlen),
                       void *arg)
{
    if (!m || !fn)
        return KVC_EINVAL;
    uint8_t skey[1 + KVC_LWW_KEY_MAX];
    int rc = 0;
    for (size_t i = 0; i < m->n_erase && !rc; i++) {
        skey[0] = 'e';
        memcpy(skey + 1, m->erase[i].key, m->erase[i].klen);
        rc = fn(arg, skey, 1u + m->erase[i].klen, NULL, 0);
    }
    if (rc)
        return rc;
    uint8_t *buf = kvc_malloc(m->cfg.value_max + 2048u);
    if (!buf)
        return KVC_ENOMEM;
    if (m->horizon_dirty) {
        Kvc__Lww__Record r = KVC__LWW__RECORD__INIT;
        Kvc__Lww__Horizon hz = KVC__LWW__HORIZON__INIT;
        uint64_t h[KVC_LWW_BUCKETS];
        memcpy(h, m->horizon, sizeof h);
        hz.n_hlc = KVC_LWW_BUCKETS;
        hz.hlc = h;
        r.kind_case = KVC__LWW__RECORD__KIND_HORIZON;
        r.horizon = &hz;
        size_t n = kvc__lww__record__pack(&r, buf);
        rc = fn(arg, (const uint8_t *)"h", 1, buf, n);
    }
    for (size_t i = 0; i < m->n_dirty && !rc; i++) {
        const entry_t *e = m->dirty[i];
        Kvc__Lww__Record r = KVC__LWW__RECORD__INIT;
        Kvc__Lww__Entry w;
        s_entry_wire(e, &w);
        r.kind_case = KVC__LWW__RECORD__KIND_ENTRY;
        r.entry = &w;
        size_t n = kvc__lww__record__pack(&r, buf);
        skey[0] = 'e';
        memcpy(skey + 1, e->key, e->klen);
        rc = fn(arg, skey, 1u + e->klen, buf, n);
    }
    kvc_free(buf);
    return rc;
}

void kvc_lww_persisted(kvc_lww_t *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n_dirty; i++)
        m->dirty[i]->dirty = 0;
    m->n_dirty = 0;
    m->n_erase = 0;
    m->horizon_dirty = 0;
}

int kvc_lww_load(kvc_lww_t *m, const uint8_t *rec, size_t len)
{
    if (!m || (!rec && len))
        return KVC_EINVAL;
    if (len > m->cfg.value_max + 2048u)
        return KVC_EPARSE;
    kvc_pb_alloc_t alloc;
    Kvc__Lww__Record *r = kvc__lww__record__unpack(kvc_pb_alloc_init(&alloc), len, rec);
    if (!r)
        return kvc_pb_alloc_error(&alloc);
    int rc = KVC_EPARSE;
    if (r->kind_case == KVC__LWW__RECORD__KIND_HORIZON && r->horizon->n_hlc == KVC_LWW_BUCKETS) {
        rc = KVC_OK;
        for (unsigned b = 0; b < KVC_LWW_BUCKETS; b++)
            if (r->horizon->hlc[b] >= HLC_MAX)
                rc = KVC_EPARSE;
        for (unsigned b = 0; b < KVC_LWW_BUCKETS && rc == 0; b++) {
            if (r->horizon->hlc[b] > m->horizon[b])
                m->horizon[b] = r->horizon->hlc[b];
            s_clock_see(m, r->horizon->hlc[b]);
        }
    } else if (r->kind_case == KVC__LWW__RECORD__KIND_ENTRY && s_valid_entry(m, r->entry)) {
        const Kvc__Lww__Entry *w = r->entry;
        uint64_t khash = s_fnv(FNV_BASIS, w->key.data, w->key.len);
        entry_t *e = s_find(m, w->key.data, w->key.len, khash);
        rc = KVC_OK;
        if (!e || s_cmp(w->hlc, w->writer, e->hlc, e->writer) > 0) {
            rc = s_store(m, w->key.data, w->key.len, khash, w->value.data, w->value.len, w->hlc,
                         w->writer, w->tomb, 0, NULL);
            rc = rc > 0 ? KVC_OK : rc;
        }
    }
    kvc__lww__record__free_unpacked(r, kvc_pb_allocator());
    return rc;
}

void kvc_lww_stats(const kvc_lww_t *m, kvc_lww_stats_t *out)
{
    if (m && out) {
        *out = m->stats;
        out->tombstones = m->n_tombs;
    }
}

/* --- the core.h interface ------------------------------------------------ */

static int s_core_receive(void *core, uint64_t now_ms, const char *from, const uint8_t *msg,
                          size_t len, kvc_outbox_t *out)
{
    return kvc_lww_receive(core, now_ms, from, msg, len, out);
}

static int s_core_tick(void *core, uint64_t now_ms, kvc_outbox_t *out)
{
    return kvc_lww_tick(core, now_ms, out);
}

static uint64_t s_core_deadline(const void *core)
{
    return kvc_lww_next_deadline(core);
}

static void s_core_event(void *core, uint64_t now_ms, const kvc_member_event_t *ev,
                         kvc_outbox_t *out)
{
    kvc_lww_member_event(core, now_ms, ev, out);
}

const kvc_core_ops_t kvc_lww_core_ops = {
    .name = "lww",
    .channel = 0,
    .receive = s_core_receive,
    .tick = s_core_tick,
    .next_deadline = s_core_deadline,
    .member_event = s_core_event,
};

const kvc_core_ops_t *kvc_lww_core_ops_of(const kvc_lww_t *m)
{
    return m ? &m->ops : NULL;
}
