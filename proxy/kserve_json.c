/*
 * kserve_json.c - KServe v2 REST JSON and the binary tensor extension.
 *
 * The JSON header is walked once with json_cursor.h's cursor; "data"
 * arrays are parsed straight into typed tensors (if "data" comes before
 * "datatype" in an input object, its position is kept and it is parsed once
 * the object is complete). Binary sections are then cut from the bytes after
 * the header, each size checked against what is left and what the shape and
 * datatype need. This module must never trust binary_data_size, shapes or
 * length prefixes.
 */
#include "kserve_json.h"

#include "json_cursor.h"
#include "json_tensor.h"
#include "numfmt.h"

#include <stdio.h>
#include <string.h>

#define S_MAX_NAME 256
#define S_MAX_IO 256

/* An input whose values come from the binary section. */
typedef struct {
    kvc_tensor_t *t; /* borrowed from the input array */
    uint64_t size;
    uint64_t count;
    int64_t shape[KVC_TENSOR_MAX_DIMS];
    int ndim;
    size_t index;
} s_pending_t;

/* Formats a shape as [a, b, c] for messages. */
static void s_shape_str(const int64_t *shape, int ndim, char *buf, size_t size)
{
    size_t n = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < ndim && n < size; i++)
        n += (size_t)snprintf(buf + n, size - n, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (n < size)
        snprintf(buf + n, size - n, "]");
}

/* Parses an input's "parameters" object, keeping binary_data_size. */
static int s_input_params(kvc_json_cursor_t *c, size_t index, uint64_t *bin_size, int *has_bin)
{
    char key[64];
    int st = 0, rc;
    while ((rc = kvc_json_cursor_member(c, &st, key, sizeof key)) == 1) {
        if (strcmp(key, "binary_data_size") != 0) {
            if ((rc = kvc_json_cursor_skip(c)))
                return rc;
            continue;
        }
        if ((rc = kvc_json_cursor_read_u64(c, bin_size)))
            return kvc_json_cursor_fail(
                c, KVC_EPARSE, "inputs[%zu].parameters.binary_data_size: %s", index,
                rc == KVC_ERANGE ? "too large" : "must be a non-negative integer");
        *has_bin = 1;
    }
    return rc;
}

/* Parses "shape": [d0, d1, ...]. */
static int s_shape(kvc_json_cursor_t *c, size_t index, int64_t *shape, int *ndim)
{
    int st = 0, rc;
    *ndim = 0;
    while ((rc = kvc_json_cursor_element(c, &st)) == 1) {
        if (*ndim >= KVC_TENSOR_MAX_DIMS)
            return kvc_json_cursor_fail(c, KVC_EPARSE, "inputs[%zu].shape: more than %d dimensions",
                                        index, KVC_TENSOR_MAX_DIMS);
        const char *at = c->p;
        uint64_t d;
        rc = kvc_json_cursor_read_u64(c, &d);
        if (rc == KVC_OK && d > (uint64_t)INT64_MAX)
            rc = KVC_ERANGE;
        if (rc) {
            c->p = at;
            return kvc_json_cursor_fail(c, KVC_EPARSE, "inputs[%zu].shape[%d]: %s", index, *ndim,
                                        rc == KVC_ERANGE ? "dimension too large"
                                                         : "must be a non-negative integer");
        }
        shape[(*ndim)++] = (int64_t)d;
    }
    return rc;
}

/* Parses one input object; JSON data is read now, binary data deferred. */
static int s_input(kvc_json_cursor_t *c, size_t index, const kvc_tensor_limits_t *left,
                   kvc_tensor_t **out, s_pending_t *pend, int *is_bin)
{
    kvc_err_t *err = c->err;
    char name[S_MAX_NAME] = "";
    char dtname[32] = "";
    int64_t shape[KVC_TENSOR_MAX_DIMS];
    int ndim = -1, has_bin = 0;
    unsigned seen = 0; /* one bit per known key, to refuse duplicates */
    uint64_t bin_size = 0;
    const char *data_at = NULL;
    kvc_tensor_t *t = NULL; /* created early when "data" follows "datatype" */
    char path[S_MAX_NAME + 32];
    snprintf(path, sizeof path, "inputs[%zu].data", index);
    static const char *keys[] = {"name", "datatype", "shape", "parameters", "data"};
    char key[64];
    int st = 0, rc;
    while ((rc = kvc_json_cursor_member(c, &st, key, sizeof key)) == 1) {
        int k = -1;
        for (int i = 0; i < 5; i++)
            if (strcmp(key, keys[i]) == 0)
                k = i;
        if (k >= 0 && (seen & (1u << k))) {
            rc = kvc_json_cursor_fail(c, KVC_EPARSE, "inputs[%zu]: duplicate key '%s'", index, key);
            goto fail;
        }
        if (k >= 0)
            seen |= 1u << k;
        if (k == 0) {
            char what[48];
            snprintf(what, sizeof what, "inputs[%zu].name", index);
            rc = kvc_json_cursor_read_name(c, what, name, sizeof name, NULL);
        } else if (k == 1) {
            char what[48];
            snprintf(what, sizeof what, "inputs[%zu].datatype", index);
            rc = kvc_json_cursor_read_name(c, what, dtname, sizeof dtname, NULL);
        } else if (k == 2) {
            rc = s_shape(c, index, shape, &ndim);
        } else if (k == 3) {
            rc = s_input_params(c, index, &bin_size, &has_bin);
        } else if (k == 4) {
            kvc_json_cursor_peek(c);
            data_at = c->p;
            kvc_dtype_t edt = kvc_dtype_from_kserve(dtname, strlen(dtname));
            if ((seen & 3u) == 3u && edt != KVC_DT_INVALID) {
                /* The usual order: parse the data in place, in one pass. */
                t = kvc_tensor_new(name, edt, left);
                if (!t) {
                    rc = kvc_err_set(err, KVC_ENOMEM, "out of memory");
                    goto fail;
                }
                rc = kvc_json_tensor_read_values(c, t, path, 0);
            } else {
                rc = kvc_json_cursor_skip(c);
            }
        } else {
            rc = kvc_json_cursor_skip(c);
        }
        if (rc)
            goto fail;
    }
    if (rc)
        goto fail;
    kvc_dtype_t dt = kvc_dtype_from_kserve(dtname, strlen(dtname));
    uint64_t count = 0;
    if (!(seen & 1u))
        rc = kvc_err_set(err, KVC_EPARSE, "inputs[%zu]: missing 'name'", index);
    else if (!(seen & 2u))
        rc = kvc_err_set(err, KVC_EPARSE, "inputs[%zu] '%s': missing 'datatype'", index, name);
    else if (ndim < 0)
        rc = kvc_err_set(err, KVC_EPARSE, "inputs[%zu] '%s': missing 'shape'", index, name);
    else if (dt == KVC_DT_INVALID)
        rc = kvc_err_set(err, KVC_EPARSE, "inputs[%zu] '%s': unknown datatype '%s'", index, name,
                         dtname);
    else if (data_at && has_bin)
        rc = kvc_err_set(err, KVC_EPARSE,
                         "inputs[%zu] '%s': both 'data' and binary_data_size given", index, name);
    else if (!data_at && !has_bin)
        rc = kvc_err_set(err, KVC_EPARSE, "inputs[%zu] '%s': missing 'data'", index, name);
    else if (kvc_tensor_shape_count(shape, ndim, left->max_elements, &count))
        rc = kvc_err_set(err, KVC_ERANGE, "inputs[%zu] '%s': shape too large for the limits", index,
                         name);
    if (rc)
        goto fail;
    if (!t) {
        t = kvc_tensor_new(name, dt, left);
        if (!t) {
            rc = kvc_err_set(err, KVC_ENOMEM, "out of memory");
            goto fail;
        }
        if (has_bin) {
            pend->t = t; /* borrowed: *out owns it */
            *out = t;
            pend->size = bin_size;
            pend->count = count;
            pend->ndim = ndim;
            memcpy(pend->shape, shape, sizeof shape);
            pend->index = index;
            *is_bin = 1;
            return KVC_OK;
        }
        kvc_json_cursor_t dc = *c;
        dc.p = data_at;
        if ((rc = kvc_json_tensor_read_values(&dc, t, path, 0)))
            goto fail;
    }
    if (kvc_tensor_count(t) != count) {
        char sh[160];
        s_shape_str(shape, ndim, sh, sizeof sh);
        rc = kvc_err_set(
            err, KVC_EPARSE, "inputs[%zu] '%s': data has %llu elements, shape %s needs %llu", index,
            name, (unsigned long long)kvc_tensor_count(t), sh, (unsigned long long)count);
        goto fail;
    }
    if (kvc_tensor_set_shape(t, shape, ndim)) {
        rc = kvc_err_set(err, KVC_EPARSE, "inputs[%zu] '%s': bad shape", index, name);
        goto fail;
    }
    *out = t;
    *is_bin = 0;
    return KVC_OK;
fail:
    kvc_tensor_destroy(&t);
    return rc;
}

/* Fills a deferred input from the binary section at *p (n bytes left). */
static int s_binary(s_pending_t *pd, const char **p, size_t *left, kvc_err_t *err)
{
    const char *name = kvc_tensor_name(pd->t);
    if (pd->size > *left)
        return kvc_err_set(err, KVC_EPARSE,
                           "inputs[%zu] '%s': binary_data_size %llu exceeds the %zu bytes left",
                           pd->index, name, (unsigned long long)pd->size, *left);
    kvc_dtype_t dt = kvc_tensor_dtype(pd->t);
    const uint8_t *b = (const uint8_t *)*p;
    size_t size = (size_t)pd->size;
    int rc;
    if (dt == KVC_DT_STRING) {
        size_t off = 0;
        for (uint64_t k = 0; k < pd->count; k++) {
            if (size - off < 4)
                return kvc_err_set(err, KVC_EPARSE,
                                   "inputs[%zu] '%s': element %llu: length prefix past "
                                   "binary_data_size",
                                   pd->index, name, (unsigned long long)k);
            uint32_t n = (uint32_t)b[off] | (uint32_t)b[off + 1] << 8 | (uint32_t)b[off + 2] << 16 |
                         (uint32_t)b[off + 3] << 24;
            off += 4;
            if (n > size - off)
                return kvc_err_set(err, KVC_EPARSE,
                                   "inputs[%zu] '%s': element %llu: %u bytes past "
                                   "binary_data_size",
                                   pd->index, name, (unsigned long long)k, n);
            if ((rc = kvc_tensor_append_string(pd->t, b + off, n)))
                return kvc_err_set(err, rc, "inputs[%zu] '%s': %s", pd->index, name,
                                   rc == KVC_ERANGE ? "larger than the request limits"
                                                    : kvc_strerror(rc));
            off += n;
        }
        if (off != size)
            return kvc_err_set(err, KVC_EPARSE,
                               "inputs[%zu] '%s': %zu bytes left over in binary_data_size",
                               pd->index, name, size - off);
    } else {
        size_t es = kvc_dtype_size(dt);
        if (pd->count > UINT64_MAX / es || pd->count * es != pd->size) {
            char sh[160];
            s_shape_str(pd->shape, pd->ndim, sh, sizeof sh);
            return kvc_err_set(err, KVC_EPARSE,
                               "inputs[%zu] '%s': binary_data_size %llu does not match shape %s "
                               "of %s",
                               pd->index, name, (unsigned long long)pd->size, sh,
                               kvc_dtype_kserve_name(dt));
        }
        void *at;
        if ((rc = kvc_tensor_reserve(pd->t, pd->count, &at)))
            return kvc_err_set(err, rc, "inputs[%zu] '%s': %s", pd->index, name,
                               rc == KVC_ERANGE ? "larger than the request limits"
                                                : kvc_strerror(rc));
        if (size)
            memcpy(at, b, size);
        if (dt == KVC_DT_BOOL)
            for (size_t i = 0; i < size; i++)
                ((uint8_t *)at)[i] = b[i] != 0;
        kvc_tensor_commit(pd->t, pd->count);
    }
    if (kvc_tensor_set_shape(pd->t, pd->shape, pd->ndim))
        return kvc_err_set(err, KVC_EPARSE, "inputs[%zu] '%s': bad shape", pd->index, name);
    *p += size;
    *left -= size;
    return KVC_OK;
}

/* Parses one "parameters" object of an output, keeping binary_data. */
static int s_output_params(kvc_json_cursor_t *c, kvc_kserve_output_t *o)
{
    char key[64];
    int st = 0, rc;
    while ((rc = kvc_json_cursor_member(c, &st, key, sizeof key)) == 1) {
        rc = strcmp(key, "binary_data") == 0 ? kvc_json_cursor_read_bool(c, &o->binary)
                                             : kvc_json_cursor_skip(c);
        if (rc)
            return rc;
    }
    return rc;
}

/* Parses the request's "outputs" list. */
static int s_outputs(kvc_json_cursor_t *c, kvc_kserve_request_t *req)
{
    int rc;
    if (kvc_json_cursor_peek(c) != '[')
        return kvc_json_cursor_expect(c, '[');
    req->outputs = kvc_calloc(S_MAX_IO, sizeof *req->outputs);
    if (!req->outputs)
        return kvc_err_set(c->err, KVC_ENOMEM, "out of memory");
    int est = 0;
    while ((rc = kvc_json_cursor_element(c, &est)) == 1) {
        if (req->n_outputs >= S_MAX_IO)
            return kvc_json_cursor_fail(c, KVC_EPARSE, "more than %d outputs", S_MAX_IO);
        size_t index = req->n_outputs++;
        kvc_kserve_output_t *o = &req->outputs[index];
        char key[64];
        int st = 0;
        while ((rc = kvc_json_cursor_member(c, &st, key, sizeof key)) == 1) {
            if (strcmp(key, "name") == 0) {
                char name[S_MAX_NAME], what[48];
                snprintf(what, sizeof what, "outputs[%zu].name", index);
                if ((rc = kvc_json_cursor_read_name(c, what, name, sizeof name, NULL)))
                    return rc;
                kvc_free(o->name);
                o->name = kvc_strdup(name);
                if (!o->name)
                    return kvc_err_set(c->err, KVC_ENOMEM, "out of memory");
            } else if (strcmp(key, "parameters") == 0) {
                if ((rc = s_output_params(c, o)))
                    return rc;
            } else if ((rc = kvc_json_cursor_skip(c))) {
                return rc;
            }
        }
        if (rc)
            return rc;
        if (!o->name)
            return kvc_err_set(c->err, KVC_EPARSE, "outputs[%zu]: missing 'name'", index);
    }
    return rc;
}

/* Parses the request-level "parameters" object. */
static int s_req_params(kvc_json_cursor_t *c, kvc_kserve_request_t *req)
{
    char key[64];
    int st = 0, rc;
    while ((rc = kvc_json_cursor_member(c, &st, key, sizeof key)) == 1) {
        rc = strcmp(key, "binary_data_output") == 0
                 ? kvc_json_cursor_read_bool(c, &req->binary_output)
                 : kvc_json_cursor_skip(c);
        if (rc)
            return rc;
    }
    return rc;
}

int kvc_kserve_json_parse_request(const char *body, size_t len, size_t header_len,
                                  const kvc_tensor_limits_t *lim, kvc_kserve_request_t *req,
                                  kvc_err_t *err)
{
    memset(req, 0, sizeof *req);
    if (header_len > len)
        return kvc_err_set(err, KVC_EPARSE,
                           "Inference-Header-Content-Length %zu is larger than the body (%zu)",
                           header_len, len);
    kvc_json_cursor_t cur;
    kvc_json_cursor_init(&cur, body, header_len, err);
    kvc_json_cursor_t *c = &cur;
    s_pending_t *pend = kvc_calloc(S_MAX_IO, sizeof *pend);
    kvc_tensor_t **items = kvc_calloc(S_MAX_IO, sizeof *items);
    size_t npend = 0, ninputs = 0;
    int rc, seen_inputs = 0;
    if (!items || !pend) {
        rc = kvc_err_set(err, KVC_ENOMEM, "out of memory");
        goto done;
    }
    kvc_tensor_limits_t left = *lim;
    char key[64];
    int st = 0;
    while ((rc = kvc_json_cursor_member(c, &st, key, sizeof key)) == 1) {
        if (strcmp(key, "id") == 0) {
            char id[S_MAX_NAME];
            if ((rc = kvc_json_cursor_read_name(c, "id", id, sizeof id, NULL)))
                goto done;
            kvc_free(req->id);
            req->id = kvc_strdup(id);
            if (!req->id) {
                rc = kvc_err_set(err, KVC_ENOMEM, "out of memory");
                goto done;
            }
        } else if (strcmp(key, "parameters") == 0) {
            if ((rc = s_req_params(c, req)))
                goto done;
        } else if (strcmp(key, "outputs") == 0) {
            if (req->outputs) {
                rc = kvc_json_cursor_fail(c, KVC_EPARSE, "duplicate key 'outputs'");
                goto done;
            }
            if ((rc = s_outputs(c, req)))
                goto done;
        } else if (strcmp(key, "inputs") == 0) {
            if (seen_inputs) {
                rc = kvc_json_cursor_fail(c, KVC_EPARSE, "duplicate key 'inputs'");
                goto done;
            }
            seen_inputs = 1;
            int est = 0;
            while ((rc = kvc_json_cursor_element(c, &est)) == 1) {
                if (ninputs >= S_MAX_IO) {
                    rc = kvc_json_cursor_fail(c, KVC_EPARSE, "more than %d inputs", S_MAX_IO);
                    goto done;
                }
                int is_bin = 0;
                if ((rc = s_input(c, ninputs, &left, &items[ninputs], &pend[npend], &is_bin)))
                    goto done;
                kvc_tensor_t *t = items[ninputs++];
                for (size_t k = 0; k + 1 < ninputs; k++) {
                    if (strcmp(kvc_tensor_name(items[k]), kvc_tensor_name(t)) == 0) {
                        rc = kvc_err_set(err, KVC_EPARSE, "inputs[%zu]: duplicate input '%s'",
                                         ninputs - 1, kvc_tensor_name(t));
                        goto done;
                    }
                }
                uint64_t elems = is_bin ? pend[npend].count : kvc_tensor_count(t);
                uint64_t bytes = is_bin ? pend[npend].size : kvc_tensor_nbytes(t);
                if (elems > left.max_elements || bytes > left.max_bytes) {
                    rc = kvc_err_set(err, KVC_ERANGE, "inputs[%zu]: larger than the request limits",
                                     ninputs - 1);
                    goto done;
                }
                left.max_elements -= elems;
                left.max_bytes -= bytes;
                if (is_bin)
                    npend++;
            }
            if (rc)
                goto done;
        } else if ((rc = kvc_json_cursor_skip(c))) {
            goto done;
        }
    }
    if (rc)
        goto done;
    if (kvc_json_cursor_peek(c) != -1) {
        rc = kvc_json_cursor_fail(c, KVC_EPARSE,
                                  "trailing bytes in the JSON header (check "
                                  "Inference-Header-Content-Length)");
        goto done;
    }
    if (!seen_inputs) {
        rc = kvc_err_set(err, KVC_EPARSE, "missing 'inputs'");
        goto done;
    }
    if (ninputs == 0) {
        rc = kvc_err_set(err, KVC_EPARSE, "inputs: must not be empty");
        goto done;
    }
    /* The binary section: each deferred input, in order, then nothing. */
    const char *bp = body + header_len;
    size_t bleft = len - header_len;
    for (size_t i = 0; i < npend; i++)
        if ((rc = s_binary(&pend[i], &bp, &bleft, err)))
            goto done;
    if (bleft) {
        rc = kvc_err_set(err, KVC_EPARSE, "%zu bytes after the last binary tensor", bleft);
        goto done;
    }
    req->inputs = kvc_tensor_list_new();
    if (!req->inputs) {
        rc = kvc_err_set(err, KVC_ENOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < ninputs; i++) {
        if ((rc = kvc_tensor_list_add(req->inputs, &items[i]))) {
            rc = kvc_err_set(err, rc, "inputs[%zu]: %s", i, kvc_strerror(rc));
            goto done;
        }
    }
done:
    if (items) {
        for (size_t i = 0; i < ninputs; i++)
            kvc_tensor_destroy(&items[i]);
        kvc_free(items);
    }
    kvc_free(pend);
    if (rc)
        kvc_kserve_json_request_clear(req);
    return rc;
}

void kvc_kserve_json_request_clear(kvc_kserve_request_t *req)
{
    if (!req)
        return;
    kvc_free(req->id);
    kvc_tensor_list_destroy(&req->inputs);
    if (req->outputs) {
        for (size_t i = 0; i < req->n_outputs; i++)
            kvc_free(req->outputs[i].name);
        kvc_free(req->outputs);
    }
    memset(req, 0, sizeof *req);
}

int kvc_kserve_json_wants_binary(const kvc_kserve_request_t *req, const char *name)
{
    if (!req)
        return 0;
    for (size_t i = 0; i < req->n_outputs; i++)
        if (req->outputs[i].name && strcmp(req->outputs[i].name, name) == 0)
            return req->outputs[i].binary || req->binary_output;
    return req->binary_output;
}

/* Appends n bytes through the bounded buffer. */
static int s_put(kvc_buf_t *out, const char *s, size_t n)
{
    return kvc_buf_append(out, s, n);
}

/* Appends a string literal. */
#define s_lit(out, lit) s_put((out), (lit), sizeof(lit) - 1)

/* Appends a decimal integer. */
static int s_put_u64(kvc_buf_t *out, uint64_t v)
{
    char tmp[KVC_NUMFMT_MAX];
    return s_put(out, tmp, kvc_numfmt_write_u64(v, tmp));
}

/* Appends a "key": "string" member (with a leading comma when not first). */
static int s_member_str(kvc_buf_t *out, const char *key, const char *val, int first)
{
    int rc = first ? KVC_OK : s_lit(out, ",");
    if (!rc)
        rc = kvc_json_tensor_write_string(out, key, strlen(key));
    if (!rc)
        rc = s_lit(out, ":");
    if (!rc)
        rc = kvc_json_tensor_write_string(out, val, strlen(val));
    return rc;
}

/* Bytes an output takes in the binary section. */
static uint64_t s_binary_size(const kvc_tensor_t *t)
{
    if (kvc_tensor_dtype(t) == KVC_DT_STRING)
        return kvc_tensor_nbytes(t) + 4 * kvc_tensor_count(t);
    return kvc_tensor_nbytes(t);
}

/* Appends t's raw bytes (BYTES with 4-byte little-endian prefixes). */
static int s_put_binary(kvc_buf_t *out, const kvc_tensor_t *t)
{
    if (kvc_tensor_dtype(t) != KVC_DT_STRING)
        return s_put(out, kvc_tensor_cdata(t), kvc_tensor_nbytes(t));
    for (uint64_t i = 0; i < kvc_tensor_count(t); i++) {
        size_t n;
        const uint8_t *s = kvc_tensor_string(t, i, &n);
        uint8_t pre[4] = {(uint8_t)n, (uint8_t)(n >> 8), (uint8_t)(n >> 16), (uint8_t)(n >> 24)};
        int rc = s_put(out, (const char *)pre, 4);
        if (!rc)
            rc = s_put(out, (const char *)s, n);
        if (rc)
            return rc;
    }
    return KVC_OK;
}

int kvc_kserve_json_write_response(const kvc_kserve_response_meta_t *meta,
                                   const kvc_tensor_list_t *outputs,
                                   const kvc_kserve_request_t *req, kvc_buf_t *out,
                                   size_t *header_len, kvc_err_t *err)
{
    size_t start = out->len;
    size_t n = kvc_tensor_list_size(outputs);
    int any_bin = 0;
    int rc = s_lit(out, "{");
    if (!rc)
        rc = s_member_str(out, "model_name", meta->model_name ? meta->model_name : "", 1);
    if (!rc && meta->model_version)
        rc = s_member_str(out, "model_version", meta->model_version, 0);
    if (!rc && meta->id)
        rc = s_member_str(out, "id", meta->id, 0);
    if (!rc)
        rc = s_lit(out, ",\"outputs\":[");
    for (size_t i = 0; !rc && i < n; i++) {
        const kvc_tensor_t *t = kvc_tensor_list_at(outputs, i);
        int bin = kvc_kserve_json_wants_binary(req, kvc_tensor_name(t));
        if (i)
            rc = s_lit(out, ",");
        if (!rc)
            rc = s_lit(out, "{");
        if (!rc)
            rc = s_member_str(out, "name", kvc_tensor_name(t), 1);
        if (!rc)
            rc = s_member_str(out, "datatype", kvc_dtype_kserve_name(kvc_tensor_dtype(t)), 0);
        if (!rc)
            rc = s_lit(out, ",\"shape\":[");
        for (int d = 0; !rc && d < kvc_tensor_ndim(t); d++) {
            if (d)
                rc = s_lit(out, ",");
            if (!rc)
                rc = s_put_u64(out, (uint64_t)kvc_tensor_shape(t)[d]);
        }
        if (!rc)
            rc = s_lit(out, "]");
        if (!rc && bin) {
            any_bin = 1;
            rc = s_lit(out, ",\"parameters\":{\"binary_data_size\":");
            if (!rc)
                rc = s_put_u64(out, s_binary_size(t));
            if (!rc)
                rc = s_lit(out, "}");
        } else if (!rc) {
            rc = s_lit(out, ",\"data\":");
            if (!rc)
                rc = kvc_json_tensor_write_values(out, t, 1, 0);
            if (rc == KVC_EINVAL) {
                kvc_err_set(err, KVC_EINVAL,
                            "output '%s' holds bytes that are not UTF-8; request it with "
                            "binary_data",
                            kvc_tensor_name(t));
                out->len = start;
                if (out->data)
                    out->data[start] = '\0';
                return KVC_EINVAL;
            }
        }
        if (!rc)
            rc = s_lit(out, "}");
    }
    if (!rc)
        rc = s_lit(out, "]}");
    size_t json_len = out->len - start;
    for (size_t i = 0; !rc && any_bin && i < n; i++) {
        const kvc_tensor_t *t = kvc_tensor_list_at(outputs, i);
        if (kvc_kserve_json_wants_binary(req, kvc_tensor_name(t)))
            rc = s_put_binary(out, t);
    }
    if (rc) {
        out->len = start;
        if (out->data)
            out->data[start] = '\0';
        return kvc_err_set(err, rc, "writing the response: %s", kvc_strerror(rc));
    }
    *header_len = any_bin ? json_len : 0;
    return KVC_OK;
}
