/*
 * cli_conn.h - how the `kvc` subcommands that parse their own arguments
 * (models, jobs, cluster) reach the local peer: the connection options,
 * which may come before or after the subcommand, and one call.
 */
#ifndef KVC_CLI_CONN_H
#define KVC_CLI_CONN_H

#include "control.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *config, *control;
    int json, timeout_ms;
} kvc_cli_conn_t;

/* Takes --config, --control, --timeout and --json out of argv[1..argc)
 * into c, and --help / -h into *help; the other arguments go to rest[0..*n)
 * in order. 0, or the usage exit status with its one line printed. */
int kvc_cli_conn_parse(kvc_cli_conn_t *c, int argc, char **argv, char **rest, int *n,
                       int *help);

/* Calls cmd at the peer c names (payload may be NULL). 0, or the exit
 * status with its one line printed (2 no endpoint, 1 the call failed). */
int kvc_cli_call(const kvc_cli_conn_t *c, const char *cmd, const char *const *args, size_t n,
                 const uint8_t *payload, size_t plen, Kvc__Ctl__Reply **rep);

#endif
