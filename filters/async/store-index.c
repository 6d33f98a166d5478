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

/* Remove E from the tree and free it.  Its epoch counts are the caller's
 * business.
 */
void
tree_remove (struct store *s, struct entry *e)
{
  RB_REMOVE (entry_tree, &s->tree, e);
  if (e->state == ST_DIRTY)
    dirty_list_remove (s, e);
  account_remove (s, e);
  record_retire (s, e);         /* before its slot can be reused */
  if (e->kind == STORE_DATA)
    slot_release (s, e->slot);
  entry_release (s, e);
  wake_space_waiters (s);
}

/*----------------------------------------------------------------------
 * The dirty list: the DIRTY entries, oldest first.  An entry becomes
 * DIRTY now (it is appended), or again after a failed write with its old
 * age (it goes in by age, near the head), or as a piece split off another
 * DIRTY entry (it goes right after it, with its age).  It leaves when a
 * writer takes it or when it is removed.  The links use the fields only a
 * WRITEBACK or WRITTEN entry needs (struct entry), so they cost no memory.
 */

static uint32_t
pool_index (struct store *s, struct entry *e)
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
  uint32_t i = pool_index (s, e);

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
void
dirty_list_append (struct store *s, struct entry *e)
{
  dirty_list_link_after (s, e, s->dirty_tail);
}

/* E became DIRTY again keeping its age (a failed write): after the
 * entries that are not younger, found from the head (E is old).
 */
void
dirty_list_add_sorted (struct store *s, struct entry *e)
{
  uint32_t after = NO_ENTRY, i = s->dirty_head;

  while (i != NO_ENTRY && ms_diff (s->pool[i].dirtied_ms, e->dirtied_ms) >= 0) {
    after = i;
    i = s->pool[i].dirty_next;
  }
  dirty_list_link_after (s, e, after);
}

void
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
  dirty_list_link_after (s, e, pool_index (s, from));
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
