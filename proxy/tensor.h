/*
 * tensor.h - the proxy's in-memory tensor: a name, a dtype (TensorFlow
 * DataType numbers), a shape of at most 8 dimensions and one contiguous
 * little-endian buffer (or, for strings, a list of byte strings kept in one
 * blob with offsets). Codecs parse straight into it and write straight out
 * of it; the glue to TensorProto / KServe protobufs reads the same buffer.
 *
 * Every tensor carries limits fixed at creation (maximum elements and
 * bytes), so a hostile body can never make it allocate without bound. This
 * module must never trust a shape: element counts are overflow-checked.
 */
#ifndef KVC_TENSOR_H
#define KVC_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#define KVC_TENSOR_MAX_DIMS 8

/* TensorFlow DataType numbers (tensorflow/core/framework/types.proto). */
typedef enum {
    KVC_DT_INVALID = 0,
    KVC_DT_FLOAT = 1,
    KVC_DT_DOUBLE = 2,
    KVC_DT_INT32 = 3,
    KVC_DT_UINT8 = 4,
    KVC_DT_INT16 = 5,
    KVC_DT_INT8 = 6,
    KVC_DT_STRING = 7,
    KVC_DT_INT64 = 9,
    KVC_DT_BOOL = 10,
    KVC_DT_UINT16 = 17,
    KVC_DT_HALF = 19,
    KVC_DT_UINT32 = 22,
    KVC_DT_UINT64 = 23,
} kvc_dtype_t;

/* Bounds a tensor (or a whole request) may reach. */
typedef struct {
    uint64_t max_elements;
    uint64_t max_bytes; /* data bytes; strings also count 8 bytes per element */
} kvc_tensor_limits_t;

/* Bytes per element (1 for bool; 0 for strings and unknown dtypes). */
size_t kvc_dtype_size(kvc_dtype_t dtype);
/* Tells whether dtype is one of the values above (not KVC_DT_INVALID). */
int kvc_dtype_valid(kvc_dtype_t dtype);
/* KServe datatype string ("FP32", "BYTES", ...); NULL for an invalid dtype.
 * The string is static. */
const char *kvc_dtype_kserve_name(kvc_dtype_t dtype);
/* Parses a KServe datatype string of length len; KVC_DT_INVALID if unknown. */
kvc_dtype_t kvc_dtype_from_kserve(const char *name, size_t len);
/* TensorFlow-style name ("DT_FLOAT") for messages; static string. */
const char *kvc_dtype_name(kvc_dtype_t dtype);
/* numpy's name ("float32", "int64", "string", ...), as a config writes it;
 * static string, "invalid" for an invalid dtype. */
const char *kvc_dtype_plain_name(kvc_dtype_t dtype);
/* Parses a dtype written any of the three ways: "float32", "FP32" or
 * "DT_FLOAT" (exact case); KVC_DT_INVALID if none. */
kvc_dtype_t kvc_dtype_parse(const char *name);

/*
 * Multiplies out a shape with overflow checks. Returns 0 and the product in
 * *count, KVC_EINVAL for ndim outside [0, 8] or a negative dimension,
 * KVC_ERANGE if the product overflows or passes max (0 = no bound).
 */
int kvc_tensor_shape_count(const int64_t *shape, int ndim, uint64_t max, uint64_t *count);

typedef struct kvc_tensor kvc_tensor_t;

/*
 * Creates an empty tensor (shape [0], no elements) that may grow up to lim.
 * The name is copied. Returns NULL on allocation failure or invalid dtype.
 */
kvc_tensor_t *kvc_tensor_new(const char *name, kvc_dtype_t dtype, const kvc_tensor_limits_t *lim);
/* Frees the tensor and sets *self_p to NULL; NULL-safe. */
void kvc_tensor_destroy(kvc_tensor_t **self_p);

/* Accessors. Pointers stay valid until the tensor changes or is destroyed. */
const char *kvc_tensor_name(const kvc_tensor_t *self);
kvc_dtype_t kvc_tensor_dtype(const kvc_tensor_t *self);
int kvc_tensor_ndim(const kvc_tensor_t *self);
const int64_t *kvc_tensor_shape(const kvc_tensor_t *self);
uint64_t kvc_tensor_count(const kvc_tensor_t *self);
/* Numeric data (count * dtype size bytes); for strings, the string blob. */
void *kvc_tensor_data(kvc_tensor_t *self);
const void *kvc_tensor_cdata(const kvc_tensor_t *self);
/* Byte size of the numeric data, or total string bytes for strings. */
size_t kvc_tensor_nbytes(const kvc_tensor_t *self);

/*
 * Sets the shape; its element count must equal the elements already held
 * (KVC_EINVAL otherwise, with the tensor unchanged).
 */
int kvc_tensor_set_shape(kvc_tensor_t *self, const int64_t *shape, int ndim);

/*
 * Sets the shape and makes room for that many numeric elements, zero
 * filled, replacing the contents. KVC_ERANGE past the limits, KVC_EINVAL for
 * a string tensor or a bad shape, KVC_ENOMEM.
 */
int kvc_tensor_alloc(kvc_tensor_t *self, const int64_t *shape, int ndim);

/*
 * Growth for streaming parsers. reserve makes room for n more numeric
 * elements and sets *at to where they go (valid until the next growth
 * call); commit then counts the ones written (at most n). KVC_ERANGE past
 * the limits, KVC_ENOMEM, KVC_EINVAL for a string tensor.
 */
int kvc_tensor_reserve(kvc_tensor_t *self, uint64_t n, void **at);
void kvc_tensor_commit(kvc_tensor_t *self, uint64_t n);
/* Appends n numeric elements copied from src (n * dtype size bytes). */
int kvc_tensor_append(kvc_tensor_t *self, const void *src, uint64_t n);
/* Appends one byte string (copied) to a string tensor. */
int kvc_tensor_append_string(kvc_tensor_t *self, const void *bytes, size_t len);
/* Reserves room for a string of up to len bytes (for decoding in place);
 * *at is valid until the next growth call. Finish with
 * kvc_tensor_commit_string(self, used), used <= len. */
int kvc_tensor_reserve_string(kvc_tensor_t *self, size_t len, char **at);
int kvc_tensor_commit_string(kvc_tensor_t *self, size_t used);
/* Returns string element i (not NUL-terminated) and its length. */
const uint8_t *kvc_tensor_string(const kvc_tensor_t *self, uint64_t i, size_t *len);

/*
 * Changes a numeric tensor's dtype in place, converting its values
 * (int64 -> float, used when inference meets a float after integers).
 * Only KVC_DT_INT64 -> KVC_DT_FLOAT/KVC_DT_DOUBLE is supported.
 */
int kvc_tensor_convert(kvc_tensor_t *self, kvc_dtype_t to);

/* Tells whether two tensors have equal name, dtype, shape and bytes
 * (floats compared bitwise, so NaN equals the same NaN). */
int kvc_tensor_equal(const kvc_tensor_t *a, const kvc_tensor_t *b);

/* An ordered list of named tensors; it owns them. */
typedef struct kvc_tensor_list kvc_tensor_list_t;

/* Returns an empty list or NULL. */
kvc_tensor_list_t *kvc_tensor_list_new(void);
/* Destroys the list and every tensor in it; NULL-safe, nulls *self_p. */
void kvc_tensor_list_destroy(kvc_tensor_list_t **self_p);
/* Appends a tensor, taking ownership (*tensor_p becomes NULL) even on
 * failure (it is then destroyed). KVC_EEXIST if the name is taken. */
int kvc_tensor_list_add(kvc_tensor_list_t *self, kvc_tensor_t **tensor_p);
size_t kvc_tensor_list_size(const kvc_tensor_list_t *self);
/* Borrowed pointers, valid while the list lives. */
kvc_tensor_t *kvc_tensor_list_at(const kvc_tensor_list_t *self, size_t i);
kvc_tensor_t *kvc_tensor_list_find(const kvc_tensor_list_t *self, const char *name);

#endif
