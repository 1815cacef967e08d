/*
 * json_cursor.c - the JSON reader under the proxy's codecs.
 *
 * Strings are found by a scan for the closing quote and decoded only when
 * they hold escapes; names are checked for UTF-8 on their raw bytes;
 * numbers are checked against the grammar when skipped and converted by
 * numfmt.c when read. Nothing here allocates, reads past end, or recurses
 * deeper than KVC_JSON_CURSOR_SKIP_DEPTH.
 */
#include "json_cursor.h"

#include "numfmt.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void kvc_json_cursor_init(kvc_json_cursor_t *c, const char *text, size_t len, kvc_err_t *err)
{
    c->base = text;
    c->p = text;
    c->end = text + len;
    c->err = err;
}

int kvc_json_cursor_fail(kvc_json_cursor_t *c, int code, const char *fmt, ...)
{
    char msg[KVC_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return kvc_err_set(c->err, code, "offset %zu: %s", (size_t)(c->p - c->base), msg);
}

int kvc_json_cursor_unexpected(kvc_json_cursor_t *c, const char *wanted)
{
    if (c->p >= c->end)
        return kvc_json_cursor_fail(c, KVC_EPARSE, "unexpected end of input, expected %s", wanted);
    unsigned char ch = (unsigned char)*c->p;
    if (ch >= 0x20 && ch < 0x7f)
        return kvc_json_cursor_fail(c, KVC_EPARSE, "unexpected character '%c', expected %s", ch,
                                    wanted);
    return kvc_json_cursor_fail(c, KVC_EPARSE, "unexpected byte 0x%02x, expected %s", ch, wanted);
}

int kvc_json_cursor_expect(kvc_json_cursor_t *c, char ch)
{
    kvc_json_cursor_ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return KVC_OK;
    }
    char want[4] = {'\'', ch, '\'', '\0'};
    return kvc_json_cursor_unexpected(c, want);
}

/* Reads 4 hex digits. */
static int s_hex4(const char *p, uint32_t *out)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int d = kvc_hex_digit((unsigned char)p[i]);
        if (d < 0)
            return -1;
        v = v << 4 | (uint32_t)d;
    }
    *out = v;
    return 0;
}

/*
 * Finds the end of a string whose opening quote is at c->p. Sets *raw and
 * *raw_len to the bytes between the quotes, *escaped if any backslash, and
 * moves the cursor past the closing quote.
 */
int kvc_json_cursor_string_span(kvc_json_cursor_t *c, const char **raw, size_t *raw_len,
                                int *escaped)
{
    const char *p = c->p + 1;
    *escaped = 0;
    *raw = p;
    for (;;) {
        const char *q = p;
        while (q < c->end && *q != '"' && *q != '\\' && (unsigned char)*q >= 0x20)
            q++;
        if (q >= c->end) {
            c->p = q;
            return kvc_json_cursor_fail(c, KVC_EPARSE, "unterminated string");
        }
        if (*q == '"') {
            *raw_len = (size_t)(q - *raw);
            c->p = q + 1;
            return KVC_OK;
        }
        if (*q == '\\') {
            *escaped = 1;
            if (q + 1 >= c->end) {
                c->p = q;
                return kvc_json_cursor_fail(c, KVC_EPARSE, "unterminated string");
            }
            p = q + 2;
            continue;
        }
        c->p = q;
        return kvc_json_cursor_fail(c, KVC_EPARSE, "control character in string");
    }
}

/* Decodes the escapes of raw[0..n) into dst (room for n bytes); sets *out_len. */
int kvc_json_cursor_unescape(kvc_json_cursor_t *c, const char *raw, size_t n, char *dst,
                             size_t *out_len)
{
    const char *p = raw, *end = raw + n;
    char *w = dst;
    while (p < end) {
        if (*p != '\\') {
            *w++ = *p++;
            continue;
        }
        p++;
        char e = *p++;
        switch (e) {
        case '"':
            *w++ = '"';
            break;
        case '\\':
            *w++ = '\\';
            break;
        case '/':
            *w++ = '/';
            break;
        case 'b':
            *w++ = '\b';
            break;
        case 'f':
            *w++ = '\f';
            break;
        case 'n':
            *w++ = '\n';
            break;
        case 'r':
            *w++ = '\r';
            break;
        case 't':
            *w++ = '\t';
            break;
        case 'u': {
            uint32_t cp, lo;
            if (end - p < 4 || s_hex4(p, &cp)) {
                c->p = p - 2;
                return kvc_json_cursor_fail(c, KVC_EPARSE, "invalid \\u escape");
            }
            p += 4;
            if (cp >= 0xD800 && cp < 0xDC00) {
                if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || s_hex4(p + 2, &lo) ||
                    lo < 0xDC00 || lo >= 0xE000) {
                    c->p = p - 6;
                    return kvc_json_cursor_fail(c, KVC_EPARSE, "unpaired surrogate in \\u escape");
                }
                p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp < 0xE000) {
                c->p = p - 6;
                return kvc_json_cursor_fail(c, KVC_EPARSE, "unpaired surrogate in \\u escape");
            }
            if (cp < 0x80) {
                *w++ = (char)cp;
            } else if (cp < 0x800) {
                *w++ = (char)(0xC0 | (cp >> 6));
                *w++ = (char)(0x80 | (cp & 0x3F));
            } else if (cp < 0x10000) {
                *w++ = (char)(0xE0 | (cp >> 12));
                *w++ = (char)(0x80 | ((cp >> 6) & 0x3F));
                *w++ = (char)(0x80 | (cp & 0x3F));
            } else {
                *w++ = (char)(0xF0 | (cp >> 18));
                *w++ = (char)(0x80 | ((cp >> 12) & 0x3F));
                *w++ = (char)(0x80 | ((cp >> 6) & 0x3F));
                *w++ = (char)(0x80 | (cp & 0x3F));
            }
            break;
        }
        default:
            c->p = p - 2;
            return kvc_json_cursor_fail(c, KVC_EPARSE, "invalid escape in string");
        }
    }
    *out_len = (size_t)(w - dst);
    return KVC_OK;
}

/*
 * Counts the leading bytes of s[0..n) that are well-formed UTF-8 (no
 * overlong forms, surrogates or code points past U+10FFFF).
 */
size_t kvc_json_utf8_prefix(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t b = s[i];
        if (b < 0x80) {
            i++;
            continue;
        }
        size_t need;
        uint32_t cp;
        if (b >= 0xC2 && b <= 0xDF) {
            need = 1;
            cp = b & 0x1F;
        } else if (b >= 0xE0 && b <= 0xEF) {
            need = 2;
            cp = b & 0x0F;
        } else if (b >= 0xF0 && b <= 0xF4) {
            need = 3;
            cp = b & 0x07;
        } else {
            return i;
        }
        if (n - i - 1 < need)
            return i;
        for (size_t k = 1; k <= need; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return i;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((need == 2 && (cp < 0x800 || (cp >= 0xD800 && cp < 0xE000))) ||
            (need == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
            return i;
        i += need + 1;
    }
    return n;
}

int kvc_json_cursor_read_name(kvc_json_cursor_t *c, const char *what, char *buf, size_t size,
                              size_t *len)
{
    kvc_json_cursor_ws(c);
    if (c->p >= c->end || *c->p != '"')
        return kvc_json_cursor_unexpected(c, "a string");
    const char *start = c->p, *raw;
    size_t n;
    int esc;
    int rc = kvc_json_cursor_string_span(c, &raw, &n, &esc);
    if (rc)
        return rc;
    if (n >= size) {
        c->p = start;
        return kvc_json_cursor_fail(c, KVC_ERANGE, "string longer than %zu bytes", size - 1);
    }
    /*
     * Names become protobuf string fields, which must hold UTF-8 or the
     * backend refuses the whole message. Checking the raw bytes is enough:
     * escapes are ASCII, decode to whole UTF-8 sequences (lone surrogates
     * are refused by kvc_json_cursor_unescape), and so can neither complete
     * nor break a raw sequence; the raw bytes also give the offending
     * byte's offset.
     */
    size_t ok = kvc_json_utf8_prefix((const uint8_t *)raw, n);
    if (ok < n) {
        c->p = raw + ok;
        return kvc_json_cursor_fail(c, KVC_EPARSE, "%s is not valid UTF-8", what ? what : "key");
    }
    if (esc) {
        rc = kvc_json_cursor_unescape(c, raw, n, buf, &n);
        if (rc)
            return rc;
    } else {
        memcpy(buf, raw, n);
    }
    if (memchr(buf, 0, n)) {
        c->p = start;
        return kvc_json_cursor_fail(c, KVC_EPARSE, "NUL character in a name");
    }
    buf[n] = '\0';
    if (len)
        *len = n;
    return KVC_OK;
}

int kvc_json_cursor_read_string(kvc_json_cursor_t *c, char *buf, size_t size, size_t *len)
{
    return kvc_json_cursor_read_name(c, NULL, buf, size, len);
}

/* Skips a value, at most depth levels deep. */
static int s_skip(kvc_json_cursor_t *c, int depth)
{
    if (depth > KVC_JSON_CURSOR_SKIP_DEPTH)
        return kvc_json_cursor_fail(c, KVC_EPARSE, "nesting deeper than %d",
                                    KVC_JSON_CURSOR_SKIP_DEPTH);
    int ch = kvc_json_cursor_peek(c);
    if (ch == '"') {
        const char *raw;
        size_t n;
        int esc;
        return kvc_json_cursor_string_span(c, &raw, &n, &esc);
    }
    if (ch == '[' || ch == '{') {
        char close = ch == '[' ? ']' : '}';
        c->p++;
        if (kvc_json_cursor_peek(c) == close) {
            c->p++;
            return KVC_OK;
        }
        for (;;) {
            int rc;
            if (close == '}') {
                if (kvc_json_cursor_peek(c) != '"')
                    return kvc_json_cursor_unexpected(c, "a key");
                if ((rc = s_skip(c, depth + 1)) || (rc = kvc_json_cursor_expect(c, ':')))
                    return rc;
            }
            if ((rc = s_skip(c, depth + 1)))
                return rc;
            int nx = kvc_json_cursor_peek(c);
            if (nx == ',') {
                c->p++;
                continue;
            }
            if (nx == close) {
                c->p++;
                return KVC_OK;
            }
            return kvc_json_cursor_unexpected(c, close == ']' ? "',' or ']'" : "',' or '}'");
        }
    }
    static const char *lits[] = {"true", "false", "null", "NaN", "Infinity", "-Infinity"};
    for (size_t i = 0; i < sizeof lits / sizeof lits[0]; i++) {
        size_t n = strlen(lits[i]);
        if (kvc_json_cursor_lit(c, lits[i], n)) {
            c->p += n;
            return KVC_OK;
        }
    }
    /* A number: checked against the JSON grammar without converting it. */
    const char *p = c->p, *end = c->end;
    if (p < end && *p == '-')
        p++;
    if (p < end && *p == '0') {
        p++;
    } else if (p < end && *p >= '1' && *p <= '9') {
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    } else {
        return kvc_json_cursor_unexpected(c, "a value");
    }
    if (p < end && *p == '.') {
        if (++p >= end || *p < '0' || *p > '9') {
            c->p = p;
            return kvc_json_cursor_unexpected(c, "a digit");
        }
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p >= end || *p < '0' || *p > '9') {
            c->p = p;
            return kvc_json_cursor_unexpected(c, "a digit");
        }
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    c->p = p;
    return KVC_OK;
}

int kvc_json_cursor_skip(kvc_json_cursor_t *c)
{
    return s_skip(c, 0);
}

int kvc_json_cursor_read_bool(kvc_json_cursor_t *c, int *out)
{
    kvc_json_cursor_ws(c);
    if (kvc_json_cursor_lit(c, "true", 4)) {
        c->p += 4;
        *out = 1;
        return KVC_OK;
    }
    if (kvc_json_cursor_lit(c, "false", 5)) {
        c->p += 5;
        *out = 0;
        return KVC_OK;
    }
    return kvc_json_cursor_unexpected(c, "true or false");
}

int kvc_json_cursor_read_u64(kvc_json_cursor_t *c, uint64_t *out)
{
    kvc_json_cursor_ws(c);
    const char *stop;
    int rc = kvc_numfmt_parse_u64(c->p, c->end, out, &stop);
    /* numfmt says ERANGE for "-1" too: only a large positive number is one. */
    if (rc == KVC_ERANGE && c->p < c->end && *c->p != '-')
        return kvc_json_cursor_fail(c, KVC_ERANGE, "integer out of range");
    if (rc)
        return kvc_json_cursor_unexpected(c, "a non-negative integer");
    c->p = stop;
    return KVC_OK;
}

int kvc_json_cursor_member(kvc_json_cursor_t *c, int *state, char *key, size_t size)
{
    int rc;
    if (*state == 0) {
        if ((rc = kvc_json_cursor_expect(c, '{')))
            return rc;
        *state = 1;
        if (kvc_json_cursor_peek(c) == '}') {
            c->p++;
            return 0;
        }
    } else {
        int nx = kvc_json_cursor_peek(c);
        if (nx == '}') {
            c->p++;
            return 0;
        }
        if (nx != ',')
            return kvc_json_cursor_unexpected(c, "',' or '}'");
        c->p++;
        if (kvc_json_cursor_peek(c) != '"')
            return kvc_json_cursor_unexpected(c, "a key");
    }
    if ((rc = kvc_json_cursor_read_string(c, key, size, NULL)) ||
        (rc = kvc_json_cursor_expect(c, ':')))
        return rc;
    return 1;
}

int kvc_json_cursor_element(kvc_json_cursor_t *c, int *state)
{
    int rc;
    if (*state == 0) {
        if ((rc = kvc_json_cursor_expect(c, '[')))
            return rc;
        *state = 1;
        int nx = kvc_json_cursor_peek(c);
        if (nx == ']') {
            c->p++;
            return 0;
        }
        return nx < 0 ? kvc_json_cursor_unexpected(c, "a value or ']'") : 1;
    }
    int nx = kvc_json_cursor_peek(c);
    if (nx == ']') {
        c->p++;
        return 0;
    }
    if (nx != ',')
        return kvc_json_cursor_unexpected(c, "',' or ']'");
    c->p++;
    nx = kvc_json_cursor_peek(c);
    if (nx == ']' || nx < 0)
        return kvc_json_cursor_unexpected(c, "a value");
    return 1;
}

int kvc_json_utf8_valid(const uint8_t *s, size_t n)
{
    return kvc_json_utf8_prefix(s, n) == n;
}
