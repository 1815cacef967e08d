/*
 * rng.h - the one source of randomness the protocol cores may use: a seeded
 * xoshiro256** generator (Blackman & Vigna), seeded through splitmix64.
 *
 * The same seed gives the same sequence on every machine, which is what lets
 * the simulator replay a run exactly. It must never read entropy from the
 * system; callers that want unpredictability seed it themselves.
 * The state is a plain value owned by whoever embeds it.
 */
#ifndef KVC_RNG_H
#define KVC_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t s[4];
} kvc_rng_t;

/* Seeds the generator; any seed (including 0) is valid. */
void kvc_rng_seed(kvc_rng_t *r, uint64_t seed);
/* Returns the next 64 random bits. */
uint64_t kvc_rng_next(kvc_rng_t *r);
/* Returns a uniform integer in [0, n); n == 0 returns 0. */
uint64_t kvc_rng_below(kvc_rng_t *r, uint64_t n);
/* Returns a uniform double in [0, 1). */
double kvc_rng_double(kvc_rng_t *r);
/* One splitmix64 step: a good 64-bit mixer for deriving seeds. */
uint64_t kvc_rng_mix(uint64_t x);

#endif
