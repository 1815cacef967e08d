/*
 * base.h - the few things every kvc module shares: error codes with one
 * kvc_strerror(), a context-carrying error buffer, the allocation wrapper
 * that tests can make fail, and a bounded growable buffer.
 *
 * This header is the leaf of the dependency graph: federation/, peer/ and
 * proxy/ may all include it, and it includes nothing of theirs. It must never
 * grow I/O, clocks or randomness.
 */
#ifndef KVC_BASE_H
#define KVC_BASE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* Error codes: 0 is success, every failure is negative. */
enum {
    KVC_OK = 0,
    KVC_ENOMEM = -1,    /* allocation failed */
    KVC_EINVAL = -2,    /* invalid argument or input */
    KVC_ERANGE = -3,    /* value or size out of bounds */
    KVC_EIO = -4,       /* file or socket I/O failed */
    KVC_ENOENT = -5,    /* not found */
    KVC_EEXIST = -6,    /* already exists */
    KVC_EPARSE = -7,    /* malformed input */
    KVC_ECRYPTO = -8,   /* signature or key check failed */
    KVC_EEXPIRED = -9,  /* credential or token expired */
    KVC_EFOREIGN = -10, /* signed by a key other than the federation's */
    KVC_EREVOKED = -11, /* key is revoked */
    KVC_ETIMEDOUT = -12,/* no answer in time */
    KVC_EAGAIN = -13,   /* would block; try later */
    KVC_EPERM = -14,    /* not allowed */
    KVC_ESTATE = -15,   /* operation not valid in the current state */
    KVC_EUNAVAIL = -16, /* service unavailable */
    KVC_E_LAST = -17
};

/* Returns a static, human-readable description of a kvc error code. */
const char *kvc_strerror(int code);

/* A caller-owned buffer that collects a message with context. */
#define KVC_ERR_MAX 512
typedef struct {
    int code;
    char msg[KVC_ERR_MAX];
} kvc_err_t;

/* Sets err (if not NULL) to code and a printf-style message; returns code. */
int kvc_err_set(kvc_err_t *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefixes the message already in err with more context ("file.yaml: ..."). */
void kvc_err_prefix(kvc_err_t *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * Allocation goes through these so that a test can make the Nth allocation
 * fail (kvc_alloc_fail_after). They behave like malloc/calloc/realloc/strdup;
 * kvc_free(NULL) is a no-op.
 */
void *kvc_malloc(size_t size);
void *kvc_calloc(size_t n, size_t size);
void *kvc_realloc(void *ptr, size_t size);
char *kvc_strdup(const char *s);
char *kvc_strndup(const char *s, size_t n);
void kvc_free(void *ptr);

/* Test hook: the allocation after the next n succeed fails; -1 disables. */
void kvc_alloc_fail_after(long n);

/*
 * A growable byte buffer with a maximum fixed at creation, so a hostile
 * peer can never make it grow without bound. The data is always followed by
 * a NUL byte (not counted in len) so text can be used in place.
 */
typedef struct {
    char *data;
    size_t len;
    size_t cap;
    size_t max;
} kvc_buf_t;

/* Initialises an empty buffer that may grow to max bytes. */
void kvc_buf_init(kvc_buf_t *buf, size_t max);
/* Appends n bytes; KVC_ERANGE if that would pass max, KVC_ENOMEM. */
int kvc_buf_append(kvc_buf_t *buf, const void *data, size_t n);
/* Appends a printf-formatted string. */
int kvc_buf_printf(kvc_buf_t *buf, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Empties the buffer, keeping its memory. */
void kvc_buf_reset(kvc_buf_t *buf);
/* Frees the memory; the buffer may be reused after kvc_buf_init. */
void kvc_buf_free(kvc_buf_t *buf);
/* Hands the data to the caller (free with kvc_free); buffer becomes empty. */
char *kvc_buf_detach(kvc_buf_t *buf, size_t *len);

/* Bounded copy that always terminates dst (dst_size > 0); returns KVC_ERANGE
 * if src was cut. */
int kvc_strlcpy(char *dst, const char *src, size_t dst_size);

/* Parses a whole base-10 integer in [min, max]; no trailing bytes allowed. */
int kvc_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out);

/* Value of one hex digit (0-9, a-f, A-F), or -1. */
int kvc_hex_digit(int c);

#endif
