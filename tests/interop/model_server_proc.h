/*
 * model_server_proc.h - waiting for tests/interop/model_server.py to report
 * its ports, shared by the interop tests that start it. Header-only: each
 * test is one translation unit.
 */
#ifndef KVC_MODEL_SERVER_PROC_H
#define KVC_MODEL_SERVER_PROC_H

#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>
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

#endif
