/*
 * cli_route.h - `kvc route MODEL [--constraint C]`: how the local peer's
 * proxy would route a request for MODEL now, and why.
 */
#ifndef KVC_CLI_ROUTE_H
#define KVC_CLI_ROUTE_H

/* argv[0] is "route"; the global options given before it are passed in.
 * Exit status: 0, 1 failure, 2 usage. */
int kvc_cli_route(int argc, char **argv, const char *config, const char *control, int json,
                  int timeout_ms);

#endif
