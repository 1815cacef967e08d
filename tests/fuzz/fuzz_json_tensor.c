/*
 * libFuzzer target for the TF Serving REST JSON parser (proxy/json_tensor.c).
 *
 * The first byte picks a signature (none, or one unnamed input of some
 * dtype); the rest is the request body. Must never crash or leak; a request
 * that parses must write back as a response that, read again as a request
 * with the parsed dtypes as the signature, gives the same tensors.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "json_tensor.h"
#include "numfmt.h"
#include "tensor.h"

/* Tells whether element bytes a and b are both NaN of a float dtype (text
 * keeps NaN but not its payload). */
static int s_both_nan(kvc_dtype_t dt, const uint8_t *a, const uint8_t *b)
{
    if (dt == KVC_DT_FLOAT) {
        float x, y;
        memcpy(&x, a, 4);
        memcpy(&y, b, 4);
        return x != x && y != y;
    }
    if (dt == KVC_DT_DOUBLE) {
        double x, y;
        memcpy(&x, a, 8);
        memcpy(&y, b, 8);
        return x != x && y != y;
    }
    if (dt == KVC_DT_HALF) {
        uint16_t x, y;
        memcpy(&x, a, 2);
        memcpy(&y, b, 2);
        float fx = kvc_numfmt_half_to_float(x), fy = kvc_numfmt_half_to_float(y);
        return fx != fx && fy != fy;
    }
    return 0;
}

/* Tensor equality up to NaN payloads. */
static int s_same(const kvc_tensor_t *a, const kvc_tensor_t *b)
{
    if (kvc_tensor_equal(a, b))
        return 1;
    kvc_dtype_t dt = kvc_tensor_dtype(a);
    size_t es = kvc_dtype_size(dt);
    if (dt != kvc_tensor_dtype(b) || kvc_tensor_count(a) != kvc_tensor_count(b) || !es ||
        strcmp(kvc_tensor_name(a), kvc_tensor_name(b)) != 0 ||
        kvc_tensor_ndim(a) != kvc_tensor_ndim(b) ||
        memcmp(kvc_tensor_shape(a), kvc_tensor_shape(b),
               sizeof(int64_t) * (size_t)kvc_tensor_ndim(a)) != 0)
        return 0;
    const uint8_t *pa = kvc_tensor_cdata(a), *pb = kvc_tensor_cdata(b);
    for (uint64_t i = 0; i < kvc_tensor_count(a); i++, pa += es, pb += es)
        if (memcmp(pa, pb, es) != 0 && !s_both_nan(dt, pa, pb))
            return 0;
    return 1;
}

static const kvc_dtype_t s_dtypes[] = {KVC_DT_FLOAT, KVC_DT_DOUBLE, KVC_DT_INT32,  KVC_DT_UINT8,
                                       KVC_DT_INT16, KVC_DT_INT8,   KVC_DT_STRING, KVC_DT_INT64,
                                       KVC_DT_BOOL,  KVC_DT_UINT16, KVC_DT_HALF,   KVC_DT_UINT32,
                                       KVC_DT_UINT64};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    kvc_json_tensor_spec_t spec = {"", KVC_DT_FLOAT};
    /* The first byte's top bit asks for strict (declared) specs. */
    kvc_json_tensor_opts_t opts = {{1 << 16, 1 << 20}, NULL, 0, (data[0] & 0x80) != 0};
    uint8_t pick = data[0] & 0x7f;
    if (pick < sizeof s_dtypes / sizeof s_dtypes[0]) {
        spec.dtype = s_dtypes[pick];
        opts.specs = &spec;
        opts.n_specs = 1;
    }
    kvc_json_tensor_request_t req;
    kvc_err_t err;
    if (kvc_json_tensor_parse_request((const char *)data + 1, size - 1, &opts, &req, &err))
        return 0;
    size_t n = kvc_tensor_list_size(req.inputs);
    kvc_buf_t out;
    kvc_buf_init(&out, 64 << 20);
    if (kvc_json_tensor_write_response(req.inputs, req.format, &out, &err))
        abort(); /* everything the parser accepts must be writable */
    /* {"outputs": X} -> {"inputs": X}; {"predictions": X} -> {"instances": X} */
    const char *body;
    size_t len;
    if (req.format == KVC_JSON_TENSOR_COLUMNAR) {
        memcpy(out.data + 1, "{\"inputs\"", 9);
        body = out.data + 1;
        len = out.len - 1;
    } else {
        memcpy(out.data + 2, "{\"instances\"", 12);
        body = out.data + 2;
        len = out.len - 2;
    }
    kvc_json_tensor_spec_t *specs = calloc(n, sizeof *specs);
    for (size_t i = 0; i < n; i++) {
        kvc_tensor_t *t = kvc_tensor_list_at(req.inputs, i);
        specs[i].name = kvc_tensor_name(t);
        specs[i].dtype = kvc_tensor_dtype(t);
    }
    /* Strict: the first parse's inputs are all there are, so each must
     * be found by name with its dtype. */
    kvc_json_tensor_opts_t again = {opts.limits, specs, n, 1};
    kvc_json_tensor_request_t req2;
    if (kvc_json_tensor_parse_request(body, len, &again, &req2, &err))
        abort();
    if (kvc_tensor_list_size(req2.inputs) != n || req2.format != req.format)
        abort();
    for (size_t i = 0; i < n; i++)
        if (!s_same(kvc_tensor_list_at(req.inputs, i), kvc_tensor_list_at(req2.inputs, i)))
            abort();
    kvc_json_tensor_request_clear(&req2);
    free(specs);
    kvc_buf_free(&out);
    kvc_json_tensor_request_clear(&req);
    return 0;
}
