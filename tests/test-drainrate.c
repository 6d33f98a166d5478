/* SPDX-License-Identifier: BSD-3-Clause */
/* abd tests: the write-back rate meter of the async filter (drainrate.c),
 * on a synthetic clock: idle time does not count, the average follows a
 * change of speed, failed writes and a stalled write pull it down.
 */

#include <config.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "drainrate.h"

#define CHECK(cond, ...) \
  do { if (!(cond)) { fprintf (stderr, "test-drainrate: FAIL: " __VA_ARGS__); \
         fputc ('\n', stderr); exit (1); } } while (0)

static uint64_t t;              /* microseconds */

/* N writes of COST bytes, one at a time, each taking US, then IDLE_US. */
static void
writes (struct drain_rate *r, unsigned n, uint64_t cost, uint64_t us,
        uint64_t idle_us)
{
  while (n-- > 0) {
    drain_rate_busy (r, true, t);
    t += us;
    drain_rate_done (r, cost, t);
    drain_rate_busy (r, false, t);
    t += idle_us;
  }
}

int
main (void)
{
  struct drain_rate r = { 0 };
  double rate;

  CHECK (!drain_rate_get (&r, t, &rate), "a rate before any write");
  writes (&r, 5, 4096, 10000, 0);               /* 50 ms busy */
  CHECK (!drain_rate_get (&r, t, &rate), "a rate after 50 ms busy");

  /* 4 KiB per 10 ms = 409600 B/s, with long idle gaps between writes. */
  writes (&r, 100, 4096, 10000, 1000000);
  CHECK (drain_rate_get (&r, t, &rate), "no rate after 1 s busy");
  CHECK (fabs (rate - 409600) < 1, "idle time counted: %.0f", rate);

  /* Twice as fast: the average follows within a few seconds of work. */
  writes (&r, 600, 4096, 5000, 0);
  drain_rate_get (&r, t, &rate);
  CHECK (fabs (rate - 819200) < 8192, "did not follow: %.0f", rate);

  /* Failed writes: busy, nothing written back. */
  writes (&r, 200, 0, 10000, 0);
  drain_rate_get (&r, t, &rate);
  CHECK (rate < 819200 * 0.1, "failures did not pull it down: %.0f", rate);

  /* A write in flight for 10 s: the rate falls without a completion. */
  writes (&r, 600, 4096, 5000, 0);
  drain_rate_busy (&r, true, t);
  t += 10000000;
  CHECK (drain_rate_get (&r, t, &rate) && rate < 4096, "stall: %.0f", rate);
  drain_rate_done (&r, 4096, t);
  drain_rate_busy (&r, false, t);
  drain_rate_get (&r, t, &rate);
  CHECK (rate < 819200 * 0.8, "stall not in the average: %.0f", rate);

  printf ("test-drainrate: OK\n");
  return 0;
}
