/* SPDX-License-Identifier: BSD-3-Clause */
/* abd async filter: the control channel's commands (abdctl): status,
 * flush [SECONDS] and mode sync|async.  The channel itself (a Unix
 * socket and its thread, common/control.c) calls commands_handler with
 * the store as its opaque pointer; a command touches the store, the mode
 * (mode.h) and the writeback threads (writeback.h) only through their
 * functions.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <string.h>

#include <nbdkit-filter.h>

#include "commands.h"
#include "control.h"
#include "mode.h"
#include "params.h"
#include "store.h"
#include "writeback.h"

static void
status_reply (struct store *store, struct ctl_reply *r)
{
  struct store_stats st;
  struct mode_status mode;
  double rate = writeback_rate ();

  store_get_stats (store, &st);
  mode_get (&mode);
  ctl_reply_str (r, "mode", st.sync ? "sync" : "async");
  ctl_reply_str (r, "mode_reason", mode.reason);
  ctl_reply_u64 (r, "draining", mode.draining);
  ctl_reply_str (r, "sync_writes", sync_writes_names[async_params.sync_writes]);
  ctl_reply_u64 (r, "max_dirty_bytes", st.max_dirty_bytes);
  ctl_reply_u64 (r, "dirty_bytes", st.dirty_bytes);
  ctl_reply_u64 (r, "dirty_data_bytes", st.dirty_data_bytes);
  ctl_reply_u64 (r, "dirty_ranges", st.dirty_ranges);
  ctl_reply_u64 (r, "dirty_entries", st.dirty_entries);
  ctl_reply_u64 (r, "oldest_dirty_age_ms", st.oldest_dirty_age_ms);
  ctl_reply_u64 (r, "writes_in_flight", st.writes_in_flight);
  ctl_reply_u64 (r, "bytes_in_flight", st.bytes_in_flight);
  ctl_reply_u64 (r, "written_back_bytes", st.written_back_bytes);
  ctl_reply_u64 (r, "written_back_requests", st.written_back_requests);
  ctl_reply_u64 (r, "lower_flushes", st.lower_flushes);
  ctl_reply_u64 (r, "writeback_rate_bytes_per_sec", (uint64_t) rate);
  ctl_reply_u64 (r, "drain_rate_bytes_per_sec", (uint64_t) st.drain_rate);
  /* The same cost over the same rate as the drain budget's. */
  if (st.drain_cost_bytes == 0)
    ctl_reply_i64 (r, "drain_estimate_seconds", 0);
  else if (!st.drain_rate_known || st.drain_rate < 1)
    ctl_reply_i64 (r, "drain_estimate_seconds", -1);
  else
    ctl_reply_i64 (r, "drain_estimate_seconds",
                   (int64_t) (st.drain_cost_bytes / st.drain_rate + 0.999));
  ctl_reply_u64 (r, "max_drain_seconds", st.max_drain_seconds);
  ctl_reply_u64 (r, "drain_budget_bytes", st.drain_budget_bytes);
  ctl_reply_u64 (r, "lower_write_errors", st.lower_write_errors);
  ctl_reply_u64 (r, "lower_flush_errors", st.lower_flush_errors);
  ctl_reply_u64 (r, "failed_bytes", st.failed_bytes);
  ctl_reply_u64 (r, "client_write_requests", st.client_write_requests);
  ctl_reply_u64 (r, "client_written_bytes", st.client_written_bytes);
  ctl_reply_u64 (r, "space_waits", st.space_waits);
  ctl_reply_u64 (r, "drain_budget_waits", st.drain_budget_waits);
  ctl_reply_str (r, "store_file",
                 async_params.store_file ? async_params.store_file : "");
  /* Every entry has a record in the file: a crash leaves all of it. */
  ctl_reply_u64 (r, "store_file_dirty_bytes",
                 st.store_file ? st.dirty_bytes : 0);
  /* async-flush=store: commits of the store file (store-commit.c). */
  ctl_reply_str (r, "store_flush", st.durable ? "store" : "ram");
  ctl_reply_u64 (r, "store_commits", st.commits);
  ctl_reply_u64 (r, "store_commit_failed", st.commit_failed);
}

int
commands_handler (void *opaque, int argc, char **argv, struct ctl_reply *r)
{
  struct store *store = opaque;

  if (strcmp (argv[0], "status") == 0 && argc == 1) {
    status_reply (store, r);
    return 0;
  }
  if (strcmp (argv[0], "flush") == 0 && argc <= 2) {
    unsigned secs = ASYNC_FLUSH_TIMEOUT_DEFAULT;
    int err;

    if (argc == 2 &&
        ctl_parse_uint (argv[1], ASYNC_FLUSH_TIMEOUT_MAX, &secs) == -1) {
      ctl_reply_error (r, "flush: timeout must be 0..%d seconds, got '%s'",
                       ASYNC_FLUSH_TIMEOUT_MAX, argv[1]);
      return -1;
    }
    if (store_flush_wait (store, secs * 1000, &err) == -1 ||
        writeback_lower_flush (&err) == -1) {
      struct store_stats st;

      store_get_stats (store, &st);
      if (err == ETIMEDOUT)
        ctl_reply_error (r, "flush: timed out after %u s with %" PRIu64
                         " bytes still dirty", secs, st.dirty_bytes);
      else
        ctl_reply_error (r, "flush: %s: %" PRIu64 " bytes are not yet "
                         "durable on the lower device (%" PRIu64 " write "
                         "errors, %" PRIu64 " flush errors so far)",
                         strerror (err), st.failed_bytes,
                         st.lower_write_errors, st.lower_flush_errors);
      return -1;
    }
    /* async-flush=store: the store file must stop naming what is on the
     * lower device now, or a replay after a crash would write older data
     * over it.
     */
    if (store_commit (store, &err) == -1) {
      ctl_reply_error (r, "flush: the data is on the lower device, but a "
                       "commit of the store file failed: %s",
                       strerror (err));
      return -1;
    }
    return 0;
  }
  if (strcmp (argv[0], "mode") == 0 && argc == 2) {
    struct mode_status mode;
    bool sync;

    if (strcmp (argv[1], "sync") == 0)
      sync = true;
    else if (strcmp (argv[1], "async") == 0)
      sync = false;
    else {
      ctl_reply_error (r, "mode: expected sync or async, got '%s'", argv[1]);
      return -1;
    }
    mode_set_by_control (sync, &mode);
    ctl_reply_str (r, "mode", mode.sync ? "sync" : "async");
    ctl_reply_str (r, "mode_reason", mode.reason);
    return 0;
  }
  ctl_reply_error (r, "unknown command '%s' (status, flush [SECONDS], "
                   "mode sync|async)", argv[0]);
  return -1;
}
