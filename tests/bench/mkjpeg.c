/*
 * mkjpeg - writes a photo-like test JPEG for tests/bench/bench_transfer.sh
 * (which compiles it with libturbojpeg into its temporary folder).
 *
 * The picture is synthetic but has what makes camera photos compress the
 * way they do: smooth gradients (sky), hard edges (objects), fine texture
 * (ground) and a little sensor noise, all from a fixed seed so every run
 * sends the same bytes. It never reads input files.
 *
 * Usage: mkjpeg OUT.jpg [WIDTH HEIGHT QUALITY]   (default 1280 960 90)
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <turbojpeg.h>

/* xorshift64*: a fixed, portable generator. */
static uint64_t s_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

/* A value in [-1, 1) from the generator. */
static double s_unit(uint64_t *s)
{
    return (double)(s_next(s) >> 11) / (double)(1ull << 52) - 1.0;
}

/* Clamps to a byte. */
static uint8_t s_byte(double v)
{
    return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)(v + 0.5);
}

/* Parses a whole decimal in [lo, hi]; -1 if it is not one. */
static long s_arg(const char *s, long lo, long hi)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    return (errno || end == s || *end || v < lo || v > hi) ? -1 : v;
}

int main(int argc, char **argv)
{
    if (argc != 2 && argc != 5) {
        fprintf(stderr, "usage: mkjpeg OUT.jpg [WIDTH HEIGHT QUALITY]\n");
        return 2;
    }
    long w = argc == 5 ? s_arg(argv[2], 16, 8192) : 1280;
    long h = argc == 5 ? s_arg(argv[3], 16, 8192) : 960;
    long q = argc == 5 ? s_arg(argv[4], 1, 100) : 90;
    if (w < 0 || h < 0 || q < 0) {
        fprintf(stderr, "mkjpeg: bad size or quality\n");
        return 2;
    }
    uint8_t *rgb = malloc((size_t)w * (size_t)h * 3);
    if (!rgb)
        return 1;
    uint64_t seed = 0x9E3779B97F4A7C15ull;
    double horizon = 0.45 * (double)h;
    for (long y = 0; y < h; y++) {
        for (long x = 0; x < w; x++) {
            double r, g, b;
            double fx = (double)x / (double)w, fy = (double)y / (double)h;
            if (y < horizon + 20.0 * sin(fx * 9.0)) {
                /* sky: a vertical gradient with a soft sun */
                double d = hypot(fx - 0.7, fy - 0.15);
                double sun = d < 0.3 ? 90.0 * (1.0 - d / 0.3) : 0.0;
                r = 110 + 80 * fy + sun;
                g = 150 + 60 * fy + sun * 0.9;
                b = 230 - 40 * fy + sun * 0.4;
            } else {
                /* ground: grass-like texture */
                double t = sin(x * 0.9 + y * 0.31) * sin(y * 0.7 - x * 0.13) * 18.0;
                r = 70 + 40 * fy + t + 14 * s_unit(&seed);
                g = 110 + 30 * fy + t + 14 * s_unit(&seed);
                b = 50 + 20 * fy + t * 0.5 + 10 * s_unit(&seed);
            }
            /* a house: hard edges and flat colours */
            if (fx > 0.15 && fx < 0.4 && fy > 0.35 && fy < 0.75) {
                int brick = ((y / 12) % 2 ? (x + 18) / 36 : x / 36) % 2;
                r = 170 + 20 * brick;
                g = 80 + 10 * brick;
                b = 60;
                if (fx > 0.22 && fx < 0.3 && fy > 0.45 && fy < 0.58)
                    r = g = b = 40 + 120 * fy; /* window */
            }
            /* sensor noise */
            double n = 3.0 * s_unit(&seed);
            uint8_t *p = rgb + ((size_t)y * (size_t)w + (size_t)x) * 3;
            p[0] = s_byte(r + n);
            p[1] = s_byte(g + n);
            p[2] = s_byte(b + n);
        }
    }
    tjhandle tj = tjInitCompress();
    unsigned char *jpeg = NULL;
    unsigned long len = 0;
    int rc = 1;
    if (tj && tjCompress2(tj, rgb, (int)w, 0, (int)h, TJPF_RGB, &jpeg, &len, TJSAMP_420, (int)q,
                          TJFLAG_ACCURATEDCT) == 0) {
        FILE *f = fopen(argv[1], "wb");
        if (f && fwrite(jpeg, 1, len, f) == len && fclose(f) == 0)
            rc = 0;
        else if (f)
            fclose(f);
    }
    if (rc)
        fprintf(stderr, "mkjpeg: cannot write %s\n", argv[1]);
    tjFree(jpeg);
    if (tj)
        tjDestroy(tj);
    free(rgb);
    return rc;
}
