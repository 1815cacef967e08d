/*
 * log.h - the peer's log: one line per event on stderr, with a UTC
 * timestamp and level. Callers must never pass a secret; keys are logged
 * only as public-key fingerprints.
 */
#ifndef KVC_LOG_H
#define KVC_LOG_H

#include "config.h"

/* Sets the lowest level that is printed (default info). */
void kvc_log_set_level(kvc_log_level_t level);

/* Prints "2026-11-25T10:00:00.123Z LEVEL message" on stderr. */
void kvc_log(kvc_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define kvc_debug(...) kvc_log(KVC_LOG_DEBUG, __VA_ARGS__)
#define kvc_info(...) kvc_log(KVC_LOG_INFO, __VA_ARGS__)
#define kvc_warn(...) kvc_log(KVC_LOG_WARN, __VA_ARGS__)
#define kvc_error(...) kvc_log(KVC_LOG_ERROR, __VA_ARGS__)

#endif
