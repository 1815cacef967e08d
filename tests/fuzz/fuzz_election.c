/*
 * libFuzzer target for the election decoder: feeds arbitrary bytes as
 * messages from voters into a core that leads a three-voter site (so every
 * handler, leader or follower, is reachable), then runs its timers; and
 * decodes the whole input as a gossiped view (round trip checked). Any
 * crash, leak, UB or oversized output is a bug.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "election.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *voters[] = {"site-a/a", "site-a/b", "site-a/c"};
    kvc_election_config_t cfg;
    kvc_election_config_profile(&cfg, "lan");
    /* Restored term 3 with our own vote; the promise has run out by 2000. */
    kvc_election_t *e = kvc_election_new(&cfg, "site-a/a", 3, "site-a/a", 1, 1000);
    if (!e)
        return 0;
    kvc_outbox_t out;
    kvc_outbox_init(&out, 0);
    kvc_election_set_voters(e, voters, 3, 1000);
    /* Split the input in three messages so state carries over between them. */
    size_t third = size / 3;
    kvc_election_receive(e, 2000, "site-a/b", data, third, &out);
    kvc_election_tick(e, 2500, &out);
    kvc_election_receive(e, 2600, "site-a/c", data + third, third, &out);
    kvc_election_receive(e, 2700, "site-a/b", data + 2 * third, size - 2 * third, &out);
    kvc_election_tick(e, 60000, &out);
    for (size_t i = 0; i < out.n_msgs; i++)
        if (out.msgs[i].len > KVC_ELECTION_WIRE_MAX || out.msgs[i].channel != KVC_ELECTION_CHANNEL)
            abort();
    /* The whole input as a gossiped view: a decoded one re-encodes to an
     * equal view. */
    kvc_election_view_t v, w;
    if (kvc_election_view_decode(data, size, &v) == 0) {
        uint8_t buf[KVC_ELECTION_VIEW_MAX];
        size_t n;
        if (kvc_election_view_encode(&v, buf, sizeof buf, &n) != 0 ||
            kvc_election_view_decode(buf, n, &w) != 0 || w.term != v.term ||
            w.state != v.state || w.voter != v.voter || strcmp(w.leader, v.leader) != 0)
            abort();
    }
    kvc_outbox_free(&out);
    kvc_election_destroy(&e);
    return 0;
}
