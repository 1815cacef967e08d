/*
 * pb_decode.h - how proxy/ decodes the protobuf a model server sends.
 *
 * Every protobuf-c unpack and free in proxy/ goes through one allocator
 * built on kvc_malloc / kvc_free, so kvc_alloc_fail_after reaches every
 * decoder and a test can fail the Nth allocation of any reply. protobuf-c
 * says only NULL when an unpack fails; the tracked form below also tells
 * whether memory ran out (a 500 of ours) or the bytes were bad (the model
 * server's fault). Nothing here does I/O.
 */
#ifndef KVC_PB_DECODE_H
#define KVC_PB_DECODE_H

#include "base.h"
#include "pb_alloc.h"
#include "tensorflow_serving/apis/get_model_metadata.pb-c.h"

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Unpacks len bytes as a message of desc into *out (free with
 * protobuf_c_message_free_unpacked(*out, kvc_pb_allocator())). Returns 0,
 * or with *out NULL: KVC_ENOMEM ("out of memory") or KVC_EPARSE ("model
 * server sent an invalid <what>"), the message in err.
 */
int kvc_pb_unpack(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
                  const char *what, ProtobufCMessage **out, kvc_err_t *err);

/*
 * Finds the "signature_def" entry of a TF Serving metadata reply and
 * unpacks its Any as a SignatureDefMap into *out (free with
 * tensorflow__serving__signature_def_map__free_unpacked(*out,
 * kvc_pb_allocator())). KVC_EPARSE when there is none, its type is another
 * or its bytes do not decode; KVC_ENOMEM. Messages in err.
 */
int kvc_pb_unpack_sigmap(const Tensorflow__Serving__GetModelMetadataResponse *r,
                         Tensorflow__Serving__SignatureDefMap **out, kvc_err_t *err);

#endif
