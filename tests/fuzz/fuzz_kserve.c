/*
 * libFuzzer target for the KServe v2 parser (proxy/kserve_json.c),
 * including the binary tensor extension.
 *
 * Bytes 0-1 choose Inference-Header-Content-Length (modulo the body size),
 * byte 2 chooses JSON or binary output; the rest is the body. Must never
 * crash or leak; a request that parses must write back (as a response
 * turned into a request) and parse again to the same tensors.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "kserve_json.h"
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    const char *body = (const char *)data + 3;
    size_t len = size - 3;
    size_t hlen = ((size_t)data[0] << 8 | data[1]) % (len + 1);
    if (data[0] == 0xff && data[1] == 0xff)
        hlen = len; /* no binary section */
    int binary = data[2] & 1;
    kvc_tensor_limits_t lim = {1 << 16, 1 << 20};
    kvc_kserve_request_t req;
    kvc_err_t err;
    if (kvc_kserve_json_parse_request(body, len, hlen, &lim, &req, &err))
        return 0;
    /* Answer with the inputs as outputs, then read that answer as a request. */
    kvc_kserve_request_t want_bin;
    memset(&want_bin, 0, sizeof want_bin);
    want_bin.binary_output = binary;
    kvc_kserve_response_meta_t meta = {"m", NULL, NULL};
    kvc_buf_t out;
    kvc_buf_init(&out, 64 << 20);
    size_t out_hlen = 0;
    int rc = kvc_kserve_json_write_response(&meta, req.inputs, &want_bin, &out, &out_hlen, &err);
    if (rc == KVC_EINVAL && !binary) {
        /* BYTES that are not UTF-8 can only go back as binary. */
        want_bin.binary_output = 1;
        rc = kvc_kserve_json_write_response(&meta, req.inputs, &want_bin, &out, &out_hlen, &err);
    }
    if (rc)
        abort();
    static const char from[] = "{\"model_name\":\"m\",\"outputs\":[";
    static const char to[] = "{\"model_name\":\"m\", \"inputs\":[";
    if (out.len < sizeof from - 1 || memcmp(out.data, from, sizeof from - 1) != 0)
        abort();
    memcpy(out.data, to, sizeof to - 1);
    kvc_kserve_request_t req2;
    if (kvc_kserve_json_parse_request(out.data, out.len, out_hlen ? out_hlen : out.len, &lim, &req2,
                                      &err))
        abort();
    size_t n = kvc_tensor_list_size(req.inputs);
    if (kvc_tensor_list_size(req2.inputs) != n)
        abort();
    for (size_t i = 0; i < n; i++)
        if (!s_same(kvc_tensor_list_at(req.inputs, i), kvc_tensor_list_at(req2.inputs, i)))
            abort();
    kvc_kserve_json_request_clear(&req2);
    kvc_buf_free(&out);
    kvc_kserve_json_request_clear(&req);
    return 0;
}
