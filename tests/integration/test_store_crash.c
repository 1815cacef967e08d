/*
 * test_store_crash - kill -9 durability of peer/store.c (DESIGN.md, "Data
 * that must never be lost": a peer killed at any instant restarts with all
 * it acknowledged).
 *
 *   test_store_crash [ROUNDS]      (KVC_SEED=N replays a schedule)
 *
 * Each round forks a child that opens the same store and runs a sequence of
 * operations derived from the seed: puts of new keys, overwrites with values
 * of other lengths, deletes, counter increments; values from 1 byte to 8 KiB
 * so some live on LMDB overflow pages. After each call returns success the
 * child writes the operation's number to a pipe: that is its
 * acknowledgement. The parent kills the child with SIGKILL after a seeded
 * number of acknowledgements (the child is then usually inside a write,
 * since it never waits between them), reads the acknowledgements still in
 * the pipe, reopens the store and compares all of it, every round so far,
 * with a model: exactly the acknowledged operations must be there, each
 * value intact byte for byte, plus possibly the one operation in flight,
 * and nothing else. The next round starts from what is on disk.
 *
 * The seed fixes the operations and the kill points (counted in
 * acknowledgements); where the kill lands inside a write depends on timing,
 * so a replay repeats the schedule, not the exact instant. A kill -9 tests
 * what a crashed process leaves, not a power loss (the page cache stays).
 * No sleeps: the parent blocks on the pipe, bounded by a deadline.
 */
#define _GNU_SOURCE
#include "rng.h"
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define S_MAX_ROUNDS 64
#define S_MAX_OPS 4000       /* per round; the child then idles until killed */
#define S_MAX_KILL_AFTER 600 /* acknowledgements before the kill, at most */
#define S_VALUE_MAX 8192
#define S_DEADLINE_MS 60000 /* for one acknowledgement, or the child's end */

static const char *const S_DB = "records";
static const char *const S_COUNTERS = "counters";
static const char *const S_STEPS = "steps";

static uint64_t g_seed;
static char g_dir[64];

/* What the store must hold: per round and key index, the operation whose
 * value the key holds (-1: absent), and the counter. */
typedef struct {
    int32_t writer[S_MAX_ROUNDS][S_MAX_OPS];
    uint64_t steps;
} s_model_t;

static s_model_t g_model, g_with; /* g_with: g_model plus the op in flight */

/* Prints a failure with the seed to replay it, keeps the store, exits 1. */
static void s_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void s_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "FAIL: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nreplay with KVC_SEED=%" PRIu64 "; the store is kept in %s\n", g_seed, g_dir);
    exit(1);
}

static int64_t s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the schedule ------------------------------------------------------- */

/* Op k of a round, by k % 4: 0 puts key k; 1 adds 1 + k % 13 to the
 * counter; 2 overwrites key k-2; 3 deletes key k-3 every third time and
 * otherwise puts key k. */
typedef enum { S_PUT, S_INCR, S_DEL } s_kind_t;

typedef struct {
    s_kind_t kind;
    int key;        /* key index in the round (put, del) */
    uint64_t delta; /* incr */
} s_op_t;

static s_op_t s_op(int k)
{
    switch (k % 4) {
    case 0:
        return (s_op_t){S_PUT, k, 0};
    case 1:
        return (s_op_t){S_INCR, -1, 1 + (uint64_t)(k % 13)};
    case 2:
        return (s_op_t){S_PUT, k - 2, 0};
    default:
        return (k / 4) % 3 == 0 ? (s_op_t){S_DEL, k - 3, 0} : (s_op_t){S_PUT, k, 0};
    }
}

/* The value op k of round r writes: its length (1..1500 bytes, one time in
 * eight 2..8 KiB) and bytes, all from the seed. Returns the length. */
static size_t s_value(int r, int k, uint8_t *buf)
{
    kvc_rng_t g;
    kvc_rng_seed(&g, g_seed ^ kvc_rng_mix(((uint64_t)r << 32) | (uint32_t)k));
    size_t len = kvc_rng_below(&g, 8) == 0 ? 2048 + kvc_rng_below(&g, S_VALUE_MAX - 2048 + 1)
                                           : 1 + kvc_rng_below(&g, 1500);
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)kvc_rng_next(&g);
    return len;
}

/* The key of index j in round r. */
static size_t s_key(int r, int j, char *buf, size_t cap)
{
    return (size_t)snprintf(buf, cap, "r%02d-%05d", r, j);
}

/* Applies op k of round r to a model. */
static void s_apply(s_model_t *m, int r, int k)
{
    s_op_t op = s_op(k);
    if (op.kind == S_PUT)
        m->writer[r][op.key] = k;
    else if (op.kind == S_DEL)
        m->writer[r][op.key] = -1;
    else
        m->steps += op.delta;
}

/* ---- the child ---------------------------------------------------------- */

/* Writes all of buf to fd or exits. */
static void s_write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            _exit(5);
        p += n;
        len -= (size_t)n;
    }
}

/* Runs round r's operations on the store, acknowledging each on fd after
 * the store returned success. Never returns. */
static void s_child(int r, int fd)
{
    kvc_err_t err = {0};
    kvc_store_t *st = kvc_store_open(g_dir, (size_t)64 << 20, &err);
    if (!st) {
        fprintf(stderr, "child: %s\n", err.msg);
        _exit(3);
    }
    static uint8_t val[S_VALUE_MAX];
    char key[32];
    for (int k = 0; k < S_MAX_OPS; k++) {
        s_op_t op = s_op(k);
        int rc;
        if (op.kind == S_INCR) {
            uint64_t out;
            rc = kvc_store_incr(st, S_COUNTERS, S_STEPS, op.delta, &out);
        } else {
            size_t klen = s_key(r, op.key, key, sizeof key);
            rc = op.kind == S_DEL ? kvc_store_del(st, S_DB, key, klen)
                                  : kvc_store_put(st, S_DB, key, klen, val, s_value(r, k, val));
        }
        if (rc != KVC_OK) {
            fprintf(stderr, "child: round %d op %d failed: %s\n", r, k, kvc_strerror(rc));
            _exit(4);
        }
        uint32_t ack = (uint32_t)k;
        s_write_all(fd, &ack, sizeof ack);
    }
    for (;;)
        pause(); /* out of operations: wait for the kill */
}

/* ---- the parent ---------------------------------------------------------- */

/* Reads one acknowledgement: 1 if read, 0 at end of file; fails at the deadline. */
static int s_read_ack(int fd, uint32_t *ack)
{
    uint8_t *p = (uint8_t *)ack;
    size_t got = 0;
    int64_t deadline = s_now_ms() + S_DEADLINE_MS;
    while (got < sizeof *ack) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int64_t left = deadline - s_now_ms();
        if (left <= 0)
            s_fail("no acknowledgement from the child within %d ms", S_DEADLINE_MS);
        int n = poll(&pfd, 1, (int)left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            s_fail("poll: %s", strerror(errno));
        if (n == 0)
            continue;
        ssize_t r = read(fd, p + got, sizeof *ack - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            s_fail("read: %s", strerror(errno));
        if (r == 0) {
            if (got)
                s_fail("a torn acknowledgement in the pipe");
            return 0;
        }
        got += (size_t)r;
    }
    return 1;
}

/* What one walk of the records found. */
typedef struct {
    const s_model_t *m;
    int rounds;
    size_t present;
    char why[256]; /* first mismatch */
} s_walk_t;

/* Checks one stored record against the model; stops the walk on a mismatch. */
static int s_check_record(const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    s_walk_t *w = arg;
    char k[32];
    int r, j;
    if (klen >= sizeof k)
        goto bad_key;
    memcpy(k, key, klen);
    k[klen] = '\0';
    if (sscanf(k, "r%d-%d", &r, &j) != 2 || r < 0 || r >= w->rounds || j < 0 || j >= S_MAX_OPS)
        goto bad_key;
    int32_t writer = w->m->writer[r][j];
    if (writer < 0) {
        snprintf(w->why, sizeof w->why, "%s is present but was never written or was deleted", k);
        return 1;
    }
    static uint8_t want[S_VALUE_MAX];
    size_t wlen = s_value(r, writer, want);
    if (vlen != wlen || memcmp(val, want, wlen) != 0) {
        snprintf(w->why, sizeof w->why, "%s holds %zu bytes that are not op %d's value (%zu bytes)",
                 k, vlen, (int)writer, wlen);
        return 1;
    }
    w->present++;
    return 0;
bad_key:
    snprintf(w->why, sizeof w->why, "an unexpected key of %zu bytes", klen);
    return 1;
}

/* 0 if the store holds exactly model m for rounds 0..rounds-1, else 1 with
 * the first difference in why. */
static int s_matches(kvc_store_t *st, const s_model_t *m, int rounds, char *why, size_t cap)
{
    s_walk_t w = {.m = m, .rounds = rounds};
    int rc = kvc_store_foreach(st, S_DB, s_check_record, &w);
    if (rc != KVC_OK) {
        snprintf(why, cap, "%s", w.why[0] ? w.why : kvc_strerror(rc));
        return 1;
    }
    size_t want = 0;
    for (int r = 0; r < rounds; r++)
        for (int j = 0; j < S_MAX_OPS; j++)
            want += m->writer[r][j] >= 0;
    if (w.present != want) {
        snprintf(why, cap, "%zu records present, %zu expected (an acknowledged one is missing)",
                 w.present, want);
        return 1;
    }
    uint8_t le[8];
    size_t n = 0;
    uint64_t steps = 0;
    rc = kvc_store_get(st, S_COUNTERS, S_STEPS, strlen(S_STEPS), le, sizeof le, &n);
    if (rc == KVC_OK && n == 8) {
        for (int i = 7; i >= 0; i--)
            steps = (steps << 8) | le[i];
    } else if (rc != KVC_ENOENT) {
        snprintf(why, cap, "the counter: %s, %zu bytes", kvc_strerror(rc), n);
        return 1;
    }
    if (steps != m->steps) {
        snprintf(why, cap, "the counter is %" PRIu64 ", expected %" PRIu64, steps, m->steps);
        return 1;
    }
    return 0;
}

/* Removes the store folder (LMDB's two files). */
static void s_remove_store(void)
{
    char path[128];
    snprintf(path, sizeof path, "%s/data.mdb", g_dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/lock.mdb", g_dir);
    unlink(path);
    rmdir(g_dir);
}

/* One round: fork, kill after kill_after acknowledgements, verify. Returns
 * 1 if the operation in flight at the kill had committed. */
static int s_round(int r, int kill_after, int *acked_out)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0)
        s_fail("pipe: %s", strerror(errno));
    /* A one-page pipe: the child runs at most 1024 operations ahead of the
     * parent's count, so the kill lands while it is still writing. */
    fcntl(p[1], F_SETPIPE_SZ, 4096);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        s_fail("fork: %s", strerror(errno));
    if (pid == 0) {
        close(p[0]);
        s_child(r, p[1]);
    }
    close(p[1]);
    int acked = 0, ended = 0;
    uint32_t ack;
    while (acked < kill_after) {
        if (!s_read_ack(p[0], &ack)) {
            ended = 1;
            break;
        }
        if (ack != (uint32_t)acked)
            s_fail("round %d: acknowledgement %u where %d was due", r, ack, acked);
        acked++;
    }
    kill(pid, SIGKILL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (ended || !WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
        s_fail("round %d: the child ended by itself (status 0x%x) after %d acknowledgements", r,
               status, acked);
    /* What it acknowledged before it died is still in the pipe. */
    while (s_read_ack(p[0], &ack)) {
        if (ack != (uint32_t)acked)
            s_fail("round %d: acknowledgement %u where %d was due", r, ack, acked);
        acked++;
    }
    close(p[0]);
    if (acked >= S_MAX_OPS)
        s_fail("round %d: the child ran out of operations before the kill", r);

    for (int k = 0; k < acked; k++)
        s_apply(&g_model, r, k);
    g_with = g_model;
    s_apply(&g_with, r, acked); /* the one operation that may be in flight */

    kvc_err_t err = {0};
    kvc_store_t *st = kvc_store_open(g_dir, (size_t)64 << 20, &err);
    if (!st)
        s_fail("round %d: reopening after the kill: %s", r, err.msg);
    char why[256], why_with[256];
    int in_flight = 0;
    if (s_matches(st, &g_model, r + 1, why, sizeof why) != 0) {
        if (s_matches(st, &g_with, r + 1, why_with, sizeof why_with) != 0)
            s_fail("round %d, killed after %d acknowledged operations: %s (and counting the "
                   "operation in flight: %s)",
                   r, acked, why, why_with);
        g_model = g_with; /* it had committed: the next round builds on it */
        in_flight = 1;
    }
    kvc_store_destroy(&st);
    *acked_out = acked;
    return in_flight;
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? (int)strtol(argv[1], NULL, 10) : 12;
    if (rounds < 1 || rounds > S_MAX_ROUNDS) {
        fprintf(stderr, "usage: test_store_crash [ROUNDS (1..%d)]\n", S_MAX_ROUNDS);
        return 2;
    }
    const char *env = getenv("KVC_SEED");
    if (env && *env) {
        char *end;
        errno = 0;
        g_seed = strtoull(env, &end, 10);
        if (errno || *end) {
            fprintf(stderr, "KVC_SEED must be a decimal number\n");
            return 2;
        }
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        g_seed = kvc_rng_mix((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec) >> 1;
    }
    snprintf(g_dir, sizeof g_dir, "/tmp/kvc-store-crash-XXXXXX");
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    printf("test_store_crash: seed %" PRIu64 ", %d rounds (replay: KVC_SEED=%" PRIu64 ")\n", g_seed,
           rounds, g_seed);
    for (int r = 0; r < S_MAX_ROUNDS; r++)
        for (int j = 0; j < S_MAX_OPS; j++)
            g_model.writer[r][j] = -1;
    kvc_rng_t sched;
    kvc_rng_seed(&sched, g_seed);
    int committed = 0;
    for (int r = 0; r < rounds; r++) {
        int kill_after = 1 + (int)kvc_rng_below(&sched, S_MAX_KILL_AFTER);
        int acked = 0;
        int in_flight = s_round(r, kill_after, &acked);
        committed += in_flight;
        printf("round %d: killed after %d acknowledgements, %d acknowledged in all; the "
               "operation in flight had %s\n",
               r, kill_after, acked, in_flight ? "committed" : "not committed");
    }
    s_remove_store();
    printf("test_store_crash: ok, %d rounds, every acknowledged operation intact (%d in-flight "
           "operations had committed)\n",
           rounds, committed);
    return 0;
}
