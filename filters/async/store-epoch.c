/* SPDX-License-Identifier: BSD-3-Clause */
/* abd async filter: the dirty store's epochs and flush waits (see
 * store-impl.h).  Every client modification belongs to the current epoch;
 * a flush opens a new one and waits until every older epoch holds nothing.
 */

#include <config.h>

#include <assert.h>
#include <errno.h>
#include <time.h>

#include "store-impl.h"

/*----------------------------------------------------------------------
 * Epochs.
 */

void
epoch_hold (struct store *s, uint32_t epoch)
{
  s->epoch_count[epoch % EPOCH_RING]++;
}

void
epoch_drop (struct store *s, uint32_t epoch)
{
  assert (s->epoch_count[epoch % EPOCH_RING] > 0);
  s->epoch_count[epoch % EPOCH_RING]--;
}

/* Move epoch_lo past epochs that hold nothing; wakes flush waiters. */
void
epoch_advance (struct store *s)
{
  uint32_t lo = s->epoch_lo;

  while (lo != s->epoch_cur && s->epoch_count[lo % EPOCH_RING] == 0)
    lo++;
  if (lo != s->epoch_lo) {
    s->epoch_lo = lo;
    pthread_cond_broadcast (&s->changed);
  }
}

/*----------------------------------------------------------------------
 * Flush waits.
 */

int
store_flush_wait (struct store *s, int timeout_ms, int *err)
{
  struct timespec deadline;
  uint32_t target;
  int r = 0;

  if (timeout_ms >= 0) {
    clock_gettime (CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long) (timeout_ms % 1000) * 1000000;
    if (deadline.tv_nsec >= 1000000000) {
      deadline.tv_sec++;
      deadline.tv_nsec -= 1000000000;
    }
  }

  pthread_mutex_lock (&s->lock);
  s->flush_waiters++;
  /* Open a new epoch; every modification so far is in an older one. */
  while (s->epoch_cur - s->epoch_lo + 1 >= EPOCH_RING && !s->stopping)
    pthread_cond_wait (&s->changed, &s->lock);
  target = s->epoch_cur++;
  assert (s->epoch_count[s->epoch_cur % EPOCH_RING] == 0);
  epoch_advance (s);
  writeback_wake (s);
  pthread_cond_signal (&s->flush_work);

  while (ms_diff (target, s->epoch_lo) <= 0) {
    /* Without a deadline (a client's flush) a failure is reported at
     * once; with one (abdctl flush), retries get until the deadline.
     */
    if (s->failed_entries > 0 && timeout_ms < 0) {
      *err = EIO;
      r = -1;
      break;
    }
    if (s->stopping) {
      *err = ESHUTDOWN;
      r = -1;
      break;
    }
    if (timeout_ms < 0)
      pthread_cond_wait (&s->changed, &s->lock);
    else if (pthread_cond_timedwait (&s->changed, &s->lock,
                                     &deadline) == ETIMEDOUT) {
      *err = s->failed_entries > 0 ? EIO : ETIMEDOUT;
      r = -1;
      break;
    }
  }
  if (r == 0 && s->failed_entries > 0) {
    *err = EIO;
    r = -1;
  }
  s->flush_waiters--;
  STORE_DEBUG_CHECK (s);
  pthread_mutex_unlock (&s->lock);
  return r;
}

bool
store_has_failed (struct store *s)
{
  bool failed;

  pthread_mutex_lock (&s->lock);
  failed = s->failed_entries > 0;
  pthread_mutex_unlock (&s->lock);
  return failed;
}

void
store_wait_empty (struct store *s)
{
  pthread_mutex_lock (&s->lock);
  while (!tree_empty (s) && !s->stopping) {
    s->flush_waiters++;       /* make the writers hurry */
    writeback_wake (s);
    pthread_cond_wait (&s->changed, &s->lock);
    s->flush_waiters--;
  }
  pthread_mutex_unlock (&s->lock);
}
