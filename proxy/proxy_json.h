/*
 * proxy_json.h - the proxy's non-tensor JSON answers, built from the model
 * server's protobuf replies: TF Serving's model status and metadata (in TF
 * Serving's own JSON form: int64 as strings, enum names, every primitive
 * field printed) and KServe v2's model metadata, from either backend kind.
 *
 * Pure functions: a decoded message in, text appended to a bounded buffer.
 * Every function returns 0, KVC_ERANGE (out->max reached), KVC_ENOMEM or
 * KVC_EPARSE (with err) for a reply that cannot be rendered.
 */
#ifndef KVC_PROXY_JSON_H
#define KVC_PROXY_JSON_H

#include "base.h"
#include "kserve/grpc_predict_v2.pb-c.h"
#include "tensorflow_serving/apis/get_model_metadata.pb-c.h"
#include "tensorflow_serving/apis/get_model_status.pb-c.h"

/* TensorFlow DataType name ("DT_FLOAT"), or NULL when out of the enum. */
const char *kvc_proxy_tf_dtype_name(int dtype);

/* TF Serving's gRPC code names as tensorflow.error.Code ("NOT_FOUND"). */
const char *kvc_proxy_error_code_name(int code);

/* {"model_version_status": [{"version": "1", "state": "AVAILABLE",
 *  "status": {"error_code": "OK", "error_message": ""}}, ...]} */
int kvc_proxy_status_json(const Tensorflow__Serving__GetModelStatusResponse *r, kvc_buf_t *out);

/* The same answer for a KServe backend: one version, AVAILABLE when ready,
 * else UNKNOWN with error_code UNAVAILABLE. version is a decimal string. */
int kvc_proxy_status_json_ready(const char *version, int ready, kvc_buf_t *out);

/* {"model_spec": {...}, "metadata": {"signature_def": {"signature_def":
 *  {NAME: {"inputs": {...}, "outputs": {...}, "method_name": ...}}}}} */
int kvc_proxy_metadata_json(const Tensorflow__Serving__GetModelMetadataResponse *r, kvc_buf_t *out,
                            kvc_err_t *err);

/* TF Serving's metadata answer synthesised from KServe ModelMetadata: one
 * "serving_default" signature with the model's inputs and outputs. */
int kvc_proxy_metadata_json_kserve(const Inference__ModelMetadataResponse *r, kvc_buf_t *out,
                                   kvc_err_t *err);

/* KServe v2 model metadata {"name", "versions", "platform", "inputs":
 * [{"name", "datatype", "shape"}], "outputs": [...]} from a KServe reply. */
int kvc_proxy_v2_metadata_json(const Inference__ModelMetadataResponse *r, kvc_buf_t *out);

/* The same from TF Serving's metadata, using signature sig (NULL =
 * "serving_default"); platform "tensorflow_serving". KVC_EPARSE when the
 * reply holds no such signature. */
int kvc_proxy_v2_metadata_json_tfs(const Tensorflow__Serving__GetModelMetadataResponse *r,
                                   const char *sig, kvc_buf_t *out, kvc_err_t *err);

#endif
