/*
 * fuzz_kube_pem.c - libFuzzer target for the PEM/DER walk of kvc_kube_ca_pin
 * and for kvc_kube_jws_verify (the first line of the input is the JWS, the
 * rest its payload).
 *
 * A pin, when there is one, is "sha256:" and 64 lowercase hex digits; a
 * JWS made of fuzzed bytes must never verify. The certificate seeds are
 * made at build time with the openssl CLI (tests/fuzz/CMakeLists.txt).
 */
#include "kube.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Pins one input and checks the form of a success. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char pin[KVC_KUBE_PIN_LEN];
    if (kvc_kube_ca_pin(data, size, pin) == 0) {
        if (strlen(pin) != KVC_KUBE_PIN_LEN - 1 || memcmp(pin, "sha256:", 7) != 0)
            abort();
        for (size_t i = 7; i < KVC_KUBE_PIN_LEN - 1; i++)
            if (!((pin[i] >= '0' && pin[i] <= '9') || (pin[i] >= 'a' && pin[i] <= 'f')))
                abort();
    }
    const uint8_t *nl = memchr(data, '\n', size);
    if (nl && (size_t)(nl - data) < 4096) {
        char jws[4096];
        memcpy(jws, data, (size_t)(nl - data));
        jws[nl - data] = '\0';
        const char *payload = (const char *)nl + 1;
        size_t plen = size - (size_t)(nl - data) - 1;
        /* No seed holds a real signature: a success would be a forgery. */
        if (kvc_kube_jws_verify(jws, payload, plen, "abcdef", "0123456789abcdef") == 0)
            abort();
    }
    return 0;
}
