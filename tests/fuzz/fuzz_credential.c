/*
 * fuzz_credential.c - kvc_cred_verify on arbitrary bytes, as a peer's Hello
 * would deliver them. The trust key is derived from a fixed seed (bytes
 * 1..32) so that seeds signed with it (tests/fuzz/seeds/fuzz_credential/)
 * reach the checks behind the signature. Any crash, leak or broken
 * invariant below is a bug.
 */
#include "credential.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_NOW INT64_C(1700000000)

/* Traps when an invariant of a result does not hold. */
static void s_check(int ok)
{
    if (!ok)
        __builtin_trap();
}

/* Checks the invariants of one verify call. */
static void s_verify(const uint8_t *data, size_t size, const uint8_t trust[32], int64_t now)
{
    kvc_cred_t out;
    kvc_err_t err;
    memset(&err, 0, sizeof err);
    int rc = kvc_cred_verify(data, size, trust, now, &out, &err);
    if (rc != KVC_OK) {
        s_check(rc == KVC_EPARSE || rc == KVC_ECRYPTO || rc == KVC_EFOREIGN || rc == KVC_EEXPIRED ||
                rc == KVC_EINVAL);
        s_check(err.code == rc);
        s_check(err.msg[0] != '\0' && strchr(err.msg, '\n') == NULL);
        s_check(out.blob_len == 0);
        return;
    }
    s_check(size <= KVC_CRED_BLOB_MAX && out.blob_len == size);
    s_check(memcmp(out.blob, data, size) == 0);
    s_check(memcmp(out.ca_public, trust, 32) == 0);
    s_check(out.not_before <= now && now <= out.not_after);
    s_check(out.n_roles <= KVC_MAX_ROLES);
    s_check(strlen(out.site) > 0 && strlen(out.site) < KVC_NAME_MAX);
    s_check(strlen(out.name) > 0 && strlen(out.name) < KVC_NAME_MAX);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static kvc_ca_t ca;
    static int ready;
    if (!ready) {
        uint8_t seed[32];
        for (int i = 0; i < 32; i++)
            seed[i] = (uint8_t)(i + 1);
        if (kvc_ca_from_seed(seed, &ca) != KVC_OK)
            abort();
        ready = 1;
    }
    s_verify(data, size, ca.public_key, FUZZ_NOW);
    /* Far in the future, to reach the expiry branch with signed input. */
    s_verify(data, size, ca.public_key, INT64_MAX);
    return 0;
}
