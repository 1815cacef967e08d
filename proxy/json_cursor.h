/*
 * json_cursor.h - a bounded reader of JSON text, shared by the proxy's
 * codecs (json_tensor.c for TF Serving REST, kserve_json.c for KServe v2).
 *
 * The cursor walks the bytes once, never past end, and allocates nothing:
 * keys and names are copied into the caller's fixed buffers, values the
 * caller does not want are skipped with a depth limit. It knows JSON's
 * grammar (RFC 8259) plus the bare NaN, Infinity and -Infinity tokens that
 * TF Serving accepts, and nothing of tensors. Every error is set in the
 * cursor's kvc_err_t as "offset N: what", N the byte offset from base, fit
 * for a 400 {"error": ...} body.
 */
#ifndef KVC_JSON_CURSOR_H
#define KVC_JSON_CURSOR_H

#include "base.h"

#include <stddef.h>
#include <stdint.h>

/* A bounded cursor over a JSON text; base is kept for error offsets. All
 * four pointers are borrowed: the text must outlive the cursor, err may be
 * NULL. */
typedef struct {
    const char *base;
    const char *p;
    const char *end;
    kvc_err_t *err;
} kvc_json_cursor_t;

/* Deepest nesting kvc_json_cursor_skip accepts. */
#define KVC_JSON_CURSOR_SKIP_DEPTH 64

/* Points c at len bytes of text (need not be NUL-terminated). */
void kvc_json_cursor_init(kvc_json_cursor_t *c, const char *text, size_t len, kvc_err_t *err);

/* Skips JSON whitespace. Inline: the codecs' hot loops call it per value. */
static inline void kvc_json_cursor_ws(kvc_json_cursor_t *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\n' || *c->p == '\r' || *c->p == '\t'))
        c->p++;
}

/* Skips whitespace; returns the next byte, or -1 at the end. */
static inline int kvc_json_cursor_peek(kvc_json_cursor_t *c)
{
    kvc_json_cursor_ws(c);
    return c->p < c->end ? (unsigned char)*c->p : -1;
}

/* Tells whether the n bytes at the cursor spell lit (no whitespace skipped). */
static inline int kvc_json_cursor_lit(const kvc_json_cursor_t *c, const char *lit, size_t n)
{
    return (size_t)(c->end - c->p) >= n && __builtin_memcmp(c->p, lit, n) == 0;
}

/* Sets an error "offset N: <message>" at the cursor and returns code. */
int kvc_json_cursor_fail(kvc_json_cursor_t *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Reports the byte at the cursor (or the end of input) as unexpected:
 * "offset N: unexpected character 'x', expected <wanted>". KVC_EPARSE. */
int kvc_json_cursor_unexpected(kvc_json_cursor_t *c, const char *wanted);

/* Consumes ch after whitespace, else KVC_EPARSE "... expected 'ch'". */
int kvc_json_cursor_expect(kvc_json_cursor_t *c, char ch);

/*
 * Parses a JSON string (a key or name) into buf: NUL-terminated, at most
 * size-1 bytes (size > 0). Longer is KVC_ERANGE; holding a NUL character,
 * a bad escape or bytes that are not valid UTF-8 (names end up in protobuf
 * string fields) is KVC_EPARSE. what names the string in the UTF-8 error
 * ("offset N: <what> is not valid UTF-8", N the offset of the first bad
 * byte); NULL means "key". *len (may be NULL) gets the length.
 */
int kvc_json_cursor_read_name(kvc_json_cursor_t *c, const char *what, char *buf, size_t size,
                              size_t *len);
/* kvc_json_cursor_read_name with what = NULL. */
int kvc_json_cursor_read_string(kvc_json_cursor_t *c, char *buf, size_t size, size_t *len);

/*
 * Finds the end of the string whose opening quote is at the cursor (no
 * whitespace skipped). Sets *raw / *raw_len to the bytes between the
 * quotes as they stand (escapes not decoded), *escaped to 1 if any
 * backslash, and moves past the closing quote. KVC_EPARSE for an
 * unterminated string or a control character. For callers that decode
 * string values into their own storage with kvc_json_cursor_unescape.
 */
int kvc_json_cursor_string_span(kvc_json_cursor_t *c, const char **raw, size_t *raw_len,
                                int *escaped);

/*
 * Decodes the escapes of raw[0..n) (a span from kvc_json_cursor_string_span)
 * into dst, which has room for n bytes (a decoded string is never longer);
 * sets *out_len. KVC_EPARSE (cursor moved to the bad escape) for an invalid
 * escape or a lone surrogate.
 */
int kvc_json_cursor_unescape(kvc_json_cursor_t *c, const char *raw, size_t n, char *dst,
                             size_t *out_len);

/* Skips one JSON value of any kind, at most KVC_JSON_CURSOR_SKIP_DEPTH deep. */
int kvc_json_cursor_skip(kvc_json_cursor_t *c);

/* Parses true/false into *out (1/0). */
int kvc_json_cursor_read_bool(kvc_json_cursor_t *c, int *out);

/*
 * Parses a non-negative JSON integer. KVC_ERANGE ("integer out of range")
 * for one past UINT64_MAX, KVC_EPARSE for anything that is not a
 * non-negative integer; either way the cursor stays at the value (after
 * whitespace), so a caller may set a message of its own there.
 */
int kvc_json_cursor_read_u64(kvc_json_cursor_t *c, uint64_t *out);

/*
 * Steps through an object's members. Start with *state = 0 at the value:
 * each call returns 1 with the next key in key (as read_string; size bytes)
 * and the cursor past its ':', ready for the member's value; 0 once the
 * closing '}' is consumed; or a negative code (not an object, a trailing
 * comma, a missing ',' or '}', a bad key) with the error set.
 */
int kvc_json_cursor_member(kvc_json_cursor_t *c, int *state, char *key, size_t size);

/*
 * Steps through an array's elements the same way: start with *state = 0 at
 * the value; returns 1 with the cursor at the next element, 0 once the
 * closing ']' is consumed, or a negative code (not an array, a trailing
 * comma, a missing ',' or ']').
 */
int kvc_json_cursor_element(kvc_json_cursor_t *c, int *state);

/*
 * Counts the leading bytes of s[0..n) that are well-formed UTF-8 (no
 * overlong forms, surrogates or code points past U+10FFFF).
 */
size_t kvc_json_utf8_prefix(const uint8_t *s, size_t n);

/* Tells whether n bytes are valid UTF-8. */
int kvc_json_utf8_valid(const uint8_t *s, size_t n);

#endif
