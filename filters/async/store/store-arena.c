/* SPDX-License-Identifier: BSD-3-Clause */
/* abd async filter: the dirty store's memory (see store-impl.h):
 * the data arena's slots and the entry pool (in anonymous memory or in
 * the store file), and admission: whether a client may add an entry now.
 * It hands out and takes back memory and knows nothing of the entries'
 * states, their records or who waits (store-life.c): it calls only the
 * meter (drainrate.c) and the store file (storefile.c), the layer below.
 */

#include <config.h>

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "store-impl.h"

/*----------------------------------------------------------------------
 * The drain budget.
 *
 * With async-max-drain-seconds=N, dirty data is bounded by the time its
 * write-back takes, not only by memory: a client may add an entry only
 * while the store's cost (drainrate.h: 4 KiB per data block and per
 * zeroed or trimmed range) stays within N seconds at the measured rate.
 * Until the writers have measured a rate, the budget is the small
 * drain_initial_budget (params.c: what even a disk doing 100 random writes
 * a second drains in N seconds, and at most 1 MiB), so that the first
 * burst after a start cannot fill the memory with more than a slow device
 * can drain.  A client over the budget waits like one waiting for space
 * (a space waiter, store-life.c: the writers hurry, which is also when
 * the rate they measure is the one a drain gets), and is counted in
 * drain_budget_waits.
 */

uint64_t
drain_cost (const struct store *s)
{
  return s->st.dirty_data_bytes + s->range_entries * STORE_BLOCK_SIZE;
}

/* Bytes of cost the budget allows now; UINT64_MAX without a budget. */
uint64_t
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
bool
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
 *
 * Slots are found in slot_map, a bit per slot (set: in use).  A new
 * block gets the lowest free slot (slot_low: no slot below it is free),
 * unless its caller names one (the hint: the slot after the extent the
 * block joins, so that extents grow in consecutive slots).  Lowest first
 * keeps the data in as few pages as the dirty data needs: they stay
 * mapped and in the caches.  A cursor following the last slot handed out,
 * as before, walked every write through the whole arena, each copy into
 * memory not touched for a whole lap (page faults on the first lap, cache
 * and TLB misses after): 64K sequential writes QD1 over the bench's lower
 * device ran at 0.76x the memory plugin with a cursor, 0.91x lowest
 * first; with async-max-dirty=512M, 0.55x and 0.91x (fio, the median of
 * 3 interleaved runs of 6 s, an idle machine).
 */

bool
slot_in_use (const struct store *s, uint32_t slot)
{
  return s->slot_map[slot / 64] & (1ULL << (slot % 64));
}

void
slot_mark_used (struct store *s, uint32_t slot)
{
  s->slot_map[slot / 64] |= 1ULL << (slot % 64);
  s->free_slots--;
}

/* The first free slot at or after FROM, wrapping: there is one
 * (free_slots).
 */
static uint32_t
slot_find_free (const struct store *s, uint32_t from)
{
  size_t nwords = (s->nslots + 63) / 64, w = from / 64, k;
  uint64_t bits = ~s->slot_map[w] & (~0ULL << (from % 64));

  for (k = 0; k <= nwords; k++) {
    if (bits) {
      uint32_t slot = w * 64 + __builtin_ctzll (bits);

      if (slot < s->nslots)
        return slot;
    }
    w = w + 1 == nwords ? 0 : w + 1;
    bits = ~s->slot_map[w];
  }
  abort ();                     /* free_slots said there was one */
}

/* A slot for a client's new data block, HINT if it is free (NO_SLOT: no
 * preference): NO_SLOT when memory is full or the drain budget is spent.
 */
uint32_t
slot_alloc (struct store *s, uint32_t hint)
{
  uint32_t slot;

  if (s->free_slots == 0 || !drain_admits (s))
    return NO_SLOT;
  if (hint < s->nslots && !slot_in_use (s, hint))
    slot = hint;
  else {
    slot = slot_find_free (s, s->slot_low);     /* the lowest free one */
    s->slot_low = slot + 1;
  }
  slot_mark_used (s, slot);
  return slot;
}

/* Release the N slots from SLOT. */
void
slot_release (struct store *s, uint32_t slot, uint32_t n)
{
  uint32_t i;

  for (i = slot; i < slot + n; i++)
    s->slot_map[i / 64] &= ~(1ULL << (i % 64));
  s->free_slots += n;
  if (slot < s->slot_low)
    s->slot_low = slot;
}

struct entry *
entry_alloc (struct store *s)
{
  struct entry *e;

  if (s->free_entries == 0)
    return NULL;
  s->free_entries--;
  if (s->entry_free != ENTRY_NIL) {
    e = &s->pool[s->entry_free];
    s->entry_free = e->left;
  }
  else
    e = &s->pool[s->entry_bump++];
  memset (e, 0, sizeof *e);
  return e;
}

void
entry_release (struct store *s, struct entry *e)
{
  e->left = s->entry_free;
  s->entry_free = e - s->pool;
  s->free_entries++;
}

/* A data entry and its slot (HINT if free), or NULL (taking neither)
 * when memory is full or the drain budget is spent.
 */
struct entry *
entry_alloc_with_slot (struct store *s, uint32_t hint, uint32_t *slot)
{
  struct entry *e;

  if ((*slot = slot_alloc (s, hint)) == NO_SLOT)
    return NULL;
  if ((e = entry_alloc (s)) == NULL)
    slot_release (s, *slot, 1);
  return e;
}

/*----------------------------------------------------------------------
 * Mapping the arena.
 */

/* Map the entry pool and, with ANON_DATA, the data arena in anonymous
 * memory (a store file maps its own: store_load); untouched pages cost
 * nothing until used.  LOCK_MEMORY: mlock them.  Returns 0, or -1 with
 * *errmsg (malloc'd, or NULL).
 */
int
arena_map (struct store *s, bool anon_data, bool lock_memory, char **errmsg)
{
  s->data_bytes = (size_t) s->nslots * STORE_BLOCK_SIZE;
  s->pool_bytes = (size_t) s->nentries * sizeof (struct entry);
  s->slot_map_bytes = (size_t) (s->nslots + 63) / 64 * sizeof (uint64_t);
  if (anon_data) {
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
  s->slot_map = mmap (NULL, s->slot_map_bytes, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (s->slot_map == MAP_FAILED) {
    s->slot_map = NULL;
    goto oom;
  }
  if (lock_memory &&
      ((s->data && mlock (s->data, s->data_bytes) == -1) ||
       mlock (s->pool, s->pool_bytes) == -1 ||
       mlock (s->slot_map, s->slot_map_bytes) == -1)) {
    if (asprintf (errmsg, "cannot lock %zu bytes of memory (%m): raise the "
                  "locked-memory limit (ulimit -l, LimitMEMLOCK=) or lower "
                  "max dirty", s->data_bytes + s->pool_bytes +
                  s->slot_map_bytes) == -1)
      *errmsg = NULL;
    return -1;
  }
  return 0;

 oom:
  if (asprintf (errmsg, "cannot allocate the store: %m") == -1)
    *errmsg = NULL;
  return -1;
}

void
arena_unmap (struct store *s)
{
  if (s->file)
    storefile_close (s->file);  /* the records stay in the file */
  else if (s->data)
    munmap (s->data, s->data_bytes);
  if (s->pool)
    munmap (s->pool, s->pool_bytes);
  if (s->slot_map)
    munmap (s->slot_map, s->slot_map_bytes);
}
