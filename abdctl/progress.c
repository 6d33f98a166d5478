/* SPDX-License-Identifier: BSD-3-Clause */
/* abd: `abdctl flush --progress`: the drain shown while a flush waits.
 *
 * One flush request, exactly as without --progress, and `status` polls on
 * other connections while it waits (the control channel runs each request
 * on a thread of its own, so status is answered while a flush blocks).
 * The other way, polling status until nothing is dirty and then sending a
 * flush, was not taken: a flush promises what was acknowledged before it
 * was *asked*, so asked at the end it would also wait for whatever
 * clients wrote meanwhile, and its timeout would start late.  With one
 * request the answer, the exit status and the timeout are those of
 * `abdctl flush`; the polls only add what is shown, and a poll that fails
 * (busy, say) is skipped.
 *
 * Shown on stdout: on a terminal one line, redrawn, with a bar; otherwise
 * (a log, a pipe) one plain line per interval.
 *
 * Progress is measured in dirty bytes, because data stays dirty until the
 * lower device is flushed after its write (written_back_bytes counts it
 * earlier, so it overlaps dirty_bytes): done is the most that was dirty
 * since the flush began, less what is dirty now.  If clients write
 * faster than the lower device takes it, the total grows and the
 * percentage steps back.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "abdctl.h"

#define PROGRESS_TTY_INTERVAL 0.2 /* seconds between redraws */
#define PROGRESS_BAR_MAX 40       /* characters of the bar */

/* One status poll: what progress needs. */
struct sample {
  uint64_t dirty;               /* dirty_bytes */
  uint64_t written_back;        /* written_back_bytes */
  uint64_t rate;                /* writeback_rate_bytes_per_sec */
  int64_t eta;                  /* drain_estimate_seconds, -1: unknown */
};

static double
now_s (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static bool
progress_sample (const char *path, struct sample *s)
{
  struct answer a;
  struct fields fs;
  bool ok = false;

  if (ask (path, "status\n", &a, NULL) != EXIT_OK)
    goto out;
  if (fields_parse (a.body, &fs) == -1)
    goto out;
  s->eta = -1;
  ok = fields_u64 (&fs, "dirty_bytes", &s->dirty) &&
       fields_u64 (&fs, "written_back_bytes", &s->written_back) &&
       fields_u64 (&fs, "writeback_rate_bytes_per_sec", &s->rate);
  fields_i64 (&fs, "drain_estimate_seconds", &s->eta);
  fields_free (&fs);
 out:
  answer_free (&a);
  return ok;
}

static int
terminal_width (void)
{
  struct winsize ws;

  if (ioctl (STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 40)
    return ws.ws_col;
  return 80;
}

/* "0:07", "12:34", "1:02:03"; "?" when unknown. */
static const char *
fmt_eta (char *buf, int64_t secs)
{
  if (secs < 0)
    snprintf (buf, SIZE_BUF, "?");
  else if (secs < 3600)
    snprintf (buf, SIZE_BUF, "%" PRIi64 ":%02" PRIi64, secs / 60, secs % 60);
  else
    snprintf (buf, SIZE_BUF, "%" PRIi64 ":%02" PRIi64 ":%02" PRIi64,
              secs / 3600, secs / 60 % 60, secs % 60);
  return buf;
}

/* *MOST_DIRTY: the most dirty bytes seen since the flush began. */
static void
progress_show (bool tty, uint64_t *most_dirty, const struct sample *s)
{
  char done_s[SIZE_BUF], total_s[SIZE_BUF], rate_s[SIZE_BUF], eta_s[SIZE_BUF];
  char dirty_s[SIZE_BUF];
  uint64_t total, done;
  int pct;

  if (s->dirty > *most_dirty)
    *most_dirty = s->dirty;
  total = *most_dirty;
  done = total - s->dirty;
  pct = total ? (int) (100 * done / total) : 100;

  fmt_size (done_s, done);
  fmt_size (total_s, total);
  fmt_size (rate_s, s->rate);
  fmt_size (dirty_s, s->dirty);
  fmt_eta (eta_s, s->eta);
  if (tty) {
    int width = terminal_width () - 50, fill, i;

    if (width > PROGRESS_BAR_MAX)
      width = PROGRESS_BAR_MAX;
    if (width < 10)
      width = 10;
    fill = width * pct / 100;
    printf ("\r[");
    for (i = 0; i < width; i++)
      putchar (i < fill ? '#' : '.');
    printf ("] %3d%% %s/%s %s/s left %s\033[K", pct, done_s, total_s,
            rate_s, eta_s);
  }
  else
    printf ("flush: %d%% done (%s of %s), %s still dirty, %s/s, "
            "time left %s\n", pct, done_s, total_s, dirty_s, rate_s,
            s->eta < 0 ? "unknown" : eta_s);
  fflush (stdout);
}

int
progress_flush (const char *path, const char *request, double interval)
{
  bool tty = isatty (STDOUT_FILENO);
  struct sample first = { 0 }, s;
  uint64_t most_dirty = 0;
  struct answer a;
  double start = now_s ();
  char size_s[SIZE_BUF];
  bool have_first;
  int fd, rc;

  if (tty && interval > PROGRESS_TTY_INTERVAL)
    interval = PROGRESS_TTY_INTERVAL;
  have_first = progress_sample (path, &first);
  fd = ask_send (path, request, stderr);
  if (fd == -1)
    return EXIT_FAILED;
  if (have_first)
    progress_show (tty, &most_dirty, &first);

  for (;;) {
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    int r = poll (&pfd, 1, (int) (interval * 1000));

    if (r == -1 && errno == EINTR)
      continue;
    if (r != 0)                 /* the answer (or an error: read it) */
      break;
    if (!progress_sample (path, &s))
      continue;
    if (!have_first) {
      first = s;
      have_first = true;
    }
    progress_show (tty, &most_dirty, &s);
  }

  rc = ask_receive (fd, path, &a, stderr);
  if (tty)
    printf ("\r\033[K");
  if (rc == EXIT_OK) {
    fputs (a.body, stdout);
    if (have_first && progress_sample (path, &s)) {
      uint64_t done = s.written_back - first.written_back;

      printf ("flush: done, %s written back in %.1f s\n",
              fmt_size_raw (size_s, done), now_s () - start);
    }
    else
      printf ("flush: done in %.1f s\n", now_s () - start);
  }
  else if (rc == EXIT_ERR)
    fprintf (stderr, "abdctl: %s\n", a.error);
  fflush (stdout);
  answer_free (&a);
  return rc;
}
