/*
 * link_rules.h - when a federation link counts as up and when it is owed a
 * Hello or a Ping. Pure functions of the link's timestamps (monotonic ms)
 * so they are unit-tested without sockets; the daemon applies them.
 *
 * Liveness of members is membership's job (SWIM); a link only needs to know
 * whether its connection works. Its DEALER is ZMQ_IMMEDIATE: a message is
 * taken only once the CURVE handshake of a connection has completed, and is
 * refused (EAGAIN) while there is none. So the daemon needs no socket
 * monitor (one per link cost a socket, an inproc pipe and a poll item per
 * member, most of an idle peer's CPU at N = 100): after a connect it tries
 * its Hello at growing intervals (KVC_LINK_TRY_FIRST_MS doubling up to
 * KVC_LINK_TRY_MAX_MS) until one is taken, which means handshaked; a send
 * refused later means the connection is gone (handshaked 0) and the tries
 * start again. Pings are for round-trip times and for links that carry
 * nothing else: one per KVC_LINK_PING_MS, and a link not heard from for
 * KVC_LINK_TIMEOUT_MS (three pings) is down.
 */
#ifndef KVC_LINK_RULES_H
#define KVC_LINK_RULES_H

#include <stdint.h>

#include "clock.h"

#define KVC_LINK_PING_MS 20000
#define KVC_LINK_TIMEOUT_MS (3 * KVC_LINK_PING_MS)
#define KVC_LINK_HELLO_RETRY_MS 2000
#define KVC_LINK_TICK_MS 1000
#define KVC_LINK_TRY_FIRST_MS 5
#define KVC_LINK_TRY_MAX_MS 1000

typedef struct {
    int handshaked, verified, acked;
    uint64_t last_seen_ms, hello_sent_ms, ping_sent_ms;
    uint64_t try_at_ms;   /* next try at our Hello while not handshaked */
    uint32_t try_wait_ms; /* its current interval; 0: no connection wanted */
} kvc_link_clock_t;

/* A connection is being made: not handshaked, first try soon. */
static inline void kvc_link_connecting(kvc_link_clock_t *l, uint64_t now)
{
    l->handshaked = 0;
    l->acked = 0;
    l->try_wait_ms = KVC_LINK_TRY_FIRST_MS;
    l->try_at_ms = now + KVC_LINK_TRY_FIRST_MS;
}

/* No connection wanted any more (the socket is closed). */
static inline void kvc_link_closed(kvc_link_clock_t *l)
{
    l->handshaked = 0;
    l->acked = 0;
    l->try_wait_ms = 0;
}

/* Owed a try at our Hello: a connection is wanted, not known to work. */
static inline int kvc_link_try_due(const kvc_link_clock_t *l, uint64_t now)
{
    return l->try_wait_ms && !l->handshaked && now >= l->try_at_ms;
}

/* The Hello was taken: the handshake has completed. */
static inline void kvc_link_handshaked(kvc_link_clock_t *l)
{
    l->handshaked = 1;
    l->acked = 0;
}

/* A send was refused: no working connection. Tries start again (at the
 * first interval if the link was up, else the interval doubles). */
static inline void kvc_link_refused(kvc_link_clock_t *l, uint64_t now)
{
    if (!l->try_wait_ms)
        return;
    if (l->handshaked) {
        kvc_link_connecting(l, now);
        return;
    }
    l->try_wait_ms = l->try_wait_ms * 2 > KVC_LINK_TRY_MAX_MS ? KVC_LINK_TRY_MAX_MS
                                                              : l->try_wait_ms * 2;
    l->try_at_ms = now + l->try_wait_ms;
}

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
