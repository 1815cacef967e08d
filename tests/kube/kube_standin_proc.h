/*
 * kube_standin_proc.h - starting and stopping tests/kube/kube_api_standin.py
 * (a Kubernetes API server stand-in) from a C test: it reads the port the
 * stand-in prints, with a deadline, and stops it by closing its stdin.
 * Header-only: each test is one translation unit.
 */
#ifndef KVC_KUBE_STANDIN_PROC_H
#define KVC_KUBE_STANDIN_PROC_H

#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* A running stand-in. */
typedef struct {
    pid_t pid;
    int in_fd; /* its stdin: closing it stops it */
    int port;
} kvc_standin_t;

/* Milliseconds on the monotonic clock. */
static inline long long kvc_standin_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Starts the stand-in with the certificates of dir (kube_pki.sh pki) and
 * extra arguments (NULL-terminated, may be NULL); waits up to 30 s for its
 * port. 0 on success.
 */
static inline int kvc_standin_start(kvc_standin_t *s, const char *script, const char *python,
                                    const char *dir, const char *const *extra)
{
    char cert[512], key[512], ca[512];
    snprintf(cert, sizeof cert, "%s/server.pem", dir);
    snprintf(key, sizeof key, "%s/server.key", dir);
    snprintf(ca, sizeof ca, "%s/ca.pem", dir);
    const char *argv[32] = {python, script, "--cert", cert, "--key", key, "--ca", ca};
    int argc = 8;
    for (int i = 0; extra && extra[i] && argc < 31; i++)
        argv[argc++] = extra[i];
    argv[argc] = NULL;
    int in[2], out[2];
    if (pipe(in) != 0)
        return -1;
    if (pipe(out) != 0) {
        close(in[0]);
        close(in[1]);
        return -1;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_addclose(&fa, in[1]);
    posix_spawn_file_actions_addclose(&fa, out[0]);
    int rc = posix_spawn(&s->pid, python, &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(in[0]);
    close(out[1]);
    if (rc != 0) {
        close(in[1]);
        close(out[0]);
        return -1;
    }
    s->in_fd = in[1];
    char line[32];
    size_t n = 0;
    long long deadline = kvc_standin_now_ms() + 30000;
    while (n < sizeof line - 1 && (n == 0 || line[n - 1] != '\n')) {
        long long left = deadline - kvc_standin_now_ms();
        struct pollfd p = {out[0], POLLIN, 0};
        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            break;
        ssize_t r = read(out[0], line + n, sizeof line - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    close(out[0]);
    line[n] = '\0';
    char *end = NULL;
    long port = strtol(line, &end, 10);
    s->port = (end != line && *end == '\n' && port > 0 && port < 65536) ? (int)port : 0;
    return s->port ? 0 : -1;
}

/*
 * Stops the stand-in: closes its stdin (which alone must stop it), then
 * after 5 s sends SIGTERM, then SIGKILL, to its pid. Returns 0 if it exited
 * with status 0 on the stdin close alone, -1 otherwise.
 */
static inline int kvc_standin_stop(kvc_standin_t *s)
{
    if (s->in_fd >= 0)
        close(s->in_fd);
    s->in_fd = -1;
    if (s->pid <= 0)
        return -1;
    long long deadline = kvc_standin_now_ms() + 5000;
    int sig_sent = 0, st = 0;
    for (;;) {
        if (waitpid(s->pid, &st, WNOHANG) == s->pid)
            break;
        if (kvc_standin_now_ms() > deadline) {
            kill(s->pid, sig_sent ? SIGKILL : SIGTERM);
            sig_sent = 1;
            deadline = kvc_standin_now_ms() + 2000;
        }
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL); /* polling the child's exit, bounded */
    }
    s->pid = 0;
    return !sig_sent && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

#endif
