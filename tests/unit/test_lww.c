/*
 * Unit tests of federation/lww.c. Small fixtures of real cores exchange
 * their real messages through a tiny in-test network stepped one simulated
 * millisecond at a time (latency, loss, partitions); the harness honours the
 * durability contract (each node's dirty records go to its in-memory "disk"
 * before its outbox reaches the network), so a node can be restarted from
 * exactly what it persisted. Every expected value is computed from the
 * writes the test made, never written down.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "lww.h"
#include "lww.pb-c.h"
#include "rng.h"

#define NMAX 5

/* --- a node's disk ---------------------------------------------------------- */

typedef struct {
    uint8_t skey[1 + KVC_LWW_KEY_MAX];
    size_t sklen;
    uint8_t *rec;
    size_t rlen;
} drec_t;

typedef struct {
    drec_t *r;
    size_t n, cap;
    size_t erased;
} disk_t;

static int s_disk_put(void *arg, const uint8_t *skey, size_t sklen, const uint8_t *rec, size_t rlen)
{
    disk_t *d = arg;
    size_t i = 0;
    for (; i < d->n; i++)
        if (d->r[i].sklen == sklen && memcmp(d->r[i].skey, skey, sklen) == 0)
            break;
    if (!rec) {
        if (i < d->n) {
            free(d->r[i].rec);
            d->r[i] = d->r[--d->n];
        }
        d->erased++;
        return 0;
    }
    if (i == d->n) {
        if (d->n == d->cap) {
            d->cap = d->cap ? 2 * d->cap : 64;
            d->r = realloc(d->r, d->cap * sizeof *d->r);
            if (!d->r)
                return -1;
        }
        d->n++;
        memcpy(d->r[i].skey, skey, sklen);
        d->r[i].sklen = sklen;
    } else {
        free(d->r[i].rec);
    }
    d->r[i].rec = malloc(rlen ? rlen : 1);
    if (rlen)
        memcpy(d->r[i].rec, rec, rlen);
    d->r[i].rlen = rlen;
    return 0;
}

static void s_disk_free(disk_t *d)
{
    for (size_t i = 0; i < d->n; i++)
        free(d->r[i].rec);
    free(d->r);
    d->r = NULL;
    d->n = d->cap = 0;
}

/* --- the network ------------------------------------------------------------ */

typedef struct {
    uint64_t at;
    int from, to;
    size_t len;
    uint8_t *data;
} wmsg_t;

typedef struct {
    kvc_lww_t *m[NMAX];
    disk_t disk[NMAX];
    char ids[NMAX][16];
    const char *idp[NMAX];
    int n;
    int up[NMAX];
    int side[NMAX]; /* partition: messages cross only within one side */
    int cut;
    double loss;
    kvc_rng_t rng;
    kvc_outbox_t out;
    wmsg_t *q;
    size_t nq, capq;
    uint64_t now;
    kvc_lww_config_t cfg;
    uint64_t msgs, bytes;
    long fail_next; /* >= 0: the next receive runs with this allocation budget */
    uint64_t enomem;
} net_t;

static void s_cfg_small(kvc_lww_config_t *cfg)
{
    kvc_lww_config_default(cfg);
    cfg->max_entries = 256;
    cfg->value_max = 64;
    cfg->msg_max = 8192;
    cfg->ae_interval_ms = 200;
    cfg->push_retry_ms = 20;
    cfg->push_batch = 8;
    cfg->tomb_min_age_ms = 3000;
}

static int s_index(const net_t *w, const char *id)
{
    for (int i = 0; i < w->n; i++)
        if (strcmp(w->ids[i], id) == 0)
            return i;
    return -1;
}

/* Persists node i's dirty records, then puts its outbox on the network. */
static void s_flush(net_t *w, int i)
{
    kvc_lww_t *m = w->m[i];
    if (kvc_lww_needs_persist(m)) {
        assert_int_equal(kvc_lww_each_dirty(m, s_disk_put, &w->disk[i]), 0);
        kvc_lww_persisted(m);
    }
    assert_false(kvc_lww_needs_persist(m));
    for (size_t k = 0; k < w->out.n_msgs; k++) {
        const kvc_out_msg_t *om = &w->out.msgs[k];
        int to = s_index(w, om->to);
        assert_true(to >= 0);
        assert_int_equal(om->channel, KVC_LWW_CHANNEL_REGISTRY);
        w->msgs++;
        w->bytes += om->len;
        if (kvc_rng_double(&w->rng) < w->loss)
            continue;
        if (w->cut && w->side[i] != w->side[to])
            continue;
        if (w->nq == w->capq) {
            w->capq = w->capq ? 2 * w->capq : 256;
            w->q = realloc(w->q, w->capq * sizeof *w->q);
            assert_non_null(w->q);
        }
        wmsg_t *q = &w->q[w->nq++];
        q->at = w->now + 1 + kvc_rng_below(&w->rng, 5);
        q->from = i;
        q->to = to;
        q->len = om->len;
        q->data = malloc(om->len ? om->len : 1);
        memcpy(q->data, kvc_outbox_data(&w->out, k), om->len);
    }
    kvc_outbox_reset(&w->out);
}

static void s_start(net_t *w, int i)
{
    w->m[i] = kvc_lww_new(&w->cfg, w->ids[i], KVC_LWW_CHANNEL_REGISTRY, 100 + (uint64_t)i);
    assert_non_null(w->m[i]);
    for (size_t k = 0; k < w->disk[i].n; k++)
        assert_int_equal(kvc_lww_load(w->m[i], w->disk[i].r[k].rec, w->disk[i].r[k].rlen), 0);
    assert_int_equal(kvc_lww_set_peers(w->m[i], w->idp, (size_t)w->n, w->now), 0);
    w->up[i] = 1;
}

static void s_net_init(net_t *w, int n, const kvc_lww_config_t *cfg, uint64_t seed)
{
    memset(w, 0, sizeof *w);
    w->n = n;
    w->cfg = *cfg;
    w->now = 1000000; /* wall clock ms */
    w->fail_next = -1;
    kvc_rng_seed(&w->rng, seed);
    kvc_outbox_init(&w->out, 0);
    for (int i = 0; i < n; i++) {
        snprintf(w->ids[i], sizeof w->ids[i], "s/p%d", i);
        w->idp[i] = w->ids[i];
    }
    for (int i = 0; i < n; i++)
        s_start(w, i);
}

static void s_net_free(net_t *w)
{
    for (int i = 0; i < w->n; i++) {
        kvc_lww_destroy(&w->m[i]);
        s_disk_free(&w->disk[i]);
    }
    for (size_t k = 0; k < w->nq; k++)
        free(w->q[k].data);
    free(w->q);
    kvc_outbox_free(&w->out);
}

/* One millisecond: deliveries, then due ticks. */
static void s_step(net_t *w)
{
    w->now++;
    for (size_t k = 0; k < w->nq;) {
        wmsg_t *q = &w->q[k];
        if (q->at > w->now) {
            k++;
            continue;
        }
        wmsg_t m = *q;
        w->q[k] = w->q[--w->nq];
        if (w->up[m.to]) {
            long fail = w->fail_next;
            w->fail_next = -1;
            if (fail >= 0)
                kvc_alloc_fail_after(fail);
            int rc = kvc_lww_receive(w->m[m.to], w->now, w->ids[m.from], m.data, m.len, &w->out);
            kvc_alloc_fail_after(-1);
            if (fail >= 0 && rc == KVC_ENOMEM)
                w->enomem++;
            else
                assert_int_equal(rc, 0);
            s_flush(w, m.to);
        }
        free(m.data);
    }
    for (int i = 0; i < w->n; i++) {
        if (!w->up[i] || kvc_lww_next_deadline(w->m[i]) > w->now)
            continue;
        assert_int_equal(kvc_lww_tick(w->m[i], w->now, &w->out), 0);
        s_flush(w, i);
    }
}

static void s_run(net_t *w, uint64_t ms)
{
    for (uint64_t t = 0; t < ms; t++)
        s_step(w);
}

static void s_put(net_t *w, int i, const char *key, const char *val)
{
    assert_int_equal(kvc_lww_put(w->m[i], w->now, (const uint8_t *)key, strlen(key),
                                 (const uint8_t *)val, strlen(val), &w->out),
                     0);
    s_flush(w, i);
}

static void s_del(net_t *w, int i, const char *key)
{
    assert_int_equal(kvc_lww_del(w->m[i], w->now, (const uint8_t *)key, strlen(key), &w->out), 0);
    s_flush(w, i);
}

/* A live value as a C string in buf ("" when absent or deleted). */
static const char *s_val(kvc_lww_t *m, const char *key, char *buf, size_t cap)
{
    kvc_lww_entry_t e;
    buf[0] = '\0';
    if (kvc_lww_get(m, (const uint8_t *)key, strlen(key), &e) == 0) {
        assert_true(e.vlen < cap);
        if (e.vlen)
            memcpy(buf, e.value, e.vlen);
        buf[e.vlen] = '\0';
    }
    return buf;
}

/* A canonical dump of live entries (sorted lines "key=value@hlc/writer"). */
typedef struct {
    char **lines;
    size_t n, cap;
} dump_t;

static int s_dump_one(void *arg, const kvc_lww_entry_t *e)
{
    dump_t *d = arg;
    if (d->n == d->cap) {
        d->cap = d->cap ? 2 * d->cap : 64;
        d->lines = realloc(d->lines, d->cap * sizeof *d->lines);
    }
    char *s = malloc(e->klen + e->vlen + 200);
    int k = snprintf(s, 200, "%.*s=", (int)e->klen, (const char *)e->key);
    if (e->vlen)
        memcpy(s + k, e->value, e->vlen);
    snprintf(s + k + e->vlen, 150, "@%llu/%s", (unsigned long long)e->hlc, e->writer);
    d->lines[d->n++] = s;
    return 0;
}

static int s_strcmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The whole live content of m as one string (caller frees). */
static char *s_dump(kvc_lww_t *m)
{
    dump_t d = {0};
    kvc_lww_each(m, 0, s_dump_one, &d);
    if (d.n)
        qsort(d.lines, d.n, sizeof *d.lines, s_strcmp);
    size_t total = 1;
    for (size_t i = 0; i < d.n; i++)
        total += strlen(d.lines[i]) + 1;
    char *out = malloc(total);
    size_t off = 0;
    for (size_t i = 0; i < d.n; i++) {
        size_t l = strlen(d.lines[i]);
        memcpy(out + off, d.lines[i], l);
        out[off + l] = '\n';
        off += l + 1;
        free(d.lines[i]);
    }
    out[off] = '\0';
    free(d.lines);
    return out;
}

static int s_all_equal(net_t *w)
{
    char *first = s_dump(w->m[0]);
    int eq = 1;
    for (int i = 1; i < w->n && eq; i++) {
        char *o = s_dump(w->m[i]);
        eq = strcmp(first, o) == 0;
        free(o);
    }
    free(first);
    return eq;
}

/* --- tests ------------------------------------------------------------------ */

/* Same key, same wall-clock instant at two writers: the higher member id
 * wins on both, whichever order the pushes arrive in. */
static void test_tie_break_by_writer(void **state)
{
    (void)state;
    kvc_lww_config_t cfg;
    s_cfg_small(&cfg);
    net_t w;
    s_net_init(&w, 2, &cfg, 1);
    s_put(&w, 1, "k", "from-p1");
    s_put(&w, 0, "k", "from-p0");
    kvc_lww_entry_t a, b;
    assert_int_equal(kvc_lww_get(w.m[0], (const uint8_t *)"k", 1, &a), 0);
    assert_int_equal(kvc_lww_get(w.m[1], (const uint8_t *)"k", 1, &b), 0);
    assert_int_equal(a.hlc, b.hlc); /* a real tie */
    s_run(&w, 50);
    char buf[64];
    assert_string_equal(s_val(w.m[0], "k", buf, sizeof buf), "from-p1");
    assert_string_equal(s_val(w.m[1], "k", buf, sizeof buf), "from-p1");
    kvc_lww_stats_t st;
    kvc_lww_stats(w.m[0], &st);
    assert_true(st.conflicts >= 1);
    s_net_free(&w);
}

/* The later write wins even when it arrives first. */
static void test_later_wins(void **state)
{
    (void)state;
    kvc_lww_config_t cfg;
    s_cfg_small(&cfg);
    net_t w;
    s_net_init(&w, 2, &cfg, 2);
    w.cut = 1;
    w.side[1] = 1; /* nothing crosses */
    s_put(&w, 1, "k", "new");
    w.now -= 500; /* p0's clock is behind: its write is older */
    s_put(&w, 0, "k", "old");
    w.now += 500;
    w.cut = 0;
    s_run(&w, 2000); /* anti-entropy repairs the lost pushes */
    char buf[64];
    assert_string_equal(s_val(w.m[0], "k", buf, sizeof buf), "new");
    assert_string_equal(s_val(w.m[1], "k", buf, sizeof buf), "new");
    s_net_free(&w);
}

/* A delete beats an older put and loses to a newer one; a deleted key is
 * not counted or listed. */
static void test_tombstone_order(void **state)
{
    (void)state;
    kvc_lww_config_t cfg;
    s_cfg_small(&cfg);
    net_t w;
    s_net_init(&w, 3, &cfg, 3);
    s_put(&w, 0, "k", "v1");
    s_run(&w, 20);
    w.now += 10;
    s_del(&w, 1, "k");
    s_run(&w, 20);
    char buf[64];
    for (int i = 0; i < 3; i++) {
        kvc_lww_entry_t e;
        memset(&e, 0, sizeof e);
        assert_int_equal(kvc_lww_get(w.m[i], (const uint8_t *)"k", 1, &e), KVC_ENOENT);
        assert_true(e.tomb);
        assert_int_equal(kvc_lww_count(w.m[i]), 0);
    }
    /* a put stamped after the delete brings the key back everywhere */
    w.now += 10;
    s_put(&w, 2, "k", "again");
    s_run(&w, 50);
    for (int i = 0; i < 3; i++)
        assert_string_equal(s_val(w.m[i], "k", buf, sizeof buf), "again");
    /* a newer delete wins again, and a newer put after it wins too */
    w.now += 10;
    s_del(&w, 0, "k");
    s_run(&w, 50);
    for (int i = 0; i < 3; i++)
        assert_string_equal(s_val(w.m[i], "k", buf, sizeof buf), "");
    w.now += 10;
    s_put(&w, 1, "k", "back");
    s_run(&w, 50);
    for (int i = 0; i < 3; i++)
        assert_string_equal(s_val(w.m[i], "k", buf, sizeof buf), "back");
    s_net_free(&w);
}

/* A put stamped before a delete (on a clock that never saw the delete)
 * loses to it everywhere. */
static void test_older_put_loses_to_tombstone(void **state)
{
    (void)state;
    kvc_lww_config_t cfg;
    s_cfg_small(&cfg);
    net_t w;
    s_net_init(&w, 2, &cfg, 4);
    w.cut = 1;
    w.side[1] = 1;
    s_put(&w, 0, "k", "v");
    w.now += 50;
    s_del(&w, 0, "k");
    w.now -= 30; /* p1 writes "between" them, unaware */
    s_put(&w, 1, "k", "concurrent");
    w.now += 30;
    w.cut = 0;
    s_run(&w, 2000);
    char buf[64];
    assert_string_equal(s_val(w.m[0], "k", buf, sizeof buf), "");
    assert_string_equal(s_val(w.m[1], "k", buf, sizeof buf), "");
    s_net_free(&w);
}

/* A restarted peer's clock resumes above every persisted stamp, even when
 * its wall clock went back, and it holds exactly what it persisted. */
static void test_hlc_monotonic_across_restart(void **state)
{
    (void)state;
    kvc_lww_config_t cfg;
    s_cfg_small(&cfg);
    net_t w;
    s_net_init(&w, 1, &cfg, 5);
    w.now = 9000000;
    s_put(&w, 0, "a", "1");
    s_put(&w, 0, "b", "2");
    s_del(&w, 0, "a");
    uint64_t before = kvc_lww_hlc(w.m[0]);
    char *d0 = s_dump(w.m[0]);
    kvc_lww_destroy(&w.m[0]);
    w.now = 1000000; /* the wall clock stepped back */
    s_start(&w, 0);
    assert_true(kvc_lww_hlc(w.m[0]) >= before);
    char *d1 = s_dump(w.m[0]);
    assert_string_equal(d0, d1);
    free(d0), free(d1);
    kvc_lww_entry_t e;
    assert_int_equal(kvc_lww_get(w.m[0], (const uint8_t *)"a", 1, &e), KVC_ENOENT);
    assert_true(e.tomb); /* the tombstone came back from disk too */
    assert_false(kvc_lww_needs_persist(w.m[0]));
    s_put(&w, 0, "c", "3");
    assert_int_equal(kvc_lww_get(w.m[0], (const uint8_t *)"c", 1, &e), 0);
    assert_true(e.hlc > before);
    s_net_free(&w);
}

/* The dirty list names exactly the records that changed, local or remote,
 * and is empty after persisted. */
static int s_count_rec(void *arg, const uint8_t *skey, size_t sklen, const uint8_t *rec,
                       size_t rlen)
{
    (void)skey, (void)sklen, (void)rlen;
    int *n = arg;
    n[rec ? 0 : 1]++;
    return 0;
}

static void test_dirty_list(void **state)
{
    (void)state;
    kvc_lww_config_t cfg;
    s_cfg_small(&cfg);
    kvc_lww_t *a = kvc_lww_new(&cfg, "s/a", 50, 1);
    kvc_lww_t *b = kvc_lww_new(&cfg, "s/b", 50, 2);
    const char *ids[] = {"s/a", "s/b"};
    assert_int_equal(kvc_lww_set_peers(a, ids, 2, 0), 0);
    assert_int_equal(kvc_lww_set_peers(b, ids, 2, 0), 0);
    kvc_outbox_t out;
    kvc_outbox_init(&out, 0);
    assert_false(kvc_lww_needs_persist(a));
    assert_int_equal(kvc_lww_put(a, 1000, (const uint8_t *)"x", 1, (const uint8_t *)"1", 1, &out),
                     0);
    assert_int_equal(kvc_lww_put(a, 1000, (const uint8_t *)"x", 1, (const uint8_t *)"2", 1, &out),
                     0);
    assert_int_equal(kvc_lww_put(a, 1000, (const uint8_t *)"y", 1, (const uint8_t *)"3", 1, &out),
                     0);
    assert_true(kvc_lww_needs_persist(a));
    int n[2] = {0, 0};
    kvc_lww_each_dirty(a, s_count_rec, n);
    assert_int_equal(n[0], 2); /* x once, y */
    kvc_lww_persisted(a);
    assert_false(kvc_lww_needs_persist(a));
    /* the pushes make b dirty with the same two records */
    assert_true(out.n_msgs >= 1);
    kvc_outbox_t out2;
    kvc_outbox_init(&out2, 0);
    for (size_t i = 0; i < out.n_msgs; i++)
        assert_int_equal(
            kvc_lww_receive(b, 1001, "s/a", kvc_outbox_data(&out, i), out.msgs[i].len, &out2), 0);
    n[0] = n[1] = 0;
    kvc_lww_each_dirty(b, s_count_rec, n);
    assert_int_equal(n[0], 2);
    kvc_lww_persisted(b);
    /* the same pushes again change nothing */
    for (size_t i = 0; i < out.n_msgs; i++)
        kvc_lww_receive(b, 1002, "s/a", kvc_outbox_data(&out, i), out.msgs[i].len, &out2);
    assert_false(kvc_lww_needs_persist(b));
    kvc_outbox_free(&out);
    kvc_outbox_free(&out2);
    kvc_lww_destroy(&a);
    kvc_lww_destroy(&b);
    assert_null(a);
}

/* Bounds: key and value sizes, the entry count; a refused write changes
 * nothing, and a remote entry refused for room stays with its sender. */
static void test_bounds(void **state)
{
    (void)state;
    kvc_lww_config_t cfg;
    s_cfg_small(&cfg);
    cfg.max_entries = 4;
    net_t w;
    s_net_init(&w, 2, &cfg, 6);
    w.cut = 1;
    w.side[1] = 1;
    s_put(&w, 1, "z", "p1-only");
    uint8_t big[300];
    memset(big, 'k', sizeof big);
    kvc_lww_t *m = w.m[0];
    assert_int_equal(kvc_lww_put(m, w.now, big, 0, big, 1, &w.out), KVC_EINVAL);
    assert_int_equal(kvc_lww_put(m, w.now, big, 256, big, 1, &w.out), KVC_ERANGE);
    assert_int_equal(kvc_lww_put(m, w.now, big, 255, big, 64, &w.out), 0);
    assert_int_equal(kvc_lww_put(m, w.now, big, 255, big, 65, &w.out), KVC_ERANGE);
    s_flush(&w, 0);
    s_put(&w, 0, "a", "1");
    s_put(&w, 0, "b", "2");
    s_put(&w, 0, "c", "3");
    assert_int_equal(
        kvc_lww_put(m, w.now, (const uint8_t *)"d", 1, (const uint8_t *)"4", 1, &w.out),
        KVC_ERANGE);
    assert_int_equal(kvc_lww_del(m, w.now, (const uint8_t *)"d", 1, &w.out), KVC_ERANGE);
    assert_false(kvc_lww_needs_persist(m));
    assert_int_equal(w.out.n_msgs, 0);
    assert_int_equal(kvc_lww_count(m), 4);
    s_put(&w, 0, "a", "updated"); /* an existing key still takes writes */
    s_del(&w, 0, "b");            /* and deletes */
    char buf[64];
    assert_string_equal(s_val(m, "a", buf, sizeof buf), "updated");
    assert_int_equal(kvc_lww_count(m), 3);
    /* p0 is full: p1's z is refused there, and stays at p1 */
    w.cut = 0;
    s_run(&w, 1000);
    kvc_lww_stats_t st;
    kvc_lww_stats(w.m[0], &st);
    assert_true(st.refused_full > 0);
    assert_string_equal(s_val(w.m[0], "z", buf, sizeof buf), "");
    assert_string_equal(s_val(w.m[1], "z", buf, sizeof buf), "p1-only");
    assert_string_equal(s_val(w.m[0], "a", buf, sizeof buf), "updated");
    assert_int_equal(kvc_lww_count(w.m[0]), 3);
    s_net_free(&w);
}

/* Hostile bytes: garbage, truncations, a bad version, a bad writer, an
 * oversized key or value, a wrong bucket count: each is dropped and
 * counted and the map is unchanged. */
static size_t s_pack(Kvc__Lww__Message *m, uint8_t *buf)
{
    m->version = m->version ? m->version : 1;
    return kvc__lww__message__pack(m, buf);
}

static void test_hostile_bytes(void **state)
{
    (void)state;
    kvc_lww_config_t cfg;
    s_cfg_small(&cfg);
    net_t w;
    s_net_init(&w, 2, &cfg, 7);
    s_put(&w, 1, "keep", "me");
    s_run(&w, 50);
    kvc_lww_t *m = w.m[1];
    char *before = s_dump(m);
    kvc_lww_stats_t st0, st1;
    kvc_lww_stats(m, &st0);
    kvc_rng_t r;
    kvc_rng_seed(&r, 42);
    uint8_t junk[512];
    size_t rejected = 0;
    for (int i = 0; i < 2000; i++) {
        size_t n = (size_t)kvc_rng_below(&r, sizeof junk);
        for (size_t k = 0; k < n; k++)
            junk[k] = (uint8_t)kvc_rng_next(&r);
        int rc = kvc_lww_receive(m, w.now, "s/p0", junk, n, &w.out);
        rejected += rc != 0;
    }
    kvc_outbox_reset(&w.out);
    /* crafted: each would apply if it were valid */
    uint8_t buf[20000];
    Kvc__Lww__Entry e = KVC__LWW__ENTRY__INIT;
    Kvc__Lww__Entry *ep = &e;
    Kvc__Lww__Push p = KVC__LWW__PUSH__INIT;
    Kvc__Lww__Message msg = KVC__LWW__MESSAGE__INIT;
    p.n_entries = 1;
    p.entries = &ep;
    msg.body_case = KVC__LWW__MESSAGE__BODY_PUSH;
    msg.push = &p;
    uint8_t key[300];
    memset(key, 'x', sizeof key);
    e.key.data = key;
    e.key.len = 3;
    e.hlc = UINT64_C(1) << 40;
    e.writer = "s/p0";
    e.value.data = key;
    e.value.len = 2;
    size_t good = s_pack(&msg, buf);
    struct {
        const char *what;
        size_t klen, vlen;
        const char *writer;
        uint32_t version;
        uint64_t hlc;
        int tomb;
    } bad[] = {
        {"version", 3, 2, "s/p0", 2, UINT64_C(1) << 40, 0},
        {"writer", 3, 2, "NOT AN ID", 1, UINT64_C(1) << 40, 0},
        {"empty writer on a value", 3, 2, "", 1, UINT64_C(1) << 40, 0},
        {"key too long", 256, 2, "s/p0", 1, UINT64_C(1) << 40, 0},
        {"empty key", 0, 2, "s/p0", 1, UINT64_C(1) << 40, 0},
        {"value too long", 3, 65, "s/p0", 1, UINT64_C(1) << 40, 0},
        {"hlc 0", 3, 2, "s/p0", 1, 0, 0},
        {"hlc huge", 3, 2, "s/p0", 1, UINT64_MAX, 0},
        {"tombstone with a value", 3, 2, "s/p0", 1, UINT64_C(1) << 40, 1},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        e.key.len = bad[i].klen;
        e.value.len = bad[i].vlen;
        e.writer = (char *)bad[i].writer;
        msg.version = bad[i].version;
        e.hlc = bad[i].hlc;
        e.tomb = bad[i].tomb;
        size_t n = s_pack(&msg, buf);
        int rc = kvc_lww_receive(m, w.now, "s/p0", buf, n, &w.out);
        if (rc != KVC_EPARSE)
            fail_msg("%s: rc %d", bad[i].what, rc);
        rejected++;
    }
    /* a digest with 3 buckets */
    uint64_t sums[64] = {0};
    Kvc__Lww__Digest d = KVC__LWW__DIGEST__INIT;
    d.n_buckets = 3;
    d.buckets = sums;
    d.n_horizons = 64;
    d.horizons = sums;
    Kvc__Lww__Message dm = KVC__LWW__MESSAGE__INIT;
    dm.body_case = KVC__LWW__MESSAGE__BODY_DIGEST;
    dm.digest = &d;
    size_t n = s_pack(&dm, buf);
    assert_int_equal(kvc_lww_receive(m, w.now, "s/p0", buf, n, &w.out), KVC_EPARSE);
    rejected++;
    /* oversized: refused before decoding */
    static uint8_t huge[9000];
    assert_int_equal(kvc_lww_receive(m, w.now, "s/p0", huge, sizeof huge, &w.out), KVC_ERANGE);
    rejected++;
    kvc_lww_stats(m, &st1);
    assert_int_equal(st1.dropped - st0.dropped, rejected);
    assert_false(kvc_lww_needs_persist(m));
    char *after = s_dump(m);
    assert_string_equal(before, after);
    free(before), free(after);
    /* control: the well-formed message does apply (from a peer in scope) */
    e.key.len = 3, e.value.len = 2, e.writer = "s/p0", e.hlc = UINT64_C(1) << 40, e.tomb = 0;
    msg.version = 1;
    good = s_pack(&msg, buf);
    assert_int_equal(kvc_lww_receive(m, w.now, "s/p0", buf, good, &w.out), 0);
    assert_int_equal(kvc_lww_count(m), 2);
    /* and from outside scope it is ignored */
    e.key.data = (uint8_t *)"yyy";
    good = s_pack(&msg, buf);
    assert_int_equal(kvc_lww_receive(m, w.now, "s/stranger", buf, good, &w.out), 0);
    assert_int_equal(kvc_lww_count(m), 2);
    kvc_outbox_reset(&w.out);
    s_net_free(&w);
}

/* A push the outbox refuses is retried and arrives: nothing lost. */
static void test_push_retried_after_refusal(void **state)
{
    (void)state;
    kvc_lww_config_t cfg;
    s_cfg_small(&cfg);
    cfg.ae_interval_ms = 3600000; /* only the push can deliver it */
    kvc_lww_t *a = kvc_lww_new(&cfg, "s/a", 50, 1);
    kvc_lww_t *b = kvc_lww_new(&cfg, "s/b", 50, 2);
    const char *ids[] = {"s/a", "s/b"};
    kvc_lww_set_peers(a, ids, 2, 0);
    kvc_lww_set_peers(b, ids, 2, 0);
    kvc_outbox_t tiny, out;
    kvc_outbox_init(&tiny, 16);
    kvc_outbox_init(&out, 0);
    kvc_lww_tick(a, 1000, &out); /* schedules its first round far away */
    kvc_outbox_reset(&out);
    assert_int_equal(
        kvc_lww_put(a, 1000, (const uint8_t *)"k", 1, (const uint8_t *)"value-v", 7, &tiny), 0);
    assert_int_equal(tiny.n_msgs, 0);
    assert_true(tiny.refused > 0);
    kvc_lww_stats_t st;
    kvc_lww_stats(a, &st);
    assert_int_equal(st.push_retries, 1);
    uint64_t d = kvc_lww_next_deadline(a);
    assert_int_equal(d, 1000 + cfg.push_retry_ms);
    kvc_lww_tick(a, d, &out);
    assert_int_equal(out.n_msgs, 1);
    kvc_outbox_t out2;
    kvc_outbox_init(&out2, 0);
    assert_int_equal(
        kvc_lww_receive(b, d + 1, "s/a", kvc_outbox_data(&out, 0), out.msgs[0].len, &out2), 0);
    char buf[64];
    assert_string_equal(s_val(b, "k", buf, sizeof buf), "value-v");
    kvc_outbox_free(&tiny), kvc_outbox_free(&out), kvc_outbox_free(&out2);
    kvc_lww_destroy(&a), kvc_lww_destroy(&b);
}

/* Tombstone GC: never before the minimum age, never while one peer in
 * scope (here: partitioned) has not acknowledged it; then collected on
 * every peer and erased from disk. */
static void test_gc_needs_age_and_every_ack(void **state)
{
    (void)state;
    kvc_lww_config_t cfg;
    s_cfg_small(&cfg);
    net_t w;
    s_net_init(&w, 3, &cfg, 8);
    s_put(&w, 0, "k", "v");
    s_run(&w, 50);
    w.cut = 1;
    w.side[2] = 1; /* p2 cut off, holding "v" */
    s_del(&w, 0, "k");
    s_run(&w, cfg.tomb_min_age_ms * 3); /* old enough, p1 acked, p2 did not */
    kvc_lww_stats_t st;
    for (int i = 0; i < 2; i++) {
        kvc_lww_stats(w.m[i], &st);
        assert_int_equal(st.tombs_collected, 0);
        assert_int_equal(st.tombstones, 1);
    }
    char buf[64];
    assert_string_equal(s_val(w.m[2], "k", buf, sizeof buf), "v");
    w.cut = 0;
    s_run(&w, 5000);
    for (int i = 0; i < 3; i++) {
        assert_string_equal(s_val(w.m[i], "k", buf, sizeof buf), "");
        kvc_lww_stats(w.m[i], &st);
        assert_int_equal(st.tombstones, 0);
        assert_int_equal(st.tombs_collected, 1);
        assert_true(w.disk[i].erased >= 1);
        for (size_t k = 0; k < w.disk[i].n; k++) /* only the horizon left */
            assert_int_equal(w.disk[i].r[k].skey[0], 'h');
    }
    /* young tombstones stay even when everyone acked */
    w.now += 1;
    s_put(&w, 1, "j", "x");
    s_run(&w, 50);
    s_del(&w, 1, "j");
    s_run(&w, cfg.tomb_min_age_ms / 2);
    kvc_lww_stats(w.m[1], &st);
    assert_int_equal(st.tombstones, 1);
    s_net_free(&w);
}

/* A dead peer stays in scope and keeps blocking GC; once set_peers
 * removes it, the tombstone goes. */
static void test_gc_dead_peer_blocks_until_removed(void **state)
{
    (void)state;
    kvc_lww_config_t cfg;
    s_cfg_small(&cfg);
    net_t w;
    s_net_init(&w, 3, &cfg, 14);
    s_put(&w, 0, "k", "v");
    s_run(&w, 50);
    w.up[2] = 0; /* p2 crashed: the others hear it is dead */
    kvc_member_event_t ev = {.type = KVC_MEMBER_EV_DEAD};
    snprintf(ev.id, sizeof ev.id, "%s", w.ids[2]);
    for (int i = 0; i < 2; i++)
        kvc_lww_member_event(w.m[i], w.now, &ev, &w.out);
    s_del(&w, 0, "k");
    s_run(&w, cfg.tomb_min_age_ms * 2);
    kvc_lww_stats_t st;
    kvc_lww_stats(w.m[0], &st);
    assert_int_equal(st.tombstones, 1);
    for (int i = 0; i < 2; i++)
        assert_int_equal(kvc_lww_set_peers(w.m[i], w.idp, 2, w.now), 0);
    s_run(&w, 2000);
    for (int i = 0; i < 2; i++) {
        kvc_lww_stats(w.m[i], &st);
        assert_int_equal(st.tombstones, 0);
        assert_int_equal(st.tombs_collected, 1);
    }
    s_net_free(&w);
}

/* More writes in one millisecond than the 16-bit counter holds: stamps
 * stay strictly increasing (the counter carries into the physical part). */
static void test_hlc_counter_carries(void **state)
{
    (void)state;
    kvc_lww_config_t cfg;
    s_cfg_small(&cfg);
    kvc_lww_t *m = kvc_lww_new(&cfg, "s/a", 50, 1);
    kvc_outbox_t out;
    kvc_outbox_init(&out, 0);
    uint64_t last = 0;
    for (int i = 0; i < 70000; i++) {
        assert_int_equal(
            kvc_lww_put(m, 5000, (const uint8_t *)"k", 1, (const uint8_t *)"v", 1, &out), 0);
        kvc_lww_entry_t e;
        assert_int_equal(kvc_lww_get(m, (const uint8_t *)"k", 1, &e), 0);
        assert_true(e.hlc > last);
        last = e.hlc;
        kvc_lww_persisted(m);
    }
    assert_true(last >> 16 > 5000); /* carried */
    assert_int_equal(kvc_lww_count(m), 1);
    kvc_outbox_free(&out);
    kvc_lww_destroy(&m);
}

/* A peer removed from scope, away while the others collected the
 * tombstone, comes back holding the old value: the horizon refuses it, it
 * is told to delete, and the key stays deleted everywhere. The same after
 * the others restart (the horizon is persisted). */
static void test_rejoin_after_gc_no_resurrection(void **state)
{
    (void)state;
    kvc_lww_config_t cfg;
    s_cfg_small(&cfg);
    net_t w;
    s_net_init(&w, 3, &cfg, 9);
    s_put(&w, 0, "k", "v");
    s_put(&w, 0, "other", "o");
    s_run(&w, 50);
    /* p2 leaves the scope of p0 and p1 (reaped) and is cut off */
    w.cut = 1;
    w.side[2] = 1;
    kvc_lww_set_peers(w.m[0], w.idp, 2, w.now);
    kvc_lww_set_peers(w.m[1], w.idp, 2, w.now);
    s_del(&w, 0, "k");
    s_run(&w, cfg.tomb_min_age_ms * 3);
    kvc_lww_stats_t st;
    kvc_lww_stats(w.m[1], &st);
    assert_int_equal(st.tombs_collected, 1);
    /* restart p0 and p1 from disk: the horizon must survive */
    for (int i = 0; i < 2; i++) {
        kvc_lww_destroy(&w.m[i]);
        s_start(&w, i);
    }
    w.cut = 0; /* p2 is back in everyone's scope with its stale "v" */
    s_run(&w, 5000);
    char buf[64];
    for (int i = 0; i < 3; i++) {
        assert_string_equal(s_val(w.m[i], "k", buf, sizeof buf), "");
        assert_string_equal(s_val(w.m[i], "other", buf, sizeof buf), "o");
    }
    assert_true(s_all_equal(&w));
    uint64_t stale = 0;
    for (int i = 0; i < 2; i++) {
        kvc_lww_stats(w.m[i], &st);
        stale += st.stale;
    }
    assert_true(stale > 0);
    s_net_free(&w);
}

/* Five replicas, random writes and deletes everywhere, 10% loss, a
 * partition {p0,p1} | {p2,p3,p4} healed later, a crash and restart from
 * disk: all converge to identical contents, and every key ends at the
 * highest version ever written for it (so no deleted key resurrects). */
typedef struct {
    char key[8];
    uint64_t hlc;
    char writer[16];
    int tomb;
    char val[16];
} truth_t;

static void test_five_replicas_converge(void **state)
{
    (void)state;
    kvc_lww_config_t cfg;
    s_cfg_small(&cfg);
    net_t w;
    s_net_init(&w, 5, &cfg, 10);
    w.loss = 0.1;
    enum { KEYS = 40 };
    truth_t truth[KEYS];
    memset(truth, 0, sizeof truth);
    kvc_rng_t r;
    kvc_rng_seed(&r, 77);
    uint64_t t0 = w.now;
    for (int step = 0; step < 14000; step++) {
        if (step == 3000) {
            w.cut = 1;
            w.side[0] = w.side[1] = 1;
        }
        if (step == 6000) { /* crash p3; it restarts from disk at 7000 */
            kvc_lww_destroy(&w.m[3]);
            w.up[3] = 0;
        }
        if (step == 7000)
            s_start(&w, 3);
        if (step == 12000)
            w.cut = 0;
        if (step < 14000 && kvc_rng_below(&r, 10) == 0) {
            int i = (int)kvc_rng_below(&r, 5);
            if (!w.up[i])
                continue;
            int k = (int)kvc_rng_below(&r, KEYS);
            char key[8], val[16];
            snprintf(key, sizeof key, "k%d", k);
            int del = kvc_rng_below(&r, 3) == 0;
            snprintf(val, sizeof val, "v%d", step);
            if (del)
                s_del(&w, i, key);
            else
                s_put(&w, i, key, val);
            kvc_lww_entry_t e;
            kvc_lww_get(w.m[i], (const uint8_t *)key, strlen(key), &e);
            truth_t *t = &truth[k];
            int newer = e.hlc > t->hlc || (e.hlc == t->hlc && strcmp(e.writer, t->writer) > 0);
            if (newer) {
                snprintf(t->key, sizeof t->key, "%s", key);
                t->hlc = e.hlc;
                snprintf(t->writer, sizeof t->writer, "%s", e.writer);
                t->tomb = del;
                snprintf(t->val, sizeof t->val, "%s", del ? "" : val);
            }
        }
        s_step(&w);
    }
    /* then quiet until equal */
    uint64_t quiet = w.now;
    int eq = s_all_equal(&w);
    while (!eq && w.now < quiet + 60000) {
        s_run(&w, 10);
        eq = s_all_equal(&w);
    }
    assert_true(eq);
    uint64_t conv = w.now - quiet;
    char buf[64];
    /* twice: when first identical, and after GC had time to collect */
    for (int round = 0; round < 2; round++) {
        for (int k = 0; k < KEYS; k++) {
            if (!truth[k].hlc)
                continue;
            for (int i = 0; i < 5; i++) {
                const char *v = s_val(w.m[i], truth[k].key, buf, sizeof buf);
                if (strcmp(v, truth[k].val) != 0)
                    fail_msg("round %d: p%d %s = '%s', want '%s'", round, i, truth[k].key, v,
                             truth[k].val);
            }
        }
        if (round == 0) {
            s_run(&w, 4 * cfg.tomb_min_age_ms);
            assert_true(s_all_equal(&w));
        }
    }
    uint64_t collected = 0;
    for (int i = 0; i < 5; i++) {
        kvc_lww_stats_t st;
        kvc_lww_stats(w.m[i], &st);
        collected += st.tombs_collected;
    }
    assert_true(collected >= 10); /* GC ran, partition and crash notwithstanding */
    print_message("five replicas: %llu tombstones collected; ", (unsigned long long)collected);
    print_message("identical %llu ms after the last write (%llu after the heal), "
                  "%llu msgs, %llu bytes in %llu simulated ms\n",
                  (unsigned long long)conv, (unsigned long long)(quiet + conv - t0 - 12000),
                  (unsigned long long)w.msgs, (unsigned long long)w.bytes,
                  (unsigned long long)(w.now - t0));
    s_net_free(&w);
}

/* A fresh, empty peer catches up with a full peer; bytes stay within a
 * small multiple of the data. With long keys no bucket's headers fit one
 * message, so only cut (partial) buckets are exchanged, and it must still
 * get there. */
static void s_fresh_peer(size_t keypad, size_t max_mult)
{
    kvc_lww_config_t cfg;
    s_cfg_small(&cfg);
    cfg.max_entries = 4096;
    cfg.msg_max = 4096;
    cfg.value_max = 1024;
    net_t w;
    s_net_init(&w, 2, &cfg, 11);
    w.cut = 1;
    w.side[1] = 1;
    char key[300], val[64];
    char pad[256];
    memset(pad, 'p', keypad);
    pad[keypad] = '\0';
    size_t data = 0;
    for (int i = 0; i < 2000; i++) {
        snprintf(key, sizeof key, "model/%s/%d", pad, i);
        snprintf(val, sizeof val, "value-%d-xxxxxxxxxxxxxxxx", i);
        data += strlen(key) + strlen(val);
        s_put(&w, 0, key, val);
    }
    w.cut = 0;
    w.msgs = w.bytes = 0;
    uint64_t t = w.now;
    while (!s_all_equal(&w) && w.now < t + 120000)
        s_run(&w, 50);
    assert_true(s_all_equal(&w));
    assert_int_equal(kvc_lww_count(w.m[1]), 2000);
    print_message("fresh peer, %zu-byte keys: 2000 entries (%zu B of data) in %llu ms, %llu msgs, "
                  "%llu bytes\n",
                  strlen(key), data, (unsigned long long)(w.now - t), (unsigned long long)w.msgs,
                  (unsigned long long)w.bytes);
    assert_true(w.bytes < max_mult * data);
    s_net_free(&w);
}

static void test_fresh_peer_catches_up(void **state)
{
    (void)state;
    s_fresh_peer(0, 6);
}

static void test_fresh_peer_catches_up_partial_buckets(void **state)
{
    (void)state;
    s_fresh_peer(200, 8);
}

/* --- the sub-bucket digest level -------------------------------------------- */

/* A config where every bucket holds more than SUB_MIN entries. */
static void s_cfg_subs(kvc_lww_config_t *cfg)
{
    s_cfg_small(cfg);
    cfg->max_entries = 4096;
    cfg->value_max = 1024;
    cfg->msg_max = 65536;
}

/* FNV-1a 64 of a key, as the core hashes it (its digest bucket is the low
 * 6 bits). */
static unsigned s_bucket(const char *key)
{
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (const char *c = key; *c; c++) {
        h ^= (uint8_t)*c;
        h *= UINT64_C(0x100000001b3);
    }
    return (unsigned)(h & 63);
}

/* Two replicas of 1500 entries drift apart by a handful of writes on each
 * side (puts, a delete, a new key) during a partition: after the heal they
 * are identical again, the sub-bucket level was used, and the bytes moved
 * are a fraction of what one exchange of every header would cost. */
static void test_sub_digest_few_differ(void **state)
{
    (void)state;
    kvc_lww_config_t cfg;
    s_cfg_subs(&cfg);
    net_t w;
    s_net_init(&w, 2, &cfg, 21);
    char key[32], val[200];
    memset(val, 'v', sizeof val - 1);
    val[sizeof val - 1] = '\0';
    size_t headers = 0;
    for (int i = 0; i < 1500; i++) {
        snprintf(key, sizeof key, "model/m%d", i);
        headers += strlen(key) + strlen(w.ids[0]) + 12;
        s_put(&w, 0, key, val);
    }
    s_run(&w, 2000);
    assert_true(s_all_equal(&w));
    w.cut = 1;
    w.side[1] = 1;
    for (int i = 0; i < 6; i++) {
        snprintf(key, sizeof key, "model/m%d", i * 97);
        val[0] = (char)('a' + i);
        s_put(&w, i % 2, key, val);
    }
    s_del(&w, 0, "model/m5");
    s_put(&w, 1, "model/new", "fresh");
    s_run(&w, 100);
    assert_false(s_all_equal(&w));
    w.cut = 0;
    w.msgs = w.bytes = 0;
    uint64_t t = w.now;
    while (!s_all_equal(&w) && w.now < t + 20000)
        s_run(&w, 10);
    assert_true(s_all_equal(&w));
    char buf[256];
    assert_string_equal(s_val(w.m[1], "model/m5", buf, sizeof buf), "");
    assert_string_equal(s_val(w.m[0], "model/new", buf, sizeof buf), "fresh");
    kvc_lww_stats_t a, b;
    kvc_lww_stats(w.m[0], &a);
    kvc_lww_stats(w.m[1], &b);
    assert_true(a.sub_buckets + b.sub_buckets > 0);
    print_message("sub-buckets: 8 differing of 1501 entries repaired in %llu ms with %llu bytes "
                  "(every header once: %zu)\n",
                  (unsigned long long)(w.now - t), (unsigned long long)w.bytes, headers);
    assert_true(w.bytes * 4 < headers);
    s_net_free(&w);
}

/* Unpacks the one message in out (the caller frees it). */
static Kvc__Lww__Message *s_only_msg(kvc_outbox_t *out)
{
    assert_int_equal(out->n_msgs, 1);
    Kvc__Lww__Message *r =
        kvc__lww__message__unpack(NULL, out->msgs[0].len, kvc_outbox_data(out, 0));
    assert_non_null(r);
    return r;
}

/* A Digest without `sub` (an older peer) is answered with headers only;
 * with it, big buckets are answered with 64 sub-bucket hashes each. */
static void test_sub_digest_only_when_asked(void **state)
{
    (void)state;
    kvc_lww_config_t cfg;
    s_cfg_subs(&cfg);
    kvc_lww_t *m = kvc_lww_new(&cfg, "s/a", KVC_LWW_CHANNEL_REGISTRY, 1);
    const char *ids[] = {"s/a", "s/b"};
    assert_int_equal(kvc_lww_set_peers(m, ids, 2, 0), 0);
    kvc_outbox_t out;
    kvc_outbox_init(&out, 0);
    char key[32];
    for (int i = 0; i < 1500; i++) {
        snprintf(key, sizeof key, "k%d", i);
        assert_int_equal(
            kvc_lww_put(m, 1000, (const uint8_t *)key, strlen(key), (const uint8_t *)"v", 1, &out),
            0);
    }
    kvc_outbox_reset(&out);
    uint64_t ones[64], zeros[64] = {0};
    for (int i = 0; i < 64; i++)
        ones[i] = 1;
    uint8_t buf[4096];
    for (int sub = 0; sub < 2; sub++) {
        Kvc__Lww__Digest d = KVC__LWW__DIGEST__INIT;
        d.hlc = 1;
        d.n_buckets = 64;
        d.buckets = ones;
        d.n_horizons = 64;
        d.horizons = zeros;
        d.sub = (uint32_t)sub;
        Kvc__Lww__Message dm = KVC__LWW__MESSAGE__INIT;
        dm.body_case = KVC__LWW__MESSAGE__BODY_DIGEST;
        dm.digest = &d;
        size_t n = s_pack(&dm, buf);
        assert_int_equal(kvc_lww_receive(m, 2000, "s/b", buf, n, &out), 0);
        Kvc__Lww__Message *r = s_only_msg(&out);
        assert_int_equal(r->body_case, KVC__LWW__MESSAGE__BODY_HEADERS);
        const Kvc__Lww__BucketHeaders *h = r->headers;
        if (!sub) {
            assert_int_equal(h->n_sub_buckets, 0);
            assert_true(h->n_headers > 0);
        } else {
            assert_int_equal(h->n_sub_buckets, 64); /* every bucket holds > 8 */
            assert_int_equal(h->n_sub_hashes, 64 * 64);
            assert_int_equal(h->n_headers, 0);
            assert_int_equal(h->next, 64);
        }
        kvc__lww__message__free_unpacked(r, NULL);
        kvc_outbox_reset(&out);
    }
    /* an empty bucket at the asker (a fresh peer) gets headers, not hashes */
    Kvc__Lww__Digest d = KVC__LWW__DIGEST__INIT;
    d.hlc = 1;
    d.n_buckets = 64;
    d.buckets = zeros;
    d.n_horizons = 64;
    d.horizons = zeros;
    d.sub = 1;
    Kvc__Lww__Message dm = KVC__LWW__MESSAGE__INIT;
    dm.body_case = KVC__LWW__MESSAGE__BODY_DIGEST;
    dm.digest = &d;
    size_t n = s_pack(&dm, buf);
    assert_int_equal(kvc_lww_receive(m, 2000, "s/b", buf, n, &out), 0);
    Kvc__Lww__Message *r = s_only_msg(&out);
    assert_int_equal(r->headers->n_sub_buckets, 0);
    assert_true(r->headers->n_headers > 0);
    kvc__lww__message__free_unpacked(r, NULL);
    kvc_outbox_free(&out);
    kvc_lww_destroy(&m);
}

/* Packs a BucketHeaders from buckets/horizons and the sub fields. */
static size_t s_pack_bh(uint8_t *buf, uint64_t *buckets, uint64_t *horizons, uint32_t *sub_b,
                        size_t n_sub, uint32_t *sub_h, size_t n_sub_h, uint32_t *cov, size_t n_cov,
                        Kvc__Lww__Header **hs, size_t n_h)
{
    Kvc__Lww__BucketHeaders bh = KVC__LWW__BUCKET_HEADERS__INIT;
    bh.hlc = 1;
    bh.n_buckets = 64;
    bh.buckets = buckets;
    bh.n_horizons = 64;
    bh.horizons = horizons;
    bh.next = 64;
    bh.n_sub_buckets = n_sub;
    bh.sub_buckets = sub_b;
    bh.n_sub_hashes = n_sub_h;
    bh.sub_hashes = sub_h;
    bh.n_covered_sub = n_cov;
    bh.covered_sub = cov;
    bh.n_headers = n_h;
    bh.headers = hs;
    Kvc__Lww__Message dm = KVC__LWW__MESSAGE__INIT;
    dm.body_case = KVC__LWW__MESSAGE__BODY_HEADERS;
    dm.headers = &bh;
    return s_pack(&dm, buf);
}

/* Malformed sub-bucket fields are refused whole; a header in a covered
 * sub-bucket is accepted, one outside it is not. */
static void test_sub_digest_hostile(void **state)
{
    (void)state;
    kvc_lww_config_t cfg;
    s_cfg_subs(&cfg);
    kvc_lww_t *m = kvc_lww_new(&cfg, "s/a", KVC_LWW_CHANNEL_REGISTRY, 1);
    const char *ids[] = {"s/a", "s/b"};
    assert_int_equal(kvc_lww_set_peers(m, ids, 2, 0), 0);
    kvc_outbox_t out;
    kvc_outbox_init(&out, 0);
    uint64_t zeros[64] = {0};
    static uint32_t hashes[64 * 65];
    static uint8_t buf[40000];
    uint32_t two[2] = {3, 3}, big[1] = {64}, one[1] = {5};
    assert_int_equal(
        kvc_lww_receive(m, 1, "s/b", buf,
                        s_pack_bh(buf, zeros, zeros, one, 1, hashes, 63, NULL, 0, NULL, 0), &out),
        KVC_EPARSE); /* 63 hashes for one bucket */
    assert_int_equal(
        kvc_lww_receive(m, 1, "s/b", buf,
                        s_pack_bh(buf, zeros, zeros, two, 2, hashes, 128, NULL, 0, NULL, 0), &out),
        KVC_EPARSE); /* a bucket twice */
    assert_int_equal(
        kvc_lww_receive(m, 1, "s/b", buf,
                        s_pack_bh(buf, zeros, zeros, big, 1, hashes, 64, NULL, 0, NULL, 0), &out),
        KVC_EPARSE); /* bucket 64 */
    uint32_t cov_bad[1] = {64 * 64};
    assert_int_equal(
        kvc_lww_receive(m, 1, "s/b", buf,
                        s_pack_bh(buf, zeros, zeros, NULL, 0, NULL, 0, cov_bad, 1, NULL, 0), &out),
        KVC_EPARSE); /* sub-bucket 4096 */
    /* a header of key "x": in its own sub-bucket it is fine, elsewhere not */
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    h = (h ^ 'x') * UINT64_C(0x100000001b3);
    uint32_t sub_id = (uint32_t)(h & 63) * 64 + (uint32_t)((h >> 6) & 63);
    Kvc__Lww__Header x = KVC__LWW__HEADER__INIT, *xp = &x;
    x.key.data = (uint8_t *)"x";
    x.key.len = 1;
    x.hlc = UINT64_C(1) << 40;
    x.writer = "s/b";
    uint32_t cov_other[1] = {sub_id ^ 1};
    assert_int_equal(
        kvc_lww_receive(m, 1, "s/b", buf,
                        s_pack_bh(buf, zeros, zeros, NULL, 0, NULL, 0, cov_other, 1, &xp, 1), &out),
        KVC_EPARSE);
    kvc_lww_stats_t st;
    kvc_lww_stats(m, &st);
    assert_int_equal(st.dropped, 5);
    uint32_t cov_ok[1] = {sub_id};
    assert_int_equal(
        kvc_lww_receive(m, 1, "s/b", buf,
                        s_pack_bh(buf, zeros, zeros, NULL, 0, NULL, 0, cov_ok, 1, &xp, 1), &out),
        0);
    Kvc__Lww__Message *r = s_only_msg(&out); /* we want x */
    assert_int_equal(r->body_case, KVC__LWW__MESSAGE__BODY_WANT);
    assert_int_equal(r->want->n_keys, 1);
    kvc__lww__message__free_unpacked(r, NULL);
    kvc_outbox_free(&out);
    kvc_lww_destroy(&m);
}

/* Sub-bucket hashes are never a GC acknowledgement: a peer that showed
 * sub-hashes equal to ours but a differing bucket hash blocks the
 * collection of a tombstone in that bucket; an equal bucket hash lets it
 * go. */
static void test_sub_digest_is_no_gc_ack(void **state)
{
    (void)state;
    kvc_lww_config_t cfg;
    s_cfg_subs(&cfg);
    kvc_lww_t *m = kvc_lww_new(&cfg, "s/a", KVC_LWW_CHANNEL_REGISTRY, 1);
    const char *ids[] = {"s/a", "s/b"};
    assert_int_equal(kvc_lww_set_peers(m, ids, 2, 0), 0);
    kvc_outbox_t out;
    kvc_outbox_init(&out, 0);
    char key[32];
    for (int i = 0; i < 1500; i++) {
        snprintf(key, sizeof key, "k%d", i);
        assert_int_equal(
            kvc_lww_put(m, 1000, (const uint8_t *)key, strlen(key), (const uint8_t *)"v", 1, &out),
            0);
    }
    assert_int_equal(kvc_lww_del(m, 1000, (const uint8_t *)"dead", 4, &out), 0);
    kvc_outbox_reset(&out);
    unsigned tb = s_bucket("dead");
    /* learn our own hashes: ask with all buckets differing */
    uint64_t ones[64], zeros[64] = {0}, ours[64];
    for (int i = 0; i < 64; i++)
        ones[i] = 1;
    static uint8_t buf[40000];
    Kvc__Lww__Digest d = KVC__LWW__DIGEST__INIT;
    d.hlc = 1;
    d.n_buckets = 64;
    d.buckets = ones;
    d.n_horizons = 64;
    d.horizons = zeros;
    d.sub = 1;
    Kvc__Lww__Message dm = KVC__LWW__MESSAGE__INIT;
    dm.body_case = KVC__LWW__MESSAGE__BODY_DIGEST;
    dm.digest = &d;
    size_t n = s_pack(&dm, buf);
    assert_int_equal(kvc_lww_receive(m, 2000, "s/b", buf, n, &out), 0);
    Kvc__Lww__Message *r = s_only_msg(&out);
    const Kvc__Lww__BucketHeaders *h = r->headers;
    assert_int_equal(h->n_sub_buckets, 64);
    memcpy(ours, h->buckets, sizeof ours);
    static uint32_t subs[64 * 64];
    uint32_t sb[64];
    memcpy(subs, h->sub_hashes, sizeof subs);
    memcpy(sb, h->sub_buckets, sizeof sb);
    kvc__lww__message__free_unpacked(r, NULL);
    kvc_outbox_reset(&out);
    /* every sub-bucket hash equal, every bucket hash not */
    n = s_pack_bh(buf, ones, zeros, sb, 64, subs, 64 * 64, NULL, 0, NULL, 0);
    assert_int_equal(kvc_lww_receive(m, 3000, "s/b", buf, n, &out), 0);
    kvc_outbox_reset(&out);
    uint64_t later = 1000 + cfg.tomb_min_age_ms + 10000;
    for (int i = 0; i < 3; i++) {
        kvc_lww_tick(m, later + (uint64_t)i * 1000, &out);
        kvc_outbox_reset(&out);
    }
    kvc_lww_stats_t st;
    kvc_lww_stats(m, &st);
    assert_int_equal(st.tombs_collected, 0);
    /* now the bucket of the tombstone equal (and only it) */
    uint64_t eq[64];
    memcpy(eq, ones, sizeof eq);
    eq[tb] = ours[tb];
    n = s_pack_bh(buf, eq, zeros, NULL, 0, NULL, 0, NULL, 0, NULL, 0);
    assert_int_equal(kvc_lww_receive(m, later + 3000, "s/b", buf, n, &out), 0);
    kvc_outbox_reset(&out);
    for (int i = 0; i < 3; i++) {
        kvc_lww_tick(m, later + 4000 + (uint64_t)i * 1000, &out);
        kvc_outbox_reset(&out);
    }
    kvc_lww_stats(m, &st);
    assert_int_equal(st.tombs_collected, 1);
    kvc_outbox_free(&out);
    kvc_lww_destroy(&m);
}

/* Member events: a dead peer is owed no push; back alive it gets an
 * anti-entropy round at once. */
static void test_member_events(void **state)
{
    (void)state;
    kvc_lww_config_t cfg;
    s_cfg_small(&cfg);
    cfg.ae_interval_ms = 3600000;
    kvc_lww_t *a = kvc_lww_new(&cfg, "s/a", 41, 1);
    const char *ids[] = {"s/a", "s/b"};
    kvc_lww_set_peers(a, ids, 2, 0);
    kvc_outbox_t out;
    kvc_outbox_init(&out, 0);
    kvc_lww_tick(a, 1000, &out);
    kvc_member_event_t ev = {.type = KVC_MEMBER_EV_DEAD};
    snprintf(ev.id, sizeof ev.id, "s/b");
    kvc_lww_member_event(a, 1000, &ev, &out);
    kvc_lww_put(a, 1000, (const uint8_t *)"k", 1, (const uint8_t *)"v", 1, &out);
    assert_int_equal(out.n_msgs, 0);
    ev.type = KVC_MEMBER_EV_ALIVE;
    kvc_lww_member_event(a, 2000, &ev, &out);
    assert_int_equal(kvc_lww_next_deadline(a), 2000);
    kvc_lww_tick(a, 2000, &out);
    assert_int_equal(out.n_msgs, 1); /* a digest to s/b */
    assert_string_equal(out.msgs[0].to, "s/b");
    assert_int_equal(out.msgs[0].channel, 41);
    const kvc_core_ops_t *ops = kvc_lww_core_ops_of(a);
    assert_int_equal(ops->channel, 41);
    kvc_core_set_t set;
    kvc_core_set_init(&set);
    assert_int_equal(kvc_core_set_add(&set, ops, a), 0);
    assert_ptr_equal(kvc_core_set_find(&set, 41)->core, a);
    /* a second instance on the registry channel registers beside it and
     * gets the messages of its channel only */
    kvc_lww_t *reg = kvc_lww_new(&cfg, "s/a", KVC_LWW_CHANNEL_REGISTRY, 2);
    kvc_lww_set_peers(reg, ids, 2, 0);
    assert_int_equal(kvc_core_set_add(&set, kvc_lww_core_ops_of(reg), reg), 0);
    assert_int_equal(kvc_core_set_add(&set, kvc_lww_core_ops_of(reg), reg), KVC_EEXIST);
    kvc_lww_t *b = kvc_lww_new(&cfg, "s/b", KVC_LWW_CHANNEL_REGISTRY, 3);
    kvc_lww_set_peers(b, ids, 2, 0);
    kvc_outbox_t bo;
    kvc_outbox_init(&bo, 0);
    kvc_lww_put(b, 3000, (const uint8_t *)"model", 5, (const uint8_t *)"m", 1, &bo);
    assert_int_equal(bo.n_msgs, 1);
    kvc_outbox_reset(&out);
    assert_int_equal(kvc_core_set_receive(&set, bo.msgs[0].channel, 3001, "s/b",
                                          kvc_outbox_data(&bo, 0), bo.msgs[0].len, &out),
                     0);
    assert_int_equal(kvc_lww_count(reg), 1);
    assert_int_equal(kvc_lww_count(a), 1); /* only its own "k" */
    assert_int_equal(kvc_lww_get(a, (const uint8_t *)"model", 5, NULL), KVC_ENOENT);
    kvc_outbox_free(&bo);
    kvc_lww_destroy(&b);
    kvc_lww_destroy(&reg);
    kvc_outbox_free(&out);
    kvc_lww_destroy(&a);
}

/* Allocation failures anywhere in put, or in the handling of any message
 * of an anti-entropy exchange, leave a consistent map that converges. */
static void test_alloc_failures(void **state)
{
    (void)state;
    kvc_lww_config_t cfg;
    s_cfg_small(&cfg);
    for (long fail = 0; fail < 40; fail++) {
        net_t w;
        s_net_init(&w, 2, &cfg, 12);
        s_put(&w, 0, "a", "1");
        kvc_alloc_fail_after(fail);
        int rc =
            kvc_lww_put(w.m[0], w.now, (const uint8_t *)"b", 1, (const uint8_t *)"2", 1, &w.out);
        kvc_alloc_fail_after(-1);
        assert_true(rc == 0 || rc == KVC_ENOMEM);
        s_flush(&w, 0);
        s_run(&w, 2000);
        assert_true(s_all_equal(&w));
        s_net_free(&w);
    }
    uint64_t enomem = 0;
    for (long fail = 0; fail < 12; fail++)
        for (int arm = 0; arm < 400; arm += 23) {
            net_t w;
            s_net_init(&w, 2, &cfg, 13 + (uint64_t)arm);
            w.cut = 1;
            w.side[1] = 1;
            char key[16];
            for (int i = 0; i < 20; i++) {
                snprintf(key, sizeof key, "k%d", i);
                s_put(&w, i % 2, key, i % 3 ? "x" : "y");
            }
            s_del(&w, 0, "k0");
            w.cut = 0;
            s_run(&w, (uint64_t)arm);
            w.fail_next = fail; /* whichever message arrives next */
            s_run(&w, 3000);
            assert_true(s_all_equal(&w));
            assert_int_equal(kvc_lww_count(w.m[0]), 19);
            enomem += w.enomem;
            s_net_free(&w);
        }
    assert_true(enomem > 0); /* the failures did hit decoding and handling */
}

/* Skewed clocks: p1's wall clock is 10 s behind p0's. A write p1 makes
 * after it received p0's write is stamped above it (its HLC was raised on
 * receipt), so the causally later write wins at both, although its wall
 * clock says earlier; a write p1 makes without having heard p0's (its
 * clock behind, concurrent) loses to the higher stamp, deterministically. */
static void test_skewed_clocks(void **state)
{
    (void)state;
    kvc_lww_config_t cfg;
    s_cfg_small(&cfg);
    const char *ids[2] = {"s/p0", "s/p1"};
    kvc_lww_t *m[2];
    kvc_outbox_t out;
    kvc_outbox_init(&out, 0);
    uint64_t now[2] = {1700000010000ull, 1700000000000ull};
    for (int i = 0; i < 2; i++) {
        m[i] = kvc_lww_new(&cfg, ids[i], KVC_LWW_CHANNEL_REGISTRY, 7 + (uint64_t)i);
        assert_non_null(m[i]);
        assert_int_equal(kvc_lww_set_peers(m[i], ids, 2, now[i]), 0);
    }
    /* delivers everything in out from `from` to the other */
    #define DELIVER(from)                                                                  \
        do {                                                                               \
            kvc_outbox_t copy;                                                             \
            kvc_outbox_init(&copy, 0);                                                     \
            for (size_t i_ = 0; i_ < out.n_msgs; i_++)                                     \
                assert_int_equal(kvc_outbox_put(&copy, out.msgs[i_].to, out.msgs[i_].channel, \
                                                kvc_outbox_data(&out, i_), out.msgs[i_].len), \
                                 0);                                                       \
            kvc_outbox_reset(&out);                                                        \
            for (size_t i_ = 0; i_ < copy.n_msgs; i_++)                                    \
                kvc_lww_receive(m[1 - (from)], now[1 - (from)], ids[from],                 \
                                kvc_outbox_data(&copy, i_), copy.msgs[i_].len, &out);      \
            kvc_outbox_free(&copy);                                                        \
        } while (0)
    assert_int_equal(kvc_lww_put(m[0], now[0], (const uint8_t *)"k", 1, (const uint8_t *)"a", 1,
                                 &out),
                     0);
    DELIVER(0);
    kvc_outbox_reset(&out); /* the answers p1 made while receiving are not needed */
    kvc_lww_entry_t e0, e1;
    assert_int_equal(kvc_lww_get(m[1], (const uint8_t *)"k", 1, &e1), 0);
    assert_true(kvc_lww_hlc(m[1]) >= e1.hlc); /* p1's clock was raised */
    assert_true(e1.hlc >> 16 > now[1]);        /* above its own wall clock */
    now[1] += 5; /* still ~10 s behind */
    assert_int_equal(kvc_lww_put(m[1], now[1], (const uint8_t *)"k", 1, (const uint8_t *)"b", 1,
                                 &out),
                     0);
    DELIVER(1);
    for (int i = 0; i < 2; i++) {
        kvc_lww_entry_t e;
        assert_int_equal(kvc_lww_get(m[i], (const uint8_t *)"k", 1, &e), 0);
        assert_memory_equal(e.value, "b", 1);
        assert_string_equal(e.writer, "s/p1");
    }
    /* concurrent: p1 writes "x" without hearing p0's newer "c" */
    now[0] += 10;
    assert_int_equal(kvc_lww_put(m[0], now[0], (const uint8_t *)"j", 1, (const uint8_t *)"c", 1,
                                 &out),
                     0);
    kvc_outbox_t held;
    kvc_outbox_init(&held, 0);
    for (size_t i = 0; i < out.n_msgs; i++)
        assert_int_equal(kvc_outbox_put(&held, out.msgs[i].to, out.msgs[i].channel,
                                        kvc_outbox_data(&out, i), out.msgs[i].len),
                         0);
    kvc_outbox_reset(&out);
    now[1] += 10;
    assert_int_equal(kvc_lww_put(m[1], now[1], (const uint8_t *)"j", 1, (const uint8_t *)"x", 1,
                                 &out),
                     0);
    DELIVER(1);
    for (size_t i = 0; i < held.n_msgs; i++)
        kvc_lww_receive(m[1], now[1], ids[0], kvc_outbox_data(&held, i), held.msgs[i].len, &out);
    kvc_outbox_reset(&out);
    assert_int_equal(kvc_lww_get(m[0], (const uint8_t *)"j", 1, &e0), 0);
    assert_int_equal(kvc_lww_get(m[1], (const uint8_t *)"j", 1, &e1), 0);
    /* both agree, on the write with the higher stamp: p0's, whose clock is ahead */
    assert_int_equal(e0.hlc, e1.hlc);
    assert_memory_equal(e0.value, "c", 1);
    assert_memory_equal(e1.value, "c", 1);
    #undef DELIVER
    kvc_outbox_free(&held);
    kvc_outbox_free(&out);
    for (int i = 0; i < 2; i++)
        kvc_lww_destroy(&m[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tie_break_by_writer),
        cmocka_unit_test(test_later_wins),
        cmocka_unit_test(test_tombstone_order),
        cmocka_unit_test(test_older_put_loses_to_tombstone),
        cmocka_unit_test(test_hlc_monotonic_across_restart),
        cmocka_unit_test(test_dirty_list),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_hostile_bytes),
        cmocka_unit_test(test_push_retried_after_refusal),
        cmocka_unit_test(test_gc_needs_age_and_every_ack),
        cmocka_unit_test(test_gc_dead_peer_blocks_until_removed),
        cmocka_unit_test(test_hlc_counter_carries),
        cmocka_unit_test(test_rejoin_after_gc_no_resurrection),
        cmocka_unit_test(test_five_replicas_converge),
        cmocka_unit_test(test_fresh_peer_catches_up),
        cmocka_unit_test(test_fresh_peer_catches_up_partial_buckets),
        cmocka_unit_test(test_sub_digest_few_differ),
        cmocka_unit_test(test_sub_digest_only_when_asked),
        cmocka_unit_test(test_sub_digest_hostile),
        cmocka_unit_test(test_sub_digest_is_no_gc_ack),
        cmocka_unit_test(test_member_events),
        cmocka_unit_test(test_alloc_failures),
        cmocka_unit_test(test_skewed_clocks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
