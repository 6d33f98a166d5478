/* SPDX-License-Identifier: BSD-3-Clause */
/* abd powercut plugin: the volatile write cache (see cache.h).
 *
 * Why 4 KiB pages with a per-sector dirty mask, not a tree of sectors: the
 * model is a disk of 512-byte sectors, and the leak decision is made per
 * sector, so a sector must be the unit of state.  But most clients write
 * 4 KiB-aligned blocks; keeping eight sectors per tree node makes such a
 * write one lookup and one allocation instead of eight, and the node's
 * overhead (about 40 bytes) 1% of the data instead of 8%.  The mask says
 * which of the eight sectors hold cached data; the bytes of the others are
 * unused.
 *
 * Invariants, all under c->lock (cache_check tests them):
 * - every page in the tree has a non-zero dirty mask;
 * - c->npages is the number of pages in the tree, c->ndirty the number of
 *   bits set in all their masks;
 * - no page lies beyond the end of the image;
 * - a sector not in the cache has, in the file, either its content at the
 *   last flush or the content of a later write (leaked or written back);
 *   so a partial write to it may read the rest of the sector from the file.
 */

#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* libbsd's tree.h marks the static functions it generates __unused. */
#ifndef __unused
#define __unused __attribute__ ((__unused__))
#endif
#include <bsd/sys/tree.h>

#include "cache.h"

struct page {
  RB_ENTRY (page) link;
  uint64_t index;               /* byte offset / CACHE_PAGE_SIZE */
  uint8_t dirty;                /* bit i: sector i of the page is cached */
  unsigned char data[CACHE_PAGE_SIZE];
};

static int
page_cmp (const struct page *a, const struct page *b)
{
  return a->index < b->index ? -1 : a->index > b->index;
}

RB_HEAD (page_tree, page);
RB_GENERATE_STATIC (page_tree, page, link, page_cmp)

struct cache {
  /* Set at create, read-only afterwards. */
  int fd;
  uint64_t size;
  uint64_t max_pages;
  double persist;

  /* lock protects everything below, and the file's content: a read
   * (file, then cache overlay) must not interleave with a flush that
   * moves data from the cache to the file.
   */
  pthread_mutex_t lock;
  struct page_tree tree;
  uint64_t npages;
  uint64_t ndirty;
  unsigned short prng[3];       /* erand48 state, seeded from the seed */
  struct cache_stats stats;
};

/*----------------------------------------------------------------------
 * File I/O: the whole count or -1 with errno set.
 */

static int
cache_file_read (struct cache *c, void *buf, size_t count, uint64_t offset)
{
  char *p = buf;

  while (count > 0) {
    ssize_t r = pread (c->fd, p, count, offset);

    if (r == -1) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    if (r == 0) {               /* the file shrank under us */
      errno = EIO;
      return -1;
    }
    p += r;
    count -= r;
    offset += r;
  }
  return 0;
}

static int
cache_file_write (struct cache *c, const void *buf, size_t count,
                  uint64_t offset)
{
  const char *p = buf;

  while (count > 0) {
    ssize_t r = pwrite (c->fd, p, count, offset);

    if (r == -1) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    p += r;
    count -= r;
    offset += r;
  }
  return 0;
}

/*----------------------------------------------------------------------
 * Pages.
 */

static struct page *
cache_page_find (struct cache *c, uint64_t index)
{
  struct page key = { .index = index };

  return RB_FIND (page_tree, &c->tree, &key);
}

static void
cache_drop_all (struct cache *c)
{
  struct page *p, *next;

  for (p = RB_MIN (page_tree, &c->tree); p != NULL; p = next) {
    next = RB_NEXT (page_tree, &c->tree, p);
    RB_REMOVE (page_tree, &c->tree, p);
    free (p);
  }
  c->npages = 0;
  c->ndirty = 0;
}

/* Write every cached sector to the file, in offset order, one write per
 * run of adjacent dirty sectors within a page; then fdatasync and drop
 * them all.  Called with c->lock held.  On error the cache is unchanged.
 */
static int
cache_write_back (struct cache *c)
{
  struct page *p;
  unsigned i, j;

  RB_FOREACH (p, page_tree, &c->tree) {
    for (i = 0; i < CACHE_SECTORS_PER_PAGE; i = j) {
      if (!(p->dirty & (1u << i))) {
        j = i + 1;
        continue;
      }
      for (j = i + 1; j < CACHE_SECTORS_PER_PAGE && (p->dirty & (1u << j));
           j++)
        ;
      if (cache_file_write (c, p->data + i * CACHE_SECTOR_SIZE,
                            (j - i) * CACHE_SECTOR_SIZE,
                            p->index * CACHE_PAGE_SIZE
                            + i * CACHE_SECTOR_SIZE) == -1)
        return -1;
    }
  }
  if (fdatasync (c->fd) == -1)
    return -1;
  cache_drop_all (c);
  return 0;
}

/* The page holding byte page INDEX * CACHE_PAGE_SIZE, created empty if
 * absent.  A full cache is written back first, as a disk writes back its
 * cache when it runs out of room.  Called with c->lock held.
 */
static struct page *
cache_page_get (struct cache *c, uint64_t index)
{
  struct page *p = cache_page_find (c, index);

  if (p)
    return p;
  if (c->npages >= c->max_pages) {
    if (cache_write_back (c) == -1)
      return NULL;
    c->stats.evictions++;
  }
  p = malloc (sizeof *p);
  if (p == NULL)
    return NULL;
  p->index = index;
  p->dirty = 0;
  RB_INSERT (page_tree, &c->tree, p);
  c->npages++;
  return p;
}

/* Whether this write leaks its sector to the file now.  One PRNG draw per
 * sector written, in request order, so the same seed and the same
 * sequence of requests leak the same sectors.
 */
static bool
cache_leaks (struct cache *c)
{
  if (c->persist <= 0 || erand48 (c->prng) >= c->persist)
    return false;
  c->stats.leaked_sectors++;
  return true;
}

/*----------------------------------------------------------------------
 * Requests.
 */

struct cache *
cache_create (const struct cache_params *p)
{
  struct cache *c = calloc (1, sizeof *c);

  if (c == NULL)
    return NULL;
  c->fd = p->fd;
  c->size = p->size;
  c->max_pages = p->max_bytes / CACHE_PAGE_SIZE;
  if (c->max_pages == 0)
    c->max_pages = 1;
  c->persist = p->persist;
  pthread_mutex_init (&c->lock, NULL);
  RB_INIT (&c->tree);
  c->prng[0] = 0x330e;          /* srand48's constant low word */
  c->prng[1] = p->seed & 0xffff;
  c->prng[2] = p->seed >> 16;
  return c;
}

/* Unflushed data is dropped: stopping the plugin is a power cut. */
void
cache_free (struct cache *c)
{
  if (c == NULL)
    return;
  cache_drop_all (c);
  pthread_mutex_destroy (&c->lock);
  free (c);
}

int
cache_read (struct cache *c, void *buf, uint32_t count, uint64_t offset)
{
  unsigned char *out = buf;
  uint64_t end = offset + count;
  struct page key, *p;
  int r = -1;

  pthread_mutex_lock (&c->lock);
  if (cache_file_read (c, buf, count, offset) == -1)
    goto out;

  /* Overlay the cached sectors of every page the range touches. */
  key.index = offset / CACHE_PAGE_SIZE;
  for (p = RB_NFIND (page_tree, &c->tree, &key);
       p != NULL && p->index * CACHE_PAGE_SIZE < end;
       p = RB_NEXT (page_tree, &c->tree, p)) {
    uint64_t base = p->index * CACHE_PAGE_SIZE;
    unsigned i;

    for (i = 0; i < CACHE_SECTORS_PER_PAGE; i++) {
      uint64_t s = base + i * CACHE_SECTOR_SIZE;
      uint64_t from = s > offset ? s : offset;
      uint64_t to = s + CACHE_SECTOR_SIZE < end ? s + CACHE_SECTOR_SIZE : end;

      if ((p->dirty & (1u << i)) && from < to)
        memcpy (out + (from - offset), p->data + (from - base), to - from);
    }
  }
  r = 0;
 out:
  pthread_mutex_unlock (&c->lock);
  return r;
}

int
cache_write (struct cache *c, const void *buf, uint32_t count,
             uint64_t offset)
{
  const unsigned char *in = buf;
  uint64_t end = offset + count;
  uint64_t s;
  int r = -1;

  pthread_mutex_lock (&c->lock);
  for (s = offset / CACHE_SECTOR_SIZE * CACHE_SECTOR_SIZE; s < end;
       s += CACHE_SECTOR_SIZE) {
    struct page *p = cache_page_get (c, s / CACHE_PAGE_SIZE);
    unsigned i = s % CACHE_PAGE_SIZE / CACHE_SECTOR_SIZE;
    unsigned char *sector;
    uint64_t from = s > offset ? s : offset;
    uint64_t to = s + CACHE_SECTOR_SIZE < end ? s + CACHE_SECTOR_SIZE : end;

    if (p == NULL)
      goto out;
    sector = p->data + i * CACHE_SECTOR_SIZE;

    /* A partial write to a clean sector: the rest comes from the file. */
    if (!(p->dirty & (1u << i)) && to - from < CACHE_SECTOR_SIZE &&
        cache_file_read (c, sector, CACHE_SECTOR_SIZE, s) == -1) {
      if (p->dirty == 0) {
        RB_REMOVE (page_tree, &c->tree, p);
        free (p);
        c->npages--;
      }
      goto out;
    }
    if (in)
      memcpy (sector + (from - s), in + (from - offset), to - from);
    else
      memset (sector + (from - s), 0, to - from);
    if (!(p->dirty & (1u << i))) {
      p->dirty |= 1u << i;
      c->ndirty++;
    }

    if (cache_leaks (c) &&
        cache_file_write (c, sector, CACHE_SECTOR_SIZE, s) == -1)
      goto out;
  }
  r = 0;
 out:
  pthread_mutex_unlock (&c->lock);
  return r;
}

int
cache_flush (struct cache *c)
{
  int r;

  pthread_mutex_lock (&c->lock);
  r = cache_write_back (c);
  if (r == 0)
    c->stats.flushes++;
  pthread_mutex_unlock (&c->lock);
  return r;
}

void
cache_get_stats (struct cache *c, struct cache_stats *st)
{
  pthread_mutex_lock (&c->lock);
  *st = c->stats;
  st->pages = c->npages;
  st->dirty_sectors = c->ndirty;
  pthread_mutex_unlock (&c->lock);
}

bool
cache_check (struct cache *c)
{
  struct page *p;
  uint64_t pages = 0, dirty = 0;
  bool ok = true;

  pthread_mutex_lock (&c->lock);
  RB_FOREACH (p, page_tree, &c->tree) {
    pages++;
    dirty += __builtin_popcount (p->dirty);
    if (p->dirty == 0 || p->index * CACHE_PAGE_SIZE >= c->size)
      ok = false;
  }
  if (pages != c->npages || dirty != c->ndirty || pages > c->max_pages)
    ok = false;
  pthread_mutex_unlock (&c->lock);
  return ok;
}
