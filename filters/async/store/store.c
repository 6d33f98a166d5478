/* SPDX-License-Identifier: BSD-3-Clause */
/* abd async filter: the dirty store (store.h is its interface, store-impl.h
 * the map of its files and layers): creating it, loading a store file,
 * modes, statistics.
 */

#include <config.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store-impl.h"

/*----------------------------------------------------------------------
 * Modes, lifecycle, statistics.
 */

void
store_set_sync (struct store *s, bool sync)
{
  STORE_LOCK (s);
  s->sync = sync;
  pthread_cond_broadcast (&s->work);
  STORE_UNLOCK (s);
}

void
store_set_draining (struct store *s, bool draining)
{
  STORE_LOCK (s);
  s->draining = draining;
  pthread_cond_broadcast (&s->work);
  pthread_cond_broadcast (&s->flush_work);
  STORE_UNLOCK (s);
}

void
store_stop (struct store *s)
{
  STORE_LOCK (s);
  s->stopping = true;
  pthread_cond_broadcast (&s->work);
  pthread_cond_broadcast (&s->flush_work);
  pthread_cond_broadcast (&s->changed);
  STORE_UNLOCK (s);
}

bool
store_is_empty (struct store *s)
{
  bool empty;

  STORE_LOCK (s);
  empty = tree_empty (s);
  STORE_UNLOCK (s);
  return empty;
}

uint64_t
store_progress (struct store *s)
{
  uint64_t p;

  STORE_LOCK (s);
  p = s->st.written_back_requests + s->st.lower_flushes;
  STORE_UNLOCK (s);
  return p;
}

uint64_t
store_written_back_bytes (struct store *s)
{
  uint64_t b;

  STORE_LOCK (s);
  b = s->st.written_back_bytes;
  STORE_UNLOCK (s);
  return b;
}

/* Walks the whole tree with the lock held (dirty_ranges, the oldest
 * age): milliseconds with a large store, while no client can write.  For
 * status and logs, not for anything that runs often.  (With an iterator:
 * tree_next would cost a descent per entry.)
 */
void
store_get_stats (struct store *s, struct store_stats *st)
{
  uint32_t now = now_ms ();
  struct tree_iter it;
  struct entry *e;
  uint64_t prev_end = UINT64_MAX;
  int32_t oldest = 0;

  STORE_LOCK (s);
  *st = s->st;
  st->sync = s->sync;
  st->max_dirty_bytes = (uint64_t) s->nslots * STORE_BLOCK_SIZE;
  st->dirty_ranges = 0;
  for (e = tree_iter_first (s, &it); e; e = tree_iter_next (s, &it)) {
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
  st->durable = s->durable;
  st->commit_failed = s->commit_failed;
  if (s->file) {
    st->commits = storefile_commits (s->file);
    st->committed_bytes = storefile_committed_pages (s->file) * 4096;
  }
  STORE_UNLOCK (s);
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

/* Open the store file and rebuild the tree from its records.  Newest
 * first, each record takes the blocks no newer record holds (records
 * overlap only when a process died inside an operation: a merge, a cut,
 * a zero or trim): one partly taken is replaced by its free pieces (a
 * data piece keeps its blocks' slots), published before it is retired,
 * so that a crash while loading leaves a file that says the same.  Then
 * the entries' free list; slot_map is marked as the entries go in.
 */
static int
store_load (struct store *s, const struct store_params *p, char **errmsg)
{
  struct storefile_geometry g = {
    .size = s->size, .nslots = s->nslots,
    .id = p->store_id ? p->store_id : "",
    .durable = p->durable
  };
  struct storefile_rec *recs;
  size_t nrecs, i;
  uint8_t *used = NULL;         /* per entry: 1 has a record, 2 in tree */
  uint32_t spare = 0, top_entry = 0, k;

  s->file = storefile_open (p->store_file, &g, p->lock_memory, &recs, &nrecs,
                            errmsg);
  if (s->file == NULL)
    return -1;
  s->data = storefile_data (s->file);
  used = calloc (s->nslots, 1);
  if (used == NULL) {
    free (recs);
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
    struct entry *f;
    bool whole;

    f = tree_find_from (s, r->blk);
    /* A data record longer than this start's extents (written before
     * async-write-size was lowered) is loaded in pieces of at most
     * extent_max blocks, as one that overlaps: a writer's copy holds
     * batch_blocks blocks at most.
     */
    whole = (f == NULL || f->blk >= end) &&
      (r->kind != STORE_DATA || r->count <= s->extent_max);
    /* Its free pieces (all of it if WHOLE: in its own entry, whose
     * record it is; else in entries that have no record).
     */
    for (pos = r->blk; pos < end; ) {
      uint64_t gap_end;
      struct entry *n;

      f = tree_find_from (s, pos);
      if (entry_contains (f, pos)) {
        pos = entry_end (f);
        continue;
      }
      gap_end = f && f->blk < end ? f->blk : end;
      if (r->kind == STORE_DATA && gap_end - pos > s->extent_max)
        gap_end = pos + s->extent_max;
      if (whole)
        n = &s->pool[r->index];
      else {
        while (spare < s->nslots && used[spare])
          spare++;
        if (spare == s->nslots) {
          free (recs);
          free (used);
          if (asprintf (errmsg, "%s: too many overlapping records to "
                        "rebuild the store with %" PRIu32 " slots",
                        p->store_file, p->nslots) == -1)
            *errmsg = NULL;
          return -1;
        }
        n = &s->pool[spare];
      }
      used[n - s->pool] = 2;
      n->kind = r->kind;
      n->blk = pos;
      if (r->kind == STORE_DATA) {
        n->slot = r->slot + (uint32_t) (pos - r->blk);
        n->nblk_1 = gap_end - pos - 1;
        for (k = 0; k < gap_end - pos; k++)
          slot_mark_used (s, n->slot + k);
      }
      else
        n->count = gap_end - pos;
      entry_load (s, n);
      if (!whole)
        record_publish (s, n);
      pos = gap_end;
    }
    if (!whole) {
      storefile_clear (s->file, r->index);
      used[r->index] = 0;
    }
  }
  free (recs);

  /* The entries' free list: everything below the highest used index that
   * is free.
   */
  for (k = 0; k < s->nslots; k++)
    if (used[k] == 2)
      top_entry = k + 1;
  s->entry_bump = top_entry;
  s->free_entries = s->nentries - top_entry;
  for (k = top_entry; k-- > 0; )
    if (used[k] != 2)
      entry_release (s, &s->pool[k]);
  free (used);
  return 0;
}

struct store *
store_create (const struct store_params *p, char **errmsg)
{
  struct store *s;
  uint32_t nslots = p->nslots;
  int i;

  *errmsg = NULL;
  if (nslots < STORE_MIN_SLOTS || nslots > STORE_MAX_SLOTS) {
    if (asprintf (errmsg, "%" PRIu32 " slots: out of range (%d..%u)",
                  nslots, STORE_MIN_SLOTS, STORE_MAX_SLOTS) == -1)
      *errmsg = NULL;
    return NULL;
  }
  s = calloc (1, sizeof *s);
  if (s == NULL)
    goto oom;
  s->size = p->size;
  s->nblocks = (p->size + STORE_BLOCK_SIZE - 1) / STORE_BLOCK_SIZE;
  s->batch_blocks = p->batch_blocks;
  s->background_writes = p->background_writes ? p->background_writes
                                               : UINT32_MAX;
  s->delay_ms = p->delay_ms;
  s->retry_min_ms = p->retry_min_ms ? p->retry_min_ms : 1;
  s->retry_max_ms = p->retry_max_ms > s->retry_min_ms
    ? p->retry_max_ms : s->retry_min_ms;
  s->nslots = s->free_slots = nslots;
  s->nentries = s->free_entries = nslots;
  s->extent_max = s->batch_blocks < EXTENT_MAX ? s->batch_blocks
                                                : EXTENT_MAX;
  s->dirty_head = s->dirty_tail = NO_ENTRY;
  s->epoch_cur = s->epoch_lo = 1;
  s->max_drain_s = p->max_drain_s;
  s->drain_initial_budget = p->drain_initial_budget > DRAIN_BUDGET_MIN
    ? p->drain_initial_budget : DRAIN_BUDGET_MIN;
  s->root = s->entry_free = ENTRY_NIL;
  s->copy_slots = calloc ((size_t) COPIES_MAX * s->batch_blocks,
                          sizeof *s->copy_slots);
  if (s->copy_slots == NULL)
    goto oom;
  for (i = 0; i < COPIES_MAX; i++)
    s->copies[i].slots = s->copy_slots + (size_t) i * s->batch_blocks;
  s->pins = calloc (nslots, sizeof *s->pins);
  if (s->pins == NULL)
    goto oom;

  if (arena_map (s, p->store_file == NULL, p->lock_memory, errmsg) == -1) {
    store_free (s);
    return NULL;
  }

  if (p->store_file && store_load (s, p, errmsg) == -1) {
    store_free (s);
    return NULL;
  }
  s->durable = p->durable && p->store_file;   /* store_free commits now */

  pthread_rwlockattr_t attr;
  pthread_rwlockattr_init (&attr);
  pthread_rwlockattr_setkind_np (&attr,
                                 PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  pthread_rwlock_init (&s->removal, &attr);
  pthread_rwlockattr_destroy (&attr);
  lockstat_init ();
  pthread_mutex_init (&s->lock, NULL);
  pthread_cond_init (&s->changed, NULL);
  pthread_cond_init (&s->work, NULL);
  pthread_cond_init (&s->flush_work, NULL);
  pthread_cond_init (&s->committed, NULL);
  pthread_cond_init (&s->unpinned, NULL);
  STORE_DEBUG_CHECK (s);
  return s;

 oom:
  if (asprintf (errmsg, "cannot allocate the store: %m") == -1)
    *errmsg = NULL;
  store_free (s);
  return NULL;
}

uint64_t
store_memory_bytes (uint32_t nslots, bool store_file)
{
  uint64_t pool = (uint64_t) nslots * sizeof (struct entry) +
    (uint64_t) (nslots + 63) / 64 * sizeof (uint64_t) +    /* slot_map */
    (uint64_t) nslots * sizeof (uint16_t);                  /* pins */

  return pool + (store_file ? storefile_size (nslots)
                            : (uint64_t) nslots * STORE_BLOCK_SIZE);
}

void
store_free (struct store *s)
{
  int err;

  if (s == NULL)
    return;
  /* What the store holds now is what the next start finds. */
  store_commit (s, &err);
  lockstat_report ();
  arena_unmap (s);
  free (s->written);
  free (s->copy_slots);
  free (s->pins);
  free (s);
}
