/* SPDX-License-Identifier: BSD-3-Clause */
/* abd async filter: the mode (mode.h), who sets it, and what it does to
 * writes of blocks the store does not hold.
 *
 * The mode is sync if the control channel (or async-mode=) says so,
 * while the sync file exists (or cannot be read), and for good once
 * nbdkit was told to stop (stop.c drains the store then).  mode_lock
 * protects the variables below it.
 *
 * The sync-file watcher thread (started by mode_watch in .after_fork
 * when async-sync-file is set, stopped by mode_unwatch in .cleanup) reads
 * the file's existence every ASYNC_SYNC_FILE_POLL_MS and sets the mode;
 * it touches the mode variables (under mode_lock) and the store's mode
 * (store_set_sync), nothing else.
 */

#include <config.h>

#include <errno.h>
#include <libgen.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <nbdkit-filter.h>

#include "mode.h"
#include "params.h"
#include "store.h"

static struct store *store;     /* set by mode_attach, then constant */

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

/*----------------------------------------------------------------------
 * The mode.
 */

bool
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

/* Why the mode is what it is; called with mode_lock held. */
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
  if (stat (async_params.sync_file, &st) == 0)
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
                    "sync mode until it can be read", async_params.sync_file,
                    strerror (err));
    else
      nbdkit_debug ("async-sync-file: %s can be read again",
                    async_params.sync_file);
    sync_file_errno = err;
  }
  if (sync != mode_file_sync) {
    mode_file_sync = sync;
    nbdkit_debug ("async: sync file %s: %s", async_params.sync_file,
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

void
mode_drain_begin (void)
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

/*----------------------------------------------------------------------
 * Writes to clean blocks in sync mode (async-sync-writes).
 */

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
  rate_next = at + (double) count / async_params.sync_rate;
  pthread_mutex_unlock (&rate_lock);
  if (at > now)
    usleep ((at - now) * 1e6);
}

bool
mode_admit_clean (uint32_t count)
{
  if (!mode_is_sync ())
    return true;
  /* While draining, nothing new goes into RAM: the store must empty. */
  if (is_draining ())
    return false;
  switch (async_params.sync_writes) {
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
 * Start, control and stop.
 */

/* A sync file in a directory that does not exist could never be
 * created: refuse it now rather than fall back to sync mode forever.
 * A directory we may not read (EACCES) is accepted: the watcher then
 * keeps the filter in sync mode, as for any unreadable sync file.
 */
int
mode_check_sync_file (void)
{
  char *copy;
  struct stat st;

  if (async_params.sync_file == NULL)
    return 0;
  copy = strdup (async_params.sync_file);
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
                  sync_file_dir, async_params.sync_file);
    return -1;
  }
  return 0;
}

void
mode_attach (struct store *s)
{
  pthread_mutex_lock (&mode_lock);
  store = s;
  mode_control_sync = async_params.start_sync;
  store_set_sync (store, async_params.start_sync);
  pthread_mutex_unlock (&mode_lock);
}

int
mode_watch (void)
{
  if (async_params.sync_file == NULL)
    return 0;
  /* The mode is right before the first client connects. */
  sync_file_poll ();
  errno = pthread_create (&watcher, NULL, watcher_thread, NULL);
  if (errno) {
    nbdkit_error ("async: cannot start the sync-file watcher: %m");
    return -1;
  }
  watcher_started = true;
  return 0;
}

void
mode_unwatch (void)
{
  if (watcher_started) {
    watcher_stop = true;
    pthread_join (watcher, NULL);
    watcher_started = false;
  }
  free (sync_file_dir);
  sync_file_dir = NULL;
  pthread_mutex_lock (&mode_lock);
  store = NULL;
  pthread_mutex_unlock (&mode_lock);
}

void
mode_set_by_control (bool sync, struct mode_status *st)
{
  pthread_mutex_lock (&mode_lock);
  mode_control_sync = sync;
  mode_changed_by_control = true;
  mode_apply ();
  pthread_mutex_unlock (&mode_lock);
  mode_get (st);
}

void
mode_get (struct mode_status *st)
{
  pthread_mutex_lock (&mode_lock);
  st->sync = mode_control_sync || mode_file_sync || mode_draining;
  st->reason = mode_reason ();
  st->draining = mode_draining;
  pthread_mutex_unlock (&mode_lock);
}
