/* SPDX-License-Identifier: BSD-3-Clause */
/* abd async filter: the mode.  In async mode blocks the store does not
 * hold go into RAM and flushes are acknowledged from it; in sync mode
 * they go through to the lower device (or wait, or are rate limited:
 * async-sync-writes) and flushes wait until everything is durable.
 * mode.c says who sets it and owns the sync-file watcher.
 */

#ifndef ABD_ASYNC_MODE_H
#define ABD_ASYNC_MODE_H

#include <stdbool.h>
#include <stdint.h>

#include "store.h"

struct mode_status {
  bool sync;
  const char *reason;           /* start, control, sync-file,
                                 * sync-file-error, draining */
  bool draining;
};

/* .get_ready: refuse a sync file whose directory does not exist. */
int mode_check_sync_file (void);

/* .after_fork: the store the mode applies to, in the start mode
 * (async-mode=); then, once the store file is written back, the
 * sync-file watcher.  .cleanup: stop the watcher.
 */
void mode_attach (struct store *store);
int mode_watch (void);
void mode_unwatch (void);

bool mode_is_sync (void);

/* Where a write of COUNT bytes puts blocks the store does not hold: RAM
 * (true) or through to the lower device (false).  May wait (rate, hold).
 */
bool mode_admit_clean (uint32_t count);

/* The stopper thread (stop.c), when nbdkit is told to stop: sync mode
 * for good, and nothing new goes into RAM.
 */
void mode_drain_begin (void);

/* The control channel's "mode sync|async", and status. */
void mode_set_by_control (bool sync, struct mode_status *st);
void mode_get (struct mode_status *st);

#endif /* ABD_ASYNC_MODE_H */
