/* SPDX-License-Identifier: BSD-3-Clause */
/* abd async filter: the dirty store's write-back side (see store-impl.h):
 * picking batches for the writeback threads (writeback.c), their
 * completions, and the lower flushes that make written entries clean.
 * Which runs to take and when is decided here; what taking, completing
 * and flushing does to an entry is in store-life.c (entry_take,
 * entry_written, entry_write_failed, entry_flushed), with the writers'
 * schedule (writeback_urgent, writeback_wake).
 */

#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store-impl.h"

/* The most entries a writer looks at for a batch in offset order. */
#define PICK_SCAN_MAX 64

/*----------------------------------------------------------------------
 * Writers.
 */

/* The run starting at DIRTY entry E: E and the DIRTY data extents right
 * after it, at most batch_blocks blocks (an extent is never longer),
 * none of them write-pinned (a client copies into it: it is taken after
 * the copy, whole).  Returns its length in blocks, 0 if E is
 * write-pinned; *LAST is its last entry.
 */
static uint32_t
run_at (struct store *s, struct entry *e, struct entry **last)
{
  struct entry *f;
  uint32_t n = entry_blocks (e);

  *last = e;
  if (entry_write_pinned (s, e)) {
    /* Skipped: the release wakes a writer (pins_wake). */
    __atomic_store_n (&s->pin_skipped, true, __ATOMIC_SEQ_CST);
    return 0;
  }
  if (e->kind == STORE_DATA) {
    for (f = tree_next (s, e);
         f && n + entry_blocks (f) <= s->batch_blocks &&
           f->blk == entry_end (*last) &&
           f->kind == STORE_DATA && f->state == ST_DIRTY &&
           !entry_write_pinned (s, f);
         f = tree_next (s, f)) {
      *last = f;
      n += entry_blocks (f);
    }
  }
  return n;
}

/* Take the run [E, LAST] of N entries into batch B: its entries go from
 * DIRTY to WRITEBACK.  Their data goes into BUF: with a free list in
 * s->copies (*COPY, whose slots[i] is the slot of block i, read-pinned:
 * clients wait to change those blocks meanwhile), store_pick_wait copies
 * it after dropping the lock; otherwise it is copied here (no slot of the
 * run is write-pinned, and none can be while the lock is held).
 * A copy of a 256K run held the lock for tens of microseconds, every
 * client waiting.
 */
static void
take_run (struct store *s, struct store_batch *b, char *buf, int *copy,
          struct entry *e, struct entry *last, uint32_t n)
{
  struct entry *f, *next;
  uint32_t i;

  *copy = -1;
  if (e->kind == STORE_DATA)
    for (i = 0; i < COPIES_MAX; i++)
      if (!__atomic_load_n (&s->copies[i].used, __ATOMIC_ACQUIRE)) {
        s->copies[i].used = true;
        *copy = i;
        break;
      }

  b->kind = e->kind;
  b->blk = e->blk;
  b->nblocks = n;
  b->offset = e->blk * STORE_BLOCK_SIZE;
  b->len = blocks_len (s, b->blk, b->nblocks);
  b->buf = e->kind == STORE_DATA ? buf : NULL;
  for (f = e, i = 0; ; f = next) {
    uint32_t j, nf = entry_blocks (f);

    next = tree_next (s, f);
    entry_take (s, f);
    if (f->kind == STORE_DATA && *copy >= 0) {
      pins_take (s, f->slot, nf, false);
      for (j = 0; j < nf; j++)
        s->copies[*copy].slots[i + j] = f->slot + j;
    }
    else if (f->kind == STORE_DATA)
      memcpy (buf + (size_t) i * STORE_BLOCK_SIZE, slot_data (s, f->slot),
              (size_t) nf * STORE_BLOCK_SIZE);
    i += nf;
    if (f == last)
      break;
  }
  s->cursor = b->blk + b->nblocks;
  if (s->st.writes_in_flight++ == 0)
    drain_rate_busy (&s->meter, true, now_us ());
  s->st.bytes_in_flight += b->len;
}

/* Take the next batch in offset order from the cursor, or return false and
 * set *wait_ms to when the oldest DIRTY entry becomes due.
 *
 * A run is due when it is full (batch_blocks long: it cannot grow) or
 * one of its entries has been DIRTY for delay_ms (young data may be
 * rewritten or extended: wait for it), or at once when the writers must
 * hurry.  The dirty list says whether anything is due without walking the
 * tree: when nothing is, the only run worth a look is the one at the
 * cursor, where a sequential stream goes on and fills full runs.
 */
static bool
pick (struct store *s, struct store_batch *b, char *buf, int *copy,
      uint32_t *wait_ms)
{
  uint32_t now = now_ms ();
  bool hurry = writeback_urgent (s);
  bool wrapped = false;
  uint64_t start = s->cursor;
  struct entry *oldest = dirty_oldest (s);
  struct entry *e, *f, *last;
  int32_t age;
  uint32_t n, visited;

  if (oldest == NULL) {
    *wait_ms = 1000;
    return false;
  }
  age = ms_diff (oldest->dirtied_ms, now);
  if (!hurry && age < (int32_t) s->delay_ms) {
    e = tree_find_from (s, start);
    if (e && e->state == ST_DIRTY &&
        (n = run_at (s, e, &last)) >= s->batch_blocks) {
      take_run (s, b, buf, copy, e, last, n);
      return true;
    }
    *wait_ms = s->delay_ms - (age > 0 ? age : 0);
    return false;
  }

  /* Something is due: the first due run from the cursor on, in offset
   * order (kinder to a disk); but after PICK_SCAN_MAX entries that are
   * not, the oldest entry's run (it is due), so that a pick costs no more
   * than that however many young or written entries lie in the way.
   */
  e = tree_find_from (s, start);
  for (visited = 0; ; visited++) {
    if (visited == PICK_SCAN_MAX) {
      if ((n = run_at (s, oldest, &last)) == 0)
        break;
      take_run (s, b, buf, copy, oldest, last, n);
      return true;
    }
    if (e == NULL || (wrapped && e->blk >= start)) {
      if (wrapped || start == 0)
        break;
      wrapped = true;
      e = tree_min (s);
      continue;
    }
    if (e->state != ST_DIRTY) {
      e = tree_next (s, e);
      continue;
    }
    n = run_at (s, e, &last);
    if (n == 0) {               /* write-pinned */
      e = tree_next (s, e);
      continue;
    }
    if (!hurry && n < s->batch_blocks) {
      int32_t run_age = INT32_MIN;

      for (f = e; ; f = tree_next (s, f)) {
        age = ms_diff (f->dirtied_ms, now);
        if (age > run_age)
          run_age = age;
        if (f == last)
          break;
      }
      if (run_age < (int32_t) s->delay_ms) {
        e = tree_next (s, last);
        continue;
      }
    }
    take_run (s, b, buf, copy, e, last, n);
    return true;
  }
  /* The oldest DIRTY entry is due, so is its run, unless a client is
   * copying into it (and into every other due one): the release wakes a
   * writer (pin_skipped); look again soon in any case.
   */
  *wait_ms = 1;
  return false;
}

bool
store_pick_wait (struct store *s, struct store_batch *b, char *buf)
{
  int copy = -1;
  bool ok = false;
  uint32_t i;

  STORE_LOCK (s);
  while (!s->stopping) {
    uint32_t wait_ms = 0;
    struct timespec ts;

    if (s->retry_at_ms && ms_diff (now_ms (), s->retry_at_ms) > 0)
      wait_ms = ms_diff (now_ms (), s->retry_at_ms);
    else if (!writer_admitted (s, writeback_urgent (s))) {
      /* Enough writers are at work in the background.  One of them picks
       * again when it completes, and wakes this one if the writers must
       * hurry (store_complete); new entries do not (wake_armed is left to
       * the writers that will look).
       */
      clock_gettime (CLOCK_REALTIME, &ts);
      ts.tv_sec++;
      STORE_TIMEDWAIT (s, &s->work, &ts);
      continue;
    }
    else if ((ok = pick (s, b, buf, &copy, &wait_ms))) {
      if (writeback_more_due (s))
        writeback_wake (s);
      break;
    }

    /* Nothing due: sleep until the next entry is, or a signal. */
    if (!s->wake_armed || ms_diff (now_ms () + wait_ms, s->wake_at_ms) > 0) {
      s->wake_armed = true;
      s->wake_at_ms = now_ms () + wait_ms;
    }
    clock_gettime (CLOCK_REALTIME, &ts);
    ts.tv_sec += wait_ms / 1000;
    ts.tv_nsec += (long) (wait_ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000;
    }
    if (STORE_TIMEDWAIT (s, &s->work, &ts) == ETIMEDOUT)
      s->wake_armed = false;
  }
  STORE_DEBUG_CHECK (s);
  STORE_UNLOCK (s);
  if (copy >= 0) {
    uint32_t *slots = s->copies[copy].slots;

    for (i = 0; i < b->nblocks; i++)
      memcpy (buf + (size_t) i * STORE_BLOCK_SIZE, slot_data (s, slots[i]),
              STORE_BLOCK_SIZE);
    for (i = 0; i < b->nblocks; i++)
      pins_drop (s, slots[i], 1, false);
    __atomic_store_n (&s->copies[copy].used, false, __ATOMIC_RELEASE);
    pins_released (s);          /* clients waiting to write */
  }
  return ok;
}

/* After a lower error: writers pause, twice as long each time. */
static void
back_off (struct store *s)
{
  s->backoff_ms = s->backoff_ms ? 2 * s->backoff_ms : s->retry_min_ms;
  if (s->backoff_ms > s->retry_max_ms)
    s->backoff_ms = s->retry_max_ms;
  s->retry_at_ms = now_ms () + s->backoff_ms;
  if (s->retry_at_ms == 0)      /* 0 means "no backoff" */
    s->retry_at_ms = 1;
}

static void
written_add (struct store *s, uint64_t blk, uint64_t end)
{
  if (s->nwritten > 0 && s->written[s->nwritten-1].end == blk) {
    s->written[s->nwritten-1].end = end;
    return;
  }
  if (s->nwritten == s->written_cap) {
    size_t cap = s->written_cap ? 2 * s->written_cap : 64;
    struct written_range *w = realloc (s->written, cap * sizeof *w);

    /* Without memory, the next flush scans the whole tree instead. */
    if (w == NULL) {
      s->written_overflow = true;
      return;
    }
    s->written = w;
    s->written_cap = cap;
  }
  s->written[s->nwritten++] = (struct written_range) { blk, end };
}

void
store_complete (struct store *s, const struct store_batch *b, bool ok)
{
  struct entry *e;
  uint64_t end = b->blk + b->nblocks;

  STORE_LOCK (s);
  for (e = tree_find (s, b->blk);
       e && e->blk < end;
       e = tree_next (s, e)) {
    if (ok)
      entry_written (s, e, s->write_gen);
    else
      entry_write_failed (s, e);
  }
  /* A failed write took time and wrote nothing back. */
  drain_rate_done (&s->meter,
                   !ok ? 0 : b->kind == STORE_DATA
                   ? (uint64_t) b->nblocks * STORE_BLOCK_SIZE
                   : STORE_BLOCK_SIZE, now_us ());
  if (--s->st.writes_in_flight == 0)
    drain_rate_busy (&s->meter, false, now_us ());
  s->st.bytes_in_flight -= b->len;
  if (ok) {
    s->st.written_back_bytes += b->len;
    s->st.written_back_requests++;
    if (s->written_batches++ == 0)
      s->first_written_ms = now_ms ();
    written_add (s, b->blk, end);
    pthread_cond_signal (&s->flush_work);
  }
  else {
    s->st.lower_write_errors++;
    back_off (s);
    epoch_advance (s);
  }
  /* Writers held back while writeback ran in the background join in
   * when it must hurry (this one picks again by itself).
   */
  if (writeback_urgent (s) && writeback_more_due (s))
    writeback_wake (s);
  pthread_cond_broadcast (&s->changed);
  STORE_DEBUG_CHECK (s);
  STORE_UNLOCK (s);
}

/*----------------------------------------------------------------------
 * Flusher.
 */

bool
store_flush_begin (struct store *s, uint32_t *ticket)
{
  STORE_LOCK (s);
  for (;;) {
    struct timespec ts;

    /* Flush often enough that memory comes back, rarely enough that the
     * lower device is not flushed once per block; at once when someone
     * waits and no write is in flight.
     */
    if (s->written_batches > 0 &&
        (s->written_batches >= FLUSH_BATCHES ||
         ms_diff (s->first_written_ms, now_ms ()) >= FLUSH_AGE_MS ||
         (s->st.writes_in_flight == 0 && writeback_urgent (s)) ||
         s->stopping))
      break;
    if (s->stopping) {
      STORE_UNLOCK (s);
      return false;
    }
    clock_gettime (CLOCK_REALTIME, &ts);
    ts.tv_nsec += FLUSH_AGE_MS * 1000000L;
    if (ts.tv_nsec >= 1000000000) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000;
    }
    STORE_TIMEDWAIT (s, &s->flush_work, &ts);
  }
  /* Everything completed so far carries a generation <= ticket. */
  *ticket = s->write_gen++;
  s->written_batches = 0;
  STORE_UNLOCK (s);
  return true;
}

void
store_flush_end (struct store *s, uint32_t ticket, bool ok)
{
  struct written_range *ranges;
  size_t n, i;
  uint32_t now;

  pthread_rwlock_wrlock (&s->removal);
  STORE_LOCK (s);
  now = now_ms ();              /* no entry in the dirty list is younger */
  ranges = s->written;
  n = s->nwritten;
  s->written = NULL;
  s->nwritten = s->written_cap = 0;
  if (s->written_overflow) {
    static struct written_range all = { 0, UINT64_MAX };

    s->written_overflow = false;
    free (ranges);
    ranges = &all;
    n = 1;
  }

  for (i = 0; i < n; i++) {
    struct entry *e = tree_find_from (s, ranges[i].blk), *next;

    for (; e && e->blk < ranges[i].end; e = next) {
      next = tree_next (s, e);
      if (e->state == ST_WRITTEN && ms_diff (e->gen, ticket) >= 0 &&
          ok && !(e->flags & EF_REDIRTY) && e->kind == STORE_DATA &&
          slots_pinned (s, e->slot, entry_blocks (e), PIN_ANY)) {
        /* It leaves the tree and frees its slots: wait for the reads
         * copying out of them (they need no lock to finish), then look
         * at the entry again.  The entries flushed so far may have
         * emptied epochs: advance them first, as others see the store
         * while we wait.
         */
        uint64_t blk = e->blk;

        epoch_advance (s);
        pins_wait (s, e->slot, entry_blocks (e), PIN_ANY);
        now = now_ms ();        /* entries dirtied meanwhile are older */
        next = tree_find_from (s, blk);
        continue;
      }
      if (e->state == ST_WRITTEN && ms_diff (e->gen, ticket) >= 0)
        entry_flushed (s, e, ok, now);
      else if (e->state == ST_WRITTEN)
        written_add (s, e->blk, entry_end (e));  /* a later flush's */
    }
  }
  if (n != 1 || ranges[0].end != UINT64_MAX)
    free (ranges);

  /* The backoff ends only when a whole write + flush cycle worked: a
   * device whose writes succeed but whose flushes fail must not be
   * rewritten in a tight loop.
   */
  if (ok) {
    s->st.lower_flushes++;
    s->backoff_ms = 0;
    s->retry_at_ms = 0;
  }
  else {
    s->st.lower_flush_errors++;
    back_off (s);
  }
  epoch_advance (s);
  pthread_cond_broadcast (&s->changed);
  writeback_wake (s);
  STORE_DEBUG_CHECK (s);
  STORE_UNLOCK (s);
  pthread_rwlock_unlock (&s->removal);
}
