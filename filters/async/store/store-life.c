/* SPDX-License-Identifier: BSD-3-Clause */
/* abd async filter: the life of an entry (store.h draws it), every
 * transition in one place with all its effects.
 *
 * An entry is born DIRTY (entry_insert), is taken by a writer
 * (entry_take: WRITEBACK), is written (entry_written: WRITTEN) or not
 * (entry_write_failed: DIRTY again, FAILED), and is flushed
 * (entry_flushed: removed, or DIRTY again if a client changed it
 * meanwhile or the flush failed).  A client changes it (entry_modified:
 * REDIRTY), grows it by a block or merges it with a neighbour
 * (entry_insert_block, entry_merge_around), cuts part of it out
 * (entry_cut), cuts a block out of a range (entry_split_for_block) or
 * replaces it (entry_remove).  Each of these
 * keeps, here and nowhere else, what follows from an entry's state:
 * - the dirty list: the DIRTY entries, oldest first;
 * - the byte accounting (st.dirty_*, failed_*);
 * - the epoch counts: an entry holds one count of the epoch of its oldest
 *   unflushed modification, and with REDIRTY one of its redirty_epoch;
 * - the store file's record (storefile.h): published when the entry is
 *   inserted or changed, after its data, retired when it leaves;
 * - its slot and pool entry (store-arena.c): released when it leaves;
 * - who is woken: a writer when new work may be due (the writers'
 *   schedule, writeback_urgent, is here too: every transition consults
 *   it), and clients waiting for space when memory is freed.
 *
 * This file calls only the layers below it: the tree (store-index.c),
 * memory (store-arena.c) and the store file (storefile.c).  The client
 * paths (store-client.c), the writers' side (store-writeback.c) and
 * store.c call it; it calls none of them.
 */

#include <config.h>

#include <assert.h>
#include <string.h>

#include "store-impl.h"

/*----------------------------------------------------------------------
 * Epochs: every client modification belongs to the current epoch; a
 * flush opens a new one (store_flush_wait) and waits until every older
 * epoch holds nothing.
 */

void
epoch_hold (struct store *s, uint32_t epoch)
{
  s->epoch_count[epoch % EPOCH_RING]++;
}

void
epoch_drop (struct store *s, uint32_t epoch)
{
  assert (s->epoch_count[epoch % EPOCH_RING] > 0);
  s->epoch_count[epoch % EPOCH_RING]--;
}

/* Move epoch_lo past epochs that hold nothing; wakes flush waiters. */
void
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
 * Who is woken.
 */

/* Must the writers hurry: take runs at once, however young, all of them
 * writing?  When someone waits for them (a flush, a client waiting for
 * space, a drain, sync mode), or when the store is nearly full: from
 * 7/8 of its slots or entries used until it is back under 3/4 (a latch,
 * so that the writers do not start and stop at one mark).
 *
 * Otherwise writeback runs in the background: only due runs, and at most
 * background_writes batches in flight.  Every lower write costs CPU
 * (nbdkit, the lower plugin, the kernel's page cache) that the clients
 * would use on a machine of few cores, and a block kept dirty longer may
 * be rewritten in RAM instead.  Hurrying from half full, as it did,
 * kept all 16 writers busy under any steady random write load (a 256M
 * region fills half of the default store in a second), at 1-block runs.
 */
bool
writeback_urgent (struct store *s)
{
  uint32_t div = s->space_low ? 4 : 8;

  s->space_low = s->free_slots < s->nslots / div ||
    s->free_entries < s->nentries / div;
  return s->sync || s->draining || s->flush_waiters || s->space_waiters ||
    s->space_low;
}

/* May one more writer take a batch now? */
bool
writer_admitted (struct store *s, bool hurry)
{
  return hurry || s->st.writes_in_flight < s->background_writes;
}

/* Wake one sleeping writer: if it takes a batch and more are due, it
 * wakes the next (store_pick_wait).  Waking them all at once made every
 * flush and every wait for space cost a context switch per writer.  Not
 * while enough writers are at work in the background: the one woken would
 * only sleep again (every new entry woke one, 2 context switches per
 * client write).
 */
void
writeback_wake (struct store *s)
{
  if (writer_admitted (s, writeback_urgent (s)))
    pthread_cond_signal (&s->work);
}

/* Is a batch ready for one more writer?  Then a writer that took one
 * wakes the next (one at a time, instead of waking them all).
 */
bool
writeback_more_due (struct store *s)
{
  bool hurry;

  if (s->dirty_head == NO_ENTRY || s->retry_at_ms != 0)
    return false;
  hurry = writeback_urgent (s);
  return writer_admitted (s, hurry) &&
    (hurry || ms_diff (s->pool[s->dirty_head].dirtied_ms,
                       now_ms ()) >= (int32_t) s->delay_ms);
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
void
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
  writeback_wake (s);           /* space waiters make writers hurry */
  STORE_WAIT (s, &s->changed);
  if (for_space)
    s->space_waiters--;
}

/*----------------------------------------------------------------------
 * Slot pins (the design, its lock order and invariants are at the top of
 * store-impl.h): a client or a writer copies into or out of slots without
 * the lock, holding a pin on each.  Pins are taken only under the lock,
 * after slots_pinned said they may be, and released without it, so a
 * thread that holds the lock and finds a slot unpinned knows that no one
 * copies it until the lock is dropped.  Nobody waits while holding a pin.
 *
 * The release is an atomic decrement (sequentially consistent, after the
 * copy); the releaser then reads pin_waiters.  A waiter adds itself to
 * pin_waiters before it looks at the pin a last time, under the lock,
 * and sleeps on s->unpinned: one of the two sees the other's change, so
 * either the waiter sees the pin gone or the releaser sees the waiter and
 * takes the lock to wake it (which it cannot do before the waiter
 * sleeps, as the waiter holds the lock until then).
 */

/* Is any slot of [SLOT, SLOT+N) pinned in MASK (PIN_WRITE: for writing;
 * PIN_ANY: at all)?
 */
bool
slots_pinned (struct store *s, uint32_t slot, uint32_t n, uint16_t mask)
{
  uint32_t i;

  if (mask == PIN_WRITE &&
      __atomic_load_n (&s->write_pins, __ATOMIC_SEQ_CST) == 0)
    return false;
  for (i = slot; i < slot + n; i++)
    if (__atomic_load_n (&s->pins[i], __ATOMIC_SEQ_CST) & mask)
      return true;
  return false;
}

/* Pin [SLOT, SLOT+N) for reading, or for writing (WRITE): slots_pinned
 * said none is pinned for writing, or at all (WRITE), and the lock has
 * been held since.
 */
void
pins_take (struct store *s, uint32_t slot, uint32_t n, bool write)
{
  uint32_t i;

  for (i = slot; i < slot + n; i++) {
    uint16_t old = __atomic_fetch_add (&s->pins[i], write ? PIN_WRITE : 1,
                                       __ATOMIC_SEQ_CST);

    assert (write ? old == 0 : old < PIN_WRITE - 1);
  }
  if (write)
    __atomic_add_fetch (&s->write_pins, n, __ATOMIC_SEQ_CST);
}

/* Wait until no slot of [SLOT, SLOT+N) is pinned in MASK (once: the lock
 * is dropped, the caller looks at the tree again afterwards).  The caller
 * holds no pin.
 */
void
pins_wait (struct store *s, uint32_t slot, uint32_t n, uint16_t mask)
{
  __atomic_add_fetch (&s->pin_waiters, 1, __ATOMIC_SEQ_CST);
  if (slots_pinned (s, slot, n, mask))
    STORE_WAIT (s, &s->unpinned);
  __atomic_sub_fetch (&s->pin_waiters, 1, __ATOMIC_SEQ_CST);
}

/* Wait until no slot is pinned for writing, and keep new write pins from
 * being taken meanwhile (pins_closed: they wait for this): a durable
 * store file's commit copies the data under the lock.  The lock is held
 * on return, so none is taken until the caller drops it.
 */
void
pins_wait_writes (struct store *s)
{
  s->pins_closed = true;
  __atomic_add_fetch (&s->pin_waiters, 1, __ATOMIC_SEQ_CST);
  while (__atomic_load_n (&s->write_pins, __ATOMIC_SEQ_CST) > 0)
    STORE_WAIT (s, &s->unpinned);
  __atomic_sub_fetch (&s->pin_waiters, 1, __ATOMIC_SEQ_CST);
  s->pins_closed = false;
  pthread_cond_broadcast (&s->unpinned);
}

/* With the lock held, after pins were dropped: wake who waits for them
 * (pins_wait), and a writer if one skipped a write-pinned entry.
 */
void
pins_wake (struct store *s)
{
  if (__atomic_load_n (&s->pin_waiters, __ATOMIC_SEQ_CST))
    pthread_cond_broadcast (&s->unpinned);
  if (__atomic_load_n (&s->pin_skipped, __ATOMIC_SEQ_CST)) {
    __atomic_store_n (&s->pin_skipped, false, __ATOMIC_SEQ_CST);
    writeback_wake (s);
  }
}

/* Does a client copy into a slot of E?  Then a writer must not take it:
 * its content is being replaced.
 */
bool
entry_write_pinned (struct store *s, const struct entry *e)
{
  return e->kind == STORE_DATA &&
    slots_pinned (s, e->slot, entry_blocks (e), PIN_WRITE);
}

/* Release the pins of [SLOT, SLOT+N), after the copy.  A write pin's
 * slot is released before write_pins counts it off, so that write_pins
 * is never less than the write-pinned slots (store_check).
 */
void
pins_drop (struct store *s, uint32_t slot, uint32_t n, bool write)
{
  uint32_t i;

  for (i = slot; i < slot + n; i++)
    __atomic_sub_fetch (&s->pins[i], write ? PIN_WRITE : 1,
                        __ATOMIC_SEQ_CST);
  if (write)
    __atomic_sub_fetch (&s->write_pins, n, __ATOMIC_SEQ_CST);
}

/* Without the lock, after pins_drop: take the lock only if someone is to
 * be woken.
 */
void
pins_released (struct store *s)
{
  if (__atomic_load_n (&s->pin_waiters, __ATOMIC_SEQ_CST) ||
      __atomic_load_n (&s->pin_skipped, __ATOMIC_SEQ_CST)) {
    STORE_LOCK (s);
    pins_wake (s);
    STORE_UNLOCK (s);
  }
}

/*----------------------------------------------------------------------
 * The dirty list: the DIRTY entries, oldest first.  An entry becomes
 * DIRTY now (it is appended), or again after a failed write with its old
 * age (it goes in by age, near the head), or as a piece split off another
 * DIRTY entry (it goes right after it, with its age).  It leaves when a
 * writer takes it or when it is removed.  The links use the fields only a
 * WRITEBACK or WRITTEN entry needs (struct entry), so they cost no memory.
 */

static inline uint32_t
index_of (const struct store *s, const struct entry *e)
{
  return e - s->pool;
}

/* The DIRTY entry that has been so the longest, or NULL. */
struct entry *
dirty_oldest (struct store *s)
{
  return s->dirty_head == NO_ENTRY ? NULL : &s->pool[s->dirty_head];
}

/* Link E after the entry AFTER (NO_ENTRY: at the head). */
static void
dirty_list_link_after (struct store *s, struct entry *e, uint32_t after)
{
  uint32_t i = index_of (s, e);

  e->dirty_prev = after;
  e->dirty_next = after == NO_ENTRY ? s->dirty_head
                                    : s->pool[after].dirty_next;
  if (after == NO_ENTRY)
    s->dirty_head = i;
  else
    s->pool[after].dirty_next = i;
  if (e->dirty_next == NO_ENTRY)
    s->dirty_tail = i;
  else
    s->pool[e->dirty_next].dirty_prev = i;
  s->ndirty++;
}

/* E just became DIRTY, now (no entry in the list is younger). */
static void
dirty_list_append (struct store *s, struct entry *e)
{
  dirty_list_link_after (s, e, s->dirty_tail);
}

/* E became DIRTY again keeping its age (a failed write): after the
 * entries that are not younger, found from the head (E is old).
 */
static void
dirty_list_add_sorted (struct store *s, struct entry *e)
{
  uint32_t after = NO_ENTRY, i = s->dirty_head;

  while (i != NO_ENTRY && ms_diff (s->pool[i].dirtied_ms, e->dirtied_ms) >= 0) {
    after = i;
    i = s->pool[i].dirty_next;
  }
  dirty_list_link_after (s, e, after);
}

static void
dirty_list_remove (struct store *s, struct entry *e)
{
  if (e->dirty_prev == NO_ENTRY)
    s->dirty_head = e->dirty_next;
  else
    s->pool[e->dirty_prev].dirty_next = e->dirty_next;
  if (e->dirty_next == NO_ENTRY)
    s->dirty_tail = e->dirty_prev;
  else
    s->pool[e->dirty_next].dirty_prev = e->dirty_prev;
  s->ndirty--;
}

/* E, a new DIRTY piece split off the DIRTY entry FROM, is as old as FROM
 * (its data is): it takes FROM's age and place in the list.
 */
void
entry_inherit_age (struct store *s, struct entry *e, struct entry *from)
{
  dirty_list_remove (s, e);
  e->dirtied_ms = from->dirtied_ms;
  dirty_list_link_after (s, e, index_of (s, from));
}

/*----------------------------------------------------------------------
 * Byte accounting: what the tree holds, kept as it changes.
 */

static void
account_insert (struct store *s, struct entry *e)
{
  s->st.dirty_entries++;
  s->st.dirty_bytes += blocks_len (s, e->blk, entry_blocks (e));
  if (e->kind == STORE_DATA)
    s->st.dirty_data_bytes += entry_blocks (e) * STORE_BLOCK_SIZE;
  else
    s->range_entries++;
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
    s->st.dirty_data_bytes -= entry_blocks (e) * STORE_BLOCK_SIZE;
  else
    s->range_entries--;
  if (e->flags & EF_FAILED) {
    s->failed_entries--;
    s->st.failed_bytes -= blocks_len (s, e->blk, entry_blocks (e));
  }
}

static void
set_failed (struct store *s, struct entry *e)
{
  if (!(e->flags & EF_FAILED)) {
    e->flags |= EF_FAILED;
    s->failed_entries++;
    s->st.failed_bytes += blocks_len (s, e->blk, entry_blocks (e));
  }
}

static void
clear_failed (struct store *s, struct entry *e)
{
  if (e->flags & EF_FAILED) {
    e->flags &= ~EF_FAILED;
    s->failed_entries--;
    s->st.failed_bytes -= blocks_len (s, e->blk, entry_blocks (e));
  }
}

/*----------------------------------------------------------------------
 * The store file's records (storefile.h): every entry in the tree has
 * one, numbered by its index in the pool.
 */

/* Publish E's record in the store file, after its data is in place. */
void
record_publish (struct store *s, struct entry *e)
{
  if (s->file)
    storefile_put (s->file, e - s->pool, ++s->seq, e->blk,
                   entry_blocks (e),
                   e->kind == STORE_DATA ? e->slot : NO_SLOT, e->kind);
}

/* Block BLK of data entry E changed in place: the next commit of a
 * durable store file takes its data.
 */
void
record_touch (struct store *s, struct entry *e, uint64_t blk)
{
  if (s->file)
    storefile_touch (s->file, e->slot + (uint32_t) (blk - e->blk));
}

static void
record_retire (struct store *s, struct entry *e)
{
  if (s->file)
    storefile_clear (s->file, e - s->pool);
}

/*----------------------------------------------------------------------
 * Birth.
 */

/*----------------------------------------------------------------------
 * Extents: splits and merges.
 *
 * A data entry covers up to extent_max blocks in consecutive slots.  A
 * client cuts one (a zero or trim over part of it: entry_cut, whose
 * piece after the cut owns the matching part of the extent's slots),
 * or adds a block to it, and two become one, under one rule: the merge
 * rule (mergeable): both DIRTY data entries (a batch refers to the
 * others: they never change shape), adjacent blocks in adjacent slots,
 * the same FAILED flag (one entry, one outcome), extent_max blocks at
 * most together.  The merged entry holds the older epoch and age of the
 * two (its data is as old as its oldest part: a flush waiting for either
 * waits for it).  store_check requires that no two entries that could
 * merge are left apart, so every path that makes a DIRTY data entry
 * (entry_insert_block, entry_merge_around) merges at once.
 */

#ifdef STORE_TEST_HOOKS
/* tests/test-store-merge-rule.sh builds the store with one part of the
 * merge rule broken on purpose (1: where B's data is, 2: the states,
 * 3: the length) and requires the tests to fail.
 */
int store_test_break_merge;
#endif

static bool
mergeable (const struct store *s, const struct entry *a, const struct entry *b)
{
  bool slots, dirty, size;

  if (a == NULL || b == NULL || a->kind != STORE_DATA ||
      b->kind != STORE_DATA || entry_end (a) != b->blk ||
      (a->flags & EF_FAILED) != (b->flags & EF_FAILED))
    return false;
  slots = a->slot + entry_blocks (a) == b->slot;
  dirty = a->state == ST_DIRTY && b->state == ST_DIRTY;
  size = entry_blocks (a) + entry_blocks (b) <= s->extent_max;
#ifdef STORE_TEST_HOOKS
  slots |= store_test_break_merge == 1;
  dirty |= store_test_break_merge == 2;
  size |= store_test_break_merge == 3 &&
    entry_blocks (a) + entry_blocks (b) <= EXTENT_MAX;
#endif
  return slots && dirty && size;
}

/* The entry covering block BLK - 1 (none for block 0), and the one
 * starting at BLK + N.
 */
static struct entry *
left_of (struct store *s, uint64_t blk)
{
  struct entry *e;

  if (blk == 0)
    return NULL;
  e = tree_find_from (s, blk - 1);
  return entry_contains (e, blk - 1) ? e : NULL;
}

static struct entry *
right_of (struct store *s, uint64_t blk, uint64_t n)
{
  return blk + n < s->nblocks ? tree_find (s, blk + n) : NULL;
}

/* May a new block, which is not FAILED, grow extent L at its end? */
static bool
extendable (const struct store *s, const struct entry *l)
{
  return l && l->kind == STORE_DATA && l->state == ST_DIRTY &&
    !(l->flags & EF_FAILED) && entry_blocks (l) < s->extent_max;
}

/* The slot that would extend the DIRTY data extent ending at block BLK,
 * or NO_SLOT.
 */
static uint32_t
slot_after_left (struct store *s, uint64_t blk)
{
  struct entry *l = left_of (s, blk);

  return extendable (s, l) ? l->slot + entry_blocks (l) : NO_SLOT;
}

/* Merge B into A (mergeable (A, B)); returns A. */
static struct entry *
merge (struct store *s, struct entry *a, struct entry *b)
{
  /* One count of the older epoch stays; the age is the older one's, and
   * so is the place in the dirty list.
   */
  if (ms_diff (a->epoch, b->epoch) < 0) {
    epoch_drop (s, a->epoch);
    a->epoch = b->epoch;
  }
  else
    epoch_drop (s, b->epoch);
  if (ms_diff (a->dirtied_ms, b->dirtied_ms) < 0)
    entry_inherit_age (s, a, b);
  account_remove (s, a);
  account_remove (s, b);
  a->nblk_1 += entry_blocks (b);
  account_insert (s, a);
  /* A's record covers B's blocks in B's slots before B's goes: a crash in
   * between leaves two records that agree (storefile.h).
   */
  record_publish (s, a);
  tree_unlink (s, b);
  dirty_list_remove (s, b);
  record_retire (s, b);
  entry_release (s, b);         /* its slots are A's now */
  wake_space_waiters (s);
  s->st.merges++;
  return a;
}

/* Merge DIRTY data entry E with its neighbours where the rule allows.
 * Returns the entry that holds E's blocks now.
 */
struct entry *
entry_merge_around (struct store *s, struct entry *e)
{
  struct entry *l = left_of (s, e->blk);

  if (mergeable (s, l, e))
    e = merge (s, l, e);
  l = right_of (s, e->blk, entry_blocks (e));
  if (mergeable (s, e, l))
    e = merge (s, e, l);
  return e;
}

/* A new data entry for block BLK, with a slot (its content is the
 * caller's to fill), not in the tree yet: NULL when memory is full or the
 * drain budget is spent.  Its slot is the one after the extent ending
 * at BLK if that one is free, so that the two can merge.
 */
struct entry *
entry_new_data (struct store *s, uint64_t blk)
{
  uint32_t slot;
  struct entry *e = entry_alloc_with_slot (s, slot_after_left (s, blk),
                                           &slot);

  if (e == NULL)
    return NULL;
  e->kind = STORE_DATA;
  e->blk = blk;
  e->slot = slot;
  return e;
}

/* A new zero or trim range [BLK, BLK+COUNT), not in the tree yet, or
 * NULL (as above).
 */
struct entry *
entry_new_range (struct store *s, enum store_kind kind, uint64_t blk,
                 uint64_t count)
{
  struct entry *e;

  if (!drain_admits (s) || (e = entry_alloc (s)) == NULL)
    return NULL;
  e->kind = kind;
  e->blk = blk;
  e->count = count;
  return e;
}

/* A new entry for the piece [BLK, END) of DIRTY entry FROM, which a
 * client cuts in two: of FROM's kind (a data piece owns the matching part
 * of FROM's slots, which FROM then gives up: entry_cut), and FAILED if
 * FROM is (its data's lower write failed).  Not subject to admission (it
 * adds no data: the cut removes as much), NULL only when the pool is
 * empty.
 */
struct entry *
entry_new_piece (struct store *s, const struct entry *from, uint64_t blk,
                 uint64_t end)
{
  struct entry *e = entry_alloc (s);

  if (e == NULL)
    return NULL;
  e->kind = from->kind;
  e->flags = from->flags & EF_FAILED;
  e->blk = blk;
  if (e->kind == STORE_DATA) {
    e->slot = from->slot + (uint32_t) (blk - from->blk);
    e->nblk_1 = end - blk - 1;
  }
  else
    e->count = end - blk;
  s->st.splits++;
  return e;
}

/* Free E (and its slots), which is not or no longer in the tree. */
void
entry_discard (struct store *s, struct entry *e)
{
  if (e->kind == STORE_DATA)
    slot_release (s, e->slot, entry_blocks (e));
  entry_release (s, e);
  wake_space_waiters (s);
}

/* A client's whole block BLK, which the store does not hold, LEN bytes
 * of SRC (NULL: zeros): the DIRTY extent ending at BLK grows by it if the
 * slot after it is free (a stream of writes: no new entry, no insert),
 * else it goes into a new entry; either merges with the extent after it
 * where the rule allows.  NEXT is the first entry after BLK (NULL: none),
 * which the caller found; *LEFT the entry that ends at BLK if the caller
 * knows it (it made or grew it for the block before), else NULL: so that
 * a stream costs no lookup a block.  On return *LEFT holds BLK's entry.
 * False when there is no memory for it now (the caller waits for space
 * and looks again).
 */
bool
entry_insert_block (struct store *s, uint64_t blk, const char *src,
                    uint32_t len, struct entry *next, struct entry **left)
{
  struct entry *l = *left && entry_end (*left) == blk ? *left
                                                      : left_of (s, blk);
  struct entry *r = next && next->blk == blk + 1 ? next : NULL;
  uint32_t hint = extendable (s, l) ? l->slot + entry_blocks (l) : NO_SLOT;
  uint32_t slot = slot_alloc (s, hint);
  struct entry *e = l;

  if (slot == NO_SLOT)
    return false;
  if (slot != hint && (e = entry_alloc (s)) == NULL) {
    slot_release (s, slot, 1);
    return false;
  }
  if (src)
    memcpy (slot_data (s, slot), src, len);
  else
    memset (slot_data (s, slot), 0, len);
  if (slot == hint) {
    account_remove (s, e);
    e->nblk_1++;
    account_insert (s, e);
    record_publish (s, e);      /* after the block's data */
    s->st.extends++;
  }
  else {
    e->kind = STORE_DATA;
    e->blk = blk;
    e->slot = slot;
    entry_insert (s, e, s->epoch_cur, true);
    /* The rule decides, here as everywhere (if L could take the block,
     * it did above).
     */
    if (mergeable (s, l, e))
      e = merge (s, l, e);
  }
  if (mergeable (s, e, r))
    e = merge (s, e, r);
  *left = e;
  return true;
}

/* Insert E, holding modifications of EPOCH, DIRTY now.  HOLD: take a
 * count of EPOCH; else the caller hands over one it holds.
 */
void
entry_insert (struct store *s, struct entry *e, uint32_t epoch, bool hold)
{
  if (hold)
    epoch_hold (s, epoch);
  e->state = ST_DIRTY;
  e->epoch = epoch;
  e->dirtied_ms = now_ms ();
  tree_link (s, e);
  dirty_list_append (s, e);
  account_insert (s, e);
  record_publish (s, e);
  /* Wake a writer if none will look before this entry is due. */
  if (writeback_urgent (s) || !s->wake_armed ||
      ms_diff (e->dirtied_ms + s->delay_ms, s->wake_at_ms) > 0) {
    s->wake_armed = false;
    writeback_wake (s);
  }
}

/* Put E, which a store file's record describes, in the tree as DIRTY
 * (store_load: its record is in the file, no writer runs yet).
 */
void
entry_load (struct store *s, struct entry *e)
{
  epoch_hold (s, s->epoch_cur);
  e->state = ST_DIRTY;
  e->epoch = s->epoch_cur;
  e->dirtied_ms = now_ms ();
  tree_link (s, e);
  dirty_list_append (s, e);
  account_insert (s, e);
}

/* A record of a whole zero or trim of [B0, B1) in the store file (NULL
 * without one), published before the entries it replaces are cut and
 * retired (intent_close) after the new ones are in: if the process dies
 * in between, the blocks read as this operation's result, never as the
 * lower device's older content.  It is in no tree: a reserved entry.
 */
struct entry *
intent_open (struct store *s, enum store_kind kind, uint64_t b0, uint64_t b1)
{
  struct entry *e;

  if (s->file == NULL)
    return NULL;
  while ((e = entry_alloc (s)) == NULL)
    wait_changed (s, true);
  s->reserved_entries++;
  e->kind = kind;
  e->blk = b0;
  e->count = b1 - b0;
  record_publish (s, e);
  return e;
}

void
intent_close (struct store *s, struct entry *e)
{
  if (e == NULL)
    return;
  record_retire (s, e);
  s->reserved_entries--;
  entry_discard (s, e);
}

/*----------------------------------------------------------------------
 * Changes by clients.
 */

/* A client changed the content of E (in its slot, in place).  A DIRTY
 * entry's epoch already holds it; one being written back becomes REDIRTY:
 * it goes back to DIRTY after the flush instead of leaving, so that the
 * newer data is written after the older one, never before it.
 */
void
entry_modified (struct store *s, struct entry *e)
{
  if (e->state == ST_DIRTY || (e->flags & EF_REDIRTY))
    return;
  e->flags |= EF_REDIRTY;
  e->redirty_epoch = s->epoch_cur;
  epoch_hold (s, s->epoch_cur);
}

/* Cut DIRTY entry E down to [BLK, END), inside what it covers.  A data
 * entry keeps the matching part of its slots and releases those of the
 * blocks before BLK and of [END, RELEASE_END) after its record stops
 * naming them (the slots from RELEASE_END on are a piece's).
 */
static void
resize (struct store *s, struct entry *e, uint64_t blk, uint64_t end,
        uint64_t release_end)
{
  uint64_t old_blk = e->blk;
  uint32_t old_slot = e->kind == STORE_DATA ? e->slot : 0;
  bool rekey = blk != e->blk;

  account_remove (s, e);
  if (rekey)
    tree_unlink (s, e);
  e->blk = blk;
  if (e->kind == STORE_DATA) {
    e->slot = old_slot + (uint32_t) (blk - old_blk);
    e->nblk_1 = end - blk - 1;
  }
  else
    e->count = end - blk;
  if (rekey)
    tree_link (s, e);
  account_insert (s, e);
  record_publish (s, e);
  if (e->kind == STORE_DATA) {
    slot_release (s, old_slot, blk - old_blk);
    slot_release (s, old_slot + (uint32_t) (end - old_blk),
                  release_end - end);
  }
}

/* Cut [B0, B1) out of DIRTY entry E, which overlaps it: E shrinks, is
 * cut in two (a piece after B1) or goes.  *EPOCH is E's epoch, whose
 * count for the cut part the caller now holds (a zero or trim carries it
 * to the range that replaces the part).  False, changing nothing, when
 * the piece needs an entry and the pool has none.
 */
bool
entry_cut (struct store *s, struct entry *e, uint64_t b0, uint64_t b1,
           uint32_t *epoch)
{
  uint64_t e_blk = e->blk, e_end = entry_end (e);
  struct entry *n;

  *epoch = e->epoch;
  if (e_blk >= b0 && e_end <= b1) {
    /* E lies inside: it goes, its count is the caller's. */
    entry_remove (s, e);
    return true;
  }
  if (e_blk < b0 && e_end > b1) {
    /* [B0, B1) lies inside E: keep E's ends, in two entries. */
    if ((n = entry_new_piece (s, e, b1, e_end)) == NULL)
      return false;
    entry_insert (s, n, e->epoch, true);
    entry_inherit_age (s, n, e);
    resize (s, e, e_blk, b0, b1);
  }
  else if (e_blk < b0)
    resize (s, e, e_blk, b0, e_end);
  else
    resize (s, e, b1, e_end, e_end);
  epoch_hold (s, e->epoch);
  return true;
}

/* Cut block BLK out of DIRTY range R and put the new data entry D (from
 * entry_new_data) there, DIRTY, holding zeros.  Returns false, changing
 * nothing, when the part of R after BLK needs an entry and the pool has
 * none.
 */
bool
entry_split_for_block (struct store *s, struct entry *r, uint64_t blk,
                       struct entry *d)
{
  uint64_t r_blk = r->blk, r_end = entry_end (r);
  uint32_t epoch = r->epoch;
  struct entry *after = NULL;

  if (blk + 1 < r_end && (after = entry_new_piece (s, r, blk + 1,
                                                   r_end)) == NULL)
    return false;

  /* Zero or trimmed content reads as zeros.  D's record goes first: the
   * block must not lose R's content before D holds it.
   */
  memset (slot_data (s, d->slot), 0, STORE_BLOCK_SIZE);
  record_publish (s, d);

  /* Pieces of data whose lower write failed keep saying so. */
  d->flags = r->flags & EF_FAILED;
  if (after) {
    entry_insert (s, after, epoch, true);
    entry_inherit_age (s, after, r);
  }

  if (blk > r_blk)
    resize (s, r, r_blk, blk, blk);
  else {
    epoch_drop (s, epoch);
    entry_remove (s, r);
  }
  entry_insert (s, d, epoch, true);
  entry_merge_around (s, d);
  return true;
}

/* Remove E from the tree and free it.  Its epoch counts are the caller's
 * business.
 */
void
entry_remove (struct store *s, struct entry *e)
{
  tree_unlink (s, e);
  if (e->state == ST_DIRTY)
    dirty_list_remove (s, e);
  account_remove (s, e);
  record_retire (s, e);         /* before its slot can be reused */
  entry_discard (s, e);
}

/*----------------------------------------------------------------------
 * Write-back: DIRTY -> WRITEBACK -> WRITTEN -> (removed), and back to
 * DIRTY on failures and redirties.
 */

/* A writer took E into a batch. */
void
entry_take (struct store *s, struct entry *e)
{
  dirty_list_remove (s, e);
  e->state = ST_WRITEBACK;
}

/* E's lower write succeeded, in write generation GEN.  A FAILED entry
 * stays FAILED until a lower flush covers this write: only then is its
 * data on the device.
 */
void
entry_written (struct store *s, struct entry *e, uint32_t gen)
{
  assert (e->state == ST_WRITEBACK);
  e->state = ST_WRITTEN;
  e->gen = gen;
}

/* E's lower write failed: DIRTY again with its age, FAILED.  A redirty
 * is folded in (the entry holds its oldest epoch, the redirty's is newer).
 */
void
entry_write_failed (struct store *s, struct entry *e)
{
  assert (e->state == ST_WRITEBACK);
  e->state = ST_DIRTY;
  if (e->flags & EF_REDIRTY) {
    e->flags &= ~EF_REDIRTY;
    epoch_drop (s, e->redirty_epoch);
  }
  set_failed (s, e);
  dirty_list_add_sorted (s, e);     /* last: it reuses redirty_epoch */
}

/* WRITTEN entry E's write generation is covered by a lower flush that
 * succeeded (OK) or failed, at NOW: E leaves the tree, clean, or goes
 * back to DIRTY (a failed flush, or a client changed it meanwhile).
 */
void
entry_flushed (struct store *s, struct entry *e, bool ok, uint32_t now)
{
  assert (e->state == ST_WRITTEN);
  if (ok && !(e->flags & EF_REDIRTY)) {
    epoch_drop (s, e->epoch);
    entry_remove (s, e);
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
      clear_failed (s, e);
    }
    else
      epoch_drop (s, e->redirty_epoch);
  }
  if (!ok)
    set_failed (s, e);
  dirty_list_append (s, e);     /* last: it reuses gen and redirty_epoch */
}
