/* SPDX-License-Identifier: BSD-3-Clause */
/* abd async filter: the threads that push dirty data to the lower device.
 *
 * writeback_start opens nothing itself: it is given the shared background
 * context the filter opened in .after_fork, and starts N writer threads
 * (each takes a batch from the store, writes it, reports the outcome: many
 * writes in flight, in offset order) and one flusher thread (flushes the
 * lower device so that written batches become clean).  writeback_drain waits
 * until the store is empty; writeback_stop stops the threads and flushes the
 * lower device once more.
 * Nothing else in the filter uses the background context.
 */

#ifndef ABD_ASYNC_WRITEBACK_H
#define ABD_ASYNC_WRITEBACK_H

#include <stdbool.h>
#include <stdint.h>

#include <nbdkit-filter.h>

#include "store.h"

int writeback_start (struct store *store, nbdkit_next *next, unsigned nwriters,
                  uint32_t batch_blocks, bool serialize);

/* Write back and flush everything, clients may go on writing meanwhile;
 * give up after EXIT_TIMEOUT seconds without progress (0: never).
 * Returns true once the store is empty, false if it gave up.
 */
bool writeback_drain (unsigned exit_timeout);

/* Stop the threads and flush the lower device once more.  Returns the
 * bytes that are still dirty (0 = clean): call writeback_drain first.
 */
uint64_t writeback_stop (void);

/* Flush the lower device through the background context. */
int writeback_lower_flush (int *err);

/* Bytes per second written back over the last few seconds. */
double writeback_rate (void);

/* Zero LEN bytes at OFFSET of NEXT with plain writes, for a lower device
 * with no zero operation (write-back and the write-through paths).
 */
int writeback_write_zeros (nbdkit_next *next, uint32_t len, uint64_t offset,
                           int *err);

#endif /* ABD_ASYNC_WRITEBACK_H */
