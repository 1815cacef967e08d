/*
 * Unit tests of the daemon's pure parts: the control command table
 * (peer/ctl_table.c: lookup, required and oversized arguments, reply
 * memory, errors) and the link rules (peer/link_rules.h: up, Hello retry,
 * ping due, and arithmetic that must never underflow).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "ctl_table.h"
#include "link_rules.h"

static int calls;

static int s_echo(void *self, const Kvc__Ctl__Request *req, kvc_ctl_ctx_t *ctx)
{
    calls++;
    ctx->rep.json = kvc_ctl_strdup(ctx, kvc_ctl_arg(req, "name"));
    return 0;
}

static int s_broken(void *self, const Kvc__Ctl__Request *req, kvc_ctl_ctx_t *ctx)
{
    calls++;
    return KVC_EUNAVAIL; /* no message of its own */
}

static const kvc_ctl_cmd_t table[] = {
    {"echo", s_echo, {"name", NULL}, "echo name"},
    {"broken", s_broken, {NULL}, "always fails"},
};
#define N (sizeof table / sizeof table[0])

/* A request with up to two args. */
typedef struct {
    Kvc__Ctl__Request req;
    Kvc__Ctl__Request__ArgsEntry e[2];
    Kvc__Ctl__Request__ArgsEntry *ep[2];
} req_t;

static void s_req(req_t *r, const char *cmd, const char *k, const char *v)
{
    kvc__ctl__request__init(&r->req);
    r->req.command = (char *)cmd;
    if (k) {
        kvc__ctl__request__args_entry__init(&r->e[0]);
        r->e[0].key = (char *)k;
        r->e[0].value = (char *)v;
        r->ep[0] = &r->e[0];
        r->req.args = r->ep;
        r->req.n_args = 1;
    }
}

static void test_dispatch(void **state)
{
    req_t r;
    kvc_ctl_ctx_t ctx;
    calls = 0;
    s_req(&r, "echo", "name", "site-a/p1");
    kvc_ctl_ctx_init(&ctx);
    assert_int_equal(kvc_ctl_dispatch(table, N, NULL, &r.req, &ctx), 0);
    assert_int_equal(calls, 1);
    assert_int_equal(ctx.rep.code, 0);
    assert_string_equal(ctx.rep.json, "site-a/p1");
    kvc_ctl_ctx_free(&ctx);

    /* unknown command: ENOENT naming it, no handler runs */
    s_req(&r, "nope", NULL, NULL);
    kvc_ctl_ctx_init(&ctx);
    assert_int_equal(kvc_ctl_dispatch(table, N, NULL, &r.req, &ctx), KVC_ENOENT);
    assert_string_equal(ctx.rep.error, "unknown command: nope");
    assert_int_equal(calls, 1);
    kvc_ctl_ctx_free(&ctx);

    /* missing required argument */
    s_req(&r, "echo", "other", "x");
    kvc_ctl_ctx_init(&ctx);
    assert_int_equal(kvc_ctl_dispatch(table, N, NULL, &r.req, &ctx), KVC_EINVAL);
    assert_string_equal(ctx.rep.error, "echo: missing argument name");
    assert_int_equal(calls, 1);
    kvc_ctl_ctx_free(&ctx);

    /* oversized argument */
    char big[KVC_CTL_ARG_MAX + 2];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    s_req(&r, "echo", "name", big);
    kvc_ctl_ctx_init(&ctx);
    assert_int_equal(kvc_ctl_dispatch(table, N, NULL, &r.req, &ctx), KVC_EINVAL);
    assert_non_null(strstr(ctx.rep.error, "longer than 256 bytes"));
    assert_int_equal(calls, 1);
    kvc_ctl_ctx_free(&ctx);
    big[KVC_CTL_ARG_MAX] = '\0'; /* exactly the limit is fine */
    s_req(&r, "echo", "name", big);
    kvc_ctl_ctx_init(&ctx);
    assert_int_equal(kvc_ctl_dispatch(table, N, NULL, &r.req, &ctx), 0);
    assert_int_equal(strlen(ctx.rep.json), KVC_CTL_ARG_MAX);
    kvc_ctl_ctx_free(&ctx);

    /* a handler's bare error code becomes a message */
    s_req(&r, "broken", NULL, NULL);
    kvc_ctl_ctx_init(&ctx);
    assert_int_equal(kvc_ctl_dispatch(table, N, NULL, &r.req, &ctx), KVC_EUNAVAIL);
    assert_non_null(strstr(ctx.rep.error, "broken: "));
    kvc_ctl_ctx_free(&ctx);
    assert_ptr_equal(kvc_ctl_find(table, N, "broken"), &table[1]);
    assert_null(kvc_ctl_find(table, N, NULL));
}

static void test_reply_memory(void **state)
{
    kvc_ctl_ctx_t ctx;
    kvc_ctl_ctx_init(&ctx);
    for (int i = 0; i < 100; i++) /* grows past its first 16 slots */
        assert_non_null(kvc_ctl_alloc(&ctx, 3, 8));
    assert_int_equal(ctx.n_owned, 100);
    kvc_alloc_fail_after(0);
    assert_null(kvc_ctl_alloc(&ctx, 1, 1));
    kvc_alloc_fail_after(-1);
    kvc_alloc_fail_after(0);
    assert_string_equal(kvc_ctl_strdup(&ctx, "x"), ""); /* never NULL */
    kvc_alloc_fail_after(-1);
    kvc_ctl_ctx_free(&ctx); /* ASan: nothing leaks */
    assert_int_equal(ctx.n_owned, 0);
}

static void test_link_rules(void **state)
{
    kvc_link_clock_t l = {0};
    uint64_t now = 100000;
    /* not connected: nothing is due, not up */
    assert_false(kvc_link_is_up(&l, now));
    assert_false(kvc_link_hello_due(&l, now));
    assert_false(kvc_link_ping_due(&l, now));
    l.handshaked = 1;
    assert_true(kvc_link_hello_due(&l, now)); /* never sent */
    l.hello_sent_ms = now;
    assert_false(kvc_link_hello_due(&l, now + KVC_LINK_HELLO_RETRY_MS - 1));
    assert_true(kvc_link_hello_due(&l, now + KVC_LINK_HELLO_RETRY_MS));
    l.acked = 1;
    assert_false(kvc_link_hello_due(&l, now + 10 * KVC_LINK_HELLO_RETRY_MS));
    /* verified: up while heard within the timeout */
    assert_false(kvc_link_ping_due(&l, now)); /* not verified yet */
    l.verified = 1;
    l.last_seen_ms = now;
    assert_true(kvc_link_is_up(&l, now + KVC_LINK_TIMEOUT_MS));
    assert_false(kvc_link_is_up(&l, now + KVC_LINK_TIMEOUT_MS + 1));
    /* last seen "in the future" (it cannot be on a monotonic clock) must
     * not underflow into "silent for 584 million years" */
    assert_true(kvc_link_is_up(&l, now - 5000));
    assert_int_equal(kvc_elapsed(5, 10), 0);
    assert_int_equal(kvc_elapsed(10, 5), 5);
    assert_true(kvc_link_ping_due(&l, now)); /* never pinged */
    l.ping_sent_ms = now;
    assert_false(kvc_link_ping_due(&l, now + KVC_LINK_PING_MS - 1));
    assert_true(kvc_link_ping_due(&l, now + KVC_LINK_PING_MS));
    assert_false(kvc_link_ping_due(&l, now - 1000)); /* no underflow here either */
    l.handshaked = 0; /* ZeroMQ reported the connection dropped */
    assert_false(kvc_link_is_up(&l, now));
    assert_false(kvc_link_ping_due(&l, now + KVC_LINK_PING_MS));
}

/* The Hello tries that stand in for a socket monitor: due at growing
 * intervals after a connect until one is taken, again after a refusal. */
static void test_link_tries(void **state)
{
    (void)state;
    kvc_link_clock_t l = {0};
    uint64_t now = 50000;
    assert_false(kvc_link_try_due(&l, now)); /* no socket: nothing to try */
    kvc_link_refused(&l, now);               /* and a refusal changes nothing */
    assert_int_equal(l.try_wait_ms, 0);
    kvc_link_connecting(&l, now);
    assert_false(kvc_link_try_due(&l, now + KVC_LINK_TRY_FIRST_MS - 1));
    assert_true(kvc_link_try_due(&l, now + KVC_LINK_TRY_FIRST_MS));
    /* refused tries double the wait up to the cap */
    uint64_t t = now + KVC_LINK_TRY_FIRST_MS;
    uint32_t want = KVC_LINK_TRY_FIRST_MS;
    for (int i = 0; i < 12; i++) {
        kvc_link_refused(&l, t);
        want = want * 2 > KVC_LINK_TRY_MAX_MS ? KVC_LINK_TRY_MAX_MS : want * 2;
        assert_int_equal(l.try_wait_ms, want);
        assert_false(kvc_link_try_due(&l, t + want - 1));
        assert_true(kvc_link_try_due(&l, t + want));
        t += want;
    }
    assert_int_equal(l.try_wait_ms, KVC_LINK_TRY_MAX_MS);
    /* taken: handshaked, no more tries, the Hello is owed its ack */
    kvc_link_handshaked(&l);
    assert_true(l.handshaked);
    assert_false(kvc_link_try_due(&l, t + 10 * KVC_LINK_TRY_MAX_MS));
    /* a later refusal: the connection is gone, tries restart from the first */
    l.acked = 1;
    kvc_link_refused(&l, t);
    assert_false(l.handshaked);
    assert_false(l.acked);
    assert_int_equal(l.try_wait_ms, KVC_LINK_TRY_FIRST_MS);
    assert_true(kvc_link_try_due(&l, t + KVC_LINK_TRY_FIRST_MS));
    /* closed: nothing more to try */
    kvc_link_closed(&l);
    assert_false(kvc_link_try_due(&l, t + 10 * KVC_LINK_TRY_MAX_MS));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dispatch),
        cmocka_unit_test(test_reply_memory),
        cmocka_unit_test(test_link_rules),
        cmocka_unit_test(test_link_tries),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
