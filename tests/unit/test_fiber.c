/* Unit tests of proxy/fiber.c: switching, the ready list, stack reuse and
 * stack depth. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "fiber.h"

/* Appends its id to a shared trace at every step, yielding `steps` times. */
typedef struct {
    int id;
    int steps;
    int *trace;
    int *n;
    kvc_fiber_t *self;
} s_stepper_t;

static void s_stepper(void *arg)
{
    s_stepper_t *s = arg;
    assert_ptr_equal(kvc_fiber_current(), s->self);
    for (int i = 0; i < s->steps; i++) {
        s->trace[(*s->n)++] = s->id * 100 + i;
        kvc_fiber_yield();
        assert_ptr_equal(kvc_fiber_current(), s->self);
    }
    s->trace[(*s->n)++] = s->id * 100 + 99;
}

static void test_runs_to_completion_without_yield(void **state)
{
    int trace[4], n = 0;
    s_stepper_t s = {.id = 1, .steps = 0, .trace = trace, .n = &n};
    s.self = kvc_fiber_new(s_stepper, &s);
    assert_non_null(s.self);
    assert_null(kvc_fiber_current());
    assert_int_equal(kvc_fiber_resume(s.self), 1);
    assert_null(kvc_fiber_current());
    assert_int_equal(n, 1);
    assert_int_equal(trace[0], 199);
    kvc_fiber_thread_cleanup();
}

static void test_yield_and_resume_in_order(void **state)
{
    int trace[8], n = 0;
    s_stepper_t s = {.id = 2, .steps = 3, .trace = trace, .n = &n};
    s.self = kvc_fiber_new(s_stepper, &s);
    assert_non_null(s.self);
    assert_int_equal(kvc_fiber_resume(s.self), 0);
    assert_int_equal(n, 1);
    assert_int_equal(kvc_fiber_resume(s.self), 0);
    assert_int_equal(kvc_fiber_resume(s.self), 0);
    assert_int_equal(n, 3);
    assert_int_equal(kvc_fiber_resume(s.self), 1);
    int want[] = {200, 201, 202, 299};
    assert_int_equal(n, 4);
    assert_memory_equal(trace, want, sizeof want);
    kvc_fiber_thread_cleanup();
}

/* Many fibers taking turns through the ready list, as the HTTP loop runs
 * them; more than the spare stacks kept, to exercise mapping and unmapping. */
#define S_FIBERS 50
static void test_ready_list_round_robin(void **state)
{
    static s_stepper_t s[S_FIBERS];
    static int trace[S_FIBERS * 4];
    int n = 0;
    assert_int_equal(kvc_fiber_has_ready(), 0);
    assert_null(kvc_fiber_next_ready());
    for (int i = 0; i < S_FIBERS; i++) {
        s[i] = (s_stepper_t){.id = i, .steps = 2, .trace = trace, .n = &n};
        s[i].self = kvc_fiber_new(s_stepper, &s[i]);
        assert_non_null(s[i].self);
        kvc_fiber_ready(s[i].self);
        kvc_fiber_ready(s[i].self); /* queued once only */
    }
    int finished = 0;
    kvc_fiber_t *f;
    while ((f = kvc_fiber_next_ready()) != NULL) {
        /* find its stepper before it may be freed */
        s_stepper_t *me = NULL;
        for (int i = 0; i < S_FIBERS; i++)
            if (s[i].self == f)
                me = &s[i];
        assert_non_null(me);
        if (kvc_fiber_resume(f)) {
            finished++;
            me->self = NULL;
        } else {
            kvc_fiber_ready(f);
        }
    }
    assert_int_equal(finished, S_FIBERS);
    assert_int_equal(n, S_FIBERS * 3);
    /* round robin: every fiber's first step comes before any second step */
    for (int i = 0; i < S_FIBERS; i++) {
        assert_int_equal(trace[i], i * 100);
        assert_int_equal(trace[S_FIBERS + i], i * 100 + 1);
        assert_int_equal(trace[2 * S_FIBERS + i], i * 100 + 99);
    }
    kvc_fiber_thread_cleanup();
}

/* Uses most of the stack the header promises, with a yield in between. */
static void s_deep(void *arg)
{
    volatile uint8_t big[KVC_FIBER_STACK - 32 * 1024];
    memset((void *)big, 0xa5, sizeof big);
    kvc_fiber_yield();
    size_t sum = 0;
    for (size_t i = 0; i < sizeof big; i += 4096)
        sum += big[i];
    *(size_t *)arg = sum;
}

static void test_stack_holds_its_size(void **state)
{
    size_t sum = 0;
    kvc_fiber_t *f = kvc_fiber_new(s_deep, &sum);
    assert_non_null(f);
    assert_int_equal(kvc_fiber_resume(f), 0);
    assert_int_equal(kvc_fiber_resume(f), 1);
    size_t pages = (KVC_FIBER_STACK - 32 * 1024 + 4095) / 4096;
    assert_int_equal(sum, pages * 0xa5);
    kvc_fiber_thread_cleanup();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_runs_to_completion_without_yield),
        cmocka_unit_test(test_yield_and_resume_in_order),
        cmocka_unit_test(test_ready_list_round_robin),
        cmocka_unit_test(test_stack_holds_its_size),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
