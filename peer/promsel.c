/*
 * promsel.c - parses Prometheus series selectors (match[] of /federate) and
 * matches series against them, with Prometheus' grammar, escapes, anchoring
 * and error texts (checked against promtool 2.42). See promsel.h for the
 * regex dialect we do not support.
 *
 * Selector text comes straight from HTTP query strings: it is bounded in
 * length and matcher count, every read is checked against the end, and
 * regexes that could make POSIX matching blow up are refused. This module
 * must never do I/O, read clocks, or trust the text.
 */
#include "promsel.h"

#include <regex.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    char *label;
    kvc_promsel_op_t op;
    char *value; /* unescaped, NUL-terminated (may hold inner NULs) */
    size_t value_len;
    int has_re;
    regex_t re;
} s_matcher_t;

struct kvc_promsel {
    size_t n;
    s_matcher_t m[KVC_PROMSEL_MAX_MATCHERS + 1]; /* +1: the name outside braces */
};

struct kvc_promsel_set {
    size_t n;
    kvc_promsel_t *sel[KVC_PROMSEL_MAX_SELECTORS];
};

/* The parser's cursor. */
typedef struct {
    const char *s;
    size_t len;
    size_t pos;
    kvc_err_t *err;
    int named; /* a name was given outside the braces (it takes a slot) */
} s_parser_t;

/* Sets err to "L:C: parse error: msg" for byte offset at; returns KVC_EPARSE. */
static int s_fail(s_parser_t *p, size_t at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int s_fail(s_parser_t *p, size_t at, const char *fmt, ...)
{
    if (!p->err)
        return KVC_EPARSE;
    size_t line = 1, col = 1;
    for (size_t i = 0; i < at && i < p->len; i++) {
        if (p->s[i] == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    char msg[KVC_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return kvc_err_set(p->err, KVC_EPARSE, "%zu:%zu: parse error: %s", line, col, msg);
}

/* Character classes of the PromQL lexer. */
static int s_is_alpha(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int s_is_digit(int c)
{
    return c >= '0' && c <= '9';
}

static int s_is_space(int c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Skips whitespace (and # comments, as PromQL does). */
static void s_skip_ws(s_parser_t *p)
{
    while (p->pos < p->len) {
        char c = p->s[p->pos];
        if (s_is_space(c)) {
            p->pos++;
        } else if (c == '#') {
            while (p->pos < p->len && p->s[p->pos] != '\n')
                p->pos++;
        } else {
            break;
        }
    }
}

/* Peeks the current byte, or -1 at the end. */
static int s_peek(const s_parser_t *p)
{
    return p->pos < p->len ? (unsigned char)p->s[p->pos] : -1;
}

/* Formats the character at i as Go's %q of a rune: 'c' (bytes kept as is). */
static void s_quote_char(const s_parser_t *p, size_t i, char *out, size_t size)
{
    unsigned char c = (unsigned char)p->s[i];
    if (c == '\'')
        snprintf(out, size, "'\\''");
    else if (c >= 0x20 && c < 0x7f)
        snprintf(out, size, "'%c'", c);
    else
        snprintf(out, size, "'\\x%02x'", c);
}

/* Describes the token at the cursor the way the PromQL parser names it. */
static void s_describe(const s_parser_t *p, char *out, size_t size)
{
    int c = s_peek(p);
    if (c < 0) {
        snprintf(out, size, "end of input");
    } else if (s_is_alpha(c) || c == ':') {
        size_t e = p->pos;
        while (e < p->len && (s_is_alpha(p->s[e]) || s_is_digit(p->s[e]) || p->s[e] == ':'))
            e++;
        snprintf(out, size, "identifier \"%.*s\"", (int)(e - p->pos > 64 ? 64 : e - p->pos),
                 p->s + p->pos);
    } else if (c == '"' || c == '\'' || c == '`') {
        snprintf(out, size, "string");
    } else if (c == '!' && p->pos + 1 < p->len && p->s[p->pos + 1] == '=') {
        snprintf(out, size, "\"!=\"");
    } else if (c == '=' && p->pos + 1 < p->len && p->s[p->pos + 1] == '~') {
        snprintf(out, size, "\"=~\"");
    } else {
        snprintf(out, size, "\"%c\"", c >= 0x20 && c < 0x7f ? c : '?');
    }
}

/* Parses a quoted string (cursor not moved); returns its end offset or 0. */
static size_t s_string_end(const s_parser_t *p);

/* Describes the string token at the cursor as Go's %q of its raw text. */
static void s_describe_string(const s_parser_t *p, char *out, size_t size)
{
    size_t end = s_string_end(p), o = 0;
    if (!end) {
        snprintf(out, size, "string");
        return;
    }
    o = (size_t)snprintf(out, size, "string \"");
    for (size_t i = p->pos; i < end && o + 4 < size; i++) {
        char c = p->s[i];
        if (c == '"' || c == '\\')
            out[o++] = '\\';
        out[o++] = c;
    }
    if (o + 2 <= size) {
        out[o++] = '"';
        out[o] = '\0';
    } else {
        out[size - 1] = '\0';
    }
}

/* Appends the UTF-8 encoding of cp to out (at least 4 free bytes). */
static size_t s_put_utf8(char *out, uint32_t cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Parses a quoted string at the cursor into a new buffer (*out, *out_len). */
static int s_parse_string(s_parser_t *p, char **out, size_t *out_len)
{
    size_t start = p->pos;
    char q = p->s[p->pos++];
    /* The unescaped text is never longer than the quoted one. */
    char *buf = kvc_malloc(p->len - start + 1);
    if (!buf)
        return KVC_ENOMEM;
    size_t o = 0;
    int rc = KVC_OK;
    for (;;) {
        if (p->pos >= p->len || (q != '`' && p->s[p->pos] == '\n')) {
            rc = s_fail(p, start,
                        q == '`' ? "unterminated raw string" : "unterminated quoted string");
            goto fail;
        }
        char c = p->s[p->pos++];
        if (c == q)
            break;
        if (c != '\\' || q == '`') {
            buf[o++] = c;
            continue;
        }
        if (p->pos >= p->len) {
            rc = s_fail(p, start, "unterminated quoted string");
            goto fail;
        }
        size_t esc_at = p->pos;
        char e = p->s[p->pos++];
        switch (e) {
        case 'a':
            buf[o++] = '\a';
            break;
        case 'b':
            buf[o++] = '\b';
            break;
        case 'f':
            buf[o++] = '\f';
            break;
        case 'n':
            buf[o++] = '\n';
            break;
        case 'r':
            buf[o++] = '\r';
            break;
        case 't':
            buf[o++] = '\t';
            break;
        case 'v':
            buf[o++] = '\v';
            break;
        case '\\':
            buf[o++] = '\\';
            break;
        case '"':
        case '\'':
            if (e != q) {
                rc = s_fail(p, start, "unknown escape sequence U+%04X '%c'", (unsigned)e, e);
                goto fail;
            }
            buf[o++] = e;
            break;
        case 'x':
        case 'u':
        case 'U': {
            size_t nd = e == 'x' ? 2 : e == 'u' ? 4 : 8;
            uint32_t v = 0;
            for (size_t i = 0; i < nd; i++) {
                int h = p->pos < p->len ? kvc_hex_digit((unsigned char)p->s[p->pos]) : -1;
                if (h < 0) {
                    if (p->pos >= p->len) {
                        rc = s_fail(p, start, "unterminated quoted string");
                    } else {
                        char qc[16];
                        s_quote_char(p, p->pos, qc, sizeof qc);
                        rc = s_fail(p, start, "illegal character U+%04X %s in escape sequence",
                                    (unsigned)(unsigned char)p->s[p->pos], qc);
                    }
                    goto fail;
                }
                v = (v << 4) | (uint32_t)h;
                p->pos++;
            }
            if (e == 'x') {
                buf[o++] = (char)v;
            } else {
                if (v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) {
                    rc = s_fail(p, start, "escape sequence is an invalid Unicode code point");
                    goto fail;
                }
                if (o + 4 > p->len - start) { /* cannot happen: 6+ bytes in, 4 out */
                    rc = s_fail(p, start, "unterminated quoted string");
                    goto fail;
                }
                o += s_put_utf8(buf + o, v);
            }
            break;
        }
        case '0':
        case '1':
        case '2':
        case '3':
        case '4':
        case '5':
        case '6':
        case '7': {
            uint32_t v = (uint32_t)(e - '0');
            for (size_t i = 0; i < 2; i++) {
                int c2 = s_peek(p);
                if (c2 < '0' || c2 > '7') {
                    if (c2 < 0) {
                        rc = s_fail(p, start, "unterminated quoted string");
                    } else {
                        char qc[16];
                        s_quote_char(p, p->pos, qc, sizeof qc);
                        rc = s_fail(p, start, "illegal character U+%04X %s in escape sequence",
                                    (unsigned)c2, qc);
                    }
                    goto fail;
                }
                v = v * 8 + (uint32_t)(c2 - '0');
                p->pos++;
            }
            if (v > 255) {
                rc = s_fail(p, start, "escape sequence is an invalid Unicode code point");
                goto fail;
            }
            buf[o++] = (char)v;
            break;
        }
        default: {
            char qc[16];
            s_quote_char(p, esc_at, qc, sizeof qc);
            rc = s_fail(p, start, "unknown escape sequence U+%04X %s", (unsigned)(unsigned char)e,
                        qc);
            goto fail;
        }
        }
    }
    buf[o] = '\0';
    *out = buf;
    *out_len = o;
    return KVC_OK;
fail:
    kvc_free(buf);
    return rc;
}

/* Returns the offset just past the string token at the cursor, or 0. */
static size_t s_string_end(const s_parser_t *p)
{
    s_parser_t q = *p;
    q.err = NULL;
    char *tmp = NULL;
    size_t tl;
    if (s_parse_string(&q, &tmp, &tl) != KVC_OK)
        return 0;
    kvc_free(tmp);
    return q.pos;
}

/* Refuses regexes that RE2 rejects and that could make glibc's regcomp blow
 * up (it copies the tree for every `+` and `{n}`): backreferences,
 * unbalanced parentheses (which would also escape our anchors), stacked
 * repetition operators, repetition counts above 1000, a nested product of
 * repetitions above 1000 and a total expanded size above 10000. Also a
 * group that can match empty repeated to more than S_NULLABLE_REP_MAX
 * nodes (atoms and operators): glibc's epsilon closures over such copies grow with the cube of
 * their size (an 83-byte `(||…|x){40}` took 1.1 GB and `(a*|b*){500}`
 * did not finish in 30 s), where the same size without an empty match
 * costs a few MB. */
#define S_NULLABLE_REP_MAX 128
static int s_check_regex(s_parser_t *p, size_t at, const char *re, size_t len)
{
    enum { DEPTH = 64 };
    unsigned long inner[DEPTH];  /* largest nested repetition product per group */
    unsigned long size[DEPTH];   /* atoms in the group so far, repetitions expanded */
    unsigned long solid[DEPTH];  /* atoms in its current alternative that cannot match empty */
    int empty_alt[DEPTH];        /* an earlier alternative of the group can match empty */
    unsigned long last_size = 0; /* the atom a repetition applies to: its expanded size */
    int last_solid = 0, last_nullable_group = 0;
    size_t depth = 0;
    unsigned long closed = 1; /* product inside the group that just closed */
    unsigned long total = 0;  /* sum of products: an estimate of the expanded size */
    int after_group = 0, after_rep = 0, at_start = 1;
    size_t prev_op = 0; /* where the previous repetition operator started */
    int show = (int)(len > 200 ? 200 : len);
    inner[0] = 1;
    size[0] = solid[0] = 0;
    empty_alt[0] = 0;
    for (size_t i = 0; i < len; i++) {
        char c = re[i];
        int was_group = after_group, was_rep = after_rep, was_start = at_start;
        after_group = after_rep = at_start = 0;
        unsigned long factor = 0; /* non-zero: c starts a repetition operator */
        int may_skip = 0;         /* that operator allows zero copies */
        size_t op_end = i;
        if (c == '\\') {
            if (i + 1 < len && re[i + 1] >= '1' && re[i + 1] <= '9')
                return s_fail(p, at, "error parsing regexp: invalid escape sequence: `\\%c`",
                              re[i + 1]);
            i++;
        } else if (c == '[') {
            size_t j = i + 1;
            if (j < len && re[j] == '^')
                j++;
            if (j < len && re[j] == ']')
                j++;
            while (j < len && re[j] != ']') {
                if (re[j] == '[' && j + 1 < len &&
                    (re[j + 1] == ':' || re[j + 1] == '=' || re[j + 1] == '.')) {
                    char endc = re[j + 1];
                    j += 2;
                    while (j + 1 < len && !(re[j] == endc && re[j + 1] == ']'))
                        j++;
                    j += 2;
                    continue;
                }
                j++;
            }
            if (j >= len)
                return s_fail(p, at, "error parsing regexp: missing closing ]: `%.*s)$`",
                              (int)(len - i > 200 ? 200 : len - i), re + i);
            i = j;
        } else if (c == '(') {
            if (depth + 1 >= DEPTH)
                return s_fail(p, at, "error parsing regexp: expression nests too deeply");
            inner[++depth] = 1;
            size[depth] = solid[depth] = 0;
            empty_alt[depth] = 0;
            at_start = 1;
        } else if (c == ')') {
            if (depth == 0)
                return s_fail(p, at, "error parsing regexp: unexpected ): `^(?:%.*s)$`", show, re);
            int nullable = empty_alt[depth] || solid[depth] == 0;
            unsigned long gsize = size[depth];
            closed = inner[depth--];
            if (closed > inner[depth])
                inner[depth] = closed;
            size[depth] += gsize;
            if (!nullable)
                solid[depth]++;
            last_size = gsize;
            last_solid = !nullable;
            last_nullable_group = nullable;
            after_group = 1;
        } else if (c == '|') {
            size[depth]++;
            if (solid[depth] == 0)
                empty_alt[depth] = 1;
            solid[depth] = 0;
            at_start = 1;
        } else if (c == '*' || c == '?') {
            factor = 1;
            may_skip = 1;
        } else if (c == '+') {
            factor = 2;
        } else if (c == '{') {
            size_t j = i + 1;
            unsigned long lo = 0, hi = 0;
            int digits = 0;
            while (j < len && s_is_digit(re[j]) && lo <= 100000) {
                lo = lo * 10 + (unsigned long)(re[j++] - '0');
                digits++;
            }
            hi = lo;
            if (j < len && re[j] == ',') {
                j++;
                hi = 0;
                while (j < len && s_is_digit(re[j]) && hi <= 100000) {
                    hi = hi * 10 + (unsigned long)(re[j++] - '0');
                    digits++;
                }
                if (hi < lo)
                    hi = lo;
            }
            if (digits && j < len && re[j] == '}') {
                if (lo > 1000 || hi > 1000)
                    return s_fail(p, at, "error parsing regexp: invalid repeat count: `%.*s`",
                                  (int)(j - i + 1), re + i);
                factor = hi ? hi : 1;
                may_skip = lo == 0;
                op_end = j;
            }
        }
        if (!factor && c != '(' && c != ')' && c != '|') {
            /* An atom: a character, an escape, a bracket expression, or a
             * `{` that starts no repetition (a literal). */
            size[depth]++;
            solid[depth]++;
            last_size = 1;
            last_solid = 1;
            last_nullable_group = 0;
        }
        if (!factor)
            continue;
        if (was_rep)
            return s_fail(p, at, "error parsing regexp: invalid nested repetition operator: `%.*s`",
                          (int)(op_end - prev_op + 1), re + prev_op);
        if (was_start)
            return s_fail(p, at,
                          "error parsing regexp: missing argument to repetition operator: `%.*s`",
                          (int)(op_end - i + 1), re + i);
        unsigned long prod = (was_group ? closed : 1) * factor;
        if (prod > 1000)
            return s_fail(p, at, "error parsing regexp: invalid repeat count: `%.*s`",
                          (int)(op_end - i + 1), re + i);
        if (prod > inner[depth])
            inner[depth] = prod;
        total += prod;
        if (total > 10000)
            return s_fail(p, at, "error parsing regexp: expression too large");
        if (was_group && last_nullable_group && last_size * factor > S_NULLABLE_REP_MAX)
            return s_fail(p, at,
                          "error parsing regexp: expression too large: a group that can match "
                          "empty, repeated: `%.*s`",
                          (int)(op_end - i + 1), re + i);
        size[depth] += last_size * (factor - 1) + 1;
        if (may_skip && last_solid)
            solid[depth]--;
        last_solid = 0;
        after_rep = 1;
        prev_op = i;
        i = op_end;
    }
    if (depth)
        return s_fail(p, at, "error parsing regexp: missing closing ): `^(?:%.*s)$`", show, re);
    return KVC_OK;
}

/* Compiles m's value as an anchored POSIX extended regex. */
static int s_compile(s_parser_t *p, size_t at, s_matcher_t *m)
{
    if (memchr(m->value, '\0', m->value_len))
        return s_fail(p, at, "error parsing regexp: NUL byte in regex");
    int rc = s_check_regex(p, at, m->value, m->value_len);
    if (rc)
        return rc;
    size_t n = m->value_len + 5;
    char *pat = kvc_malloc(n);
    if (!pat)
        return KVC_ENOMEM;
    snprintf(pat, n, "^(%s)$", m->value);
    int e = regcomp(&m->re, pat, REG_EXTENDED | REG_NOSUB);
    kvc_free(pat);
    if (e) {
        char why[128];
        regerror(e, &m->re, why, sizeof why);
        return s_fail(p, at, "error parsing regexp: %s: `^(?:%.*s)$`", why,
                      (int)(m->value_len > 200 ? 200 : m->value_len), m->value);
    }
    m->has_re = 1;
    return KVC_OK;
}

/* 1 if matcher m accepts value v (a C string). */
static int s_matcher_ok(const s_matcher_t *m, const char *v)
{
    switch (m->op) {
    case KVC_PROMSEL_EQ:
        return strlen(v) == m->value_len && memcmp(v, m->value, m->value_len) == 0;
    case KVC_PROMSEL_NE:
        return !(strlen(v) == m->value_len && memcmp(v, m->value, m->value_len) == 0);
    case KVC_PROMSEL_RE:
        return regexec(&m->re, v, 0, NULL, 0) == 0;
    case KVC_PROMSEL_NRE:
        return regexec(&m->re, v, 0, NULL, 0) != 0;
    }
    return 0;
}

/* Frees the strings and regex of one matcher. */
static void s_matcher_free(s_matcher_t *m)
{
    kvc_free(m->label);
    kvc_free(m->value);
    if (m->has_re)
        regfree(&m->re);
    memset(m, 0, sizeof *m);
}

/* Parses `label op "value"` at the cursor into sel. */
static int s_parse_matcher(s_parser_t *p, kvc_promsel_t *sel)
{
    char what[96];
    size_t lstart = p->pos;
    int c = s_peek(p);
    if (!s_is_alpha(c)) {
        if (c < 0)
            return s_fail(p, p->pos, "unexpected end of input inside braces");
        if (c == ',' || c == '=' || c == '"' || c == '\'' || c == '`' || c == '!' || c == '~') {
            s_describe(p, what, sizeof what);
            if (c == '"' || c == '\'' || c == '`')
                s_describe_string(p, what, sizeof what);
            return s_fail(p, p->pos,
                          "unexpected %s in label matching, expected identifier or \"}\"", what);
        }
        char qc[16];
        s_quote_char(p, p->pos, qc, sizeof qc);
        return s_fail(p, p->pos, "unexpected character inside braces: %s", qc);
    }
    while (p->pos < p->len && (s_is_alpha(p->s[p->pos]) || s_is_digit(p->s[p->pos])))
        p->pos++;
    size_t llen = p->pos - lstart;
    s_skip_ws(p);
    kvc_promsel_op_t op;
    c = s_peek(p);
    if (c == '=') {
        p->pos++;
        op = KVC_PROMSEL_EQ;
        if (s_peek(p) == '~') {
            p->pos++;
            op = KVC_PROMSEL_RE;
        }
    } else if (c == '!') {
        p->pos++;
        int d = s_peek(p);
        if (d == '=')
            op = KVC_PROMSEL_NE;
        else if (d == '~')
            op = KVC_PROMSEL_NRE;
        else if (d < 0)
            return s_fail(p, p->pos, "unexpected end of input inside braces");
        else {
            char qc[16];
            s_quote_char(p, p->pos, qc, sizeof qc);
            return s_fail(p, p->pos - 1, "unexpected character after '!' inside braces: %s", qc);
        }
        p->pos++;
    } else {
        if (c < 0)
            return s_fail(p, p->pos, "unexpected end of input inside braces");
        s_describe(p, what, sizeof what);
        return s_fail(p, p->pos,
                      "unexpected %s in label matching, expected label matching operator", what);
    }
    s_skip_ws(p);
    c = s_peek(p);
    if (c != '"' && c != '\'' && c != '`') {
        if (c < 0)
            return s_fail(p, p->pos, "unexpected end of input inside braces");
        if (!s_is_alpha(c) && c != '}' && c != ',' && c != '=' && c != '!') {
            char qc[16];
            s_quote_char(p, p->pos, qc, sizeof qc);
            return s_fail(p, p->pos, "unexpected character inside braces: %s", qc);
        }
        s_describe(p, what, sizeof what);
        return s_fail(p, p->pos, "unexpected %s in label matching, expected string", what);
    }
    if (sel->n >= KVC_PROMSEL_MAX_MATCHERS + (size_t)p->named)
        return kvc_err_set(p->err, KVC_ERANGE, "selector has more than %d matchers",
                           KVC_PROMSEL_MAX_MATCHERS);
    s_matcher_t *m = &sel->m[sel->n];
    memset(m, 0, sizeof *m);
    m->op = op;
    m->label = kvc_strndup(p->s + lstart, llen);
    if (!m->label)
        return KVC_ENOMEM;
    sel->n++;
    int rc = s_parse_string(p, &m->value, &m->value_len);
    if (rc)
        return rc;
    if (op == KVC_PROMSEL_RE || op == KVC_PROMSEL_NRE)
        return s_compile(p, lstart, m);
    return KVC_OK;
}

/* Parses the braces part: `{` matchers, optional trailing comma, `}`. */
static int s_parse_braces(s_parser_t *p, kvc_promsel_t *sel)
{
    p->pos++; /* '{' */
    for (;;) {
        s_skip_ws(p);
        if (s_peek(p) == '}') {
            p->pos++;
            return KVC_OK;
        }
        int rc = s_parse_matcher(p, sel);
        if (rc)
            return rc;
        s_skip_ws(p);
        int c = s_peek(p);
        if (c == ',') {
            p->pos++;
            continue;
        }
        if (c == '}') {
            p->pos++;
            return KVC_OK;
        }
        if (c < 0)
            return s_fail(p, p->pos, "unexpected end of input inside braces");
        char what[96];
        if (!s_is_alpha(c) && c != '"' && c != '\'' && c != '`' && c != '=' && c != '!') {
            char qc[16];
            s_quote_char(p, p->pos, qc, sizeof qc);
            return s_fail(p, p->pos, "unexpected character inside braces: %s", qc);
        }
        s_describe(p, what, sizeof what);
        return s_fail(p, p->pos, "unexpected %s in label matching, expected \",\" or \"}\"", what);
    }
}

int kvc_promsel_parse(const char *text, size_t len, kvc_promsel_t **out, kvc_err_t *err)
{
    if (!out)
        return kvc_err_set(err, KVC_EINVAL, "kvc_promsel_parse: NULL out");
    *out = NULL;
    if (!text)
        return kvc_err_set(err, KVC_EINVAL, "kvc_promsel_parse: NULL text");
    if (len > KVC_PROMSEL_MAX_LEN)
        return kvc_err_set(err, KVC_ERANGE, "selector longer than %d bytes", KVC_PROMSEL_MAX_LEN);
    kvc_promsel_t *sel = kvc_calloc(1, sizeof *sel);
    if (!sel)
        return KVC_ENOMEM;
    s_parser_t p = {.s = text, .len = len, .pos = 0, .err = err};
    int rc = KVC_OK;
    s_skip_ws(&p);
    size_t start = p.pos;
    int c = s_peek(&p);
    char what[96];
    const char *name = NULL;
    if (c < 0) {
        rc = s_fail(&p, p.pos, "unexpected end of input");
        goto done;
    }
    if (s_is_alpha(c) || c == ':') {
        size_t ns = p.pos;
        while (p.pos < p.len &&
               (s_is_alpha(p.s[p.pos]) || s_is_digit(p.s[p.pos]) || p.s[p.pos] == ':'))
            p.pos++;
        s_matcher_t *m = &sel->m[sel->n++];
        m->label = kvc_strdup("__name__");
        m->value = kvc_strndup(text + ns, p.pos - ns);
        if (!m->label || !m->value) {
            rc = KVC_ENOMEM;
            goto done;
        }
        m->value_len = p.pos - ns;
        m->op = KVC_PROMSEL_EQ;
        name = m->value;
        p.named = 1;
        s_skip_ws(&p);
        c = s_peek(&p);
    }
    if (c == '{') {
        if ((rc = s_parse_braces(&p, sel)) != 0)
            goto done;
        s_skip_ws(&p);
    } else if (!name) {
        if (c == '"' || c == '\'' || c == '`' || s_is_digit(c) || c == '(' || c == '-' ||
            c == '+') {
            rc = s_fail(&p, p.pos, "expected type vector selector in metric selector");
        } else {
            char qc[16];
            s_quote_char(&p, p.pos, qc, sizeof qc);
            rc = s_fail(&p, p.pos, "unexpected character: %s", qc);
        }
        goto done;
    }
    c = s_peek(&p);
    if (c >= 0) {
        if (s_is_alpha(c) || c == '{' || c == ':' || c == '"' || c == '\'' || c == '`' ||
            c == '(' || c == ')' || c == ',' || c == '=') {
            s_describe(&p, what, sizeof what);
            rc = s_fail(&p, p.pos, "unexpected %s", what);
        } else {
            char qc[16];
            s_quote_char(&p, p.pos, qc, sizeof qc);
            rc = s_fail(&p, p.pos, "unexpected character: %s", qc);
        }
        goto done;
    }
    if (name) {
        for (size_t i = 1; i < sel->n; i++)
            if (strcmp(sel->m[i].label, "__name__") == 0) {
                rc = s_fail(&p, start, "metric name must not be set twice: \"%s\" or \"%s\"", name,
                            sel->m[i].value);
                goto done;
            }
    }
    int nonempty = 0;
    for (size_t i = 0; i < sel->n && !nonempty; i++)
        nonempty = !s_matcher_ok(&sel->m[i], "");
    if (!nonempty)
        rc = s_fail(&p, start, "vector selector must contain at least one non-empty matcher");
done:
    if (rc) {
        kvc_promsel_destroy(&sel);
        if (rc == KVC_ENOMEM)
            kvc_err_set(err, rc, "out of memory");
        return rc;
    }
    *out = sel;
    return KVC_OK;
}

void kvc_promsel_destroy(kvc_promsel_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    kvc_promsel_t *sel = *self_p;
    for (size_t i = 0; i < sel->n; i++)
        s_matcher_free(&sel->m[i]);
    kvc_free(sel);
    *self_p = NULL;
}

/* The value of label in the series, "" when absent. */
static const char *s_lookup(const char *label, const char *name, const char *const *names,
                            const char *const *values, size_t n)
{
    if (strcmp(label, "__name__") == 0)
        return name ? name : "";
    for (size_t i = 0; i < n; i++)
        if (names[i] && strcmp(names[i], label) == 0)
            return values[i] ? values[i] : "";
    return "";
}

int kvc_promsel_match(const kvc_promsel_t *sel, const char *name, const char *const *names,
                      const char *const *values, size_t n)
{
    if (!sel)
        return 0;
    for (size_t i = 0; i < sel->n; i++) {
        const s_matcher_t *m = &sel->m[i];
        if (!s_matcher_ok(m, s_lookup(m->label, name, names, values, n)))
            return 0;
    }
    return 1;
}

size_t kvc_promsel_count(const kvc_promsel_t *sel)
{
    return sel ? sel->n : 0;
}

int kvc_promsel_matcher(const kvc_promsel_t *sel, size_t i, const char **label,
                        kvc_promsel_op_t *op, const char **value)
{
    if (!sel || i >= sel->n)
        return KVC_ENOENT;
    if (label)
        *label = sel->m[i].label;
    if (op)
        *op = sel->m[i].op;
    if (value)
        *value = sel->m[i].value;
    return KVC_OK;
}

kvc_promsel_set_t *kvc_promsel_set_new(void)
{
    return kvc_calloc(1, sizeof(kvc_promsel_set_t));
}

void kvc_promsel_set_destroy(kvc_promsel_set_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    kvc_promsel_set_t *set = *self_p;
    for (size_t i = 0; i < set->n; i++)
        kvc_promsel_destroy(&set->sel[i]);
    kvc_free(set);
    *self_p = NULL;
}

int kvc_promsel_set_add(kvc_promsel_set_t *set, const char *text, size_t len, kvc_err_t *err)
{
    if (!set)
        return kvc_err_set(err, KVC_EINVAL, "kvc_promsel_set_add: NULL set");
    if (set->n >= KVC_PROMSEL_MAX_SELECTORS)
        return kvc_err_set(err, KVC_ERANGE, "more than %d match[] selectors",
                           KVC_PROMSEL_MAX_SELECTORS);
    kvc_promsel_t *sel = NULL;
    int rc = kvc_promsel_parse(text, len, &sel, err);
    if (rc)
        return rc;
    set->sel[set->n++] = sel;
    return KVC_OK;
}

int kvc_promsel_set_match(const kvc_promsel_set_t *set, const char *name, const char *const *names,
                          const char *const *values, size_t n)
{
    if (!set)
        return 1;
    for (size_t i = 0; i < set->n; i++)
        if (kvc_promsel_match(set->sel[i], name, names, values, n))
            return 1;
    return 0;
}

int kvc_promsel_set_may_match_name(const kvc_promsel_set_t *set, const char *name)
{
    if (!set)
        return 1;
    for (size_t i = 0; i < set->n; i++) {
        const kvc_promsel_t *sel = set->sel[i];
        int ok = 1;
        for (size_t k = 0; k < sel->n && ok; k++)
            if (strcmp(sel->m[k].label, "__name__") == 0)
                ok = s_matcher_ok(&sel->m[k], name);
        if (ok)
            return 1;
    }
    return 0;
}
