/*
 * Unit tests of proxy/preprocess.c and proxy/image.c: the spec's text form
 * and its exact error messages, the fused resize + normalise pass against an
 * independent bilinear formula, and the JPEG/PNG decode path with images
 * encoded here (tjCompress2, libpng's simplified write API, and a
 * hand-built PNG writer for headers libpng would refuse to write).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <cmocka.h>

#include <png.h>
#include <turbojpeg.h>

#include "base.h"
#include "image.h"
#include "preprocess.h"

/* ---- helpers ------------------------------------------------------------ */

/* Parses a spec that the test knows is valid. */
static kvc_preprocess_t s_spec(const char *text)
{
    kvc_preprocess_t spec;
    kvc_err_t err = {0};
    int rc = kvc_preprocess_parse(text, &spec, &err);
    if (rc)
        fail_msg("spec '%s': %s", text, err.msg);
    return spec;
}

/* Reads a little-endian float32 element i from a tensor. */
static float s_f32(const uint8_t *t, size_t i)
{
    const uint8_t *p = t + i * 4;
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Encodes 8-bit pixels as PNG with libpng's simplified write API; the
 * result is malloc'd. */
static uint8_t *s_png_encode(const uint8_t *pix, uint32_t w, uint32_t h, png_uint_32 format,
                             size_t *len)
{
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    img.width = w;
    img.height = h;
    img.format = format;
    size_t size = 0;
    assert_true(png_image_write_get_memory_size(img, size, 0, pix, 0, NULL));
    uint8_t *mem = malloc(size);
    assert_non_null(mem);
    assert_true(png_image_write_to_memory(&img, mem, &size, 0, pix, 0, NULL));
    *len = size;
    return mem;
}

/* Encodes pixels as a quality-100 JPEG; free with tjFree. */
static uint8_t *s_jpeg_encode(const uint8_t *pix, int w, int h, int pf, int subsamp, size_t *len)
{
    tjhandle tj = tjInitCompress();
    assert_non_null(tj);
    unsigned char *jpeg = NULL;
    unsigned long size = 0;
    int rc = tjCompress2(tj, pix, w, 0, h, pf, &jpeg, &size, subsamp, 100, TJFLAG_ACCURATEDCT);
    if (rc)
        fail_msg("tjCompress2: %s", tjGetErrorStr2(tj));
    tjDestroy(tj);
    *len = size;
    return jpeg;
}

/* CRC-32 of PNG chunks, bit by bit (independent of zlib). */
static uint32_t s_crc32(uint32_t crc, const uint8_t *p, size_t n)
{
    crc = ~crc;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1)));
    }
    return ~crc;
}

static void s_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Appends one PNG chunk to buf at *len. */
static void s_chunk(uint8_t *buf, size_t *len, const char *type, const uint8_t *data, uint32_t n)
{
    uint8_t *p = buf + *len;
    s_be32(p, n);
    memcpy(p + 4, type, 4);
    if (n)
        memcpy(p + 8, data, n);
    s_be32(p + 8 + n, s_crc32(0, p + 4, 4 + (size_t)n));
    *len += 12 + (size_t)n;
}

/*
 * Builds a PNG by hand: IHDR, optional PLTE, one IDAT holding raw
 * (filter-0) scanlines in a stored zlib stream, IEND. raw_len <= 65535.
 * Returns a malloc'd buffer.
 */
static uint8_t *s_png_raw(uint32_t w, uint32_t h, uint8_t depth, uint8_t ctype, const uint8_t *plte,
                          uint32_t plte_len, const uint8_t *raw, uint32_t raw_len, size_t *len)
{
    assert_true(raw_len <= 65535);
    uint8_t *buf = malloc(128 + plte_len + raw_len);
    assert_non_null(buf);
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    memcpy(buf, sig, 8);
    *len = 8;
    uint8_t ihdr[13];
    s_be32(ihdr, w);
    s_be32(ihdr + 4, h);
    ihdr[8] = depth;
    ihdr[9] = ctype;
    ihdr[10] = ihdr[11] = ihdr[12] = 0;
    s_chunk(buf, len, "IHDR", ihdr, 13);
    if (plte)
        s_chunk(buf, len, "PLTE", plte, plte_len);
    uint8_t *z = malloc(11 + raw_len);
    assert_non_null(z);
    z[0] = 0x78;
    z[1] = 0x01;
    z[2] = 0x01; /* final stored block */
    z[3] = (uint8_t)raw_len;
    z[4] = (uint8_t)(raw_len >> 8);
    z[5] = (uint8_t)~raw_len;
    z[6] = (uint8_t)(~raw_len >> 8);
    memcpy(z + 7, raw, raw_len);
    uint32_t a = 1, b = 0;
    for (uint32_t i = 0; i < raw_len; i++) {
        a = (a + raw[i]) % 65521;
        b = (b + a) % 65521;
    }
    s_be32(z + 7 + raw_len, b << 16 | a);
    s_chunk(buf, len, "IDAT", z, 11 + raw_len);
    free(z);
    s_chunk(buf, len, "IEND", NULL, 0);
    return buf;
}

/* Runs kvc_image_to_tensor expecting success; checks size and shape. */
static uint8_t *s_decode(const uint8_t *data, size_t len, const char *ct,
                         const kvc_preprocess_t *spec)
{
    uint8_t *out = NULL;
    size_t out_len = 0;
    int64_t shape[4] = {0};
    kvc_err_t err = {0};
    int rc = kvc_image_to_tensor(data, len, ct, spec, NULL, &out, &out_len, shape, &err);
    if (rc)
        fail_msg("decode: %s", err.msg);
    assert_non_null(out);
    assert_int_equal(out_len, kvc_preprocess_tensor_bytes(spec));
    int64_t want[4];
    kvc_preprocess_shape(spec, want);
    assert_memory_equal(shape, want, sizeof want);
    return out;
}

/* Runs kvc_image_to_tensor expecting failure with exactly code and msg. */
static void s_reject(const uint8_t *data, size_t len, const char *ct, const kvc_preprocess_t *spec,
                     const kvc_image_limits_t *limits, int code, const char *msg)
{
    uint8_t *out = (uint8_t *)1;
    size_t out_len = 0;
    int64_t shape[4];
    kvc_err_t err = {0};
    int rc = kvc_image_to_tensor(data, len, ct, spec, limits, &out, &out_len, shape, &err);
    assert_int_equal(rc, code);
    assert_int_equal(err.code, code);
    assert_null(out);
    if (msg)
        assert_string_equal(err.msg, msg);
}

/*
 * Independent reference for one bilinear sample with half-pixel centres:
 * clamp the source coordinate into the image, then blend the two
 * neighbours (rather than clamping indices as the code under test does).
 */
static double s_ref_axis(double out_i, double scale, int size, int *i0, int *i1)
{
    double u = (out_i + 0.5) * scale - 0.5;
    if (u < 0)
        u = 0;
    if (u > size - 1)
        u = size - 1;
    *i0 = (int)u;
    *i1 = *i0 + 1 < size ? *i0 + 1 : *i0;
    return u - *i0;
}

static double s_ref_bilinear(const uint8_t *pix, int w, int h, int C, int c, int ow, int oh, int x,
                             int y)
{
    int x0, x1, y0, y1;
    double fx = s_ref_axis(x, (double)w / ow, w, &x0, &x1);
    double fy = s_ref_axis(y, (double)h / oh, h, &y0, &y1);
    double p00 = pix[(y0 * w + x0) * C + c], p01 = pix[(y0 * w + x1) * C + c];
    double p10 = pix[(y1 * w + x0) * C + c], p11 = pix[(y1 * w + x1) * C + c];
    return (1 - fy) * ((1 - fx) * p00 + fx * p01) + fy * ((1 - fx) * p10 + fx * p11);
}

/* A 3x2 RGB image with every sample different. */
static const uint8_t s_rgb3x2[2 * 3 * 3] = {
    0,  1,   2,   10, 20,  30,  255, 128, 7,  /* row 0 */
    99, 200, 254, 3,  250, 100, 64,  32,  16, /* row 1 */
};

/* ---- spec text ---------------------------------------------------------- */

static void test_spec_parse_full(void **state)
{
    kvc_preprocess_t s = s_spec("224x160 bgr nchw float32 crop scale=1/255 "
                                "mean=0.485,0.456,0.406 std=0.229,0.224,0.225");
    assert_int_equal(s.width, 224);
    assert_int_equal(s.height, 160);
    assert_int_equal(s.channels, 3);
    assert_int_equal(s.order, KVC_COLOR_BGR);
    assert_int_equal(s.layout, KVC_LAYOUT_NCHW);
    assert_int_equal(s.dtype, KVC_PP_FLOAT32);
    assert_int_equal(s.resize, KVC_RESIZE_CROP);
    assert_true(s.scale == (float)(1.0 / 255.0));
    assert_true(s.mean[0] == 0.485f && s.mean[1] == 0.456f && s.mean[2] == 0.406f);
    assert_true(s.std[0] == 0.229f && s.std[1] == 0.224f && s.std[2] == 0.225f);

    /* Defaults, words in any order, tabs, one value broadcast. */
    s = s_spec("\tmean=127.5 std=127.5  64x32\t");
    assert_int_equal(s.width, 64);
    assert_int_equal(s.height, 32);
    assert_int_equal(s.channels, 3);
    assert_int_equal(s.order, KVC_COLOR_RGB);
    assert_int_equal(s.layout, KVC_LAYOUT_NHWC);
    assert_int_equal(s.dtype, KVC_PP_FLOAT32);
    assert_int_equal(s.resize, KVC_RESIZE_STRETCH);
    assert_true(s.scale == 1.0f);
    for (int c = 0; c < 3; c++)
        assert_true(s.mean[c] == 127.5f && s.std[c] == 127.5f);

    s = s_spec("1x4096 gray uint8 stretch");
    assert_int_equal(s.channels, 1);
    assert_int_equal(s.dtype, KVC_PP_UINT8);
    assert_int_equal(kvc_preprocess_tensor_bytes(&s), 4096);
    int64_t shape[4];
    kvc_preprocess_shape(&s, shape);
    assert_true(shape[0] == 1 && shape[1] == 4096 && shape[2] == 1 && shape[3] == 1);
    s = s_spec("5x7 nchw gray scale=2");
    kvc_preprocess_shape(&s, shape);
    assert_true(shape[0] == 1 && shape[1] == 1 && shape[2] == 7 && shape[3] == 5);
    assert_int_equal(kvc_preprocess_tensor_bytes(&s), 5 * 7 * 4);
}

static void test_spec_format_round_trip(void **state)
{
    const char *texts[] = {
        ("224x224 rgb nhwc float32 stretch scale=0.003921569 mean=0.485,0.456,0.406 "
         "std=0.229,0.224,0.225"),
        "299x299 bgr nchw float32 crop scale=1 mean=103.939,116.779,123.68 std=1,1,1",
        "28x28 gray nhwc float32 stretch scale=0.003921569 mean=0.1307 std=0.3081",
        "8x8 rgb nhwc float32 stretch scale=1.0000001 mean=-0,0,2.5 std=1e-30,3.4028235e+38,1",
        "640x640 rgb nchw uint8 crop",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        kvc_preprocess_t a = s_spec(texts[i]), b;
        char buf[KVC_PREPROCESS_MAX_TEXT];
        assert_int_equal(kvc_preprocess_format(&a, buf, sizeof buf), 0);
        assert_string_equal(buf, texts[i]);
        b = s_spec(buf);
        assert_memory_equal(&a, &b, sizeof a);
    }
    kvc_preprocess_t a = s_spec("224x224 scale=1/255");
    char small[20];
    assert_int_equal(kvc_preprocess_format(&a, small, sizeof small), KVC_ERANGE);
    assert_int_equal(strlen(small), sizeof small - 1);
}

static void test_spec_parse_errors(void **state)
{
    static const struct {
        const char *text;
        const char *msg;
    } cases[] = {
        {"", "preprocess: empty spec"},
        {"   \t ", "preprocess: empty spec"},
        {"rgb nhwc", "preprocess: missing size (e.g. 224x224)"},
        {"224", "preprocess: bad size '224' (want WIDTHxHEIGHT, each 1..4096)"},
        {"0x224", "preprocess: bad size '0x224' (want WIDTHxHEIGHT, each 1..4096)"},
        {"4097x1", "preprocess: bad size '4097x1' (want WIDTHxHEIGHT, each 1..4096)"},
        {"224x224x3", "preprocess: bad size '224x224x3' (want WIDTHxHEIGHT, each 1..4096)"},
        {"2x+2", "preprocess: bad size '2x+2' (want WIDTHxHEIGHT, each 1..4096)"},
        {"224X224", "preprocess: bad size '224X224' (want WIDTHxHEIGHT, each 1..4096)"},
        {"224x224 RGB", "preprocess: unknown word 'RGB'"},
        {"224x224 resize=crop", "preprocess: unknown word 'resize=crop'"},
        {"224x224 rgb bgr", "preprocess: color given twice"},
        {"224x224 gray rgb", "preprocess: color given twice"},
        {"224x224 nhwc nchw", "preprocess: layout given twice"},
        {"1x1 2x2", "preprocess: size given twice"},
        {"1x1 uint8 float32", "preprocess: dtype given twice"},
        {"1x1 crop crop", "preprocess: resize given twice"},
        {"1x1 scale=1 scale=2", "preprocess: scale given twice"},
        {"1x1 scale=1/0",
         "preprocess: bad scale '1/0' (want a positive number or a fraction like 1/255)"},
        {"1x1 scale=-1",
         "preprocess: bad scale '-1' (want a positive number or a fraction like 1/255)"},
        {"1x1 scale=",
         "preprocess: bad scale '' (want a positive number or a fraction like 1/255)"},
        {"1x1 scale=nan",
         "preprocess: bad scale 'nan' (want a positive number or a fraction like 1/255)"},
        {"1x1 scale=1/255x",
         "preprocess: bad scale '1/255x' (want a positive number or a fraction like 1/255)"},
        {"1x1 mean=1,2", "preprocess: bad mean '1,2' (want 1 or 3 numbers separated by commas)"},
        {"1x1 mean=1,2,3,4",
         "preprocess: bad mean '1,2,3,4' (want 1 or 3 numbers separated by commas)"},
        {"1x1 mean=1,,3", "preprocess: bad mean '1,,3' (want 1 or 3 numbers separated by commas)"},
        {"1x1 mean=inf", "preprocess: bad mean 'inf' (want 1 or 3 numbers separated by commas)"},
        {"1x1 std=0", "preprocess: bad std '0' (want 1 or 3 positive numbers separated by commas)"},
        {"1x1 std=1,-1,1",
         "preprocess: bad std '1,-1,1' (want 1 or 3 positive numbers separated by commas)"},
        {"1x1 gray mean=1,2,3", "preprocess: mean has 3 values but gray has 1 channel"},
        {"1x1 std=1,2,3 gray", "preprocess: std has 3 values but gray has 1 channel"},
        {"1x1 uint8 scale=1/255",
         "preprocess: uint8 output takes raw pixels; scale, mean and std need float32"},
        {"1x1 uint8 mean=0.5",
         "preprocess: uint8 output takes raw pixels; scale, mean and std need float32"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kvc_preprocess_t spec;
        kvc_preprocess_init(&spec);
        spec.width = 77;
        kvc_err_t err = {0};
        int rc = kvc_preprocess_parse(cases[i].text, &spec, &err);
        if (rc != KVC_EPARSE || strcmp(err.msg, cases[i].msg) != 0)
            fail_msg("'%s': rc %d, got '%s', want '%s'", cases[i].text, rc, err.msg, cases[i].msg);
        assert_int_equal(err.code, KVC_EPARSE);
        assert_int_equal(spec.width, 77); /* untouched on failure */
    }
    /* Identity normalisation spelled out is fine with uint8. */
    s_spec("1x1 uint8 scale=1 mean=0 std=1");

    char big[KVC_PREPROCESS_MAX_TEXT + 2];
    memset(big, ' ', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    memcpy(big, "2x2", 3);
    kvc_preprocess_t spec;
    kvc_err_t err = {0};
    assert_int_equal(kvc_preprocess_parse(big, &spec, &err), KVC_ERANGE);
    assert_string_equal(err.msg, "preprocess: spec longer than 512 bytes");
    big[KVC_PREPROCESS_MAX_TEXT] = '\0';
    assert_int_equal(kvc_preprocess_parse(big, &spec, &err), 0);
    assert_int_equal(spec.width, 2);
}

static void test_spec_check(void **state)
{
    kvc_preprocess_t s;
    kvc_err_t err = {0};
    kvc_preprocess_init(&s);
    assert_int_equal(kvc_preprocess_check(&s, &err), 0);
    s.channels = 2;
    assert_int_equal(kvc_preprocess_check(&s, &err), KVC_EINVAL);
    assert_string_equal(err.msg, "preprocess: channels must be 1 or 3 (got 2)");
    kvc_preprocess_init(&s);
    s.height = 0;
    assert_int_equal(kvc_preprocess_check(&s, &err), KVC_EINVAL);
    assert_string_equal(err.msg, "preprocess: size 224x0 is out of range (each 1..4096)");
    kvc_preprocess_init(&s);
    s.std[2] = 0.0f;
    assert_int_equal(kvc_preprocess_check(&s, &err), KVC_EINVAL);
    assert_string_equal(err.msg, "preprocess: std[2] must be a positive number");
    kvc_preprocess_init(&s);
    s.mean[1] = NAN;
    assert_int_equal(kvc_preprocess_check(&s, &err), KVC_EINVAL);
    assert_string_equal(err.msg, "preprocess: mean[1] must be a finite number");
}

static void test_region(void **state)
{
    uint32_t x0, y0, w, h;
    kvc_preprocess_t s = s_spec("224x224 crop");
    kvc_preprocess_region(&s, 640, 480, &x0, &y0, &w, &h);
    assert_true(x0 == 80 && y0 == 0 && w == 480 && h == 480);
    kvc_preprocess_region(&s, 480, 641, &x0, &y0, &w, &h);
    assert_true(x0 == 0 && y0 == 80 && w == 480 && h == 480);
    s = s_spec("300x100 crop");
    kvc_preprocess_region(&s, 100, 100, &x0, &y0, &w, &h);
    assert_true(x0 == 0 && y0 == 33 && w == 100 && h == 33); /* 33.3 rounds to 33 */
    kvc_preprocess_region(&s, 1, 1000, &x0, &y0, &w, &h);
    assert_true(x0 == 0 && y0 == 499 && w == 1 && h == 1); /* never below 1 */
    s = s_spec("224x224 stretch");
    kvc_preprocess_region(&s, 640, 480, &x0, &y0, &w, &h);
    assert_true(x0 == 0 && y0 == 0 && w == 640 && h == 480);
}

/* ---- the fused pass on raw pixels --------------------------------------- */

static void test_run_checkerboard_upscale(void **state)
{
    /* 2x2 gray checkerboard to 4x4: hand-computed corners and centre. */
    const uint8_t pix[4] = {0, 255, 255, 0};
    kvc_pixels_t px = {pix, 2, 2, 2, 1, 1};
    kvc_preprocess_t s = s_spec("4x4 gray");
    uint8_t out[4 * 4 * 4];
    assert_int_equal(kvc_preprocess_run(&s, &px, out, sizeof out, NULL), 0);
    assert_true(s_f32(out, 0) == 0.0f);            /* (0,0): clamped to pixel (0,0) */
    assert_true(s_f32(out, 3) == 255.0f);          /* (3,0): pixel (1,0) */
    assert_true(s_f32(out, 1 * 4 + 1) == 95.625f); /* in = (0.25, 0.25) */
    assert_true(s_f32(out, 1 * 4 + 2) == 159.375f);
    assert_true(s_f32(out, 0 * 4 + 1) == 63.75f);
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++) {
            double want = s_ref_bilinear(pix, 2, 2, 1, 0, 4, 4, x, y);
            assert_float_equal(s_f32(out, (size_t)y * 4 + x), want, 1e-4);
        }
}

static void test_run_gradient_downscale(void **state)
{
    /* 8x1 ramp 0,10..70 to 3x1: sources at 0.8333, 3.5, 6.1667. */
    const uint8_t pix[8] = {0, 10, 20, 30, 40, 50, 60, 70};
    kvc_pixels_t px = {pix, 8, 1, 8, 1, 1};
    kvc_preprocess_t s = s_spec("3x1 gray");
    uint8_t out[3 * 4];
    assert_int_equal(kvc_preprocess_run(&s, &px, out, sizeof out, NULL), 0);
    assert_float_equal(s_f32(out, 0), 25.0 / 3, 1e-4);
    assert_float_equal(s_f32(out, 1), 35.0, 1e-4);
    assert_float_equal(s_f32(out, 2), 185.0 / 3, 1e-4);

    /* An RGB image with alpha (4-byte pixels, padded stride) to odd sizes,
     * checked element by element against the reference, NHWC and NCHW. */
    enum { W = 7, H = 5, STRIDE = W * 4 + 3 };
    uint8_t rgba[H * STRIDE], rgb[H * W * 3];
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            for (int c = 0; c < 4; c++) {
                uint8_t v = (uint8_t)(x * 37 + y * 11 + c * 90 + (x * y) % 7);
                rgba[y * STRIDE + x * 4 + c] = v;
                if (c < 3)
                    rgb[(y * W + x) * 3 + c] = v;
            }
    kvc_pixels_t px4 = {rgba, W, H, STRIDE, 4, 3};
    const char *specs[] = {"3x4 rgb nhwc scale=0.5 mean=1,2,3 std=2,4,8",
                           "10x9 rgb nchw scale=0.5 mean=1,2,3 std=2,4,8"};
    for (int k = 0; k < 2; k++) {
        s = s_spec(specs[k]);
        size_t n = kvc_preprocess_tensor_bytes(&s);
        uint8_t *t = malloc(n);
        assert_int_equal(kvc_preprocess_run(&s, &px4, t, n, NULL), 0);
        int ow = (int)s.width, oh = (int)s.height;
        for (int y = 0; y < oh; y++)
            for (int x = 0; x < ow; x++)
                for (int c = 0; c < 3; c++) {
                    double p = s_ref_bilinear(rgb, W, H, 3, c, ow, oh, x, y);
                    double want = (p * 0.5 - s.mean[c]) / s.std[c];
                    size_t i = k == 0 ? ((size_t)y * ow + x) * 3 + c
                                      : (size_t)c * ow * oh + (size_t)y * ow + x;
                    assert_float_equal(s_f32(t, i), want, 1e-4);
                }
        free(t);
    }
}

static void test_run_rejects_bad_arguments(void **state)
{
    const uint8_t pix[12] = {0};
    kvc_preprocess_t s = s_spec("2x2 rgb");
    uint8_t out[2 * 2 * 3 * 4];
    kvc_err_t err = {0};
    kvc_pixels_t gray = {pix, 2, 2, 2, 1, 1};
    assert_int_equal(kvc_preprocess_run(&s, &gray, out, sizeof out, &err), KVC_EINVAL);
    assert_string_equal(err.msg, "preprocess: bad source pixels");
    kvc_pixels_t rgb = {pix, 2, 2, 5, 3, 3}; /* stride shorter than a row */
    assert_int_equal(kvc_preprocess_run(&s, &rgb, out, sizeof out, &err), KVC_EINVAL);
    rgb.stride = 6;
    assert_int_equal(kvc_preprocess_run(&s, &rgb, out, sizeof out - 1, &err), KVC_EINVAL);
    assert_string_equal(err.msg, "preprocess: output buffer too small");
    assert_int_equal(kvc_preprocess_run(&s, &rgb, out, sizeof out, &err), 0);
    kvc_alloc_fail_after(0);
    assert_int_equal(kvc_preprocess_run(&s, &rgb, out, sizeof out, &err), KVC_ENOMEM);
    kvc_alloc_fail_after(-1);
}

/* ---- PNG ---------------------------------------------------------------- */

static void test_png_identity_normalised(void **state)
{
    size_t len;
    uint8_t *png = s_png_encode(s_rgb3x2, 3, 2, PNG_FORMAT_RGB, &len);
    kvc_preprocess_t s =
        s_spec("3x2 rgb nhwc float32 scale=1/255 mean=0.485,0.456,0.406 std=0.229,0.224,0.225");
    uint8_t *t = s_decode(png, len, "image/png", &s);
    for (size_t i = 0; i < 18; i++) {
        int c = (int)(i % 3);
        double want = (s_rgb3x2[i] / 255.0 - s.mean[c]) / s.std[c];
        assert_float_equal(s_f32(t, i), want, 2e-6);
    }
    kvc_free(t);

    /* Plain pixel values are exact. */
    s = s_spec("3x2 rgb");
    t = s_decode(png, len, NULL, &s);
    for (size_t i = 0; i < 18; i++)
        assert_true(s_f32(t, i) == (float)s_rgb3x2[i]);
    kvc_free(t);
    free(png);
}

static void test_png_layout_order_dtype(void **state)
{
    size_t len;
    uint8_t *png = s_png_encode(s_rgb3x2, 3, 2, PNG_FORMAT_RGB, &len);
    const int W = 3, H = 2;

    kvc_preprocess_t s = s_spec("3x2 bgr nchw");
    uint8_t *t = s_decode(png, len, "image/png", &s);
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                assert_true(s_f32(t, (size_t)(c * H * W + y * W + x)) ==
                            (float)s_rgb3x2[(y * W + x) * 3 + (2 - c)]);
    kvc_free(t);

    s = s_spec("3x2 rgb nhwc uint8");
    t = s_decode(png, len, "image/png", &s);
    assert_memory_equal(t, s_rgb3x2, sizeof s_rgb3x2);
    kvc_free(t);

    s = s_spec("3x2 bgr nchw uint8");
    t = s_decode(png, len, "image/png", &s);
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < H * W; i++)
            assert_int_equal(t[c * H * W + i], s_rgb3x2[i * 3 + (2 - c)]);
    kvc_free(t);

    /* Per-channel mean/std are in tensor channel order: for bgr, blue first. */
    s = s_spec("3x2 bgr nhwc mean=1,2,3 std=1,2,4");
    t = s_decode(png, len, "image/png", &s);
    for (int i = 0; i < H * W; i++)
        for (int c = 0; c < 3; c++)
            assert_float_equal(s_f32(t, (size_t)i * 3 + c),
                               (s_rgb3x2[i * 3 + (2 - c)] - (c + 1.0)) / (double)(1 << c), 1e-6);
    kvc_free(t);
    free(png);
}

static void test_png_crop(void **state)
{
    /* A 4x2 image cropped to a 2x2 target keeps columns 1 and 2 exactly. */
    uint8_t pix[4 * 2];
    for (int i = 0; i < 8; i++)
        pix[i] = (uint8_t)(i * 30 + 5);
    size_t len;
    uint8_t *png = s_png_encode(pix, 4, 2, PNG_FORMAT_GRAY, &len);
    kvc_preprocess_t s = s_spec("2x2 gray uint8 crop");
    uint8_t *t = s_decode(png, len, "image/png", &s);
    const uint8_t want[4] = {pix[1], pix[2], pix[5], pix[6]};
    assert_memory_equal(t, want, 4);
    kvc_free(t);
    free(png);

    /* A 2x4 image keeps rows 1 and 2; stretch instead squeezes all 4 rows. */
    png = s_png_encode(pix, 2, 4, PNG_FORMAT_GRAY, &len);
    t = s_decode(png, len, "image/png", &s);
    const uint8_t want2[4] = {pix[2], pix[3], pix[4], pix[5]};
    assert_memory_equal(t, want2, 4);
    kvc_free(t);
    s = s_spec("2x2 gray stretch");
    t = s_decode(png, len, "image/png", &s);
    for (int y = 0; y < 2; y++)
        for (int x = 0; x < 2; x++)
            assert_float_equal(s_f32(t, (size_t)y * 2 + x),
                               s_ref_bilinear(pix, 2, 4, 1, 0, 2, 2, x, y), 1e-4);
    kvc_free(t);
    free(png);
}

static void test_png_gray_and_color_conversion(void **state)
{
    /* Gray image to a 3-channel spec: the gray value in every channel. */
    const uint8_t gray[6] = {0, 17, 128, 200, 254, 255};
    size_t len;
    uint8_t *png = s_png_encode(gray, 3, 2, PNG_FORMAT_GRAY, &len);
    kvc_preprocess_t s = s_spec("3x2 rgb uint8");
    uint8_t *t = s_decode(png, len, "image/png", &s);
    for (int i = 0; i < 6; i++)
        for (int c = 0; c < 3; c++)
            assert_int_equal(t[i * 3 + c], gray[i]);
    kvc_free(t);
    free(png);

    /* Colour to a gray spec: neutral colours keep their value, and luma
     * weighs green over red over blue. */
    const uint8_t rgb[3 * 3 * 2] = {50,  50, 50, 128, 128, 128, 230, 230, 230,
                                    255, 0,  0,  0,   255, 0,   0,   0,   255};
    png = s_png_encode(rgb, 3, 2, PNG_FORMAT_RGB, &len);
    s = s_spec("3x2 gray uint8");
    t = s_decode(png, len, "image/png", &s);
    assert_int_equal(t[0], 50);
    assert_int_equal(t[1], 128);
    assert_int_equal(t[2], 230);
    assert_true(t[4] > t[3] && t[3] > t[5]);
    kvc_free(t);
    free(png);
}

static void test_png_alpha_palette_16bit(void **state)
{
    /* RGBA: alpha is dropped, not composited, even where it is 0. */
    const uint8_t rgba[2 * 4] = {10, 20, 30, 0, 200, 100, 50, 128};
    size_t len;
    uint8_t *png = s_png_encode(rgba, 2, 1, PNG_FORMAT_RGBA, &len);
    kvc_preprocess_t s = s_spec("2x1 rgb uint8");
    uint8_t *t = s_decode(png, len, "image/png", &s);
    const uint8_t want[6] = {10, 20, 30, 200, 100, 50};
    assert_memory_equal(t, want, 6);
    kvc_free(t);
    free(png);

    /* Gray + alpha into a gray spec. */
    const uint8_t ga[4] = {77, 0, 99, 255};
    png = s_png_encode(ga, 2, 1, PNG_FORMAT_GA, &len);
    s = s_spec("2x1 gray uint8");
    t = s_decode(png, len, "image/png", &s);
    assert_int_equal(t[0], 77);
    assert_int_equal(t[1], 99);
    kvc_free(t);
    free(png);

    /* Palette (colour type 3, 8-bit indices) expands to its colours. */
    const uint8_t plte[6] = {1, 2, 3, 250, 251, 252};
    const uint8_t idx[2 * 3] = {0, 0, 1, 0, 0, 1}; /* filter byte + 2 indices per row */
    png = s_png_raw(2, 2, 8, 3, plte, sizeof plte, idx, sizeof idx, &len);
    s = s_spec("2x2 rgb uint8");
    t = s_decode(png, len, "image/png", &s);
    const uint8_t want_p[12] = {1, 2, 3, 250, 251, 252, 1, 2, 3, 250, 251, 252};
    assert_memory_equal(t, want_p, 12);
    kvc_free(t);
    free(png);

    /* 16-bit RGB without gamma chunk: samples are taken as sRGB and scaled
     * (libpng's default would take them as linear: 0x8080 would become 188). */
    const uint8_t raw16[1 + 2 * 6] = {0,    0x12, 0x34, 0x80, 0x80, 0xff, 0xff,
                                      0x00, 0x00, 0x7f, 0xff, 0xfe, 0x01};
    png = s_png_raw(2, 1, 16, 2, NULL, 0, raw16, sizeof raw16, &len);
    t = s_decode(png, len, "image/png", &s);
    const uint8_t want16[6] = {0x12, 0x80, 0xff, 0x00, 0x7f, 0xfd}; /* v*255/65535 */
    assert_memory_equal(t, want16, 6);
    kvc_free(t);
    free(png);
}

/* ---- JPEG --------------------------------------------------------------- */

static void test_jpeg_identity_within_tolerance(void **state)
{
    enum { W = 16, H = 12 };
    uint8_t pix[W * H * 3];
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            pix[(y * W + x) * 3 + 0] = (uint8_t)(x * 15);
            pix[(y * W + x) * 3 + 1] = (uint8_t)(y * 20);
            pix[(y * W + x) * 3 + 2] = (uint8_t)(120 + x * 3 - y * 4);
        }
    size_t len;
    uint8_t *jpeg = s_jpeg_encode(pix, W, H, TJPF_RGB, TJSAMP_444, &len);

    kvc_preprocess_t s = s_spec("16x12 rgb uint8");
    uint8_t *t = s_decode(jpeg, len, "image/jpeg", &s);
    for (int i = 0; i < W * H * 3; i++)
        if (abs((int)t[i] - (int)pix[i]) > 3)
            fail_msg("sample %d: got %d want %d", i, t[i], pix[i]);
    kvc_free(t);

    s = s_spec("16x12 bgr nchw scale=1/255 mean=0.5 std=0.5");
    t = s_decode(jpeg, len, "Image/JPEG; q=1", &s);
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < W * H; i++) {
            double want = (pix[i * 3 + (2 - c)] / 255.0 - 0.5) / 0.5;
            assert_float_equal(s_f32(t, (size_t)c * W * H + i), want, 3.5 * 2 / 255.0);
        }
    kvc_free(t);

    /* Colour JPEG to gray: its Y component; gray JPEG to rgb: replicated. */
    s = s_spec("16x12 gray uint8");
    t = s_decode(jpeg, len, "image/jpeg", &s);
    for (int i = 0; i < W * H; i++) {
        double y = 0.299 * pix[i * 3] + 0.587 * pix[i * 3 + 1] + 0.114 * pix[i * 3 + 2];
        assert_true(fabs(t[i] - y) <= 3);
    }
    kvc_free(t);
    tjFree(jpeg);

    uint8_t g[W * H];
    for (int i = 0; i < W * H; i++)
        g[i] = (uint8_t)(i * 255 / (W * H));
    jpeg = s_jpeg_encode(g, W, H, TJPF_GRAY, TJSAMP_GRAY, &len);
    s = s_spec("16x12 rgb uint8");
    t = s_decode(jpeg, len, NULL, &s);
    for (int i = 0; i < W * H; i++) {
        assert_true(abs((int)t[i * 3] - (int)g[i]) <= 3);
        assert_int_equal(t[i * 3], t[i * 3 + 1]);
        assert_int_equal(t[i * 3], t[i * 3 + 2]);
    }
    kvc_free(t);
    tjFree(jpeg);
}

/* The shared decode budget: exact accounting, refusals that say why, and
 * every byte given back whether the decode succeeds or fails. */
static void test_decode_budget(void **state)
{
    (void)state;
    assert_null(kvc_image_budget_new(0));
    kvc_image_budget_t *b = kvc_image_budget_new(100);
    assert_int_equal(kvc_image_budget_take(b, 101), KVC_ERANGE);
    assert_int_equal(kvc_image_budget_take(b, 60), 0);
    assert_int_equal(kvc_image_budget_take(b, 41), KVC_EAGAIN);
    assert_int_equal(kvc_image_budget_take(b, 40), 0);
    assert_int_equal(kvc_image_budget_used(b), 100);
    kvc_image_budget_give(b, 60);
    kvc_image_budget_give(b, 40);
    assert_int_equal(kvc_image_budget_used(b), 0);
    kvc_image_budget_destroy(&b);
    assert_null(b);

    /* A 64x48 PNG into 32x24 float32 RGB: 64*48*3 pixel bytes + 32*24*3*4
     * tensor bytes = 18432 held while decoding. */
    uint8_t *pix = malloc(64 * 48 * 3);
    for (int i = 0; i < 64 * 48 * 3; i++)
        pix[i] = (uint8_t)(i * 7);
    size_t plen;
    uint8_t *png = s_png_encode(pix, 64, 48, PNG_FORMAT_RGB, &plen);
    kvc_preprocess_t s = s_spec("32x24 rgb");
    uint8_t *out = NULL;
    size_t out_len;
    int64_t shape[4];
    kvc_err_t err;
    b = kvc_image_budget_new(18432);
    kvc_image_limits_t lim = {.budget = b};
    assert_int_equal(
        kvc_image_to_tensor(png, plen, "image/png", &s, &lim, &out, &out_len, shape, &err), 0);
    assert_int_equal(kvc_image_budget_used(b), 0);
    kvc_free(out);
    out = NULL;
    /* Others hold part of it: refused for now, and it says so. */
    assert_int_equal(kvc_image_budget_take(b, 1), 0);
    assert_int_equal(
        kvc_image_to_tensor(png, plen, "image/png", &s, &lim, &out, &out_len, shape, &err),
        KVC_EAGAIN);
    assert_null(out);
    assert_string_equal(err.msg, "image: decoding it needs 18432 bytes while other images hold 1 "
                                 "bytes of the 18432 bytes image decoding may use "
                                 "(proxy.image_memory); retry later");
    assert_int_equal(kvc_image_budget_used(b), 1);
    kvc_image_budget_give(b, 1);
    kvc_image_budget_destroy(&b);
    /* One byte short of what it needs: it could never fit. */
    b = kvc_image_budget_new(18431);
    lim.budget = b;
    assert_int_equal(
        kvc_image_to_tensor(png, plen, "image/png", &s, &lim, &out, &out_len, shape, &err),
        KVC_ERANGE);
    assert_string_equal(err.msg, "image: decoding it needs 18432 bytes, more than the 18431 bytes "
                                 "all image decoding may use (proxy.image_memory)");
    assert_int_equal(kvc_image_budget_used(b), 0);
    kvc_image_budget_destroy(&b);
    free(png);

    /* JPEG 64x48 4:4:4 into 32x24 uint8: decoded at 1/2 scale, 2304 pixel
     * bytes + 2304 tensor bytes. A progressive file also holds the whole
     * frame's coefficients: (64+31)&~15 x (48+31)&~15 x 6 = 30720 more. */
    size_t jlen;
    uint8_t *jpg = s_jpeg_encode(pix, 64, 48, TJPF_RGB, TJSAMP_444, &jlen);
    tjhandle tj = tjInitCompress();
    unsigned char *prog = NULL;
    unsigned long prog_len = 0;
    assert_int_equal(tjCompress2(tj, pix, 64, 0, 48, TJPF_RGB, &prog, &prog_len, TJSAMP_444, 90,
                                 TJFLAG_PROGRESSIVE),
                     0);
    tjDestroy(tj);
    s = s_spec("32x24 rgb uint8");
    b = kvc_image_budget_new(4608);
    lim.budget = b;
    assert_int_equal(
        kvc_image_to_tensor(jpg, jlen, "image/jpeg", &s, &lim, &out, &out_len, shape, &err), 0);
    kvc_free(out);
    out = NULL;
    assert_int_equal(
        kvc_image_to_tensor(prog, prog_len, "image/jpeg", &s, &lim, &out, &out_len, shape, &err),
        KVC_ERANGE);
    assert_string_equal(err.msg, "image: decoding it needs 35328 bytes, more than the 4608 bytes "
                                 "all image decoding may use (proxy.image_memory)");
    kvc_image_budget_destroy(&b);
    b = kvc_image_budget_new(35328);
    lim.budget = b;
    assert_int_equal(
        kvc_image_to_tensor(prog, prog_len, "image/jpeg", &s, &lim, &out, &out_len, shape, &err),
        0);
    assert_int_equal(kvc_image_budget_used(b), 0);
    kvc_free(out);
    /* A corrupt body after a valid header gives its bytes back too. */
    out = NULL;
    assert_int_not_equal(
        kvc_image_to_tensor(jpg, jlen / 2, "image/jpeg", &s, &lim, &out, &out_len, shape, &err), 0);
    assert_int_equal(kvc_image_budget_used(b), 0);
    kvc_image_budget_destroy(&b);
    tjFree(prog);
    tjFree(jpg);
    free(pix);
}

static void test_jpeg_reduced_scale_decode(void **state)
{
    /*
     * 256x256 where the first column of every 8-column block is white and
     * the rest black. A 32x32 target lets the decoder use 1/8 DCT scaling,
     * which yields each 8x8 block's mean (255/8 = 31.9); a full decode
     * followed by bilinear sampling at the block centres would give ~0.
     */
    enum { N = 256 };
    uint8_t *g = malloc(N * N);
    for (int y = 0; y < N; y++)
        for (int x = 0; x < N; x++)
            g[y * N + x] = x % 8 == 0 ? 255 : 0;
    size_t len;
    uint8_t *jpeg = s_jpeg_encode(g, N, N, TJPF_GRAY, TJSAMP_GRAY, &len);
    kvc_preprocess_t s = s_spec("32x32 gray");
    uint8_t *t = s_decode(jpeg, len, "image/jpeg", &s);
    for (int i = 0; i < 32 * 32; i++)
        assert_float_equal(s_f32(t, (size_t)i), 255.0 / 8, 2.0);
    kvc_free(t);

    /* 33x33 is not covered by 1/8 (32 px); the output is then not flat. */
    s = s_spec("33x33 gray");
    t = s_decode(jpeg, len, "image/jpeg", &s);
    float lo = 255, hi = 0;
    for (int i = 0; i < 33 * 33; i++) {
        float v = s_f32(t, (size_t)i);
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    assert_true(hi - lo > 20);
    kvc_free(t);
    tjFree(jpeg);
    free(g);
}

/* ---- rejects ------------------------------------------------------------ */

static void test_rejects_bad_bodies(void **state)
{
    kvc_preprocess_t s = s_spec("4x4 rgb");
    s_reject((const uint8_t *)"", 0, "image/png", &s, NULL, KVC_EPARSE, "image: empty body");
    s_reject(NULL, 0, NULL, &s, NULL, KVC_EPARSE, "image: empty body");
    const char *html = "<html><body>hi</body></html>";
    s_reject((const uint8_t *)html, strlen(html), "image/png", &s, NULL, KVC_EPARSE,
             "image: not a JPEG or PNG (starts with 3c 68 74 6d)");
    s_reject((const uint8_t *)"\xff\xd8", 2, NULL, &s, NULL, KVC_EPARSE,
             "image: not a JPEG or PNG (starts with ff d8)");
    s_reject((const uint8_t *)"\x89PNG\r\n\x1a", 7, NULL, &s, NULL, KVC_EPARSE,
             "image: not a JPEG or PNG (starts with 89 50 4e 47)");

    size_t plen, jlen;
    uint8_t *png = s_png_encode(s_rgb3x2, 3, 2, PNG_FORMAT_RGB, &plen);
    uint8_t pix[8 * 8 * 3];
    for (size_t i = 0; i < sizeof pix; i++)
        pix[i] = (uint8_t)(i * 7);
    uint8_t *jpeg = s_jpeg_encode(pix, 8, 8, TJPF_RGB, TJSAMP_444, &jlen);

    /* Content-Type must agree with the magic bytes. */
    s_reject(png, plen, "image/jpeg", &s, NULL, KVC_EINVAL,
             "image: Content-Type image/jpeg does not match the PNG data");
    s_reject(jpeg, jlen, " image/png ;x=y", &s, NULL, KVC_EINVAL,
             "image: Content-Type image/png does not match the JPEG data");
    s_reject(png, plen, "image/gif", &s, NULL, KVC_EINVAL,
             "image: unsupported Content-Type image/gif (want image/jpeg or image/png)");
    s_reject(png, plen, "text/pl\x01in", &s, NULL, KVC_EINVAL,
             "image: unsupported Content-Type text/pl?in (want image/jpeg or image/png)");
    uint8_t *t = s_decode(png, plen, "application/octet-stream", &s);
    kvc_free(t);
    t = s_decode(jpeg, jlen, "", &s);
    kvc_free(t);
    t = s_decode(jpeg, jlen, "image/pjpeg", &s);
    kvc_free(t);

    /* Truncated files. */
    s_reject(png, plen - 20, "image/png", &s, NULL, KVC_EPARSE, NULL);
    s_reject(png, 40, "image/png", &s, NULL, KVC_EPARSE, NULL);
    s_reject(jpeg, jlen - 10, "image/jpeg", &s, NULL, KVC_EPARSE,
             "image: corrupt JPEG data: Premature end of JPEG file");
    s_reject(jpeg, 30, "image/jpeg", &s, NULL, KVC_EPARSE, NULL);
    kvc_err_t err = {0};
    uint8_t *out = NULL;
    size_t out_len;
    int64_t shape[4];
    assert_int_equal(
        kvc_image_to_tensor(png, plen - 20, NULL, &s, NULL, &out, &out_len, shape, &err),
        KVC_EPARSE);
    assert_true(strncmp(err.msg, "image: corrupt PNG data: ", 25) == 0);
    assert_true(strlen(err.msg) > 25);

    /* A corrupted CRC in IHDR. */
    png[29] ^= 1;
    s_reject(png, plen, "image/png", &s, NULL, KVC_EPARSE, NULL);
    png[29] ^= 1;

    /* Size limits. */
    kvc_image_limits_t lim = {.max_bytes = 10};
    char msg[128];
    snprintf(msg, sizeof msg, "image: %zu bytes exceeds the limit of 10", plen);
    s_reject(png, plen, "image/png", &s, &lim, KVC_ERANGE, msg);
    lim = (kvc_image_limits_t){.max_pixels = 5};
    s_reject(png, plen, "image/png", &s, &lim, KVC_ERANGE,
             "image: 3x2 pixels exceeds the limit of 5");
    lim.max_pixels = 63;
    s_reject(jpeg, jlen, "image/jpeg", &s, &lim, KVC_ERANGE,
             "image: 8x8 pixels exceeds the limit of 63");
    lim.max_pixels = 64;
    assert_int_equal(kvc_image_to_tensor(jpeg, jlen, NULL, &s, &lim, &out, &out_len, shape, &err),
                     0);
    kvc_free(out);

    /* A bad spec and bad arguments. */
    kvc_preprocess_t bad = s;
    bad.channels = 4;
    s_reject(png, plen, "image/png", &bad, NULL, KVC_EINVAL,
             "preprocess: channels must be 1 or 3 (got 4)");
    assert_int_equal(kvc_image_to_tensor(png, plen, NULL, &s, NULL, NULL, &out_len, shape, &err),
                     KVC_EINVAL);
    assert_string_equal(err.msg, "image: bad arguments");
    free(png);
    tjFree(jpeg);
}

static void test_rejects_bombs_before_allocating(void **state)
{
    /* A PNG header claiming 100000x100000 (10 gigapixels) with a tiny IDAT.
     * Every kvc allocation fails from here on, so reaching any pixel or
     * tensor buffer would turn the answer into "out of memory". */
    const uint8_t raw[3] = {0, 0, 0};
    size_t len;
    uint8_t *png = s_png_raw(100000, 100000, 8, 2, NULL, 0, raw, sizeof raw, &len);
    kvc_preprocess_t s = s_spec("224x224");
    kvc_alloc_fail_after(0);
    s_reject(png, len, "image/png", &s, NULL, KVC_ERANGE,
             "image: 100000x100000 pixels exceeds the limit of 50000000");
    kvc_alloc_fail_after(-1);
    free(png);

    /* The same from a JPEG whose frame header is patched to 65000x65000. */
    uint8_t pix[8 * 8 * 3] = {0};
    uint8_t *jpeg = s_jpeg_encode(pix, 8, 8, TJPF_RGB, TJSAMP_444, &len);
    size_t sof = 0;
    for (size_t i = 2; i + 9 < len; i++)
        if (jpeg[i] == 0xff && jpeg[i + 1] == 0xc0) {
            sof = i;
            break;
        }
    assert_true(sof > 0);
    jpeg[sof + 5] = 65000 >> 8; /* FFC0 len(2) precision(1) height(2) width(2) */
    jpeg[sof + 6] = 65000 & 0xff;
    jpeg[sof + 7] = 65000 >> 8;
    jpeg[sof + 8] = 65000 & 0xff;
    kvc_alloc_fail_after(0);
    s_reject(jpeg, len, "image/jpeg", &s, NULL, KVC_ERANGE,
             "image: 65000x65000 pixels exceeds the limit of 50000000");
    kvc_alloc_fail_after(-1);
    tjFree(jpeg);

    /* 7100x7100 gray is just over the default limit. */
    png = s_png_raw(7100, 7100, 8, 0, NULL, 0, raw, sizeof raw, &len);
    s_reject(png, len, NULL, &s, NULL, KVC_ERANGE,
             "image: 7100x7100 pixels exceeds the limit of 50000000");
    free(png);
}

static void test_cmyk_jpeg_refused(void **state)
{
    uint8_t cmyk[8 * 8 * 4];
    for (size_t i = 0; i < sizeof cmyk; i++)
        cmyk[i] = (uint8_t)i;
    size_t len;
    uint8_t *jpeg = s_jpeg_encode(cmyk, 8, 8, TJPF_CMYK, TJSAMP_444, &len);
    kvc_preprocess_t s = s_spec("8x8");
    s_reject(jpeg, len, "image/jpeg", &s, NULL, KVC_EPARSE, "image: CMYK JPEG is not supported");
    tjFree(jpeg);
}

static void test_allocation_failures_do_not_leak(void **state)
{
    size_t plen, jlen;
    uint8_t *png = s_png_encode(s_rgb3x2, 3, 2, PNG_FORMAT_RGB, &plen);
    uint8_t pix[16 * 16 * 3];
    for (size_t i = 0; i < sizeof pix; i++)
        pix[i] = (uint8_t)(i * 13);
    uint8_t *jpeg = s_jpeg_encode(pix, 16, 16, TJPF_RGB, TJSAMP_420, &jlen);
    kvc_preprocess_t s = s_spec("5x3 bgr nchw");
    const uint8_t *bodies[2] = {png, jpeg};
    size_t lens[2] = {plen, jlen};
    for (int b = 0; b < 2; b++) {
        int ok = 0;
        for (long n = 0; n < 10 && !ok; n++) {
            uint8_t *out = NULL;
            size_t out_len;
            int64_t shape[4];
            kvc_err_t err = {0};
            kvc_alloc_fail_after(n);
            int rc = kvc_image_to_tensor(bodies[b], lens[b], NULL, &s, NULL, &out, &out_len, shape,
                                         &err);
            kvc_alloc_fail_after(-1);
            if (rc == 0) {
                ok = 1;
                assert_true(n >= 3); /* pixels, tensor, taps */
                kvc_free(out);
            } else {
                assert_int_equal(rc, KVC_ENOMEM);
                assert_null(out);
            }
        }
        assert_true(ok);
    }
    free(png);
    tjFree(jpeg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_parse_full),
        cmocka_unit_test(test_spec_format_round_trip),
        cmocka_unit_test(test_spec_parse_errors),
        cmocka_unit_test(test_spec_check),
        cmocka_unit_test(test_region),
        cmocka_unit_test(test_run_checkerboard_upscale),
        cmocka_unit_test(test_run_gradient_downscale),
        cmocka_unit_test(test_run_rejects_bad_arguments),
        cmocka_unit_test(test_png_identity_normalised),
        cmocka_unit_test(test_png_layout_order_dtype),
        cmocka_unit_test(test_png_crop),
        cmocka_unit_test(test_png_gray_and_color_conversion),
        cmocka_unit_test(test_png_alpha_palette_16bit),
        cmocka_unit_test(test_jpeg_identity_within_tolerance),
        cmocka_unit_test(test_jpeg_reduced_scale_decode),
        cmocka_unit_test(test_decode_budget),
        cmocka_unit_test(test_rejects_bad_bodies),
        cmocka_unit_test(test_rejects_bombs_before_allocating),
        cmocka_unit_test(test_cmyk_jpeg_refused),
        cmocka_unit_test(test_allocation_failures_do_not_leak),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
