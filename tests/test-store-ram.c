/* SPDX-License-Identifier: BSD-3-Clause */
/* abd: the dirty store's RAM per dirty block, measured: the metadata of
 * the entries that hold N dirty blocks (and their share of slot_map, a
 * bit per slot) over N, for the patterns that matter: scattered 4 KiB
 * blocks (no two adjacent), a sequential stream of 4 KiB writes, 64 KiB
 * writes in order, and 64 KiB writes in shuffled order (a queue depth
 * above 1 reorders them).  Nothing is written back (no writer runs), so
 * every block stays dirty.  Fails if scattered blocks cost more than the
 * 36-byte entry and its bit, or sequential ones more than 4 bytes.
 *
 * Usage: test-store-ram
 */

#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"
#include "store-impl.h"

#define NBLOCKS 16384           /* dirty blocks per pattern */

static char lower[(size_t) 2 * NBLOCKS * STORE_BLOCK_SIZE];

static int
io_read (void *opaque, void *buf, uint32_t count, uint64_t offset, int *err)
{
  memcpy (buf, lower + offset, count);
  return 0;
}

static const struct store_io io = { .read = io_read };

/* Write BLOCKS blocks of 4 KiB at each of the N block numbers in AT;
 * return the metadata bytes per dirty block.
 */
static double
measure (const char *what, const uint64_t *at, size_t n, uint32_t blocks)
{
  static char buf[16 * STORE_BLOCK_SIZE];
  struct store_params p = {
    .size = sizeof lower, .nslots = (256 << 20) / STORE_BLOCK_SIZE,
    .batch_blocks = 64, .delay_ms = 50, .background_writes = 4,
    .retry_min_ms = 100, .retry_max_ms = 5000, .store_id = "",
  };
  struct store_stats st;
  struct store *s;
  char *errmsg, why[256];
  double per_block;
  size_t i;
  int err;

  s = store_create (&p, &errmsg);
  if (s == NULL) {
    fprintf (stderr, "test-store-ram: %s\n", errmsg);
    exit (1);
  }
  for (i = 0; i < n; i++)
    if (store_write (s, buf, blocks * STORE_BLOCK_SIZE,
                     at[i] * STORE_BLOCK_SIZE, true, &io, &err) == -1) {
      fprintf (stderr, "test-store-ram: write failed: %d\n", err);
      exit (1);
    }
  if (store_check (s, why, sizeof why) == -1) {
    fprintf (stderr, "test-store-ram: store_check: %s\n", why);
    exit (1);
  }
  store_get_stats (s, &st);
  per_block = ((double) st.dirty_entries * sizeof (struct entry) +
               (double) st.dirty_data_bytes / STORE_BLOCK_SIZE / 8) /
              (st.dirty_data_bytes / STORE_BLOCK_SIZE);
  printf ("test-store-ram: %-28s %6llu dirty blocks in %6llu entries: "
          "%5.2f bytes of RAM per dirty block\n", what,
          (unsigned long long) (st.dirty_data_bytes / STORE_BLOCK_SIZE),
          (unsigned long long) st.dirty_entries, per_block);
  store_stop (s);
  store_free (s);
  return per_block;
}

int
main (void)
{
  uint64_t *at = malloc (sizeof *at * NBLOCKS);
  double scattered, stream, seq64, shuffled;
  size_t i, n64 = NBLOCKS / 16;
  unsigned seed = 1;

  for (i = 0; i < NBLOCKS; i++)
    at[i] = 2 * i;                              /* none adjacent */
  scattered = measure ("scattered 4K blocks", at, NBLOCKS, 1);
  for (i = 0; i < NBLOCKS; i++)
    at[i] = i;
  stream = measure ("sequential 4K writes", at, NBLOCKS, 1);
  for (i = 0; i < n64; i++)
    at[i] = 16 * i;
  seq64 = measure ("sequential 64K writes", at, n64, 16);
  for (i = n64; i-- > 1; ) {                    /* shuffled */
    size_t j = rand_r (&seed) % (i + 1);
    uint64_t t = at[i];

    at[i] = at[j];
    at[j] = t;
  }
  shuffled = measure ("64K writes, shuffled", at, n64, 16);
  free (at);
  if (scattered > sizeof (struct entry) + 0.125 || stream > 4 ||
      seq64 > 4 || shuffled > 4) {
    fprintf (stderr, "test-store-ram: FAIL: over 36.125 bytes a scattered "
             "block or 4 bytes a sequential one\n");
    return 1;
  }
  return 0;
}
