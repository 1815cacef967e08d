/*
 * hedge.c - races and the hedge timer (see hedge.h).
 *
 * Lock order: a race's mutex is never held while the timer's is taken,
 * nor while kvc_grpc_ext_done runs (which takes the client's); the timer
 * takes a race's reference count lock (atomic, no mutex) only. The timer
 * keeps its armed races on one list and scans it for the earliest: there
 * are as many as hedged requests in flight, few.
 */
#include "hedge.h"

#include "base.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

struct kvc_hedge_race {
    atomic_int refs;
    pthread_mutex_t mu;
    kvc_grpc_client_t *engine;
    kvc_hedge_timer_t *timer;
    void *payload;
    void (*free_fn)(void *);
    uint64_t kicks, seen;    /* under mu */
    kvc_grpc_ext_t *waiting; /* the waiter's, while it waits (under mu) */
    /* The timer's (under the timer's mutex). */
    int armed;
    uint64_t at_ms;
    kvc_hedge_race_t *next, *prev;
};

struct kvc_hedge_timer {
    pthread_mutex_t mu;
    pthread_cond_t cond; /* on CLOCK_MONOTONIC */
    pthread_t thread;
    int stop;
    kvc_hedge_race_t *head;
};

/* Milliseconds on the monotonic clock (kvc_routing_now_ms's). */
static uint64_t s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Takes r off the timer's list (timer mutex held); 1 if it was on it. */
static int s_unlink(kvc_hedge_timer_t *t, kvc_hedge_race_t *r)
{
    if (!r->armed)
        return 0;
    if (r->prev)
        r->prev->next = r->next;
    else
        t->head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->next = r->prev = NULL;
    r->armed = 0;
    return 1;
}

/* The timer thread: kicks each armed race when its time comes. */
static void *s_timer_main(void *arg)
{
    kvc_hedge_timer_t *t = arg;
    pthread_mutex_lock(&t->mu);
    while (!t->stop) {
        kvc_hedge_race_t *first = NULL;
        for (kvc_hedge_race_t *r = t->head; r; r = r->next)
            if (!first || r->at_ms < first->at_ms)
                first = r;
        if (!first) {
            pthread_cond_wait(&t->cond, &t->mu);
            continue;
        }
        uint64_t now = s_now_ms();
        if (now < first->at_ms) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            uint64_t ns = (uint64_t)ts.tv_nsec + (first->at_ms - now) * 1000000u;
            ts.tv_sec += (time_t)(ns / 1000000000u);
            ts.tv_nsec = (long)(ns % 1000000000u);
            pthread_cond_timedwait(&t->cond, &t->mu, &ts);
            continue;
        }
        s_unlink(t, first);
        pthread_mutex_unlock(&t->mu);
        kvc_hedge_race_kick(first);
        kvc_hedge_race_unref(&first); /* the arming's */
        pthread_mutex_lock(&t->mu);
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

kvc_hedge_timer_t *kvc_hedge_timer_new(void)
{
    kvc_hedge_timer_t *t = kvc_calloc(1, sizeof *t);
    if (!t)
        return NULL;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&t->cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&t->mu, NULL);
    if (pthread_create(&t->thread, NULL, s_timer_main, t) != 0) {
        pthread_cond_destroy(&t->cond);
        pthread_mutex_destroy(&t->mu);
        kvc_free(t);
        return NULL;
    }
    return t;
}

void kvc_hedge_timer_destroy(kvc_hedge_timer_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    kvc_hedge_timer_t *t = *self_p;
    pthread_mutex_lock(&t->mu);
    t->stop = 1;
    pthread_cond_signal(&t->cond);
    pthread_mutex_unlock(&t->mu);
    pthread_join(t->thread, NULL);
    while (t->head) {
        kvc_hedge_race_t *r = t->head;
        s_unlink(t, r);
        kvc_hedge_race_unref(&r);
    }
    pthread_cond_destroy(&t->cond);
    pthread_mutex_destroy(&t->mu);
    kvc_free(t);
    *self_p = NULL;
}

kvc_hedge_race_t *kvc_hedge_race_new(kvc_grpc_client_t *engine, kvc_hedge_timer_t *timer,
                                     void *payload, void (*free_fn)(void *))
{
    kvc_hedge_race_t *r = kvc_calloc(1, sizeof *r);
    if (!r)
        return NULL;
    atomic_init(&r->refs, 1);
    pthread_mutex_init(&r->mu, NULL);
    r->engine = engine;
    r->timer = timer;
    r->payload = payload;
    r->free_fn = free_fn;
    return r;
}

void kvc_hedge_race_ref(kvc_hedge_race_t *r)
{
    atomic_fetch_add(&r->refs, 1);
}

void kvc_hedge_race_unref(kvc_hedge_race_t **r_p)
{
    if (!r_p || !*r_p)
        return;
    kvc_hedge_race_t *r = *r_p;
    *r_p = NULL;
    if (atomic_fetch_sub(&r->refs, 1) != 1)
        return;
    if (r->free_fn)
        r->free_fn(r->payload);
    pthread_mutex_destroy(&r->mu);
    kvc_free(r);
}

void *kvc_hedge_race_payload(kvc_hedge_race_t *r)
{
    return r->payload;
}

void kvc_hedge_race_lock(kvc_hedge_race_t *r)
{
    pthread_mutex_lock(&r->mu);
}

void kvc_hedge_race_unlock(kvc_hedge_race_t *r)
{
    pthread_mutex_unlock(&r->mu);
}

void kvc_hedge_race_kick(kvc_hedge_race_t *r)
{
    pthread_mutex_lock(&r->mu);
    r->kicks++;
    kvc_grpc_ext_t *w = r->waiting;
    r->waiting = NULL;
    pthread_mutex_unlock(&r->mu);
    /* The waiter is still inside kvc_grpc_ext_wait (it returns only once
     * this marked it done), so w, and the engine it waits through, are
     * alive. Nobody waiting: the engine is never touched, so a late
     * attempt may kick a race whose proxy is gone. */
    if (w)
        kvc_grpc_ext_done(r->engine, w);
}

void kvc_hedge_race_wait(kvc_hedge_race_t *r)
{
    kvc_grpc_ext_t ext;
    pthread_mutex_lock(&r->mu);
    if (r->kicks != r->seen) {
        r->seen = r->kicks;
        pthread_mutex_unlock(&r->mu);
        return;
    }
    kvc_grpc_ext_init(&ext);
    r->waiting = &ext;
    pthread_mutex_unlock(&r->mu);
    kvc_grpc_ext_wait(r->engine, &ext);
    kvc_grpc_ext_destroy(&ext);
    pthread_mutex_lock(&r->mu);
    r->seen = r->kicks;
    pthread_mutex_unlock(&r->mu);
}

void kvc_hedge_race_arm(kvc_hedge_race_t *r, uint64_t at_ms)
{
    kvc_hedge_timer_t *t = r->timer;
    pthread_mutex_lock(&t->mu);
    if (!r->armed) {
        kvc_hedge_race_ref(r);
        r->armed = 1;
        r->prev = NULL;
        r->next = t->head;
        if (t->head)
            t->head->prev = r;
        t->head = r;
    }
    r->at_ms = at_ms;
    pthread_cond_signal(&t->cond);
    pthread_mutex_unlock(&t->mu);
}

void kvc_hedge_race_disarm(kvc_hedge_race_t *r)
{
    kvc_hedge_timer_t *t = r->timer;
    pthread_mutex_lock(&t->mu);
    int was = s_unlink(t, r);
    pthread_mutex_unlock(&t->mu);
    if (was)
        kvc_hedge_race_unref(&r);
}
