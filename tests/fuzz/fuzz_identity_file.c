/*
 * fuzz_identity_file.c - the identity-file parser (kvc_identity_parse) on
 * arbitrary bytes, as a damaged or hostile file on disk would hold them.
 * Seeds in tests/fuzz/seeds/fuzz_identity_file/ are valid files signed by
 * the fuzzing federation key (seed bytes 1..32). Any crash, leak or broken
 * invariant below is a bug.
 */
#include "credential.h"

#include <sodium.h>
#include <stdint.h>
#include <string.h>

/* Traps when an invariant of a result does not hold. */
static void s_check(int ok)
{
    if (!ok)
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kvc_identity_t id;
    kvc_err_t err;
    memset(&err, 0, sizeof err);
    int rc = kvc_identity_parse((const char *)data, size, "fuzz.id", &id, &err);
    if (rc != KVC_OK) {
        static const uint8_t zero[32];
        s_check(err.code == rc);
        s_check(strncmp(err.msg, "fuzz.id", 7) == 0);
        s_check(strchr(err.msg, '\n') == NULL);
        s_check(memcmp(id.curve_secret, zero, 32) == 0);
        return 0;
    }
    /* Accepted: the secret is the certified key's, the blob re-parses. */
    uint8_t pk[32];
    s_check(crypto_scalarmult_base(pk, id.curve_secret) == 0);
    s_check(memcmp(pk, id.cred.curve_public, 32) == 0);
    s_check(id.cred.blob_len > 0 && id.cred.blob_len <= KVC_CRED_BLOB_MAX);
    kvc_cred_t again;
    rc = kvc_cred_verify(id.cred.blob, id.cred.blob_len, id.cred.ca_public, id.cred.not_before,
                         &again, &err);
    s_check(rc == KVC_OK || rc == KVC_ECRYPTO);
    kvc_identity_wipe(&id);
    return 0;
}
