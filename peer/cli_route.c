/*
 * cli_route.c - `kvc route MODEL [--constraint C]` (see cli_route.h). The
 * peer does the choosing (the router is its proxy's) and sends the
 * explanation both as JSON (--json prints it as is) and as lines for
 * people; this file only asks and prints.
 */
#include "cli_route.h"

#include "cli_conn.h"
#include "cli_out.h"
#include "pb_alloc.h"

#include <stdio.h>
#include <string.h>

#define S_FAIL 1
#define S_USAGE 2

static const char s_help[] =
    "usage: kvc route MODEL [--constraint C] [--json]\n"
    "\n"
    "How this peer's proxy would route a request for MODEL now: the sites that\n"
    "serve it, best first, with the score (estimated RTT + reported latency +\n"
    "a queueing penalty for load, in ms), and every site left out with the\n"
    "reason (not placed, constraint unmet, unreachable, not ready, circuit\n"
    "open, saturated). The first ranked site gets the request; on a retryable\n"
    "failure it is retried once at the next.\n"
    "\n"
    "--constraint C  the Kvc-Constraint header a client would send, e.g.\n"
    "                accelerator=gpu, site=edge-2, region=eu, arch=arm64\n"
    "                (comma-separated, each key at most once)\n"
    "--json          {\"model\", \"chosen\", \"candidates\": [...], \"excluded\": [...]}\n"
    "\n"
    "Exit status: 0 (also when no site qualifies: the output says why),\n"
    "1 failure, 2 usage error.\n";

int kvc_cli_route(int argc, char **argv, const char *config, const char *control, int json,
                  int timeout_ms)
{
    kvc_cli_conn_t c = {config, control, json, timeout_ms};
    char *rest[32];
    if (argc > 32)
        return kvc_cli_fail(S_USAGE, "route: too many arguments (kvc route --help)");
    int n = 0, help = 0;
    int rc = kvc_cli_conn_parse(&c, argc, argv, rest, &n, &help);
    if (rc)
        return rc;
    if (help) {
        fputs(s_help, stdout);
        return 0;
    }
    const char *model = NULL, *constraint = "";
    for (int i = 0; i < n; i++) { /* rest[] starts after "route" */
        if (strcmp(rest[i], "--constraint") == 0) {
            if (i + 1 >= n)
                return kvc_cli_fail(S_USAGE, "--constraint needs a value, e.g. accelerator=gpu");
            constraint = rest[++i];
        } else if (rest[i][0] == '-') {
            return kvc_cli_fail(S_USAGE, "route: unknown option '%.40s' (kvc route --help)",
                                rest[i]);
        } else if (model) {
            return kvc_cli_fail(S_USAGE, "route takes one MODEL (kvc route --help)");
        } else {
            model = rest[i];
        }
    }
    if (!model)
        return kvc_cli_fail(S_USAGE, "route needs a MODEL (kvc route --help)");
    const char *args[] = {"model", model, "constraint", constraint};
    Kvc__Ctl__Reply *rep = NULL;
    rc = kvc_cli_call(&c, "route", args, 2, NULL, 0, &rep);
    if (rc)
        return rc;
    if (c.json) {
        printf("%s\n", rep->json);
    } else {
        for (size_t i = 0; i < rep->n_lines; i++)
            printf("%s\n", rep->lines[i]);
    }
    kvc__ctl__reply__free_unpacked(rep, kvc_pb_allocator());
    return 0;
}
