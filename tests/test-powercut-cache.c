/* SPDX-License-Identifier: BSD-3-Clause */
/* abd: unit test of the powercut plugin's cache (plugins/powercut/cache.c)
 * against a model, over a real temporary image file.
 *
 * Random writes and zeroes of every size and alignment, reads and
 * flushes, with a small cache-max so that full-cache write-backs happen
 * too.  The model keeps two images: "cur" (what reads must return) and
 * "durable" (the content at the last flush).  Checked: cache_check after
 * every operation; every read equals cur; after a flush the file equals
 * cur and the cache is empty; while nothing leaked and no full cache was
 * written back since the last flush, the file is exactly durable.  Runs
 * with unflushed-persist 0, 1 (every write also reaches the file) and 0.3.
 * (What a file may hold after leaks is checked by the shell tests, with
 * tests/abdtest/powercut.py.)
 *
 * Usage: test-powercut-cache [SEED [OPS]]
 */

#include <config.h>

#undef NDEBUG
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache.h"

#define SIZE (1024 * 1024)

static unsigned char cur[SIZE], durable[SIZE], file[SIZE];

static void
read_file (int fd)
{
  assert (pread (fd, file, SIZE, 0) == SIZE);
}

static void
run (unsigned seed, unsigned ops, double persist)
{
  char path[] = "/var/tmp/test-powercut-cache.XXXXXX";
  int fd = mkstemp (path);
  struct cache_params p;
  struct cache_stats st;
  struct cache *c;
  unsigned i, flushes = 0, exact_checks = 0;
  uint64_t evictions_at_flush = 0;
  static unsigned char buf[300000];

  assert (fd >= 0);
  unlink (path);
  srand (seed);
  for (i = 0; i < SIZE; i++)
    cur[i] = rand ();
  memcpy (durable, cur, SIZE);
  assert (pwrite (fd, cur, SIZE, 0) == SIZE);

  p.fd = fd;
  p.size = SIZE;
  p.max_bytes = 64 * 1024;
  p.persist = persist;
  p.seed = seed;
  c = cache_create (&p);
  assert (c);

  for (i = 0; i < ops; i++) {
    static const uint32_t sizes[] = { 1, 7, 511, 512, 513, 4096, 5000,
                                      65536, 100001 };
    uint32_t count = sizes[rand () % 9];
    uint64_t off = rand () % (SIZE - count);
    int op = rand () % 10;
    uint32_t j;

    if (rand () % 3 == 0)
      off = off / 512 * 512;
    if (op < 6) {
      for (j = 0; j < count; j++)
        buf[j] = rand ();
      assert (cache_write (c, buf, count, off) == 0);
      memcpy (cur + off, buf, count);
    }
    else if (op < 8) {
      assert (cache_write (c, NULL, count, off) == 0);
      memset (cur + off, 0, count);
    }
    else if (op < 9) {
      assert (cache_read (c, buf, count, off) == 0);
      assert (memcmp (buf, cur + off, count) == 0);
    }
    else {
      assert (cache_flush (c) == 0);
      memcpy (durable, cur, SIZE);
      flushes++;
      cache_get_stats (c, &st);
      assert (st.dirty_sectors == 0 && st.pages == 0);
      evictions_at_flush = st.evictions;
      read_file (fd);
      assert (memcmp (file, cur, SIZE) == 0);
    }
    assert (cache_check (c));

    /* The exact promise: nothing leaked, nothing written back since the
     * last flush -> the file is the flushed state.
     */
    cache_get_stats (c, &st);
    if (st.leaked_sectors == 0 && st.evictions == evictions_at_flush &&
        i % 5 == 0) {
      read_file (fd);
      assert (memcmp (file, durable, SIZE) == 0);
      exact_checks++;
    }
  }

  assert (cache_read (c, file, SIZE, 0) == 0);
  assert (memcmp (file, cur, SIZE) == 0);
  cache_get_stats (c, &st);
  if (persist == 1) {
    /* Every write also reached the file. */
    read_file (fd);
    assert (memcmp (file, cur, SIZE) == 0);
    assert (st.leaked_sectors > 0);
  }
  if (persist == 0)
    assert (st.leaked_sectors == 0 && exact_checks > 0);
  assert (st.evictions > 0 && flushes > 0);
  printf ("persist=%g: %u ops, %u flushes, %" PRIu64 " write-backs of a "
          "full cache, %" PRIu64 " sectors leaked, %u exact checks\n",
          persist, ops, flushes, st.evictions, st.leaked_sectors,
          exact_checks);
  cache_free (c);
  close (fd);
}

int
main (int argc, char *argv[])
{
  unsigned seed = argc > 1 ? atoi (argv[1]) : 1;
  unsigned ops = argc > 2 ? atoi (argv[2]) : 3000;

  run (seed, ops, 0);
  run (seed, ops, 1);
  run (seed, ops, 0.3);
  return 0;
}
