/*
 * numfmt.c - exact number parsing and shortest round-trip formatting.
 *
 * Parsing: one scan collects up to 19 significant digits and a decimal
 * exponent. Clinger's fast path (mantissa <= 2^53, |exp10| <= 22, one
 * multiply or divide of exact doubles) is correctly rounded; anything else
 * goes to strtod on a bounded copy, so every result is exact. float32 uses
 * an all-float fast path when that is exact, else the double result rounded
 * once more, falling back to strtof when the double lands exactly on a
 * float midpoint (the only case where double rounding can go wrong).
 *
 * Writing: Ryu (Ulf Adams, PLDI 2018), one generic routine for float and
 * double over 125-bit power-of-5 tables that a small bignum computes at load
 * time. This file must never print through printf or read the locale on the
 * hot path.
 */
#include "numfmt.h"

#include "base.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef unsigned __int128 s_u128;

#define POW5_BITS 125
#define POW5_N 326
#define POW5_INV_N 342
#define BIG_LIMBS 48

static uint64_t s_pow5[POW5_N][2];
static uint64_t s_pow5_inv[POW5_INV_N][2];

static const char s_pairs[201] = "00010203040506070809"
                                 "10111213141516171819"
                                 "20212223242526272829"
                                 "30313233343536373839"
                                 "40414243444546474849"
                                 "50515253545556575859"
                                 "60616263646566676869"
                                 "70717273747576777879"
                                 "80818283848586878889"
                                 "90919293949596979899";

static const double s_pow10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                   1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                   1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
static const float s_pow10f[11] = {1e0f, 1e1f, 1e2f, 1e3f, 1e4f, 1e5f,
                                   1e6f, 1e7f, 1e8f, 1e9f, 1e10f};

/* ---- table generation ----------------------------------------------------- */

typedef struct {
    uint32_t w[BIG_LIMBS];
} s_big_t;

/* Multiplies a bignum by a small factor in place. */
static void s_big_mul_small(s_big_t *b, uint32_t m)
{
    uint64_t carry = 0;
    for (int i = 0; i < BIG_LIMBS; i++) {
        uint64_t x = (uint64_t)b->w[i] * m + carry;
        b->w[i] = (uint32_t)x;
        carry = x >> 32;
    }
}

/* Divides a bignum by a small divisor in place (floor). */
static void s_big_div_small(s_big_t *b, uint32_t d)
{
    uint64_t rem = 0;
    for (int i = BIG_LIMBS - 1; i >= 0; i--) {
        uint64_t x = (rem << 32) | b->w[i];
        b->w[i] = (uint32_t)(x / d);
        rem = x % d;
    }
}

/* Returns the number of significant bits of a bignum. */
static int s_big_bitlen(const s_big_t *b)
{
    for (int i = BIG_LIMBS - 1; i >= 0; i--)
        if (b->w[i])
            return i * 32 + 32 - __builtin_clz(b->w[i]);
    return 0;
}

/* Returns the low 128 bits of (b >> shift). */
static s_u128 s_big_shr(const s_big_t *b, int shift)
{
    int limb = shift / 32, off = shift % 32;
    s_u128 lo = 0;
    for (int k = 3; k >= 0; k--)
        lo = (lo << 32) | (limb + k < BIG_LIMBS ? b->w[limb + k] : 0);
    if (off) {
        uint32_t extra = limb + 4 < BIG_LIMBS ? b->w[limb + 4] : 0;
        lo = (lo >> off) | ((s_u128)extra << (128 - off));
    }
    return lo;
}

/* Builds Ryu's tables: 5^i and 2^j/5^q, each normalised to 125 bits. */
__attribute__((constructor)) static void s_tables_init(void)
{
    s_big_t p, x;
    memset(&p, 0, sizeof p);
    memset(&x, 0, sizeof x);
    p.w[0] = 1;
    x.w[32] = 1; /* 2^1024 */
    for (int i = 0; i < POW5_INV_N; i++) {
        int b = s_big_bitlen(&p);
        if (i < POW5_N) {
            s_u128 v =
                b > POW5_BITS ? s_big_shr(&p, b - POW5_BITS) : s_big_shr(&p, 0) << (POW5_BITS - b);
            s_pow5[i][0] = (uint64_t)v;
            s_pow5[i][1] = (uint64_t)(v >> 64);
        }
        int j = b - 1 + POW5_BITS;
        s_u128 inv = s_big_shr(&x, 1024 - j) + 1;
        s_pow5_inv[i][0] = (uint64_t)inv;
        s_pow5_inv[i][1] = (uint64_t)(inv >> 64);
        s_big_div_small(&x, 5);
        s_big_mul_small(&p, 5);
    }
}

/* ---- Ryu ------------------------------------------------------------------- */

static inline uint32_t s_log10_pow2(int32_t e)
{
    return ((uint32_t)e * 78913) >> 18;
}

static inline uint32_t s_log10_pow5(int32_t e)
{
    return ((uint32_t)e * 732923) >> 20;
}

static inline int32_t s_pow5_bits(int32_t e)
{
    return (int32_t)((((uint32_t)e) * 1217359) >> 19) + 1;
}

/* Returns (m * mul) >> j for a 128-bit multiplier. */
static inline uint64_t s_mul_shift(uint64_t m, const uint64_t *mul, int32_t j)
{
    s_u128 b0 = (s_u128)m * mul[0];
    s_u128 b2 = (s_u128)m * mul[1];
    return (uint64_t)(((b0 >> 64) + b2) >> (j - 64));
}

/* Tells whether value is divisible by 5^p. */
static inline int s_mult_pow5(uint64_t value, uint32_t p)
{
    uint32_t count = 0;
    while (value && value % 5 == 0) {
        value /= 5;
        count++;
    }
    return count >= p;
}

/* Tells whether value is divisible by 2^p (p < 64). */
static inline int s_mult_pow2(uint64_t value, uint32_t p)
{
    return (value & ((1ull << p) - 1)) == 0;
}

/*
 * The generic Ryu core: the value is m2 * 2^(e2 + 2); mm_shift says whether
 * the lower neighbour is half an ulp away (1) or a quarter (0, at a binade
 * boundary). Produces the shortest digits and their decimal exponent.
 */
static void s_ryu(uint64_t m2, int32_t e2, int mm_shift, uint64_t *digits, int *exp10)
{
    int accept = (m2 & 1) == 0;
    uint64_t mv = 4 * m2;
    uint64_t vr, vp, vm;
    int32_t e10;
    int vm_tz = 0, vr_tz = 0;
    if (e2 >= 0) {
        uint32_t q = s_log10_pow2(e2) - (e2 > 3);
        e10 = (int32_t)q;
        int32_t k = POW5_BITS + s_pow5_bits((int32_t)q) - 1;
        int32_t i = -e2 + (int32_t)q + k;
        vr = s_mul_shift(mv, s_pow5_inv[q], i);
        vp = s_mul_shift(mv + 2, s_pow5_inv[q], i);
        vm = s_mul_shift(mv - 1 - (uint64_t)mm_shift, s_pow5_inv[q], i);
        if (q <= 21) {
            if (mv % 5 == 0)
                vr_tz = s_mult_pow5(mv, q);
            else if (accept)
                vm_tz = s_mult_pow5(mv - 1 - (uint64_t)mm_shift, q);
            else
                vp -= (uint64_t)s_mult_pow5(mv + 2, q);
        }
    } else {
        uint32_t q = s_log10_pow5(-e2) - (-e2 > 1);
        e10 = (int32_t)q + e2;
        int32_t i = -e2 - (int32_t)q;
        int32_t k = s_pow5_bits(i) - POW5_BITS;
        int32_t j = (int32_t)q - k;
        vr = s_mul_shift(mv, s_pow5[i], j);
        vp = s_mul_shift(mv + 2, s_pow5[i], j);
        vm = s_mul_shift(mv - 1 - (uint64_t)mm_shift, s_pow5[i], j);
        if (q <= 1) {
            vr_tz = 1;
            if (accept)
                vm_tz = mm_shift == 1;
            else
                --vp;
        } else if (q < 63) {
            vr_tz = s_mult_pow2(mv, q);
        }
    }
    int32_t removed = 0;
    uint64_t output;
    if (vm_tz || vr_tz) {
        uint32_t last = 0;
        while (vp / 10 > vm / 10) {
            vm_tz &= vm % 10 == 0;
            vr_tz &= last == 0;
            last = (uint32_t)(vr % 10);
            vr /= 10;
            vp /= 10;
            vm /= 10;
            removed++;
        }
        if (vm_tz) {
            while (vm % 10 == 0) {
                vr_tz &= last == 0;
                last = (uint32_t)(vr % 10);
                vr /= 10;
                vp /= 10;
                vm /= 10;
                removed++;
            }
        }
        if (vr_tz && last == 5 && vr % 2 == 0)
            last = 4; /* exactly halfway: round to even */
        output = vr + ((vr == vm && (!accept || !vm_tz)) || last >= 5);
    } else {
        int round_up = 0;
        /* Two digits at a time first: most values lose at least two (Ryu's
         * own shortcut; only the last removed digit decides rounding). */
        uint64_t vp100 = vp / 100, vm100 = vm / 100;
        if (vp100 > vm100) {
            uint64_t vr100 = vr / 100;
            round_up = vr - 100 * vr100 >= 50;
            vr = vr100;
            vp = vp100;
            vm = vm100;
            removed += 2;
        }
        while (vp / 10 > vm / 10) {
            round_up = vr % 10 >= 5;
            vr /= 10;
            vp /= 10;
            vm /= 10;
            removed++;
        }
        output = vr + (vr == vm || round_up);
    }
    int32_t e = e10 + removed;
    while (output && output % 10 == 0) {
        output /= 10;
        e++;
    }
    *digits = output;
    *exp10 = e;
}

void kvc_numfmt_shortest_double(double v, uint64_t *digits, int *exp10)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    uint64_t mant = bits & ((1ull << 52) - 1);
    uint32_t ex = (uint32_t)((bits >> 52) & 0x7ff);
    if (ex == 0 && mant == 0) {
        *digits = 0;
        *exp10 = 0;
        return;
    }
    uint64_t m2;
    int32_t e2;
    if (ex == 0) {
        m2 = mant;
        e2 = 1 - 1023 - 52 - 2;
    } else {
        m2 = mant | (1ull << 52);
        e2 = (int32_t)ex - 1023 - 52 - 2;
    }
    s_ryu(m2, e2, mant != 0 || ex <= 1, digits, exp10);
}

void kvc_numfmt_shortest_float(float v, uint64_t *digits, int *exp10)
{
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    uint32_t mant = bits & ((1u << 23) - 1);
    uint32_t ex = (bits >> 23) & 0xff;
    if (ex == 0 && mant == 0) {
        *digits = 0;
        *exp10 = 0;
        return;
    }
    uint64_t m2;
    int32_t e2;
    if (ex == 0) {
        m2 = mant;
        e2 = 1 - 127 - 23 - 2;
    } else {
        m2 = mant | (1u << 23);
        e2 = (int32_t)ex - 127 - 23 - 2;
    }
    s_ryu(m2, e2, mant != 0 || ex <= 1, digits, exp10);
}

/* ---- writing --------------------------------------------------------------- */

/* Number of decimal digits of v (1 for 0). */
static inline int s_ndigits(uint64_t v)
{
    int n = 1;
    while (v >= 10000) {
        v /= 10000;
        n += 4;
    }
    return n + (v >= 10) + (v >= 100) + (v >= 1000);
}

/* Writes the low n decimal digits of v backwards, ending just before end;
 * returns what is left of v (its higher digits). */
static inline uint64_t s_put_digits(char *end, uint64_t v, int n)
{
    while (n >= 2) {
        uint64_t q = v / 100;
        uint32_t r = (uint32_t)(v - q * 100);
        end -= 2;
        memcpy(end, s_pairs + 2 * r, 2);
        v = q;
        n -= 2;
    }
    if (n) {
        uint64_t q = v / 10;
        *--end = (char)('0' + (v - q * 10));
        v = q;
    }
    return v;
}

/* Writes the decimal digits of v (no sign) at buf; returns the count. */
static inline size_t s_write_digits(uint64_t v, char *buf)
{
    int n = s_ndigits(v);
    s_put_digits(buf + n, v, n);
    return (size_t)n;
}

size_t kvc_numfmt_write_u64(uint64_t v, char *buf)
{
    return s_write_digits(v, buf);
}

size_t kvc_numfmt_write_i64(int64_t v, char *buf)
{
    if (v < 0) {
        buf[0] = '-';
        return 1 + s_write_digits(0 - (uint64_t)v, buf + 1);
    }
    return s_write_digits((uint64_t)v, buf);
}

/* Lays out digits * 10^exp in JSON (JavaScript-like) form after a sign. */
static size_t s_format(char *buf, int neg, uint64_t digits, int exp)
{
    char *p = buf;
    if (neg)
        *p++ = '-';
    if (digits == 0) {
        memcpy(p, "0.0", 3);
        return (size_t)(p - buf) + 3;
    }
    /* Digits go straight to their place, written backwards two at a time:
     * no scratch copy, no variable-length memcpy (a call per value). */
    int n = s_ndigits(digits);
    int kk = n + exp; /* position of the decimal point */
    if (exp >= 0 && kk <= 21) {
        s_put_digits(p + n, digits, n);
        p += n;
        for (int i = 0; i < exp; i++)
            *p++ = '0';
        *p++ = '.';
        *p++ = '0';
    } else if (kk > 0 && kk <= 21) {
        uint64_t hi = s_put_digits(p + n + 1, digits, n - kk);
        p[kk] = '.';
        s_put_digits(p + kk, hi, kk);
        p += n + 1;
    } else if (kk > -6 && kk <= 0) {
        *p++ = '0';
        *p++ = '.';
        for (int i = 0; i < -kk; i++)
            *p++ = '0';
        s_put_digits(p + n, digits, n);
        p += n;
    } else {
        if (n > 1) {
            uint64_t first = s_put_digits(p + n + 1, digits, n - 1);
            p[0] = (char)('0' + first);
            p[1] = '.';
            p += n + 1;
        } else {
            *p++ = (char)('0' + digits);
        }
        *p++ = 'e';
        int e = kk - 1;
        if (e < 0) {
            *p++ = '-';
            e = -e;
        }
        p += s_write_digits((uint64_t)e, p);
    }
    return (size_t)(p - buf);
}

/* Writes NaN/Infinity the way TF Serving does; returns 0 for finite v. */
static size_t s_write_special(int is_nan, int neg, char *buf)
{
    if (is_nan) {
        memcpy(buf, "NaN", 3);
        return 3;
    }
    if (neg) {
        memcpy(buf, "-Infinity", 9);
        return 9;
    }
    memcpy(buf, "Infinity", 8);
    return 8;
}

size_t kvc_numfmt_write_double(double v, char *buf)
{
    if (!isfinite(v))
        return s_write_special(isnan(v), signbit(v) != 0, buf);
    uint64_t digits;
    int e;
    kvc_numfmt_shortest_double(v, &digits, &e);
    return s_format(buf, signbit(v) != 0, digits, e);
}

size_t kvc_numfmt_write_float(float v, char *buf)
{
    if (!isfinite(v))
        return s_write_special(isnan(v), signbit(v) != 0, buf);
    uint64_t digits;
    int e;
    kvc_numfmt_shortest_float(v, &digits, &e);
    return s_format(buf, signbit(v) != 0, digits, e);
}

/* ---- parsing --------------------------------------------------------------- */

typedef struct {
    uint64_t mant; /* up to 19 significant digits */
    int64_t exp10; /* value = mant * 10^exp10 (before truncation) */
    int ndigits;   /* significant digits kept in mant */
    int truncated; /* a non-zero digit was dropped */
    int neg;
    int is_int;
} s_scan_t;

#define S_IS_DIGIT(c) ((unsigned)((c) - '0') < 10u)

/* Scans the JSON number grammar; returns the end pointer or NULL. */
static const char *s_scan(const char *p, const char *end, s_scan_t *s)
{
    s->mant = 0;
    s->exp10 = 0;
    s->ndigits = 0;
    s->truncated = 0;
    s->neg = 0;
    s->is_int = 1;
    if (p < end && *p == '-') {
        s->neg = 1;
        p++;
    }
    if (p >= end)
        return NULL;
    uint64_t m = 0;
    int nd = 0;
    int64_t e = 0;
    if (*p == '0') {
        p++;
    } else if (S_IS_DIGIT(*p)) {
        while (p < end && S_IS_DIGIT(*p)) {
            if (nd < 19) {
                m = m * 10 + (uint64_t)(*p - '0');
                nd++;
            } else {
                e++;
                if (*p != '0')
                    s->truncated = 1;
            }
            p++;
        }
    } else {
        return NULL;
    }
    if (p < end && *p == '.') {
        p++;
        if (p >= end || !S_IS_DIGIT(*p))
            return NULL;
        s->is_int = 0;
        while (p < end && S_IS_DIGIT(*p)) {
            if (m == 0 && *p == '0') {
                e--;
            } else if (nd < 19) {
                m = m * 10 + (uint64_t)(*p - '0');
                nd++;
                e--;
            } else if (*p != '0') {
                s->truncated = 1;
            }
            p++;
        }
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        s->is_int = 0;
        int eneg = 0;
        if (p < end && (*p == '+' || *p == '-')) {
            eneg = *p == '-';
            p++;
        }
        if (p >= end || !S_IS_DIGIT(*p))
            return NULL;
        int64_t x = 0;
        while (p < end && S_IS_DIGIT(*p)) {
            if (x < 100000000)
                x = x * 10 + (*p - '0');
            p++;
        }
        e += eneg ? -x : x;
    }
    s->mant = m;
    s->exp10 = e;
    s->ndigits = nd;
    return p;
}

/* Correctly rounded strtod/strtof on a NUL-terminated copy of [p, end). */
static int s_slow(const char *p, const char *end, int as_float, double *d, float *f)
{
    char stack[128];
    size_t n = (size_t)(end - p);
    char *copy = stack;
    if (n >= sizeof stack) {
        copy = kvc_malloc(n + 1);
        if (!copy)
            return KVC_ENOMEM;
    }
    memcpy(copy, p, n);
    copy[n] = '\0';
    if (as_float)
        *f = strtof(copy, NULL);
    else
        *d = strtod(copy, NULL);
    if (copy != stack)
        kvc_free(copy);
    return KVC_OK;
}

/* Clinger's exact fast path; returns 1 and sets *out when it applies. */
static inline int s_fast_double(const s_scan_t *s, double *out)
{
    if (s->truncated)
        return 0;
    uint64_t m = s->mant;
    int64_t e = s->exp10;
    if (m == 0) {
        *out = s->neg ? -0.0 : 0.0;
        return 1;
    }
    if (m > (1ull << 53))
        return 0;
    double d;
    if (e >= 0 && e <= 22) {
        d = (double)m * s_pow10[e];
    } else if (e < 0 && e >= -22) {
        d = (double)m / s_pow10[-e];
    } else if (e > 22 && e <= 22 + 15) {
        /* 12e30 = 12000000e24: move zeros into the mantissa while it stays exact */
        for (int64_t k = e - 22; k > 0; k--) {
            m *= 10;
            if (m > (1ull << 53))
                return 0;
        }
        d = (double)m * 1e22;
    } else {
        return 0;
    }
    *out = s->neg ? -d : d;
    return 1;
}

int kvc_numfmt_parse_double(const char *p, const char *end, double *out, const char **endp)
{
    s_scan_t s;
    const char *q = s_scan(p, end, &s);
    if (!q)
        return KVC_EPARSE;
    *endp = q;
    if (s_fast_double(&s, out))
        return KVC_OK;
    float unused;
    return s_slow(p, q, 0, out, &unused);
}

/* Tells whether double d lies exactly halfway between two adjacent floats. */
static int s_is_float_midpoint(double d)
{
    double ad = fabs(d);
    if (ad >= (double)FLT_MIN && ad < (double)FLT_MAX) {
        uint64_t bits;
        memcpy(&bits, &ad, sizeof bits);
        return (bits & ((1ull << 29) - 1)) == (1ull << 28);
    }
    if (ad < (double)FLT_MIN) {
        double x = ad * 0x1p150; /* exact scaling: midpoints are odd multiples of 2^-150 */
        return x == floor(x) && fmod(x, 2.0) == 1.0;
    }
    return ad == 0x1.ffffffp127;
}

int kvc_numfmt_parse_float(const char *p, const char *end, float *out, const char **endp)
{
    s_scan_t s;
    const char *q = s_scan(p, end, &s);
    if (!q)
        return KVC_EPARSE;
    *endp = q;
    if (!s.truncated && s.mant <= (1u << 24) && s.exp10 >= -10 && s.exp10 <= 10) {
        float f = (float)s.mant;
        f = s.exp10 >= 0 ? f * s_pow10f[s.exp10] : f / s_pow10f[-s.exp10];
        *out = s.neg ? -f : f;
        return KVC_OK;
    }
    double d;
    if (!s_fast_double(&s, &d)) {
        float unused;
        int rc = s_slow(p, q, 0, &d, &unused);
        if (rc)
            return rc;
    }
    if (s_is_float_midpoint(d)) {
        double unused;
        return s_slow(p, q, 1, &unused, out);
    }
    *out = (float)d;
    return KVC_OK;
}

/* Scans an unsigned JSON integer magnitude; rejects fractions/exponents. */
static int s_scan_int(const char *p, const char *end, int *neg, uint64_t *mag, uint64_t limit,
                      const char **endp)
{
    *neg = 0;
    if (p < end && *p == '-') {
        *neg = 1;
        p++;
    }
    if (p >= end || !S_IS_DIGIT(*p))
        return KVC_EPARSE;
    uint64_t x = 0;
    int over = 0;
    if (*p == '0') {
        p++;
    } else {
        /* 19 digits fit 64 bits unchecked (10^19 - 1 < 2^64); any more
         * take the checked loop below. */
        const char *fast = end - p > 19 ? p + 19 : end;
        while (p < fast && S_IS_DIGIT(*p))
            x = x * 10 + (uint64_t)(*p++ - '0');
        over = x > limit;
        while (p < end && S_IS_DIGIT(*p)) {
            uint64_t dg = (uint64_t)(*p - '0');
            if (x > (limit - dg) / 10)
                over = 1;
            else
                x = x * 10 + dg;
            p++;
        }
    }
    if (p < end && (*p == '.' || *p == 'e' || *p == 'E'))
        return KVC_EPARSE;
    if (over)
        return KVC_ERANGE;
    *mag = x;
    *endp = p;
    return KVC_OK;
}

int kvc_numfmt_parse_i64(const char *p, const char *end, int64_t *out, const char **endp)
{
    int neg;
    uint64_t mag;
    int rc = s_scan_int(p, end, &neg, &mag, (uint64_t)INT64_MAX + 1, endp);
    if (rc)
        return rc;
    if (!neg && mag > (uint64_t)INT64_MAX)
        return KVC_ERANGE;
    *out = neg ? (int64_t)(0 - mag) : (int64_t)mag;
    return KVC_OK;
}

int kvc_numfmt_parse_u64(const char *p, const char *end, uint64_t *out, const char **endp)
{
    int neg;
    uint64_t mag;
    int rc = s_scan_int(p, end, &neg, &mag, UINT64_MAX, endp);
    if (rc)
        return rc;
    if (neg && mag != 0)
        return KVC_ERANGE;
    *out = mag;
    return KVC_OK;
}

int kvc_numfmt_is_integer_token(const char *p, const char *end)
{
    for (; p < end; p++)
        if (*p == '.' || *p == 'e' || *p == 'E')
            return 0;
    return 1;
}

/* ---- half precision ---------------------------------------------------------- */

uint16_t kvc_numfmt_float_to_half(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t ax = x & 0x7fffffff;
    if (ax >= 0x7f800000)
        return (uint16_t)(sign | 0x7c00 | (ax > 0x7f800000 ? 0x200 : 0));
    if (ax >= 0x477ff000) /* 65520 and up round to infinity */
        return (uint16_t)(sign | 0x7c00);
    if (ax < 0x38800000) { /* below 2^-14: half subnormal (or zero) */
        float a;
        memcpy(&a, &ax, sizeof a);
        return (uint16_t)(sign | (uint16_t)nearbyintf(a * 0x1p24f));
    }
    ax += 0xfff + ((ax >> 13) & 1);
    ax -= (uint32_t)(127 - 15) << 23;
    return (uint16_t)(sign | (ax >> 13));
}

float kvc_numfmt_half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t ex = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    uint32_t bits;
    if (ex == 0) {
        float v = (float)mant * 0x1p-24f;
        return sign ? -v : v;
    }
    if (ex == 31)
        bits = sign | 0x7f800000 | (mant << 13);
    else
        bits = sign | ((ex + 112) << 23) | (mant << 13);
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}
