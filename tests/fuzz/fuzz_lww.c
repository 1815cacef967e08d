/*
 * libFuzzer target for the LWW map decoders: feeds arbitrary bytes as
 * messages from peers in scope into a map that already holds entries, a
 * tombstone and a GC horizon (so every handler and the stale-value path are
 * reachable), runs its timers, and also hands the bytes to the record
 * loader. Any crash, leak, UB, oversized or misaddressed output is a bug.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lww.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *peers[] = {"site-a/a", "site-a/b", "site-a/c"};
    kvc_lww_config_t cfg;
    kvc_lww_config_default(&cfg);
    cfg.max_entries = 64;
    cfg.value_max = 512;
    cfg.msg_max = 4096;
    cfg.tomb_min_age_ms = 1000;
    kvc_lww_t *m = kvc_lww_new(&cfg, "site-a/a", KVC_LWW_CHANNEL_REGISTRY, 1);
    if (!m)
        return 0;
    kvc_outbox_t out;
    kvc_outbox_init(&out, 1u << 20);
    kvc_lww_set_peers(m, peers, 1, 1000); /* alone: the tombstone is collected */
    kvc_lww_put(m, 1000, (const uint8_t *)"gone", 4, (const uint8_t *)"x", 1, &out);
    kvc_lww_del(m, 1001, (const uint8_t *)"gone", 4, &out);
    kvc_lww_tick(m, 1002, &out);
    kvc_lww_tick(m, 100000, &out); /* collects: a horizon now */
    kvc_lww_put(m, 100000, (const uint8_t *)"model/a", 7, (const uint8_t *)"v1", 2, &out);
    kvc_lww_del(m, 100001, (const uint8_t *)"model/b", 7, &out);
    kvc_lww_set_peers(m, peers, 3, 100002);
    kvc_outbox_reset(&out);
    size_t third = size / 3;
    kvc_lww_receive(m, 100010, "site-a/b", data, third, &out);
    kvc_lww_tick(m, 200000, &out);
    kvc_lww_receive(m, 200010, "site-a/c", data + third, third, &out);
    kvc_lww_receive(m, 200020, "site-a/b", data + 2 * third, size - 2 * third, &out);
    kvc_lww_tick(m, 400000, &out);
    kvc_lww_load(m, data, size);
    for (size_t i = 0; i < out.n_msgs; i++)
        if (out.msgs[i].len > cfg.msg_max || out.msgs[i].channel != KVC_LWW_CHANNEL_REGISTRY ||
            (strcmp(out.msgs[i].to, "site-a/b") != 0 && strcmp(out.msgs[i].to, "site-a/c") != 0))
            abort();
    if (kvc_lww_count(m) > cfg.max_entries)
        abort();
    kvc_outbox_free(&out);
    kvc_lww_destroy(&m);
    return 0;
}
