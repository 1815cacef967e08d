/*
 * cli_join.h - `kvc join`, run on a new node (see cli_join.c).
 */
#ifndef KVC_CLI_JOIN_H
#define KVC_CLI_JOIN_H

/* Entry point: argv[0] is "join". Returns the process exit code. */
int kvc_cli_join(int argc, char **argv);

#endif
