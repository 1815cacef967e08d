/*
 * tensor_pb.h - converts between the proxy's tensors and the model servers'
 * protobuf tensors: tensorflow.TensorProto (TF Serving) and KServe v2's
 * InferInputTensor / InferOutputTensor with raw contents.
 *
 * Outbound conversions are views: they point into the tensor's buffer (no
 * copy of the numeric data; tensor_content / raw_input_contents) and stay
 * valid while the tensor lives unchanged. Inbound conversions treat the
 * backend's message as hostile: every count is checked against the shape
 * and the limits before anything is copied.
 */
#ifndef KVC_TENSOR_PB_H
#define KVC_TENSOR_PB_H

#include "base.h"
#include "tensor.h"
#include "kserve/grpc_predict_v2.pb-c.h"
#include "tensorflow/core/framework/tensor.pb-c.h"

/* A TensorProto that borrows a tensor's data. */
typedef struct {
    Tensorflow__TensorProto proto;
    Tensorflow__TensorShapeProto shape;
    Tensorflow__TensorShapeProto__Dim dims[KVC_TENSOR_MAX_DIMS];
    Tensorflow__TensorShapeProto__Dim *dimp[KVC_TENSOR_MAX_DIMS];
    ProtobufCBinaryData *strings; /* owned, for DT_STRING */
} kvc_tfproto_view_t;

/* Fills v to describe t (tensor_content for numbers, string_val for
 * strings). Clear with kvc_tfproto_view_clear. KVC_ENOMEM, KVC_EINVAL. */
int kvc_tfproto_view_init(kvc_tfproto_view_t *v, const kvc_tensor_t *t);
void kvc_tfproto_view_clear(kvc_tfproto_view_t *v);

/*
 * Builds a new tensor named name from a backend's TensorProto, from
 * tensor_content or the typed *_val fields (fewer values than elements
 * repeat the last one, as TensorFlow does). KVC_EPARSE with err for any
 * inconsistency, KVC_ERANGE past lim, KVC_ENOMEM.
 */
int kvc_tensor_from_tfproto(const Tensorflow__TensorProto *p, const char *name,
                            const kvc_tensor_limits_t *lim, kvc_tensor_t **out, kvc_err_t *err);

/* A KServe input tensor plus its raw bytes, borrowing a tensor's data. */
typedef struct {
    Inference__ModelInferRequest__InferInputTensor input;
    int64_t shape[KVC_TENSOR_MAX_DIMS];
    ProtobufCBinaryData raw;
    uint8_t *owned; /* BYTES tensors: length-prefixed copy */
} kvc_kserve_input_view_t;

/* Fills v for t; the raw bytes go in raw_input_contents in input order. */
int kvc_kserve_input_view_init(kvc_kserve_input_view_t *v, const kvc_tensor_t *t);
void kvc_kserve_input_view_clear(kvc_kserve_input_view_t *v);

/*
 * Builds a tensor from a KServe output, from raw (raw_output_contents entry,
 * may be NULL) or from its typed contents. Same errors as above.
 */
int kvc_tensor_from_kserve_output(const Inference__ModelInferResponse__InferOutputTensor *o,
                                  const ProtobufCBinaryData *raw, const kvc_tensor_limits_t *lim,
                                  kvc_tensor_t **out, kvc_err_t *err);

#endif
