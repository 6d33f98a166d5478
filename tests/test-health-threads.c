/* SPDX-License-Identifier: BSD-3-Clause */
/* Concurrent stress of the memcache filter's server health
 * (filters/memcache/health.c), shared by all of nbdkit's threads: many
 * threads acquire servers and report successes and failures at random,
 * and now and then drop every server's cache (health_invalidate_all).
 * Built with ThreadSanitizer by tests/test-tsan.sh (data races fail the
 * run); the checks here hold in any build:
 *
 * - a request given a generation never sees it go backwards;
 * - after health_invalidate_all returned, no request is given a
 *   generation from before it;
 * - a server that fails (slow, frozen, restarted) keeps its generation:
 *   block versions, not generations, make what it holds unreadable when
 *   a write goes by (writeseq.h), so its cache stays useful;
 * - the state machine, step by step (state_machine): a timeout makes a
 *   server suspect, not down; timeouts of requests sent before the last
 *   one counted are the same stall; HEALTH_SUSPECT_MAX in a row take it
 *   down, a hard failure at once; an answer to a request sent after the
 *   last timeout makes it up again, one sent before does not; a server
 *   taken down by timeouts is probed again within HEALTH_SOFT_RETRY_MS;
 *   one probe at a time, however slow, and its late answer or failure
 *   decides (slow_probes); a probe that never reports fails after the
 *   probe wait (lost_probe).
 */

#include <config.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "health.h"
#include "ring.h"

#define SERVERS 3

void nbdkit_error (const char *fs, ...) { (void) fs; }
void nbdkit_debug (const char *fs, ...) { (void) fs; }
void abd_log (int priority, const char *label, const char *fs, ...)
{
  (void) fs;
}

/* health.c names servers in its messages. */
static struct ring_server stub_servers[SERVERS] = {
  { .name = "s0" }, { .name = "s1" }, { .name = "s2" },
};
static const struct ring ring = { .servers = stub_servers, .n = SERVERS };
#define THREADS 8

static unsigned ops_per_thread = 20000;
static atomic_uint failures;

#define CHECK(cond, ...) do {                                   \
    if (!(cond)) {                                              \
      fprintf (stderr, "test-health-threads: " __VA_ARGS__);    \
      fprintf (stderr, "\n");                                   \
      atomic_fetch_add (&failures, 1);                          \
    }                                                           \
  } while (0)

static uint64_t
now_ns (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * UINT64_C (1000000000) + ts.tv_nsec;
}

static void *
worker (void *arg)
{
  unsigned seed = (unsigned) (uintptr_t) arg;
  uint64_t last_gen[SERVERS] = { 0 };
  uint64_t dropped[SERVERS] = { 0 };     /* 0: none */
  unsigned n;

  for (n = 0; n < ops_per_thread; n++) {
    size_t i = rand_r (&seed) % SERVERS, k;
    uint64_t gen, inc, start;
    unsigned dice;

    if (!health_acquire (i, &gen, &inc))
      continue;
    start = now_ns ();
    CHECK (gen >= last_gen[i], "server %zu: generation went back from %"
           PRIu64 " to %" PRIu64, i, last_gen[i], gen);
    CHECK (gen > dropped[i], "server %zu: given generation %" PRIu64
           " after it was dropped", i, gen);
    last_gen[i] = gen;
    dice = rand_r (&seed) % 100;
    if (dice < 3)
      health_report_failure (i, inc, start, dice == 0 ? HEALTH_FAIL_HARD
                             : HEALTH_FAIL_SOFT);
    else
      health_report_ok (i, inc, start);
    if (dice == 99 && n % 1000 == 0) {
      uint64_t before[SERVERS];

      for (k = 0; k < SERVERS; k++)
        before[k] = health_generation (k);
      health_invalidate_all ();
      for (k = 0; k < SERVERS; k++)
        if (before[k] > dropped[k])
          dropped[k] = before[k];
    }
  }
  return NULL;
}

/* Failing now and then: the generation never changes. */
static void
failures_keep_the_cache (void)
{
  uint64_t gen, inc, first = health_generation (0);
  unsigned n, ok = 0;

  for (n = 0; n < 20000; n++) {
    uint64_t start = now_ns ();

    if (!health_acquire (0, &gen, &inc))
      continue;
    ok++;
    if (n % 7 == 0)
      health_report_failure (0, inc, start, n % 2 ? HEALTH_FAIL_SOFT
                             : HEALTH_FAIL_HARD);
    else
      health_report_ok (0, inc, start);
  }
  CHECK (ok > 0, "server 0 never usable in the read-only phase");
  CHECK (health_generation (0) == first, "read failures changed the "
         "generation from %" PRIu64 " to %" PRIu64, first,
         health_generation (0));
}

static enum health_state
state_of (size_t i)
{
  struct health_view v;

  health_view (i, &v);
  return v.state;
}

/* The transitions, one at a time, on server 1 (memcache-retry 1000 ms). */
static void
state_machine (void)
{
  uint64_t gen, inc, early, t;
  unsigned k;

  CHECK (health_acquire (1, &gen, &inc), "server 1 not usable at start");
  early = now_ns ();                    /* a request sent before it all */
  t = now_ns ();
  health_report_failure (1, inc, t, HEALTH_FAIL_SOFT);
  CHECK (state_of (1) == HEALTH_SUSPECT, "one timeout: %s, not suspect",
         health_state_name (state_of (1)));
  CHECK (health_acquire (1, &gen, &inc) && health_usable (1),
         "a suspect server is not used");
  /* The same stall, seen by requests sent before it was reported. */
  for (k = 0; k < 10; k++)
    health_report_failure (1, inc, t, HEALTH_FAIL_SOFT);
  CHECK (state_of (1) == HEALTH_SUSPECT, "one stall seen by 11 requests "
         "took the server %s", health_state_name (state_of (1)));
  /* An answer already on its way does not clear it; a later one does. */
  health_report_ok (1, inc, early);
  CHECK (state_of (1) == HEALTH_SUSPECT, "an early answer cleared it");
  health_report_ok (1, inc, now_ns ());
  CHECK (state_of (1) == HEALTH_UP, "an answer did not make it up: %s",
         health_state_name (state_of (1)));

  /* HEALTH_SUSPECT_MAX timeouts in a row: down, probed again soon. */
  for (k = 0; k < HEALTH_SUSPECT_MAX; k++) {
    CHECK (state_of (1) != HEALTH_DOWN, "down after %u timeouts", k);
    health_report_failure (1, inc, now_ns (), HEALTH_FAIL_SOFT);
  }
  {
    struct health_view v;

    health_view (1, &v);
    CHECK (v.state == HEALTH_DOWN && !health_usable (1),
           "%u timeouts in a row: %s", HEALTH_SUSPECT_MAX,
           health_state_name (v.state));
    CHECK (v.next_probe_ms <= HEALTH_SOFT_RETRY_MS,
           "soft down: next probe in %" PRIi64 " ms", v.next_probe_ms);
    CHECK (v.generation == gen, "down changed the generation");
  }
  while (!health_acquire (1, &gen, &inc))
    ;                                   /* the probe, within 10 ms */
  CHECK (state_of (1) == HEALTH_PROBING, "not probing: %s",
         health_state_name (state_of (1)));
  health_report_ok (1, inc, now_ns ());
  CHECK (state_of (1) == HEALTH_UP, "probe ok: %s",
         health_state_name (state_of (1)));

  /* A refused connection: down at once, for memcache-retry. */
  CHECK (health_acquire (1, &gen, &inc), "server 1 not usable");
  health_report_failure (1, inc, now_ns (), HEALTH_FAIL_HARD);
  {
    struct health_view v;

    health_view (1, &v);
    CHECK (v.state == HEALTH_DOWN && v.next_probe_ms > HEALTH_SOFT_RETRY_MS,
           "hard failure: %s, next probe in %" PRIi64 " ms",
           health_state_name (v.state), v.next_probe_ms);
  }
  /* A report through the old incarnation changes nothing. */
  health_report_ok (1, inc, now_ns ());
  CHECK (state_of (1) == HEALTH_DOWN, "an old connection's answer counted");
}

static void
sleep_ms (unsigned ms)
{
  struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = ms % 1000 * 1000000L };

  while (nanosleep (&ts, &ts) == -1)
    ;
}

/* Take server I down with soft failures; then wait for and become its
 * probe (*INC its incarnation).
 */
static void
down_then_probe (size_t i, uint64_t *inc)
{
  uint64_t gen;
  unsigned k;

  CHECK (health_acquire (i, &gen, inc), "server %zu not usable", i);
  for (k = 0; k < HEALTH_SUSPECT_MAX; k++)
    health_report_failure (i, *inc, now_ns (), HEALTH_FAIL_SOFT);
  CHECK (state_of (i) == HEALTH_DOWN, "not down: %s",
         health_state_name (state_of (i)));
  while (!health_acquire (i, &gen, inc))
    sleep_ms (1);
  CHECK (state_of (i) == HEALTH_PROBING, "not probing: %s",
         health_state_name (state_of (i)));
}

/* Probes slower than the probe interval (memcache-retry 1000 ms, probe
 * wait 5 s): only one probe at a time, and its report decides.  Before,
 * a probe still out after the interval was replaced and its report
 * ignored: a busy server never came back, a frozen one was probed every
 * 10 ms.
 */
static void
slow_probes (void)
{
  struct health_view v;
  uint64_t gen, inc, inc2, early;

  down_then_probe (2, &inc);
  early = now_ns ();
  sleep_ms (3 * HEALTH_SOFT_RETRY_MS);
  CHECK (!health_acquire (2, &gen, &inc2), "a second probe while one is out");
  CHECK (state_of (2) == HEALTH_PROBING, "probe out: %s",
         health_state_name (state_of (2)));
  health_report_ok (2, inc, early);
  CHECK (state_of (2) == HEALTH_UP, "a late probe answer did not bring it "
         "back: %s", health_state_name (state_of (2)));

  /* A probe that fails late: down, the interval doubled. */
  down_then_probe (2, &inc);
  sleep_ms (3 * HEALTH_SOFT_RETRY_MS);
  health_report_failure (2, inc, now_ns (), HEALTH_FAIL_SOFT);
  health_view (2, &v);
  CHECK (v.state == HEALTH_DOWN && v.backoff_ms == 2 * HEALTH_SOFT_RETRY_MS,
         "a late probe failure: %s, interval %" PRIu64 " ms",
         health_state_name (v.state), v.backoff_ms);

  /* Up again; a timeout of a request sent before the last counted stall
   * is that stall: it does not make the server suspect again.
   */
  early = now_ns ();
  while (!health_acquire (2, &gen, &inc))
    sleep_ms (1);
  health_report_ok (2, inc, now_ns ());
  CHECK (state_of (2) == HEALTH_UP, "probe ok: %s",
         health_state_name (state_of (2)));
  health_report_failure (2, inc, early - 1000000000, HEALTH_FAIL_SOFT);
  CHECK (state_of (2) == HEALTH_UP, "an old stall made it %s",
         health_state_name (state_of (2)));
}

/* A probe that never reports (probe wait 50 ms): after the wait, the
 * next request finds it failed: down, interval doubled; its report, if
 * it ever comes, is ignored.
 */
static void
lost_probe (void)
{
  struct health_view v;
  uint64_t gen, inc, inc2;

  down_then_probe (0, &inc);
  sleep_ms (60);
  CHECK (!health_acquire (0, &gen, &inc2), "used when its probe was lost");
  health_view (0, &v);
  CHECK (v.state == HEALTH_DOWN && v.backoff_ms == 2 * HEALTH_SOFT_RETRY_MS,
         "a lost probe: %s, interval %" PRIu64 " ms",
         health_state_name (v.state), v.backoff_ms);
  health_report_ok (0, inc, now_ns ());
  CHECK (state_of (0) == HEALTH_DOWN, "the lost probe's answer counted");
}

int
main (int argc, char *argv[])
{
  pthread_t threads[THREADS];
  struct health_view v;
  unsigned t;
  size_t i;

  if (argc > 1)
    ops_per_thread = strtoul (argv[1], NULL, 0);
  /* Probes due after 1 ms: servers go down and come back all the time. */
  if (health_init (&ring, 1, 4, 50) == -1)
    return 1;
  for (t = 0; t < THREADS; t++)
    pthread_create (&threads[t], NULL, worker, (void *) (uintptr_t) (t + 1));
  for (t = 0; t < THREADS; t++)
    pthread_join (threads[t], NULL);
  for (i = 0; i < SERVERS; i++) {
    health_view (i, &v);
    printf ("server %zu: %s, generation %" PRIu64 ", %" PRIu64 " downs\n",
            i, health_state_name (v.state), v.generation, v.downs);
    CHECK (v.downs > 0, "server %zu never went down: the test did nothing", i);
  }
  health_free ();
  if (health_init (&ring, 1, 4, 50) == -1)
    return 1;
  failures_keep_the_cache ();
  health_free ();
  if (health_init (&ring, 1000, 30000, 5000) == -1)
    return 1;
  state_machine ();
  slow_probes ();
  health_free ();
  if (health_init (&ring, 1000, 30000, 50) == -1)
    return 1;
  lost_probe ();
  health_free ();
  if (atomic_load (&failures)) {
    fprintf (stderr, "test-health-threads: %u failed checks\n",
             atomic_load (&failures));
    return 1;
  }
  printf ("test-health-threads: %u threads x %u ops, all checks passed\n",
          THREADS, ops_per_thread);
  return 0;
}
