/*
 * image.c - decodes a JPEG (libturbojpeg) or PNG (libpng's simplified API)
 * request body and hands its pixels to the fused resize + normalise pass in
 * preprocess.c, producing a model's input tensor.
 *
 * Order of work for every body: size limit, magic bytes, Content-Type,
 * header, pixel limit, and only then any pixel buffer. A JPEG much larger
 * than the target is decoded at a reduced DCT scale (1/2 .. 1/8) when that
 * scale still covers the target, which is most of the cost of a 12 MP photo.
 * This module must never allocate from an unchecked header, never print,
 * and never let a decoder longjmp past our own frees.
 */
#include "image.h"

#include <assert.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <png.h>
#include <turbojpeg.h>

static const uint8_t s_png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

struct kvc_image_budget {
    uint64_t cap;
    _Atomic uint64_t used;
};

/* A budget of cap bytes. */
kvc_image_budget_t *kvc_image_budget_new(uint64_t cap)
{
    if (cap == 0)
        return NULL;
    kvc_image_budget_t *self = kvc_calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->cap = cap;
    atomic_init(&self->used, 0);
    return self;
}

/* Frees the budget and nulls the caller's pointer. */
void kvc_image_budget_destroy(kvc_image_budget_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    kvc_free(*self_p);
    *self_p = NULL;
}

/* Takes n bytes if they fit under the cap, without ever overshooting it. */
int kvc_image_budget_take(kvc_image_budget_t *self, uint64_t n)
{
    if (n > self->cap)
        return KVC_ERANGE;
    uint64_t used = atomic_load(&self->used);
    do {
        if (used > self->cap - n)
            return KVC_EAGAIN;
    } while (!atomic_compare_exchange_weak(&self->used, &used, used + n));
    return 0;
}

/* Gives back n bytes. */
void kvc_image_budget_give(kvc_image_budget_t *self, uint64_t n)
{
    uint64_t prev = atomic_fetch_sub(&self->used, n);
    assert(prev >= n);
    (void)prev;
}

/* Bytes taken now. */
uint64_t kvc_image_budget_used(const kvc_image_budget_t *self)
{
    return atomic_load(&((kvc_image_budget_t *)self)->used);
}

/* Writes a byte count for messages: "N bytes" under 1 MiB, else "X.Y MiB". */
static const char *s_bytes_text(uint64_t n, char *buf, size_t cap)
{
    if (n < (1u << 20))
        snprintf(buf, cap, "%llu bytes", (unsigned long long)n);
    else
        snprintf(buf, cap, "%.1f MiB", (double)n / (1024.0 * 1024.0));
    return buf;
}

/* Takes need bytes from budget (none: nothing to do), one line in err when
 * it cannot. */
static int s_take(kvc_image_budget_t *budget, uint64_t need, kvc_err_t *err)
{
    if (!budget)
        return 0;
    int rc = kvc_image_budget_take(budget, need);
    char a[32], b[32], c[32];
    if (rc == KVC_ERANGE)
        return kvc_err_set(err, KVC_ERANGE,
                           "image: decoding it needs %s, more than the %s all image decoding may "
                           "use (proxy.image_memory)",
                           s_bytes_text(need, a, sizeof a), s_bytes_text(budget->cap, b, sizeof b));
    if (rc == KVC_EAGAIN)
        return kvc_err_set(err, KVC_EAGAIN,
                           "image: decoding it needs %s while other images hold %s of the %s "
                           "image decoding may use (proxy.image_memory); retry later",
                           s_bytes_text(need, a, sizeof a),
                           s_bytes_text(kvc_image_budget_used(budget), b, sizeof b),
                           s_bytes_text(budget->cap, c, sizeof c));
    return rc;
}

/*
 * Tells whether a JPEG is progressive (SOF2, SOF6, SOF10 or SOF14) by
 * walking its marker segments up to the first frame header. libjpeg keeps
 * a progressive image's coefficients for the whole frame, whatever scale
 * it decodes at. Unknown or cut-short data counts as progressive: the
 * estimate must not be low.
 */
static int s_jpeg_progressive(const uint8_t *d, size_t len)
{
    size_t i = 2; /* after SOI */
    while (i + 1 < len) {
        if (d[i] != 0xff)
            return 1;
        uint8_t m = d[i + 1];
        if (m == 0xff) { /* fill byte */
            i++;
            continue;
        }
        if (m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc)
            return m == 0xc2 || m == 0xc6 || m == 0xca || m == 0xce;
        if (m == 0x01 || (m >= 0xd0 && m <= 0xd8)) { /* no length */
            i += 2;
            continue;
        }
        if (m == 0xda || m == 0xd9 || i + 3 >= len)
            return 1; /* scan or end before any frame header */
        i += 2 + (((size_t)d[i + 2] << 8) | d[i + 3]);
    }
    return 1;
}

/* What libjpeg keeps for a progressive frame of w x h: 16-bit DCT
 * coefficients for every block of every component, in units of the luma
 * plane by chroma subsampling; plus a margin of one MCU row each way. */
static uint64_t s_jpeg_coef_bytes(int w, int h, int subsamp)
{
    uint64_t planes2; /* twice the number of luma-sized planes */
    switch (subsamp) {
    case TJSAMP_GRAY:
        planes2 = 2;
        break;
    case TJSAMP_420:
    case TJSAMP_411:
        planes2 = 3;
        break;
    case TJSAMP_422:
    case TJSAMP_440:
        planes2 = 4;
        break;
    default:
        planes2 = 6;
        break; /* 4:4:4 and anything unknown */
    }
    uint64_t pw = ((uint64_t)w + 31) & ~(uint64_t)15, ph = ((uint64_t)h + 31) & ~(uint64_t)15;
    return pw * ph * planes2; /* x2 bytes per coefficient, /2 for planes2 */
}

/* Tells JPEG from PNG by magic bytes. */
kvc_image_format_t kvc_image_sniff(const uint8_t *data, size_t len)
{
    if (!data)
        return KVC_IMAGE_UNKNOWN;
    if (len >= 3 && data[0] == 0xff && data[1] == 0xd8 && data[2] == 0xff)
        return KVC_IMAGE_JPEG;
    if (len >= sizeof s_png_magic && memcmp(data, s_png_magic, sizeof s_png_magic) == 0)
        return KVC_IMAGE_PNG;
    return KVC_IMAGE_UNKNOWN;
}

/* Copies the media type of a Content-Type (no parameters, trimmed) into
 * buf, replacing unprintable bytes with '?'. */
static void s_media_type(const char *ct, char *buf, size_t size)
{
    while (*ct == ' ' || *ct == '\t')
        ct++;
    size_t n = 0;
    while (ct[n] != '\0' && ct[n] != ';')
        n++;
    while (n > 0 && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
        n--;
    if (n > size - 1)
        n = size - 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)ct[i];
        buf[i] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    buf[n] = '\0';
}

/* Checks that content_type allows an image of the sniffed format. */
static int s_check_content_type(const char *content_type, kvc_image_format_t fmt, kvc_err_t *err)
{
    if (!content_type)
        return 0;
    char mt[64];
    s_media_type(content_type, mt, sizeof mt);
    if (mt[0] == '\0' || strcasecmp(mt, "application/octet-stream") == 0)
        return 0;
    kvc_image_format_t want = KVC_IMAGE_UNKNOWN;
    if (strcasecmp(mt, "image/jpeg") == 0 || strcasecmp(mt, "image/jpg") == 0 ||
        strcasecmp(mt, "image/pjpeg") == 0)
        want = KVC_IMAGE_JPEG;
    else if (strcasecmp(mt, "image/png") == 0)
        want = KVC_IMAGE_PNG;
    if (want == KVC_IMAGE_UNKNOWN)
        return kvc_err_set(err, KVC_EINVAL,
                           "image: unsupported Content-Type %s (want image/jpeg or image/png)", mt);
    if (want != fmt)
        return kvc_err_set(err, KVC_EINVAL, "image: Content-Type %s does not match the %s data", mt,
                           fmt == KVC_IMAGE_JPEG ? "JPEG" : "PNG");
    return 0;
}

/* Refuses an image whose full size is over the pixel limit. */
static int s_check_pixels(uint64_t w, uint64_t h, uint64_t max, kvc_err_t *err)
{
    if (w == 0 || h == 0)
        return kvc_err_set(err, KVC_EPARSE, "image: %llux%llu is an empty image",
                           (unsigned long long)w, (unsigned long long)h);
    if (w * h > max)
        return kvc_err_set(err, KVC_ERANGE, "image: %llux%llu pixels exceeds the limit of %llu",
                           (unsigned long long)w, (unsigned long long)h, (unsigned long long)max);
    return 0;
}

/* Allocates the tensor and runs the preprocessing pass over decoded pixels;
 * on success *out owns the tensor. */
static int s_run(const kvc_preprocess_t *spec, const kvc_pixels_t *px, uint8_t **out,
                 kvc_err_t *err)
{
    size_t bytes = kvc_preprocess_tensor_bytes(spec);
    uint8_t *tensor = kvc_malloc(bytes);
    if (!tensor)
        return kvc_err_set(err, KVC_ENOMEM, "image: out of memory for the %zu-byte tensor", bytes);
    int rc = kvc_preprocess_run(spec, px, tensor, bytes, err);
    if (rc) {
        kvc_free(tensor);
        return rc;
    }
    *out = tensor;
    return 0;
}

/* Picks the smallest libjpeg DCT scale whose output still covers the
 * target region in both directions; 1/1 when none does. */
static tjscalingfactor s_jpeg_scale(const kvc_preprocess_t *spec, int w, int h)
{
    tjscalingfactor best = {1, 1};
    uint64_t best_area = (uint64_t)w * (uint64_t)h;
    int n = 0;
    tjscalingfactor *sf = tjGetScalingFactors(&n);
    for (int i = 0; sf && i < n; i++) {
        if (sf[i].num <= 0 || sf[i].denom <= 0 || sf[i].num >= sf[i].denom)
            continue;
        int sw = TJSCALED(w, sf[i]), sh = TJSCALED(h, sf[i]);
        if (sw <= 0 || sh <= 0)
            continue;
        uint32_t rx, ry, rw, rh;
        kvc_preprocess_region(spec, (uint32_t)sw, (uint32_t)sh, &rx, &ry, &rw, &rh);
        uint64_t area = (uint64_t)sw * (uint64_t)sh;
        if (rw >= spec->width && rh >= spec->height && area < best_area) {
            best = sf[i];
            best_area = area;
        }
    }
    return best;
}

/* Decodes a JPEG at a suitable scale and runs the preprocessing pass. */
static int s_jpeg(const uint8_t *data, size_t len, const kvc_preprocess_t *spec, uint64_t max_px,
                  kvc_image_budget_t *budget, uint8_t **out, kvc_err_t *err)
{
    uint64_t held = 0;
    if (len > ULONG_MAX)
        return kvc_err_set(err, KVC_ERANGE, "image: JPEG too large");
    tjhandle tj = tjInitDecompress();
    if (!tj)
        return kvc_err_set(err, KVC_ENOMEM, "image: out of memory starting the JPEG decoder");
    uint8_t *pixels = NULL;
    int rc, w = 0, h = 0, subsamp = 0, cs = 0;
    if (tjDecompressHeader3(tj, data, (unsigned long)len, &w, &h, &subsamp, &cs) != 0) {
        rc = kvc_err_set(err, KVC_EPARSE, "image: corrupt JPEG data: %s", tjGetErrorStr2(tj));
        goto done;
    }
    rc = s_check_pixels((uint64_t)(w > 0 ? w : 0), (uint64_t)(h > 0 ? h : 0), max_px, err);
    if (rc)
        goto done;
    if (cs == TJCS_CMYK || cs == TJCS_YCCK) {
        rc = kvc_err_set(err, KVC_EPARSE, "image: CMYK JPEG is not supported");
        goto done;
    }
    tjscalingfactor sf = s_jpeg_scale(spec, w, h);
    int sw = TJSCALED(w, sf), sh = TJSCALED(h, sf);
    int pf = spec->channels == 1 ? TJPF_GRAY : TJPF_RGB;
    size_t ps = (size_t)tjPixelSize[pf];
    size_t pitch = (size_t)sw * ps;
    if (pitch > INT_MAX) {
        rc = kvc_err_set(err, KVC_ERANGE, "image: JPEG rows too long");
        goto done;
    }
    uint64_t need = (uint64_t)pitch * (uint64_t)sh + kvc_preprocess_tensor_bytes(spec);
    if (s_jpeg_progressive(data, len))
        need += s_jpeg_coef_bytes(w, h, subsamp);
    rc = s_take(budget, need, err);
    if (rc)
        goto done;
    held = budget ? need : 0;
    pixels = kvc_malloc(pitch * (size_t)sh);
    if (!pixels) {
        rc = kvc_err_set(err, KVC_ENOMEM, "image: out of memory for %dx%d pixels", sw, sh);
        goto done;
    }
    if (tjDecompress2(tj, data, (unsigned long)len, pixels, sw, (int)pitch, sh, pf,
                      TJFLAG_STOPONWARNING | TJFLAG_LIMITSCANS) != 0) {
        rc = kvc_err_set(err, KVC_EPARSE, "image: corrupt JPEG data: %s", tjGetErrorStr2(tj));
        goto done;
    }
    kvc_pixels_t px = {pixels, (uint32_t)sw, (uint32_t)sh, pitch, (uint32_t)ps, spec->channels};
    rc = s_run(spec, &px, out, err);
done:
    kvc_free(pixels);
    tjDestroy(tj);
    if (held)
        kvc_image_budget_give(budget, held);
    return rc;
}

/* Decodes a PNG to 8-bit gray or RGB (alpha kept, then ignored) and runs
 * the preprocessing pass. */
static int s_png(const uint8_t *data, size_t len, const kvc_preprocess_t *spec, uint64_t max_px,
                 kvc_image_budget_t *budget, uint8_t **out, kvc_err_t *err)
{
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&img, data, len)) {
        int rc = kvc_err_set(err, KVC_EPARSE, "image: corrupt PNG data: %s", img.message);
        png_image_free(&img);
        return rc;
    }
    int rc = s_check_pixels(img.width, img.height, max_px, err);
    if (rc) {
        png_image_free(&img);
        return rc;
    }
    /* 16-bit samples without gamma information are sRGB in practice; the
     * default (linear) would brighten every 16-bit photo. */
    img.flags |= PNG_IMAGE_FLAG_16BIT_sRGB;
    png_uint_32 alpha = img.format & PNG_FORMAT_FLAG_ALPHA;
    img.format = (spec->channels == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB) | alpha;
    size_t ps = PNG_IMAGE_PIXEL_SIZE(img.format);
    size_t stride = (size_t)img.width * ps;
    if (stride > INT32_MAX) {
        png_image_free(&img);
        return kvc_err_set(err, KVC_ERANGE, "image: PNG rows too long");
    }
    uint64_t need = (uint64_t)stride * img.height + kvc_preprocess_tensor_bytes(spec);
    rc = s_take(budget, need, err);
    if (rc) {
        png_image_free(&img);
        return rc;
    }
    uint8_t *pixels = kvc_malloc(stride * img.height);
    if (!pixels) {
        png_image_free(&img);
        if (budget)
            kvc_image_budget_give(budget, need);
        return kvc_err_set(err, KVC_ENOMEM, "image: out of memory for %ux%u pixels",
                           (unsigned)img.width, (unsigned)img.height);
    }
    if (!png_image_finish_read(&img, NULL, pixels, (png_int_32)stride, NULL)) {
        rc = kvc_err_set(err, KVC_EPARSE, "image: corrupt PNG data: %s", img.message);
    } else {
        kvc_pixels_t px = {pixels, img.width, img.height, stride, (uint32_t)ps, spec->channels};
        rc = s_run(spec, &px, out, err);
    }
    png_image_free(&img);
    kvc_free(pixels);
    if (budget)
        kvc_image_budget_give(budget, need);
    return rc;
}

/* Decodes an image body and writes the model's input tensor. */
int kvc_image_to_tensor(const uint8_t *data, size_t len, const char *content_type,
                        const kvc_preprocess_t *spec, const kvc_image_limits_t *limits,
                        uint8_t **out, size_t *out_len, int64_t shape[4], kvc_err_t *err)
{
    if (out)
        *out = NULL;
    if (!spec || !out || !out_len || !shape || (!data && len > 0))
        return kvc_err_set(err, KVC_EINVAL, "image: bad arguments");
    int rc = kvc_preprocess_check(spec, err);
    if (rc)
        return rc;
    size_t max_bytes =
        limits && limits->max_bytes ? limits->max_bytes : KVC_IMAGE_DEFAULT_MAX_BYTES;
    uint64_t max_px =
        limits && limits->max_pixels ? limits->max_pixels : KVC_IMAGE_DEFAULT_MAX_PIXELS;
    if (len == 0)
        return kvc_err_set(err, KVC_EPARSE, "image: empty body");
    if (len > max_bytes)
        return kvc_err_set(err, KVC_ERANGE, "image: %zu bytes exceeds the limit of %zu", len,
                           max_bytes);
    kvc_image_format_t fmt = kvc_image_sniff(data, len);
    if (fmt == KVC_IMAGE_UNKNOWN) {
        char hex[16] = "";
        size_t n = len < 4 ? len : 4, used = 0;
        for (size_t i = 0; i < n; i++)
            used +=
                (size_t)snprintf(hex + used, sizeof hex - used, "%s%02x", i ? " " : "", data[i]);
        return kvc_err_set(err, KVC_EPARSE, "image: not a JPEG or PNG (starts with %s)", hex);
    }
    rc = s_check_content_type(content_type, fmt, err);
    if (rc)
        return rc;

    kvc_image_budget_t *budget = limits ? limits->budget : NULL;
    if (fmt == KVC_IMAGE_JPEG)
        rc = s_jpeg(data, len, spec, max_px, budget, out, err);
    else
        rc = s_png(data, len, spec, max_px, budget, out, err);
    if (rc)
        return rc;
    *out_len = kvc_preprocess_tensor_bytes(spec);
    kvc_preprocess_shape(spec, shape);
    return 0;
}
