/*
 * Unit tests of federation/core.c: the shared outbox (bound, channels,
 * events) and the registration table (channel lookup, ticking due cores,
 * earliest deadline, member events handed to every core).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "core.h"

/* A scripted core: records what it hears, ticks at `deadline`. */
typedef struct {
    uint64_t deadline;
    int ticks, received, events;
    char last_from[64];
    uint8_t last[16];
    size_t last_len;
    int echo_on_event; /* append an event of its own when it hears "x/y" joined */
} fake_t;

static int f_receive(void *core, uint64_t now, const char *from, const uint8_t *msg, size_t len,
                     kvc_outbox_t *out)
{
    fake_t *f = core;
    f->received++;
    kvc_strlcpy(f->last_from, from, sizeof f->last_from);
    f->last_len = len < sizeof f->last ? len : sizeof f->last;
    memcpy(f->last, msg, f->last_len);
    return kvc_outbox_put(out, from, 41, msg, len); /* answer on our channel */
}

static int f_tick(void *core, uint64_t now, kvc_outbox_t *out)
{
    fake_t *f = core;
    f->ticks++;
    f->deadline = now + 100;
    return 0;
}

static uint64_t f_deadline(const void *core)
{
    return ((const fake_t *)core)->deadline;
}

static void f_event(void *core, uint64_t now, const kvc_member_event_t *ev, kvc_outbox_t *out)
{
    fake_t *f = core;
    f->events++;
    if (f->echo_on_event && strcmp(ev->id, "x/y") == 0 && ev->type == KVC_MEMBER_EV_JOINED)
        kvc_outbox_event(out, KVC_MEMBER_EV_META, "x/y", ev->incarnation, 7);
}

static const kvc_core_ops_t f_ops = {.name = "fake", .channel = 41, .receive = f_receive,
                                     .tick = f_tick, .next_deadline = f_deadline,
                                     .member_event = f_event};
static const kvc_core_ops_t g_ops = {.name = "ticker", .channel = 0, .tick = f_tick,
                                     .next_deadline = f_deadline, .member_event = f_event};
static const kvc_core_ops_t dup_ops = {.name = "dup", .channel = 41};

static void test_outbox_bound_and_channels(void **state)
{
    kvc_outbox_t out;
    kvc_outbox_init(&out, 100);
    assert_int_equal(kvc_outbox_put(&out, "a/b", 20, "hello", 5), 0);
    assert_int_equal(kvc_outbox_put(&out, "c/d", 40, "world!", 6), 0);
    assert_int_equal(out.n_msgs, 2);
    assert_int_equal(out.msgs[1].channel, 40);
    assert_string_equal(out.msgs[1].to, "c/d");
    assert_memory_equal(kvc_outbox_data(&out, 0), "hello", 5);
    assert_memory_equal(kvc_outbox_data(&out, 1), "world!", 6);
    /* The bound: 11 bytes used of 100; 90 more fit, 89 + 1 more does not. */
    uint8_t big[100] = {0};
    assert_int_equal(kvc_outbox_put(&out, "a/b", 20, big, 90), KVC_ERANGE);
    assert_int_equal(out.refused, 1);
    assert_int_equal(kvc_outbox_put(&out, "a/b", 20, big, 89), 0);
    assert_int_equal(out.n_bytes, 100);
    assert_null(kvc_outbox_reserve(&out, 1));
    assert_int_equal(out.refused, 2);
    /* A recipient id longer than any member id is refused. */
    char longid[KVC_MEMBER_ID_MAX + 2];
    memset(longid, 'a', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    kvc_outbox_reset(&out);
    assert_int_equal(kvc_outbox_put(&out, longid, 20, "x", 1), KVC_ERANGE);
    assert_int_equal(out.n_msgs, 0);
    assert_int_equal(out.n_bytes, 0); /* nothing committed */
    assert_int_equal(kvc_outbox_event(&out, KVC_MEMBER_EV_DEAD, "a/b", 3, 0), 0);
    assert_int_equal(out.events[0].type, KVC_MEMBER_EV_DEAD);
    assert_int_equal(out.events[0].incarnation, 3);
    assert_string_equal(kvc_member_event_name(KVC_MEMBER_EV_DEAD), "dead");
    assert_string_equal(kvc_member_event_name((kvc_member_event_type_t)99), "unknown");
    kvc_outbox_free(&out);
    assert_int_equal(out.max_bytes, 100); /* the bound survives free */
}

static void test_outbox_alloc_failure(void **state)
{
    kvc_outbox_t out;
    kvc_outbox_init(&out, 0);
    kvc_alloc_fail_after(0);
    assert_int_equal(kvc_outbox_put(&out, "a/b", 20, "x", 1), KVC_ERANGE);
    assert_int_equal(kvc_outbox_event(&out, KVC_MEMBER_EV_DEAD, "a/b", 3, 0), KVC_ENOMEM);
    kvc_alloc_fail_after(-1);
    assert_int_equal(out.n_msgs, 0);
    assert_int_equal(out.n_events, 0);
    assert_int_equal(kvc_outbox_put(&out, "a/b", 20, "x", 1), 0);
    kvc_outbox_free(&out);
}

static void test_table(void **state)
{
    kvc_core_set_t set;
    kvc_core_set_init(&set);
    fake_t a = {.deadline = 500}, b = {.deadline = 300};
    assert_int_equal(kvc_core_set_add(&set, &f_ops, &a), 0);
    assert_int_equal(kvc_core_set_add(&set, &dup_ops, &a), KVC_EEXIST);
    assert_int_equal(kvc_core_set_add(&set, NULL, &a), KVC_EINVAL);
    assert_int_equal(kvc_core_set_add(&set, &g_ops, &b), 0);
    assert_ptr_equal(kvc_core_set_find(&set, 41)->core, &a);
    assert_null(kvc_core_set_find(&set, 0)); /* channel 0 is "none" */
    assert_null(kvc_core_set_find(&set, 99));
    /* Earliest deadline of all cores. */
    assert_int_equal(kvc_core_set_next_deadline(&set), 300);
    kvc_outbox_t out;
    kvc_outbox_init(&out, 0);
    /* Only due cores tick. */
    assert_int_equal(kvc_core_set_tick(&set, 299, &out), 0);
    assert_int_equal(kvc_core_set_tick(&set, 300, &out), 1);
    assert_int_equal(b.ticks, 1);
    assert_int_equal(a.ticks, 0);
    assert_int_equal(kvc_core_set_next_deadline(&set), 400);
    assert_int_equal(kvc_core_set_tick(&set, 500, &out), 2);
    assert_int_equal(kvc_core_set_next_deadline(&set), 600);
    /* Messages reach the core of their channel; others are counted. */
    assert_int_equal(kvc_core_set_receive(&set, 41, 500, "s/p", (const uint8_t *)"ab", 2, &out), 0);
    assert_int_equal(a.received, 1);
    assert_string_equal(a.last_from, "s/p");
    assert_memory_equal(a.last, "ab", 2);
    assert_int_equal(out.n_msgs, 1);
    assert_int_equal(out.msgs[0].channel, 41);
    assert_int_equal(kvc_core_set_receive(&set, 77, 500, "s/p", (const uint8_t *)"ab", 2, &out),
                     KVC_ENOENT);
    assert_int_equal(set.unknown_channel, 1);
    assert_int_equal(a.received, 1);
    kvc_outbox_free(&out);
}

static void test_events_reach_every_core(void **state)
{
    kvc_core_set_t set;
    kvc_core_set_init(&set);
    fake_t a = {.deadline = KVC_DEADLINE_NONE, .echo_on_event = 1};
    fake_t b = {.deadline = KVC_DEADLINE_NONE};
    assert_int_equal(kvc_core_set_next_deadline(&set), KVC_DEADLINE_NONE);
    kvc_core_set_add(&set, &f_ops, &a);
    kvc_core_set_add(&set, &g_ops, &b);
    assert_int_equal(kvc_core_set_next_deadline(&set), KVC_DEADLINE_NONE);
    kvc_outbox_t out;
    kvc_outbox_init(&out, 0);
    kvc_outbox_event(&out, KVC_MEMBER_EV_JOINED, "x/y", 1, 0);
    kvc_outbox_event(&out, KVC_MEMBER_EV_DEAD, "x/z", 1, 0);
    kvc_core_set_deliver(&set, 10, &out);
    /* a's own META event, appended while it heard JOINED, reaches both too. */
    assert_int_equal(out.n_events, 3);
    assert_int_equal(out.events[2].type, KVC_MEMBER_EV_META);
    assert_int_equal(a.events, 3);
    assert_int_equal(b.events, 3);
    /* Delivering again hands over nothing twice. */
    kvc_core_set_deliver(&set, 10, &out);
    assert_int_equal(a.events, 3);
    /* After a flush, new events are new. */
    kvc_outbox_reset(&out);
    kvc_core_set_flushed(&set);
    kvc_outbox_event(&out, KVC_MEMBER_EV_LEFT, "x/z", 2, 0);
    kvc_core_set_deliver(&set, 11, &out);
    assert_int_equal(a.events, 4);
    assert_int_equal(b.events, 4);
    kvc_outbox_free(&out);
}

static void test_table_full(void **state)
{
    kvc_core_set_t set;
    kvc_core_set_init(&set);
    fake_t a = {0};
    for (int i = 0; i < KVC_CORES_MAX; i++)
        assert_int_equal(kvc_core_set_add(&set, &g_ops, &a), 0);
    assert_int_equal(kvc_core_set_add(&set, &g_ops, &a), KVC_ERANGE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_outbox_bound_and_channels),
        cmocka_unit_test(test_outbox_alloc_failure),
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_events_reach_every_core),
        cmocka_unit_test(test_table_full),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
