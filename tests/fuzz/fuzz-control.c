/* libFuzzer target: the control channel's request parser and reply
 * builder (common/control.c), which read bytes from any process allowed
 * to connect to a control socket.
 *
 * The input is one request line.  A handler that echoes the words back as
 * fields, nests objects or fails on command exercises every reply path in
 * text and JSON.  Checked beyond memory safety: the reply always ends with
 * exactly one final line, "OK" or "ERR ...", and a JSON body is one object.
 */

#include <config.h>

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

static int
echo_handler (void *opaque, int argc, char **argv, struct ctl_reply *r)
{
  int i;

  if (strcmp (argv[0], "fail") == 0) {
    ctl_reply_error (r, "failed on purpose: %s", argc > 1 ? argv[1] : "");
    return -1;
  }
  if (strcmp (argv[0], "nofail") == 0)
    return -1;                  /* -1 without a message */
  for (i = 0; i < argc; i++) {
    if (strcmp (argv[i], "{") == 0)
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

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  char *reply = ctl_respond ((const char *) data, size, echo_handler, NULL);
  size_t len;
  const char *last;

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
  free (reply);
  return 0;
}
