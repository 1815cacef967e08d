/*
 * pb_alloc.c - kvc's protobuf-c allocator on kvc_malloc / kvc_free.
 *
 * The allocator's data is the kvc_pb_alloc_t itself, so each decode keeps
 * its own failure flag: no globals, no thread-local state, safe on every
 * thread at once.
 */
#include "pb_alloc.h"

/* protobuf-c's alloc: kvc_malloc, noting a failure when data is tracked. */
static void *s_alloc(void *data, size_t size)
{
    void *p = kvc_malloc(size);
    if (!p && data)
        ((kvc_pb_alloc_t *)data)->failed = 1;
    return p;
}

/* protobuf-c's free. */
static void s_free(void *data, void *ptr)
{
    (void)data;
    kvc_free(ptr);
}

static ProtobufCAllocator s_shared = {s_alloc, s_free, NULL};

ProtobufCAllocator *kvc_pb_allocator(void)
{
    return &s_shared;
}

ProtobufCAllocator *kvc_pb_alloc_init(kvc_pb_alloc_t *t)
{
    t->base.alloc = s_alloc;
    t->base.free = s_free;
    t->base.allocator_data = t;
    t->failed = 0;
    return &t->base;
}

int kvc_pb_alloc_error(const kvc_pb_alloc_t *t)
{
    return t->failed ? KVC_ENOMEM : KVC_EPARSE;
}

