/* SPDX-License-Identifier: BSD-3-Clause */
/* abd async filter: write everything back before nbdkit stops.
 *
 * nbdkit's own SIGINT/SIGTERM/SIGQUIT/SIGHUP handler sets its quit flag at
 * once, and from then on nbdkit_nanosleep refuses to sleep: every write-back
 * through a filter below that sleeps (delay, rate, retry, retry-request)
 * fails, so a drain in .cleanup comes too late.  stop_catch (in .after_fork,
 * after nbdkit installed its handlers) puts handlers of its own in their
 * place.  On the first of those signals the stopper thread calls BEGIN (the
 * filter goes to sync mode and says it is draining), writes back every
 * dirty byte while nbdkit still serves, flushes the lower device, and only
 * then asks nbdkit to quit (nbdkit_shutdown).  More signals change nothing:
 * only SIGKILL abandons dirty data.  The end of a --run command is the same
 * SIGTERM (nbdkit's parent process sends it to the serving one).
 */

#ifndef ABD_ASYNC_STOP_H
#define ABD_ASYNC_STOP_H

#include <stdbool.h>

/* Take over the signals and start the stopper thread.  EXIT_TIMEOUT: give
 * up draining after that many seconds without progress (0: never).
 */
int stop_catch (void (*begin) (void), unsigned exit_timeout);

/* In .cleanup: give the signals back to nbdkit and join the thread (after
 * its drain, if one is running).  Returns true if a drain gave up.
 */
bool stop_release (void);

#endif /* ABD_ASYNC_STOP_H */
