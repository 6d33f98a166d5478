/* SPDX-License-Identifier: BSD-3-Clause */
/* nbdkit-memcache-filter: the read path. */

#ifndef MEMCACHE_READER_H
#define MEMCACHE_READER_H

#include <stdint.h>

#include <nbdkit-filter.h>

#include "ring.h"

/* What the read path needs of the parameters (memcache.c fills it in). */
struct reader_settings {
  uint32_t block_size;
  uint64_t sequential_cutoff;   /* memcache-sequential-cutoff, 0 = off */
};

/* In .after_fork, once the epoch is chosen, before anything is read:
 * read blocks of SETTINGS->block_size, under keys of EPOCH, from the
 * servers of the pool (pool.h).
 */
extern void reader_init (const struct reader_settings *settings,
                         uint64_t epoch);

/* The filter's .pread: a read of COUNT bytes at OFFSET into BUF. */
extern int reader_pread (nbdkit_next *next, void *buf, uint32_t count,
                         uint64_t offset, int *err);

#endif /* MEMCACHE_READER_H */
