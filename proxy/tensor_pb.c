/*
 * tensor_pb.c - tensors to and from TensorProto and KServe v2 tensors.
 * Outbound: views, no copy of numeric data. Inbound: every count checked
 * against the declared shape and the caller's limits before any copy; a
 * backend is not trusted more than a client.
 */
#include "tensor_pb.h"

#include <string.h>

int kvc_tfproto_view_init(kvc_tfproto_view_t *v, const kvc_tensor_t *t)
{
    memset(v, 0, sizeof *v);
    tensorflow__tensor_proto__init(&v->proto);
    tensorflow__tensor_shape_proto__init(&v->shape);
    int nd = kvc_tensor_ndim(t);
    const int64_t *sh = kvc_tensor_shape(t);
    if (nd < 0 || nd > KVC_TENSOR_MAX_DIMS)
        return KVC_EINVAL;
    for (int i = 0; i < nd; i++) {
        tensorflow__tensor_shape_proto__dim__init(&v->dims[i]);
        v->dims[i].size = sh[i];
        v->dimp[i] = &v->dims[i];
    }
    v->shape.dim = v->dimp;
    v->shape.n_dim = (size_t)nd;
    v->proto.tensor_shape = &v->shape;
    v->proto.dtype = (Tensorflow__DataType)kvc_tensor_dtype(t);
    if (kvc_tensor_dtype(t) == KVC_DT_STRING) {
        uint64_t n = kvc_tensor_count(t);
        v->strings = kvc_calloc(n ? n : 1, sizeof *v->strings);
        if (!v->strings)
            return KVC_ENOMEM;
        for (uint64_t i = 0; i < n; i++) {
            size_t len = 0;
            const uint8_t *s = kvc_tensor_string(t, i, &len);
            v->strings[i].data = (uint8_t *)s;
            v->strings[i].len = len;
        }
        v->proto.string_val = v->strings;
        v->proto.n_string_val = n;
    } else {
        v->proto.tensor_content.data = (uint8_t *)kvc_tensor_cdata(t);
        v->proto.tensor_content.len = kvc_tensor_nbytes(t);
    }
    return KVC_OK;
}

void kvc_tfproto_view_clear(kvc_tfproto_view_t *v)
{
    kvc_free(v->strings);
    v->strings = NULL;
}

/* Fills count elements of size bytes at dst from n source values, repeating
 * the last one; conv writes value i (i < n) at d. */
#define S_FILL(T, src, n, count, dst, cast)                                                        \
    do {                                                                                       \
        T *d_ = (T *)(dst);                                                                    \
        for (uint64_t i_ = 0; i_ < (count); i_++)                                              \
            d_[i_] = (T)(cast)((src)[i_ < (n) ? i_ : (n)-1]);                                  \
    } while (0)

/* The values count of the typed field that dtype uses, or -1. */
static long long s_typed_count(const Tensorflow__TensorProto *p, kvc_dtype_t dt)
{
    switch (dt) {
    case KVC_DT_FLOAT: return (long long)p->n_float_val;
    case KVC_DT_DOUBLE: return (long long)p->n_double_val;
    case KVC_DT_INT32:
    case KVC_DT_INT16:
    case KVC_DT_INT8:
    case KVC_DT_UINT8:
    case KVC_DT_UINT16: return (long long)p->n_int_val;
    case KVC_DT_INT64: return (long long)p->n_int64_val;
    case KVC_DT_BOOL: return (long long)p->n_bool_val;
    case KVC_DT_HALF: return (long long)p->n_half_val;
    case KVC_DT_UINT32: return (long long)p->n_uint32_val;
    case KVC_DT_UINT64: return (long long)p->n_uint64_val;
    case KVC_DT_STRING: return (long long)p->n_string_val;
    default: return -1;
    }
}

int kvc_tensor_from_tfproto(const Tensorflow__TensorProto *p, const char *name,
                            const kvc_tensor_limits_t *lim, kvc_tensor_t **out, kvc_err_t *err)
{
    *out = NULL;
    kvc_dtype_t dt = (kvc_dtype_t)p->dtype;
    if (!kvc_dtype_valid(dt))
        return kvc_err_set(err, KVC_EPARSE, "output %s: unsupported dtype %d", name, (int)p->dtype);
    int64_t shape[KVC_TENSOR_MAX_DIMS];
    int nd = 0;
    if (p->tensor_shape) {
        if (p->tensor_shape->n_dim > KVC_TENSOR_MAX_DIMS || p->tensor_shape->unknown_rank)
            return kvc_err_set(err, KVC_EPARSE, "output %s: unsupported shape", name);
        nd = (int)p->tensor_shape->n_dim;
        for (int i = 0; i < nd; i++) {
            shape[i] = p->tensor_shape->dim[i]->size;
            if (shape[i] < 0)
                return kvc_err_set(err, KVC_EPARSE, "output %s: dimension %d is %lld", name, i,
                                   (long long)shape[i]);
        }
    }
    uint64_t count = 0;
    int rc = kvc_tensor_shape_count(shape, nd, lim->max_elements, &count);
    if (rc)
        return kvc_err_set(err, rc == KVC_ERANGE ? KVC_ERANGE : KVC_EPARSE,
                           "output %s: shape too large", name);
    kvc_tensor_t *t = kvc_tensor_new(name, dt, lim);
    if (!t)
        return kvc_err_set(err, KVC_ENOMEM, "out of memory");
    if (dt == KVC_DT_STRING) {
        uint64_t n = p->n_string_val;
        if (count > 0 && (n == 0 || n > count)) {
            rc = kvc_err_set(err, KVC_EPARSE, "output %s: %llu strings for %llu elements", name,
                             (unsigned long long)n, (unsigned long long)count);
            goto fail;
        }
        for (uint64_t i = 0; i < count; i++) {
            const ProtobufCBinaryData *s = &p->string_val[i < n ? i : n - 1];
            if ((rc = kvc_tensor_append_string(t, s->data, s->len)) != 0) {
                kvc_err_set(err, rc, "output %s: too large", name);
                goto fail;
            }
        }
        if ((rc = kvc_tensor_set_shape(t, shape, nd)) != 0) {
            kvc_err_set(err, KVC_EPARSE, "output %s: shape mismatch", name);
            goto fail;
        }
        *out = t;
        return KVC_OK;
    }
    if ((rc = kvc_tensor_alloc(t, shape, nd)) != 0) {
        kvc_err_set(err, rc, "output %s: too large", name);
        goto fail;
    }
    size_t need = (size_t)count * kvc_dtype_size(dt);
    void *dst = kvc_tensor_data(t);
    if (p->tensor_content.len > 0) {
        if (p->tensor_content.len != need) {
            rc = kvc_err_set(err, KVC_EPARSE, "output %s: tensor_content has %zu bytes, shape needs %zu",
                             name, p->tensor_content.len, need);
            goto fail;
        }
        memcpy(dst, p->tensor_content.data, need);
        *out = t;
        return KVC_OK;
    }
    long long n = s_typed_count(p, dt);
    if (count == 0) {
        *out = t;
        return KVC_OK;
    }
    if (n <= 0 || (uint64_t)n > count) {
        rc = kvc_err_set(err, KVC_EPARSE, "output %s: %lld values for %llu elements", name, n,
                         (unsigned long long)count);
        goto fail;
    }
    uint64_t nv = (uint64_t)n;
    switch (dt) {
    case KVC_DT_FLOAT: S_FILL(float, p->float_val, nv, count, dst, float); break;
    case KVC_DT_DOUBLE: S_FILL(double, p->double_val, nv, count, dst, double); break;
    case KVC_DT_INT32: S_FILL(int32_t, p->int_val, nv, count, dst, int32_t); break;
    case KVC_DT_INT16: S_FILL(int16_t, p->int_val, nv, count, dst, int32_t); break;
    case KVC_DT_INT8: S_FILL(int8_t, p->int_val, nv, count, dst, int32_t); break;
    case KVC_DT_UINT8: S_FILL(uint8_t, p->int_val, nv, count, dst, int32_t); break;
    case KVC_DT_UINT16: S_FILL(uint16_t, p->int_val, nv, count, dst, int32_t); break;
    case KVC_DT_HALF: S_FILL(uint16_t, p->half_val, nv, count, dst, int32_t); break;
    case KVC_DT_INT64: S_FILL(int64_t, p->int64_val, nv, count, dst, int64_t); break;
    case KVC_DT_BOOL: S_FILL(uint8_t, p->bool_val, nv, count, dst, int); break;
    case KVC_DT_UINT32: S_FILL(uint32_t, p->uint32_val, nv, count, dst, uint32_t); break;
    case KVC_DT_UINT64: S_FILL(uint64_t, p->uint64_val, nv, count, dst, uint64_t); break;
    default:
        rc = kvc_err_set(err, KVC_EPARSE, "output %s: unsupported dtype", name);
        goto fail;
    }
    *out = t;
    return KVC_OK;
fail:
    kvc_tensor_destroy(&t);
    return rc ? rc : KVC_EPARSE;
}

int kvc_kserve_input_view_init(kvc_kserve_input_view_t *v, const kvc_tensor_t *t)
{
    memset(v, 0, sizeof *v);
    inference__model_infer_request__infer_input_tensor__init(&v->input);
    v->input.name = (char *)kvc_tensor_name(t);
    const char *dt = kvc_dtype_kserve_name(kvc_tensor_dtype(t));
    if (!dt)
        return KVC_EINVAL;
    v->input.datatype = (char *)dt;
    int nd = kvc_tensor_ndim(t);
    memcpy(v->shape, kvc_tensor_shape(t), (size_t)nd * sizeof(int64_t));
    v->input.shape = v->shape;
    v->input.n_shape = (size_t)nd;
    if (kvc_tensor_dtype(t) != KVC_DT_STRING) {
        v->raw.data = (uint8_t *)kvc_tensor_cdata(t);
        v->raw.len = kvc_tensor_nbytes(t);
        return KVC_OK;
    }
    /* BYTES: each element as a 4-byte little-endian length and its bytes */
    uint64_t n = kvc_tensor_count(t);
    size_t total = kvc_tensor_nbytes(t) + (size_t)n * 4;
    v->owned = kvc_malloc(total ? total : 1);
    if (!v->owned)
        return KVC_ENOMEM;
    uint8_t *w = v->owned;
    for (uint64_t i = 0; i < n; i++) {
        size_t len = 0;
        const uint8_t *s = kvc_tensor_string(t, i, &len);
        for (int b = 0; b < 4; b++)
            *w++ = (uint8_t)(len >> (8 * b));
        memcpy(w, s, len);
        w += len;
    }
    v->raw.data = v->owned;
    v->raw.len = (size_t)(w - v->owned);
    return KVC_OK;
}

void kvc_kserve_input_view_clear(kvc_kserve_input_view_t *v)
{
    kvc_free(v->owned);
    v->owned = NULL;
}

int kvc_tensor_from_kserve_output(const Inference__ModelInferResponse__InferOutputTensor *o,
                                  const ProtobufCBinaryData *raw, const kvc_tensor_limits_t *lim,
                                  kvc_tensor_t **out, kvc_err_t *err)
{
    *out = NULL;
    const char *name = o->name;
    kvc_dtype_t dt = kvc_dtype_from_kserve(o->datatype, strlen(o->datatype));
    if (dt == KVC_DT_INVALID)
        return kvc_err_set(err, KVC_EPARSE, "output %s: unsupported datatype", name);
    if (o->n_shape > KVC_TENSOR_MAX_DIMS)
        return kvc_err_set(err, KVC_EPARSE, "output %s: too many dimensions", name);
    int nd = (int)o->n_shape;
    uint64_t count = 0;
    int rc = kvc_tensor_shape_count(o->shape, nd, lim->max_elements, &count);
    if (rc)
        return kvc_err_set(err, rc == KVC_ERANGE ? KVC_ERANGE : KVC_EPARSE,
                           "output %s: invalid shape", name);
    kvc_tensor_t *t = kvc_tensor_new(name, dt, lim);
    if (!t)
        return kvc_err_set(err, KVC_ENOMEM, "out of memory");
    if (dt == KVC_DT_STRING) {
        if (raw) {
            size_t off = 0;
            for (uint64_t i = 0; i < count; i++) {
                if (raw->len - off < 4) {
                    rc = kvc_err_set(err, KVC_EPARSE, "output %s: truncated BYTES", name);
                    goto fail;
                }
                uint32_t len = (uint32_t)raw->data[off] | (uint32_t)raw->data[off + 1] << 8 |
                               (uint32_t)raw->data[off + 2] << 16 | (uint32_t)raw->data[off + 3] << 24;
                off += 4;
                if (len > raw->len - off) {
                    rc = kvc_err_set(err, KVC_EPARSE, "output %s: truncated BYTES", name);
                    goto fail;
                }
                if ((rc = kvc_tensor_append_string(t, raw->data + off, len)) != 0)
                    goto fail_size;
                off += len;
            }
            if (off != raw->len) {
                rc = kvc_err_set(err, KVC_EPARSE, "output %s: trailing BYTES data", name);
                goto fail;
            }
        } else {
            const Inference__InferTensorContents *c = o->contents;
            if (!c || c->n_bytes_contents != count) {
                rc = kvc_err_set(err, KVC_EPARSE, "output %s: wrong number of BYTES", name);
                goto fail;
            }
            for (uint64_t i = 0; i < count; i++)
                if ((rc = kvc_tensor_append_string(t, c->bytes_contents[i].data,
                                                   c->bytes_contents[i].len)) != 0)
                    goto fail_size;
        }
        if (kvc_tensor_set_shape(t, o->shape, nd) != 0) {
            rc = kvc_err_set(err, KVC_EPARSE, "output %s: shape mismatch", name);
            goto fail;
        }
        *out = t;
        return KVC_OK;
    }
    if ((rc = kvc_tensor_alloc(t, o->shape, nd)) != 0)
        goto fail_size;
    size_t need = (size_t)count * kvc_dtype_size(dt);
    void *dst = kvc_tensor_data(t);
    if (raw) {
        if (raw->len != need) {
            rc = kvc_err_set(err, KVC_EPARSE, "output %s: %zu raw bytes, shape needs %zu", name,
                             raw->len, need);
            goto fail;
        }
        memcpy(dst, raw->data, need);
        *out = t;
        return KVC_OK;
    }
    const Inference__InferTensorContents *c = o->contents;
    size_t have = 0;
    if (c) {
        switch (dt) {
        case KVC_DT_FLOAT: have = c->n_fp32_contents; break;
        case KVC_DT_DOUBLE: have = c->n_fp64_contents; break;
        case KVC_DT_INT64: have = c->n_int64_contents; break;
        case KVC_DT_UINT64: have = c->n_uint64_contents; break;
        case KVC_DT_BOOL: have = c->n_bool_contents; break;
        case KVC_DT_UINT8:
        case KVC_DT_UINT16:
        case KVC_DT_UINT32: have = c->n_uint_contents; break;
        default: have = c->n_int_contents; break;
        }
    }
    if (have != count) {
        rc = kvc_err_set(err, KVC_EPARSE, "output %s: %zu values for %llu elements", name, have,
                         (unsigned long long)count);
        goto fail;
    }
    if (count) {
        switch (dt) {
        case KVC_DT_FLOAT: memcpy(dst, c->fp32_contents, need); break;
        case KVC_DT_DOUBLE: memcpy(dst, c->fp64_contents, need); break;
        case KVC_DT_INT64: memcpy(dst, c->int64_contents, need); break;
        case KVC_DT_UINT64: memcpy(dst, c->uint64_contents, need); break;
        case KVC_DT_BOOL: S_FILL(uint8_t, c->bool_contents, count, count, dst, int); break;
        case KVC_DT_UINT8: S_FILL(uint8_t, c->uint_contents, count, count, dst, uint32_t); break;
        case KVC_DT_UINT16: S_FILL(uint16_t, c->uint_contents, count, count, dst, uint32_t); break;
        case KVC_DT_UINT32: S_FILL(uint32_t, c->uint_contents, count, count, dst, uint32_t); break;
        case KVC_DT_INT32: S_FILL(int32_t, c->int_contents, count, count, dst, int32_t); break;
        case KVC_DT_INT16: S_FILL(int16_t, c->int_contents, count, count, dst, int32_t); break;
        case KVC_DT_INT8: S_FILL(int8_t, c->int_contents, count, count, dst, int32_t); break;
        default:
            rc = kvc_err_set(err, KVC_EPARSE, "output %s: FP16 needs raw contents", name);
            goto fail;
        }
    }
    *out = t;
    return KVC_OK;
fail_size:
    kvc_err_set(err, rc, "output %s: too large", name);
fail:
    kvc_tensor_destroy(&t);
    return rc ? rc : KVC_EPARSE;
}
