#define _GNU_SOURCE /* memmem */
/* Unit tests of peer/nodes.c: node records (codec, hostile bytes, lookup by
 * ID prefix or name, the operator's decisions), enrollment codes (expiry,
 * uses, site, only the hash stored) and the audit log (order, bound). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "credential.h"
#include "nodes.h"

typedef struct {
    char dir[64];
    kvc_store_t *st;
    kvc_kv_t kv;
} s_env_t;

static int s_setup(void **state)
{
    s_env_t *e = calloc(1, sizeof *e);
    snprintf(e->dir, sizeof e->dir, "/tmp/kvc-nodes-XXXXXX");
    assert_non_null(mkdtemp(e->dir));
    assert_int_equal(kvc_crypto_init(), 0);
    e->st = kvc_store_open(e->dir, 1 << 20, NULL);
    assert_non_null(e->st);
    e->kv = kvc_kv_store(e->st);
    *state = e;
    return 0;
}

static int s_teardown(void **state)
{
    s_env_t *e = *state;
    char path[128];
    kvc_store_destroy(&e->st);
    snprintf(path, sizeof path, "%s/data.mdb", e->dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/lock.mdb", e->dir);
    unlink(path);
    rmdir(e->dir);
    free(e);
    return 0;
}

static kvc_node_t s_node(uint8_t first, const char *name)
{
    kvc_node_t n;
    memset(&n, 0, sizeof n);
    for (int i = 0; i < 32; i++)
        n.key[i] = (uint8_t)(first + i);
    snprintf(n.site, sizeof n.site, "site-a");
    snprintf(n.name, sizeof n.name, "%s", name);
    snprintf(n.arch, sizeof n.arch, "arm64");
    snprintf(n.addresses[0], sizeof n.addresses[0], "10.0.0.%u", first);
    n.n_addresses = 1;
    n.first_seen_unix = n.updated_unix = 1000;
    return n;
}

static void test_record_codec(void **state)
{
    kvc_node_t n = s_node(1, "pi-1"), got;
    n.state = KVC_NODE_APPROVED;
    snprintf(n.updated_by, sizeof n.updated_by, "site-a/gw-1");
    uint8_t buf[KVC_NODE_RECORD_MAX];
    size_t len = 0;
    assert_int_equal(kvc_node_encode(&n, buf, sizeof buf, &len), KVC_OK);
    assert_int_equal(kvc_node_decode(buf, len, &got), KVC_OK);
    assert_memory_equal(&got, &n, sizeof n);
    assert_int_equal(kvc_node_encode(&n, buf, 10, &len), KVC_ERANGE);
    /* hostile: a damaged tail, a bad name, oversize; out untouched */
    kvc_node_t keep = got;
    assert_int_equal(kvc_node_decode(buf, len - 1, &got), KVC_EPARSE);
    kvc_node_t bad = n;
    snprintf(bad.name, sizeof bad.name, "Not_A_Name");
    assert_int_equal(kvc_node_encode(&bad, buf, sizeof buf, &len), KVC_OK);
    assert_int_equal(kvc_node_decode(buf, len, &got), KVC_EPARSE);
    uint8_t big[KVC_NODE_RECORD_MAX + 1] = {0};
    assert_int_equal(kvc_node_decode(big, sizeof big, &got), KVC_ERANGE);
    assert_memory_equal(&got, &keep, sizeof got);
    assert_true(kvc_node_name_ok("pi-1"));
    assert_false(kvc_node_name_ok("-pi"));
    assert_false(kvc_node_name_ok("pi-"));
    assert_false(kvc_node_name_ok(""));
    assert_false(kvc_node_name_ok("PI"));
}

static void test_find_and_decide(void **state)
{
    s_env_t *e = *state;
    kvc_node_t a = s_node(0x10, "pi-a"), b = s_node(0x11, "pi-b"), got;
    assert_int_equal(kvc_nodes_put(&e->kv, &a), KVC_OK);
    assert_int_equal(kvc_nodes_put(&e->kv, &b), KVC_OK);
    kvc_err_t err = {0};
    char hex[65];
    kvc_key_hex(a.key, hex);
    hex[12] = '\0';
    assert_int_equal(kvc_nodes_find(&e->kv, hex, &got, &err), KVC_OK);
    assert_string_equal(got.name, "pi-a");
    assert_int_equal(kvc_nodes_find(&e->kv, "pi-b", &got, &err), KVC_OK);
    assert_memory_equal(got.key, b.key, 32);
    assert_int_equal(kvc_nodes_find(&e->kv, "pi-z", &got, &err), KVC_ENOENT);
    assert_non_null(strstr(err.msg, "no node pi-z"));
    /* a too-short prefix is a name, not a prefix */
    assert_int_equal(kvc_nodes_find(&e->kv, "1011", &got, &err), KVC_ENOENT);

    assert_int_equal(kvc_nodes_decide(&e->kv, "pi-a", KVC_NODE_REVOKED, "x", 2000, NULL, &err),
                     KVC_ESTATE);
    assert_non_null(strstr(err.msg, "is pending; it cannot be revoked"));
    assert_int_equal(kvc_nodes_decide(&e->kv, "pi-a", KVC_NODE_APPROVED, "site-a/gw-1", 2000,
                                      &got, &err),
                     KVC_OK);
    assert_int_equal(got.state, KVC_NODE_APPROVED);
    assert_int_equal(kvc_nodes_get(&e->kv, a.key, &got), KVC_OK);
    assert_int_equal(got.state, KVC_NODE_APPROVED);
    assert_string_equal(got.updated_by, "site-a/gw-1");
    assert_int_equal(got.updated_unix, 2000);
    assert_int_equal(kvc_nodes_decide(&e->kv, "pi-a", KVC_NODE_APPROVED, "x", 2001, NULL, &err),
                     KVC_ESTATE);
    assert_int_equal(kvc_nodes_decide(&e->kv, "pi-a", KVC_NODE_REJECTED, "x", 2001, NULL, &err),
                     KVC_ESTATE);
    assert_int_equal(kvc_nodes_decide(&e->kv, "pi-a", KVC_NODE_REVOKED, "x", 2002, NULL, &err),
                     KVC_OK);
    assert_int_equal(kvc_nodes_decide(&e->kv, "pi-b", KVC_NODE_REJECTED, "x", 2002, NULL, &err),
                     KVC_OK);
    assert_int_equal(kvc_nodes_get(&e->kv, b.key, &got), KVC_OK);
    assert_int_equal(got.state, KVC_NODE_REJECTED);
    /* a rejected or revoked node may be approved after all */
    assert_int_equal(kvc_nodes_decide(&e->kv, "pi-b", KVC_NODE_APPROVED, "x", 2003, NULL, &err),
                     KVC_OK);
}

static void test_enroll(void **state)
{
    s_env_t *e = *state;
    char code[KVC_ENROLL_CODE_LEN + 1], code2[KVC_ENROLL_CODE_LEN + 1];
    kvc_enroll_t en, used;
    kvc_err_t err = {0};
    assert_int_equal(kvc_enroll_create(&e->kv, "site-a", 600, 2, "site-a/gw-1", 1000, code, &en,
                                       &err),
                     KVC_OK);
    assert_int_equal(strlen(code), KVC_ENROLL_CODE_LEN);
    assert_int_equal(strncmp(code, "kvce-", 5), 0);
    assert_int_equal(en.expires_unix, 1600);
    assert_int_equal(strlen(en.id), 16);
    assert_int_equal(kvc_enroll_create(&e->kv, "site-a", 60, 1, "x", 1000, code2, NULL, &err),
                     KVC_OK);
    assert_string_not_equal(code, code2);
    /* bounds */
    assert_int_equal(kvc_enroll_create(&e->kv, "site-a", 0, 1, "x", 1000, code2, NULL, &err),
                     KVC_ERANGE);
    assert_int_equal(kvc_enroll_create(&e->kv, "site-a", 60, 0, "x", 1000, code2, NULL, &err),
                     KVC_ERANGE);
    /* another site's code, a wrong code, then two uses and no third */
    assert_int_equal(kvc_enroll_use(&e->kv, code, "site-b", 1001, &used), KVC_ENOENT);
    char wrong[KVC_ENROLL_CODE_LEN + 1];
    memcpy(wrong, code, sizeof wrong);
    wrong[10] = wrong[10] == 'a' ? 'b' : 'a';
    assert_int_equal(kvc_enroll_use(&e->kv, wrong, "site-a", 1001, &used), KVC_ENOENT);
    assert_int_equal(kvc_enroll_use(&e->kv, "short", "site-a", 1001, &used), KVC_ENOENT);
    assert_int_equal(kvc_enroll_use(&e->kv, code, "site-a", 1001, &used), KVC_OK);
    assert_int_equal(used.uses_left, 1);
    assert_string_equal(used.id, en.id);
    assert_int_equal(kvc_enroll_use(&e->kv, code, "site-a", 1002, &used), KVC_OK);
    assert_int_equal(used.uses_left, 0);
    assert_int_equal(kvc_enroll_use(&e->kv, code, "site-a", 1003, &used), KVC_ENOENT);
    /* expiry: code2 ran out at 1060 */
    assert_int_equal(kvc_enroll_use(&e->kv, code2, "site-a", 1060, &used), KVC_EEXPIRED);
    assert_int_equal(kvc_enroll_use(&e->kv, code2, "site-a", 1061, &used), KVC_ENOENT);
}

/* The store never holds an enrollment code, only its hash. */
static int s_count_enroll(const kvc_enroll_t *en, void *arg)
{
    (*(int *)arg)++;
    return 0;
}

static void test_enroll_secret_not_stored(void **state)
{
    s_env_t *e = *state;
    char code[KVC_ENROLL_CODE_LEN + 1];
    kvc_err_t err = {0};
    assert_int_equal(kvc_enroll_create(&e->kv, "site-a", 600, 1, "x", 1000, code, NULL, &err),
                     KVC_OK);
    int n = 0;
    assert_int_equal(kvc_enroll_each(&e->kv, s_count_enroll, &n), 0);
    assert_int_equal(n, 1);
    kvc_store_destroy(&e->st);
    char path[128];
    snprintf(path, sizeof path, "%s/data.mdb", e->dir);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static char data[1 << 20];
    size_t len = fread(data, 1, sizeof data, f);
    fclose(f);
    assert_true(len > 0);
    assert_null(memmem(data, len, code + 5, KVC_ENROLL_CODE_LEN - 5));
    e->st = kvc_store_open(e->dir, 1 << 20, NULL);
    assert_non_null(e->st);
    e->kv = kvc_kv_store(e->st);
}

typedef struct {
    int n;
    int64_t last;
    int ordered;
} s_audit_walk_t;

static int s_walk(const kvc_audit_t *a, void *arg)
{
    s_audit_walk_t *w = arg;
    if (w->n && a->at_unix_ms <= w->last)
        w->ordered = 0;
    w->last = a->at_unix_ms;
    w->n++;
    return 0;
}

static void test_audit(void **state)
{
    s_env_t *e = *state;
    kvc_audit_t a;
    memset(&a, 0, sizeof a);
    snprintf(a.node, sizeof a.node, "pi-1");
    snprintf(a.outcome, sizeof a.outcome, "minted");
    snprintf(a.token_id, sizeof a.token_id, "abc123");
    for (int i = 0; i < 25; i++) {
        a.at_unix_ms = 1000 + i;
        assert_int_equal(kvc_audit_append(&e->kv, &a, 20), KVC_OK);
    }
    s_audit_walk_t w = {0, 0, 1};
    assert_int_equal(kvc_audit_each(&e->kv, s_walk, &w), 0);
    assert_int_equal(w.n, 20);
    assert_true(w.ordered);
    assert_int_equal(w.last, 1000 + 24);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_record_codec),
        cmocka_unit_test_setup_teardown(test_find_and_decide, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_enroll, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_enroll_secret_not_stored, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_audit, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
