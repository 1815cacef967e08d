/* Unit tests of peer/registry.c over the peer's kv: publish (stamping,
 * the rules between versions, republish), latest lookup, listing that
 * skips damaged records, retire, site status; and the registry's
 * replicated map (peer/repmap.c) between two peers of different sites:
 * scope is every member, a publish reaches the other peer, is in its LMDB
 * and survives a restart, a retire reaches it too, and a full map refuses
 * a write with nothing stored. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "registry.h"
#include "repmap.h"

typedef struct {
    char dir[64];
    kvc_store_t *st;
    kvc_kv_t kv;
} s_env_t;

static void s_rmrf(const char *dir)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static int s_setup(void **state)
{
    s_env_t *e = calloc(1, sizeof *e);
    snprintf(e->dir, sizeof e->dir, "/tmp/kvc-registry-XXXXXX");
    assert_non_null(mkdtemp(e->dir));
    e->st = kvc_store_open(e->dir, 4 << 20, NULL);
    assert_non_null(e->st);
    e->kv = kvc_kv_store(e->st);
    *state = e;
    return 0;
}

static int s_teardown(void **state)
{
    s_env_t *e = *state;
    kvc_store_destroy(&e->st);
    s_rmrf(e->dir);
    free(e);
    return 0;
}

static void s_model(kvc_model_t *m, const char *name, uint64_t version)
{
    kvc_model_init(m);
    strcpy(m->name, name);
    m->version = version;
    snprintf(m->storage, sizeof m->storage, "nfs://nas/exports/%s", name);
    assert_int_equal(kvc_model_tensor_parse("x:float32:-1,4", &m->inputs[0], NULL), 0);
    m->n_inputs = 1;
}

static int s_count(const kvc_model_t *m, void *arg)
{
    (void)m;
    (*(int *)arg)++;
    return 0;
}

static void test_publish_rules(void **state)
{
    s_env_t *e = *state;
    kvc_model_t m, got;
    kvc_err_t err = {0};
    s_model(&m, "resnet", 1);
    assert_int_equal(kvc_registry_publish(&e->kv, &m, "lisbon/gw-1", 1000, &err), 0);
    s_model(&m, "resnet", 3);
    assert_int_equal(kvc_registry_publish(&e->kv, &m, "osaka/gw-1", 2000, &err), 0);
    assert_int_equal(kvc_registry_get(&e->kv, "resnet", 0, &got), 0);
    assert_int_equal(got.version, 3); /* the newest */
    assert_string_equal(got.published_by, "osaka/gw-1");
    assert_int_equal(got.published_ms, 2000);
    assert_int_equal(kvc_registry_get(&e->kv, "resnet", 1, &got), 0);
    assert_string_equal(got.published_by, "lisbon/gw-1");
    assert_int_equal(kvc_registry_get(&e->kv, "resnet", 2, &got), KVC_ENOENT);
    assert_int_equal(kvc_registry_get(&e->kv, "vgg", 0, &got), KVC_ENOENT);

    /* another storage or framework for a version of the same model */
    s_model(&m, "resnet", 4);
    strcpy(m.storage, "nfs://nas/other");
    assert_int_equal(kvc_registry_publish(&e->kv, &m, "a/b", 1, &err), KVC_EINVAL);
    assert_non_null(strstr(err.msg, "storage"));
    s_model(&m, "resnet", 4);
    m.framework = KVC_FW_KSERVE_V2;
    assert_int_equal(kvc_registry_publish(&e->kv, &m, "a/b", 1, &err), KVC_EINVAL);
    assert_non_null(strstr(err.msg, "framework"));
    /* republishing version 1 with other tensors is refused, with the same
     * files it updates placement and labels */
    s_model(&m, "resnet", 1);
    m.inputs[0].dims[1] = 8;
    assert_int_equal(kvc_registry_publish(&e->kv, &m, "a/b", 1, &err), KVC_EEXIST);
    s_model(&m, "resnet", 1);
    strcpy(m.labels[0], "stable"), m.n_labels = 1;
    assert_int_equal(kvc_registry_publish(&e->kv, &m, "a/b", 5, &err), 0);
    assert_int_equal(kvc_registry_get(&e->kv, "resnet", 1, &got), 0);
    assert_int_equal(got.n_labels, 1);
    /* an invalid entry stores nothing */
    s_model(&m, "Bad", 1);
    assert_int_equal(kvc_registry_publish(&e->kv, &m, "a/b", 1, &err), KVC_EINVAL);
    int n = 0;
    assert_int_equal(kvc_registry_each(&e->kv, s_count, &n, NULL), 0);
    assert_int_equal(n, 2);

    /* retire */
    assert_int_equal(kvc_registry_retire(&e->kv, "resnet", 3, &err), 0);
    assert_int_equal(kvc_registry_get(&e->kv, "resnet", 0, &got), 0);
    assert_int_equal(got.version, 1);
    assert_int_equal(kvc_registry_retire(&e->kv, "resnet", 3, &err), KVC_ENOENT);
    assert_non_null(strstr(err.msg, "resnet:3"));
    assert_int_equal(kvc_registry_retire(&e->kv, "resnet", 0, &err), KVC_EINVAL);
}

static void test_damaged_skipped(void **state)
{
    s_env_t *e = *state;
    kvc_model_t m;
    s_model(&m, "good", 1);
    assert_int_equal(kvc_registry_publish(&e->kv, &m, "a/b", 1, NULL), 0);
    uint8_t key[KVC_MODEL_KEY_MAX];
    size_t kl = kvc_model_key("bad", 1, key, sizeof key);
    assert_int_equal(e->kv.put(e->kv.self, KVC_MODEL_NS, key, kl, "\xff\xff", 2), 0);
    /* a record under another model's key */
    uint8_t rec[KVC_MODEL_RECORD_MAX];
    size_t rl;
    assert_int_equal(kvc_model_encode(&m, rec, sizeof rec, &rl), 0);
    kl = kvc_model_key("liar", 1, key, sizeof key);
    assert_int_equal(e->kv.put(e->kv.self, KVC_MODEL_NS, key, kl, rec, rl), 0);
    int n = 0;
    size_t damaged = 0;
    assert_int_equal(kvc_registry_each(&e->kv, s_count, &n, &damaged), 0);
    assert_int_equal(n, 1);
    assert_int_equal(damaged, 2);
    kvc_model_t got;
    assert_int_equal(kvc_registry_get(&e->kv, "bad", 1, &got), KVC_EPARSE);
}

typedef struct {
    int n;
    kvc_model_status_t last;
} s_st_t;

static int s_status_seen(const kvc_model_status_t *s, void *arg)
{
    s_st_t *w = arg;
    w->n++;
    w->last = *s;
    return 0;
}

static void test_status(void **state)
{
    s_env_t *e = *state;
    kvc_model_status_t s = {.version = 2, .applied = 1, .desired_replicas = 2,
                            .ready_replicas = 2};
    strcpy(s.site, "lisbon"), strcpy(s.model, "resnet");
    assert_int_equal(kvc_registry_status_put(&e->kv, &s), 0);
    s.ready_replicas = 1; /* the same key: replaced */
    assert_int_equal(kvc_registry_status_put(&e->kv, &s), 0);
    strcpy(s.site, "osaka");
    assert_int_equal(kvc_registry_status_put(&e->kv, &s), 0);
    s_st_t w = {0};
    assert_int_equal(kvc_registry_status_each(&e->kv, s_status_seen, &w), 0);
    assert_int_equal(w.n, 2);
    assert_int_equal(w.last.ready_replicas, 1);
    assert_int_equal(kvc_registry_status_del(&e->kv, "lisbon", "resnet", 2), 0);
    memset(&w, 0, sizeof w);
    assert_int_equal(kvc_registry_status_each(&e->kv, s_status_seen, &w), 0);
    assert_int_equal(w.n, 1);
    assert_string_equal(w.last.site, "osaka");
    strcpy(s.site, "Not A Site");
    assert_int_equal(kvc_registry_status_put(&e->kv, &s), KVC_EINVAL);
}

/* --- two peers' registries, messages carried by hand --------------------- */

typedef struct {
    char dir[64];
    kvc_store_t *st;
    kvc_repmap_t *rm;
    kvc_outbox_t out;
    kvc_kv_t kv;
    const char *id;
} s_peer_t;

static void s_peer_open(s_peer_t *p, const kvc_repmap_opts_t *o)
{
    p->st = kvc_store_open(p->dir, 1 << 20, NULL);
    assert_non_null(p->st);
    kvc_err_t err = {0};
    p->rm = kvc_repmap_new(p->st, p->id, &p->out, o, &err);
    assert_non_null(p->rm);
    p->kv = kvc_repmap_kv(p->rm);
}

static void s_peer_close(s_peer_t *p)
{
    kvc_repmap_destroy(&p->rm);
    kvc_store_destroy(&p->st);
}

/* Delivers every message in a's outbox to b (and b's to a) until quiet. */
static void s_pump(s_peer_t *a, s_peer_t *b)
{
    for (int round = 0; round < 20; round++) {
        size_t moved = 0;
        s_peer_t *ps[2] = {a, b};
        for (int k = 0; k < 2; k++) {
            s_peer_t *from = ps[k], *to = ps[1 - k];
            const kvc_core_ops_t *ops = kvc_repmap_core_ops(to->rm);
            kvc_outbox_t copy;
            kvc_outbox_init(&copy, 0);
            for (size_t i = 0; i < from->out.n_msgs; i++) {
                const kvc_out_msg_t *m = &from->out.msgs[i];
                assert_string_equal(m->to, to->id);
                assert_int_equal(m->channel, KVC_LWW_CHANNEL_REGISTRY);
                assert_int_equal(kvc_outbox_put(&copy, m->to, m->channel,
                                                kvc_outbox_data(&from->out, i), m->len),
                                 0);
            }
            kvc_outbox_reset(&from->out);
            for (size_t i = 0; i < copy.n_msgs; i++, moved++)
                ops->receive(to->rm, 0, from->id, kvc_outbox_data(&copy, i), copy.msgs[i].len,
                             &to->out);
            kvc_outbox_free(&copy);
        }
        if (!moved)
            return;
    }
    fail_msg("the registries did not go quiet");
}

static void test_replicated(void **state)
{
    (void)state;
    s_peer_t a = {.id = "lisbon/gw-1"}, b = {.id = "osaka/gw-1"};
    snprintf(a.dir, sizeof a.dir, "/tmp/kvc-reg-a-XXXXXX");
    snprintf(b.dir, sizeof b.dir, "/tmp/kvc-reg-b-XXXXXX");
    assert_non_null(mkdtemp(a.dir));
    assert_non_null(mkdtemp(b.dir));
    kvc_outbox_init(&a.out, 0);
    kvc_outbox_init(&b.out, 0);
    s_peer_open(&a, &kvc_repmap_registry_opts);
    s_peer_open(&b, &kvc_repmap_registry_opts);
    /* another site's member is in the registry's scope */
    kvc_member_event_t ev = {.type = KVC_MEMBER_EV_JOINED};
    strcpy(ev.id, b.id);
    kvc_repmap_core_ops(a.rm)->member_event(a.rm, 0, &ev, &a.out);
    strcpy(ev.id, a.id);
    kvc_repmap_core_ops(b.rm)->member_event(b.rm, 0, &ev, &b.out);
    assert_int_equal(kvc_repmap_scope_size(a.rm), 1);
    /* the site map would not take it */
    s_peer_t c = {.id = "lisbon/gw-9"};
    snprintf(c.dir, sizeof c.dir, "/tmp/kvc-reg-c-XXXXXX");
    assert_non_null(mkdtemp(c.dir));
    kvc_outbox_init(&c.out, 0);
    s_peer_open(&c, &kvc_repmap_site_opts);
    strcpy(ev.id, b.id);
    kvc_repmap_core_ops(c.rm)->member_event(c.rm, 0, &ev, &c.out);
    assert_int_equal(kvc_repmap_scope_size(c.rm), 0);
    s_peer_close(&c);
    s_rmrf(c.dir);
    kvc_outbox_free(&c.out);

    kvc_model_t m, got;
    s_model(&m, "resnet", 7);
    assert_int_equal(kvc_registry_publish(&a.kv, &m, a.id, 1, NULL), 0);
    assert_true(a.out.n_msgs > 0); /* pushed at once */
    s_pump(&a, &b);
    assert_int_equal(kvc_registry_get(&b.kv, "resnet", 7, &got), 0);
    assert_string_equal(got.published_by, a.id);
    /* b's copy is on its disk: a restarted b still has it */
    s_peer_close(&b);
    s_peer_open(&b, &kvc_repmap_registry_opts);
    assert_int_equal(kvc_registry_get(&b.kv, "resnet", 7, &got), 0);
    /* a retire at b reaches a */
    strcpy(ev.id, a.id);
    kvc_repmap_core_ops(b.rm)->member_event(b.rm, 0, &ev, &b.out);
    assert_int_equal(kvc_registry_retire(&b.kv, "resnet", 7, NULL), 0);
    s_pump(&a, &b);
    assert_int_equal(kvc_registry_get(&a.kv, "resnet", 7, &got), KVC_ENOENT);

    s_peer_close(&a);
    s_peer_close(&b);
    kvc_outbox_free(&a.out);
    kvc_outbox_free(&b.out);
    s_rmrf(a.dir);
    s_rmrf(b.dir);
}

static void test_full_refused(void **state)
{
    (void)state;
    s_peer_t a = {.id = "lisbon/gw-1"};
    snprintf(a.dir, sizeof a.dir, "/tmp/kvc-reg-f-XXXXXX");
    assert_non_null(mkdtemp(a.dir));
    kvc_outbox_init(&a.out, 0);
    kvc_repmap_opts_t o = kvc_repmap_registry_opts;
    o.max_entries = 3;
    s_peer_open(&a, &o);
    kvc_model_t m;
    kvc_err_t err = {0};
    for (uint64_t v = 1; v <= 3; v++) {
        s_model(&m, "resnet", v);
        assert_int_equal(kvc_registry_publish(&a.kv, &m, a.id, 1, &err), 0);
    }
    s_model(&m, "resnet", 4);
    assert_int_equal(kvc_registry_publish(&a.kv, &m, a.id, 1, &err), KVC_ERANGE);
    assert_non_null(strstr(err.msg, "full"));
    kvc_model_t got;
    assert_int_equal(kvc_registry_get(&a.kv, "resnet", 4, &got), KVC_ENOENT);
    /* and after a restart too: nothing half-made on disk */
    s_peer_close(&a);
    s_peer_open(&a, &o);
    assert_int_equal(kvc_registry_get(&a.kv, "resnet", 4, &got), KVC_ENOENT);
    assert_int_equal(kvc_registry_get(&a.kv, "resnet", 3, &got), 0);
    s_peer_close(&a);
    kvc_outbox_free(&a.out);
    s_rmrf(a.dir);
}

/* The LMDB map (1 MiB here) fills before the map's entry bound: the write
 * that does not fit is refused whole, everything before it is kept, also
 * across a restart. */
static void test_store_full(void **state)
{
    (void)state;
    s_peer_t a = {.id = "lisbon/gw-1"};
    snprintf(a.dir, sizeof a.dir, "/tmp/kvc-reg-s-XXXXXX");
    assert_non_null(mkdtemp(a.dir));
    kvc_outbox_init(&a.out, 0);
    s_peer_open(&a, &kvc_repmap_registry_opts);
    kvc_model_t m;
    kvc_err_t err = {0};
    int ok = 0, rc = 0;
    char name[32];
    while (ok < 5000) {
        snprintf(name, sizeof name, "m%d", ok);
        s_model(&m, name, 1);
        for (size_t i = 0; i < KVC_MODEL_LABELS_MAX; i++)
            snprintf(m.labels[i], sizeof m.labels[i], "label-%zu-%060d", i, 0);
        m.n_labels = KVC_MODEL_LABELS_MAX;
        rc = kvc_registry_publish(&a.kv, &m, a.id, 1, &err);
        if (rc)
            break;
        ok++;
    }
    assert_int_equal(rc, KVC_ERANGE);
    assert_non_null(strstr(err.msg, "nothing was stored"));
    assert_true(ok > 50); /* about 1 KiB each: most of the map was usable */
    kvc_model_t got;
    assert_int_equal(kvc_registry_get(&a.kv, name, 1, &got), KVC_ENOENT);
    /* a retire still fits (a tombstone is small) */
    assert_int_equal(kvc_registry_retire(&a.kv, "m0", 1, &err), 0);
    s_peer_close(&a);
    s_peer_open(&a, &kvc_repmap_registry_opts);
    int n = 0;
    assert_int_equal(kvc_registry_each(&a.kv, s_count, &n, NULL), 0);
    assert_int_equal(n, ok - 1);
    assert_int_equal(kvc_registry_get(&a.kv, name, 1, &got), KVC_ENOENT);
    s_peer_close(&a);
    kvc_outbox_free(&a.out);
    s_rmrf(a.dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_publish_rules, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_damaged_skipped, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_status, s_setup, s_teardown),
        cmocka_unit_test(test_replicated),
        cmocka_unit_test(test_full_refused),
        cmocka_unit_test(test_store_full),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
