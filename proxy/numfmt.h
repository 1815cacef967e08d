/*
 * numfmt.h - exact number parsing and shortest round-trip number writing for
 * the JSON codecs (the proxy's hot path).
 *
 * Parsing is correctly rounded in every case (a fast exact path for short
 * decimals, strtod/strtof on a bounded copy otherwise). Writing produces the
 * shortest decimal that reads back to the same float32/float64 (Ryu's
 * method; its power-of-5 tables are computed at load time, not committed).
 *
 * Nothing here allocates except the rare slow parse path of a very long
 * number, and nothing keeps pointers to its arguments. strtod/strtof are
 * used in the "C" locale; the process must never call setlocale(LC_NUMERIC).
 */
#ifndef KVC_NUMFMT_H
#define KVC_NUMFMT_H

#include <stddef.h>
#include <stdint.h>

/* Every writer below needs at most this many bytes of output room. */
#define KVC_NUMFMT_MAX 32

/*
 * Scans one JSON number (RFC 8259 grammar, no NaN/Infinity) starting at p,
 * reading no byte at or past end. On success stores the byte after the
 * number in *endp. Returns 0, or KVC_EPARSE if p does not start a valid
 * number. A number too large for the type gives +-inf (not an error).
 */
int kvc_numfmt_parse_double(const char *p, const char *end, double *out, const char **endp);
int kvc_numfmt_parse_float(const char *p, const char *end, float *out, const char **endp);

/*
 * Scans one JSON integer (no fraction or exponent). Returns 0, KVC_EPARSE
 * if p does not start an integer (or the number has a fraction/exponent),
 * KVC_ERANGE if it does not fit.
 */
int kvc_numfmt_parse_i64(const char *p, const char *end, int64_t *out, const char **endp);
int kvc_numfmt_parse_u64(const char *p, const char *end, uint64_t *out, const char **endp);

/*
 * Tells whether the JSON number at p..end (already known to be valid) is
 * written as an integer (no '.', 'e' or 'E'). Used for dtype inference.
 */
int kvc_numfmt_is_integer_token(const char *p, const char *end);

/*
 * Writes the shortest decimal that reads back to exactly v, in JSON form:
 * "1.0", "0.001", "1.5e-07"-style ("1.5e-7"), "-0.0"; NaN as "NaN" and
 * infinities as "Infinity"/"-Infinity" (as TF Serving does). buf must have
 * KVC_NUMFMT_MAX bytes; no NUL is written. Returns the length.
 */
size_t kvc_numfmt_write_double(double v, char *buf);
size_t kvc_numfmt_write_float(float v, char *buf);

/* Writes an integer in decimal; buf must have KVC_NUMFMT_MAX bytes. */
size_t kvc_numfmt_write_i64(int64_t v, char *buf);
size_t kvc_numfmt_write_u64(uint64_t v, char *buf);

/*
 * The shortest-digits core, exposed for tests: |v| = digits * 10^exp10
 * where digits is the shortest (and, among those, closest) decimal that
 * rounds back to v. Only for finite v; digits is 0 for a zero.
 */
void kvc_numfmt_shortest_double(double v, uint64_t *digits, int *exp10);
void kvc_numfmt_shortest_float(float v, uint64_t *digits, int *exp10);

/* IEEE half <-> float conversions (round to nearest even). */
uint16_t kvc_numfmt_float_to_half(float f);
float kvc_numfmt_half_to_float(uint16_t h);

#endif
