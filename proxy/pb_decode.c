/*
 * pb_decode.c - the proxy's checked unpacking, on kvc's one protobuf-c
 * allocator (federation/pb_alloc.h).
 */
#include "pb_decode.h"

#include <string.h>

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
