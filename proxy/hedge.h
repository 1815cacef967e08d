/*
 * hedge.h - the waiting machinery of hedged requests (issue 18): a race
 * object that a request and its attempts share, and one timer thread per
 * proxy that wakes a waiting request when its hedge is due.
 *
 * A request that is hedged has up to two attempts in flight at once, whose
 * completions come from any thread and may come after the request has been
 * answered and its memory freed. The race is what they write into: it is
 * reference-counted, so the last of the request and its attempts to let go
 * frees it (and its payload, through the payload's free function). The
 * request waits on it with kvc_hedge_race_wait, which yields inside a
 * fiber on the gRPC client's owner loop (kvc_grpc_ext_t) and blocks
 * anywhere else, until an attempt or the timer kicks it.
 *
 * Internal to proxy/: proxy.c is its only user. Knows nothing of HTTP or
 * routing; never reads the payload.
 */
#ifndef KVC_HEDGE_H
#define KVC_HEDGE_H

#include "grpc_client.h"

#include <stdint.h>

typedef struct kvc_hedge_timer kvc_hedge_timer_t;
typedef struct kvc_hedge_race kvc_hedge_race_t;

/* Starts the timer thread; NULL when out of memory or threads. */
kvc_hedge_timer_t *kvc_hedge_timer_new(void);

/* Stops the thread and drops the races still armed (without kicking
 * them: nobody may be waiting on them any more); nulls *self_p. */
void kvc_hedge_timer_destroy(kvc_hedge_timer_t **self_p);

/* A race with one reference (the caller's). engine is the gRPC client the
 * waits go through and timer the thread that kicks it (both borrowed: they
 * must outlive every wait, not the race). payload is the caller's, freed
 * with free_fn(payload) when the last reference goes, from whichever
 * thread drops it. NULL when out of memory (free_fn is not called). */
kvc_hedge_race_t *kvc_hedge_race_new(kvc_grpc_client_t *engine, kvc_hedge_timer_t *timer,
                                     void *payload, void (*free_fn)(void *));

/* Another reference, for an attempt that will write into the race. */
void kvc_hedge_race_ref(kvc_hedge_race_t *r);

/* Drops a reference; the last one frees the race and its payload. Nulls
 * *r_p. Any thread. */
void kvc_hedge_race_unref(kvc_hedge_race_t **r_p);

/* The payload given at creation. */
void *kvc_hedge_race_payload(kvc_hedge_race_t *r);

/* The race's mutex, for the payload's state shared between threads. Held
 * briefly; never across a wait or a call out. */
void kvc_hedge_race_lock(kvc_hedge_race_t *r);
void kvc_hedge_race_unlock(kvc_hedge_race_t *r);

/* Something changed: wakes the waiter, or makes its next wait return at
 * once. Any thread, any number of times; call it without the lock. */
void kvc_hedge_race_kick(kvc_hedge_race_t *r);

/* Waits until the race is kicked (returns at once when it was kicked
 * since the last wait returned). One waiter at a time: the request. */
void kvc_hedge_race_wait(kvc_hedge_race_t *r);

/* Kicks the race at at_ms on kvc_routing_now_ms's clock (once), replacing
 * any earlier arming; disarm cancels it. Each holds a reference while
 * armed, so an armed race outlives its request until it fires or is
 * disarmed. */
void kvc_hedge_race_arm(kvc_hedge_race_t *r, uint64_t at_ms);
void kvc_hedge_race_disarm(kvc_hedge_race_t *r);

#endif
