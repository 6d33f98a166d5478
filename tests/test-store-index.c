/* SPDX-License-Identifier: BSD-3-Clause */
/* abd: unit test of the async filter's index, the red-black tree of
 * store-index.c, against a model: which block each entry covers.
 *
 * Ranges of 1 to 4 zeroed blocks go in (entry_insert, which links them
 * into the tree) and out (entry_remove) in random order, in ascending
 * and in descending order (the orders that rotate the most), while the
 * tree grows to thousands of entries and shrinks to none, several times.
 * After every operation the test asks the tree where blocks are
 * (tree_find_from, tree_find, tree_next, tree_prev, tree_min, tree_max,
 * the iterator) and compares
 * with the model; store_check (the tree's order, colours, black heights
 * and links, and the store's accounting) and the iterator's walk run
 * after every operation while the tree is small and every 256 once it is
 * large.
 *
 * Usage: test-store-index [SEED]
 */

#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"
#include "store-impl.h"

#include "unit-rand.h"

#define NBLOCKS 65536           /* the device, in blocks */
#define NSLOTS 16384            /* the pool: at most this many entries */

#define CHECK(cond, ...)                                                \
  do {                                                                  \
    if (!(cond)) {                                                      \
      fprintf (stderr, "test-store-index: FAIL at %s:%d: ", __FILE__,   \
               __LINE__);                                               \
      fprintf (stderr, __VA_ARGS__);                                    \
      fprintf (stderr, "\n");                                           \
      exit (1);                                                         \
    }                                                                   \
  } while (0)

static struct store *s;
/* The model: owner[b] is the entry covering block b, or NULL. */
static struct entry *owner[NBLOCKS];
static struct entry *live[NSLOTS];      /* the entries in the tree */
static unsigned nlive, ops;

/* The first entry starting at or after BLK, by the model. */
static struct entry *
model_from (uint64_t blk)
{
  for (; blk < NBLOCKS; blk++)
    if (owner[blk] && owner[blk]->blk == blk)
      return owner[blk];
  return NULL;
}

/* The last entry starting before BLK, by the model. */
static struct entry *
model_before (uint64_t blk)
{
  while (blk-- > 0)
    if (owner[blk] && owner[blk]->blk == blk)
      return owner[blk];
  return NULL;
}

static void
check_queries (void)
{
  uint64_t blk = rnd () % NBLOCKS;
  struct entry *want, *e;
  char why[256];

  want = owner[blk] ? owner[blk] : model_from (blk);
  CHECK (tree_find_from (s, blk) == want, "op %u: tree_find_from (%llu)",
         ops, (unsigned long long) blk);
  want = owner[blk] && owner[blk]->blk == blk ? owner[blk] : NULL;
  CHECK (tree_find (s, blk) == want, "op %u: tree_find (%llu)", ops,
         (unsigned long long) blk);
  CHECK (tree_min (s) == model_from (0), "op %u: tree_min", ops);
  CHECK (tree_max (s) == model_before (NBLOCKS), "op %u: tree_max", ops);
  CHECK (tree_empty (s) == (nlive == 0), "op %u: tree_empty", ops);
  if (nlive > 0) {
    e = live[rnd () % nlive];
    CHECK (tree_next (s, e) == model_from (entry_end (e)),
           "op %u: tree_next of block %llu", ops,
           (unsigned long long) e->blk);
    CHECK (tree_prev (s, e) == model_before (e->blk),
           "op %u: tree_prev of block %llu", ops,
           (unsigned long long) e->blk);
  }
  if (nlive < 512 || ops % 256 == 0) {
    struct tree_iter it;
    unsigned n = 0;

    /* The iterator visits every entry once, in the model's order. */
    want = model_from (0);
    for (e = tree_iter_first (s, &it); e; e = tree_iter_next (s, &it), n++) {
      CHECK (e == want, "op %u: tree_iter_next, entry %u", ops, n);
      want = model_from (entry_end (e));
    }
    CHECK (want == NULL && n == nlive, "op %u: the iterator visited %u of "
           "%u entries", ops, n, nlive);
  }
  if (nlive < 512 || ops % 256 == 0)
    CHECK (store_check_locked (s, why, sizeof why) == 0,
           "op %u, %u entries: %s", ops, nlive, why);
}

/* Put blocks [BLK, BLK+COUNT) in the tree if the model has them all
 * free.  Returns whether it did.
 */
static bool
insert (uint64_t blk, uint32_t count)
{
  struct entry *e;
  uint32_t i;

  if (blk + count > NBLOCKS || nlive == NSLOTS)
    return false;
  for (i = 0; i < count; i++)
    if (owner[blk + i])
      return false;
  e = entry_new_range (s, STORE_ZERO, blk, count);
  CHECK (e, "op %u: entry_new_range with %u entries", ops, nlive);
  entry_insert (s, e, s->epoch_cur, true);
  for (i = 0; i < count; i++)
    owner[blk + i] = e;
  live[nlive++] = e;
  ops++;
  check_queries ();
  return true;
}

static void
remove_live (unsigned k)
{
  struct entry *e = live[k];
  uint64_t b;

  for (b = e->blk; b < entry_end (e); b++)
    owner[b] = NULL;
  live[k] = live[--nlive];
  epoch_drop (s, e->epoch);
  entry_remove (s, e);
  ops++;
  check_queries ();
}

/* The live entry starting at BLK, as an index in live[]. */
static unsigned
live_index (const struct entry *e)
{
  unsigned k;

  for (k = 0; k < nlive; k++)
    if (live[k] == e)
      return k;
  CHECK (false, "entry at block %llu is not live",
         (unsigned long long) e->blk);
  return 0;
}

int
main (int argc, char *argv[])
{
  struct store_params p = {
    .size = (uint64_t) NBLOCKS * STORE_BLOCK_SIZE,
    .nslots = NSLOTS,
    .batch_blocks = 64, .delay_ms = 1000000,
  };
  char *errmsg;
  int round;

  if (argc > 1)
    rng_state = strtoull (argv[1], NULL, 0) | 1;
  s = store_create (&p, &errmsg);
  CHECK (s, "store_create: %s", errmsg ? errmsg : "out of memory");
  pthread_mutex_lock (&s->lock);

  for (round = 0; round < 3; round++) {
    unsigned target = round == 0 ? 600 : 5000;
    uint64_t b;

    /* Random: grow to TARGET entries, then shrink to none. */
    while (nlive < target)
      if (rnd () % 10 < 7)
        insert (rnd () % NBLOCKS, 1 + rnd () % 4);
      else if (nlive > 0)
        remove_live (rnd () % nlive);
    while (nlive > 0)
      if (rnd () % 10 < 3)
        insert (rnd () % NBLOCKS, 1 + rnd () % 4);
      else
        remove_live (rnd () % nlive);

    /* Ascending inserts, then removals from the lowest and the highest
     * alternately (the last of them in descending order).
     */
    for (b = 0; b + 4 <= NBLOCKS && nlive < target; b += 1 + rnd () % 4)
      insert (b, 1 + rnd () % 2);
    while (nlive > 0) {
      struct entry *e = nlive % 2 ? tree_min (s) : tree_max (s);

      remove_live (live_index (e));
    }
  }
  CHECK (s->st.dirty_entries == 0 && s->root == ENTRY_NIL,
         "the store is not empty at the end");
  pthread_mutex_unlock (&s->lock);
  store_free (s);
  printf ("test-store-index: %u operations, store_check and the model "
          "agree\n", ops);
  return 0;
}
