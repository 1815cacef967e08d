/*
 * sim_failover.c - `kvc-sim --scenario failover`: the unchanged routing
 * core (federation/router.c, breaker.c) at site a, driven by a constant-rate
 * client on a simulated clock, against five sites whose backends, health
 * and links change on a schedule:
 *   a  local; its backend is killed at --kill-at and restarted at
 *      --restart-at; its health flag follows --health-delay ms later
 *   b  the nearest remote; its health flaps every --flap-ms from 5 s
 *      until 10 s before the end (a call while it reads down is refused)
 *   c  mid distance; its link is cut from --partition-at for 15 s, and
 *      membership notices --detect-ms later (calls in between time out)
 *   d  far, the only GPU site
 *   e  nearest of all but not placed for the model
 * Every --constraint-every'th request asks for accelerator=npu, which no
 * site has: it must be refused with a reason for every site. Every request
 * may retry once at the next candidate within its deadline.
 * Reports choice changes (oscillation), time to fail over and fail back,
 * client-visible errors, and exits 1 on an invariant violation: a
 * partitioned (as membership sees it) or unplaced site ranked, more choice
 * changes than --max-changes, a client-visible error, a constraint request
 * not refused, or fail back slower than --failback-goal ms.
 * Everything random (latency jitter) comes from --seed.
 */
#include "sim_failover.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "breaker.h"
#include "rng.h"
#include "router.h"

#define NSITES 5

typedef struct {
    uint64_t seed;
    int json;
    uint64_t duration_ms, kill_at, restart_at, health_delay, flap_ms, partition_at, partition_len,
        detect_ms, interval_ms, deadline_ms, call_timeout_ms, failback_goal, holddown_ms;
    int constraint_every, max_changes;
} fo_opts_t;

/* Reads "--name value" options; returns 0 or 2 on a bad one. */
static int s_options(fo_opts_t *o, int argc, char **argv)
{
    o->seed = 1;
    o->duration_ms = 60; /* seconds until parsed */
    o->kill_at = 10000;
    o->restart_at = 40000;
    o->health_delay = 1000;
    o->flap_ms = 100;
    o->partition_at = 20000;
    o->partition_len = 15000;
    o->detect_ms = 500;
    o->interval_ms = 20;
    o->deadline_ms = 1000;
    o->call_timeout_ms = 200;
    o->failback_goal = 5000;
    o->constraint_every = 10;
    o->max_changes = 6;
    o->holddown_ms = 2000;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--json") == 0) {
            o->json = 1;
            continue;
        }
        if (strcmp(a, "--help") == 0) {
            printf("usage: kvc-sim --scenario failover [--seed N] [--duration S] [--kill-at MS]\n"
                   "       [--restart-at MS] [--flap-ms MS] [--partition-at MS] [--interval MS]\n"
                   "       [--max-changes N] [--failback-goal MS] [--holddown MS] [--json]\n"
                   "--holddown 0 turns the router's hold-down off: the flapping site then\n"
                   "pulls the choice back and forth, and the run must fail.\n");
            exit(0);
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "kvc-sim: %s needs a value\n", a);
            return 2;
        }
        const char *v = argv[++i];
        int64_t x;
        struct {
            const char *name;
            uint64_t *u;
            int *n;
            int64_t min, max;
        } tab[] = {
            {"--scenario", NULL, NULL, 0, 0},
            {"--seed", &o->seed, NULL, 0, INT64_MAX},
            {"--duration", &o->duration_ms, NULL, 10, 3600},
            {"--kill-at", &o->kill_at, NULL, 0, 3600000},
            {"--restart-at", &o->restart_at, NULL, 0, 3600000},
            {"--flap-ms", &o->flap_ms, NULL, 1, 60000},
            {"--partition-at", &o->partition_at, NULL, 0, 3600000},
            {"--interval", &o->interval_ms, NULL, 1, 10000},
            {"--failback-goal", &o->failback_goal, NULL, 1, 3600000},
            {"--max-changes", NULL, &o->max_changes, 0, 100000},
            {"--holddown", &o->holddown_ms, NULL, 0, 600000},
            {"--constraint-every", NULL, &o->constraint_every, 1, 100000},
        };
        size_t k = 0;
        while (k < sizeof(tab) / sizeof(tab[0]) && strcmp(tab[k].name, a) != 0)
            k++;
        if (k == sizeof(tab) / sizeof(tab[0])) {
            fprintf(stderr, "kvc-sim: unknown option %s for --scenario failover\n", a);
            return 2;
        }
        if (k == 0)
            continue;
        if (kvc_parse_i64(v, tab[k].min, tab[k].max, &x) != 0) {
            fprintf(stderr, "kvc-sim: %s: want an integer in [%" PRId64 ", %" PRId64 "]\n", a,
                    tab[k].min, tab[k].max);
            return 2;
        }
        if (tab[k].u)
            *tab[k].u = (uint64_t)x;
        else
            *tab[k].n = (int)x;
    }
    o->duration_ms *= 1000; /* --duration is in seconds */
    if (!(o->kill_at < o->restart_at && o->restart_at < o->duration_ms)) {
        fprintf(stderr, "kvc-sim: want --kill-at < --restart-at < --duration\n");
        return 2;
    }
    return 0;
}

typedef struct {
    const char *name;
    int64_t rtt_us;
    int64_t p50_us, p99_us;
} fo_site_def_t;

static const fo_site_def_t s_defs[NSITES] = {
    {"a", 0, 8000, 15000},     {"b", 10000, 8000, 15000}, {"c", 30000, 8000, 15000},
    {"d", 80000, 8000, 15000}, {"e", 5000, 8000, 15000},
};

int kvc_sim_failover_main(int argc, char **argv)
{
    fo_opts_t o;
    memset(&o, 0, sizeof(o));
    if (s_options(&o, argc, argv) != 0)
        return 2;
    kvc_rng_t rng;
    kvc_rng_seed(&rng, o.seed);
    kvc_router_config_t rcfg;
    kvc_router_config_default(&rcfg);
    rcfg.holddown_ms = (uint32_t)o.holddown_ms;
    kvc_router_t *r = kvc_router_new(&rcfg);
    if (!r) {
        fprintf(stderr, "kvc-sim: router: out of memory\n");
        return 1;
    }
    kvc_router_constraint_t npu;
    kvc_router_constraint_parse("accelerator=npu", 15, &npu, NULL);
    uint64_t flap_end = o.duration_ms > 10000 ? o.duration_ms - 10000 : 0;
    uint64_t part_end = o.partition_at + o.partition_len;

    uint64_t requests = 0, local = 0, remote = 0, retried = 0, client_errors = 0;
    uint64_t constrained = 0, constraint_ok = 0, violations = 0, probes = 0;
    uint64_t into_partition = 0, ranked_partitioned = 0, ranked_unplaced = 0;
    uint64_t changes = 0, flap_changes = 0, lat_sum_us = 0, lat_max_us = 0;
    int64_t failover_ms = -1, failback_ms = -1;
    char prev[KVC_ROUTER_NAME_MAX + 1] = "";
    kvc_router_choice_t ch;
    kvc_err_t err;

    for (uint64_t now = 0; now < o.duration_ms; now += o.interval_ms) {
        int a_up = now < o.kill_at || now >= o.restart_at;
        int a_ready = now < o.kill_at + o.health_delay || now >= o.restart_at + o.health_delay;
        int b_flapping = now >= 5000 && now < flap_end;
        int b_ready = !b_flapping || (now / o.flap_ms) % 2 == 0;
        int c_cut = now >= o.partition_at && now < part_end;
        int c_seen = now >= o.partition_at + o.detect_ms && now < part_end + o.detect_ms;
        kvc_router_site_t t[NSITES];
        memset(t, 0, sizeof(t));
        for (int i = 0; i < NSITES; i++) {
            t[i].site = s_defs[i].name;
            t[i].region = i < 3 ? "eu" : "us";
            t[i].placed = i != 4;
            t[i].ready = 1;
            t[i].capacity = 64;
            t[i].in_flight = (uint32_t)kvc_rng_below(&rng, 8);
            t[i].p50_us = s_defs[i].p50_us;
            t[i].p99_us = s_defs[i].p99_us;
            t[i].arch = "x86_64";
            t[i].reachable = 1;
            t[i].rtt_us = s_defs[i].rtt_us;
        }
        t[0].is_local = 1;
        t[0].ready = a_ready;
        t[1].ready = b_ready;
        t[2].reachable = !c_seen;
        t[3].accel = KVC_ACCEL_NVIDIA;
        t[3].accel_count = 1;

        requests++;
        int want_npu = o.constraint_every > 0 && requests % (uint64_t)o.constraint_every == 0;
        int rc = kvc_router_choose(r, now, "resnet", t, NSITES, want_npu ? &npu : NULL, &ch, &err);
        if (want_npu) {
            constrained++;
            int all = rc == KVC_EUNAVAIL && ch.n_ranked == 0;
            for (int i = 0; i < NSITES && all; i++) {
                char needle[80];
                snprintf(needle, sizeof(needle), " %s: ", s_defs[i].name);
                all = strstr(err.msg, needle) != NULL;
            }
            if (all)
                constraint_ok++;
            else
                violations++;
            continue;
        }
        if (rc != 0) {
            client_errors++;
            continue;
        }
        for (size_t i = 0; i < ch.n_ranked; i++) {
            if (strcmp(ch.cands[i].site, "c") == 0 && c_seen)
                ranked_partitioned++;
            if (strcmp(ch.cands[i].site, "e") == 0)
                ranked_unplaced++;
        }
        /* Choice changes, not counting probes (one request each). */
        if (!ch.cands[0].probe && strcmp(prev, ch.cands[0].site) != 0) {
            if (prev[0]) {
                changes++;
                if (b_flapping)
                    flap_changes += strcmp(ch.cands[0].site, "b") == 0 || strcmp(prev, "b") == 0;
            }
            kvc_strlcpy(prev, ch.cands[0].site, sizeof(prev));
        }
        if (failover_ms < 0 && now >= o.kill_at && strcmp(ch.cands[0].site, "a") != 0)
            failover_ms = (int64_t)(now - o.kill_at);

        /* Run it: the first candidate, then one retry if it fits. */
        uint64_t elapsed_us = 0;
        int attempts = 0, ok = 0;
        const char *served = NULL;
        for (size_t i = 0; i < ch.n_ranked && attempts < 2 && !ok; i++) {
            const kvc_router_cand_t *cd = &ch.cands[i];
            if (attempts == 1 &&
                !kvc_breaker_retry_fits((int64_t)o.deadline_ms, 0, (int64_t)(elapsed_us / 1000),
                                        kvc_router_cand_cost_ms(cd), 10))
                break;
            if (!kvc_router_begin(r, now, cd->site))
                continue;
            if (cd->probe)
                probes++;
            attempts++;
            int idx = cd->site[0] - 'a';
            kvc_call_class_t cls;
            uint64_t rtt = (uint64_t)s_defs[idx].rtt_us;
            if (idx == 2 && c_cut) {
                into_partition++;
                elapsed_us += o.call_timeout_ms * 1000;
                cls = kvc_breaker_classify(KVC_CALL_E_TIMEOUT, 0, 0);
            } else if ((idx == 0 && !a_up) || (idx == 1 && !b_ready)) {
                elapsed_us += rtt + 300;
                cls = kvc_breaker_classify(KVC_CALL_E_REFUSED, 0, 0);
            } else {
                uint64_t p50 = (uint64_t)s_defs[idx].p50_us;
                elapsed_us += rtt + p50 / 2 + kvc_rng_below(&rng, p50);
                cls = kvc_breaker_classify(KVC_CALL_E_NONE, 0, 0);
                ok = 1;
                served = cd->site;
            }
            kvc_router_report(r, now + elapsed_us / 1000, cd->site, cls);
        }
        if (attempts > 1)
            retried++;
        if (!ok || elapsed_us > o.deadline_ms * 1000) {
            client_errors++;
            continue;
        }
        lat_sum_us += elapsed_us;
        if (elapsed_us > lat_max_us)
            lat_max_us = elapsed_us;
        if (strcmp(served, "a") == 0) {
            local++;
            if (failback_ms < 0 && now >= o.restart_at && !ch.cands[0].probe)
                failback_ms = (int64_t)(now - o.restart_at);
        } else {
            remote++;
        }
    }
    kvc_router_destroy(&r);

    uint64_t served = local + remote;
    double lat_mean = served ? (double)lat_sum_us / (double)served / 1000.0 : 0.0;
    const char *why = "";
    if (ranked_partitioned)
        why = "a partitioned site was ranked";
    else if (ranked_unplaced)
        why = "an unplaced site was ranked";
    else if (changes > (uint64_t)o.max_changes)
        why = "choice changes above --max-changes";
    else if (client_errors)
        why = "client-visible errors";
    else if (violations)
        why = "a constraint request was not refused with every site's reason";
    else if (failover_ms < 0)
        why = "never failed over";
    else if (failback_ms < 0 || (uint64_t)failback_ms > o.failback_goal)
        why = "fail back missing or slower than --failback-goal";
    int ok = why[0] == '\0';
    if (o.json)
        printf("{\"scenario\":\"failover\",\"seed\":%" PRIu64 ",\"simulated_ms\":%" PRIu64
               ",\"requests\":%" PRIu64 ",\"local\":%" PRIu64 ",\"forwarded\":%" PRIu64
               ",\"retried\":%" PRIu64 ",\"probes\":%" PRIu64 ",\"client_errors\":%" PRIu64
               ",\"constraint_requests\":%" PRIu64 ",\"constraint_refused\":%" PRIu64
               ",\"choice_changes\":%" PRIu64 ",\"flap_changes\":%" PRIu64
               ",\"max_changes\":%d,\"failover_ms\":%" PRId64 ",\"failback_ms\":%" PRId64
               ",\"calls_into_partition\":%" PRIu64 ",\"ranked_partitioned\":%" PRIu64
               ",\"ranked_unplaced\":%" PRIu64 ",\"latency_ms\":{\"mean\":%.3f,\"max\":%.3f}"
               ",\"invariants_ok\":%s,\"why\":\"%s\"}\n",
               o.seed, o.duration_ms, requests, local, remote, retried, probes, client_errors,
               constrained, constraint_ok, changes, flap_changes, o.max_changes, failover_ms,
               failback_ms, into_partition, ranked_partitioned, ranked_unplaced, lat_mean,
               (double)lat_max_us / 1000.0, ok ? "true" : "false", why);
    else
        printf("failover: %" PRIu64 " requests (%" PRIu64 " local, %" PRIu64 " forwarded, %" PRIu64
               " retried, %" PRIu64 " client errors); choice changes %" PRIu64 " (flap %" PRIu64
               "); fail over %" PRId64 " ms, fail back %" PRId64 " ms; %s%s\n",
               requests, local, remote, retried, client_errors, changes, flap_changes, failover_ms,
               failback_ms, ok ? "invariants ok" : "VIOLATION: ", why);
    return ok ? 0 : 1;
}
