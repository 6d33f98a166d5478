/* SPDX-License-Identifier: BSD-3-Clause */
/* abd async filter: the dirty store (see store.h for the state machine).
 *
 * Invariants, all under s->lock:
 * - Entries in the tree never overlap and each covers whole blocks.
 * - A data entry's slot holds the block's current content (all of it).
 * - An entry whose state is not DIRTY (a batch refers to it) is never freed
 *   or split by a client: data blocks are updated in place with REDIRTY,
 *   zero/trim ranges are waited for.
 * - epoch_count[e] counts the entries holding unflushed modifications of
 *   epoch e (an entry counts once for its epoch and, with REDIRTY, once for
 *   its redirty_epoch).  All epochs below epoch_lo are durable.
 * - An entry leaves the tree as clean only in store_flush_end, under the
 *   removal lock taken for writing; a read-modify-write holds it for
 *   reading across its lower read, so it never merges a lower block that a
 *   writeback was changing underneath it.
 * - A read-modify-write never reads a block while a client write-through
 *   to it is in flight, and a write-through never starts while a
 *   read-modify-write of one of its blocks is between its lower read and
 *   its insert (lower_ops): otherwise the merged block, holding the older
 *   content, would later be written back over the newer.  This happens
 *   when the mode changes while clients write: sync mode writes clean
 *   blocks through, async mode merges partial blocks.
 *
 * Lock order: removal, then lock.
 */

#include <config.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

/* libbsd's tree.h marks the static functions it generates __unused. */
#ifndef __unused
#define __unused __attribute__ ((__unused__))
#endif
#include <bsd/sys/tree.h>

#include "drainrate.h"
#include "store.h"
#include "storefile.h"

#define EPOCH_RING 4096         /* live epochs at most (waiting flushes) */
#define FLUSH_BATCHES 64        /* flush after this many completed batches */
#define FLUSH_AGE_MS 50         /* or when the oldest completion is this old */
#define NO_SLOT UINT32_MAX
/* The smallest drain budget: enough dirty data for the writers to measure
 * the rate again after it fell to nothing (a failing device), which they
 * can only do while they have something to write.
 */
#define DRAIN_BUDGET_MIN STORE_MIN_SIZE

enum entry_state { ST_DIRTY, ST_WRITEBACK, ST_WRITTEN };
#define EF_REDIRTY 1            /* modified since its batch took it */
#define EF_FAILED  2            /* its last lower write or flush failed */

/* 64 bytes: the whole per-block metadata of a dirty data block. */
struct entry {
  RB_ENTRY (entry) link;
  uint64_t blk;                 /* first block */
  union {
    uint32_t slot;              /* STORE_DATA: index in the data arena */
    uint32_t count;             /* STORE_ZERO, STORE_TRIM: blocks */
  };
  uint32_t gen;                 /* WRITTEN: write generation */
  uint32_t epoch;               /* oldest unflushed modification */
  uint32_t redirty_epoch;       /* with EF_REDIRTY: epoch of the redirty */
  uint32_t dirtied_ms;          /* when it became DIRTY */
  uint8_t kind;                 /* enum store_kind */
  uint8_t state;                /* enum entry_state */
  uint8_t flags;
};

RB_HEAD (entry_tree, entry);

/* A block range written to the lower device, waiting for a lower flush. */
struct written_range {
  uint64_t blk, end;
};

/* Client-path lower I/O in flight: a write-through (or zero/trim
 * through), or the lower read of a read-modify-write, of blocks [b0, b1).
 */
#define LOWER_OPS_MAX 64
struct lower_op {
  uint64_t b0, b1;
  bool rmw;
  bool used;
};

struct store {
  pthread_rwlock_t removal;     /* see the top of this file */
  pthread_mutex_t lock;         /* protects everything below */
  pthread_cond_t changed;       /* entries changed, space freed, epochs moved */
  pthread_cond_t work;          /* writers: something may be pickable */
  pthread_cond_t flush_work;    /* flusher: completions to flush */

  uint64_t size, nblocks;
  uint32_t batch_blocks, delay_ms;
  uint32_t retry_min_ms, retry_max_ms;
  uint32_t start_ms;            /* CLOCK_MONOTONIC ms at creation */

  /* Data arena: nslots blocks; free slots are chained through their first
   * four bytes, slots never used yet are above slot_bump.  With a store
   * file, the arena is in the file and every entry in the tree has a
   * record there, numbered by its index in the pool; seq numbers them.
   */
  struct storefile *file;
  uint64_t seq;
  char *data;
  size_t data_bytes;
  uint32_t nslots, slot_bump, slot_free, free_slots;
  /* Entry pool, likewise. */
  struct entry *pool;
  size_t pool_bytes;
  uint32_t nentries, entry_bump, free_entries;
  struct entry *entry_free;

  struct entry_tree tree;
  uint64_t cursor;              /* writers sweep upwards from here */

  uint32_t epoch_cur, epoch_lo;
  uint32_t epoch_count[EPOCH_RING];

  uint32_t write_gen;
  struct written_range *written;
  size_t nwritten, written_cap;
  uint32_t written_batches, first_written_ms;
  bool written_overflow;        /* a range was not recorded: scan all */

  struct lower_op lower_ops[LOWER_OPS_MAX];

  bool sync, draining, stopping;
  bool wake_armed;              /* a sleeping writer wakes at wake_at_ms */
  uint32_t wake_at_ms;
  unsigned flush_waiters, space_waiters;
  uint32_t backoff_ms, retry_at_ms;
  uint64_t failed_entries;

  /* The drain budget (async-max-drain-seconds): max_drain_s 0 is none. */
  uint32_t max_drain_s;
  uint64_t drain_initial_budget;
  struct drain_rate meter;      /* busy while writes_in_flight > 0 */

  struct store_stats st;        /* counters kept as they happen */
};

static bool urgent (struct store *s);

static int
entry_cmp (const struct entry *a, const struct entry *b)
{
  return a->blk < b->blk ? -1 : a->blk > b->blk;
}

RB_GENERATE_STATIC (entry_tree, entry, link, entry_cmp)

static uint32_t
now_ms (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (uint32_t) ((uint64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

static uint64_t
now_us (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (uint64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Milliseconds from A to B on a 32-bit clock that wraps. */
static int32_t
ms_diff (uint32_t a, uint32_t b)
{
  return (int32_t) (b - a);
}

static uint64_t
entry_blocks (const struct entry *e)
{
  return e->kind == STORE_DATA ? 1 : e->count;
}

static uint64_t
entry_end (const struct entry *e)
{
  return e->blk + entry_blocks (e);
}

/* Bytes of block BLK that exist (the last block may be short). */
static uint32_t
block_len (const struct store *s, uint64_t blk)
{
  uint64_t off = blk * STORE_BLOCK_SIZE;

  return s->size - off < STORE_BLOCK_SIZE ? s->size - off : STORE_BLOCK_SIZE;
}

/* Bytes of blocks [blk, blk+n) that exist. */
static uint64_t
blocks_len (const struct store *s, uint64_t blk, uint64_t n)
{
  uint64_t off = blk * STORE_BLOCK_SIZE, len = n * STORE_BLOCK_SIZE;

  return off + len > s->size ? s->size - off : len;
}

static char *
slot_data (struct store *s, uint32_t slot)
{
  return s->data + (size_t) slot * STORE_BLOCK_SIZE;
}

/*----------------------------------------------------------------------
 * The drain budget.
 *
 * With async-max-drain-seconds=N, dirty data is bounded by the time its
 * write-back takes, not only by memory: a client may add an entry only
 * while the store's cost (drainrate.h: 4 KiB per entry, a data block or a
 * zeroed or trimmed range) stays within N seconds at the measured rate.
 * Until the writers have measured a rate, the budget is the small
 * drain_initial_budget (async.c: what even a disk doing 100 random writes
 * a second drains in N seconds, and at most 1 MiB), so that the first
 * burst after a start cannot fill the memory with more than a slow device
 * can drain.  A client over the budget waits like one waiting for space
 * (a space waiter: the writers hurry, which is also when the rate they
 * measure is the one a drain gets), and is counted in drain_budget_waits.
 */

static uint64_t
drain_cost (const struct store *s)
{
  return s->st.dirty_entries * STORE_BLOCK_SIZE;
}

/* Bytes of cost the budget allows now; UINT64_MAX without a budget. */
static uint64_t
drain_budget (struct store *s, bool *known, double *rate)
{
  double b;

  *known = drain_rate_get (&s->meter, now_us (), rate);
  if (s->max_drain_s == 0)
    return UINT64_MAX;
  if (!*known)
    return s->drain_initial_budget;
  b = *rate * s->max_drain_s;
  if (b < DRAIN_BUDGET_MIN)
    return DRAIN_BUDGET_MIN;
  return b >= (double) UINT64_MAX / 2 ? UINT64_MAX / 2 : (uint64_t) b;
}

/* May a client add one more entry now?  Always into an empty store. */
static bool
drain_admits (struct store *s)
{
  uint64_t cost = drain_cost (s);
  double rate;
  bool known;

  return s->max_drain_s == 0 || cost == 0 ||
    cost + STORE_BLOCK_SIZE <= drain_budget (s, &known, &rate);
}

/*----------------------------------------------------------------------
 * Memory: slots and entries.
 */

/* A slot for a client's new data block: NO_SLOT when memory is full or
 * the drain budget is spent.
 */
static uint32_t
slot_alloc (struct store *s)
{
  uint32_t slot;

  if (s->free_slots == 0 || !drain_admits (s))
    return NO_SLOT;
  s->free_slots--;
  if (s->slot_free != NO_SLOT) {
    slot = s->slot_free;
    memcpy (&s->slot_free, slot_data (s, slot), sizeof s->slot_free);
    return slot;
  }
  return s->slot_bump++;
}

static void
slot_release (struct store *s, uint32_t slot)
{
  memcpy (slot_data (s, slot), &s->slot_free, sizeof s->slot_free);
  s->slot_free = slot;
  s->free_slots++;
}

static struct entry *
entry_alloc (struct store *s)
{
  struct entry *e;

  if (s->free_entries == 0)
    return NULL;
  s->free_entries--;
  if (s->entry_free) {
    e = s->entry_free;
    s->entry_free = RB_LEFT (e, link);
  }
  else
    e = &s->pool[s->entry_bump++];
  memset (e, 0, sizeof *e);
  return e;
}

static void
entry_release (struct store *s, struct entry *e)
{
  RB_LEFT (e, link) = s->entry_free;
  s->entry_free = e;
  s->free_entries++;
}

/* Publish E's record in the store file, after its data is in place. */
static void
record_publish (struct store *s, struct entry *e)
{
  if (s->file)
    storefile_put (s->file, e - s->pool, ++s->seq, e->blk,
                   e->kind == STORE_DATA ? 1 : e->count,
                   e->kind == STORE_DATA ? e->slot : NO_SLOT, e->kind);
}

static void
record_retire (struct store *s, struct entry *e)
{
  if (s->file)
    storefile_clear (s->file, e - s->pool);
}

static void
wake_space_waiters (struct store *s)
{
  if (s->space_waiters)
    pthread_cond_broadcast (&s->changed);
}

/* Wait for something to change (space, a batch finishing).  The caller
 * must look at the tree again afterwards.
 */
static void
wait_changed (struct store *s, bool for_space)
{
  if (for_space) {
    s->space_waiters++;
    /* With memory free, the drain budget stops it. */
    if (s->free_slots > 0 && !drain_admits (s))
      s->st.drain_budget_waits++;
    else
      s->st.space_waits++;
  }
  pthread_cond_broadcast (&s->work);    /* space waiters make writers hurry */
  pthread_cond_wait (&s->changed, &s->lock);
  if (for_space)
    s->space_waiters--;
}

/*----------------------------------------------------------------------
 * Epochs.
 */

static void
epoch_hold (struct store *s, uint32_t epoch)
{
  s->epoch_count[epoch % EPOCH_RING]++;
}

static void
epoch_drop (struct store *s, uint32_t epoch)
{
  assert (s->epoch_count[epoch % EPOCH_RING] > 0);
  s->epoch_count[epoch % EPOCH_RING]--;
}

/* Move epoch_lo past epochs that hold nothing; wakes flush waiters. */
static void
epoch_advance (struct store *s)
{
  uint32_t lo = s->epoch_lo;

  while (lo != s->epoch_cur && s->epoch_count[lo % EPOCH_RING] == 0)
    lo++;
  if (lo != s->epoch_lo) {
    s->epoch_lo = lo;
    pthread_cond_broadcast (&s->changed);
  }
}

/*----------------------------------------------------------------------
 * The tree.
 */

/* The entry containing BLK, else the first entry after it, else NULL. */
static struct entry *
tree_find_from (struct store *s, uint64_t blk)
{
  struct entry key = { .blk = blk };
  struct entry *e, *prev;

  e = RB_NFIND (entry_tree, &s->tree, &key);
  if (e && e->blk == blk)
    return e;
  prev = e ? RB_PREV (entry_tree, &s->tree, e)
           : RB_MAX (entry_tree, &s->tree);
  if (prev && entry_end (prev) > blk)
    return prev;
  return e;
}

static bool
contains (const struct entry *e, uint64_t blk)
{
  return e && e->blk <= blk && blk < entry_end (e);
}

static void
account_insert (struct store *s, struct entry *e)
{
  s->st.dirty_entries++;
  s->st.dirty_bytes += blocks_len (s, e->blk, entry_blocks (e));
  if (e->kind == STORE_DATA)
    s->st.dirty_data_bytes += STORE_BLOCK_SIZE;
  if (e->flags & EF_FAILED) {
    s->failed_entries++;
    s->st.failed_bytes += blocks_len (s, e->blk, entry_blocks (e));
  }
}

static void
account_remove (struct store *s, struct entry *e)
{
  s->st.dirty_entries--;
  s->st.dirty_bytes -= blocks_len (s, e->blk, entry_blocks (e));
  if (e->kind == STORE_DATA)
    s->st.dirty_data_bytes -= STORE_BLOCK_SIZE;
  if (e->flags & EF_FAILED) {
    s->failed_entries--;
    s->st.failed_bytes -= blocks_len (s, e->blk, entry_blocks (e));
  }
}

/* Insert a new DIRTY entry holding modifications of EPOCH (the caller has
 * already counted it in epoch_count).
 */
static void
tree_insert (struct store *s, struct entry *e, uint32_t epoch)
{
  e->state = ST_DIRTY;
  e->epoch = epoch;
  e->dirtied_ms = now_ms ();
  RB_INSERT (entry_tree, &s->tree, e);
  account_insert (s, e);
  record_publish (s, e);
  /* Wake a writer if none will look before this entry is due. */
  if (urgent (s) || !s->wake_armed ||
      ms_diff (e->dirtied_ms + s->delay_ms, s->wake_at_ms) > 0) {
    s->wake_armed = false;
    pthread_cond_signal (&s->work);
  }
}

/* Remove E from the tree and free it.  Its epoch counts are the caller's
 * business.
 */
static void
tree_remove (struct store *s, struct entry *e)
{
  RB_REMOVE (entry_tree, &s->tree, e);
  account_remove (s, e);
  record_retire (s, e);         /* before its slot can be reused */
  if (e->kind == STORE_DATA)
    slot_release (s, e->slot);
  entry_release (s, e);
  wake_space_waiters (s);
}

/* Change the size of range entry E (its accounting follows). */
static void
range_resize (struct store *s, struct entry *e, uint64_t blk, uint64_t end)
{
  bool rekey = blk != e->blk;

  account_remove (s, e);
  if (rekey)
    RB_REMOVE (entry_tree, &s->tree, e);
  e->blk = blk;
  e->count = end - blk;
  if (rekey)
    RB_INSERT (entry_tree, &s->tree, e);
  account_insert (s, e);
  record_publish (s, e);
}

/* A client changed the content of E. */
static void
entry_modified (struct store *s, struct entry *e)
{
  if (e->state == ST_DIRTY || (e->flags & EF_REDIRTY))
    return;
  e->flags |= EF_REDIRTY;
  e->redirty_epoch = s->epoch_cur;
  epoch_hold (s, s->epoch_cur);
}

/*----------------------------------------------------------------------
 * Reads.
 */

struct gaps {
  struct gap {
    uint64_t offset;
    uint32_t len;
  } stack[32], *v;
  size_t n, cap;
};

static int
gaps_push (struct gaps *g, uint64_t offset, uint64_t len)
{
  if (g->n == g->cap) {
    struct gap *v = malloc (2 * g->cap * sizeof *v);

    if (v == NULL)
      return -1;
    memcpy (v, g->v, g->n * sizeof *v);
    if (g->v != g->stack)
      free (g->v);
    g->v = v;
    g->cap *= 2;
  }
  g->v[g->n++] = (struct gap) { offset, len };
  return 0;
}

int
store_read (struct store *s, void *buf, uint32_t count, uint64_t offset,
            const struct store_io *io, int *err)
{
  struct gaps gaps = { .n = 0, .cap = 32 };
  uint64_t pos = offset, end = offset + count;
  struct entry *e;
  size_t i;
  int r = 0;

  gaps.v = gaps.stack;
  pthread_mutex_lock (&s->lock);
  for (e = tree_find_from (s, offset / STORE_BLOCK_SIZE);
       e && e->blk * STORE_BLOCK_SIZE < end && r == 0;
       e = RB_NEXT (entry_tree, &s->tree, e)) {
    uint64_t e_start = e->blk * STORE_BLOCK_SIZE;
    uint64_t e_end = e_start + blocks_len (s, e->blk, entry_blocks (e));
    uint64_t from = pos > e_start ? pos : e_start;
    uint64_t to = end < e_end ? end : e_end;

    if (e_start > pos)
      r = gaps_push (&gaps, pos, e_start - pos);
    if (e->kind == STORE_DATA)
      memcpy ((char *) buf + (from - offset),
              slot_data (s, e->slot) + (from - e_start), to - from);
    else
      memset ((char *) buf + (from - offset), 0, to - from);
    pos = to;
  }
  if (pos < end && r == 0)
    r = gaps_push (&gaps, pos, end - pos);
  pthread_mutex_unlock (&s->lock);
  if (r == -1)
    *err = ENOMEM;

  /* Blocks the store did not hold were clean when we looked: the lower
   * device has everything acknowledged before this read started, and
   * whatever changes them now is a write concurrent with this read.
   */
  for (i = 0; i < gaps.n && r == 0; i++)
    r = io->read (io->opaque, (char *) buf + (gaps.v[i].offset - offset),
                  gaps.v[i].len, gaps.v[i].offset, err);
  if (gaps.v != gaps.stack)
    free (gaps.v);
  return r;
}

int
store_extent (struct store *s, uint64_t offset, uint32_t count,
              uint64_t *len)
{
  uint64_t end = offset + count;
  uint64_t run_end;
  struct entry *e, *f;
  int kind;

  pthread_mutex_lock (&s->lock);
  e = tree_find_from (s, offset / STORE_BLOCK_SIZE);
  if (!contains (e, offset / STORE_BLOCK_SIZE)) {
    run_end = e ? e->blk * STORE_BLOCK_SIZE : end;
    kind = -1;
  }
  else {
    /* Extend over following entries of the same kind with no gap. */
    kind = e->kind;
    for (f = e; ; ) {
      struct entry *g = RB_NEXT (entry_tree, &s->tree, f);

      if (g == NULL || g->blk != entry_end (f) || g->kind != kind ||
          g->blk * STORE_BLOCK_SIZE >= end)
        break;
      f = g;
    }
    run_end = f->blk * STORE_BLOCK_SIZE + blocks_len (s, f->blk,
                                                      entry_blocks (f));
  }
  pthread_mutex_unlock (&s->lock);
  *len = (run_end < end ? run_end : end) - offset;
  return kind;
}

/*----------------------------------------------------------------------
 * Writes.
 */

/* Put LEN bytes of SRC (NULL: zeros) at byte FROM of the block of E. */
static void
data_put (struct store *s, struct entry *e, uint32_t from, const char *src,
          uint32_t len)
{
  char *dst = slot_data (s, e->slot) + from;

  if (src)
    memcpy (dst, src, len);
  else
    memset (dst, 0, len);
  entry_modified (s, e);
}

/* Cut block BLK out of DIRTY range R and put a new DIRTY data entry D (with
 * a slot) there, holding zeros.  EXTRA is a spare entry for the part of R
 * after BLK; it is used or released.
 */
static void
range_split_for_block (struct store *s, struct entry *r, uint64_t blk,
                       struct entry *d, struct entry *extra)
{
  uint64_t r_blk = r->blk, r_end = entry_end (r);
  uint32_t epoch = r->epoch;

  /* Zero or trimmed content reads as zeros.  D's record goes first: the
   * block must not lose R's content before D holds it.
   */
  memset (slot_data (s, d->slot), 0, STORE_BLOCK_SIZE);
  record_publish (s, d);

  /* Pieces of data whose lower write failed keep saying so. */
  d->flags = r->flags & EF_FAILED;
  if (blk + 1 < r_end) {
    extra->kind = r->kind;
    extra->flags = r->flags & EF_FAILED;
    extra->blk = blk + 1;
    extra->count = r_end - (blk + 1);
    epoch_hold (s, epoch);
    tree_insert (s, extra, epoch);
    extra->dirtied_ms = r->dirtied_ms;
  }
  else
    entry_release (s, extra);

  if (blk > r_blk)
    range_resize (s, r, r_blk, blk);
  else {
    epoch_drop (s, epoch);
    tree_remove (s, r);
  }

  epoch_hold (s, epoch);
  tree_insert (s, d, epoch);
}

/* Register client-path lower I/O of blocks [B0, B1): a read-modify-write
 * (RMW) or a write-through.  Returns its slot, or -1 after waiting for a
 * clashing operation of the other kind (or a free slot) to finish: the
 * lock was dropped, so the caller must look at the blocks again.
 */
static int
lower_op_begin (struct store *s, uint64_t b0, uint64_t b1, bool rmw)
{
  int i, free_slot = -1;

  for (i = 0; i < LOWER_OPS_MAX; i++) {
    const struct lower_op *o = &s->lower_ops[i];

    if (!o->used) {
      if (free_slot == -1)
        free_slot = i;
    }
    else if (o->rmw != rmw && o->b0 < b1 && b0 < o->b1)
      break;
  }
  if (i < LOWER_OPS_MAX || free_slot == -1) {
    wait_changed (s, false);
    return -1;
  }
  s->lower_ops[free_slot] = (struct lower_op) {
    .b0 = b0, .b1 = b1, .rmw = rmw, .used = true
  };
  return free_slot;
}

static void
lower_op_end (struct store *s, int slot)
{
  s->lower_ops[slot].used = false;
  pthread_cond_broadcast (&s->changed);
}

/* Read-modify-write of a block the store does not hold: read it from the
 * lower device, merge the piece, insert it.  Called and returns with the
 * lock held; returns 1 if the block turned up in the store meanwhile (the
 * caller looks again), 0 when done, -1 on error.
 */
static int
write_rmw (struct store *s, uint64_t blk, uint32_t from, const char *src,
           uint32_t len, const struct store_io *io, int *err)
{
  struct entry *d;
  uint32_t slot;
  int op, r = 0;

  /* Reserve memory first: waiting for it must not hold the removal lock,
   * which the flusher needs to free memory.
   */
  while ((slot = slot_alloc (s)) == NO_SLOT || (d = entry_alloc (s)) == NULL) {
    if (slot != NO_SLOT)
      slot_release (s, slot);
    wait_changed (s, true);
    if (contains (tree_find_from (s, blk), blk))
      return 1;
  }
  while ((op = lower_op_begin (s, blk, blk + 1, true)) == -1)
    ;
  pthread_mutex_unlock (&s->lock);

  pthread_rwlock_rdlock (&s->removal);
  pthread_mutex_lock (&s->lock);
  if (contains (tree_find_from (s, blk), blk))
    r = 1;
  else {
    pthread_mutex_unlock (&s->lock);
    r = io->read (io->opaque, slot_data (s, slot), block_len (s, blk),
                  blk * STORE_BLOCK_SIZE, err);
    pthread_mutex_lock (&s->lock);
    if (r == 0 && contains (tree_find_from (s, blk), blk))
      r = 1;
  }
  if (r == 0) {
    char *p = slot_data (s, slot);

    if (block_len (s, blk) < STORE_BLOCK_SIZE)
      memset (p + block_len (s, blk), 0, STORE_BLOCK_SIZE - block_len (s, blk));
    if (src)
      memcpy (p + from, src, len);
    else
      memset (p + from, 0, len);
    d->kind = STORE_DATA;
    d->blk = blk;
    d->slot = slot;
    epoch_hold (s, s->epoch_cur);
    tree_insert (s, d, s->epoch_cur);
  }
  else {
    slot_release (s, slot);
    entry_release (s, d);
    wake_space_waiters (s);
  }
  lower_op_end (s, op);
  pthread_mutex_unlock (&s->lock);
  pthread_rwlock_unlock (&s->removal);
  pthread_mutex_lock (&s->lock);
  return r;
}

/* A run of bytes that goes straight to the lower device (write-through). */
struct through {
  uint64_t offset;
  uint32_t len;
};

/* Write T to the lower device and empty it.  Returns 0, -1 on error, or 1
 * when it had to wait for a read-modify-write of one of its blocks: then
 * nothing was written and the caller must look at the blocks again from
 * T->offset (the merged block may be in the store now).
 */
static int
through_flush (struct store *s, struct through *t, const char *buf,
               uint64_t buf_offset, const struct store_io *io, int *err)
{
  uint32_t len = t->len;
  int op, r;

  if (len == 0)
    return 0;
  t->len = 0;
  op = lower_op_begin (s, t->offset / STORE_BLOCK_SIZE,
                       (t->offset + len - 1) / STORE_BLOCK_SIZE + 1, false);
  if (op == -1)
    return 1;
  pthread_mutex_unlock (&s->lock);
  if (buf)
    r = io->write (io->opaque, buf + (t->offset - buf_offset), len,
                   t->offset, err);
  else
    r = io->zero (io->opaque, len, t->offset, err);
  pthread_mutex_lock (&s->lock);
  lower_op_end (s, op);
  return r;
}

static void
through_add (struct through *t, uint64_t offset, uint32_t len)
{
  if (t->len == 0)
    t->offset = offset;
  t->len += len;
}

/* Write BUF (NULL: zeros) at byte granularity, block by block. */
static int
write_bytes (struct store *s, const char *buf, uint32_t count,
             uint64_t offset, bool admit_clean, const struct store_io *io,
             int *err)
{
  uint64_t pos = offset, end = offset + count;
  struct through through = { 0 };
  int r = 0;

  pthread_mutex_lock (&s->lock);
  while (r == 0) {
    uint64_t blk = pos / STORE_BLOCK_SIZE;
    uint32_t from = pos % STORE_BLOCK_SIZE;
    uint64_t piece_end = (blk + 1) * STORE_BLOCK_SIZE;
    uint32_t len = (end < piece_end ? end : piece_end) - pos;
    const char *src = buf ? buf + (pos - offset) : NULL;
    struct entry *e = NULL, *d, *extra;
    uint32_t slot;

    if (pos < end)
      e = tree_find_from (s, blk);

    /* A pending write-through (only !admit_clean makes one) goes down
     * before the store is touched: at the end, or at a block in the
     * store.  The lock is dropped meanwhile, so look at the blocks again
     * afterwards, from the write-through's start if it could not be done.
     */
    if (through.len && (pos == end || contains (e, blk))) {
      r = through_flush (s, &through, buf, offset, io, err);
      if (r == 1) {
        pos = through.offset;
        r = 0;
      }
      continue;
    }
    if (pos == end)
      break;

    if (!contains (e, blk)) {
      if (!admit_clean) {
        through_add (&through, pos, len);
        pos += len;
        continue;
      }
      if (len < block_len (s, blk)) {
        r = write_rmw (s, blk, from, src, len, io, err);
        if (r == 1)
          r = 0;              /* look again: pos is unchanged */
        else if (r == 0)
          pos += len;
        continue;
      }
      /* A whole block: no need to read the lower device. */
      if ((slot = slot_alloc (s)) == NO_SLOT) {
        wait_changed (s, true);
        continue;
      }
      if ((d = entry_alloc (s)) == NULL) {
        slot_release (s, slot);
        wait_changed (s, true);
        continue;
      }
      d->kind = STORE_DATA;
      d->blk = blk;
      d->slot = slot;
      if (src)
        memcpy (slot_data (s, slot), src, len);
      else
        memset (slot_data (s, slot), 0, len);
      epoch_hold (s, s->epoch_cur);
      tree_insert (s, d, s->epoch_cur);
      pos += len;
      continue;
    }

    if (e->kind == STORE_DATA) {
      data_put (s, e, from, src, len);
      pos += len;
      continue;
    }

    /* A zero/trim range: replace this block of it by a data block. */
    if (e->state != ST_DIRTY) {
      wait_changed (s, false);
      continue;
    }
    if ((slot = slot_alloc (s)) == NO_SLOT) {
      wait_changed (s, true);
      continue;
    }
    d = entry_alloc (s);
    extra = d ? entry_alloc (s) : NULL;
    if (extra == NULL) {
      if (d)
        entry_release (s, d);
      slot_release (s, slot);
      wait_changed (s, true);
      continue;
    }
    d->kind = STORE_DATA;
    d->blk = blk;
    d->slot = slot;
    range_split_for_block (s, e, blk, d, extra);
    data_put (s, d, from, src, len);
    pos += len;
  }
  if (r == 0) {
    s->st.client_write_requests++;
    s->st.client_written_bytes += count;
  }
  pthread_mutex_unlock (&s->lock);
  return r;
}

int
store_write (struct store *s, const void *buf, uint32_t count,
             uint64_t offset, bool admit_clean, const struct store_io *io,
             int *err)
{
  return write_bytes (s, buf, count, offset, admit_clean, io, err);
}

/* Zero or trim the whole blocks [b0, b1). */
static int
range_op (struct store *s, enum store_kind kind, uint64_t b0, uint64_t b1,
          bool admit_clean, const struct store_io *io, int *err)
{
  uint64_t pos = b0;
  /* The oldest unflushed epoch among entries this operation replaced in
   * the current gap: the new range inherits it (a flush must not return
   * before the replacement is durable).  carry_held: we hold its count.
   */
  uint32_t carry = 0;
  bool carry_held = false;
  /* With a store file: a record of the whole operation, published before
   * the entries it replaces are cut and retired after the new ones are
   * in: if the process dies in between, the blocks read as this
   * operation's result, never as the lower device's older content.
   */
  struct entry *intent = NULL;
  int r = 0;

  pthread_mutex_lock (&s->lock);
  if (s->file) {
    while ((intent = entry_alloc (s)) == NULL)
      wait_changed (s, true);
    intent->kind = kind;
    intent->blk = b0;
    intent->count = b1 - b0;
    record_publish (s, intent);
  }
  while (pos < b1 && r == 0) {
    struct entry *e = tree_find_from (s, pos), *n;

    if (contains (e, pos)) {
      uint64_t e_end = entry_end (e);

      if (e->state != ST_DIRTY) {
        if (e->kind != STORE_DATA) {
          wait_changed (s, false);
          continue;
        }
        /* Being written back: zero in place; trim leaves it (a trim may
         * leave data as it was).
         */
        if (kind == STORE_ZERO)
          data_put (s, e, 0, NULL, STORE_BLOCK_SIZE);
        pos++;
        continue;
      }

      /* A DIRTY entry: cut [pos, min(e_end, b1)) out of it. */
      if (e->kind != STORE_DATA && e->blk < pos && e_end > b1) {
        /* The operation lies inside E: keep E's ends, need one entry. */
        if ((n = entry_alloc (s)) == NULL) {
          wait_changed (s, true);
          continue;
        }
        n->kind = e->kind;
        n->flags = e->flags & EF_FAILED;
        n->blk = b1;
        n->count = e_end - b1;
        epoch_hold (s, e->epoch);
        tree_insert (s, n, e->epoch);
        n->dirtied_ms = e->dirtied_ms;
        range_resize (s, e, e->blk, pos);
        /* The cut part's content is replaced: the new range inherits. */
        epoch_hold (s, e->epoch);
      }
      else if (e->kind != STORE_DATA && e->blk < pos) {
        range_resize (s, e, e->blk, pos);
        epoch_hold (s, e->epoch);
      }
      else if (e->kind != STORE_DATA && e_end > b1) {
        range_resize (s, e, b1, e_end);
        epoch_hold (s, e->epoch);
      }
      else {
        /* E lies inside the operation: it goes, its count carried. */
        uint32_t epoch = e->epoch;

        tree_remove (s, e);
        if (!carry_held || ms_diff (carry, epoch) > 0) {
          /* Keep the count of the older of the two. */
          if (carry_held)
            epoch_drop (s, carry);
          carry = epoch;
          carry_held = true;
        }
        else
          epoch_drop (s, epoch);
        continue;
      }
      /* The held count of a resized range becomes (or joins) the carry. */
      if (!carry_held || ms_diff (carry, e->epoch) > 0) {
        if (carry_held)
          epoch_drop (s, carry);
        carry = e->epoch;
        carry_held = true;
      }
      else
        epoch_drop (s, e->epoch);
      continue;
    }

    /* [pos, gap_end) is absent from the store. */
    {
      uint64_t gap_end = e && e->blk < b1 ? e->blk : b1;

      if (!admit_clean) {
        uint64_t off = pos * STORE_BLOCK_SIZE;
        uint32_t len = blocks_len (s, pos, gap_end - pos);
        int op = lower_op_begin (s, pos, gap_end, false);

        if (op == -1)
          continue;             /* look again */
        pthread_mutex_unlock (&s->lock);
        r = kind == STORE_ZERO ? io->zero (io->opaque, len, off, err)
                               : io->trim (io->opaque, len, off, err);
        pthread_mutex_lock (&s->lock);
        lower_op_end (s, op);
        pos = gap_end;
        continue;
      }
      if (!drain_admits (s) || (n = entry_alloc (s)) == NULL) {
        wait_changed (s, true);
        continue;
      }
      n->kind = kind;
      n->blk = pos;
      n->count = gap_end - pos;
      if (carry_held && ms_diff (carry, s->epoch_cur) > 0) {
        tree_insert (s, n, carry);      /* takes over the held count */
        carry_held = false;
      }
      else {
        epoch_hold (s, s->epoch_cur);
        tree_insert (s, n, s->epoch_cur);
      }
      pos = gap_end;
    }
  }
  /* A carry still held here was replaced by a write-through to the lower
   * device; sync-mode flushes flush the lower device after waiting for the
   * store, which makes that durable.
   */
  if (carry_held)
    epoch_drop (s, carry);
  if (intent) {
    record_retire (s, intent);
    entry_release (s, intent);
    wake_space_waiters (s);
  }
  epoch_advance (s);
  pthread_mutex_unlock (&s->lock);
  return r;
}

int
store_zero (struct store *s, uint32_t count, uint64_t offset,
            bool admit_clean, const struct store_io *io, int *err)
{
  uint64_t end = offset + count;
  uint64_t b0 = (offset + STORE_BLOCK_SIZE - 1) / STORE_BLOCK_SIZE;
  uint64_t b1 = end == s->size ? s->nblocks : end / STORE_BLOCK_SIZE;
  int r = 0;

  if (b0 >= b1)                 /* within one block: plain zero bytes */
    return write_bytes (s, NULL, count, offset, admit_clean, io, err);
  if (offset < b0 * STORE_BLOCK_SIZE)
    r = write_bytes (s, NULL, b0 * STORE_BLOCK_SIZE - offset, offset,
                     admit_clean, io, err);
  if (r == 0)
    r = range_op (s, STORE_ZERO, b0, b1, admit_clean, io, err);
  if (r == 0 && end > b1 * STORE_BLOCK_SIZE)
    r = write_bytes (s, NULL, end - b1 * STORE_BLOCK_SIZE,
                     b1 * STORE_BLOCK_SIZE, admit_clean, io, err);
  return r;
}

int
store_trim (struct store *s, uint32_t count, uint64_t offset,
            bool admit_clean, const struct store_io *io, int *err)
{
  uint64_t end = offset + count;
  uint64_t b0 = (offset + STORE_BLOCK_SIZE - 1) / STORE_BLOCK_SIZE;
  uint64_t b1 = end == s->size ? s->nblocks : end / STORE_BLOCK_SIZE;

  /* Trim is advisory: parts of blocks are left as they are. */
  if (b0 >= b1)
    return 0;
  return range_op (s, STORE_TRIM, b0, b1, admit_clean, io, err);
}

/*----------------------------------------------------------------------
 * Flush waits.
 */

int
store_flush_wait (struct store *s, int timeout_ms, int *err)
{
  struct timespec deadline;
  uint32_t target;
  int r = 0;

  if (timeout_ms >= 0) {
    clock_gettime (CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long) (timeout_ms % 1000) * 1000000;
    if (deadline.tv_nsec >= 1000000000) {
      deadline.tv_sec++;
      deadline.tv_nsec -= 1000000000;
    }
  }

  pthread_mutex_lock (&s->lock);
  s->flush_waiters++;
  /* Open a new epoch; every modification so far is in an older one. */
  while (s->epoch_cur - s->epoch_lo + 1 >= EPOCH_RING && !s->stopping)
    pthread_cond_wait (&s->changed, &s->lock);
  target = s->epoch_cur++;
  assert (s->epoch_count[s->epoch_cur % EPOCH_RING] == 0);
  epoch_advance (s);
  pthread_cond_broadcast (&s->work);
  pthread_cond_signal (&s->flush_work);

  while (ms_diff (target, s->epoch_lo) <= 0) {
    /* Without a deadline (a client's flush) a failure is reported at
     * once; with one (abdctl flush), retries get until the deadline.
     */
    if (s->failed_entries > 0 && timeout_ms < 0) {
      *err = EIO;
      r = -1;
      break;
    }
    if (s->stopping) {
      *err = ESHUTDOWN;
      r = -1;
      break;
    }
    if (timeout_ms < 0)
      pthread_cond_wait (&s->changed, &s->lock);
    else if (pthread_cond_timedwait (&s->changed, &s->lock,
                                     &deadline) == ETIMEDOUT) {
      *err = s->failed_entries > 0 ? EIO : ETIMEDOUT;
      r = -1;
      break;
    }
  }
  if (r == 0 && s->failed_entries > 0) {
    *err = EIO;
    r = -1;
  }
  s->flush_waiters--;
  pthread_mutex_unlock (&s->lock);
  return r;
}

bool
store_has_failed (struct store *s)
{
  bool failed;

  pthread_mutex_lock (&s->lock);
  failed = s->failed_entries > 0;
  pthread_mutex_unlock (&s->lock);
  return failed;
}

void
store_wait_empty (struct store *s)
{
  pthread_mutex_lock (&s->lock);
  while (!RB_EMPTY (&s->tree) && !s->stopping) {
    s->flush_waiters++;       /* make the writers hurry */
    pthread_cond_broadcast (&s->work);
    pthread_cond_wait (&s->changed, &s->lock);
    s->flush_waiters--;
  }
  pthread_mutex_unlock (&s->lock);
}

/*----------------------------------------------------------------------
 * Writers.
 */

static bool
urgent (struct store *s)
{
  return s->sync || s->draining || s->flush_waiters || s->space_waiters ||
    s->free_slots < s->nslots / 2 || s->free_entries < s->nentries / 2;
}

/* Take the next batch in offset order from the cursor, or return false and
 * set *wait_ms to when something young becomes old enough.
 */
static bool
pick (struct store *s, struct store_batch *b, char *buf, uint32_t *wait_ms)
{
  uint32_t now = now_ms ();
  bool hurry = urgent (s);
  bool wrapped = false;
  uint64_t start = s->cursor;
  struct entry *e = tree_find_from (s, start), *f, *last;
  uint32_t n, i;
  int32_t min_wait = INT32_MAX;

  for (;;) {
    if (e == NULL || (wrapped && e->blk >= start)) {
      if (wrapped || start == 0)
        break;
      wrapped = true;
      e = RB_MIN (entry_tree, &s->tree);
      continue;
    }
    if (e->state != ST_DIRTY) {
      e = RB_NEXT (entry_tree, &s->tree, e);
      continue;
    }

    /* A run: E and the DIRTY data blocks right after it. */
    n = 1;
    last = e;
    if (e->kind == STORE_DATA) {
      for (f = RB_NEXT (entry_tree, &s->tree, e);
           f && n < s->batch_blocks && f->blk == last->blk + 1 &&
             f->kind == STORE_DATA && f->state == ST_DIRTY;
           f = RB_NEXT (entry_tree, &s->tree, f)) {
        last = f;
        n++;
      }
    }

    if (!hurry && n < s->batch_blocks) {
      /* Young data may be rewritten or extended: wait for it. */
      int32_t oldest = INT32_MIN, age;

      for (f = e; ; f = RB_NEXT (entry_tree, &s->tree, f)) {
        age = ms_diff (f->dirtied_ms, now);
        if (age > oldest)
          oldest = age;
        if (f == last)
          break;
      }
      if (oldest < (int32_t) s->delay_ms) {
        if ((int32_t) s->delay_ms - oldest < min_wait)
          min_wait = s->delay_ms - oldest;
        e = RB_NEXT (entry_tree, &s->tree, last);
        continue;
      }
    }

    /* Take it. */
    b->kind = e->kind;
    b->blk = e->blk;
    b->nblocks = e->kind == STORE_DATA ? n : e->count;
    b->offset = e->blk * STORE_BLOCK_SIZE;
    b->len = blocks_len (s, b->blk, b->nblocks);
    b->buf = e->kind == STORE_DATA ? buf : NULL;
    for (f = e, i = 0; ; f = RB_NEXT (entry_tree, &s->tree, f), i++) {
      f->state = ST_WRITEBACK;
      if (f->kind == STORE_DATA)
        memcpy (buf + (size_t) i * STORE_BLOCK_SIZE, slot_data (s, f->slot),
                STORE_BLOCK_SIZE);
      if (f == last)
        break;
    }
    s->cursor = b->blk + b->nblocks;
    if (s->st.writes_in_flight++ == 0)
      drain_rate_busy (&s->meter, true, now_us ());
    s->st.bytes_in_flight += b->len;
    return true;
  }
  *wait_ms = min_wait == INT32_MAX ? 1000 : min_wait;
  return false;
}

bool
store_pick_wait (struct store *s, struct store_batch *b, char *buf)
{
  bool ok = false;

  pthread_mutex_lock (&s->lock);
  while (!s->stopping) {
    uint32_t wait_ms = 0;
    struct timespec ts;

    if (s->retry_at_ms && ms_diff (now_ms (), s->retry_at_ms) > 0)
      wait_ms = ms_diff (now_ms (), s->retry_at_ms);
    else if ((ok = pick (s, b, buf, &wait_ms)))
      break;

    /* Nothing due: sleep until the next entry is, or a signal. */
    if (!s->wake_armed || ms_diff (now_ms () + wait_ms, s->wake_at_ms) > 0) {
      s->wake_armed = true;
      s->wake_at_ms = now_ms () + wait_ms;
    }
    clock_gettime (CLOCK_REALTIME, &ts);
    ts.tv_sec += wait_ms / 1000;
    ts.tv_nsec += (long) (wait_ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000;
    }
    if (pthread_cond_timedwait (&s->work, &s->lock, &ts) == ETIMEDOUT)
      s->wake_armed = false;
  }
  pthread_mutex_unlock (&s->lock);
  return ok;
}

/* After a lower error: writers pause, twice as long each time. */
static void
back_off (struct store *s)
{
  s->backoff_ms = s->backoff_ms ? 2 * s->backoff_ms : s->retry_min_ms;
  if (s->backoff_ms > s->retry_max_ms)
    s->backoff_ms = s->retry_max_ms;
  s->retry_at_ms = now_ms () + s->backoff_ms;
  if (s->retry_at_ms == 0)      /* 0 means "no backoff" */
    s->retry_at_ms = 1;
}

static void
written_add (struct store *s, uint64_t blk, uint64_t end)
{
  if (s->nwritten > 0 && s->written[s->nwritten-1].end == blk) {
    s->written[s->nwritten-1].end = end;
    return;
  }
  if (s->nwritten == s->written_cap) {
    size_t cap = s->written_cap ? 2 * s->written_cap : 64;
    struct written_range *w = realloc (s->written, cap * sizeof *w);

    /* Without memory, the next flush scans the whole tree instead. */
    if (w == NULL) {
      s->written_overflow = true;
      return;
    }
    s->written = w;
    s->written_cap = cap;
  }
  s->written[s->nwritten++] = (struct written_range) { blk, end };
}

void
store_complete (struct store *s, const struct store_batch *b, bool ok)
{
  struct entry key = { .blk = b->blk }, *e;
  uint64_t end = b->blk + b->nblocks;

  pthread_mutex_lock (&s->lock);
  for (e = RB_FIND (entry_tree, &s->tree, &key);
       e && e->blk < end;
       e = RB_NEXT (entry_tree, &s->tree, e)) {
    assert (e->state == ST_WRITEBACK);
    if (ok) {
      /* A FAILED entry stays FAILED until a lower flush covers this
       * write: only then is its data on the device.
       */
      e->state = ST_WRITTEN;
      e->gen = s->write_gen;
    }
    else {
      e->state = ST_DIRTY;
      if (e->flags & EF_REDIRTY) {
        e->flags &= ~EF_REDIRTY;
        epoch_drop (s, e->redirty_epoch);
      }
      if (!(e->flags & EF_FAILED)) {
        e->flags |= EF_FAILED;
        s->failed_entries++;
        s->st.failed_bytes += blocks_len (s, e->blk, entry_blocks (e));
      }
    }
  }
  /* A failed write took time and wrote nothing back. */
  drain_rate_done (&s->meter,
                   !ok ? 0 : b->kind == STORE_DATA
                   ? (uint64_t) b->nblocks * STORE_BLOCK_SIZE
                   : STORE_BLOCK_SIZE, now_us ());
  if (--s->st.writes_in_flight == 0)
    drain_rate_busy (&s->meter, false, now_us ());
  s->st.bytes_in_flight -= b->len;
  if (ok) {
    s->st.written_back_bytes += b->len;
    s->st.written_back_requests++;
    if (s->written_batches++ == 0)
      s->first_written_ms = now_ms ();
    written_add (s, b->blk, end);
    pthread_cond_signal (&s->flush_work);
  }
  else {
    s->st.lower_write_errors++;
    back_off (s);
    epoch_advance (s);
  }
  pthread_cond_broadcast (&s->changed);
  pthread_mutex_unlock (&s->lock);
}

/*----------------------------------------------------------------------
 * Flusher.
 */

bool
store_flush_begin (struct store *s, uint32_t *ticket)
{
  pthread_mutex_lock (&s->lock);
  for (;;) {
    struct timespec ts;

    /* Flush often enough that memory comes back, rarely enough that the
     * lower device is not flushed once per block; at once when someone
     * waits and no write is in flight.
     */
    if (s->written_batches > 0 &&
        (s->written_batches >= FLUSH_BATCHES ||
         ms_diff (s->first_written_ms, now_ms ()) >= FLUSH_AGE_MS ||
         (s->st.writes_in_flight == 0 && urgent (s)) ||
         s->stopping))
      break;
    if (s->stopping) {
      pthread_mutex_unlock (&s->lock);
      return false;
    }
    clock_gettime (CLOCK_REALTIME, &ts);
    ts.tv_nsec += FLUSH_AGE_MS * 1000000L;
    if (ts.tv_nsec >= 1000000000) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait (&s->flush_work, &s->lock, &ts);
  }
  /* Everything completed so far carries a generation <= ticket. */
  *ticket = s->write_gen++;
  s->written_batches = 0;
  pthread_mutex_unlock (&s->lock);
  return true;
}

/* One WRITTEN entry whose write generation is covered by the flush. */
static void
flushed_entry (struct store *s, struct entry *e, bool ok, uint32_t now)
{
  if (ok && !(e->flags & EF_REDIRTY)) {
    epoch_drop (s, e->epoch);
    tree_remove (s, e);
    return;
  }
  e->state = ST_DIRTY;
  e->dirtied_ms = now;
  if (e->flags & EF_REDIRTY) {
    e->flags &= ~EF_REDIRTY;
    if (ok) {
      /* The older data is durable; the newer is what is left, and it has
       * not failed yet.
       */
      epoch_drop (s, e->epoch);
      e->epoch = e->redirty_epoch;
      if (e->flags & EF_FAILED) {
        e->flags &= ~EF_FAILED;
        s->failed_entries--;
        s->st.failed_bytes -= blocks_len (s, e->blk, entry_blocks (e));
      }
    }
    else
      epoch_drop (s, e->redirty_epoch);
  }
  if (!ok && !(e->flags & EF_FAILED)) {
    e->flags |= EF_FAILED;
    s->failed_entries++;
    s->st.failed_bytes += blocks_len (s, e->blk, entry_blocks (e));
  }
}

void
store_flush_end (struct store *s, uint32_t ticket, bool ok)
{
  struct written_range *ranges;
  size_t n, i;
  uint32_t now = now_ms ();

  pthread_rwlock_wrlock (&s->removal);
  pthread_mutex_lock (&s->lock);
  ranges = s->written;
  n = s->nwritten;
  s->written = NULL;
  s->nwritten = s->written_cap = 0;
  if (s->written_overflow) {
    static struct written_range all = { 0, UINT64_MAX };

    s->written_overflow = false;
    free (ranges);
    ranges = &all;
    n = 1;
  }

  for (i = 0; i < n; i++) {
    struct entry *e = tree_find_from (s, ranges[i].blk), *next;

    for (; e && e->blk < ranges[i].end; e = next) {
      next = RB_NEXT (entry_tree, &s->tree, e);
      if (e->state == ST_WRITTEN && ms_diff (e->gen, ticket) >= 0)
        flushed_entry (s, e, ok, now);
      else if (e->state == ST_WRITTEN)
        written_add (s, e->blk, entry_end (e));  /* a later flush's */
    }
  }
  if (n != 1 || ranges[0].end != UINT64_MAX)
    free (ranges);

  /* The backoff ends only when a whole write + flush cycle worked: a
   * device whose writes succeed but whose flushes fail must not be
   * rewritten in a tight loop.
   */
  if (ok) {
    s->st.lower_flushes++;
    s->backoff_ms = 0;
    s->retry_at_ms = 0;
  }
  else {
    s->st.lower_flush_errors++;
    back_off (s);
  }
  epoch_advance (s);
  pthread_cond_broadcast (&s->changed);
  pthread_cond_broadcast (&s->work);
  pthread_mutex_unlock (&s->lock);
  pthread_rwlock_unlock (&s->removal);
}

/*----------------------------------------------------------------------
 * Modes, lifecycle, statistics.
 */

void
store_set_sync (struct store *s, bool sync)
{
  pthread_mutex_lock (&s->lock);
  s->sync = sync;
  pthread_cond_broadcast (&s->work);
  pthread_mutex_unlock (&s->lock);
}

void
store_set_draining (struct store *s, bool draining)
{
  pthread_mutex_lock (&s->lock);
  s->draining = draining;
  pthread_cond_broadcast (&s->work);
  pthread_cond_broadcast (&s->flush_work);
  pthread_mutex_unlock (&s->lock);
}

void
store_stop (struct store *s)
{
  pthread_mutex_lock (&s->lock);
  s->stopping = true;
  pthread_cond_broadcast (&s->work);
  pthread_cond_broadcast (&s->flush_work);
  pthread_cond_broadcast (&s->changed);
  pthread_mutex_unlock (&s->lock);
}

bool
store_is_empty (struct store *s)
{
  bool empty;

  pthread_mutex_lock (&s->lock);
  empty = RB_EMPTY (&s->tree);
  pthread_mutex_unlock (&s->lock);
  return empty;
}

uint64_t
store_progress (struct store *s)
{
  uint64_t p;

  pthread_mutex_lock (&s->lock);
  p = s->st.written_back_requests + s->st.lower_flushes;
  pthread_mutex_unlock (&s->lock);
  return p;
}

void
store_get_stats (struct store *s, struct store_stats *st)
{
  uint32_t now = now_ms ();
  struct entry *e;
  uint64_t prev_end = UINT64_MAX;
  int32_t oldest = 0;

  pthread_mutex_lock (&s->lock);
  *st = s->st;
  st->sync = s->sync;
  st->max_dirty_bytes = (uint64_t) s->nslots * STORE_BLOCK_SIZE;
  st->dirty_ranges = 0;
  RB_FOREACH (e, entry_tree, &s->tree) {
    int32_t age = ms_diff (e->dirtied_ms, now);

    if (e->blk != prev_end)
      st->dirty_ranges++;
    prev_end = entry_end (e);
    if (age > oldest)
      oldest = age;
  }
  st->oldest_dirty_age_ms = oldest;
  st->max_drain_seconds = s->max_drain_s;
  st->drain_cost_bytes = drain_cost (s);
  st->drain_budget_bytes = drain_budget (s, &st->drain_rate_known,
                                         &st->drain_rate);
  if (s->max_drain_s == 0)
    st->drain_budget_bytes = 0;
  st->store_file = s->file != NULL;
  pthread_mutex_unlock (&s->lock);
}

/*----------------------------------------------------------------------
 * Loading a store file.
 */

static int
rec_cmp_newest_first (const void *a, const void *b)
{
  const struct storefile_rec *x = a, *y = b;

  return x->seq > y->seq ? -1 : x->seq < y->seq;
}

/* Put entry E, described by the file, in the tree as DIRTY. */
static void
load_insert (struct store *s, struct entry *e)
{
  e->state = ST_DIRTY;
  e->epoch = s->epoch_cur;
  e->dirtied_ms = now_ms ();
  epoch_hold (s, s->epoch_cur);
  RB_INSERT (entry_tree, &s->tree, e);
  account_insert (s, e);
}

/* Open the store file and rebuild the tree from its records.  Newest
 * first, each record takes the blocks no newer record holds (records
 * overlap only when a process died inside an operation): a data record
 * whose block is taken is retired; a range partly taken is replaced by
 * its free pieces, published before it is retired, so that a crash while
 * loading leaves a file that says the same.  Then the free lists.
 */
static int
store_load (struct store *s, const struct store_params *p, char **errmsg)
{
  struct storefile_geometry g = {
    .size = s->size, .nslots = s->nslots,
    .id = p->store_id ? p->store_id : ""
  };
  struct storefile_rec *recs;
  size_t nrecs, i;
  uint8_t *used = NULL;         /* per entry: 1 has a record, 2 in tree */
  uint8_t *slot_used = NULL;
  uint32_t spare = 0, top_entry = 0, top_slot = 0, k;

  s->file = storefile_open (p->store_file, &g, p->lock_memory, &recs, &nrecs,
                            errmsg);
  if (s->file == NULL)
    return -1;
  s->data = storefile_data (s->file);
  used = calloc (s->nslots, 1);
  slot_used = calloc (s->nslots, 1);
  if (used == NULL || slot_used == NULL) {
    free (recs);
    free (used);
    free (slot_used);
    if (asprintf (errmsg, "cannot load the store file: %m") == -1)
      *errmsg = NULL;
    return -1;
  }
  for (i = 0; i < nrecs; i++) {
    used[recs[i].index] = 1;
    if (recs[i].seq > s->seq)
      s->seq = recs[i].seq;
  }
  qsort (recs, nrecs, sizeof *recs, rec_cmp_newest_first);

  for (i = 0; i < nrecs; i++) {
    const struct storefile_rec *r = &recs[i];
    uint64_t end = r->blk + r->count, pos;
    struct entry *e = &s->pool[r->index], *f;

    f = tree_find_from (s, r->blk);
    if (f == NULL || f->blk >= end) {
      /* All its blocks are free: it goes in as it is. */
      e->kind = r->kind;
      e->blk = r->blk;
      if (r->kind == STORE_DATA) {
        e->slot = r->slot;
        slot_used[r->slot] = 1;
      }
      else
        e->count = r->count;
      used[r->index] = 2;
      load_insert (s, e);
      continue;
    }
    /* Its free pieces, in entries that have no record. */
    for (pos = r->blk; r->kind != STORE_DATA && pos < end; ) {
      uint64_t gap_end;
      struct entry *n;

      f = tree_find_from (s, pos);
      if (contains (f, pos)) {
        pos = entry_end (f);
        continue;
      }
      gap_end = f && f->blk < end ? f->blk : end;
      while (spare < s->nslots && used[spare])
        spare++;
      if (spare == s->nslots) {
        free (recs);
        free (used);
        free (slot_used);
        if (asprintf (errmsg, "%s: too many overlapping records to rebuild "
                      "the store with async-max-dirty=%" PRIu64,
                      p->store_file, p->max_dirty) == -1)
          *errmsg = NULL;
        return -1;
      }
      n = &s->pool[spare];
      used[spare] = 2;
      n->kind = r->kind;
      n->blk = pos;
      n->count = gap_end - pos;
      load_insert (s, n);
      record_publish (s, n);
      pos = gap_end;
    }
    storefile_clear (s->file, r->index);
    used[r->index] = 0;
  }
  free (recs);

  /* Free lists: everything below the highest used index that is free. */
  for (k = 0; k < s->nslots; k++) {
    if (used[k] == 2)
      top_entry = k + 1;
    if (slot_used[k])
      top_slot = k + 1;
  }
  s->entry_bump = top_entry;
  s->slot_bump = top_slot;
  s->free_entries = s->nentries - top_entry;
  s->free_slots = s->nslots - top_slot;
  for (k = top_entry; k-- > 0; )
    if (used[k] != 2)
      entry_release (s, &s->pool[k]);
  for (k = top_slot; k-- > 0; )
    if (!slot_used[k])
      slot_release (s, k);
  free (used);
  free (slot_used);
  return 0;
}

struct store *
store_create (const struct store_params *p, char **errmsg)
{
  struct store *s;
  uint64_t nslots = p->max_dirty / STORE_BLOCK_SIZE;

  *errmsg = NULL;
  if (nslots < STORE_MIN_SIZE / STORE_BLOCK_SIZE || nslots >= NO_SLOT) {
    if (asprintf (errmsg, "max dirty size %" PRIu64 " out of range",
                  p->max_dirty) == -1)
      *errmsg = NULL;
    return NULL;
  }
  s = calloc (1, sizeof *s);
  if (s == NULL)
    goto oom;
  s->size = p->size;
  s->nblocks = (p->size + STORE_BLOCK_SIZE - 1) / STORE_BLOCK_SIZE;
  s->batch_blocks = p->batch_blocks;
  s->delay_ms = p->delay_ms;
  s->retry_min_ms = p->retry_min_ms ? p->retry_min_ms : 1;
  s->retry_max_ms = p->retry_max_ms > s->retry_min_ms
    ? p->retry_max_ms : s->retry_min_ms;
  s->nslots = s->free_slots = nslots;
  s->nentries = s->free_entries = nslots;
  s->slot_free = NO_SLOT;
  s->epoch_cur = s->epoch_lo = 1;
  s->max_drain_s = p->max_drain_s;
  s->drain_initial_budget = p->drain_initial_budget > DRAIN_BUDGET_MIN
    ? p->drain_initial_budget : DRAIN_BUDGET_MIN;
  RB_INIT (&s->tree);

  /* Anonymous mappings: untouched pages cost nothing until used. */
  s->data_bytes = nslots * STORE_BLOCK_SIZE;
  s->pool_bytes = nslots * sizeof (struct entry);
  if (p->store_file == NULL) {
    s->data = mmap (NULL, s->data_bytes, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (s->data == MAP_FAILED) {
      s->data = NULL;
      goto oom;
    }
  }
  s->pool = mmap (NULL, s->pool_bytes, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (s->pool == MAP_FAILED) {
    s->pool = NULL;
    goto oom;
  }
  if (p->lock_memory &&
      ((s->data && mlock (s->data, s->data_bytes) == -1) ||
       mlock (s->pool, s->pool_bytes) == -1)) {
    if (asprintf (errmsg, "cannot lock %zu bytes of memory (%m): raise the "
                  "locked-memory limit (ulimit -l, LimitMEMLOCK=) or lower "
                  "max dirty", s->data_bytes + s->pool_bytes) == -1)
      *errmsg = NULL;
    store_free (s);
    return NULL;
  }

  if (p->store_file && store_load (s, p, errmsg) == -1) {
    store_free (s);
    return NULL;
  }

  pthread_rwlockattr_t attr;
  pthread_rwlockattr_init (&attr);
  pthread_rwlockattr_setkind_np (&attr,
                                 PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  pthread_rwlock_init (&s->removal, &attr);
  pthread_rwlockattr_destroy (&attr);
  pthread_mutex_init (&s->lock, NULL);
  pthread_cond_init (&s->changed, NULL);
  pthread_cond_init (&s->work, NULL);
  pthread_cond_init (&s->flush_work, NULL);
  return s;

 oom:
  if (asprintf (errmsg, "cannot allocate the store: %m") == -1)
    *errmsg = NULL;
  store_free (s);
  return NULL;
}

void
store_free (struct store *s)
{
  if (s == NULL)
    return;
  if (s->file)
    storefile_close (s->file);  /* the records stay in the file */
  else if (s->data)
    munmap (s->data, s->data_bytes);
  if (s->pool)
    munmap (s->pool, s->pool_bytes);
  free (s->written);
  free (s);
}
