/* SPDX-License-Identifier: BSD-3-Clause */
/* nbdkit memcache filter: little-endian integers of 1 to 8 bytes in the
 * byte strings it writes (sealed values, the state file).
 */

#ifndef MEMCACHE_LE_H
#define MEMCACHE_LE_H

#include <stdint.h>

/* Store the low BYTES bytes of V at P, least significant first. */
static inline void
le_put (unsigned char *p, uint64_t v, int bytes)
{
  int i;

  for (i = 0; i < bytes; i++)
    p[i] = v >> (8 * i);
}

/* The BYTES-byte little-endian number at P. */
static inline uint64_t
le_get (const unsigned char *p, int bytes)
{
  uint64_t v = 0;
  int i;

  for (i = 0; i < bytes; i++)
    v |= (uint64_t) p[i] << (8 * i);
  return v;
}

#endif /* MEMCACHE_LE_H */
