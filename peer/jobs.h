/*
 * jobs.h - node setup and cluster creation jobs: records and logs in the
 * site map (a kv, kv.h, replicated to every peer of the site), so any peer
 * lists them and follows a job's progress, and a job whose coordinator died
 * stays visible as interrupted.
 *
 * Layout: namespace 'j': key = job id (16 hex digits) -> kvc.jobs.Job;
 * namespace 'l': key = job id + be32 chunk index -> kvc.jobs.LogChunk;
 * namespace 'c': key = job id -> "1" when its cancellation was asked.
 * Only the newest KVC_JOBS_KEEP finished jobs are kept (kvc_jobs_prune).
 * A job's log is at most KVC_JOB_LOG_CHUNKS chunks of KVC_JOB_CHUNK_MAX
 * bytes; what comes after is dropped with a last line saying so. Log text
 * is redacted (kvc_job_redact) before it is stored.
 */
#ifndef KVC_JOBS_H
#define KVC_JOBS_H

#include "base.h"
#include "kv.h"

#include <stddef.h>
#include <stdint.h>

#define KVC_JOB_ID_LEN 16
#define KVC_JOB_VARS_MAX 16
#define KVC_JOB_CHUNK_MAX 2048
#define KVC_JOB_LOG_CHUNKS 64 /* 128 KiB of log per job */
#define KVC_JOB_RECORD_MAX 4096
#define KVC_JOBS_KEEP 50 /* finished jobs kept per site; the oldest go first */

typedef enum {
    KVC_JOB_QUEUED = 0,
    KVC_JOB_RUNNING,
    KVC_JOB_OK,
    KVC_JOB_FAILED,
    KVC_JOB_INTERRUPTED,
    KVC_JOB_CANCELLED
} kvc_job_state_t;

typedef enum { KVC_JOB_NODE_SETUP = 0, KVC_JOB_CLUSTER_CREATE } kvc_job_kind_t;

typedef struct {
    char key[48];
    char value[256];
} kvc_job_var_t;

typedef struct {
    char id[KVC_JOB_ID_LEN + 1];
    char site[64];
    kvc_job_kind_t kind;
    char playbook[64];
    char node[64];
    char role[16]; /* node-setup: worker or server */
    char requested_by[128];
    uint64_t requested_ms;
    kvc_job_state_t state;
    uint32_t task, tasks, changed;
    char current_task[160];
    uint64_t started_ms, finished_ms;
    char reason[256];
    char coordinator[128];
    uint64_t term;
    kvc_job_var_t vars[KVC_JOB_VARS_MAX];
    size_t n_vars;
    uint32_t log_chunks;
    int cancel;
} kvc_job_t;

const char *kvc_job_state_name(kvc_job_state_t st); /* "queued", ... */
const char *kvc_job_kind_name(kvc_job_kind_t k);    /* "node-setup", "cluster-create" */
int kvc_job_state_parse(const char *s, kvc_job_state_t *out);
/* 1 for ok, failed, interrupted and cancelled. */
int kvc_job_finished(kvc_job_state_t st);

int kvc_job_encode(const kvc_job_t *j, uint8_t *buf, size_t cap, size_t *len);
/* KVC_EPARSE for anything that is not a bounded, well-formed record. */
int kvc_job_decode(const uint8_t *buf, size_t len, kvc_job_t *j);

/* Stores j (a new id must be set: kvc_job_new_id). */
int kvc_jobs_put(const kvc_kv_t *kv, const kvc_job_t *j);
int kvc_jobs_get(const kvc_kv_t *kv, const char *id, kvc_job_t *j);
/* Every job, in no particular order; damaged records are skipped. */
typedef int (*kvc_jobs_each_fn)(const kvc_job_t *j, void *arg);
int kvc_jobs_each(const kvc_kv_t *kv, kvc_jobs_each_fn fn, void *arg);
/* 16 random hex digits. */
void kvc_job_new_id(char id[KVC_JOB_ID_LEN + 1]);

/* Appends text (redacted here) to j's log: fills the current chunk, then
 * new ones, up to KVC_JOB_LOG_CHUNKS; j->log_chunks is updated (store j
 * after). */
int kvc_jobs_log_append(const kvc_kv_t *kv, kvc_job_t *j, const char *text, size_t len);
/* Chunk i of a job's log into buf (NUL-terminated); KVC_ENOENT past the end. */
int kvc_jobs_log_get(const kvc_kv_t *kv, const char *id, uint32_t i, char *buf, size_t cap);

/* Deletes a job's record, its log and its cancellation key. */
int kvc_jobs_delete(const kvc_kv_t *kv, const kvc_job_t *j);
/* Deletes the oldest finished jobs of the site beyond the newest
 * KVC_JOBS_KEEP (the site map is bounded: node approvals share it).
 * Returns how many went. */
size_t kvc_jobs_prune(const kvc_kv_t *kv);

/* Replaces secrets in text[0..len) (in place, same length) with '*':
 * bootstrap tokens (abcdef.0123456789abcdef), k3s K10 tokens, enrollment
 * codes (kvce-...), and the value of any "token", "password", "secret" or
 * "enroll" key=value / "key": "value" pair. */
void kvc_job_redact(char *text, size_t len);

#endif
