/*
 * cli_out.c - JSON string escaping and duration formatting for the CLI.
 */
#include "cli_out.h"

#include <stdarg.h>
#include <time.h>

int kvc_cli_fail(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("kvc: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return code;
}

void kvc_json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"':
            fputs("\\\"", f);
            break;
        case '\\':
            fputs("\\\\", f);
            break;
        case '\n':
            fputs("\\n", f);
            break;
        case '\r':
            fputs("\\r", f);
            break;
        case '\t':
            fputs("\\t", f);
            break;
        default:
            if (*p < 0x20)
                fprintf(f, "\\u%04x", *p);
            else
                fputc(*p, f);
        }
    }
    fputc('"', f);
}

void kvc_json_field(FILE *f, const char *key, const char *value)
{
    fprintf(f, ",\"%s\":", key);
    kvc_json_str(f, value);
}

void kvc_json_str_array(FILE *f, const char *key, char *const *values, size_t n)
{
    fprintf(f, ",\"%s\":[", key);
    for (size_t i = 0; i < n; i++) {
        if (i)
            fputc(',', f);
        kvc_json_str(f, values[i]);
    }
    fputc(']', f);
}

const char *kvc_fmt_duration(uint64_t secs, char *buf, size_t size)
{
    unsigned long long s = secs;
    if (s >= 86400)
        snprintf(buf, size, "%llud%lluh", s / 86400, (s % 86400) / 3600);
    else if (s >= 3600)
        snprintf(buf, size, "%lluh%llum", s / 3600, (s % 3600) / 60);
    else if (s >= 60)
        snprintf(buf, size, "%llum%llus", s / 60, s % 60);
    else
        snprintf(buf, size, "%llus", s);
    return buf;
}

const char *kvc_fmt_time_ms(uint64_t ms, char *buf, size_t size)
{
    if (!ms)
        return "-";
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}
