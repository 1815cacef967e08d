/*
 * sim_registry.c - `kvc-sim --scenario registry`: the model registry as
 * kvc-peer runs it (federation/lww.c unchanged, every member in scope,
 * channel 50, kvc_lww_config_default() with max_entries 100000: anti-entropy
 * every 5 s, 64 KiB messages) with values the size of encoded model records
 * (random 300..1000 bytes) and keys shaped like the registry's (name, NUL,
 * 8-byte version).
 *
 * Three modes:
 *   publish  S sites x P peers hold E entries; writes (90% puts of new or
 *            existing model versions, 10% retirements) happen at random
 *            peers at a steady rate; for each, the time until every peer
 *            holds it (or something newer) and the bytes it cost.
 *   catchup  N peers hold the same E entries; one is cut off for an hour
 *            (simulated) while the others make C changes (70% new values of
 *            existing keys, 10% new keys, 20% retirements); then it heals.
 *            Measured: heal -> the rejoined peer identical to the others,
 *            the bytes to and from it meanwhile, and their ratio to the
 *            size (key + value) of the entries that differ. --fresh: an
 *            empty peer joins instead.
 *   chaos    S sites x P peers; random writes (60% new keys, 25% new values,
 *            15% retirements) at random live peers at --rate for the first
 *            2/3 of --duration, then quiet. Meanwhile --crashes random peers
 *            crash (memory gone, messages in flight to or from them dropped, no
 *            ticks) and restart 1..20 s later from their own disk (what the
 *            persist step stored: kvc_lww_load of every record), and
 *            --partitions times 10..40% of the peers are cut off for 5..30 s,
 *            one partition at a time. Membership as kvc-peer reports it: a
 *            crashed peer DEAD 2..5 s after the crash (if still down), ALIVE
 *            500 ms after its restart (a restarted core sees every member
 *            alive); across a partition DEAD 3 s after the cut, ALIVE 500 ms
 *            after the heal. A write is acknowledged once its writer
 *            persisted it; each is timed until every peer that is up holds
 *            it (writes made during a partition included). At the end (all
 *            up): lost writes (an acknowledged write some peer is not at or
 *            past), identical contents, resurrections, wrong versions.
 *
 * Network model (documented in README): every site has a random position in
 * a unit square; the one-way latency between two sites is 10 ms + 140 ms x
 * distance / sqrt(2) (wan), or uniform 1..5 ms per pair (lan); peers of one
 * site are 1 ms apart. Each message adds jitter of 0..10% of that (at least
 * 0..1 ms), is serialised on its pair's link at --bw-mbps, and is delivered
 * in order per pair (the real transport is TCP through ZeroMQ). --loss drops
 * messages independently (not what TCP does: it shows anti-entropy repair).
 * No membership events are given: after an hour SWIM has reaped the cut-off
 * peer and re-adds it on rejoin, which leaves the core's peer alive with no
 * forced round, as here.
 *
 * Time jumps from event to event (the next delivery, core deadline or
 * scripted action); the core only sees now_ms values, so this is the same
 * run as stepping every millisecond (--no-skip does that, to check). The
 * harness persists (counts records) before it sends, like the daemon.
 * Invariants, checked at the end: identical contents everywhere, every key
 * at its last write, no retired key live. Everything random comes from
 * --seed.
 */
#include "sim_registry.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "lww.h"
#include "rng.h"

#define KEYLEN 16 /* "m-%07d" NUL + 8-byte version */
#define VAL_MIN 300
#define VAL_MAX 1000
#define KEYS_CAP 1000000

typedef struct {
    uint64_t at, seq;
    int from, to;
    uint32_t epoch, from_epoch; /* chaos: the receiver's and sender's lives */
    size_t len;
    uint8_t *data;
} rmsg_t;

typedef struct {
    uint64_t hlc;
    char writer[24];
    uint32_t vlen;
    int tomb;
    int used;
} truth_t;

typedef struct {
    int key;
    uint64_t hlc;
    char writer[24];
    int tomb;
    uint64_t t;
    int holders;
    uint8_t *held; /* per peer */
} pend_t;

/* chaos: one peer's disk, what s_flush's persist step stored (skey -> rec). */
typedef struct {
    uint8_t *skey, *rec;
    size_t sklen, rlen;
    uint64_t h; /* hash of skey, compared first */
} drec_t;

typedef struct {
    drec_t *r;
    size_t n, cap;
} disk_t;

/* chaos: an acknowledged write (persisted at its writer). */
typedef struct {
    int key, tomb;
    uint64_t hlc;
    char writer[24];
} acked_t;

/* chaos: one crash; peer chosen when it happens. */
typedef struct {
    uint64_t at, dead_at, restart_at, alive_at;
    int peer, phase, dead_told; /* phase 0 pending, 1 down, 2 up (alive due), 3 done */
} crash_t;

/* chaos: one partition; the cut-off side chosen when it happens. */
typedef struct {
    uint64_t at, dead_at, heal_at, alive_at;
    int phase, size; /* phase 0 pending, 1 cut, 2 cut and told, 3 healed, 4 done */
} part_t;

typedef struct {
    int chaos, ncrash, npart, crashes_done, parts_done, writes_cut;
    uint64_t cut_ms, down_ms;
    uint64_t duration_s;
    uint8_t *up, *side; /* per peer: running; on the cut-off side */
    uint32_t *epoch;    /* per peer: lives so far */
    int nup, cut_active, recheck;
    disk_t *disk;
    crash_t *crash;
    part_t *part;
    acked_t *acked;
    size_t nacked;
    int *tl; /* touched peers this step */
    int ntl;
} chaos_t;

typedef struct {
    int catchup, fresh, json, no_skip, wan, no_membership;
    int sites, pps, n, entries, publishes, changed;
    double loss, rate, bw_mbps;
    uint64_t partition_s, seed;
    kvc_lww_config_t cfg;
    kvc_rng_t rng;  /* network, choices */
    kvc_rng_t vrng; /* values */
    kvc_outbox_t out;
    kvc_lww_t **m;
    char (*ids)[24];
    const char **idp;
    uint64_t *deadline;
    double *px, *py;
    uint16_t *lat;     /* n*n base one-way ms */
    uint64_t *link_us; /* n*n: link busy until (us) */
    uint64_t *last_at; /* n*n: FIFO per pair */
    uint8_t *touched;  /* peers that received this step */
    rmsg_t *heap;
    size_t nheap, capheap;
    uint64_t now, t0, seq;
    int rj, cut, joined; /* catchup: the rejoining peer; cut off; in scope */
    uint64_t bytes, msgs, bytes_kind[8];
    int count_rj;
    uint64_t rj_in, rj_out, rj_in30, rj_out30, heal_at;
    truth_t *truth;
    int nkeys;
    pend_t *pend;
    size_t npend;
    uint64_t *conv;
    size_t nconv;
    uint64_t records;
    chaos_t c;
} rsim_t;

/* --- keys, values, ids --------------------------------------------------- */

/* The registry-shaped key of key index k: "m-%07d" NUL, version 1 big-endian. */
static void s_key(int k, uint8_t key[KEYLEN])
{
    char name[9];
    snprintf(name, sizeof name, "m-%06d", k % 1000000);
    memcpy(key, name, 8);
    memset(key + 8, 0, 8);
    key[8 + 7] = (uint8_t)(1 + k / 1000000);
}

/* A value of random length VAL_MIN..VAL_MAX into buf; returns its length. */
static size_t s_value(rsim_t *s, uint8_t *buf)
{
    size_t n = VAL_MIN + (size_t)kvc_rng_below(&s->vrng, VAL_MAX - VAL_MIN + 1);
    for (size_t i = 0; i < n; i += 8) {
        uint64_t r = kvc_rng_next(&s->vrng);
        size_t c = n - i < 8 ? n - i : 8;
        memcpy(buf + i, &r, c);
    }
    return n;
}

/* Peer index of "sS/pP", or -1. */
static int s_index(const rsim_t *s, const char *id)
{
    int site = 0, p = 0;
    const char *c = id;
    if (*c++ != 's')
        return -1;
    while (*c >= '0' && *c <= '9')
        site = site * 10 + (*c++ - '0');
    if (*c++ != '/' || *c++ != 'p')
        return -1;
    while (*c >= '0' && *c <= '9')
        p = p * 10 + (*c++ - '0');
    if (*c || site >= s->sites || p >= s->pps)
        return -1;
    return site * s->pps + p;
}

/* --- network ------------------------------------------------------------- */

static int s_before(const rmsg_t *a, const rmsg_t *b)
{
    return a->at < b->at || (a->at == b->at && a->seq < b->seq);
}

static int s_heap_push(rsim_t *s, const rmsg_t *x)
{
    if (s->nheap == s->capheap) {
        size_t cap = s->capheap ? 2 * s->capheap : 4096;
        rmsg_t *h = realloc(s->heap, cap * sizeof *h);
        if (!h)
            return -1;
        s->heap = h;
        s->capheap = cap;
    }
    size_t i = s->nheap++;
    while (i > 0 && s_before(x, &s->heap[(i - 1) / 2])) {
        s->heap[i] = s->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    s->heap[i] = *x;
    return 0;
}

static rmsg_t s_heap_pop(rsim_t *s)
{
    rmsg_t top = s->heap[0], last = s->heap[--s->nheap];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= s->nheap)
            break;
        if (c + 1 < s->nheap && s_before(&s->heap[c + 1], &s->heap[c]))
            c++;
        if (!s_before(&s->heap[c], &last))
            break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (s->nheap)
        s->heap[i] = last;
    return top;
}

/* Is the pair (a, b) cut off now? */
static int s_blocked(const rsim_t *s, int a, int b)
{
    if (s->c.chaos)
        return !s->c.up[b] || (s->c.cut_active && s->c.side[a] != s->c.side[b]);
    if (!s->catchup)
        return 0;
    if ((a == s->rj || b == s->rj) && (s->cut || !s->joined))
        return 1;
    return 0;
}

static int s_persist(void *arg, const uint8_t *skey, size_t sklen, const uint8_t *rec, size_t rlen)
{
    (void)skey, (void)sklen, (void)rec, (void)rlen;
    (*(uint64_t *)arg)++;
    return 0;
}

static uint64_t s_hash(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

typedef struct {
    rsim_t *s;
    disk_t *d;
} dput_t;

/* chaos: the persist step onto one peer's disk: store rec under skey, or
 * erase skey when rec is NULL (what kvc-peer does in one LMDB transaction). */
static int s_disk_put(void *arg, const uint8_t *skey, size_t sklen, const uint8_t *rec, size_t rlen)
{
    dput_t *a = arg;
    disk_t *d = a->d;
    a->s->records++;
    uint64_t h = s_hash(skey, sklen);
    size_t i = 0;
    while (i < d->n &&
           !(d->r[i].h == h && d->r[i].sklen == sklen && memcmp(d->r[i].skey, skey, sklen) == 0))
        i++;
    if (!rec) {
        if (i < d->n) {
            free(d->r[i].skey), free(d->r[i].rec);
            d->r[i] = d->r[--d->n];
        }
        return 0;
    }
    uint8_t *c = malloc(rlen ? rlen : 1);
    if (!c)
        return -1;
    memcpy(c, rec, rlen);
    if (i < d->n) {
        free(d->r[i].rec);
        d->r[i].rec = c;
        d->r[i].rlen = rlen;
        return 0;
    }
    if (d->n == d->cap) {
        size_t cap = d->cap ? 2 * d->cap : 256;
        drec_t *r = realloc(d->r, cap * sizeof *r);
        if (!r) {
            free(c);
            return -1;
        }
        d->r = r;
        d->cap = cap;
    }
    uint8_t *k = malloc(sklen ? sklen : 1);
    if (!k) {
        free(c);
        return -1;
    }
    memcpy(k, skey, sklen);
    d->r[d->n++] = (drec_t){.skey = k, .sklen = sklen, .rec = c, .rlen = rlen, .h = h};
    return 0;
}

/* Persists peer i's changes, then puts its outbox on the network. */
static int s_flush(rsim_t *s, int i)
{
    if (kvc_lww_needs_persist(s->m[i])) {
        if (s->c.chaos) {
            dput_t a = {s, &s->c.disk[i]};
            if (kvc_lww_each_dirty(s->m[i], s_disk_put, &a) != 0)
                return -1;
        } else {
            kvc_lww_each_dirty(s->m[i], s_persist, &s->records);
        }
        kvc_lww_persisted(s->m[i]);
    }
    for (size_t k = 0; k < s->out.n_msgs; k++) {
        const kvc_out_msg_t *om = &s->out.msgs[k];
        int to = s_index(s, om->to);
        if (to < 0 || to == i)
            return -1;
        const uint8_t *data = kvc_outbox_data(&s->out, k);
        s->msgs++;
        s->bytes += om->len;
        /* body tag after "version = 1" (08 01): 0x12 push .. 0x32 entries */
        unsigned kind = om->len > 2 ? (data[2] >> 3) & 7 : 0;
        s->bytes_kind[kind] += om->len;
        if (s->catchup && s->now >= s->heal_at && (i == s->rj || to == s->rj)) {
            if (s->count_rj)
                *(i == s->rj ? &s->rj_out : &s->rj_in) += om->len;
            if (s->now < s->heal_at + 30000)
                *(i == s->rj ? &s->rj_out30 : &s->rj_in30) += om->len;
        }
        if (s_blocked(s, i, to) || kvc_rng_double(&s->rng) < s->loss)
            continue;
        size_t pair = (size_t)i * (size_t)s->n + (size_t)to;
        uint64_t base = s->lat[pair];
        uint64_t jit = kvc_rng_below(&s->rng, base / 10 + 2);
        uint64_t now_us = s->now * 1000;
        uint64_t start = s->link_us[pair] > now_us ? s->link_us[pair] : now_us;
        uint64_t tx = s->bw_mbps > 0 ? (uint64_t)((double)om->len * 8.0 / s->bw_mbps) : 0;
        s->link_us[pair] = start + tx;
        uint64_t at = (start + tx + 999) / 1000 + base + jit;
        if (at <= s->now)
            at = s->now + 1;
        if (at < s->last_at[pair])
            at = s->last_at[pair];
        s->last_at[pair] = at;
        rmsg_t q = {.at = at, .seq = s->seq++, .from = i, .to = to, .len = om->len};
        if (s->c.chaos)
            q.epoch = s->c.epoch[to], q.from_epoch = s->c.epoch[i];
        q.data = malloc(om->len ? om->len : 1);
        if (!q.data)
            return -1;
        memcpy(q.data, data, om->len);
        if (s_heap_push(s, &q) != 0) {
            free(q.data);
            return -1;
        }
    }
    kvc_outbox_reset(&s->out);
    s->deadline[i] = kvc_lww_next_deadline(s->m[i]);
    return 0;
}

/* --- truth --------------------------------------------------------------- */

/* Does peer i hold version (hlc, writer) of key k or a newer one? */
static int s_holds(rsim_t *s, int i, int k, uint64_t hlc, const char *writer, int tomb)
{
    uint8_t key[KEYLEN];
    s_key(k, key);
    kvc_lww_entry_t e;
    memset(&e, 0, sizeof e);
    int rc = kvc_lww_get(s->m[i], key, KEYLEN, &e);
    if (rc != 0 && !e.tomb)
        return tomb;
    return e.hlc > hlc || (e.hlc == hlc && strcmp(e.writer, writer) >= 0);
}

/* Records write of key k just made at peer i as the truth if it wins. */
static void s_truth(rsim_t *s, int i, int k, int tomb, kvc_lww_entry_t *e)
{
    uint8_t key[KEYLEN];
    s_key(k, key);
    memset(e, 0, sizeof *e);
    kvc_lww_get(s->m[i], key, KEYLEN, e);
    truth_t *t = &s->truth[k];
    if (!t->used || e->hlc > t->hlc || (e->hlc == t->hlc && strcmp(e->writer, t->writer) > 0)) {
        t->used = 1;
        t->hlc = e->hlc;
        snprintf(t->writer, sizeof t->writer, "%s", e->writer);
        t->tomb = tomb;
        t->vlen = (uint32_t)e->vlen;
    }
}

/* One write at peer i: kind 0 put new key, 1 put existing key, 2 delete
 * existing key. Returns the key index, or -1 on failure. */
static int s_write(rsim_t *s, int i, int kind, int track)
{
    int k;
    if (kind == 0 || s->nkeys == 0) {
        if (s->nkeys >= KEYS_CAP)
            return -1;
        k = s->nkeys++;
        kind = 0;
    } else {
        k = (int)kvc_rng_below(&s->rng, (uint64_t)s->nkeys);
        for (int tries = 0; tries < 64 && s->truth[k].tomb; tries++)
            k = (int)kvc_rng_below(&s->rng, (uint64_t)s->nkeys);
    }
    uint8_t key[KEYLEN], val[VAL_MAX];
    s_key(k, key);
    int rc;
    if (kind == 2) {
        rc = kvc_lww_del(s->m[i], s->now, key, KEYLEN, &s->out);
    } else {
        size_t vlen = s_value(s, val);
        rc = kvc_lww_put(s->m[i], s->now, key, KEYLEN, val, vlen, &s->out);
    }
    if (rc != 0)
        return -1;
    kvc_lww_entry_t e;
    s_truth(s, i, k, kind == 2, &e);
    if (track) {
        pend_t *p = realloc(s->pend, (s->npend + 1) * sizeof *p);
        if (!p)
            return -1;
        s->pend = p;
        p = &s->pend[s->npend++];
        memset(p, 0, sizeof *p);
        p->key = k;
        p->hlc = e.hlc;
        snprintf(p->writer, sizeof p->writer, "%s", e.writer);
        p->tomb = kind == 2;
        p->t = s->now;
        p->held = calloc((size_t)s->n, 1);
        if (!p->held)
            return -1;
        p->held[i] = 1;
        p->holders = 1;
    }
    if (s_flush(s, i) != 0)
        return -1;
    if (s->c.chaos) { /* persisted at its writer: acknowledged */
        acked_t *a = realloc(s->c.acked, (s->c.nacked + 1) * sizeof *a);
        if (!a)
            return -1;
        s->c.acked = a;
        a = &a[s->c.nacked++];
        a->key = k;
        a->tomb = kind == 2;
        a->hlc = e.hlc;
        snprintf(a->writer, sizeof a->writer, "%s", e.writer);
    }
    return k;
}

/* Retires the pending writes every peer (chaos: every peer that is up) now
 * holds; only touched peers can have changed. */
static int s_check_pending(rsim_t *s)
{
    int need = s->c.chaos ? s->c.nup : s->n;
    if (s->c.chaos && s->c.recheck) { /* a crash or a restart: look at everyone */
        s->c.recheck = 0;
        s->c.ntl = 0;
        for (int i = 0; i < s->n; i++)
            if (s->c.up[i])
                s->c.tl[s->c.ntl++] = i, s->touched[i] = 1;
    } else if (s->c.chaos && s->c.ntl == 0) {
        return 0;
    }
    for (size_t q = 0; q < s->npend;) {
        pend_t *w = &s->pend[q];
        if (s->c.chaos) {
            for (int t = 0; t < s->c.ntl; t++) {
                int i = s->c.tl[t];
                if (s->c.up[i] && !w->held[i] &&
                    s_holds(s, i, w->key, w->hlc, w->writer, w->tomb)) {
                    w->held[i] = 1;
                    w->holders++;
                }
            }
        } else {
            for (int i = 0; i < s->n; i++)
                if (s->touched[i] && !w->held[i] &&
                    s_holds(s, i, w->key, w->hlc, w->writer, w->tomb)) {
                    w->held[i] = 1;
                    w->holders++;
                }
        }
        if (w->holders < need) {
            q++;
            continue;
        }
        s->conv[s->nconv++] = s->now - w->t;
        free(w->held);
        s->pend[q] = s->pend[--s->npend];
    }
    return 0;
}

static int s_fp_one(void *arg, const kvc_lww_entry_t *e)
{
    uint64_t h = 1469598103934665603ull;
    const uint8_t *parts[2] = {e->key, e->value};
    size_t lens[2] = {e->klen, e->vlen};
    for (int p = 0; p < 2; p++)
        for (size_t i = 0; i < lens[p]; i++)
            h = (h ^ parts[p][i]) * 1099511628211ull;
    h ^= kvc_rng_mix(e->hlc);
    for (const char *c = e->writer; *c; c++)
        h = (h ^ (uint8_t)*c) * 1099511628211ull;
    uint64_t *acc = arg;
    acc[0] += kvc_rng_mix(h);
    acc[1]++;
    return 0;
}

/* Live contents' fingerprint of peer i. */
static void s_fp(rsim_t *s, int i, uint64_t fp[2])
{
    fp[0] = fp[1] = 0;
    kvc_lww_each(s->m[i], 0, s_fp_one, fp);
}

/* Is peer i's content that of peer j? */
static int s_same(rsim_t *s, int i, int j)
{
    uint64_t a[2], b[2];
    s_fp(s, i, a);
    s_fp(s, j, b);
    return a[0] == b[0] && a[1] == b[1];
}

static int s_identical(rsim_t *s)
{
    uint64_t a[2];
    s_fp(s, 0, a);
    for (int i = 1; i < s->n; i++) {
        uint64_t b[2];
        s_fp(s, i, b);
        if (a[0] != b[0] || a[1] != b[1])
            return 0;
    }
    return 1;
}

/* Every key at its last write at every peer, no retired key live. */
static void s_check_truth(rsim_t *s, uint64_t *wrong, uint64_t *resurrected)
{
    for (int k = 0; k < s->nkeys; k++) {
        truth_t *t = &s->truth[k];
        if (!t->used)
            continue;
        uint8_t key[KEYLEN];
        s_key(k, key);
        for (int i = 0; i < s->n; i++) {
            kvc_lww_entry_t e;
            memset(&e, 0, sizeof e);
            int live = kvc_lww_get(s->m[i], key, KEYLEN, &e) == 0;
            if (t->tomb) {
                *resurrected += live;
                *wrong += !live && e.tomb && (e.hlc != t->hlc || strcmp(e.writer, t->writer));
            } else {
                *wrong += !live || e.hlc != t->hlc || strcmp(e.writer, t->writer) != 0;
            }
        }
    }
}

/* --- the clock ----------------------------------------------------------- */

/* Delivers everything due at now, then ticks every peer whose deadline
 * came. Marks the peers that received. */
static int s_step(rsim_t *s)
{
    memset(s->touched, 0, (size_t)s->n);
    s->c.ntl = 0;
    while (s->nheap && s->heap[0].at <= s->now) {
        rmsg_t q = s_heap_pop(s);
        if (s_blocked(s, q.from, q.to) ||
            (s->c.chaos && (q.epoch != s->c.epoch[q.to] || q.from_epoch != s->c.epoch[q.from]))) {
            free(q.data); /* cut, or either end crashed (queues lost), while in flight */
            continue;
        }
        kvc_lww_receive(s->m[q.to], s->now, s->ids[q.from], q.data, q.len, &s->out);
        free(q.data);
        if (s->c.chaos && !s->touched[q.to])
            s->c.tl[s->c.ntl++] = q.to;
        s->touched[q.to] = 1;
        if (s_flush(s, q.to) != 0)
            return -1;
    }
    for (int i = 0; i < s->n; i++) {
        if (s->deadline[i] > s->now || (s->catchup && i == s->rj && !s->joined) ||
            (s->c.chaos && !s->c.up[i]))
            continue;
        kvc_lww_tick(s->m[i], s->now, &s->out);
        if (s_flush(s, i) != 0)
            return -1;
    }
    return 0;
}

/* The next time anything happens, no later than `until`. */
static uint64_t s_next(const rsim_t *s, uint64_t until)
{
    if (s->no_skip)
        return s->now + 1;
    uint64_t t = until;
    if (s->nheap && s->heap[0].at < t)
        t = s->heap[0].at;
    for (int i = 0; i < s->n; i++)
        if (s->deadline[i] < t && !(s->catchup && i == s->rj && !s->joined) &&
            !(s->c.chaos && !s->c.up[i]))
            t = s->deadline[i];
    return t > s->now ? t : s->now + 1;
}

/* --- set up -------------------------------------------------------------- */

typedef struct {
    uint8_t **recs, **skeys;
    size_t *lens, *sklens;
    size_t n, cap;
} recs_t;

/* kvc_lww_each_dirty callback: keeps a copy of every record. */
static int s_collect(void *arg, const uint8_t *skey, size_t sklen, const uint8_t *rec, size_t rlen)
{
    recs_t *r = arg;
    if (!rec || r->n == r->cap)
        return 0; /* an erase, or the horizon record beyond the entries */
    uint8_t *c = malloc(rlen ? rlen : 1), *k = malloc(sklen ? sklen : 1);
    if (!c || !k) {
        free(c), free(k);
        return -1;
    }
    memcpy(c, rec, rlen);
    memcpy(k, skey, sklen);
    r->recs[r->n] = c;
    r->skeys[r->n] = k;
    r->sklens[r->n] = sklen;
    r->lens[r->n++] = rlen;
    return 0;
}

/* Creates the peers; peer 0 writes the initial entries (a day ago), every
 * other peer loads its records, as if all had synced long since. */
static int s_setup(rsim_t *s)
{
    s->n = s->sites * s->pps;
    size_t nn = (size_t)s->n * (size_t)s->n;
    s->m = calloc((size_t)s->n, sizeof *s->m);
    s->ids = calloc((size_t)s->n, sizeof *s->ids);
    s->idp = calloc((size_t)s->n, sizeof *s->idp);
    s->deadline = calloc((size_t)s->n, sizeof *s->deadline);
    s->touched = calloc((size_t)s->n, 1);
    s->px = calloc((size_t)s->sites, sizeof *s->px);
    s->py = calloc((size_t)s->sites, sizeof *s->py);
    s->lat = calloc(nn, sizeof *s->lat);
    s->link_us = calloc(nn, sizeof *s->link_us);
    s->last_at = calloc(nn, sizeof *s->last_at);
    s->truth = calloc(KEYS_CAP, sizeof *s->truth);
    size_t max_w = (size_t)s->entries + (size_t)s->publishes + (size_t)s->changed + 16;
    s->conv = calloc(max_w, sizeof *s->conv);
    if (!s->m || !s->ids || !s->idp || !s->deadline || !s->touched || !s->px || !s->py || !s->lat ||
        !s->link_us || !s->last_at || !s->truth || !s->conv)
        return -1;
    if (s->c.chaos) {
        s->c.up = calloc((size_t)s->n, 1);
        s->c.side = calloc((size_t)s->n, 1);
        s->c.epoch = calloc((size_t)s->n, sizeof *s->c.epoch);
        s->c.disk = calloc((size_t)s->n, sizeof *s->c.disk);
        s->c.tl = calloc((size_t)s->n, sizeof *s->c.tl);
        s->c.crash = calloc((size_t)s->c.ncrash + 1, sizeof *s->c.crash);
        s->c.part = calloc((size_t)s->c.npart + 1, sizeof *s->c.part);
        if (!s->c.up || !s->c.side || !s->c.epoch || !s->c.disk || !s->c.tl || !s->c.crash ||
            !s->c.part)
            return -1;
        memset(s->c.up, 1, (size_t)s->n);
        s->c.nup = s->n;
    }
    for (int i = 0; i < s->sites; i++) {
        s->px[i] = kvc_rng_double(&s->rng);
        s->py[i] = kvc_rng_double(&s->rng);
    }
    for (int a = 0; a < s->n; a++)
        for (int b = a + 1; b < s->n; b++) {
            int sa = a / s->pps, sb = b / s->pps;
            uint16_t l = 1;
            if (sa != sb && s->wan) {
                double dx = s->px[sa] - s->px[sb], dy = s->py[sa] - s->py[sb];
                l = (uint16_t)(10.0 + 140.0 * sqrt(dx * dx + dy * dy) / sqrt(2.0) + 0.5);
            } else if (sa != sb) {
                l = (uint16_t)(1 + kvc_rng_below(&s->rng, 5));
            }
            s->lat[(size_t)a * (size_t)s->n + (size_t)b] = l;
            s->lat[(size_t)b * (size_t)s->n + (size_t)a] = l;
        }
    for (int i = 0; i < s->n; i++) {
        snprintf(s->ids[i], sizeof s->ids[i], "s%d/p%d", i / s->pps, i % s->pps);
        s->idp[i] = s->ids[i];
        s->m[i] = kvc_lww_new(&s->cfg, s->ids[i], KVC_LWW_CHANNEL_REGISTRY, kvc_rng_next(&s->rng));
        if (!s->m[i])
            return -1;
    }
    /* the initial entries, written at peer 0 a day before the run */
    uint64_t then = s->t0 - 24ull * 3600 * 1000;
    for (int k = 0; k < s->entries; k++) {
        uint8_t key[KEYLEN], val[VAL_MAX];
        s_key(k, key);
        size_t vlen = s_value(s, val);
        if (kvc_lww_put(s->m[0], then + (uint64_t)k, key, KEYLEN, val, vlen, &s->out) != 0)
            return -1;
        kvc_lww_entry_t e;
        s_truth(s, 0, k, 0, &e);
    }
    s->nkeys = s->entries;
    kvc_outbox_reset(&s->out);
    recs_t r = {.cap = (size_t)s->entries + 2};
    r.recs = calloc(r.cap, sizeof *r.recs);
    r.lens = calloc(r.cap, sizeof *r.lens);
    r.skeys = calloc(r.cap, sizeof *r.skeys);
    r.sklens = calloc(r.cap, sizeof *r.sklens);
    int rc = r.recs && r.lens && r.skeys && r.sklens ? 0 : -1;
    if (rc == 0 && kvc_lww_each_dirty(s->m[0], s_collect, &r) != 0)
        rc = -1;
    kvc_lww_persisted(s->m[0]);
    for (int i = 1; i < s->n && rc == 0; i++) {
        if (s->catchup && s->fresh && i == s->rj)
            continue;
        for (size_t k = 0; k < r.n && rc == 0; k++)
            if (kvc_lww_load(s->m[i], r.recs[k], r.lens[k]) != 0)
                rc = -1;
    }
    for (int i = 0; s->c.chaos && i < s->n && rc == 0; i++) { /* every peer's disk */
        dput_t a = {s, &s->c.disk[i]};
        for (size_t k = 0; k < r.n && rc == 0; k++)
            rc = s_disk_put(&a, r.skeys[k], r.sklens[k], r.recs[k], r.lens[k]);
    }
    for (size_t k = 0; k < r.n; k++)
        free(r.recs[k]), free(r.skeys[k]);
    free(r.recs), free(r.lens), free(r.skeys), free(r.sklens);
    if (rc != 0)
        return -1;
    /* scope: every member (a fresh peer only from when it joins) */
    for (int i = 0; i < s->n; i++) {
        size_t np = (size_t)s->n;
        if (s->catchup && s->fresh && !s->joined && i != s->rj)
            np = (size_t)s->n - 1; /* the rejoining peer is the last */
        if (kvc_lww_set_peers(s->m[i], s->idp, np, s->t0) != 0)
            return -1;
        s->deadline[i] = 0;
    }
    return 0;
}

static void s_teardown(rsim_t *s)
{
    for (int i = 0; s->m && i < s->n; i++)
        kvc_lww_destroy(&s->m[i]);
    for (size_t k = 0; k < s->nheap; k++)
        free(s->heap[k].data);
    for (size_t k = 0; k < s->npend; k++)
        free(s->pend[k].held);
    free(s->heap), free(s->m), free(s->ids), free(s->idp), free(s->deadline), free(s->touched);
    free(s->px), free(s->py), free(s->lat), free(s->link_us), free(s->last_at), free(s->truth);
    free(s->pend), free(s->conv);
    for (int i = 0; s->c.disk && i < s->n; i++) {
        for (size_t k = 0; k < s->c.disk[i].n; k++)
            free(s->c.disk[i].r[k].skey), free(s->c.disk[i].r[k].rec);
        free(s->c.disk[i].r);
    }
    free(s->c.up), free(s->c.side), free(s->c.epoch), free(s->c.disk), free(s->c.tl);
    free(s->c.crash), free(s->c.part), free(s->c.acked);
    kvc_outbox_free(&s->out);
}

static int s_u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* --- the two modes ------------------------------------------------------- */

/* publish: steady writes at random peers, each timed until everywhere. */
static int s_publish(rsim_t *s)
{
    uint64_t start = s->t0 + 2000, gap = (uint64_t)(1000.0 / s->rate);
    if (gap < 1)
        gap = 1;
    uint64_t last = start + gap * (uint64_t)(s->publishes - 1), end = last + 120000;
    uint64_t drained = 0;
    int done = 0, wrote = 0;
    uint64_t bytes_start = 0, bytes_end = 0, push_start = 0, push_end = 0;
    while (s->now < end) {
        uint64_t until = wrote < s->publishes ? start + gap * (uint64_t)wrote : end;
        s->now = s_next(s, until);
        if (s->now == start) {
            bytes_start = s->bytes;
            push_start = s->bytes_kind[2];
        }
        if (s_step(s) != 0)
            return -1;
        while (wrote < s->publishes && s->now >= start + gap * (uint64_t)wrote) {
            int i = (int)kvc_rng_below(&s->rng, (uint64_t)s->n);
            uint64_t r = kvc_rng_below(&s->rng, 10);
            int kind = r < 7 ? 0 : r < 9 ? 1 : 2;
            if (s_write(s, i, kind, 1) < 0)
                return -1;
            wrote++;
        }
        if (s_check_pending(s) != 0)
            return -1;
        if (wrote == s->publishes && s->npend == 0 && !done) {
            done = 1;
            drained = s->now;
            bytes_end = s->bytes;
            push_end = s->bytes_kind[2];
            end = s->now + 10000; /* a quiet tail: nothing must change */
        }
    }
    uint64_t wrong = 0, resurrected = 0;
    int identical = s_identical(s);
    s_check_truth(s, &wrong, &resurrected);
    qsort(s->conv, s->nconv, sizeof *s->conv, s_u64_cmp);
    uint64_t p50 = s->nconv ? s->conv[(s->nconv - 1) / 2] : 0;
    uint64_t p99 = s->nconv ? s->conv[(size_t)((double)(s->nconv - 1) * 0.99)] : 0;
    uint64_t mx = s->nconv ? s->conv[s->nconv - 1] : 0;
    if (!done)
        bytes_end = s->bytes, push_end = s->bytes_kind[2], drained = s->now;
    double secs = (double)(drained - start) / 1000.0;
    double per_pub = s->publishes ? (double)(bytes_end - bytes_start) / s->publishes : 0;
    double push_per_pub = s->publishes ? (double)(push_end - push_start) / s->publishes : 0;
    double bg = secs > 0 ? ((double)(bytes_end - bytes_start) - (double)(push_end - push_start)) /
                               secs / s->n
                         : 0;
    int ok = identical && wrong == 0 && resurrected == 0 && s->npend == 0 && done;
    if (s->json)
        printf("{\"scenario\":\"registry\",\"mode\":\"publish\",\"sites\":%d,\"peers\":%d,"
               "\"profile\":\"%s\",\"loss\":%g,\"entries\":%d,\"seed\":%" PRIu64
               ",\"publishes\":%d,\"unconverged\":%zu,\"visible_ms\":{\"p50\":%" PRIu64
               ",\"p99\":%" PRIu64 ",\"max\":%" PRIu64 "},\"bytes_per_publish\":%.0f,"
               "\"push_bytes_per_publish\":%.0f,\"other_bytes_per_peer_per_s\":%.1f,"
               "\"bytes\":%" PRIu64 ",\"msgs\":%" PRIu64 ",\"identical\":%s,"
               "\"resurrections\":%" PRIu64 ",\"wrong_versions\":%" PRIu64
               ",\"invariants_ok\":%s}\n",
               s->sites, s->n, s->wan ? "wan" : "lan", s->loss, s->entries, s->seed, s->publishes,
               s->npend, p50, p99, mx, per_pub, push_per_pub, bg, s->bytes, s->msgs,
               identical ? "true" : "false", resurrected, wrong, ok ? "true" : "false");
    else
        printf("registry publish: %d sites, %d peers, %s, loss %g, %d publishes: visible "
               "everywhere p50 %" PRIu64 " p99 %" PRIu64 " max %" PRIu64
               " ms; %.0f bytes/publish (%.0f pushes); identical %s, wrong %" PRIu64
               ", resurrections %" PRIu64 "\n",
               s->sites, s->n, s->wan ? "wan" : "lan", s->loss, s->publishes, p50, p99, mx, per_pub,
               push_per_pub, identical ? "yes" : "no", wrong, resurrected);
    return ok ? 0 : 1;
}

/* The keys whose version at peer i is not the truth, and their size. */
static void s_differing(rsim_t *s, int i, uint64_t *n, uint64_t *bytes)
{
    *n = *bytes = 0;
    for (int k = 0; k < s->nkeys; k++) {
        truth_t *t = &s->truth[k];
        if (!t->used)
            continue;
        uint8_t key[KEYLEN];
        s_key(k, key);
        kvc_lww_entry_t e;
        memset(&e, 0, sizeof e);
        int rc = kvc_lww_get(s->m[i], key, KEYLEN, &e);
        int have = rc == 0 || e.tomb;
        if (!have && t->tomb)
            continue;
        if (have && e.hlc == t->hlc && strcmp(e.writer, t->writer) == 0)
            continue;
        (*n)++;
        *bytes += KEYLEN + t->vlen;
    }
}

/* What membership tells the registry, as kvc-peer passes it on: every
 * peer hears `type` about rj, and rj hears it about every other peer. */
static int s_membership(rsim_t *s, kvc_member_event_type_t type)
{
    for (int i = 0; i < s->n; i++) {
        for (int k = 0; k < s->n; k++) {
            if (k == i || (i != s->rj && k != s->rj))
                continue;
            kvc_member_event_t ev = {.type = type};
            snprintf(ev.id, sizeof ev.id, "%s", s->ids[k]);
            kvc_lww_member_event(s->m[i], s->now, &ev, &s->out);
        }
        if (s_flush(s, i) != 0)
            return -1;
    }
    return 0;
}

/* catchup: one peer away for partition_s while the others change C
 * entries; time and bytes until it is identical again. Membership's view
 * is modelled unless --no-membership: the peers and the cut-off one see
 * each other dead 3 s into the cut and alive again 500 ms after the heal,
 * as SWIM with the wan profile would roughly report it. */
static int s_catchup(rsim_t *s)
{
    uint64_t cut_at = s->t0 + 10000, heal = cut_at + s->partition_s * 1000;
    s->heal_at = heal;
    uint64_t span = heal > cut_at ? heal - cut_at : 1;
    uint64_t gap = s->changed ? span / (uint64_t)(s->changed + 1) : span;
    if (gap < 1)
        gap = 1;
    uint64_t end = heal + 600000, caught = UINT64_MAX;
    int wrote = 0, others = s->n - 1;
    uint64_t diff_n = 0, diff_bytes = 0, last_check = 0;
    int healed = 0, dead_told = s->no_membership || s->fresh, alive_told = s->no_membership;
    uint64_t dead_at = cut_at + 3000, alive_at = heal + 500;
    s->joined = !s->fresh;
    while (s->now < end) {
        uint64_t until = end;
        if (!dead_told && dead_at < until)
            until = dead_at;
        if (!alive_told && alive_at < until)
            until = alive_at;
        if (!s->cut && !healed && cut_at < until)
            until = cut_at;
        if (wrote < s->changed && cut_at + gap * (uint64_t)(wrote + 1) < until)
            until = cut_at + gap * (uint64_t)(wrote + 1);
        if (!healed && heal < until)
            until = heal;
        s->now = s_next(s, until);
        if (s->now >= cut_at && !s->cut && !healed)
            s->cut = 1;
        if (s->now >= heal && !healed) {
            healed = 1;
            s->cut = 0;
            s_differing(s, s->rj, &diff_n, &diff_bytes);
            s->count_rj = 1;
            if (!s->joined) {
                s->joined = 1;
                for (int i = 0; i < s->n; i++) {
                    if (kvc_lww_set_peers(s->m[i], s->idp, (size_t)s->n, s->now) != 0)
                        return -1;
                    s->deadline[i] = kvc_lww_next_deadline(s->m[i]);
                }
                s->deadline[s->rj] = 0;
            }
        }
        if (!dead_told && s->now >= dead_at && dead_at < heal) {
            dead_told = 1;
            if (s_membership(s, KVC_MEMBER_EV_DEAD) != 0)
                return -1;
        }
        if (!alive_told && s->now >= alive_at) {
            alive_told = 1;
            if (s_membership(s, s->fresh ? KVC_MEMBER_EV_JOINED : KVC_MEMBER_EV_ALIVE) != 0)
                return -1;
        }
        if (s_step(s) != 0)
            return -1;
        while (wrote < s->changed && s->now >= cut_at + gap * (uint64_t)(wrote + 1)) {
            int i = (int)kvc_rng_below(&s->rng, (uint64_t)others);
            i += i >= s->rj;
            uint64_t r = kvc_rng_below(&s->rng, 10);
            int kind = r < 7 ? 1 : r < 8 ? 0 : 2;
            if (s_write(s, i, kind, 0) < 0)
                return -1;
            wrote++;
        }
        if (healed && caught == UINT64_MAX && s->touched[s->rj] && s->now > last_check) {
            last_check = s->now;
            int other = s->rj == 0 ? 1 : 0;
            if (s_same(s, s->rj, other) && s_identical(s)) {
                caught = s->now;
                s->count_rj = 0;
                end = s->now + 10000;
            }
        }
    }
    uint64_t wrong = 0, resurrected = 0;
    int identical = s_identical(s);
    s_check_truth(s, &wrong, &resurrected);
    uint64_t moved = s->rj_in + s->rj_out;
    double ratio = diff_bytes ? (double)moved / (double)diff_bytes : 0;
    int ok = identical && wrong == 0 && resurrected == 0 && caught != UINT64_MAX;
    int64_t ms = caught == UINT64_MAX ? -1 : (int64_t)(caught - heal);
    if (s->json)
        printf(
            "{\"scenario\":\"registry\",\"mode\":\"catchup\",\"fresh\":%s,\"peers\":%d,"
            "\"profile\":\"%s\",\"loss\":%g,\"entries\":%d,\"changed\":%d,\"partition_s\":%" PRIu64
            ",\"seed\":%" PRIu64 ",\"differing\":%" PRIu64 ",\"differing_bytes\":%" PRIu64
            ",\"catchup_ms\":%" PRId64 ",\"bytes_to\":%" PRIu64 ",\"bytes_from\":%" PRIu64
            ",\"ratio\":%.3f,\"bytes_30s\":%" PRIu64 ",\"bytes\":%" PRIu64
            ",\"identical\":%s,\"resurrections\":%" PRIu64 ",\"wrong_versions\":%" PRIu64
            ",\"invariants_ok\":%s}\n",
            s->fresh ? "true" : "false", s->n, s->wan ? "wan" : "lan", s->loss, s->entries,
            s->changed, s->partition_s, s->seed, diff_n, diff_bytes, ms, s->rj_in, s->rj_out, ratio,
            s->rj_in30 + s->rj_out30, s->bytes, identical ? "true" : "false", resurrected, wrong,
            ok ? "true" : "false");
    else
        printf("registry catchup: %d peers, %d entries, %" PRIu64 " differing (%" PRIu64
               " bytes): caught up in %" PRId64 " ms moving %" PRIu64 " bytes (ratio %.2f); "
               "identical %s, wrong %" PRIu64 ", resurrections %" PRIu64 "\n",
               s->n, s->entries, diff_n, diff_bytes, ms, moved, ratio, identical ? "yes" : "no",
               wrong, resurrected);
    return ok ? 0 : 1;
}

/* --- chaos --------------------------------------------------------------- */

/* Tells peer i (if up) that peer k is `type`, as kvc-peer passes SWIM's
 * events on, and flushes what that brings. */
static int s_tell(rsim_t *s, int i, int k, kvc_member_event_type_t type)
{
    if (!s->c.up[i] || i == k)
        return 0;
    kvc_member_event_t ev = {.type = type};
    snprintf(ev.id, sizeof ev.id, "%s", s->ids[k]);
    kvc_lww_member_event(s->m[i], s->now, &ev, &s->out);
    return s_flush(s, i);
}

/* Peer i crashes: its memory is gone, messages in flight to it or from it
 * are dropped (its epoch moves on: the connection and the sender's queues
 * go with the process), its disk stays. */
static void s_crash(rsim_t *s, int i)
{
    kvc_lww_destroy(&s->m[i]);
    s->c.up[i] = 0;
    s->c.epoch[i]++;
    s->c.nup--;
    s->deadline[i] = KVC_DEADLINE_NONE;
    for (size_t q = 0; q < s->npend; q++)
        if (s->pend[q].held[i]) {
            s->pend[q].held[i] = 0;
            s->pend[q].holders--;
        }
    s->c.recheck = 1;
}

/* Peer i restarts from its own disk: a new core, every stored record
 * loaded, every member in scope (alive, as a new core starts). */
static int s_restart(rsim_t *s, int i)
{
    s->m[i] = kvc_lww_new(&s->cfg, s->ids[i], KVC_LWW_CHANNEL_REGISTRY, kvc_rng_next(&s->rng));
    if (!s->m[i])
        return -1;
    const disk_t *d = &s->c.disk[i];
    for (size_t k = 0; k < d->n; k++)
        if (kvc_lww_load(s->m[i], d->r[k].rec, d->r[k].rlen) != 0)
            return -1;
    if (kvc_lww_set_peers(s->m[i], s->idp, (size_t)s->n, s->now) != 0)
        return -1;
    s->c.up[i] = 1;
    s->c.epoch[i]++;
    s->c.nup++;
    s->deadline[i] = 0;
    s->c.recheck = 1;
    return 0;
}

/* Are i and k on the two sides of the partition in force? */
static int s_across(const rsim_t *s, int i, int k)
{
    return s->c.cut_active && s->c.side[i] != s->c.side[k];
}

/* Runs the crash and partition actions due at now; *next gets the time of
 * the next one. */
static int s_chaos_actions(rsim_t *s, uint64_t *next)
{
    uint64_t nx = UINT64_MAX;
    for (int c = 0; c < s->c.ncrash; c++) {
        crash_t *x = &s->c.crash[c];
        if (x->phase == 0 && s->now >= x->at) {
            x->phase = 3;
            if (s->c.nup > 1) { /* a random live peer */
                int r = (int)kvc_rng_below(&s->rng, (uint64_t)s->c.nup), i = 0;
                for (; i < s->n; i++)
                    if (s->c.up[i] && r-- == 0)
                        break;
                x->peer = i;
                x->phase = 1;
                s->c.crashes_done++;
                s_crash(s, i);
            }
        }
        if (x->phase == 1 && !x->dead_told && s->now >= x->dead_at) {
            x->dead_told = 1; /* it is still down: membership noticed */
            for (int i = 0; i < s->n; i++)
                if (s_tell(s, i, x->peer, KVC_MEMBER_EV_DEAD) != 0)
                    return -1;
        }
        if (x->phase == 1 && s->now >= x->restart_at) {
            if (s_restart(s, x->peer) != 0)
                return -1;
            x->phase = x->dead_told ? 2 : 3;
        }
        if (x->phase == 2 && s->now >= x->alive_at) {
            x->phase = 3;
            for (int i = 0; i < s->n; i++)
                if (!s_across(s, i, x->peer) && s_tell(s, i, x->peer, KVC_MEMBER_EV_ALIVE) != 0)
                    return -1;
        }
        uint64_t t = x->phase == 0 ? x->at
                     : x->phase == 1 && !x->dead_told
                         ? (x->dead_at < x->restart_at ? x->dead_at : x->restart_at)
                     : x->phase == 1 ? x->restart_at
                     : x->phase == 2 ? x->alive_at
                                     : UINT64_MAX;
        if (t < nx)
            nx = t;
    }
    for (int p = 0; p < s->c.npart; p++) {
        part_t *x = &s->c.part[p];
        if (x->phase == 0 && s->now >= x->at) { /* cut a random 10..40% off */
            x->phase = 1;
            s->c.parts_done++;
            s->c.cut_active = 1;
            memset(s->c.side, 0, (size_t)s->n);
            x->size = (int)((double)s->n * (0.1 + 0.3 * kvc_rng_double(&s->rng)) + 0.5);
            if (x->size < 1)
                x->size = 1;
            for (int k = 0; k < x->size; k++) {
                int i = (int)kvc_rng_below(&s->rng, (uint64_t)s->n);
                while (s->c.side[i])
                    i = (i + 1) % s->n;
                s->c.side[i] = 1;
            }
        }
        if (x->phase == 1 && s->now >= x->dead_at) {
            x->phase = 2;
            for (int i = 0; i < s->n; i++)
                for (int k = 0; k < s->n; k++)
                    if (s_across(s, i, k) && s_tell(s, i, k, KVC_MEMBER_EV_DEAD) != 0)
                        return -1;
        }
        if (x->phase == 2 && s->now >= x->heal_at) {
            x->phase = 3;
            s->c.cut_active = 0;
        }
        if (x->phase == 3 && s->now >= x->alive_at) {
            x->phase = 4;
            for (int i = 0; i < s->n; i++)
                for (int k = 0; k < s->n; k++)
                    if (s->c.side[i] != s->c.side[k] && s->c.up[k] &&
                        s_tell(s, i, k, KVC_MEMBER_EV_ALIVE) != 0)
                        return -1;
            memset(s->c.side, 0, (size_t)s->n);
        }
        uint64_t t = x->phase == 0   ? x->at
                     : x->phase == 1 ? x->dead_at
                     : x->phase == 2 ? x->heal_at
                     : x->phase == 3 ? x->alive_at
                                     : UINT64_MAX;
        if (t < nx)
            nx = t;
    }
    *next = nx;
    return 0;
}

/* chaos: random publishes and retirements at random live peers for the
 * first two thirds of the run, crashes (restart from the peer's own disk)
 * and partitions in the same span, then quiet; every acknowledged write
 * timed until every peer that is up holds it, and checked at the end. */
static int s_chaos(rsim_t *s)
{
    uint64_t start = s->t0 + 1000, span = s->c.duration_s * 2000 / 3;
    uint64_t end = start + s->c.duration_s * 1000;
    uint64_t gap = (uint64_t)(1000.0 / s->rate);
    if (gap < 1)
        gap = 1;
    /* crashes anywhere in the span, each back up before it ends */
    for (int c = 0; c < s->c.ncrash; c++) {
        crash_t *x = &s->c.crash[c];
        uint64_t down = 1000 + kvc_rng_below(&s->rng, 19001);
        if (down + 1000 > span)
            down = span > 2000 ? span - 1000 : 1000;
        x->at = start + kvc_rng_below(&s->rng, span - down);
        x->dead_at = x->at + 2000 + kvc_rng_below(&s->rng, 3001);
        x->restart_at = x->at + down;
        x->alive_at = x->restart_at + 500;
        s->c.down_ms += down;
    }
    /* partitions one after another, each in its own slot of the span */
    uint64_t slot = s->c.npart ? span / (uint64_t)s->c.npart : span;
    for (int p = 0; p < s->c.npart; p++) {
        part_t *x = &s->c.part[p];
        uint64_t len = 5000 + kvc_rng_below(&s->rng, 25001);
        if (len + 1000 > slot)
            len = slot > 2000 ? slot - 1000 : 1000;
        x->at = start + slot * (uint64_t)p + kvc_rng_below(&s->rng, slot - len);
        x->dead_at = x->at + 3000 < x->at + len ? x->at + 3000 : x->at + len;
        x->heal_at = x->at + len;
        x->alive_at = x->heal_at + 500;
        s->c.cut_ms += len;
    }
    int wrote = 0, nw = s->publishes, at_end = 0, identical_end = 0;
    /* after the end, a quiet tail of up to 300 s more until converged: it
     * tells slow (settle_ms) from stuck (never) */
    uint64_t cap = end + 300000, check = end, settled = UINT64_MAX;
    size_t unconv_end = 0;
    while (s->now < cap) {
        if (s->now >= check) {
            check = s->now + 1000;
            int conv = s->npend == 0 && s->c.nup == s->n && s_identical(s);
            if (!at_end) {
                at_end = 1;
                unconv_end = s->npend;
                identical_end = conv;
            }
            if (conv) {
                settled = s->now;
                break;
            }
        }
        uint64_t next;
        if (s_chaos_actions(s, &next) != 0)
            return -1;
        if (s_step(s) != 0)
            return -1;
        while (wrote < nw && s->now >= start + gap * (uint64_t)wrote) {
            int r = (int)kvc_rng_below(&s->rng, (uint64_t)s->c.nup), i = 0;
            for (; i < s->n; i++)
                if (s->c.up[i] && r-- == 0)
                    break;
            uint64_t x = kvc_rng_below(&s->rng, 20);
            int kind = x < 12 ? 0 : x < 17 ? 1 : 2; /* 60% new, 25% new value, 15% retire */
            if (s_write(s, i, kind, 1) < 0)
                return -1;
            s->c.writes_cut += s->c.cut_active;
            if (!s->touched[i])
                s->c.tl[s->c.ntl++] = i;
            s->touched[i] = 1;
            wrote++;
        }
        if (s_check_pending(s) != 0)
            return -1;
        uint64_t until = check;
        if (wrote < nw && start + gap * (uint64_t)wrote < until)
            until = start + gap * (uint64_t)wrote;
        if (next < until)
            until = next;
        s->now = s_next(s, until);
    }
    int all_up = s->c.nup == s->n;
    uint64_t wrong = 0, resurrected = 0, lost = 0;
    int identical = all_up && s_identical(s);
    if (all_up) {
        s_check_truth(s, &wrong, &resurrected);
        for (size_t a = 0; a < s->c.nacked; a++) {
            const acked_t *w = &s->c.acked[a];
            for (int i = 0; i < s->n; i++)
                if (!s_holds(s, i, w->key, w->hlc, w->writer, w->tomb)) {
                    lost++;
                    break;
                }
        }
    }
    qsort(s->conv, s->nconv, sizeof *s->conv, s_u64_cmp);
    uint64_t p50 = s->nconv ? s->conv[(s->nconv - 1) / 2] : 0;
    uint64_t p99 = s->nconv ? s->conv[(size_t)((double)(s->nconv - 1) * 0.99)] : 0;
    uint64_t mx = s->nconv ? s->conv[s->nconv - 1] : 0;
    int ok = all_up && identical && wrong == 0 && resurrected == 0 && lost == 0 && s->npend == 0 &&
             s->c.nacked == (size_t)nw;
    int64_t settle = settled == UINT64_MAX ? -1 : (int64_t)(settled - end);
    if (s->json)
        printf("{\"scenario\":\"registry\",\"mode\":\"chaos\",\"sites\":%d,\"peers\":%d,"
               "\"profile\":\"%s\",\"loss\":%g,\"duration_s\":%" PRIu64 ",\"rate\":%g,"
               "\"entries\":%d,\"seed\":%" PRIu64 ",\"writes\":%d,\"acknowledged\":%zu,"
               "\"crashes\":%d,\"down_s\":%.1f,\"partitions\":%d,\"partitioned_s\":%.1f,"
               "\"writes_in_partition\":%d,\"at_end\":{\"unconverged\":%zu,\"converged\":%s},"
               "\"settle_ms\":%" PRId64 ",\"unconverged\":%zu,"
               "\"convergence_ms\":{\"p50\":%" PRIu64 ",\"p99\":%" PRIu64 ",\"max\":%" PRIu64
               "},\"lost_writes\":%" PRIu64 ",\"converged\":%s,\"resurrections\":%" PRIu64
               ",\"wrong_versions\":%" PRIu64 ",\"records_persisted\":%" PRIu64
               ",\"bytes\":%" PRIu64 ",\"msgs\":%" PRIu64 ",\"invariants_ok\":%s}\n",
               s->sites, s->n, s->wan ? "wan" : "lan", s->loss, s->c.duration_s, s->rate,
               s->entries, s->seed, wrote, s->c.nacked, s->c.crashes_done,
               (double)s->c.down_ms / 1000.0, s->c.parts_done, (double)s->c.cut_ms / 1000.0,
               s->c.writes_cut, unconv_end, identical_end ? "true" : "false", settle, s->npend, p50,
               p99, mx, lost, identical ? "true" : "false", resurrected, wrong, s->records,
               s->bytes, s->msgs, ok ? "true" : "false");
    else
        printf("registry chaos: %d sites, %d peers, %s, loss %g, %" PRIu64 " s, %d writes "
               "(%zu acknowledged), %d crashes, %d partitions: convergence p50 %" PRIu64
               " p99 %" PRIu64 " max %" PRIu64 " ms (%zu unconverged at the end, settled %" PRId64
               " ms later, %zu never); lost %" PRIu64 ", converged %s, wrong %" PRIu64
               ", resurrections %" PRIu64 ", %" PRIu64 " bytes\n",
               s->sites, s->n, s->wan ? "wan" : "lan", s->loss, s->c.duration_s, wrote, s->c.nacked,
               s->c.crashes_done, s->c.parts_done, p50, p99, mx, unconv_end, settle, s->npend, lost,
               identical ? "yes" : "no", wrong, resurrected, s->bytes);
    return ok ? 0 : 1;
}

/* --- options ------------------------------------------------------------- */

static void s_usage(FILE *f)
{
    fprintf(f,
            "usage: kvc-sim --scenario registry --mode publish [--sites S] [--peers-per-site P]\n"
            "               [--profile wan|lan] [--loss P] [--publishes K] [--rate PER_S]\n"
            "               [--entries E] [--bw-mbps M] [--seed N] [--no-skip] [--json]\n"
            "       kvc-sim --scenario registry --mode catchup [--peers N] [--entries E]\n"
            "               [--changed C] [--partition-s S] [--fresh] [--no-membership] [--profile "
            "wan|lan]\n"
            "               [--loss P] [--bw-mbps M] [--seed N] [--no-skip] [--json]\n"
            "       kvc-sim --scenario registry --mode chaos [--sites S] [--peers-per-site P]\n"
            "               [--profile wan|lan] [--loss P] [--duration S] [--rate W]\n"
            "               [--crashes K] [--partitions K] [--entries E] [--seed N] [--json]\n"
            "  The registry's settings (anti-entropy 5 s, max_entries 100000), values of\n"
            "  300..1000 bytes. publish: time until a write is held everywhere; catchup: a\n"
            "  peer rejoins after a partition (or joins empty, --fresh): time, bytes, and\n"
            "  bytes / size of the differing entries; chaos: random writes at random live\n"
            "  peers for 2/3 of --duration with crashes (restart from the peer's own disk) and\n"
            "  partitions, then quiet: convergence, lost writes, converged. Exit 1 on a\n"
            "  broken invariant.\n");
}

static int s_options(rsim_t *s, int argc, char **argv)
{
    s->sites = 100;
    s->pps = 1;
    s->wan = 1;
    s->publishes = 200;
    s->rate = 2;
    s->entries = -1;
    s->changed = 100;
    s->partition_s = 3600;
    s->bw_mbps = 100;
    s->seed = 1;
    int peers = 20, have_sites = 0, have_peers = 0, have_rate = 0, mode = -1;
    s->c.duration_s = 120;
    s->c.ncrash = 10;
    s->c.npart = 3;
    kvc_lww_config_default(&s->cfg);
    s->cfg.max_entries = 100000; /* kvc_repmap_registry_opts */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int64_t x = 0;
        if (strcmp(a, "--json") == 0 || strcmp(a, "--fresh") == 0 || strcmp(a, "--no-skip") == 0) {
            *(a[2] == 'j' ? &s->json : a[2] == 'f' ? &s->fresh : &s->no_skip) = 1;
            continue;
        }
        if (strcmp(a, "--no-membership") == 0) {
            s->no_membership = 1;
            continue;
        }
        if (strcmp(a, "--help") == 0) {
            s_usage(stdout);
            exit(0);
        }
        if (!v) {
            fprintf(stderr, "kvc-sim: %s: missing value\n", a);
            return -1;
        }
        i++;
        int bad = 0;
        double *dp = NULL, lo = 0, hi = 0;
        if (strcmp(a, "--scenario") == 0)
            bad = strcmp(v, "registry") != 0;
        else if (strcmp(a, "--mode") == 0)
            mode = strcmp(v, "publish") == 0   ? 0
                   : strcmp(v, "catchup") == 0 ? 1
                   : strcmp(v, "chaos") == 0   ? 2
                                               : -1,
            bad = mode < 0;
        else if (strcmp(a, "--sites") == 0)
            bad = kvc_parse_i64(v, 2, 1000, &x), s->sites = (int)x, have_sites = 1;
        else if (strcmp(a, "--peers-per-site") == 0)
            bad = kvc_parse_i64(v, 1, 3, &x), s->pps = (int)x;
        else if (strcmp(a, "--peers") == 0)
            bad = kvc_parse_i64(v, 2, 1000, &x), peers = (int)x, have_peers = 1;
        else if (strcmp(a, "--profile") == 0)
            bad = strcmp(v, "wan") != 0 && strcmp(v, "lan") != 0, s->wan = strcmp(v, "wan") == 0;
        else if (strcmp(a, "--publishes") == 0)
            bad = kvc_parse_i64(v, 1, 100000, &x), s->publishes = (int)x;
        else if (strcmp(a, "--entries") == 0)
            bad = kvc_parse_i64(v, 0, 90000, &x), s->entries = (int)x;
        else if (strcmp(a, "--changed") == 0)
            bad = kvc_parse_i64(v, 0, 9000, &x), s->changed = (int)x;
        else if (strcmp(a, "--partition-s") == 0)
            bad = kvc_parse_i64(v, 0, 86400, &x), s->partition_s = (uint64_t)x;
        else if (strcmp(a, "--duration") == 0)
            bad = kvc_parse_i64(v, 3, 86400, &x), s->c.duration_s = (uint64_t)x;
        else if (strcmp(a, "--crashes") == 0)
            bad = kvc_parse_i64(v, 0, 1000, &x), s->c.ncrash = (int)x;
        else if (strcmp(a, "--partitions") == 0)
            bad = kvc_parse_i64(v, 0, 100, &x), s->c.npart = (int)x;
        else if (strcmp(a, "--seed") == 0)
            bad = kvc_parse_i64(v, 0, INT64_MAX, &x), s->seed = (uint64_t)x;
        else if (strcmp(a, "--loss") == 0)
            dp = &s->loss, lo = 0, hi = 0.5;
        else if (strcmp(a, "--rate") == 0)
            dp = &s->rate, lo = 0.01, hi = 1000, have_rate = 1;
        else if (strcmp(a, "--bw-mbps") == 0)
            dp = &s->bw_mbps, lo = 0, hi = 100000;
        else {
            fprintf(stderr, "kvc-sim: unknown option %s for --scenario registry\n", a);
            s_usage(stderr);
            return -1;
        }
        if (dp) {
            char *end;
            *dp = strtod(v, &end);
            bad = *end || !(*dp >= lo && *dp <= hi);
        }
        if (bad) {
            fprintf(stderr, "kvc-sim: %s: bad value '%s'\n", a, v);
            return -1;
        }
    }
    if (mode < 0) {
        fprintf(stderr, "kvc-sim: --scenario registry needs --mode publish|catchup|chaos\n");
        return -1;
    }
    s->catchup = mode == 1;
    s->c.chaos = mode == 2;
    if (s->c.chaos) {
        if (!have_rate)
            s->rate = 10;
        if (s->entries < 0)
            s->entries = 200;
        uint64_t gap = (uint64_t)(1000.0 / s->rate);
        s->publishes = (int)(s->c.duration_s * 2000 / 3 / (gap ? gap : 1));
        if (s->publishes >= KEYS_CAP) {
            fprintf(stderr, "kvc-sim: too many writes (--rate x --duration)\n");
            return -1;
        }
        s->changed = 0;
    } else if (s->catchup) {
        if (have_sites && !have_peers)
            peers = s->sites;
        s->sites = peers;
        s->pps = 1;
        if (s->entries < 0)
            s->entries = 10000;
        if (s->fresh && s->partition_s == 3600)
            s->partition_s = 0;
        if (s->fresh)
            s->changed = 0;
        s->publishes = 0;
    } else {
        if (s->entries < 0)
            s->entries = 1000;
        s->changed = 0;
    }
    if (s->entries + s->publishes + s->changed >= KEYS_CAP ||
        (uint64_t)s->entries + (uint64_t)s->publishes + (uint64_t)s->changed > s->cfg.max_entries) {
        fprintf(stderr, "kvc-sim: too many entries for max_entries %u\n", s->cfg.max_entries);
        return -1;
    }
    return 0;
}

int kvc_sim_registry_main(int argc, char **argv)
{
    rsim_t s;
    memset(&s, 0, sizeof s);
    if (s_options(&s, argc, argv) != 0)
        return 2;
    kvc_rng_seed(&s.rng, s.seed);
    kvc_rng_seed(&s.vrng, s.seed ^ 0x5eed5eedull);
    kvc_outbox_init(&s.out, 0);
    s.t0 = s.now = 1700000000000ull; /* wall clock ms */
    s.rj = s.sites * s.pps - 1;
    int rc = s_setup(&s);
    if (rc == 0)
        rc = s.c.chaos ? s_chaos(&s) : s.catchup ? s_catchup(&s) : s_publish(&s);
    if (rc < 0)
        fprintf(stderr, "kvc-sim: registry scenario failed (allocation or routing)\n");
    s_teardown(&s);
    return rc < 0 ? 1 : rc;
}
