/*
 * clock.c - monotonic protocol time and the (test-steppable) wall clock.
 */
#include "clock.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static uint64_t s_ts_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t kvc_clock_mono_ms(void)
{
    return s_ts_ns(CLOCK_MONOTONIC) / 1000000u;
}

uint64_t kvc_clock_mono_us(void)
{
    return s_ts_ns(CLOCK_MONOTONIC) / 1000u;
}

/* The test offset in ms (0 unless KVC_TEST_WALL_OFFSET_FILE is set). Read
 * from the loop thread and HTTP threads alike: a torn read of a 64-bit
 * value cannot happen on the platforms we build for, and a stale one is
 * harmless. */
static int64_t s_offset_ms(void)
{
    static const char *path;
    static int looked;
    static int64_t offset;
    static uint64_t read_at;
    if (!looked) {
        path = getenv("KVC_TEST_WALL_OFFSET_FILE");
        looked = 1;
    }
    if (!path || !path[0])
        return 0;
    uint64_t now = kvc_clock_mono_ms();
    if (read_at && now - read_at < 100)
        return offset;
    read_at = now;
    FILE *f = fopen(path, "r");
    if (!f)
        return offset;
    long long v;
    if (fscanf(f, "%lld", &v) == 1 && v > -86400000LL * 366 && v < 86400000LL * 366)
        offset = v;
    fclose(f);
    return offset;
}

uint64_t kvc_clock_wall_ms(void)
{
    int64_t ms = (int64_t)(s_ts_ns(CLOCK_REALTIME) / 1000000u) + s_offset_ms();
    return ms > 0 ? (uint64_t)ms : 0;
}

int64_t kvc_clock_wall_s(void)
{
    return (int64_t)(kvc_clock_wall_ms() / 1000u);
}
