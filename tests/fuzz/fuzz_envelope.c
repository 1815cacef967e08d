/* libFuzzer target: the federation envelope decoder. A decoded envelope must
 * re-encode, and the re-encoding must decode to the same body case and the
 * same core body (kind and bytes, known or unknown kind). */
#include "wire.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Kvc__Fed__Envelope *env = NULL;
    kvc_reject_t why;
    if (kvc_wire_decode(data, size, &env, &why) != KVC_OK) {
        if (env || (unsigned)why >= KVC_REJECT__COUNT)
            abort();
        return 0;
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    if (kvc_wire_encode(env, &buf, &len) != KVC_OK)
        abort();
    Kvc__Fed__Envelope *again = NULL;
    if (kvc_wire_decode(buf, len, &again, &why) != KVC_OK || again->body_case != env->body_case)
        abort();
    uint32_t k1 = 0, k2 = 0;
    const uint8_t *d1 = NULL, *d2 = NULL;
    size_t l1 = 0, l2 = 0;
    int r1 = kvc_wire_body(env, &k1, &d1, &l1), r2 = kvc_wire_body(again, &k2, &d2, &l2);
    if (r1 != r2 || k1 != k2 || l1 != l2 || (l1 && memcmp(d1, d2, l1) != 0))
        abort();
    kvc_wire_free(&again);
    kvc_wire_free(&env);
    kvc_free(buf);
    return 0;
}
