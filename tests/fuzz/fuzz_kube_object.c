/*
 * fuzz_kube_object.c - libFuzzer target for what the model reconciler
 * reads from an API object (kube_json.c): integers at a path (a
 * Deployment's status.readyReplicas, metadata.generation) and label
 * strings at a path with dotted keys (metadata.labels.app.kubernetes.io/
 * managed-by).
 *
 * Any body must decode or fail with a code: a found integer is in
 * 0..2^63-1, nothing is returned when the answer is not 1, and strings are
 * terminated within their length.
 */
#include "kube.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Runs the decoders over one body. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *body = (const char *)data;
    static const char *const ints[][2] = {
        {"status", "readyReplicas"}, {"metadata", "generation"}, {"spec", "replicas"}};
    for (size_t i = 0; i < 3; i++) {
        uint64_t v = 12345;
        int rc = kvc_kube_json_u64(body, size, ints[i], 2, &v);
        if (rc == 1 && v > (uint64_t)INT64_MAX)
            abort();
        if (rc != 1 && v != 0)
            abort();
        if (rc != 1 && rc != 0 && rc != KVC_EPARSE)
            abort();
    }
    static const char *const labels[][3] = {{"metadata", "labels", "app.kubernetes.io/managed-by"},
                                            {"metadata", "labels", "kvc.io/site"}};
    for (size_t i = 0; i < 2; i++) {
        char *s = NULL;
        size_t n = 0;
        int rc = kvc_kube_json_string(body, size, labels[i], 3, &s, &n);
        if (rc == 1 && (!s || s[n] != '\0' || n > size))
            abort();
        if (rc != 1 && s)
            abort();
        kvc_free(s);
    }
    return 0;
}
