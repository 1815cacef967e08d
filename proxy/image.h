/*
 * image.h - the proxy's image path: a raw JPEG or PNG request body in, the
 * model's input tensor out, decoded with libturbojpeg or libpng and then
 * resized and normalised by a kvc_preprocess_t (see preprocess.h).
 *
 * Every body is hostile. The encoded size and the pixel count (from the
 * JPEG/PNG header, before any pixel buffer exists) are checked against
 * limits, so a decompression bomb is refused before it can allocate. Every
 * failure is one line starting "image: " in the caller's kvc_err_t.
 *
 * Colour rules: the image is decoded to the spec's channel count. A gray
 * image given to a 3-channel spec has its gray value in all three channels;
 * a colour image given to a 1-channel (gray) spec is converted to luma by
 * the decoder (JPEG: its Y component; PNG: libpng's sRGB luminance). An
 * alpha channel is ignored, not composited (as PIL's convert("RGB") and
 * TF's decode_png(channels=3) do). 16-bit PNG samples are taken as sRGB and
 * reduced to 8 bits. EXIF orientation is not applied. JPEG warnings (such as
 * a truncated file) are errors: a half-decoded photo would give a confident
 * wrong answer.
 */
#ifndef KVC_IMAGE_H
#define KVC_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "base.h"
#include "preprocess.h"

/* Defaults used when limits is NULL or a field is 0. */
#define KVC_IMAGE_DEFAULT_MAX_BYTES (64u * 1024 * 1024)
#define KVC_IMAGE_DEFAULT_MAX_PIXELS 50000000ull

/*
 * A cap on the memory that every image decode in a process holds at once,
 * shared by the proxy's connection threads. The pixel limit bounds one
 * image; without this, a few dozen small PNGs of huge dimensions decoded in
 * parallel would exhaust a gateway's memory. Thread-safe; owned by whoever
 * made it, and it must outlive every decode that uses it.
 */
typedef struct kvc_image_budget kvc_image_budget_t;

/* A budget of cap bytes (> 0). Returns NULL when out of memory. */
kvc_image_budget_t *kvc_image_budget_new(uint64_t cap);

/* Frees the budget and nulls *self_p; NULL and *self_p == NULL are fine. */
void kvc_image_budget_destroy(kvc_image_budget_t **self_p);

/* Takes n bytes: 0 on success, KVC_ERANGE when n exceeds the whole cap
 * (it could never fit), KVC_EAGAIN when it does not fit now. */
int kvc_image_budget_take(kvc_image_budget_t *self, uint64_t n);

/* Gives back n bytes taken earlier. */
void kvc_image_budget_give(kvc_image_budget_t *self, uint64_t n);

/* Bytes taken now (a snapshot). */
uint64_t kvc_image_budget_used(const kvc_image_budget_t *self);

/* What an image may cost; a plain value owned by the caller. */
typedef struct {
    size_t max_bytes;           /* largest encoded body; 0 = default */
    uint64_t max_pixels;        /* largest width * height of the full image; 0 = default */
    kvc_image_budget_t *budget; /* shared cap on decode memory; NULL = none */
} kvc_image_limits_t;

typedef enum { KVC_IMAGE_UNKNOWN = 0, KVC_IMAGE_JPEG = 1, KVC_IMAGE_PNG = 2 } kvc_image_format_t;

/* Tells JPEG from PNG by magic bytes (FF D8 FF; the 8-byte PNG signature). */
kvc_image_format_t kvc_image_sniff(const uint8_t *data, size_t len);

/*
 * Decodes the image in data[0..len) and writes the batch-of-1 tensor that
 * spec describes (layout, dtype, floats little-endian) into a new buffer.
 *
 * content_type is the request's Content-Type (may be NULL or empty: the
 * magic bytes alone decide). image/jpeg (also image/jpg, image/pjpeg),
 * image/png and application/octet-stream are accepted, parameters after ';'
 * are ignored, case does not matter; an image type that does not match the
 * magic bytes, or any other type, is refused. limits may be NULL.
 *
 * On success returns 0, sets *out to a buffer the caller frees with
 * kvc_free, *out_len to kvc_preprocess_tensor_bytes(spec) and shape to the
 * tensor shape. On failure returns a negative code, leaves *out NULL and
 * puts one line in err (if not NULL):
 *   KVC_EINVAL  bad spec or arguments, unsupported or mismatched Content-Type
 *   KVC_EPARSE  empty body, not a JPEG or PNG, corrupt or truncated data
 *   KVC_ERANGE  over max_bytes or max_pixels, or decoding it needs more
 *               memory than the whole budget
 *   KVC_EAGAIN  the budget cannot hold this decode now (others in flight)
 *   KVC_ENOMEM  out of memory
 * With a budget, the decode takes what it will hold (the decoded pixels at
 * the scale it decodes, the tensor, and for a progressive JPEG the
 * coefficients of the whole image, which libjpeg keeps) before allocating,
 * and gives it back before returning.
 * data is only read, and only during the call.
 */
int kvc_image_to_tensor(const uint8_t *data, size_t len, const char *content_type,
                        const kvc_preprocess_t *spec, const kvc_image_limits_t *limits,
                        uint8_t **out, size_t *out_len, int64_t shape[4], kvc_err_t *err);

#endif
