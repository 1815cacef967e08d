/*
 * proxy_json.c - TF Serving status/metadata and KServe v2 model metadata
 * answers rendered from the model server's protobuf replies.
 *
 * Replies are hostile but already decoded by protobuf-c; every string is
 * escaped, NULL strings print as "", and output is bounded by the caller's
 * buffer. This module must never do I/O.
 */
#include "proxy_json.h"

#include "grpc_client.h"
#include "http_server.h"
#include "pb_decode.h"
#include "tensor.h"

#include <stdio.h>

#include <inttypes.h>
#include <string.h>

/* Appends a literal. */
static int s_put(kvc_buf_t *out, const char *s)
{
    return kvc_buf_append(out, s, strlen(s));
}

/* Appends a JSON string (NULL as ""). */
static int s_str(kvc_buf_t *out, const char *s)
{
    return kvc_json_append_str(out, s ? s : "", s ? strlen(s) : 0);
}

const char *kvc_proxy_tf_dtype_name(int dtype)
{
    static const char *names[] = {
        "DT_INVALID",    "DT_FLOAT",  "DT_DOUBLE",    "DT_INT32",   "DT_UINT8",   "DT_INT16",
        "DT_INT8",       "DT_STRING", "DT_COMPLEX64", "DT_INT64",   "DT_BOOL",    "DT_QINT8",
        "DT_QUINT8",     "DT_QINT32", "DT_BFLOAT16",  "DT_QINT16",  "DT_QUINT16", "DT_UINT16",
        "DT_COMPLEX128", "DT_HALF",   "DT_RESOURCE",  "DT_VARIANT", "DT_UINT32",  "DT_UINT64"};
    if (dtype < 0 || (size_t)dtype >= sizeof names / sizeof names[0])
        return NULL;
    return names[dtype];
}

const char *kvc_proxy_error_code_name(int code)
{
    /* TF Serving's error codes are gRPC's; outside that range it says UNKNOWN */
    if (code < 0 || code > KVC_GRPC_UNAUTHENTICATED)
        return "UNKNOWN";
    return kvc_grpc_status_name(code);
}

/* ModelVersionStatus.State name. */
static const char *s_state_name(int state)
{
    switch (state) {
    case 10:
        return "START";
    case 20:
        return "LOADING";
    case 30:
        return "AVAILABLE";
    case 40:
        return "UNLOADING";
    case 50:
        return "END";
    default:
        return "UNKNOWN";
    }
}

/* Appends one model_version_status entry. */
static int s_version_status(kvc_buf_t *out, const char *version, const char *state,
                            const char *code, const char *msg)
{
    int rc = s_put(out, "{\"version\": ");
    rc = rc ? rc : s_str(out, version);
    rc = rc ? rc : s_put(out, ", \"state\": ");
    rc = rc ? rc : s_str(out, state);
    rc = rc ? rc : s_put(out, ", \"status\": {\"error_code\": ");
    rc = rc ? rc : s_str(out, code);
    rc = rc ? rc : s_put(out, ", \"error_message\": ");
    rc = rc ? rc : s_str(out, msg);
    rc = rc ? rc : s_put(out, "}}");
    return rc;
}

int kvc_proxy_status_json(const Tensorflow__Serving__GetModelStatusResponse *r, kvc_buf_t *out)
{
    int rc = s_put(out, "{\"model_version_status\": [");
    for (size_t i = 0; rc == 0 && i < r->n_model_version_status; i++) {
        const Tensorflow__Serving__ModelVersionStatus *v = r->model_version_status[i];
        char ver[24];
        snprintf(ver, sizeof ver, "%" PRId64, v->version);
        const Tensorflow__Serving__StatusProto *st = v->status;
        if (i)
            rc = s_put(out, ", ");
        rc = rc ? rc
                : s_version_status(out, ver, s_state_name(v->state),
                                   kvc_proxy_error_code_name(st ? (int)st->error_code : 0),
                                   st ? st->error_message : "");
    }
    return rc ? rc : s_put(out, "]}");
}

int kvc_proxy_status_json_ready(const char *version, int ready, kvc_buf_t *out)
{
    int rc = s_put(out, "{\"model_version_status\": [");
    rc = rc ? rc
            : s_version_status(out, version, ready ? "AVAILABLE" : "UNKNOWN",
                               ready ? "OK" : "UNAVAILABLE", ready ? "" : "model is not ready");
    return rc ? rc : s_put(out, "]}");
}

/* Appends a TensorInfo-shaped object: dtype, tensor_shape, name. */
static int s_tensor_info(kvc_buf_t *out, int dtype, const int64_t *dims, size_t n_dims,
                         int unknown_rank, const char *name)
{
    const char *dn = kvc_proxy_tf_dtype_name(dtype);
    int rc = s_put(out, "{\"dtype\": ");
    if (dn)
        rc = rc ? rc : s_str(out, dn);
    else
        rc = rc ? rc : kvc_buf_printf(out, "%d", dtype);
    rc = rc ? rc : s_put(out, ", \"tensor_shape\": {\"dim\": [");
    for (size_t i = 0; rc == 0 && i < n_dims; i++)
        rc = kvc_buf_printf(out, "%s{\"size\": \"%" PRId64 "\", \"name\": \"\"}", i ? ", " : "",
                            dims[i]);
    rc = rc ? rc
            : kvc_buf_printf(
                  out, "], \"unknown_rank\": %s}, \"name\": ", unknown_rank ? "true" : "false");
    rc = rc ? rc : s_str(out, name);
    return rc ? rc : s_put(out, "}");
}

/* Appends a TF TensorInfo. */
static int s_tf_tensor_info(kvc_buf_t *out, const Tensorflow__TensorInfo *ti)
{
    int64_t dims[64];
    size_t n = 0;
    const Tensorflow__TensorShapeProto *sh = ti->tensor_shape;
    if (sh && sh->n_dim > 64)
        return KVC_ERANGE;
    for (size_t i = 0; sh && i < sh->n_dim; i++)
        dims[n++] = sh->dim[i] ? sh->dim[i]->size : 0;
    const char *name = ti->encoding_case == TENSORFLOW__TENSOR_INFO__ENCODING_NAME ? ti->name : "";
    return s_tensor_info(out, ti->dtype, dims, n, sh ? sh->unknown_rank : 0, name);
}

/* Appends a model_spec object. */
static int s_model_spec(kvc_buf_t *out, const Tensorflow__Serving__ModelSpec *spec)
{
    int rc = s_put(out, "{\"name\": ");
    rc = rc ? rc : s_str(out, spec ? spec->name : "");
    rc = rc ? rc : s_put(out, ", \"signature_name\": ");
    rc = rc ? rc : s_str(out, spec ? spec->signature_name : "");
    if (spec &&
        spec->version_choice_case == TENSORFLOW__SERVING__MODEL_SPEC__VERSION_CHOICE_VERSION &&
        spec->version)
        rc = rc ? rc : kvc_buf_printf(out, ", \"version\": \"%" PRId64 "\"", spec->version->value);
    if (spec && spec->version_choice_case ==
                    TENSORFLOW__SERVING__MODEL_SPEC__VERSION_CHOICE_VERSION_LABEL) {
        rc = rc ? rc : s_put(out, ", \"version_label\": ");
        rc = rc ? rc : s_str(out, spec->version_label);
    }
    return rc ? rc : s_put(out, "}");
}

/* Appends one SignatureDef object. */
static int s_signature_def(kvc_buf_t *out, const Tensorflow__SignatureDef *def)
{
    int rc = s_put(out, "{\"inputs\": {");
    for (size_t i = 0; rc == 0 && def && i < def->n_inputs; i++) {
        rc = s_put(out, i ? ", " : "");
        rc = rc ? rc : s_str(out, def->inputs[i]->key);
        rc = rc ? rc : s_put(out, ": ");
        if (def->inputs[i]->value)
            rc = rc ? rc : s_tf_tensor_info(out, def->inputs[i]->value);
        else
            rc = rc ? rc : s_put(out, "{}");
    }
    rc = rc ? rc : s_put(out, "}, \"outputs\": {");
    for (size_t i = 0; rc == 0 && def && i < def->n_outputs; i++) {
        rc = s_put(out, i ? ", " : "");
        rc = rc ? rc : s_str(out, def->outputs[i]->key);
        rc = rc ? rc : s_put(out, ": ");
        if (def->outputs[i]->value)
            rc = rc ? rc : s_tf_tensor_info(out, def->outputs[i]->value);
        else
            rc = rc ? rc : s_put(out, "{}");
    }
    rc = rc ? rc : s_put(out, "}, \"method_name\": ");
    rc = rc ? rc : s_str(out, def ? def->method_name : "");
    return rc ? rc : s_put(out, "}");
}

int kvc_proxy_metadata_json(const Tensorflow__Serving__GetModelMetadataResponse *r, kvc_buf_t *out,
                            kvc_err_t *err)
{
    Tensorflow__Serving__SignatureDefMap *m = NULL;
    int rc = kvc_pb_unpack_sigmap(r, &m, err);
    if (rc)
        return rc;
    rc = s_put(out, "{\"model_spec\": ");
    rc = rc ? rc : s_model_spec(out, r->model_spec);
    rc = rc ? rc : s_put(out, ", \"metadata\": {\"signature_def\": {\"signature_def\": {");
    for (size_t i = 0; rc == 0 && i < m->n_signature_def; i++) {
        rc = s_put(out, i ? ", " : "");
        rc = rc ? rc : s_str(out, m->signature_def[i]->key);
        rc = rc ? rc : s_put(out, ": ");
        rc = rc ? rc : s_signature_def(out, m->signature_def[i]->value);
    }
    rc = rc ? rc : s_put(out, "}}}}");
    tensorflow__serving__signature_def_map__free_unpacked(m, kvc_pb_allocator());
    return rc;
}

/* Appends a KServe tensor list as TF TensorInfo entries. */
static int s_kserve_as_tf(kvc_buf_t *out, Inference__ModelMetadataResponse__TensorMetadata **ts,
                          size_t n)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const char *dts = ts[i]->datatype ? ts[i]->datatype : "";
        kvc_dtype_t dt = kvc_dtype_from_kserve(dts, strlen(dts));
        rc = s_put(out, i ? ", " : "");
        rc = rc ? rc : s_str(out, ts[i]->name);
        rc = rc ? rc : s_put(out, ": ");
        rc = rc ? rc : s_tensor_info(out, dt, ts[i]->shape, ts[i]->n_shape, 0, ts[i]->name);
    }
    return rc;
}

int kvc_proxy_metadata_json_kserve(const Inference__ModelMetadataResponse *r, kvc_buf_t *out,
                                   kvc_err_t *err)
{
    int rc = s_put(out, "{\"model_spec\": {\"name\": ");
    rc = rc ? rc : s_str(out, r->name);
    rc = rc ? rc : s_put(out, ", \"signature_name\": \"\"");
    int64_t v = 0;
    if (r->n_versions > 0 && r->versions[0] && kvc_parse_i64(r->versions[0], 0, INT64_MAX, &v) == 0)
        rc = rc ? rc : kvc_buf_printf(out, ", \"version\": \"%" PRId64 "\"", v);
    rc = rc ? rc
            : s_put(out, "}, \"metadata\": {\"signature_def\": {\"signature_def\": "
                         "{\"serving_default\": {\"inputs\": {");
    rc = rc ? rc : s_kserve_as_tf(out, r->inputs, r->n_inputs);
    rc = rc ? rc : s_put(out, "}, \"outputs\": {");
    rc = rc ? rc : s_kserve_as_tf(out, r->outputs, r->n_outputs);
    return rc ? rc : s_put(out, "}, \"method_name\": \"tensorflow/serving/predict\"}}}}}");
}

/* Appends one v2 tensor metadata object. */
static int s_v2_tensor(kvc_buf_t *out, const char *name, const char *datatype, const int64_t *shape,
                       size_t n)
{
    int rc = s_put(out, "{\"name\": ");
    rc = rc ? rc : s_str(out, name);
    rc = rc ? rc : s_put(out, ", \"datatype\": ");
    rc = rc ? rc : s_str(out, datatype);
    rc = rc ? rc : s_put(out, ", \"shape\": [");
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = kvc_buf_printf(out, "%s%" PRId64, i ? ", " : "", shape[i]);
    return rc ? rc : s_put(out, "]}");
}

int kvc_proxy_v2_metadata_json(const Inference__ModelMetadataResponse *r, kvc_buf_t *out)
{
    int rc = s_put(out, "{\"name\": ");
    rc = rc ? rc : s_str(out, r->name);
    rc = rc ? rc : s_put(out, ", \"versions\": [");
    for (size_t i = 0; rc == 0 && i < r->n_versions; i++) {
        rc = s_put(out, i ? ", " : "");
        rc = rc ? rc : s_str(out, r->versions[i]);
    }
    rc = rc ? rc : s_put(out, "], \"platform\": ");
    rc = rc ? rc : s_str(out, r->platform);
    rc = rc ? rc : s_put(out, ", \"inputs\": [");
    for (size_t i = 0; rc == 0 && i < r->n_inputs; i++) {
        rc = s_put(out, i ? ", " : "");
        rc = rc ? rc
                : s_v2_tensor(out, r->inputs[i]->name, r->inputs[i]->datatype, r->inputs[i]->shape,
                              r->inputs[i]->n_shape);
    }
    rc = rc ? rc : s_put(out, "], \"outputs\": [");
    for (size_t i = 0; rc == 0 && i < r->n_outputs; i++) {
        rc = s_put(out, i ? ", " : "");
        rc = rc ? rc
                : s_v2_tensor(out, r->outputs[i]->name, r->outputs[i]->datatype,
                              r->outputs[i]->shape, r->outputs[i]->n_shape);
    }
    return rc ? rc : s_put(out, "]}");
}

/* Appends one TF TensorInfo as a v2 tensor metadata entry. */
static int s_tf_as_v2(kvc_buf_t *out, const char *key, const Tensorflow__TensorInfo *ti, int first)
{
    int64_t dims[64];
    size_t nd = 0;
    const Tensorflow__TensorShapeProto *sh = ti ? ti->tensor_shape : NULL;
    if (sh && sh->n_dim > 64)
        return KVC_ERANGE;
    for (size_t d = 0; sh && d < sh->n_dim; d++)
        dims[nd++] = sh->dim[d] ? sh->dim[d]->size : 0;
    const char *dt = ti ? kvc_dtype_kserve_name((kvc_dtype_t)ti->dtype) : NULL;
    int rc = s_put(out, first ? "" : ", ");
    return rc ? rc : s_v2_tensor(out, key, dt ? dt : "", dims, nd);
}

int kvc_proxy_v2_metadata_json_tfs(const Tensorflow__Serving__GetModelMetadataResponse *r,
                                   const char *sig, kvc_buf_t *out, kvc_err_t *err)
{
    Tensorflow__Serving__SignatureDefMap *m = NULL;
    int rc = kvc_pb_unpack_sigmap(r, &m, err);
    if (rc)
        return rc;
    const char *want = sig && sig[0] ? sig : "serving_default";
    const Tensorflow__SignatureDef *def = NULL;
    for (size_t i = 0; i < m->n_signature_def; i++)
        if (m->signature_def[i]->key && strcmp(m->signature_def[i]->key, want) == 0)
            def = m->signature_def[i]->value;
    if (!def && m->n_signature_def == 1)
        def = m->signature_def[0]->value;
    if (!def) {
        rc = kvc_err_set(err, KVC_EPARSE, "signature \"%.100s\" not found in metadata", want);
        goto done;
    }
    const Tensorflow__Serving__ModelSpec *spec = r->model_spec;
    rc = s_put(out, "{\"name\": ");
    rc = rc ? rc : s_str(out, spec ? spec->name : "");
    rc = rc ? rc : s_put(out, ", \"versions\": [");
    if (spec &&
        spec->version_choice_case == TENSORFLOW__SERVING__MODEL_SPEC__VERSION_CHOICE_VERSION &&
        spec->version)
        rc = rc ? rc : kvc_buf_printf(out, "\"%" PRId64 "\"", spec->version->value);
    rc = rc ? rc : s_put(out, "], \"platform\": \"tensorflow_serving\", \"inputs\": [");
    for (size_t i = 0; rc == 0 && i < def->n_inputs; i++)
        rc = s_tf_as_v2(out, def->inputs[i]->key, def->inputs[i]->value, i == 0);
    rc = rc ? rc : s_put(out, "], \"outputs\": [");
    for (size_t i = 0; rc == 0 && i < def->n_outputs; i++)
        rc = s_tf_as_v2(out, def->outputs[i]->key, def->outputs[i]->value, i == 0);
    rc = rc ? rc : s_put(out, "]}");
done:
    tensorflow__serving__signature_def_map__free_unpacked(m, kvc_pb_allocator());
    return rc;
}
