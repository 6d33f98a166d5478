/* SPDX-License-Identifier: BSD-3-Clause */
/* nbdkit-memcache-filter: ordering cache stores against writes in this
 * process.
 *
 * The danger: a read misses block B, reads it from the lower device, and
 * stores it in memcached.  If a write of B runs meanwhile, the read may
 * store the old data after the write has stored or deleted the new, and
 * the cache would then hold a block older than the lower device's.  The
 * same holds for two overlapping writes with the update policy.
 *
 * The rule, checked here without holding any lock across I/O:
 *
 *   - a write increments its blocks' sequence numbers and in-progress
 *     counts before it goes to the lower device, and decrements the counts
 *     only after its cache stores and deletes are done;
 *   - a fill is started only if no write of the block is in progress, and
 *     its store may stay only if the sequence did not change between
 *     before its lower read and after its store completed;
 *   - a write's store may stay only if no other write of the block was in
 *     progress when it began and none began until its store completed.
 *
 * Whoever may not stay deletes what it stored (and if that delete fails,
 * the server's generation changes, which drops it as well).  Since a
 * store that completed before the check and any write that began after it
 * are ordered (that write's lower write, then its own store or delete,
 * come later), no stale store can survive.
 *
 * Blocks share slots (block mod WRITESEQ_SLOTS); a shared slot only makes
 * the rule more cautious.
 *
 * Block versions make the same promise without trusting the servers: the
 * version of a block goes up after every write of it reached the lower
 * device, and a value sealed under an older version fails authentication,
 * whoever stored it and however late.  Blocks share versions only beyond
 * WRITESEQ_VERSIONS blocks (16 GiB of 4K blocks); a shared version only
 * costs a neighbour its cached value.  The table is zero-filled memory
 * that the kernel maps as it is first written: about 4 bytes per block
 * ever written, at most 16 MiB.  A version wraps after 2^32 writes of one
 * block, long after any value sealed under it has been replaced.
 */

#include <config.h>

#include <pthread.h>
#include <stdlib.h>

#include <nbdkit-filter.h>

#include "writeseq.h"

#define WRITESEQ_SLOTS 16384    /* a power of 2 */

struct writeseq_slot {
  uint64_t seq;                 /* writes begun */
  uint32_t active;              /* writes in progress */
};

/* writeseq_lock protects slots. */
static pthread_mutex_t writeseq_lock = PTHREAD_MUTEX_INITIALIZER;
static struct writeseq_slot slots[WRITESEQ_SLOTS];

/* Read and written with atomics only. */
static uint32_t versions[WRITESEQ_VERSIONS];

static struct writeseq_slot *
writeseq_slot (uint64_t block)
{
  return &slots[block & (WRITESEQ_SLOTS - 1)];
}

/* A write covers min (n, WRITESEQ_SLOTS) distinct slots: the blocks
 * first .. first+nr_tickets-1.  Ticket j belongs to block first+j and to
 * every block of the write that shares its slot.
 */
int
writeseq_write_begin (struct writeseq_write *w, uint64_t first, uint64_t n)
{
  uint64_t j;

  w->first = first;
  w->n = n;
  w->nr_tickets = n < WRITESEQ_SLOTS ? n : WRITESEQ_SLOTS;
  w->tickets = malloc (w->nr_tickets * sizeof *w->tickets);
  if (w->tickets == NULL) {
    nbdkit_error ("malloc: %m");
    return -1;
  }

  pthread_mutex_lock (&writeseq_lock);
  for (j = 0; j < w->nr_tickets; j++) {
    struct writeseq_slot *slot = writeseq_slot (first + j);

    w->tickets[j].overlapped = slot->active > 0;
    slot->active++;
    w->tickets[j].seq = ++slot->seq;
  }
  pthread_mutex_unlock (&writeseq_lock);
  return 0;
}

void
writeseq_write_end (struct writeseq_write *w)
{
  uint64_t j;

  pthread_mutex_lock (&writeseq_lock);
  for (j = 0; j < w->nr_tickets; j++) {
    struct writeseq_slot *slot = writeseq_slot (w->first + j);

    if (slot->seq != w->tickets[j].seq)
      w->tickets[j].overlapped = true;
    slot->active--;
  }
  pthread_mutex_unlock (&writeseq_lock);
}

bool
writeseq_write_kept (const struct writeseq_write *w, uint64_t block)
{
  return !w->tickets[(block - w->first) % WRITESEQ_SLOTS].overlapped;
}

void
writeseq_write_free (struct writeseq_write *w)
{
  free (w->tickets);
  w->tickets = NULL;
}

bool
writeseq_fill_begin (uint64_t block, uint64_t *seq)
{
  struct writeseq_slot *slot = writeseq_slot (block);
  bool ok;

  pthread_mutex_lock (&writeseq_lock);
  ok = slot->active == 0;
  *seq = slot->seq;
  pthread_mutex_unlock (&writeseq_lock);
  return ok;
}

bool
writeseq_fill_still_valid (uint64_t block, uint64_t seq)
{
  struct writeseq_slot *slot = writeseq_slot (block);
  bool ok;

  pthread_mutex_lock (&writeseq_lock);
  ok = slot->seq == seq;
  pthread_mutex_unlock (&writeseq_lock);
  return ok;
}

uint32_t
writeseq_version (uint64_t block)
{
  return __atomic_load_n (&versions[block & (WRITESEQ_VERSIONS - 1)],
                          __ATOMIC_ACQUIRE);
}

uint32_t
writeseq_version_bump (uint64_t block)
{
  return __atomic_add_fetch (&versions[block & (WRITESEQ_VERSIONS - 1)], 1,
                             __ATOMIC_ACQ_REL);
}

uint32_t
writeseq_version_slot (size_t slot)
{
  return __atomic_load_n (&versions[slot], __ATOMIC_ACQUIRE);
}

void
writeseq_version_slot_set (size_t slot, uint32_t version)
{
  __atomic_store_n (&versions[slot], version, __ATOMIC_RELEASE);
}
