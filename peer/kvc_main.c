/*
 * kvc - the command line for a kvc federation, usable from any site.
 *
 * Talks to one local kvc-peer through its control endpoint, found from
 * --control ENDPOINT, the KVC_CONTROL variable, or --config FILE (the
 * peer's own configuration). Human tables by default, --json for scripts.
 *
 * Conventions every command keeps (README "Command line"):
 *   exit 0 success, 1 failure (one line "kvc: ..." on stderr), 2 usage;
 *   --json: a list is a JSON array, a record an object, a stream one object
 *   per line; a field that carries a unit names it (rtt_ms, uptime_s), an
 *   unknown number is null; times of day are ISO-8601 UTC strings.
 * Commands are rows of s_commands[]: a new command is a function and a row.
 */
#include "cli_ca.h"
#include "cli_join.h"
#include "cli_jobs.h"
#include "cli_models.h"
#include "cli_route.h"
#include "pb_alloc.h"
#include "cli_out.h"
#include "config.h"
#include "control.h"
#include "credential.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef KVC_VERSION
#error "KVC_VERSION comes from CMake (project VERSION)"
#endif

enum { S_OK = 0, S_FAIL = 1, S_USAGE = 2 };

#define S_MAX_POS 2     /* positional arguments a command takes */
#define S_MAX_CMD_OPT 3 /* options of one command */

typedef struct {
    const char *config;
    const char *control;
    int json;
    int timeout_ms;
    const char *site;
    const char *pos[S_MAX_POS];
    size_t n_pos;
    const char *opt[S_MAX_CMD_OPT]; /* values of the command's own options */
} kvc_cli_opts_t;

typedef struct {
    const char *name;
    int takes_value;
} s_cmd_opt_t;

typedef struct {
    const char *name;
    int (*fn)(const kvc_cli_opts_t *o);
    int takes_site;               /* --site S filters the output */
    size_t min_pos, max_pos;      /* positional arguments */
    s_cmd_opt_t opts[S_MAX_CMD_OPT];
    const char *synopsis;         /* "members [--site S] [--status S]" */
    const char *summary;          /* one line for kvc --help */
    const char *help;             /* kvc COMMAND --help */
} s_cmd_t;

static const s_cmd_t *s_find(const char *name);
static void s_usage(FILE *f);


/* Resolves the control endpoint from the options, the environment or a config. */
static int s_endpoint(const kvc_cli_opts_t *o, char *out, size_t size)
{
    kvc_err_t err = {0};
    return kvc_control_endpoint(o->config, o->control, out, size, &err) ? kvc_cli_fail(S_USAGE, "%s", err.msg)
                                                                         : 0;
}

/* Calls the peer with n_args key/value pairs; prints the failure line itself. */
static int s_call_args(const kvc_cli_opts_t *o, const char *command, const char *const *args,
                       size_t n_args, Kvc__Ctl__Reply **rep)
{
    char ep[KVC_ENDPOINT_MAX];
    int rc = s_endpoint(o, ep, sizeof ep);
    if (rc)
        return rc;
    kvc_err_t err = {0};
    if (kvc_control_call(ep, command, args, n_args, o->timeout_ms, rep, &err) != 0)
        return kvc_cli_fail(S_FAIL, "%s", err.msg);
    return 0;
}

static int s_call(const kvc_cli_opts_t *o, const char *command, Kvc__Ctl__Reply **rep)
{
    return s_call_args(o, command, NULL, 0, rep);
}

/* --site S names a site some member belongs to: else "no such site", exit 1. */
static int s_check_site(const kvc_cli_opts_t *o, const Kvc__Ctl__Reply *members)
{
    if (!o->site)
        return 0;
    for (size_t i = 0; i < members->n_members; i++)
        if (strcmp(members->members[i]->site, o->site) == 0)
            return 0;
    return kvc_cli_fail(S_FAIL, "no such site: %s (see 'kvc sites')", o->site);
}

/* Fetches the member list and checks --site against it. */
static int s_site_known(const kvc_cli_opts_t *o)
{
    if (!o->site)
        return 0;
    Kvc__Ctl__Reply *rep = NULL;
    int rc = s_call(o, "members", &rep);
    if (rc)
        return rc;
    rc = s_check_site(o, rep);
    kvc__ctl__reply__free_unpacked(rep, kvc_pb_allocator());
    return rc;
}

static int s_site_skip(const kvc_cli_opts_t *o, const char *site)
{
    return o->site && strcmp(o->site, site) != 0;
}

/* Prints a number for JSON: null when unknown (negative or NaN). */
static void s_json_num(double v, const char *fmt)
{
    if (isnan(v) || v < 0)
        printf("null");
    else
        printf(fmt, v);
}

/* ---- kvc status ---------------------------------------------------------- */

/* ,"coordinators":[{site, coordinator, term, voters_alive}...] */
static void s_json_coordinators(const Kvc__Ctl__Reply *rep)
{
    printf(",\"coordinators\":[");
    for (size_t i = 0; i < rep->n_coordinators; i++) {
        const Kvc__Ctl__SiteCoordinator *c = rep->coordinators[i];
        printf("%s{\"site\":", i ? "," : "");
        kvc_json_str(stdout, c->site);
        kvc_json_field(stdout, "coordinator", c->coordinator);
        printf(",\"term\":%llu,\"voters_alive\":%u}", (unsigned long long)c->term,
               c->voters_alive);
    }
    putchar(']');
}

/* The coordinator entry of site in rep, or NULL. */
static const Kvc__Ctl__SiteCoordinator *s_site_coordinator(const Kvc__Ctl__Reply *rep,
                                                            const char *site)
{
    for (size_t i = 0; i < rep->n_coordinators; i++)
        if (strcmp(rep->coordinators[i]->site, site) == 0)
            return rep->coordinators[i];
    return NULL;
}

static int s_cmd_status(const kvc_cli_opts_t *o)
{
    Kvc__Ctl__Reply *rep = NULL;
    int rc = s_call(o, "status", &rep);
    if (rc)
        return rc;
    const Kvc__Ctl__Status *st = rep->status;
    if (!st) {
        kvc__ctl__reply__free_unpacked(rep, kvc_pb_allocator());
        return kvc_cli_fail(S_FAIL, "the peer sent no status");
    }
    if (o->json) {
        printf("{\"name\":");
        kvc_json_str(stdout, st->name);
        kvc_json_field(stdout, "site", st->site);
        kvc_json_field(stdout, "region", st->region);
        kvc_json_str_array(stdout, "roles", st->roles, st->n_roles);
        kvc_json_field(stdout, "version", st->version);
        printf(",\"uptime_s\":%llu,\"listen\":", (unsigned long long)st->uptime_s);
        kvc_json_str(stdout, st->listen);
        kvc_json_field(stdout, "advertise", st->advertise);
        kvc_json_field(stdout, "http", st->http);
        kvc_json_field(stdout, "public_key", st->public_key);
        kvc_json_field(stdout, "seed", st->seed);
        printf(",\"peers_connected\":%u,\"peers_known\":%u,\"auth_rejects\":%llu,"
               "\"auth_rejects_by_reason\":{",
               st->peers_connected, st->peers_known, (unsigned long long)st->auth_rejects);
        for (size_t i = 0; i < st->n_auth_rejects_by_reason; i++) {
            if (i)
                putchar(',');
            kvc_json_str(stdout, st->auth_rejects_by_reason[i]->reason);
            printf(":%llu", (unsigned long long)st->auth_rejects_by_reason[i]->count);
        }
        printf("},\"incarnation\":%llu,\"members_by_state\":{",
               (unsigned long long)st->incarnation);
        for (size_t i = 0; i < st->n_members_by_state; i++) {
            if (i)
                putchar(',');
            kvc_json_str(stdout, st->members_by_state[i]->key);
            printf(":%u", st->members_by_state[i]->value);
        }
        printf("},\"membership_dropped\":%llu", (unsigned long long)st->membership_dropped);
        printf(",\"msgs_in\":%llu,\"msgs_out\":%llu,\"send_dropped\":%llu",
               (unsigned long long)st->msgs_in, (unsigned long long)st->msgs_out,
               (unsigned long long)st->send_dropped);
        const Kvc__Ctl__Election *el = st->election;
        if (el) {
            printf(",\"election\":{\"voter\":%s", el->voter ? "true" : "false");
            kvc_json_field(stdout, "state", el->state);
            printf(",\"term\":%llu", (unsigned long long)el->term);
            kvc_json_field(stdout, "coordinator", el->coordinator);
            printf(",\"voters\":%u,\"can_act\":%s,\"lease_ms_left\":%llu,\"elections\":%llu,"
                   "\"won\":%llu,\"step_downs\":%llu}",
                   el->voters, el->can_act ? "true" : "false",
                   (unsigned long long)el->lease_ms_left, (unsigned long long)el->elections,
                   (unsigned long long)el->won, (unsigned long long)el->step_downs);
        }
        s_json_coordinators(rep);
        puts("}");
    } else {
        char up[32];
        printf("%-16s %s/%s\n", "member", st->site, st->name);
        printf("%-16s %s\n", "region", st->region);
        printf("%-16s", "roles");
        for (size_t i = 0; i < st->n_roles; i++)
            printf("%s%s", i ? "," : " ", st->roles[i]);
        printf("\n%-16s %s\n", "version", st->version);
        printf("%-16s %s\n", "uptime", kvc_fmt_duration(st->uptime_s, up, sizeof up));
        printf("%-16s %s\n", "listen", st->listen);
        printf("%-16s %s\n", "advertise", st->advertise);
        printf("%-16s %s\n", "http", st->http[0] ? st->http : "off");
        printf("%-16s %s\n", "public key", st->public_key);
        printf("%-16s %s\n", "seed", st->seed);
        printf("%-16s %u connected, %u known\n", "peers", st->peers_connected, st->peers_known);
        printf("%-16s %llu", "auth rejects", (unsigned long long)st->auth_rejects);
        int first = 1;
        for (size_t i = 0; i < st->n_auth_rejects_by_reason; i++) {
            if (!st->auth_rejects_by_reason[i]->count)
                continue;
            printf("%s%s %llu", first ? " (" : ", ", st->auth_rejects_by_reason[i]->reason,
                   (unsigned long long)st->auth_rejects_by_reason[i]->count);
            first = 0;
        }
        printf("%s\n", first ? "" : ")");
        printf("%-16s", "members");
        for (size_t i = 0; i < st->n_members_by_state; i++)
            printf("%s%u %s", i ? ", " : " ", st->members_by_state[i]->value,
                   st->members_by_state[i]->key);
        printf(" (incarnation %llu)\n", (unsigned long long)st->incarnation);
        printf("%-16s %llu in, %llu out, %llu dropped\n", "messages",
               (unsigned long long)st->msgs_in, (unsigned long long)st->msgs_out,
               (unsigned long long)st->send_dropped);
        const Kvc__Ctl__Election *el = st->election;
        if (el) {
            printf("%-16s %s, term %llu", "election", el->voter ? el->state : "not a voter",
                   (unsigned long long)el->term);
            if (el->can_act)
                printf(", coordinator (lease %llu ms left)", (unsigned long long)el->lease_ms_left);
            else if (el->coordinator[0])
                printf(", coordinator %s", el->coordinator);
            else
                printf(", no coordinator known");
            printf(", %u voter%s\n", el->voters, el->voters == 1 ? "" : "s");
        }
        for (size_t i = 0; i < rep->n_coordinators; i++) {
            const Kvc__Ctl__SiteCoordinator *c = rep->coordinators[i];
            char what[160];
            snprintf(what, sizeof what, "%s: %s (term %llu)", c->site,
                     c->coordinator[0] ? c->coordinator : "none", (unsigned long long)c->term);
            printf("%-16s %s\n", i ? "" : "coordinators", what);
        }
        printf("\nTo join another peer to this one, add to its federation.seeds:\n  - %s\n",
               st->seed);
    }
    kvc__ctl__reply__free_unpacked(rep, kvc_pb_allocator());
    return 0;
}

/* ---- kvc peers ----------------------------------------------------------- */

static int s_cmd_peers(const kvc_cli_opts_t *o)
{
    int rc = s_site_known(o);
    if (rc)
        return rc;
    Kvc__Ctl__Reply *rep = NULL;
    rc = s_call(o, "peers", &rep);
    if (rc)
        return rc;
    if (o->json) {
        putchar('[');
        int n = 0;
        for (size_t i = 0; i < rep->n_peers; i++) {
            const Kvc__Ctl__PeerLink *p = rep->peers[i];
            if (s_site_skip(o, p->site))
                continue;
            char until[32];
            printf("%s{\"member\":", n++ ? "," : "");
            kvc_json_str(stdout, p->member_id);
            kvc_json_field(stdout, "site", p->site);
            kvc_json_field(stdout, "name", p->name);
            kvc_json_field(stdout, "region", p->region);
            kvc_json_field(stdout, "endpoint", p->endpoint);
            kvc_json_field(stdout, "public_key", p->public_key);
            kvc_json_str_array(stdout, "roles", p->roles, p->n_roles);
            printf(",\"up\":%s,\"last_seen_ms_ago\":%llu,\"rtt_ms\":", p->up ? "true" : "false",
                   (unsigned long long)p->last_seen_ms_ago);
            if (p->rtt_us)
                printf("%.3f", (double)p->rtt_us / 1000.0);
            else
                printf("null");
            printf(",\"not_after\":\"%s\"}", kvc_cred_time_str(p->not_after, until, sizeof until));
        }
        puts("]");
    } else {
        printf("%-28s %-12s %-8s %-8s %-10s %-10s %s\n", "MEMBER", "REGION", "STATE", "RTT",
               "LAST SEEN", "KEY", "ENDPOINT");
        for (size_t i = 0; i < rep->n_peers; i++) {
            const Kvc__Ctl__PeerLink *p = rep->peers[i];
            if (s_site_skip(o, p->site))
                continue;
            char rtt[16], seen[32];
            if (p->rtt_us)
                snprintf(rtt, sizeof rtt, "%.1fms", (double)p->rtt_us / 1000.0);
            else
                snprintf(rtt, sizeof rtt, "-");
            snprintf(seen, sizeof seen, "%.1fs ago", (double)p->last_seen_ms_ago / 1000.0);
            printf("%-28s %-12s %-8s %-8s %-10s %.8s…  %s\n", p->member_id, p->region,
                   p->up ? "up" : "down", rtt, seen, p->public_key, p->endpoint);
        }
    }
    kvc__ctl__reply__free_unpacked(rep, kvc_pb_allocator());
    return 0;
}

/* ---- kvc members --------------------------------------------------------- */

static int s_cmd_members(const kvc_cli_opts_t *o)
{
    const char *status = o->opt[0];
    if (status && strcmp(status, "alive") != 0 && strcmp(status, "suspect") != 0 &&
        strcmp(status, "dead") != 0 && strcmp(status, "left") != 0)
        return kvc_cli_fail(S_USAGE, "--status: '%.40s' is not alive, suspect, dead or left "
                               "(see 'kvc members --help')",
                      status);
    Kvc__Ctl__Reply *rep = NULL;
    int rc = s_call(o, "members", &rep);
    if (rc)
        return rc;
    if ((rc = s_check_site(o, rep)) != 0) {
        kvc__ctl__reply__free_unpacked(rep, kvc_pb_allocator());
        return rc;
    }
    if (o->json)
        putchar('[');
    else
        printf("%-28s %-12s %-8s %5s %9s %12s\n", "MEMBER", "REGION", "STATE", "INC", "RTT",
               "LAST CHANGE");
    int n = 0;
    for (size_t i = 0; i < rep->n_members; i++) {
        const Kvc__Ctl__Member *m = rep->members[i];
        if (s_site_skip(o, m->site) || (status && strcmp(status, m->state) != 0))
            continue;
        if (o->json) {
            printf("%s{\"id\":", n++ ? "," : "");
            kvc_json_str(stdout, m->id);
            kvc_json_field(stdout, "site", m->site);
            kvc_json_field(stdout, "region", m->region);
            kvc_json_field(stdout, "state", m->state);
            printf(",\"incarnation\":%llu,\"rtt_ms\":", (unsigned long long)m->incarnation);
            s_json_num(m->rtt_ms, "%.3f");
            printf(",\"last_change_ms_ago\":%llu,\"roles\":[",
                   (unsigned long long)m->last_change_ms_ago);
            /* roles travel comma-separated; a list is an array in JSON */
            const char *r = m->roles;
            for (int k = 0; *r; k++) {
                size_t len = strcspn(r, ",");
                char role[KVC_NAME_MAX];
                snprintf(role, sizeof role, "%.*s", (int)len, r);
                if (k)
                    putchar(',');
                kvc_json_str(stdout, role);
                r += len + (r[len] == ',');
            }
            putchar(']');
            kvc_json_field(stdout, "endpoint", m->endpoint);
            printf(",\"self\":%s,\"voter\":%s", m->is_self ? "true" : "false",
                   m->voter ? "true" : "false");
            kvc_json_field(stdout, "election_state", m->election_state);
            printf(",\"term\":%llu}", (unsigned long long)m->term);
        } else {
            char rtt[24], ago[32], id[80];
            if (m->rtt_ms < 0)
                snprintf(rtt, sizeof rtt, "-");
            else
                snprintf(rtt, sizeof rtt, "%.1fms", m->rtt_ms);
            snprintf(ago, sizeof ago, "%s ago",
                     kvc_fmt_duration(m->last_change_ms_ago / 1000, (char[16]){0}, 16));
            snprintf(id, sizeof id, "%s%s", m->id, m->is_self ? " (self)" : "");
            printf("%-28s %-12s %-8s %5llu %9s %12s\n", id, m->region, m->state,
                   (unsigned long long)m->incarnation, rtt, ago);
        }
    }
    if (o->json)
        puts("]");
    kvc__ctl__reply__free_unpacked(rep, kvc_pb_allocator());
    return 0;
}

/* Collects the distinct site names of n items (site_of(i) gives item i's)
 * into a new array sorted by name; *ns gets their count. kvc_free it. */
static const char **s_sorted_sites(size_t n,
                                   const char *(*site_of)(const Kvc__Ctl__Reply *, size_t),
                                   const Kvc__Ctl__Reply *rep, size_t *ns)
{
    const char **sites = kvc_calloc(n ? n : 1, sizeof *sites);
    *ns = 0;
    if (!sites)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        const char *site = site_of(rep, i);
        size_t j = 0;
        while (j < *ns && strcmp(sites[j], site) != 0)
            j++;
        if (j == *ns)
            sites[(*ns)++] = site;
    }
    for (size_t a = 1; a < *ns; a++) /* insertion sort: a handful of sites */
        for (size_t b = a; b > 0 && strcmp(sites[b - 1], sites[b]) > 0; b--) {
            const char *t = sites[b];
            sites[b] = sites[b - 1];
            sites[b - 1] = t;
        }
    return sites;
}

static const char *s_member_site(const Kvc__Ctl__Reply *rep, size_t i)
{
    return rep->members[i]->site;
}

static const char *s_metrics_site(const Kvc__Ctl__Reply *rep, size_t i)
{
    return rep->metrics[i]->site;
}

/* ---- kvc sites ----------------------------------------------------------- */

static int s_cmd_sites(const kvc_cli_opts_t *o)
{
    Kvc__Ctl__Reply *rep = NULL;
    int rc = s_call(o, "members", &rep);
    if (rc)
        return rc;
    size_t n = rep->n_members, ns = 0;
    const char **sites = s_sorted_sites(n, s_member_site, rep, &ns);
    if (!sites) {
        kvc__ctl__reply__free_unpacked(rep, kvc_pb_allocator());
        return kvc_cli_fail(S_FAIL, "out of memory");
    }
    if (o->json)
        putchar('[');
    else
        printf("%-20s %-12s %6s %7s %6s %6s %9s  %-28s %5s\n", "SITE", "REGION", "ALIVE",
               "SUSPECT", "DEAD", "LEFT", "RTT", "COORDINATOR", "TERM");
    for (size_t k = 0; k < ns; k++) {
        unsigned cnt[4] = {0};
        const char *region = "";
        double rtt = -1;
        for (size_t i = 0; i < n; i++) {
            const Kvc__Ctl__Member *m = rep->members[i];
            if (strcmp(m->site, sites[k]) != 0)
                continue;
            if (m->region[0])
                region = m->region;
            const char *names[4] = {"alive", "suspect", "dead", "left"};
            for (int s = 0; s < 4; s++)
                if (strcmp(m->state, names[s]) == 0)
                    cnt[s]++;
            if (m->rtt_ms >= 0 && strcmp(m->state, "alive") == 0 && (rtt < 0 || m->rtt_ms < rtt))
                rtt = m->rtt_ms;
        }
        const Kvc__Ctl__SiteCoordinator *sc = s_site_coordinator(rep, sites[k]);
        if (o->json) {
            printf("%s{\"site\":", k ? "," : "");
            kvc_json_str(stdout, sites[k]);
            kvc_json_field(stdout, "region", region);
            printf(",\"alive\":%u,\"suspect\":%u,\"dead\":%u,\"left\":%u,\"rtt_ms\":", cnt[0],
                   cnt[1], cnt[2], cnt[3]);
            s_json_num(rtt, "%.3f");
            kvc_json_field(stdout, "coordinator", sc ? sc->coordinator : "");
            printf(",\"term\":%llu,\"voters_alive\":%u}", sc ? (unsigned long long)sc->term : 0ull,
                   sc ? sc->voters_alive : 0);
        } else {
            char r[24];
            if (rtt < 0)
                snprintf(r, sizeof r, "-");
            else
                snprintf(r, sizeof r, "%.1fms", rtt);
            char term[24] = "-";
            if (sc && sc->term)
                snprintf(term, sizeof term, "%llu", (unsigned long long)sc->term);
            printf("%-20s %-12s %6u %7u %6u %6u %9s  %-28s %5s\n", sites[k], region, cnt[0],
                   cnt[1], cnt[2], cnt[3], r, sc && sc->coordinator[0] ? sc->coordinator : "-",
                   term);
        }
    }
    if (o->json)
        puts("]");
    kvc_free(sites);
    kvc__ctl__reply__free_unpacked(rep, kvc_pb_allocator());
    return 0;
}

/* ---- kvc metrics --------------------------------------------------------- */

/* Formats a value for the table: "-" when unknown. */
static const char *s_cell(double v, const char *fmt, double scale, char *buf, size_t size)
{
    if (isnan(v) || v < 0)
        snprintf(buf, size, "-");
    else
        snprintf(buf, size, fmt, v * scale);
    return buf;
}

/* Adds b into *a where both are known; an unknown b leaves *a as is. */
static void s_sum(double *a, double b)
{
    if (isnan(b) || b < 0)
        return;
    *a = (*a < 0 ? 0 : *a) + b;
}

static int s_cmd_metrics(const kvc_cli_opts_t *o)
{
    int rc = s_site_known(o);
    if (rc)
        return rc;
    Kvc__Ctl__Reply *rep = NULL;
    rc = s_call(o, "metrics", &rep);
    if (rc)
        return rc;
    size_t n = rep->n_metrics, ns = 0;
    const char **sites = s_sorted_sites(n, s_metrics_site, rep, &ns);
    if (!sites) {
        kvc__ctl__reply__free_unpacked(rep, kvc_pb_allocator());
        return kvc_cli_fail(S_FAIL, "out of memory");
    }
    if (o->json)
        putchar('[');
    else
        printf("%-16s %-10s %5s %6s %10s %9s %9s %9s %7s %10s\n", "SITE", "REGION", "UP", "PEERS",
               "REQ/S", "P50", "P99", "ERR/S", "CPU", "MEMORY");
    int k = 0;
    for (size_t si = 0; si < ns; si++) {
        if (s_site_skip(o, sites[si]))
            continue;
        const char *region = "";
        unsigned up = 0, total = 0;
        double rps = -1, eps = -1, cpu = -1, p50 = NAN, p99 = NAN, rss = 0;
        for (size_t i = 0; i < n; i++) {
            const Kvc__Ctl__PeerMetrics *m = rep->metrics[i];
            if (strcmp(m->site, sites[si]) != 0)
                continue;
            total++;
            region = m->region;
            if (!m->fresh)
                continue;
            up++;
            s_sum(&rps, m->requests_per_s);
            s_sum(&eps, m->errors_per_s);
            s_sum(&cpu, m->cpu_cores);
            rss += (double)m->rss_bytes;
            if (!isnan(m->p50_s) && !(m->p50_s <= p50))
                p50 = m->p50_s;
            if (!isnan(m->p99_s) && !(m->p99_s <= p99))
                p99 = m->p99_s;
        }
        if (o->json) {
            printf("%s{\"site\":", k++ ? "," : "");
            kvc_json_str(stdout, sites[si]);
            kvc_json_field(stdout, "region", region);
            printf(",\"up\":%s,\"peers_up\":%u,\"peers\":%u,\"requests_per_s\":",
                   up ? "true" : "false", up, total);
            s_json_num(rps, "%.3f");
            printf(",\"p50_ms\":");
            s_json_num(p50 * 1000.0, "%.3f");
            printf(",\"p99_ms\":");
            s_json_num(p99 * 1000.0, "%.3f");
            printf(",\"errors_per_s\":");
            s_json_num(eps, "%.3f");
            printf(",\"cpu_cores\":");
            s_json_num(cpu, "%.4f");
            printf(",\"rss_bytes\":%.0f}", rss);
        } else {
            char c1[24], c2[24], c3[24], c4[24], c5[24], c6[24], c7[16];
            snprintf(c7, sizeof c7, "%u/%u", up, total);
            printf("%-16s %-10s %5s %6s %10s %9s %9s %9s %7s %10s\n", sites[si], region,
                   up ? "yes" : "NO", c7, s_cell(rps, "%.1f", 1, c1, sizeof c1),
                   s_cell(p50, "%.1fms", 1000, c2, sizeof c2),
                   s_cell(p99, "%.1fms", 1000, c3, sizeof c3),
                   s_cell(eps, "%.2f", 1, c4, sizeof c4), s_cell(cpu, "%.0f%%", 100, c5, sizeof c5),
                   s_cell(up ? rss : -1, "%.1fMiB", 1.0 / 1048576, c6, sizeof c6));
        }
    }
    if (o->json)
        puts("]");
    kvc_free(sites);
    kvc__ctl__reply__free_unpacked(rep, kvc_pb_allocator());
    return 0;
}

/* ---- kvc monitor --------------------------------------------------------- */

/* Waits ms on the monotonic clock (the pace of a polling stream). */
static void s_pause_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static int s_cmd_monitor(const kvc_cli_opts_t *o)
{
    int64_t since = -1, count = 0;
    if (o->opt[0] && kvc_parse_i64(o->opt[0], 0, INT64_MAX, &since) != 0)
        return kvc_cli_fail(S_USAGE, "--since: '%.40s' is not a sequence number "
                               "(see 'kvc monitor --help')",
                      o->opt[0]);
    if (o->opt[1] && kvc_parse_i64(o->opt[1], 1, 1000000, &count) != 0)
        return kvc_cli_fail(S_USAGE, "--count: '%.40s' is not a number in 1..1000000 "
                               "(see 'kvc monitor --help')",
                      o->opt[1]);
    int rc = s_site_known(o);
    if (rc)
        return rc;
    if (!o->json)
        setvbuf(stdout, NULL, _IOLBF, 0);
    int64_t printed = 0;
    for (;;) {
        char since_s[24];
        /* without --since: only what happens from now on (the first reply's
         * next_seq), as `serf monitor` does */
        snprintf(since_s, sizeof since_s, "%lld", (long long)(since < 0 ? 0 : since));
        const char *args[2] = {"since", since_s};
        Kvc__Ctl__Reply *rep = NULL;
        if ((rc = s_call_args(o, "events", args, 1, &rep)) != 0)
            return rc;
        if (since < 0) {
            since = (int64_t)rep->next_seq;
            kvc__ctl__reply__free_unpacked(rep, kvc_pb_allocator());
            continue;
        }
        if ((uint64_t)since > rep->next_seq) {
            /* sequence numbers are per peer process: it restarted */
            if (o->json)
                puts("{\"restarted\":true}");
            else
                puts("(the peer restarted; its events start again)");
            since = 0;
            kvc__ctl__reply__free_unpacked(rep, kvc_pb_allocator());
            continue;
        }
        if (rep->events_lost) {
            if (o->json)
                printf("{\"lost\":%llu}\n", (unsigned long long)rep->events_lost);
            else
                printf("(%llu older events were no longer held)\n",
                       (unsigned long long)rep->events_lost);
        }
        for (size_t i = 0; i < rep->n_events && (!count || printed < count); i++) {
            const Kvc__Ctl__MemberEvent *e = rep->events[i];
            since = (int64_t)e->seq;
            const char *slash = strchr(e->id, '/');
            if (o->site && (!slash || (size_t)(slash - e->id) != strlen(o->site) ||
                            strncmp(e->id, o->site, strlen(o->site)) != 0))
                continue;
            if (o->json) {
                printf("{\"seq\":%llu,\"id\":", (unsigned long long)e->seq);
                kvc_json_str(stdout, e->id);
                kvc_json_field(stdout, "type", e->type);
                printf(",\"incarnation\":%llu,\"ms_ago\":%llu}\n",
                       (unsigned long long)e->incarnation, (unsigned long long)e->ms_ago);
            } else {
                printf("%6llu  %-8s %s (incarnation %llu, %.1fs ago)\n",
                       (unsigned long long)e->seq, e->type, e->id,
                       (unsigned long long)e->incarnation, (double)e->ms_ago / 1000.0);
            }
            printed++;
        }
        kvc__ctl__reply__free_unpacked(rep, kvc_pb_allocator());
        fflush(stdout);
        if (count && printed >= count)
            return 0;
        s_pause_ms(250);
    }
}

/* ---- kvc rtt ------------------------------------------------------------- */

static int s_cmd_rtt(const kvc_cli_opts_t *o)
{
    const char *a = o->pos[0], *b = o->n_pos > 1 ? o->pos[1] : "";
    const char *args[4] = {"a", a, "b", b};
    Kvc__Ctl__Reply *rep = NULL;
    int rc = s_call_args(o, "rtt", args, 2, &rep);
    if (rc)
        return rc;
    if (o->json) {
        printf("{\"a\":");
        kvc_json_str(stdout, a);
        printf(",\"b\":");
        if (b[0])
            kvc_json_str(stdout, b);
        else
            printf("null");
        printf(",\"rtt_ms\":%.3f}\n", rep->rtt_ms);
    } else {
        printf("estimated %s <-> %s rtt: %.3f ms\n", a, b[0] ? b : "this peer", rep->rtt_ms);
    }
    kvc__ctl__reply__free_unpacked(rep, kvc_pb_allocator());
    return 0;
}

/* ---- kvc nodes, enroll, tokens ------------------------------------------ */

/* "2026-12-07T12:00:00Z", or "-" for 0. */
static const char *s_when(int64_t unix_s, char *buf, size_t size)
{
    if (!unix_s)
        return "-";
    return kvc_cred_time_str(unix_s, buf, size);
}

static void s_json_when(const char *key, int64_t unix_s)
{
    char t[40];
    printf(",\"%s\":", key);
    if (unix_s)
        kvc_json_str(stdout, kvc_cred_time_str(unix_s, t, sizeof t));
    else
        printf("null");
}

static void s_print_nodes(const kvc_cli_opts_t *o, const Kvc__Ctl__Reply *rep, int one)
{
    if (o->json && !one)
        putchar('[');
    else if (!o->json)
        printf("%-12s %-20s %-9s %-6s %-20s %-28s %s\n", "ID", "NAME", "STATE", "ARCH",
               "ADDRESSES", "UPDATED BY", "JOINED");
    for (size_t i = 0; i < rep->n_nodes; i++) {
        const Kvc__Join__NodeRecord *n = rep->nodes[i];
        char hex[65] = "", t[40], addrs[80] = "";
        if (n->key.len == 32)
            kvc_key_hex(n->key.data, hex);
        for (size_t k = 0; k < n->n_addresses; k++) {
            size_t used = strlen(addrs);
            snprintf(addrs + used, sizeof addrs - used, "%s%s", k ? "," : "", n->addresses[k]);
        }
        if (o->json) {
            printf("%s{\"id\":", i ? "," : "");
            kvc_json_str(stdout, hex);
            kvc_json_field(stdout, "name", n->name);
            kvc_json_field(stdout, "site", n->site);
            kvc_json_field(stdout, "state", n->state);
            kvc_json_field(stdout, "arch", n->arch);
            kvc_json_str_array(stdout, "addresses", n->addresses, n->n_addresses);
            s_json_when("first_seen", n->first_seen_unix);
            s_json_when("updated", n->updated_unix);
            kvc_json_field(stdout, "updated_by", n->updated_by);
            s_json_when("joined", n->joined_unix);
            putchar('}');
        } else {
            printf("%-12.12s %-20s %-9s %-6s %-20s %-28s %s\n", hex, n->name, n->state,
                   n->arch[0] ? n->arch : "-", addrs[0] ? addrs : "-",
                   n->updated_by[0] ? n->updated_by : "-", s_when(n->joined_unix, t, sizeof t));
        }
    }
    if (o->json)
        puts(one ? "" : "]");
}

static int s_cmd_nodes(const kvc_cli_opts_t *o)
{
    const char *verb = o->n_pos ? o->pos[0] : "list";
    Kvc__Ctl__Reply *rep = NULL;
    int rc, one = 0;
    if (strcmp(verb, "list") == 0 || strcmp(verb, "pending") == 0) {
        if (o->n_pos > 1)
            return kvc_cli_fail(S_USAGE, "nodes %s takes no ID (see 'kvc nodes --help')", verb);
        const char *args[2] = {"state", strcmp(verb, "pending") == 0 ? "pending" : ""};
        rc = s_call_args(o, "nodes", args, 1, &rep);
    } else if (strcmp(verb, "setup") == 0) {
        if (o->n_pos != 2)
            return kvc_cli_fail(S_USAGE, "nodes setup needs a node name (see 'kvc nodes list')");
        return kvc_cli_nodes_setup(o->pos[1], o->opt[0], o->config, o->control, o->json,
                                   o->timeout_ms);
    } else if (strcmp(verb, "approve") == 0 || strcmp(verb, "reject") == 0 ||
               strcmp(verb, "revoke") == 0) {
        if (o->n_pos != 2)
            return kvc_cli_fail(S_USAGE, "nodes %s needs a node ID or name (see 'kvc nodes pending')",
                          verb);
        const char *args[4] = {"id", o->pos[1], "to", verb};
        rc = s_call_args(o, "node-decide", args, 2, &rep);
        one = 1;
    } else {
        return kvc_cli_fail(S_USAGE,
                      "nodes: '%.40s' is not pending, list, approve, reject or revoke", verb);
    }
    if (rc)
        return rc;
    if (one && !o->json && rep->n_nodes == 1) {
        char hex[65] = "";
        if (rep->nodes[0]->key.len == 32)
            kvc_key_hex(rep->nodes[0]->key.data, hex);
        printf("node %.12s (%s) is %s\n", hex, rep->nodes[0]->name, rep->nodes[0]->state);
    } else if (one && o->json && rep->n_nodes == 1) {
        Kvc__Ctl__Reply only = *rep;
        s_print_nodes(o, &only, 1);
    } else {
        s_print_nodes(o, rep, 0);
    }
    kvc__ctl__reply__free_unpacked(rep, kvc_pb_allocator());
    return 0;
}

/* "90", "90s", "10m", "2h", "7d" -> seconds; -1 if malformed. */
static long long s_duration_s(const char *s)
{
    if (!s || !*s || strlen(s) > 12)
        return -1;
    long long v = 0;
    const char *p = s;
    for (; *p >= '0' && *p <= '9'; p++)
        v = v * 10 + (*p - '0');
    if (p == s)
        return -1;
    long long mult = 1;
    if (*p == 's')
        p++;
    else if (*p == 'm')
        mult = 60, p++;
    else if (*p == 'h')
        mult = 3600, p++;
    else if (*p == 'd')
        mult = 86400, p++;
    return *p ? -1 : v * mult;
}

static int s_cmd_backup(const kvc_cli_opts_t *o)
{
    char path[4096];
    const char *dir = o->pos[0];
    if (dir[0] != '/') {
        char cwd[3072];
        if (!getcwd(cwd, sizeof cwd) ||
            (size_t)snprintf(path, sizeof path, "%s/%s", cwd, dir) >= sizeof path)
            return kvc_cli_fail(S_FAIL, "backup: cannot make %.100s absolute", dir);
    } else if (kvc_strlcpy(path, dir, sizeof path)) {
        return kvc_cli_fail(S_USAGE, "backup: path too long");
    }
    const char *args[2] = {"path", path};
    Kvc__Ctl__Reply *rep = NULL;
    int rc = s_call_args(o, "backup", args, 1, &rep);
    if (rc)
        return rc;
    if (o->json) {
        printf("{\"backup\":");
        kvc_json_str(stdout, path);
        puts("}");
    } else {
        printf("store copied to %s (start a peer with it as peer.data_dir's store to restore)\n",
               path);
    }
    kvc__ctl__reply__free_unpacked(rep, kvc_pb_allocator());
    return 0;
}

static int s_cmd_enroll(const kvc_cli_opts_t *o)
{
    const char *verb = o->pos[0];
    Kvc__Ctl__Reply *rep = NULL;
    int rc;
    if (strcmp(verb, "create") == 0) {
        long long ttl = s_duration_s(o->opt[0] ? o->opt[0] : "10m");
        if (ttl < 1 || ttl > 7 * 86400)
            return kvc_cli_fail(S_USAGE, "--ttl: '%.20s' is not a duration of 1s to 7d (e.g. 10m)",
                          o->opt[0]);
        const char *uses = o->opt[1] ? o->opt[1] : "1";
        char ttl_s[24];
        snprintf(ttl_s, sizeof ttl_s, "%lld", ttl);
        const char *args[6] = {"ttl_s", ttl_s, "uses", uses, "site", o->site ? o->site : ""};
        rc = s_call_args(o, "enroll-create", args, 3, &rep);
    } else if (strcmp(verb, "list") == 0) {
        rc = s_call(o, "enroll-list", &rep);
    } else {
        return kvc_cli_fail(S_USAGE, "enroll: '%.40s' is not create or list", verb);
    }
    if (rc)
        return rc;
    if (strcmp(verb, "create") == 0 && rep->n_codes == 1) {
        const Kvc__Join__EnrollCode *c = rep->codes[0];
        char t[40];
        if (o->json) {
            printf("{\"code\":");
            kvc_json_str(stdout, rep->secret);
            kvc_json_field(stdout, "id", c->id);
            kvc_json_field(stdout, "site", c->site);
            s_json_when("expires", c->expires_unix);
            printf(",\"uses\":%u}\n", c->uses_left);
        } else {
            printf("%s\n", rep->secret);
            fprintf(stderr,
                    "enrollment code %s for site %s, %u use%s, expires %s; shown only now.\n"
                    "On the node: kvc join --site %s ... --enroll CODE\n",
                    c->id, c->site, c->uses_left, c->uses_left == 1 ? "" : "s",
                    kvc_cred_time_str(c->expires_unix, t, sizeof t), c->site);
        }
    } else {
        if (o->json)
            putchar('[');
        else
            printf("%-16s %-16s %5s %-21s %s\n", "ID", "SITE", "USES", "EXPIRES", "CREATED BY");
        for (size_t i = 0; i < rep->n_codes; i++) {
            const Kvc__Join__EnrollCode *c = rep->codes[i];
            char t[40];
            if (o->json) {
                printf("%s{\"id\":", i ? "," : "");
                kvc_json_str(stdout, c->id);
                kvc_json_field(stdout, "site", c->site);
                printf(",\"uses\":%u", c->uses_left);
                s_json_when("expires", c->expires_unix);
                kvc_json_field(stdout, "created_by", c->created_by);
                putchar('}');
            } else {
                printf("%-16s %-16s %5u %-21s %s\n", c->id, c->site, c->uses_left,
                       kvc_cred_time_str(c->expires_unix, t, sizeof t), c->created_by);
            }
        }
        if (o->json)
            puts("]");
    }
    kvc__ctl__reply__free_unpacked(rep, kvc_pb_allocator());
    return 0;
}

static int s_cmd_tokens(const kvc_cli_opts_t *o)
{
    Kvc__Ctl__Reply *rep = NULL;
    int rc = s_call(o, "tokens", &rep);
    if (rc)
        return rc;
    if (o->json)
        putchar('[');
    else
        printf("%-24s %-12s %-20s %-7s %-15s %5s %s\n", "TIME", "NODE ID", "NODE", "TOKEN",
               "OUTCOME", "TERM", "DETAIL");
    for (size_t i = 0; i < rep->n_audit; i++) {
        const Kvc__Join__TokenAudit *a = rep->audit[i];
        char hex[65] = "", t[40];
        int any = 0;
        for (size_t k = 0; k < a->node_key.len; k++)
            any |= a->node_key.data[k];
        if (a->node_key.len == 32 && any)
            kvc_key_hex(a->node_key.data, hex);
        time_t sec = (time_t)(a->at_unix_ms / 1000);
        struct tm tm;
        gmtime_r(&sec, &tm);
        snprintf(t, sizeof t, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 (int)(a->at_unix_ms % 1000));
        if (o->json) {
            printf("%s{\"at\":", i ? "," : "");
            kvc_json_str(stdout, t);
            kvc_json_field(stdout, "node_id", hex);
            kvc_json_field(stdout, "node", a->node);
            kvc_json_field(stdout, "token_id", a->token_id);
            kvc_json_field(stdout, "outcome", a->outcome);
            kvc_json_field(stdout, "detail", a->detail);
            printf(",\"term\":%llu", (unsigned long long)a->term);
            kvc_json_field(stdout, "coordinator", a->coordinator);
            putchar('}');
        } else {
            printf("%-24s %-12.12s %-20s %-7s %-15s %5llu %s\n", t, hex[0] ? hex : "-",
                   a->node[0] ? a->node : "-", a->token_id[0] ? a->token_id : "-", a->outcome,
                   (unsigned long long)a->term, a->detail);
        }
    }
    if (o->json)
        puts("]");
    kvc__ctl__reply__free_unpacked(rep, kvc_pb_allocator());
    return 0;
}

/* ---- kvc info ------------------------------------------------------------ */

static int s_cmd_info(const kvc_cli_opts_t *o)
{
    Kvc__Ctl__Reply *rep = NULL;
    int rc = s_call(o, "info", &rep);
    if (rc)
        return rc;
    const char *cur = NULL;
    if (o->json)
        putchar('{');
    for (size_t i = 0; i < rep->n_info; i++) {
        const Kvc__Ctl__InfoEntry *e = rep->info[i];
        int new_section = !cur || strcmp(cur, e->section) != 0;
        if (o->json) {
            if (new_section) {
                if (cur)
                    fputs("},", stdout);
                kvc_json_str(stdout, e->section);
                fputs(":{", stdout);
            } else {
                putchar(',');
            }
            kvc_json_str(stdout, e->key);
            putchar(':');
            kvc_json_str(stdout, e->value);
        } else {
            if (new_section)
                printf("%s%s:\n", cur ? "\n" : "", e->section);
            printf("  %-20s %s\n", e->key, e->value);
        }
        cur = e->section;
    }
    if (o->json)
        puts(cur ? "}}" : "}");
    kvc__ctl__reply__free_unpacked(rep, kvc_pb_allocator());
    return 0;
}

/* ---- kvc leave / force-leave ---------------------------------------------- */

static int s_cmd_leave(const kvc_cli_opts_t *o)
{
    Kvc__Ctl__Reply *rep = NULL;
    int rc = s_call(o, "status", &rep);
    if (rc)
        return rc;
    char id[2 * KVC_NAME_MAX + 2];
    snprintf(id, sizeof id, "%s/%s", rep->status ? rep->status->site : "?",
             rep->status ? rep->status->name : "?");
    kvc__ctl__reply__free_unpacked(rep, kvc_pb_allocator());
    if ((rc = s_call(o, "leave", &rep)) != 0)
        return rc;
    kvc__ctl__reply__free_unpacked(rep, kvc_pb_allocator());
    /* the peer tells the federation it leaves, then exits: wait until its
     * control socket stops answering, within the timeout */
    char ep[KVC_ENDPOINT_MAX];
    if ((rc = s_endpoint(o, ep, sizeof ep)) != 0)
        return rc;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        if (kvc_control_ping(ep, 200) != 0)
            break;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        long ms = (long)(t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
        if (ms > o->timeout_ms)
            return kvc_cli_fail(S_FAIL, "%s was asked to leave but still answers after %d ms", id,
                          o->timeout_ms);
        s_pause_ms(50);
    }
    if (o->json) {
        printf("{\"member\":");
        kvc_json_str(stdout, id);
        puts(",\"state\":\"left\"}");
    } else {
        printf("%s left the federation and stopped\n", id);
    }
    return 0;
}

static int s_cmd_force_leave(const kvc_cli_opts_t *o)
{
    const char *args[2] = {"name", o->pos[0]};
    Kvc__Ctl__Reply *rep = NULL;
    int rc = s_call_args(o, "force-leave", args, 1, &rep);
    if (rc)
        return rc;
    kvc__ctl__reply__free_unpacked(rep, kvc_pb_allocator());
    if (o->json) {
        printf("{\"member\":");
        kvc_json_str(stdout, o->pos[0]);
        puts(",\"state\":\"left\"}");
    } else {
        printf("%s marked as left; every peer will stop probing it\n", o->pos[0]);
    }
    return 0;
}

/* ---- kvc version / help -------------------------------------------------- */

static int s_cmd_version(const kvc_cli_opts_t *o)
{
    if (o->json)
        printf("{\"version\":\"%s\"}\n", KVC_VERSION);
    else
        printf("kvc %s\n", KVC_VERSION);
    return 0;
}

static int s_cmd_help(const kvc_cli_opts_t *o)
{
    if (o->n_pos == 0) {
        s_usage(stdout);
        return 0;
    }
    const s_cmd_t *c = s_find(o->pos[0]);
    if (!c)
        return kvc_cli_fail(S_USAGE, "unknown command '%.60s' (see 'kvc --help')", o->pos[0]);
    printf("usage: kvc %s [--json]\n\n%s\n", c->synopsis, c->help);
    return 0;
}

/* The commands: one row each. ca, cert and keygen (cli_ca.c) parse their own
 * arguments and are listed in the help separately. */
static const s_cmd_t s_commands[] = {
    {"status", s_cmd_status, 0, 0, 0, {{0}}, "status", "this peer: identity, seed, links, rejects",
     "Shows this peer's member id, region, roles, version, uptime, endpoints,\n"
     "the seed string another peer puts in its federation.seeds, connected\n"
     "peers, authentication rejects by reason and members by state."},
    {"peers", s_cmd_peers, 1, 0, 0, {{0}}, "peers [--site S]", "the peers this one has a link to",
     "Lists the peers this one has an authenticated link with: member id,\n"
     "region, up/down, round trip, last message, key, endpoint."},
    {"members", s_cmd_members, 1, 0, 0, {{"--status", 1}}, "members [--site S] [--status STATE]",
     "every member of the federation, with its state",
     "Every member of the federation this peer knows of: id, region, state\n"
     "(alive, suspect, dead, left), incarnation, RTT estimated from network\n"
     "coordinates (none for a member that is dead or left), and time since\n"
     "its last state change. --status keeps only members in that state."},
    {"sites", s_cmd_sites, 0, 0, 0, {{0}}, "sites", "members grouped by site",
     "Members grouped by site: region, how many are alive, suspect, dead or\n"
     "left, and the lowest estimated RTT to an alive member of the site."},
    {"metrics", s_cmd_metrics, 1, 0, 0, {{0}}, "metrics [--site S]",
     "per-site requests/s, latency, errors, CPU, memory",
     "The federation at a glance, one row per site, from the metrics summaries\n"
     "every peer gossips: peers up, proxy requests/s, p50/p99 latency (slowest\n"
     "model), errors/s (5xx), CPU and memory of its peers. Rates need two\n"
     "summaries (a few seconds after start); until then they show -. A peer\n"
     "membership declares dead or left is down at once."},
    {"monitor", s_cmd_monitor, 1, 0, 0, {{"--since", 1}, {"--count", 1}},
     "monitor [--site S] [--since SEQ] [--count N]", "stream member events as they happen",
     "Streams membership events this peer sees (joined, alive, suspect, dead,\n"
     "left, meta, reaped), one per line, until interrupted. --since SEQ first\n"
     "replays the events after SEQ this peer still holds (0: all of them);\n"
     "--count N stops after N events. With --json, one object per line; a\n"
     "line {\"lost\":N} says N events were no longer held, {\"restarted\":true}\n"
     "that the peer restarted (its sequence numbers start again)."},
    {"rtt", s_cmd_rtt, 0, 1, 2, {{0}}, "rtt A [B]", "estimated round trip between two members",
     "Estimates the round trip between members A and B (\"site/name\"), or\n"
     "between A and this peer, from their Vivaldi network coordinates. No\n"
     "traffic is sent; members that are dead or left have no estimate."},
    {"info", s_cmd_info, 0, 0, 0, {{0}}, "info", "counters and settings of this peer, by section",
     "Counters and settings of this peer in sections: agent, membership,\n"
     "transport (messages, unknown body kinds ignored, rejects) and cores\n"
     "(the protocols this build runs, by envelope channel)."},
    {"leave", s_cmd_leave, 0, 0, 0, {{0}}, "leave", "leave the federation gracefully and stop",
     "Tells the federation this peer leaves (members see it as left, not\n"
     "dead), then stops the peer. Waits until it has stopped, within --timeout."},
    {"force-leave", s_cmd_force_leave, 0, 1, 1, {{0}}, "force-leave NAME",
     "mark a failed member as left",
     "Marks the member NAME (\"site/name\"), which must be suspect or dead, as\n"
     "left: every peer stops probing it and it is reaped like a member that\n"
     "left. A member that is alive is refused: stop it, or run kvc leave on it."},
    {"nodes", s_cmd_nodes, 0, 0, 2, {{"--role", 1}},
     "nodes [pending|list|approve ID|reject ID|revoke ID|setup NODE [--role R]]",
     "the machines that asked to join this site",
     "Node records of this peer's site. A node that asks to join with a key\n"
     "(kvc keygen) no one approved is listed as pending; approve it (or reject\n"
     "it) by its ID (8 or more hex digits of its key) or its name. An approved\n"
     "node may be revoked: its later joins are refused. list shows all.\n"
     "setup NODE queues a job the coordinator runs: ops/ansible/node.yml on the\n"
     "node (preparation, packages, kvc join --exec); --role worker (default) or\n"
     "server. Follow it with kvc jobs logs ID --follow."},
    {"enroll", s_cmd_enroll, 1, 1, 1, {{"--ttl", 1}, {"--uses", 1}},
     "enroll create [--site S] [--ttl 10m] [--uses N] | enroll list",
     "one-time codes nodes present instead of waiting for approval",
     "create prints a new enrollment code for this peer's site (--site must be\n"
     "it), valid --ttl (1s..7d, default 10m) for --uses joins (default 1). The\n"
     "code is shown once and only its hash is stored. A node passes it with\n"
     "kvc join --enroll CODE and is approved by it. list shows the codes still\n"
     "valid by ID, never the codes."},
    {"tokens", s_cmd_tokens, 0, 0, 0, {{0}}, "tokens", "the join-token audit log",
     "Every bootstrap token this site's coordinators minted, extended and\n"
     "deleted, and every refused join: time, node, token id (the public half),\n"
     "outcome, term. Never the token's secret."},
    {"backup", s_cmd_backup, 0, 1, 1, {{0}}, "backup DIR", "a hot copy of the peer's store",
     "Copies the peer's whole store (model registry, site map, election term,\n"
     "known peers) into folder DIR on the peer's machine while it runs: one\n"
     "consistent snapshot (LMDB's hot copy), compacted. DIR must not hold a\n"
     "store already. To restore, stop the peer and put DIR/data.mdb in place\n"
     "of the store's data.mdb (under peer.data_dir/store)."},
    {"version", s_cmd_version, 0, 0, 0, {{0}}, "version", "the version of this kvc",
     "Prints the version of this kvc (also kvc --version)."},
    {"help", s_cmd_help, 0, 0, 1, {{0}}, "help [COMMAND]", "this help, or a command's",
     "Prints the list of commands, or the help of COMMAND."},
};
#define S_N_COMMANDS (sizeof s_commands / sizeof s_commands[0])

static const s_cmd_t *s_find(const char *name)
{
    for (size_t i = 0; i < S_N_COMMANDS; i++)
        if (strcmp(s_commands[i].name, name) == 0)
            return &s_commands[i];
    return NULL;
}

static void s_usage(FILE *f)
{
    fputs("usage: kvc [--config FILE | --control ENDPOINT] [--json] [--timeout MS]\n"
          "           COMMAND [ARGS]\n\nCommands for a running peer:\n",
          f);
    for (size_t i = 0; i < S_N_COMMANDS; i++)
        fprintf(f, "  %-44s %s\n", s_commands[i].synopsis, s_commands[i].summary);
    fputs("\nCredentials (offline, no peer needed):\n"
          "  ca init --out DIR                            make the federation's signing key\n"
          "  cert issue --ca DIR --site S --name N ...    issue a peer credential\n"
          "  cert show FILE [--trust PUB]                 show (and verify) a credential\n"
          "  keygen --out FILE                            make a node keypair\n"
          "\nJobs the coordinator runs with Ansible (kvc jobs --help, kvc cluster --help):\n"
          "  nodes setup NODE [--role R] | cluster create  queue a node setup / a cluster\n"
          "  jobs list|show ID|logs ID [--follow]|cancel ID|retry ID\n"
          "\nThe model registry (kvc models --help):\n"
          "  models publish|list|show|retire|status       publish models, see where they run\n"
          "  route MODEL [--constraint C]                 where a request would go, and why\n"
          "\nOn a new node:\n"
          "  join --site S --peer EP --peer-key K --key F  get a join token (kvc join --help)\n"
          "\nOptions:\n"
          "  --config FILE          find the peer's control endpoint in its config file\n"
          "  --control ENDPOINT     the peer's control endpoint (or set KVC_CONTROL)\n"
          "  --json                 machine-readable output (arrays for lists)\n"
          "  --timeout MS           how long to wait for the peer (default 3000)\n"
          "  --site S               only site S, for the commands that show [--site S]\n"
          "  --version              the version of this kvc\n"
          "  -h, --help             this help; 'kvc COMMAND --help' for a command\n"
          "\nExit status: 0 success, 1 failure (one line on stderr), 2 usage error.\n",
          f);
}

/* Runs ca/cert/keygen with the global --json passed on. */
static int s_run_offline(const char *cmd, int argc, char **argv, int json)
{
    int has_json = 0;
    for (int i = 1; i < argc; i++)
        has_json |= strcmp(argv[i], "--json") == 0;
    char **av = kvc_calloc((size_t)argc + 2, sizeof *av);
    if (!av)
        return kvc_cli_fail(S_FAIL, "out of memory");
    for (int i = 0; i < argc; i++)
        av[i] = argv[i];
    int ac = argc;
    if (json && !has_json && argc > 1)
        av[ac++] = "--json";
    int rc = strcmp(cmd, "ca") == 0     ? kvc_cli_ca(ac, av)
             : strcmp(cmd, "cert") == 0 ? kvc_cli_cert(ac, av)
                                        : kvc_cli_keygen(ac, av);
    kvc_free(av);
    return rc;
}

int main(int argc, char **argv)
{
    kvc_cli_opts_t o = {.timeout_ms = 3000};
    const s_cmd_t *cmd = NULL;
    int help = 0, version = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!cmd && (strcmp(a, "ca") == 0 || strcmp(a, "cert") == 0 || strcmp(a, "keygen") == 0))
            return s_run_offline(a, argc - i, argv + i, o.json); /* they parse their own */
        if (!cmd && strcmp(a, "join") == 0) /* on a new node: no local peer */
            return kvc_cli_join(argc - i, argv + i);
        if (!cmd && strcmp(a, "models") == 0) /* repeated options: parses its own */
            return kvc_cli_models(argc - i, argv + i, o.config, o.control, o.json, o.timeout_ms);
        if (!cmd && strcmp(a, "jobs") == 0)
            return kvc_cli_jobs(argc - i, argv + i, o.config, o.control, o.json, o.timeout_ms);
        if (!cmd && strcmp(a, "route") == 0)
            return kvc_cli_route(argc - i, argv + i, o.config, o.control, o.json, o.timeout_ms);
        if (!cmd && strcmp(a, "cluster") == 0)
            return kvc_cli_cluster(argc - i, argv + i, o.config, o.control, o.json, o.timeout_ms);
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            help = 1;
        } else if (strcmp(a, "--version") == 0) {
            version = 1;
        } else if (strcmp(a, "--json") == 0) {
            o.json = 1;
        } else if (strcmp(a, "--config") == 0 || strcmp(a, "--control") == 0 ||
                   strcmp(a, "--timeout") == 0 || strcmp(a, "--site") == 0) {
            if (i + 1 >= argc)
                return kvc_cli_fail(S_USAGE, "%s needs a value (see 'kvc --help')", a);
            const char *v = argv[++i];
            if (strcmp(a, "--config") == 0) {
                o.config = v;
            } else if (strcmp(a, "--control") == 0) {
                o.control = v;
            } else if (strcmp(a, "--site") == 0) {
                if (!kvc_config_valid_name(v))
                    return kvc_cli_fail(S_USAGE, "--site: '%.70s' is not a site name ([a-z0-9-]{1,63})",
                                  v);
                o.site = v;
            } else {
                int64_t t;
                if (kvc_parse_i64(v, 1, 600000, &t) != 0)
                    return kvc_cli_fail(S_USAGE, "--timeout: '%.40s' is not a number of ms in 1..600000",
                                  v);
                o.timeout_ms = (int)t;
            }
        } else if (a[0] == '-' && cmd) {
            size_t k = 0;
            while (k < S_MAX_CMD_OPT && cmd->opts[k].name && strcmp(cmd->opts[k].name, a) != 0)
                k++;
            if (k == S_MAX_CMD_OPT || !cmd->opts[k].name)
                return kvc_cli_fail(S_USAGE, "%s: unknown option '%.60s' (see 'kvc %s --help')",
                              cmd->name, a, cmd->name);
            if (i + 1 >= argc)
                return kvc_cli_fail(S_USAGE, "%s needs a value (see 'kvc %s --help')", a, cmd->name);
            o.opt[k] = argv[++i];
        } else if (a[0] == '-') {
            return kvc_cli_fail(S_USAGE, "unknown option '%.60s' (see 'kvc --help')", a);
        } else if (!cmd) {
            cmd = s_find(a);
            if (!cmd)
                return kvc_cli_fail(S_USAGE, "unknown command '%.60s' (see 'kvc --help')", a);
        } else if (o.n_pos < cmd->max_pos) {
            o.pos[o.n_pos++] = a;
        } else {
            return kvc_cli_fail(S_USAGE, "%s: unexpected argument '%.60s' (see 'kvc %s --help')",
                          cmd->name, a, cmd->name);
        }
    }
    if (version)
        return s_cmd_version(&o);
    if (!cmd) {
        s_usage(help ? stdout : stderr);
        return help ? S_OK : S_USAGE;
    }
    if (help) {
        o.pos[0] = cmd->name;
        o.n_pos = 1;
        return s_cmd_help(&o);
    }
    if (o.site && !cmd->takes_site)
        return kvc_cli_fail(S_USAGE, "%s takes no --site (see 'kvc %s --help')", cmd->name, cmd->name);
    if (o.n_pos < cmd->min_pos)
        return kvc_cli_fail(S_USAGE, "%s: missing argument (usage: kvc %s)", cmd->name, cmd->synopsis);
    return cmd->fn(&o);
}
