/*
 * cli_out.h - small output helpers for the `kvc` CLI: the one-line failure,
 * JSON string escaping and human-friendly durations. Output only; nothing
 * here parses input.
 */
#ifndef KVC_CLI_OUT_H
#define KVC_CLI_OUT_H

#include <stdint.h>
#include <stdio.h>

/* Prints "kvc: <message>" as one line on stderr and returns code (the exit
 * status). */
int kvc_cli_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Writes s as a JSON string literal (with quotes), escaping as RFC 8259 says. */
void kvc_json_str(FILE *f, const char *s);

/* Writes ,"key":"value" (the value escaped as by kvc_json_str). */
void kvc_json_field(FILE *f, const char *key, const char *value);

/* Writes ,"key":["a","b",...] for n strings. */
void kvc_json_str_array(FILE *f, const char *key, char *const *values, size_t n);

/* Formats wall-clock ms as "2026-12-07T15:26:31Z" (UTC) into buf; "-" for
 * 0. Returns buf or "-". */
const char *kvc_fmt_time_ms(uint64_t ms, char *buf, size_t size);

/* Formats seconds as "3d4h", "2h5m", "4m10s" or "12s" into buf. */
const char *kvc_fmt_duration(uint64_t secs, char *buf, size_t size);

#endif
