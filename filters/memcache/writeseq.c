/* SPDX-License-Identifier: BSD-3-Clause */
/* nbdkit-memcache-filter: ordering cache stores against writes in this
 * process.
 *
 * Block versions are what keeps the cache correct: the version of a block
 * goes up after every write of it reached the lower device, and a value
 * sealed under an older version fails authentication, whoever stored it
 * and however late (a fill or a store whose outcome was unknown, carried
 * out by a server after it was frozen; a value replayed by someone else).
 * Why this is enough: say block B's version is V now and no write of B is
 * in progress.  Let W be the write whose version raise made V, at time t.
 * Every lower write of B ended before t (each is followed by a raise).
 * Who sealed a value of B under V?
 *
 *   - a read that took V (after t) before its lower read: it read B after
 *     every lower write of B, so its data is the lower device's;
 *   - W itself, if V came from W's first raise (after its lower write):
 *     then no other write overlapped W (or W would have raised again at
 *     its end), so W's lower write was the last, and its data is B's.
 *
 * So a value that authenticates holds the lower device's data, as long as
 * writes that overlap raise the version again at their end (writer.c).
 *
 * It also needs a version V of B never to come back once raised past:
 * had it wrapped, a value sealed 2^N raises earlier would hold V again,
 * and authenticate.  So versions are 64 bits, which never wrap in
 * practice (2^64 raises of one slot at 10,000 writes a second take 58
 * million years); with 32 bits a hot block wrapped in five days, sooner
 * for blocks that share a slot (below) and so its raises.  Warm restarts
 * carry the table over (state.c), so the bound is over every process of
 * an epoch; a state file put back from a copy brings older versions back,
 * which is why it must not be (nbdkit-memcache-filter(1)).
 *
 * The sequence numbers below only save work: a fill is not even queued
 * while a write of the block is in progress, and a queued fill is dropped
 * if a write began since its lower read (filler.c).  The rule, checked
 * without holding any lock across I/O:
 *
 *   - a write increments its blocks' sequence numbers and in-progress
 *     counts before it goes to the lower device, and decrements the counts
 *     after its cache stores and deletes are done;
 *   - a fill is started only if no write of the block is in progress, and
 *     sent only if the sequence did not change since before its lower
 *     read;
 *   - a write overlapped another if another write of the block was in
 *     progress when it began, or one began before it ended.
 *
 * Blocks share slots (block mod WRITESEQ_SLOTS); a shared slot only makes
 * the rule more cautious.
 *
 * Blocks share versions only beyond WRITESEQ_VERSIONS blocks (16 GiB of 4K
 * blocks); a shared version only costs a neighbour its cached value.  The
 * table is zero-filled memory that the kernel maps as it is first
 * written: 8 bytes per slot ever written (4 before versions were 64
 * bits), at most 32 MiB, reached when 2^22 different slots (16 GiB of
 * 4K blocks) have been written.
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
static uint64_t versions[WRITESEQ_VERSIONS];

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

uint64_t
writeseq_version (uint64_t block)
{
  return __atomic_load_n (&versions[block & (WRITESEQ_VERSIONS - 1)],
                          __ATOMIC_ACQUIRE);
}

uint64_t
writeseq_version_bump (uint64_t block)
{
  return __atomic_add_fetch (&versions[block & (WRITESEQ_VERSIONS - 1)], 1,
                             __ATOMIC_ACQ_REL);
}

uint64_t
writeseq_version_slot (size_t slot)
{
  return __atomic_load_n (&versions[slot], __ATOMIC_ACQUIRE);
}

void
writeseq_version_slot_set (size_t slot, uint64_t version)
{
  __atomic_store_n (&versions[slot], version, __ATOMIC_RELEASE);
}
