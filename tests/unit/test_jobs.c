/* Unit tests of peer/jobs.c: the job record codec (round trip, hostile
 * bytes, bounds), job ids, the log in chunks (appends that span chunks, the
 * bound) and the redaction of secrets in log text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "jobs.h"

typedef struct {
    char dir[64];
    kvc_store_t *st;
    kvc_kv_t kv;
} s_env_t;

static int s_setup(void **state)
{
    s_env_t *e = calloc(1, sizeof *e);
    snprintf(e->dir, sizeof e->dir, "/tmp/kvc-jobs-XXXXXX");
    assert_non_null(mkdtemp(e->dir));
    e->st = kvc_store_open(e->dir, 16 << 20, NULL);
    assert_non_null(e->st);
    e->kv = kvc_kv_store(e->st);
    *state = e;
    return 0;
}

static int s_teardown(void **state)
{
    s_env_t *e = *state;
    kvc_store_destroy(&e->st);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", e->dir);
    assert_int_equal(system(cmd), 0);
    free(e);
    return 0;
}

static void s_job(kvc_job_t *j)
{
    memset(j, 0, sizeof *j);
    kvc_job_new_id(j->id);
    strcpy(j->site, "site-a");
    j->kind = KVC_JOB_CLUSTER_CREATE;
    strcpy(j->playbook, "cluster.yml");
    strcpy(j->node, "n1");
    strcpy(j->role, "server");
    strcpy(j->requested_by, "site-a/j1");
    j->requested_ms = 1765000000000ull;
    j->state = KVC_JOB_RUNNING;
    j->task = 3;
    j->tasks = 12;
    strcpy(j->current_task, "Install containerd");
    strcpy(j->coordinator, "site-a/j2");
    j->term = 7;
    strcpy(j->vars[0].key, "cluster_name");
    strcpy(j->vars[0].value, "edge");
    j->n_vars = 1;
}

static void test_codec(void **state)
{
    (void)state;
    kvc_job_t j, back;
    s_job(&j);
    assert_int_equal(strlen(j.id), KVC_JOB_ID_LEN);
    kvc_job_t k;
    s_job(&k);
    assert_string_not_equal(j.id, k.id); /* random ids */
    uint8_t buf[KVC_JOB_RECORD_MAX];
    size_t len;
    assert_int_equal(kvc_job_encode(&j, buf, sizeof buf, &len), 0);
    assert_int_equal(kvc_job_decode(buf, len, &back), 0);
    assert_memory_equal(&back, &j, sizeof j);
    for (size_t cut = 0; cut < len; cut++) {
        int rc = kvc_job_decode(buf, cut, &back);
        assert_true(rc == 0 || rc == KVC_EPARSE);
    }
    uint8_t junk[] = {0x0a, 3, 'x', 'y', 'z'}; /* an id that is not 16 hex digits */
    assert_int_equal(kvc_job_decode(junk, sizeof junk, &back), KVC_EPARSE);
    assert_int_equal(kvc_job_decode(buf, KVC_JOB_RECORD_MAX + 1, &back), KVC_EPARSE);
    assert_int_equal(kvc_job_encode(&j, buf, 8, &len), KVC_ERANGE);
    kvc_job_state_t st;
    assert_int_equal(kvc_job_state_parse("interrupted", &st), 0);
    assert_int_equal(st, KVC_JOB_INTERRUPTED);
    assert_int_equal(kvc_job_state_parse("done", &st), KVC_EINVAL);
    assert_true(kvc_job_finished(KVC_JOB_CANCELLED));
    assert_false(kvc_job_finished(KVC_JOB_RUNNING));
}

static void test_store_and_log(void **state)
{
    s_env_t *e = *state;
    kvc_job_t j, got;
    s_job(&j);
    assert_int_equal(kvc_jobs_put(&e->kv, &j), 0);
    assert_int_equal(kvc_jobs_get(&e->kv, j.id, &got), 0);
    assert_string_equal(got.current_task, "Install containerd");
    assert_int_equal(kvc_jobs_get(&e->kv, "0000000000000000", &got), KVC_ENOENT);
    assert_int_equal(kvc_jobs_get(&e->kv, "not-an-id", &got), KVC_EINVAL);
    /* 5000 bytes in three appends: chunks of KVC_JOB_CHUNK_MAX, joined back exactly */
    char text[5000], back[6000] = "";
    for (size_t i = 0; i < sizeof text; i++)
        text[i] = (char)('a' + i % 26);
    assert_int_equal(kvc_jobs_log_append(&e->kv, &j, text, 100), 0);
    assert_int_equal(kvc_jobs_log_append(&e->kv, &j, text + 100, 2900), 0);
    assert_int_equal(kvc_jobs_log_append(&e->kv, &j, text + 3000, 2000), 0);
    assert_int_equal(j.log_chunks, (5000 + KVC_JOB_CHUNK_MAX - 1) / KVC_JOB_CHUNK_MAX);
    for (uint32_t i = 0; i < j.log_chunks; i++) {
        char chunk[KVC_JOB_CHUNK_MAX + 1];
        assert_int_equal(kvc_jobs_log_get(&e->kv, j.id, i, chunk, sizeof chunk), 0);
        strcat(back, chunk);
    }
    assert_int_equal(strlen(back), sizeof text);
    assert_memory_equal(back, text, sizeof text);
    char chunk[16];
    assert_int_equal(kvc_jobs_log_get(&e->kv, j.id, j.log_chunks, chunk, sizeof chunk),
                     KVC_ENOENT);
    /* the bound: the log stops at KVC_JOB_LOG_CHUNKS chunks */
    static char big[KVC_JOB_CHUNK_MAX * 8];
    memset(big, 'x', sizeof big);
    int rc = 0;
    for (int i = 0; i < KVC_JOB_LOG_CHUNKS && rc == 0; i++)
        rc = kvc_jobs_log_append(&e->kv, &j, big, sizeof big);
    assert_int_equal(rc, KVC_ERANGE);
    assert_int_equal(j.log_chunks, KVC_JOB_LOG_CHUNKS);
}

static int s_count_one(const kvc_job_t *j, void *arg)
{
    (void)j;
    (*(int *)arg)++;
    return 0;
}

/* Only the newest KVC_JOBS_KEEP finished jobs stay, with their logs; a
 * running job is never pruned. */
static void test_prune(void **state)
{
    s_env_t *e = *state;
    kvc_job_t jobs[KVC_JOBS_KEEP + 5], running;
    for (size_t i = 0; i < KVC_JOBS_KEEP + 5; i++) {
        s_job(&jobs[i]);
        jobs[i].state = KVC_JOB_OK;
        jobs[i].requested_ms = 1000 + i;
        assert_int_equal(kvc_jobs_log_append(&e->kv, &jobs[i], "PLAY [x]\n", 9), 0);
        assert_int_equal(kvc_jobs_put(&e->kv, &jobs[i]), 0);
    }
    s_job(&running);
    running.requested_ms = 1; /* the oldest of all, but not finished */
    assert_int_equal(kvc_jobs_put(&e->kv, &running), 0);
    assert_int_equal(kvc_jobs_prune(&e->kv), 5);
    int n = 0;
    assert_int_equal(kvc_jobs_each(&e->kv, s_count_one, &n), 0);
    assert_int_equal(n, KVC_JOBS_KEEP + 1);
    kvc_job_t got;
    char chunk[64];
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(kvc_jobs_get(&e->kv, jobs[i].id, &got), KVC_ENOENT);
        assert_int_equal(kvc_jobs_log_get(&e->kv, jobs[i].id, 0, chunk, sizeof chunk), KVC_ENOENT);
    }
    assert_int_equal(kvc_jobs_get(&e->kv, jobs[5].id, &got), 0);
    assert_int_equal(kvc_jobs_log_get(&e->kv, jobs[5].id, 0, chunk, sizeof chunk), 0);
    assert_int_equal(kvc_jobs_get(&e->kv, running.id, &got), 0);
    assert_int_equal(kvc_jobs_prune(&e->kv), 0);
}

static void s_redacted(const char *in, const char *want)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", in);
    kvc_job_redact(buf, strlen(buf));
    if (strcmp(buf, want) != 0)
        fail_msg("redact(\"%s\") = \"%s\", want \"%s\"", in, buf, want);
}

static void test_redact(void **state)
{
    (void)state;
    s_redacted("kubeadm join --token abcdef.0123456789abcdef x",
               "kubeadm join --token *********************** x");
    s_redacted("token=abcdef.0123456789abcdef", "token=***********************");
    s_redacted("\"password\": \"hunter2\", \"user\": \"bob\"", "\"password\": \"*******\", \"user\": \"bob\"");
    s_redacted("K10abc123def456::server:0123456789abcdef0123", "********************************************");
    s_redacted("code kvce-ABCDEFGHIJKLMNOPQRSTUVWXYZ1 used", "code ******************************** used");
    s_redacted("SECRET_KEY=s3cr3t rest", "SECRET_KEY=****** rest");
    /* a key word with a value is starred even when harmless: it errs safe */
    s_redacted("tokens: 3 minted", "tokens: * minted");
    /* not secrets: left alone */
    s_redacted("no secrets here: abc.def", "no secrets here: abc.def");
    s_redacted("version 1.2.3", "version 1.2.3");
    /* hostile input never reads past the end */
    char edge[] = {'t', 'o', 'k', 'e', 'n', '='};
    kvc_job_redact(edge, sizeof edge);
    assert_memory_equal(edge, "token=", 6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codec),
        cmocka_unit_test_setup_teardown(test_store_and_log, s_setup, s_teardown),
        cmocka_unit_test(test_redact),
        cmocka_unit_test_setup_teardown(test_prune, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
