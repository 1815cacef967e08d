/*
 * cli_models.h - `kvc models`: publish, list, show, retire and the
 * federation-wide status of model versions, through the local peer.
 */
#ifndef KVC_CLI_MODELS_H
#define KVC_CLI_MODELS_H

/* argv[0] is "models". The global options given before it are passed in;
 * --config, --control, --timeout and --json may also follow it. Returns
 * the exit status: 0, 1 failure, 2 usage. */
int kvc_cli_models(int argc, char **argv, const char *config, const char *control, int json,
                   int timeout_ms);

#endif
