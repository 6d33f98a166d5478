/* SPDX-License-Identifier: BSD-3-Clause */
/* abd: nbdkit-async-filter, a write-back cache in bounded RAM.
 *
 * This file holds only the nbdkit callbacks: the life cycle (start,
 * write back a store file, stop), the capabilities and the data
 * callbacks.  What they call, one idea per file:
 *   params.c      the parameters: parsed, checked and converted once
 *   mode.c        the mode (async or sync), the sync-file watcher, and
 *                 where writes of clean blocks go (async-sync-writes)
 *   commands.c    the control channel's commands (abdctl)
 *   writeback.c   the writer and flusher threads
 *   stop.c        the drain when nbdkit is told to stop
 *   store/        the dirty store, which knows nothing of nbdkit
 *                 (store/store.h, and store/store-impl.h for its files)
 *
 * What happens to a write: async_pwrite asks the mode whether blocks the
 * store does not hold go into RAM (async mode) or through to the lower
 * device (sync mode, mode_admit_clean), store_write
 * (store/store-client.c) puts the data in the store, and the writer
 * threads (writeback.c) write it back.
 *
 * Threads: this file starts none itself; .after_fork starts the writers
 * (writeback_start), the sync-file watcher (mode_watch), the control
 * channel's thread (ctl_serve) and the stopper (stop_catch); .cleanup
 * stops them all.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

#include <nbdkit-filter.h>

#include "commands.h"
#include "control.h"
#include "log.h"
#include "mode.h"
#include "params.h"
#include "stop.h"
#include "store.h"
#include "storefile.h"
#include "writeback.h"

/* Set in .get_ready and .after_fork, read-only afterwards. */
static int thread_model;
static struct store *store;
static nbdkit_next *background;         /* shared context to the lower layer */
static struct ctl_server *control;
static int exit_status;         /* set in .cleanup, used in .unload */

/*----------------------------------------------------------------------
 * Parameters (params.c) and life cycle.
 */

static int
async_config_complete (nbdkit_next_config_complete *next,
                       nbdkit_backend *nxdata)
{
  if (params_complete () == -1)
    return -1;
  if (async_params.flush_store && getenv ("ABD_TEST_STORE_NO_FDATASYNC"))
    nbdkit_error ("async: ABD_TEST_STORE_NO_FDATASYNC is set: store commits "
                  "skip their fdatasync and flushes are NOT durable (for "
                  "tests that prove they can fail)");
  return next (nxdata);
}

static int
async_get_ready (int model)
{
  thread_model = model;

  /* Fail now, with a clear message, if the memory cannot be locked; the
   * real lock is taken after the fork (locks are not inherited).
   */
  if (async_params.lock_memory) {
    size_t len = store_memory_bytes (async_params.nslots,
                                     async_params.store_file != NULL);
    void *p = mmap (NULL, len, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

    if (p == MAP_FAILED) {
      nbdkit_error ("async-mlock: cannot map %zu bytes: %m", len);
      return -1;
    }
    if (mlock (p, len) == -1) {
      nbdkit_error ("async-mlock: cannot lock %zu bytes of memory (%m): "
                    "raise the locked-memory limit (ulimit -l, systemd "
                    "LimitMEMLOCK=) or lower async-max-dirty", len);
      munmap (p, len);
      return -1;
    }
    munlock (p, len);
    munmap (p, len);
  }

  if (mode_check_sync_file () == -1)
    return -1;

  /* A store file that would be refused stops nbdkit here, before it
   * forks (with systemd's Type=forking only the parent's exit status
   * counts): everything but the device size, which is known only once
   * the lower device is opened in .after_fork, where the file is
   * checked again, opened and written back.
   */
  if (async_params.store_file) {
    struct storefile_geometry g = {
      .size = 0, .nslots = async_params.nslots, .id = async_params.store_id,
      .durable = async_params.flush_store
    };
    char *errmsg;

    if (storefile_check (async_params.store_file, &g, &errmsg) == -1) {
      nbdkit_error ("async: %s", errmsg ? errmsg : "out of memory");
      free (errmsg);
      return -1;
    }
  }

  /* Bind the control socket before nbdkit forks, so a bad path stops it
   * at start; its thread starts in .after_fork.
   */
  if (async_params.control_path) {
    control = ctl_listen ("async-control", async_params.control_path);
    if (control == NULL)
      return -1;
  }
  return 0;
}

/* The store file held data an earlier process acknowledged and did not
 * write back (it died, or its lower device kept failing): write it all
 * back and flush before the first client is served.  If the lower device
 * keeps failing, refuse to start and leave it in the file.
 */
static int
replay (void)
{
  struct store_stats st;
  int err;

  store_get_stats (store, &st);
  abd_log (LOG_WARNING, "async",
           "%s holds %" PRIu64 " bytes (%" PRIu64 " entries) acknowledged "
           "by an earlier process and not yet written back: writing them "
           "back before serving", async_params.store_file,
           st.dirty_bytes, st.dirty_entries);
  if (!writeback_drain (async_params.exit_timeout) ||
      writeback_lower_flush (&err) == -1) {
    store_get_stats (store, &st);
    writeback_stop ();
    nbdkit_error ("async: could not write back the store file %s: %" PRIu64
                  " bytes wait there; not serving (the next start tries "
                  "again)", async_params.store_file, st.dirty_bytes);
    return -1;
  }
  store_set_draining (store, false);
  /* async-flush=store: the file says it is clean before anything new is
   * acknowledged (a flush commits it anyway; this is for a crash before
   * the first one).
   */
  if (store_commit (store, &err) == -1) {
    nbdkit_error ("async: cannot commit the store file %s after writing it "
                  "back: not serving", async_params.store_file);
    return -1;
  }
  nbdkit_debug ("async: store file %s written back and flushed",
                async_params.store_file);
  return 0;
}

static int
async_after_fork (nbdkit_backend *backend)
{
  struct store_params p;
  char *errmsg;
  int64_t size;

  background = nbdkit_next_context_open (backend, 0, "", 1);
  if (background == NULL) {
    nbdkit_error ("async: cannot open the background context");
    return -1;
  }
  if (background->prepare (background) == -1)
    return -1;
  size = background->get_size (background);
  if (size == -1)
    return -1;
  if (background->can_write (background) != 1) {
    nbdkit_error ("async: the lower device is read-only: this filter "
                  "needs to write to it");
    return -1;
  }

  params_store (&p, size);
  store = store_create (&p, &errmsg);
  if (store == NULL) {
    nbdkit_error ("async: %s", errmsg ? errmsg : "cannot create the store");
    free (errmsg);
    return -1;
  }
  mode_attach (store);

  if (writeback_start (store, background, async_params.nwriters, p.batch_blocks,
                       thread_model < NBDKIT_THREAD_MODEL_PARALLEL) == -1)
    return -1;
  /* nbdkit accepts no connection before .after_fork returns. */
  if (!store_is_empty (store) && replay () == -1)
    return -1;

  if (mode_watch () == -1)
    return -1;
  if (control && ctl_serve (control, commands_handler, store) == -1)
    return -1;
  /* Last: nbdkit installed its signal handlers before .after_fork. */
  if (stop_catch (mode_drain_begin, async_params.exit_timeout) == -1)
    return -1;
  return 0;
}

static void
async_cleanup (nbdkit_backend *backend)
{
  uint64_t lost;
  bool gave_up;

  /* If a signal started a drain, this waits for it; nbdkit's quit flag is
   * set by now, so a drain from here on cannot sleep through the filters
   * below (see stop.h): it is for the other ways nbdkit stops.
   */
  gave_up = stop_release ();

  mode_unwatch ();

  if (!gave_up)
    writeback_drain (async_params.exit_timeout);
  lost = writeback_stop ();
  if (lost && async_params.store_file) {
    nbdkit_error ("async: the lower device kept failing: %" PRIu64 " bytes "
                  "of acknowledged writes are not written back; they wait "
                  "in the store file %s, and the next start with it writes "
                  "them back first", lost, async_params.store_file);
    exit_status = ASYNC_EXIT_KEPT;
  }
  else if (lost) {
    nbdkit_error ("async: the lower device kept failing: %" PRIu64 " bytes "
                  "of acknowledged writes could NOT be written and are LOST",
                  lost);
    exit_status = ASYNC_EXIT_LOST;
  }
  else if (store)
    nbdkit_debug ("async: all dirty data written and flushed");

  ctl_stop (control);
  control = NULL;
  if (background) {
    background->finalize (background);
    nbdkit_next_context_close (background);
    background = NULL;
  }
  store_free (store);
  store = NULL;
}

/* The last callback nbdkit makes (the layers below are unloaded by now):
 * the only place a filter can choose nbdkit's exit status.
 */
static void
async_unload (void)
{
  if (exit_status)
    exit (exit_status);
}

/* A client connection: how far its lower flushes went (flush_async). */
struct conn {
  uint64_t flushed_through;     /* through_writes at its last lower flush */
};

static void *
async_open (nbdkit_next_open *next, nbdkit_context *nxdata, int readonly,
            const char *exportname, int is_tls)
{
  struct conn *c;

  if (next (nxdata, readonly, exportname) == -1)
    return NULL;
  c = calloc (1, sizeof *c);
  if (c == NULL) {
    nbdkit_error ("async: calloc: %m");
    return NULL;
  }
  return c;
}

static void
async_close (void *handle)
{
  free (handle);
}

static int
async_prepare (nbdkit_next *next, void *handle, int readonly)
{
  int64_t size = next->get_size (next);

  if (size == -1)
    return -1;
  if ((uint64_t) size != (uint64_t) background->get_size (background)) {
    nbdkit_error ("async: this export's size (%" PRIi64 ") differs from "
                  "the default export's: one store serves one device", size);
    return -1;
  }
  return 0;
}

/*----------------------------------------------------------------------
 * Capabilities.  Every lower capability this filter may use on a client's
 * context is asked for here, as nbdkit requires before the call.
 */

static int
async_can_flush (nbdkit_next *next, void *handle)
{
  return next->can_flush (next) == -1 ? -1 : 1;
}

static int
async_can_fua (nbdkit_next *next, void *handle)
{
  return next->can_fua (next) == -1 ? -1 : NBDKIT_FUA_NATIVE;
}

static int
async_can_zero (nbdkit_next *next, void *handle)
{
  return next->can_zero (next) == -1 ? -1 : NBDKIT_ZERO_NATIVE;
}

static int
async_can_fast_zero (nbdkit_next *next, void *handle)
{
  return 0;
}

static int
async_can_extents (nbdkit_next *next, void *handle)
{
  return next->can_extents (next) == -1 ? -1 : 1;
}

/* Multi-conn is the lower device's answer, not always yes.  The store is
 * shared and a sync-mode flush waits for every connection's data in it,
 * but what a connection writes through in sync mode, and every read of a
 * clean block, goes over that client's own lower connection.  A lower
 * device without multi-conn may cache per connection, so a flush on
 * another connection need not cover those writes, nor make them visible
 * to another connection's reads.  Flushing every lower connection that
 * wrote would fix only the first half, and would duplicate nbdkit's
 * multi-conn filter: stacked below this one (multi-conn-mode=emulate),
 * it makes the lower device multi-conn, and this filter then says so.
 */
static int
async_can_multi_conn (nbdkit_next *next, void *handle)
{
  return next->can_multi_conn (next);
}

/*----------------------------------------------------------------------
 * Data.
 */

static int
io_read (void *next, void *buf, uint32_t count, uint64_t offset, int *err)
{
  nbdkit_next *n = next;
  return n->pread (n, buf, count, offset, 0, err);
}

/* Client writes, zeros and trims that went through to the lower device
 * (sync mode, a drain): there, not in the store, so that with
 * async-flush=store an async-mode flush must flush the lower device too
 * (flush_async).  All connections': with multi-conn a lower flush on one
 * connection covers the others'.
 */
static uint64_t through_writes;

static void
through_done (void)
{
  __atomic_add_fetch (&through_writes, 1, __ATOMIC_RELEASE);
}

/* A zero or trim that goes through may replace dirty entries, whose
 * records the store retires once it returns; a commit may then make
 * that retirement durable before anything flushes the lower device.  With
 * async-flush=store it is flushed on the lower device first, so that a
 * power cut never leaves the lower device's older content where flushed
 * data was (as the writers retire records only after a lower flush).
 */
static int
through_range_durable (nbdkit_next *n, int *err)
{
  if (!async_params.flush_store || n->can_flush (n) != 1)
    return 0;
  return n->flush (n, 0, err);
}

static int
io_write (void *next, const void *buf, uint32_t count, uint64_t offset,
          int *err)
{
  nbdkit_next *n = next;

  if (n->pwrite (n, buf, count, offset, 0, err) == -1)
    return -1;
  through_done ();
  return 0;
}

static int
io_zero (void *next, uint32_t count, uint64_t offset, int *err)
{
  nbdkit_next *n = next;

  if ((n->can_zero (n) > NBDKIT_ZERO_NONE
       ? n->zero (n, count, offset, NBDKIT_FLAG_MAY_TRIM, err)
       : writeback_write_zeros (n, count, offset, err)) == -1 ||
      through_range_durable (n, err) == -1)
    return -1;
  through_done ();
  return 0;
}

static int
io_trim (void *next, uint32_t count, uint64_t offset, int *err)
{
  nbdkit_next *n = next;

  if (n->can_trim (n) != 1)
    return 0;                   /* trim is advisory */
  if (n->trim (n, count, offset, 0, err) == -1 ||
      through_range_durable (n, err) == -1)
    return -1;
  through_done ();
  return 0;
}

#define STORE_IO(next) \
  { .read = io_read, .write = io_write, .zero = io_zero, .trim = io_trim, \
    .opaque = (next) }

/* Sync-mode flush: every earlier write on the lower device, flushed.
 * With async-flush=store, the store file is committed too: it may still
 * hold records of blocks written back since its last commit, which a
 * replay would write over what this flush made durable below.
 */
static int
flush_sync (nbdkit_next *next, struct conn *c, int *err)
{
  uint64_t through = __atomic_load_n (&through_writes, __ATOMIC_ACQUIRE);

  if (store_flush_wait (store, -1, err) == -1)
    return -1;
  /* Writes that went through this connection's lower connection; those
   * of other connections too if the lower device has multi-conn (see
   * async_can_multi_conn).
   */
  if (next->can_flush (next) == 1 && next->flush (next, 0, err) == -1)
    return -1;
  __atomic_store_n (&c->flushed_through, through, __ATOMIC_RELAXED);
  return store_commit (store, err);
}

/* An async-mode flush (or FUA): with async-flush=store, once everything
 * written before it is durable in the store file (group commit), and what
 * went through to the lower device since this connection's last lower
 * flush (in sync mode, before a switch back) is flushed there; with
 * async-flush=ram, at once.  A flush (CHECK_FAILED) never hides a failing
 * lower device; a FUA write does not fail for one: its data is in the
 * store (and, with async-flush=store, durable there).
 */
static int
flush_async (nbdkit_next *next, struct conn *c, bool check_failed, int *err)
{
  uint64_t through;

  if (check_failed && store_has_failed (store)) {
    nbdkit_error ("async: the lower device failed writes that are still "
                  "pending; see abdctl status");
    *err = EIO;
    return -1;
  }
  if (!async_params.flush_store)
    return 0;
  through = __atomic_load_n (&through_writes, __ATOMIC_ACQUIRE);
  if (through != __atomic_load_n (&c->flushed_through, __ATOMIC_RELAXED)) {
    if (next->can_flush (next) == 1 && next->flush (next, 0, err) == -1)
      return -1;
    __atomic_store_n (&c->flushed_through, through, __ATOMIC_RELAXED);
  }
  if (store_commit (store, err) == -1) {
    nbdkit_error ("async: a commit of the store file %s failed: flushes "
                  "fail from now on (restart to replay the file)",
                  async_params.store_file);
    return -1;
  }
  return 0;
}

/* FUA on a write, zero or trim. */
static int
flush_fua (nbdkit_next *next, struct conn *c, uint32_t flags, int *err)
{
  if (!(flags & NBDKIT_FLAG_FUA))
    return 0;
  if (mode_is_sync ())
    return flush_sync (next, c, err);
  if (async_params.flush_store)
    return flush_async (next, c, false, err);
  return 0;
}

static int
async_pread (nbdkit_next *next, void *handle, void *buf, uint32_t count,
             uint64_t offset, uint32_t flags, int *err)
{
  struct store_io io = STORE_IO (next);

  return store_read (store, buf, count, offset, &io, err);
}

static int
async_pwrite (nbdkit_next *next, void *handle, const void *buf,
              uint32_t count, uint64_t offset, uint32_t flags, int *err)
{
  struct store_io io = STORE_IO (next);

  if (store_write (store, buf, count, offset, mode_admit_clean (count), &io,
                   err) == -1)
    return -1;
  return flush_fua (next, handle, flags, err);
}

static int
async_zero (nbdkit_next *next, void *handle, uint32_t count, uint64_t offset,
            uint32_t flags, int *err)
{
  struct store_io io = STORE_IO (next);

  if (store_zero (store, count, offset, mode_admit_clean (0), &io, err) == -1)
    return -1;
  return flush_fua (next, handle, flags, err);
}

static int
async_trim (nbdkit_next *next, void *handle, uint32_t count, uint64_t offset,
            uint32_t flags, int *err)
{
  struct store_io io = STORE_IO (next);

  if (store_trim (store, count, offset, mode_admit_clean (0), &io, err) == -1)
    return -1;
  return flush_fua (next, handle, flags, err);
}

static int
async_flush (nbdkit_next *next, void *handle, uint32_t flags, int *err)
{
  if (mode_is_sync ())
    return flush_sync (next, handle, err);
  return flush_async (next, handle, true, err);
}

static int
async_extents (nbdkit_next *next, void *handle, uint32_t count,
               uint64_t offset, uint32_t flags, struct nbdkit_extents *extents,
               int *err)
{
  struct nbdkit_extents *lower;
  uint64_t len;
  size_t i;
  int kind;

  /* Answer for a prefix of the range; the client asks again for the rest.
   * Dirty data is data; zeroed ranges read as zeros; trimmed ranges read
   * as zeros too (store-client.c) and will be holes below.
   */
  kind = store_extent (store, offset, count, &len);
  if (kind != -1) {
    uint32_t type = kind == STORE_DATA ? 0
      : kind == STORE_ZERO ? NBDKIT_EXTENT_ZERO
      : NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO;

    if (nbdkit_add_extent (extents, offset, len, type) == -1) {
      *err = errno;
      return -1;
    }
    return 0;
  }

  /* [offset, offset+len) holds no dirty data: the lower device says. */
  lower = nbdkit_extents_new (offset, offset + len);
  if (lower == NULL) {
    *err = errno;
    return -1;
  }
  if (next->extents (next, len, offset, flags, lower, err) == -1) {
    nbdkit_extents_free (lower);
    return -1;
  }
  for (i = 0; i < nbdkit_extents_count (lower); i++) {
    struct nbdkit_extent e = nbdkit_get_extent (lower, i);

    if (nbdkit_add_extent (extents, e.offset, e.length, e.type) == -1) {
      *err = errno;
      nbdkit_extents_free (lower);
      return -1;
    }
  }
  nbdkit_extents_free (lower);
  return 0;
}

static int
async_thread_model (void)
{
  return NBDKIT_THREAD_MODEL_PARALLEL;
}

static struct nbdkit_filter filter = {
  .name              = "async",
  .longname          = "nbdkit async (write-back cache) filter",
  .config            = params_config,
  .config_complete   = async_config_complete,
  .config_help       = async_config_help,
  .thread_model      = async_thread_model,
  .get_ready         = async_get_ready,
  .after_fork        = async_after_fork,
  .cleanup           = async_cleanup,
  .unload            = async_unload,
  .open              = async_open,
  .close             = async_close,
  .prepare           = async_prepare,
  .can_flush         = async_can_flush,
  .can_fua           = async_can_fua,
  .can_zero          = async_can_zero,
  .can_fast_zero     = async_can_fast_zero,
  .can_extents       = async_can_extents,
  .can_multi_conn    = async_can_multi_conn,
  .pread             = async_pread,
  .pwrite            = async_pwrite,
  .zero              = async_zero,
  .trim              = async_trim,
  .flush             = async_flush,
  .extents           = async_extents,
};

NBDKIT_REGISTER_FILTER (filter)
