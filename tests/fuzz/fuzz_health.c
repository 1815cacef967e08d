/*
 * libFuzzer target for the health core: feeds arbitrary bytes as reports
 * from members into a core that already holds a report, knows members and
 * has sent its own (so the stale, replace and table paths are reachable),
 * then runs its timers and lookups; and decodes the whole input as a
 * Report, checking that a decoded one re-encodes and decodes to the same
 * value. Any crash, leak, UB or oversized output is a bug.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "health.h"

static kvc_health_local_t g_local;
static kvc_health_report_t g_a, g_b;
static kvc_health_view_t g_views[8];

/* 1 if two decoded reports hold the same values. */
static int s_same(const kvc_health_report_t *a, const kvc_health_report_t *b)
{
    const kvc_health_local_t *x = &a->body, *y = &b->body;
    if (a->epoch != b->epoch || a->seq != b->seq || strcmp(x->site, y->site) ||
        strcmp(x->region, y->region) || strcmp(x->arch, y->arch) ||
        strcmp(x->forward, y->forward) || x->accel != y->accel ||
        x->accel_count != y->accel_count || x->n_models != y->n_models)
        return 0;
    for (size_t i = 0; i < x->n_models; i++) {
        const kvc_health_model_t *m = &x->models[i], *n = &y->models[i];
        if (strcmp(m->name, n->name) || m->ready != n->ready || m->in_flight != n->in_flight ||
            m->capacity != n->capacity || m->p50_us != n->p50_us || m->p99_us != n->p99_us)
            return 0;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kvc_health_t *h = kvc_health_new("site-a/a", NULL, 7);
    if (!h)
        return 0;
    kvc_outbox_t out;
    kvc_outbox_init(&out, 0);
    static const char *members[] = {"site-b/b", "site-c/c", "site-a/d"};
    for (size_t i = 0; i < 3; i++) {
        kvc_member_event_t ev = {.type = KVC_MEMBER_EV_JOINED};
        kvc_strlcpy(ev.id, members[i], sizeof ev.id);
        kvc_health_member_event(h, 0, &ev, &out);
    }
    memset(&g_local, 0, sizeof g_local);
    kvc_strlcpy(g_local.region, "eu", sizeof g_local.region);
    g_local.n_models = 2;
    kvc_strlcpy(g_local.models[0].name, "resnet", sizeof g_local.models[0].name);
    kvc_strlcpy(g_local.models[1].name, "bert", sizeof g_local.models[1].name);
    g_local.models[0].ready = 1;
    g_local.models[0].capacity = 8;
    g_local.models[0].p50_us = 1000;
    g_local.models[1].p50_us = -1;
    g_local.models[1].p99_us = -1;
    kvc_health_set_local(h, 0, &g_local);
    kvc_health_tick(h, 1, &out);
    /* site-b/b already holds a report at (5, 5) */
    kvc_strlcpy(g_local.site, "site-b", sizeof g_local.site);
    uint8_t buf[KVC_HEALTH_WIRE_MAX];
    size_t n;
    if (kvc_health_encode(&g_local, 5, 5, buf, sizeof buf, &n) == 0)
        kvc_health_receive(h, 2, "site-b/b", buf, n, &out);
    /* The input in three parts, from three senders, state carrying over. */
    size_t third = size / 3;
    kvc_health_receive(h, 10, "site-b/b", data, third, &out);
    kvc_health_receive(h, 20, "site-c/c", data + third, third, &out);
    kvc_health_receive(h, 30, "site-z/new", data + 2 * third, size - 2 * third, &out);
    kvc_health_receive(h, 40, "site-c/c", data, size, &out);
    kvc_health_tick(h, 3000, &out);
    kvc_health_lookup(h, 3000, "resnet", g_views, 8);
    kvc_health_member(h, 3000, "site-c/c", &g_a);
    kvc_health_tick(h, 10000, &out);
    for (size_t i = 0; i < out.n_msgs; i++)
        if (out.msgs[i].len > KVC_HEALTH_WIRE_MAX || out.msgs[i].channel != KVC_HEALTH_CHANNEL)
            abort();
    /* A report that decodes re-encodes to the same value. */
    if (kvc_health_decode(data, size, &g_a) == 0) {
        if (kvc_health_encode(&g_a.body, g_a.epoch, g_a.seq, buf, sizeof buf, &n) != 0 ||
            kvc_health_decode(buf, n, &g_b) != 0 || !s_same(&g_a, &g_b))
            abort();
    }
    kvc_outbox_free(&out);
    kvc_health_destroy(&h);
    return 0;
}
