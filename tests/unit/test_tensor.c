/*
 * Unit tests of proxy/tensor.c: overflow-checked shapes, limits that hold
 * under growth, string storage, dtype tables, conversion and the owning
 * tensor list.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "base.h"
#include "tensor.h"

static void test_shape_count(void **state)
{
    uint64_t n = 99;
    assert_int_equal(kvc_tensor_shape_count((int64_t[]){1, 224, 224, 3}, 4, 0, &n), 0);
    assert_int_equal(n, 150528);
    assert_int_equal(kvc_tensor_shape_count(NULL, 0, 0, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(kvc_tensor_shape_count((int64_t[]){5, 0, INT64_MAX}, 3, 0, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(kvc_tensor_shape_count((int64_t[]){1LL << 32, 1LL << 32}, 2, 0, &n),
                     KVC_ERANGE);
    assert_int_equal(kvc_tensor_shape_count((int64_t[]){4, -1}, 2, 0, &n), KVC_EINVAL);
    assert_int_equal(kvc_tensor_shape_count((int64_t[]){10, 10}, 2, 99, &n), KVC_ERANGE);
    int64_t nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    assert_int_equal(kvc_tensor_shape_count(nine, 9, 0, &n), KVC_EINVAL);
}

static void test_numeric_growth_and_limits(void **state)
{
    kvc_tensor_limits_t lim = {10, 32};
    kvc_tensor_t *t = kvc_tensor_new("x", KVC_DT_FLOAT, &lim);
    assert_non_null(t);
    assert_int_equal(kvc_tensor_count(t), 0);
    float v[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    assert_int_equal(kvc_tensor_append(t, v, 8), 0);
    /* 9 floats = 36 bytes > 32. */
    assert_int_equal(kvc_tensor_append(t, v, 1), KVC_ERANGE);
    assert_int_equal(kvc_tensor_count(t), 8);
    assert_int_equal(kvc_tensor_nbytes(t), 32);
    assert_int_equal(kvc_tensor_set_shape(t, (int64_t[]){2, 4}, 2), 0);
    assert_int_equal(kvc_tensor_set_shape(t, (int64_t[]){3, 3}, 2), KVC_EINVAL);
    assert_int_equal(kvc_tensor_shape(t)[1], 4);
    assert_memory_equal(kvc_tensor_data(t), v, 32);
    void *at;
    assert_int_equal(kvc_tensor_reserve(t, UINT64_MAX / 2, &at), KVC_ERANGE);
    assert_int_equal(kvc_tensor_alloc(t, (int64_t[]){2, 2}, 2), 0);
    assert_int_equal(kvc_tensor_count(t), 4);
    assert_int_equal(((float *)kvc_tensor_data(t))[3], 0);
    assert_int_equal(kvc_tensor_alloc(t, (int64_t[]){3, 4}, 2), KVC_ERANGE);
    kvc_tensor_destroy(&t);
    assert_null(t);
    kvc_tensor_destroy(&t);
    /* The element limit holds too. */
    kvc_tensor_limits_t few = {3, 1 << 20};
    t = kvc_tensor_new("b", KVC_DT_UINT8, &few);
    assert_int_equal(kvc_tensor_append(t, "abc", 3), 0);
    assert_int_equal(kvc_tensor_append(t, "d", 1), KVC_ERANGE);
    kvc_tensor_destroy(&t);
    assert_null(kvc_tensor_new("bad", (kvc_dtype_t)8, &lim));
}

static void test_strings(void **state)
{
    kvc_tensor_limits_t lim = {10, 40};
    kvc_tensor_t *t = kvc_tensor_new("s", KVC_DT_STRING, &lim);
    assert_int_equal(kvc_tensor_append_string(t, "hello", 5), 0);
    assert_int_equal(kvc_tensor_append_string(t, "", 0), 0);
    assert_int_equal(kvc_tensor_append_string(t, "x\0y", 3), 0);
    /* 8 bytes data + 3 * 8 offsets = 32; one more of 1 byte needs 41 > 40. */
    assert_int_equal(kvc_tensor_append_string(t, "z", 1), KVC_ERANGE);
    assert_int_equal(kvc_tensor_count(t), 3);
    size_t n;
    const uint8_t *s = kvc_tensor_string(t, 0, &n);
    assert_int_equal(n, 5);
    assert_memory_equal(s, "hello", 5);
    kvc_tensor_string(t, 1, &n);
    assert_int_equal(n, 0);
    s = kvc_tensor_string(t, 2, &n);
    assert_int_equal(n, 3);
    assert_memory_equal(s, "x\0y", 3);
    assert_null(kvc_tensor_string(t, 3, &n));
    assert_int_equal(n, 0);
    void *at;
    assert_int_equal(kvc_tensor_reserve(t, 1, &at), KVC_EINVAL);
    kvc_tensor_destroy(&t);
}

static void test_convert_and_equal(void **state)
{
    kvc_tensor_limits_t lim = {100, 1000};
    kvc_tensor_t *a = kvc_tensor_new("a", KVC_DT_INT64, &lim);
    int64_t v[3] = {1, -2, 16777217};
    assert_int_equal(kvc_tensor_append(a, v, 3), 0);
    assert_int_equal(kvc_tensor_convert(a, KVC_DT_FLOAT), 0);
    assert_int_equal(kvc_tensor_dtype(a), KVC_DT_FLOAT);
    assert_int_equal(kvc_tensor_nbytes(a), 12);
    const float *f = kvc_tensor_data(a);
    assert_true(f[0] == 1.0f && f[1] == -2.0f && f[2] == 16777216.0f);
    assert_int_equal(kvc_tensor_convert(a, KVC_DT_DOUBLE), KVC_EINVAL);
    kvc_tensor_t *b = kvc_tensor_new("a", KVC_DT_FLOAT, &lim);
    assert_int_equal(kvc_tensor_append(b, f, 3), 0);
    assert_true(kvc_tensor_equal(a, b));
    ((float *)kvc_tensor_data(b))[2] = 0;
    assert_false(kvc_tensor_equal(a, b));
    kvc_tensor_destroy(&a);
    kvc_tensor_destroy(&b);
}

static void test_list_owns_tensors(void **state)
{
    kvc_tensor_limits_t lim = {100, 1000};
    kvc_tensor_list_t *l = kvc_tensor_list_new();
    for (int i = 0; i < 10; i++) {
        char name[8];
        snprintf(name, sizeof name, "t%d", i);
        kvc_tensor_t *t = kvc_tensor_new(name, KVC_DT_INT32, &lim);
        assert_int_equal(kvc_tensor_list_add(l, &t), 0);
        assert_null(t);
    }
    kvc_tensor_t *dup = kvc_tensor_new("t3", KVC_DT_INT32, &lim);
    assert_int_equal(kvc_tensor_list_add(l, &dup), KVC_EEXIST);
    assert_null(dup);
    assert_int_equal(kvc_tensor_list_size(l), 10);
    assert_string_equal(kvc_tensor_name(kvc_tensor_list_at(l, 7)), "t7");
    assert_ptr_equal(kvc_tensor_list_find(l, "t7"), kvc_tensor_list_at(l, 7));
    assert_null(kvc_tensor_list_find(l, "t10"));
    assert_null(kvc_tensor_list_at(l, 10));
    kvc_tensor_list_destroy(&l);
    assert_null(l);
}

/* Every dtype parses from each of its three names and prints back; a
 * wrong case, a near miss or NULL is no dtype. */
static void test_dtype_names(void **state)
{
    (void)state;
    const kvc_dtype_t all[] = {KVC_DT_FLOAT, KVC_DT_DOUBLE, KVC_DT_INT32,  KVC_DT_UINT8,
                               KVC_DT_INT16, KVC_DT_INT8,   KVC_DT_STRING, KVC_DT_INT64,
                               KVC_DT_BOOL,  KVC_DT_UINT16, KVC_DT_HALF,   KVC_DT_UINT32,
                               KVC_DT_UINT64};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        assert_int_equal(kvc_dtype_parse(kvc_dtype_plain_name(all[i])), all[i]);
        assert_int_equal(kvc_dtype_parse(kvc_dtype_kserve_name(all[i])), all[i]);
        assert_int_equal(kvc_dtype_parse(kvc_dtype_name(all[i])), all[i]);
    }
    assert_string_equal(kvc_dtype_plain_name(KVC_DT_FLOAT), "float32");
    assert_string_equal(kvc_dtype_plain_name(KVC_DT_STRING), "string");
    assert_string_equal(kvc_dtype_plain_name(KVC_DT_INVALID), "invalid");
    assert_int_equal(kvc_dtype_parse("fp32"), KVC_DT_INVALID);
    assert_int_equal(kvc_dtype_parse("Float32"), KVC_DT_INVALID);
    assert_int_equal(kvc_dtype_parse("float"), KVC_DT_INVALID);
    assert_int_equal(kvc_dtype_parse(""), KVC_DT_INVALID);
    assert_int_equal(kvc_dtype_parse(NULL), KVC_DT_INVALID);
}

static void test_alloc_failure(void **state)
{
    kvc_tensor_limits_t lim = {100, 1000};
    kvc_alloc_fail_after(0);
    assert_null(kvc_tensor_new("x", KVC_DT_FLOAT, &lim));
    kvc_alloc_fail_after(1);
    assert_null(kvc_tensor_new("x", KVC_DT_FLOAT, &lim)); /* the name copy fails */
    kvc_alloc_fail_after(-1);
    kvc_tensor_t *t = kvc_tensor_new("x", KVC_DT_FLOAT, &lim);
    float f = 1;
    kvc_alloc_fail_after(0);
    assert_int_equal(kvc_tensor_append(t, &f, 1), KVC_ENOMEM);
    kvc_alloc_fail_after(-1);
    assert_int_equal(kvc_tensor_count(t), 0);
    kvc_tensor_destroy(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shape_count),       cmocka_unit_test(test_numeric_growth_and_limits),
        cmocka_unit_test(test_strings),           cmocka_unit_test(test_convert_and_equal),
        cmocka_unit_test(test_list_owns_tensors), cmocka_unit_test(test_alloc_failure),
        cmocka_unit_test(test_dtype_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
