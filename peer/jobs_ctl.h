/*
 * jobs_ctl.h - the control commands of node setup and cluster creation
 * jobs (job_runner.h): "nodes-setup", "cluster-create", "jobs-list",
 * "jobs-show", "jobs-logs", "jobs-cancel", "jobs-retry". Replies carry
 * encoded kvc.jobs.Job records (control.proto).
 */
#ifndef KVC_JOBS_CTL_H
#define KVC_JOBS_CTL_H

#include "ctl_table.h"
#include "job_runner.h"

typedef struct {
    const kvc_kv_t *kv; /* the site map */
    const char *site;
    const char *self_id;
} kvc_jobs_ctl_t;

int kvc_jobs_ctl_setup(const kvc_jobs_ctl_t *jc, const Kvc__Ctl__Request *req, kvc_ctl_ctx_t *ctx);
int kvc_jobs_ctl_cluster(const kvc_jobs_ctl_t *jc, const Kvc__Ctl__Request *req,
                         kvc_ctl_ctx_t *ctx);
int kvc_jobs_ctl_list(const kvc_jobs_ctl_t *jc, const Kvc__Ctl__Request *req, kvc_ctl_ctx_t *ctx);
int kvc_jobs_ctl_show(const kvc_jobs_ctl_t *jc, const Kvc__Ctl__Request *req, kvc_ctl_ctx_t *ctx);
int kvc_jobs_ctl_logs(const kvc_jobs_ctl_t *jc, const Kvc__Ctl__Request *req, kvc_ctl_ctx_t *ctx);
int kvc_jobs_ctl_cancel(const kvc_jobs_ctl_t *jc, const Kvc__Ctl__Request *req,
                        kvc_ctl_ctx_t *ctx);
int kvc_jobs_ctl_retry(const kvc_jobs_ctl_t *jc, const Kvc__Ctl__Request *req, kvc_ctl_ctx_t *ctx);

#endif
