/* SPDX-License-Identifier: BSD-3-Clause */
/* nbdkit-memcache-filter: ordering cache stores against writes in this
 * process.
 */

#ifndef MEMCACHE_WRITESEQ_H
#define MEMCACHE_WRITESEQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Block versions are kept in this many slots (block mod the count). */
#define WRITESEQ_VERSIONS (1u << 22)    /* a power of 2 */

struct writeseq_ticket {
  uint64_t seq;                 /* the slot's sequence after our begin */
  bool overlapped;              /* another write was in progress */
};

/* One write (pwrite, zero, trim) of blocks FIRST .. FIRST+N-1. */
struct writeseq_write {
  uint64_t first, n;
  uint64_t nr_tickets;
  struct writeseq_ticket *tickets;
};

/* Register a write before it is sent to the lower device.  Returns 0, or
 * -1 after nbdkit_error (out of memory).
 */
extern int writeseq_write_begin (struct writeseq_write *w,
                                 uint64_t first, uint64_t n);

/* After the write's cache stores and deletes have completed: decide for
 * each block whether what the write stored may stay (see
 * writeseq_write_kept), and unregister the write.
 */
extern void writeseq_write_end (struct writeseq_write *w);

/* After writeseq_write_end: may the data this write stored for BLOCK stay
 * in the cache?  If not (another write of the block overlapped), the
 * caller raises the block's version again.
 */
extern bool writeseq_write_kept (const struct writeseq_write *w,
                                 uint64_t block);
extern void writeseq_write_free (struct writeseq_write *w);

/* A read that may fill BLOCK: call before reading it from the lower
 * device.  Returns false if a write of the block is in progress (do not
 * fill: the write will make the fill useless); else *SEQ is to be checked
 * before the store.
 */
extern bool writeseq_fill_begin (uint64_t block, uint64_t *seq);

/* Before the fill's store: true if no write of BLOCK started since
 * writeseq_fill_begin; if false, the fill is dropped.  (An optimisation:
 * the block version makes a fill that lands after a write unreadable.)
 */
extern bool writeseq_fill_still_valid (uint64_t block, uint64_t seq);

/* Block versions: a number bound into every sealed value (value.h), so
 * that a value stored before the block's last write, by a late store of
 * this process or by whoever replays an old value, never authenticates.
 * A write calls writeseq_version_bump for each block after its lower
 * write and before it stores the new data, and once more at its end if
 * another write of the block overlapped it; a read takes
 * writeseq_version before it looks the block up or reads the lower device.
 * The versions live in this process only: a process that reuses what an
 * earlier one stored must restore them, or change the generation.
 * Versions are 64 bits: one never wraps (2^64 raises of one slot at
 * 10,000 a second take 58 million years), so a version is never used
 * twice for a block within a generation.
 */
extern uint64_t writeseq_version (uint64_t block);
extern uint64_t writeseq_version_bump (uint64_t block);

/* The version table slot by slot (0 <= SLOT < WRITESEQ_VERSIONS), for the
 * warm-restart state file (state.h): read at a clean stop, set at start,
 * both while no request runs.
 */
extern uint64_t writeseq_version_slot (size_t slot);
extern void writeseq_version_slot_set (size_t slot, uint64_t version);

#endif /* MEMCACHE_WRITESEQ_H */
