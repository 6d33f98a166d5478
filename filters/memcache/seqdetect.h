/* SPDX-License-Identifier: BSD-3-Clause */
/* nbdkit-memcache-filter: which requests continue a long sequential
 * stream (memcache-sequential-cutoff), so that a scan does not evict the
 * cache.
 *
 * memcached's LRU is shared by every device: one device read end to end
 * (a backup, dd, a scrub) would push every other device's hot blocks
 * out.  Like bcache's sequential_cutoff, the reads of a stream are cached
 * as any read until it is longer than the cutoff; after that its misses
 * are read from the lower device and not stored.
 *
 * Streams are told apart across the whole device, not per connection:
 * nbdcopy and the kernel spread one stream over several connections and
 * many requests in flight, so its requests arrive slightly out of order.
 * A stream is therefore not the exact continuation bcache asks for
 * (request.c, its "recent_io" table), but a front with a window behind
 * it:
 *
 *   front      the granule just past the furthest one read;
 *   window     the SEQDETECT_WINDOW granules behind the front, one bit
 *              each: read or not yet.  A late request lands in it;
 *   ahead      a request may start up to SEQDETECT_AHEAD granules past
 *              the front (the requests in between are still to come);
 *   confirmed  granules that left the window read;
 *   lost       granules that left the window never read, and those of
 *              requests that read again only what the window holds read
 *              already.  More than one for every 8 confirmed and the
 *              stream starts again: reads in random order leave most of
 *              the window unread, and a hot set read over and over reads
 *              the same granules again.
 *
 * A request continues a stream when it overlaps its window or starts at
 * most SEQDETECT_AHEAD granules past its front (the nearest front wins);
 * otherwise it starts a stream in the least recently used entry of a
 * table of SEQDETECT_STREAMS.  Two streams whose fronts come within a
 * window of each other are one: the shorter is dropped (else random
 * reads, each counted by the stream whose front is nearest, would pass
 * for streams).  A request is sequential when its stream's length after
 * it, the confirmed granules and those read in the window, is more than
 * the cutoff.  So the first cutoff bytes of a stream are never
 * sequential (one request longer than that is a stream of its own, as in
 * bcache).  Reads in random order leave holes, and a hot set read over
 * and over reads granules again, so they are not either, with one
 * exception: a hot set of a few dozen requests' size (8 MiB read 256K at
 * a time) now and then reads 17 different requests in a row that cover
 * a window, exactly as a stream out of order would: about one request
 * in 200,000 is then sequential, its misses not stored.
 *
 * The granule is 4 KiB, the smallest request the kernel sends: a stream
 * of smaller requests, each reading again the granule at its front, is
 * not a re-read.
 *
 * Thread safety: one mutex per detector guards its table; it is held
 * for one step per granule a request covers or skips (8,192 for a 32 MiB
 * request, the most NBD sends).  No allocation, nothing of nbdkit:
 * tests/test-seqdetect.c drives it alone.
 */

#ifndef MEMCACHE_SEQDETECT_H
#define MEMCACHE_SEQDETECT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define SEQDETECT_GRANULE 4096          /* bytes */
#define SEQDETECT_WINDOW  1024          /* granules: 4 MiB */
#define SEQDETECT_AHEAD   1024          /* granules */
#define SEQDETECT_STREAMS 32

/* One stream (about 180 bytes); granule numbers are byte offsets /
 * SEQDETECT_GRANULE.
 */
struct seqdetect_stream {
  bool used;
  uint64_t start;               /* first granule counted in this stream */
  uint64_t front;
  /* Granule g of the window was read if bit g % SEQDETECT_WINDOW is
   * set: the granule leaving the window as the front moves on has the
   * bit of the one coming in.
   */
  uint64_t window[SEQDETECT_WINDOW / 64];
  uint64_t confirmed, lost;
  uint64_t last_use;            /* the detector's tick when last matched */
};

struct seqdetect {
  uint64_t cutoff_granules;     /* 0: detection off */
  pthread_mutex_t lock;         /* guards what follows */
  uint64_t tick;
  struct seqdetect_stream streams[SEQDETECT_STREAMS];
};

/* Set up D for streams longer than CUTOFF bytes (0: none ever is). */
extern void seqdetect_init (struct seqdetect *d, uint64_t cutoff);

/* Record a request of COUNT bytes at OFFSET; true if it continues a
 * stream whose confirmed length is at least the cutoff.
 */
extern bool seqdetect_request (struct seqdetect *d, uint64_t offset,
                               uint64_t count);

#endif /* MEMCACHE_SEQDETECT_H */
