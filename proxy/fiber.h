/*
 * fiber.h - cooperative fibers (ucontext) for the HTTP front's event loop.
 *
 * A small request is answered inside a fiber on the loop thread: its
 * handler runs as ordinary blocking code, and where it would block (a gRPC
 * call) it yields to the loop instead, which goes on serving other
 * connections and resumes the fiber when the call has ended. One thread
 * thus serves many requests without a thread switch per request.
 *
 * Fibers belong to the thread that creates them: only that thread may
 * resume them or mark them ready. A fiber must never block its thread
 * (locks held briefly are fine; condition waits are not).
 *
 * Must never: resume a finished fiber, switch stacks without telling
 * AddressSanitizer or ThreadSanitizer (sanitized builds annotate every
 * switch), or let a handler overflow its stack silently (a guard page
 * faults).
 */
#ifndef KVC_FIBER_H
#define KVC_FIBER_H

#include <stdatomic.h>
#include <stddef.h>

typedef struct kvc_fiber kvc_fiber_t;
typedef void (*kvc_fiber_fn)(void *arg);

/* Each fiber's stack (plus one guard page). */
#define KVC_FIBER_STACK (256u * 1024u)

/* A fiber that will run fn(arg) when first resumed; NULL when out of
 * memory. Stacks are recycled per thread. */
kvc_fiber_t *kvc_fiber_new(kvc_fiber_fn fn, void *arg);

/* Runs f until it yields or returns; 1 when fn has returned (f is then
 * freed, and must not be used again), 0 when it yielded. Never call from
 * inside a fiber. */
int kvc_fiber_resume(kvc_fiber_t *f);

/* The fiber running on this thread, or NULL outside fibers. */
kvc_fiber_t *kvc_fiber_current(void);

/* Names the flag that, once nonzero, asks f to stop early (NULL: none).
 * Whoever waits inside f checks it: a gRPC call made in f ends with
 * CANCELLED instead of starting, and kvc_grpc_client_cancel ends the one in
 * flight. Set by f's creator; the flag must outlive f. */
void kvc_fiber_set_cancel(kvc_fiber_t *f, const atomic_int *flag);

/* The running fiber's cancel flag, or NULL (outside fibers, or none set). */
const atomic_int *kvc_fiber_cancel_flag(void);

/* Gives control back to whoever resumed the current fiber; returns when it
 * is resumed. Must be called inside a fiber. */
void kvc_fiber_yield(void);

/* Queues f on its thread's ready list (idempotent until it runs). */
void kvc_fiber_ready(kvc_fiber_t *f);

/* Takes the first fiber off this thread's ready list; NULL when empty. */
kvc_fiber_t *kvc_fiber_next_ready(void);

/* 1 when this thread's ready list is not empty. */
int kvc_fiber_has_ready(void);

/* Frees this thread's spare stacks (call before the thread exits). */
void kvc_fiber_thread_cleanup(void);

#endif
