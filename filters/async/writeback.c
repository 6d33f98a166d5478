/* SPDX-License-Identifier: BSD-3-Clause */
/* abd async filter: writer and flusher threads (see writeback.h).
 *
 * Threads: writeback_start starts nwriters writer threads, one flusher and
 * one sampler (it records written-back bytes every 100 ms for the rate
 * shown in status).  writeback_drain waits for them to empty the store;
 * writeback_stop stops and joins all of them.  They touch only the store
 * (through its API) and the background context `lower`.  If the
 * plugin's thread model is below parallel, lower_lock serialises every call
 * on the background context.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nbdkit-filter.h>

#include "log.h"
#include "writeback.h"

#define MAX_WRITERS 256
#define RATE_SAMPLES 50           /* 5 s of 100 ms samples */

static struct store *store;
static nbdkit_next *lower;
static bool serialize;
static pthread_mutex_t lower_lock = PTHREAD_MUTEX_INITIALIZER;
static int lower_can_zero, lower_can_trim, lower_can_flush;
static uint32_t batch_blocks;

static pthread_t writers[MAX_WRITERS], flusher, sampler;
static unsigned nstarted;
static bool flusher_started, sampler_started;

/* The sampler's ring of (time, written bytes); rate_lock protects it. */
static pthread_mutex_t rate_lock = PTHREAD_MUTEX_INITIALIZER;
static struct { double t; uint64_t bytes; } samples[RATE_SAMPLES];
static unsigned nsamples, sample_next;
static volatile bool sampler_stop;

static double
now_s (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
lower_begin (void)
{
  if (serialize)
    pthread_mutex_lock (&lower_lock);
}

static void
lower_end (void)
{
  if (serialize)
    pthread_mutex_unlock (&lower_lock);
}

int
writeback_write_zeros (nbdkit_next *next, uint32_t len, uint64_t offset,
                       int *err)
{
  static const char zeros[65536];

  while (len > 0) {
    uint32_t n = len < sizeof zeros ? len : sizeof zeros;

    if (next->pwrite (next, zeros, n, offset, 0, err) == -1)
      return -1;
    len -= n;
    offset += n;
  }
  return 0;
}

static int
write_batch (const struct store_batch *b, int *err)
{
  int r;

  lower_begin ();
  switch (b->kind) {
  case STORE_DATA:
    r = lower->pwrite (lower, b->buf, b->len, b->offset, 0, err);
    break;
  case STORE_ZERO:
    if (lower_can_zero != NBDKIT_ZERO_NONE)
      r = lower->zero (lower, b->len, b->offset, NBDKIT_FLAG_MAY_TRIM, err);
    else
      r = writeback_write_zeros (lower, b->len, b->offset, err);
    break;
  default:
    r = lower_can_trim ? lower->trim (lower, b->len, b->offset, 0, err) : 0;
    break;
  }
  lower_end ();
  return r;
}

static void *
writer_thread (void *arg)
{
  char *buf = malloc ((size_t) batch_blocks * STORE_BLOCK_SIZE);
  struct store_batch b;

  if (buf == NULL) {
    nbdkit_error ("async: writer: malloc: %m");
    return NULL;
  }
  while (store_pick_wait (store, &b, buf)) {
    int err = 0;
    bool ok = write_batch (&b, &err) == 0;

    if (!ok)
      nbdkit_debug ("async: lower write of %" PRIu32 " bytes at %" PRIu64
                    " failed: %s", b.len, b.offset, strerror (err));
    store_complete (store, &b, ok);
  }
  free (buf);
  return NULL;
}

int
writeback_lower_flush (int *err)
{
  int r = 0;

  if (lower_can_flush) {
    lower_begin ();
    r = lower->flush (lower, 0, err);
    lower_end ();
  }
  return r;
}

static void *
flusher_thread (void *arg)
{
  uint32_t ticket;

  while (store_flush_begin (store, &ticket)) {
    int err = 0;
    bool ok = writeback_lower_flush (&err) == 0;

    if (!ok)
      nbdkit_debug ("async: lower flush failed: %s", strerror (err));
    store_flush_end (store, ticket, ok);
  }
  return NULL;
}

static void *
sampler_thread (void *arg)
{
  while (!sampler_stop) {
    /* Not store_get_stats: its walk of the tree held the store's lock
     * for milliseconds ten times a second (6% of nbdkit's time in a 4K
     * random write profile, every client waiting).
     */
    uint64_t bytes = store_written_back_bytes (store);

    pthread_mutex_lock (&rate_lock);
    samples[sample_next].t = now_s ();
    samples[sample_next].bytes = bytes;
    sample_next = (sample_next + 1) % RATE_SAMPLES;
    if (nsamples < RATE_SAMPLES)
      nsamples++;
    pthread_mutex_unlock (&rate_lock);
    usleep (100000);
  }
  return NULL;
}

double
writeback_rate (void)
{
  double rate = 0;

  pthread_mutex_lock (&rate_lock);
  if (nsamples >= 2) {
    unsigned newest = (sample_next + RATE_SAMPLES - 1) % RATE_SAMPLES;
    unsigned oldest = nsamples < RATE_SAMPLES ? 0 : sample_next;
    double dt = samples[newest].t - samples[oldest].t;

    if (dt > 0)
      rate = (samples[newest].bytes - samples[oldest].bytes) / dt;
  }
  pthread_mutex_unlock (&rate_lock);
  return rate;
}

int
writeback_start (struct store *s, nbdkit_next *next, unsigned nwriters,
              uint32_t blocks, bool serial)
{
  store = s;
  lower = next;
  batch_blocks = blocks;
  serialize = serial;
  lower_can_zero = next->can_zero (next);
  lower_can_trim = next->can_trim (next);
  lower_can_flush = next->can_flush (next);
  if (lower_can_zero == -1 || lower_can_trim == -1 || lower_can_flush == -1 ||
      next->can_fua (next) == -1)
    return -1;
  if (nwriters > MAX_WRITERS)
    nwriters = MAX_WRITERS;

  for (nstarted = 0; nstarted < nwriters; nstarted++) {
    errno = pthread_create (&writers[nstarted], NULL, writer_thread, NULL);
    if (errno) {
      nbdkit_error ("async: cannot start writer threads: %m");
      return -1;
    }
  }
  errno = pthread_create (&flusher, NULL, flusher_thread, NULL);
  if (errno) {
    nbdkit_error ("async: cannot start the flusher thread: %m");
    return -1;
  }
  flusher_started = true;
  errno = pthread_create (&sampler, NULL, sampler_thread, NULL);
  if (errno) {
    nbdkit_error ("async: cannot start the sampler thread: %m");
    return -1;
  }
  sampler_started = true;
  return 0;
}

/* Progress of a long drain goes to the log every DRAIN_REPORT_S seconds
 * at info level: a stop of a large store on a slow device may take many
 * minutes, and the operator (journalctl -u abd) must see it move.
 */
#define DRAIN_REPORT_S 5

bool
writeback_drain (unsigned exit_timeout)
{
  struct store_stats st;
  uint64_t progress = 0, written_at_start;
  double start = now_s (), last_progress = start, last_report = start;
  bool announced = false;

  if (store == NULL)
    return true;
  store_set_draining (store, true);
  store_get_stats (store, &st);
  written_at_start = st.written_back_bytes;
  if (!store_is_empty (store)) {
    abd_log (LOG_INFO, "async", "draining: writing back %.1f MiB of dirty "
             "data to the lower device", st.dirty_bytes / 1048576.0);
    announced = true;
  }
  while (nstarted > 0 && !store_is_empty (store)) {
    uint64_t p = store_progress (store);
    double t = now_s ();

    if (p != progress) {
      progress = p;
      last_progress = t;
    }
    if (exit_timeout && t - last_progress > exit_timeout)
      return false;
    if (t - last_report >= DRAIN_REPORT_S) {
      double rate;
      char failed[64] = "";

      store_get_stats (store, &st);
      rate = (st.written_back_bytes - written_at_start) / (t - start);
      if (st.lower_write_errors)
        snprintf (failed, sizeof failed, ", %" PRIu64 " lower writes "
                  "failed so far", st.lower_write_errors);
      if (rate > 0 && t - last_progress < DRAIN_REPORT_S)
        abd_log (LOG_INFO, "async",
                 "draining: %.1f MiB left, %.1f MiB/s, about %.0f s to go%s",
                 st.dirty_bytes / 1048576.0, rate / 1048576.0,
                 st.dirty_bytes / rate, failed);
      else
        abd_log (LOG_INFO, "async",
                 "draining: %.1f MiB left, nothing written back for "
                 "%.0f s%s", st.dirty_bytes / 1048576.0, t - last_progress,
                 failed);
      last_report = t;
    }
    usleep (10000);
  }
  if (!store_is_empty (store))
    return false;
  if (announced)
    abd_log (LOG_INFO, "async", "drained: all dirty data written back in "
             "%.1f s", now_s () - start);
  return true;
}

uint64_t
writeback_stop (void)
{
  struct store_stats st;
  unsigned i;
  int err;

  if (store == NULL)
    return 0;
  store_stop (store);
  for (i = 0; i < nstarted; i++)
    pthread_join (writers[i], NULL);
  nstarted = 0;
  if (flusher_started)
    pthread_join (flusher, NULL);
  flusher_started = false;
  sampler_stop = true;
  if (sampler_started)
    pthread_join (sampler, NULL);
  sampler_started = false;

  /* Writes that went straight through (sync mode) are flushed here too. */
  if (writeback_lower_flush (&err) == -1)
    nbdkit_error ("async: final flush of the lower device failed: %s",
                  strerror (err));

  store_get_stats (store, &st);
  return st.dirty_bytes;
}
