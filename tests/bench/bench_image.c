/*
 * bench_image - how long the proxy's image path takes per request: a 12 MP
 * JPEG photo and a 1 MP PNG to a 224x224 normalised float32 tensor, against
 * a plain full-size decode of the same file (the least a path without
 * reduced-scale decoding would pay). Images are synthesised in memory, so
 * the run needs no files. Prints one line per case and a final
 * "bench_image:" line of key=value pairs for scripts.
 *
 * Usage: bench_image [seconds_per_case]   (default 2)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <png.h>
#include <turbojpeg.h>

#include "base.h"
#include "image.h"
#include "preprocess.h"

/* Monotonic time in seconds. */
static double s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A photo-like RGB image: smooth gradients, a few edges, mild noise. */
static uint8_t *s_photo(int w, int h)
{
    uint8_t *p = malloc((size_t)w * h * 3);
    if (!p)
        return NULL;
    uint32_t rng = 12345;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            rng = rng * 1103515245u + 12345u;
            int noise = (int)((rng >> 16) % 9) - 4;
            double u = (double)x / w, v = (double)y / h;
            int edge = ((x / 400) + (y / 300)) % 2 ? 40 : 0;
            int r = (int)(255 * u) + noise + edge;
            int g = (int)(255 * v * (0.5 + 0.5 * sin(u * 12))) + noise;
            int b = (int)(128 + 100 * cos(v * 9 + u * 3)) + noise - edge;
            uint8_t *o = p + ((size_t)y * w + x) * 3;
            o[0] = (uint8_t)(r < 0 ? 0 : r > 255 ? 255 : r);
            o[1] = (uint8_t)(g < 0 ? 0 : g > 255 ? 255 : g);
            o[2] = (uint8_t)(b < 0 ? 0 : b > 255 ? 255 : b);
        }
    return p;
}

/* Times kvc_image_to_tensor on one body; returns ms per call, or -1. */
static double s_time_path(const uint8_t *body, size_t len, const kvc_preprocess_t *spec,
                          double secs)
{
    int n = 0;
    double start = s_now(), end;
    do {
        uint8_t *out = NULL;
        size_t out_len;
        int64_t shape[4];
        kvc_err_t err;
        if (kvc_image_to_tensor(body, len, NULL, spec, NULL, &out, &out_len, shape, &err)) {
            fprintf(stderr, "bench_image: %s\n", err.msg);
            return -1;
        }
        kvc_free(out);
        n++;
        end = s_now();
    } while (end - start < secs);
    return (end - start) * 1e3 / n;
}

/* Times a full-size tjDecompress2 to RGB; returns ms per call, or -1. */
static double s_time_full_jpeg(const uint8_t *body, size_t len, int w, int h, double secs)
{
    tjhandle tj = tjInitDecompress();
    uint8_t *pix = malloc((size_t)w * h * 3);
    if (!tj || !pix)
        return -1;
    int n = 0;
    double start = s_now(), end;
    do {
        if (tjDecompress2(tj, body, (unsigned long)len, pix, w, 0, h, TJPF_RGB, 0)) {
            fprintf(stderr, "bench_image: %s\n", tjGetErrorStr2(tj));
            return -1;
        }
        n++;
        end = s_now();
    } while (end - start < secs);
    free(pix);
    tjDestroy(tj);
    return (end - start) * 1e3 / n;
}

/* Times a full-size PNG decode with the simplified API; ms per call or -1. */
static double s_time_full_png(const uint8_t *body, size_t len, double secs)
{
    int n = 0;
    double start = s_now(), end;
    do {
        png_image img;
        memset(&img, 0, sizeof img);
        img.version = PNG_IMAGE_VERSION;
        if (!png_image_begin_read_from_memory(&img, body, len))
            return -1;
        img.format = PNG_FORMAT_RGB;
        uint8_t *pix = malloc(PNG_IMAGE_SIZE(img));
        int ok = pix && png_image_finish_read(&img, NULL, pix, 0, NULL);
        free(pix);
        if (!ok)
            return -1;
        n++;
        end = s_now();
    } while (end - start < secs);
    return (end - start) * 1e3 / n;
}

/* Times the fused resize + normalise pass alone from w x h RGB; ms/call. */
static double s_time_kernel(const kvc_preprocess_t *spec, int w, int h, double secs)
{
    uint8_t *pix = s_photo(w, h);
    size_t n_out = kvc_preprocess_tensor_bytes(spec);
    uint8_t *out = malloc(n_out);
    if (!pix || !out)
        return -1;
    kvc_pixels_t px = {pix, (uint32_t)w, (uint32_t)h, (size_t)w * 3, 3, 3};
    int n = 0;
    double start = s_now(), end;
    do {
        if (kvc_preprocess_run(spec, &px, out, n_out, NULL))
            return -1;
        n++;
        end = s_now();
    } while (end - start < secs);
    free(pix);
    free(out);
    return (end - start) * 1e3 / n;
}

int main(int argc, char **argv)
{
    double secs = argc > 1 ? strtod(argv[1], NULL) : 2.0;
    if (!(secs > 0 && secs < 600))
        secs = 2.0;
    kvc_preprocess_t spec;
    kvc_err_t err;
    if (kvc_preprocess_parse("224x224 rgb nchw float32 crop scale=1/255 "
                             "mean=0.485,0.456,0.406 std=0.229,0.224,0.225",
                             &spec, &err)) {
        fprintf(stderr, "bench_image: %s\n", err.msg);
        return 1;
    }

    /* 12 MP JPEG, quality 90, 4:2:0: a typical phone photo. */
    const int JW = 4000, JH = 3000;
    uint8_t *photo = s_photo(JW, JH);
    tjhandle tj = tjInitCompress();
    unsigned char *jpeg = NULL;
    unsigned long jlen = 0;
    if (!photo || !tj ||
        tjCompress2(tj, photo, JW, 0, JH, TJPF_RGB, &jpeg, &jlen, TJSAMP_420, 90, 0)) {
        fprintf(stderr, "bench_image: cannot build the JPEG\n");
        return 1;
    }
    tjDestroy(tj);
    free(photo);

    /* 1 MP PNG (1024x1024 RGB). */
    const int PW = 1024, PH = 1024;
    uint8_t *pp = s_photo(PW, PH);
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    img.width = PW;
    img.height = PH;
    img.format = PNG_FORMAT_RGB;
    size_t plen = 0;
    uint8_t *png = NULL;
    if (!pp || !png_image_write_get_memory_size(img, plen, 0, pp, 0, NULL) ||
        !(png = malloc(plen)) || !png_image_write_to_memory(&img, png, &plen, 0, pp, 0, NULL)) {
        fprintf(stderr, "bench_image: cannot build the PNG\n");
        return 1;
    }
    free(pp);

    double j_path = s_time_path(jpeg, jlen, &spec, secs);
    double j_full = s_time_full_jpeg(jpeg, jlen, JW, JH, secs);
    double p_path = s_time_path(png, plen, &spec, secs);
    double p_full = s_time_full_png(png, plen, secs);
    double kern = s_time_kernel(&spec, 500, 375, secs);
    if (j_path < 0 || j_full < 0 || p_path < 0 || p_full < 0 || kern < 0)
        return 1;
    printf("jpeg %dx%d (%lu bytes) -> 224x224 float32 nchw: %.2f ms/image "
           "(full-size decode alone: %.2f ms, %.1fx)\n",
           JW, JH, jlen, j_path, j_full, j_full / j_path);
    printf("png  %dx%d (%zu bytes) -> 224x224 float32 nchw: %.2f ms/image "
           "(full-size decode alone: %.2f ms)\n",
           PW, PH, plen, p_path, p_full);
    printf("resize+normalise alone, 500x375 rgb -> 224x224 float32 nchw: %.3f ms\n", kern);
    printf("bench_image: jpeg12mp_ms=%.3f jpeg12mp_full_decode_ms=%.3f png1mp_ms=%.3f "
           "png1mp_full_decode_ms=%.3f kernel_500x375_ms=%.3f jpeg_bytes=%lu png_bytes=%zu "
           "tensor_bytes=%zu\n",
           j_path, j_full, p_path, p_full, kern, jlen, plen, kvc_preprocess_tensor_bytes(&spec));
    tjFree(jpeg);
    free(png);
    return 0;
}
