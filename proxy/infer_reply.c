/*
 * infer_reply.c - PredictResponse / ModelInferResponse bytes -> tensors.
 *
 * Each message is unpacked with the proxy's allocator (pb_decode.h), each
 * output converted by tensor_pb.c, and the message freed before returning,
 * whatever happened. Must never keep a pointer into the message or trust a
 * count it has not checked.
 */
#include "infer_reply.h"

#include "pb_decode.h"
#include "tensor_pb.h"

#include "kserve/grpc_predict_v2.pb-c.h"
#include "tensorflow_serving/apis/predict.pb-c.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* Turns a tensor conversion failure into the client's message. */
static int s_convert_error(int rc, const kvc_err_t *why, kvc_err_t *err)
{
    if (rc == KVC_ERANGE)
        return kvc_err_set(err, KVC_ERANGE, "model server reply over the limits: %s", why->msg);
    if (rc == KVC_ENOMEM)
        return kvc_err_set(err, KVC_ENOMEM, "out of memory");
    return kvc_err_set(err, KVC_EPARSE, "model server sent an invalid tensor: %s", why->msg);
}

/* Adds tensor t to list (taking it, even on failure). */
static int s_add(kvc_tensor_list_t *list, kvc_tensor_t **t, kvc_err_t *err)
{
    int rc = kvc_tensor_list_add(list, t);
    if (rc == KVC_EEXIST)
        return kvc_err_set(err, KVC_EPARSE,
                           "model server sent an invalid response (an output name twice)");
    if (rc)
        return kvc_err_set(err, KVC_ENOMEM, "out of memory");
    return KVC_OK;
}

/* Sorts output indices by name (insertion sort: outputs are few). */
static void s_sort_by_key(size_t *idx, size_t n,
                          Tensorflow__Serving__PredictResponse__OutputsEntry **outs)
{
    for (size_t i = 1; i < n; i++) {
        size_t v = idx[i], j = i;
        const char *nv = outs[v]->key ? outs[v]->key : "";
        while (j > 0 && strcmp(outs[idx[j - 1]]->key ? outs[idx[j - 1]]->key : "", nv) > 0) {
            idx[j] = idx[j - 1];
            j--;
        }
        idx[j] = v;
    }
}

int kvc_infer_reply_tfs(const uint8_t *data, size_t len, const kvc_tensor_limits_t *lim,
                        kvc_tensor_list_t **outputs, char *version, size_t version_size,
                        kvc_err_t *err)
{
    *outputs = NULL;
    version[0] = '\0';
    ProtobufCMessage *msg = NULL;
    int rc = kvc_pb_unpack(&tensorflow__serving__predict_response__descriptor, data, len,
                           "PredictResponse", &msg, err);
    if (rc)
        return rc;
    Tensorflow__Serving__PredictResponse *pr = (Tensorflow__Serving__PredictResponse *)msg;
    if (pr->model_spec &&
        pr->model_spec->version_choice_case ==
            TENSORFLOW__SERVING__MODEL_SPEC__VERSION_CHOICE_VERSION &&
        pr->model_spec->version)
        snprintf(version, version_size, "%" PRId64, pr->model_spec->version->value);
    size_t *idx = kvc_calloc(pr->n_outputs ? pr->n_outputs : 1, sizeof *idx);
    *outputs = kvc_tensor_list_new();
    if (!idx || !*outputs) {
        rc = kvc_err_set(err, KVC_ENOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < pr->n_outputs; i++)
        idx[i] = i;
    s_sort_by_key(idx, pr->n_outputs, pr->outputs);
    for (size_t k = 0; rc == 0 && k < pr->n_outputs; k++) {
        const Tensorflow__Serving__PredictResponse__OutputsEntry *e = pr->outputs[idx[k]];
        if (!e->value) {
            rc = kvc_err_set(err, KVC_EPARSE,
                             "model server sent an invalid PredictResponse (an output without "
                             "a tensor)");
            break;
        }
        kvc_err_t why = {0, ""};
        kvc_tensor_t *t = NULL;
        rc = kvc_tensor_from_tfproto(e->value, e->key ? e->key : "", lim, &t, &why);
        rc = rc ? s_convert_error(rc, &why, err) : s_add(*outputs, &t, err);
    }
done:
    kvc_free(idx);
    tensorflow__serving__predict_response__free_unpacked(pr, kvc_pb_allocator());
    if (rc)
        kvc_tensor_list_destroy(outputs);
    return rc;
}

int kvc_infer_reply_kserve(const uint8_t *data, size_t len, const kvc_tensor_limits_t *lim,
                           kvc_tensor_list_t **outputs, char *version, size_t version_size,
                           kvc_err_t *err)
{
    *outputs = NULL;
    version[0] = '\0';
    ProtobufCMessage *msg = NULL;
    int rc = kvc_pb_unpack(&inference__model_infer_response__descriptor, data, len,
                           "ModelInferResponse", &msg, err);
    if (rc)
        return rc;
    Inference__ModelInferResponse *ir = (Inference__ModelInferResponse *)msg;
    if (ir->n_raw_output_contents && ir->n_raw_output_contents != ir->n_outputs) {
        rc = kvc_err_set(err, KVC_EPARSE,
                         "model server sent an invalid ModelInferResponse (raw contents do not "
                         "match the outputs)");
        goto done;
    }
    if (ir->model_version && ir->model_version[0])
        snprintf(version, version_size, "%s", ir->model_version);
    *outputs = kvc_tensor_list_new();
    if (!*outputs) {
        rc = kvc_err_set(err, KVC_ENOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; rc == 0 && i < ir->n_outputs; i++) {
        kvc_err_t why = {0, ""};
        kvc_tensor_t *t = NULL;
        const ProtobufCBinaryData *raw =
            ir->n_raw_output_contents ? &ir->raw_output_contents[i] : NULL;
        rc = kvc_tensor_from_kserve_output(ir->outputs[i], raw, lim, &t, &why);
        rc = rc ? s_convert_error(rc, &why, err) : s_add(*outputs, &t, err);
    }
done:
    inference__model_infer_response__free_unpacked(ir, kvc_pb_allocator());
    if (rc)
        kvc_tensor_list_destroy(outputs);
    return rc;
}
