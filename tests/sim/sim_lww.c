/*
 * sim_lww.c - `kvc-sim --scenario lww`: N peers each running the unchanged
 * replicated map core (federation/lww.c) with every other peer in scope
 * (the model registry's shape), on a simulated wall clock stepped one
 * millisecond at a time, over a network with latency and loss. A fraction
 * of the peers is cut off from the rest for a while; both sides keep
 * writing and deleting; then the partition heals. The harness honours the
 * durability contract (persist, then send) with an in-memory disk per peer.
 *
 * It measures converge_ms for every write (until every peer holds that
 * version or a newer one; writes made across the partition included, so
 * the tail shows the partition), heal_ms (heal until every peer's contents
 * are identical), and bytes. Invariants, checked at the end: identical
 * contents everywhere, every key at the highest version written for it,
 * and no resurrection (a key whose last write was a delete live anywhere).
 * Everything random comes from --seed.
 */
#include "sim_lww.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "lww.h"
#include "rng.h"

#define KEYS_MAX 100000

typedef struct {
    uint64_t at;
    int from, to;
    size_t len;
    uint8_t *data;
} lmsg_t;

typedef struct {
    uint64_t hlc;
    char writer[32];
    int tomb;
    int used;
} truth_t;

typedef struct {
    int key;
    uint64_t hlc;
    char writer[32];
    uint64_t t;
    int tomb;
    int across; /* written while partitioned */
} pending_t;

typedef struct {
    int n, keys, json;
    double loss, frac, wps;
    uint64_t duration, part_at, heal_at, seed;
    kvc_lww_config_t cfg;
    kvc_rng_t rng;
    kvc_outbox_t out;
    kvc_lww_t **m;
    char (*ids)[24];
    const char **idp;
    int *side;
    int cut;
    lmsg_t *q;
    size_t nq, capq;
    uint64_t now, t0;
    uint64_t bytes, msgs, bytes_after_heal;
    truth_t *truth;
    pending_t *pend;
    size_t npend, cappend;
    uint64_t *conv;
    size_t nconv, capconv;
    uint64_t *conv_in; /* writes made while no partition stood */
    size_t nconv_in, capconv_in;
} lsim_t;

/* The disk is not kept: a peer persists (the contract is honoured) but
 * never restarts in this scenario, so records are only counted. */
static int s_persist(void *arg, const uint8_t *skey, size_t sklen, const uint8_t *rec, size_t rlen)
{
    (void)skey, (void)sklen, (void)rec, (void)rlen;
    (*(uint64_t *)arg)++;
    return 0;
}

static uint64_t s_records;

/* Persists peer i's changes, then puts its outbox on the network. */
static int s_flush(lsim_t *s, int i)
{
    if (kvc_lww_needs_persist(s->m[i])) {
        kvc_lww_each_dirty(s->m[i], s_persist, &s_records);
        kvc_lww_persisted(s->m[i]);
    }
    for (size_t k = 0; k < s->out.n_msgs; k++) {
        const kvc_out_msg_t *om = &s->out.msgs[k];
        int64_t to64 = -1; /* "r/pN" */
        if (strncmp(om->to, "r/p", 3) != 0 || kvc_parse_i64(om->to + 3, 0, s->n - 1, &to64) != 0)
            return -1;
        int to = (int)to64;
        s->msgs++;
        s->bytes += om->len;
        if (s->now >= s->heal_at)
            s->bytes_after_heal += om->len;
        if (kvc_rng_double(&s->rng) < s->loss)
            continue;
        if (s->cut && s->side[i] != s->side[to])
            continue;
        if (s->nq == s->capq) {
            size_t cap = s->capq ? 2 * s->capq : 1024;
            lmsg_t *q = realloc(s->q, cap * sizeof *q);
            if (!q)
                return -1;
            s->q = q;
            s->capq = cap;
        }
        lmsg_t *q = &s->q[s->nq++];
        q->at = s->now + 5 + kvc_rng_below(&s->rng, 36); /* 5..40 ms */
        q->from = i;
        q->to = to;
        q->len = om->len;
        q->data = malloc(om->len ? om->len : 1);
        if (!q->data)
            return -1;
        memcpy(q->data, kvc_outbox_data(&s->out, k), om->len);
    }
    kvc_outbox_reset(&s->out);
    return 0;
}

/* Does peer i hold a version of key k at least (hlc, writer)? */
static int s_holds(lsim_t *s, int i, int k, uint64_t hlc, const char *writer, int tomb)
{
    char key[16];
    snprintf(key, sizeof key, "m/%d", k);
    kvc_lww_entry_t e;
    memset(&e, 0, sizeof e);
    int rc = kvc_lww_get(s->m[i], (const uint8_t *)key, strlen(key), &e);
    if (rc != 0 && !e.tomb)
        return tomb; /* absent: as good as a delete (its tombstone may be collected) */
    return e.hlc > hlc || (e.hlc == hlc && strcmp(e.writer, writer) >= 0);
}

/* Retires the pending writes every peer now holds. */
static int s_check_pending(lsim_t *s)
{
    for (size_t p = 0; p < s->npend;) {
        pending_t *w = &s->pend[p];
        int all = 1;
        for (int i = 0; i < s->n && all; i++)
            all = s_holds(s, i, w->key, w->hlc, w->writer, w->tomb);
        if (!all) {
            p++;
            continue;
        }
        if (s->nconv == s->capconv) {
            size_t cap = s->capconv ? 2 * s->capconv : 1024;
            uint64_t *c = realloc(s->conv, cap * sizeof *c);
            if (!c)
                return -1;
            s->conv = c;
            s->capconv = cap;
        }
        s->conv[s->nconv++] = s->now - w->t;
        if (!w->across) {
            if (s->nconv_in == s->capconv_in) {
                size_t cap = s->capconv_in ? 2 * s->capconv_in : 1024;
                uint64_t *c = realloc(s->conv_in, cap * sizeof *c);
                if (!c)
                    return -1;
                s->conv_in = c;
                s->capconv_in = cap;
            }
            s->conv_in[s->nconv_in++] = s->now - w->t;
        }
        s->pend[p] = s->pend[--s->npend];
    }
    return 0;
}

/* One random write or delete at a random peer. */
static int s_write(lsim_t *s)
{
    int i = (int)kvc_rng_below(&s->rng, (uint64_t)s->n);
    int k = (int)kvc_rng_below(&s->rng, (uint64_t)s->keys);
    char key[16], val[48];
    snprintf(key, sizeof key, "m/%d", k);
    int del = kvc_rng_below(&s->rng, 4) == 0;
    int vlen = snprintf(val, sizeof val, "model %d v%" PRIu64 " nfs://x/%d", k, s->now, i);
    int rc = del ? kvc_lww_del(s->m[i], s->now, (const uint8_t *)key, strlen(key), &s->out)
                 : kvc_lww_put(s->m[i], s->now, (const uint8_t *)key, strlen(key),
                               (const uint8_t *)val, (size_t)vlen, &s->out);
    if (rc != 0)
        return rc == KVC_ERANGE ? 0 : -1;
    kvc_lww_entry_t e;
    kvc_lww_get(s->m[i], (const uint8_t *)key, strlen(key), &e);
    truth_t *t = &s->truth[k];
    if (!t->used || e.hlc > t->hlc || (e.hlc == t->hlc && strcmp(e.writer, t->writer) > 0)) {
        t->used = 1;
        t->hlc = e.hlc;
        snprintf(t->writer, sizeof t->writer, "%s", e.writer);
        t->tomb = del;
    }
    if (s->npend == s->cappend) {
        size_t cap = s->cappend ? 2 * s->cappend : 1024;
        pending_t *p = realloc(s->pend, cap * sizeof *p);
        if (!p)
            return -1;
        s->pend = p;
        s->cappend = cap;
    }
    pending_t *p = &s->pend[s->npend++];
    p->key = k;
    p->hlc = e.hlc;
    snprintf(p->writer, sizeof p->writer, "%s", e.writer);
    p->t = s->now;
    p->tomb = del;
    p->across = s->cut;
    return s_flush(s, i);
}

/* One millisecond: deliveries, then due ticks. */
static int s_step(lsim_t *s)
{
    for (size_t k = 0; k < s->nq;) {
        lmsg_t *q = &s->q[k];
        if (q->at > s->now) {
            k++;
            continue;
        }
        lmsg_t m = *q;
        s->q[k] = s->q[--s->nq];
        kvc_lww_receive(s->m[m.to], s->now, s->ids[m.from], m.data, m.len, &s->out);
        free(m.data);
        if (s_flush(s, m.to) != 0)
            return -1;
    }
    for (int i = 0; i < s->n; i++) {
        if (kvc_lww_next_deadline(s->m[i]) > s->now)
            continue;
        kvc_lww_tick(s->m[i], s->now, &s->out);
        if (s_flush(s, i) != 0)
            return -1;
    }
    return 0;
}

/* A fingerprint of a peer's live contents. */
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

static int s_identical(lsim_t *s)
{
    uint64_t a[2] = {0, 0};
    kvc_lww_each(s->m[0], 0, s_fp_one, a);
    for (int i = 1; i < s->n; i++) {
        uint64_t b[2] = {0, 0};
        kvc_lww_each(s->m[i], 0, s_fp_one, b);
        if (a[0] != b[0] || a[1] != b[1])
            return 0;
    }
    return 1;
}

static int s_u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void s_usage(FILE *f)
{
    fprintf(f, "usage: kvc-sim --scenario lww [--peers N] [--keys K] [--writes-per-s W]\n"
               "               [--loss P] [--partition-frac F] [--partition-at S]\n"
               "               [--heal-at S] [--duration S] [--ae-ms MS] [--tomb-age-ms MS]\n"
               "               [--seed N] [--json]\n"
               "  A fraction F of the peers is cut off from the others from S to S; both sides\n"
               "  write. Prints converge_ms {p50, p99, max}, heal_ms, bytes, and fails on\n"
               "  differing contents or a resurrected delete.\n");
}

/* Parses the scenario's options. */
static int s_options(lsim_t *s, int argc, char **argv)
{
    s->n = 20;
    s->keys = 200;
    s->wps = 20;
    s->frac = 0.3;
    s->part_at = 10;
    s->heal_at = 40;
    s->duration = 60;
    s->seed = 1;
    kvc_lww_config_default(&s->cfg);
    s->cfg.ae_interval_ms = 1000;
    s->cfg.tomb_min_age_ms = 10000;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int64_t x = 0;
        if (strcmp(a, "--json") == 0) {
            s->json = 1;
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
        double *dp = NULL;
        double lo = 0, hi = 0;
        if (strcmp(a, "--scenario") == 0)
            bad = strcmp(v, "lww") != 0;
        else if (strcmp(a, "--peers") == 0)
            bad = kvc_parse_i64(v, 2, KVC_LWW_PEERS_MAX, &x), s->n = (int)x;
        else if (strcmp(a, "--keys") == 0)
            bad = kvc_parse_i64(v, 1, 5000, &x), s->keys = (int)x;
        else if (strcmp(a, "--partition-at") == 0)
            bad = kvc_parse_i64(v, 0, 86400, &x), s->part_at = (uint64_t)x;
        else if (strcmp(a, "--heal-at") == 0)
            bad = kvc_parse_i64(v, 0, 86400, &x), s->heal_at = (uint64_t)x;
        else if (strcmp(a, "--duration") == 0)
            bad = kvc_parse_i64(v, 1, 86400, &x), s->duration = (uint64_t)x;
        else if (strcmp(a, "--ae-ms") == 0)
            bad = kvc_parse_i64(v, 4, 3600000, &x), s->cfg.ae_interval_ms = (uint32_t)x;
        else if (strcmp(a, "--tomb-age-ms") == 0)
            bad = kvc_parse_i64(v, 0, 86400000, &x), s->cfg.tomb_min_age_ms = (uint64_t)x;
        else if (strcmp(a, "--seed") == 0)
            bad = kvc_parse_i64(v, 0, INT64_MAX, &x), s->seed = (uint64_t)x;
        else if (strcmp(a, "--loss") == 0)
            dp = &s->loss, lo = 0, hi = 0.5;
        else if (strcmp(a, "--partition-frac") == 0)
            dp = &s->frac, lo = 0, hi = 0.9;
        else if (strcmp(a, "--writes-per-s") == 0)
            dp = &s->wps, lo = 0, hi = 1000;
        else {
            fprintf(stderr, "kvc-sim: unknown option %s for --scenario lww\n", a);
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
    if (s->heal_at < s->part_at || s->duration < s->heal_at) {
        fprintf(stderr, "kvc-sim: need --partition-at <= --heal-at <= --duration\n");
        return -1;
    }
    return 0;
}

int kvc_sim_lww_main(int argc, char **argv)
{
    lsim_t s;
    memset(&s, 0, sizeof s);
    if (s_options(&s, argc, argv) != 0)
        return 2;
    kvc_rng_seed(&s.rng, s.seed);
    kvc_outbox_init(&s.out, 0);
    s.m = calloc((size_t)s.n, sizeof *s.m);
    s.ids = calloc((size_t)s.n, sizeof *s.ids);
    s.idp = calloc((size_t)s.n, sizeof *s.idp);
    s.side = calloc((size_t)s.n, sizeof *s.side);
    s.truth = calloc((size_t)s.keys, sizeof *s.truth);
    if (!s.m || !s.ids || !s.idp || !s.side || !s.truth)
        return 1;
    int cut_n = (int)(s.frac * s.n + 0.5);
    for (int i = 0; i < s.n; i++) {
        snprintf(s.ids[i], sizeof s.ids[i], "r/p%d", i);
        s.idp[i] = s.ids[i];
        s.side[i] = i < cut_n;
    }
    s.t0 = s.now = 1700000000000ull; /* wall clock ms */
    int rc = 0;
    for (int i = 0; i < s.n && rc == 0; i++) {
        s.m[i] = kvc_lww_new(&s.cfg, s.ids[i], KVC_LWW_CHANNEL_REGISTRY, kvc_rng_next(&s.rng));
        if (!s.m[i] || kvc_lww_set_peers(s.m[i], s.idp, (size_t)s.n, s.now) != 0)
            rc = -1;
    }
    uint64_t end = s.t0 + s.duration * 1000, part = s.t0 + s.part_at * 1000;
    s.heal_at = s.t0 + s.heal_at * 1000;
    uint64_t write_until = s.heal_at; /* quiet after the heal: measure convergence */
    uint64_t heal_ms = UINT64_MAX;
    double wprob = s.wps / 1000.0;
    while (rc == 0 && s.now < end) {
        s.now++;
        if (s.now == part && cut_n > 0 && s.heal_at > part)
            s.cut = 1;
        if (s.now == s.heal_at)
            s.cut = 0;
        if (s.now < write_until && kvc_rng_double(&s.rng) < wprob)
            rc = s_write(&s);
        if (rc == 0)
            rc = s_step(&s);
        if (rc == 0 && s.now % 10 == 0)
            rc = s_check_pending(&s);
        if (rc == 0 && s.now >= s.heal_at && heal_ms == UINT64_MAX && s.now % 10 == 0 &&
            s_identical(&s))
            heal_ms = s.now - s.heal_at;
    }
    if (rc != 0) {
        fprintf(stderr, "kvc-sim: lww scenario failed (allocation or routing)\n");
        return 1;
    }
    /* invariants */
    int identical = s_identical(&s);
    uint64_t resurrected = 0, wrong = 0;
    for (int k = 0; k < s.keys; k++) {
        if (!s.truth[k].used)
            continue;
        char key[16];
        snprintf(key, sizeof key, "m/%d", k);
        for (int i = 0; i < s.n; i++) {
            kvc_lww_entry_t e;
            memset(&e, 0, sizeof e);
            int live = kvc_lww_get(s.m[i], (const uint8_t *)key, strlen(key), &e) == 0;
            if (s.truth[k].tomb) {
                resurrected += live;
                wrong += !live && e.tomb &&
                         (e.hlc != s.truth[k].hlc || strcmp(e.writer, s.truth[k].writer) != 0);
            } else {
                wrong +=
                    !live || e.hlc != s.truth[k].hlc || strcmp(e.writer, s.truth[k].writer) != 0;
            }
        }
    }
    qsort(s.conv, s.nconv, sizeof *s.conv, s_u64_cmp);
    uint64_t p50 = s.nconv ? s.conv[(s.nconv - 1) / 2] : 0;
    uint64_t p99 = s.nconv ? s.conv[(size_t)((double)(s.nconv - 1) * 0.99)] : 0;
    uint64_t mx = s.nconv ? s.conv[s.nconv - 1] : 0;
    qsort(s.conv_in, s.nconv_in, sizeof *s.conv_in, s_u64_cmp);
    uint64_t i50 = s.nconv_in ? s.conv_in[(s.nconv_in - 1) / 2] : 0;
    uint64_t i99 = s.nconv_in ? s.conv_in[(size_t)((double)(s.nconv_in - 1) * 0.99)] : 0;
    uint64_t collected = 0, stale = 0, digests = 0, pushes = 0;
    for (int i = 0; i < s.n; i++) {
        kvc_lww_stats_t st;
        kvc_lww_stats(s.m[i], &st);
        collected += st.tombs_collected;
        stale += st.stale;
        digests += st.digests;
        pushes += st.pushes;
    }
    int ok = identical && resurrected == 0 && wrong == 0 && s.npend == 0 && heal_ms != UINT64_MAX;
    if (s.json)
        printf("{\"scenario\":\"lww\",\"peers\":%d,\"cut\":%d,\"keys\":%d,\"seed\":%" PRIu64
               ",\"loss\":%g,\"writes\":%zu,\"unconverged_writes\":%zu,\"converge_ms\":{\"p50\":"
               "%" PRIu64 ",\"p99\":%" PRIu64 ",\"max\":%" PRIu64
               "},\"converge_ms_unpartitioned\":{\"p50\":%" PRIu64 ",\"p99\":%" PRIu64
               "},\"heal_ms\":%" PRId64 ",\"bytes\":%" PRIu64 ",\"bytes_after_heal\":%" PRIu64
               ",\"msgs\":%" PRIu64 ",\"pushes\":%" PRIu64 ",\"digests\":%" PRIu64
               ",\"tombs_collected\":%" PRIu64 ",\"stale_refused\":%" PRIu64
               ",\"identical\":%s,\"resurrections\":%" PRIu64 ",\"wrong_versions\":%" PRIu64
               ",\"invariants_ok\":%s}\n",
               s.n, cut_n, s.keys, s.seed, s.loss, s.nconv + s.npend, s.npend, p50, p99, mx, i50,
               i99, heal_ms == UINT64_MAX ? (int64_t)-1 : (int64_t)heal_ms, s.bytes,
               s.bytes_after_heal, s.msgs, pushes, digests, collected, stale,
               identical ? "true" : "false", resurrected, wrong, ok ? "true" : "false");
    else
        printf("lww: %d peers (%d cut off), %zu writes, converge_ms p50 %" PRIu64 " p99 %" PRIu64
               " max %" PRIu64 ", heal_ms %" PRId64 ", %" PRIu64 " bytes (%" PRIu64
               " after heal), identical %s, resurrections %" PRIu64 ", wrong %" PRIu64 "\n",
               s.n, cut_n, s.nconv + s.npend, p50, p99, mx,
               heal_ms == UINT64_MAX ? (int64_t)-1 : (int64_t)heal_ms, s.bytes, s.bytes_after_heal,
               identical ? "yes" : "no", resurrected, wrong);
    for (int i = 0; i < s.n; i++)
        kvc_lww_destroy(&s.m[i]);
    for (size_t k = 0; k < s.nq; k++)
        free(s.q[k].data);
    free(s.q), free(s.m), free(s.ids), free(s.idp), free(s.side), free(s.truth), free(s.pend);
    free(s.conv), free(s.conv_in);
    kvc_outbox_free(&s.out);
    return ok ? 0 : 1;
}
