/*
 * libFuzzer target for the membership decoder: feeds arbitrary bytes as a
 * message from a known peer into a core that knows a few members, then runs
 * its timers. Any crash, leak, UB or oversized output is a bug.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "swim.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static kvc_swim_config_t cfg;
    static int init;
    if (!init) {
        kvc_swim_config_profile(&cfg, "lan");
        init = 1;
    }
    kvc_member_info_t me = {.site = "site0", .name = "a"};
    kvc_swim_t *s = kvc_swim_new(&cfg, &me, 1, 1000);
    if (!s)
        return 0;
    kvc_outbox_t out;
    kvc_outbox_init(&out, 0);
    const char *seed = "site1/b";
    kvc_swim_join(s, &seed, 1, 1000, &out);
    /* Split the input in two messages so state carries over between them. */
    size_t half = size / 2;
    kvc_swim_receive(s, 1001, "site1/b", data, half, &out);
    kvc_swim_receive(s, 1002, "site2/c", data + half, size - half, &out);
    kvc_swim_tick(s, 60000, &out);
    for (size_t i = 0; i < out.n_msgs; i++)
        if (out.msgs[i].len > cfg.max_message_bytes)
            abort();
    kvc_outbox_free(&out);
    kvc_swim_destroy(&s);
    return 0;
}
