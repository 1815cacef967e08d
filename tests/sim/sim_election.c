/*
 * sim_election.c - `kvc-sim --scenario election`: many sites, each with a
 * few voters running the unchanged election core (federation/election.c),
 * on a simulated clock stepped one millisecond at a time. Each node's clock
 * runs at its own rate within the 1% drift bound the lease assumes; messages
 * have latency and loss. The coordinator is crashed again and again (and
 * restarted later from its persisted term and vote) to measure failover_ms
 * (crash to a new coordinator able to act) and to count safety violations:
 * two coordinators of one site able to act at the same instant, or two
 * leaders in one term. Everything random comes from --seed.
 */
#include "sim_election.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "election.h"
#include "rng.h"

#define VMAX 9
#define TERMS_MAX 65536

typedef struct {
    uint64_t at;
    int from, to;
    size_t len;
    uint8_t data[256];
} emsg_t;

typedef struct {
    kvc_election_t *e;
    int up;
    uint64_t restart_at;
    uint64_t disk_term;
    char disk_vote[KVC_MEMBER_ID_MAX + 1];
    uint32_t rate_ppm;
    uint64_t off;
} enode_t;

typedef struct {
    int n;
    enode_t v[VMAX];
    char ids[VMAX][40];
    const char *idp[VMAX];
    emsg_t *q;
    size_t nq, capq;
    int *term_leader;
} esite_t;

typedef struct {
    int sites, voters, failovers, json;
    double loss;
    uint64_t seed;
    kvc_election_config_t cfg;
    uint32_t lat_min, lat_max;
    kvc_rng_t rng;
    kvc_outbox_t out;
    uint64_t now;
    uint64_t violations, two_in_term;
} esim_t;

/* A node's local clock at global time g. */
static uint64_t s_local(const enode_t *nd, uint64_t g)
{
    return nd->off + g * nd->rate_ppm / 1000000u;
}

/* Persists node i's term and vote, then puts its messages on the network. */
static int s_flush(esim_t *s, esite_t *st, int i)
{
    enode_t *nd = &st->v[i];
    if (kvc_election_needs_persist(nd->e)) {
        kvc_election_durable(nd->e, &nd->disk_term, nd->disk_vote);
        kvc_election_persisted(nd->e);
    }
    for (size_t k = 0; k < s->out.n_msgs; k++) {
        const kvc_out_msg_t *m = &s->out.msgs[k];
        int to = -1;
        for (int j = 0; j < st->n; j++)
            if (strcmp(st->ids[j], m->to) == 0)
                to = j;
        if (to < 0 || m->len > sizeof st->q[0].data)
            return -1;
        if (kvc_rng_double(&s->rng) < s->loss)
            continue;
        if (st->nq == st->capq) {
            size_t cap = st->capq ? 2 * st->capq : 64;
            emsg_t *q = realloc(st->q, cap * sizeof *q);
            if (!q)
                return -1;
            st->q = q;
            st->capq = cap;
        }
        emsg_t *q = &st->q[st->nq++];
        q->at = s->now + s->lat_min + kvc_rng_below(&s->rng, s->lat_max - s->lat_min + 1);
        q->from = i;
        q->to = to;
        q->len = m->len;
        memcpy(q->data, kvc_outbox_data(&s->out, k), m->len);
    }
    kvc_outbox_reset(&s->out);
    return 0;
}

static int s_start(esim_t *s, esite_t *st, int i)
{
    enode_t *nd = &st->v[i];
    nd->e = kvc_election_new(&s->cfg, st->ids[i], nd->disk_term, nd->disk_vote,
                             kvc_rng_next(&s->rng), s_local(nd, s->now));
    if (!nd->e || kvc_election_set_voters(nd->e, st->idp, (size_t)st->n, s_local(nd, s->now)) != 0)
        return -1;
    nd->up = 1;
    return 0;
}

/* Who can act now in the site: their count, and one of them in *who. */
static int s_acting(esim_t *s, esite_t *st, int *who)
{
    int n = 0;
    for (int i = 0; i < st->n; i++)
        if (st->v[i].up && kvc_election_can_act(st->v[i].e, s_local(&st->v[i], s->now))) {
            n++;
            if (who)
                *who = i;
        }
    return n;
}

/* One millisecond of one site: restarts, deliveries, ticks, invariants. */
static int s_step(esim_t *s, esite_t *st)
{
    for (int i = 0; i < st->n; i++)
        if (!st->v[i].up && st->v[i].restart_at && st->v[i].restart_at <= s->now) {
            st->v[i].restart_at = 0;
            if (s_start(s, st, i) != 0)
                return -1;
        }
    for (size_t k = 0; k < st->nq;) {
        emsg_t *q = &st->q[k];
        if (q->at > s->now) {
            k++;
            continue;
        }
        enode_t *nd = &st->v[q->to];
        if (nd->up) {
            kvc_election_receive(nd->e, s_local(nd, s->now), st->ids[q->from], q->data, q->len,
                                 &s->out);
            if (s_flush(s, st, q->to) != 0)
                return -1;
        }
        st->q[k] = st->q[--st->nq];
    }
    for (int i = 0; i < st->n; i++) {
        enode_t *nd = &st->v[i];
        if (!nd->up || kvc_election_next_deadline(nd->e) > s_local(nd, s->now))
            continue;
        kvc_election_tick(nd->e, s_local(nd, s->now), &s->out);
        if (s_flush(s, st, i) != 0)
            return -1;
    }
    if (s_acting(s, st, NULL) > 1)
        s->violations++;
    for (int i = 0; i < st->n; i++) {
        if (!st->v[i].up || kvc_election_state(st->v[i].e) != KVC_ELECTION_LEADER)
            continue;
        uint64_t term = kvc_election_term(st->v[i].e);
        if (term >= TERMS_MAX)
            continue;
        if (st->term_leader[term] == -1)
            st->term_leader[term] = i;
        else if (st->term_leader[term] != i)
            s->two_in_term++;
    }
    return 0;
}

/* Number of voters of the site that are down. */
static int s_down(const esite_t *st)
{
    int n = 0;
    for (int i = 0; i < st->n; i++)
        n += !st->v[i].up;
    return n;
}

static int s_u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void s_usage(FILE *f)
{
    fprintf(f, "usage: kvc-sim --scenario election [--sites S] [--voters V] [--failovers K]\n"
               "               [--profile lan|wan] [--loss P] [--seed N] [--json]\n"
               "  K coordinator crashes per site; prints failover_ms {p50, p99, max} and\n"
               "  safety_violations (must be 0).\n");
}

/* Parses the scenario's options. */
static int s_options(esim_t *s, int argc, char **argv)
{
    const char *profile = "lan";
    s->sites = 10;
    s->voters = 3;
    s->failovers = 20;
    s->seed = 1;
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
        if (strcmp(a, "--scenario") == 0)
            bad = strcmp(v, "election") != 0;
        else if (strcmp(a, "--sites") == 0)
            bad = kvc_parse_i64(v, 1, 100000, &x), s->sites = (int)x;
        else if (strcmp(a, "--voters") == 0)
            bad = kvc_parse_i64(v, 1, VMAX, &x), s->voters = (int)x;
        else if (strcmp(a, "--failovers") == 0)
            bad = kvc_parse_i64(v, 1, 1000000, &x), s->failovers = (int)x;
        else if (strcmp(a, "--seed") == 0)
            bad = kvc_parse_i64(v, 0, INT64_MAX, &x), s->seed = (uint64_t)x;
        else if (strcmp(a, "--profile") == 0)
            bad = kvc_election_config_profile(&s->cfg, v) != 0, profile = v;
        else if (strcmp(a, "--loss") == 0) {
            char *end;
            s->loss = strtod(v, &end);
            bad = *end || !(s->loss >= 0 && s->loss <= 0.5);
        } else {
            fprintf(stderr, "kvc-sim: unknown option %s for --scenario election\n", a);
            s_usage(stderr);
            return -1;
        }
        if (bad) {
            fprintf(stderr, "kvc-sim: %s: bad value '%s'\n", a, v);
            return -1;
        }
    }
    if (s->voters < 2) {
        fprintf(stderr, "kvc-sim: --voters: a failover needs at least 2\n");
        return -1;
    }
    kvc_election_config_profile(&s->cfg, profile);
    int wan = strcmp(profile, "wan") == 0;
    s->lat_min = wan ? 10 : 1; /* within a site; a wan site is spread out */
    s->lat_max = wan ? 40 : 3;
    return 0;
}

int kvc_sim_election_main(int argc, char **argv)
{
    esim_t s;
    memset(&s, 0, sizeof s);
    if (s_options(&s, argc, argv) != 0)
        return 2;
    kvc_rng_seed(&s.rng, s.seed);
    kvc_outbox_init(&s.out, 0);
    size_t total = (size_t)s.sites * (size_t)s.failovers;
    uint64_t *fo = calloc(total ? total : 1, sizeof *fo);
    int *tl = malloc(TERMS_MAX * sizeof *tl);
    if (!fo || !tl)
        return 1;
    size_t n_fo = 0, stuck = 0;
    uint64_t elections = 0, sim_ms = 0;
    int rc = 0;
    for (int site = 0; site < s.sites && rc == 0; site++) {
        esite_t st;
        memset(&st, 0, sizeof st);
        st.n = s.voters;
        st.term_leader = tl;
        for (int i = 0; i < TERMS_MAX; i++)
            tl[i] = -1;
        s.now = 0;
        for (int i = 0; i < st.n; i++) {
            snprintf(st.ids[i], sizeof st.ids[i], "site%d/p%d", site, i);
            st.idp[i] = st.ids[i];
            st.v[i].rate_ppm = 990000u + (uint32_t)kvc_rng_below(&s.rng, 20001);
            st.v[i].off = 1000 + kvc_rng_below(&s.rng, 100000);
        }
        for (int i = 0; i < st.n && rc == 0; i++)
            rc = s_start(&s, &st, i);
        for (int f = 0; f < s.failovers && rc == 0; f++) {
            /* wait for a coordinator, let it serve a while, crash it */
            int who = -1;
            uint64_t limit = s.now + 60000;
            while (rc == 0 && s_acting(&s, &st, &who) == 0 && s.now < limit) {
                s.now++;
                rc = s_step(&s, &st);
            }
            if (who < 0) {
                stuck++;
                break;
            }
            /* crash only with every voter back up, so a majority survives
             * and the time measured is the failover, not a restart */
            uint64_t serve = s.now + 500 + kvc_rng_below(&s.rng, 2500);
            while (rc == 0 && (s.now < serve || s_down(&st))) {
                s.now++;
                rc = s_step(&s, &st);
            }
            if (s_acting(&s, &st, &who) != 1)
                continue; /* lost the lease to loss meanwhile: not a crash failover */
            kvc_election_destroy(&st.v[who].e);
            st.v[who].up = 0;
            st.v[who].restart_at = s.now + 1000 + kvc_rng_below(&s.rng, 4000);
            uint64_t crash = s.now;
            int next = -1;
            limit = s.now + 60000;
            while (rc == 0 && s.now < limit) {
                s.now++;
                rc = s_step(&s, &st);
                if (s_acting(&s, &st, &next) > 0)
                    break;
            }
            if (next < 0) {
                stuck++;
                continue;
            }
            fo[n_fo++] = s.now - crash;
        }
        sim_ms += s.now;
        for (int i = 0; i < st.n; i++) {
            if (st.v[i].e) {
                kvc_election_stats_t es;
                kvc_election_stats(st.v[i].e, &es);
                elections += es.won;
            }
            kvc_election_destroy(&st.v[i].e);
        }
        free(st.q);
    }
    if (rc != 0) {
        fprintf(stderr, "kvc-sim: election scenario failed (allocation or routing)\n");
        return 1;
    }
    qsort(fo, n_fo, sizeof *fo, s_u64_cmp);
    uint64_t p50 = n_fo ? fo[(n_fo - 1) / 2] : 0;
    uint64_t p99 = n_fo ? fo[(size_t)((double)(n_fo - 1) * 0.99)] : 0;
    uint64_t mx = n_fo ? fo[n_fo - 1] : 0;
    uint64_t violations = s.violations + s.two_in_term;
    if (s.json)
        printf("{\"scenario\":\"election\",\"sites\":%d,\"voters\":%d,\"seed\":%" PRIu64
               ",\"loss\":%g,\"failovers\":%zu,\"stuck\":%zu,\"failover_ms\":{\"p50\":%" PRIu64
               ",\"p99\":%" PRIu64 ",\"max\":%" PRIu64 "},\"safety_violations\":%" PRIu64
               ",\"two_acting_ms\":%" PRIu64 ",\"two_leaders_in_term\":%" PRIu64
               ",\"simulated_s\":%" PRIu64 ",\"invariants_ok\":%s}\n",
               s.sites, s.voters, s.seed, s.loss, n_fo, stuck, p50, p99, mx, violations,
               s.violations, s.two_in_term, sim_ms / 1000, violations ? "false" : "true");
    else
        printf("election: %d sites x %d voters, %zu failovers (%zu stuck), failover_ms p50 %" PRIu64
               " p99 %" PRIu64 " max %" PRIu64 ", safety_violations %" PRIu64 "\n",
               s.sites, s.voters, n_fo, stuck, p50, p99, mx, violations);
    (void)elections;
    free(fo);
    free(tl);
    kvc_outbox_free(&s.out);
    return violations ? 1 : 0;
}
