/*
 * core.h - the one interface every sans-IO protocol core implements, and
 * the one outbox they all write into.
 *
 * A core is a state machine: it hears a message from a member on its
 * channel, is ticked at a time, reports its next deadline and hears member
 * events (joined, alive, suspect, dead, left, meta, reaped) that another core
 * (membership) produced. It never reads a clock, a socket or system
 * randomness. Whatever it wants to say it appends to a kvc_outbox_t,
 * addressed by member id and channel; the outbox has a byte bound so no
 * core can make the caller buffer without limit.
 *
 * A channel is the field number of the core's body in kvc.fed.Envelope
 * (proto/federation.proto): 20 membership, 40 election, 50 registry, ...
 * kvc-peer keeps a table channel -> core; tests/sim drives the same cores.
 *
 * kvc_core_set_t is the small dispatcher both use: it finds the core of a
 * channel, ticks the due cores, computes the earliest deadline and hands
 * every member event a call produced to every core.
 */
#ifndef KVC_CORE_H
#define KVC_CORE_H

#include <stddef.h>
#include <stdint.h>

#include "base.h"

#define KVC_MEMBER_ID_MAX 127          /* "site/name", each part <= 63 */
#define KVC_OUTBOX_DEFAULT_MAX (4u << 20) /* bytes queued per flush */
#define KVC_CORES_MAX 16
#define KVC_DEADLINE_NONE UINT64_MAX

typedef enum {
    KVC_MEMBER_EV_JOINED = 0, /* first heard of (state alive) */
    KVC_MEMBER_EV_ALIVE,      /* alive again, or alive at a higher incarnation */
    KVC_MEMBER_EV_SUSPECT,
    KVC_MEMBER_EV_DEAD,
    KVC_MEMBER_EV_LEFT,
    KVC_MEMBER_EV_META,  /* metadata changed (meta_version set) */
    KVC_MEMBER_EV_REAPED /* forgotten */
} kvc_member_event_type_t;

typedef struct {
    kvc_member_event_type_t type;
    char id[KVC_MEMBER_ID_MAX + 1];
    uint64_t incarnation;
    uint64_t meta_version;
} kvc_member_event_t;

/* 1 if member id "site/name" is of site (a non-empty name after it). */
int kvc_member_in_site(const char *id, const char *site);

/* Returns a static name for an event type ("joined", ...). */
const char *kvc_member_event_name(kvc_member_event_type_t type);

/* One outgoing message: its bytes are out->bytes[off, off+len). */
typedef struct {
    char to[KVC_MEMBER_ID_MAX + 1];
    uint32_t channel;
    size_t off;
    size_t len;
} kvc_out_msg_t;

/* The outbox, owned by the caller: init once, pass to any number of calls
 * (they append), read, then reset. Pointers into it stay valid until the
 * next call that appends, reset or free. */
typedef struct {
    kvc_out_msg_t *msgs;
    size_t n_msgs, cap_msgs;
    uint8_t *bytes;
    size_t n_bytes, cap_bytes;
    kvc_member_event_t *events;
    size_t n_events, cap_events;
    size_t max_bytes;  /* bound on n_bytes */
    uint64_t refused;  /* messages refused because of the bound */
} kvc_outbox_t;

/* Prepares an empty outbox holding at most max_bytes of messages
 * (0: KVC_OUTBOX_DEFAULT_MAX). */
void kvc_outbox_init(kvc_outbox_t *out, size_t max_bytes);
/* Empties it, keeping its memory and bound. */
void kvc_outbox_reset(kvc_outbox_t *out);
/* Frees its memory; it may be init'ed again. */
void kvc_outbox_free(kvc_outbox_t *out);
/* Bytes of message i (i < out->n_msgs). */
const uint8_t *kvc_outbox_data(const kvc_outbox_t *out, size_t i);
/* Room for n more bytes at the end of the byte arena, for a message being
 * built; NULL (and refused counted) past the bound or on allocation failure.
 * The pointer is valid until the next append. */
uint8_t *kvc_outbox_reserve(kvc_outbox_t *out, size_t n);
/* Commits len bytes written at the last reserve as one message to `to` on
 * channel. KVC_ERANGE if to is too long, KVC_ENOMEM. */
int kvc_outbox_commit(kvc_outbox_t *out, const char *to, uint32_t channel, size_t len);
/* Copies one whole message in (reserve + commit). */
int kvc_outbox_put(kvc_outbox_t *out, const char *to, uint32_t channel, const void *data,
                   size_t len);
/* Appends a member event; KVC_ENOMEM if it could not be kept. */
int kvc_outbox_event(kvc_outbox_t *out, kvc_member_event_type_t type, const char *id,
                     uint64_t incarnation, uint64_t meta_version);

/* The interface. Any callback may be NULL when a core has nothing to do
 * there. `core` is the state passed at registration. */
typedef struct {
    const char *name;  /* for logs and metrics: "membership", "election" */
    uint32_t channel;  /* envelope body kind it receives; 0 = none */
    /* A message from member `from` (already authenticated by the caller).
     * Malformed input is dropped and counted by the core: KVC_EPARSE. */
    int (*receive)(void *core, uint64_t now_ms, const char *from, const uint8_t *msg, size_t len,
                   kvc_outbox_t *out);
    /* Runs every timer due at now_ms. */
    int (*tick)(void *core, uint64_t now_ms, kvc_outbox_t *out);
    /* The earliest time tick has work; KVC_DEADLINE_NONE if none. */
    uint64_t (*next_deadline)(const void *core);
    /* A member event some core produced. */
    void (*member_event)(void *core, uint64_t now_ms, const kvc_member_event_t *ev,
                         kvc_outbox_t *out);
} kvc_core_ops_t;

typedef struct {
    const kvc_core_ops_t *ops;
    void *core;
} kvc_core_t;

/* The registration table. */
typedef struct {
    kvc_core_t cores[KVC_CORES_MAX];
    size_t n;
    size_t events_done; /* events in the outbox already handed to the cores */
    uint64_t unknown_channel; /* messages for a channel no core takes */
} kvc_core_set_t;

void kvc_core_set_init(kvc_core_set_t *set);
/* Registers a core. KVC_EEXIST if another core has its (non-zero) channel,
 * KVC_ERANGE when the table is full, KVC_EINVAL for NULL ops. */
int kvc_core_set_add(kvc_core_set_t *set, const kvc_core_ops_t *ops, void *core);
/* The core of a channel, or NULL. */
const kvc_core_t *kvc_core_set_find(const kvc_core_set_t *set, uint32_t channel);
/* Hands a message to the core of its channel. KVC_ENOENT (counted in
 * unknown_channel) when no core takes the channel; else the core's result. */
int kvc_core_set_receive(kvc_core_set_t *set, uint32_t channel, uint64_t now_ms,
                         const char *from, const uint8_t *msg, size_t len, kvc_outbox_t *out);
/* Ticks every core whose deadline is <= now_ms. Returns how many ran. */
size_t kvc_core_set_tick(kvc_core_set_t *set, uint64_t now_ms, kvc_outbox_t *out);
/* The earliest deadline of any core; KVC_DEADLINE_NONE if none. */
uint64_t kvc_core_set_next_deadline(const kvc_core_set_t *set);
/* Hands every event appended to out since the last call (or the last
 * kvc_core_set_flushed) to every core's member_event, including events those
 * calls append. Call after each receive/tick, before reading the events. */
void kvc_core_set_deliver(kvc_core_set_t *set, uint64_t now_ms, kvc_outbox_t *out);
/* Tells the set the outbox was reset. */
void kvc_core_set_flushed(kvc_core_set_t *set);

#endif
