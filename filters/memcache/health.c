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
 * The generation is part of every key, and it changes only when every
 * value this device put on every server must be dropped at once: a zero
 * or trim too big to handle block by block (writer.c,
 * health_invalidate_all).  Nothing else needs it, because a value is
 * bound to its block's version (writeseq.h, value.h), which goes up after
 * every write of the block reached the lower device:
 *
 *   - a store or delete whose outcome is unknown (timeout, broken
 *     connection), even one the server carries out much later, can only
 *     put a value sealed under a version that is already past, or remove
 *     one: it can never make an old block readable;
 *   - a write that skips a server because it is down or being probed
 *     raises the version all the same, so whatever the server still
 *     holds for the block (also after a restart with its old memory,
 *     memcached -e) no longer authenticates.
 *
 * So a slow or frozen server keeps its cache: it goes down (its blocks
 * are read from the lower device meanwhile) and, once a probe succeeds,
 * serves what it held under the same generation.
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

bool
health_acquire (size_t i, uint64_t *gen, uint64_t *incarnation)
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
      h->next_probe_ns = now + h->backoff_ms * UINT64_C (1000000);
      use = true;
      nbdkit_debug ("memcache: server %s: probing", ring.servers[i].name);
    }
    break;
  }
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

void
health_restore_generation (size_t i, uint64_t gen)
{
  pthread_mutex_lock (&health_lock);
  servers[i].generation = gen;
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
