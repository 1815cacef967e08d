/*
 * bench_wakeup - what one hop between two threads costs on this host: the
 * round trip of a 1-byte message over loopback TCP between a thread and an
 * echoing thread, each blocked in recv() until its message comes.
 *
 * A proxy in front of a model server adds one such hop per request (the
 * proxy sleeps while the client's request and the model server's answer
 * are on their way, and is woken for each), so bench_overhead.sh prints
 * this next to the proxy's latency overhead: it is the floor that overhead
 * stands on, measured in the same run. Three placements:
 *   - two CPUs: the threads pinned to different CPUs, so every message
 *     wakes a thread on a CPU that went idle;
 *   - one CPU: both pinned to the same CPU, so a message only switches
 *     threads there;
 *   - free: no pinning, wherever the scheduler puts them (as the proxy,
 *     its clients and the model server run).
 * On bare metal the first two differ by a few microseconds; on a virtual
 * machine whose idle vCPUs halt, waking one costs the hypervisor a round
 * of its own, and the two-CPU figure shows it.
 *
 * Usage: bench_wakeup [-n ROUND_TRIPS]   (default 20000, at most 1000000)
 * A placement the machine cannot give (one CPU only, pinning refused) is
 * printed as n/a with the reason.
 */
#define _GNU_SOURCE /* pthread_setaffinity_np, CPU_SET */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define S_DEFAULT_N 20000L
#define S_MAX_N 1000000L
#define S_WARMUP 200L

/* One placement's run: the echo side's socket and CPU. */
typedef struct {
    int fd;
    int cpu; /* -1: not pinned */
} s_echo_t;

static double s_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* Pins the calling thread to cpu (-1: leaves it free); 0 on success. */
static int s_pin(int cpu)
{
    if (cpu < 0)
        return 0;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

/* Echoes every byte back until the peer closes. */
static void *s_echo_main(void *arg)
{
    s_echo_t *e = arg;
    if (s_pin(e->cpu) != 0) {
        shutdown(e->fd, SHUT_RDWR); /* the caller's recv() sees the end */
        return NULL;
    }
    char c;
    while (recv(e->fd, &c, 1, 0) == 1) {
        if (send(e->fd, &c, 1, MSG_NOSIGNAL) != 1)
            break;
    }
    return NULL;
}

/* A connected loopback TCP pair with Nagle off; 0 on success. */
static int s_pair(int fds[2])
{
    int one = 1, ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    fds[0] = fds[1] = -1;
    if (ls < 0)
        return -1;
    if (bind(ls, (struct sockaddr *)&a, sizeof a) != 0 || listen(ls, 1) != 0 ||
        getsockname(ls, (struct sockaddr *)&a, &alen) != 0)
        goto fail;
    fds[0] = socket(AF_INET, SOCK_STREAM, 0);
    if (fds[0] < 0 || connect(fds[0], (struct sockaddr *)&a, sizeof a) != 0)
        goto fail;
    fds[1] = accept(ls, NULL, NULL);
    if (fds[1] < 0)
        goto fail;
    close(ls);
    setsockopt(fds[0], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fds[1], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return 0;
fail:
    close(ls);
    if (fds[0] >= 0)
        close(fds[0]);
    fds[0] = -1;
    return -1;
}

static int s_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The q-quantile of sorted v[0..n) (nearest rank). */
static double s_quantile(const double *v, long n, double q)
{
    long i = (long)(q * (double)n + 0.999999) - 1;
    return v[i < 0 ? 0 : i >= n ? n - 1 : i];
}

/*
 * Measures n round trips with the caller on cpu_a and the echo thread on
 * cpu_b (-1: free); prints one table row. Returns the p50 in µs, or -1 with
 * the reason printed in the row.
 */
static double s_run(const char *label, int cpu_a, int cpu_b, long n, double *lat)
{
    int fds[2];
    pthread_t t;
    cpu_set_t saved;
    double p50 = -1;
    int have_saved = pthread_getaffinity_np(pthread_self(), sizeof saved, &saved) == 0;
    if (s_pair(fds) != 0) {
        printf("| %s | n/a: loopback TCP pair: %s | | | |\n", label, strerror(errno));
        return -1;
    }
    s_echo_t echo = {.fd = fds[1], .cpu = cpu_b};
    if (s_pin(cpu_a) != 0) {
        printf("| %s | n/a: cannot pin to CPU %d | | | |\n", label, cpu_a);
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pthread_create(&t, NULL, s_echo_main, &echo) != 0) {
        printf("| %s | n/a: no thread | | | |\n", label);
        close(fds[0]);
        close(fds[1]);
        goto restore;
    }
    char c = 'x';
    long got = 0;
    for (long i = 0; i < S_WARMUP + n; i++) {
        double t0 = s_now_us();
        if (send(fds[0], &c, 1, MSG_NOSIGNAL) != 1 || recv(fds[0], &c, 1, 0) != 1)
            break;
        if (i >= S_WARMUP)
            lat[got++] = s_now_us() - t0;
    }
    shutdown(fds[0], SHUT_RDWR);
    pthread_join(t, NULL);
    close(fds[0]);
    close(fds[1]);
    if (got < n) {
        printf("| %s | n/a: the echo thread stopped (pinning to CPU %d refused?) | | | |\n", label,
               cpu_b);
        goto restore;
    }
    qsort(lat, (size_t)n, sizeof *lat, s_cmp);
    p50 = s_quantile(lat, n, 0.5);
    printf("| %s | %ld | %.1f | %.1f | %.1f |\n", label, n, p50, s_quantile(lat, n, 0.9),
           s_quantile(lat, n, 0.99));
restore:
    if (have_saved)
        pthread_setaffinity_np(pthread_self(), sizeof saved, &saved);
    return p50;
}

int main(int argc, char **argv)
{
    long n = S_DEFAULT_N;
    for (int i = 1; i < argc; i++) {
        char *end = NULL;
        if (strcmp(argv[i], "-n") == 0 && i + 1 < argc) {
            errno = 0;
            n = strtol(argv[++i], &end, 10);
            if (errno || !end || *end || n < 1 || n > S_MAX_N) {
                fprintf(stderr, "bench_wakeup: -n: expected 1..%ld, got \"%s\"\n", S_MAX_N,
                        argv[i]);
                return 2;
            }
        } else {
            fprintf(stderr, "usage: bench_wakeup [-n ROUND_TRIPS]\n");
            return 2;
        }
    }
    double *lat = malloc((size_t)n * sizeof *lat);
    if (!lat) {
        fprintf(stderr, "bench_wakeup: out of memory\n");
        return 1;
    }
    /* Two CPUs this process may run on: the first two of its own set. */
    cpu_set_t mine;
    int cpus[2] = {-1, -1}, k = 0;
    if (sched_getaffinity(0, sizeof mine, &mine) == 0)
        for (int c = 0; c < CPU_SETSIZE && k < 2; c++)
            if (CPU_ISSET(c, &mine))
                cpus[k++] = c;
    printf(
        "| placement (loopback TCP, 1 byte each way) | round trips | p50 µs | p90 µs | p99 µs |\n");
    printf("|---|---|---|---|---|\n");
    double two = -1, one = -1;
    if (k == 2)
        two = s_run("two CPUs (each message wakes an idle CPU)", cpus[0], cpus[1], n, lat);
    else
        printf("| two CPUs | n/a: this process may use only one CPU | | | |\n");
    if (k >= 1)
        one = s_run("one CPU (a thread switch)", cpus[0], cpus[0], n, lat);
    s_run("free (the scheduler's choice)", -1, -1, n, lat);
    if (two > 0 && one > 0)
        printf("\nwaking a thread on another CPU: %.1f µs per round trip more than on one CPU "
               "(%.1fx)\n",
               two - one, two / one);
    free(lat);
    return 0;
}
