/* SPDX-License-Identifier: BSD-3-Clause */
/* abd async filter: the measured write-back rate that bounds dirty data by
 * the time it takes to drain (async-max-drain-seconds).
 *
 * What a drain can achieve is the write-back throughput while the writers
 * have work: wall-clock throughput would fall to nothing whenever clients
 * are idle, although the device is as fast as ever.  So the meter counts
 * time only while at least one lower write is in flight ("busy"), and
 * divides the cost written back in that time by it.  Every 200 ms of busy
 * time closes a sample, folded into an exponentially weighted moving
 * average (weight 0.3: the last second or so of busy time counts most).
 * A sample still open that has been busy longer than that with little
 * written (a stalled or failing device) pulls the rate down at once, and
 * failed writes add busy time but no cost: the rate errs low, which is
 * the safe side for a UPS.
 *
 * Cost: a data block's bytes; a zeroed or trimmed range costs one block
 * (one lower request, whatever its length).
 *
 * The meter knows nothing of locks or clocks: the caller (the store's
 * store-arena.c and store-writeback.c, under its lock) passes the time in
 * microseconds.
 */

#ifndef ABD_ASYNC_DRAINRATE_H
#define ABD_ASYNC_DRAINRATE_H

#include <stdbool.h>
#include <stdint.h>

#define DRAIN_RATE_SAMPLE_US 200000     /* busy time per sample */
#define DRAIN_RATE_WEIGHT    0.3        /* of a new sample in the average */

struct drain_rate {
  bool busy;                    /* a lower write is in flight */
  uint64_t busy_since_us;       /* with busy: start of the busy stretch */
  uint64_t sample_busy_us;      /* busy time of closed stretches */
  uint64_t sample_cost;         /* cost written back in this sample */
  double rate;                  /* bytes per second; valid if nsamples */
  uint64_t nsamples;
};

/* Writes in flight went from 0 to some (BUSY) or back to 0 (!BUSY). */
void drain_rate_busy (struct drain_rate *r, bool busy, uint64_t now_us);

/* A lower write finished, having written back COST (0 if it failed). */
void drain_rate_done (struct drain_rate *r, uint64_t cost, uint64_t now_us);

/* The rate in bytes per second in *RATE (0 for a device that writes
 * nothing): returns false while none is measured yet.
 */
bool drain_rate_get (const struct drain_rate *r, uint64_t now_us,
                     double *rate);

#endif /* ABD_ASYNC_DRAINRATE_H */
