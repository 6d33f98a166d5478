/* SPDX-License-Identifier: BSD-3-Clause */
/* abd async filter: the dirty store's index (see store-impl.h): the
 * red-black tree of entries by block number, the byte accounting that
 * follows every insert and removal, and extents.
 *
 * The tree is our own, made small for the entry (store-impl.h): it links
 * by 28-bit pool index and keeps no parent links.  Without them, an
 * insert or a removal walks down from the root and keeps the path on a
 * stack, which its fix-up climbs; the next and previous entries are found
 * by key from the root.  That costs a descent (its top levels stay in the
 * cache) where a parent link would cost 4 bytes per block.  The
 * red-black rules, which store_check verifies:
 * - keys (first blocks) increase from left to right;
 * - the root is black; a red entry has no red child;
 * - every path from the root to a missing child crosses as many black
 *   entries.
 * So the tree's height is at most 2 log2 (n + 1): TREE_MAX_DEPTH bounds
 * the path stack for the largest pool (ENTRY_MAX entries).
 */

#include <config.h>

#include <assert.h>
#include <stdlib.h>

#include "store-impl.h"

/*----------------------------------------------------------------------
 * The tree.
 */

static inline struct entry *
node (struct store *s, uint32_t i)
{
  return i == ENTRY_NIL ? NULL : &s->pool[i];
}

static inline uint32_t
index_of (const struct store *s, const struct entry *e)
{
  return e - s->pool;
}

static inline bool
is_red (const struct store *s, uint32_t i)
{
  return i != ENTRY_NIL && s->pool[i].red;
}

bool
tree_empty (const struct store *s)
{
  return s->root == ENTRY_NIL;
}

struct entry *
tree_min (struct store *s)
{
  uint32_t i = s->root;

  if (i == ENTRY_NIL)
    return NULL;
  while (s->pool[i].left != ENTRY_NIL)
    i = s->pool[i].left;
  return &s->pool[i];
}

struct entry *
tree_max (struct store *s)
{
  uint32_t i = s->root;

  if (i == ENTRY_NIL)
    return NULL;
  while (s->pool[i].right != ENTRY_NIL)
    i = s->pool[i].right;
  return &s->pool[i];
}

/* Push I and its left spine onto IT's path; return the entry on top. */
static struct entry *
iter_descend (struct store *s, struct tree_iter *it, uint32_t i)
{
  for (; i != ENTRY_NIL; i = s->pool[i].left) {
    assert (it->depth < TREE_MAX_DEPTH);
    it->path[it->depth++] = i;
  }
  return it->depth ? &s->pool[it->path[it->depth - 1]] : NULL;
}

struct entry *
tree_iter_first (struct store *s, struct tree_iter *it)
{
  it->depth = 0;
  return iter_descend (s, it, s->root);
}

/* The entry after the one on top of IT's path: the leftmost of its right
 * subtree, else the nearest ancestor whose left subtree it ends.
 */
struct entry *
tree_iter_next (struct store *s, struct tree_iter *it)
{
  uint32_t i;

  if (it->depth == 0)
    return NULL;
  i = it->path[--it->depth];
  return iter_descend (s, it, s->pool[i].right);
}

/* The first entry whose first block is above E's (E need not be in the
 * tree), or NULL.
 */
struct entry *
tree_next (struct store *s, const struct entry *e)
{
  uint64_t key = e->blk;
  uint32_t i = s->root, found = ENTRY_NIL;

  while (i != ENTRY_NIL) {
    if (s->pool[i].blk > key) {
      found = i;
      i = s->pool[i].left;
    }
    else
      i = s->pool[i].right;
  }
  return node (s, found);
}

/* The last entry whose first block is below E's, or NULL. */
struct entry *
tree_prev (struct store *s, const struct entry *e)
{
  uint64_t key = e->blk;
  uint32_t i = s->root, found = ENTRY_NIL;

  while (i != ENTRY_NIL) {
    if (s->pool[i].blk < key) {
      found = i;
      i = s->pool[i].right;
    }
    else
      i = s->pool[i].left;
  }
  return node (s, found);
}

/* The entry whose first block is BLK, or NULL. */
struct entry *
tree_find (struct store *s, uint64_t blk)
{
  uint32_t i = s->root;

  while (i != ENTRY_NIL && s->pool[i].blk != blk)
    i = blk < s->pool[i].blk ? s->pool[i].left : s->pool[i].right;
  return node (s, i);
}

/* The entry containing BLK, else the first entry after it, else NULL:
 * one descent finds both the last entry starting at or below BLK and the
 * first starting above it.
 */
struct entry *
tree_find_from (struct store *s, uint64_t blk)
{
  uint32_t i = s->root, below = ENTRY_NIL, above = ENTRY_NIL;

  while (i != ENTRY_NIL) {
    if (s->pool[i].blk > blk) {
      above = i;
      i = s->pool[i].left;
    }
    else {
      below = i;
      if (s->pool[i].blk == blk)
        break;
      i = s->pool[i].right;
    }
  }
  if (below != ENTRY_NIL && entry_end (&s->pool[below]) > blk)
    return &s->pool[below];
  return node (s, above);
}

/* Make NEW the child of PARENT (ENTRY_NIL: the root) that OLD was. */
static void
replace_child (struct store *s, uint32_t parent, uint32_t old, uint32_t new)
{
  if (parent == ENTRY_NIL)
    s->root = new;
  else if (s->pool[parent].left == old)
    s->pool[parent].left = new;
  else
    s->pool[parent].right = new;
}

/* Rotate X (a child of PARENT) left: its right child takes its place,
 * with X as its left child.  Returns the entry now in X's place.
 */
static uint32_t
rotate_left (struct store *s, uint32_t x, uint32_t parent)
{
  uint32_t y = s->pool[x].right;

  s->pool[x].right = s->pool[y].left;
  s->pool[y].left = x;
  replace_child (s, parent, x, y);
  return y;
}

static uint32_t
rotate_right (struct store *s, uint32_t x, uint32_t parent)
{
  uint32_t y = s->pool[x].left;

  s->pool[x].left = s->pool[y].right;
  s->pool[y].right = x;
  replace_child (s, parent, x, y);
  return y;
}

/* Link E into the tree by its first block (no entry there starts at the
 * same block).
 */
void
tree_link (struct store *s, struct entry *e)
{
  uint32_t path[TREE_MAX_DEPTH];
  uint32_t i = s->root, x = index_of (s, e);
  int k = 0;

  while (i != ENTRY_NIL) {
    assert (k < TREE_MAX_DEPTH - 1);
    assert (s->pool[i].blk != e->blk);
    path[k++] = i;
    i = e->blk < s->pool[i].blk ? s->pool[i].left : s->pool[i].right;
  }
  e->left = e->right = ENTRY_NIL;
  e->red = 1;
  if (k == 0)
    s->root = x;
  else if (e->blk < s->pool[path[k - 1]].blk)
    s->pool[path[k - 1]].left = x;
  else
    s->pool[path[k - 1]].right = x;
  path[k] = x;

  /* X (at path[k]) is red; while its parent is red too, the grandparent
   * is black (the root is black, so the parent is not the root).
   */
  while (k >= 2 && s->pool[path[k - 1]].red) {
    uint32_t p = path[k - 1], g = path[k - 2];
    uint32_t gg = k >= 3 ? path[k - 3] : ENTRY_NIL;
    bool p_left = s->pool[g].left == p;
    uint32_t u = p_left ? s->pool[g].right : s->pool[g].left;

    x = path[k];
    if (is_red (s, u)) {
      /* Red uncle: push the red up to the grandparent. */
      s->pool[p].red = s->pool[u].red = 0;
      s->pool[g].red = 1;
      k -= 2;
      continue;
    }
    /* Black uncle: one or two rotations, and done. */
    if (p_left) {
      if (s->pool[p].right == x)
        p = rotate_left (s, p, g);
      p = rotate_right (s, g, gg);
    }
    else {
      if (s->pool[p].left == x)
        p = rotate_right (s, p, g);
      p = rotate_left (s, g, gg);
    }
    s->pool[p].red = 0;
    s->pool[g].red = 1;
    break;
  }
  s->pool[s->root].red = 0;
}

/* Unlink E from the tree. */
void
tree_unlink (struct store *s, struct entry *e)
{
  uint32_t path[TREE_MAX_DEPTH];
  uint32_t i = s->root, z = index_of (s, e), x;
  int k = 0, kz;
  bool removed_red;

  /* The path to E. */
  while (i != z) {
    assert (i != ENTRY_NIL);
    assert (k < TREE_MAX_DEPTH - 2);
    path[k++] = i;
    i = e->blk < s->pool[i].blk ? s->pool[i].left : s->pool[i].right;
  }
  kz = k;
  path[k++] = z;

  if (e->left != ENTRY_NIL && e->right != ENTRY_NIL) {
    /* Two children: its successor Y (the leftmost of its right subtree,
     * which has no left child) takes its place and colour, and the
     * removal happens where Y was.
     */
    uint32_t y = e->right;

    while (s->pool[y].left != ENTRY_NIL) {
      assert (k < TREE_MAX_DEPTH - 2);
      path[k++] = y;
      y = s->pool[y].left;
    }
    x = s->pool[y].right;
    removed_red = s->pool[y].red;
    if (k - 1 > kz) {           /* Y is deeper than E's right child */
      s->pool[path[k - 1]].left = x;
      s->pool[y].right = e->right;
    }
    s->pool[y].left = e->left;
    s->pool[y].red = e->red;
    replace_child (s, kz > 0 ? path[kz - 1] : ENTRY_NIL, z, y);
    path[kz] = y;               /* X is where Y was: at depth k */
  }
  else {
    /* At most one child, X, which takes its place. */
    x = e->left != ENTRY_NIL ? e->left : e->right;
    removed_red = e->red;
    k = kz;
    replace_child (s, kz > 0 ? path[kz - 1] : ENTRY_NIL, z, x);
  }
  e->left = e->right = ENTRY_NIL;

  /* X is now at depth k (its parent is path[k - 1]).  Removing a black
   * entry left X's side one black short: fix it going up.
   */
  if (removed_red)
    return;
  while (k > 0 && !is_red (s, x)) {
    uint32_t p = path[k - 1];
    uint32_t gp = k >= 2 ? path[k - 2] : ENTRY_NIL;
    bool x_left = s->pool[p].left == x;
    uint32_t w = x_left ? s->pool[p].right : s->pool[p].left;

    assert (w != ENTRY_NIL);
    if (s->pool[w].red) {
      /* Red sibling: rotate it above P, so that X's sibling is black. */
      s->pool[w].red = 0;
      s->pool[p].red = 1;
      if (x_left)
        rotate_left (s, p, gp);
      else
        rotate_right (s, p, gp);
      assert (k < TREE_MAX_DEPTH - 1);
      path[k - 1] = w;
      path[k] = p;
      k++;
      gp = w;
      w = x_left ? s->pool[p].right : s->pool[p].left;
    }
    if (!is_red (s, s->pool[w].left) && !is_red (s, s->pool[w].right)) {
      /* Both nephews black: take a black from both sides, go up. */
      s->pool[w].red = 1;
      x = p;
      k--;
      continue;
    }
    if (x_left) {
      if (!is_red (s, s->pool[w].right)) {
        s->pool[s->pool[w].left].red = 0;
        s->pool[w].red = 1;
        w = rotate_right (s, w, p);
      }
      s->pool[w].red = s->pool[p].red;
      s->pool[p].red = 0;
      s->pool[s->pool[w].right].red = 0;
      rotate_left (s, p, gp);
    }
    else {
      if (!is_red (s, s->pool[w].left)) {
        s->pool[s->pool[w].right].red = 0;
        s->pool[w].red = 1;
        w = rotate_left (s, w, p);
      }
      s->pool[w].red = s->pool[p].red;
      s->pool[p].red = 0;
      s->pool[s->pool[w].left].red = 0;
      rotate_right (s, p, gp);
    }
    x = s->root;
    break;
  }
  if (x != ENTRY_NIL)
    s->pool[x].red = 0;
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

/* Remove E from the tree and free it.  Its epoch counts are the caller's
 * business.
 */
void
tree_remove (struct store *s, struct entry *e)
{
  tree_unlink (s, e);
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
  dirty_list_link_after (s, e, index_of (s, from));
}

/* Change the size of range entry E (its accounting follows). */
void
range_resize (struct store *s, struct entry *e, uint64_t blk, uint64_t end)
{
  bool rekey = blk != e->blk;

  account_remove (s, e);
  if (rekey)
    tree_unlink (s, e);
  e->blk = blk;
  e->count = end - blk;
  if (rekey)
    tree_link (s, e);
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
      struct entry *g = tree_next (s, f);

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
