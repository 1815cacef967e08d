/*
 * kvc-peer - the federation daemon. One per site gateway.
 *
 *   kvc-peer --config FILE [--check]
 *   kvc-peer --dev [--data-dir DIR] [--listen tcp://127.0.0.1:PORT]
 *
 * Exit codes: 0 clean stop (SIGINT/SIGTERM) or valid config with --check,
 * 1 runtime failure, 2 invalid configuration or usage.
 */
#include "config.h"
#include "credential.h"
#include "daemon.h"
#include "log.h"

#include <errno.h>
#include <sodium.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void s_usage(FILE *f)
{
    fputs("usage: kvc-peer --config FILE [--check]\n"
          "       kvc-peer --dev [--data-dir DIR] [--listen ENDPOINT] [--http HOST:PORT]\n"
          "\n"
          "  --config FILE    start with this configuration (YAML; see README)\n"
          "  --check          validate the configuration and exit (0 valid, 2 invalid)\n"
          "  --dev            start a one-peer site on loopback, generating a federation\n"
          "                   key and credential under --data-dir on first use\n"
          "  --data-dir DIR   dev mode data folder (default ./kvc-dev)\n"
          "  --listen EP      dev mode federation endpoint (default tcp://127.0.0.1:7946)\n"
          "  --http H:P       dev mode HTTP endpoint (default 127.0.0.1:8500)\n"
          "  --version        print the version\n",
          f);
}

/* Makes the dev data folder's federation key and identity if missing. */
static int s_dev_prepare(kvc_config_t *cfg, const char *dir, kvc_err_t *err)
{
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return kvc_err_set(err, KVC_EIO, "%s: cannot create: %s", dir, strerror(errno));
    char abs[PATH_MAX];
    if (!realpath(dir, abs))
        return kvc_err_set(err, KVC_EIO, "%s: %s", dir, strerror(errno));
    char ca_dir[KVC_PATH_MAX], ca_key[KVC_PATH_MAX + 32];
    snprintf(ca_dir, sizeof ca_dir, "%s/ca", abs);
    snprintf(ca_key, sizeof ca_key, "%s/federation.key", ca_dir);
    snprintf(cfg->data_dir, sizeof cfg->data_dir, "%s", abs);
    snprintf(cfg->trust, sizeof cfg->trust, "%s/federation.pub", ca_dir);
    snprintf(cfg->credential, sizeof cfg->credential, "%s/identity", abs);
    snprintf(cfg->control_endpoint, sizeof cfg->control_endpoint, "ipc://%s/control.sock", abs);
    kvc_ca_t ca;
    struct stat sb;
    int rc = stat(ca_key, &sb) == 0 ? kvc_ca_load(ca_dir, &ca, err) : kvc_ca_init(ca_dir, &ca, err);
    if (rc)
        return rc;
    if (stat(cfg->credential, &sb) != 0) {
        const char *roles[] = {"gateway", "voter"};
        kvc_identity_t id;
        rc = kvc_cred_issue(&ca, cfg->site, cfg->name, roles, 2, (int64_t)time(NULL), 365, &id,
                            err);
        if (rc == 0)
            rc = kvc_identity_save(&id, cfg->credential, err);
        kvc_identity_wipe(&id);
    }
    sodium_memzero(&ca, sizeof ca);
    return rc;
}

int main(int argc, char **argv)
{
    const char *config = NULL, *data_dir = "kvc-dev", *listen = NULL, *http = NULL;
    int check = 0, dev = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            s_usage(stdout);
            return 0;
        } else if (strcmp(a, "--version") == 0) {
            puts("kvc-peer 0.1.0");
            return 0;
        } else if (strcmp(a, "--check") == 0) {
            check = 1;
        } else if (strcmp(a, "--dev") == 0) {
            dev = 1;
        } else if (i + 1 < argc && strcmp(a, "--config") == 0) {
            config = argv[++i];
        } else if (i + 1 < argc && strcmp(a, "--data-dir") == 0) {
            data_dir = argv[++i];
        } else if (i + 1 < argc && strcmp(a, "--listen") == 0) {
            listen = argv[++i];
        } else if (i + 1 < argc && strcmp(a, "--http") == 0) {
            http = argv[++i];
        } else {
            fprintf(stderr, "kvc-peer: unknown or incomplete option '%s' (see --help)\n", a);
            return 2;
        }
    }
    if (!!config == !!dev) {
        fputs("kvc-peer: give exactly one of --config FILE or --dev (see --help)\n", stderr);
        return 2;
    }
    kvc_config_t cfg;
    kvc_err_t err = {0};
    kvc_config_defaults(&cfg);
    if (config) {
        if (kvc_config_load(&cfg, config, &err) != 0) {
            fprintf(stderr, "%s\n", err.msg);
            return 2;
        }
        if (check) {
            kvc_config_finish(&cfg);
            fprintf(stderr, "%s: ok\n", config);
            return 0;
        }
    } else {
        kvc_strlcpy(cfg.site, "dev", sizeof cfg.site);
        kvc_strlcpy(cfg.name, "peer-1", sizeof cfg.name);
        kvc_strlcpy(cfg.region, "local", sizeof cfg.region);
        kvc_strlcpy(cfg.listen, listen ? listen : "tcp://127.0.0.1:7946", sizeof cfg.listen);
        if (http)
            kvc_strlcpy(cfg.http_listen, http, sizeof cfg.http_listen);
        if (kvc_crypto_init() != 0 || s_dev_prepare(&cfg, data_dir, &err) != 0) {
            fprintf(stderr, "kvc-peer: %s\n", err.msg);
            return 1;
        }
    }
    kvc_daemon_t *d = kvc_daemon_new(&cfg, &err);
    if (!d) {
        kvc_error("%s", err.msg);
        return err.code == KVC_EINVAL || err.code == KVC_EPARSE ? 2 : 1;
    }
    if (dev)
        fprintf(stderr,
                "\nkvc-peer --dev is running. In another terminal:\n"
                "  export KVC_CONTROL=%s\n"
                "  kvc status\n  kvc peers\n"
                "Stop with Ctrl-C.\n\n",
                cfg.control_endpoint);
    int rc = kvc_daemon_run(d);
    kvc_daemon_destroy(&d);
    return rc;
}
