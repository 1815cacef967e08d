/* Unit tests of peer/store.c: LMDB put/get/del/incr and durability across reopen. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "store.h"

static int s_setup(void **state)
{
    char *dir = strdup("/tmp/kvc-store-XXXXXX");
    assert_non_null(mkdtemp(dir));
    *state = dir;
    return 0;
}

static int s_teardown(void **state)
{
    char *dir = *state, path[256];
    snprintf(path, sizeof path, "%s/s/data.mdb", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/s/lock.mdb", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/s", dir);
    rmdir(path);
    rmdir(dir);
    free(dir);
    return 0;
}

static void test_put_get_del_survive_reopen(void **state)
{
    char path[256];
    snprintf(path, sizeof path, "%s/s", (char *)*state);
    kvc_err_t err;
    kvc_store_t *st = kvc_store_open(path, 1 << 20, &err);
    assert_non_null(st);
    assert_int_equal(kvc_store_put(st, "models", "m1", 2, "v1", 2), KVC_OK);
    assert_int_equal(kvc_store_put(st, "models", "m2", 2, "value-two", 9), KVC_OK);
    kvc_store_destroy(&st);
    assert_null(st);

    st = kvc_store_open(path, 1 << 20, &err);
    assert_non_null(st);
    char buf[16];
    size_t n = 0;
    assert_int_equal(kvc_store_get(st, "models", "m2", 2, buf, sizeof buf, &n), KVC_OK);
    assert_int_equal(n, 9);
    assert_memory_equal(buf, "value-two", 9);
    assert_int_equal(kvc_store_get(st, "models", "m2", 2, buf, 4, &n), KVC_ERANGE);
    assert_int_equal(n, 9);
    assert_int_equal(kvc_store_get(st, "models", "zz", 2, buf, sizeof buf, &n), KVC_ENOENT);
    assert_int_equal(kvc_store_get(st, "nodb", "m1", 2, buf, sizeof buf, &n), KVC_ENOENT);
    assert_int_equal(kvc_store_del(st, "models", "m1", 2), KVC_OK);
    assert_int_equal(kvc_store_del(st, "models", "m1", 2), KVC_ENOENT);
    kvc_store_destroy(&st);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);
}

static void test_incr(void **state)
{
    char path[256];
    snprintf(path, sizeof path, "%s/s", (char *)*state);
    kvc_store_t *st = kvc_store_open(path, 0, NULL);
    assert_non_null(st);
    uint64_t v = 0;
    assert_int_equal(kvc_store_incr(st, "self", "boot", 1, &v), KVC_OK);
    assert_int_equal(v, 1);
    assert_int_equal(kvc_store_incr(st, "self", "boot", 41, &v), KVC_OK);
    assert_int_equal(v, 42);
    kvc_store_destroy(&st);
    st = kvc_store_open(path, 0, NULL);
    assert_int_equal(kvc_store_incr(st, "self", "boot", 1, &v), KVC_OK);
    assert_int_equal(v, 43);
    kvc_store_destroy(&st);
}

static void test_open_failure_is_reported(void **state)
{
    kvc_err_t err = {0};
    assert_null(kvc_store_open("/proc/kvc-cannot-exist/s", 0, &err));
    assert_true(strstr(err.msg, "/proc/kvc-cannot-exist/s") != NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_put_get_del_survive_reopen, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_incr, s_setup, s_teardown),
        cmocka_unit_test(test_open_failure_is_reported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
