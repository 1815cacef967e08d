/*
 * kvc - the command line for a kvc federation, usable from any site.
 *
 * Talks to one local kvc-peer through its control endpoint, found from
 * --control ENDPOINT, the KVC_CONTROL variable, or --config FILE (the
 * peer's own configuration). Human tables by default, --json for scripts.
 * Failure: one line on stderr and a non-zero exit (1 runtime, 2 usage).
 */
#include "cli_ca.h"
#include "cli_out.h"
#include "config.h"
#include "control.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *config;
    const char *control;
    int json;
    int timeout_ms;
    const char *site;
} kvc_cli_opts_t;

static void s_usage(FILE *f)
{
    fputs("usage: kvc [--config FILE | --control ENDPOINT] [--json] COMMAND [ARGS]\n"
          "\n"
          "Commands for a running peer:\n"
          "  status                 this peer: identity, uptime, links, auth rejects\n"
          "  peers                  the peers this one has a link to\n"
          "  members [--site S]     every member of the federation, with its state\n"
          "  sites                  members grouped by site\n"
          "  metrics [--site S]     per-site requests/s, latency, errors, CPU, memory\n"
          "\n"
          "Credentials (offline, no peer needed):\n"
          "  ca init --out DIR      make the federation's signing key\n"
          "  cert issue ...         issue a peer credential signed by the federation key\n"
          "  cert show FILE         show (and with --trust, verify) a credential\n"
          "  keygen --out FILE      make a node keypair\n"
          "\n"
          "Options:\n"
          "  --config FILE          find the peer's control endpoint in its config file\n"
          "  --control ENDPOINT     the peer's control endpoint (or set KVC_CONTROL)\n"
          "  --json                 machine-readable output\n"
          "  --timeout MS           how long to wait for the peer (default 3000)\n"
          "  -h, --help             this help; 'kvc COMMAND --help' for a command\n",
          f);
}

/* Prints the one-line failure message and returns the exit code. */
static int s_fail(int code, const char *fmt, const char *arg)
{
    fputs("kvc: ", stderr);
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    return code;
}

/* Resolves the control endpoint from the options, the environment or a config. */
static int s_endpoint(const kvc_cli_opts_t *o, char *out, size_t size)
{
    if (o->control)
        return kvc_strlcpy(out, o->control, size) ? s_fail(2, "%s: endpoint too long", o->control)
                                                  : 0;
    if (o->config) {
        kvc_config_t cfg;
        kvc_err_t err = {0};
        kvc_config_defaults(&cfg);
        if (kvc_config_load(&cfg, o->config, &err) != 0)
            return s_fail(2, "%s", err.msg);
        kvc_config_finish(&cfg);
        kvc_strlcpy(out, cfg.control_endpoint, size);
        return 0;
    }
    const char *env = getenv("KVC_CONTROL");
    if (env && *env)
        return kvc_strlcpy(out, env, size) ? s_fail(2, "%s: endpoint too long", "KVC_CONTROL") : 0;
    return s_fail(2, "%s",
                  "no peer to talk to: use --config FILE, --control ENDPOINT or set KVC_CONTROL");
}

/* Calls the peer; prints the failure line itself. */
static int s_call(const kvc_cli_opts_t *o, const char *command, Kvc__Ctl__Reply **rep)
{
    char ep[KVC_ENDPOINT_MAX];
    int rc = s_endpoint(o, ep, sizeof ep);
    if (rc)
        return rc;
    kvc_err_t err = {0};
    if (kvc_control_call(ep, command, NULL, 0, o->timeout_ms, rep, &err) != 0)
        return s_fail(1, "%s", err.msg);
    return 0;
}

/* kvc status */
static int s_cmd_status(const kvc_cli_opts_t *o)
{
    Kvc__Ctl__Reply *rep = NULL;
    int rc = s_call(o, "status", &rep);
    if (rc)
        return rc;
    const Kvc__Ctl__Status *st = rep->status;
    if (!st) {
        kvc__ctl__reply__free_unpacked(rep, NULL);
        return s_fail(1, "%s", "the peer sent no status");
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
        printf(",\"msgs_in\":%llu,\"msgs_out\":%llu,\"send_dropped\":%llu}\n",
               (unsigned long long)st->msgs_in, (unsigned long long)st->msgs_out,
               (unsigned long long)st->send_dropped);
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
        printf("%-16s %.16s…\n", "public key", st->public_key);
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
    }
    kvc__ctl__reply__free_unpacked(rep, NULL);
    return 0;
}

/* kvc peers */
static int s_cmd_peers(const kvc_cli_opts_t *o)
{
    Kvc__Ctl__Reply *rep = NULL;
    int rc = s_call(o, "peers", &rep);
    if (rc)
        return rc;
    if (o->json) {
        putchar('[');
        int n = 0;
        for (size_t i = 0; i < rep->n_peers; i++) {
            const Kvc__Ctl__PeerLink *p = rep->peers[i];
            if (o->site && strcmp(o->site, p->site) != 0)
                continue;
            printf("%s{\"member\":", n++ ? "," : "");
            kvc_json_str(stdout, p->member_id);
            kvc_json_field(stdout, "site", p->site);
            kvc_json_field(stdout, "name", p->name);
            kvc_json_field(stdout, "region", p->region);
            kvc_json_field(stdout, "endpoint", p->endpoint);
            kvc_json_field(stdout, "public_key", p->public_key);
            kvc_json_str_array(stdout, "roles", p->roles, p->n_roles);
            printf(",\"up\":%s,\"last_seen_ms_ago\":%llu,\"rtt_us\":%llu,\"not_after\":%lld}",
                   p->up ? "true" : "false", (unsigned long long)p->last_seen_ms_ago,
                   (unsigned long long)p->rtt_us, (long long)p->not_after);
        }
        puts("]");
    } else {
        printf("%-28s %-12s %-8s %-6s %-10s %-10s %s\n", "MEMBER", "REGION", "STATE", "RTT",
               "LAST SEEN", "KEY", "ENDPOINT");
        for (size_t i = 0; i < rep->n_peers; i++) {
            const Kvc__Ctl__PeerLink *p = rep->peers[i];
            if (o->site && strcmp(o->site, p->site) != 0)
                continue;
            char rtt[16], seen[32];
            if (p->rtt_us)
                snprintf(rtt, sizeof rtt, "%.1fms", (double)p->rtt_us / 1000.0);
            else
                snprintf(rtt, sizeof rtt, "-");
            snprintf(seen, sizeof seen, "%.1fs ago", (double)p->last_seen_ms_ago / 1000.0);
            printf("%-28s %-12s %-8s %-6s %-10s %.8s…  %s\n", p->member_id, p->region,
                   p->up ? "up" : "down", rtt, seen, p->public_key, p->endpoint);
        }
    }
    kvc__ctl__reply__free_unpacked(rep, NULL);
    return 0;
}

/* kvc members: every member the membership core knows, with its state. */
static int s_cmd_members(const kvc_cli_opts_t *o)
{
    Kvc__Ctl__Reply *rep = NULL;
    int rc = s_call(o, "members", &rep);
    if (rc)
        return rc;
    if (o->json) {
        putchar('[');
        int n = 0;
        for (size_t i = 0; i < rep->n_members; i++) {
            const Kvc__Ctl__Member *m = rep->members[i];
            if (o->site && strcmp(o->site, m->site) != 0)
                continue;
            printf("%s{\"id\":", n++ ? "," : "");
            kvc_json_str(stdout, m->id);
            kvc_json_field(stdout, "site", m->site);
            kvc_json_field(stdout, "region", m->region);
            kvc_json_field(stdout, "state", m->state);
            printf(",\"incarnation\":%llu,\"rtt_ms\":", (unsigned long long)m->incarnation);
            if (m->rtt_ms < 0)
                printf("null");
            else
                printf("%.3f", m->rtt_ms);
            printf(",\"last_change_ms_ago\":%llu,\"roles\":",
                   (unsigned long long)m->last_change_ms_ago);
            kvc_json_str(stdout, m->roles);
            kvc_json_field(stdout, "endpoint", m->endpoint);
            printf(",\"self\":%s}", m->is_self ? "true" : "false");
        }
        puts("]");
    } else {
        printf("%-28s %-12s %-8s %5s %9s %12s\n", "MEMBER", "REGION", "STATE", "INC", "RTT",
               "LAST CHANGE");
        for (size_t i = 0; i < rep->n_members; i++) {
            const Kvc__Ctl__Member *m = rep->members[i];
            if (o->site && strcmp(o->site, m->site) != 0)
                continue;
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
    kvc__ctl__reply__free_unpacked(rep, NULL);
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

/* kvc sites: members grouped by site. */
static int s_cmd_sites(const kvc_cli_opts_t *o)
{
    Kvc__Ctl__Reply *rep = NULL;
    int rc = s_call(o, "members", &rep);
    if (rc)
        return rc;
    size_t n = rep->n_members, ns = 0;
    const char **sites = s_sorted_sites(n, s_member_site, rep, &ns);
    if (!sites) {
        kvc__ctl__reply__free_unpacked(rep, NULL);
        return s_fail(1, "%s", "out of memory");
    }
    if (o->json)
        putchar('[');
    else
        printf("%-20s %-12s %6s %7s %6s %6s %9s\n", "SITE", "REGION", "ALIVE", "SUSPECT", "DEAD",
               "LEFT", "RTT");
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
        if (o->json) {
            printf("%s{\"site\":", k ? "," : "");
            kvc_json_str(stdout, sites[k]);
            kvc_json_field(stdout, "region", region);
            printf(",\"alive\":%u,\"suspect\":%u,\"dead\":%u,\"left\":%u,\"rtt_ms\":", cnt[0],
                   cnt[1], cnt[2], cnt[3]);
            if (rtt < 0)
                printf("null}");
            else
                printf("%.3f}", rtt);
        } else {
            char r[24];
            if (rtt < 0)
                snprintf(r, sizeof r, "-");
            else
                snprintf(r, sizeof r, "%.1fms", rtt);
            printf("%-20s %-12s %6u %7u %6u %6u %9s\n", sites[k], region, cnt[0], cnt[1], cnt[2],
                   cnt[3], r);
        }
    }
    if (o->json)
        puts("]");
    kvc_free(sites);
    kvc__ctl__reply__free_unpacked(rep, NULL);
    return 0;
}

/* Prints a number for JSON: null when unknown (negative or NaN). */
static void s_json_num(double v, const char *fmt)
{
    if (isnan(v) || v < 0)
        printf("null");
    else
        printf(fmt, v);
}

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

/* kvc metrics: one row per site from the gossiped summaries. */
static int s_cmd_metrics(const kvc_cli_opts_t *o)
{
    Kvc__Ctl__Reply *rep = NULL;
    int rc = s_call(o, "metrics", &rep);
    if (rc)
        return rc;
    size_t n = rep->n_metrics, ns = 0;
    const char **sites = s_sorted_sites(n, s_metrics_site, rep, &ns);
    if (!sites) {
        kvc__ctl__reply__free_unpacked(rep, NULL);
        return s_fail(1, "%s", "out of memory");
    }
    if (o->json)
        putchar('[');
    else
        printf("%-16s %-10s %5s %6s %10s %9s %9s %9s %7s %10s\n", "SITE", "REGION", "UP", "PEERS",
               "REQ/S", "P50", "P99", "ERR/S", "CPU", "MEMORY");
    int k = 0;
    for (size_t si = 0; si < ns; si++) {
        if (o->site && strcmp(o->site, sites[si]) != 0)
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
            printf(",\"p50_seconds\":");
            s_json_num(p50, "%.6f");
            printf(",\"p99_seconds\":");
            s_json_num(p99, "%.6f");
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
    kvc__ctl__reply__free_unpacked(rep, NULL);
    return 0;
}

/* Prints a command's help. */
static int s_cmd_help(const char *cmd)
{
    if (strcmp(cmd, "status") == 0)
        puts("usage: kvc status [--json]\n\nShows this peer's member id, region, roles, "
             "uptime,\nendpoints, connected peers and authentication rejects by reason.");
    else if (strcmp(cmd, "peers") == 0)
        puts("usage: kvc peers [--site S] [--json]\n\nLists the peers this one has an "
             "authenticated link with:\nmember id, region, up/down, round trip, last "
             "message, key, endpoint.");
    else if (strcmp(cmd, "members") == 0)
        puts("usage: kvc members [--site S] [--json]\n\nEvery member of the federation this "
             "peer knows of: id, region,\nstate (alive, suspect, dead, left), incarnation, RTT "
             "estimated from\nnetwork coordinates, and time since its last state change.");
    else if (strcmp(cmd, "metrics") == 0)
        puts("usage: kvc metrics [--site S] [--json]\n\nThe federation at a glance, one row per "
             "site, from the metrics summaries\nevery peer gossips: peers up, proxy requests/s, "
             "p50/p99 latency (slowest\nmodel), errors/s (5xx), CPU and memory of its peers. "
             "Rates need two\nsummaries (a few seconds after start); until then they show -.");
    else if (strcmp(cmd, "sites") == 0)
        puts("usage: kvc sites [--json]\n\nMembers grouped by site: region, how many are "
             "alive, suspect,\ndead or left, and the lowest estimated RTT to the site.");
    else
        return s_fail(2, "unknown command '%s' (see 'kvc --help')", cmd);
    return 0;
}

int main(int argc, char **argv)
{
    kvc_cli_opts_t o = {.timeout_ms = 3000};
    const char *cmd = NULL;
    int cmd_index = 0, help = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!cmd && (strcmp(a, "ca") == 0 || strcmp(a, "cert") == 0 || strcmp(a, "keygen") == 0)) {
            cmd = a;
            cmd_index = i;
            break; /* these parse their own options */
        }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            help = 1;
        } else if (strcmp(a, "--json") == 0) {
            o.json = 1;
        } else if (strcmp(a, "--config") == 0 || strcmp(a, "--control") == 0 ||
                   strcmp(a, "--timeout") == 0 || strcmp(a, "--site") == 0) {
            if (i + 1 >= argc)
                return s_fail(2, "%s needs a value", a);
            const char *v = argv[++i];
            if (strcmp(a, "--config") == 0)
                o.config = v;
            else if (strcmp(a, "--control") == 0)
                o.control = v;
            else if (strcmp(a, "--site") == 0)
                o.site = v;
            else {
                int64_t t;
                if (kvc_parse_i64(v, 1, 600000, &t) != 0)
                    return s_fail(2, "--timeout: '%s' is not a number of ms in 1..600000", v);
                o.timeout_ms = (int)t;
            }
        } else if (a[0] == '-') {
            return s_fail(2, "unknown option '%s' (see 'kvc --help')", a);
        } else if (!cmd) {
            cmd = a;
        } else {
            return s_fail(2, "unexpected argument '%s' (see 'kvc --help')", a);
        }
    }
    if (cmd && cmd_index) {
        int sub_argc = argc - cmd_index;
        char **sub_argv = argv + cmd_index;
        if (strcmp(cmd, "ca") == 0)
            return kvc_cli_ca(sub_argc, sub_argv);
        if (strcmp(cmd, "cert") == 0)
            return kvc_cli_cert(sub_argc, sub_argv);
        return kvc_cli_keygen(sub_argc, sub_argv);
    }
    if (!cmd) {
        s_usage(help ? stdout : stderr);
        return help ? 0 : 2;
    }
    if (help)
        return s_cmd_help(cmd);
    if (strcmp(cmd, "status") == 0)
        return s_cmd_status(&o);
    if (strcmp(cmd, "peers") == 0)
        return s_cmd_peers(&o);
    if (strcmp(cmd, "members") == 0)
        return s_cmd_members(&o);
    if (strcmp(cmd, "sites") == 0)
        return s_cmd_sites(&o);
    if (strcmp(cmd, "metrics") == 0)
        return s_cmd_metrics(&o);
    if (strcmp(cmd, "help") == 0) {
        s_usage(stdout);
        return 0;
    }
    return s_fail(2, "unknown command '%s' (see 'kvc --help')", cmd);
}
