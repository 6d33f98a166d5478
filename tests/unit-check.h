/* SPDX-License-Identifier: BSD-3-Clause */
/* abd: what the C unit tests share, included once by each test program
 * after it defines UNIT_NAME ("test-foo").
 *
 *   CHECK (cond, fmt, ...)   count a check; if COND is false, print where
 *                            and FMT, count a failure, and go on
 *   unit_summary ()          print the totals; the exit status of main
 *   nbdkit_error             what the code under test reports errors
 *                            with (tests are not linked with nbdkit): the
 *                            last message is kept in unit_last_error
 */

#ifndef ABD_UNIT_CHECK_H
#define ABD_UNIT_CHECK_H

#include <stdarg.h>
#include <stdio.h>

#ifndef UNIT_NAME
#error "define UNIT_NAME before including unit-check.h"
#endif

static unsigned unit_checks, unit_failures;
static char unit_last_error[512];

#define CHECK(cond, ...)                                                \
  do {                                                                  \
    unit_checks++;                                                      \
    if (!(cond)) {                                                      \
      unit_failures++;                                                  \
      fprintf (stderr, UNIT_NAME ": FAIL at %s:%d: ", __FILE__, __LINE__); \
      fprintf (stderr, __VA_ARGS__);                                    \
      fprintf (stderr, "\n");                                           \
    }                                                                   \
  } while (0)

void
nbdkit_error (const char *fs, ...)
{
  va_list args;

  va_start (args, fs);
  vsnprintf (unit_last_error, sizeof unit_last_error, fs, args);
  va_end (args);
}

static int
unit_summary (void)
{
  if (unit_failures) {
    fprintf (stderr, UNIT_NAME ": %u of %u checks failed\n",
             unit_failures, unit_checks);
    return 1;
  }
  printf (UNIT_NAME ": all %u checks passed\n", unit_checks);
  return 0;
}

#endif /* ABD_UNIT_CHECK_H */
