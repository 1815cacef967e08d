/*
 * kserve_json.h - KServe v2 (Open Inference Protocol) REST JSON <-> tensors,
 * with the binary tensor extension.
 *
 * Request: {"id", "parameters", "inputs": [{"name", "shape", "datatype",
 * "parameters", "data"}], "outputs": [{"name", "parameters":
 * {"binary_data": true}}]}. With the binary extension the body is a JSON
 * header of Inference-Header-Content-Length bytes followed by the raw
 * tensors, in input order, whose sizes are each input's
 * parameters.binary_data_size (BYTES elements carry a 4-byte little-endian
 * length prefix each).
 *
 * Every size and shape is checked against the element count, the dtype and
 * the bytes actually present; nothing here reads past the body or allocates
 * past the limits. "data" is a list, flat or regularly nested (row-major),
 * whose element count matches the shape; names and "id" must be UTF-8, as
 * they become protobuf strings.
 */
#ifndef KVC_KSERVE_JSON_H
#define KVC_KSERVE_JSON_H

#include "base.h"
#include "tensor.h"

#include <stddef.h>
#include <stdint.h>

/* One entry of the request's "outputs" list. */
typedef struct {
    char *name; /* owned */
    int binary; /* parameters.binary_data was true */
} kvc_kserve_output_t;

/* A parsed infer request. Clear it with kvc_kserve_json_request_clear. */
typedef struct {
    char *id;                     /* owned; NULL when absent */
    kvc_tensor_list_t *inputs;    /* owned */
    kvc_kserve_output_t *outputs; /* owned array; NULL when absent */
    size_t n_outputs;
    int binary_output; /* parameters.binary_data_output: every output binary */
} kvc_kserve_request_t;

/*
 * Parses an infer request body of len bytes. header_len is the value of
 * Inference-Header-Content-Length, or len when the header is absent (then
 * no binary_data_size may appear). The body need not be NUL-terminated and
 * is not kept. Returns 0 and fills *req; or KVC_EPARSE (HTTP 400),
 * KVC_ERANGE (past limits: HTTP 413), KVC_ENOMEM, with err->msg saying
 * where and what, leaving *req empty.
 */
int kvc_kserve_json_parse_request(const char *body, size_t len, size_t header_len,
                                  const kvc_tensor_limits_t *lim, kvc_kserve_request_t *req,
                                  kvc_err_t *err);

/* Frees what the request owns and zeroes it; safe on a zeroed request. */
void kvc_kserve_json_request_clear(kvc_kserve_request_t *req);

/* Tells whether the request asked for output name in binary form. req may
 * be NULL (then no). */
int kvc_kserve_json_wants_binary(const kvc_kserve_request_t *req, const char *name);

/* Response identity; every string is borrowed for the call, NULL to omit
 * (model_name is required). */
typedef struct {
    const char *model_name;
    const char *model_version;
    const char *id;
} kvc_kserve_response_meta_t;

/*
 * Appends an infer response to out: JSON with "data" for each output, or,
 * for outputs the request (req, may be NULL) wants in binary, a
 * "binary_data_size" parameter and the raw bytes after the JSON. Sets
 * *header_len to the JSON length when any output is binary (the HTTP layer
 * sends it as Inference-Header-Content-Length), else to 0. Returns 0,
 * KVC_EINVAL (a BYTES output that is not UTF-8 asked for as JSON),
 * KVC_ERANGE (out->max reached) or KVC_ENOMEM; out is left as it was on
 * failure.
 */
int kvc_kserve_json_write_response(const kvc_kserve_response_meta_t *meta,
                                   const kvc_tensor_list_t *outputs,
                                   const kvc_kserve_request_t *req, kvc_buf_t *out,
                                   size_t *header_len, kvc_err_t *err);

#endif
