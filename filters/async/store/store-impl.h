/* SPDX-License-Identifier: BSD-3-Clause */
/* abd async filter: the dirty store's private header.  store.h is the
 * public side (and draws the life of an entry); this file is what the
 * store's own files share: struct store, its entries, and the functions
 * one file calls in another.
 *
 * The store's files, one concept each, in layers: a file calls only
 * files of a lower layer, never one above it or beside it, so there is no
 * circle of calls (tests/test-store-layers.sh follows requests through
 * the code and checks it), and includes no header of a layer above.
 *
 *   4  store.c            creating (and loading a store file), modes,
 *                         statistics
 *      store-client.c     client requests: reads, writes (with
 *                         read-modify-write and write-through), zero,
 *                         trim, extents, flush waits
 *      store-writeback.c  batches for the writeback threads (writeback.c),
 *                         their completions, and lower flushes
 *      store-commit.c     group commits of a durable store file
 *   3  store-check.c      store_check: the invariants below, as code
 *   2  store-life.c       the life of an entry (store.h draws it): every
 *                         transition with its effects (dirty list, byte
 *                         accounting, epoch counts, store-file records,
 *                         memory released, who is woken), and the
 *                         writers' schedule
 *   1  store-index.c      the red-black tree of entries by block
 *      store-arena.c      memory: data slots, the entry pool, admission
 *                         (space and the drain budget)
 *   0  drainrate.c        the measured write-back rate (drainrate.h)
 *      storefile.c        the store file's format (storefile.h)
 *      storelock.c        s->lock's statistics, on request (storelock.h)
 *      store-block.h      the block and the kinds of range
 *      this file's inline helpers (clocks, block arithmetic)
 *
 * None of them uses nbdkit: the filter (the files of filters/async)
 * reaches the store through store.h only, and the unit tests link it
 * alone.
 *
 * Locks.  The lock order is: removal, then lock; a slot pin is never
 * waited for while holding one, and a thread holding a pin takes no lock
 * until it has released it (it copies, then releases).
 * - s->lock (a mutex) guards every field of struct store below it, every
 *   entry, slot_map, the entry free list and the store file's records.
 *   Every function declared in this header is called with s->lock held
 *   (some drop and retake it while they wait, as they say), except the
 *   pin releases, which say so.
 * - s->removal (a rwlock, writers preferred): an entry leaves the tree as
 *   clean only in store_flush_end, which holds it for writing; a
 *   read-modify-write holds it for reading across its lower read, so it
 *   never merges a lower block that a writeback was changing underneath
 *   it.  Never wait for memory while holding it: the flusher needs it to
 *   free memory.
 * - Slot pins (s->pins, below and store-life.c) guard the data in a slot
 *   while it is copied without s->lock: a client overwriting a block of
 *   a data entry (write pin, exclusive), a client reading one, a writer
 *   copying a batch it took (read pins, shared).  Everything else that
 *   touches a slot's data does it under s->lock, after finding the slot
 *   unpinned when it must be (a zero in place, a cut, a removal), or
 *   while no entry refers to the slot (a new block, a read-modify-write
 *   filling the slot it has reserved).
 *
 * Invariants, all under s->lock (store_check verifies the ones marked *):
 * - * The tree is a red-black tree by first block (its rules are at the
 *   top of store-index.c); tree_next and tree_max agree with it.
 * - * Entries in the tree never overlap and each covers whole blocks inside
 *   the device; a data entry covers 1 to extent_max blocks and owns as
 *   many consecutive slots, in use in slot_map, that no other entry owns.
 * - A data entry's slots hold its blocks' current content (all of it),
 *   but for a slot pinned for writing: its overwrite is being copied.
 * - Two DIRTY data entries that the merge rule (store-life.c) allows to
 *   be one become one when a client writes next to them; those that
 *   become mergeable otherwise (a failed write, a redirty) stay apart
 *   until then, which costs an entry and nothing else.
 * - An entry whose state is not DIRTY (a batch refers to it) is never freed
 *   or split by a client: data blocks are updated in place with REDIRTY,
 *   zero/trim ranges are waited for.
 * - * epoch_count[e] counts the entries holding unflushed modifications of
 *   epoch e (an entry counts once for its epoch and, with REDIRTY, once for
 *   its redirty_epoch), plus epoch_carries: the counts running zero/trims
 *   hold for entries they replaced.  Every entry's epochs are live
 *   (epoch_lo .. epoch_cur); epoch_lo holds something unless it is
 *   epoch_cur.  All epochs below epoch_lo are durable.
 * - * The byte accounting adds up: st.dirty_entries, st.dirty_bytes,
 *   st.dirty_data_bytes, failed_entries and st.failed_bytes are the sums
 *   over the tree, and range_entries counts the zero/trim ranges; the
 *   slots of data entries + reserved_slots are exactly those in use in
 *   slot_map, nslots - free_slots of them; entries + free_entries +
 *   reserved_entries = nentries, and the free list holds exactly the free
 *   entries that were used before.  No entry is in WRITEBACK while no
 *   write is in flight.
 * - * The dirty list holds exactly the DIRTY entries, oldest dirtied_ms
 *   first.
 * - A read-modify-write never reads a block while a client write-through
 *   to it is in flight, and a write-through never starts while a
 *   read-modify-write of one of its blocks is between its lower read and
 *   its insert (lower_ops): otherwise the merged block, holding the older
 *   content, would later be written back over the newer.  This happens
 *   when the mode changes while clients write: sync mode writes clean
 *   blocks through, async mode merges partial blocks.
 */

/* Slot pins: the data copies of the client path out of s->lock (issue
 * #22 item 2).  What was measured before, what they are, their lock order
 * and their invariants.
 *
 * Measured before (ABD_STORE_LOCK_STATS=1, storelock.h; fio ioengine=nbd
 * over the memory plugin, release build, 2 cores shared with other test
 * runs, load 9 to 20, so the waits are noisy; 10-15 s per run):
 *   workload           write_bytes hold   writers' pick hold   lock held
 *   4K randwrite QD16  2.4-6.5 us mean    4-10 us mean         14-25% wall
 *     (256M region, or 16M: overwrites of dirty blocks; over a 1 ms
 *     delay lower device alike)
 *   64K seqwrite QD1   11-16 us mean      1.2 us (+5 us complete)  13-15%
 *   4K randread QD16   store_read 1.0 us, 0.15% contended (no writers)
 * 4-10% of client acquisitions find the lock taken, and then wait 0.5 to
 * 4 ms on average: a holder preempted or a sleeper's wake-up on an
 * oversubscribed machine, not the microseconds anyone holds it.  A 4K
 * memcpy costs 0.4-0.6 us into a hot 16M arena and 1-7 us into a cold
 * 256M one, a 64K one about 8 us: the copy is 15-25% of a 4K overwrite's
 * hold and 60-70% of a 64K write's.  An upper bound (the copies simply
 * moved out of the lock, unsafely, in a scratch build) cut the time the
 * lock is held from 24 to 13% of wall (QD16) and from 15 to 4.5% (64K)
 * but gained no throughput that the noise did not swamp: on this machine
 * CPU, not the lock, is the limit.  An adaptive mutex and a pick that
 * scans with a tree iterator did not help either; fewer nbdkit threads
 * (-t 2) cut the mean wait of a contended acquisition from 1.2 to 0.3 ms:
 * the waits are queueing on two cores.
 *
 * Why pins.  A striped lock per block range held across a copy is a lock
 * slept on while held, every reshaping under s->lock would have to take
 * the stripes of the slots it frees, and a client would revalidate its
 * entry after taking a stripe; read-copy-update would defer freeing
 * entries and slots and still need per-block exclusion for writes.  Pins
 * do the same with one counter per slot and no new lock.
 *
 * What they are (store-life.c has the functions):
 * - s->pins[slot] (uint16_t, 2 bytes a 4 KiB slot): PIN_WRITE (0x8000)
 *   for one client copying into the slot, else the number of copies out
 *   of it (client reads, a writer's batch).  Pins are taken only under
 *   s->lock (pins_take, after slots_pinned), and released without it by
 *   an atomic decrement after the copy (pins_drop); the releaser then
 *   reads s->pin_waiters and s->pin_skipped, and only if one is set takes
 *   s->lock (pins_released: broadcast s->unpinned, wake a writer).  A
 *   waiter (pins_wait) counts itself in pin_waiters and looks at the pin
 *   again under s->lock before it sleeps on s->unpinned; all of these are
 *   sequentially consistent, so one of the two sees the other and no
 *   wake-up is lost.  A write pin's slot is released before write_pins
 *   counts it off.
 * - Overwrite (write_bytes -> overwrite_pin, store-client.c): under the
 *   lock, the request's blocks in one data entry; if any of their slots
 *   is pinned, wait (holding none) and look at the tree again; else
 *   PIN_WRITE on all of them and all the bookkeeping now: record_touch,
 *   entry_modified (REDIRTY with redirty_epoch = epoch_cur for a
 *   WRITEBACK or WRITTEN entry).  The copy (overwrite_copy) is made after
 *   the lock is dropped: at the end of the request when it is its last
 *   piece (one acquisition, as before), at once otherwise.
 * - Read (store_read -> read_pieces): a read pin on every data slot it
 *   copies, taken with the gaps under the lock; the copies (and zero
 *   fills) after it is dropped, then the release, then the lower reads
 *   of the gaps.  A read waits only for a write pin, releasing the pins
 *   it took first.
 * - The writers: run_at (store-writeback.c) never takes an entry with a
 *   write-pinned slot (entry_write_pinned; a write-pinned first entry is
 *   skipped and sets s->pin_skipped, so that the release wakes a writer;
 *   pick looks again within 1 ms in any case), since its content is being
 *   replaced; a writer's copy out of its batch holds a read pin on each
 *   slot (the slot lists in s->copies; with none free, it copies under
 *   the lock).
 * - Who frees or changes a slot under the lock waits for its pins:
 *   range_op before entry_cut (the slots cut) and before zeroing in
 *   place a block being written back; store_flush_end before it removes a
 *   WRITTEN entry (only read pins are possible there: see the invariants;
 *   readers need neither s->removal nor anything the flusher holds).
 *   Merges and extents move no data, a read-modify-write's reserved slot
 *   and a new block's slot are in no entry yet: pins, being per slot,
 *   survive every change of shape.
 * - A durable store file: store_commit waits before
 *   storefile_commit_begin until no slot is write-pinned
 *   (pins_wait_writes on s->write_pins), with s->pins_closed set so that
 *   new write pins wait for it; it then copies the pages under the lock,
 *   where none can be taken.  A tmpfs file: the record already names the
 *   slot (the entry is in the tree); a crash during the copy tears a block
 *   whose write was not acknowledged, as before and as a disk may.
 * - Two concurrent overwrites of one block: PIN_WRITE is exclusive, so
 *   the slot ends holding one whole value, the last copied; every read
 *   after both acknowledgements sees it, and so does the lower device: a
 *   writer's copy is serialized with both (read pin), and one that came
 *   before the last client copy left REDIRTY, so the block is written
 *   again.  Which of two concurrent requests is copied last is not the
 *   order of their acknowledgements (the ack follows the release, as it
 *   followed the unlock); NBD allows either for concurrent requests.
 * - Flushes: a flush received before a request began does not cover it;
 *   one received after its acknowledgement must, and does: an overwrite
 *   of a DIRTY entry leaves the entry's older epoch (no writer takes it
 *   until the release, so it is written back whole), a redirty holds
 *   epoch_cur taken at pin time, no newer than the request's own.  A
 *   flush received during the copy also waits for it: conservative.
 * - New blocks stay under the lock: copying them outside would need a
 *   reserved slot, the lock dropped and taken again (two acquisitions),
 *   the path of a read-modify-write; the measurements above do not pay
 *   for it in the 4K random rows, where most blocks are new.
 * - Readers do not wait for a waiting overwrite: a block read without
 *   pause by many clients could keep an overwrite of it waiting (read
 *   pins are shared and short; none was seen).
 * Invariants of pins (store_check, with the lock; pins are read
 * atomically and may only disappear meanwhile): a free or reserved slot
 * has no pin; PIN_WRITE only on a slot of a data entry in the tree, never
 * with a read pin; a WRITEBACK or WRITTEN entry with a write-pinned slot
 * has REDIRTY; s->write_pins, read first, is no less than the
 * write-pinned slots (it equals them between releases: a release clears
 * the slot, then write_pins, without the lock, so a check can only see
 * fewer slots).  tests/test-store-concurrent.c is the stress test (a naive
 * copy outside the lock fails it within seconds: torn reads).
 */

#ifndef ABD_ASYNC_STORE_IMPL_H
#define ABD_ASYNC_STORE_IMPL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "drainrate.h"
#include "store.h"
#include "storefile.h"
#include "storelock.h"

#define EPOCH_RING 4096         /* live epochs at most (waiting flushes) */
#define FLUSH_BATCHES 64        /* flush after this many completed batches */
#define FLUSH_AGE_MS 50         /* or when the oldest completion is this old */
#define NO_SLOT UINT32_MAX
#define NO_ENTRY UINT32_MAX
/* The smallest drain budget: enough dirty data for the writers to measure
 * the rate again after it fell to nothing (a failing device), which they
 * can only do while they have something to write.
 */
#define DRAIN_BUDGET_MIN STORE_MIN_SIZE

enum entry_state { ST_DIRTY, ST_WRITEBACK, ST_WRITTEN };
#define EF_REDIRTY 1            /* modified since its batch took it */
#define EF_FAILED  2            /* its last lower write or flush failed */

/* Pool indices in the tree's links have ENTRY_INDEX_BITS bits (the other
 * bits of their words hold the entry's small fields), so the pool has at
 * most ENTRY_MAX entries: store.h's STORE_MAX_DIRTY.  ENTRY_NIL: no entry.
 */
#define ENTRY_INDEX_BITS 28
#define ENTRY_NIL ((1u << ENTRY_INDEX_BITS) - 1)
#define ENTRY_MAX ENTRY_NIL
_Static_assert (STORE_MAX_SLOTS <= ENTRY_MAX,
                "every slot's entry has a pool index");

/* A block number that needs only 4-byte alignment, so that an entry is
 * 36 bytes and not 40 (x86-64 and arm64 load it as fast).
 */
typedef uint64_t blk_a4 __attribute__ ((aligned (4)));

/* The most blocks a data entry (an extent) covers: its length shares a
 * 32-bit word with its first slot (28 bits), 4 bits.  A 64K write is one
 * entry, sequential data costs 36 / 16 = 2.25 bytes of metadata per
 * block, and an extent is never longer than a batch (s->extent_max is
 * the smaller of the two), so that a writer takes whole entries.
 */
#define EXTENT_BITS 4
#define EXTENT_MAX (1u << EXTENT_BITS)
_Static_assert (EXTENT_MAX == STOREFILE_EXTENT_MAX,
                "a data entry has a record in the store file");

/* An entry of the index: an extent of 1 to EXTENT_MAX data blocks in as
 * many consecutive slots, or a range of zeroed or trimmed blocks.  36
 * bytes: the whole metadata of a scattered dirty data block, 2.25 bytes
 * a block of a sequential extent.  The tree links by 28-bit pool index,
 * not by pointer, and has no parent links (store-index.c walks down from
 * the root with a path stack), so that every byte here is one an entry
 * needs: why it is 36 bytes and not the 64 of a pointer-linked
 * red-black tree.
 */
struct entry {
  /* The tree (store-index.c): the children's pool indices, ENTRY_NIL for
   * none, and the colour; only store-index.c and store_check touch them.
   * A free entry links the next free one in LEFT (store-arena.c).
   */
  uint32_t left : ENTRY_INDEX_BITS;
  uint32_t kind : 2;            /* enum store_kind */
  uint32_t state : 2;           /* enum entry_state */
  uint32_t right : ENTRY_INDEX_BITS;
  uint32_t flags : 2;           /* EF_* */
  uint32_t red : 1;
  blk_a4 blk;                   /* first block */
  union {
    struct {                    /* STORE_DATA */
      uint32_t slot : ENTRY_INDEX_BITS;  /* the first block's slot; the
                                          * others follow it */
      uint32_t nblk_1 : EXTENT_BITS;     /* blocks - 1 */
    };
    uint32_t count;             /* STORE_ZERO, STORE_TRIM: blocks */
  };
  union {
    struct {                    /* DIRTY: the dirty list (store-life.c) */
      uint32_t dirty_prev, dirty_next;  /* pool indices, NO_ENTRY: end */
    };
    struct {                    /* WRITEBACK and WRITTEN */
      uint32_t gen;             /* WRITTEN: write generation */
      uint32_t redirty_epoch;   /* with EF_REDIRTY: epoch of the redirty */
    };
  };
  uint32_t epoch;               /* oldest unflushed modification */
  uint32_t dirtied_ms;          /* when it became DIRTY */
};

_Static_assert (sizeof (struct entry) == 36,
                "struct entry is the per-block metadata the comments promise");
_Static_assert (STORE_TRIM < 4 && ST_WRITTEN < 4 &&
                (EF_REDIRTY | EF_FAILED) < 4 &&
                ENTRY_INDEX_BITS + EXTENT_BITS <= 32,
                "the small fields of struct entry hold every value");

/* A block range written to the lower device, waiting for a lower flush. */
struct written_range {
  uint64_t blk, end;
};

/* Client-path lower I/O in flight: a write-through (or zero/trim
 * through), or the lower read of a read-modify-write, of blocks [b0, b1).
 */
#define LOWER_OPS_MAX 64
struct lower_op {                 /* s->lower_ops[i]: its index is i */
  uint64_t b0, b1;
  bool rmw;
  bool used;
};

/* A writer copying a batch it took into WRITEBACK out of its slots
 * without the lock (store-writeback.c): the slot of each block, each
 * read-pinned.  Taken under the lock; USED is cleared without it
 * (atomically, with release order) once the copy is done.
 */
#define COPIES_MAX 64
struct copy_list {
  uint32_t *slots;              /* batch_blocks of them */
  bool used;
};

/* Slot pins (the design is at the top of this file): s->pins[slot] is
 * PIN_WRITE while one client copies into the slot, else the number of
 * copies out of it.
 */
#define PIN_WRITE 0x8000
#define PIN_ANY 0xffff          /* a mask: write or read pins */

/* The store.  The lock order and what each lock guards are at the top of
 * this file.
 */
struct store {
  pthread_rwlock_t removal;     /* entries leaving the tree as clean */
  pthread_mutex_t lock;         /* everything below */
  struct lockstat_hold lock_hold;  /* its statistics (storelock.h) */
  pthread_cond_t changed;       /* entries changed, space freed, epochs moved */
  pthread_cond_t work;          /* writers: something may be pickable */
  pthread_cond_t flush_work;    /* flusher: completions to flush */

  /* Set by store_create, constant afterwards. */
  uint64_t size, nblocks;
  uint32_t batch_blocks, delay_ms;
  uint32_t extent_max;          /* blocks of a data entry: EXTENT_MAX or
                                 * batch_blocks, the smaller */
  uint32_t background_writes;   /* UINT32_MAX: no limit */
  uint32_t retry_min_ms, retry_max_ms;

  /* The arena (store-arena.c).  Data: nslots blocks; slot_map has a bit
   * set for every slot in use (an extent needs consecutive free slots:
   * a free list cannot say whether the slot after an extent is free),
   * and no slot below slot_low is free (where the search for the lowest
   * free one starts; it may be nslots when none is free).  With a
   * store file, the arena is in the file and every entry in the tree has
   * a record there (store-life.c), numbered by its index in the pool;
   * seq numbers them.
   */
  struct storefile *file;
  uint64_t seq;
  char *data;
  size_t data_bytes;
  uint64_t *slot_map;
  size_t slot_map_bytes;
  uint32_t nslots, free_slots, slot_low;
  /* Entry pool, likewise. */
  struct entry *pool;
  size_t pool_bytes;
  uint32_t nentries, entry_bump, free_entries;
  uint32_t entry_free;          /* pool index, ENTRY_NIL: none */
  /* Taken from the free lists but in no entry of the tree yet, while the
   * lock is dropped: a read-modify-write's slot and entry, a zero/trim's
   * intent record.  Only store_check reads them.
   */
  uint32_t reserved_slots, reserved_entries;

  /* The index (store-index.c), and the dirty list (store-life.c), which
   * links the DIRTY entries oldest first (by dirtied_ms), so that a writer
   * knows without walking the tree whether anything is due and when it
   * will be.
   */
  uint32_t root;                /* pool index, ENTRY_NIL: empty */
  uint64_t cursor;              /* writers sweep upwards from here */
  uint32_t dirty_head, dirty_tail;      /* pool indices, NO_ENTRY: empty */
  uint32_t ndirty;              /* entries in the dirty list */

  /* Epochs (store-life.c; flush waits in store-client.c). */
  uint32_t epoch_cur, epoch_lo;
  uint32_t epoch_count[EPOCH_RING];
  uint32_t epoch_carries;       /* counts held by running zero/trims */

  /* Completed batches waiting for a lower flush (store-writeback.c). */
  uint32_t write_gen;
  struct written_range *written;
  size_t nwritten, written_cap;
  uint32_t written_batches, first_written_ms;
  bool written_overflow;        /* a range was not recorded: scan all */

  struct lower_op lower_ops[LOWER_OPS_MAX];   /* store-client.c */
  struct copy_list copies[COPIES_MAX];        /* store-writeback.c */
  uint32_t *copy_slots;         /* the copies' slot lists, in one block */

  /* Slot pins (store-life.c).  pins[] and write_pins are changed under
   * the lock when taken and atomically without it when released, and
   * read atomically; pin_waiters and pin_skipped are changed under the
   * lock and read atomically by releasers.  pins_closed: a commit waits
   * for the write pins, new ones wait for it.
   */
  uint16_t *pins;               /* nslots of them */
  uint32_t write_pins;          /* write-pinned slots */
  uint32_t pin_waiters;         /* threads in pins_wait, pins_wait_writes */
  bool pin_skipped;             /* a writer skipped a write-pinned entry */
  bool pins_closed;
  pthread_cond_t unpinned;      /* pins released, or pins_closed cleared */

  /* Modes, and who waits (the writers hurry for them). */
  bool sync, draining, stopping;
  bool wake_armed;              /* a sleeping writer wakes at wake_at_ms */
  bool space_low;               /* writeback_urgent's latch */
  uint32_t wake_at_ms;
  unsigned flush_waiters, space_waiters;
  uint32_t backoff_ms, retry_at_ms;
  uint64_t failed_entries;
  uint64_t range_entries;       /* zero/trim entries in the tree */

  /* Group commit of a durable store file (store-commit.c): commits are
   * numbered from 1; commit_started is the last one begun (its pages
   * taken), commit_done the last one durable; committing while one runs.
   */
  bool durable, committing, commit_failed;
  uint64_t commit_started, commit_done;
  pthread_cond_t committed;

  /* The drain budget (async-max-drain-seconds): max_drain_s 0 is none. */
  uint32_t max_drain_s;
  uint64_t drain_initial_budget;
  struct drain_rate meter;      /* busy while writes_in_flight > 0 */

  struct store_stats st;        /* counters kept as they happen */
};


/* Taking and releasing s->lock, and waiting on a condition with it: each
 * place in the code that does is a site of the lock's statistics
 * (storelock.h), named by its function.
 */
#define STORE_LOCK(s)                                                   \
  do {                                                                  \
    static struct lockstat_site lockstat_site_ = { .name = __func__ };  \
    lockstat_lock (&(s)->lock, &(s)->lock_hold, &lockstat_site_);       \
  } while (0)
#define STORE_UNLOCK(s) lockstat_unlock (&(s)->lock, &(s)->lock_hold)
#define STORE_WAIT(s, cond) \
  lockstat_wait ((cond), &(s)->lock, &(s)->lock_hold, NULL)
#define STORE_TIMEDWAIT(s, cond, abstime) \
  lockstat_wait ((cond), &(s)->lock, &(s)->lock_hold, (abstime))

static inline uint32_t
now_ms (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (uint32_t) ((uint64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

static inline uint64_t
now_us (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (uint64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Milliseconds from A to B on a 32-bit clock that wraps. */
static inline int32_t
ms_diff (uint32_t a, uint32_t b)
{
  return (int32_t) (b - a);
}

static inline uint64_t
entry_blocks (const struct entry *e)
{
  return e->kind == STORE_DATA ? (uint64_t) e->nblk_1 + 1 : e->count;
}

static inline uint64_t
entry_end (const struct entry *e)
{
  return e->blk + entry_blocks (e);
}

/* Does entry E (NULL: none) cover block BLK? */
static inline bool
entry_contains (const struct entry *e, uint64_t blk)
{
  return e && e->blk <= blk && blk < entry_end (e);
}

/* Bytes of block BLK that exist (the last block may be short). */
static inline uint32_t
block_len (const struct store *s, uint64_t blk)
{
  uint64_t off = blk * STORE_BLOCK_SIZE;

  return s->size - off < STORE_BLOCK_SIZE ? s->size - off : STORE_BLOCK_SIZE;
}

/* Bytes of blocks [blk, blk+n) that exist. */
static inline uint64_t
blocks_len (const struct store *s, uint64_t blk, uint64_t n)
{
  uint64_t off = blk * STORE_BLOCK_SIZE, len = n * STORE_BLOCK_SIZE;

  return off + len > s->size ? s->size - off : len;
}

static inline char *
slot_data (struct store *s, uint32_t slot)
{
  return s->data + (size_t) slot * STORE_BLOCK_SIZE;
}

/* The data of block BLK of data entry E. */
static inline char *
block_data (struct store *s, const struct entry *e, uint64_t blk)
{
  return slot_data (s, e->slot + (uint32_t) (blk - e->blk));
}

/*----------------------------------------------------------------------
 * Shared by the store's files, layer by layer from the bottom.
 */

/* Layer 1, store-arena.c: memory.  Mapping (store_create and store_free,
 * no lock needed).
 */
int arena_map (struct store *s, bool anon_data, bool lock_memory,
               char **errmsg);
void arena_unmap (struct store *s);

/* s->lock must be held when you call any function below this line. */

/* store-arena.c: slots, entries, admission.  They change no entry's
 * state and wake nobody.
 */
uint32_t slot_alloc (struct store *s, uint32_t hint);
void slot_release (struct store *s, uint32_t slot, uint32_t n);
bool slot_in_use (const struct store *s, uint32_t slot);
void slot_mark_used (struct store *s, uint32_t slot);
struct entry *entry_alloc (struct store *s);
void entry_release (struct store *s, struct entry *e);
struct entry *entry_alloc_with_slot (struct store *s, uint32_t hint,
                                     uint32_t *slot);
uint64_t drain_cost (const struct store *s);
uint64_t drain_budget (struct store *s, bool *known, double *rate);
bool drain_admits (struct store *s);

/* Layer 1, store-index.c: the tree, in block order.  Linking and
 * unlinking only: store-life.c does the rest of an insert or a removal.
 */
bool tree_empty (const struct store *s);
/* The tree's height is at most 2 log2 (n + 1) (store-index.c), which
 * bounds the path stacks.
 */
#define TREE_MAX_DEPTH (2 * ENTRY_INDEX_BITS + 8)
/* In-order iteration with the path kept on a stack (the tree has no
 * parent links): a step costs O(1) amortized where tree_next costs a
 * descent.  Valid only while the tree does not change.
 */
struct tree_iter {
  uint32_t path[TREE_MAX_DEPTH];
  unsigned depth;
};
struct entry *tree_iter_first (struct store *s, struct tree_iter *it);
struct entry *tree_iter_next (struct store *s, struct tree_iter *it);
struct entry *tree_min (struct store *s);
struct entry *tree_max (struct store *s);
struct entry *tree_next (struct store *s, const struct entry *e);
struct entry *tree_prev (struct store *s, const struct entry *e);
struct entry *tree_find (struct store *s, uint64_t blk);
struct entry *tree_find_from (struct store *s, uint64_t blk);
void tree_link (struct store *s, struct entry *e);
void tree_unlink (struct store *s, struct entry *e);

/* Layer 2, store-life.c: the life of an entry. */
/* Epochs. */
void epoch_hold (struct store *s, uint32_t epoch);
void epoch_drop (struct store *s, uint32_t epoch);
void epoch_advance (struct store *s);
/* Who is woken, and waiting. */
bool writeback_urgent (struct store *s);
bool writer_admitted (struct store *s, bool hurry);
void writeback_wake (struct store *s);
bool writeback_more_due (struct store *s);
void wait_changed (struct store *s, bool for_space);
/* Slot pins: taken under the lock (pins_take, when slots_pinned says
 * they may be), released without it (pins_drop, then pins_released
 * once for all that were dropped; pins_wake instead with the lock held).
 */
bool slots_pinned (struct store *s, uint32_t slot, uint32_t n,
                   uint16_t mask);
void pins_take (struct store *s, uint32_t slot, uint32_t n, bool write);
void pins_wait (struct store *s, uint32_t slot, uint32_t n, uint16_t mask);
void pins_wait_writes (struct store *s);
void pins_wake (struct store *s);
bool entry_write_pinned (struct store *s, const struct entry *e);
/* These two are called with or without the lock (pins_released only
 * without it).
 */
void pins_drop (struct store *s, uint32_t slot, uint32_t n, bool write);
void pins_released (struct store *s);
struct entry *dirty_oldest (struct store *s);
/* Birth: new entries (NULL: no memory now, wait_changed for space),
 * inserted DIRTY; discarded if they never went in.
 */
struct entry *entry_new_data (struct store *s, uint64_t blk);
bool entry_insert_block (struct store *s, uint64_t blk, const char *src,
                         uint32_t len, struct entry *next,
                         struct entry **left);
struct entry *entry_new_range (struct store *s, enum store_kind kind,
                               uint64_t blk, uint64_t count);
struct entry *entry_new_piece (struct store *s, const struct entry *from,
                               uint64_t blk, uint64_t end);
void entry_discard (struct store *s, struct entry *e);
void entry_insert (struct store *s, struct entry *e, uint32_t epoch,
                   bool hold);
void entry_load (struct store *s, struct entry *e);
void record_publish (struct store *s, struct entry *e);
void record_touch (struct store *s, struct entry *e, uint64_t blk);
struct entry *intent_open (struct store *s, enum store_kind kind,
                           uint64_t b0, uint64_t b1);
void intent_close (struct store *s, struct entry *e);
/* Changes by clients. */
void entry_modified (struct store *s, struct entry *e);
bool entry_cut (struct store *s, struct entry *e, uint64_t b0, uint64_t b1,
                uint32_t *epoch);
struct entry *entry_merge_around (struct store *s, struct entry *e);
bool entry_split_for_block (struct store *s, struct entry *r, uint64_t blk,
                            struct entry *d);
void entry_inherit_age (struct store *s, struct entry *e,
                        struct entry *from);
void entry_remove (struct store *s, struct entry *e);
/* Write-back. */
void entry_take (struct store *s, struct entry *e);
void entry_written (struct store *s, struct entry *e, uint32_t gen);
void entry_write_failed (struct store *s, struct entry *e);
void entry_flushed (struct store *s, struct entry *e, bool ok, uint32_t now);

/* Layer 3, store-check.c: store_check with the lock held.
 * STORE_DEBUG_CHECK runs it at the end of every store operation (layer 4)
 * in a debug build (configure --enable-debug) and aborts on a broken
 * invariant; in a release build it is nothing.
 */
int store_check_locked (struct store *s, char *why, size_t len);
#ifdef ABD_DEBUG
void store_debug_check (struct store *s, const char *where);
#define STORE_DEBUG_CHECK(s) store_debug_check ((s), __func__)
#else
#define STORE_DEBUG_CHECK(s) ((void) 0)
#endif

#endif /* ABD_ASYNC_STORE_IMPL_H */
