/* SPDX-License-Identifier: BSD-3-Clause */
/* nbdkit-memcache-filter: the read path. */

#ifndef MEMCACHE_READER_H
#define MEMCACHE_READER_H

#include <stdint.h>

#include <nbdkit-filter.h>

extern int reader_pread (nbdkit_next *next, void *buf, uint32_t count,
                         uint64_t offset, int *err);

#endif /* MEMCACHE_READER_H */
