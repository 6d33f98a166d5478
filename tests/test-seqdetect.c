/* SPDX-License-Identifier: BSD-3-Clause */
/* abd: unit test of the memcache filter's sequential stream detector
 * (filters/memcache/seqdetect.c), against what seqdetect.h promises.
 *
 *   - off (cutoff 0): nothing is ever sequential;
 *   - one stream in order: nothing before the cutoff is sequential,
 *     everything after it is;
 *   - four streams at once, as nbdcopy's four connections make them,
 *     each slightly out of order (requests shuffled within groups of 16),
 *     their requests interleaved: each is found, as in order;
 *   - one stream spread over four connections of the kernel client (one
 *     connection's requests late by up to 8 requests): found;
 *   - random reads are not: a pass over 64 MiB in random order, hot
 *     sets of 1, 8 and 16 MiB read 4K or 64K at a time over and over,
 *     and random reads next to a stream just found; a hot set of only
 *     32 requests' size (8 MiB read 256K at a time) is, at most once in
 *     10,000 requests;
 *   - the table: SEQDETECT_STREAMS streams at once are all found, one
 *     more and they evict each other (least recently used first) and none
 *     is; a stream evicted by others starts again from nothing;
 *   - a few holes (a granule in 16 never read) do not stop a stream.
 *
 * The checks were seen to fail with the detector broken on purpose (sed
 * on a copy of seqdetect.c, built with this test): no restart on lost
 * granules (the random reads are found), bcache's exact continuation
 * (the streams out of order are not found, some random reads are), no
 * re-read rule (the 16 MiB hot set read 4K at a time is found), no
 * merging of streams that meet (the 8 MiB hot set read 256K at a time
 * is found 31,000 times in a million), the most recently used entry
 * replaced (33 streams are found), >= for > at the cutoff.
 *
 * Usage: test-seqdetect
 */

#include <config.h>

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "seqdetect.h"

#define UNIT_NAME "test-seqdetect"
#include "unit-check.h"

#include "unit-rand.h"

#define KiB 1024ULL
#define MiB (1024 * KiB)
#define CUTOFF (4 * MiB)
/* Where a stream out of order must be found by: the cutoff, the window,
 * and slack for requests that straddle granules.
 */
#define FOUND_BY (CUTOFF + SEQDETECT_WINDOW * SEQDETECT_GRANULE + 1 * MiB)

static void
shuffle (uint64_t *a, size_t n)
{
  size_t i;

  for (i = n; i > 1; i--) {
    size_t j = rnd () % i;
    uint64_t t = a[i - 1];

    a[i - 1] = a[j];
    a[j] = t;
  }
}

/* Requests of SIZE bytes from BASE covering LEN bytes, in order, then
 * shuffled within groups of GROUP (1: in order).
 */
static uint64_t *
stream_offsets (uint64_t base, uint64_t len, uint64_t size, size_t group,
                size_t *n)
{
  uint64_t *a;
  size_t i;

  *n = len / size;
  a = malloc (*n * sizeof *a);
  if (a == NULL)
    abort ();
  for (i = 0; i < *n; i++)
    a[i] = base + i * size;
  for (i = 0; i < *n; i += group)
    shuffle (a + i, *n - i < group ? *n - i : group);
  return a;
}

static void
test_off (void)
{
  struct seqdetect d;
  uint64_t off;
  unsigned found = 0;

  seqdetect_init (&d, 0);
  for (off = 0; off < 64 * MiB; off += 256 * KiB)
    found += seqdetect_request (&d, off, 256 * KiB);
  CHECK (found == 0, "cutoff 0: %u requests sequential", found);
}

static void
test_in_order (uint64_t size)
{
  struct seqdetect d;
  uint64_t off;
  unsigned early = 0, late = 0, not_found = 0;

  seqdetect_init (&d, CUTOFF);
  for (off = 0; off < 64 * MiB; off += size) {
    bool seq = seqdetect_request (&d, off, size);

    if (off + size <= CUTOFF)
      early += seq;
    else if (off >= CUTOFF)
      late++, not_found += !seq;
  }
  CHECK (early == 0, "in order, %" PRIu64 "-byte requests: %u sequential "
         "before the cutoff", size, early);
  CHECK (not_found == 0, "in order, %" PRIu64 "-byte requests: %u of %u "
         "requests past the cutoff not sequential",
         size, not_found, late);
}

/* NR streams 256 MiB apart, 64 MiB each of 256K requests shuffled within
 * groups of 16 (4 MiB), their requests taken in turn.
 */
static void
test_interleaved (size_t nr)
{
  struct seqdetect d;
  uint64_t *offs[8];
  size_t n = 0, i, k;
  unsigned early = 0, late = 0, not_found = 0;

  seqdetect_init (&d, CUTOFF);
  for (k = 0; k < nr; k++)
    offs[k] = stream_offsets (k * 256 * MiB, 64 * MiB, 256 * KiB, 16, &n);
  for (i = 0; i < n; i++)
    for (k = 0; k < nr; k++) {
      uint64_t pos = offs[k][i] - k * 256 * MiB;
      bool seq = seqdetect_request (&d, offs[k][i], 256 * KiB);

      /* The first group, 4 MiB, is the cutoff: whatever its order, none
       * of it has left the window yet.
       */
      if (i < 16)
        early += seq;
      else if (pos >= FOUND_BY + 4 * MiB)
        late++, not_found += !seq;
    }
  CHECK (early == 0, "%zu interleaved streams: %u sequential before the "
         "cutoff", nr, early);
  CHECK (not_found == 0, "%zu interleaved streams out of order: %u of %u "
         "requests well past the cutoff not sequential", nr, not_found, late);
  for (k = 0; k < nr; k++)
    free (offs[k]);
}

/* One stream of 128K requests dealt in turn to 4 connections; the
 * fourth connection is slow: its requests arrive 8 requests late.
 */
static void
test_one_stream_four_connections (void)
{
  struct seqdetect d;
  const uint64_t size = 128 * KiB, len = 64 * MiB;
  uint64_t *late_queue, off;
  size_t nr_late = 0, next_late = 0, i = 0;
  unsigned not_found = 0, counted = 0;

  late_queue = malloc ((len / size) * sizeof *late_queue);
  if (late_queue == NULL)
    abort ();
  seqdetect_init (&d, CUTOFF);
  for (off = 0; off < len; off += size, i++) {
    if (i % 4 == 3)
      late_queue[nr_late++] = off;
    else {
      bool seq = seqdetect_request (&d, off, size);

      if (off >= FOUND_BY)
        counted++, not_found += !seq;
    }
    if (nr_late - next_late > 2) {
      uint64_t o = late_queue[next_late++];
      bool seq = seqdetect_request (&d, o, size);

      if (o >= FOUND_BY)
        counted++, not_found += !seq;
    }
  }
  CHECK (not_found == 0, "one stream over 4 connections: %u of %u requests "
         "past the cutoff not sequential", not_found, counted);
  free (late_queue);
}

/* Every 64K chunk of 64 MiB once, in random order (the warm passes of
 * tests/memcache_warm_passes.py), four times.
 */
static void
test_random_order_passes (void)
{
  struct seqdetect d;
  uint64_t *a;
  size_t n, i, pass;
  unsigned found = 0;

  seqdetect_init (&d, CUTOFF);
  a = stream_offsets (0, 64 * MiB, 64 * KiB, 1, &n);
  for (pass = 0; pass < 4; pass++) {
    shuffle (a, n);
    for (i = 0; i < n; i++)
      found += seqdetect_request (&d, a[i], 64 * KiB);
  }
  CHECK (found == 0, "random-order passes over 64 MiB: %u requests "
         "sequential", found);
  free (a);
}

/* A hot set of SET bytes read at random, SIZE bytes at a time: at most
 * MAX_FOUND of READS requests sequential.
 */
static void
test_hot_set (uint64_t set, uint64_t size, unsigned reads, unsigned max_found)
{
  struct seqdetect d;
  unsigned i, found = 0;

  seqdetect_init (&d, CUTOFF);
  for (i = 0; i < reads; i++) {
    uint64_t off = 100 * MiB + rnd () % (set / size) * size;

    found += seqdetect_request (&d, off, size);
  }
  CHECK (found <= max_found, "%" PRIu64 " MiB hot set, %" PRIu64 "-byte "
         "random reads: %u of %u sequential (at most %u expected)",
         set / MiB, size, found, reads, max_found);
}

/* Random reads anywhere while a stream runs: the stream is found, the
 * random reads away from its window are not.
 */
static void
test_random_beside_stream (void)
{
  struct seqdetect d;
  uint64_t off;
  unsigned found = 0, not_found = 0;

  seqdetect_init (&d, CUTOFF);
  for (off = 0; off < 64 * MiB; off += 256 * KiB) {
    bool seq = seqdetect_request (&d, off, 256 * KiB);
    int k;

    if (off >= FOUND_BY)
      not_found += !seq;
    for (k = 0; k < 4; k++)
      found += seqdetect_request (&d, 128 * MiB + rnd () % 4096 * 4096,
                                  4096);
  }
  CHECK (not_found == 0, "a stream among random reads: %u requests past "
         "the cutoff not sequential", not_found);
  CHECK (found == 0, "random reads beside a stream: %u sequential", found);
}

/* NR streams 1 GiB apart, 256K requests in turn. */
static unsigned
round_robin_found (size_t nr)
{
  struct seqdetect d;
  uint64_t pos;
  unsigned found = 0;
  size_t k;

  seqdetect_init (&d, CUTOFF);
  for (pos = 0; pos < 32 * MiB; pos += 256 * KiB)
    for (k = 0; k < nr; k++) {
      bool seq = seqdetect_request (&d, k * 1024 * MiB + pos, 256 * KiB);

      if (pos >= FOUND_BY)
        found += seq;
    }
  return found;
}

static void
test_table (void)
{
  struct seqdetect d;
  const unsigned per_stream = (32 * MiB - FOUND_BY) / (256 * KiB);
  unsigned found, i;
  uint64_t off;
  bool seq;

  found = round_robin_found (SEQDETECT_STREAMS);
  CHECK (found == SEQDETECT_STREAMS * per_stream, "%d streams at once: %u "
         "of %u requests past the cutoff sequential", SEQDETECT_STREAMS,
         found, SEQDETECT_STREAMS * per_stream);
  found = round_robin_found (SEQDETECT_STREAMS + 1);
  CHECK (found == 0, "%d streams at once, one more than the table: %u "
         "requests sequential (each should evict the next)",
         SEQDETECT_STREAMS + 1, found);

  /* A stream found, then SEQDETECT_STREAMS reads elsewhere evict it:
   * its next request starts afresh.
   */
  seqdetect_init (&d, CUTOFF);
  for (off = 0; off < 32 * MiB; off += 256 * KiB)
    seq = seqdetect_request (&d, off, 256 * KiB);
  CHECK (seq, "a 32 MiB stream is sequential at its end");
  for (i = 0; i < SEQDETECT_STREAMS; i++)
    seqdetect_request (&d, (1 + i) * 1024 * MiB, 4096);
  seq = seqdetect_request (&d, off, 256 * KiB);
  CHECK (!seq, "a stream evicted from the table is sequential again at "
         "once");
  /* Fewer reads elsewhere leave it in the table. */
  for (; off < 48 * MiB; off += 256 * KiB)
    seq = seqdetect_request (&d, off, 256 * KiB);
  CHECK (seq, "the stream started again is found again");
  for (i = 0; i < SEQDETECT_STREAMS - 1; i++)
    seqdetect_request (&d, (1 + i) * 1024 * MiB, 4096);
  seq = seqdetect_request (&d, off, 256 * KiB);
  CHECK (seq, "a stream %d others did not evict is still sequential",
         SEQDETECT_STREAMS - 1);
}

/* 64K requests, one granule in 16 never read (a zero extent nbdcopy
 * skips, say).
 */
static void
test_holes (void)
{
  struct seqdetect d;
  uint64_t off;
  unsigned not_found = 0;

  seqdetect_init (&d, CUTOFF);
  for (off = 0; off < 64 * MiB; off += 64 * KiB) {
    bool seq;

    if (off / (64 * KiB) % 16 == 7)
      continue;
    seq = seqdetect_request (&d, off, 64 * KiB);
    if (off >= FOUND_BY + CUTOFF / 8)
      not_found += !seq;
  }
  CHECK (not_found == 0, "a stream with a hole in 16 granules: %u requests "
         "not sequential", not_found);
}

int
main (void)
{
  test_off ();
  test_in_order (4 * KiB);
  test_in_order (256 * KiB);
  test_in_order (2 * MiB);
  test_in_order (32 * MiB);
  test_interleaved (1);
  test_interleaved (4);
  test_one_stream_four_connections ();
  test_random_order_passes ();
  test_hot_set (16 * MiB, 64 * KiB, 200000, 0);
  test_hot_set (16 * MiB, 4 * KiB, 200000, 0);
  test_hot_set (1 * MiB, 4 * KiB, 100000, 0);
  test_hot_set (8 * MiB, 64 * KiB, 1000000, 0);
  /* 32 requests of 4 MiB reorder window each: now and then (5 in a
   * million measured) 17 of them in a row are all different and cover
   * the window, which is what a stream out of order looks like.
   */
  test_hot_set (8 * MiB, 256 * KiB, 1000000, 100);
  test_random_beside_stream ();
  test_table ();
  test_holes ();
  return unit_summary ();
}
