/* abd async filter: the threads that push dirty data to the lower device.
 *
 * writer_start opens nothing itself: it is given the shared background
 * context the filter opened in .after_fork, and starts N writer threads
 * (each takes a batch from the store, writes it, reports the outcome: many
 * writes in flight, in offset order) and one flusher thread (flushes the
 * lower device so that written batches become clean).  writer_stop drains
 * the store, stops the threads and flushes the lower device once more.
 * Nothing else in the filter uses the background context.
 */

#ifndef ABD_ASYNC_WRITER_H
#define ABD_ASYNC_WRITER_H

#include <stdbool.h>
#include <stdint.h>

#include <nbdkit-filter.h>

#include "store.h"

int writer_start (struct store *store, nbdkit_next *next, unsigned nwriters,
                  uint32_t batch_blocks, bool serialize);

/* Drain everything; give up after EXIT_TIMEOUT seconds without progress
 * (0: never).  Returns the bytes that could not be written (0 = clean).
 */
uint64_t writer_stop (unsigned exit_timeout);

/* Flush the lower device through the background context. */
int writer_lower_flush (int *err);

/* Bytes per second written back over the last few seconds. */
double writer_rate (void);

#endif /* ABD_ASYNC_WRITER_H */
