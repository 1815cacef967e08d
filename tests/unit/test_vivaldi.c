/* Unit tests of federation/vivaldi.c: convergence on a known triangle,
 * rejection of hostile coordinates, determinism with a seeded generator. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <string.h>
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

/* The triangle of test_triangle_converges, for the determinism tests. */
static const double s_rtt[3][3] = {{0, 0.010, 0.020}, {0.010, 0, 0.025}, {0.020, 0.025, 0}};

/* Runs rounds of mutual updates of three fresh nodes over rtt with a
 * generator seeded with seed; copies the final coordinates into out and
 * leaves the generator's state in *rng. */
static void s_run(uint64_t seed, const double rtt[3][3], int rounds, kvc_vivaldi_coord_t out[3],
                  kvc_rng_t *rng)
{
    kvc_vivaldi_t *v[3];
    kvc_rng_seed(rng, seed);
    for (int i = 0; i < 3; i++)
        assert_non_null(v[i] = kvc_vivaldi_new());
    for (int round = 0; round < rounds; round++)
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 3; j++)
                if (i != j) {
                    kvc_vivaldi_coord_t other = *kvc_vivaldi_coord(v[j]);
                    assert_int_equal(kvc_vivaldi_update(v[i], &other, rtt[i][j], rng), 0);
                }
    for (int i = 0; i < 3; i++) {
        out[i] = *kvc_vivaldi_coord(v[i]);
        kvc_vivaldi_destroy(&v[i]);
    }
}

/* 1 if every pairwise estimate of the three coordinates is within 15% of rtt. */
static int s_fits(const kvc_vivaldi_coord_t c[3], const double rtt[3][3])
{
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            if (i != j &&
                fabs(kvc_vivaldi_estimate_rtt(&c[i], &c[j]) - rtt[i][j]) / rtt[i][j] >= 0.15)
                return 0;
    return 1;
}

/* Same seed and same round trips give bit-identical coordinates, the
 * property the simulator's replays rest on; and the generator is the only
 * randomness, drawn exactly when two coordinates coincide: all three nodes
 * start at the origin, so node 0's first update (from node 1) draws one
 * random direction (one double per dimension); every later update finds
 * the two coordinates apart and draws nothing. */
static void test_same_seed_same_coordinates(void **state)
{
    kvc_vivaldi_coord_t a[3], b[3];
    kvc_rng_t ra, rb, twin;
    s_run(2024, s_rtt, 300, a, &ra);
    s_run(2024, s_rtt, 300, b, &rb);
    assert_memory_equal(a, b, sizeof a);
    assert_memory_equal(&ra, &rb, sizeof ra);
    kvc_rng_seed(&twin, 2024);
    for (int i = 0; i < KVC_VIVALDI_DIM; i++)
        kvc_rng_next(&twin);
    assert_memory_equal(&ra, &twin, sizeof ra);
    /* Real coordinates, not a degenerate run that would match trivially:
     * off the origin in more than one dimension, and fitting the triangle. */
    for (int i = 0; i < 3; i++) {
        int off = 0;
        for (int d = 0; d < KVC_VIVALDI_DIM; d++)
            off += a[i].vec[d] != 0.0;
        assert_true(off > 1);
        assert_true(a[i].error < KVC_VIVALDI_ERROR_MAX);
    }
    assert_true(s_fits(a, s_rtt));
}

/* Another seed puts the nodes elsewhere (the first directions differ) yet
 * fits the same triangle; another round trip with the same seed moves them
 * too. So the equality above is not one that any run would pass. */
static void test_other_seed_or_input_differs(void **state)
{
    kvc_vivaldi_coord_t a[3], b[3], c[3];
    kvc_rng_t ra, rb, rc;
    s_run(2024, s_rtt, 300, a, &ra);
    s_run(2025, s_rtt, 300, b, &rb);
    for (int i = 0; i < 3; i++)
        assert_memory_not_equal(a[i].vec, b[i].vec, sizeof a[i].vec);
    assert_true(s_fits(b, s_rtt));
    /* Rotated, not refitted: the distances agree within the fitting error. */
    for (int i = 0; i < 3; i++)
        for (int j = i + 1; j < 3; j++) {
            double ea = kvc_vivaldi_estimate_rtt(&a[i], &a[j]);
            double eb = kvc_vivaldi_estimate_rtt(&b[i], &b[j]);
            assert_true(fabs(ea - eb) / s_rtt[i][j] < 0.3);
        }

    double rtt2[3][3];
    memcpy(rtt2, s_rtt, sizeof rtt2);
    rtt2[0][2] = rtt2[2][0] = 0.021;
    s_run(2024, rtt2, 300, c, &rc);
    for (int i = 0; i < 3; i++)
        assert_memory_not_equal(&a[i], &c[i], sizeof a[i]);
    /* The same seed drew the same directions: the generators agree. */
    assert_memory_equal(&ra, &rc, sizeof ra);
    assert_true(s_fits(c, rtt2));
}

/* Where the randomness goes: a fresh node updated against another at the
 * origin moves along exactly the unit vector of the generator's next eight
 * doubles (each minus 0.5); gravity then only shortens it. */
static void test_direction_comes_from_the_generator(void **state)
{
    kvc_vivaldi_t *v = kvc_vivaldi_new();
    assert_non_null(v);
    kvc_vivaldi_coord_t origin;
    kvc_vivaldi_coord_init(&origin);
    kvc_rng_t rng, twin;
    kvc_rng_seed(&rng, 99);
    kvc_rng_seed(&twin, 99);
    assert_int_equal(kvc_vivaldi_update(v, &origin, 0.05, &rng), 0);
    double want[KVC_VIVALDI_DIM], wn = 0, gn = 0, dot = 0;
    const double *got = kvc_vivaldi_coord(v)->vec;
    for (int d = 0; d < KVC_VIVALDI_DIM; d++) {
        want[d] = kvc_rng_double(&twin) - 0.5;
        wn += want[d] * want[d];
        gn += got[d] * got[d];
        dot += want[d] * got[d];
    }
    assert_memory_equal(&rng, &twin, sizeof rng);
    assert_true(gn > 0);
    assert_true(fabs(dot / sqrt(wn * gn) - 1.0) < 1e-12);
    for (int d = 0; d < KVC_VIVALDI_DIM; d++)
        assert_true(fabs(got[d] / sqrt(gn) - want[d] / sqrt(wn)) < 1e-12);
    /* Its length is the spring's force: Cc * weight * (rtt - dist) with
     * weight 1/2 (equal errors) and dist the two minimal heights, less
     * gravity's pull of (estimate / rho)^2, a few nanoseconds here. */
    double force = KVC_VIVALDI_CC * 0.5 * (0.05 - 2 * KVC_VIVALDI_HEIGHT_MIN);
    kvc_vivaldi_destroy(&v);
    assert_true(sqrt(gn) < force);
    assert_true(force - sqrt(gn) < 1e-8);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_triangle_converges),
        cmocka_unit_test(test_rejects_bad_input),
        cmocka_unit_test(test_same_seed_same_coordinates),
        cmocka_unit_test(test_other_seed_or_input_differs),
        cmocka_unit_test(test_direction_comes_from_the_generator),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
