/* SPDX-License-Identifier: BSD-3-Clause */
/* abd async filter: the write-back rate meter (see drainrate.h). */

#include <config.h>

#include "drainrate.h"

/* Busy time of the open sample up to NOW. */
static uint64_t
sample_busy (const struct drain_rate *r, uint64_t now_us)
{
  return r->sample_busy_us +
    (r->busy && now_us > r->busy_since_us ? now_us - r->busy_since_us : 0);
}

void
drain_rate_busy (struct drain_rate *r, bool busy, uint64_t now_us)
{
  if (busy == r->busy)
    return;
  if (busy)
    r->busy_since_us = now_us;
  else
    r->sample_busy_us = sample_busy (r, now_us);
  r->busy = busy;
}

void
drain_rate_done (struct drain_rate *r, uint64_t cost, uint64_t now_us)
{
  uint64_t busy_us;
  double sample;

  r->sample_cost += cost;
  busy_us = sample_busy (r, now_us);
  if (busy_us < DRAIN_RATE_SAMPLE_US)
    return;
  sample = r->sample_cost * 1e6 / busy_us;
  if (r->nsamples++ == 0)
    r->rate = sample;
  else
    r->rate += DRAIN_RATE_WEIGHT * (sample - r->rate);
  r->sample_cost = 0;
  r->sample_busy_us = 0;
  r->busy_since_us = now_us;
}

bool
drain_rate_get (const struct drain_rate *r, uint64_t now_us, double *rate)
{
  uint64_t busy_us = sample_busy (r, now_us);

  *rate = r->rate;
  /* The open sample is overdue only if no write finished for a whole
   * sample's time: then the device is slower than the average says.
   */
  if (busy_us >= 2 * DRAIN_RATE_SAMPLE_US) {
    double open = r->sample_cost * 1e6 / busy_us;

    if (r->nsamples == 0 || open < *rate) {
      *rate = open;
      return true;
    }
  }
  return r->nsamples > 0;
}
