/*
 * job_runner.h - the site coordinator runs node setup and cluster creation
 * jobs (jobs.h) with ansible-playbook, one at a time, as a child process
 * in its own process group, with an inventory generated from the node's
 * record. Progress comes from the kvc_events callback
 * (ops/ansible/callback_plugins/kvc_events.py) as JSON lines on a pipe,
 * never from Ansible's human output, which becomes the job's log
 * (redacted). The record and the log are written to the site map, so every
 * peer of the site sees them.
 *
 * Who runs what: only the peer the election lets act. When it stops being
 * able to act its child is killed and the job marked interrupted; a new
 * coordinator marks every job still "running" under another coordinator
 * (or under this peer's previous life) interrupted, and runs queued jobs
 * oldest first. Cancellation is a separate key (jobs_cancel), so a running
 * job's own record updates never overwrite it.
 *
 * A core on the core.h interface (no channel); its tick reads the child's
 * pipes (non-blocking) and reaps it.
 */
#ifndef KVC_JOB_RUNNER_H
#define KVC_JOB_RUNNER_H

#include "config.h"
#include "core.h"
#include "election.h"
#include "jobs.h"
#include "kv.h"

typedef struct kvc_job_runner kvc_job_runner_t;

/* site (the site map's kv) and election are borrowed; cfg read now. */
kvc_job_runner_t *kvc_job_runner_new(const kvc_config_t *cfg, const char *self_id,
                                     const kvc_kv_t *site, const kvc_election_t *election,
                                     kvc_err_t *err);
/* Kills a running child (its job is left running: the next coordinator
 * marks it interrupted) and frees. */
void kvc_job_runner_destroy(kvc_job_runner_t **self_p);

/* What a node-setup job tells kvc join on the node: a peer of the site and
 * its key (this peer's advertised endpoint and public key, hex). */
void kvc_job_runner_set_join(kvc_job_runner_t *r, const char *endpoint, const char *key_hex);

/* Queues a job (any peer may; the coordinator runs it). node-setup: node
 * must be an approved node of this site, with no queued or running job.
 * cluster-create: vars must hold cluster_name, pod_cidr and kind; node as
 * node-setup. KVC_ENOENT / KVC_ESTATE / KVC_EEXIST / KVC_EINVAL with err
 * naming what to fix. *out gets the record. */
int kvc_jobs_request(const kvc_kv_t *site, const char *site_name, const char *by,
                     kvc_job_kind_t kind, const char *node, const char *role,
                     const kvc_job_var_t *vars, size_t n_vars, kvc_job_t *out, kvc_err_t *err);
/* Asks for a job's cancellation (KVC_ENOENT unknown, KVC_ESTATE finished). */
int kvc_jobs_cancel(const kvc_kv_t *site, const char *id, kvc_err_t *err);
/* Queues a new job with the parameters of a finished one. */
int kvc_jobs_retry(const kvc_kv_t *site, const char *id, const char *by, kvc_job_t *out,
                   kvc_err_t *err);

typedef struct {
    uint64_t started, ok, failed, interrupted, cancelled;
    char running[KVC_JOB_ID_LEN + 1]; /* "" none */
} kvc_job_runner_stats_t;
void kvc_job_runner_stats(const kvc_job_runner_t *r, kvc_job_runner_stats_t *out);

extern const kvc_core_ops_t kvc_job_runner_core_ops;

#endif
