/*
 * fuzz_image - arbitrary bytes as an image request body through
 * kvc_image_to_tensor (sniffing, Content-Type check, libturbojpeg/libpng
 * decode, resize and normalise). Limits are small so memory stays bounded:
 * at most 64 KiB in and 512x512 pixels decoded. The input's length picks one
 * of four specs and Content-Types, so every output path is exercised
 * without changing the input format (seeds are plain JPEG/PNG files), and
 * whether a shared decode budget (600 000 bytes, kept for the process) is
 * used; it must be whole again after every input.
 */
#include <stddef.h>
#include <stdint.h>

#include "base.h"
#include "image.h"
#include "preprocess.h"

static const char *s_specs[4] = {
    "32x24 rgb nhwc float32 stretch scale=1/255 mean=0.485,0.456,0.406 std=0.229,0.224,0.225",
    "17x33 bgr nchw float32 crop scale=2 mean=1 std=3",
    "8x8 gray nhwc uint8 crop",
    "40x1 rgb nchw uint8 stretch",
};
static const char *s_types[4] = {NULL, "image/jpeg", "image/png", "application/octet-stream"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kvc_preprocess_t spec;
    kvc_err_t err;
    if (kvc_preprocess_parse(s_specs[size % 4], &spec, &err) != 0)
        __builtin_trap();
    /* A budget in every other run, small enough to refuse some images. */
    static kvc_image_budget_t *budget;
    if (!budget)
        budget = kvc_image_budget_new(600000);
    kvc_image_limits_t limits = {
        .max_bytes = 65536, .max_pixels = 512 * 512, .budget = (size / 16) % 2 ? budget : NULL};
    uint8_t *out = NULL;
    size_t out_len = 0;
    int64_t shape[4];
    int rc = kvc_image_to_tensor(data, size, s_types[(size / 4) % 4], &spec, &limits, &out,
                                 &out_len, shape, &err);
    if (rc == 0) {
        /* Touch every byte so ASan sees any short allocation. */
        volatile uint8_t sum = 0;
        for (size_t i = 0; i < out_len; i++)
            sum ^= out[i];
        (void)sum;
        if (out_len != kvc_preprocess_tensor_bytes(&spec) || shape[0] != 1)
            __builtin_trap();
    } else if (out != NULL || err.msg[0] == '\0') {
        __builtin_trap();
    }
    kvc_free(out);
    if (kvc_image_budget_used(budget) != 0) /* every decode gives its bytes back */
        __builtin_trap();
    return 0;
}
