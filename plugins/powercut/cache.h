/* SPDX-License-Identifier: BSD-3-Clause */
/* abd powercut plugin: the volatile write cache of a simulated disk.
 *
 * The cache holds every 512-byte sector written since the last flush and
 * not yet on the medium (the image file).  It knows nothing of nbdkit: it
 * reads and writes the file descriptor it is given, and reports errors as
 * -1 with errno set.
 *
 * The life of a sector (all transitions are in cache.c, under the lock):
 *
 *   CLEAN --write/zero/trim--> DIRTY --flush or cache full--> CLEAN
 *
 * A CLEAN sector is not in the cache: the file holds its content.  A DIRTY
 * sector is in the cache, and reads see the cache's copy.  Independently of
 * that state, each write may also "leak" a sector's new content to the file
 * (with probability unflushed-persist, from a seeded PRNG), the way a real
 * disk may put any subset of its unflushed sectors on the medium before
 * the power goes.  A leaked sector stays DIRTY: only a flush promises it.
 *
 * So at any moment, each sector of the file holds either the content it had
 * at the last flush or the content some later write gave that sector, and
 * with unflushed-persist=0 and writes below cache-max, exactly the former.
 *
 * Every function below takes the cache's own lock: one request at a time.
 */

#ifndef ABD_POWERCUT_CACHE_H
#define ABD_POWERCUT_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#define CACHE_SECTOR_SIZE 512
#define CACHE_PAGE_SIZE 4096
#define CACHE_SECTORS_PER_PAGE (CACHE_PAGE_SIZE / CACHE_SECTOR_SIZE)

struct cache;

struct cache_params {
  int fd;                       /* the image, open read-write */
  uint64_t size;                /* its size, a multiple of 512 */
  uint64_t max_bytes;           /* bound on cached page memory */
  double persist;               /* unflushed-persist: 0 <= p <= 1 */
  uint32_t seed;                /* of the leak PRNG */
};

/* The counters, for debug messages and tests. */
struct cache_stats {
  uint64_t pages;               /* pages in the cache now */
  uint64_t dirty_sectors;       /* sectors in the cache now */
  uint64_t leaked_sectors;      /* sectors leaked to the file, ever */
  uint64_t evictions;           /* write-backs because the cache was full */
  uint64_t flushes;             /* flushes (client or FUA) */
};

extern struct cache *cache_create (const struct cache_params *p);
extern void cache_free (struct cache *c);

/* A request; BUF NULL writes zeroes.  0 or -1 with errno set. */
extern int cache_read (struct cache *c, void *buf, uint32_t count,
                       uint64_t offset);
extern int cache_write (struct cache *c, const void *buf, uint32_t count,
                        uint64_t offset);

/* Write every dirty sector to the file, fdatasync it, and empty the cache.
 * On error nothing is dropped: the next flush writes it all again.
 */
extern int cache_flush (struct cache *c);

extern void cache_get_stats (struct cache *c, struct cache_stats *st);

/* The invariants, for use inside assert() only. */
extern bool cache_check (struct cache *c);

#endif /* ABD_POWERCUT_CACHE_H */
