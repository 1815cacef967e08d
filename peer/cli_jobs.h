/*
 * cli_jobs.h - `kvc jobs`, `kvc cluster create` and `kvc nodes setup`:
 * node setup and cluster creation jobs through the local peer.
 */
#ifndef KVC_CLI_JOBS_H
#define KVC_CLI_JOBS_H

/* argv[0] is "jobs" / "cluster"; the global options given before it are
 * passed in. Exit status: 0, 1 failure, 2 usage. */
int kvc_cli_jobs(int argc, char **argv, const char *config, const char *control, int json,
                 int timeout_ms);
int kvc_cli_cluster(int argc, char **argv, const char *config, const char *control, int json,
                    int timeout_ms);
/* `kvc nodes setup NODE [--role worker|server]`. */
int kvc_cli_nodes_setup(const char *node, const char *role, const char *config,
                        const char *control, int json, int timeout_ms);

#endif
