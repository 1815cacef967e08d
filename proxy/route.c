/*
 * route.c - strict parsing of the proxy's REST paths. A model name is
 * [A-Za-z0-9._-]{1,128} (not "." or ".."), a label [A-Za-z0-9._-]{1,64}.
 * A /v1 version is decimal digits, read as TF Serving reads them (an int64,
 * so "0" and "007" are versions 0 and 7: the model server says whether it
 * has them); a /v2 version is a string, as KServe v2 defines it, of the
 * label's characters. Anything else is a 404 with the reason; nothing is
 * decoded or guessed.
 */
#include "route.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* 1 if c may appear in a model name or label. */
static int s_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

/* Copies a name segment [s, s+n) into out (max chars); 0 if valid. */
static int s_name(const char *s, size_t n, char *out, size_t max)
{
    if (n == 0 || n > max)
        return -1;
    if ((n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
        return -1;
    for (size_t i = 0; i < n; i++)
        if (!s_name_char(s[i]))
            return -1;
    memcpy(out, s, n);
    out[n] = '\0';
    return 0;
}

/* Reads n decimal digits as an int64: 0, -1 when a byte is not a digit,
 * -2 when the value does not fit. */
static int s_decimal(const char *s, size_t n, int64_t *out)
{
    if (n == 0)
        return -1;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        int d = s[i] - '0';
        if (v > (INT64_MAX - d) / 10) {
            for (size_t j = i + 1; j < n; j++)
                if (s[j] < '0' || s[j] > '9')
                    return -1;
            return -2;
        }
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* Parses a /v1 version segment into out->version and out->version_name:
 * 0, 404 (not decimal) or 400 (decimal past int64, TF Serving's message). */
static int s_v1_version(const char *s, size_t n, kvc_route_t *out, char *msg, unsigned size)
{
    int rc = n > KVC_VERSION_MAX ? -1 : s_decimal(s, n, &out->version);
    if (rc == -2) {
        if (msg && size)
            snprintf(msg, size, "Failed to convert version: %.*s to numeric.", (int)n, s);
        return 400;
    }
    if (rc)
        return 404;
    snprintf(out->version_name, sizeof out->version_name, "%" PRId64, out->version);
    return 0;
}

/* Parses a /v2 version segment (a string); version is its number when it
 * is decimal and fits an int64, else -1. 0 or 404. */
static int s_v2_version(const char *s, size_t n, kvc_route_t *out)
{
    if (s_name(s, n, out->version_name, KVC_VERSION_MAX))
        return 404;
    if (s_decimal(s, n, &out->version) != 0)
        out->version = -1;
    return 0;
}

/* Length of the segment at s, up to one of stops or the end. */
static size_t s_seg(const char *s, const char *stops)
{
    size_t n = 0;
    while (s[n] && !strchr(stops, s[n]))
        n++;
    return n;
}

/* Sets the one-line reason and returns code. */
static int s_err(int code, char *msg, unsigned size, const char *text)
{
    if (msg && size)
        snprintf(msg, size, "%s", text);
    return code;
}

/* Checks the method; 405 when the path is right but the method is not. */
static int s_method(const char *have, const char *want, char *msg, unsigned size)
{
    if (strcmp(have, want) == 0)
        return 0;
    if (msg && size)
        snprintf(msg, size, "method %s not allowed here; use %s", have, want);
    return 405;
}

/* /v1/models/M[/versions/N|/labels/L][/metadata|:predict|:classify|:regress] */
static int s_v1(const char *method, const char *p, kvc_route_t *out, char *msg, unsigned size)
{
    size_t n = s_seg(p, "/:");
    if (s_name(p, n, out->model, KVC_MODEL_NAME_MAX))
        return s_err(404, msg, size, "invalid model name in the path");
    p += n;
    if (strncmp(p, "/versions/", 10) == 0) {
        p += 10;
        n = s_seg(p, "/:");
        int rc = s_v1_version(p, n, out, msg, size);
        if (rc == 404)
            return s_err(404, msg, size, "invalid model version in the path");
        if (rc)
            return rc;
        p += n;
    } else if (strncmp(p, "/labels/", 8) == 0) {
        p += 8;
        n = s_seg(p, "/:");
        if (s_name(p, n, out->label, KVC_LABEL_MAX))
            return s_err(404, msg, size, "invalid version label in the path");
        p += n;
    }
    if (*p == '\0') {
        out->kind = KVC_ROUTE_TFS_STATUS;
        return s_method(method, "GET", msg, size);
    }
    if (strcmp(p, "/metadata") == 0) {
        out->kind = KVC_ROUTE_TFS_METADATA;
        return s_method(method, "GET", msg, size);
    }
    if (strcmp(p, ":predict") == 0)
        out->kind = KVC_ROUTE_TFS_PREDICT;
    else if (strcmp(p, ":classify") == 0)
        out->kind = KVC_ROUTE_TFS_CLASSIFY;
    else if (strcmp(p, ":regress") == 0)
        out->kind = KVC_ROUTE_TFS_REGRESS;
    else
        return s_err(404, msg, size, "no such endpoint");
    return s_method(method, "POST", msg, size);
}

/* /v2/models/M[/versions/V][/ready|/infer] */
static int s_v2_model(const char *method, const char *p, kvc_route_t *out, char *msg, unsigned size)
{
    size_t n = s_seg(p, "/");
    if (s_name(p, n, out->model, KVC_MODEL_NAME_MAX))
        return s_err(404, msg, size, "invalid model name in the path");
    p += n;
    if (strncmp(p, "/versions/", 10) == 0) {
        p += 10;
        n = s_seg(p, "/");
        if (s_v2_version(p, n, out))
            return s_err(404, msg, size, "invalid model version in the path");
        p += n;
    }
    if (*p == '\0') {
        out->kind = KVC_ROUTE_V2_MODEL;
        return s_method(method, "GET", msg, size);
    }
    if (strcmp(p, "/ready") == 0) {
        out->kind = KVC_ROUTE_V2_MODEL_READY;
        return s_method(method, "GET", msg, size);
    }
    if (strcmp(p, "/infer") == 0) {
        out->kind = KVC_ROUTE_V2_INFER;
        return s_method(method, "POST", msg, size);
    }
    return s_err(404, msg, size, "no such endpoint");
}

/* An exact path served with GET only. */
static int s_fixed(const char *method, kvc_route_kind_t kind, kvc_route_t *out, char *msg,
                   unsigned size)
{
    out->kind = kind;
    return s_method(method, "GET", msg, size);
}

int kvc_route_parse(const char *method, const char *path, kvc_route_t *out, char *msg,
                    unsigned msg_size)
{
    memset(out, 0, sizeof *out);
    out->version = -1;
    if (msg && msg_size)
        msg[0] = '\0';
    if (strncmp(path, "/v1/models/", 11) == 0)
        return s_v1(method, path + 11, out, msg, msg_size);
    if (strncmp(path, "/v2/models/", 11) == 0)
        return s_v2_model(method, path + 11, out, msg, msg_size);
    if (strcmp(path, "/v2/health/live") == 0)
        return s_fixed(method, KVC_ROUTE_V2_LIVE, out, msg, msg_size);
    if (strcmp(path, "/v2/health/ready") == 0)
        return s_fixed(method, KVC_ROUTE_V2_READY, out, msg, msg_size);
    if (strcmp(path, "/v2") == 0)
        return s_fixed(method, KVC_ROUTE_V2_SERVER, out, msg, msg_size);
    if (strcmp(path, "/metrics") == 0)
        return s_fixed(method, KVC_ROUTE_METRICS, out, msg, msg_size);
    if (strcmp(path, "/federate") == 0)
        return s_fixed(method, KVC_ROUTE_FEDERATE, out, msg, msg_size);
    return s_err(404, msg, msg_size, "no such endpoint");
}

const char *kvc_route_name(kvc_route_kind_t kind)
{
    static const char *names[] = {"none",        "status", "metadata", "predict", "classify",
                                  "regress",     "live",   "ready",    "server",  "model",
                                  "model_ready", "infer",  "metrics",  "federate"};
    if ((unsigned)kind >= sizeof names / sizeof names[0])
        return "none";
    return names[kind];
}
