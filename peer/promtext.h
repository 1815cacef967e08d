/*
 * promtext.h - a parser of the Prometheus text exposition format (0.0.4), as
 * model servers (TF Serving's /monitoring/prometheus/metrics) and exporters
 * write it, calling back once per sample with its name, labels and value.
 *
 * The grammar accepted, line by line ('\n' ends a line; one '\r' before it
 * is tolerated; a last line without '\n' counts):
 *   - empty or blank lines: ignored;
 *   - `# HELP name text`: name must be a valid metric name;
 *   - `# TYPE name type`: name valid, type one of counter, gauge, histogram,
 *     summary, untyped;
 *   - any other line starting with '#': a comment, ignored;
 *   - a sample: `name[{l="v",...[,]}] value [timestamp]` with spaces or tabs
 *     between the parts. name is [a-zA-Z_:][a-zA-Z0-9_:]* (so TF Serving's
 *     `:tensorflow:serving:request_count` is fine), label names are
 *     [a-zA-Z_][a-zA-Z0-9_]*, never repeated in one sample; label values are
 *     double-quoted, valid UTF-8, with the escapes \\ \" \n and no others;
 *     value is a float as strtod reads it (NaN, +Inf, -Inf, Inf, exponents);
 *     timestamp is a base-10 int64 of milliseconds.
 * Anything else (a NUL byte, a line longer than the limit, more samples or
 * labels than the limits) stops the parse with an error naming the line,
 * as Prometheus refuses a whole scrape with one bad line. Samples before the
 * bad line have already been passed to the callback, so a caller that must
 * not act on partial input collects first and commits on success.
 *
 * Pure: no I/O, no clock, no global state. Safe to call from any thread.
 */
#ifndef KVC_PROMTEXT_H
#define KVC_PROMTEXT_H

#include "base.h"

#include <stddef.h>
#include <stdint.h>

#define KVC_PROMTEXT_LINE_MAX 65536     /* default bytes per line */
#define KVC_PROMTEXT_SAMPLES_MAX 200000 /* default samples per text */
#define KVC_PROMTEXT_LABELS_MAX 32      /* default labels per sample */

/* Limits; a NULL pointer or a 0 field means the default above. */
typedef struct {
    size_t max_line;
    size_t max_samples;
    size_t max_labels;
} kvc_promtext_limits_t;

/* One sample. Every pointer is borrowed: valid only during the callback.
 * Names and values are NUL-terminated and unescaped. */
typedef struct {
    const char *name;
    const char *const *label_names;
    const char *const *label_values;
    size_t n_labels;
    double value;
    int has_timestamp;
    int64_t timestamp_ms;
    size_t line; /* 1-based line number */
} kvc_promtext_sample_t;

/* Called once per sample, in text order. Returning non-zero stops the parse,
 * and kvc_promtext_parse returns that value. */
typedef int (*kvc_promtext_fn)(void *arg, const kvc_promtext_sample_t *s);

/*
 * Parses len bytes of text (need not be NUL-terminated). Returns 0 when the
 * whole text was valid, the callback's non-zero value if it stopped the
 * parse, KVC_EPARSE (malformed line; err says "line N: what"), KVC_ERANGE (a
 * line, the samples or a sample's labels over the limits), KVC_EINVAL (NULL
 * text with len > 0, or NULL fn), KVC_ENOMEM.
 */
int kvc_promtext_parse(const char *text, size_t len, const kvc_promtext_limits_t *limits,
                       kvc_promtext_fn fn, void *arg, kvc_err_t *err);

/* The value of label name in s, or NULL if the sample has no such label. */
const char *kvc_promtext_label(const kvc_promtext_sample_t *s, const char *name);

#endif
