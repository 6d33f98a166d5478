/* SPDX-License-Identifier: BSD-3-Clause */
/* nbdkit-memcache-filter: server health, incarnations and generations.
 *
 * Every server is in one of three states, and every transition is made in
 * this file:
 *
 *   UP       --failure-->             DOWN     (incarnation + 1)
 *   DOWN     --retry time reached-->  PROBING  (incarnation + 1; the request
 *                                               that noticed is the probe)
 *   PROBING  --probe ok-->            UP       (backoff reset)
 *   PROBING  --probe failure-->       DOWN     (incarnation + 1, backoff x2)
 *   PROBING  --no report in time-->   PROBING  (incarnation + 1, new probe)
 *
 * A failure is a timeout or a connection error: the server is marked down
 * at once, so the next requests for its blocks go straight to the lower
 * device and cost nothing.  libmemcached cannot do this for us: a frozen
 * server accepts connections and each request would pay the timeout again.
 * The incarnation names the server's connections: a connection made in an
 * older incarnation is never used again, and reports made through one are
 * ignored (an old failure must not take down a server that came back).
 *
 * The generation is part of every key.  Invariant: a value is trusted only
 * while the server's generation is the one it was stored under.  The
 * generation changes when this device may have missed changing a value on
 * the server: a cache write or delete with an unknown outcome, or a write
 * of one of its blocks that skipped it because it was down or being
 * probed.  While the server is UP that happens at once; otherwise the
 * server is "tainted" and the generation changes before it is used again
 * (at the probe, and again when the probe succeeds if a write was skipped
 * meanwhile).  So a server that froze holding a set or delete, or that
 * restarted with its old memory while writes went by, can never serve what
 * it held before: its old keys are never asked for.  A server that was
 * only slow to answer reads, with no write going by, keeps its generation
 * and its cache.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include <nbdkit-filter.h>

#include "health.h"
#include "log.h"
#include "memcache.h"

struct server_health {
  enum health_state state;
  uint64_t generation;
  uint64_t incarnation;
  bool tainted;                 /* change the generation before use */
  uint64_t downs;
  uint64_t backoff_ms;
  uint64_t next_probe_ns;       /* CLOCK_MONOTONIC: when DOWN, the next
                                   probe; when PROBING, when to give up
                                   waiting for the probe's report */
};

/* health_lock protects every field of every entry of servers. */
static pthread_mutex_t health_lock = PTHREAD_MUTEX_INITIALIZER;
static struct server_health *servers;
static size_t nr_servers;
static unsigned retry_ms, retry_cap_ms;

static uint64_t
health_now_ns (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * UINT64_C (1000000000) + ts.tv_nsec;
}

int
health_init (size_t n, unsigned retry, unsigned cap)
{
  size_t i;

  servers = calloc (n, sizeof *servers);
  if (servers == NULL) {
    nbdkit_error ("calloc: %m");
    return -1;
  }
  nr_servers = n;
  retry_ms = retry;
  retry_cap_ms = cap > retry ? cap : retry;
  for (i = 0; i < n; i++) {
    servers[i].state = HEALTH_UP;
    servers[i].generation = 1;
    servers[i].backoff_ms = retry_ms;
  }
  return 0;
}

void
health_free (void)
{
  free (servers);
  servers = NULL;
  nr_servers = 0;
}

/* Called with health_lock held. */
static void
health_go_down (struct server_health *h)
{
  if (h->state == HEALTH_PROBING) {
    h->backoff_ms *= 2;
    if (h->backoff_ms > retry_cap_ms)
      h->backoff_ms = retry_cap_ms;
  }
  else {
    h->backoff_ms = retry_ms;
    h->downs++;
  }
  h->state = HEALTH_DOWN;
  h->incarnation++;
  h->next_probe_ns = health_now_ns () + h->backoff_ms * UINT64_C (1000000);
}

/* Called with health_lock held. */
static void
health_untaint (struct server_health *h)
{
  if (h->tainted) {
    h->generation++;
    h->tainted = false;
  }
}

bool
health_acquire (size_t i, bool writing, uint64_t *gen, uint64_t *incarnation)
{
  struct server_health *h = &servers[i];
  uint64_t now = health_now_ns ();
  bool use = false;

  pthread_mutex_lock (&health_lock);
  switch (h->state) {
  case HEALTH_UP:
    use = true;
    break;
  case HEALTH_DOWN:
  case HEALTH_PROBING:
    if (now >= h->next_probe_ns) {
      h->state = HEALTH_PROBING;
      h->incarnation++;
      health_untaint (h);
      h->next_probe_ns = now + h->backoff_ms * UINT64_C (1000000);
      use = true;
      nbdkit_debug ("memcache: server %s: probing", ring.servers[i].name);
    }
    break;
  }
  /* A write that cannot reach the server leaves a value there that may
   * be older than the lower device's: decided under the same lock as the
   * state, so that a probe cannot bring the server back in between.
   */
  if (!use && writing)
    h->tainted = true;
  *gen = h->generation;
  *incarnation = h->incarnation;
  pthread_mutex_unlock (&health_lock);
  return use;
}

void
health_report_ok (size_t i, uint64_t incarnation)
{
  struct server_health *h = &servers[i];

  pthread_mutex_lock (&health_lock);
  if (h->incarnation == incarnation && h->state == HEALTH_PROBING) {
    h->state = HEALTH_UP;
    h->backoff_ms = retry_ms;
    health_untaint (h);
    abd_log (LOG_INFO, "memcache",
             "server %s is up again (generation %" PRIu64 ")",
             ring.servers[i].name, h->generation);
  }
  pthread_mutex_unlock (&health_lock);
}

void
health_report_failure (size_t i, uint64_t incarnation)
{
  struct server_health *h = &servers[i];

  pthread_mutex_lock (&health_lock);
  if (h->incarnation == incarnation && h->state != HEALTH_DOWN) {
    bool was_up = h->state == HEALTH_UP;

    health_go_down (h);
    if (was_up)
      abd_log (LOG_WARNING, "memcache",
               "server %s is down (a request timed out or its connection "
               "failed): its blocks are read from the lower device, next "
               "try in %" PRIu64 " ms", ring.servers[i].name, h->backoff_ms);
    else
      nbdkit_debug ("memcache: server %s: still down, next try in "
                    "%" PRIu64 " ms", ring.servers[i].name, h->backoff_ms);
  }
  pthread_mutex_unlock (&health_lock);
}

void
health_report_uncertain (size_t i, uint64_t gen)
{
  struct server_health *h = &servers[i];

  pthread_mutex_lock (&health_lock);
  if (h->generation == gen) {
    if (h->state == HEALTH_UP)
      h->generation++;
    else
      h->tainted = true;
  }
  pthread_mutex_unlock (&health_lock);
}

void
health_invalidate_all (void)
{
  size_t i;

  pthread_mutex_lock (&health_lock);
  for (i = 0; i < nr_servers; i++)
    servers[i].generation++;
  pthread_mutex_unlock (&health_lock);
}

uint64_t
health_generation (size_t i)
{
  uint64_t gen;

  pthread_mutex_lock (&health_lock);
  gen = servers[i].generation;
  pthread_mutex_unlock (&health_lock);
  return gen;
}

uint64_t
health_generation_to_keep (size_t i)
{
  uint64_t gen;

  pthread_mutex_lock (&health_lock);
  gen = servers[i].generation + (servers[i].tainted ? 1 : 0);
  pthread_mutex_unlock (&health_lock);
  return gen;
}

void
health_restore_generation (size_t i, uint64_t gen)
{
  pthread_mutex_lock (&health_lock);
  servers[i].generation = gen;
  servers[i].tainted = false;
  pthread_mutex_unlock (&health_lock);
}

uint64_t
health_incarnation (size_t i)
{
  uint64_t incarnation;

  pthread_mutex_lock (&health_lock);
  incarnation = servers[i].incarnation;
  pthread_mutex_unlock (&health_lock);
  return incarnation;
}

void
health_view (size_t i, struct health_view *view)
{
  struct server_health *h = &servers[i];
  uint64_t now = health_now_ns ();

  pthread_mutex_lock (&health_lock);
  view->state = h->state;
  view->generation = h->generation;
  view->downs = h->downs;
  view->backoff_ms = h->backoff_ms;
  view->next_probe_ms = h->state != HEALTH_DOWN ? 0
    : h->next_probe_ns > now ? (int64_t) ((h->next_probe_ns - now) / 1000000)
    : 0;
  pthread_mutex_unlock (&health_lock);
}

const char *
health_state_name (enum health_state state)
{
  switch (state) {
  case HEALTH_UP: return "up";
  case HEALTH_DOWN: return "down";
  case HEALTH_PROBING: return "probing";
  }
  return "?";
}
