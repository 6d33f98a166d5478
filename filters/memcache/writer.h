/* SPDX-License-Identifier: BSD-3-Clause */
/* nbdkit-memcache-filter: the write path (pwrite, zero, trim). */

#ifndef MEMCACHE_WRITER_H
#define MEMCACHE_WRITER_H

#include <stdint.h>

#include <nbdkit-filter.h>

#include "params.h"
#include "ring.h"

/* What the write path needs of the parameters (memcache.c fills it in). */
struct writer_settings {
  uint32_t block_size;
  unsigned ttl;                 /* memcache-ttl, of every value stored */
  enum write_policy write_policy;
  uint64_t sequential_cutoff;   /* memcache-sequential-cutoff, 0 = off */
};

/* In .after_fork, once the epoch is chosen, before anything is written:
 * update the servers of the pool (pool.h) under keys of EPOCH.
 */
extern void writer_init (const struct writer_settings *settings,
                         uint64_t epoch);

enum writer_op {
  WRITER_PWRITE,
  WRITER_ZERO,
  WRITER_TRIM,
};

/* BUF is the data for WRITER_PWRITE, NULL otherwise; FLAGS go to the
 * lower device unchanged.
 */
extern int writer_write (nbdkit_next *next, enum writer_op op,
                         const void *buf, uint32_t count, uint64_t offset,
                         uint32_t flags, int *err);

#endif /* MEMCACHE_WRITER_H */
