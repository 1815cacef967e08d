/*
 * libFuzzer target for the join broker's decoders: the input is fed as a
 * node's message (kvc.join.NodeMessage) to a broker that is its site's
 * coordinator (so the request checks, the node records and the enrollment
 * path run), as a peer's message (kvc.join.PeerMessage: forward or reply)
 * to the same broker, and to the record decoder (kvc.join.NodeRecord).
 * The broker has no Kubernetes client, so nothing leaves the process; its
 * records live in a small in-memory kv. Any crash, leak or UB is a bug.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "clock.h"
#include "config.h"
#include "election.h"
#include "nodes.h"

/* --- an in-memory kv: a few dozen entries, overwritten round robin ------- */
#define MEM_N 64
typedef struct {
    int used;
    char ns;
    uint8_t key[64];
    size_t klen;
    uint8_t val[KVC_NODE_RECORD_MAX];
    size_t vlen;
} s_mem_t;
static s_mem_t s_mem[MEM_N];
static size_t s_mem_next;

static s_mem_t *s_find(char ns, const void *key, size_t klen)
{
    for (size_t i = 0; i < MEM_N; i++)
        if (s_mem[i].used && s_mem[i].ns == ns && s_mem[i].klen == klen &&
            memcmp(s_mem[i].key, key, klen) == 0)
            return &s_mem[i];
    return NULL;
}

static int s_get(void *self, char ns, const void *key, size_t klen, void *buf, size_t cap,
                 size_t *vlen)
{
    s_mem_t *m = s_find(ns, key, klen);
    if (!m)
        return KVC_ENOENT;
    *vlen = m->vlen;
    if (m->vlen > cap)
        return KVC_ERANGE;
    memcpy(buf, m->val, m->vlen);
    return 0;
}

static int s_put(void *self, char ns, const void *key, size_t klen, const void *val, size_t vlen)
{
    if (klen > sizeof s_mem[0].key || vlen > sizeof s_mem[0].val)
        return KVC_ERANGE;
    s_mem_t *m = s_find(ns, key, klen);
    if (!m) {
        m = &s_mem[s_mem_next++ % MEM_N];
        m->used = 1;
        m->ns = ns;
        memcpy(m->key, key, klen);
        m->klen = klen;
    }
    memcpy(m->val, val, vlen);
    m->vlen = vlen;
    return 0;
}

static int s_del(void *self, char ns, const void *key, size_t klen)
{
    s_mem_t *m = s_find(ns, key, klen);
    if (!m)
        return KVC_ENOENT;
    m->used = 0;
    return 0;
}

static int s_each(void *self, char ns, kvc_kv_each_fn fn, void *arg)
{
    for (size_t i = 0; i < MEM_N; i++)
        if (s_mem[i].used && s_mem[i].ns == ns) {
            int rc = fn(s_mem[i].key, s_mem[i].klen, s_mem[i].val, s_mem[i].vlen, arg);
            if (rc)
                return rc;
        }
    return 0;
}

static size_t s_sent;
static void s_to_node(void *arg, const uint8_t *routing, size_t rlen, const uint8_t *msg,
                      size_t len)
{
    if (len > KVC_BROKER_MSG_MAX)
        abort();
    s_sent++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static kvc_broker_t *b;
    static kvc_election_t *e;
    static kvc_kv_t kv = {s_get, s_put, s_del, s_each, NULL};
    static uint64_t now = 1000;
    if (!b) {
        kvc_election_config_t ec;
        kvc_election_config_profile(&ec, "lan");
        e = kvc_election_new(&ec, "site-a/a", 0, NULL, 1, now);
        const char *ids[] = {"site-a/a"};
        kvc_election_set_voters(e, ids, 1, now);
        kvc_config_t *cfg = calloc(1, sizeof *cfg);
        kvc_config_defaults(cfg);
        snprintf(cfg->site, sizeof cfg->site, "site-a");
        snprintf(cfg->name, sizeof cfg->name, "a");
        b = kvc_broker_new(cfg, "site-a/a", &kv, e, s_to_node, NULL, NULL);
        free(cfg);
        if (!b)
            abort();
    }
    kvc_outbox_t out;
    kvc_outbox_init(&out, 0);
    /* keep the core the coordinator: tick it at the heartbeat pace */
    now += 50;
    kvc_election_tick(e, now, &out);
    kvc_broker_election_changed(b, now);
    uint8_t key[32] = {1, 2, 3}, routing[5] = {0, 1, 2, 3, 4};
    key[31] = size ? data[0] : 0;
    kvc_broker_node_message(b, now, (int64_t)kvc_clock_wall_ms(), key, routing, sizeof routing,
                            data, size, &out);
    kvc_broker_core_ops.receive(b, now, "site-a/b", data, size, &out);
    kvc_broker_core_ops.tick(b, now, &out);
    for (size_t i = 0; i < out.n_msgs; i++)
        if (out.msgs[i].len > KVC_BROKER_MSG_MAX)
            abort();
    kvc_node_t n;
    if (kvc_node_decode(data, size, &n) == 0) {
        uint8_t buf[KVC_NODE_RECORD_MAX];
        size_t len;
        if (kvc_node_encode(&n, buf, sizeof buf, &len) != 0)
            abort();
    }
    kvc_outbox_free(&out);
    return 0;
}
