/*
 * fiber.c - fibers on ucontext, with mmap'd stacks behind a guard page and
 * AddressSanitizer told of every stack switch.
 *
 * glibc's swapcontext also saves and restores the signal mask (one system
 * call per switch); a request that makes one gRPC call switches four times,
 * which costs far less than the two thread wake-ups it replaces.
 */
#include "fiber.h"

#include "base.h"

#include <stdint.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define S_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) && !defined(S_ASAN)
#define S_ASAN 1
#endif
#ifdef S_ASAN
#include <sanitizer/common_interface_defs.h>
#endif
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define S_TSAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__) && !defined(S_TSAN)
#define S_TSAN 1
#endif
#ifdef S_TSAN
/* ThreadSanitizer's fiber interface (sanitizer/tsan_interface.h). */
void *__tsan_get_current_fiber(void);
void *__tsan_create_fiber(unsigned flags);
void __tsan_destroy_fiber(void *fiber);
void __tsan_switch_to_fiber(void *fiber, unsigned flags);
#endif

/* Spare stacks kept per thread. */
#define S_SPARE_MAX 32

struct kvc_fiber {
    ucontext_t ctx;
    kvc_fiber_fn fn;
    void *arg;
    uint8_t *map; /* guard page + stack */
    size_t map_len;
    int done;
    int queued;               /* on the ready list */
    const atomic_int *cancel; /* set by the creator: asks the fiber to stop */
    kvc_fiber_t *next;
    void *fake_stack; /* ASan's fake stack of this fiber while switched out */
    void *tsan;       /* ThreadSanitizer's record of this fiber */
};

/* Per thread: the context resume() switched from, the running fiber, the
 * ready list, and spare fibers (stack and all) for reuse. */
static _Thread_local ucontext_t s_loop_ctx;
static _Thread_local kvc_fiber_t *s_current;
static _Thread_local kvc_fiber_t *s_ready_head;
static _Thread_local kvc_fiber_t *s_ready_tail;
static _Thread_local kvc_fiber_t *s_spare;
static _Thread_local int s_n_spare;
#ifdef S_ASAN
static _Thread_local const void *s_loop_bottom;
static _Thread_local size_t s_loop_size;
#endif
#ifdef S_TSAN
static _Thread_local void *s_loop_tsan;
#endif

static void s_entry(void)
{
    kvc_fiber_t *f = s_current;
#ifdef S_ASAN
    __sanitizer_finish_switch_fiber(NULL, &s_loop_bottom, &s_loop_size);
#endif
    f->fn(f->arg);
    f->done = 1;
#ifdef S_ASAN
    /* NULL: this fiber's fake stack may be freed, it never runs again. */
    __sanitizer_start_switch_fiber(NULL, s_loop_bottom, s_loop_size);
#endif
#ifdef S_TSAN
    __tsan_switch_to_fiber(s_loop_tsan, 0);
#endif
    setcontext(&s_loop_ctx);
}

/* Frees a fiber and its stack. */
static void s_unmap(kvc_fiber_t *f)
{
    munmap(f->map, f->map_len);
    kvc_free(f);
}

/* Releases a finished fiber: kept for reuse or unmapped. */
static void s_release(kvc_fiber_t *f)
{
#ifdef S_TSAN
    if (f->tsan)
        __tsan_destroy_fiber(f->tsan);
    f->tsan = NULL;
#endif
    if (s_n_spare < S_SPARE_MAX) {
        f->next = s_spare;
        s_spare = f;
        s_n_spare++;
        return;
    }
    s_unmap(f);
}

/* A spare fiber, or a new one with a fresh stack and guard page. Apart
 * from kvc_fiber_new because getcontext returns twice: a variable assigned
 * on several paths before it may be clobbered (gcc -Wclobbered), and so
 * not inlined there. */
__attribute__((noinline)) static kvc_fiber_t *s_obtain(size_t page)
{
    kvc_fiber_t *f = s_spare;
    if (f) {
        s_spare = f->next;
        s_n_spare--;
    } else {
        f = kvc_calloc(1, sizeof *f);
        if (!f)
            return NULL;
        f->map_len = KVC_FIBER_STACK + page;
        f->map = mmap(NULL, f->map_len, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
        if (f->map == MAP_FAILED) {
            kvc_free(f);
            return NULL;
        }
        /* The stack grows down: a guard page below it faults on overflow. */
        if (mprotect(f->map, page, PROT_NONE) != 0) {
            s_unmap(f);
            return NULL;
        }
    }
    return f;
}

kvc_fiber_t *kvc_fiber_new(kvc_fiber_fn fn, void *arg)
{
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    kvc_fiber_t *const f = s_obtain(page);
    if (!f)
        return NULL;
    f->fn = fn;
    f->arg = arg;
    f->done = 0;
    f->queued = 0;
    f->cancel = NULL;
    f->next = NULL;
    f->fake_stack = NULL;
#ifdef S_TSAN
    f->tsan = __tsan_create_fiber(0);
#endif
    if (getcontext(&f->ctx) != 0) {
        s_release(f);
        return NULL;
    }
    f->ctx.uc_stack.ss_sp = f->map + page;
    f->ctx.uc_stack.ss_size = f->map_len - page;
    f->ctx.uc_link = NULL;
    makecontext(&f->ctx, s_entry, 0);
    return f;
}

int kvc_fiber_resume(kvc_fiber_t *f)
{
    s_current = f;
#ifdef S_ASAN
    void *fake = NULL;
    __sanitizer_start_switch_fiber(&fake, f->ctx.uc_stack.ss_sp, f->ctx.uc_stack.ss_size);
#endif
#ifdef S_TSAN
    s_loop_tsan = __tsan_get_current_fiber();
    __tsan_switch_to_fiber(f->tsan, 0);
#endif
    swapcontext(&s_loop_ctx, &f->ctx);
#ifdef S_ASAN
    __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#endif
    s_current = NULL;
    if (!f->done)
        return 0;
    s_release(f);
    return 1;
}

void kvc_fiber_set_cancel(kvc_fiber_t *f, const atomic_int *flag)
{
    if (f)
        f->cancel = flag;
}

const atomic_int *kvc_fiber_cancel_flag(void)
{
    return s_current ? s_current->cancel : NULL;
}

kvc_fiber_t *kvc_fiber_current(void)
{
    return s_current;
}

void kvc_fiber_yield(void)
{
    kvc_fiber_t *f = s_current;
#ifdef S_ASAN
    __sanitizer_start_switch_fiber(&f->fake_stack, s_loop_bottom, s_loop_size);
#endif
#ifdef S_TSAN
    __tsan_switch_to_fiber(s_loop_tsan, 0);
#endif
    swapcontext(&f->ctx, &s_loop_ctx);
#ifdef S_ASAN
    __sanitizer_finish_switch_fiber(f->fake_stack, &s_loop_bottom, &s_loop_size);
#endif
}

void kvc_fiber_ready(kvc_fiber_t *f)
{
    if (f->queued)
        return;
    f->queued = 1;
    f->next = NULL;
    if (s_ready_tail)
        s_ready_tail->next = f;
    else
        s_ready_head = f;
    s_ready_tail = f;
}

kvc_fiber_t *kvc_fiber_next_ready(void)
{
    kvc_fiber_t *f = s_ready_head;
    if (!f)
        return NULL;
    s_ready_head = f->next;
    if (!s_ready_head)
        s_ready_tail = NULL;
    f->next = NULL;
    f->queued = 0;
    return f;
}

int kvc_fiber_has_ready(void)
{
    return s_ready_head != NULL;
}

void kvc_fiber_thread_cleanup(void)
{
    while (s_spare) {
        kvc_fiber_t *f = s_spare;
        s_spare = f->next;
        s_unmap(f);
    }
    s_n_spare = 0;
}
