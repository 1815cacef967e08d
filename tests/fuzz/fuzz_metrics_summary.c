/* libFuzzer target: the gossiped metrics summary decoder and the store that
 * holds what it decodes. A decoded summary must re-encode within the wire
 * limit and decode to the same version and entry counts, and writing the
 * store as /federate text must succeed. */
#include "metrics_summary.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kvc_summary_t s;
    if (kvc_summary_decode(data, size, &s) != KVC_OK)
        return 0;
    static uint8_t buf[KVC_SUMMARY_WIRE_MAX];
    size_t len = 0, dropped = 0;
    if (kvc_summary_encode(&s, sizeof buf, buf, sizeof buf, &len, &dropped) != KVC_OK ||
        dropped != 0)
        abort();
    kvc_summary_t again;
    if (kvc_summary_decode(buf, len, &again) != KVC_OK || again.version != s.version ||
        again.n_models != s.n_models || again.n_backends != s.n_backends)
        abort();
    kvc_summary_set_t *set = kvc_summary_set_new(4);
    if (!set)
        abort();
    if (kvc_summary_set_put(set, "p1", "site-a", "eu", data, size, s.version, 0) != KVC_OK)
        abort();
    kvc_buf_t out;
    kvc_buf_init(&out, 1 << 20);
    if (kvc_summary_set_write(set, NULL, 1000, &out) != KVC_OK)
        abort();
    kvc_buf_free(&out);
    kvc_summary_set_destroy(&set);
    return 0;
}
