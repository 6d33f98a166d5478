/* SPDX-License-Identifier: BSD-3-Clause */
/* abd async filter: the parameters (params.h has the table of defaults
 * and limits): parsed, converted and range-checked once, in .config,
 * and what they imply derived once, in .config_complete.  Every other
 * file reads struct async_params and converts nothing.
 */

#include <config.h>

#include <inttypes.h>
#include <stdint.h>
#include <string.h>

#include <nbdkit-filter.h>

#include "params.h"
#include "storefile.h"

_Static_assert (ASYNC_MAX_DIRTY_MIN >= STORE_MIN_SIZE &&
                ASYNC_MAX_DIRTY_MAX / STORE_BLOCK_SIZE <= STORE_MAX_SLOTS,
                "async-max-dirty's range is what the store accepts");

const char *const sync_writes_names[] = { "through", "rate", "hold" };

struct async_params async_params = {
  .max_dirty = ASYNC_MAX_DIRTY_DEFAULT,
  .max_drain_s = ASYNC_MAX_DRAIN_DEFAULT,
  .sync_writes = SYNC_THROUGH,
  .sync_rate = ASYNC_SYNC_RATE_DEFAULT,
  .nwriters = ASYNC_WRITERS_DEFAULT,
  .write_size = ASYNC_WRITE_SIZE_DEFAULT,
  .delay_ms = ASYNC_DELAY_DEFAULT,
  .exit_timeout = ASYNC_EXIT_TIMEOUT_DEFAULT,
  .store_id = "",
};

static int
parse_unsigned (const char *key, const char *value, unsigned min,
                unsigned max, unsigned *out)
{
  if (nbdkit_parse_unsigned (key, value, out) == -1)
    return -1;
  if (*out < min || *out > max) {
    nbdkit_error ("%s: %u is out of range (%u..%u)", key, *out, min, max);
    return -1;
  }
  return 0;
}

static int
parse_size (const char *key, const char *value, uint64_t min, uint64_t max,
            uint64_t *out)
{
  int64_t r = nbdkit_parse_size (value);

  if (r == -1) {
    /* nbdkit_parse_size said what is wrong, but not where. */
    nbdkit_error ("%s: '%s' is not a size (e.g. 4096, 64K, 256M, 1G)",
                  key, value);
    return -1;
  }
  if ((uint64_t) r < min || (uint64_t) r > max) {
    nbdkit_error ("%s: %s is out of range (%" PRIu64 "..%" PRIu64 " bytes)",
                  key, value, min, max);
    return -1;
  }
  *out = r;
  return 0;
}

int
params_config (nbdkit_next_config *next, nbdkit_backend *nxdata,
               const char *key, const char *value)
{
  uint64_t u64;
  int r;

  if (strcmp (key, "async-max-dirty") == 0)
    return parse_size (key, value, ASYNC_MAX_DIRTY_MIN, ASYNC_MAX_DIRTY_MAX,
                       &async_params.max_dirty);
  if (strcmp (key, "async-max-drain-seconds") == 0) {
    if (nbdkit_parse_unsigned (key, value, &async_params.max_drain_s) == -1 ||
        async_params.max_drain_s > ASYNC_MAX_DRAIN_MAX) {
      nbdkit_error ("async-max-drain-seconds: expected whole seconds, "
                    "0 (no limit) to %d, got '%s'", ASYNC_MAX_DRAIN_MAX,
                    value);
      return -1;
    }
    return 0;
  }
  if (strcmp (key, "async-mlock") == 0) {
    if ((r = nbdkit_parse_bool (value)) == -1) {
      nbdkit_error ("async-mlock: expected a boolean (true or false), "
                    "got '%s'", value);
      return -1;
    }
    async_params.lock_memory = r;
    return 0;
  }
  if (strcmp (key, "async-mode") == 0) {
    if (strcmp (value, "async") == 0)
      async_params.start_sync = false;
    else if (strcmp (value, "sync") == 0)
      async_params.start_sync = true;
    else {
      nbdkit_error ("async-mode: expected async or sync, got '%s'", value);
      return -1;
    }
    return 0;
  }
  if (strcmp (key, "async-flush") == 0) {
    if (strcmp (value, "ram") == 0)
      async_params.flush_store = false;
    else if (strcmp (value, "store") == 0)
      async_params.flush_store = true;
    else {
      nbdkit_error ("async-flush: expected ram or store, got '%s'", value);
      return -1;
    }
    return 0;
  }
  if (strcmp (key, "async-sync-file") == 0) {
    if (*value == '\0') {
      nbdkit_error ("async-sync-file: the path is empty");
      return -1;
    }
    /* Checked in .get_ready, watched after nbdkit's chdir ("/") when it
     * forks: a relative path would name two files.
     */
    if (value[0] != '/') {
      nbdkit_error ("async-sync-file=%s: must be an absolute path", value);
      return -1;
    }
    async_params.sync_file = value;
    return 0;
  }
  if (strcmp (key, "async-sync-writes") == 0) {
    for (r = 0; r < 3; r++)
      if (strcmp (value, sync_writes_names[r]) == 0) {
        async_params.sync_writes = r;
        return 0;
      }
    nbdkit_error ("async-sync-writes: expected through, rate or hold, "
                  "got '%s'", value);
    return -1;
  }
  if (strcmp (key, "async-sync-rate") == 0)
    return parse_size (key, value, ASYNC_SYNC_RATE_MIN, UINT32_MAX * 4096ULL,
                       &async_params.sync_rate);
  if (strcmp (key, "async-control") == 0) {
    if (*value == '\0') {
      nbdkit_error ("async-control: the path is empty");
      return -1;
    }
    /* nbdkit changes directory to / when it forks into the background,
     * after the socket is bound: a relative path would then name another
     * file, which the filter would remove at exit.
     */
    if (value[0] != '/') {
      nbdkit_error ("async-control=%s: must be an absolute path", value);
      return -1;
    }
    async_params.control_path = value;
    return 0;
  }
  if (strcmp (key, "async-writers") == 0)
    return parse_unsigned (key, value, 1, ASYNC_WRITERS_MAX,
                           &async_params.nwriters);
  if (strcmp (key, "async-write-size") == 0) {
    if (parse_size (key, value, STORE_BLOCK_SIZE, ASYNC_WRITE_SIZE_MAX,
                    &u64) == -1)
      return -1;
    if (u64 % STORE_BLOCK_SIZE) {
      nbdkit_error ("async-write-size: %s is not a multiple of %d",
                    value, STORE_BLOCK_SIZE);
      return -1;
    }
    async_params.write_size = u64;
    return 0;
  }
  if (strcmp (key, "async-writeback-delay") == 0)
    return parse_unsigned (key, value, 0, ASYNC_DELAY_MAX,
                           &async_params.delay_ms);
  if (strcmp (key, "async-exit-timeout") == 0)
    return parse_unsigned (key, value, 0, ASYNC_EXIT_TIMEOUT_MAX,
                           &async_params.exit_timeout);
  if (strcmp (key, "async-store-file") == 0) {
    if (*value == '\0') {
      nbdkit_error ("async-store-file: the path is empty");
      return -1;
    }
    /* Checked in .get_ready, opened in .after_fork, after nbdkit's
     * chdir ("/"): a relative path would name two files.
     */
    if (value[0] != '/') {
      nbdkit_error ("async-store-file=%s: must be an absolute path", value);
      return -1;
    }
    async_params.store_file = value;
    return 0;
  }
  if (strcmp (key, "async-store-id") == 0) {
    if (strlen (value) > STOREFILE_ID_MAX) {
      nbdkit_error ("async-store-id: longer than %d bytes",
                    STOREFILE_ID_MAX);
      return -1;
    }
    async_params.store_id = value;
    return 0;
  }
  if (strncmp (key, "async-", 6) == 0) {
    nbdkit_error ("unknown parameter '%s' (see nbdkit-async-filter(1))", key);
    return -1;
  }
  return next (nxdata, key, value);
}

int
params_complete (void)
{
  struct async_params *p = &async_params;

  if (p->flush_store && p->store_file == NULL) {
    nbdkit_error ("async-flush=store needs async-store-file=PATH (on a "
                  "persistent filesystem): a flush is acknowledged once "
                  "the writes before it are durable in that file");
    return -1;
  }

  /* async-max-dirty in whole blocks (its range fits the store's). */
  p->nslots = p->max_dirty / STORE_BLOCK_SIZE;
  p->batch_blocks = p->write_size / STORE_BLOCK_SIZE;
  p->background_writes = (p->nwriters + ASYNC_BACKGROUND_SHARE - 1) /
                         ASYNC_BACKGROUND_SHARE;
  /* The drain budget before the writers have measured a rate: what even
   * a disk doing 100 random writes a second drains in max_drain_s, and
   * at most 1 MiB.
   */
  p->drain_initial_budget = (uint64_t) p->max_drain_s *
                            ASYNC_DRAIN_INITIAL_RATE;
  if (p->drain_initial_budget > ASYNC_DRAIN_INITIAL_MAX)
    p->drain_initial_budget = ASYNC_DRAIN_INITIAL_MAX;
  return 0;
}

void
params_store (struct store_params *p, uint64_t size)
{
  *p = (struct store_params) {
    .size = size,
    .nslots = async_params.nslots,
    .lock_memory = async_params.lock_memory,
    .batch_blocks = async_params.batch_blocks,
    .delay_ms = async_params.delay_ms,
    .background_writes = async_params.background_writes,
    .retry_min_ms = ASYNC_RETRY_MIN_MS,
    .retry_max_ms = ASYNC_RETRY_MAX_MS,
    .store_file = async_params.store_file,
    .store_id = async_params.store_id,
    .durable = async_params.flush_store,
    .max_drain_s = async_params.max_drain_s,
    .drain_initial_budget = async_params.drain_initial_budget,
  };
}
