/*
 * fuzz_config.c - libFuzzer target for kvc_config_parse.
 *
 * Any input must end either in success or in a negative code with a
 * non-empty, one-line, printable message "NAME:..." (checked here); ASan and
 * UBSan catch crashes and leaks. It must never write files or use the clock.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Parses one input and checks the outcome's invariants. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static kvc_config_t cfg;
    kvc_err_t err;
    memset(&err, 0, sizeof err);
    kvc_config_defaults(&cfg);
    int rc = kvc_config_parse(&cfg, "f.yaml", (const char *)data, size, &err);
    if (rc == 0) {
        /* Success leaves a usable, terminated configuration. */
        if (err.msg[0] != '\0' || !kvc_config_valid_name(cfg.name) ||
            !kvc_config_valid_name(cfg.site) || cfg.n_roles == 0 || cfg.n_roles > KVC_MAX_ROLES ||
            cfg.n_seeds > KVC_MAX_SEEDS || cfg.n_revoked > KVC_MAX_REVOKED ||
            cfg.n_backends > KVC_MAX_BACKENDS)
            abort();
        kvc_config_finish(&cfg);
        /* parse refused a wildcard listen without advertise; finish derives
         * the rest, so both are set now. */
        if (cfg.advertise[0] == '\0' || cfg.control_endpoint[0] == '\0')
            abort();
        char id[2 * KVC_NAME_MAX];
        if (strlen(kvc_config_member_id(&cfg, id, sizeof id)) < 3)
            abort();
        return 0;
    }
    if (rc >= 0 || err.code != rc)
        abort();
    size_t len = strnlen(err.msg, sizeof err.msg);
    if (len == 0 || len == sizeof err.msg || strncmp(err.msg, "f.yaml:", 7) != 0)
        abort();
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)err.msg[i];
        if (c < 0x20 || c >= 0x7f)
            abort(); /* one line, no control characters, nothing unescaped */
    }
    return 0;
}
