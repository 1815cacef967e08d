/*
 * rng.c - seeded xoshiro256** and splitmix64. Pure arithmetic: no clock, no
 * system entropy, no global state.
 */
#include "rng.h"

/* splitmix64 finaliser. */
uint64_t kvc_rng_mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* Rotates x left by k bits. */
static uint64_t s_rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/* Fills the four state words from splitmix64 so no seed gives all zeroes. */
void kvc_rng_seed(kvc_rng_t *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) {
        x += 0x9e3779b97f4a7c15ULL;
        r->s[i] = kvc_rng_mix(x);
    }
}

/* xoshiro256** step. */
uint64_t kvc_rng_next(kvc_rng_t *r)
{
    uint64_t *s = r->s;
    uint64_t result = s_rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = s_rotl(s[3], 45);
    return result;
}

/* Lemire-style rejection keeps the result unbiased. */
uint64_t kvc_rng_below(kvc_rng_t *r, uint64_t n)
{
    if (n == 0)
        return 0;
    uint64_t limit = UINT64_MAX - (UINT64_MAX % n);
    uint64_t x;
    do {
        x = kvc_rng_next(r);
    } while (x >= limit);
    return x % n;
}

/* 53 random bits scaled into [0, 1). */
double kvc_rng_double(kvc_rng_t *r)
{
    return (double)(kvc_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}
