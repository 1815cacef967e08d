/*
 * grpc_wire.c - the gRPC wire format of a unary call: status names and
 * codes, message framing (prefix, deframer), response header and trailer
 * parsing, percent-decoding, grpc-timeout formatting, and the HTTP and
 * HTTP/2-reset to gRPC status mappings.
 *
 * Pure functions only: this file owns no connection, no call and no lock,
 * and must never do I/O, read a clock or log. It never trusts a length
 * prefix before bounding it, and never reads past the length it is given.
 */
#include "grpc_wire.h"

#include "base.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static const char *s_names[] = {
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
};

/* Returns the static name of a gRPC status code. */
const char *kvc_grpc_status_name(int code)
{
    if (code < 0 || code > KVC_GRPC_UNAUTHENTICATED)
        return "UNKNOWN_CODE";
    return s_names[code];
}

/* Maps a gRPC status onto the nearest KVC_E* code. */
int kvc_grpc_code_to_err(int code)
{
    switch (code) {
    case KVC_GRPC_OK:
        return KVC_OK;
    case KVC_GRPC_INVALID_ARGUMENT:
    case KVC_GRPC_FAILED_PRECONDITION:
        return KVC_EINVAL;
    case KVC_GRPC_DEADLINE_EXCEEDED:
        return KVC_ETIMEDOUT;
    case KVC_GRPC_NOT_FOUND:
        return KVC_ENOENT;
    case KVC_GRPC_ALREADY_EXISTS:
        return KVC_EEXIST;
    case KVC_GRPC_PERMISSION_DENIED:
    case KVC_GRPC_UNAUTHENTICATED:
        return KVC_EPERM;
    case KVC_GRPC_RESOURCE_EXHAUSTED:
    case KVC_GRPC_OUT_OF_RANGE:
        return KVC_ERANGE;
    case KVC_GRPC_UNAVAILABLE:
        return KVC_EUNAVAIL;
    case KVC_GRPC_ABORTED:
        return KVC_EAGAIN;
    default:
        return KVC_EIO;
    }
}

/* ---- Pure parts -------------------------------------------------------- */

/* Writes the uncompressed-message prefix: flag 0, big-endian length. */
int kvc_grpc_frame_prefix(uint8_t out[5], size_t len)
{
    if ((uint64_t)len > UINT32_MAX)
        return KVC_ERANGE;
    out[0] = 0;
    out[1] = (uint8_t)(len >> 24);
    out[2] = (uint8_t)(len >> 16);
    out[3] = (uint8_t)(len >> 8);
    out[4] = (uint8_t)len;
    return KVC_OK;
}

/* Prepares an empty deframer bounded by max. */
void kvc_grpc_deframer_init(kvc_grpc_deframer_t *d, size_t max)
{
    memset(d, 0, sizeof *d);
    d->max = max;
}

/* Consumes bytes: prefixes are checked and bounded before any allocation. */
int kvc_grpc_deframer_feed(kvc_grpc_deframer_t *d, const uint8_t *p, size_t n)
{
    while (n > 0) {
        if (!d->in_message) {
            size_t want = 5 - d->prefix_have;
            size_t k = n < want ? n : want;
            memcpy(d->prefix + d->prefix_have, p, k);
            d->prefix_have += k;
            p += k;
            n -= k;
            if (d->prefix_have < 5)
                break;
            if (d->prefix[0] != 0)
                return KVC_EPARSE; /* compressed (none negotiated) or bad flag */
            if (d->messages > 0)
                return KVC_EPARSE; /* unary: a second message */
            uint64_t len = ((uint64_t)d->prefix[1] << 24) | ((uint64_t)d->prefix[2] << 16) |
                           ((uint64_t)d->prefix[3] << 8) | (uint64_t)d->prefix[4];
            if (len > d->max)
                return KVC_ERANGE;
            d->msg = kvc_malloc(len > 0 ? (size_t)len : 1);
            if (!d->msg)
                return KVC_ENOMEM;
            d->msg_len = (size_t)len;
            d->msg_have = 0;
            d->in_message = 1;
        }
        size_t want = d->msg_len - d->msg_have;
        size_t k = n < want ? n : want;
        if (k > 0) {
            memcpy(d->msg + d->msg_have, p, k);
            d->msg_have += k;
            p += k;
            n -= k;
        }
        if (d->msg_have == d->msg_len) {
            d->in_message = 0;
            d->prefix_have = 0;
            d->messages++;
        }
    }
    return KVC_OK;
}

/* Gives the caller the single complete message. */
int kvc_grpc_deframer_take(kvc_grpc_deframer_t *d, uint8_t **msg, size_t *len)
{
    *msg = NULL;
    *len = 0;
    if (d->in_message || d->prefix_have > 0)
        return KVC_EPARSE;
    if (d->messages == 0 || !d->msg)
        return KVC_ENOENT;
    *msg = d->msg;
    *len = d->msg_len;
    d->msg = NULL;
    d->msg_len = 0;
    return KVC_OK;
}

/* Frees a message not taken. */
void kvc_grpc_deframer_free(kvc_grpc_deframer_t *d)
{
    kvc_free(d->msg);
    d->msg = NULL;
    d->msg_len = d->msg_have = 0;
}

/* Resets the header state. */
void kvc_grpc_headers_init(kvc_grpc_headers_t *h)
{
    memset(h, 0, sizeof *h);
    h->grpc_status = -1;
}

/* Case-insensitive ASCII comparison of a length-bounded name. */
static int s_name_is(const char *name, size_t n, const char *want)
{
    size_t wl = strlen(want);
    if (n != wl)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char a = name[i], b = want[i];
        if (a >= 'A' && a <= 'Z')
            a = (char)(a - 'A' + 'a');
        if (a != b)
            return 0;
    }
    return 1;
}

/* Parses the status line "HTTP/2 200" (or HTTP/1.x) into h->http_status. */
static void s_parse_status_line(kvc_grpc_headers_t *h, const char *line, size_t n)
{
    size_t i = 0;
    while (i < n && line[i] != ' ')
        i++;
    while (i < n && line[i] == ' ')
        i++;
    long code = 0;
    size_t digits = 0;
    while (i < n && line[i] >= '0' && line[i] <= '9' && digits < 3) {
        code = code * 10 + (line[i] - '0');
        i++;
        digits++;
    }
    if (digits == 3)
        h->http_status = code;
}

/* Reads v/n as an unsigned decimal of min_digits..max_digits digits into
 * *out; 0 if it is not one. */
static int s_digits(const char *v, size_t n, size_t min_digits, size_t max_digits, long *out)
{
    if (n < min_digits || n > max_digits)
        return 0;
    long x = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return 0;
        x = x * 10 + (v[i] - '0');
    }
    *out = x;
    return 1;
}

/* Feeds one header or trailer field, value trimmed of blanks. */
void kvc_grpc_headers_field(kvc_grpc_headers_t *h, const char *name, size_t name_len, const char *v,
                            size_t vn)
{
    while (vn > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        vn--;
    }
    while (vn > 0 && (v[vn - 1] == ' ' || v[vn - 1] == '\t'))
        vn--;
    long code = 0;
    if (s_name_is(name, name_len, ":status")) {
        if (s_digits(v, vn, 3, 3, &code))
            h->http_status = code;
    } else if (s_name_is(name, name_len, "grpc-status")) {
        int ok = s_digits(v, vn, 1, 3, &code);
        h->grpc_status = (ok && code <= KVC_GRPC_UNAUTHENTICATED) ? (int)code : KVC_GRPC_UNKNOWN;
    } else if (s_name_is(name, name_len, "grpc-message")) {
        kvc_grpc_percent_decode(v, vn, h->grpc_message, sizeof h->grpc_message);
    } else if (s_name_is(name, name_len, "content-type")) {
        static const char ct[] = "application/grpc";
        size_t cl = sizeof ct - 1;
        h->content_type_grpc =
            vn >= cl && strncmp(v, ct, cl) == 0 && (vn == cl || v[cl] == '+' || v[cl] == ';');
    }
}

/* Feeds one header or trailer line. */
void kvc_grpc_headers_feed(kvc_grpc_headers_t *h, const char *line, size_t n)
{
    while (n > 0 && (line[n - 1] == '\r' || line[n - 1] == '\n'))
        n--;
    if (n == 0)
        return;
    if (n >= 5 && memcmp(line, "HTTP/", 5) == 0) {
        s_parse_status_line(h, line, n);
        return;
    }
    const char *colon = memchr(line, ':', n);
    if (!colon || colon == line)
        return;
    size_t name_len = (size_t)(colon - line);
    kvc_grpc_headers_field(h, line, name_len, colon + 1, n - name_len - 1);
}

/* Percent-decodes, keeping malformed escapes literally. */
size_t kvc_grpc_percent_decode(const char *in, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < cap; i++) {
        if (in[i] == '%' && i + 2 < n && kvc_hex_digit(in[i + 1]) >= 0 &&
            kvc_hex_digit(in[i + 2]) >= 0) {
            out[o++] = (char)(kvc_hex_digit(in[i + 1]) * 16 + kvc_hex_digit(in[i + 2]));
            i += 2;
        } else {
            out[o++] = in[i];
        }
    }
    out[o] = '\0';
    return o;
}

/* Formats a grpc-timeout header value. */
int kvc_grpc_timeout_format(uint32_t ms, char *out, size_t cap)
{
    int w;
    if (ms <= 99999999u)
        w = snprintf(out, cap, "%" PRIu32 "m", ms);
    else
        w = snprintf(out, cap, "%" PRIu32 "S", ms / 1000u + (ms % 1000u != 0));
    if (w < 0 || (size_t)w >= cap)
        return KVC_ERANGE;
    return KVC_OK;
}

/* gRPC spec, "HTTP to gRPC Status Code Mapping". */
int kvc_grpc_code_from_http(long http_status)
{
    switch (http_status) {
    case 400:
        return KVC_GRPC_INTERNAL;
    case 401:
        return KVC_GRPC_UNAUTHENTICATED;
    case 403:
        return KVC_GRPC_PERMISSION_DENIED;
    case 404:
        return KVC_GRPC_UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
        return KVC_GRPC_UNAVAILABLE;
    default:
        return KVC_GRPC_UNKNOWN;
    }
}

/* The gRPC status for a stream reset with an HTTP/2 error code (gRPC's
 * PROTOCOL-HTTP2 mapping). */
int kvc_grpc_code_from_rst(uint32_t h2_error)
{
    switch (h2_error) {
    case 0x7: /* REFUSED_STREAM */
        return KVC_GRPC_UNAVAILABLE;
    case 0x8: /* CANCEL */
        return KVC_GRPC_CANCELLED;
    case 0xb: /* ENHANCE_YOUR_CALM */
        return KVC_GRPC_RESOURCE_EXHAUSTED;
    case 0xc: /* INADEQUATE_SECURITY */
        return KVC_GRPC_PERMISSION_DENIED;
    default:
        return KVC_GRPC_INTERNAL;
    }
}
