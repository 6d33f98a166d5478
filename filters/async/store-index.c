/* SPDX-License-Identifier: BSD-3-Clause */
/* abd async filter: the dirty store's index (see store-impl.h): the
 * red-black tree of entries by block number, the byte accounting that
 * follows every insert and removal, and extents.
 */

#include <config.h>

#include <assert.h>
#include <stdlib.h>

#include "store-impl.h"

static int
entry_cmp (const struct entry *a, const struct entry *b)
{
  return a->blk < b->blk ? -1 : a->blk > b->blk;
}

RB_GENERATE (entry_tree, entry, link, entry_cmp)

/*----------------------------------------------------------------------
 * The tree.
 */

/* The entry containing BLK, else the first entry after it, else NULL. */
struct entry *
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

bool
entry_contains (const struct entry *e, uint64_t blk)
{
  return e && e->blk <= blk && blk < entry_end (e);
}

void
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

void
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
void
tree_insert (struct store *s, struct entry *e, uint32_t epoch)
{
  e->state = ST_DIRTY;
  e->epoch = epoch;
  e->dirtied_ms = now_ms ();
  RB_INSERT (entry_tree, &s->tree, e);
  account_insert (s, e);
  record_publish (s, e);
  /* Wake a writer if none will look before this entry is due. */
  if (writeback_urgent (s) || !s->wake_armed ||
      ms_diff (e->dirtied_ms + s->delay_ms, s->wake_at_ms) > 0) {
    s->wake_armed = false;
    pthread_cond_signal (&s->work);
  }
}

/* Remove E from the tree and free it.  Its epoch counts are the caller's
 * business.
 */
void
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
void
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
void
entry_modified (struct store *s, struct entry *e)
{
  if (e->state == ST_DIRTY || (e->flags & EF_REDIRTY))
    return;
  e->flags |= EF_REDIRTY;
  e->redirty_epoch = s->epoch_cur;
  epoch_hold (s, s->epoch_cur);
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
  if (!entry_contains (e, offset / STORE_BLOCK_SIZE)) {
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
  STORE_DEBUG_CHECK (s);
  pthread_mutex_unlock (&s->lock);
  *len = (run_end < end ? run_end : end) - offset;
  return kind;
}
