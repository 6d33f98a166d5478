/* SPDX-License-Identifier: BSD-3-Clause */
/* abd async filter: the dirty store.
 *
 * The store holds every byte the client wrote that is not yet known to be
 * durable on the lower device, indexed by block number (4 KiB blocks) in a
 * red-black tree of entries.  It knows nothing of nbdkit: the lower device is
 * reached through the callbacks in struct store_io (client side) and by the
 * writer threads (writeback.c) that take batches from it.
 *
 * An entry is an extent of 1 to 16 data blocks (their 4 KiB each live in
 * as many consecutive slots of the data arena) or a range of whole blocks
 * that were zeroed or trimmed (no data memory).  Every entry covers whole
 * blocks; a partial write to a block the store does not hold first reads
 * the block from the lower device (read-modify-write).  A write next to a
 * DIRTY extent grows it (when the slot after it is free: streams get
 * consecutive slots) or merges with it; a zero or trim across one cuts it
 * (store-life.c has the rule); a rewritten block keeps its slot.
 *
 * The life of an entry (every transition is in store-life.c, under the
 * lock; store-impl.h lists the files and their layers):
 *
 *   (absent) --client write--> DIRTY --store_pick--> WRITEBACK
 *   WRITEBACK --lower write ok--> WRITTEN --lower flush ok--> (removed)
 *   WRITEBACK --lower write failed--> DIRTY (+FAILED, retried with backoff)
 *   WRITTEN --lower flush failed--> DIRTY (+FAILED)
 * FAILED is cleared only by a lower flush that covers a successful retry
 * (the entry is removed) or by newer data replacing the failed data.
 *
 * A client write to a WRITEBACK or WRITTEN data block updates the RAM copy
 * and sets REDIRTY: the entry goes back to DIRTY after the flush instead of
 * being removed, so the newer data is written after the older one, never
 * before it.  An entry that is not DIRTY never changes shape: a client
 * operation that would split a zero/trim range that is being written back
 * waits until that range is done, and extents merge only while DIRTY.
 * The data of a client overwrite of a block the store holds, of a read of
 * one, and of a writer's batch is copied without the lock, under a pin on
 * each slot (store-impl.h); new blocks are copied under it.
 *
 * With a store file (storefile.h) the data arena is a file mapped
 * MAP_SHARED and every entry in the tree has a record there: published
 * when the entry is inserted or changed (after its data), retired when it
 * leaves the tree.  An operation that replaces entries publishes the
 * replacement first.  With async-flush=store the file is on a disk and
 * mapped private: nothing reaches it but the commits of store_commit
 * (store-commit.c; the protocol is in storefile.h).
 *
 * Admission: a client write that needs a new entry waits while the data
 * memory (async-max-dirty) is full, and, with a drain budget
 * (async-max-drain-seconds), while the dirty data would take longer than
 * that to write back at the measured rate (drainrate.h).  Writes to
 * blocks the store holds never wait for either.
 *
 * Flush accounting: every client modification belongs to an epoch; a flush
 * request opens a new epoch and waits until no entry holds unflushed data of
 * an older one (store_flush_wait).
 */

#ifndef ABD_ASYNC_STORE_H
#define ABD_ASYNC_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store-block.h"

struct store;

/* How one client request reaches the lower device: reads of blocks the
 * store does not hold (and read-modify-write of partial blocks), and, for
 * writes not admitted into RAM (sync mode), the write itself.  Each returns
 * 0 or -1 with *err set.
 */
struct store_io {
  int (*read) (void *opaque, void *buf, uint32_t count, uint64_t offset,
               int *err);
  int (*write) (void *opaque, const void *buf, uint32_t count,
                uint64_t offset, int *err);
  int (*zero) (void *opaque, uint32_t count, uint64_t offset, int *err);
  int (*trim) (void *opaque, uint32_t count, uint64_t offset, int *err);
  void *opaque;
};

/* One lower-device write taken by a writer thread. */
struct store_batch {
  enum store_kind kind;
  uint64_t blk;                 /* first block */
  uint32_t nblocks;
  uint64_t offset;              /* bytes on the lower device */
  uint32_t len;
  char *buf;                    /* STORE_DATA: the data, len bytes */
};

/* The data memory, in slots of one block: at least STORE_MIN_SLOTS, at
 * most STORE_MAX_SLOTS (the entry pool has as many entries, and its
 * links hold 28-bit indices: store-impl.h).
 */
#define STORE_MIN_SLOTS (STORE_MIN_SIZE / STORE_BLOCK_SIZE)
#define STORE_MAX_SLOTS ((1u << 28) - 1)

struct store_params {
  uint64_t size;                /* device size in bytes */
  uint32_t nslots;              /* data memory, in blocks */
  bool lock_memory;             /* mlock the arenas */
  uint32_t batch_blocks;        /* largest coalesced write, in blocks */
  uint32_t delay_ms;            /* writeback delay */
  uint32_t background_writes;   /* batches in flight while nothing hurries
                                 * the writers (0: no limit) */
  uint32_t retry_min_ms;        /* backoff after a lower error: first */
  uint32_t retry_max_ms;        /* ... doubling up to this */
  const char *store_file;       /* NULL: data in anonymous memory */
  const char *store_id;         /* the device's id in the store file */
  bool durable;                 /* async-flush=store: store_commit makes
                                 * the store file durable (storefile.h) */
  uint32_t max_drain_s;         /* drain budget in seconds, 0: none */
  uint64_t drain_initial_budget;  /* bytes, until a rate is measured */
};

struct store_stats {
  bool sync;
  uint64_t max_dirty_bytes;
  uint64_t dirty_bytes, dirty_data_bytes;
  uint64_t dirty_ranges, dirty_entries;
  uint64_t oldest_dirty_age_ms;
  uint64_t writes_in_flight, bytes_in_flight;
  uint64_t written_back_bytes, written_back_requests;
  uint64_t lower_flushes, lower_write_errors, lower_flush_errors;
  uint64_t failed_bytes;
  uint64_t client_write_requests, client_written_bytes;
  uint64_t space_waits;
  /* Extents (store-life.c): blocks added to an extent in place, two
   * entries merged into one, an entry cut in two.
   */
  uint64_t extends, merges, splits;
  uint64_t drain_budget_waits;
  /* The drain budget (see "The drain budget" in store-arena.c). */
  uint32_t max_drain_seconds;   /* 0: no budget */
  bool drain_rate_known;
  double drain_rate;            /* bytes per second while busy */
  uint64_t drain_cost_bytes;    /* what the budget counts */
  uint64_t drain_budget_bytes;  /* 0 without a budget */
  bool store_file;              /* the data is in a store file */
  bool durable;                 /* ... committed by store_commit */
  uint64_t commits, committed_bytes, commit_waits;
  bool commit_failed;
};

/* Creating: returns NULL with *errmsg (malloc'd) on failure.  With a
 * store file (storefile.h), the entries its records describe are in the
 * store at once, DIRTY: the caller writes them back before it serves.
 */
struct store *store_create (const struct store_params *p, char **errmsg);
void store_free (struct store *s);

/* The memory a store of NSLOTS slots maps, with a store file or not: its
 * entries, and its data or the store file (which holds the data and a
 * record per entry).  What lock_memory locks.
 */
uint64_t store_memory_bytes (uint32_t nslots, bool store_file);

/* Client requests.  ADMIT_CLEAN: blocks the store does not hold go into
 * RAM (true) or straight to the lower device through IO (false: sync mode,
 * write-through).  Blocks the store holds are always updated in RAM.
 */
int store_read (struct store *s, void *buf, uint32_t count, uint64_t offset,
                const struct store_io *io, int *err);
int store_write (struct store *s, const void *buf, uint32_t count,
                 uint64_t offset, bool admit_clean,
                 const struct store_io *io, int *err);
int store_zero (struct store *s, uint32_t count, uint64_t offset,
                bool admit_clean, const struct store_io *io, int *err);
int store_trim (struct store *s, uint32_t count, uint64_t offset,
                bool admit_clean, const struct store_io *io, int *err);

/* What the store holds at OFFSET: returns the kind (enum store_kind) of a
 * run of entries of that kind starting there, or -1 if the store holds
 * nothing there; *LEN is the run's length, or the length of the clean gap,
 * at most COUNT.
 */
int store_extent (struct store *s, uint64_t offset, uint32_t count,
                  uint64_t *len);

/* Wait until every modification made before the call is durable (written
 * and flushed on the lower device).  TIMEOUT_MS < 0 waits forever, but
 * fails at once while some data is FAILED (its last lower write or flush
 * failed, and no flush has covered a successful retry yet); with a timeout
 * the retries get until the deadline.  Returns 0, or -1 with *err = EIO
 * (data is FAILED) or ETIMEDOUT.
 */
int store_flush_wait (struct store *s, int timeout_ms, int *err);

/* async-flush=store: return once every modification made before the call
 * is durable in the store file (storefile.h has the commit protocol).
 * Concurrent callers share commits (group commit): one fdatasync covers
 * every caller that arrived before its commit began.  Returns 0 at once
 * without a durable store file, or -1 with *err = EIO if a commit failed
 * (then every later one fails: the file is not trusted any more).
 */
int store_commit (struct store *s, int *err);

/* Is some data's last lower write or flush failed (flushes report EIO)? */
bool store_has_failed (struct store *s);

/* Wait until the store holds nothing at all; used by the sync-mode "hold"
 * policy.
 */
void store_wait_empty (struct store *s);

/* Writer side (writeback.c).  store_pick_wait blocks until a batch is ready
 * (copying data into BUF, which holds batch_blocks blocks) and returns true,
 * or returns false once store_stop was called.  store_complete reports the
 * lower write's outcome.
 */
bool store_pick_wait (struct store *s, struct store_batch *b, char *buf);
void store_complete (struct store *s, const struct store_batch *b, bool ok);

/* Flusher side: store_flush_begin blocks until a lower flush is worth doing
 * and returns a ticket (or false once stopped); after the lower flush,
 * store_flush_end with its outcome.
 */
bool store_flush_begin (struct store *s, uint32_t *ticket);
void store_flush_end (struct store *s, uint32_t ticket, bool ok);

/* Modes and lifecycle. */
void store_set_sync (struct store *s, bool sync);
void store_set_draining (struct store *s, bool draining);
void store_stop (struct store *s);       /* wakes every waiting thread */
bool store_is_empty (struct store *s);
uint64_t store_progress (struct store *s);  /* grows with every success */
uint64_t store_written_back_bytes (struct store *s);   /* cheap */

void store_get_stats (struct store *s, struct store_stats *st);

/* Verify the store's invariants (store-impl.h lists them): returns 0, or
 * -1 with what is wrong in WHY (LEN bytes).  Walks everything: for tests
 * and debug builds.
 */
int store_check (struct store *s, char *why, size_t len);

#endif /* ABD_ASYNC_STORE_H */
