/*
 * model_stub.c - a TEST-ONLY STAND-IN for the two functions of
 * peer/model.c that peer/reconcile.c calls (kvc_model_storage_parse and
 * kvc_model_fw_name), linked into the reconciler's tests only while
 * peer/model.c does not exist in the tree (tests/CMakeLists.txt checks).
 * It is replaced, not merged, when model.c lands: delete this file then.
 *
 * It follows model.h's contract closely enough for the tests: nfs://SERVER/
 * absolute path without "..", NUL or control characters; iscsi://SERVER/...
 */
#include "model.h"

#include <string.h>

const char *kvc_model_fw_name(kvc_model_fw_t fw)
{
    return fw == KVC_FW_TFSERVING ? "tfserving" : fw == KVC_FW_KSERVE_V2 ? "kserve-v2" : "unknown";
}

int kvc_model_storage_parse(const char *url, kvc_model_storage_t *out, kvc_err_t *err)
{
    memset(out, 0, sizeof *out);
    const char *rest;
    if (strncmp(url, "nfs://", 6) == 0) {
        kvc_strlcpy(out->scheme, "nfs", sizeof out->scheme);
        rest = url + 6;
    } else if (strncmp(url, "iscsi://", 8) == 0) {
        kvc_strlcpy(out->scheme, "iscsi", sizeof out->scheme);
        rest = url + 8;
    } else {
        return kvc_err_set(err, KVC_EINVAL, "storage: must be nfs://server/path or iscsi://...");
    }
    for (const char *p = url; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return kvc_err_set(err, KVC_EINVAL, "storage: control character");
    size_t host = strcspn(rest, "/");
    if (host == 0 || host >= sizeof out->server || rest[host] != '/')
        return kvc_err_set(err, KVC_EINVAL, "storage: server missing or too long");
    memcpy(out->server, rest, host);
    out->server[host] = '\0';
    const char *path = rest + host;
    if (strlen(path) >= sizeof out->path || strstr(path, "/../") ||
        (strlen(path) >= 3 && strcmp(path + strlen(path) - 3, "/..") == 0))
        return kvc_err_set(err, KVC_EINVAL, "storage: path too long or with ..");
    if (strcmp(out->scheme, "iscsi") == 0)
        path++; /* "IQN/LUN" */
    kvc_strlcpy(out->path, path, sizeof out->path);
    return KVC_OK;
}
