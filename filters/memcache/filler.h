/* SPDX-License-Identifier: BSD-3-Clause */
/* nbdkit-memcache-filter: fills stored in the background. */

#ifndef MEMCACHE_FILLER_H
#define MEMCACHE_FILLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ring.h"

/* What a read knows about a block it read from the lower device. */
struct filler_block {
  size_t server;                /* ring_server_for_block */
  uint64_t generation;          /* the server's, when the read looked it up */
  uint64_t block;
  uint64_t version;             /* writeseq_version before the lookup */
  uint64_t seq;                 /* writeseq_fill_begin */
};

/* What the fills need of the parameters (memcache.c fills it in). */
struct filler_settings {
  uint32_t block_size;
  unsigned ttl;                 /* memcache-ttl, of every value stored */
};

/* Set up the queue for the servers of RING, kept until filler_free
 * (.get_ready); start its thread, which keys and seals values under
 * EPOCH (.after_fork, once the epoch is chosen), and stop it (.cleanup);
 * free it (.unload).  Returns 0, or -1 after nbdkit_error.
 */
extern int filler_init (const struct ring *ring,
                        const struct filler_settings *settings);
extern int filler_start (uint64_t epoch);
extern void filler_stop (void);
extern void filler_free (void);

/* Queue the fill of B: LEN bytes of DATA, copied.  Never waits: if the
 * queue is full or its thread is not running, the fill is dropped (and
 * counted).
 */
extern void filler_queue (const struct filler_block *b, const void *data,
                          uint32_t len);

/* A write of BLOCK skipped server I (down or being probed): owe it a
 * delete of BLOCK's key under GENERATION (the server's then), sent by the
 * fill thread once the server is usable again.  Never waits.
 */
extern void filler_forget (size_t i, uint64_t block, uint64_t generation);

/* Slot I of the pool (pool.h) has just been given to a server joining
 * it: forget the deletes owed to the slot's last server.
 */
extern void filler_server_join (size_t i);

/* Fills queued and not yet sent. */
extern uint64_t filler_queued (void);

#endif /* MEMCACHE_FILLER_H */
