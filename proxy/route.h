/*
 * route.h - maps an HTTP method and path to one of the proxy's endpoints:
 * TF Serving REST (/v1/models/...), KServe v2 (/v2/...), and /metrics.
 *
 * Pure string work, no I/O: the HTTP server calls it for every request, and
 * it must reject any path it does not fully understand.
 */
#ifndef KVC_ROUTE_H
#define KVC_ROUTE_H

#include <stdint.h>

#define KVC_MODEL_NAME_MAX 128
#define KVC_LABEL_MAX 64
#define KVC_VERSION_MAX 64

typedef enum {
    KVC_ROUTE_NONE = 0,
    KVC_ROUTE_TFS_STATUS,     /* GET  /v1/models/M[/versions/N|/labels/L] */
    KVC_ROUTE_TFS_METADATA,   /* GET  /v1/models/M[...]/metadata */
    KVC_ROUTE_TFS_PREDICT,    /* POST /v1/models/M[...]:predict */
    KVC_ROUTE_TFS_CLASSIFY,   /* POST ...:classify (not supported, answered 400) */
    KVC_ROUTE_TFS_REGRESS,    /* POST ...:regress (not supported, answered 400) */
    KVC_ROUTE_V2_LIVE,        /* GET  /v2/health/live */
    KVC_ROUTE_V2_READY,       /* GET  /v2/health/ready */
    KVC_ROUTE_V2_SERVER,      /* GET  /v2 */
    KVC_ROUTE_V2_MODEL,       /* GET  /v2/models/M[/versions/V] */
    KVC_ROUTE_V2_MODEL_READY, /* GET  /v2/models/M[/versions/V]/ready */
    KVC_ROUTE_V2_INFER,       /* POST /v2/models/M[/versions/V]/infer */
    KVC_ROUTE_METRICS,        /* GET  /metrics */
    KVC_ROUTE_FEDERATE,       /* GET  /federate */
} kvc_route_kind_t;

typedef struct {
    kvc_route_kind_t kind;
    char model[KVC_MODEL_NAME_MAX + 1];
    /* The path's version, "" when none. /v1 versions are decimal, read as
     * TF Serving reads them (an int64) and written back in shortest form
     * ("007" -> "7"); /v2 versions are strings as KServe v2 has them,
     * [A-Za-z0-9._-]{1,64}, kept as given. */
    char version_name[KVC_VERSION_MAX + 1];
    int64_t version;               /* version_name as an int64; -1 when none or not one */
    char label[KVC_LABEL_MAX + 1]; /* "" when not given */
} kvc_route_t;

/*
 * Parses method + path (without query string). Returns 0 and fills out, or
 * 404 when no endpoint has that path, 405 when the path exists but not for
 * that method, or 400 when a /v1 version is decimal but does not fit an
 * int64 (TF Serving's "Failed to convert version: N to numeric."); msg (if
 * not NULL) then says why in one line.
 */
int kvc_route_parse(const char *method, const char *path, kvc_route_t *out, char *msg,
                    unsigned msg_size);

/* The route's name for metrics labels ("predict", "infer", ...). */
const char *kvc_route_name(kvc_route_kind_t kind);

#endif
