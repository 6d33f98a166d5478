/* SPDX-License-Identifier: BSD-3-Clause */
/* libFuzzer target: the control channel's request parser and reply
 * builder (common/control.c), which read bytes from any process allowed
 * to connect to a control socket.
 *
 * The input is one request line, optionally followed by '\n' and any
 * bytes, which the command "raw" puts in the reply as a string value (as a
 * filter would a parameter such as memcache-id).  A handler that echoes the
 * words back as fields, nests objects or fails on command exercises every
 * reply path in text and JSON; every word also goes through the number
 * parser, checked against strtoull.  Checked beyond memory safety: the
 * reply always ends with exactly one final line, "OK" or "ERR ...", every
 * text body line is one "name: value" field, and a JSON body is one object.
 */

#include <config.h>

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control.h"

/* control.c logs through nbdkit; there is no nbdkit here. */
void nbdkit_error (const char *fs, ...) { (void) fs; }
void nbdkit_debug (const char *fs, ...) { (void) fs; }

/* ctl_parse_uint must accept exactly the words of decimal digits whose
 * value is at most MAX, and return that value.
 */
static void
check_parse_uint (const char *word)
{
  const unsigned max = 86400;
  unsigned got;
  int r = ctl_parse_uint (word, max, &got);
  bool digits = *word != '\0';
  unsigned long long want;
  const char *p;

  for (p = word; *p; p++)
    if (!isdigit ((unsigned char) *p))
      digits = false;
  errno = 0;
  want = digits ? strtoull (word, NULL, 10) : 0;
  if (digits && errno == 0 && want <= max) {
    if (r != 0 || got != want)
      abort ();
  }
  else if (r != -1)
    abort ();
}

static int
echo_handler (void *opaque, int argc, char **argv, struct ctl_reply *r)
{
  const char *raw = opaque;
  int i;

  for (i = 0; i < argc; i++)
    check_parse_uint (argv[i]);

  if (strcmp (argv[0], "fail") == 0) {
    ctl_reply_error (r, "failed on purpose: %s", argc > 1 ? argv[1] : "");
    return -1;
  }
  if (strcmp (argv[0], "nofail") == 0)
    return -1;                  /* -1 without a message */
  for (i = 0; i < argc; i++) {
    if (strcmp (argv[i], "raw") == 0)
      ctl_reply_str (r, "raw", raw);
    else if (strcmp (argv[i], "{") == 0)
      ctl_reply_begin (r, "nested");
    else if (strcmp (argv[i], "}") == 0)
      ctl_reply_end (r);
    else if (argv[i][0] >= '0' && argv[i][0] <= '9')
      ctl_reply_u64 (r, "number", strtoull (argv[i], NULL, 10));
    else if (argv[i][0] == '-')
      ctl_reply_i64 (r, "negative", strtoll (argv[i], NULL, 10));
    else if (argv[i][0] == '.')
      ctl_reply_double (r, "real", strtod (argv[i], NULL));
    else if (argv[i][0] == '?')
      ctl_reply_bool (r, "flag", argv[i][1] == 't');
    else
      ctl_reply_str (r, "word", argv[i]);
  }
  return 0;
}

/* Every body line of a text reply is "name:" (a nested object) or
 * "name: value", indented, with no control byte.
 */
static void
check_text_body (const char *p, const char *end)
{
  while (p < end) {
    const char *nl = memchr (p, '\n', end - p);
    const char *q = p;

    while (*q == ' ')
      q++;
    if (!islower ((unsigned char) *q))
      abort ();
    while (islower ((unsigned char) *q) || *q == '_')
      q++;
    if (*q++ != ':' || (q != nl && *q != ' '))
      abort ();
    for (; q < nl; q++)
      if ((unsigned char) *q < 0x20 || *q == 0x7f)
        abort ();
    p = nl + 1;
  }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  const char *nl = memchr (data, '\n', size);
  size_t line_len = nl ? (size_t) (nl - (const char *) data) : size;
  char *raw, *reply;
  size_t len;
  const char *last;

  /* The bytes after the line, up to any NUL, as a C string. */
  raw = nl ? strndup (nl + 1, size - line_len - 1) : strdup ("");
  if (raw == NULL)
    return 0;
  reply = ctl_respond ((const char *) data, line_len, echo_handler, raw);
  free (raw);
  if (reply == NULL)            /* out of memory: allowed */
    return 0;
  len = strlen (reply);
  if (len == 0 || reply[len-1] != '\n')
    abort ();
  /* The final line. */
  last = len >= 2 ? reply + len - 2 : reply;
  while (last > reply && last[-1] != '\n')
    last--;
  if (strcmp (last, "OK\n") != 0 && strncmp (last, "ERR ", 4) != 0)
    abort ();
  /* Only the final line may be OK or ERR: no injected status lines. */
  if (strstr (reply, "\nOK\n") != NULL && strstr (reply, "\nOK\n") + 1 != last)
    abort ();
  if (strncmp (last, "ERR ", 4) == 0 && last != reply)
    abort ();                   /* an error has no body */
  /* A JSON body is one object on one line. */
  if (last != reply && reply[0] == '{') {
    if (last - reply < 3 || last[-2] != '}' ||
        memchr (reply, '\n', last - reply - 1) != NULL)
      abort ();
  }
  else
    check_text_body (reply, last);
  free (reply);
  return 0;
}
