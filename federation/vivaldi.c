/*
 * vivaldi.c - Vivaldi coordinates with height, error and adjustment, after
 * the algorithm in Dabek et al. and the constants Serf uses. Pure maths over
 * values handed in: it must never measure time or reach for system entropy.
 */
#include "vivaldi.h"

#include <math.h>
#include <string.h>

#include "base.h"

#define ZERO_THRESHOLD 1.0e-6

struct kvc_vivaldi {
    kvc_vivaldi_coord_t coord;
    double adj_samples[KVC_VIVALDI_ADJ_WINDOW];
    int adj_index;
};

/* Origin, maximal error, minimal height. */
void kvc_vivaldi_coord_init(kvc_vivaldi_coord_t *c)
{
    memset(c, 0, sizeof(*c));
    c->error = KVC_VIVALDI_ERROR_MAX;
    c->height = KVC_VIVALDI_HEIGHT_MIN;
}

/* Finite and inside +-KVC_VIVALDI_MAX_S on every component. */
int kvc_vivaldi_coord_valid(const kvc_vivaldi_coord_t *c)
{
    for (int i = 0; i < KVC_VIVALDI_DIM; i++)
        if (!isfinite(c->vec[i]) || fabs(c->vec[i]) > KVC_VIVALDI_MAX_S)
            return 0;
    if (!isfinite(c->height) || c->height < 0 || c->height > KVC_VIVALDI_MAX_S)
        return 0;
    if (!isfinite(c->error) || c->error < 0 || c->error > KVC_VIVALDI_ERROR_MAX * 2)
        return 0;
    if (!isfinite(c->adjustment) || fabs(c->adjustment) > KVC_VIVALDI_MAX_S)
        return 0;
    return 1;
}

/* Allocates a client at the origin. */
kvc_vivaldi_t *kvc_vivaldi_new(void)
{
    kvc_vivaldi_t *v = kvc_calloc(1, sizeof(*v));
    if (v)
        kvc_vivaldi_coord_init(&v->coord);
    return v;
}

/* Frees and nulls. */
void kvc_vivaldi_destroy(kvc_vivaldi_t **self_p)
{
    if (self_p && *self_p) {
        kvc_free(*self_p);
        *self_p = NULL;
    }
}

/* Read-only view of our coordinate. */
const kvc_vivaldi_coord_t *kvc_vivaldi_coord(const kvc_vivaldi_t *v)
{
    return &v->coord;
}

/* Euclidean length of a vector. */
static double s_magnitude(const double *v)
{
    double sum = 0;
    for (int i = 0; i < KVC_VIVALDI_DIM; i++)
        sum += v[i] * v[i];
    return sqrt(sum);
}

/* Distance ignoring the adjustment terms. */
static double s_raw_distance(const kvc_vivaldi_coord_t *a, const kvc_vivaldi_coord_t *b)
{
    double d[KVC_VIVALDI_DIM];
    for (int i = 0; i < KVC_VIVALDI_DIM; i++)
        d[i] = a->vec[i] - b->vec[i];
    return s_magnitude(d) + a->height + b->height;
}

/* Distance with adjustments, falling back to raw if they would make it <= 0. */
double kvc_vivaldi_estimate_rtt(const kvc_vivaldi_coord_t *a, const kvc_vivaldi_coord_t *b)
{
    double dist = s_raw_distance(a, b);
    double adjusted = dist + a->adjustment + b->adjustment;
    return adjusted > 0.0 ? adjusted : dist;
}

/* Unit vector from b towards a; random direction if they coincide. Returns
 * the distance between them (0 when a direction had to be invented). */
static double s_unit_vector_at(const double *a, const double *b, double *unit, kvc_rng_t *rng)
{
    for (int i = 0; i < KVC_VIVALDI_DIM; i++)
        unit[i] = a[i] - b[i];
    double mag = s_magnitude(unit);
    if (mag > ZERO_THRESHOLD) {
        for (int i = 0; i < KVC_VIVALDI_DIM; i++)
            unit[i] /= mag;
        return mag;
    }
    if (rng) {
        for (int i = 0; i < KVC_VIVALDI_DIM; i++)
            unit[i] = kvc_rng_double(rng) - 0.5;
        double m = s_magnitude(unit);
        if (m > ZERO_THRESHOLD) {
            for (int i = 0; i < KVC_VIVALDI_DIM; i++)
                unit[i] /= m;
            return 0.0;
        }
    }
    memset(unit, 0, sizeof(double) * KVC_VIVALDI_DIM);
    unit[0] = 1.0;
    return 0.0;
}

/* Pushes c by force (seconds) away from other (towards it if negative). */
static void s_apply_force(kvc_vivaldi_coord_t *c, double force, const kvc_vivaldi_coord_t *other,
                          kvc_rng_t *rng)
{
    double unit[KVC_VIVALDI_DIM];
    double mag = s_unit_vector_at(c->vec, other->vec, unit, rng);
    for (int i = 0; i < KVC_VIVALDI_DIM; i++)
        c->vec[i] += unit[i] * force;
    if (mag > ZERO_THRESHOLD) {
        c->height = (c->height + other->height) * force / mag + c->height;
        if (c->height < KVC_VIVALDI_HEIGHT_MIN)
            c->height = KVC_VIVALDI_HEIGHT_MIN;
    }
}

/* One Vivaldi step, then the adjustment window, then gravity to the origin. */
int kvc_vivaldi_update(kvc_vivaldi_t *v, const kvc_vivaldi_coord_t *other, double rtt_s,
                       kvc_rng_t *rng)
{
    if (!v || !other || !kvc_vivaldi_coord_valid(other))
        return KVC_EINVAL;
    if (!isfinite(rtt_s) || rtt_s <= 0.0 || rtt_s > KVC_VIVALDI_MAX_S)
        return KVC_EINVAL;
    kvc_vivaldi_coord_t saved = v->coord;
    kvc_vivaldi_coord_t *c = &v->coord;

    double rtt = rtt_s < ZERO_THRESHOLD ? ZERO_THRESHOLD : rtt_s;
    double dist = kvc_vivaldi_estimate_rtt(c, other);
    double wrongness = fabs(dist - rtt) / rtt;
    double total_error = c->error + other->error;
    if (total_error < ZERO_THRESHOLD)
        total_error = ZERO_THRESHOLD;
    double weight = c->error / total_error;
    c->error = KVC_VIVALDI_CE * weight * wrongness + c->error * (1.0 - KVC_VIVALDI_CE * weight);
    if (c->error > KVC_VIVALDI_ERROR_MAX)
        c->error = KVC_VIVALDI_ERROR_MAX;
    s_apply_force(c, KVC_VIVALDI_CC * weight * (rtt - dist), other, rng);

    v->adj_samples[v->adj_index] = rtt - s_raw_distance(c, other);
    v->adj_index = (v->adj_index + 1) % KVC_VIVALDI_ADJ_WINDOW;
    double sum = 0;
    for (int i = 0; i < KVC_VIVALDI_ADJ_WINDOW; i++)
        sum += v->adj_samples[i];
    c->adjustment = sum / (2.0 * KVC_VIVALDI_ADJ_WINDOW);

    kvc_vivaldi_coord_t origin;
    kvc_vivaldi_coord_init(&origin);
    double g = kvc_vivaldi_estimate_rtt(&origin, c) / KVC_VIVALDI_GRAVITY_RHO;
    s_apply_force(c, -1.0 * g * g, &origin, rng);

    if (!kvc_vivaldi_coord_valid(c)) {
        /* Never keep a poisoned coordinate: fall back to the last good one. */
        v->coord = saved;
        return KVC_ERANGE;
    }
    return 0;
}
