/*
 * json_tensor.h - TensorFlow Serving's REST JSON <-> tensors.
 *
 * Requests: {"signature_name": "...", "instances": [...]} (row format) or
 * {"inputs": ...} (columnar format), with {"b64": "..."} for binary strings
 * and NaN / Infinity / -Infinity accepted as bare tokens, as TF Serving
 * does. Responses: {"predictions": [...]} for row requests and
 * {"outputs": ...} for columnar ones, floats in shortest round-trip form.
 *
 * The parser is a single pass over the bytes that writes numbers straight
 * into each tensor's growing typed buffer (no DOM). It never reads past the
 * given length, never allocates past the given limits, and reports errors as
 * "where: what" messages fit for a 400 {"error": ...} body.
 *
 * The second half of this header is shared with kserve_json.c (values of a
 * tensor in and out); other modules should not need it. The JSON reading
 * itself is json_cursor.h's.
 */
#ifndef KVC_JSON_TENSOR_H
#define KVC_JSON_TENSOR_H

#include "base.h"
#include "json_cursor.h"
#include "tensor.h"

#include <stddef.h>
#include <stdint.h>

typedef enum {
    KVC_JSON_TENSOR_ROW = 1,      /* "instances" in, "predictions" out */
    KVC_JSON_TENSOR_COLUMNAR = 2, /* "inputs" in, "outputs" out */
} kvc_json_tensor_format_t;

/* One input of the model's signature: its name and dtype. */
typedef struct {
    const char *name;
    kvc_dtype_t dtype;
} kvc_json_tensor_spec_t;

typedef struct {
    /* Bounds for the whole request (every tensor together). */
    kvc_tensor_limits_t limits;
    /* The signature's inputs, borrowed for the call; may be NULL/0. A named
     * input found here is parsed as that dtype; any other input has its dtype
     * inferred: float32 for numbers with '.', 'e', NaN or Infinity anywhere,
     * int64 for all-integer numbers, bool for true/false, string for strings
     * and {"b64": ...}. An unnamed input (instances of plain values, or
     * "inputs": value) takes the name and dtype of the only spec when there is
     * exactly one, else the name "" - except that with several specs and a
     * request naming no signature it is an error (400: "the signature has N
     * inputs (...), so ..."). A request that names a signature is parsed
     * without that check: these specs may be another signature's, and the
     * caller parses again with the named one's. */
    const kvc_json_tensor_spec_t *specs;
    size_t n_specs;
    /* Nonzero: the specs are every input there is (a config declared them
     * for a model server without metadata), so no dtype is ever inferred:
     * an input the specs do not name (or an unnamed one, unless there is
     * exactly one spec) is refused (KVC_EPARSE, naming the inputs). */
    int strict;
} kvc_json_tensor_opts_t;

/* A parsed predict request. Clear it with kvc_json_tensor_request_clear. */
typedef struct {
    kvc_json_tensor_format_t format;
    char *signature_name;      /* owned; NULL when absent */
    kvc_tensor_list_t *inputs; /* owned; row inputs carry the batch dim */
} kvc_json_tensor_request_t;

/*
 * Parses a predict request body of len bytes (need not be NUL-terminated).
 * On success fills *req (which the caller clears). On failure returns
 * KVC_EPARSE (malformed JSON, wrong shapes or types: HTTP 400), KVC_ERANGE
 * (past the limits: HTTP 413) or KVC_ENOMEM, with err->msg saying where and
 * what, and leaves *req empty.
 */
int kvc_json_tensor_parse_request(const char *json, size_t len, const kvc_json_tensor_opts_t *opts,
                                  kvc_json_tensor_request_t *req, kvc_err_t *err);

/* Frees what a request owns and zeroes it; safe on a zeroed request. */
void kvc_json_tensor_request_clear(kvc_json_tensor_request_t *req);

/*
 * Appends a predict response for outputs to out: {"predictions": ...} for
 * ROW (every output must have the same leading batch dimension; a single
 * output is written as its values per instance, several as an object per
 * instance) or {"outputs": ...} for COLUMNAR (a single output as its value,
 * several as an object). Strings that are not valid UTF-8, or whose output
 * name ends in "_bytes", are written as {"b64": ...}. Returns KVC_EINVAL
 * (mismatched batch sizes), KVC_ERANGE (out->max reached) or KVC_ENOMEM.
 */
int kvc_json_tensor_write_response(const kvc_tensor_list_t *outputs,
                                   kvc_json_tensor_format_t format, kvc_buf_t *out, kvc_err_t *err);

/* ---- Shared with kserve_json.c ------------------------------------------- */

/*
 * Parses a list of scalars of t's dtype, flat or nested in row-major order,
 * appending them to t. Nesting must be regular (every list at one depth the
 * same length, scalars all at one depth), as a tensor is; the caller checks
 * the count against its shape. A bare scalar (not in a list) is an error.
 * Strings are JSON strings (no b64 objects unless allow_b64). path names
 * the value in error messages ("path[1][0]: ...").
 */
int kvc_json_tensor_read_values(kvc_json_cursor_t *c, kvc_tensor_t *t, const char *path,
                                int allow_b64);
/* Appends a JSON string literal for n bytes (which must be valid UTF-8). */
int kvc_json_tensor_write_string(kvc_buf_t *out, const char *s, size_t n);
/*
 * Appends t's values as nested lists by shape (flat: one flat list).
 * Strings as in kvc_json_tensor_write_response when b64_ok, else always
 * as JSON strings (invalid UTF-8 then is an error: KVC_EINVAL).
 */
int kvc_json_tensor_write_values(kvc_buf_t *out, const kvc_tensor_t *t, int flat, int b64_ok);

#endif
