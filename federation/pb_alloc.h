/*
 * pb_alloc.h - the one protobuf-c allocator of kvc: kvc_malloc / kvc_free
 * (base.h), so kvc_alloc_fail_after reaches every decoder, in every layer,
 * and a test can fail the Nth allocation of any unpack. Part of kvc_base.
 *
 * protobuf-c says only NULL when an unpack fails; a tracked allocator
 * (kvc_pb_alloc_t) also tells whether memory ran out or the bytes were bad.
 * No globals beyond the shared allocator's constant table; no I/O.
 */
#ifndef KVC_PB_ALLOC_H
#define KVC_PB_ALLOC_H

#include "base.h"

#include <protobuf-c/protobuf-c.h>

/* The allocator for every *__unpack whose failure needs no reason and for
 * every *__free_unpacked. Static; never freed. */
ProtobufCAllocator *kvc_pb_allocator(void);

/* One unpack's allocator: kvc_malloc / kvc_free, remembering a failure. */
typedef struct {
    ProtobufCAllocator base;
    int failed; /* an allocation returned NULL */
} kvc_pb_alloc_t;

/* Readies t and returns the allocator to pass to *__unpack. */
ProtobufCAllocator *kvc_pb_alloc_init(kvc_pb_alloc_t *t);

/* After an unpack returned NULL: KVC_ENOMEM when an allocation failed,
 * else KVC_EPARSE (the bytes are not that message). */
int kvc_pb_alloc_error(const kvc_pb_alloc_t *t);

#endif
