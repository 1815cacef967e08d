/*
 * promtext.c - the Prometheus text format parser (see promtext.h).
 *
 * Each line is checked against its length limit before it is read, decoded
 * into one scratch buffer sized at the start (unescaping only shrinks), and
 * handed to the callback. The input is hostile: every read is bounded by the
 * line's end, and nothing is trusted to be NUL-terminated. It must never do
 * I/O, keep state between calls or accept a line it cannot fully account for.
 */
#include "promtext.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The state of one parse. */
typedef struct {
    kvc_promtext_limits_t lim;
    char *scratch; /* decoded names and values of the current line */
    size_t scratch_cap;
    size_t used;
    const char **names;
    const char **values;
    size_t n_samples;
    size_t line;
    kvc_err_t *err;
} s_parser_t;

/* 1 for the blanks that separate tokens. */
static int s_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* Skips blanks from p to at most e. */
static const char *s_skip(const char *p, const char *e)
{
    while (p < e && s_blank(*p))
        p++;
    return p;
}

/* 1 if c may start (first = 1) or continue a metric name. */
static int s_name_char(char c, int first, int colon)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':'))
        return 1;
    return !first && c >= '0' && c <= '9';
}

/* Length of the valid UTF-8 sequence at p (avail bytes), 0 if invalid. */
static size_t s_utf8_len(const unsigned char *p, size_t avail)
{
    unsigned char c = p[0];
    if (c < 0x80)
        return 1;
    size_t n;
    uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (avail < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

/* Copies a name (metric: colon = 1, label: 0) from *pp into scratch;
 * returns it, or NULL if there is none. */
static const char *s_name(s_parser_t *ps, const char **pp, const char *e, int colon)
{
    const char *p = *pp, *start = p;
    if (p >= e || !s_name_char(*p, 1, colon))
        return NULL;
    while (p < e && s_name_char(*p, 0, colon))
        p++;
    size_t n = (size_t)(p - start);
    char *out = ps->scratch + ps->used;
    memcpy(out, start, n);
    out[n] = '\0';
    ps->used += n + 1;
    *pp = p;
    return out;
}

/* Decodes a quoted label value at *pp ('"' already consumed) into scratch.
 * Returns it, or NULL with err set. */
static const char *s_label_value(s_parser_t *ps, const char **pp, const char *e)
{
    const char *p = *pp;
    char *out = ps->scratch + ps->used, *o = out;
    for (;;) {
        if (p >= e) {
            kvc_err_set(ps->err, KVC_EPARSE, "line %zu: label value without a closing quote",
                        ps->line);
            return NULL;
        }
        char c = *p;
        if (c == '"') {
            p++;
            break;
        }
        if (c == '\\') {
            if (p + 1 >= e) {
                kvc_err_set(ps->err, KVC_EPARSE, "line %zu: label value ends in a backslash",
                            ps->line);
                return NULL;
            }
            char x = p[1];
            if (x == '\\' || x == '"')
                *o++ = x;
            else if (x == 'n')
                *o++ = '\n';
            else {
                kvc_err_set(ps->err, KVC_EPARSE, "line %zu: invalid escape \\%c in a label value",
                            ps->line, x >= 0x20 && x < 0x7f ? x : '?');
                return NULL;
            }
            p += 2;
            continue;
        }
        size_t n = s_utf8_len((const unsigned char *)p, (size_t)(e - p));
        if (n == 0) {
            kvc_err_set(ps->err, KVC_EPARSE, "line %zu: label value is not valid UTF-8", ps->line);
            return NULL;
        }
        memcpy(o, p, n);
        o += n;
        p += n;
    }
    *o = '\0';
    ps->used += (size_t)(o - out) + 1;
    *pp = p;
    return out;
}

/* Parses `{l="v",...}` at *pp ('{' already consumed) into ps->names/values. */
static int s_labels(s_parser_t *ps, const char **pp, const char *e, size_t *n_out)
{
    const char *p = *pp;
    size_t n = 0;
    for (;;) {
        p = s_skip(p, e);
        if (p < e && *p == '}') {
            p++;
            break;
        }
        const char *name = s_name(ps, &p, e, 0);
        if (!name)
            return kvc_err_set(ps->err, KVC_EPARSE, "line %zu: expected a label name or '}'",
                               ps->line);
        for (size_t i = 0; i < n; i++)
            if (strcmp(ps->names[i], name) == 0)
                return kvc_err_set(ps->err, KVC_EPARSE, "line %zu: label %s given twice", ps->line,
                                   name);
        if (n >= ps->lim.max_labels)
            return kvc_err_set(ps->err, KVC_ERANGE, "line %zu: more than %zu labels", ps->line,
                               ps->lim.max_labels);
        p = s_skip(p, e);
        if (p >= e || *p != '=')
            return kvc_err_set(ps->err, KVC_EPARSE, "line %zu: expected '=' after label %s",
                               ps->line, name);
        p = s_skip(p + 1, e);
        if (p >= e || *p != '"')
            return kvc_err_set(ps->err, KVC_EPARSE, "line %zu: expected '\"' to open label %s",
                               ps->line, name);
        p++;
        const char *value = s_label_value(ps, &p, e);
        if (!value)
            return ps->err ? ps->err->code : KVC_EPARSE;
        ps->names[n] = name;
        ps->values[n] = value;
        n++;
        p = s_skip(p, e);
        if (p < e && *p == ',') {
            p++;
            continue;
        }
        if (p < e && *p == '}') {
            p++;
            break;
        }
        return kvc_err_set(ps->err, KVC_EPARSE, "line %zu: expected ',' or '}' after label %s",
                           ps->line, name);
    }
    *pp = p;
    *n_out = n;
    return KVC_OK;
}

/* Reads the token at *pp (up to a blank or e) into tok (tok_size bytes). */
static int s_token(const char **pp, const char *e, char *tok, size_t tok_size)
{
    const char *p = *pp, *start = p;
    while (p < e && !s_blank(*p))
        p++;
    size_t n = (size_t)(p - start);
    if (n == 0 || n >= tok_size)
        return KVC_EPARSE;
    memcpy(tok, start, n);
    tok[n] = '\0';
    *pp = p;
    return KVC_OK;
}

/* Parses a sample value as Prometheus (Go's ParseFloat) does. */
static int s_value(const char *tok, double *out)
{
    /* strtod also takes leading blanks, which cannot occur in a token */
    if (tok[0] == '\0')
        return KVC_EPARSE;
    errno = 0;
    char *end = NULL;
    double v = strtod(tok, &end);
    if (end == tok || *end != '\0')
        return KVC_EPARSE;
    /* Overflow gives ±HUGE_VAL = ±Inf, as ParseFloat's result; underflow 0. */
    *out = v;
    return KVC_OK;
}

/* Parses a `# HELP`/`# TYPE` line, or ignores another comment. */
static int s_comment(s_parser_t *ps, const char *p, const char *e)
{
    p = s_skip(p + 1, e);
    const char *w = p;
    while (p < e && !s_blank(*p))
        p++;
    size_t wn = (size_t)(p - w);
    int help = wn == 4 && memcmp(w, "HELP", 4) == 0;
    int type = wn == 4 && memcmp(w, "TYPE", 4) == 0;
    if (!help && !type)
        return KVC_OK; /* a plain comment */
    p = s_skip(p, e);
    ps->used = 0;
    const char *name = s_name(ps, &p, e, 1);
    if (!name || (p < e && !s_blank(*p)))
        return kvc_err_set(ps->err, KVC_EPARSE, "line %zu: # %s needs a valid metric name",
                           ps->line, help ? "HELP" : "TYPE");
    if (help)
        return KVC_OK; /* the docstring may be anything, even empty */
    p = s_skip(p, e);
    const char *t = p;
    while (p < e && !s_blank(*p))
        p++;
    size_t tn = (size_t)(p - t);
    if (s_skip(p, e) != e)
        return kvc_err_set(ps->err, KVC_EPARSE, "line %zu: text after the type of %s", ps->line,
                           name);
    static const char *types[] = {"counter", "gauge", "histogram", "summary", "untyped"};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (tn == strlen(types[i]) && memcmp(t, types[i], tn) == 0)
            return KVC_OK;
    return kvc_err_set(ps->err, KVC_EPARSE, "line %zu: unknown type for %s", ps->line, name);
}

/* Parses one sample line and calls fn. */
static int s_sample(s_parser_t *ps, const char *p, const char *e, kvc_promtext_fn fn, void *arg)
{
    ps->used = 0;
    const char *name = s_name(ps, &p, e, 1);
    if (!name)
        return kvc_err_set(ps->err, KVC_EPARSE, "line %zu: expected a metric name", ps->line);
    size_t n_labels = 0;
    p = s_skip(p, e);
    if (p < e && *p == '{') {
        p++;
        int rc = s_labels(ps, &p, e, &n_labels);
        if (rc)
            return rc;
        p = s_skip(p, e);
    }
    char tok[64];
    double value;
    if (s_token(&p, e, tok, sizeof tok) != 0 || s_value(tok, &value) != 0)
        return kvc_err_set(ps->err, KVC_EPARSE, "line %zu: %s: expected a float value", ps->line,
                           name);
    kvc_promtext_sample_t s = {.name = name,
                               .label_names = ps->names,
                               .label_values = ps->values,
                               .n_labels = n_labels,
                               .value = value,
                               .line = ps->line};
    p = s_skip(p, e);
    if (p < e) {
        if (s_token(&p, e, tok, sizeof tok) != 0 ||
            kvc_parse_i64(tok, INT64_MIN, INT64_MAX, &s.timestamp_ms) != 0)
            return kvc_err_set(ps->err, KVC_EPARSE, "line %zu: %s: expected an integer timestamp",
                               ps->line, name);
        s.has_timestamp = 1;
        if (s_skip(p, e) != e)
            return kvc_err_set(ps->err, KVC_EPARSE, "line %zu: %s: text after the timestamp",
                               ps->line, name);
    }
    if (ps->n_samples >= ps->lim.max_samples)
        return kvc_err_set(ps->err, KVC_ERANGE, "line %zu: more than %zu samples", ps->line,
                           ps->lim.max_samples);
    ps->n_samples++;
    return fn(arg, &s);
}

int kvc_promtext_parse(const char *text, size_t len, const kvc_promtext_limits_t *limits,
                       kvc_promtext_fn fn, void *arg, kvc_err_t *err)
{
    if ((!text && len) || !fn)
        return kvc_err_set(err, KVC_EINVAL, "no text or no callback");
    s_parser_t ps = {.err = err};
    if (limits)
        ps.lim = *limits;
    if (!ps.lim.max_line)
        ps.lim.max_line = KVC_PROMTEXT_LINE_MAX;
    if (!ps.lim.max_samples)
        ps.lim.max_samples = KVC_PROMTEXT_SAMPLES_MAX;
    if (!ps.lim.max_labels)
        ps.lim.max_labels = KVC_PROMTEXT_LABELS_MAX;
    if (ps.lim.max_labels > 4096 || ps.lim.max_line > ((size_t)1 << 30))
        return kvc_err_set(err, KVC_EINVAL, "limits too large");
    /* Each token's decoded form is at most its source length plus a NUL. */
    ps.scratch_cap = ps.lim.max_line + 2 * ps.lim.max_labels + 4;
    ps.scratch = kvc_malloc(ps.scratch_cap);
    ps.names = kvc_calloc(ps.lim.max_labels, sizeof *ps.names);
    ps.values = kvc_calloc(ps.lim.max_labels, sizeof *ps.values);
    int rc = KVC_OK;
    if (!ps.scratch || !ps.names || !ps.values) {
        rc = kvc_err_set(err, KVC_ENOMEM, "out of memory");
        goto done;
    }
    const char *p = text, *end = text ? text + len : NULL;
    while (p < end) {
        ps.line++;
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *e = nl ? nl : end;
        if ((size_t)(e - p) > ps.lim.max_line) {
            rc = kvc_err_set(err, KVC_ERANGE, "line %zu: longer than %zu bytes", ps.line,
                             ps.lim.max_line);
            goto done;
        }
        if (memchr(p, '\0', (size_t)(e - p))) {
            rc = kvc_err_set(err, KVC_EPARSE, "line %zu: contains a NUL byte", ps.line);
            goto done;
        }
        if (e > p && e[-1] == '\r')
            e--;
        const char *q = s_skip(p, e);
        if (q == e)
            rc = KVC_OK;
        else if (*q == '#')
            rc = s_comment(&ps, q, e);
        else
            rc = s_sample(&ps, q, e, fn, arg);
        if (rc)
            goto done;
        p = nl ? nl + 1 : end;
    }
done:
    kvc_free(ps.scratch);
    kvc_free(ps.names);
    kvc_free(ps.values);
    return rc;
}

const char *kvc_promtext_label(const kvc_promtext_sample_t *s, const char *name)
{
    for (size_t i = 0; i < s->n_labels; i++)
        if (strcmp(s->label_names[i], name) == 0)
            return s->label_values[i];
    return NULL;
}
