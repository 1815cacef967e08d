/* Unit tests of federation/vivaldi.c: convergence on a known triangle,
 * rejection of hostile coordinates, determinism with a seeded generator. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <cmocka.h>

#include "vivaldi.h"

/* Three nodes with RTTs 10, 20 and 25 ms (a valid triangle): after a few
 * hundred rounds of mutual updates every estimate is within 15%. */
static void test_triangle_converges(void **state)
{
    const double rtt[3][3] = {{0, 0.010, 0.020}, {0.010, 0, 0.025}, {0.020, 0.025, 0}};
    kvc_vivaldi_t *v[3];
    kvc_rng_t rng;
    kvc_rng_seed(&rng, 7);
    for (int i = 0; i < 3; i++)
        assert_non_null(v[i] = kvc_vivaldi_new());
    for (int round = 0; round < 300; round++)
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 3; j++)
                if (i != j) {
                    kvc_vivaldi_coord_t other = *kvc_vivaldi_coord(v[j]);
                    assert_int_equal(kvc_vivaldi_update(v[i], &other, rtt[i][j], &rng), 0);
                }
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            if (i != j) {
                double est =
                    kvc_vivaldi_estimate_rtt(kvc_vivaldi_coord(v[i]), kvc_vivaldi_coord(v[j]));
                assert_true(fabs(est - rtt[i][j]) / rtt[i][j] < 0.15);
            }
    /* Confidence grew: error fell well below its starting maximum. */
    assert_true(kvc_vivaldi_coord(v[0])->error < 0.5);
    for (int i = 0; i < 3; i++)
        kvc_vivaldi_destroy(&v[i]);
    assert_null(v[0]);
}

/* Poisoned input never moves our coordinate. */
static void test_rejects_bad_input(void **state)
{
    kvc_vivaldi_t *v = kvc_vivaldi_new();
    kvc_vivaldi_coord_t before = *kvc_vivaldi_coord(v);
    kvc_vivaldi_coord_t bad;
    kvc_vivaldi_coord_init(&bad);
    bad.vec[3] = NAN;
    assert_int_equal(kvc_vivaldi_update(v, &bad, 0.01, NULL), KVC_EINVAL);
    kvc_vivaldi_coord_init(&bad);
    bad.height = 1e9;
    assert_int_equal(kvc_vivaldi_update(v, &bad, 0.01, NULL), KVC_EINVAL);
    kvc_vivaldi_coord_init(&bad);
    assert_int_equal(kvc_vivaldi_update(v, &bad, -1.0, NULL), KVC_EINVAL);
    assert_int_equal(kvc_vivaldi_update(v, &bad, 0.0, NULL), KVC_EINVAL);
    assert_int_equal(kvc_vivaldi_update(v, &bad, 11.0, NULL), KVC_EINVAL);
    assert_memory_equal(&before, kvc_vivaldi_coord(v), sizeof(before));
    /* Two fresh nodes at the origin: a direction is invented, distance follows. */
    assert_int_equal(kvc_vivaldi_update(v, &bad, 0.05, NULL), 0);
    assert_true(kvc_vivaldi_coord(v)->vec[0] > 0);
    kvc_vivaldi_destroy(&v);
    kvc_vivaldi_destroy(&v); /* NULL-safe */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_triangle_converges),
        cmocka_unit_test(test_rejects_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
