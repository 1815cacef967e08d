/* libFuzzer target: the federation envelope decoder. A decoded envelope must
 * re-encode, and the re-encoding must decode to the same body case. */
#include "wire.h"

#include <stdlib.h>

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
    kvc_wire_free(&again);
    kvc_wire_free(&env);
    kvc_free(buf);
    return 0;
}
