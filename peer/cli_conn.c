/*
 * cli_conn.c - the connection options and the call of `kvc` subcommands.
 * See cli_conn.h.
 */
#include "cli_conn.h"

#include "cli_out.h"

#include <stdlib.h>
#include <string.h>

enum { S_OK = 0, S_FAIL = 1, S_USAGE = 2 };

int kvc_cli_conn_parse(kvc_cli_conn_t *c, int argc, char **argv, char **rest, int *n, int *help)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            *help = 1;
        } else if (strcmp(a, "--json") == 0) {
            c->json = 1;
        } else if (strcmp(a, "--config") == 0 || strcmp(a, "--control") == 0 ||
                   strcmp(a, "--timeout") == 0) {
            if (i + 1 >= argc)
                return kvc_cli_fail(S_USAGE, "%s needs a value", a);
            const char *v = argv[++i];
            if (strcmp(a, "--config") == 0) {
                c->config = v;
            } else if (strcmp(a, "--control") == 0) {
                c->control = v;
            } else {
                char *end;
                long t = strtol(v, &end, 10);
                if (*end || t < 1 || t > 600000)
                    return kvc_cli_fail(S_USAGE,
                                        "--timeout: '%.40s' is not a number of ms in 1..600000", v);
                c->timeout_ms = (int)t;
            }
        } else {
            rest[(*n)++] = argv[i];
        }
    }
    return S_OK;
}

int kvc_cli_call(const kvc_cli_conn_t *c, const char *cmd, const char *const *args, size_t n,
                 const uint8_t *payload, size_t plen, Kvc__Ctl__Reply **rep)
{
    char ep[512];
    kvc_err_t err = {0};
    if (kvc_control_endpoint(c->config, c->control, ep, sizeof ep, &err) != 0)
        return kvc_cli_fail(S_USAGE, "%s", err.msg);
    if (kvc_control_call_payload(ep, cmd, args, n, payload, plen, c->timeout_ms, rep, &err) != 0)
        return kvc_cli_fail(S_FAIL, "%s", err.msg);
    return S_OK;
}
