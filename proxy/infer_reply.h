/*
 * infer_reply.h - a model server's inference answer, as protobuf bytes,
 * decoded into the proxy's tensors: TF Serving's PredictResponse and
 * KServe v2's ModelInferResponse.
 *
 * Pure: bytes in, a tensor list out, no I/O. The bytes are hostile; every
 * count and size is checked by tensor_pb.c against the shape and the
 * limits before anything is copied, and decoding allocates only through
 * kvc_malloc (pb_decode.h), so any allocation may fail cleanly. Outputs
 * come sorted by name (outputs arrive in map order, which no server
 * promises; answers should not depend on it).
 */
#ifndef KVC_INFER_REPLY_H
#define KVC_INFER_REPLY_H

#include "base.h"
#include "tensor.h"

#include <stddef.h>
#include <stdint.h>

/*
 * Decodes len bytes of a PredictResponse into *outputs (the caller
 * destroys it). version (size > 0 bytes) gets the model version the server
 * says it ran, "" when it names none. Returns 0; or, with *outputs NULL and
 * err->msg the answer for the client: KVC_ENOMEM ("out of memory": ours,
 * HTTP 500), KVC_EPARSE (an invalid reply) or KVC_ERANGE (a reply over
 * lim), both the model server's doing (HTTP 502).
 */
int kvc_infer_reply_tfs(const uint8_t *data, size_t len, const kvc_tensor_limits_t *lim,
                        kvc_tensor_list_t **outputs, char *version, size_t version_size,
                        kvc_err_t *err);

/* The same for a ModelInferResponse (raw_output_contents or typed). */
int kvc_infer_reply_kserve(const uint8_t *data, size_t len, const kvc_tensor_limits_t *lim,
                           kvc_tensor_list_t **outputs, char *version, size_t version_size,
                           kvc_err_t *err);

#endif
