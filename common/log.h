/* SPDX-License-Identifier: BSD-3-Clause */
/* abd: messages for the operator at a syslog priority (warning, notice,
 * info), which nbdkit 1.32's API cannot give: it has nbdkit_error,
 * always shown but always "error", and nbdkit_debug, shown only with -v.
 *
 * abd_log goes where nbdkit's own messages go, at the right priority:
 * - nbdkit forked into the background (its stderr is /dev/null): syslog,
 *   facility daemon, as nbdkit's errors;
 * - stderr is systemd's journal stream ($JOURNAL_STREAM names it): the
 *   line with a "<N>" priority prefix, which journald parses;
 * - otherwise stderr (nbdkit -f, tests, a terminal):
 *   "nbdkit: LABEL: warning: message".
 */

#ifndef ABD_LOG_H
#define ABD_LOG_H

#include <syslog.h>

/* PRIORITY is LOG_WARNING, LOG_NOTICE or LOG_INFO; LABEL the filter. */
extern void abd_log (int priority, const char *label, const char *fs, ...)
  __attribute__ ((format (printf, 3, 4)));

#endif /* ABD_LOG_H */
