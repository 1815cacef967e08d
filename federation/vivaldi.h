/*
 * vivaldi.h - Vivaldi network coordinates (Dabek et al. 2004) with the height
 * and adjustment terms Serf added, so any peer can estimate the round trip
 * to any other from two coordinates without measuring it.
 *
 * Units are seconds. The client is updated from measured probe round trips
 * (the caller filters them, e.g. a median of the last three) and the other
 * side's coordinate as carried on probes and acks. A coordinate that comes
 * off the wire is hostile: kvc_vivaldi_update rejects non-finite or absurd
 * values instead of letting them poison ours. Randomness (only needed when
 * two coordinates coincide) comes from the caller's seeded generator.
 * Never reads a clock.
 */
#ifndef KVC_VIVALDI_H
#define KVC_VIVALDI_H

#include "base.h"
#include "rng.h"

#define KVC_VIVALDI_DIM 8

/* Tuning from Serf's coordinate package (tested on real WAN data). */
#define KVC_VIVALDI_ERROR_MAX 1.5
#define KVC_VIVALDI_CE 0.25
#define KVC_VIVALDI_CC 0.25
#define KVC_VIVALDI_ADJ_WINDOW 20
#define KVC_VIVALDI_HEIGHT_MIN 10.0e-6
#define KVC_VIVALDI_GRAVITY_RHO 150.0
/* Largest round trip or coordinate component we believe, in seconds. */
#define KVC_VIVALDI_MAX_S 10.0

/* A coordinate: a plain value, copied freely. */
typedef struct {
    double vec[KVC_VIVALDI_DIM];
    double height;
    double error;
    double adjustment;
} kvc_vivaldi_coord_t;

/* The local node's coordinate plus its adjustment window (opaque). */
typedef struct kvc_vivaldi kvc_vivaldi_t;

/* Sets c to the origin with maximal error, as a fresh node starts. */
void kvc_vivaldi_coord_init(kvc_vivaldi_coord_t *c);
/* Returns 1 if every component is finite and within sane bounds. */
int kvc_vivaldi_coord_valid(const kvc_vivaldi_coord_t *c);

/* Returns a new client at the origin, or NULL on allocation failure. */
kvc_vivaldi_t *kvc_vivaldi_new(void);
/* Frees the client and sets *self_p to NULL; NULL-safe. */
void kvc_vivaldi_destroy(kvc_vivaldi_t **self_p);
/* The current coordinate; valid until the next update or destroy. */
const kvc_vivaldi_coord_t *kvc_vivaldi_coord(const kvc_vivaldi_t *v);
/* Moves our coordinate given a measured rtt_s to a node at *other.
 * KVC_EINVAL (nothing changes) if other is invalid or rtt_s is not in
 * (0, KVC_VIVALDI_MAX_S]. rng may be NULL (a fixed direction is used). */
int kvc_vivaldi_update(kvc_vivaldi_t *v, const kvc_vivaldi_coord_t *other, double rtt_s,
                       kvc_rng_t *rng);
/* Estimated round trip in seconds between two coordinates. */
double kvc_vivaldi_estimate_rtt(const kvc_vivaldi_coord_t *a, const kvc_vivaldi_coord_t *b);

#endif
