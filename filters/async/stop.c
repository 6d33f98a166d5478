/* SPDX-License-Identifier: BSD-3-Clause */
/* abd async filter: write everything back before nbdkit stops (see stop.h).
 *
 * The signal handler only writes the signal number to a pipe (nothing else
 * is safe in a handler).  The stopper thread, started by stop_catch and
 * joined by stop_release, reads the pipe and does the work; a 0 byte from
 * stop_release tells it to end.  It touches the store only through
 * writeback.c and the mode only through the BEGIN callback.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#include <nbdkit-filter.h>

#include "stop.h"
#include "writeback.h"

/* The signals nbdkit treats as "quit". */
static const int stop_signals[] = { SIGINT, SIGTERM, SIGQUIT, SIGHUP };
#define NSIGNALS (sizeof stop_signals / sizeof stop_signals[0])

static struct sigaction nbdkit_actions[NSIGNALS];   /* to give back */
static bool caught;
static int stop_pipe[2] = { -1, -1 };
static pthread_t stopper;
static bool stopper_started;

static void (*drain_begin) (void);
static unsigned drain_timeout;
static bool drain_gave_up;              /* written by the stopper only */

static const char *
signal_name (int sig)
{
  switch (sig) {
  case SIGINT: return "SIGINT";
  case SIGTERM: return "SIGTERM";
  case SIGQUIT: return "SIGQUIT";
  default: return "SIGHUP";
  }
}

static void
stop_handler (int sig)
{
  int saved_errno = errno;
  char c = sig;

  /* If the pipe is full, signals are already waiting to be read. */
  if (write (stop_pipe[1], &c, 1) == -1) {
    /* nothing to do */
  }
  errno = saved_errno;
}

static void
stop_drain (int sig)
{
  int err;

  nbdkit_debug ("async: %s: writing back every dirty byte before nbdkit "
                "stops", signal_name (sig));
  drain_begin ();
  if (!writeback_drain (drain_timeout)) {
    drain_gave_up = true;
    nbdkit_error ("async: %s: the lower device made no progress for %u s "
                  "(async-exit-timeout): stopping with dirty data",
                  signal_name (sig), drain_timeout);
  }
  else if (writeback_lower_flush (&err) == -1)
    nbdkit_error ("async: %s: flush of the lower device failed: %s",
                  signal_name (sig), strerror (err));
  else
    nbdkit_debug ("async: %s: all dirty data written and flushed; "
                  "nbdkit stops now", signal_name (sig));
  nbdkit_shutdown ();
}

static void *
stopper_thread (void *arg)
{
  bool drained = false;

  for (;;) {
    char c;
    ssize_t r = read (stop_pipe[0], &c, 1);

    if (r == -1 && errno == EINTR)
      continue;
    if (r <= 0 || c == 0)
      return NULL;
    if (drained) {
      /* Read only after the drain: nbdkit is already stopping. */
      nbdkit_debug ("async: %s while stopping: ignored", signal_name (c));
      continue;
    }
    drained = true;
    stop_drain (c);
  }
}

int
stop_catch (void (*begin) (void), unsigned exit_timeout)
{
  struct sigaction sa;
  size_t i;

  drain_begin = begin;
  drain_timeout = exit_timeout;
  if (pipe2 (stop_pipe, O_CLOEXEC) == -1) {
    nbdkit_error ("async: pipe2: %m");
    return -1;
  }
  if (fcntl (stop_pipe[1], F_SETFL, O_NONBLOCK) == -1) {
    nbdkit_error ("async: fcntl: %m");
    return -1;
  }
  errno = pthread_create (&stopper, NULL, stopper_thread, NULL);
  if (errno) {
    nbdkit_error ("async: cannot start the stopper thread: %m");
    return -1;
  }
  stopper_started = true;

  memset (&sa, 0, sizeof sa);
  sa.sa_handler = stop_handler;
  sa.sa_flags = SA_RESTART;
  sigfillset (&sa.sa_mask);
  for (i = 0; i < NSIGNALS; i++)
    if (sigaction (stop_signals[i], &sa, &nbdkit_actions[i]) == -1) {
      nbdkit_error ("async: sigaction: %m");
      while (i-- > 0)
        sigaction (stop_signals[i], &nbdkit_actions[i], NULL);
      return -1;
    }
  caught = true;
  return 0;
}

bool
stop_release (void)
{
  size_t i;
  char c = 0;

  /* Handlers first, so that none writes to the pipe once it is closed. */
  if (caught)
    for (i = 0; i < NSIGNALS; i++)
      sigaction (stop_signals[i], &nbdkit_actions[i], NULL);
  caught = false;

  if (stopper_started) {
    while (write (stop_pipe[1], &c, 1) == -1 && errno == EAGAIN)
      usleep (1000);            /* full of signals: the thread reads them */
    pthread_join (stopper, NULL);
    stopper_started = false;
  }
  for (i = 0; i < 2; i++)
    if (stop_pipe[i] >= 0) {
      close (stop_pipe[i]);
      stop_pipe[i] = -1;
    }
  return drain_gave_up;
}
