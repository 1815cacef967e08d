/*
 * yolo_expect.h - the yolov5 stand-in's output0, computed in C from the
 * formula in tests/interop/model_server.py's docstring and never from the
 * server's answers, so interop tests can check every value it sends and
 * benches can fill a tensor with the same detector-like values (box
 * coordinates in pixels, then objectness and class scores that are nearly
 * all small, as a real YOLOv5 head gives).
 *
 * Every step is one exactly rounded IEEE operation (or ldexp, which is exact
 * here), in the order the server's numpy code does them, so the float32
 * results match bit for bit. That needs no fused multiply-add, hence the
 * pragma below (clang; other compilers only fuse for targets with FMA, which
 * the default x86-64 target has not).
 *
 * Header only: static inline functions, no allocation, no state.
 */
#ifndef KVC_TESTS_YOLO_EXPECT_H
#define KVC_TESTS_YOLO_EXPECT_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#define YOLO_EXPECT_ROWS 25200u
#define YOLO_EXPECT_COLS 85u

/* The IEEE bits of the input's float64 mean: the seed of every value. */
static inline uint64_t yolo_expect_seed(double mean)
{
    uint64_t b;
    memcpy(&b, &mean, sizeof b);
    return b;
}

/* z[i,k]: splitmix64's finaliser over (i*85 + k) * G + seed, mod 2^64. */
static inline uint64_t yolo_expect_hash(uint64_t seed, uint32_t i, uint32_t k)
{
    uint64_t z = ((uint64_t)i * YOLO_EXPECT_COLS + k) * 0x9E3779B97F4A7C15ull + seed;
    z ^= z >> 30;
    z *= 0xBF58476D1CE4E5B9ull;
    z ^= z >> 27;
    z *= 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* u in [0, 1) from the top 53 bits of z (exact). */
static inline double yolo_expect_unit(uint64_t z)
{
    return (double)(z >> 11) * 0x1p-53;
}

/* output0[0,i,k] (i < 25200, k < 85) for the seed of an input's mean. */
static inline float yolo_expect_at(uint64_t seed, uint32_t i, uint32_t k)
{
    static const double anchors[9][2] = {{10, 13},  {16, 30},  {33, 23},   {30, 61},  {62, 45},
                                         {59, 119}, {116, 90}, {156, 198}, {373, 326}};
    uint64_t z = yolo_expect_hash(seed, i, k);
    double u = yolo_expect_unit(z);
    if (k >= 4) {
        uint64_t z4 = k == 4 ? z : yolo_expect_hash(seed, i, 4);
        if (((z4 >> 4) & 255) == 0) { /* a row that holds an object */
            if (k == 4)
                return (float)(0.5 + 0.5 * u);
            if (k == 5 + (z4 >> 12) % 80)
                return (float)(0.25 + 0.75 * u);
        }
        return (float)ldexp(1.0 + u, -(int)(7 + (z & 2047) % 13));
    }
    unsigned sc = i < 19200 ? 0 : i < 24000 ? 1 : 2;
    uint32_t first = sc == 0 ? 0 : sc == 1 ? 19200 : 24000;
    uint32_t stride = 8u << sc, side = 640 / stride, j = i - first;
    uint32_t a = j / (side * side), cell = j % (side * side);
    double gx = (double)(cell % side), gy = (double)(cell / side), s = (double)stride;
    const double *anchor = anchors[sc * 3 + a];
    switch (k) {
    case 0:
        return (float)((gx + 2 * u - 0.5) * s);
    case 1:
        return (float)((gy + 2 * u - 0.5) * s);
    case 2:
        return (float)((0.5 + u) * (0.5 + u) * anchor[0]);
    default:
        return (float)((0.5 + u) * (0.5 + u) * anchor[1]);
    }
}

/* Fills out[25200 * 85] with output0 for an input whose float64 mean is mean. */
static inline void yolo_expect_fill(double mean, float *out)
{
    uint64_t seed = yolo_expect_seed(mean);
    for (uint32_t i = 0; i < YOLO_EXPECT_ROWS; i++)
        for (uint32_t k = 0; k < YOLO_EXPECT_COLS; k++)
            out[(size_t)i * YOLO_EXPECT_COLS + k] = yolo_expect_at(seed, i, k);
}

#endif
