/* SPDX-License-Identifier: BSD-3-Clause */
/* nbdkit-memcache-filter: statistics and the control channel. */

#ifndef MEMCACHE_STATS_H
#define MEMCACHE_STATS_H

#include <stdint.h>

#include "control.h"
#include "params.h"
#include "ring.h"

/* Counters are updated with relaxed atomic adds from any thread and read
 * by the control thread; each is exact, but a status reply is not a
 * snapshot of all of them at one instant.
 */
struct memcache_stats {
  uint64_t hits;                /* blocks served from memcached */
  uint64_t misses;              /* blocks looked up and not served */
  uint64_t skipped_down;        /* blocks not looked up: server down */
  uint64_t fills;               /* blocks stored after a lower read */
  uint64_t fills_raced;         /* fills dropped: a write came */
  uint64_t fills_dropped;       /* fills dropped: the queue was full */
  uint64_t fill_errors;         /* fills the server refused */
  uint64_t updates;             /* blocks stored by a write */
  uint64_t updates_raced;       /* blocks whose version an overlapping
                                   write raised again */
  uint64_t invalidations;       /* deletes sent */
  uint64_t mass_invalidations;  /* huge zero/trim: all generations bumped */
  uint64_t format_mismatches;   /* values of a wrong format or length */
  uint64_t auth_failures;       /* values that do not authenticate */
  uint64_t timeouts;            /* operations that timed out */
  uint64_t errors;              /* operations that failed otherwise */
  uint64_t uncertain;           /* store/delete batches with unknown
                                   outcome (harmless: versions) */
  uint64_t lower_reads;         /* pread requests sent to the lower device */
  uint64_t warm_hits;           /* hits served by a block's previous
                                   server after a change of the pool */
  uint64_t warm_copies;         /* and queued to be copied to its server */
  uint64_t seq_bypass_blocks;   /* blocks read from the lower device and
                                   not stored: a sequential stream's */
  uint64_t seq_bypass_stores;   /* blocks of sequential pwrites deleted
                                   rather than stored */
};

struct server_stats {
  uint64_t ops;                 /* round trips (a multi-get is one) */
  uint64_t hits;
  uint64_t misses;
  uint64_t skipped_down;
  uint64_t timeouts;
  uint64_t errors;
  uint64_t latency_sum_us;
  uint64_t latency_max_us;
};

extern struct memcache_stats stats;
extern struct server_stats *server_stats;

#define stats_add(field, n) \
  __atomic_fetch_add (&(field), (n), __ATOMIC_RELAXED)

/* The parameters abdctl status shows (memcache.c fills it in). */
struct stats_settings {
  const char *id;               /* memcache-id */
  uint32_t block_size;
  enum write_policy write_policy;
  unsigned timeout_ms;
  uint64_t sequential_cutoff;
};

/* Counters for the servers of RING, and what abdctl status shows of
 * this process: SETTINGS and the EPOCH chosen so far.  RING and
 * SETTINGS->id must live until stats_free.
 */
extern int stats_init (const struct ring *ring,
                       const struct stats_settings *settings,
                       uint64_t epoch);

/* The epoch this process uses, how it started ("cold", or "warm" from
 * memcache-state-file) and why, as abdctl status shows them; START and
 * REASON must be strings that live until stats_free.
 */
extern void stats_set_start (uint64_t epoch, const char *start,
                             const char *reason);
extern void stats_free (void);

/* Slot I of the pool (pool.h) has just been given to a joining server:
 * its counters start at 0.
 */
extern void stats_server_join (size_t i);

/* For abdctl servers (servers.c): server I of RING, with SHARE of the
 * blocks, as one nested object.
 */
extern void stats_reply_server_brief (struct ctl_reply *r,
                                      const struct ring *ring, size_t i,
                                      double share);

/* Record one round trip to server I that took US microseconds. */
extern void stats_latency (size_t i, uint64_t us);

/* The control channel handler (ctl_handler). */
extern int stats_control (void *opaque, int argc, char **argv,
                          struct ctl_reply *reply);

#endif /* MEMCACHE_STATS_H */
