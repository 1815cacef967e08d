/*
 * model_server_proc.h - waiting for tests/interop/model_server.py to report
 * its ports, and holding ports for it, shared by the interop tests that
 * start it. Header-only: each test is one translation unit.
 */
#ifndef KVC_MODEL_SERVER_PROC_H
#define KVC_MODEL_SERVER_PROC_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>
#include <sys/wait.h>
#include <time.h>

/* How long a model server may take to start (numpy import on a busy host). */
#define KVC_IT_START_DEADLINE_MS 90000

/*
 * Polls (every 20 ms, deadline KVC_IT_START_DEADLINE_MS) for the port file
 * that model_server.py (*pid) writes once it serves, and copies its text
 * into text (cap bytes, NUL-terminated). Returns 0 once read; -1 when the
 * server exited first (*pid is then 0, *status its wait status); -2 at the
 * deadline (the server is left running).
 */
static inline int kvc_it_wait_port_file(pid_t *pid, const char *path, char *text, size_t cap,
                                        int *status)
{
    struct timespec start, now, step = {0, 20 * 1000 * 1000};
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        FILE *f = fopen(path, "r");
        if (f) {
            size_t n = fread(text, 1, cap - 1, f);
            fclose(f);
            text[n] = '\0';
            return 0;
        }
        int st = 0;
        if (waitpid(*pid, &st, WNOHANG) == *pid) {
            *pid = 0;
            if (status)
                *status = st;
            return -1;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        long ms =
            (long)(now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
        if (ms > KVC_IT_START_DEADLINE_MS)
            return -2;
        nanosleep(&step, NULL); /* polling the port file, bounded by the deadline */
    }
}

/*
 * Binds a TCP socket to 127.0.0.1 port 0 and never listens on it; returns
 * it (the caller closes it) and its port in *port, or -1. While it is open
 * a connection to the port is refused (RST) and no other socket gets the
 * port, because it is held without SO_REUSEADDR: a test never binds a port,
 * closes it and hopes nobody took the number meanwhile.
 *
 * shared != 0 also sets SO_REUSEPORT, so that a model server told to use
 * the port can bind it beside the holder (grpcio sets SO_REUSEPORT on its
 * listeners by default) and be stopped and started on it again while the
 * test keeps holding it. A bind to port 0 never shares a port through
 * SO_REUSEPORT, and a socket without SO_REUSEPORT cannot bind it at all.
 */
static inline int kvc_it_hold_port(int *port, int shared)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if ((shared && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) ||
        bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        close(fd);
        return -1;
    }
    *port = ntohs(a.sin_port);
    return fd;
}

#endif
