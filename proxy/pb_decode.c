/*
 * pb_decode.c - the proxy's protobuf-c allocator and checked unpacking.
 *
 * The allocator's data is the kvc_pb_alloc_t itself, so each decode keeps
 * its own failure flag: no globals, no thread-local state, safe on every
 * HTTP thread at once.
 */
#include "pb_decode.h"

#include <string.h>

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

int kvc_pb_unpack(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
                  const char *what, ProtobufCMessage **out, kvc_err_t *err)
{
    kvc_pb_alloc_t a;
    *out = protobuf_c_message_unpack(desc, kvc_pb_alloc_init(&a), len, data);
    if (*out)
        return KVC_OK;
    if (kvc_pb_alloc_error(&a) == KVC_ENOMEM)
        return kvc_err_set(err, KVC_ENOMEM, "out of memory");
    return kvc_err_set(err, KVC_EPARSE, "model server sent an invalid %s", what);
}

/* Tells whether an Any's type_url names a SignatureDefMap (any prefix). */
static int s_is_sigmap_url(const char *url)
{
    static const char want[] = "tensorflow.serving.SignatureDefMap";
    const char *slash = url ? strrchr(url, '/') : NULL;
    return slash && strcmp(slash + 1, want) == 0;
}

int kvc_pb_unpack_sigmap(const Tensorflow__Serving__GetModelMetadataResponse *r,
                         Tensorflow__Serving__SignatureDefMap **out, kvc_err_t *err)
{
    *out = NULL;
    const Google__Protobuf__Any *any = NULL;
    for (size_t i = 0; r && i < r->n_metadata; i++)
        if (r->metadata[i] && r->metadata[i]->key &&
            strcmp(r->metadata[i]->key, "signature_def") == 0 && r->metadata[i]->value)
            any = r->metadata[i]->value;
    if (!any)
        return kvc_err_set(err, KVC_EPARSE, "metadata has no signature_def");
    if (!s_is_sigmap_url(any->type_url))
        return kvc_err_set(err, KVC_EPARSE, "metadata signature_def has type \"%.100s\"",
                           any->type_url ? any->type_url : "");
    kvc_pb_alloc_t a;
    *out = tensorflow__serving__signature_def_map__unpack(kvc_pb_alloc_init(&a), any->value.len,
                                                          any->value.data);
    if (*out)
        return KVC_OK;
    if (kvc_pb_alloc_error(&a) == KVC_ENOMEM)
        return kvc_err_set(err, KVC_ENOMEM, "out of memory");
    return kvc_err_set(err, KVC_EPARSE, "metadata signature_def is not a valid SignatureDefMap");
}
