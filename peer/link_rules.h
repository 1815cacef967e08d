/*
 * link_rules.h - when a federation link counts as up and when it is owed a
 * Hello or a Ping. Pure functions of the link's timestamps (monotonic ms)
 * so they are unit-tested without sockets; the daemon applies them.
 *
 * Liveness of members is membership's job (SWIM); a link only needs to know
 * whether its connection works. ZeroMQ reports a dropped TCP connection at
 * once (handshaked goes to 0), so pings are for round-trip times and for
 * links that carry nothing else: one per KVC_LINK_PING_MS, and a link not
 * heard from for KVC_LINK_TIMEOUT_MS (three pings) is down.
 */
#ifndef KVC_LINK_RULES_H
#define KVC_LINK_RULES_H

#include <stdint.h>

#include "clock.h"

#define KVC_LINK_PING_MS 20000
#define KVC_LINK_TIMEOUT_MS (3 * KVC_LINK_PING_MS)
#define KVC_LINK_HELLO_RETRY_MS 2000
#define KVC_LINK_TICK_MS 1000

typedef struct {
    int handshaked, verified, acked;
    uint64_t last_seen_ms, hello_sent_ms, ping_sent_ms;
} kvc_link_clock_t;

/* Usable now: connection up, credential verified, heard recently. A
 * timestamp later than now (it cannot be, with a monotonic clock, but
 * never trust arithmetic on it) counts as just heard. */
static inline int kvc_link_is_up(const kvc_link_clock_t *l, uint64_t now)
{
    return l->handshaked && l->verified && kvc_elapsed(now, l->last_seen_ms) <= KVC_LINK_TIMEOUT_MS;
}

/* Owed our Hello again: connected, not acknowledged, last one long ago. */
static inline int kvc_link_hello_due(const kvc_link_clock_t *l, uint64_t now)
{
    return l->handshaked && !l->acked &&
           (l->hello_sent_ms == 0 || kvc_elapsed(now, l->hello_sent_ms) >= KVC_LINK_HELLO_RETRY_MS);
}

/* Owed a Ping: verified and connected, none sent for KVC_LINK_PING_MS. */
static inline int kvc_link_ping_due(const kvc_link_clock_t *l, uint64_t now)
{
    return l->handshaked && l->verified &&
           (l->ping_sent_ms == 0 || kvc_elapsed(now, l->ping_sent_ms) >= KVC_LINK_PING_MS);
}

#endif
