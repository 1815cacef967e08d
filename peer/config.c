/*
 * config.c - kvc-peer's strict YAML configuration parser (libyaml events).
 *
 * The file is read as a stream of libyaml events and matched against a fixed
 * schema: every mapping has a table of known keys, every value one handler.
 * The first problem found stops the parse with one line
 * "NAME:LINE:COL: dotted.key: what is wrong".
 *
 * It must never accept what it does not understand (unknown keys, aliases,
 * anchors, tags, several documents), never truncate a string silently, never
 * echo a control character from the input into a message, and never hold on
 * to libyaml memory after it returns.
 */
#include "config.h"
#include "preprocess.h"
#include "router.h"
#include "tensor.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

/* sun_path holds 108 bytes with the NUL, so ZeroMQ's ipc paths stop at 107. */
#define S_IPC_PATH_MAX 107
/* How many bytes of a bad value a message shows before "...". */
#define S_QUOTE_MAX 40
#define S_QUOTE_BUF (S_QUOTE_MAX * 4 + 8)
/* Longest seed string: 64 hex + '@' + endpoint. */
#define S_SEED_STR_MAX (64 + 1 + KVC_ENDPOINT_MAX)

/* Endpoint checks. */
#define S_EP_TCP_ONLY 1u    /* ipc:// refused */
#define S_EP_NO_WILDCARD 2u /* 0.0.0.0, *, :: refused (we connect there) */
#define S_EP_PORT0 4u       /* port 0 allowed (bound at runtime) */

typedef struct s_ctx s_ctx_t;
typedef struct s_field s_field_t;
typedef int (*s_value_fn)(s_ctx_t *ctx, const s_field_t *field, void *obj);

/* One known key of a mapping and how its value is read into obj. */
struct s_field {
    const char *key;
    s_value_fn fn;
    size_t off;          /* offset of the target inside obj (generic handlers) */
    size_t size;         /* size of the target */
    const char *missing; /* if required: the dotted name reported when absent */
    uint32_t min, max;   /* range of an integer value (0 is always allowed) */
};

/* Parser state for one call of kvc_config_parse. */
struct s_ctx {
    yaml_parser_t parser;
    int parser_ready;
    yaml_event_t ev; /* current event, valid while have_ev */
    int have_ev;
    kvc_config_t *cfg;
    kvc_err_t *err;
    const char *text;
    size_t len;
    char name[160]; /* the source name, escaped for messages */
    char path[160]; /* dotted key of the value being read */
    size_t path_len;
    char quoted[S_QUOTE_BUF]; /* scratch for s_quote */
    size_t index;             /* index of the sequence item being read */
    yaml_mark_t key_mark;     /* mark of the key whose value is being read */
    yaml_mark_t root_mark, fed_mark, listen_mark, data_dir_mark;
    int have_fed, have_listen, have_data_dir, have_credential, have_trust;
};

/* --- messages ---------------------------------------------------------- */

/* Appends c to out if there is room for it and the NUL. */
static void s_put(char *out, size_t size, size_t *o, char c)
{
    if (*o + 1 < size)
        out[(*o)++] = c;
}

/* Writes s (len bytes) into out, printable ASCII as is and everything else
 * as \xNN, at most max_in input bytes then "..."; quoted if asked. */
static void s_escape(char *out, size_t size, const char *s, size_t len, size_t max_in, int quote)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    if (quote)
        s_put(out, size, &o, '"');
    for (size_t i = 0; i < len && i < max_in; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            s_put(out, size, &o, '\\');
            s_put(out, size, &o, (char)c);
        } else if (c >= 0x20 && c < 0x7f) {
            s_put(out, size, &o, (char)c);
        } else {
            s_put(out, size, &o, '\\');
            s_put(out, size, &o, 'x');
            s_put(out, size, &o, hex[c >> 4]);
            s_put(out, size, &o, hex[c & 15]);
        }
    }
    if (len > max_in) {
        s_put(out, size, &o, '.');
        s_put(out, size, &o, '.');
        s_put(out, size, &o, '.');
    }
    if (quote)
        s_put(out, size, &o, '"');
    out[o] = '\0';
}

/* Returns the quoted, escaped, shortened form of s for a message. */
static const char *s_quote(s_ctx_t *ctx, const char *s, size_t len)
{
    s_escape(ctx->quoted, sizeof ctx->quoted, s, len, S_QUOTE_MAX, 1);
    return ctx->quoted;
}

/* Returns the current scalar quoted for a message. */
static const char *s_quote_value(s_ctx_t *ctx)
{
    return s_quote(ctx, (const char *)ctx->ev.data.scalar.value, ctx->ev.data.scalar.length);
}

/* Sets err to "NAME:LINE:COL: KEY: what" and returns code. KEY is key, or
 * the current path, or "(document)" at the top. */
__attribute__((format(printf, 5, 6))) static int
s_fail(s_ctx_t *ctx, yaml_mark_t mark, const char *key, int code, const char *fmt, ...)
{
    char what[KVC_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (!key)
        key = ctx->path_len ? ctx->path : "(document)";
    return kvc_err_set(ctx->err, code, "%s:%zu:%zu: %s: %s", ctx->name, mark.line + 1,
                       mark.column + 1, key, what);
}

/* Reports a libyaml reader, scanner or parser error in our format. */
static int s_fail_yaml(s_ctx_t *ctx)
{
    yaml_parser_t *p = &ctx->parser;
    char problem[200];
    char context[120];
    if (p->error == YAML_MEMORY_ERROR)
        return kvc_err_set(ctx->err, KVC_ENOMEM, "%s: out of memory", ctx->name);
    const char *pr = p->problem ? p->problem : "syntax error";
    s_escape(problem, sizeof problem, pr, strlen(pr), 150, 0);
    yaml_mark_t mark = p->problem_mark;
    if (p->error == YAML_READER_ERROR) {
        /* Reader errors carry a byte offset only: count lines ourselves. */
        size_t off = p->problem_offset < ctx->len ? p->problem_offset : ctx->len;
        mark.line = 0;
        mark.column = 0;
        for (size_t i = 0; i < off; i++) {
            if (ctx->text[i] == '\n') {
                mark.line++;
                mark.column = 0;
            } else if (((unsigned char)ctx->text[i] & 0xc0) != 0x80) {
                mark.column++; /* libyaml counts characters, not bytes */
            }
        }
    }
    if (p->context && p->error != YAML_READER_ERROR) {
        s_escape(context, sizeof context, p->context, strlen(p->context), 100, 0);
        return s_fail(ctx, mark, "yaml", KVC_EPARSE, "%s (%s started at %zu:%zu)", problem, context,
                      p->context_mark.line + 1, p->context_mark.column + 1);
    }
    return s_fail(ctx, mark, "yaml", KVC_EPARSE, "%s", problem);
}

/* Names an event's kind for "expected X, found Y". */
static const char *s_kind(const yaml_event_t *ev)
{
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        return "a scalar";
    case YAML_SEQUENCE_START_EVENT:
        return "a sequence";
    case YAML_MAPPING_START_EVENT:
        return "a mapping";
    default:
        return "something else";
    }
}

/* --- events and paths -------------------------------------------------- */

/* Moves to the next event, refusing aliases, anchors, tags and %TAG. */
static int s_next(s_ctx_t *ctx)
{
    if (ctx->have_ev) {
        yaml_event_delete(&ctx->ev);
        ctx->have_ev = 0;
    }
    if (!yaml_parser_parse(&ctx->parser, &ctx->ev))
        return s_fail_yaml(ctx);
    ctx->have_ev = 1;
    const yaml_event_t *ev = &ctx->ev;
    const yaml_char_t *anchor = NULL;
    const yaml_char_t *tag = NULL;
    switch (ev->type) {
    case YAML_ALIAS_EVENT:
        return s_fail(ctx, ev->start_mark, NULL, KVC_EINVAL, "aliases are not supported");
    case YAML_SCALAR_EVENT:
        anchor = ev->data.scalar.anchor;
        tag = ev->data.scalar.tag;
        break;
    case YAML_SEQUENCE_START_EVENT:
        anchor = ev->data.sequence_start.anchor;
        tag = ev->data.sequence_start.tag;
        break;
    case YAML_MAPPING_START_EVENT:
        anchor = ev->data.mapping_start.anchor;
        tag = ev->data.mapping_start.tag;
        break;
    case YAML_DOCUMENT_START_EVENT:
        if (ev->data.document_start.tag_directives.start !=
            ev->data.document_start.tag_directives.end)
            return s_fail(ctx, ev->start_mark, NULL, KVC_EINVAL, "tags are not supported");
        break;
    default:
        break;
    }
    if (anchor)
        return s_fail(ctx, ev->start_mark, NULL, KVC_EINVAL, "anchors are not supported");
    if (tag)
        return s_fail(ctx, ev->start_mark, NULL, KVC_EINVAL, "tags are not supported");
    return 0;
}

/* Appends ".key" (or "key" at the top) to the current path. */
static int s_path_push(s_ctx_t *ctx, const char *key)
{
    int n = snprintf(ctx->path + ctx->path_len, sizeof ctx->path - ctx->path_len, "%s%s",
                     ctx->path_len ? "." : "", key);
    if (n < 0 || (size_t)n >= sizeof ctx->path - ctx->path_len)
        return kvc_err_set(ctx->err, KVC_ERANGE, "%s: key path too long", ctx->name);
    ctx->path_len += (size_t)n;
    return 0;
}

/* Appends "[i]" to the current path. */
static int s_path_push_index(s_ctx_t *ctx, size_t i)
{
    int n = snprintf(ctx->path + ctx->path_len, sizeof ctx->path - ctx->path_len, "[%zu]", i);
    if (n < 0 || (size_t)n >= sizeof ctx->path - ctx->path_len)
        return kvc_err_set(ctx->err, KVC_ERANGE, "%s: key path too long", ctx->name);
    ctx->path_len += (size_t)n;
    return 0;
}

/* Cuts the path back to len bytes. */
static void s_path_pop(s_ctx_t *ctx, size_t len)
{
    ctx->path_len = len;
    ctx->path[len] = '\0';
}

/* 1 if the current event is a plain null scalar ("", ~, null). */
static int s_is_null(const yaml_event_t *ev)
{
    if (ev->type != YAML_SCALAR_EVENT || ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return 0;
    const char *v = (const char *)ev->data.scalar.value;
    size_t n = ev->data.scalar.length;
    return n == 0 || (n == 1 && v[0] == '~') ||
           (n == 4 && (!memcmp(v, "null", 4) || !memcmp(v, "Null", 4) || !memcmp(v, "NULL", 4)));
}

/* --- structure --------------------------------------------------------- */

/* Reads a mapping (or a null, read as empty) whose keys are in fields. */
static int s_parse_mapping(s_ctx_t *ctx, const s_field_t *fields, size_t n, void *obj)
{
    yaml_mark_t start = ctx->ev.start_mark;
    uint32_t seen = 0;
    int rc;
    if (ctx->ev.type == YAML_MAPPING_START_EVENT) {
        for (;;) {
            if ((rc = s_next(ctx)))
                return rc;
            if (ctx->ev.type == YAML_MAPPING_END_EVENT)
                break;
            if (ctx->ev.type != YAML_SCALAR_EVENT)
                return s_fail(ctx, ctx->ev.start_mark, NULL, KVC_EINVAL, "expected a key, found %s",
                              s_kind(&ctx->ev));
            const char *key = (const char *)ctx->ev.data.scalar.value;
            size_t klen = ctx->ev.data.scalar.length;
            size_t i = 0;
            while (i < n && !(strlen(fields[i].key) == klen && !memcmp(fields[i].key, key, klen)))
                i++;
            if (i == n || (seen & (1u << i))) {
                /* Name the offending key itself: "peer.colour: unknown key". */
                char label[sizeof ctx->path + 64], esc[64];
                s_escape(esc, sizeof esc, key, klen, S_QUOTE_MAX, 0);
                snprintf(label, sizeof label, "%s%s%s", ctx->path, ctx->path_len ? "." : "", esc);
                return s_fail(ctx, ctx->ev.start_mark, label, KVC_EINVAL, "%s",
                              i == n ? "unknown key" : "duplicate key");
            }
            seen |= 1u << i;
            ctx->key_mark = ctx->ev.start_mark;
            size_t saved = ctx->path_len;
            if ((rc = s_path_push(ctx, fields[i].key)) || (rc = s_next(ctx)) ||
                (rc = fields[i].fn(ctx, &fields[i], obj)))
                return rc;
            s_path_pop(ctx, saved);
        }
    } else if (!s_is_null(&ctx->ev)) {
        return s_fail(ctx, ctx->ev.start_mark, NULL, KVC_EINVAL, "expected a mapping, found %s",
                      s_kind(&ctx->ev));
    }
    for (size_t i = 0; i < n; i++) {
        if (fields[i].missing && !(seen & (1u << i))) {
            char key[sizeof ctx->path + 64];
            snprintf(key, sizeof key, "%s%s%s", ctx->path, ctx->path_len ? "." : "",
                     fields[i].missing);
            return s_fail(ctx, start, key, KVC_EINVAL, "is required");
        }
    }
    return 0;
}

typedef int (*s_item_fn)(s_ctx_t *ctx, void *obj);

/* Reads a sequence (or a null, read as empty), one item_fn per item. */
static int s_parse_sequence(s_ctx_t *ctx, s_item_fn item_fn, void *obj)
{
    int rc;
    if (s_is_null(&ctx->ev))
        return 0;
    if (ctx->ev.type != YAML_SEQUENCE_START_EVENT)
        return s_fail(ctx, ctx->ev.start_mark, NULL, KVC_EINVAL, "expected a sequence, found %s",
                      s_kind(&ctx->ev));
    for (size_t i = 0;; i++) {
        if ((rc = s_next(ctx)))
            return rc;
        if (ctx->ev.type == YAML_SEQUENCE_END_EVENT)
            return 0;
        size_t saved = ctx->path_len;
        ctx->index = i;
        if ((rc = s_path_push_index(ctx, i)) || (rc = item_fn(ctx, obj)))
            return rc;
        s_path_pop(ctx, saved);
    }
}

/* --- scalar values ----------------------------------------------------- */

/* Fails unless the current event is a scalar. */
static int s_expect_scalar(s_ctx_t *ctx)
{
    if (ctx->ev.type == YAML_SCALAR_EVENT)
        return 0;
    return s_fail(ctx, ctx->ev.start_mark, NULL, KVC_EINVAL, "expected a scalar, found %s",
                  s_kind(&ctx->ev));
}

/* Copies the current scalar into dst (size bytes with the NUL); refuses
 * control characters and values that do not fit. */
static int s_take_string(s_ctx_t *ctx, char *dst, size_t size)
{
    int rc = s_expect_scalar(ctx);
    if (rc)
        return rc;
    const unsigned char *v = ctx->ev.data.scalar.value;
    size_t len = ctx->ev.data.scalar.length;
    for (size_t i = 0; i < len; i++)
        if (v[i] < 0x20 || v[i] == 0x7f)
            return s_fail(ctx, ctx->ev.start_mark, NULL, KVC_EINVAL,
                          "%s contains a control character", s_quote_value(ctx));
    if (len >= size)
        return s_fail(ctx, ctx->ev.start_mark, NULL, KVC_ERANGE,
                      "%s is too long (at most %zu bytes)", s_quote_value(ctx), size - 1);
    memcpy(dst, v, len);
    dst[len] = '\0';
    return 0;
}

/* Fails with "VALUE what" at the current value. */
static int s_bad_value(s_ctx_t *ctx, const char *what)
{
    return s_fail(ctx, ctx->ev.start_mark, NULL, KVC_EINVAL, "%s %s", s_quote_value(ctx), what);
}

/* Reads a name ([a-z0-9-]{1,63}) into dst. */
static int s_take_name(s_ctx_t *ctx, char *dst)
{
    int rc = s_take_string(ctx, dst, KVC_NAME_MAX);
    if (rc)
        return rc;
    if (!kvc_config_valid_name(dst))
        return s_bad_value(ctx, "must match [a-z0-9-]{1,63} and not start or end with '-'");
    return 0;
}

/* Reads an absolute path into dst. */
static int s_take_path(s_ctx_t *ctx, char *dst, size_t size)
{
    int rc = s_take_string(ctx, dst, size);
    if (rc)
        return rc;
    if (dst[0] != '/')
        return s_bad_value(ctx, "must be an absolute path");
    return 0;
}

/* 1 if h is a DNS-style host name (labels of [A-Za-z0-9-], dots between). */
static int s_valid_hostname(const char *h)
{
    size_t len = strlen(h);
    if (len == 0 || len > 253)
        return 0;
    size_t label = 0;
    for (size_t i = 0; i <= len; i++) {
        char c = h[i];
        if (c == '.' || c == '\0') {
            if (label == 0 || label > 63 || h[i - 1] == '-' || h[i - label] == '-')
                return 0;
            label = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   c == '-') {
            label++;
        } else {
            return 0;
        }
    }
    return 1;
}

/* Checks "HOST:PORT"; returns NULL or what is wrong. Sets *wildcard. */
static const char *s_check_hostport(const char *hp, unsigned flags, int *wildcard, char *host_out,
                                    size_t host_size)
{
    char host[KVC_ENDPOINT_MAX];
    const char *port;
    *wildcard = 0;
    if (hp[0] == '[') {
        const char *close = strchr(hp, ']');
        if (!close)
            return "has an unclosed '['";
        size_t n = (size_t)(close - hp - 1);
        if (n >= sizeof host)
            return "has an invalid host";
        memcpy(host, hp + 1, n);
        host[n] = '\0';
        struct in6_addr a6;
        if (inet_pton(AF_INET6, host, &a6) != 1)
            return "has an invalid IPv6 address";
        *wildcard = !memcmp(&a6, &in6addr_any, sizeof a6);
        if (close[1] != ':')
            return "needs a port (HOST:PORT)";
        port = close + 2;
    } else {
        const char *colon = strrchr(hp, ':');
        if (!colon)
            return "needs a port (HOST:PORT)";
        size_t n = (size_t)(colon - hp);
        if (n >= sizeof host)
            return "has an invalid host";
        memcpy(host, hp, n);
        host[n] = '\0';
        port = colon + 1;
        if (n == 0)
            return "needs a host (HOST:PORT)";
        if (strchr(host, ':'))
            return "must write an IPv6 address in brackets ([::1]:PORT)";
        if (!strcmp(host, "*")) {
            *wildcard = 1;
        } else if (strspn(host, "0123456789.") == n) {
            struct in_addr a4;
            if (inet_pton(AF_INET, host, &a4) != 1)
                return "has an invalid IPv4 address";
            *wildcard = a4.s_addr == 0;
        } else if (!s_valid_hostname(host)) {
            return "has an invalid host name";
        }
    }
    size_t plen = strlen(port);
    uint32_t value = 0;
    if (plen == 0 || plen > 5 || strspn(port, "0123456789") != plen)
        return (flags & S_EP_PORT0) ? "has an invalid port (0..65535)"
                                    : "has an invalid port (1..65535)";
    for (size_t i = 0; i < plen; i++)
        value = value * 10 + (uint32_t)(port[i] - '0');
    if (value > 65535 || (value == 0 && !(flags & S_EP_PORT0)))
        return (flags & S_EP_PORT0) ? "has an invalid port (0..65535)"
                                    : "has an invalid port (1..65535)";
    if (*wildcard && (flags & S_EP_NO_WILDCARD))
        return "cannot use a wildcard host";
    if (host_out)
        kvc_strlcpy(host_out, host, host_size);
    return NULL;
}

/* Checks tcp://HOST:PORT or ipc:///PATH; returns NULL or what is wrong. */
static const char *s_check_endpoint(const char *ep, unsigned flags, int *wildcard)
{
    *wildcard = 0;
    if (!strncmp(ep, "tcp://", 6))
        return s_check_hostport(ep + 6, flags, wildcard, NULL, 0);
    if (!strncmp(ep, "ipc://", 6)) {
        if (flags & S_EP_TCP_ONLY)
            return "must be tcp://HOST:PORT";
        const char *path = ep + 6;
        size_t n = strlen(path);
        if (path[0] != '/' || n < 2 || path[n - 1] == '/')
            return "must name an absolute file path (ipc:///PATH)";
        if (n > S_IPC_PATH_MAX)
            return "has an ipc path longer than 107 bytes";
        return NULL;
    }
    return (flags & S_EP_TCP_ONLY) ? "must be tcp://HOST:PORT"
                                   : "must be tcp://HOST:PORT or ipc:///PATH";
}

/* Parses a decimal integer without sign or leading zeros; 0 or -1. */
static int s_parse_u64(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    if (len == 0 || (len > 1 && s[0] == '0'))
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* Parses "N", "N KiB", "NMiB"...; 0 or -1 (bad syntax or overflow). */
static int s_parse_size(const char *s, uint64_t *out)
{
    static const struct {
        const char *suffix;
        uint64_t mult;
    } units[] = {{"", 1},
                 {"B", 1},
                 {"KiB", 1024ull},
                 {"MiB", 1024ull * 1024},
                 {"GiB", 1024ull * 1024 * 1024},
                 {"KB", 1000ull},
                 {"MB", 1000ull * 1000},
                 {"GB", 1000ull * 1000 * 1000}};
    size_t digits = strspn(s, "0123456789");
    uint64_t n;
    if (s_parse_u64(s, digits, &n))
        return -1;
    const char *unit = s + digits;
    if (*unit == ' ' && unit[1] != '\0')
        unit++;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (!strcmp(unit, units[i].suffix)) {
            if (n > UINT64_MAX / units[i].mult)
                return -1;
            *out = n * units[i].mult;
            return 0;
        }
    }
    return -1;
}

/* --- value handlers ---------------------------------------------------- */

/* Target of a generic field inside obj. */
static void *s_target(const s_field_t *f, void *obj)
{
    return (char *)obj + f->off;
}

/* A name field. */
static int s_v_name(s_ctx_t *ctx, const s_field_t *f, void *obj)
{
    return s_take_name(ctx, s_target(f, obj));
}

/* An absolute path field. */
static int s_v_path(s_ctx_t *ctx, const s_field_t *f, void *obj)
{
    return s_take_path(ctx, s_target(f, obj), f->size);
}

/* peer.data_dir: also remembered for the derived paths. */
static int s_v_data_dir(s_ctx_t *ctx, const s_field_t *f, void *obj)
{
    ctx->have_data_dir = 1;
    ctx->data_dir_mark = ctx->ev.start_mark;
    int rc = s_v_path(ctx, f, obj);
    char *d = s_target(f, obj);
    size_t n = strlen(d);
    while (!rc && n > 1 && d[n - 1] == '/')
        d[--n] = '\0';
    return rc;
}

/* peer.credential: set explicitly, so not derived from data_dir. */
static int s_v_credential(s_ctx_t *ctx, const s_field_t *f, void *obj)
{
    ctx->have_credential = 1;
    return s_v_path(ctx, f, obj);
}

/* federation.trust: set explicitly, so not derived from data_dir. */
static int s_v_trust(s_ctx_t *ctx, const s_field_t *f, void *obj)
{
    ctx->have_trust = 1;
    return s_v_path(ctx, f, obj);
}

/* An endpoint field; f->min carries the S_EP_* flags. */
static int s_v_endpoint(s_ctx_t *ctx, const s_field_t *f, void *obj)
{
    char *dst = s_target(f, obj);
    int wildcard;
    int rc = s_take_string(ctx, dst, f->size);
    if (rc)
        return rc;
    const char *why = s_check_endpoint(dst, f->min, &wildcard);
    return why ? s_bad_value(ctx, why) : 0;
}

/* federation.listen: remembers where the key is for the advertise check. */
static int s_v_listen(s_ctx_t *ctx, const s_field_t *f, void *obj)
{
    ctx->have_listen = 1;
    ctx->listen_mark = ctx->key_mark;
    return s_v_endpoint(ctx, f, obj);
}

/* federation.advertise: an endpoint, or "" to derive it from listen. */
static int s_v_advertise(s_ctx_t *ctx, const s_field_t *f, void *obj)
{
    char *dst = s_target(f, obj);
    int rc = s_take_string(ctx, dst, f->size);
    if (rc || dst[0] == '\0')
        return rc;
    return s_v_endpoint(ctx, f, obj);
}

/* control.endpoint: "" (derived), ipc:///PATH or tcp://127.0.0.1:PORT. */
static int s_v_control(s_ctx_t *ctx, const s_field_t *f, void *obj)
{
    char *dst = s_target(f, obj);
    int wildcard;
    int rc = s_take_string(ctx, dst, f->size);
    if (rc || dst[0] == '\0')
        return rc;
    const char *why = s_check_endpoint(dst, 0, &wildcard);
    if (!why && !strncmp(dst, "tcp://", 6) && strncmp(dst, "tcp://127.0.0.1:", 16))
        why = "must be local: ipc:///PATH or tcp://127.0.0.1:PORT";
    return why ? s_bad_value(ctx, why) : 0;
}

/* http.listen: "HOST:PORT" or "" (disabled). */
static int s_v_http_listen(s_ctx_t *ctx, const s_field_t *f, void *obj)
{
    char *dst = s_target(f, obj);
    int wildcard;
    int rc = s_take_string(ctx, dst, f->size);
    if (rc || dst[0] == '\0')
        return rc;
    const char *why = s_check_hostport(dst, S_EP_PORT0, &wildcard, NULL, 0);
    return why ? s_bad_value(ctx, why) : 0;
}

/* Writes a size bound for messages: "1 GiB", "64 MiB", "1 KiB" or bytes. */
static const char *s_size_text(uint64_t v, char *buf, size_t cap)
{
    static const char *const units[] = {"GiB", "MiB", "KiB"};
    for (int i = 0; i < 3; i++) {
        uint64_t u = 1ull << (10 * (3 - i));
        if (v >= u && v % u == 0) {
            snprintf(buf, cap, "%llu %s", (unsigned long long)(v / u), units[i]);
            return buf;
        }
    }
    snprintf(buf, cap, "%llu bytes", (unsigned long long)v);
    return buf;
}

/* http.max_body: bytes with an optional unit, in [f->min, f->max]. */
static int s_v_size(s_ctx_t *ctx, const s_field_t *f, void *obj)
{
    char tmp[32];
    uint64_t v;
    int rc = s_take_string(ctx, tmp, sizeof tmp);
    if (rc)
        return rc;
    if (s_parse_size(tmp, &v))
        return s_bad_value(ctx, "is not a size (an integer with an optional unit: B, KiB, MiB, "
                                "GiB, KB, MB, GB)");
    if (v < f->min || v > f->max) {
        char lo[24], hi[24];
        return s_fail(ctx, ctx->ev.start_mark, NULL, KVC_ERANGE, "%s is out of range (%s..%s)",
                      s_quote_value(ctx), s_size_text(f->min, lo, sizeof lo),
                      s_size_text(f->max, hi, sizeof hi));
    }
    memcpy(s_target(f, obj), &v, sizeof v);
    return 0;
}

/* A timing value: 0 (profile default) or an integer in [f->min, f->max]. */
static int s_v_u32(s_ctx_t *ctx, const s_field_t *f, void *obj)
{
    char tmp[32];
    uint64_t v;
    int rc = s_take_string(ctx, tmp, sizeof tmp);
    if (rc)
        return rc;
    if (s_parse_u64(tmp, strlen(tmp), &v))
        return s_bad_value(ctx, "is not a decimal integer");
    if (v != 0 && (v < f->min || v > f->max))
        return s_fail(ctx, ctx->ev.start_mark, NULL, KVC_ERANGE,
                      "%s is out of range (%u..%u, or 0 for the profile default)",
                      s_quote_value(ctx), f->min, f->max);
    uint32_t u = (uint32_t)v;
    memcpy(s_target(f, obj), &u, sizeof u);
    return 0;
}

/* A positive integer in [min, max] with no "0 means default" escape. */
static int s_v_u32_strict(s_ctx_t *ctx, const s_field_t *f, void *obj)
{
    char tmp[32];
    uint64_t v;
    int rc = s_take_string(ctx, tmp, sizeof tmp);
    if (rc)
        return rc;
    if (s_parse_u64(tmp, strlen(tmp), &v))
        return s_bad_value(ctx, "is not a decimal integer");
    if (v < f->min || v > f->max)
        return s_fail(ctx, ctx->ev.start_mark, NULL, KVC_ERANGE, "%s is out of range (%u..%u)",
                      s_quote_value(ctx), f->min, f->max);
    uint32_t u = (uint32_t)v;
    memcpy(s_target(f, obj), &u, sizeof u);
    return 0;
}

/* Matches the current scalar against names[]; sets *out to its index. */
static int s_take_choice(s_ctx_t *ctx, const char *const *names, size_t n, const char *list,
                         int *out)
{
    int rc = s_expect_scalar(ctx);
    if (rc)
        return rc;
    const char *v = (const char *)ctx->ev.data.scalar.value;
    size_t len = ctx->ev.data.scalar.length;
    for (size_t i = 0; i < n; i++) {
        if (strlen(names[i]) == len && !memcmp(v, names[i], len)) {
            *out = (int)i;
            return 0;
        }
    }
    return s_fail(ctx, ctx->ev.start_mark, NULL, KVC_EINVAL, "%s must be one of %s",
                  s_quote_value(ctx), list);
}

/* federation.profile: lan or wan. */
static int s_v_profile(s_ctx_t *ctx, const s_field_t *f, void *obj)
{
    static const char *const names[] = {"lan", "wan"};
    int i = 0;
    int rc = s_take_choice(ctx, names, 2, "lan, wan", &i);
    if (!rc)
        ((kvc_config_t *)obj)->profile = i == 0 ? KVC_PROFILE_LAN : KVC_PROFILE_WAN;
    return rc;
}

/* log.level: debug, info, warn or error. */
static int s_v_log_level(s_ctx_t *ctx, const s_field_t *f, void *obj)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    static const kvc_log_level_t levels[] = {KVC_LOG_DEBUG, KVC_LOG_INFO, KVC_LOG_WARN,
                                             KVC_LOG_ERROR};
    int i = 0;
    int rc = s_take_choice(ctx, names, 4, "debug, info, warn, error", &i);
    if (!rc)
        ((kvc_config_t *)obj)->log_level = levels[i];
    return rc;
}

/* A 64-hex public key into a 32-byte target. */
static int s_v_key(s_ctx_t *ctx, const s_field_t *f, void *obj)
{
    char tmp[65];
    int rc = s_expect_scalar(ctx);
    if (rc)
        return rc;
    if (ctx->ev.data.scalar.length != 64)
        return s_bad_value(ctx, "is not a 64-character hex key");
    memcpy(tmp, ctx->ev.data.scalar.value, 64);
    tmp[64] = '\0';
    if (kvc_config_parse_key(tmp, s_target(f, obj)))
        return s_bad_value(ctx, "is not a 64-character hex key");
    return 0;
}

/* --- lists ------------------------------------------------------------- */

/* Fails when a list already holds max items. */
static int s_check_count(s_ctx_t *ctx, size_t count, size_t max)
{
    if (count < max)
        return 0;
    return s_fail(ctx, ctx->ev.start_mark, NULL, KVC_ERANGE, "too many entries (at most %zu)", max);
}

/* One item of peer.roles. */
static int s_item_role(s_ctx_t *ctx, void *obj)
{
    kvc_config_t *cfg = obj;
    int rc = s_check_count(ctx, cfg->n_roles, KVC_MAX_ROLES);
    if (rc || (rc = s_take_name(ctx, cfg->roles[cfg->n_roles])))
        return rc;
    for (size_t i = 0; i < cfg->n_roles; i++)
        if (!strcmp(cfg->roles[i], cfg->roles[cfg->n_roles]))
            return s_bad_value(ctx, "is listed twice");
    cfg->n_roles++;
    return 0;
}

/* peer.roles: replaces the default list; at least one role. */
static int s_v_roles(s_ctx_t *ctx, const s_field_t *f, void *obj)
{
    kvc_config_t *cfg = obj;
    yaml_mark_t start = ctx->ev.start_mark;
    cfg->n_roles = 0;
    int rc = s_parse_sequence(ctx, s_item_role, obj);
    if (!rc && cfg->n_roles == 0)
        return s_fail(ctx, start, NULL, KVC_EINVAL, "must list at least one role");
    return rc;
}

static const s_field_t s_seed_fields[] = {
    {"endpoint", s_v_endpoint, offsetof(kvc_seed_t, endpoint), KVC_ENDPOINT_MAX, "endpoint",
     S_EP_TCP_ONLY | S_EP_NO_WILDCARD, 0},
    {"key", s_v_key, offsetof(kvc_seed_t, public_key), 32, "key", 0, 0},
};

/* One item of federation.seeds: a mapping or "KEY@tcp://HOST:PORT". */
static int s_item_seed(s_ctx_t *ctx, void *obj)
{
    kvc_config_t *cfg = obj;
    kvc_seed_t seed;
    yaml_mark_t start = ctx->ev.start_mark;
    int rc = s_check_count(ctx, cfg->n_seeds, KVC_MAX_SEEDS);
    if (rc)
        return rc;
    memset(&seed, 0, sizeof seed);
    if (ctx->ev.type == YAML_MAPPING_START_EVENT) {
        rc = s_parse_mapping(ctx, s_seed_fields, 2, &seed);
        if (rc)
            return rc;
    } else if (ctx->ev.type == YAML_SCALAR_EVENT) {
        char tmp[S_SEED_STR_MAX];
        int wildcard;
        if ((rc = s_take_string(ctx, tmp, sizeof tmp)))
            return rc;
        char *at = strchr(tmp, '@');
        if (!at)
            return s_bad_value(ctx, "must be KEY@tcp://HOST:PORT or a mapping");
        *at = '\0';
        if (kvc_config_parse_key(tmp, seed.public_key))
            return s_bad_value(ctx, "does not start with a 64-character hex key");
        const char *why = s_check_endpoint(at + 1, S_EP_TCP_ONLY | S_EP_NO_WILDCARD, &wildcard);
        if (why)
            return s_bad_value(ctx, why);
        if (kvc_strlcpy(seed.endpoint, at + 1, sizeof seed.endpoint))
            return s_bad_value(ctx, "has an endpoint longer than 255 bytes");
    } else {
        return s_fail(ctx, ctx->ev.start_mark, NULL, KVC_EINVAL,
                      "expected a mapping or a string, found %s", s_kind(&ctx->ev));
    }
    for (size_t i = 0; i < cfg->n_seeds; i++)
        if (!memcmp(cfg->seeds[i].public_key, seed.public_key, 32))
            return s_fail(ctx, start, NULL, KVC_EINVAL, "duplicate seed key (also in item %zu)", i);
    cfg->seeds[cfg->n_seeds++] = seed;
    return 0;
}

/* federation.seeds: replaces any earlier list. */
static int s_v_seeds(s_ctx_t *ctx, const s_field_t *f, void *obj)
{
    ((kvc_config_t *)obj)->n_seeds = 0;
    return s_parse_sequence(ctx, s_item_seed, obj);
}

/* One item of federation.revoked. */
static int s_item_revoked(s_ctx_t *ctx, void *obj)
{
    static const s_field_t key_field = {"", s_v_key, 0, 32, NULL, 0, 0};
    kvc_config_t *cfg = obj;
    int rc = s_check_count(ctx, cfg->n_revoked, KVC_MAX_REVOKED);
    if (rc || (rc = s_v_key(ctx, &key_field, cfg->revoked[cfg->n_revoked])))
        return rc;
    for (size_t i = 0; i < cfg->n_revoked; i++)
        if (!memcmp(cfg->revoked[i], cfg->revoked[cfg->n_revoked], 32))
            return s_bad_value(ctx, "is listed twice");
    cfg->n_revoked++;
    return 0;
}

/* federation.revoked: replaces any earlier list. */
static int s_v_revoked(s_ctx_t *ctx, const s_field_t *f, void *obj)
{
    ((kvc_config_t *)obj)->n_revoked = 0;
    return s_parse_sequence(ctx, s_item_revoked, obj);
}

/* proxy.backends[].model: [A-Za-z0-9][A-Za-z0-9._-]*, as model servers allow. */
static int s_v_model(s_ctx_t *ctx, const s_field_t *f, void *obj)
{
    char *dst = s_target(f, obj);
    int rc = s_take_string(ctx, dst, f->size);
    if (rc)
        return rc;
    size_t n = strlen(dst);
    int ok = n > 0 &&
             strspn(dst, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                         "0123456789._-") == n &&
             strspn(dst, ".-_") == 0;
    return ok ? 0 : s_bad_value(ctx, "must match [A-Za-z0-9][A-Za-z0-9._-]*");
}

/* proxy.backends[].grpc: HOST:PORT we connect to, plain-text HTTP/2; or
 * https://HOST:PORT for gRPC over TLS (http://HOST:PORT is HOST:PORT). */
static int s_v_grpc(s_ctx_t *ctx, const s_field_t *f, void *obj)
{
    char *dst = s_target(f, obj);
    int wildcard;
    int rc = s_take_string(ctx, dst, f->size);
    if (rc)
        return rc;
    const char *hp = dst;
    if (!strncmp(dst, "https://", 8))
        hp = dst + 8;
    else if (!strncmp(dst, "http://", 7))
        hp = dst + 7;
    if (strstr(hp, "://"))
        return s_bad_value(ctx, "must be HOST:PORT, http://HOST:PORT or https://HOST:PORT");
    const char *why = s_check_hostport(hp, S_EP_NO_WILDCARD, &wildcard, NULL, 0);
    return why ? s_bad_value(ctx, why) : 0;
}

/* proxy.backends[].api: tfserving or kserve. */
static int s_v_api(s_ctx_t *ctx, const s_field_t *f, void *obj)
{
    static const char *const names[] = {"tfserving", "kserve"};
    int i = 0;
    int rc = s_take_choice(ctx, names, 2, "tfserving, kserve", &i);
    if (!rc)
        kvc_strlcpy(s_target(f, obj), names[i], f->size);
    return rc;
}

/* proxy.backends[].metrics_url: http://... or https://... */
static int s_v_url(s_ctx_t *ctx, const s_field_t *f, void *obj)
{
    char *dst = s_target(f, obj);
    int rc = s_take_string(ctx, dst, f->size);
    if (rc)
        return rc;
    const char *rest = !strncmp(dst, "http://", 7)    ? dst + 7
                       : !strncmp(dst, "https://", 8) ? dst + 8
                                                      : NULL;
    if (!rest || !*rest || *rest == '/' || strchr(dst, ' '))
        return s_bad_value(ctx, "must be an http:// or https:// URL");
    return 0;
}

/* proxy.backends[].preprocess: an image spec that proxy/preprocess.c accepts. */
static int s_v_preprocess(s_ctx_t *ctx, const s_field_t *f, void *obj)
{
    char *dst = s_target(f, obj);
    int rc = s_take_string(ctx, dst, f->size);
    if (rc)
        return rc;
    kvc_preprocess_t spec;
    kvc_err_t perr = {0};
    if (kvc_preprocess_parse(dst, &spec, &perr) != 0)
    {
        const char *why = perr.msg;
        if (strncmp(why, "preprocess: ", 12) == 0)
            why += 12; /* the key already says it */
        return s_fail(ctx, ctx->ev.start_mark, NULL, KVC_EINVAL, "%s", why);
    }
    return 0;
}

/* proxy.backends[].image_input: a tensor name, [A-Za-z0-9._/:-]{1,127}. */
static int s_v_tensor_name(s_ctx_t *ctx, const s_field_t *f, void *obj)
{
    char *dst = s_target(f, obj);
    int rc = s_take_string(ctx, dst, f->size);
    if (rc)
        return rc;
    size_t n = strlen(dst);
    int ok = n > 0 && strspn(dst, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                  "0123456789._/:-") == n;
    return ok ? 0 : s_bad_value(ctx, "must match [A-Za-z0-9._/:-]+");
}

/* One item of proxy.backends[].inputs: "NAME:DTYPE", split at the last
 * ':' (TensorFlow names such as "x:0" hold one). */
static int s_item_input(s_ctx_t *ctx, void *obj)
{
    kvc_backend_t *b = obj;
    int rc = s_check_count(ctx, b->n_inputs, KVC_MAX_INPUTS);
    char item[sizeof b->inputs[0].name + sizeof b->inputs[0].dtype + 1];
    if (rc || (rc = s_take_string(ctx, item, sizeof item)))
        return rc;
    char *colon = strrchr(item, ':');
    if (!colon || colon == item)
        return s_bad_value(ctx, "must be NAME:DTYPE, e.g. input_ids:int64");
    *colon = '\0';
    const char *dtype = colon + 1;
    size_t n = strlen(item);
    if (n >= sizeof b->inputs[0].name ||
        strspn(item, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._/:-") != n)
        return s_bad_value(ctx, "has a name that must match [A-Za-z0-9._/:-]{1,127}");
    if (kvc_dtype_parse(dtype) == KVC_DT_INVALID)
        return s_bad_value(ctx, "has an unknown dtype (float32, float64, float16, int8, int16, "
                                "int32, int64, uint8, uint16, uint32, uint64, bool, string)");
    for (size_t i = 0; i < b->n_inputs; i++)
        if (!strcmp(b->inputs[i].name, item))
            return s_bad_value(ctx, "names an input listed twice");
    kvc_backend_input_t *in = &b->inputs[b->n_inputs++];
    snprintf(in->name, sizeof in->name, "%s", item);
    snprintf(in->dtype, sizeof in->dtype, "%s", dtype);
    return 0;
}

/* proxy.backends[].inputs: a list of "NAME:DTYPE". */
static int s_v_inputs(s_ctx_t *ctx, const s_field_t *f, void *obj)
{
    (void)f;
    kvc_backend_t *b = obj;
    b->n_inputs = 0;
    return s_parse_sequence(ctx, s_item_input, obj);
}

static const s_field_t s_backend_fields[] = {
    {"model", s_v_model, offsetof(kvc_backend_t, model), sizeof(((kvc_backend_t *)0)->model),
     "model", 0, 0},
    {"grpc", s_v_grpc, offsetof(kvc_backend_t, grpc), KVC_ENDPOINT_MAX, "grpc", 0, 0},
    {"api", s_v_api, offsetof(kvc_backend_t, api), sizeof(((kvc_backend_t *)0)->api), NULL, 0, 0},
    {"metrics_url", s_v_url, offsetof(kvc_backend_t, metrics_url), KVC_ENDPOINT_MAX, NULL, 0, 0},
    {"preprocess", s_v_preprocess, offsetof(kvc_backend_t, preprocess),
     sizeof(((kvc_backend_t *)0)->preprocess), NULL, 0, 0},
    {"image_input", s_v_tensor_name, offsetof(kvc_backend_t, image_input),
     sizeof(((kvc_backend_t *)0)->image_input), NULL, 0, 0},
    {"inputs", s_v_inputs, 0, 0, NULL, 0, 0},
};

/* One item of proxy.backends. */
static int s_item_backend(s_ctx_t *ctx, void *obj)
{
    kvc_config_t *cfg = obj;
    yaml_mark_t start = ctx->ev.start_mark;
    int rc = s_check_count(ctx, cfg->n_backends, KVC_MAX_BACKENDS);
    if (rc)
        return rc;
    if (ctx->ev.type != YAML_MAPPING_START_EVENT)
        return s_fail(ctx, ctx->ev.start_mark, NULL, KVC_EINVAL, "expected a mapping, found %s",
                      s_kind(&ctx->ev));
    kvc_backend_t *b = &cfg->backends[cfg->n_backends];
    memset(b, 0, sizeof *b);
    kvc_strlcpy(b->api, "tfserving", sizeof b->api);
    if ((rc = s_parse_mapping(ctx, s_backend_fields,
                              sizeof s_backend_fields / sizeof s_backend_fields[0], b)))
        return rc;
    for (size_t i = 0; i < cfg->n_backends; i++)
        if (!strcmp(cfg->backends[i].model, b->model))
            return s_fail(ctx, start, NULL, KVC_EINVAL, "model %s is listed twice",
                          s_quote(ctx, b->model, strlen(b->model)));
    cfg->n_backends++;
    return 0;
}

/* proxy.backends: replaces any earlier list. */
static int s_v_backends(s_ctx_t *ctx, const s_field_t *f, void *obj)
{
    ((kvc_config_t *)obj)->n_backends = 0;
    return s_parse_sequence(ctx, s_item_backend, obj);
}

/* --- sections ---------------------------------------------------------- */

#define S_CFG(member) offsetof(kvc_config_t, member), sizeof(((kvc_config_t *)0)->member)

static const s_field_t s_peer_fields[] = {
    {"name", s_v_name, S_CFG(name), "name", 0, 0},
    {"site", s_v_name, S_CFG(site), "site", 0, 0},
    {"region", s_v_name, S_CFG(region), NULL, 0, 0},
    {"roles", s_v_roles, 0, 0, NULL, 0, 0},
    {"data_dir", s_v_data_dir, S_CFG(data_dir), NULL, 0, 0},
    {"credential", s_v_credential, S_CFG(credential), NULL, 0, 0},
};

/* Timing ranges; README documents the same numbers. */
static const s_field_t s_timing_fields[] = {
    {"probe_interval_ms", s_v_u32, S_CFG(timing.probe_interval_ms), NULL, 100, 60000},
    {"probe_timeout_ms", s_v_u32, S_CFG(timing.probe_timeout_ms), NULL, 10, 60000},
    {"suspicion_mult", s_v_u32, S_CFG(timing.suspicion_mult), NULL, 1, 100},
    {"indirect_probes", s_v_u32, S_CFG(timing.indirect_probes), NULL, 1, 16},
    {"retransmit_mult", s_v_u32, S_CFG(timing.retransmit_mult), NULL, 1, 100},
    {"pushpull_interval_ms", s_v_u32, S_CFG(timing.pushpull_interval_ms), NULL, 1000, 3600000},
    {"reap_after_s", s_v_u32, S_CFG(timing.reap_after_s), NULL, 1, 604800},
    {"gossip_interval_ms", s_v_u32, S_CFG(timing.gossip_interval_ms), NULL, 10, 60000},
    {"gossip_nodes", s_v_u32, S_CFG(timing.gossip_nodes), NULL, 1, 64},
    {"max_message_bytes", s_v_u32, S_CFG(timing.max_message_bytes), NULL, 1024, 4194304},
};

/* federation.timing: a mapping of overrides. */
static int s_v_timing(s_ctx_t *ctx, const s_field_t *f, void *obj)
{
    return s_parse_mapping(ctx, s_timing_fields, sizeof s_timing_fields / sizeof s_timing_fields[0],
                           obj);
}

static const s_field_t s_federation_fields[] = {
    {"trust", s_v_trust, S_CFG(trust), NULL, 0, 0},
    {"listen", s_v_listen, S_CFG(listen), NULL, S_EP_PORT0, 0},
    {"advertise", s_v_advertise, S_CFG(advertise), NULL, S_EP_NO_WILDCARD | S_EP_PORT0, 0},
    {"seeds", s_v_seeds, 0, 0, NULL, 0, 0},
    {"revoked", s_v_revoked, 0, 0, NULL, 0, 0},
    {"profile", s_v_profile, 0, 0, NULL, 0, 0},
    {"timing", s_v_timing, 0, 0, NULL, 0, 0},
};

static const s_field_t s_control_fields[] = {
    {"endpoint", s_v_control, S_CFG(control_endpoint), NULL, 0, 0},
};

static const s_field_t s_http_fields[] = {
    {"listen", s_v_http_listen, S_CFG(http_listen), NULL, 0, 0},
    {"max_body", s_v_size, S_CFG(http_max_body), NULL, 1024, 1024u * 1024 * 1024},
};

/* proxy.cpu: "none" or a CPU number 0..1023. */
static int s_v_cpu(s_ctx_t *ctx, const s_field_t *f, void *obj)
{
    char tmp[32];
    uint64_t v;
    int rc = s_take_string(ctx, tmp, sizeof tmp);
    if (rc)
        return rc;
    int32_t cpu = -1;
    if (strcmp(tmp, "none") != 0) {
        if (s_parse_u64(tmp, strlen(tmp), &v))
            return s_bad_value(ctx, "is not a CPU number or \"none\"");
        if (v > 1023)
            return s_fail(ctx, ctx->ev.start_mark, NULL, KVC_ERANGE,
                          "%s is out of range (0..1023, or none)", s_quote_value(ctx));
        cpu = (int32_t)v;
    }
    memcpy(s_target(f, obj), &cpu, sizeof cpu);
    return 0;
}

static const s_field_t s_proxy_fields[] = {
    {"backends", s_v_backends, 0, 0, NULL, 0, 0},
    {"timeout_ms", s_v_u32_strict, S_CFG(proxy_timeout_ms), NULL, 10, 600000},
    {"grpc_ca_file", s_v_path, S_CFG(proxy_grpc_ca_file), NULL, 0, 0},
    {"max_message", s_v_size, S_CFG(proxy_max_message), NULL, 1024, 1024u * 1024 * 1024},
    {"image_memory", s_v_size, S_CFG(proxy_image_memory), NULL, 1024u * 1024,
     3u * 1024 * 1024 * 1024},
    {"cpu", s_v_cpu, S_CFG(proxy_cpu), NULL, 0, 0},
};

/* kubernetes.kind: kubeadm or k3s. */
static int s_v_kube_kind(s_ctx_t *ctx, const s_field_t *f, void *obj)
{
    static const char *const names[] = {"kubeadm", "k3s"};
    int i = 0;
    int rc = s_take_choice(ctx, names, 2, "kubeadm, k3s", &i);
    if (!rc)
        kvc_strlcpy(s_target(f, obj), names[i], f->size);
    return rc;
}

/* kubernetes.api_server: host:port, as the joining node reaches it. */
static int s_v_api_server(s_ctx_t *ctx, const s_field_t *f, void *obj)
{
    char *dst = s_target(f, obj);
    int rc = s_take_string(ctx, dst, f->size);
    if (rc || !dst[0])
        return rc;
    int wildcard = 0;
    const char *why = s_check_hostport(dst, 0, &wildcard, NULL, 0);
    if (!why && wildcard)
        why = "is a wildcard address; give the address nodes reach";
    return why ? s_bad_value(ctx, why) : 0;
}

/* kubernetes.groups: comma-separated group names, no spaces. */
static int s_v_groups(s_ctx_t *ctx, const s_field_t *f, void *obj)
{
    char *dst = s_target(f, obj);
    int rc = s_take_string(ctx, dst, f->size);
    if (rc)
        return rc;
    for (const char *p = dst; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || strchr(":-.,", *p)))
            return s_bad_value(ctx, "must be group names [a-z0-9:.-] separated by commas");
    return 0;
}

static const s_field_t s_kube_fields[] = {
    {"kubeconfig", s_v_path, S_CFG(kube_kubeconfig), NULL, 0, 0},
    {"kind", s_v_kube_kind, S_CFG(kube_kind), NULL, 0, 0},
    {"api_server", s_v_api_server, S_CFG(kube_api_server), NULL, 0, 0},
    {"groups", s_v_groups, S_CFG(kube_groups), NULL, 0, 0},
    {"token_ttl_s", s_v_u32_strict, S_CFG(kube_token_ttl_s), NULL, 10, 59},
    {"join_window_s", s_v_u32_strict, S_CFG(join_window_s), NULL, 5, 3600},
    {"progress_timeout_s", s_v_u32_strict, S_CFG(join_progress_timeout_s), NULL, 5, 300},
};

/* registry.grpc: host:port with {model} where the model's name goes. */
static int s_v_registry_grpc(s_ctx_t *ctx, const s_field_t *f, void *obj)
{
    char *dst = s_target(f, obj);
    int rc = s_take_string(ctx, dst, f->size);
    if (rc)
        return rc;
    for (const char *p = dst; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == '/' || *p == '"' || *p == '\\')
            return s_bad_value(ctx, "must be HOST:PORT, {model} for the model's name");
    return strchr(dst, ':') ? 0 : s_bad_value(ctx, "must be HOST:PORT");
}

/* registry.*_image: a container image reference. */
static int s_v_image(s_ctx_t *ctx, const s_field_t *f, void *obj)
{
    char *dst = s_target(f, obj);
    int rc = s_take_string(ctx, dst, f->size);
    if (rc)
        return rc;
    for (const char *p = dst; *p; p++)
        if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f || *p == '"' || *p == '\\')
            return s_bad_value(ctx, "must be a container image reference");
    return 0;
}

static const s_field_t s_registry_fields[] = {
    {"store_max_bytes", s_v_size, S_CFG(store_max_bytes), NULL, 1024u * 1024, 4095u * 1024 * 1024},
    {"namespace", s_v_name, S_CFG(registry_namespace), NULL, 0, 0},
    {"grpc", s_v_registry_grpc, S_CFG(registry_grpc), NULL, 0, 0},
    {"reconcile_interval_s", s_v_u32_strict, S_CFG(registry_reconcile_s), NULL, 1, 3600},
    {"tfserving_image", s_v_image, S_CFG(registry_tfserving_image), NULL, 0, 0},
    {"kserve_image", s_v_image, S_CFG(registry_kserve_image), NULL, 0, 0},
};

/* routing.enabled: true or false. */
static int s_v_bool(s_ctx_t *ctx, const s_field_t *f, void *obj)
{
    static const char *const names[] = {"false", "true"};
    int i = 0;
    int rc = s_take_choice(ctx, names, 2, "true, false", &i);
    if (!rc)
        *(int *)s_target(f, obj) = i;
    return rc;
}

/* routing.accelerator: the router's kinds, stored as a kvc_accel_t (the
 * names are in its order). */
static int s_v_accel(s_ctx_t *ctx, const s_field_t *f, void *obj)
{
    static const char *const names[] = {"none", "nvidia", "amd", "tpu", "npu"};
    _Static_assert(KVC_ACCEL_NPU == 4 && KVC_ACCEL_NVIDIA == 1, "names follow kvc_accel_t");
    int i = 0;
    int rc = s_take_choice(ctx, names, 5, "none, nvidia, amd, tpu, npu", &i);
    if (!rc)
        *(uint32_t *)s_target(f, obj) = (uint32_t)i;
    return rc;
}

/* routing.arch: "" or a name as uname -m gives it (x86_64, arm64, armhf). */
static int s_v_arch(s_ctx_t *ctx, const s_field_t *f, void *obj)
{
    char *dst = s_target(f, obj);
    int rc = s_take_string(ctx, dst, f->size);
    if (rc || !dst[0])
        return rc;
    for (const char *p = dst; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '-' ||
              *p == '.'))
            return s_bad_value(ctx, "must be [a-z0-9._-]{1,63}, e.g. x86_64 or arm64");
    return 0;
}

/* routing.forward_listen / forward_advertise: "" (derived) or tcp://HOST:PORT. */
static int s_v_opt_endpoint(s_ctx_t *ctx, const s_field_t *f, void *obj)
{
    char *dst = s_target(f, obj);
    int rc = s_take_string(ctx, dst, f->size);
    if (rc || dst[0] == '\0')
        return rc;
    return s_v_endpoint(ctx, f, obj);
}

static const s_field_t s_routing_fields[] = {
    {"enabled", s_v_bool, S_CFG(routing_enabled), NULL, 0, 0},
    {"forward_listen", s_v_opt_endpoint, S_CFG(routing_forward_listen), NULL, S_EP_PORT0, 0},
    {"forward_advertise", s_v_opt_endpoint, S_CFG(routing_forward_advertise), NULL,
     S_EP_NO_WILDCARD, 0},
    {"capacity", s_v_u32_strict, S_CFG(routing_capacity), NULL, 0, 1000000},
    {"hedge_ms", s_v_u32_strict, S_CFG(routing_hedge_ms), NULL, 0, 600000},
    {"arch", s_v_arch, S_CFG(routing_arch), NULL, 0, 0},
    {"accelerator", s_v_accel, S_CFG(routing_accel), NULL, 0, 0},
    {"accelerator_count", s_v_u32_strict, S_CFG(routing_accelerator_count), NULL, 0, 1024},
};

/* routing: */
static int s_v_routing(s_ctx_t *ctx, const s_field_t *f, void *obj)
{
    (void)f;
    return s_parse_mapping(ctx, s_routing_fields, sizeof s_routing_fields / sizeof s_routing_fields[0], obj);
}

/* jobs.connection: ssh or local. */
static int s_v_connection(s_ctx_t *ctx, const s_field_t *f, void *obj)
{
    char *dst = s_target(f, obj);
    int rc = s_take_string(ctx, dst, f->size);
    if (rc)
        return rc;
    return strcmp(dst, "ssh") == 0 || strcmp(dst, "local") == 0
               ? 0
               : s_bad_value(ctx, "must be ssh or local");
}

/* jobs.ansible_playbook: a program name (found in PATH) or an absolute path. */
static int s_v_program(s_ctx_t *ctx, const s_field_t *f, void *obj)
{
    char *dst = s_target(f, obj);
    int rc = s_take_string(ctx, dst, f->size);
    if (rc)
        return rc;
    if (!dst[0])
        return s_bad_value(ctx, "must name a program");
    for (const char *p = dst; *p; p++)
        if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f)
            return s_bad_value(ctx, "must be a program name or path without spaces");
    return 0;
}

static const s_field_t s_jobs_fields[] = {
    {"playbooks", s_v_path, S_CFG(jobs_playbooks), NULL, 0, 0},
    {"ansible_playbook", s_v_program, S_CFG(jobs_ansible_playbook), NULL, 0, 0},
    {"connection", s_v_connection, S_CFG(jobs_connection), NULL, 0, 0},
    {"ssh_user", s_v_name, S_CFG(jobs_ssh_user), NULL, 0, 0},
    {"timeout_s", s_v_u32_strict, S_CFG(jobs_timeout_s), NULL, 10, 86400},
};

static const s_field_t s_log_fields[] = {
    {"level", s_v_log_level, 0, 0, NULL, 0, 0},
};

#define S_N(a) (sizeof(a) / sizeof((a)[0]))

/* peer: */
static int s_v_peer(s_ctx_t *ctx, const s_field_t *f, void *obj)
{
    return s_parse_mapping(ctx, s_peer_fields, S_N(s_peer_fields), obj);
}

/* federation: also remembered for the advertise check. */
static int s_v_federation(s_ctx_t *ctx, const s_field_t *f, void *obj)
{
    ctx->have_fed = 1;
    ctx->fed_mark = ctx->ev.start_mark;
    return s_parse_mapping(ctx, s_federation_fields, S_N(s_federation_fields), obj);
}

/* control: */
static int s_v_control_section(s_ctx_t *ctx, const s_field_t *f, void *obj)
{
    return s_parse_mapping(ctx, s_control_fields, S_N(s_control_fields), obj);
}

/* http: */
static int s_v_http(s_ctx_t *ctx, const s_field_t *f, void *obj)
{
    return s_parse_mapping(ctx, s_http_fields, S_N(s_http_fields), obj);
}

/* proxy: */
static int s_v_proxy(s_ctx_t *ctx, const s_field_t *f, void *obj)
{
    return s_parse_mapping(ctx, s_proxy_fields, S_N(s_proxy_fields), obj);
}

/* kubernetes: */
static int s_v_kube(s_ctx_t *ctx, const s_field_t *f, void *obj)
{
    return s_parse_mapping(ctx, s_kube_fields, S_N(s_kube_fields), obj);
}

/* registry: */
static int s_v_registry(s_ctx_t *ctx, const s_field_t *f, void *obj)
{
    return s_parse_mapping(ctx, s_registry_fields, S_N(s_registry_fields), obj);
}

/* jobs: */
static int s_v_jobs(s_ctx_t *ctx, const s_field_t *f, void *obj)
{
    return s_parse_mapping(ctx, s_jobs_fields, S_N(s_jobs_fields), obj);
}

/* log: */
static int s_v_log(s_ctx_t *ctx, const s_field_t *f, void *obj)
{
    return s_parse_mapping(ctx, s_log_fields, S_N(s_log_fields), obj);
}

static const s_field_t s_root_fields[] = {
    {"peer", s_v_peer, 0, 0, "peer.name", 0, 0},
    {"federation", s_v_federation, 0, 0, NULL, 0, 0},
    {"control", s_v_control_section, 0, 0, NULL, 0, 0},
    {"http", s_v_http, 0, 0, NULL, 0, 0},
    {"proxy", s_v_proxy, 0, 0, NULL, 0, 0},
    {"kubernetes", s_v_kube, 0, 0, NULL, 0, 0},
    {"registry", s_v_registry, 0, 0, NULL, 0, 0},
    {"jobs", s_v_jobs, 0, 0, NULL, 0, 0},
    {"routing", s_v_routing, 0, 0, NULL, 0, 0},
    {"log", s_v_log, 0, 0, NULL, 0, 0},
};

/* --- whole document ---------------------------------------------------- */

/* Writes DIR/FILE into dst; KVC_ERANGE if it does not fit. */
static int s_join(char *dst, size_t size, const char *dir, const char *file)
{
    size_t dl = strlen(dir), fl = strlen(file), sep = strcmp(dir, "/") != 0;
    if (dl + sep + fl >= size)
        return KVC_ERANGE;
    memcpy(dst, dir, dl);
    if (sep)
        dst[dl] = '/';
    memcpy(dst + dl + sep, file, fl + 1);
    return KVC_OK;
}

/* 1 if endpoint is tcp:// on 0.0.0.0, * or [::]. */
static int s_is_wildcard(const char *endpoint)
{
    int wildcard = 0;
    if (!strncmp(endpoint, "tcp://", 6))
        s_check_hostport(endpoint + 6, S_EP_PORT0, &wildcard, NULL, 0);
    return wildcard;
}

/* Checks that need the whole document: advertise, derived paths. */
static int s_check_document(s_ctx_t *ctx)
{
    kvc_config_t *cfg = ctx->cfg;
    if (cfg->advertise[0] == '\0' && s_is_wildcard(cfg->listen)) {
        yaml_mark_t at = ctx->have_listen ? ctx->listen_mark
                         : ctx->have_fed  ? ctx->fed_mark
                                          : ctx->root_mark;
        return s_fail(ctx, at, "federation.advertise", KVC_EINVAL,
                      "required when federation.listen is a wildcard address");
    }
    if (!ctx->have_data_dir)
        return 0;
    char tmp[KVC_PATH_MAX];
    if (!ctx->have_credential &&
        s_join(cfg->credential, sizeof cfg->credential, cfg->data_dir, "identity"))
        return s_fail(ctx, ctx->data_dir_mark, "peer.data_dir", KVC_ERANGE,
                      "too long to derive peer.credential (DATA_DIR/identity)");
    if (!ctx->have_trust && s_join(cfg->trust, sizeof cfg->trust, cfg->data_dir, "federation.pub"))
        return s_fail(ctx, ctx->data_dir_mark, "peer.data_dir", KVC_ERANGE,
                      "too long to derive federation.trust (DATA_DIR/federation.pub)");
    if (cfg->control_endpoint[0] == '\0' &&
        (s_join(tmp, sizeof tmp, cfg->data_dir, "control.sock") || strlen(tmp) > S_IPC_PATH_MAX))
        return s_fail(ctx, ctx->data_dir_mark, "peer.data_dir", KVC_ERANGE,
                      "too long for the default control endpoint ipc://DATA_DIR/control.sock "
                      "(at most %d bytes; set control.endpoint)",
                      S_IPC_PATH_MAX - (int)strlen("/control.sock"));
    return 0;
}

/* Reads the stream: at most one document whose root is a mapping. */
static int s_parse_stream(s_ctx_t *ctx)
{
    int rc;
    yaml_mark_t first = {0, 0, 0};
    if ((rc = s_next(ctx)) || (rc = s_next(ctx)))
        return rc;
    if (ctx->ev.type == YAML_STREAM_END_EVENT)
        return s_fail(ctx, first, "peer.name", KVC_EINVAL, "is required");
    if ((rc = s_next(ctx)))
        return rc;
    ctx->root_mark = ctx->ev.start_mark;
    if (ctx->ev.type != YAML_MAPPING_START_EVENT && !s_is_null(&ctx->ev))
        return s_fail(ctx, ctx->ev.start_mark, NULL, KVC_EINVAL, "expected a mapping, found %s",
                      s_kind(&ctx->ev));
    if ((rc = s_parse_mapping(ctx, s_root_fields, S_N(s_root_fields), ctx->cfg)))
        return rc;
    if ((rc = s_next(ctx)) || (rc = s_next(ctx))) /* document end, then stream end */
        return rc;
    if (ctx->ev.type == YAML_DOCUMENT_START_EVENT)
        return s_fail(ctx, ctx->ev.start_mark, NULL, KVC_EINVAL,
                      "multiple documents are not supported");
    return s_check_document(ctx);
}

/* --- public API -------------------------------------------------------- */

/* Fills cfg with every documented default. */
void kvc_config_defaults(kvc_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    kvc_strlcpy(cfg->region, "default", sizeof cfg->region);
    kvc_strlcpy(cfg->roles[0], "gateway", sizeof cfg->roles[0]); /* KVC_DEFAULT_ROLES */
    kvc_strlcpy(cfg->roles[1], "voter", sizeof cfg->roles[1]);
    cfg->n_roles = 2;
    kvc_strlcpy(cfg->data_dir, "/var/lib/kvc", sizeof cfg->data_dir);
    kvc_strlcpy(cfg->credential, "/var/lib/kvc/identity", sizeof cfg->credential);
    kvc_strlcpy(cfg->trust, "/var/lib/kvc/federation.pub", sizeof cfg->trust);
    kvc_strlcpy(cfg->listen, "tcp://0.0.0.0:7946", sizeof cfg->listen);
    cfg->profile = KVC_PROFILE_LAN;
    kvc_strlcpy(cfg->http_listen, "127.0.0.1:8500", sizeof cfg->http_listen);
    cfg->http_max_body = KVC_CONFIG_DEFAULT_MAX_BODY;
    cfg->proxy_timeout_ms = 30000;
    kvc_strlcpy(cfg->kube_kind, "kubeadm", sizeof cfg->kube_kind);
    cfg->kube_token_ttl_s = 50;
    cfg->join_window_s = 120;
    cfg->join_progress_timeout_s = 45; /* a --print join has about the token's life */
    cfg->proxy_max_message = KVC_CONFIG_DEFAULT_MAX_MESSAGE;
    cfg->proxy_image_memory = KVC_CONFIG_DEFAULT_IMAGE_MEMORY;
    cfg->proxy_cpu = -1;
    cfg->store_max_bytes = (uint64_t)256 << 20;
    kvc_strlcpy(cfg->registry_namespace, "kvc-models", sizeof cfg->registry_namespace);
    kvc_strlcpy(cfg->registry_grpc, "kvc-{model}.kvc-models.svc:8500", sizeof cfg->registry_grpc);
    cfg->registry_reconcile_s = 30;
    kvc_strlcpy(cfg->jobs_playbooks, "/usr/share/kvc/ansible", sizeof cfg->jobs_playbooks);
    kvc_strlcpy(cfg->jobs_ansible_playbook, "ansible-playbook", sizeof cfg->jobs_ansible_playbook);
    kvc_strlcpy(cfg->jobs_connection, "ssh", sizeof cfg->jobs_connection);
    kvc_strlcpy(cfg->jobs_ssh_user, "root", sizeof cfg->jobs_ssh_user);
    cfg->jobs_timeout_s = 3600;
    cfg->routing_enabled = 1;
    cfg->log_level = KVC_LOG_INFO;
}

/* Parses text on top of cfg; see config.h. */
int kvc_config_parse(kvc_config_t *cfg, const char *name, const char *text, size_t len,
                     kvc_err_t *err)
{
    char safe_name[160];
    if (!name)
        name = "(config)";
    s_escape(safe_name, sizeof safe_name, name, strlen(name), 120, 0);
    if (!cfg || (!text && len))
        return kvc_err_set(err, KVC_EINVAL, "%s: invalid arguments", safe_name);
    if (len > KVC_CONFIG_MAX_BYTES)
        return kvc_err_set(err, KVC_ERANGE, "%s:1:1: (document): larger than 1 MiB (%d bytes)",
                           safe_name, KVC_CONFIG_MAX_BYTES);
    s_ctx_t *ctx = kvc_calloc(1, sizeof *ctx);
    if (!ctx)
        return kvc_err_set(err, KVC_ENOMEM, "%s: out of memory", safe_name);
    memcpy(ctx->name, safe_name, sizeof ctx->name);
    ctx->cfg = cfg;
    ctx->err = err;
    ctx->text = text ? text : "";
    ctx->len = len;
    int rc;
    if (!yaml_parser_initialize(&ctx->parser)) {
        rc = kvc_err_set(err, KVC_ENOMEM, "%s: out of memory", safe_name);
    } else {
        yaml_parser_set_input_string(&ctx->parser, (const unsigned char *)ctx->text, len);
        rc = s_parse_stream(ctx);
        if (ctx->have_ev)
            yaml_event_delete(&ctx->ev);
        yaml_parser_delete(&ctx->parser);
    }
    kvc_free(ctx);
    if (rc == 0 && err) {
        err->code = 0;
        err->msg[0] = '\0';
    }
    return rc;
}

/* Reads at most KVC_CONFIG_MAX_BYTES of path and parses them. */
int kvc_config_load(kvc_config_t *cfg, const char *path, kvc_err_t *err)
{
    char safe[160];
    if (!cfg || !path)
        return kvc_err_set(err, KVC_EINVAL, "(config): invalid arguments");
    s_escape(safe, sizeof safe, path, strlen(path), 120, 0);
    kvc_config_defaults(cfg);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return kvc_err_set(err, KVC_EIO, "%s: cannot read: %s", safe, strerror(errno));
    kvc_buf_t buf;
    kvc_buf_init(&buf, KVC_CONFIG_MAX_BYTES);
    char chunk[16384];
    int rc = 0;
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = kvc_err_set(err, KVC_EIO, "%s: cannot read: %s", safe, strerror(errno));
            break;
        }
        if (n == 0)
            break;
        rc = kvc_buf_append(&buf, chunk, (size_t)n);
        if (rc == KVC_ERANGE) {
            rc = kvc_err_set(err, KVC_ERANGE, "%s:1:1: (document): larger than 1 MiB (%d bytes)",
                             safe, KVC_CONFIG_MAX_BYTES);
            break;
        }
        if (rc) {
            rc = kvc_err_set(err, rc, "%s: out of memory", safe);
            break;
        }
    }
    close(fd);
    if (!rc)
        rc = kvc_config_parse(cfg, path, buf.data, buf.len, err);
    kvc_buf_free(&buf);
    return rc;
}

/* Derives advertise from listen and the control endpoint from data_dir. */
void kvc_config_finish(kvc_config_t *cfg)
{
    char tmp[KVC_PATH_MAX];
    if (cfg->advertise[0] == '\0' && !s_is_wildcard(cfg->listen))
        kvc_strlcpy(cfg->advertise, cfg->listen, sizeof cfg->advertise);
    if (cfg->credential[0] == '\0')
        s_join(cfg->credential, sizeof cfg->credential, cfg->data_dir, "identity");
    if (cfg->trust[0] == '\0')
        s_join(cfg->trust, sizeof cfg->trust, cfg->data_dir, "federation.pub");
    if (cfg->control_endpoint[0] == '\0' &&
        !s_join(tmp, sizeof tmp, cfg->data_dir, "control.sock") && strlen(tmp) <= S_IPC_PATH_MAX)
        snprintf(cfg->control_endpoint, sizeof cfg->control_endpoint, "ipc://%s", tmp);
}

/* Writes "site/name" into buf. */
const char *kvc_config_member_id(const kvc_config_t *cfg, char *buf, size_t size)
{
    if (!buf || size == 0)
        return "";
    snprintf(buf, size, "%s/%s", cfg->site, cfg->name);
    return buf;
}

/* 1 if s is [a-z0-9-]{1,63} without a leading or trailing '-'. */
int kvc_config_valid_name(const char *s)
{
    if (!s)
        return 0;
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (n >= KVC_NAME_MAX - 1 ||
            !((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return 0;
    }
    return n > 0 && s[0] != '-' && s[n - 1] != '-';
}

/* Parses exactly 64 hex characters into key; KVC_EINVAL otherwise. */
int kvc_config_parse_key(const char *hex, uint8_t key[32])
{
    uint8_t out[32];
    if (!hex)
        return KVC_EINVAL;
    for (size_t i = 0; i < 32; i++) {
        int hi = kvc_hex_digit(hex[2 * i]);
        int lo = hi < 0 ? -1 : kvc_hex_digit(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return KVC_EINVAL;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    if (hex[64] != '\0')
        return KVC_EINVAL;
    memcpy(key, out, 32);
    return KVC_OK;
}
