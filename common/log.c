/* SPDX-License-Identifier: BSD-3-Clause */
/* abd: messages for the operator at a syslog priority (see log.h). */

#include <config.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <syslog.h>
#include <unistd.h>

#include "log.h"

enum log_sink { SINK_STDERR, SINK_JOURNAL, SINK_SYSLOG };

/* Decided at every call: nbdkit forks into the background between the
 * filters' .get_ready and .after_fork, and then points stderr at
 * /dev/null (unless -v).
 */
static enum log_sink
log_sink (void)
{
  struct stat st;
  const char *stream;
  unsigned long long dev, ino;

  if (fstat (STDERR_FILENO, &st) == -1)
    return SINK_SYSLOG;
  if (S_ISCHR (st.st_mode) && st.st_rdev == makedev (1, 3))
    return SINK_SYSLOG;
  stream = getenv ("JOURNAL_STREAM");
  if (stream && sscanf (stream, "%llu:%llu", &dev, &ino) == 2 &&
      st.st_dev == dev && st.st_ino == ino)
    return SINK_JOURNAL;
  return SINK_STDERR;
}

static const char *
log_level_name (int priority)
{
  switch (priority) {
  case LOG_EMERG: case LOG_ALERT: case LOG_CRIT: case LOG_ERR:
    return "error";
  case LOG_WARNING: return "warning";
  case LOG_NOTICE: return "notice";
  default: return "info";
  }
}

void
abd_log (int priority, const char *label, const char *fs, ...)
{
  int err = errno;
  char msg[1024];
  va_list args;

  va_start (args, fs);
  vsnprintf (msg, sizeof msg, fs, args);
  va_end (args);

  switch (log_sink ()) {
  case SINK_SYSLOG:
    syslog (LOG_DAEMON | priority, "%s: %s", label, msg);
    break;
  case SINK_JOURNAL:
    fprintf (stderr, "<%d>nbdkit: %s: %s\n", priority, label, msg);
    break;
  case SINK_STDERR:
    fprintf (stderr, "nbdkit: %s: %s: %s\n",
             label, log_level_name (priority), msg);
    break;
  }
  errno = err;
}
