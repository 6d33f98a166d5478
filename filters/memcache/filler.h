/* SPDX-License-Identifier: BSD-3-Clause */
/* nbdkit-memcache-filter: fills stored in the background. */

#ifndef MEMCACHE_FILLER_H
#define MEMCACHE_FILLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What a read knows about a block it read from the lower device. */
struct filler_block {
  size_t server;                /* ring_server_for_block */
  uint64_t generation;          /* the server's, when the read looked it up */
  uint64_t block;
  uint64_t version;             /* writeseq_version before the lookup */
  uint64_t seq;                 /* writeseq_fill_begin */
};

/* Set up the queue (.get_ready); start and stop its thread (.after_fork,
 * .cleanup); free it (.unload).  Returns 0, or -1 after nbdkit_error.
 */
extern int filler_init (void);
extern int filler_start (void);
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

/* Fills queued and not yet sent. */
extern uint64_t filler_queued (void);

#endif /* MEMCACHE_FILLER_H */
