/* SPDX-License-Identifier: BSD-3-Clause */
/* nbdkit-memcache-filter: server health, incarnations and generations.
 *
 * Every server is in one of four states, and every transition is made in
 * this file (health_go_down, health_acquire, health_report_*):
 *
 *   UP       --soft failure-->          SUSPECT  (failures = 1)
 *   UP, SUSPECT --hard failure-->       DOWN     (probe after memcache-retry)
 *   SUSPECT  --soft failure, sent after
 *              the last counted one-->  SUSPECT  (failures + 1), or DOWN
 *                                                once HEALTH_SUSPECT_MAX
 *                                                (probe after
 *                                                HEALTH_SOFT_RETRY_MS)
 *   SUSPECT  --success, sent after
 *              the last counted failure--> UP
 *   DOWN     --probe time reached-->    PROBING  (the request that noticed
 *                                                is the probe)
 *   PROBING  --probe ok-->              UP       (backoff reset)
 *   PROBING  --probe failure-->         DOWN     (backoff x2, at least
 *                                                memcache-retry if hard,
 *                                                up to the cap)
 *   PROBING  --no report in the probe
 *              wait (health_init)-->    DOWN     (as a failed probe)
 *
 * While a probe is out, however long it takes, no other request probes:
 * its answer decides.
 *
 * Every move to DOWN or PROBING adds one to the incarnation.
 *
 * Why not down at the first timeout: a timeout only says that an answer
 * did not come in memcache-timeout, and on a busy host (a batch queued
 * behind others, the server's thread not scheduled for a few ms) that
 * happens to servers that are perfectly alive.  Marking such a server
 * down for its retry interval threw its whole cache away for that long:
 * its blocks were read from the lower device and their fills dropped, so
 * the cache never warmed under load.  So, as mcrouter does with its
 * "soft TKO", timeouts only make a server SUSPECT; it is still used (a
 * request pays at most the timeout, as it would have anyway), and goes
 * down only after HEALTH_SUSPECT_MAX of them in a row.  "In a row" counts
 * stalls, not requests: a failure of an operation sent before the last
 * counted failure was reported saw the same stall (16 requests in flight
 * on one frozen server time out together) and is not counted again; a
 * success counts only if sent after that failure, so an answer that was
 * already on its way does not clear a server that has just stalled.  A
 * frozen server is then down after about HEALTH_SUSPECT_MAX timeouts.
 * A hard failure (connection refused or reset, the server closed the
 * connection: the "hard TKO") takes it down at once: the next request
 * would fail the same way.  A server taken down by timeouts is probed
 * again soon (HEALTH_SOFT_RETRY_MS, doubling); one taken down by a hard
 * failure after memcache-retry (doubling); both up to the cap.
 *
 * The incarnation names the server's connections: a connection made in an
 * older incarnation is never used again, and reports made through one are
 * ignored (an old failure must not take down a server that came back).
 * A connection whose own batch failed is closed by its owner (conn.c,
 * conn-meta.c), so SUSPECT needs no new incarnation.
 *
 * The generation is part of every key, and it changes only when every
 * value this device put on a server must be dropped at once: a zero
 * or trim too big to handle block by block (writer.c,
 * health_invalidate_all), or more writes skipping a down server than the
 * fill thread can remember to delete (filler.c, health_invalidate).
 * Nothing else needs it, because a value is
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
 *     memcached -e) no longer authenticates; the fill thread deletes it
 *     once the server is up again (filler_forget), so it costs a plain
 *     miss and no memory, not an authentication failure.
 *
 * So a slow or frozen server keeps its cache: it goes down (its blocks
 * are read from the lower device meanwhile) and, once a probe succeeds,
 * serves what it held under the same generation.
 *
 * Every generation handed out is new: larger than any other handed out
 * by this process (generation_max), whichever server had it.  This is
 * what makes a server that joins the pool (abdctl servers add, pool.c)
 * safe however old its memory is: health_server_join gives its slot a
 * new generation, so nothing the server holds from an earlier time in
 * the pool (removed, then added again, with its items) is ever asked
 * for, even values whose block version is still current but that a
 * mass invalidation (which raises generations, not versions) made
 * stale while the server was out of the pool.
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
#include "ring.h"

struct server_health {
  enum health_state state;
  uint64_t generation;
  uint64_t incarnation;
  uint64_t downs;
  unsigned failures;            /* SUSPECT: soft failures counted */
  uint64_t last_failure_ns;     /* when the last counted failure was
                                   reported (CLOCK_MONOTONIC) */
  uint64_t backoff_ms;
  uint64_t next_probe_ns;       /* CLOCK_MONOTONIC: when DOWN, the next
                                   probe; when PROBING, when to give up
                                   waiting for the probe's report */
};

/* health_lock protects every field of every entry of servers. */
static pthread_mutex_t health_lock = PTHREAD_MUTEX_INITIALIZER;
static struct server_health *servers;
static size_t nr_servers;
static unsigned retry_ms, retry_cap_ms, probe_wait_ms;
static uint64_t generation_max;         /* the largest handed out */

/* Set by health_init, read-only afterwards: the servers' names, for the
 * messages.
 */
static const struct ring *ring;

static uint64_t
health_now_ns (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * UINT64_C (1000000000) + ts.tv_nsec;
}

int
health_init (const struct ring *r, unsigned retry, unsigned cap,
             unsigned probe_wait)
{
  size_t i;

  servers = calloc (r->n, sizeof *servers);
  if (servers == NULL) {
    nbdkit_error ("calloc: %m");
    return -1;
  }
  ring = r;
  nr_servers = r->n;
  retry_ms = retry;
  retry_cap_ms = cap > retry ? cap : retry;
  probe_wait_ms = probe_wait;
  for (i = 0; i < nr_servers; i++) {
    servers[i].state = HEALTH_UP;
    servers[i].generation = 1;
    servers[i].backoff_ms = retry_ms;
  }
  generation_max = 1;
  return 0;
}

void
health_server_join (size_t i)
{
  struct server_health *h = &servers[i];

  pthread_mutex_lock (&health_lock);
  h->state = HEALTH_UP;
  h->generation = ++generation_max;
  h->incarnation++;             /* no connection of its last server */
  h->downs = 0;
  h->failures = 0;
  h->last_failure_ns = 0;
  h->backoff_ms = retry_ms;
  h->next_probe_ns = 0;
  pthread_mutex_unlock (&health_lock);
}

void
health_free (void)
{
  free (servers);
  servers = NULL;
  nr_servers = 0;
  ring = NULL;
}

/* Any state but DOWN -> DOWN, after a failure HOW.  Called with
 * health_lock held.
 */
static void
health_go_down (size_t i, struct server_health *h, enum health_failure how,
                uint64_t now)
{
  if (h->state == HEALTH_PROBING) {
    h->backoff_ms *= 2;
    /* A server down for timeouts whose probe is refused is gone. */
    if (how == HEALTH_FAIL_HARD && h->backoff_ms < retry_ms)
      h->backoff_ms = retry_ms;
    if (h->backoff_ms > retry_cap_ms)
      h->backoff_ms = retry_cap_ms;
    nbdkit_debug ("memcache: server %s: still down, next try in "
                  "%" PRIu64 " ms", ring->servers[i].name, h->backoff_ms);
  }
  else {
    h->backoff_ms = how == HEALTH_FAIL_HARD || retry_ms < HEALTH_SOFT_RETRY_MS
      ? retry_ms : HEALTH_SOFT_RETRY_MS;
    h->downs++;
    abd_log (LOG_WARNING, "memcache",
             "server %s is down (%s): its blocks are read from the lower "
             "device, next try in %" PRIu64 " ms", ring->servers[i].name,
             how == HEALTH_FAIL_HARD ? "its connection failed"
             : "requests in a row timed out",
             h->backoff_ms);
  }
  h->state = HEALTH_DOWN;
  h->failures = 0;
  h->incarnation++;
  h->next_probe_ns = now + h->backoff_ms * UINT64_C (1000000);
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
  case HEALTH_SUSPECT:
    use = true;
    break;
  case HEALTH_DOWN:
    if (now >= h->next_probe_ns) {
      h->state = HEALTH_PROBING;
      h->incarnation++;
      h->next_probe_ns = now + probe_wait_ms * UINT64_C (1000000);
      use = true;
      nbdkit_debug ("memcache: server %s: probing", ring->servers[i].name);
    }
    break;
  case HEALTH_PROBING:
    /* One probe at a time, however long it takes to report: replacing
     * it after the probe interval threw away the answer of a busy
     * server that takes longer than that (it never came back up) and
     * the failure of a frozen one (the interval never doubled).  A
     * probe that has not reported in probe_wait_ms (its session was
     * lost without a report) failed.
     */
    if (now >= h->next_probe_ns) {
      nbdkit_debug ("memcache: server %s: the probe did not report",
                    ring->servers[i].name);
      health_go_down (i, h, HEALTH_FAIL_SOFT, now);
    }
    break;
  }
  *gen = h->generation;
  *incarnation = h->incarnation;
  pthread_mutex_unlock (&health_lock);
  return use;
}

bool
health_acquire_usable (size_t i, uint64_t *gen, uint64_t *incarnation)
{
  struct server_health *h = &servers[i];
  bool use;

  /* One lock hold: health_usable then health_acquire could find the
   * server gone down and its probe due in between, and probe.
   */
  pthread_mutex_lock (&health_lock);
  use = h->state == HEALTH_UP || h->state == HEALTH_SUSPECT;
  *gen = h->generation;
  *incarnation = h->incarnation;
  pthread_mutex_unlock (&health_lock);
  return use;
}

bool
health_usable (size_t i)
{
  bool usable;

  pthread_mutex_lock (&health_lock);
  usable = servers[i].state == HEALTH_UP || servers[i].state == HEALTH_SUSPECT;
  pthread_mutex_unlock (&health_lock);
  return usable;
}

void
health_report_ok (size_t i, uint64_t incarnation, uint64_t started_ns)
{
  struct server_health *h = &servers[i];

  pthread_mutex_lock (&health_lock);
  if (h->incarnation == incarnation) {
    switch (h->state) {
    case HEALTH_PROBING:
      h->state = HEALTH_UP;
      h->backoff_ms = retry_ms;
      abd_log (LOG_INFO, "memcache",
               "server %s is up again (generation %" PRIu64 ")",
               ring->servers[i].name, h->generation);
      break;
    case HEALTH_SUSPECT:
      if (started_ns > h->last_failure_ns) {
        nbdkit_debug ("memcache: server %s: up (answered after %u "
                      "timeouts)", ring->servers[i].name, h->failures);
        h->state = HEALTH_UP;
        h->failures = 0;
      }
      break;
    case HEALTH_UP:
    case HEALTH_DOWN:
      break;
    }
  }
  pthread_mutex_unlock (&health_lock);
}

void
health_report_failure (size_t i, uint64_t incarnation, uint64_t started_ns,
                       enum health_failure how)
{
  struct server_health *h = &servers[i];
  uint64_t now;

  pthread_mutex_lock (&health_lock);
  /* Read under the lock: a failure reported after this one, of a
   * request sent in between, must see a later last_failure_ns.
   */
  now = health_now_ns ();
  if (h->incarnation == incarnation) {
    switch (h->state) {
    case HEALTH_UP:
      if (how == HEALTH_FAIL_HARD)
        health_go_down (i, h, how, now);
      else if (started_ns <= h->last_failure_ns)
        ;       /* sent before the stall counted last: the same stall */
      else {
        h->state = HEALTH_SUSPECT;
        h->failures = 1;
        h->last_failure_ns = now;
        nbdkit_debug ("memcache: server %s: suspect (a request timed out)",
                      ring->servers[i].name);
      }
      break;
    case HEALTH_SUSPECT:
      if (how == HEALTH_FAIL_HARD)
        health_go_down (i, h, how, now);
      else if (started_ns > h->last_failure_ns) {
        h->last_failure_ns = now;
        if (++h->failures >= HEALTH_SUSPECT_MAX)
          health_go_down (i, h, how, now);
      }
      break;
    case HEALTH_PROBING:
      health_go_down (i, h, how, now);
      break;
    case HEALTH_DOWN:
      break;
    }
  }
  pthread_mutex_unlock (&health_lock);
}

void
health_server_leave (size_t i)
{
  pthread_mutex_lock (&health_lock);
  servers[i].incarnation++;
  pthread_mutex_unlock (&health_lock);
}

void
health_invalidate_all (void)
{
  size_t i;

  pthread_mutex_lock (&health_lock);
  for (i = 0; i < nr_servers; i++)
    servers[i].generation = ++generation_max;
  pthread_mutex_unlock (&health_lock);
}

void
health_invalidate (size_t i)
{
  pthread_mutex_lock (&health_lock);
  servers[i].generation = ++generation_max;
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
  if (gen > generation_max)
    generation_max = gen;
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
  view->failures = h->failures;
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
  case HEALTH_SUSPECT: return "suspect";
  case HEALTH_DOWN: return "down";
  case HEALTH_PROBING: return "probing";
  }
  return "?";
}
