/* SPDX-License-Identifier: BSD-3-Clause */
/* nbdkit-memcache-filter: the write path (pwrite, zero, trim). */

#ifndef MEMCACHE_WRITER_H
#define MEMCACHE_WRITER_H

#include <stdint.h>

#include <nbdkit-filter.h>

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
