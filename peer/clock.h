/*
 * clock.h - the peer's two clocks. Protocol time (timers, timeouts, ages,
 * round trips) is CLOCK_MONOTONIC and never jumps; the wall clock is read
 * only for a credential's validity window and for log lines.
 *
 * Tests step the wall clock without touching the host's: when the
 * environment names KVC_TEST_WALL_OFFSET_FILE, the file's integer (signed
 * milliseconds) is added to every wall-clock reading; it is re-read at most
 * every 100 ms of monotonic time. Nothing else reads it.
 */
#ifndef KVC_CLOCK_H
#define KVC_CLOCK_H

#include <stdint.h>

/* Monotonic milliseconds / microseconds since an arbitrary origin. */
uint64_t kvc_clock_mono_ms(void);
uint64_t kvc_clock_mono_us(void);
/* Wall-clock milliseconds and seconds since the Unix epoch. */
uint64_t kvc_clock_wall_ms(void);
int64_t kvc_clock_wall_s(void);

/* now - then, or 0 when then is later (never underflows). */
static inline uint64_t kvc_elapsed(uint64_t now, uint64_t then)
{
    return now > then ? now - then : 0;
}

#endif
