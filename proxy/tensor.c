/*
 * tensor.c - the proxy's in-memory tensor and tensor list.
 *
 * Numeric data is one contiguous little-endian buffer; strings are one blob
 * plus an array of end offsets. Growth is geometric but never passes the
 * limits given at creation. This module must never let a count or byte size
 * overflow, and never grow past its limits.
 */
#include "tensor.h"

#include "base.h"

#include <string.h>

struct kvc_tensor {
    char *name;
    kvc_dtype_t dtype;
    int ndim;
    int64_t shape[KVC_TENSOR_MAX_DIMS];
    uint64_t count;
    uint8_t *data; /* numeric values, or the string blob */
    size_t len;    /* bytes used in data */
    size_t cap;
    uint64_t *ends; /* strings: end offset of element i in the blob */
    size_t ends_cap;
    kvc_tensor_limits_t lim;
};

struct kvc_tensor_list {
    kvc_tensor_t **items;
    size_t size;
    size_t cap;
};

static const struct {
    kvc_dtype_t dtype;
    size_t size;
    const char *kserve;
    const char *tf;
    const char *plain; /* numpy's name, as configs write it */
} s_dtypes[] = {
    {KVC_DT_FLOAT, 4, "FP32", "DT_FLOAT", "float32"},
    {KVC_DT_DOUBLE, 8, "FP64", "DT_DOUBLE", "float64"},
    {KVC_DT_INT32, 4, "INT32", "DT_INT32", "int32"},
    {KVC_DT_UINT8, 1, "UINT8", "DT_UINT8", "uint8"},
    {KVC_DT_INT16, 2, "INT16", "DT_INT16", "int16"},
    {KVC_DT_INT8, 1, "INT8", "DT_INT8", "int8"},
    {KVC_DT_STRING, 0, "BYTES", "DT_STRING", "string"},
    {KVC_DT_INT64, 8, "INT64", "DT_INT64", "int64"},
    {KVC_DT_BOOL, 1, "BOOL", "DT_BOOL", "bool"},
    {KVC_DT_UINT16, 2, "UINT16", "DT_UINT16", "uint16"},
    {KVC_DT_HALF, 2, "FP16", "DT_HALF", "float16"},
    {KVC_DT_UINT32, 4, "UINT32", "DT_UINT32", "uint32"},
    {KVC_DT_UINT64, 8, "UINT64", "DT_UINT64", "uint64"},
};
#define S_NDTYPES (sizeof s_dtypes / sizeof s_dtypes[0])

/* Returns the table row for dtype, or -1. */
static int s_dtype_row(kvc_dtype_t dtype)
{
    for (size_t i = 0; i < S_NDTYPES; i++)
        if (s_dtypes[i].dtype == dtype)
            return (int)i;
    return -1;
}

size_t kvc_dtype_size(kvc_dtype_t dtype)
{
    int r = s_dtype_row(dtype);
    return r < 0 ? 0 : s_dtypes[r].size;
}

int kvc_dtype_valid(kvc_dtype_t dtype)
{
    return s_dtype_row(dtype) >= 0;
}

const char *kvc_dtype_kserve_name(kvc_dtype_t dtype)
{
    int r = s_dtype_row(dtype);
    return r < 0 ? NULL : s_dtypes[r].kserve;
}

const char *kvc_dtype_name(kvc_dtype_t dtype)
{
    int r = s_dtype_row(dtype);
    return r < 0 ? "DT_INVALID" : s_dtypes[r].tf;
}

const char *kvc_dtype_plain_name(kvc_dtype_t dtype)
{
    int r = s_dtype_row(dtype);
    return r < 0 ? "invalid" : s_dtypes[r].plain;
}

kvc_dtype_t kvc_dtype_parse(const char *name)
{
    for (size_t i = 0; name && i < S_NDTYPES; i++)
        if (strcmp(s_dtypes[i].plain, name) == 0 || strcmp(s_dtypes[i].kserve, name) == 0 ||
            strcmp(s_dtypes[i].tf, name) == 0)
            return s_dtypes[i].dtype;
    return KVC_DT_INVALID;
}

kvc_dtype_t kvc_dtype_from_kserve(const char *name, size_t len)
{
    for (size_t i = 0; i < S_NDTYPES; i++)
        if (strlen(s_dtypes[i].kserve) == len && memcmp(s_dtypes[i].kserve, name, len) == 0)
            return s_dtypes[i].dtype;
    return KVC_DT_INVALID;
}

int kvc_tensor_shape_count(const int64_t *shape, int ndim, uint64_t max, uint64_t *count)
{
    if (ndim < 0 || ndim > KVC_TENSOR_MAX_DIMS)
        return KVC_EINVAL;
    int zero = 0;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return KVC_EINVAL;
        zero |= shape[i] == 0;
    }
    uint64_t n = 1;
    for (int i = 0; i < ndim && !zero; i++) {
        uint64_t d = (uint64_t)shape[i];
        if (n > UINT64_MAX / d)
            return KVC_ERANGE;
        n *= d;
    }
    if (zero)
        n = 0;
    if (max && n > max)
        return KVC_ERANGE;
    *count = n;
    return KVC_OK;
}

kvc_tensor_t *kvc_tensor_new(const char *name, kvc_dtype_t dtype, const kvc_tensor_limits_t *lim)
{
    if (!kvc_dtype_valid(dtype) || !name || !lim)
        return NULL;
    kvc_tensor_t *self = kvc_calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->name = kvc_strdup(name);
    if (!self->name) {
        kvc_free(self);
        return NULL;
    }
    self->dtype = dtype;
    self->ndim = 1;
    self->shape[0] = 0;
    self->lim = *lim;
    return self;
}

void kvc_tensor_destroy(kvc_tensor_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    kvc_tensor_t *self = *self_p;
    kvc_free(self->name);
    kvc_free(self->data);
    kvc_free(self->ends);
    kvc_free(self);
    *self_p = NULL;
}

const char *kvc_tensor_name(const kvc_tensor_t *self)
{
    return self->name;
}

kvc_dtype_t kvc_tensor_dtype(const kvc_tensor_t *self)
{
    return self->dtype;
}

int kvc_tensor_ndim(const kvc_tensor_t *self)
{
    return self->ndim;
}

const int64_t *kvc_tensor_shape(const kvc_tensor_t *self)
{
    return self->shape;
}

uint64_t kvc_tensor_count(const kvc_tensor_t *self)
{
    return self->count;
}

void *kvc_tensor_data(kvc_tensor_t *self)
{
    return self->data;
}

const void *kvc_tensor_cdata(const kvc_tensor_t *self)
{
    return self->data;
}

size_t kvc_tensor_nbytes(const kvc_tensor_t *self)
{
    return self->len;
}

/* Grows data to hold need bytes (need already checked against limits). */
static int s_grow_data(kvc_tensor_t *self, size_t need)
{
    if (need <= self->cap && self->data)
        return KVC_OK;
    size_t cap = self->cap ? self->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (cap > self->lim.max_bytes && need <= self->lim.max_bytes)
        cap = (size_t)self->lim.max_bytes;
    uint8_t *data = kvc_realloc(self->data, cap);
    if (!data)
        return KVC_ENOMEM;
    self->data = data;
    self->cap = cap;
    return KVC_OK;
}

/* Checks that n more elements of nbytes more bytes stay within limits;
 * string elements are also charged 8 bytes each for their offsets. */
static int s_check_limits(const kvc_tensor_t *self, uint64_t n, uint64_t nbytes)
{
    const kvc_tensor_limits_t *lim = &self->lim;
    if (n > lim->max_elements || self->count > lim->max_elements - n)
        return KVC_ERANGE;
    if (nbytes > lim->max_bytes || self->len > lim->max_bytes - nbytes)
        return KVC_ERANGE;
    if (self->dtype == KVC_DT_STRING) {
        uint64_t elems = self->count + n;
        if (elems > lim->max_bytes / 8 || self->len + nbytes > lim->max_bytes - elems * 8)
            return KVC_ERANGE;
    }
    return KVC_OK;
}

int kvc_tensor_set_shape(kvc_tensor_t *self, const int64_t *shape, int ndim)
{
    uint64_t n;
    int rc = kvc_tensor_shape_count(shape, ndim, 0, &n);
    if (rc)
        return rc == KVC_ERANGE ? KVC_EINVAL : rc;
    if (n != self->count)
        return KVC_EINVAL;
    self->ndim = ndim;
    if (ndim)
        memcpy(self->shape, shape, (size_t)ndim * sizeof *shape);
    return KVC_OK;
}

int kvc_tensor_alloc(kvc_tensor_t *self, const int64_t *shape, int ndim)
{
    size_t es = kvc_dtype_size(self->dtype);
    if (!es)
        return KVC_EINVAL;
    uint64_t n;
    int rc = kvc_tensor_shape_count(shape, ndim, 0, &n);
    if (rc)
        return rc;
    if (n > self->lim.max_elements || n > self->lim.max_bytes / es)
        return KVC_ERANGE;
    rc = s_grow_data(self, (size_t)(n * es));
    if (rc)
        return rc;
    if (n)
        memset(self->data, 0, (size_t)(n * es));
    self->len = (size_t)(n * es);
    self->count = n;
    self->ndim = ndim;
    if (ndim)
        memcpy(self->shape, shape, (size_t)ndim * sizeof *shape);
    return KVC_OK;
}

int kvc_tensor_reserve(kvc_tensor_t *self, uint64_t n, void **at)
{
    size_t es = kvc_dtype_size(self->dtype);
    if (!es)
        return KVC_EINVAL;
    /* n * es > max_bytes, without a division: this runs once per scalar on
     * the JSON parser's general path. */
    uint64_t nbytes;
    if (__builtin_mul_overflow(n, (uint64_t)es, &nbytes) || nbytes > self->lim.max_bytes)
        return KVC_ERANGE;
    int rc = s_check_limits(self, n, nbytes);
    if (rc)
        return rc;
    rc = s_grow_data(self, self->len + (size_t)(n * es));
    if (rc)
        return rc;
    *at = self->data + self->len;
    return KVC_OK;
}

void kvc_tensor_commit(kvc_tensor_t *self, uint64_t n)
{
    self->len += (size_t)n * kvc_dtype_size(self->dtype);
    self->count += n;
    self->ndim = 1;
    self->shape[0] = (int64_t)self->count;
}

int kvc_tensor_append(kvc_tensor_t *self, const void *src, uint64_t n)
{
    void *at;
    int rc = kvc_tensor_reserve(self, n, &at);
    if (rc)
        return rc;
    if (n)
        memcpy(at, src, (size_t)n * kvc_dtype_size(self->dtype));
    kvc_tensor_commit(self, n);
    return KVC_OK;
}

int kvc_tensor_reserve_string(kvc_tensor_t *self, size_t len, char **at)
{
    if (self->dtype != KVC_DT_STRING)
        return KVC_EINVAL;
    int rc = s_check_limits(self, 1, len);
    if (rc)
        return rc;
    if (self->count >= self->ends_cap) {
        size_t cap = self->ends_cap ? self->ends_cap * 2 : 16;
        uint64_t *ends = kvc_realloc(self->ends, cap * sizeof *ends);
        if (!ends)
            return KVC_ENOMEM;
        self->ends = ends;
        self->ends_cap = cap;
    }
    rc = s_grow_data(self, self->len + len);
    if (rc)
        return rc;
    *at = (char *)self->data + self->len;
    return KVC_OK;
}

int kvc_tensor_commit_string(kvc_tensor_t *self, size_t used)
{
    self->len += used;
    self->ends[self->count++] = self->len;
    self->ndim = 1;
    self->shape[0] = (int64_t)self->count;
    return KVC_OK;
}

int kvc_tensor_append_string(kvc_tensor_t *self, const void *bytes, size_t len)
{
    char *at;
    int rc = kvc_tensor_reserve_string(self, len, &at);
    if (rc)
        return rc;
    if (len)
        memcpy(at, bytes, len);
    return kvc_tensor_commit_string(self, len);
}

const uint8_t *kvc_tensor_string(const kvc_tensor_t *self, uint64_t i, size_t *len)
{
    if (self->dtype != KVC_DT_STRING || i >= self->count) {
        *len = 0;
        return NULL;
    }
    uint64_t start = i ? self->ends[i - 1] : 0;
    *len = (size_t)(self->ends[i] - start);
    return self->data ? self->data + start : (const uint8_t *)"";
}

int kvc_tensor_convert(kvc_tensor_t *self, kvc_dtype_t to)
{
    if (self->dtype != KVC_DT_INT64 || (to != KVC_DT_FLOAT && to != KVC_DT_DOUBLE))
        return KVC_EINVAL;
    /* Front to back is safe: the destination never overtakes the source. */
    for (uint64_t i = 0; i < self->count; i++) {
        int64_t v;
        memcpy(&v, self->data + i * 8, 8);
        if (to == KVC_DT_FLOAT) {
            float f = (float)v;
            memcpy(self->data + i * 4, &f, 4);
        } else {
            double d = (double)v;
            memcpy(self->data + i * 8, &d, 8);
        }
    }
    self->dtype = to;
    self->len = (size_t)self->count * kvc_dtype_size(to);
    return KVC_OK;
}

int kvc_tensor_equal(const kvc_tensor_t *a, const kvc_tensor_t *b)
{
    if (strcmp(a->name, b->name) != 0 || a->dtype != b->dtype || a->ndim != b->ndim ||
        a->count != b->count || a->len != b->len)
        return 0;
    if (a->ndim && memcmp(a->shape, b->shape, (size_t)a->ndim * sizeof a->shape[0]) != 0)
        return 0;
    if (a->len && memcmp(a->data, b->data, a->len) != 0)
        return 0;
    if (a->dtype == KVC_DT_STRING && a->count &&
        memcmp(a->ends, b->ends, (size_t)a->count * sizeof a->ends[0]) != 0)
        return 0;
    return 1;
}

kvc_tensor_list_t *kvc_tensor_list_new(void)
{
    return kvc_calloc(1, sizeof(kvc_tensor_list_t));
}

void kvc_tensor_list_destroy(kvc_tensor_list_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    kvc_tensor_list_t *self = *self_p;
    for (size_t i = 0; i < self->size; i++)
        kvc_tensor_destroy(&self->items[i]);
    kvc_free(self->items);
    kvc_free(self);
    *self_p = NULL;
}

int kvc_tensor_list_add(kvc_tensor_list_t *self, kvc_tensor_t **tensor_p)
{
    kvc_tensor_t *t = *tensor_p;
    *tensor_p = NULL;
    if (kvc_tensor_list_find(self, t->name)) {
        kvc_tensor_destroy(&t);
        return KVC_EEXIST;
    }
    if (self->size == self->cap) {
        size_t cap = self->cap ? self->cap * 2 : 4;
        kvc_tensor_t **items = kvc_realloc(self->items, cap * sizeof *items);
        if (!items) {
            kvc_tensor_destroy(&t);
            return KVC_ENOMEM;
        }
        self->items = items;
        self->cap = cap;
    }
    self->items[self->size++] = t;
    return KVC_OK;
}

size_t kvc_tensor_list_size(const kvc_tensor_list_t *self)
{
    return self->size;
}

kvc_tensor_t *kvc_tensor_list_at(const kvc_tensor_list_t *self, size_t i)
{
    return i < self->size ? self->items[i] : NULL;
}

kvc_tensor_t *kvc_tensor_list_find(const kvc_tensor_list_t *self, const char *name)
{
    for (size_t i = 0; i < self->size; i++)
        if (strcmp(self->items[i]->name, name) == 0)
            return self->items[i];
    return NULL;
}
