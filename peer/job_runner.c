/*
 * job_runner.c - the coordinator's ansible-playbook jobs. See job_runner.h.
 */
#define _GNU_SOURCE /* syscall, strtok_r */
#include "job_runner.h"

#include "cli_out.h"
#include "clock.h"
#include "json_cursor.h"
#include "log.h"
#include "nodes.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NS_CANCEL 'c'
#define SCAN_MS 1000      /* look for queued and orphaned jobs this often */
#define POLL_MS 200       /* read a running child this often */
#define FLUSH_MS 500      /* write progress and log at most this often */
#define LOSS_GRACE_MS 2000 /* a coordinator that cannot act this long stops its job */
#define LINE_MAX_ 4096
#define KILL_GRACE_MS 10000 /* a stopped playbook gets SIGKILL after this */
#define PENDING_LOG_MAX (64 * 1024)

extern char **environ;

struct kvc_job_runner {
    kvc_kv_t kv;
    const kvc_election_t *election;
    char self[KVC_MEMBER_ID_MAX + 1];
    char site[64];
    char playbooks[KVC_PATH_MAX], program[KVC_PATH_MAX], connection[16], data_dir[KVC_PATH_MAX];
    char ssh_user[64];
    char kube_kind[16], kubeconfig[KVC_PATH_MAX];
    uint64_t timeout_ms;
    char join_ep[KVC_ENDPOINT_MAX], join_key[65];
    uint64_t next_scan_ms, lost_since_ms;
    /* the running child */
    pid_t pid;
    int ev_fd, out_fd;
    kvc_job_t job;
    uint64_t started_mono_ms, flushed_ms;
    char ev_line[LINE_MAX_];
    size_t ev_len;
    char *pending; /* log text not yet written */
    size_t pending_len;
    int dirty, killed;
    uint64_t killed_at_ms;
    kvc_job_state_t kill_state; /* what a killed job becomes */
    char kill_reason[256];
    char last_failure[256];
    kvc_job_runner_stats_t stats;
};

/* --- requests (any peer) ------------------------------------------------------ */

typedef struct {
    const char *node;
    int busy;
    char busy_id[KVC_JOB_ID_LEN + 1];
} s_busy_t;

static int s_busy_one(const kvc_job_t *j, void *arg)
{
    s_busy_t *b = arg;
    if (!kvc_job_finished(j->state) && strcmp(j->node, b->node) == 0) {
        b->busy = 1;
        kvc_strlcpy(b->busy_id, j->id, sizeof b->busy_id);
    }
    return 0;
}

typedef struct {
    const char *name;
    kvc_node_t n;
    int found;
} s_node_find_t;

static int s_node_one(const kvc_node_t *n, void *arg)
{
    s_node_find_t *f = arg;
    if (strcmp(n->name, f->name) == 0) {
        f->n = *n;
        f->found = 1;
    }
    return 0;
}

static const char *s_var(const kvc_job_var_t *v, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i].key, key) == 0)
            return v[i].value;
    return NULL;
}

/* Printable, no quotes or backslashes: it goes into JSON and YAML. */
static int s_value_ok(const char *v)
{
    for (; *v; v++)
        if ((unsigned char)*v < 0x20 || (unsigned char)*v >= 0x7f || *v == '"' || *v == '\\')
            return 0;
    return 1;
}

int kvc_jobs_request(const kvc_kv_t *site, const char *site_name, const char *by,
                     kvc_job_kind_t kind, const char *node, const char *role,
                     const kvc_job_var_t *vars, size_t n_vars, kvc_job_t *out, kvc_err_t *err)
{
    if (!node || !node[0] || !kvc_node_name_ok(node))
        return kvc_err_set(err, KVC_EINVAL, "a node name is needed (kvc nodes list)");
    s_node_find_t f = {.name = node};
    int rc = kvc_nodes_each(site, s_node_one, &f);
    if (rc)
        return kvc_err_set(err, rc, "cannot read the node records: %s", kvc_strerror(rc));
    if (!f.found)
        return kvc_err_set(err, KVC_ENOENT, "no node %s at site %s (kvc nodes list)", node,
                           site_name);
    if (f.n.state != KVC_NODE_APPROVED)
        return kvc_err_set(err, KVC_ESTATE, "node %s is %s: approve it first (kvc nodes approve %s)",
                           node, kvc_node_state_name(f.n.state), node);
    if (kind == KVC_JOB_NODE_SETUP && f.n.n_addresses == 0)
        return kvc_err_set(err, KVC_ESTATE, "node %s has no address to reach it at", node);
    if (role && role[0] && strcmp(role, "worker") != 0 && strcmp(role, "server") != 0)
        return kvc_err_set(err, KVC_EINVAL, "--role: worker or server");
    if (n_vars > KVC_JOB_VARS_MAX)
        return kvc_err_set(err, KVC_EINVAL, "at most %d variables", KVC_JOB_VARS_MAX);
    for (size_t i = 0; i < n_vars; i++)
        if (!s_value_ok(vars[i].value) || !vars[i].key[0])
            return kvc_err_set(err, KVC_EINVAL, "%s: printable, without quotes or backslashes",
                               vars[i].key);
    if (kind == KVC_JOB_CLUSTER_CREATE) {
        static const char *need[] = {"cluster_name", "pod_cidr", "kind"};
        for (size_t i = 0; i < 3; i++)
            if (!s_var(vars, n_vars, need[i]) || !s_var(vars, n_vars, need[i])[0])
                return kvc_err_set(err, KVC_EINVAL, "%s is needed", need[i]);
        const char *k = s_var(vars, n_vars, "kind");
        if (strcmp(k, "kubeadm") != 0 && strcmp(k, "k3s") != 0)
            return kvc_err_set(err, KVC_EINVAL, "kind: kubeadm or k3s");
    }
    s_busy_t b = {.node = node};
    if ((rc = kvc_jobs_each(site, s_busy_one, &b)) != 0)
        return kvc_err_set(err, rc, "cannot read the jobs: %s", kvc_strerror(rc));
    if (b.busy)
        return kvc_err_set(err, KVC_EEXIST, "node %s already has job %s: one job per node at a time",
                           node, b.busy_id);
    kvc_job_t j;
    memset(&j, 0, sizeof j);
    kvc_job_new_id(j.id);
    kvc_strlcpy(j.site, site_name, sizeof j.site);
    j.kind = kind;
    kvc_strlcpy(j.playbook, kind == KVC_JOB_NODE_SETUP ? "node.yml" : "cluster.yml",
                sizeof j.playbook);
    kvc_strlcpy(j.node, node, sizeof j.node);
    kvc_strlcpy(j.role, role && role[0] ? role : kind == KVC_JOB_NODE_SETUP ? "worker" : "server",
                sizeof j.role);
    kvc_strlcpy(j.requested_by, by, sizeof j.requested_by);
    j.requested_ms = kvc_clock_wall_ms();
    j.state = KVC_JOB_QUEUED;
    for (size_t i = 0; i < n_vars; i++)
        j.vars[i] = vars[i];
    j.n_vars = n_vars;
    rc = kvc_jobs_put(site, &j);
    if (rc)
        return kvc_err_set(err, rc, "cannot store the job: %s", kvc_strerror(rc));
    if (out)
        *out = j;
    return KVC_OK;
}

int kvc_jobs_cancel(const kvc_kv_t *site, const char *id, kvc_err_t *err)
{
    kvc_job_t j;
    int rc = kvc_jobs_get(site, id, &j);
    if (rc)
        return kvc_err_set(err, rc == KVC_EINVAL ? KVC_EINVAL : KVC_ENOENT,
                           "no job %.20s (kvc jobs list)", id);
    if (kvc_job_finished(j.state))
        return kvc_err_set(err, KVC_ESTATE, "job %s is already %s", id, kvc_job_state_name(j.state));
    rc = site->put(site->self, NS_CANCEL, id, KVC_JOB_ID_LEN, "1", 1);
    return rc ? kvc_err_set(err, rc, "cannot store the cancellation: %s", kvc_strerror(rc))
              : KVC_OK;
}

int kvc_jobs_retry(const kvc_kv_t *site, const char *id, const char *by, kvc_job_t *out,
                   kvc_err_t *err)
{
    kvc_job_t j;
    int rc = kvc_jobs_get(site, id, &j);
    if (rc)
        return kvc_err_set(err, KVC_ENOENT, "no job %.20s (kvc jobs list)", id);
    if (!kvc_job_finished(j.state))
        return kvc_err_set(err, KVC_ESTATE, "job %s is still %s", id, kvc_job_state_name(j.state));
    return kvc_jobs_request(site, j.site, by, j.kind, j.node, j.role, j.vars, j.n_vars, out, err);
}

/* --- the child ------------------------------------------------------------------ */

/* Writes DIR/inventory.json and DIR/vars.json. */
static int s_write_inputs(kvc_job_runner_t *r, const char *dir, const kvc_node_t *n,
                          kvc_err_t *err)
{
    char path[KVC_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/inventory.json", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return kvc_err_set(err, KVC_EIO, "%s: %s", path, strerror(errno));
    /* the group the playbook's play targets (ops/ansible: node.yml "nodes",
     * cluster.yml "servers") */
    fputs("{\"all\":{\"children\":{", f);
    kvc_json_str(f, r->job.kind == KVC_JOB_NODE_SETUP ? "nodes" : "servers");
    fputs(":{\"hosts\":{", f);
    kvc_json_str(f, n->name);
    fputs(":{\"ansible_host\":", f);
    kvc_json_str(f, n->n_addresses ? n->addresses[0] : "127.0.0.1");
    if (strcmp(r->connection, "local") == 0) {
        fputs(",\"ansible_connection\":\"local\"", f);
    } else {
        fputs(",\"ansible_user\":", f);
        kvc_json_str(f, r->ssh_user);
    }
    fputs("}}}}}}\n", f);
    int bad = fclose(f) != 0;
    snprintf(path, sizeof path, "%s/vars.json", dir);
    f = bad ? NULL : fopen(path, "w");
    if (!f)
        return kvc_err_set(err, KVC_EIO, "%s: cannot write", path);
    fputs("{\"kvc_site\":", f);
    kvc_json_str(f, r->site);
    fputs(",\"kvc_node_name\":", f);
    kvc_json_str(f, n->name);
    fputs(",\"kvc_node_role\":", f);
    kvc_json_str(f, r->job.role);
    fputs(",\"kvc_node_arch\":", f);
    kvc_json_str(f, n->arch);
    fputs(",\"kvc_join_peer\":", f);
    kvc_json_str(f, r->join_ep);
    fputs(",\"kvc_join_peer_key\":", f);
    kvc_json_str(f, r->join_key);
    fputs(",\"kvc_job_id\":", f);
    kvc_json_str(f, r->job.id);
    /* the roles' own variables (their defaults/main.yml under ops/ansible/roles) */
    static const char *const map[][2] = {{"cluster_name", "cluster_create_name"},
                                         {"pod_cidr", "cluster_create_pod_cidr"},
                                         {"kind", "cluster_create_kind"},
                                         {"service_cidr", "cluster_create_service_cidr"},
                                         {"advertise_address", "cluster_create_advertise_address"}};
    if (r->job.kind == KVC_JOB_NODE_SETUP) {
        const char *const pairs[][2] = {{"cluster_join_site", r->site},
                                        {"cluster_join_peer", r->join_ep},
                                        {"cluster_join_peer_key", r->join_key},
                                        {"cluster_join_name", n->name},
                                        {"cluster_join_kind", r->kube_kind}};
        for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
            fputc(',', f);
            kvc_json_str(f, pairs[i][0]);
            fputc(':', f);
            kvc_json_str(f, pairs[i][1]);
        }
    } else if (r->kubeconfig[0]) {
        fputs(",\"cluster_create_kubeconfig\":", f);
        kvc_json_str(f, r->kubeconfig);
    }
    for (size_t i = 0; i < r->job.n_vars; i++) {
        fputc(',', f);
        kvc_json_str(f, r->job.vars[i].key);
        fputc(':', f);
        kvc_json_str(f, r->job.vars[i].value);
        for (size_t k = 0; k < sizeof map / sizeof map[0]; k++)
            if (strcmp(r->job.vars[i].key, map[k][0]) == 0) {
                fputc(',', f);
                kvc_json_str(f, map[k][1]);
                fputc(':', f);
                kvc_json_str(f, r->job.vars[i].value);
            }
    }
    fputs("}\n", f);
    return fclose(f) == 0 ? KVC_OK : kvc_err_set(err, KVC_EIO, "%s: cannot write", path);
}

static int s_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static volatile sig_atomic_t s_parent_gone;

static void s_on_parent_gone(int sig)
{
    (void)sig;
    s_parent_gone = 1;
}

/*
 * The forked child: a small supervisor between kvc-peer and
 * ansible-playbook. It leads a process group of its own, so a cancel
 * (kill of the group) reaches the playbook and everything it started; and
 * when kvc-peer dies (kill -9 of the coordinator), the kernel tells it
 * (PR_SET_PDEATHSIG) and it stops the whole group, so no playbook keeps
 * running behind the next coordinator's back. Only async-signal-safe calls:
 * the parent has threads.
 */
static void s_supervise(pid_t parent, const char *prog, char **argv, char **envp,
                        const char *dir, const int evp[2], const int outp[2])
{
    setpgid(0, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_parent_gone;
    sigaction(SIGUSR1, &sa, NULL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    prctl(PR_SET_PDEATHSIG, SIGUSR1);
    if (getppid() != parent)
        _exit(127);
    pid_t pb = fork();
    if (pb == 0) {
        signal(SIGUSR1, SIG_DFL);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(outp[1], 1) < 0 ||
            dup2(outp[1], 2) < 0 || dup2(evp[1], 3) < 0 || chdir(dir) != 0)
            _exit(126);
        syscall(SYS_close_range, 4U, ~0U, 0U);
        execve(prog, argv, envp);
        _exit(127);
    }
    syscall(SYS_close_range, 3U, ~0U, 0U); /* the pipes are the playbook's */
    if (pb < 0)
        _exit(126);
    int status = 0;
    for (;;) {
        pid_t w = waitpid(pb, &status, 0);
        if (w == pb)
            break;
        if (s_parent_gone) {
            signal(SIGTERM, SIG_IGN);
            kill(0, SIGTERM);
            struct timespec ts = {5, 0};
            nanosleep(&ts, NULL);
            kill(0, SIGKILL);
            _exit(128 + SIGTERM);
        }
    }
    if (WIFEXITED(status))
        _exit(WEXITSTATUS(status));
    _exit(128 + WTERMSIG(status));
}

/* Starts ansible-playbook for r->job; KVC_OK or a reason in err. */
static int s_spawn(kvc_job_runner_t *r, const kvc_node_t *n, kvc_err_t *err)
{
    char dir[KVC_PATH_MAX + 64], pb[KVC_PATH_MAX + 80], cb[KVC_PATH_MAX + 32];
    snprintf(dir, sizeof dir, "%s/jobs", r->data_dir);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return kvc_err_set(err, KVC_EIO, "%s: %s", dir, strerror(errno));
    snprintf(dir, sizeof dir, "%s/jobs/%s", r->data_dir, r->job.id);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return kvc_err_set(err, KVC_EIO, "%s: %s", dir, strerror(errno));
    snprintf(pb, sizeof pb, "%s/%s", r->playbooks, r->job.playbook);
    snprintf(cb, sizeof cb, "%s/callback_plugins", r->playbooks);
    struct stat sb;
    if (stat(pb, &sb) != 0)
        return kvc_err_set(err, KVC_ENOENT, "playbook %s: %s (set jobs.playbooks)", pb,
                           strerror(errno));
    int rc = s_write_inputs(r, dir, n, err);
    if (rc)
        return rc;
    int evp[2], outp[2];
    if (pipe(evp) != 0)
        return kvc_err_set(err, KVC_EIO, "pipe: %s", strerror(errno));
    if (pipe(outp) != 0) {
        close(evp[0]), close(evp[1]);
        return kvc_err_set(err, KVC_EIO, "pipe: %s", strerror(errno));
    }
    char inv[KVC_PATH_MAX + 96], vars[KVC_PATH_MAX + 96];
    snprintf(inv, sizeof inv, "%s/inventory.json", dir);
    snprintf(vars, sizeof vars, "@%s/vars.json", dir);
    char *argv[] = {r->program, "-i", inv, "-e", vars, pb, NULL};
    /* the environment: ours, and the callback's settings */
    size_t ne = 0;
    while (environ[ne])
        ne++;
    char **envp = kvc_calloc(ne + 9, sizeof *envp);
    char e_cb[KVC_PATH_MAX + 48], e_tmp[KVC_PATH_MAX + 96];
    snprintf(e_cb, sizeof e_cb, "ANSIBLE_CALLBACK_PLUGINS=%s", cb);
    snprintf(e_tmp, sizeof e_tmp, "ANSIBLE_LOCAL_TEMP=%s/tmp", dir);
    char e_cfg[KVC_PATH_MAX + 48];
    snprintf(e_cfg, sizeof e_cfg, "ANSIBLE_CONFIG=%s/ansible.cfg", r->playbooks);
    size_t k = 0;
    for (size_t i = 0; envp && i < ne; i++)
        if (strncmp(environ[i], "ANSIBLE_", 8) != 0 && strncmp(environ[i], "KVC_EVENTS_FD=", 14) != 0)
            envp[k++] = environ[i];
    if (envp) {
        envp[k++] = e_cb;
        envp[k++] = "ANSIBLE_CALLBACKS_ENABLED=kvc_events";
        envp[k++] = "KVC_EVENTS_FD=3";
        envp[k++] = "ANSIBLE_NOCOLOR=1";
        envp[k++] = "ANSIBLE_RETRY_FILES_ENABLED=0";
        envp[k++] = e_tmp;
        if (access(e_cfg + 15, R_OK) == 0)
            envp[k++] = e_cfg;
        envp[k] = NULL;
    }
    /* the program's path, found before fork: the child may only make
     * async-signal-safe calls (this process has threads) */
    char prog[KVC_PATH_MAX + 256];
    int found = 0;
    if (strchr(r->program, '/')) {
        kvc_strlcpy(prog, r->program, sizeof prog);
        found = access(prog, X_OK) == 0;
    } else {
        const char *path = getenv("PATH");
        char dirs[4096];
        kvc_strlcpy(dirs, path ? path : "/usr/local/bin:/usr/bin:/bin", sizeof dirs);
        for (char *save = NULL, *d = strtok_r(dirs, ":", &save); d && !found;
             d = strtok_r(NULL, ":", &save)) {
            snprintf(prog, sizeof prog, "%s/%s", d, r->program);
            found = access(prog, X_OK) == 0;
        }
    }
    int e = !envp ? ENOMEM : !found ? ENOENT : 0;
    pid_t parent = getpid(), pid = e ? -1 : fork();
    if (pid == 0)
        s_supervise(parent, prog, argv, envp, dir, evp, outp); /* never returns */
    if (pid < 0 && !e)
        e = errno;
    if (pid > 0)
        setpgid(pid, pid); /* also here: no window where a kill misses it */
    kvc_free(envp);
    close(evp[1]);
    close(outp[1]);
    if (e != 0) {
        close(evp[0]);
        close(outp[0]);
        if (e == ENOENT)
            return kvc_err_set(err, KVC_ENOENT,
                               "%s is not installed: apt install ansible, or set "
                               "jobs.ansible_playbook",
                               r->program);
        return kvc_err_set(err, KVC_EIO, "cannot start %s: %s", r->program, strerror(e));
    }
    s_nonblock(evp[0]);
    s_nonblock(outp[0]);
    r->pid = pid;
    r->ev_fd = evp[0];
    r->out_fd = outp[0];
    r->ev_len = 0;
    r->pending_len = 0;
    r->killed = 0;
    r->last_failure[0] = '\0';
    return KVC_OK;
}

/* --- events --------------------------------------------------------------------- */

/* One kvc_events line. */
static void s_event(kvc_job_runner_t *r, const char *line, size_t len)
{
    kvc_json_cursor_t c;
    kvc_err_t err = {0};
    kvc_json_cursor_init(&c, line, len, &err);
    char key[32], event[16] = "", name[160] = "", host[64] = "", msg[200] = "";
    uint64_t tasks = 0;
    int changed = 0, st = 0, rc;
    while ((rc = kvc_json_cursor_member(&c, &st, key, sizeof key)) == 1) {
        if (strcmp(key, "event") == 0)
            rc = kvc_json_cursor_read_string(&c, event, sizeof event, NULL);
        else if (strcmp(key, "name") == 0 || strcmp(key, "task") == 0)
            rc = kvc_json_cursor_read_string(&c, name, sizeof name, NULL);
        else if (strcmp(key, "host") == 0)
            rc = kvc_json_cursor_read_string(&c, host, sizeof host, NULL);
        else if (strcmp(key, "msg") == 0)
            rc = kvc_json_cursor_read_string(&c, msg, sizeof msg, NULL);
        else if (strcmp(key, "tasks") == 0)
            rc = kvc_json_cursor_read_u64(&c, &tasks);
        else if (strcmp(key, "changed") == 0)
            rc = kvc_json_cursor_read_bool(&c, &changed);
        else
            rc = kvc_json_cursor_skip(&c);
        if (rc < 0)
            break;
    }
    if (rc < 0)
        return; /* not a line of ours: ignored */
    kvc_job_t *j = &r->job;
    if (strcmp(event, "play") == 0) {
        j->tasks += tasks > 10000 ? 10000 : (uint32_t)tasks;
    } else if (strcmp(event, "task") == 0) {
        j->task++;
        kvc_strlcpy(j->current_task, name, sizeof j->current_task);
    } else if (strcmp(event, "ok") == 0) {
        j->changed += changed != 0;
    } else if (strcmp(event, "failed") == 0 || strcmp(event, "unreachable") == 0) {
        kvc_job_redact(msg, strlen(msg));
        snprintf(r->last_failure, sizeof r->last_failure, "%s %s at task \"%.100s\"%s%.120s",
                 host, strcmp(event, "failed") == 0 ? "failed" : "unreachable", name,
                 msg[0] ? ": " : "", msg);
    }
    r->dirty = 1;
}

/* Reads what the child wrote; 1 while a pipe is open. */
static int s_read_child(kvc_job_runner_t *r)
{
    char buf[4096];
    int open_fds = 0;
    while (r->ev_fd >= 0) {
        ssize_t n = read(r->ev_fd, buf, sizeof buf);
        if (n > 0) {
            for (ssize_t i = 0; i < n; i++) {
                if (buf[i] == '\n') {
                    s_event(r, r->ev_line, r->ev_len);
                    r->ev_len = 0;
                } else if (r->ev_len < sizeof r->ev_line) {
                    r->ev_line[r->ev_len++] = buf[i];
                }
            }
            continue;
        }
        if (n < 0 && errno == EAGAIN)
            break;
        close(r->ev_fd);
        r->ev_fd = -1;
    }
    while (r->out_fd >= 0) {
        ssize_t n = read(r->out_fd, buf, sizeof buf);
        if (n > 0) {
            size_t take = (size_t)n;
            if (r->pending_len + take > PENDING_LOG_MAX)
                take = PENDING_LOG_MAX - r->pending_len;
            memcpy(r->pending + r->pending_len, buf, take);
            r->pending_len += take;
            r->dirty = 1;
            continue;
        }
        if (n < 0 && errno == EAGAIN)
            break;
        close(r->out_fd);
        r->out_fd = -1;
    }
    open_fds = r->ev_fd >= 0 || r->out_fd >= 0;
    return open_fds;
}

/* Writes the record and the log text gathered so far. */
static void s_flush(kvc_job_runner_t *r, uint64_t now)
{
    if (r->pending_len) {
        if (kvc_jobs_log_append(&r->kv, &r->job, r->pending, r->pending_len) == KVC_ERANGE)
            kvc_warn("job %s: its log is full; the rest is not kept", r->job.id);
        r->pending_len = 0;
    }
    if (kvc_jobs_put(&r->kv, &r->job) != 0)
        kvc_warn("job %s: cannot store its progress", r->job.id);
    r->dirty = 0;
    r->flushed_ms = now;
}

static void s_finish(kvc_job_runner_t *r, kvc_job_state_t st, const char *reason, uint64_t now)
{
    r->job.state = st;
    r->job.finished_ms = kvc_clock_wall_ms();
    kvc_strlcpy(r->job.reason, reason ? reason : "", sizeof r->job.reason);
    kvc_job_redact(r->job.reason, strlen(r->job.reason));
    s_flush(r, now);
    kvc_info("job %s (%s of %s) %s%s%s", r->job.id, kvc_job_kind_name(r->job.kind), r->job.node,
             kvc_job_state_name(st), r->job.reason[0] ? ": " : "", r->job.reason);
    switch (st) {
    case KVC_JOB_OK: r->stats.ok++; break;
    case KVC_JOB_FAILED: r->stats.failed++; break;
    case KVC_JOB_INTERRUPTED: r->stats.interrupted++; break;
    case KVC_JOB_CANCELLED: r->stats.cancelled++; break;
    default: break;
    }
    r->stats.running[0] = '\0';
    (void)r->kv.del(r->kv.self, NS_CANCEL, r->job.id, KVC_JOB_ID_LEN);
    size_t gone = kvc_jobs_prune(&r->kv);
    if (gone)
        kvc_info("jobs: %zu old finished job%s forgotten (the newest %d are kept)", gone,
                 gone == 1 ? "" : "s", KVC_JOBS_KEEP);
}

static void s_kill(kvc_job_runner_t *r, kvc_job_state_t st, const char *reason)
{
    if (r->killed)
        return;
    kill(-r->pid, SIGTERM);
    r->killed = 1;
    r->killed_at_ms = kvc_clock_mono_ms();
    r->kill_state = st;
    kvc_strlcpy(r->kill_reason, reason, sizeof r->kill_reason);
}

static void s_watch(kvc_job_runner_t *r, uint64_t now)
{
    int pipes_open = s_read_child(r);
    uint8_t flag[4];
    size_t fl = 0;
    if (!r->killed &&
        r->kv.get(r->kv.self, NS_CANCEL, r->job.id, KVC_JOB_ID_LEN, flag, sizeof flag, &fl) == 0)
        s_kill(r, KVC_JOB_CANCELLED, "cancelled");
    if (!r->killed && now - r->started_mono_ms > r->timeout_ms)
        s_kill(r, KVC_JOB_FAILED, "it ran longer than jobs.timeout_s");
    if (!r->killed && r->lost_since_ms && now - r->lost_since_ms > LOSS_GRACE_MS)
        s_kill(r, KVC_JOB_INTERRUPTED, "this peer stopped being the coordinator");
    int status = 0;
    pid_t w = pipes_open ? 0 : waitpid(r->pid, &status, WNOHANG);
    if (r->killed && now - r->killed_at_ms > KILL_GRACE_MS)
        kill(-r->pid, SIGKILL); /* it ignored SIGTERM */
    if (w != r->pid) {
        if (r->dirty && now - r->flushed_ms >= FLUSH_MS)
            s_flush(r, now);
        return;
    }
    if (r->ev_fd >= 0)
        close(r->ev_fd), r->ev_fd = -1;
    if (r->out_fd >= 0)
        close(r->out_fd), r->out_fd = -1;
    r->pid = 0;
    if (r->killed) {
        s_finish(r, r->kill_state, r->kill_reason, now);
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        s_finish(r, KVC_JOB_OK, "", now);
    } else {
        char why[256];
        if (r->last_failure[0])
            kvc_strlcpy(why, r->last_failure, sizeof why);
        else if (WIFEXITED(status) && WEXITSTATUS(status) == 4)
            kvc_strlcpy(why, "a host was unreachable", sizeof why);
        else if (WIFEXITED(status))
            snprintf(why, sizeof why, "ansible-playbook exited %d (see kvc jobs logs %s)",
                     WEXITSTATUS(status), r->job.id);
        else
            snprintf(why, sizeof why, "ansible-playbook died of signal %d", WTERMSIG(status));
        s_finish(r, KVC_JOB_FAILED, why, now);
    }
}

/* --- scanning (the coordinator) --------------------------------------------------- */

typedef struct {
    kvc_job_runner_t *r;
    kvc_job_t next;
    int have;
    kvc_job_t *orphans;
    size_t n_orphans;
} s_scan_t;

static int s_scan_one(const kvc_job_t *j, void *arg)
{
    s_scan_t *s = arg;
    if (strcmp(j->site, s->r->site) != 0)
        return 0;
    if (j->state == KVC_JOB_RUNNING && !(s->r->pid && strcmp(j->id, s->r->job.id) == 0)) {
        if (s->n_orphans < 16)
            s->orphans[s->n_orphans++] = *j;
    } else if (j->state == KVC_JOB_QUEUED &&
               (!s->have || j->requested_ms < s->next.requested_ms)) {
        s->next = *j;
        s->have = 1;
    }
    return 0;
}

static void s_start(kvc_job_runner_t *r, const kvc_job_t *j, uint64_t now)
{
    r->job = *j;
    r->job.state = KVC_JOB_RUNNING;
    r->job.started_ms = kvc_clock_wall_ms();
    kvc_strlcpy(r->job.coordinator, r->self, sizeof r->job.coordinator);
    r->job.term = kvc_election_term(r->election);
    r->job.task = r->job.tasks = r->job.changed = 0;
    r->started_mono_ms = now;
    r->stats.started++;
    kvc_strlcpy(r->stats.running, j->id, sizeof r->stats.running);
    uint8_t flag[4];
    size_t fl = 0;
    if (r->kv.get(r->kv.self, NS_CANCEL, j->id, KVC_JOB_ID_LEN, flag, sizeof flag, &fl) == 0) {
        s_finish(r, KVC_JOB_CANCELLED, "cancelled before it started", now);
        return;
    }
    s_node_find_t f = {.name = j->node};
    kvc_err_t err = {0};
    if (kvc_nodes_each(&r->kv, s_node_one, &f) != 0 || !f.found ||
        f.n.state != KVC_NODE_APPROVED) {
        s_finish(r, KVC_JOB_FAILED,
                 f.found ? "the node is no longer approved" : "the node's record is gone", now);
        return;
    }
    if (s_spawn(r, &f.n, &err) != 0) {
        s_finish(r, KVC_JOB_FAILED, err.msg, now);
        return;
    }
    kvc_info("job %s: running %s for node %s (pid %d)", j->id, j->playbook, j->node, (int)r->pid);
    s_flush(r, now);
}

static int s_tick(void *core, uint64_t now, kvc_outbox_t *out)
{
    kvc_job_runner_t *r = core;
    (void)out;
    int can = kvc_election_can_act(r->election, now);
    if (can)
        r->lost_since_ms = 0;
    else if (!r->lost_since_ms)
        r->lost_since_ms = now ? now : 1;
    if (r->pid)
        s_watch(r, now);
    if (!can || now < r->next_scan_ms)
        return KVC_OK;
    r->next_scan_ms = now + SCAN_MS;
    kvc_job_t orphans[16];
    s_scan_t s = {.r = r, .orphans = orphans};
    if (kvc_jobs_each(&r->kv, s_scan_one, &s) != 0)
        return KVC_OK;
    for (size_t i = 0; i < s.n_orphans; i++) {
        kvc_job_t *j = &orphans[i];
        char why[256];
        snprintf(why, sizeof why, "its coordinator %.120s stopped (term %llu)", j->coordinator,
                 (unsigned long long)j->term);
        j->state = KVC_JOB_INTERRUPTED;
        j->finished_ms = kvc_clock_wall_ms();
        kvc_strlcpy(j->reason, why, sizeof j->reason);
        if (kvc_jobs_put(&r->kv, j) == 0) {
            r->stats.interrupted++;
            kvc_warn("job %s (%s) interrupted: %s; kvc jobs retry %s runs it again", j->id,
                     j->node, why, j->id);
        }
    }
    if (!r->pid && s.have)
        s_start(r, &s.next, now);
    return KVC_OK;
}

static uint64_t s_deadline(const void *core)
{
    const kvc_job_runner_t *r = core;
    uint64_t d = r->next_scan_ms;
    if (r->pid) {
        uint64_t p = kvc_clock_mono_ms() + POLL_MS;
        if (p < d)
            d = p;
    }
    return d;
}

const kvc_core_ops_t kvc_job_runner_core_ops = {
    .name = "jobs",
    .channel = 0,
    .tick = s_tick,
    .next_deadline = s_deadline,
};

/* --- life --------------------------------------------------------------------------- */

kvc_job_runner_t *kvc_job_runner_new(const kvc_config_t *cfg, const char *self_id,
                                     const kvc_kv_t *site, const kvc_election_t *election,
                                     kvc_err_t *err)
{
    kvc_job_runner_t *r = kvc_calloc(1, sizeof *r);
    if (r)
        r->pending = kvc_malloc(PENDING_LOG_MAX);
    if (!r || !r->pending) {
        if (r)
            kvc_free(r);
        kvc_err_set(err, KVC_ENOMEM, "jobs: out of memory");
        return NULL;
    }
    r->kv = *site;
    r->election = election;
    r->ev_fd = r->out_fd = -1;
    kvc_strlcpy(r->self, self_id, sizeof r->self);
    kvc_strlcpy(r->site, cfg->site, sizeof r->site);
    kvc_strlcpy(r->playbooks, cfg->jobs_playbooks, sizeof r->playbooks);
    kvc_strlcpy(r->program, cfg->jobs_ansible_playbook, sizeof r->program);
    kvc_strlcpy(r->connection, cfg->jobs_connection, sizeof r->connection);
    kvc_strlcpy(r->ssh_user, cfg->jobs_ssh_user[0] ? cfg->jobs_ssh_user : "root", sizeof r->ssh_user);
    kvc_strlcpy(r->data_dir, cfg->data_dir, sizeof r->data_dir);
    kvc_strlcpy(r->kube_kind, cfg->kube_kind, sizeof r->kube_kind);
    kvc_strlcpy(r->kubeconfig, cfg->kube_kubeconfig, sizeof r->kubeconfig);
    r->timeout_ms = (uint64_t)(cfg->jobs_timeout_s ? cfg->jobs_timeout_s : 3600) * 1000;
    r->next_scan_ms = kvc_clock_mono_ms();
    return r;
}

void kvc_job_runner_destroy(kvc_job_runner_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    kvc_job_runner_t *r = *self_p;
    if (r->pid) {
        kill(-r->pid, SIGTERM);
        waitpid(r->pid, NULL, 0);
    }
    if (r->ev_fd >= 0)
        close(r->ev_fd);
    if (r->out_fd >= 0)
        close(r->out_fd);
    kvc_free(r->pending);
    kvc_free(r);
    *self_p = NULL;
}

void kvc_job_runner_set_join(kvc_job_runner_t *r, const char *endpoint, const char *key_hex)
{
    kvc_strlcpy(r->join_ep, endpoint, sizeof r->join_ep);
    kvc_strlcpy(r->join_key, key_hex, sizeof r->join_key);
}

void kvc_job_runner_stats(const kvc_job_runner_t *r, kvc_job_runner_stats_t *out)
{
    *out = r->stats;
}
