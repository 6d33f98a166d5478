/* SPDX-License-Identifier: BSD-3-Clause */
/* abd async filter: store_check, the dirty store's invariants as code (the
 * prose is at the top of store-impl.h).  For tests and debug builds only:
 * it walks the whole tree (and finds every entry again with tree_next,
 * O(entries log entries)) and both free lists.
 * tests/test-store calls it after every operation; a build configured
 * with --enable-debug (ABD_DEBUG) calls it at the end of every store
 * operation and aborts on the first broken invariant.
 */

#include <config.h>

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store-impl.h"

/* Say what is wrong in WHY (LEN bytes) and return -1. */
static int __attribute__ ((format (printf, 3, 4)))
broken (char *why, size_t len, const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  if (len > 0)
    vsnprintf (why, len, fmt, ap);
  va_end (ap);
  return -1;
}

/* Sums over the tree, to compare with the counters the store keeps. */
struct tally {
  uint64_t entries, data_entries, data_slots, range_entries, bytes;
  uint64_t data_bytes;
  uint64_t failed_entries, failed_bytes, writeback, dirty;
};

/* One entry: its own invariants, and what it adds to the tallies. */
static int
check_entry (struct store *s, const struct entry *e, uint64_t prev_end,
             uint8_t *slot_owned, uint32_t *epochs, struct tally *t,
             char *why, size_t len)
{
  uint64_t n = entry_blocks (e);
  uint64_t blk = e->blk;

  if (e < s->pool || e >= s->pool + s->entry_bump)
    return broken (why, len, "entry at block %" PRIu64 " is outside the "
                   "pool", blk);
  if (e->kind > STORE_TRIM || e->state > ST_WRITTEN)
    return broken (why, len, "entry at block %" PRIu64 ": kind %u, state "
                   "%u", blk, e->kind, e->state);
  if (n == 0 || blk >= s->nblocks || n > s->nblocks - blk)
    return broken (why, len, "entry [%" PRIu64 ", +%" PRIu64 ") is not "
                   "whole blocks inside the device (%" PRIu64 " blocks)",
                   blk, n, s->nblocks);
  if (prev_end != UINT64_MAX && blk < prev_end)
    return broken (why, len, "entry at block %" PRIu64 " overlaps the one "
                   "before it (ending at %" PRIu64 ")", blk, prev_end);
  if (e->kind == STORE_DATA) {
    uint32_t k;

    if (n > s->extent_max)
      return broken (why, len, "data extent at block %" PRIu64 " has %"
                     PRIu64 " blocks, more than extent_max %" PRIu32, blk,
                     n, s->extent_max);
    if (e->slot + n > s->nslots)
      return broken (why, len, "data extent at block %" PRIu64 ": slots %"
                     PRIu32 "+%" PRIu64 " beyond the arena (%" PRIu32 ")",
                     blk, e->slot, n, s->nslots);
    for (k = e->slot; k < e->slot + n; k++) {
      if (slot_owned[k])
        return broken (why, len, "data extent at block %" PRIu64 ": slot %"
                       PRIu32 " has two owners", blk, k);
      if (!slot_in_use (s, k))
        return broken (why, len, "data extent at block %" PRIu64 ": slot %"
                       PRIu32 " is free in slot_map", blk, k);
      slot_owned[k] = 1;
    }
    t->data_entries++;
    t->data_slots += n;
    t->data_bytes += n * STORE_BLOCK_SIZE;
  }
  else
    t->range_entries++;
  if ((e->flags & EF_REDIRTY) && e->state == ST_DIRTY)
    return broken (why, len, "DIRTY entry at block %" PRIu64 " is marked "
                   "REDIRTY", blk);
  if (ms_diff (s->epoch_lo, e->epoch) < 0 ||
      ms_diff (e->epoch, s->epoch_cur) < 0 ||
      ((e->flags & EF_REDIRTY) &&
       (ms_diff (s->epoch_lo, e->redirty_epoch) < 0 ||
        ms_diff (e->redirty_epoch, s->epoch_cur) < 0)))
    return broken (why, len, "entry at block %" PRIu64 ": epoch %" PRIu32
                   " outside the live epochs [%" PRIu32 ", %" PRIu32 "]",
                   blk, e->epoch, s->epoch_lo, s->epoch_cur);
  epochs[e->epoch % EPOCH_RING]++;
  if (e->flags & EF_REDIRTY)
    epochs[e->redirty_epoch % EPOCH_RING]++;
  if (e->state == ST_WRITEBACK)
    t->writeback++;
  if (e->state == ST_DIRTY)
    t->dirty++;
  if (e->flags & EF_FAILED) {
    t->failed_entries++;
    t->failed_bytes += blocks_len (s, blk, n);
  }
  t->entries++;
  t->bytes += blocks_len (s, blk, n);
  return 0;
}

/* What the walk of the tree carries along. */
struct walk {
  uint8_t *in_tree, *slot_owned;
  uint32_t *epochs;
  struct tally *t;
  uint64_t prev_end;
  struct entry *prev;
};

/* The subtree at pool index I, DEPTH entries below the root (PARENT_RED:
 * under a red entry), in order:
 * each entry's own invariants (check_entry: in order, the entries must
 * increase and not overlap), the red-black rules, and that tree_next
 * finds each entry from the one before.  Returns the subtree's black
 * height (missing children count 0), or -1.
 */
static int
check_subtree (struct store *s, uint32_t i, bool parent_red, int depth,
               struct walk *w, char *why, size_t len)
{
  struct entry *e;
  int lh, rh;

  if (i == ENTRY_NIL)
    return 0;
  if (i >= s->entry_bump)
    return broken (why, len, "tree: link to pool entry %" PRIu32 ", which "
                   "was never used (bump %" PRIu32 ")", i, s->entry_bump);
  if (w->in_tree[i])
    return broken (why, len, "tree: pool entry %" PRIu32 " is reached "
                   "twice", i);
  if (depth > 2 * ENTRY_INDEX_BITS)
    return broken (why, len, "tree: deeper than %d entries",
                   2 * ENTRY_INDEX_BITS);
  w->in_tree[i] = 1;
  e = &s->pool[i];
  if (e->red && parent_red)
    return broken (why, len, "tree: red entry at block %" PRIu64 " under "
                   "a red one", (uint64_t) e->blk);
  lh = check_subtree (s, e->left, e->red, depth + 1, w, why, len);
  if (lh == -1)
    return -1;
  if (check_entry (s, e, w->prev_end, w->slot_owned, w->epochs, w->t, why,
                   len) == -1)
    return -1;
  if ((w->prev ? tree_next (s, w->prev) : tree_min (s)) != e)
    return broken (why, len, "tree: tree_next does not find the entry at "
                   "block %" PRIu64 " after the one before it",
                   (uint64_t) e->blk);
  w->prev = e;
  w->prev_end = entry_end (e);
  rh = check_subtree (s, e->right, e->red, depth + 1, w, why, len);
  if (rh == -1)
    return -1;
  if (lh != rh)
    return broken (why, len, "tree: unequal black height under the entry "
                   "at block %" PRIu64 " (%d left, %d right)",
                   (uint64_t) e->blk, lh, rh);
  return lh + !e->red;
}

/* The tree: its rules, and every entry in it (check_subtree). */
static int
check_tree (struct store *s, struct walk *w, char *why, size_t len)
{
  if (s->root != ENTRY_NIL && s->root < s->entry_bump &&
      s->pool[s->root].red)
    return broken (why, len, "tree: the root is red");
  if (check_subtree (s, s->root, false, 0, w, why, len) == -1)
    return -1;
  if (w->prev != tree_max (s))
    return broken (why, len, "tree: tree_max is not the last entry");
  return 0;
}

/* Free memory: the slots in use in slot_map are the data extents' and
 * the reserved ones, and none below slot_low is free; the free entry
 * list links entries not in the tree.
 */
static int
check_free_lists (struct store *s, uint8_t *slot_owned, uint8_t *in_tree,
                  const struct tally *t, char *why, size_t len)
{
  uint32_t chained, i, e = s->entry_free;
  uint64_t in_use = 0;

  for (i = 0; i < s->nslots; i++)
    if (slot_in_use (s, i))
      in_use++;
    else if (i < s->slot_low)
      return broken (why, len, "slot %" PRIu32 " is free, below slot_low %"
                     PRIu32, i, s->slot_low);
  if (in_use != t->data_slots + s->reserved_slots ||
      s->free_slots != s->nslots - in_use)
    return broken (why, len, "slots: %" PRIu64 " in use in slot_map, %"
                   PRIu64 " owned by data extents + %" PRIu32 " reserved, "
                   "free_slots %" PRIu32 " of %" PRIu32, in_use,
                   t->data_slots, s->reserved_slots, s->free_slots,
                   s->nslots);

  if (s->entry_bump > s->nentries ||
      s->free_entries < s->nentries - s->entry_bump)
    return broken (why, len, "free_entries %" PRIu32 " is less than the %"
                   PRIu32 " entries never used", s->free_entries,
                   s->nentries - s->entry_bump);
  chained = s->free_entries - (s->nentries - s->entry_bump);
  for (i = 0; i < chained; i++) {
    if (e >= s->entry_bump)
      return broken (why, len, "free entry list: link %" PRIu32 " is not "
                     "a used-before pool entry", i);
    if (in_tree[e])
      return broken (why, len, "free entry list: entry %" PRIu32 " is in "
                     "the tree", e);
    e = s->pool[e].left;
  }
  if (e != ENTRY_NIL)
    return broken (why, len, "free entry list is longer than free_entries "
                   "says");
  if (t->entries + s->free_entries + s->reserved_entries != s->nentries)
    return broken (why, len, "entries: %" PRIu64 " in the tree + %" PRIu32
                   " free + %" PRIu32 " reserved != %" PRIu32, t->entries,
                   s->free_entries, s->reserved_entries, s->nentries);
  return 0;
}

/* The dirty list: exactly the DIRTY entries of the tree (IN_TREE marks
 * them by pool index; visited ones are marked 2), oldest first.
 */
static int
check_dirty_list (struct store *s, uint8_t *in_tree, const struct tally *t,
                  char *why, size_t len)
{
  uint32_t i = s->dirty_head, prev = NO_ENTRY, n = 0;

  while (i != NO_ENTRY) {
    const struct entry *e;

    if (i >= s->entry_bump || in_tree[i] != 1)
      return broken (why, len, "dirty list: link %" PRIu32 " is pool entry "
                     "%" PRIu32 ", %s", n, i,
                     i >= s->entry_bump ? "never used"
                     : in_tree[i] ? "listed twice" : "not in the tree");
    in_tree[i] = 2;
    e = &s->pool[i];
    if (e->state != ST_DIRTY || e->dirty_prev != prev)
      return broken (why, len, "dirty list: entry at block %" PRIu64 " is "
                     "%s", e->blk, e->state != ST_DIRTY ? "not DIRTY"
                     : "linked back to the wrong entry");
    if (prev != NO_ENTRY &&
        ms_diff (s->pool[prev].dirtied_ms, e->dirtied_ms) < 0)
      return broken (why, len, "dirty list: entry at block %" PRIu64 " is "
                     "older than the one before it", e->blk);
    prev = i;
    i = e->dirty_next;
    n++;
  }
  if (prev != s->dirty_tail || n != s->ndirty || n != t->dirty)
    return broken (why, len, "dirty list: %" PRIu32 " entries (ndirty %"
                   PRIu32 ") for %" PRIu64 " DIRTY entries in the tree%s", n,
                   s->ndirty, t->dirty,
                   prev != s->dirty_tail ? ", and the tail is wrong" : "");
  return 0;
}

/* Slot pins (store-impl.h).  Pins are taken only under the lock, which
 * we hold, but released without it: a pin seen here may be gone a moment
 * later, never the other way.  So: a slot no data entry of the tree owns
 * (free, or reserved) has no pin; PIN_WRITE only on a slot of a data
 * entry, never with a read pin; a WRITEBACK or WRITTEN entry with a
 * write-pinned slot has REDIRTY (its older content is being written, the
 * newer must be too); and write_pins, read before the slots (a release
 * clears the slot first), is no less than the write-pinned slots seen.
 */
static int
check_pins (struct store *s, const uint8_t *slot_owned, char *why,
            size_t len)
{
  uint32_t write_pins = __atomic_load_n (&s->write_pins, __ATOMIC_SEQ_CST);
  uint64_t seen = 0;
  struct entry *e;
  uint32_t k;

  for (k = 0; k < s->nslots; k++) {
    uint16_t pin = __atomic_load_n (&s->pins[k], __ATOMIC_SEQ_CST);

    if (pin && !slot_owned[k])
      return broken (why, len, "slot %" PRIu32 " is pinned (%#x) but no "
                     "data entry owns it", k, pin);
    if ((pin & PIN_WRITE) && pin != PIN_WRITE)
      return broken (why, len, "slot %" PRIu32 " is pinned for writing "
                     "and reading (%#x)", k, pin);
    if (pin & PIN_WRITE)
      seen++;
  }
  if (seen > write_pins)
    return broken (why, len, "%" PRIu64 " slots are write-pinned, "
                   "write_pins says %" PRIu32, seen, write_pins);
  if (seen == 0)
    return 0;
  for (e = tree_min (s); e; e = tree_next (s, e))
    if (e->kind == STORE_DATA && e->state != ST_DIRTY &&
        !(e->flags & EF_REDIRTY)) {
      for (k = e->slot; k < e->slot + entry_blocks (e); k++)
        if (__atomic_load_n (&s->pins[k], __ATOMIC_SEQ_CST) & PIN_WRITE)
          return broken (why, len, "%s entry at block %" PRIu64 " has a "
                         "write-pinned slot but no REDIRTY",
                         e->state == ST_WRITEBACK ? "WRITEBACK" : "WRITTEN",
                         (uint64_t) e->blk);
    }
  return 0;
}

int
store_check_locked (struct store *s, char *why, size_t len)
{
  struct tally t = { 0 };
  uint8_t *slot_owned = calloc (s->nslots, 1);
  uint8_t *in_tree = calloc (s->nentries, 1);
  uint32_t *epochs = calloc (EPOCH_RING, sizeof *epochs);
  struct walk w = { .prev_end = UINT64_MAX, .t = &t };
  uint64_t held = 0;
  uint32_t ep;
  int r = 0;

  if (slot_owned == NULL || in_tree == NULL || epochs == NULL) {
    free (slot_owned);
    free (in_tree);
    free (epochs);
    return broken (why, len, "store_check: out of memory");
  }

  w.in_tree = in_tree;
  w.slot_owned = slot_owned;
  w.epochs = epochs;
  r = check_tree (s, &w, why, len);
  if (r == -1)
    goto out;

  /* Byte accounting. */
  if (t.entries != s->st.dirty_entries || t.bytes != s->st.dirty_bytes ||
      t.data_bytes != s->st.dirty_data_bytes ||
      t.range_entries != s->range_entries) {
    r = broken (why, len, "accounting: the tree holds %" PRIu64 " entries "
                "(%" PRIu64 " ranges), %" PRIu64 " bytes, %" PRIu64 " data "
                "bytes; the counters say %" PRIu64 " (%" PRIu64 "), %"
                PRIu64 ", %" PRIu64, t.entries, t.range_entries, t.bytes,
                t.data_bytes, s->st.dirty_entries, s->range_entries,
                s->st.dirty_bytes, s->st.dirty_data_bytes);
    goto out;
  }
  if (t.failed_entries != s->failed_entries ||
      t.failed_bytes != s->st.failed_bytes) {
    r = broken (why, len, "accounting: %" PRIu64 " FAILED entries of %"
                PRIu64 " bytes in the tree; the counters say %" PRIu64
                ", %" PRIu64, t.failed_entries, t.failed_bytes,
                s->failed_entries, s->st.failed_bytes);
    goto out;
  }
  if (s->st.writes_in_flight == 0 &&
      (t.writeback > 0 || s->st.bytes_in_flight > 0)) {
    r = broken (why, len, "no write in flight, yet %" PRIu64 " entries are "
                "in WRITEBACK and %" PRIu64 " bytes in flight", t.writeback,
                s->st.bytes_in_flight);
    goto out;
  }
  r = check_pins (s, slot_owned, why, len);
  if (r == -1)
    goto out;

  /* Epochs: the live window, and each count against the tree; counts
   * beyond the tree's are the carries of running zero/trims.
   */
  if (s->epoch_cur - s->epoch_lo >= EPOCH_RING) {
    r = broken (why, len, "epochs: %" PRIu32 " live epochs, ring of %d",
                s->epoch_cur - s->epoch_lo + 1, EPOCH_RING);
    goto out;
  }
  for (ep = 0; ep < EPOCH_RING; ep++) {
    uint32_t epoch = s->epoch_lo + ep;
    bool live = ms_diff (epoch, s->epoch_cur) >= 0;
    uint32_t have = s->epoch_count[epoch % EPOCH_RING];
    uint32_t want = epochs[epoch % EPOCH_RING];

    if ((!live && have != 0) || have < want) {
      r = broken (why, len, "epoch %" PRIu32 " counts %" PRIu32 " but the "
                  "tree holds %" PRIu32 " of its modifications%s", epoch,
                  have, want, live ? "" : " (not live)");
      goto out;
    }
    held += have - want;
  }
  if (held != s->epoch_carries) {
    r = broken (why, len, "epochs count %" PRIu64 " more than the tree "
                "holds, and running zero/trims carry %" PRIu32, held,
                s->epoch_carries);
    goto out;
  }
  if (s->epoch_lo != s->epoch_cur && s->epoch_count[s->epoch_lo % EPOCH_RING]
      == 0) {
    r = broken (why, len, "epoch_lo %" PRIu32 " holds nothing but was not "
                "advanced", s->epoch_lo);
    goto out;
  }

  r = check_dirty_list (s, in_tree, &t, why, len);
  if (r == 0)
    r = check_free_lists (s, slot_owned, in_tree, &t, why, len);

 out:
  free (slot_owned);
  free (in_tree);
  free (epochs);
  return r;
}

int
store_check (struct store *s, char *why, size_t len)
{
  int r;

  STORE_LOCK (s);
  r = store_check_locked (s, why, len);
  STORE_UNLOCK (s);
  return r;
}

#ifdef ABD_DEBUG
void
store_debug_check (struct store *s, const char *where)
{
  char why[256];

  if (store_check_locked (s, why, sizeof why) == -1) {
    fprintf (stderr, "abd async: store invariant broken after %s: %s\n",
             where, why);
    abort ();
  }
}
#endif
