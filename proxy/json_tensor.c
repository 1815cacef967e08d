/*
 * json_tensor.c - TensorFlow Serving REST JSON <-> tensors, streaming.
 *
 * The parser walks the bytes once. Nested lists are checked against the
 * shape learnt from the first element at each depth, and scalars go straight
 * into the tensor's typed buffer (a tight loop for the innermost list of
 * numbers). The writer lays out nested lists by shape with shortest
 * round-trip floats. Neither side ever reads past the input, grows past its
 * limits, or trusts a length it has not checked. The JSON grammar itself
 * (strings, escapes, skipping) is json_cursor.c's.
 */
#include "json_tensor.h"

#include "numfmt.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define S_MAX_INPUTS 256
#define S_MAX_NAME 256
#define S_CHUNK 4096

/* ---- base64 ---------------------------------------------------------------- */

static const char s_b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Value of one base64 character (standard or URL-safe alphabet), or -1. */
static inline int s_b64_val(unsigned char ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    if (ch == '+' || ch == '-')
        return 62;
    if (ch == '/' || ch == '_')
        return 63;
    return -1;
}

/* Decodes base64 (padding optional) into dst (room for n*3/4+3); -1 if bad. */
static long s_b64_decode(const char *src, size_t n, uint8_t *dst)
{
    while (n && src[n - 1] == '=')
        n--;
    if (n % 4 == 1)
        return -1;
    uint8_t *w = dst;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = s_b64_val((unsigned char)src[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            *w++ = (uint8_t)(acc >> bits);
        }
    }
    return (long)(w - dst);
}

/* ---- parsing tensors ---------------------------------------------------------- */

/* Where a tensor value is, for messages: a prefix plus list indices. */
typedef struct {
    kvc_json_cursor_t c;
    const kvc_tensor_limits_t *lim;
    char prefix[S_MAX_NAME + 64];
    int dim_base; /* dimension number of level 0 in the final tensor */
    uint64_t idx[KVC_TENSOR_MAX_DIMS + 2];
    /* An unnamed value met while the signature has several inputs: 0 none,
     * 1 "inputs": value, 2 "instances": [value...]; amb_at is its offset. */
    int amb;
    size_t amb_at;
} s_parser_t;

/* The shape being learnt for one tensor, and its (maybe inferred) dtype. */
typedef struct {
    char *name;
    kvc_tensor_t *t; /* created at the first scalar when the dtype is inferred */
    kvc_dtype_t dtype;
    int fixed; /* dtype given by the signature */
    int allow_b64;
    int ndim; /* -1 until the first scalar is reached */
    int64_t shape[KVC_TENSOR_MAX_DIMS];
    uint64_t seen_in; /* row objects: last instance this input appeared in */
} s_value_t;

/* Formats prefix[i0][i1].. for the first depth indices. */
static void s_where(const s_parser_t *P, int depth, char *buf, size_t size)
{
    size_t n = (size_t)snprintf(buf, size, "%s", P->prefix);
    for (int i = 0; i < depth && n < size; i++)
        n += (size_t)snprintf(buf + n, size - n, "[%llu]", (unsigned long long)P->idx[i]);
}

/* Sets a "where: what" error. */
static int s_fail_at(s_parser_t *P, int depth, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int s_fail_at(s_parser_t *P, int depth, int code, const char *fmt, ...)
{
    char where[512], msg[KVC_ERR_MAX];
    s_where(P, depth, where, sizeof where);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return kvc_err_set(P->c.err, code, "%s: %s", where, msg);
}

/* Names what a dtype expects, for messages. */
static const char *s_expects(kvc_dtype_t dt)
{
    switch (dt) {
    case KVC_DT_FLOAT:
    case KVC_DT_DOUBLE:
    case KVC_DT_HALF:
        return "a number";
    case KVC_DT_BOOL:
        return "true or false";
    case KVC_DT_STRING:
        return "a string or {\"b64\": ...}";
    default:
        return "an integer";
    }
}

/* Creates the tensor once the dtype is known. */
static int s_ensure_tensor(s_parser_t *P, s_value_t *V, int depth)
{
    if (V->t)
        return KVC_OK;
    V->t = kvc_tensor_new(V->name, V->dtype, P->lim);
    if (!V->t)
        return s_fail_at(P, depth, KVC_ENOMEM, "out of memory");
    return KVC_OK;
}

/* Maps a tensor growth failure to a message. */
static int s_grow_fail(s_parser_t *P, int depth, int rc)
{
    if (rc == KVC_ERANGE)
        return s_fail_at(P, depth, KVC_ERANGE, "tensor larger than the request limits");
    return s_fail_at(P, depth, rc, "%s", kvc_strerror(rc));
}

/* Reads a NaN/Infinity/-Infinity token if present; returns 1 and sets *v. */
static inline int s_special(kvc_json_cursor_t *c, double *v)
{
    char ch = *c->p;
    if (ch == 'N' && kvc_json_cursor_lit(c, "NaN", 3)) {
        c->p += 3;
        *v = NAN;
        return 1;
    }
    if (ch == 'I' && kvc_json_cursor_lit(c, "Infinity", 8)) {
        c->p += 8;
        *v = INFINITY;
        return 1;
    }
    if (ch == '-' && kvc_json_cursor_lit(c, "-Infinity", 9)) {
        c->p += 9;
        *v = -INFINITY;
        return 1;
    }
    return 0;
}

/* Parses one number of a fixed numeric dtype into w. */
static inline int s_number_into(s_parser_t *P, kvc_dtype_t dt, void *w, int depth)
{
    kvc_json_cursor_t *c = &P->c;
    const char *stop;
    int rc;
    double d;
    switch (dt) {
    case KVC_DT_FLOAT: {
        float f;
        rc = kvc_numfmt_parse_float(c->p, c->end, &f, &stop);
        if (rc) {
            if (c->p < c->end && s_special(c, &d)) {
                f = (float)d;
                memcpy(w, &f, 4);
                return KVC_OK;
            }
            break;
        }
        /* A decimal past FLT_MAX would silently become infinity; TF Serving
         * refuses such lossy conversions, and so do we (only the bare
         * Infinity tokens above give infinities). */
        if (__builtin_expect(isinf(f), 0)) {
            rc = KVC_ERANGE;
            break;
        }
        memcpy(w, &f, 4);
        c->p = stop;
        return KVC_OK;
    }
    case KVC_DT_DOUBLE:
    case KVC_DT_HALF:
        rc = kvc_numfmt_parse_double(c->p, c->end, &d, &stop);
        if (rc) {
            if (c->p < c->end && s_special(c, &d))
                stop = c->p;
            else
                break;
        } else if (__builtin_expect(isinf(d), 0)) {
            rc = KVC_ERANGE; /* as for float32 above */
            break;
        }
        if (dt == KVC_DT_DOUBLE) {
            memcpy(w, &d, 8);
        } else {
            uint16_t h = kvc_numfmt_float_to_half((float)d);
            if ((h & 0x7fff) == 0x7c00 && !isinf(d)) {
                rc = KVC_ERANGE; /* a finite decimal past the half range */
                break;
            }
            memcpy(w, &h, 2);
        }
        c->p = stop;
        return KVC_OK;
    case KVC_DT_UINT8:
    case KVC_DT_UINT16:
    case KVC_DT_UINT32:
    case KVC_DT_UINT64: {
        uint64_t u;
        rc = kvc_numfmt_parse_u64(c->p, c->end, &u, &stop);
        if (rc)
            break;
        uint64_t max = dt == KVC_DT_UINT8    ? 0xff
                       : dt == KVC_DT_UINT16 ? 0xffff
                       : dt == KVC_DT_UINT32 ? 0xffffffffu
                                             : UINT64_MAX;
        if (u > max) {
            rc = KVC_ERANGE;
            break;
        }
        c->p = stop;
        if (dt == KVC_DT_UINT8) {
            uint8_t v = (uint8_t)u;
            memcpy(w, &v, 1);
        } else if (dt == KVC_DT_UINT16) {
            uint16_t v = (uint16_t)u;
            memcpy(w, &v, 2);
        } else if (dt == KVC_DT_UINT32) {
            uint32_t v = (uint32_t)u;
            memcpy(w, &v, 4);
        } else {
            memcpy(w, &u, 8);
        }
        return KVC_OK;
    }
    default: {
        int64_t v;
        rc = kvc_numfmt_parse_i64(c->p, c->end, &v, &stop);
        if (rc)
            break;
        int64_t lo = dt == KVC_DT_INT8    ? INT8_MIN
                     : dt == KVC_DT_INT16 ? INT16_MIN
                     : dt == KVC_DT_INT32 ? INT32_MIN
                                          : INT64_MIN;
        int64_t hi = dt == KVC_DT_INT8    ? INT8_MAX
                     : dt == KVC_DT_INT16 ? INT16_MAX
                     : dt == KVC_DT_INT32 ? INT32_MAX
                                          : INT64_MAX;
        if (v < lo || v > hi) {
            rc = KVC_ERANGE;
            break;
        }
        c->p = stop;
        if (dt == KVC_DT_INT8) {
            int8_t x = (int8_t)v;
            memcpy(w, &x, 1);
        } else if (dt == KVC_DT_INT16) {
            int16_t x = (int16_t)v;
            memcpy(w, &x, 2);
        } else if (dt == KVC_DT_INT32) {
            int32_t x = (int32_t)v;
            memcpy(w, &x, 4);
        } else {
            memcpy(w, &v, 8);
        }
        return KVC_OK;
    }
    }
    if (rc == KVC_ERANGE)
        return s_fail_at(P, depth, KVC_EPARSE, "number out of range for %s", kvc_dtype_name(dt));
    if (rc == KVC_ENOMEM)
        return s_fail_at(P, depth, KVC_ENOMEM, "out of memory");
    if (c->p < c->end && (*c->p == '-' || (*c->p >= '0' && *c->p <= '9')))
        return s_fail_at(P, depth, KVC_EPARSE, "invalid number (expected %s)", s_expects(dt));
    return s_fail_at(P, depth, KVC_EPARSE, "expected %s", s_expects(dt));
}

/* Parses a string or {"b64": "..."} scalar into a string tensor. */
static int s_string_into(s_parser_t *P, s_value_t *V, int depth)
{
    kvc_json_cursor_t *c = &P->c;
    int b64 = 0;
    if (*c->p == '{') {
        if (!V->allow_b64)
            return s_fail_at(P, depth, KVC_EPARSE, "expected %s", s_expects(V->dtype));
        c->p++;
        char key[8];
        int rc = kvc_json_cursor_read_string(c, key, sizeof key, NULL);
        if (rc || strcmp(key, "b64") != 0)
            return s_fail_at(P, depth, KVC_EPARSE, "expected an object {\"b64\": \"...\"}");
        if ((rc = kvc_json_cursor_expect(c, ':')))
            return rc;
        if (kvc_json_cursor_peek(c) != '"')
            return s_fail_at(P, depth, KVC_EPARSE, "b64 value must be a string");
        b64 = 1;
    } else if (*c->p != '"') {
        return s_fail_at(P, depth, KVC_EPARSE, "expected %s", s_expects(V->dtype));
    }
    const char *raw;
    size_t n;
    int esc;
    int rc = kvc_json_cursor_string_span(c, &raw, &n, &esc);
    if (rc)
        return rc;
    char *at;
    rc = kvc_tensor_reserve_string(V->t, b64 ? n / 4 * 3 + 3 : n, &at);
    if (rc)
        return s_grow_fail(P, depth, rc);
    size_t used = n;
    if (b64) {
        long got = esc ? -1 : s_b64_decode(raw, n, (uint8_t *)at);
        if (got < 0)
            return s_fail_at(P, depth, KVC_EPARSE, "invalid base64");
        used = (size_t)got;
        if ((rc = kvc_json_cursor_expect(c, '}')))
            return rc;
    } else if (esc) {
        if ((rc = kvc_json_cursor_unescape(c, raw, n, at, &used)))
            return rc;
    } else {
        memcpy(at, raw, n);
    }
    return kvc_tensor_commit_string(V->t, used);
}

/* Parses one scalar of any kind into V (slow path; handles inference). */
static int s_scalar(s_parser_t *P, s_value_t *V, int depth)
{
    kvc_json_cursor_t *c = &P->c;
    if (c->p >= c->end)
        return kvc_json_cursor_unexpected(c, "a value");
    char ch = *c->p;
    int rc;
    if (!V->fixed && !V->t) {
        /* The first scalar decides the inferred dtype. */
        if (ch == '"' || ch == '{') {
            V->dtype = KVC_DT_STRING;
        } else if (ch == 't' || ch == 'f') {
            V->dtype = KVC_DT_BOOL;
        } else if (ch == 'N' || ch == 'I' || (ch == '-' && kvc_json_cursor_lit(c, "-I", 2))) {
            V->dtype = KVC_DT_FLOAT;
        } else {
            const char *q = c->p;
            while (q < c->end && (*q == '-' || *q == '+' || *q == '.' || *q == 'e' || *q == 'E' ||
                                  (*q >= '0' && *q <= '9')))
                q++;
            V->dtype = kvc_numfmt_is_integer_token(c->p, q) ? KVC_DT_INT64 : KVC_DT_FLOAT;
        }
    }
    if ((rc = s_ensure_tensor(P, V, depth)))
        return rc;
    if (!V->fixed && V->dtype == KVC_DT_INT64 && ch != '"' && ch != '{' && ch != 't' && ch != 'f') {
        /* An inferred int64 tensor meeting a float becomes float32. */
        const char *q = c->p;
        while (q < c->end && (*q == '-' || *q == '+' || *q == '.' || *q == 'e' || *q == 'E' ||
                              (*q >= '0' && *q <= '9')))
            q++;
        if (!kvc_numfmt_is_integer_token(c->p, q) || ch == 'N' || ch == 'I' ||
            kvc_json_cursor_lit(c, "-I", 2)) {
            kvc_tensor_convert(V->t, KVC_DT_FLOAT);
            V->dtype = KVC_DT_FLOAT;
        }
    }
    if (V->dtype == KVC_DT_STRING)
        return s_string_into(P, V, depth);
    if (V->dtype == KVC_DT_BOOL) {
        int b;
        if (kvc_json_cursor_lit(c, "true", 4)) {
            b = 1;
            c->p += 4;
        } else if (kvc_json_cursor_lit(c, "false", 5)) {
            b = 0;
            c->p += 5;
        } else {
            return s_fail_at(P, depth, KVC_EPARSE, "expected true or false");
        }
        uint8_t v = (uint8_t)b;
        if ((rc = kvc_tensor_append(V->t, &v, 1)))
            return s_grow_fail(P, depth, rc);
        return KVC_OK;
    }
    void *w;
    if ((rc = kvc_tensor_reserve(V->t, 1, &w)))
        return s_grow_fail(P, depth, rc);
    if ((rc = s_number_into(P, V->dtype, w, depth)))
        return rc;
    kvc_tensor_commit(V->t, 1);
    return KVC_OK;
}

/* Tells whether the object at c->p is {"b64": ...} (looks ahead only). */
static int s_is_b64_object(const kvc_json_cursor_t *c)
{
    kvc_json_cursor_t k = *c;
    if (k.p >= k.end || *k.p != '{')
        return 0;
    k.p++;
    kvc_json_cursor_ws(&k);
    if (!kvc_json_cursor_lit(&k, "\"b64\"", 5))
        return 0;
    k.p += 5;
    return kvc_json_cursor_peek(&k) == ':';
}

/*
 * The hot loop: the rest of an innermost list of numbers of a fixed numeric
 * dtype, cursor at the first element. Appends them and counts them.
 */
static int s_fast_list(s_parser_t *P, s_value_t *V, int level, uint64_t *count)
{
    kvc_json_cursor_t *c = &P->c;
    kvc_tensor_t *t = V->t;
    kvc_dtype_t dt = V->dtype;
    size_t es = kvc_dtype_size(dt);
    uint8_t *w = NULL;
    uint64_t room = 0, written = 0, n = 0;
    int rc;
    for (;;) {
        if (room == 0) {
            kvc_tensor_commit(t, written);
            written = 0;
            void *at;
            room = S_CHUNK;
            rc = kvc_tensor_reserve(t, room, &at);
            if (rc == KVC_ERANGE) {
                room = 1;
                rc = kvc_tensor_reserve(t, room, &at);
            }
            if (rc)
                return s_grow_fail(P, level + 1, rc);
            w = at;
        }
        P->idx[level] = n;
        if (c->p < c->end && *c->p == '[') {
            kvc_tensor_commit(t, written);
            return s_fail_at(P, level + 1, KVC_EPARSE,
                             "expected a scalar, got a list (elements must have the same shape)");
        }
        /* float32 and int32/int64 (token ids), the common cases, parse here
         * without the dtype switch; anything unusual (NaN/Infinity tokens, a
         * number past the range, a malformed one) goes to s_number_into for
         * the full story. */
        float f;
        int64_t i;
        const char *stop;
        if (dt == KVC_DT_FLOAT && kvc_numfmt_parse_float(c->p, c->end, &f, &stop) == KVC_OK &&
            __builtin_expect(!isinf(f), 1)) {
            memcpy(w, &f, 4);
            c->p = stop;
        } else if (dt == KVC_DT_INT32 && kvc_numfmt_parse_i64(c->p, c->end, &i, &stop) == KVC_OK &&
                   i >= INT32_MIN && i <= INT32_MAX) {
            int32_t i32 = (int32_t)i;
            memcpy(w, &i32, 4);
            c->p = stop;
        } else if (dt == KVC_DT_INT64 && kvc_numfmt_parse_i64(c->p, c->end, &i, &stop) == KVC_OK) {
            memcpy(w, &i, 8);
            c->p = stop;
        } else if ((rc = s_number_into(P, dt, w, level + 1))) {
            kvc_tensor_commit(t, written);
            return rc;
        }
        w += es;
        room--;
        written++;
        n++;
        /* Common case ", " or "," or "]" without the generic whitespace call. */
        if (c->p < c->end && *c->p == ',') {
            c->p++;
            if (c->p < c->end && (unsigned char)*c->p <= ' ')
                kvc_json_cursor_ws(c);
            continue;
        }
        kvc_json_cursor_ws(c);
        if (c->p < c->end && *c->p == ',') {
            c->p++;
            kvc_json_cursor_ws(c);
            continue;
        }
        if (c->p < c->end && *c->p == ']') {
            c->p++;
            break;
        }
        kvc_tensor_commit(t, written);
        return kvc_json_cursor_unexpected(c, "',' or ']'");
    }
    kvc_tensor_commit(t, written);
    *count = n;
    return KVC_OK;
}

/* Parses the value at nesting level into V, checking and learning the shape. */
static int s_level(s_parser_t *P, s_value_t *V, int level)
{
    kvc_json_cursor_t *c = &P->c;
    int ch = kvc_json_cursor_peek(c);
    if (ch < 0)
        return kvc_json_cursor_unexpected(c, "a value");
    int is_list = ch == '[';
    if (V->ndim < 0) {
        if (!is_list) {
            V->ndim = level;
            return s_scalar(P, V, level);
        }
    } else if (level == V->ndim) {
        if (is_list)
            return s_fail_at(P, level, KVC_EPARSE,
                             "expected a scalar, got a list (elements must have the same shape)");
        return s_scalar(P, V, level);
    } else if (!is_list) {
        return s_fail_at(P, level, KVC_EPARSE, "expected a list of %lld elements in dimension %d",
                         (long long)V->shape[level], level + P->dim_base);
    }
    if (level >= KVC_TENSOR_MAX_DIMS - P->dim_base)
        return s_fail_at(P, level, KVC_EPARSE, "more than %d dimensions", KVC_TENSOR_MAX_DIMS);
    c->p++;
    uint64_t count = 0;
    int rc;
    int first = kvc_json_cursor_peek(c);
    if (first < 0)
        return kvc_json_cursor_unexpected(c, "a value or ']'");
    if (first == ']') {
        c->p++;
        if (V->ndim < 0) {
            V->ndim = level + 1;
            V->shape[level] = -1;
        }
    } else {
        /* A first element that is no list fixes the depth here, as the
         * scalar itself would; knowing it now lets the first innermost
         * list (all of a flat one) take the fast path. */
        if (V->ndim < 0 && first != '[')
            V->ndim = level + 1;
        /* A signature's dtype is known before any scalar: create the tensor
         * now, so the first innermost list (often the only one, as in
         * {"instances": [[ids...]]}) takes the fast path too. */
        if (!V->t && V->fixed && first != '[' && (rc = s_ensure_tensor(P, V, level + 1)))
            return rc;
        int inner_fast = V->t && (V->fixed || V->dtype == KVC_DT_FLOAT) &&
                         V->dtype != KVC_DT_STRING && V->dtype != KVC_DT_BOOL && first != '[' &&
                         V->ndim == level + 1;
        if (inner_fast) {
            if ((rc = s_fast_list(P, V, level, &count)))
                return rc;
        } else {
            for (;;) {
                P->idx[level] = count;
                if ((rc = s_level(P, V, level + 1)))
                    return rc;
                count++;
                int nx = kvc_json_cursor_peek(c);
                if (nx == ',') {
                    c->p++;
                    continue;
                }
                if (nx == ']') {
                    c->p++;
                    break;
                }
                return kvc_json_cursor_unexpected(c, "',' or ']'");
            }
        }
    }
    if (V->shape[level] < 0) {
        V->shape[level] = (int64_t)count;
    } else if ((uint64_t)V->shape[level] != count) {
        return s_fail_at(P, level, KVC_EPARSE, "expected %lld elements in dimension %d, got %llu",
                         (long long)V->shape[level], level + P->dim_base,
                         (unsigned long long)count);
    }
    return KVC_OK;
}

/* Parses one whole value (scalar or nested list) into V. */
static int s_value(s_parser_t *P, s_value_t *V)
{
    if (V->ndim < 0)
        for (int i = 0; i < KVC_TENSOR_MAX_DIMS; i++)
            V->shape[i] = -1;
    return s_level(P, V, 0);
}

/* Prepares a value slot for a named input, looking up its signature dtype. */
static int s_value_init(s_value_t *V, const char *name, const kvc_json_tensor_opts_t *opts)
{
    memset(V, 0, sizeof *V);
    V->ndim = -1;
    V->allow_b64 = 1;
    V->dtype = KVC_DT_FLOAT;
    V->name = kvc_strdup(name);
    if (!V->name)
        return KVC_ENOMEM;
    for (size_t i = 0; i < opts->n_specs; i++) {
        if (opts->specs[i].name && strcmp(opts->specs[i].name, name) == 0 &&
            kvc_dtype_valid(opts->specs[i].dtype)) {
            V->dtype = opts->specs[i].dtype;
            V->fixed = 1;
        }
    }
    return KVC_OK;
}

/* Frees a value slot's name and unclaimed tensor. */
static void s_value_free(s_value_t *V)
{
    kvc_free(V->name);
    kvc_tensor_destroy(&V->t);
}

/* Gives the value's tensor its final shape (batch first if batch >= 0). */
static int s_value_finish(s_parser_t *P, s_value_t *V, int64_t batch)
{
    int rc = s_ensure_tensor(P, V, 0);
    if (rc)
        return rc;
    int64_t shape[KVC_TENSOR_MAX_DIMS];
    int nd = 0;
    if (batch >= 0)
        shape[nd++] = batch;
    for (int i = 0; i < V->ndim && nd < KVC_TENSOR_MAX_DIMS; i++)
        shape[nd++] = V->shape[i] < 0 ? 0 : V->shape[i];
    rc = kvc_tensor_set_shape(V->t, shape, nd);
    if (rc)
        return kvc_err_set(P->c.err, KVC_EPARSE, "%s: inconsistent shape", V->name);
    return KVC_OK;
}

/* Checks the total of every tensor so far against the request limits. */
static int s_check_total(s_parser_t *P, const s_value_t *vals, size_t n)
{
    uint64_t bytes = 0, elems = 0;
    for (size_t i = 0; i < n; i++) {
        if (!vals[i].t)
            continue;
        bytes +=
            kvc_tensor_nbytes(vals[i].t) +
            (kvc_tensor_dtype(vals[i].t) == KVC_DT_STRING ? 8 * kvc_tensor_count(vals[i].t) : 0);
        elems += kvc_tensor_count(vals[i].t);
    }
    if (bytes > P->lim->max_bytes || elems > P->lim->max_elements)
        return kvc_err_set(
            P->c.err, KVC_ERANGE, "request too large (limits: %llu elements, %llu bytes)",
            (unsigned long long)P->lim->max_elements, (unsigned long long)P->lim->max_bytes);
    return KVC_OK;
}

/* The value slots of one request, grown as inputs are met (most requests
 * have one, and a table for S_MAX_INPUTS would be cleared on every one). */
typedef struct {
    s_value_t *v;
    size_t n, cap;
} s_values_t;

/* Writes the specs' names as "'a', 'b'" into names (cut with ", ..."). */
static void s_spec_names(const kvc_json_tensor_opts_t *opts, char *names, size_t size)
{
    size_t n = 0;
    names[0] = '\0';
    for (size_t i = 0; i < opts->n_specs && n < size; i++) {
        const char *nm = opts->specs[i].name ? opts->specs[i].name : "";
        if (n + strlen(nm) + 8 >= size) {
            snprintf(names + n, size - n, ", ...");
            break;
        }
        n += (size_t)snprintf(names + n, size - n, "%s'%s'", i ? ", " : "", nm);
    }
}

/* Strict opts: refuses an input the specs do not name with a dtype. */
static int s_strict_check(s_parser_t *P, const char *where, const char *name,
                          const kvc_json_tensor_opts_t *opts)
{
    for (size_t i = 0; i < opts->n_specs; i++)
        if (opts->specs[i].name && strcmp(opts->specs[i].name, name) == 0 &&
            kvc_dtype_valid(opts->specs[i].dtype))
            return KVC_OK;
    if (opts->n_specs == 0)
        return kvc_err_set(P->c.err, KVC_EPARSE,
                           "%s: this model declares no inputs, so none can be sent", where);
    char names[160];
    s_spec_names(opts, names, sizeof names);
    if (!name[0])
        return kvc_err_set(P->c.err, KVC_EPARSE,
                           "%s: an unnamed input, but the model's %zu inputs (%s) must each be "
                           "sent by name",
                           where, opts->n_specs, names);
    return kvc_err_set(P->c.err, KVC_EPARSE, "%s: '%.128s' is not an input of this model (%s)",
                       where, name, names);
}

/* Finds or (when allowed) adds the value slot for name. A slot pointer is
 * good until the next call adds one. */
static int s_slot(s_parser_t *P, s_values_t *vs, const char *where, const char *name,
                  int may_add, const kvc_json_tensor_opts_t *opts, s_value_t **out)
{
    for (size_t i = 0; i < vs->n; i++) {
        if (strcmp(vs->v[i].name, name) == 0) {
            *out = &vs->v[i];
            return KVC_OK;
        }
    }
    if (!may_add)
        return KVC_ENOENT;
    if (opts->strict) {
        int rc = s_strict_check(P, where, name, opts);
        if (rc)
            return rc;
    }
    if (vs->n >= S_MAX_INPUTS)
        return kvc_err_set(P->c.err, KVC_EPARSE, "%s: more than %d named inputs", P->prefix,
                           S_MAX_INPUTS);
    if (vs->n == vs->cap) {
        size_t cap = vs->cap ? vs->cap * 2 : 4;
        s_value_t *v = kvc_realloc(vs->v, cap * sizeof *v);
        if (!v)
            return kvc_err_set(P->c.err, KVC_ENOMEM, "out of memory");
        vs->v = v;
        vs->cap = cap;
    }
    if (s_value_init(&vs->v[vs->n], name, opts))
        return kvc_err_set(P->c.err, KVC_ENOMEM, "out of memory");
    *out = &vs->v[vs->n++];
    return KVC_OK;
}

/* The name and dtype source for an unnamed input. */
static const char *s_unnamed(const kvc_json_tensor_opts_t *opts)
{
    return opts->n_specs == 1 && opts->specs[0].name ? opts->specs[0].name : "";
}

/* Parses "instances": [...] into value slots. */
static int s_instances(s_parser_t *P, s_values_t *vs, const kvc_json_tensor_opts_t *opts,
                       int64_t *batch)
{
    kvc_json_cursor_t *c = &P->c;
    if (kvc_json_cursor_peek(c) != '[')
        return kvc_json_cursor_fail(c, KVC_EPARSE, "instances: expected a list");
    /* Look at the first instance to pick plain values or named objects. */
    kvc_json_cursor_t look = *c;
    look.p++;
    int first = kvc_json_cursor_peek(&look);
    if (first == ']')
        return kvc_err_set(c->err, KVC_EPARSE, "instances: empty list");
    if (first != '{' || s_is_b64_object(&look)) {
        s_value_t *V;
        int rc = s_slot(P, vs, "instances", s_unnamed(opts), 1, opts, &V);
        if (rc)
            return rc;
        if (opts->n_specs > 1 && !P->amb) {
            P->amb = 2;
            P->amb_at = (size_t)(look.p - c->base);
        }
        snprintf(P->prefix, sizeof P->prefix, "instances");
        P->dim_base = 0;
        if ((rc = s_value(P, V)))
            return rc;
        if (V->ndim == 0)
            return kvc_err_set(c->err, KVC_EPARSE, "instances: expected a list");
        *batch = -1;
        return s_check_total(P, vs->v, vs->n);
    }
    c->p++;
    uint64_t inst = 0;
    for (;;) {
        if (kvc_json_cursor_peek(c) != '{' || s_is_b64_object(c))
            return kvc_json_cursor_fail(c, KVC_EPARSE,
                                        "instances[%llu]: expected an object of named inputs "
                                        "like instances[0]",
                                        (unsigned long long)inst);
        c->p++;
        size_t keys = 0;
        int nx = kvc_json_cursor_peek(c);
        while (nx != '}') {
            char name[S_MAX_NAME], what[64];
            snprintf(what, sizeof what, "instances[%llu]: input name", (unsigned long long)inst);
            int rc = kvc_json_cursor_read_name(c, what, name, sizeof name, NULL);
            if (rc)
                return rc;
            if ((rc = kvc_json_cursor_expect(c, ':')))
                return rc;
            s_value_t *V;
            rc = s_slot(P, vs, "instances[0]", name, inst == 0, opts, &V);
            if (rc == KVC_ENOENT)
                return kvc_err_set(c->err, KVC_EPARSE,
                                   "instances[%llu]: input '%s' is not in instances[0]",
                                   (unsigned long long)inst, name);
            if (rc)
                return rc;
            if (V->seen_in == inst + 1)
                return kvc_err_set(c->err, KVC_EPARSE, "instances[%llu]: duplicate input '%s'",
                                   (unsigned long long)inst, name);
            V->seen_in = inst + 1;
            keys++;
            snprintf(P->prefix, sizeof P->prefix, "instances[%llu].%s", (unsigned long long)inst,
                     name);
            P->dim_base = 1;
            if ((rc = s_value(P, V)))
                return rc;
            if ((rc = s_check_total(P, vs->v, vs->n)))
                return rc;
            nx = kvc_json_cursor_peek(c);
            if (nx == ',') {
                c->p++;
                nx = kvc_json_cursor_peek(c);
                if (nx == '}')
                    return kvc_json_cursor_unexpected(c, "a key");
                continue;
            }
            if (nx != '}')
                return kvc_json_cursor_unexpected(c, "',' or '}'");
        }
        c->p++;
        if (keys != vs->n || keys == 0) {
            for (size_t i = 0; i < vs->n; i++)
                if (vs->v[i].seen_in != inst + 1)
                    return kvc_err_set(c->err, KVC_EPARSE, "instances[%llu]: missing input '%s'",
                                       (unsigned long long)inst, vs->v[i].name);
            return kvc_err_set(c->err, KVC_EPARSE, "instances[%llu]: no inputs",
                               (unsigned long long)inst);
        }
        inst++;
        nx = kvc_json_cursor_peek(c);
        if (nx == ',') {
            c->p++;
            continue;
        }
        if (nx == ']') {
            c->p++;
            break;
        }
        return kvc_json_cursor_unexpected(c, "',' or ']'");
    }
    *batch = (int64_t)inst;
    return KVC_OK;
}

/* Parses "inputs": value-or-object into value slots. */
static int s_inputs(s_parser_t *P, s_values_t *vs, const kvc_json_tensor_opts_t *opts)
{
    kvc_json_cursor_t *c = &P->c;
    int ch = kvc_json_cursor_peek(c);
    P->dim_base = 0;
    if (ch != '{' || s_is_b64_object(c)) {
        s_value_t *V;
        int rc = s_slot(P, vs, "inputs", s_unnamed(opts), 1, opts, &V);
        if (rc)
            return rc;
        if (opts->n_specs > 1 && !P->amb) {
            P->amb = 1;
            P->amb_at = (size_t)(c->p - c->base);
        }
        snprintf(P->prefix, sizeof P->prefix, "inputs");
        if ((rc = s_value(P, V)))
            return rc;
        return s_check_total(P, vs->v, vs->n);
    }
    c->p++;
    int nx = kvc_json_cursor_peek(c);
    if (nx == '}')
        return kvc_json_cursor_fail(c, KVC_EPARSE, "inputs: empty object");
    for (;;) {
        char name[S_MAX_NAME];
        int rc = kvc_json_cursor_read_name(c, "inputs: input name", name, sizeof name, NULL);
        if (rc)
            return rc;
        if ((rc = kvc_json_cursor_expect(c, ':')))
            return rc;
        s_value_t *V;
        size_t before = vs->n;
        if ((rc = s_slot(P, vs, "inputs", name, 1, opts, &V)))
            return rc;
        if (vs->n == before)
            return kvc_err_set(c->err, KVC_EPARSE, "inputs: duplicate input '%s'", name);
        snprintf(P->prefix, sizeof P->prefix, "inputs.%s", name);
        if ((rc = s_value(P, V)))
            return rc;
        if ((rc = s_check_total(P, vs->v, vs->n)))
            return rc;
        nx = kvc_json_cursor_peek(c);
        if (nx == ',') {
            c->p++;
            continue;
        }
        if (nx == '}') {
            c->p++;
            return KVC_OK;
        }
        return kvc_json_cursor_unexpected(c, "',' or '}'");
    }
}

/*
 * Refuses an unnamed value for a signature of several inputs: the backend
 * would only say it has no input named ''.
 */
static int s_ambiguous_fail(s_parser_t *P, const kvc_json_tensor_opts_t *opts)
{
    char names[160];
    s_spec_names(opts, names, sizeof names);
    P->c.p = P->c.base + P->amb_at;
    if (P->amb == 1)
        return kvc_json_cursor_fail(&P->c, KVC_EPARSE,
                                    "inputs: the signature has %zu inputs (%s), so 'inputs' must "
                                    "be an object keyed by input name",
                                    opts->n_specs, names);
    return kvc_json_cursor_fail(&P->c, KVC_EPARSE,
                                "instances[0]: the signature has %zu inputs (%s), so each "
                                "instance must be an object keyed by input name",
                                opts->n_specs, names);
}

int kvc_json_tensor_parse_request(const char *json, size_t len, const kvc_json_tensor_opts_t *opts,
                                  kvc_json_tensor_request_t *req, kvc_err_t *err)
{
    memset(req, 0, sizeof *req);
    s_parser_t *P = kvc_calloc(1, sizeof *P);
    s_values_t vs = {0};
    int64_t batch = -1;
    int rc = KVC_OK, seen_inst = 0, seen_inputs = 0;
    if (!P) {
        rc = kvc_err_set(err, KVC_ENOMEM, "out of memory");
        goto done;
    }
    P->c.base = json;
    P->c.p = json;
    P->c.end = json + len;
    P->c.err = err;
    P->lim = &opts->limits;
    kvc_json_cursor_t *c = &P->c;
    if ((rc = kvc_json_cursor_expect(c, '{')))
        goto done;
    int nx = kvc_json_cursor_peek(c);
    while (nx != '}') {
        char key[64];
        if ((rc = kvc_json_cursor_read_string(c, key, sizeof key, NULL)) ||
            (rc = kvc_json_cursor_expect(c, ':')))
            goto done;
        if (strcmp(key, "instances") == 0 || strcmp(key, "inputs") == 0) {
            int is_inst = key[1] == 'n' && key[2] == 's';
            if (seen_inst || seen_inputs) {
                rc = kvc_json_cursor_fail(c, KVC_EPARSE,
                                          (seen_inst && is_inst) || (seen_inputs && !is_inst)
                                              ? "duplicate key '%s'"
                                              : "'%s': a request has either 'instances' or "
                                                "'inputs', not both",
                                          key);
                goto done;
            }
            if (is_inst) {
                seen_inst = 1;
                rc = s_instances(P, &vs, opts, &batch);
            } else {
                seen_inputs = 1;
                rc = s_inputs(P, &vs, opts);
            }
            if (rc)
                goto done;
        } else if (strcmp(key, "signature_name") == 0) {
            if (req->signature_name) {
                rc = kvc_json_cursor_fail(c, KVC_EPARSE, "duplicate key 'signature_name'");
                goto done;
            }
            char sig[S_MAX_NAME];
            if ((rc = kvc_json_cursor_read_name(c, "signature_name", sig, sizeof sig, NULL)))
                goto done;
            req->signature_name = kvc_strdup(sig);
            if (!req->signature_name) {
                rc = kvc_err_set(err, KVC_ENOMEM, "out of memory");
                goto done;
            }
        } else if ((rc = kvc_json_cursor_skip(c))) {
            goto done;
        }
        nx = kvc_json_cursor_peek(c);
        if (nx == ',') {
            c->p++;
            nx = kvc_json_cursor_peek(c);
            if (nx == '}') {
                rc = kvc_json_cursor_unexpected(c, "a key");
                goto done;
            }
            continue;
        }
        if (nx != '}') {
            rc = kvc_json_cursor_unexpected(c, "',' or '}'");
            goto done;
        }
    }
    c->p++;
    if (kvc_json_cursor_peek(c) != -1) {
        rc = kvc_json_cursor_fail(c, KVC_EPARSE, "trailing bytes after the request object");
        goto done;
    }
    if (!seen_inst && !seen_inputs) {
        rc = kvc_err_set(err, KVC_EPARSE, "missing 'instances' or 'inputs'");
        goto done;
    }
    /* Only for the default signature: see kvc_json_tensor_opts_t.specs. */
    if (P->amb && (!req->signature_name || !req->signature_name[0])) {
        rc = s_ambiguous_fail(P, opts);
        goto done;
    }
    req->format = seen_inst ? KVC_JSON_TENSOR_ROW : KVC_JSON_TENSOR_COLUMNAR;
    req->inputs = kvc_tensor_list_new();
    if (!req->inputs) {
        rc = kvc_err_set(err, KVC_ENOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < vs.n; i++) {
        if ((rc = s_value_finish(P, &vs.v[i], batch)))
            goto done;
        if ((rc = kvc_tensor_list_add(req->inputs, &vs.v[i].t))) {
            rc = kvc_err_set(err, rc, "%s: %s", vs.v[i].name, kvc_strerror(rc));
            goto done;
        }
    }
done:
    for (size_t i = 0; i < vs.n; i++)
        s_value_free(&vs.v[i]);
    kvc_free(vs.v);
    kvc_free(P);
    if (rc)
        kvc_json_tensor_request_clear(req);
    return rc;
}

void kvc_json_tensor_request_clear(kvc_json_tensor_request_t *req)
{
    if (!req)
        return;
    kvc_free(req->signature_name);
    kvc_tensor_list_destroy(&req->inputs);
    memset(req, 0, sizeof *req);
}

int kvc_json_tensor_read_values(kvc_json_cursor_t *c, kvc_tensor_t *t, const char *path,
                                int allow_b64)
{
    s_parser_t P;
    memset(&P, 0, sizeof P);
    P.c = *c;
    kvc_tensor_limits_t unlimited = {UINT64_MAX, UINT64_MAX};
    P.lim = &unlimited; /* the tensor enforces its own limits */
    snprintf(P.prefix, sizeof P.prefix, "%s", path);
    s_value_t V;
    memset(&V, 0, sizeof V);
    V.t = t;
    V.dtype = kvc_tensor_dtype(t);
    V.fixed = 1;
    V.allow_b64 = allow_b64;
    V.ndim = -1;
    int rc;
    /* Triton reads "data" only as a list (a bare scalar counts as no
     * elements), so a scalar is refused here too, even for a one-element
     * tensor: clients that work with Triton work with us. */
    if (kvc_json_cursor_peek(&P.c) != '[')
        rc = kvc_json_cursor_fail(&P.c, KVC_EPARSE, "%s: expected a list", path);
    else
        rc = s_value(&P, &V);
    c->p = P.c.p;
    return rc;
}

/* ---- writing ------------------------------------------------------------------ */

/* Makes room for n more bytes (plus the NUL kvc_buf_t keeps). */
static inline int s_room(kvc_buf_t *b, size_t n)
{
    if (b->cap && b->len + n < b->cap)
        return KVC_OK;
    if (n > b->max || b->len > b->max - n)
        return KVC_ERANGE;
    size_t need = b->len + n + 1;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (cap > b->max + 1)
        cap = b->max + 1;
    char *d = kvc_realloc(b->data, cap);
    if (!d)
        return KVC_ENOMEM;
    b->data = d;
    b->cap = cap;
    return KVC_OK;
}

/* Appends n bytes. */
static inline int s_put(kvc_buf_t *b, const char *s, size_t n)
{
    int rc = s_room(b, n);
    if (rc)
        return rc;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    return KVC_OK;
}

int kvc_json_tensor_write_string(kvc_buf_t *out, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    /* Worst case every byte becomes \u00XX. */
    if (n > (SIZE_MAX - 2) / 6)
        return KVC_ERANGE;
    int rc = s_room(out, n + 2);
    if (rc)
        return rc;
    out->data[out->len++] = '"';
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && (unsigned char)s[j] >= 0x20 && s[j] != '"' && s[j] != '\\')
            j++;
        if ((rc = s_put(out, s + i, j - i)))
            return rc;
        if (j == n)
            break;
        unsigned char ch = (unsigned char)s[j];
        char esc[6] = {'\\', 0, 0, 0, 0, 0};
        size_t en = 2;
        switch (ch) {
        case '"':
            esc[1] = '"';
            break;
        case '\\':
            esc[1] = '\\';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[ch >> 4];
            esc[5] = hex[ch & 15];
            en = 6;
        }
        if ((rc = s_put(out, esc, en)))
            return rc;
        i = j + 1;
    }
    return s_put(out, "\"", 1);
}

/* Appends {"b64": "..."} for n bytes. */
static int s_write_b64(kvc_buf_t *out, const uint8_t *s, size_t n)
{
    size_t enc = (n + 2) / 3 * 4;
    int rc = s_room(out, enc + 12);
    if (rc)
        return rc;
    char *w = out->data + out->len;
    memcpy(w, "{\"b64\": \"", 9);
    w += 9;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        *w++ = s_b64[v >> 18];
        *w++ = s_b64[(v >> 12) & 63];
        *w++ = s_b64[(v >> 6) & 63];
        *w++ = s_b64[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)s[i] << 16 | (i + 1 < n ? (uint32_t)s[i + 1] << 8 : 0);
        *w++ = s_b64[v >> 18];
        *w++ = s_b64[(v >> 12) & 63];
        *w++ = i + 1 < n ? s_b64[(v >> 6) & 63] : '=';
        *w++ = '=';
    }
    *w++ = '"';
    *w++ = '}';
    out->len = (size_t)(w - out->data);
    return KVC_OK;
}

/* Tells whether an output name asks for base64 (TF Serving's "_bytes"). */
static int s_bytes_name(const char *name)
{
    size_t n = strlen(name);
    return n >= 6 && memcmp(name + n - 6, "_bytes", 6) == 0;
}

/* Appends elements [from, from+n) of t, comma separated, no brackets. */
static int s_write_run(kvc_buf_t *out, const kvc_tensor_t *t, uint64_t from, uint64_t n,
                       int b64_mode)
{
    kvc_dtype_t dt = kvc_tensor_dtype(t);
    const uint8_t *data = kvc_tensor_cdata(t);
    size_t es = kvc_dtype_size(dt);
    int rc;
    if (dt == KVC_DT_STRING) {
        for (uint64_t i = 0; i < n; i++) {
            size_t len;
            const uint8_t *s = kvc_tensor_string(t, from + i, &len);
            if (i && (rc = s_put(out, ",", 1)))
                return rc;
            if (b64_mode == 2 || (b64_mode == 1 && !kvc_json_utf8_valid(s, len)))
                rc = s_write_b64(out, s, len);
            else if (!kvc_json_utf8_valid(s, len))
                rc = KVC_EINVAL;
            else
                rc = kvc_json_tensor_write_string(out, (const char *)s, len);
            if (rc)
                return rc;
        }
        return KVC_OK;
    }
    if (n == 0)
        return KVC_OK;
    const uint8_t *p = data + from * es;
    for (uint64_t i = 0; i < n; i++, p += es) {
        if ((rc = s_room(out, KVC_NUMFMT_MAX + 1)))
            return rc;
        char *w = out->data + out->len;
        if (i)
            *w++ = ',';
        switch (dt) {
        case KVC_DT_FLOAT: {
            float f;
            memcpy(&f, p, 4);
            w += kvc_numfmt_write_float(f, w);
            break;
        }
        case KVC_DT_DOUBLE: {
            double d;
            memcpy(&d, p, 8);
            w += kvc_numfmt_write_double(d, w);
            break;
        }
        case KVC_DT_HALF: {
            uint16_t h;
            memcpy(&h, p, 2);
            w += kvc_numfmt_write_float(kvc_numfmt_half_to_float(h), w);
            break;
        }
        case KVC_DT_BOOL:
            if (*p) {
                memcpy(w, "true", 4);
                w += 4;
            } else {
                memcpy(w, "false", 5);
                w += 5;
            }
            break;
        case KVC_DT_INT8:
            w += kvc_numfmt_write_i64((int8_t)*p, w);
            break;
        case KVC_DT_UINT8:
            w += kvc_numfmt_write_u64(*p, w);
            break;
        case KVC_DT_INT16: {
            int16_t v;
            memcpy(&v, p, 2);
            w += kvc_numfmt_write_i64(v, w);
            break;
        }
        case KVC_DT_UINT16: {
            uint16_t v;
            memcpy(&v, p, 2);
            w += kvc_numfmt_write_u64(v, w);
            break;
        }
        case KVC_DT_INT32: {
            int32_t v;
            memcpy(&v, p, 4);
            w += kvc_numfmt_write_i64(v, w);
            break;
        }
        case KVC_DT_UINT32: {
            uint32_t v;
            memcpy(&v, p, 4);
            w += kvc_numfmt_write_u64(v, w);
            break;
        }
        case KVC_DT_INT64: {
            int64_t v;
            memcpy(&v, p, 8);
            w += kvc_numfmt_write_i64(v, w);
            break;
        }
        case KVC_DT_UINT64: {
            uint64_t v;
            memcpy(&v, p, 8);
            w += kvc_numfmt_write_u64(v, w);
            break;
        }
        default:
            return KVC_EINVAL;
        }
        out->len = (size_t)(w - out->data);
    }
    return KVC_OK;
}

/* Appends the sub-tensor at flat offset from, dimensions level..ndim-1. */
static int s_write_nested(kvc_buf_t *out, const kvc_tensor_t *t, int level, uint64_t from,
                          int b64_mode)
{
    int nd = kvc_tensor_ndim(t);
    const int64_t *shape = kvc_tensor_shape(t);
    int rc;
    if (level == nd)
        return s_write_run(out, t, from, 1, b64_mode);
    uint64_t inner = 1;
    for (int i = level + 1; i < nd; i++)
        inner *= (uint64_t)shape[i];
    if ((rc = s_put(out, "[", 1)))
        return rc;
    if (level == nd - 1) {
        rc = s_write_run(out, t, from, (uint64_t)shape[level], b64_mode);
    } else {
        for (int64_t i = 0; i < shape[level]; i++) {
            if (i && (rc = s_put(out, ",", 1)))
                return rc;
            if ((rc = s_write_nested(out, t, level + 1, from + (uint64_t)i * inner, b64_mode)))
                return rc;
        }
    }
    if (rc)
        return rc;
    return s_put(out, "]", 1);
}

int kvc_json_tensor_write_values(kvc_buf_t *out, const kvc_tensor_t *t, int flat, int b64_ok)
{
    int mode = !b64_ok ? 0 : s_bytes_name(kvc_tensor_name(t)) ? 2 : 1;
    if (!flat)
        return s_write_nested(out, t, 0, 0, mode);
    int rc = s_put(out, "[", 1);
    if (!rc)
        rc = s_write_run(out, t, 0, kvc_tensor_count(t), mode);
    if (!rc)
        rc = s_put(out, "]", 1);
    return rc;
}

/* Appends "name": for an object member. */
static int s_key(kvc_buf_t *out, const char *name)
{
    int rc = kvc_json_tensor_write_string(out, name, strlen(name));
    return rc ? rc : s_put(out, ": ", 2);
}

int kvc_json_tensor_write_response(const kvc_tensor_list_t *outputs,
                                   kvc_json_tensor_format_t format, kvc_buf_t *out, kvc_err_t *err)
{
    size_t n = kvc_tensor_list_size(outputs);
    size_t start = out->len;
    int rc;
    if (n == 0)
        return kvc_err_set(err, KVC_EINVAL, "no outputs");
    if (format == KVC_JSON_TENSOR_COLUMNAR) {
        rc = s_put(out, "{\"outputs\": ", 12);
        if (!rc && n == 1) {
            rc = kvc_json_tensor_write_values(out, kvc_tensor_list_at(outputs, 0), 0, 1);
        } else if (!rc) {
            rc = s_put(out, "{", 1);
            for (size_t i = 0; !rc && i < n; i++) {
                const kvc_tensor_t *t = kvc_tensor_list_at(outputs, i);
                if (i)
                    rc = s_put(out, ", ", 2);
                if (!rc)
                    rc = s_key(out, kvc_tensor_name(t));
                if (!rc)
                    rc = kvc_json_tensor_write_values(out, t, 0, 1);
            }
            if (!rc)
                rc = s_put(out, "}", 1);
        }
    } else {
        int64_t batch = -1;
        for (size_t i = 0; i < n; i++) {
            const kvc_tensor_t *t = kvc_tensor_list_at(outputs, i);
            if (kvc_tensor_ndim(t) < 1)
                return kvc_err_set(err, KVC_EINVAL, "output '%s' has no batch dimension",
                                   kvc_tensor_name(t));
            int64_t b = kvc_tensor_shape(t)[0];
            if (batch >= 0 && b != batch)
                return kvc_err_set(err, KVC_EINVAL,
                                   "outputs have different batch sizes (%lld for '%s', %lld)",
                                   (long long)b, kvc_tensor_name(t), (long long)batch);
            batch = b;
        }
        rc = s_put(out, "{\"predictions\": ", 16);
        if (!rc && n == 1) {
            rc = kvc_json_tensor_write_values(out, kvc_tensor_list_at(outputs, 0), 0, 1);
        } else if (!rc) {
            rc = s_put(out, "[", 1);
            for (int64_t b = 0; !rc && b < batch; b++) {
                if (b)
                    rc = s_put(out, ",", 1);
                if (!rc)
                    rc = s_put(out, "{", 1);
                for (size_t i = 0; !rc && i < n; i++) {
                    const kvc_tensor_t *t = kvc_tensor_list_at(outputs, i);
                    uint64_t per = kvc_tensor_count(t) / (uint64_t)(batch ? batch : 1);
                    int mode = s_bytes_name(kvc_tensor_name(t)) ? 2 : 1;
                    if (i)
                        rc = s_put(out, ", ", 2);
                    if (!rc)
                        rc = s_key(out, kvc_tensor_name(t));
                    if (!rc)
                        rc = s_write_nested(out, t, 1, (uint64_t)b * per, mode);
                }
                if (!rc)
                    rc = s_put(out, "}", 1);
            }
            if (!rc)
                rc = s_put(out, "]", 1);
        }
    }
    if (!rc)
        rc = s_put(out, "}", 1);
    if (rc) {
        out->len = start;
        if (out->data)
            out->data[start] = '\0';
        return kvc_err_set(err, rc, "writing the response: %s", kvc_strerror(rc));
    }
    out->data[out->len] = '\0';
    return KVC_OK;
}
