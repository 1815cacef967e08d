/*
 * fuzz_kube_kubeconfig.c - libFuzzer target for kvc_kubeconfig_parse (file
 * references refused: dir is NULL, so it never opens a file).
 *
 * Success must leave an https:// server and a client certificate with its
 * key or a header-safe token; failure a negative code and a one-line,
 * printable message "kubeconfig...". ASan catches overreads and leaks.
 */
#include "kube.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Parses one input and checks the outcome's invariants. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kvc_kubeconfig_t cfg;
    kvc_err_t err;
    memset(&err, 0, sizeof err);
    int rc = kvc_kubeconfig_parse((const char *)data, size, NULL, &cfg, &err);
    if (rc == 0) {
        if (strncmp(cfg.server, "https://", 8) != 0 || (!cfg.cert != !cfg.key) ||
            (!cfg.cert && !cfg.token) || cfg.ca_len > KVC_KUBE_BLOB_MAX ||
            cfg.cert_len > KVC_KUBE_BLOB_MAX || cfg.key_len > KVC_KUBE_BLOB_MAX)
            abort();
        for (size_t i = 0; cfg.token && i < cfg.token_len; i++)
            if ((unsigned char)cfg.token[i] <= 0x20 || (unsigned char)cfg.token[i] >= 0x7f)
                abort();
        kvc_kubeconfig_free(&cfg);
        return 0;
    }
    if (rc >= 0 || err.code != rc || cfg.cert || cfg.key || cfg.token || cfg.ca)
        abort();
    size_t len = strnlen(err.msg, sizeof err.msg);
    if (len == 0 || len == sizeof err.msg || strncmp(err.msg, "kubeconfig", 10) != 0)
        abort();
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)err.msg[i];
        if (c < 0x20 || c >= 0x7f)
            abort();
    }
    return 0;
}
