/*
 * fuzz_kube_response.c - libFuzzer target for the decoders of Kubernetes
 * API responses (kube_json.c): Status, a string at a path, list names.
 *
 * Any body must decode or fail with a code; kept strings are terminated,
 * Status text is printable, and list names are non-empty and NUL-free.
 */
#include "kube.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Checks each name a list yields. */
static int s_name(const char *name, void *arg)
{
    size_t *count = arg;
    if (name[0] == '\0')
        abort();
    (*count)++;
    return 0;
}

/* Tells whether s is printable ASCII. */
static void s_printable(const char *s, size_t size)
{
    size_t n = strnlen(s, size);
    if (n == size)
        abort();
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f)
            abort();
}

/* Runs every decoder over one body. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *body = (const char *)data;
    kvc_kube_status_t st;
    if (kvc_kube_status_parse(body, size, &st) == 0) {
        s_printable(st.reason, sizeof st.reason);
        s_printable(st.message, sizeof st.message);
        if (st.code < 0 || st.code > 999)
            abort();
    }
    static const char *const paths[][2] = {
        {"data", "kubeconfig"}, {"data", "jws-kubeconfig-abcdef"}, {"metadata", "name"}};
    for (size_t i = 0; i < 3; i++) {
        char *s = NULL;
        size_t n = 0;
        int rc = kvc_kube_json_string(body, size, paths[i], 2, &s, &n);
        if (rc == 1) {
            if (!s || s[n] != '\0' || n > size)
                abort();
        } else if (s) {
            abort();
        }
        kvc_free(s);
    }
    size_t count = 0;
    kvc_kube_list_names(body, size, s_name, &count);
    return 0;
}
