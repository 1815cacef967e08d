/*
 * preprocess.h - a model's image preprocessing spec and the one fused pass
 * that turns decoded 8-bit pixels into its input tensor: bilinear resize
 * (optionally after a centred crop to the target's aspect ratio), channel
 * order, layout, dtype and per-channel normalisation, written straight into
 * the output buffer with no intermediate image.
 *
 * This module knows nothing of JPEG or PNG (see image.h) and must never
 * allocate anything whose size the input alone decides: the only
 * allocations are index tables sized by the spec's output width.
 *
 * The text form of a spec, as it appears in the config and the registry, is
 * a list of words separated by spaces, in any order, each given at most once:
 *
 *   224x224              output WIDTHxHEIGHT, each 1..4096 (required)
 *   rgb | bgr | gray     channels and their order (default rgb); gray is 1
 *                        channel
 *   nhwc | nchw          layout of the batch-of-1 tensor (default nhwc)
 *   float32 | uint8      element type (default float32)
 *   stretch | crop       resize the whole image to the target (default), or
 *                        first cut the largest centred region with the
 *                        target's aspect ratio
 *   scale=S              S is a number or a fraction such as 1/255 (default 1)
 *   mean=M[,M,M]         per output channel, in tensor channel order
 *   std=D[,D,D]          (so for bgr the first value is blue); one value
 *                        applies to every channel; defaults 0 and 1
 *
 * Each float element is (pixel * scale - mean[c]) / std[c], where pixel is
 * the bilinearly interpolated 0..255 value. uint8 output is the interpolated
 * pixel rounded to the nearest integer; scale, mean and std are rejected
 * with uint8 because a model that takes bytes takes raw pixels.
 *
 * Example: "224x224 rgb nchw float32 crop scale=1/255 mean=0.485,0.456,0.406
 * std=0.229,0.224,0.225".
 */
#ifndef KVC_PREPROCESS_H
#define KVC_PREPROCESS_H

#include <stddef.h>
#include <stdint.h>

#include "base.h"

/* Largest output width or height a spec may ask for. */
#define KVC_PREPROCESS_MAX_SIDE 4096
/* Longest text form kvc_preprocess_parse accepts. */
#define KVC_PREPROCESS_MAX_TEXT 512

typedef enum { KVC_COLOR_RGB = 0, KVC_COLOR_BGR = 1 } kvc_color_order_t;
typedef enum { KVC_LAYOUT_NHWC = 0, KVC_LAYOUT_NCHW = 1 } kvc_layout_t;
typedef enum { KVC_PP_FLOAT32 = 0, KVC_PP_UINT8 = 1 } kvc_pp_dtype_t;
typedef enum { KVC_RESIZE_STRETCH = 0, KVC_RESIZE_CROP = 1 } kvc_resize_mode_t;

/* A preprocessing spec; a plain value, copied freely. */
typedef struct {
    uint32_t width;          /* output width, 1..KVC_PREPROCESS_MAX_SIDE */
    uint32_t height;         /* output height, 1..KVC_PREPROCESS_MAX_SIDE */
    uint32_t channels;       /* 1 (gray) or 3 (color) */
    kvc_color_order_t order; /* only meaningful with 3 channels */
    kvc_layout_t layout;
    kvc_pp_dtype_t dtype;
    kvc_resize_mode_t resize;
    float scale;
    float mean[3]; /* indexed by output channel; with 1 channel only [0] */
    float std[3];  /* each finite and non-zero */
} kvc_preprocess_t;

/*
 * Decoded 8-bit pixels, borrowed for the duration of one call. Each pixel
 * is pixel_bytes long and starts with `channels` colour samples (1 = gray,
 * 3 = R,G,B); any bytes after them (alpha) are ignored.
 */
typedef struct {
    const uint8_t *data;
    uint32_t width;
    uint32_t height;
    size_t stride;        /* bytes from one row to the next */
    uint32_t pixel_bytes; /* 1..4 */
    uint32_t channels;    /* 1 or 3 */
} kvc_pixels_t;

/* Fills spec with the defaults: 224x224 rgb nhwc float32 stretch, identity
 * normalisation. */
void kvc_preprocess_init(kvc_preprocess_t *spec);

/*
 * Parses the text form above into *spec. On failure returns KVC_EPARSE (or
 * KVC_ERANGE for an over-long text), leaves *spec untouched and puts one line
 * starting "preprocess: " in err (if not NULL).
 */
int kvc_preprocess_parse(const char *text, kvc_preprocess_t *spec, kvc_err_t *err);

/*
 * Writes the canonical text form of spec into buf (always NUL-terminated);
 * parsing it gives back an identical spec. KVC_ERANGE if buf is too small
 * (KVC_PREPROCESS_MAX_TEXT bytes are always enough).
 */
int kvc_preprocess_format(const kvc_preprocess_t *spec, char *buf, size_t size);

/* Checks a spec built in code rather than parsed; same messages as parse. */
int kvc_preprocess_check(const kvc_preprocess_t *spec, kvc_err_t *err);

/* Bytes of the output tensor: width * height * channels * element size. */
size_t kvc_preprocess_tensor_bytes(const kvc_preprocess_t *spec);

/* The batch-of-1 tensor shape: {1,H,W,C} for nhwc, {1,C,H,W} for nchw. */
void kvc_preprocess_shape(const kvc_preprocess_t *spec, int64_t shape[4]);

/*
 * The source region the resize reads from an image of src_w x src_h: the
 * whole image for stretch; for crop, the largest centred region with the
 * target's aspect ratio (sides rounded to the nearest pixel, at least 1).
 */
void kvc_preprocess_region(const kvc_preprocess_t *spec, uint32_t src_w, uint32_t src_h,
                           uint32_t *x0, uint32_t *y0, uint32_t *w, uint32_t *h);

/*
 * Resizes and normalises src into out, which must hold out_len >=
 * kvc_preprocess_tensor_bytes(spec) bytes (floats little-endian). src must
 * have spec->channels channels. Returns 0, KVC_EINVAL (bad arguments, with a
 * message in err) or KVC_ENOMEM.
 */
int kvc_preprocess_run(const kvc_preprocess_t *spec, const kvc_pixels_t *src, uint8_t *out,
                       size_t out_len, kvc_err_t *err);

#endif
