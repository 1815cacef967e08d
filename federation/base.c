/*
 * base.c - error strings, the allocation wrapper and bounded buffers shared
 * by every module. Nothing here may touch I/O, clocks or randomness.
 */
#include "base.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *s_errors[] = {
    "success",
    "out of memory",
    "invalid argument",
    "out of range",
    "input/output error",
    "not found",
    "already exists",
    "malformed input",
    "signature or key check failed",
    "expired",
    "signed by a foreign federation key",
    "key revoked",
    "timed out",
    "try again",
    "not permitted",
    "invalid state",
    "unavailable",
};

/* Returns a static description of code. */
const char *kvc_strerror(int code)
{
    if (code > 0 || code <= KVC_E_LAST)
        return "unknown error";
    return s_errors[-code];
}

/* Fills err with code and a formatted message. */
int kvc_err_set(kvc_err_t *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        err->code = code;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* Puts formatted context in front of the message already in err. */
void kvc_err_prefix(kvc_err_t *err, const char *fmt, ...)
{
    if (!err)
        return;
    char prefix[KVC_ERR_MAX];
    char old[KVC_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    old[sizeof old - 1] = 0;
    /* prefix + old may not fit: keep the prefix whole and cut the old
     * message (by hand: snprintf's truncation is what gcc warns about) */
    size_t pl = strlen(prefix), ol = strlen(old);
    if (ol > sizeof err->msg - 1 - pl)
        ol = sizeof err->msg - 1 - pl;
    memcpy(err->msg, prefix, pl);
    memcpy(err->msg + pl, old, ol);
    err->msg[pl + ol] = 0;
}

static long s_fail_after = -1;

/* Returns 1 when the test hook says this allocation must fail. */
static int s_should_fail(void)
{
    if (s_fail_after < 0)
        return 0;
    if (s_fail_after == 0)
        return 1;
    s_fail_after--;
    return 0;
}

void kvc_alloc_fail_after(long n) { s_fail_after = n; }

void *kvc_malloc(size_t size)
{
    return s_should_fail() ? NULL : malloc(size ? size : 1);
}

void *kvc_calloc(size_t n, size_t size)
{
    return s_should_fail() ? NULL : calloc(n ? n : 1, size ? size : 1);
}

void *kvc_realloc(void *ptr, size_t size)
{
    return s_should_fail() ? NULL : realloc(ptr, size ? size : 1);
}

char *kvc_strdup(const char *s)
{
    return kvc_strndup(s, strlen(s));
}

char *kvc_strndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *copy = kvc_malloc(len + 1);
    if (!copy)
        return NULL;
    memcpy(copy, s, len);
    copy[len] = '\0';
    return copy;
}

void kvc_free(void *ptr) { free(ptr); }

void kvc_buf_init(kvc_buf_t *buf, size_t max)
{
    buf->data = NULL;
    buf->len = 0;
    buf->cap = 0;
    buf->max = max;
}

/* Makes room for extra more bytes plus the terminating NUL. */
static int s_buf_reserve(kvc_buf_t *buf, size_t extra)
{
    if (extra > buf->max || buf->len > buf->max - extra)
        return KVC_ERANGE;
    size_t need = buf->len + extra + 1;
    if (need <= buf->cap)
        return KVC_OK;
    size_t cap = buf->cap ? buf->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (cap > buf->max + 1)
        cap = buf->max + 1;
    char *data = kvc_realloc(buf->data, cap);
    if (!data)
        return KVC_ENOMEM;
    buf->data = data;
    buf->cap = cap;
    return KVC_OK;
}

int kvc_buf_append(kvc_buf_t *buf, const void *data, size_t n)
{
    int rc = s_buf_reserve(buf, n);
    if (rc)
        return rc;
    if (n)
        memcpy(buf->data + buf->len, data, n);
    buf->len += n;
    buf->data[buf->len] = '\0';
    return KVC_OK;
}

int kvc_buf_printf(kvc_buf_t *buf, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return KVC_EINVAL;
    int rc = s_buf_reserve(buf, (size_t)n);
    if (rc)
        return rc;
    va_start(ap, fmt);
    vsnprintf(buf->data + buf->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    buf->len += (size_t)n;
    return KVC_OK;
}

void kvc_buf_reset(kvc_buf_t *buf)
{
    buf->len = 0;
    if (buf->data)
        buf->data[0] = '\0';
}

void kvc_buf_free(kvc_buf_t *buf)
{
    kvc_free(buf->data);
    buf->data = NULL;
    buf->len = buf->cap = 0;
}

char *kvc_buf_detach(kvc_buf_t *buf, size_t *len)
{
    char *data = buf->data;
    if (len)
        *len = buf->len;
    if (!data)
        data = kvc_strdup("");
    buf->data = NULL;
    buf->len = buf->cap = 0;
    return data;
}

int kvc_strlcpy(char *dst, const char *src, size_t dst_size)
{
    size_t n = strlen(src);
    if (n < dst_size) {
        memcpy(dst, src, n + 1);
        return KVC_OK;
    }
    memcpy(dst, src, dst_size - 1);
    dst[dst_size - 1] = '\0';
    return KVC_ERANGE;
}

int kvc_hex_digit(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int kvc_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out)
{
    if (!s || !*s)
        return KVC_EPARSE;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno == ERANGE)
        return KVC_ERANGE;
    if (end == s || *end != '\0')
        return KVC_EPARSE;
    if (v < min || v > max)
        return KVC_ERANGE;
    *out = v;
    return KVC_OK;
}
