/*
 * kvc-sim - runs N unchanged membership cores (federation/swim.c) in one
 * process over a simulated clock and network, to measure dissemination,
 * detection, false positives and cost, and to check the protocol's
 * invariants at sizes no real test could reach.
 *
 * Everything random comes from one seed, so the same command line prints
 * byte-identical output. The simulator must never read the wall clock into
 * anything it prints. Time is kept in microseconds; cores see milliseconds.
 *
 * Network model: one-way latency within a site uniform in [lan_min, lan_max]
 * microseconds; between sites each site pair gets a fixed RTT uniform in
 * [wan_min, wan_max] ms (drawn from the seed) and every message adds +-10%
 * jitter to half of it. Each message is lost with probability --loss.
 *
 * Partitions: --partition 'A|B@T1-T2' where A and B are comma-separated site
 * names (site0, site1, ...) or the word `rest` (every site not named on the
 * other side); T1 and T2 are seconds (an optional trailing `s` is allowed).
 * Messages between a peer in A and a peer in B are dropped for T1 <= t < T2.
 * Several partitions are separated by ';'.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "rng.h"
#include "swim.h"

#include "sim_election.h"
#include "sim_failover.h"
#include "sim_lww.h"
#include "sim_registry.h"

#define US 1000ULL
#define SEC 1000000ULL
#define MAX_PARTS 8

enum { EV_DELIVER, EV_TICK, EV_JOIN, EV_CRASH, EV_RESTART, EV_UPDATE };

typedef struct {
    uint64_t t;
    uint64_t seq;
    uint8_t type;
    uint32_t peer;
    uint32_t from;
    uint32_t gen;
    uint32_t len;
    uint8_t *data;
} event_t;

typedef struct {
    event_t *a;
    size_t n, cap;
    uint64_t seq;
} heap_t;

typedef struct {
    kvc_swim_t *core;
    uint32_t gen;
    uint64_t tick_at;
    int crashed;
    int ever_crashed;
    int slow;
    int site;
    char id[32];
    uint64_t ticks_same_now;
    uint64_t last_tick_now;
} peer_t;

typedef struct {
    uint8_t side[64]; /* per site: 0 none, 1 A, 2 B (sites >= 64 use `rest`) */
    int a_rest, b_rest;
    uint64_t start, end;
} partition_t;

typedef struct {
    uint32_t origin;
    uint64_t version;
    uint64_t t;
    int eligible;
    uint8_t *seen; /* one byte per peer */
    uint64_t done_t;
    uint32_t n_seen;
} update_t;

typedef struct {
    /* options */
    uint32_t n, sites;
    const char *profile;
    double loss;
    double duration_s;
    uint32_t crash_k;
    double crash_at_s, restart_after_s;
    uint32_t slow_k;
    double slow_ms;
    uint64_t seed;
    int json;
    double update_every_ms;
    double warmup_s, settle_s;
    double lan_min_us, lan_max_us, wan_min_ms, wan_max_ms;
    partition_t parts[MAX_PARTS];
    int n_parts;
    /* state */
    kvc_swim_config_t cfg;
    kvc_rng_t rng;
    heap_t heap;
    peer_t *peers;
    double *site_rtt; /* sites x sites, ms */
    uint64_t now;
    kvc_outbox_t out;
    uint32_t *last_inc; /* n x n */
    /* metrics */
    uint64_t bytes, msgs, delivered;
    uint64_t false_pos, suspect_ev;
    uint32_t *crashed_ids;
    uint64_t *crash_t, *first_susp, *all_dead;
    uint8_t *dead_mark; /* crash_k x n */
    uint32_t *dead_count;
    uint32_t n_crashed;
    update_t *updates;
    size_t n_updates, cap_updates;
    uint64_t meta_counter;
    uint64_t last_disturb;
    int failed;
} sim_t;

/* Prints an invariant violation and marks the run failed. */
static void s_violation(sim_t *s, const char *fmt, const char *a, const char *b, uint64_t x)
{
    fprintf(stderr, "kvc-sim: INVARIANT VIOLATED at t=%.3fs: ", (double)s->now / SEC);
    fprintf(stderr, fmt, a, b, x);
    fprintf(stderr, "\n");
    s->failed = 1;
}

/* ---- heap -------------------------------------------------------------- */

/* Earlier time first, then insertion order. */
static int s_before(const event_t *x, const event_t *y)
{
    return x->t < y->t || (x->t == y->t && x->seq < y->seq);
}

/* Pushes an event. */
static void s_push(sim_t *s, event_t e)
{
    heap_t *h = &s->heap;
    if (h->n == h->cap) {
        h->cap = h->cap ? h->cap * 2 : 1024;
        h->a = realloc(h->a, h->cap * sizeof(*h->a));
        if (!h->a) {
            fprintf(stderr, "kvc-sim: out of memory\n");
            exit(2);
        }
    }
    e.seq = h->seq++;
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!s_before(&e, &h->a[p]))
            break;
        h->a[i] = h->a[p];
        i = p;
    }
    h->a[i] = e;
}

/* Pops the earliest event. */
static event_t s_pop(sim_t *s)
{
    heap_t *h = &s->heap;
    event_t top = h->a[0];
    event_t last = h->a[--h->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const event_t *best = &last;
        if (l < h->n && s_before(&h->a[l], best)) {
            m = l;
            best = &h->a[l];
        }
        if (r < h->n && s_before(&h->a[r], best))
            m = r;
        if (m == i)
            break;
        h->a[i] = h->a[m];
        i = m;
    }
    if (h->n > 0)
        h->a[i] = last;
    return top;
}

/* ---- topology ---------------------------------------------------------- */

/* Peer index from an id "siteS/pI"; -1 if not one of ours. */
static int s_peer_of(const sim_t *s, const char *id)
{
    const char *p = strstr(id, "/p");
    if (!p)
        return -1;
    long v = 0;
    for (p += 2; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (*p - '0');
        if (v >= (long)s->n)
            return -1;
    }
    return (int)v;
}

/* Side of a peer in partition p: 0, 1 (A) or 2 (B). */
static int s_side(const partition_t *p, int site)
{
    int v = site < 64 ? p->side[site] : 0;
    if (v)
        return v;
    if (p->a_rest)
        return 1;
    if (p->b_rest)
        return 2;
    return 0;
}

/* Are peers a and b cut off from each other now? */
static int s_cut(const sim_t *s, uint32_t a, uint32_t b, uint64_t t)
{
    for (int i = 0; i < s->n_parts; i++) {
        const partition_t *p = &s->parts[i];
        if (t < p->start || t >= p->end)
            continue;
        int x = s_side(p, s->peers[a].site), y = s_side(p, s->peers[b].site);
        if (x && y && x != y)
            return 1;
    }
    return 0;
}

/* Is any partition active or recently healed (deaths then are expected)? */
static int s_partition_excuse(const sim_t *s, uint64_t t)
{
    for (int i = 0; i < s->n_parts; i++)
        if (t >= s->parts[i].start && t < s->parts[i].end + (uint64_t)(s->settle_s * SEC))
            return 1;
    return 0;
}

/* One-way latency for a message a -> b, in microseconds. */
static uint64_t s_latency(sim_t *s, uint32_t a, uint32_t b)
{
    int sa = s->peers[a].site, sb = s->peers[b].site;
    double us;
    if (sa == sb) {
        us = s->lan_min_us + kvc_rng_double(&s->rng) * (s->lan_max_us - s->lan_min_us);
    } else {
        double rtt = s->site_rtt[(size_t)sa * s->sites + sb];
        us = rtt * 500.0 * (0.9 + 0.2 * kvc_rng_double(&s->rng));
    }
    if (s->peers[b].slow)
        us += s->slow_ms * 1000.0 * (0.5 + kvc_rng_double(&s->rng));
    return (uint64_t)us + 1;
}

/* ---- driving cores ----------------------------------------------------- */

/* Schedules peer p's next tick if it moved earlier. */
static void s_schedule(sim_t *s, uint32_t p)
{
    peer_t *pe = &s->peers[p];
    uint64_t d = kvc_swim_next_deadline(pe->core);
    if (d == UINT64_MAX)
        return;
    uint64_t t = d * US;
    if (t < s->now)
        t = s->now;
    if (t < pe->tick_at) {
        pe->tick_at = t;
        s_push(s, (event_t){.t = t, .type = EV_TICK, .peer = p, .gen = pe->gen});
    }
}

/* Handles events a core reported: metrics and invariants. */
static void s_events(sim_t *s, uint32_t q)
{
    peer_t *pq = &s->peers[q];
    for (size_t i = 0; i < s->out.n_events; i++) {
        const kvc_member_event_t *e = &s->out.events[i];
        int x = s_peer_of(s, e->id);
        if (x < 0) {
            s_violation(s, "%s reported unknown member %s%.0" PRIu64, pq->id, e->id, 0);
            continue;
        }
        if ((uint32_t)x == q) {
            s_violation(s, "%s reported an event about itself (%s) type %" PRIu64, pq->id, e->id,
                        (uint64_t)e->type);
            continue;
        }
        uint32_t *li = &s->last_inc[(size_t)q * s->n + (size_t)x];
        if (e->type == KVC_MEMBER_EV_REAPED) {
            *li = 0;
        } else {
            if (e->incarnation < *li)
                s_violation(s, "%s saw %s's incarnation go down to %" PRIu64, pq->id, e->id,
                            e->incarnation);
            *li = (uint32_t)e->incarnation;
        }
        peer_t *px = &s->peers[x];
        int live = !px->crashed;
        if (e->type == KVC_MEMBER_EV_SUSPECT && live && !px->ever_crashed)
            s->suspect_ev++;
        if (e->type == KVC_MEMBER_EV_DEAD && live && !px->ever_crashed &&
            !s_partition_excuse(s, s->now))
            s->false_pos++;
        /* Detection of crashed peers. */
        for (uint32_t c = 0; c < s->n_crashed; c++) {
            if (s->crashed_ids[c] != (uint32_t)x || s->now < s->crash_t[c])
                continue;
            if (e->type == KVC_MEMBER_EV_SUSPECT && s->first_susp[c] == UINT64_MAX)
                s->first_susp[c] = s->now;
            uint8_t *dm = &s->dead_mark[(size_t)c * s->n + q];
            int down = e->type == KVC_MEMBER_EV_DEAD || e->type == KVC_MEMBER_EV_LEFT ||
                       e->type == KVC_MEMBER_EV_REAPED;
            if (down && !*dm) {
                *dm = 1;
                s->dead_count[c]++;
            }
        }
        /* Dissemination of metadata updates. */
        if (e->type == KVC_MEMBER_EV_META) {
            for (size_t u = s->n_updates; u-- > 0;) {
                update_t *up = &s->updates[u];
                if (up->origin != (uint32_t)x || up->version > e->meta_version || up->seen[q])
                    continue;
                up->seen[q] = 1;
                up->n_seen++;
                if (s->now > up->done_t)
                    up->done_t = s->now;
            }
        }
    }
}

/* Sends what a core left in the outbox through the simulated network. */
static void s_flush(sim_t *s, uint32_t p)
{
    int measure = s->now >= (uint64_t)(s->warmup_s * SEC);
    for (size_t i = 0; i < s->out.n_msgs; i++) {
        const kvc_out_msg_t *m = &s->out.msgs[i];
        if (m->len > s->cfg.max_message_bytes)
            s_violation(s, "%s sent a message to %s of %" PRIu64 " bytes", s->peers[p].id, m->to,
                        (uint64_t)m->len);
        if (measure) {
            s->bytes += m->len;
            s->msgs++;
        }
        int d = s_peer_of(s, m->to);
        if (d < 0) {
            s_violation(s, "%s sent to unknown member %s%.0" PRIu64, s->peers[p].id, m->to, 0);
            continue;
        }
        if (kvc_rng_double(&s->rng) < s->loss)
            continue;
        uint64_t t = s->now + s_latency(s, p, (uint32_t)d);
        uint8_t *copy = malloc(m->len ? m->len : 1);
        if (!copy) {
            fprintf(stderr, "kvc-sim: out of memory\n");
            exit(2);
        }
        memcpy(copy, kvc_outbox_data(&s->out, i), m->len);
        s_push(s, (event_t){.t = t,
                            .type = EV_DELIVER,
                            .peer = (uint32_t)d,
                            .from = p,
                            .len = (uint32_t)m->len,
                            .data = copy});
    }
    s_events(s, p);
    if (kvc_swim_self_state(s->peers[p].core) != KVC_SWIM_ALIVE)
        s_violation(s, "%s is not alive in its own view%s%.0" PRIu64, s->peers[p].id, "", 0);
    kvc_outbox_reset(&s->out);
    s_schedule(s, p);
}

/* Creates peer p's core (a fresh process). */
static int s_boot(sim_t *s, uint32_t p)
{
    peer_t *pe = &s->peers[p];
    char site[16], name[16], region[16], endpoint[48];
    snprintf(site, sizeof(site), "site%d", pe->site);
    snprintf(name, sizeof(name), "p%u", p);
    snprintf(region, sizeof(region), "r%d", pe->site % 5);
    snprintf(endpoint, sizeof(endpoint), "tcp://10.%d.%u.%u:7946", pe->site % 256, p / 256,
             p % 256);
    kvc_member_info_t info = {.site = site,
                              .name = name,
                              .region = region,
                              .roles = "gateway",
                              .endpoint = endpoint,
                              .capabilities = 1};
    for (int i = 0; i < KVC_SWIM_KEY_LEN; i++)
        info.public_key[i] = (uint8_t)(p * 31 + i);
    pe->gen++;
    uint64_t seed = kvc_rng_mix(s->seed ^ kvc_rng_mix(((uint64_t)p << 20) ^ pe->gen));
    pe->core = kvc_swim_new(&s->cfg, &info, seed, s->now / US);
    if (!pe->core)
        return KVC_ENOMEM;
    pe->crashed = 0;
    pe->tick_at = UINT64_MAX;
    memset(&s->last_inc[(size_t)p * s->n], 0, s->n * sizeof(uint32_t));
    return 0;
}

/* Joins peer p through the seeds (peer 0 of the first three sites). */
static void s_join(sim_t *s, uint32_t p)
{
    char ids[3][32];
    const char *seeds[3];
    size_t n = 0;
    for (uint32_t site = 0; site < s->sites && n < 3; site++) {
        if (site >= s->n)
            break;
        snprintf(ids[n], sizeof(ids[n]), "%s", s->peers[site].id);
        seeds[n] = ids[n];
        n++;
    }
    kvc_swim_join(s->peers[p].core, seeds, n, s->now / US, &s->out);
    s_flush(s, p);
}

/* ---- options ------------------------------------------------------------ */

/* Parses one partition spec "A|B@T1-T2". */
static int s_parse_partition(sim_t *s, const char *spec)
{
    if (s->n_parts >= MAX_PARTS)
        return -1;
    partition_t *p = &s->parts[s->n_parts];
    memset(p, 0, sizeof(*p));
    char buf[512];
    if (snprintf(buf, sizeof(buf), "%s", spec) >= (int)sizeof(buf))
        return -1;
    char *at = strchr(buf, '@');
    char *bar = strchr(buf, '|');
    if (!at || !bar || bar > at)
        return -1;
    *at = '\0';
    *bar = '\0';
    char *times = at + 1;
    char *dash = strchr(times, '-');
    if (!dash)
        return -1;
    *dash = '\0';
    char *e1, *e2;
    double t1 = strtod(times, &e1), t2 = strtod(dash + 1, &e2);
    if (e1 == times || e2 == dash + 1 || (*e1 && strcmp(e1, "s")) || (*e2 && strcmp(e2, "s")) ||
        t1 < 0 || t2 <= t1)
        return -1;
    p->start = (uint64_t)(t1 * SEC);
    p->end = (uint64_t)(t2 * SEC);
    char *groups[2] = {buf, bar + 1};
    for (int g = 0; g < 2; g++) {
        char *save = groups[g];
        while (save && *save) {
            char *comma = strchr(save, ',');
            if (comma)
                *comma = '\0';
            if (strcmp(save, "rest") == 0) {
                if (g == 0)
                    p->a_rest = 1;
                else
                    p->b_rest = 1;
            } else {
                int64_t v;
                if (strncmp(save, "site", 4) != 0 || kvc_parse_i64(save + 4, 0, 63, &v) != 0)
                    return -1;
                p->side[v] = (uint8_t)(g + 1);
            }
            save = comma ? comma + 1 : NULL;
        }
    }
    if (p->a_rest && p->b_rest)
        return -1;
    s->n_parts++;
    if (p->end > s->last_disturb)
        s->last_disturb = p->end;
    return 0;
}

/* Parses a double option value within [lo, hi]. */
static int s_dbl(const char *v, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (errno || end == v || *end || !(d >= lo && d <= hi))
        return -1;
    *out = d;
    return 0;
}

/* Prints usage. */
static void s_usage(FILE *f)
{
    fprintf(f, "usage: kvc-sim [--peers N] [--sites S] [--profile lan|wan|memberlist] [--loss P]\n"
               "               [--duration SECONDS] [--crash K] [--crash-at SECONDS]\n"
               "               [--restart-after SECONDS] [--partition 'A|B@T1-T2'] [--slow K]\n"
               "               [--slow-ms MS] [--update-every MS] [--warmup SECONDS]\n"
               "               [--settle SECONDS] [--wan-rtt MIN-MAX] [--seed N] [--json]\n"
               "  partition: A and B are comma-separated site names (site0,site1) or `rest`;\n"
               "  T1-T2 in seconds, e.g. 'site0,site1|rest@30s-90s'; several joined with ';'.\n"
               "       kvc-sim --scenario election [--help]: coordinator failover and safety.\n"
               "       kvc-sim --scenario lww [--help]: replicated map convergence after a partition.\n"
               "       kvc-sim --scenario registry [--help]: the model registry's publish latency\n"
               "               and a rejoining peer's catch-up, at the daemon's settings.\n"
               "       kvc-sim --scenario failover [--help]: request routing under flapping health,\n"
               "         a partition, a dead local backend and an unmeetable constraint.\n");
}

/* Fills options from argv. */
static int s_options(sim_t *s, int argc, char **argv)
{
    s->n = 100;
    s->sites = 1;
    s->profile = "lan";
    s->duration_s = 120;
    s->crash_at_s = -1;
    s->slow_ms = 500;
    s->seed = 1;
    s->update_every_ms = 1000;
    s->warmup_s = -1;
    s->settle_s = -1;
    s->lan_min_us = 100;
    s->lan_max_us = 500;
    s->wan_min_ms = 50;
    s->wan_max_ms = 150;
    const char *parts[MAX_PARTS];
    int n_parts = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int64_t x;
        if (strcmp(a, "--json") == 0) {
            s->json = 1;
            continue;
        }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            s_usage(stdout);
            exit(0);
        }
        if (!v) {
            fprintf(stderr, "kvc-sim: %s: missing value\n", a);
            return -1;
        }
        i++;
        int bad = 0;
        if (strcmp(a, "--peers") == 0)
            bad = kvc_parse_i64(v, 1, 100000, &x) || !(s->n = (uint32_t)x);
        else if (strcmp(a, "--sites") == 0)
            bad = kvc_parse_i64(v, 1, 10000, &x) || !(s->sites = (uint32_t)x);
        else if (strcmp(a, "--profile") == 0)
            bad = strcmp(v, "lan") != 0 && strcmp(v, "wan") != 0 &&
                  strcmp(v, "memberlist") != 0,
            s->profile = v;
        else if (strcmp(a, "--loss") == 0)
            bad = s_dbl(v, 0, 0.9, &s->loss);
        else if (strcmp(a, "--duration") == 0)
            bad = s_dbl(v, 1, 86400, &s->duration_s);
        else if (strcmp(a, "--crash") == 0)
            bad = kvc_parse_i64(v, 0, 100000, &x), s->crash_k = (uint32_t)x;
        else if (strcmp(a, "--crash-at") == 0)
            bad = s_dbl(v, 0, 86400, &s->crash_at_s);
        else if (strcmp(a, "--restart-after") == 0)
            bad = s_dbl(v, 0, 86400, &s->restart_after_s);
        else if (strcmp(a, "--slow") == 0)
            bad = kvc_parse_i64(v, 0, 100000, &x), s->slow_k = (uint32_t)x;
        else if (strcmp(a, "--slow-ms") == 0)
            bad = s_dbl(v, 0, 60000, &s->slow_ms);
        else if (strcmp(a, "--update-every") == 0)
            bad = s_dbl(v, 0, 3600000, &s->update_every_ms);
        else if (strcmp(a, "--warmup") == 0)
            bad = s_dbl(v, 0, 86400, &s->warmup_s);
        else if (strcmp(a, "--settle") == 0)
            bad = s_dbl(v, 0, 86400, &s->settle_s);
        else if (strcmp(a, "--seed") == 0)
            bad = kvc_parse_i64(v, 0, INT64_MAX, &x), s->seed = (uint64_t)x;
        else if (strcmp(a, "--wan-rtt") == 0)
            bad = sscanf(v, "%lf-%lf", &s->wan_min_ms, &s->wan_max_ms) != 2 ||
                  !(s->wan_min_ms > 0 && s->wan_max_ms >= s->wan_min_ms);
        else if (strcmp(a, "--partition") == 0)
            bad = n_parts >= MAX_PARTS, parts[n_parts < MAX_PARTS ? n_parts++ : 0] = v;
        else {
            fprintf(stderr, "kvc-sim: unknown option %s\n", a);
            s_usage(stderr);
            return -1;
        }
        if (bad) {
            fprintf(stderr, "kvc-sim: %s: bad value '%s'\n", a, v);
            return -1;
        }
    }
    int wan = strcmp(s->profile, "wan") == 0;
    if (s->warmup_s < 0)
        s->warmup_s = wan ? 30 : 20;
    if (s->settle_s < 0)
        s->settle_s = wan ? 60 : 30;
    if (s->crash_at_s < 0)
        s->crash_at_s = s->warmup_s + (s->duration_s - s->warmup_s) / 3;
    if (s->crash_k + s->slow_k >= s->n) {
        fprintf(stderr, "kvc-sim: --crash + --slow must leave live peers\n");
        return -1;
    }
    for (int i = 0; i < n_parts; i++) {
        char buf[1024];
        snprintf(buf, sizeof(buf), "%s", parts[i]);
        char *p = buf;
        while (p) {
            char *semi = strchr(p, ';');
            if (semi)
                *semi = '\0';
            if (s_parse_partition(s, p) != 0) {
                fprintf(stderr, "kvc-sim: --partition: bad spec '%s'\n", p);
                return -1;
            }
            p = semi ? semi + 1 : NULL;
        }
    }
    return 0;
}

/* ---- results ----------------------------------------------------------- */

/* Comparison for qsort over uint64_t. */
static int s_u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Does every live peer agree on the membership: every live peer known and
 * not dead (a suspect is still a member; at 10% loss some suspicion is always
 * in flight), every crashed one dead, left or forgotten? Reports the first
 * disagreement in *why. */
static int s_converged(sim_t *s, char *why, size_t why_len)
{
    for (uint32_t q = 0; q < s->n; q++) {
        if (s->peers[q].crashed)
            continue;
        for (uint32_t x = 0; x < s->n; x++) {
            if (x == q)
                continue;
            kvc_swim_member_t m;
            int known = kvc_swim_member_get(s->peers[q].core, s->peers[x].id, &m) == 0;
            int ok = s->peers[x].crashed
                         ? (!known || m.state == KVC_SWIM_DEAD || m.state == KVC_SWIM_LEFT)
                         : (known && (m.state == KVC_SWIM_ALIVE || m.state == KVC_SWIM_SUSPECT));
            if (!ok) {
                snprintf(why, why_len, "%s sees %s as %s", s->peers[q].id, s->peers[x].id,
                         known ? kvc_swim_state_name(m.state) : "unknown");
                return 0;
            }
        }
    }
    return 1;
}

/* Runs the simulation and prints the report. */
static int s_run(sim_t *s)
{
    kvc_swim_config_profile(&s->cfg, s->profile);
    kvc_rng_seed(&s->rng, s->seed);
    s->peers = calloc(s->n, sizeof(*s->peers));
    s->last_inc = calloc((size_t)s->n * s->n, sizeof(uint32_t));
    s->site_rtt = calloc((size_t)s->sites * s->sites, sizeof(double));
    s->crashed_ids = calloc(s->crash_k + 1, sizeof(uint32_t));
    s->crash_t = calloc(s->crash_k + 1, sizeof(uint64_t));
    s->first_susp = calloc(s->crash_k + 1, sizeof(uint64_t));
    s->all_dead = calloc(s->crash_k + 1, sizeof(uint64_t));
    s->dead_count = calloc(s->crash_k + 1, sizeof(uint32_t));
    s->dead_mark = calloc((size_t)(s->crash_k + 1) * s->n, 1);
    if (!s->peers || !s->last_inc || !s->site_rtt || !s->crashed_ids || !s->crash_t ||
        !s->first_susp || !s->all_dead || !s->dead_count || !s->dead_mark) {
        fprintf(stderr, "kvc-sim: out of memory\n");
        return 2;
    }
    for (uint32_t a = 0; a < s->sites; a++)
        for (uint32_t b = a + 1; b < s->sites; b++) {
            double r = s->wan_min_ms + kvc_rng_double(&s->rng) * (s->wan_max_ms - s->wan_min_ms);
            s->site_rtt[(size_t)a * s->sites + b] = s->site_rtt[(size_t)b * s->sites + a] = r;
        }
    kvc_outbox_init(&s->out, 0);
    for (uint32_t p = 0; p < s->n; p++) {
        peer_t *pe = &s->peers[p];
        pe->site = (int)(p % s->sites);
        snprintf(pe->id, sizeof(pe->id), "site%d/p%u", pe->site, p);
        if (s_boot(s, p) != 0) {
            fprintf(stderr, "kvc-sim: cannot create core %u\n", p);
            return 2;
        }
        /* Joins spread over the first two seconds. */
        s_push(s, (event_t){.t = (uint64_t)p * 2 * SEC / s->n, .type = EV_JOIN, .peer = p});
    }
    /* Slow peers and crash victims: distinct random peers, never peer 0. */
    uint32_t *order = calloc(s->n, sizeof(uint32_t));
    for (uint32_t i = 0; i < s->n; i++)
        order[i] = i;
    for (uint32_t i = s->n - 1; i > 1; i--) {
        uint32_t j = 1 + (uint32_t)kvc_rng_below(&s->rng, i);
        uint32_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    uint64_t crash_at = (uint64_t)(s->crash_at_s * SEC);
    for (uint32_t i = 0; i < s->crash_k; i++) {
        uint32_t v = order[1 + i];
        s->crashed_ids[i] = v;
        s->crash_t[i] = crash_at;
        s->first_susp[i] = UINT64_MAX;
        s->all_dead[i] = UINT64_MAX;
        s_push(s, (event_t){.t = crash_at, .type = EV_CRASH, .peer = v});
        if (s->restart_after_s > 0)
            s_push(s, (event_t){.t = crash_at + (uint64_t)(s->restart_after_s * SEC),
                                .type = EV_RESTART,
                                .peer = v});
    }
    s->n_crashed = s->crash_k;
    if (s->crash_k) {
        uint64_t d = crash_at + (uint64_t)(s->restart_after_s * SEC);
        if (d > s->last_disturb)
            s->last_disturb = d;
    }
    for (uint32_t i = 0; i < s->slow_k; i++)
        s->peers[order[1 + s->crash_k + i]].slow = 1;
    free(order);
    if (s->update_every_ms > 0)
        s_push(s, (event_t){.t = (uint64_t)(s->warmup_s * SEC), .type = EV_UPDATE});

    uint64_t end = (uint64_t)(s->duration_s * SEC);
    while (s->heap.n > 0 && !s->failed) {
        event_t e = s_pop(s);
        if (e.t >= end) {
            free(e.data);
            break;
        }
        s->now = e.t;
        peer_t *pe = &s->peers[e.peer];
        switch (e.type) {
        case EV_DELIVER:
            if (!pe->crashed && !s_cut(s, e.from, e.peer, s->now)) {
                s->delivered++;
                kvc_swim_receive(pe->core, s->now / US, s->peers[e.from].id, e.data, e.len,
                                 &s->out);
                s_flush(s, e.peer);
            }
            free(e.data);
            break;
        case EV_TICK:
            if (pe->crashed || e.gen != pe->gen || e.t != pe->tick_at)
                break;
            pe->tick_at = UINT64_MAX;
            if (s->now == pe->last_tick_now) {
                if (++pe->ticks_same_now > 10000) {
                    s_violation(s, "%s ticks without progress%s%.0" PRIu64, pe->id, "", 0);
                    break;
                }
            } else {
                pe->ticks_same_now = 0;
                pe->last_tick_now = s->now;
            }
            kvc_swim_tick(pe->core, s->now / US, &s->out);
            s_flush(s, e.peer);
            break;
        case EV_JOIN:
            if (!pe->crashed)
                s_join(s, e.peer);
            break;
        case EV_CRASH:
            kvc_swim_destroy(&pe->core);
            pe->crashed = 1;
            pe->ever_crashed = 1;
            break;
        case EV_RESTART:
            if (s_boot(s, e.peer) != 0) {
                fprintf(stderr, "kvc-sim: cannot restart core %u\n", e.peer);
                return 2;
            }
            s_join(s, e.peer);
            break;
        case EV_UPDATE: {
            /* A random live, never-crashed, not-slow peer changes its metadata. */
            uint32_t o = (uint32_t)kvc_rng_below(&s->rng, s->n);
            for (uint32_t k = 0; k < s->n; k++, o = (o + 1) % s->n)
                if (!s->peers[o].crashed && !s->peers[o].slow && !s->peers[o].ever_crashed)
                    break;
            char val[32];
            int len = snprintf(val, sizeof(val), "v%" PRIu64, ++s->meta_counter);
            kvc_swim_set_meta(s->peers[o].core, "load", (const uint8_t *)val, (size_t)len,
                              s->now / US);
            kvc_swim_member_t me;
            kvc_swim_member_get(s->peers[o].core, s->peers[o].id, &me);
            if (s->n_updates == s->cap_updates) {
                s->cap_updates = s->cap_updates ? 2 * s->cap_updates : 64;
                s->updates = realloc(s->updates, s->cap_updates * sizeof(*s->updates));
            }
            update_t *u = &s->updates[s->n_updates++];
            memset(u, 0, sizeof(*u));
            u->origin = o;
            u->version = me.meta_version;
            u->t = s->now;
            u->done_t = s->now;
            u->seen = calloc(s->n, 1);
            u->seen[o] = 1;
            u->n_seen = 1;
            /* Only updates with a quiet network around them measure dissemination. */
            uint64_t horizon = 15 * SEC;
            u->eligible = s->now + horizon < end && !s_partition_excuse(s, s->now) &&
                          !s_partition_excuse(s, s->now + horizon) &&
                          !(s->crash_k && s->now + horizon >= crash_at &&
                            s->now <= crash_at + (uint64_t)(s->settle_s * SEC));
            s_flush(s, o);
            s_push(s,
                   (event_t){.t = s->now + (uint64_t)(s->update_every_ms * US), .type = EV_UPDATE});
            break;
        }
        }
        /* Has every live peer marked a crashed one dead yet? */
        for (uint32_t c = 0; c < s->n_crashed; c++) {
            if (s->all_dead[c] != UINT64_MAX || s->now < s->crash_t[c] ||
                !s->peers[s->crashed_ids[c]].crashed)
                continue;
            uint32_t need = 0, have = 0;
            for (uint32_t q = 0; q < s->n; q++) {
                if (s->peers[q].crashed)
                    continue;
                need++;
                have += s->dead_mark[(size_t)c * s->n + q];
            }
            if (have >= need)
                s->all_dead[c] = s->now;
        }
    }
    s->now = end;

    /* Dissemination over updates every never-crashed peer should have seen. */
    uint64_t *lat = calloc(s->n_updates + 1, sizeof(uint64_t));
    size_t n_lat = 0, incomplete = 0;
    for (size_t u = 0; u < s->n_updates; u++) {
        update_t *up = &s->updates[u];
        if (up->eligible) {
            int complete = 1;
            for (uint32_t q = 0; q < s->n; q++)
                if (!s->peers[q].ever_crashed && !up->seen[q])
                    complete = 0;
            if (complete)
                lat[n_lat++] = (up->done_t - up->t) / US;
            else
                incomplete++;
        }
        free(up->seen);
    }
    qsort(lat, n_lat, sizeof(*lat), s_u64_cmp);
    uint64_t p50 = n_lat ? lat[(n_lat - 1) / 2] : 0;
    uint64_t p99 = n_lat ? lat[(size_t)ceil(0.99 * (double)n_lat) - 1] : 0;
    uint64_t pmax = n_lat ? lat[n_lat - 1] : 0;
    free(lat);
    int64_t det_first = -1, det_all = -1;
    int det_missing = 0;
    for (uint32_t c = 0; c < s->n_crashed; c++) {
        if (s->first_susp[c] == UINT64_MAX || s->all_dead[c] == UINT64_MAX) {
            det_missing++;
            continue;
        }
        int64_t f = (int64_t)((s->first_susp[c] - s->crash_t[c]) / US);
        int64_t a = (int64_t)((s->all_dead[c] - s->crash_t[c]) / US);
        if (f > det_first)
            det_first = f;
        if (a > det_all)
            det_all = a;
    }
    char why[256] = "";
    int converged = s_converged(s, why, sizeof(why));
    double window = s->duration_s - s->warmup_s;
    double bps = window > 0 ? (double)s->bytes / s->n / window : 0;
    double mps = window > 0 ? (double)s->msgs / s->n / window : 0;
    if (!converged && s->now >= s->last_disturb + (uint64_t)(s->settle_s * SEC))
        s_violation(s, "not converged %.1f s after the last disturbance: %s%.0" PRIu64, "", why, 0);

    if (s->json) {
        printf("{\"peers\":%u,\"sites\":%u,\"profile\":\"%s\",\"loss\":%.4f,\"duration_s\":%.1f,"
               "\"seed\":%" PRIu64 ",\"crashed\":%u,\"slow\":%u,\"partitions\":%d,"
               "\"dissemination_ms\":{\"p50\":%" PRIu64 ",\"p99\":%" PRIu64 ",\"max\":%" PRIu64
               ",\"updates\":%zu,\"incomplete\":%zu},"
               "\"detection_ms\":{\"first\":%" PRId64 ",\"all\":%" PRId64 ",\"missing\":%d},"
               "\"false_positives\":%" PRIu64 ",\"suspect_events\":%" PRIu64 ","
               "\"bytes_per_peer_per_s\":%.1f,\"msgs_per_peer_per_s\":%.2f,"
               "\"messages_delivered\":%" PRIu64 ",\"converged\":%s,\"invariants_ok\":%s}\n",
               s->n, s->sites, s->profile, s->loss, s->duration_s, s->seed, s->n_crashed, s->slow_k,
               s->n_parts, p50, p99, pmax, n_lat, incomplete, det_first, det_all, det_missing,
               s->false_pos, s->suspect_ev, bps, mps, s->delivered, converged ? "true" : "false",
               s->failed ? "false" : "true");
    } else {
        printf("peers %u sites %u profile %s loss %.4f duration %.1fs seed %" PRIu64 "\n", s->n,
               s->sites, s->profile, s->loss, s->duration_s, s->seed);
        printf("dissemination ms: p50 %" PRIu64 " p99 %" PRIu64 " max %" PRIu64
               " (%zu updates, %zu incomplete)\n",
               p50, p99, pmax, n_lat, incomplete);
        printf("detection ms: first %" PRId64 " all %" PRId64 " (missing %d)\n", det_first, det_all,
               det_missing);
        printf("false positives %" PRIu64 ", suspect events %" PRIu64 "\n", s->false_pos,
               s->suspect_ev);
        printf("per peer: %.1f bytes/s, %.2f msgs/s\n", bps, mps);
        printf("converged: %s%s%s\n", converged ? "yes" : "no", converged ? "" : " - ",
               converged ? "" : why);
    }
    return s->failed ? 1 : 0;
}

/* Frees everything so leak checkers stay quiet. */
static void s_cleanup(sim_t *s)
{
    for (uint32_t p = 0; p < s->n && s->peers; p++)
        kvc_swim_destroy(&s->peers[p].core);
    for (size_t i = 0; i < s->heap.n; i++)
        free(s->heap.a[i].data);
    free(s->heap.a);
    free(s->peers);
    free(s->last_inc);
    free(s->site_rtt);
    free(s->crashed_ids);
    free(s->crash_t);
    free(s->first_susp);
    free(s->all_dead);
    free(s->dead_count);
    free(s->dead_mark);
    free(s->updates);
    kvc_outbox_free(&s->out);
}

int main(int argc, char **argv)
{
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--scenario") == 0)
            return strcmp(argv[i + 1], "lww") == 0        ? kvc_sim_lww_main(argc, argv)
                   : strcmp(argv[i + 1], "registry") == 0 ? kvc_sim_registry_main(argc, argv)
                   : strcmp(argv[i + 1], "failover") == 0 ? kvc_sim_failover_main(argc, argv)
                                                          : kvc_sim_election_main(argc, argv);
    sim_t s;
    memset(&s, 0, sizeof(s));
    if (s_options(&s, argc, argv) != 0)
        return 2;
    int rc = s_run(&s);
    s_cleanup(&s);
    return rc;
}
