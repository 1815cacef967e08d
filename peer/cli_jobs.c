/*
 * cli_jobs.c - `kvc jobs` and `kvc cluster create`. See cli_jobs.h.
 */
#include "cli_jobs.h"

#include "cli_out.h"
#include "clock.h"
#include "cli_conn.h"
#include "jobs.h"
#include "pb_alloc.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { S_OK = 0, S_FAIL = 1, S_USAGE = 2 };
#define FOLLOW_POLL_MS 500


static const char s_help_jobs[] =
    "usage: kvc jobs list\n"
    "       kvc jobs show ID\n"
    "       kvc jobs logs ID [--follow]\n"
    "       kvc jobs cancel ID\n"
    "       kvc jobs retry ID\n"
    "\n"
    "The site's node setup and cluster creation jobs (kvc nodes setup NODE,\n"
    "kvc cluster create), run by the site's coordinator with ansible-playbook and\n"
    "kept on every peer of the site: state (queued, running, ok, failed,\n"
    "interrupted, cancelled), task N of M and the current task, and the log with\n"
    "secrets redacted. logs --follow prints the log as it grows until the job ends\n"
    "(exit 0 if it ended ok, 1 otherwise). A job whose coordinator died is\n"
    "interrupted; retry queues it again (the roles are idempotent).\n"
    "Options anywhere: --config FILE, --control ENDPOINT, --timeout MS, --json.\n";

static const char s_help_cluster[] =
    "usage: kvc cluster create --node NODE --name NAME --pod-cidr CIDR --kind kubeadm|k3s\n"
    "                          [--service-cidr CIDR] [--advertise ADDRESS] [--site S]\n"
    "\n"
    "Queues a job that creates the site's Kubernetes cluster on the approved node\n"
    "NODE (ops/ansible/cluster.yml: node preparation, packages, kubeadm init or a\n"
    "k3s server, the admin kubeconfig where the site's peers read it, the CNI).\n"
    "--site, when given, must be this peer's site. Follow it with kvc jobs logs ID\n"
    "--follow.\n";

static void s_job_json(const kvc_job_t *j)
{
    char t[40];
    printf("{\"id\":\"%s\"", j->id);
    kvc_json_field(stdout, "site", j->site);
    kvc_json_field(stdout, "kind", kvc_job_kind_name(j->kind));
    kvc_json_field(stdout, "playbook", j->playbook);
    kvc_json_field(stdout, "node", j->node);
    kvc_json_field(stdout, "role", j->role);
    kvc_json_field(stdout, "state", kvc_job_state_name(j->state));
    printf(",\"task\":%u,\"tasks\":%u,\"changed\":%u", j->task, j->tasks, j->changed);
    kvc_json_field(stdout, "current_task", j->current_task);
    kvc_json_field(stdout, "reason", j->reason);
    kvc_json_field(stdout, "requested_by", j->requested_by);
    kvc_json_field(stdout, "requested", kvc_fmt_time_ms(j->requested_ms, t, sizeof t));
    kvc_json_field(stdout, "started", kvc_fmt_time_ms(j->started_ms, t, sizeof t));
    kvc_json_field(stdout, "finished", kvc_fmt_time_ms(j->finished_ms, t, sizeof t));
    kvc_json_field(stdout, "coordinator", j->coordinator);
    printf(",\"term\":%" PRIu64 ",\"vars\":{", j->term);
    for (size_t i = 0; i < j->n_vars; i++) {
        if (i)
            putchar(',');
        kvc_json_str(stdout, j->vars[i].key);
        putchar(':');
        kvc_json_str(stdout, j->vars[i].value);
    }
    printf("}}");
}

/* "task 3 of 12: Install containerd" */
static void s_progress(const kvc_job_t *j, char *buf, size_t cap)
{
    if (!j->task)
        snprintf(buf, cap, "%s", kvc_job_state_name(j->state));
    else if (j->tasks)
        snprintf(buf, cap, "task %u of %u: %s", j->task, j->tasks, j->current_task);
    else
        snprintf(buf, cap, "task %u: %s", j->task, j->current_task);
}

static int s_decode_jobs(const Kvc__Ctl__Reply *rep, kvc_job_t **out, size_t *n)
{
    *n = 0;
    *out = kvc_calloc(rep->n_jobs ? rep->n_jobs : 1, sizeof **out);
    if (!*out)
        return kvc_cli_fail(S_FAIL, "out of memory");
    for (size_t i = 0; i < rep->n_jobs; i++) {
        if (kvc_job_decode(rep->jobs[i].data, rep->jobs[i].len, &(*out)[*n]) != 0)
            return kvc_cli_fail(S_FAIL, "the peer sent a bad job record");
        (*n)++;
    }
    return S_OK;
}

/* Prints the reply's one job (show, and after a command that queued one). */
static int s_print_one(const kvc_cli_conn_t *c, const Kvc__Ctl__Reply *rep, const char *verb)
{
    kvc_job_t *js;
    size_t n;
    int rc = s_decode_jobs(rep, &js, &n);
    if (rc == 0 && n == 1) {
        const kvc_job_t *j = &js[0];
        if (c->json) {
            s_job_json(j);
            putchar('\n');
        } else if (verb) {
            printf("job %s %s: %s of %s (kvc jobs logs %s --follow)\n", j->id, verb,
                   kvc_job_kind_name(j->kind), j->node, j->id);
        } else {
            char p[256], t[40];
            s_progress(j, p, sizeof p);
            printf("id:          %s\nkind:        %s (%s)\nnode:        %s (%s)\nstate:       %s\n"
                   "progress:    %s\nchanged:     %u\n",
                   j->id, kvc_job_kind_name(j->kind), j->playbook, j->node, j->role,
                   kvc_job_state_name(j->state), p, j->changed);
            if (j->reason[0])
                printf("reason:      %s\n", j->reason);
            printf("requested:   %s by %s\n", kvc_fmt_time_ms(j->requested_ms, t, sizeof t),
                   j->requested_by);
            if (j->coordinator[0])
                printf("run by:      %s (term %" PRIu64 ")\n", j->coordinator, j->term);
            for (size_t i = 0; i < j->n_vars; i++)
                printf("var:         %s=%s\n", j->vars[i].key, j->vars[i].value);
        }
    }
    kvc_free(js);
    return rc;
}

static int s_list(const kvc_cli_conn_t *c)
{
    Kvc__Ctl__Reply *rep = NULL;
    int rc = kvc_cli_call(c, "jobs-list", NULL, 0, NULL, 0, &rep);
    if (rc)
        return rc;
    kvc_job_t *js;
    size_t n;
    rc = s_decode_jobs(rep, &js, &n);
    if (rc == 0) {
        if (c->json)
            putchar('[');
        else
            printf("%-16s %-14s %-16s %-11s %-22s %s\n", "ID", "KIND", "NODE", "STATE",
                   "REQUESTED", "PROGRESS");
        for (size_t i = 0; i < n; i++) {
            if (c->json) {
                if (i)
                    putchar(',');
                s_job_json(&js[i]);
                continue;
            }
            char p[256], t[40];
            s_progress(&js[i], p, sizeof p);
            printf("%-16s %-14s %-16s %-11s %-22s %s\n", js[i].id, kvc_job_kind_name(js[i].kind),
                   js[i].node, kvc_job_state_name(js[i].state),
                   kvc_fmt_time_ms(js[i].requested_ms, t, sizeof t), js[i].reason[0] ? js[i].reason : p);
        }
        if (c->json)
            puts("]");
    }
    kvc_free(js);
    kvc__ctl__reply__free_unpacked(rep, kvc_pb_allocator());
    return rc;
}

static int s_id_cmd(const kvc_cli_conn_t *c, const char *cmd, const char *id, const char *verb)
{
    const char *args[2] = {"id", id};
    Kvc__Ctl__Reply *rep = NULL;
    int rc = kvc_cli_call(c, cmd, args, 1, NULL, 0, &rep);
    if (rc)
        return rc;
    rc = s_print_one(c, rep, verb);
    kvc__ctl__reply__free_unpacked(rep, kvc_pb_allocator());
    return rc;
}

/* Prints the log from chunk *from; the last chunk may grow, so it is asked
 * again next time and only its new bytes are printed. */
static int s_logs(const kvc_cli_conn_t *c, const char *id, int follow)
{
    uint32_t from = 0;
    size_t printed = 0; /* bytes of chunk `from` already printed */
    int tty = isatty(STDERR_FILENO) && follow && !c->json;
    for (;;) {
        char f[16];
        snprintf(f, sizeof f, "%u", from);
        const char *args[4] = {"id", id, "from", f};
        Kvc__Ctl__Reply *rep = NULL;
        int rc = kvc_cli_call(c, "jobs-logs", args, 2, NULL, 0, &rep);
        if (rc)
            return rc;
        kvc_job_t *js;
        size_t n;
        rc = s_decode_jobs(rep, &js, &n);
        if (rc || n != 1) {
            kvc_free(js);
            kvc__ctl__reply__free_unpacked(rep, kvc_pb_allocator());
            return rc ? rc : kvc_cli_fail(S_FAIL, "the peer sent no job");
        }
        if (tty)
            fputs("\r\033[K", stderr);
        /* rep->log[0] is chunk `from`, of which `printed` bytes are out */
        for (size_t i = 0; i < rep->n_log; i++) {
            const char *text = rep->log[i];
            size_t len = strlen(text), skip = i == 0 ? printed : 0;
            if (skip < len)
                fwrite(text + skip, 1, len - skip, stdout);
            printed = len;
        }
        if (rep->n_log)
            from += (uint32_t)rep->n_log - 1; /* the last one may still grow */
        fflush(stdout);
        kvc_job_t j = js[0];
        kvc_free(js);
        int more = rep->next_chunk < j.log_chunks; /* a long log comes in several calls */
        kvc__ctl__reply__free_unpacked(rep, kvc_pb_allocator());
        if (more)
            continue;
        if (!follow || kvc_job_finished(j.state)) {
            if (follow)
                fprintf(stderr, "job %s %s%s%s\n", j.id, kvc_job_state_name(j.state),
                        j.reason[0] ? ": " : "", j.reason);
            return !follow || j.state == KVC_JOB_OK ? S_OK : S_FAIL;
        }
        if (tty) {
            char p[256];
            s_progress(&j, p, sizeof p);
            fprintf(stderr, "[%s] %.150s", kvc_job_state_name(j.state), p);
        }
        struct timespec ts = {0, FOLLOW_POLL_MS * 1000000L};
        nanosleep(&ts, NULL); /* a person watching: poll the peer twice a second */
    }
}

int kvc_cli_jobs(int argc, char **argv, const char *config, const char *control, int json,
                 int timeout_ms)
{
    kvc_cli_conn_t c = {config, control, json, timeout_ms};
    char **rest = kvc_calloc((size_t)argc + 1, sizeof *rest);
    if (!rest)
        return kvc_cli_fail(S_FAIL, "out of memory");
    int n = 0, help = 0, follow = 0;
    int rc = kvc_cli_conn_parse(&c, argc, argv, rest, &n, &help);
    /* --follow is logs' own */
    int k = 0;
    for (int i = 0; i < n; i++)
        if (strcmp(rest[i], "--follow") == 0 || strcmp(rest[i], "-f") == 0)
            follow = 1;
        else
            rest[k++] = rest[i];
    n = k;
    const char *verb = n ? rest[0] : "";
    if (rc) {
    } else if (help) {
        fputs(s_help_jobs, stdout);
    } else if (n && rest[0][0] == '-') {
        rc = kvc_cli_fail(S_USAGE, "jobs: unknown option '%.40s' (kvc jobs --help)", rest[0]);
    } else if (n == 0 || strcmp(verb, "list") == 0) {
        rc = n > 1 ? kvc_cli_fail(S_USAGE, "jobs list takes no argument") : s_list(&c);
    } else if (strcmp(verb, "show") == 0 || strcmp(verb, "logs") == 0 ||
               strcmp(verb, "cancel") == 0 || strcmp(verb, "retry") == 0) {
        if (n != 2)
            rc = kvc_cli_fail(S_USAGE, "jobs %s needs one job ID (kvc jobs list)", verb);
        else if (follow && strcmp(verb, "logs") != 0)
            rc = kvc_cli_fail(S_USAGE, "--follow is for jobs logs");
        else if (strcmp(verb, "logs") == 0)
            rc = s_logs(&c, rest[1], follow);
        else if (strcmp(verb, "show") == 0)
            rc = s_id_cmd(&c, "jobs-show", rest[1], NULL);
        else if (strcmp(verb, "cancel") == 0)
            rc = s_id_cmd(&c, "jobs-cancel", rest[1], "cancelling");
        else
            rc = s_id_cmd(&c, "jobs-retry", rest[1], "queued");
    } else {
        rc = kvc_cli_fail(S_USAGE, "jobs: '%.40s' is not list, show, logs, cancel or retry",
                          verb);
    }
    kvc_free(rest);
    return rc;
}

int kvc_cli_cluster(int argc, char **argv, const char *config, const char *control, int json,
                    int timeout_ms)
{
    kvc_cli_conn_t c = {config, control, json, timeout_ms};
    char **rest = kvc_calloc((size_t)argc + 1, sizeof *rest);
    if (!rest)
        return kvc_cli_fail(S_FAIL, "out of memory");
    int n = 0, help = 0;
    int rc = kvc_cli_conn_parse(&c, argc, argv, rest, &n, &help);
    static const char *opts[] = {"--node", "--name", "--pod-cidr", "--kind", "--service-cidr",
                                 "--advertise", "--site"};
    static const char *keys[] = {"node", "name", "pod_cidr", "kind", "service_cidr",
                                 "advertise", "site"};
    const char *args[14];
    size_t na = 0;
    if (rc == 0 && !help && (n == 0 || strcmp(rest[0], "create") != 0))
        rc = kvc_cli_fail(S_USAGE, "cluster: only 'create' (kvc cluster --help)");
    for (int i = 1; rc == 0 && !help && i < n; i++) {
        size_t o = 0;
        while (o < 7 && strcmp(rest[i], opts[o]) != 0)
            o++;
        if (o == 7)
            rc = kvc_cli_fail(S_USAGE, "cluster create: unknown argument '%.40s'", rest[i]);
        else if (i + 1 >= n)
            rc = kvc_cli_fail(S_USAGE, "%s needs a value", opts[o]);
        else {
            args[na++] = keys[o];
            args[na++] = rest[++i];
        }
    }
    static const char *need[] = {"node", "name", "pod_cidr", "kind"};
    static const char *need_opt[] = {"--node", "--name", "--pod-cidr", "--kind"};
    for (size_t q = 0; rc == 0 && !help && q < 4; q++) {
        size_t i = 0;
        while (i < na && strcmp(args[i], need[q]) != 0)
            i += 2;
        if (i >= na)
            rc = kvc_cli_fail(S_USAGE, "cluster create: %s is needed (kvc cluster --help)",
                              need_opt[q]);
    }
    if (help) {
        fputs(s_help_cluster, stdout);
    } else if (rc == 0) {
        Kvc__Ctl__Reply *rep = NULL;
        rc = kvc_cli_call(&c, "cluster-create", args, na / 2, NULL, 0, &rep);
        if (rc == 0) {
            rc = s_print_one(&c, rep, "queued");
            kvc__ctl__reply__free_unpacked(rep, kvc_pb_allocator());
        }
    }
    kvc_free(rest);
    return rc;
}

int kvc_cli_nodes_setup(const char *node, const char *role, const char *config,
                        const char *control, int json, int timeout_ms)
{
    kvc_cli_conn_t c = {config, control, json, timeout_ms};
    const char *args[4] = {"node", node, "role", role ? role : ""};
    Kvc__Ctl__Reply *rep = NULL;
    int rc = kvc_cli_call(&c, "nodes-setup", args, 2, NULL, 0, &rep);
    if (rc)
        return rc;
    rc = s_print_one(&c, rep, "queued");
    kvc__ctl__reply__free_unpacked(rep, kvc_pb_allocator());
    return rc;
}
