/* SPDX-License-Identifier: BSD-3-Clause */
/* abd: nbdkit-async-filter, a write-back cache in bounded RAM.
 *
 * This file holds the nbdkit callbacks, the parameters, the mode and the
 * control commands.  What happens to a write: async_pwrite decides from the
 * mode whether blocks the store does not hold go into RAM (async mode) or
 * through to the lower device (sync mode), store_write (store-client.c) puts the
 * data in the store, and the writer threads (writeback.c) write it back.
 *
 * Threads of this file: the sync-file watcher (started in .after_fork when
 * async-sync-file is set, stopped in .cleanup) reads the file's existence
 * every 100 ms and sets the mode (sync too when it cannot tell); the
 * control channel (common/control.c) runs control_handler; the stopper
 * (stop.c) drains the store when nbdkit is told to stop.  mode_lock
 * protects the mode variables.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <libgen.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <nbdkit-filter.h>

#include "control.h"
#include "log.h"
#include "params.h"
#include "stop.h"
#include "store.h"
#include "storefile.h"
#include "writeback.h"

enum sync_writes { SYNC_THROUGH, SYNC_RATE, SYNC_HOLD };
static const char *const sync_writes_names[] = { "through", "rate", "hold" };

/* Parameters (params.h has the defaults and limits). */
static uint64_t max_dirty = ASYNC_MAX_DIRTY_DEFAULT;
static unsigned max_drain_s = ASYNC_MAX_DRAIN_DEFAULT;
static bool lock_memory;
static bool start_sync;
static const char *sync_file;
static enum sync_writes sync_writes = SYNC_THROUGH;
static uint64_t sync_rate = ASYNC_SYNC_RATE_DEFAULT;
static const char *control_path;
static unsigned nwriters = ASYNC_WRITERS_DEFAULT;
static uint32_t write_size = ASYNC_WRITE_SIZE_DEFAULT;
static unsigned delay_ms = ASYNC_DELAY_DEFAULT;
static unsigned exit_timeout = ASYNC_EXIT_TIMEOUT_DEFAULT;
static const char *store_file;
static const char *store_id = "";

/* Set in .get_ready and .after_fork, read-only afterwards. */
static int thread_model;
static struct store *store;
static nbdkit_next *background;         /* shared context to the lower layer */
static struct ctl_server *control;
static int exit_status;         /* set in .cleanup, used in .unload */

/* The mode: sync if the control channel (or async-mode=) says so, while
 * the sync file exists, and for good once nbdkit was told to stop
 * (stop.c drains the store then).
 */
static pthread_mutex_t mode_lock = PTHREAD_MUTEX_INITIALIZER;
static bool mode_control_sync, mode_file_sync, mode_draining;
static bool mode_changed_by_control;
static int sync_file_errno;     /* why the sync file cannot be read, or 0 */
static char *sync_file_dir;     /* the directory that holds it */

static pthread_t watcher;
static bool watcher_started;
static volatile bool watcher_stop;

/* The sync-mode rate limit: the next time a write may be admitted. */
static pthread_mutex_t rate_lock = PTHREAD_MUTEX_INITIALIZER;
static double rate_next;

static int control_handler (void *opaque, int argc, char **argv,
                            struct ctl_reply *r);

/*----------------------------------------------------------------------
 * Parameters.
 */

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

static int
async_config (nbdkit_next_config *next, nbdkit_backend *nxdata,
              const char *key, const char *value)
{
  uint64_t u64;
  int r;

  if (strcmp (key, "async-max-dirty") == 0)
    return parse_size (key, value, ASYNC_MAX_DIRTY_MIN, ASYNC_MAX_DIRTY_MAX,
                       &max_dirty);
  if (strcmp (key, "async-max-drain-seconds") == 0) {
    if (nbdkit_parse_unsigned (key, value, &max_drain_s) == -1 ||
        max_drain_s > ASYNC_MAX_DRAIN_MAX) {
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
    lock_memory = r;
    return 0;
  }
  if (strcmp (key, "async-mode") == 0) {
    if (strcmp (value, "async") == 0)
      start_sync = false;
    else if (strcmp (value, "sync") == 0)
      start_sync = true;
    else {
      nbdkit_error ("async-mode: expected async or sync, got '%s'", value);
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
    sync_file = value;
    return 0;
  }
  if (strcmp (key, "async-sync-writes") == 0) {
    for (r = 0; r < 3; r++)
      if (strcmp (value, sync_writes_names[r]) == 0) {
        sync_writes = r;
        return 0;
      }
    nbdkit_error ("async-sync-writes: expected through, rate or hold, "
                  "got '%s'", value);
    return -1;
  }
  if (strcmp (key, "async-sync-rate") == 0)
    return parse_size (key, value, ASYNC_SYNC_RATE_MIN, UINT32_MAX * 4096ULL,
                       &sync_rate);
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
    control_path = value;
    return 0;
  }
  if (strcmp (key, "async-writers") == 0)
    return parse_unsigned (key, value, 1, ASYNC_WRITERS_MAX, &nwriters);
  if (strcmp (key, "async-write-size") == 0) {
    if (parse_size (key, value, STORE_BLOCK_SIZE, ASYNC_WRITE_SIZE_MAX,
                    &u64) == -1)
      return -1;
    if (u64 % STORE_BLOCK_SIZE) {
      nbdkit_error ("async-write-size: %s is not a multiple of %d",
                    value, STORE_BLOCK_SIZE);
      return -1;
    }
    write_size = u64;
    return 0;
  }
  if (strcmp (key, "async-writeback-delay") == 0)
    return parse_unsigned (key, value, 0, ASYNC_DELAY_MAX, &delay_ms);
  if (strcmp (key, "async-exit-timeout") == 0)
    return parse_unsigned (key, value, 0, ASYNC_EXIT_TIMEOUT_MAX,
                           &exit_timeout);
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
    store_file = value;
    return 0;
  }
  if (strcmp (key, "async-store-id") == 0) {
    if (strlen (value) > STOREFILE_ID_MAX) {
      nbdkit_error ("async-store-id: longer than %d bytes",
                    STOREFILE_ID_MAX);
      return -1;
    }
    store_id = value;
    return 0;
  }
  if (strncmp (key, "async-", 6) == 0) {
    nbdkit_error ("unknown parameter '%s' (see nbdkit-async-filter(1))", key);
    return -1;
  }
  return next (nxdata, key, value);
}

#define async_config_help \
  "async-max-dirty=SIZE       RAM for dirty data (default 256M).\n" \
  "async-max-drain-seconds=N  Admit dirty data only while writing it back\n" \
  "                           takes at most N s at the measured rate\n" \
  "                           (default 0: no limit but async-max-dirty).\n" \
  "async-mlock=BOOL           Lock that memory (default false).\n" \
  "async-mode=async|sync      Start mode (default async: flushes are\n" \
  "                           acknowledged from RAM, for UPS-backed hosts).\n" \
  "async-sync-file=PATH       Sync mode while PATH (absolute) exists.\n" \
  "async-sync-writes=through|rate|hold\n" \
  "                           Sync mode: writes to clean ranges go\n" \
  "                           through, are rate limited, or wait for the\n" \
  "                           store to drain (default through).\n" \
  "async-sync-rate=SIZE       Bytes per second for rate (default 8M).\n" \
  "async-control=PATH         Control socket for abdctl (absolute path,\n" \
  "                           mode 0600).\n" \
  "async-writers=N            Lower writes in flight when hurried (default\n" \
  "                           16; a quarter of them in the background).\n" \
  "async-write-size=SIZE      Largest coalesced lower write (default 256K).\n" \
  "async-writeback-delay=MS   Let new data settle first (default 50).\n" \
  "async-exit-timeout=SECS    Give up draining a failing lower device\n" \
  "                           at exit after SECS (default 60, 0 = never).\n" \
  "async-store-file=PATH      Keep dirty data in this file (on tmpfs), so\n" \
  "                           that it survives the process (an absolute\n" \
  "                           path; a private file in a private directory;\n" \
  "                           default none).\n" \
  "async-store-id=STRING      The device's name, recorded in the store file\n" \
  "                           (default empty)."

/*----------------------------------------------------------------------
 * The mode.
 */

static bool
mode_is_sync (void)
{
  bool sync;

  pthread_mutex_lock (&mode_lock);
  sync = mode_control_sync || mode_file_sync || mode_draining;
  pthread_mutex_unlock (&mode_lock);
  return sync;
}

/* Called with mode_lock held after a change. */
static void
mode_apply (void)
{
  bool sync = mode_control_sync || mode_file_sync || mode_draining;

  if (store)
    store_set_sync (store, sync);
  nbdkit_debug ("async: mode %s", sync ? "sync" : "async");
}

static const char *
mode_reason (void)
{
  if (mode_draining)
    return "draining";
  if (mode_file_sync)
    return sync_file_errno ? "sync-file-error" : "sync-file";
  return mode_changed_by_control ? "control" : "start";
}

/* What the sync file says: true for sync mode.  Fail safe: only "the
 * file does not exist, in a directory that does" means async.  Any other
 * answer (EACCES from a directory we may not search, EIO, ENOTDIR because
 * a component of the path is a file, the directory itself gone) means we
 * cannot tell whether the UPS daemon created the file, or it could not
 * create it if it tried, so the filter must not keep acknowledging
 * flushes from RAM.  *ERR gets the errno of such a failure, else 0.
 */
static bool
sync_file_says_sync (int *err)
{
  struct stat st;

  *err = 0;
  if (stat (sync_file, &st) == 0)
    return true;
  if (errno != ENOENT) {
    *err = errno;
    return true;
  }
  /* ENOENT also when the directory went away (e.g. a runtime directory
   * removed when the service that owns it stopped): then nobody can
   * create the file any more.
   */
  if (stat (sync_file_dir, &st) == -1) {
    *err = errno;
    return true;
  }
  if (!S_ISDIR (st.st_mode)) {
    *err = ENOTDIR;
    return true;
  }
  return false;
}

/* Read the sync file once and set the mode.  An error is logged once when
 * it starts (or changes), not at every poll, and its end is logged too.
 */
static void
sync_file_poll (void)
{
  int err;
  bool sync = sync_file_says_sync (&err);

  pthread_mutex_lock (&mode_lock);
  if (err != sync_file_errno) {
    if (err)
      nbdkit_error ("async-sync-file: cannot tell whether %s exists (%s): "
                    "sync mode until it can be read", sync_file,
                    strerror (err));
    else
      nbdkit_debug ("async-sync-file: %s can be read again", sync_file);
    sync_file_errno = err;
  }
  if (sync != mode_file_sync) {
    mode_file_sync = sync;
    nbdkit_debug ("async: sync file %s: %s", sync_file,
                  err ? "unreadable" : sync ? "appeared" : "went away");
    mode_apply ();
  }
  pthread_mutex_unlock (&mode_lock);
}

static void *
watcher_thread (void *arg)
{
  while (!watcher_stop) {
    sync_file_poll ();
    usleep (ASYNC_SYNC_FILE_POLL_MS * 1000);
  }
  return NULL;
}

/* Called by the stopper thread (stop.c) when nbdkit is told to stop. */
static void
drain_begin (void)
{
  pthread_mutex_lock (&mode_lock);
  mode_draining = true;
  mode_apply ();
  pthread_mutex_unlock (&mode_lock);
}

static bool
is_draining (void)
{
  bool draining;

  pthread_mutex_lock (&mode_lock);
  draining = mode_draining;
  pthread_mutex_unlock (&mode_lock);
  return draining;
}

/* sync-writes=rate: wait until COUNT more bytes may be admitted. */
static void
rate_wait (uint32_t count)
{
  struct timespec ts;
  double now, at;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  now = ts.tv_sec + ts.tv_nsec / 1e9;
  pthread_mutex_lock (&rate_lock);
  at = rate_next > now ? rate_next : now;
  rate_next = at + (double) count / sync_rate;
  pthread_mutex_unlock (&rate_lock);
  if (at > now)
    usleep ((at - now) * 1e6);
}

/* Where blocks the store does not hold go: RAM (true) or through. */
static bool
admit_clean (uint32_t count)
{
  if (!mode_is_sync ())
    return true;
  /* While draining, nothing new goes into RAM: the store must empty. */
  if (is_draining ())
    return false;
  switch (sync_writes) {
  case SYNC_RATE:
    rate_wait (count);
    return true;
  case SYNC_HOLD:
    store_wait_empty (store);
    return false;
  default:
    return false;
  }
}

/*----------------------------------------------------------------------
 * Life cycle.
 */

static int
async_get_ready (int model)
{
  thread_model = model;

  /* Fail now, with a clear message, if the memory cannot be locked; the
   * real lock is taken after the fork (locks are not inherited).
   */
  if (lock_memory) {
    size_t len = max_dirty + max_dirty / STORE_BLOCK_SIZE * 64;
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

  /* A sync file in a directory that does not exist could never be
   * created: refuse it now rather than fall back to sync mode forever.
   * A directory we may not read (EACCES) is accepted: the watcher then
   * keeps the filter in sync mode, as for any unreadable sync file.
   */
  if (sync_file) {
    char *copy = strdup (sync_file);
    struct stat st;

    if (copy == NULL) {
      nbdkit_error ("strdup: %m");
      return -1;
    }
    sync_file_dir = strdup (dirname (copy));
    free (copy);
    if (sync_file_dir == NULL) {
      nbdkit_error ("strdup: %m");
      return -1;
    }
    if (stat (sync_file_dir, &st) == 0 ? !S_ISDIR (st.st_mode)
        : errno == ENOENT || errno == ENOTDIR) {
      nbdkit_error ("async-sync-file: %s is not an existing directory: "
                    "create it first, so that %s can be created there",
                    sync_file_dir, sync_file);
      return -1;
    }
  }

  /* A store file that would be refused stops nbdkit here, before it
   * forks (with systemd's Type=forking only the parent's exit status
   * counts): everything but the device size, which is known only once
   * the lower device is opened in .after_fork, where the file is
   * checked again, opened and written back.
   */
  if (store_file) {
    struct storefile_geometry g = {
      .size = 0, .nslots = max_dirty / STORE_BLOCK_SIZE, .id = store_id
    };
    char *errmsg;

    if (storefile_check (store_file, &g, &errmsg) == -1) {
      nbdkit_error ("async: %s", errmsg ? errmsg : "out of memory");
      free (errmsg);
      return -1;
    }
  }

  /* Bind the control socket before nbdkit forks, so a bad path stops it
   * at start; its thread starts in .after_fork.
   */
  if (control_path) {
    control = ctl_listen ("async-control", control_path);
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
           "back before serving", store_file,
           st.dirty_bytes, st.dirty_entries);
  if (!writeback_drain (exit_timeout) || writeback_lower_flush (&err) == -1) {
    store_get_stats (store, &st);
    writeback_stop ();
    nbdkit_error ("async: could not write back the store file %s: %" PRIu64
                  " bytes wait there; not serving (the next start tries "
                  "again)", store_file, st.dirty_bytes);
    return -1;
  }
  store_set_draining (store, false);
  nbdkit_debug ("async: store file %s written back and flushed",
                store_file);
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

  p.size = size;
  p.max_dirty = max_dirty;
  p.lock_memory = lock_memory;
  p.batch_blocks = write_size / STORE_BLOCK_SIZE;
  p.delay_ms = delay_ms;
  p.background_writes = (nwriters + ASYNC_BACKGROUND_SHARE - 1) /
                        ASYNC_BACKGROUND_SHARE;
  p.retry_min_ms = ASYNC_RETRY_MIN_MS;
  p.retry_max_ms = ASYNC_RETRY_MAX_MS;
  p.store_file = store_file;
  p.store_id = store_id;
  p.max_drain_s = max_drain_s;
  p.drain_initial_budget = (uint64_t) max_drain_s * ASYNC_DRAIN_INITIAL_RATE;
  if (p.drain_initial_budget > ASYNC_DRAIN_INITIAL_MAX)
    p.drain_initial_budget = ASYNC_DRAIN_INITIAL_MAX;
  store = store_create (&p, &errmsg);
  if (store == NULL) {
    nbdkit_error ("async: %s", errmsg ? errmsg : "cannot create the store");
    free (errmsg);
    return -1;
  }
  mode_control_sync = start_sync;
  store_set_sync (store, start_sync);

  if (writeback_start (store, background, nwriters, p.batch_blocks,
                    thread_model < NBDKIT_THREAD_MODEL_PARALLEL) == -1)
    return -1;
  /* nbdkit accepts no connection before .after_fork returns. */
  if (!store_is_empty (store) && replay () == -1)
    return -1;

  if (sync_file) {
    /* The mode is right before the first client connects. */
    sync_file_poll ();
    errno = pthread_create (&watcher, NULL, watcher_thread, NULL);
    if (errno) {
      nbdkit_error ("async: cannot start the sync-file watcher: %m");
      return -1;
    }
    watcher_started = true;
  }
  if (control && ctl_serve (control, control_handler, NULL) == -1)
    return -1;
  /* Last: nbdkit installed its signal handlers before .after_fork. */
  if (stop_catch (drain_begin, exit_timeout) == -1)
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

  if (watcher_started) {
    watcher_stop = true;
    pthread_join (watcher, NULL);
    watcher_started = false;
  }

  if (!gave_up)
    writeback_drain (exit_timeout);
  lost = writeback_stop ();
  if (lost && store_file) {
    nbdkit_error ("async: the lower device kept failing: %" PRIu64 " bytes "
                  "of acknowledged writes are not written back; they wait "
                  "in the store file %s, and the next start with it writes "
                  "them back first", lost, store_file);
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
  free (sync_file_dir);
  sync_file_dir = NULL;
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

static void *
async_open (nbdkit_next_open *next, nbdkit_context *nxdata, int readonly,
            const char *exportname, int is_tls)
{
  if (next (nxdata, readonly, exportname) == -1)
    return NULL;
  return NBDKIT_HANDLE_NOT_NEEDED;
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

static int
io_write (void *next, const void *buf, uint32_t count, uint64_t offset,
          int *err)
{
  nbdkit_next *n = next;
  return n->pwrite (n, buf, count, offset, 0, err);
}

static int
io_zero (void *next, uint32_t count, uint64_t offset, int *err)
{
  nbdkit_next *n = next;

  if (n->can_zero (n) > NBDKIT_ZERO_NONE)
    return n->zero (n, count, offset, NBDKIT_FLAG_MAY_TRIM, err);
  return writeback_write_zeros (n, count, offset, err);
}

static int
io_trim (void *next, uint32_t count, uint64_t offset, int *err)
{
  nbdkit_next *n = next;

  if (n->can_trim (n) != 1)
    return 0;                   /* trim is advisory */
  return n->trim (n, count, offset, 0, err);
}

#define STORE_IO(next) \
  { .read = io_read, .write = io_write, .zero = io_zero, .trim = io_trim, \
    .opaque = (next) }

/* Sync-mode flush: every earlier write on the lower device, flushed. */
static int
flush_sync (nbdkit_next *next, int *err)
{
  if (store_flush_wait (store, -1, err) == -1)
    return -1;
  /* Writes that went through this connection's lower connection; those
   * of other connections too if the lower device has multi-conn (see
   * async_can_multi_conn).
   */
  if (next->can_flush (next) == 1)
    return next->flush (next, 0, err);
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

  if (store_write (store, buf, count, offset, admit_clean (count), &io,
                   err) == -1)
    return -1;
  if ((flags & NBDKIT_FLAG_FUA) && mode_is_sync ())
    return flush_sync (next, err);
  return 0;
}

static int
async_zero (nbdkit_next *next, void *handle, uint32_t count, uint64_t offset,
            uint32_t flags, int *err)
{
  struct store_io io = STORE_IO (next);

  if (store_zero (store, count, offset, admit_clean (0), &io, err) == -1)
    return -1;
  if ((flags & NBDKIT_FLAG_FUA) && mode_is_sync ())
    return flush_sync (next, err);
  return 0;
}

static int
async_trim (nbdkit_next *next, void *handle, uint32_t count, uint64_t offset,
            uint32_t flags, int *err)
{
  struct store_io io = STORE_IO (next);

  if (store_trim (store, count, offset, admit_clean (0), &io, err) == -1)
    return -1;
  if ((flags & NBDKIT_FLAG_FUA) && mode_is_sync ())
    return flush_sync (next, err);
  return 0;
}

static int
async_flush (nbdkit_next *next, void *handle, uint32_t flags, int *err)
{
  if (mode_is_sync ())
    return flush_sync (next, err);
  /* Async mode acknowledges flushes from RAM, but never hides a failing
   * lower device.
   */
  if (store_has_failed (store)) {
    nbdkit_error ("async: the lower device failed writes that are still "
                  "pending; see abdctl status");
    *err = EIO;
    return -1;
  }
  return 0;
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

/*----------------------------------------------------------------------
 * The control channel.
 */

static void
status_reply (struct ctl_reply *r)
{
  struct store_stats st;
  double rate = writeback_rate ();

  store_get_stats (store, &st);
  pthread_mutex_lock (&mode_lock);
  ctl_reply_str (r, "mode", st.sync ? "sync" : "async");
  ctl_reply_str (r, "mode_reason", mode_reason ());
  ctl_reply_u64 (r, "draining", mode_draining);
  pthread_mutex_unlock (&mode_lock);
  ctl_reply_str (r, "sync_writes", sync_writes_names[sync_writes]);
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
  ctl_reply_str (r, "store_file", store_file ? store_file : "");
  /* Every entry has a record in the file: a crash leaves all of it. */
  ctl_reply_u64 (r, "store_file_dirty_bytes",
                 st.store_file ? st.dirty_bytes : 0);
}

static int
control_handler (void *opaque, int argc, char **argv, struct ctl_reply *r)
{
  if (strcmp (argv[0], "status") == 0 && argc == 1) {
    status_reply (r);
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
    return 0;
  }
  if (strcmp (argv[0], "mode") == 0 && argc == 2) {
    bool sync;

    if (strcmp (argv[1], "sync") == 0)
      sync = true;
    else if (strcmp (argv[1], "async") == 0)
      sync = false;
    else {
      ctl_reply_error (r, "mode: expected sync or async, got '%s'", argv[1]);
      return -1;
    }
    pthread_mutex_lock (&mode_lock);
    mode_control_sync = sync;
    mode_changed_by_control = true;
    mode_apply ();
    ctl_reply_str (r, "mode",
                   mode_control_sync || mode_file_sync || mode_draining
                   ? "sync" : "async");
    ctl_reply_str (r, "mode_reason", mode_reason ());
    pthread_mutex_unlock (&mode_lock);
    return 0;
  }
  ctl_reply_error (r, "unknown command '%s' (status, flush [SECONDS], "
                   "mode sync|async)", argv[0]);
  return -1;
}

static int
async_thread_model (void)
{
  return NBDKIT_THREAD_MODEL_PARALLEL;
}

static struct nbdkit_filter filter = {
  .name              = "async",
  .longname          = "nbdkit async (write-back cache) filter",
  .config            = async_config,
  .config_help       = async_config_help,
  .thread_model      = async_thread_model,
  .get_ready         = async_get_ready,
  .after_fork        = async_after_fork,
  .cleanup           = async_cleanup,
  .unload            = async_unload,
  .open              = async_open,
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
