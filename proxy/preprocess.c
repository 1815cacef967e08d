/*
 * preprocess.c - parses a model's preprocessing spec and runs the fused
 * resize + normalise pass from 8-bit pixels into the input tensor.
 *
 * The pass reads each source pixel it needs straight from the decoder's
 * buffer and writes each tensor element once; there is no intermediate float
 * image. Sampling is bilinear with half-pixel centres (TensorFlow's
 * resize_bilinear with half_pixel_centers=True), so a model trained on TF's
 * preprocessing sees the same numbers. It must never read outside the
 * source rows it was given nor write past out_len.
 */
#include "preprocess.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One output column's two source columns (byte offsets) and weight. */
typedef struct {
    size_t off0;
    size_t off1;
    float frac;
} s_tap_t;

/* Fills spec with the defaults documented in the header. */
void kvc_preprocess_init(kvc_preprocess_t *spec)
{
    memset(spec, 0, sizeof *spec);
    spec->width = 224;
    spec->height = 224;
    spec->channels = 3;
    spec->order = KVC_COLOR_RGB;
    spec->layout = KVC_LAYOUT_NHWC;
    spec->dtype = KVC_PP_FLOAT32;
    spec->resize = KVC_RESIZE_STRETCH;
    spec->scale = 1.0f;
    for (int c = 0; c < 3; c++) {
        spec->mean[c] = 0.0f;
        spec->std[c] = 1.0f;
    }
}

/* Checks a spec's ranges; the first problem goes into err. */
int kvc_preprocess_check(const kvc_preprocess_t *spec, kvc_err_t *err)
{
    if (spec->width < 1 || spec->width > KVC_PREPROCESS_MAX_SIDE || spec->height < 1 ||
        spec->height > KVC_PREPROCESS_MAX_SIDE)
        return kvc_err_set(err, KVC_EINVAL, "preprocess: size %ux%u is out of range (each 1..%d)",
                           spec->width, spec->height, KVC_PREPROCESS_MAX_SIDE);
    if (spec->channels != 1 && spec->channels != 3)
        return kvc_err_set(err, KVC_EINVAL, "preprocess: channels must be 1 or 3 (got %u)",
                           spec->channels);
    if ((spec->order != KVC_COLOR_RGB && spec->order != KVC_COLOR_BGR) ||
        (spec->layout != KVC_LAYOUT_NHWC && spec->layout != KVC_LAYOUT_NCHW) ||
        (spec->dtype != KVC_PP_FLOAT32 && spec->dtype != KVC_PP_UINT8) ||
        (spec->resize != KVC_RESIZE_STRETCH && spec->resize != KVC_RESIZE_CROP))
        return kvc_err_set(err, KVC_EINVAL, "preprocess: unknown order, layout, dtype or resize");
    if (!isfinite(spec->scale) || spec->scale <= 0.0f)
        return kvc_err_set(err, KVC_EINVAL, "preprocess: scale must be a positive number");
    for (uint32_t c = 0; c < spec->channels; c++) {
        if (!isfinite(spec->mean[c]))
            return kvc_err_set(err, KVC_EINVAL, "preprocess: mean[%u] must be a finite number", c);
        if (!isfinite(spec->std[c]) || spec->std[c] <= 0.0f)
            return kvc_err_set(err, KVC_EINVAL, "preprocess: std[%u] must be a positive number", c);
    }
    if (spec->dtype == KVC_PP_UINT8) {
        int identity = spec->scale == 1.0f;
        for (uint32_t c = 0; c < spec->channels; c++)
            identity = identity && spec->mean[c] == 0.0f && spec->std[c] == 1.0f;
        if (!identity)
            return kvc_err_set(err, KVC_EINVAL,
                               "preprocess: uint8 output takes raw pixels; scale, mean and std "
                               "need float32");
    }
    return 0;
}

/* Parses a whole float ("0.5", "1e-3"); 0 on success. */
static int s_parse_float(const char *s, float *out)
{
    char *end = NULL;
    if (*s == '\0' || isspace((unsigned char)*s) || *s == '+')
        return -1;
    float v = strtof(s, &end);
    if (end == s || *end != '\0' || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

/* Parses "S" or "N/D" into a positive finite float; 0 on success. */
static int s_parse_scale(char *s, float *out)
{
    char *slash = strchr(s, '/');
    float v;
    if (slash) {
        float num, den;
        *slash = '\0';
        int rc = s_parse_float(s, &num) || s_parse_float(slash + 1, &den);
        *slash = '/';
        if (rc || den == 0.0f)
            return -1;
        v = (float)((double)num / (double)den);
    } else if (s_parse_float(s, &v)) {
        return -1;
    }
    if (!isfinite(v) || v <= 0.0f)
        return -1;
    *out = v;
    return 0;
}

/* Parses "a" or "a,b,c" into vals; returns the count (1 or 3) or -1. */
static int s_parse_list(char *s, float vals[3])
{
    int n = 0;
    char *p = s;
    for (;;) {
        char *comma = strchr(p, ',');
        if (n == 3)
            return -1;
        if (comma)
            *comma = '\0';
        int rc = s_parse_float(p, &vals[n]);
        if (comma)
            *comma = ',';
        if (rc)
            return -1;
        n++;
        if (!comma)
            break;
        p = comma + 1;
    }
    return n == 1 || n == 3 ? n : -1;
}

/* Parses "WxH" with each side in 1..KVC_PREPROCESS_MAX_SIDE; 0 on success. */
static int s_parse_size(char *s, uint32_t *w, uint32_t *h)
{
    char *x = strchr(s, 'x');
    if (!x)
        return -1;
    int64_t wv, hv;
    *x = '\0';
    int rc = kvc_parse_i64(s, 1, KVC_PREPROCESS_MAX_SIDE, &wv) ||
             kvc_parse_i64(x + 1, 1, KVC_PREPROCESS_MAX_SIDE, &hv);
    *x = 'x';
    if (rc || !isdigit((unsigned char)s[0]) || !isdigit((unsigned char)x[1]))
        return -1;
    *w = (uint32_t)wv;
    *h = (uint32_t)hv;
    return 0;
}

enum { S_SIZE, S_COLOR, S_LAYOUT, S_DTYPE, S_RESIZE, S_SCALE, S_MEAN, S_STD, S_COUNT };
static const char *s_what[S_COUNT] = {"size",   "color", "layout", "dtype",
                                      "resize", "scale", "mean",   "std"};

/* Parses the text form documented in the header. */
int kvc_preprocess_parse(const char *text, kvc_preprocess_t *spec, kvc_err_t *err)
{
    char copy[KVC_PREPROCESS_MAX_TEXT + 1];
    size_t len = strnlen(text, sizeof copy);
    if (len > KVC_PREPROCESS_MAX_TEXT)
        return kvc_err_set(err, KVC_ERANGE, "preprocess: spec longer than %d bytes",
                           KVC_PREPROCESS_MAX_TEXT);
    memcpy(copy, text, len);
    copy[len] = '\0';

    kvc_preprocess_t s;
    kvc_preprocess_init(&s);
    int seen[S_COUNT] = {0};
    float mean[3], stdv[3];
    int n_mean = 0, n_std = 0, words = 0;
    char *p = copy;
    for (;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '\0')
            break;
        char *word = p;
        while (*p != '\0' && *p != ' ' && *p != '\t')
            p++;
        if (*p != '\0')
            *p++ = '\0';
        words++;

        int what;
        char *value = strchr(word, '=');
        if (value)
            value++;
        if (strcmp(word, "rgb") == 0 || strcmp(word, "bgr") == 0 || strcmp(word, "gray") == 0)
            what = S_COLOR;
        else if (strcmp(word, "nhwc") == 0 || strcmp(word, "nchw") == 0)
            what = S_LAYOUT;
        else if (strcmp(word, "float32") == 0 || strcmp(word, "uint8") == 0)
            what = S_DTYPE;
        else if (strcmp(word, "stretch") == 0 || strcmp(word, "crop") == 0)
            what = S_RESIZE;
        else if (strncmp(word, "scale=", 6) == 0)
            what = S_SCALE;
        else if (strncmp(word, "mean=", 5) == 0)
            what = S_MEAN;
        else if (strncmp(word, "std=", 4) == 0)
            what = S_STD;
        else if (word[0] >= '0' && word[0] <= '9' && !value)
            what = S_SIZE;
        else
            return kvc_err_set(err, KVC_EPARSE, "preprocess: unknown word '%s'", word);
        if (seen[what]++)
            return kvc_err_set(err, KVC_EPARSE, "preprocess: %s given twice", s_what[what]);

        switch (what) {
        case S_SIZE:
            if (s_parse_size(word, &s.width, &s.height))
                return kvc_err_set(err, KVC_EPARSE,
                                   "preprocess: bad size '%s' (want WIDTHxHEIGHT, each 1..%d)",
                                   word, KVC_PREPROCESS_MAX_SIDE);
            break;
        case S_COLOR:
            s.channels = word[0] == 'g' ? 1 : 3;
            s.order = word[0] == 'b' ? KVC_COLOR_BGR : KVC_COLOR_RGB;
            break;
        case S_LAYOUT:
            s.layout = word[1] == 'h' ? KVC_LAYOUT_NHWC : KVC_LAYOUT_NCHW;
            break;
        case S_DTYPE:
            s.dtype = word[0] == 'u' ? KVC_PP_UINT8 : KVC_PP_FLOAT32;
            break;
        case S_RESIZE:
            s.resize = word[0] == 'c' ? KVC_RESIZE_CROP : KVC_RESIZE_STRETCH;
            break;
        case S_SCALE:
            if (s_parse_scale(value, &s.scale))
                return kvc_err_set(err, KVC_EPARSE,
                                   "preprocess: bad scale '%s' (want a positive number or a "
                                   "fraction like 1/255)",
                                   value);
            break;
        case S_MEAN:
            n_mean = s_parse_list(value, mean);
            if (n_mean < 0)
                return kvc_err_set(err, KVC_EPARSE,
                                   "preprocess: bad mean '%s' (want 1 or 3 numbers separated by "
                                   "commas)",
                                   value);
            break;
        default: /* S_STD */
            n_std = s_parse_list(value, stdv);
            if (n_std < 0 || stdv[0] <= 0.0f ||
                (n_std == 3 && (stdv[1] <= 0.0f || stdv[2] <= 0.0f)))
                return kvc_err_set(err, KVC_EPARSE,
                                   "preprocess: bad std '%s' (want 1 or 3 positive numbers "
                                   "separated by commas)",
                                   value);
            break;
        }
    }
    if (words == 0)
        return kvc_err_set(err, KVC_EPARSE, "preprocess: empty spec");
    if (!seen[S_SIZE])
        return kvc_err_set(err, KVC_EPARSE, "preprocess: missing size (e.g. 224x224)");
    if (n_mean == 3 && s.channels == 1)
        return kvc_err_set(err, KVC_EPARSE, "preprocess: mean has 3 values but gray has 1 channel");
    if (n_std == 3 && s.channels == 1)
        return kvc_err_set(err, KVC_EPARSE, "preprocess: std has 3 values but gray has 1 channel");
    for (int c = 0; c < 3; c++) {
        if (n_mean)
            s.mean[c] = n_mean == 3 ? mean[c] : mean[0];
        if (n_std)
            s.std[c] = n_std == 3 ? stdv[c] : stdv[0];
    }
    int rc = kvc_preprocess_check(&s, err);
    if (rc)
        return err ? (err->code = KVC_EPARSE) : KVC_EPARSE;
    *spec = s;
    return 0;
}

/* Writes the shortest decimal that strtof reads back as exactly v. */
static void s_shortest(float v, char *buf, size_t size)
{
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, size, "%.*g", prec, (double)v);
        if (strtof(buf, NULL) == v)
            return;
    }
}

/* Writes the canonical text form of spec. */
int kvc_preprocess_format(const kvc_preprocess_t *spec, char *buf, size_t size)
{
    if (size == 0)
        return KVC_ERANGE;
    const char *color = spec->channels == 1 ? "gray" : spec->order == KVC_COLOR_BGR ? "bgr" : "rgb";
    int n = snprintf(buf, size, "%ux%u %s %s %s %s", spec->width, spec->height, color,
                     spec->layout == KVC_LAYOUT_NCHW ? "nchw" : "nhwc",
                     spec->dtype == KVC_PP_UINT8 ? "uint8" : "float32",
                     spec->resize == KVC_RESIZE_CROP ? "crop" : "stretch");
    if (n < 0 || (size_t)n >= size)
        return KVC_ERANGE;
    if (spec->dtype == KVC_PP_UINT8)
        return 0;
    size_t used = (size_t)n;
    char v[7][24];
    s_shortest(spec->scale, v[0], sizeof v[0]);
    for (int c = 0; c < 3; c++) {
        s_shortest(spec->mean[c], v[1 + c], sizeof v[0]);
        s_shortest(spec->std[c], v[4 + c], sizeof v[0]);
    }
    if (spec->channels == 1)
        n = snprintf(buf + used, size - used, " scale=%s mean=%s std=%s", v[0], v[1], v[4]);
    else
        n = snprintf(buf + used, size - used, " scale=%s mean=%s,%s,%s std=%s,%s,%s", v[0], v[1],
                     v[2], v[3], v[4], v[5], v[6]);
    if (n < 0 || (size_t)n >= size - used)
        return KVC_ERANGE;
    return 0;
}

/* Bytes of the output tensor. */
size_t kvc_preprocess_tensor_bytes(const kvc_preprocess_t *spec)
{
    size_t elem = spec->dtype == KVC_PP_UINT8 ? 1 : 4;
    return (size_t)spec->width * spec->height * spec->channels * elem;
}

/* The batch-of-1 shape in the spec's layout. */
void kvc_preprocess_shape(const kvc_preprocess_t *spec, int64_t shape[4])
{
    shape[0] = 1;
    if (spec->layout == KVC_LAYOUT_NCHW) {
        shape[1] = spec->channels;
        shape[2] = spec->height;
        shape[3] = spec->width;
    } else {
        shape[1] = spec->height;
        shape[2] = spec->width;
        shape[3] = spec->channels;
    }
}

/* The source region read for an image of src_w x src_h. */
void kvc_preprocess_region(const kvc_preprocess_t *spec, uint32_t src_w, uint32_t src_h,
                           uint32_t *x0, uint32_t *y0, uint32_t *w, uint32_t *h)
{
    *x0 = 0;
    *y0 = 0;
    *w = src_w;
    *h = src_h;
    if (spec->resize != KVC_RESIZE_CROP || src_w == 0 || src_h == 0)
        return;
    /* Compare aspect ratios exactly in integers: src_w/src_h vs W/H. */
    uint64_t lhs = (uint64_t)src_w * spec->height;
    uint64_t rhs = (uint64_t)src_h * spec->width;
    if (lhs > rhs) { /* source is wider: keep the height, narrow the width */
        uint64_t cw = (rhs + spec->height / 2) / spec->height;
        *w = cw < 1 ? 1 : (uint32_t)cw;
        *x0 = (src_w - *w) / 2;
    } else if (lhs < rhs) { /* source is taller */
        uint64_t ch = (lhs + spec->width / 2) / spec->width;
        *h = ch < 1 ? 1 : (uint32_t)ch;
        *y0 = (src_h - *h) / 2;
    }
}

/* Maps output index i to two source indices and a weight, TF-style. */
static void s_taps(uint32_t i, double scale, uint32_t size, uint32_t *i0, uint32_t *i1, float *frac)
{
    double in = ((double)i + 0.5) * scale - 0.5;
    double lo = floor(in);
    *frac = (float)(in - lo);
    int64_t a = (int64_t)lo, b = a + 1, last = (int64_t)size - 1;
    *i0 = (uint32_t)(a < 0 ? 0 : a > last ? last : a);
    *i1 = (uint32_t)(b < 0 ? 0 : b > last ? last : b);
}

/* Stores a float little-endian whatever the host order. */
static inline void s_put_f32(uint8_t *p, float v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    p[0] = (uint8_t)u;
    p[1] = (uint8_t)(u >> 8);
    p[2] = (uint8_t)(u >> 16);
    p[3] = (uint8_t)(u >> 24);
}

/* Resizes and normalises src into out in one pass. */
int kvc_preprocess_run(const kvc_preprocess_t *spec, const kvc_pixels_t *src, uint8_t *out,
                       size_t out_len, kvc_err_t *err)
{
    int rc = kvc_preprocess_check(spec, err);
    if (rc)
        return rc;
    if (!src || !src->data || !out || src->width == 0 || src->height == 0 ||
        src->channels != spec->channels || src->pixel_bytes < src->channels ||
        src->pixel_bytes > 4 || src->stride / src->pixel_bytes < src->width)
        return kvc_err_set(err, KVC_EINVAL, "preprocess: bad source pixels");
    if (out_len < kvc_preprocess_tensor_bytes(spec))
        return kvc_err_set(err, KVC_EINVAL, "preprocess: output buffer too small");

    const uint32_t W = spec->width, H = spec->height, C = spec->channels;
    uint32_t rx, ry, rw, rh;
    kvc_preprocess_region(spec, src->width, src->height, &rx, &ry, &rw, &rh);

    s_tap_t *taps = kvc_malloc((size_t)W * sizeof *taps);
    if (!taps)
        return kvc_err_set(err, KVC_ENOMEM, "preprocess: out of memory");
    double sx = (double)rw / W, sy = (double)rh / H;
    for (uint32_t x = 0; x < W; x++) {
        uint32_t i0, i1;
        s_taps(x, sx, rw, &i0, &i1, &taps[x].frac);
        taps[x].off0 = (size_t)(rx + i0) * src->pixel_bytes;
        taps[x].off1 = (size_t)(rx + i1) * src->pixel_bytes;
    }

    /* Output element (y, x, c) lives at row_base(y) + x * xstep + c * cstep. */
    const size_t plane = (size_t)W * H;
    const size_t xstep = spec->layout == KVC_LAYOUT_NHWC ? C : 1;
    const size_t cstep = spec->layout == KVC_LAYOUT_NHWC ? 1 : plane;
    const size_t ystep = spec->layout == KVC_LAYOUT_NHWC ? (size_t)W * C : W;
    uint32_t srcc[3] = {0, 1, 2};
    float mul[3], add[3];
    for (uint32_t c = 0; c < C; c++) {
        if (C == 3 && spec->order == KVC_COLOR_BGR)
            srcc[c] = 2 - c;
        mul[c] = spec->scale / spec->std[c];
        add[c] = -spec->mean[c] / spec->std[c];
    }
    const int as_u8 = spec->dtype == KVC_PP_UINT8;

    for (uint32_t y = 0; y < H; y++) {
        uint32_t j0, j1;
        float fy;
        s_taps(y, sy, rh, &j0, &j1, &fy);
        const uint8_t *r0 = src->data + (size_t)(ry + j0) * src->stride;
        const uint8_t *r1 = src->data + (size_t)(ry + j1) * src->stride;
        size_t base = (size_t)y * ystep;
        for (uint32_t x = 0; x < W; x++) {
            const s_tap_t *t = &taps[x];
            size_t idx = base + (size_t)x * xstep;
            for (uint32_t c = 0; c < C; c++, idx += cstep) {
                uint32_t k = srcc[c];
                float p00 = r0[t->off0 + k], p01 = r0[t->off1 + k];
                float p10 = r1[t->off0 + k], p11 = r1[t->off1 + k];
                float top = p00 + (p01 - p00) * t->frac;
                float bot = p10 + (p11 - p10) * t->frac;
                float v = top + (bot - top) * fy;
                if (as_u8) {
                    v = v < 0.0f ? 0.0f : v > 255.0f ? 255.0f : v;
                    out[idx] = (uint8_t)(v + 0.5f);
                } else {
                    s_put_f32(out + idx * 4, v * mul[c] + add[c]);
                }
            }
        }
    }
    kvc_free(taps);
    return 0;
}
