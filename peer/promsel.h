/*
 * promsel.h - Prometheus series selectors, as /federate takes them in
 * match[]: `name`, `name{l="v"}`, `{__name__=~"kvc_.*"}`,
 * `{l!="v", m=~"re", n!~"re"}`, and the matcher that decides whether a series
 * is selected. Several match[] parameters are OR'ed (kvc_promsel_set_t).
 *
 * Semantics follow Prometheus' PromQL parser (2.x): double-, single- and
 * back-quoted strings with Go escapes; a trailing comma is allowed; a
 * selector needs at least one matcher that does not match the empty string;
 * the name may not be given twice; a missing label equals "". Error texts are
 * Prometheus' own ("1:1: parse error: vector selector must contain at least
 * one non-empty matcher").
 *
 * Regexes are fully anchored like Prometheus' (^(?:re)$), but compiled with
 * POSIX regcomp(REG_EXTENDED) on "^(re)$", so RE2-only syntax is not
 * supported and is reported as a parse error where regcomp rejects it:
 * non-capturing groups and flags ((?:...), (?i)), lazy quantifiers (*?, +?),
 * Perl classes (\d \D \w \W \s \S are GNU extensions: \w and \s work, \d does
 * not), Unicode classes (\pL), \Q..\E, \z. Backreferences (\1), which RE2
 * rejects and which make POSIX matching exponential, are refused, as are
 * counted repetitions whose nested product exceeds 1000 (RE2's limit).
 * Regexes containing a NUL byte are refused. `.` matches a newline, as in
 * Prometheus 3.
 *
 * Nothing here does I/O; parsed selectors are immutable and may be matched
 * from many threads at once.
 */
#ifndef KVC_PROMSEL_H
#define KVC_PROMSEL_H

#include "base.h"

#include <stddef.h>

#define KVC_PROMSEL_MAX_LEN 4096     /* bytes of selector text */
#define KVC_PROMSEL_MAX_MATCHERS 32  /* matchers per selector */
#define KVC_PROMSEL_MAX_SELECTORS 32 /* match[] parameters per set */

typedef struct kvc_promsel kvc_promsel_t;
typedef struct kvc_promsel_set kvc_promsel_set_t;

typedef enum {
    KVC_PROMSEL_EQ = 0,  /* =  */
    KVC_PROMSEL_NE = 1,  /* != */
    KVC_PROMSEL_RE = 2,  /* =~ */
    KVC_PROMSEL_NRE = 3, /* !~ */
} kvc_promsel_op_t;

/*
 * Parses len bytes of text (not NUL-terminated necessarily). On success
 * *out is a new selector the caller destroys. On failure *out is NULL and
 * err (if not NULL) holds Prometheus' message. Errors: KVC_EPARSE,
 * KVC_ERANGE (too long, too many matchers), KVC_ENOMEM.
 */
int kvc_promsel_parse(const char *text, size_t len, kvc_promsel_t **out, kvc_err_t *err);
/* Frees the selector; *self_p becomes NULL. */
void kvc_promsel_destroy(kvc_promsel_t **self_p);

/* 1 if the series (name, and n labels as parallel arrays, borrowed) is
 * selected, else 0. A label not present has the value "". */
int kvc_promsel_match(const kvc_promsel_t *sel, const char *name, const char *const *names,
                      const char *const *values, size_t n);

/* Number of matchers (the name outside braces counts as __name__="name"),
 * and matcher i's parts (borrowed, valid while sel lives). For tests. */
size_t kvc_promsel_count(const kvc_promsel_t *sel);
int kvc_promsel_matcher(const kvc_promsel_t *sel, size_t i, const char **label,
                        kvc_promsel_op_t *op, const char **value);

/* A set of selectors OR'ed together. An empty set matches nothing, as
 * Prometheus' /federate without match[] answers nothing. */
kvc_promsel_set_t *kvc_promsel_set_new(void);
void kvc_promsel_set_destroy(kvc_promsel_set_t **self_p);
/* Parses text and adds it; errors as kvc_promsel_parse, plus KVC_ERANGE past
 * KVC_PROMSEL_MAX_SELECTORS. */
int kvc_promsel_set_add(kvc_promsel_set_t *set, const char *text, size_t len, kvc_err_t *err);
/* 1 if any selector of the set matches; a NULL set matches everything. */
int kvc_promsel_set_match(const kvc_promsel_set_t *set, const char *name, const char *const *names,
                          const char *const *values, size_t n);
/* 1 if some series named `name` might match (only name matchers checked):
 * lets writers skip whole families. A NULL set answers 1. */
int kvc_promsel_set_may_match_name(const kvc_promsel_set_t *set, const char *name);

#endif
