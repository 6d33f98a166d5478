/* SPDX-License-Identifier: BSD-3-Clause */
/* abd async filter: the store's lock, and, on request, where it is waited
 * for and how long it is held (ABD_STORE_LOCK_STATS=1 in the environment
 * of the process that creates the first store).
 *
 * Every place that takes s->lock is a site (STORE_LOCK in store-impl.h
 * names it by its function).  A site counts its acquisitions, those that
 * found the lock taken (a pthread_mutex_trylock first: "contended"), the
 * time spent waiting for it, and the time it was held from there to the
 * unlock or to a condition wait (a condition wait releases the lock: the
 * time asleep is not held time, and the hold after waking counts again).
 * The report (lockstat_report) goes to stderr when the store is freed.
 * Off, a lock costs one predictable branch more than pthread_mutex_lock.
 *
 * The counters are shared by every store of the process (a site is a
 * place in the code) and updated atomically; the holder's timestamp
 * (struct lockstat_hold) is guarded by the lock itself.
 */

#ifndef ABD_ASYNC_STORELOCK_H
#define ABD_ASYNC_STORELOCK_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

struct lockstat_site {
  const char *name;
  uint64_t acquires, contended, wait_ns, hold_ns, max_hold_ns;
  struct lockstat_site *next;
  int listed;
};

/* Who holds the lock since when: the holder's site, NULL when the
 * statistics are off.
 */
struct lockstat_hold {
  struct lockstat_site *site;
  uint64_t t0;
};

/* Set once, by the first store_create that finds the variable; read
 * atomically (a store created later may set it while an older store's
 * threads run: their locks taken before then have no site, which the
 * unlock and the waits handle).
 */
extern bool lockstat_on;

/* Reads ABD_STORE_LOCK_STATS once (store_create, before any thread). */
void lockstat_init (void);
void lockstat_lock_slow (pthread_mutex_t *m, struct lockstat_hold *h,
                         struct lockstat_site *site);
void lockstat_unlock_slow (pthread_mutex_t *m, struct lockstat_hold *h);
int lockstat_wait (pthread_cond_t *c, pthread_mutex_t *m,
                   struct lockstat_hold *h, const struct timespec *abstime);
void lockstat_report (void);

static inline void
lockstat_lock (pthread_mutex_t *m, struct lockstat_hold *h,
               struct lockstat_site *site)
{
  if (!__atomic_load_n (&lockstat_on, __ATOMIC_RELAXED))
    pthread_mutex_lock (m);
  else
    lockstat_lock_slow (m, h, site);
}

static inline void
lockstat_unlock (pthread_mutex_t *m, struct lockstat_hold *h)
{
  if (!__atomic_load_n (&lockstat_on, __ATOMIC_RELAXED))
    pthread_mutex_unlock (m);
  else
    lockstat_unlock_slow (m, h);
}

#endif /* ABD_ASYNC_STORELOCK_H */
