/*
 * fuzz_http_request - the parts of an HTTP request the proxy reads before
 * any body: the request target (kvc_route_parse), the Accept header
 * (kvc_proxy_accept_protobuf) and the Content-Type (kvc_proxy_is_image_type).
 * Input layout: byte 0 picks the method; the rest is split at the first two
 * NUL bytes into path, Accept and Content-Type (missing parts are absent
 * headers). Checks the documented contracts: a route result of 0, 400, 404
 * or 405 with a one-line message on failure; a parsed model name and version
 * within their bounds; an Accept answer that is NULL or one of the three
 * protobuf type names.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy.h"
#include "route.h"

static const char *s_methods[] = {"GET", "POST", "PUT", "HEAD", "DELETE", "OPTIONS", "", "get"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *method = s_methods[data[0] % 8];
    /* A NUL-terminated copy, so the three strings can be cut in place. */
    char *buf = malloc(size);
    if (!buf)
        return 0;
    memcpy(buf, data + 1, size - 1);
    buf[size - 1] = '\0';
    char *path = buf, *accept = NULL, *ctype = NULL;
    size_t n = strlen(path);
    if (n + 1 < size - 1) {
        accept = path + n + 1;
        size_t m = strlen(accept);
        if (n + 1 + m + 1 < size - 1)
            ctype = accept + m + 1;
    }

    kvc_route_t r;
    char msg[256];
    msg[0] = '\0';
    int rc = kvc_route_parse(method, path, &r, msg, sizeof msg);
    if (rc == 0) {
        if (strlen(r.model) > KVC_MODEL_NAME_MAX || strlen(r.version_name) > KVC_VERSION_MAX ||
            strlen(r.label) > KVC_LABEL_MAX || kvc_route_name(r.kind) == NULL)
            __builtin_trap();
    } else if ((rc != 400 && rc != 404 && rc != 405) || msg[0] == '\0' || strchr(msg, '\n')) {
        __builtin_trap();
    }

    const char *pb = kvc_proxy_accept_protobuf(accept);
    if (pb && strcmp(pb, "application/protobuf") != 0 &&
        strcmp(pb, "application/x-protobuf") != 0 && strcmp(pb, "application/x-protobuffer") != 0)
        __builtin_trap();
    (void)kvc_proxy_is_image_type(ctype);
    free(buf);
    return 0;
}
