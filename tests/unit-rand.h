/* SPDX-License-Identifier: BSD-3-Clause */
/* abd: the C tests' random numbers, xorshift64*: the same sequence for a
 * seed on every run.  A test sets rng_state to seed it (never 0). */

#ifndef ABD_UNIT_RAND_H
#define ABD_UNIT_RAND_H

#include <stdint.h>

static uint64_t rng_state = 0x9e3779b97f4a7c15;

static uint64_t
rnd (void)
{
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 2685821657736338717ULL;
}

#endif /* ABD_UNIT_RAND_H */
