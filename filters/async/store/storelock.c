/* SPDX-License-Identifier: BSD-3-Clause */
/* abd async filter: the store lock's statistics (storelock.h). */

#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storelock.h"

bool lockstat_on;
static pthread_mutex_t sites_lock = PTHREAD_MUTEX_INITIALIZER;
static struct lockstat_site *sites;
static uint64_t started_ns;

static uint64_t
mono_ns (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (uint64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void
lockstat_init (void)
{
  const char *v = getenv ("ABD_STORE_LOCK_STATS");

  if (v && *v && strcmp (v, "0") != 0 &&
      !__atomic_load_n (&lockstat_on, __ATOMIC_RELAXED)) {
    started_ns = mono_ns ();
    __atomic_store_n (&lockstat_on, true, __ATOMIC_RELEASE);
  }
}

static void
add (uint64_t *p, uint64_t v)
{
  __atomic_fetch_add (p, v, __ATOMIC_RELAXED);
}

static void
hold_begin (struct lockstat_hold *h, struct lockstat_site *site)
{
  if (!__atomic_load_n (&site->listed, __ATOMIC_ACQUIRE)) {
    pthread_mutex_lock (&sites_lock);
    if (!site->listed) {
      site->next = sites;
      sites = site;
      __atomic_store_n (&site->listed, 1, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock (&sites_lock);
  }
  h->site = site;
  h->t0 = mono_ns ();
}

static void
hold_end (struct lockstat_hold *h)
{
  uint64_t held = mono_ns () - h->t0, max;
  struct lockstat_site *site = h->site;

  add (&site->hold_ns, held);
  max = __atomic_load_n (&site->max_hold_ns, __ATOMIC_RELAXED);
  while (held > max &&
         !__atomic_compare_exchange_n (&site->max_hold_ns, &max, held, false,
                                       __ATOMIC_RELAXED, __ATOMIC_RELAXED))
    ;
  h->site = NULL;
}

void
lockstat_lock_slow (pthread_mutex_t *m, struct lockstat_hold *h,
                    struct lockstat_site *site)
{
  add (&site->acquires, 1);
  if (pthread_mutex_trylock (m) != 0) {
    uint64_t t = mono_ns ();

    pthread_mutex_lock (m);
    add (&site->contended, 1);
    add (&site->wait_ns, mono_ns () - t);
  }
  hold_begin (h, site);
}

void
lockstat_unlock_slow (pthread_mutex_t *m, struct lockstat_hold *h)
{
  if (h->site)
    hold_end (h);
  pthread_mutex_unlock (m);
}

int
lockstat_wait (pthread_cond_t *c, pthread_mutex_t *m,
               struct lockstat_hold *h, const struct timespec *abstime)
{
  struct lockstat_site *site = h->site;
  int r;

  if (site)
    hold_end (h);
  r = abstime ? pthread_cond_timedwait (c, m, abstime)
              : pthread_cond_wait (c, m);
  if (site)
    hold_begin (h, site);
  return r;
}

/* Every site, most waited for first, and the totals, on stderr. */
void
lockstat_report (void)
{
  uint64_t wall, acq = 0, cont = 0, wait = 0, hold = 0;
  struct lockstat_site *p;
  bool more = true;

  if (!__atomic_load_n (&lockstat_on, __ATOMIC_ACQUIRE))
    return;
  wall = mono_ns () - started_ns;
  pthread_mutex_lock (&sites_lock);
  fprintf (stderr, "store lock statistics over %.3f s "
           "(site: acquires, contended, wait ms, hold ms, max hold us, "
           "mean hold us)\n", wall / 1e9);
  for (p = sites; p; p = p->next) {
    acq += p->acquires;
    cont += p->contended;
    wait += p->wait_ns;
    hold += p->hold_ns;
    p->listed = 2;              /* not printed yet */
  }
  while (more) {                /* by wait time, a selection sort */
    struct lockstat_site *best = NULL;

    for (p = sites; p; p = p->next)
      if (p->listed == 2 && (!best || p->wait_ns > best->wait_ns ||
                             (p->wait_ns == best->wait_ns &&
                              p->hold_ns > best->hold_ns)))
        best = p;
    more = best != NULL;
    if (best) {
      best->listed = 1;
      fprintf (stderr, "  %-28s %10llu %9llu %10.1f %10.1f %8.1f %7.2f\n",
               best->name, (unsigned long long) best->acquires,
               (unsigned long long) best->contended, best->wait_ns / 1e6,
               best->hold_ns / 1e6, best->max_hold_ns / 1e3,
               best->acquires ? best->hold_ns / 1e3 / best->acquires : 0);
    }
  }
  fprintf (stderr, "  %-28s %10llu %9llu %10.1f %10.1f  (held %.1f%% of "
           "wall, waited %.1f%% of wall summed over threads)\n", "TOTAL",
           (unsigned long long) acq, (unsigned long long) cont, wait / 1e6,
           hold / 1e6, 100.0 * hold / wall, 100.0 * wait / wall);
  pthread_mutex_unlock (&sites_lock);
}
