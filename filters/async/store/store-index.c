/* SPDX-License-Identifier: BSD-3-Clause */
/* abd async filter: the dirty store's index (see store-impl.h): the
 * red-black tree of entries by first block.  It knows where entries are
 * and nothing of what they hold or of their states (store-life.c): it
 * calls no other file of the store.
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
