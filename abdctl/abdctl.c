/* abdctl: send one command to an abd filter's control socket and print
 * the answer.  Exit status: 0 when the filter answered OK, 1 when it
 * answered ERR, 2 for usage or connection errors.  See abdctl(1).
 */

#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "control.h"
#include "storefile.h"

static void __attribute__ ((noreturn))
usage (FILE *fp, int status)
{
  fprintf (fp,
"Usage: abdctl -s SOCKET [--json] COMMAND [ARG...]\n"
"       abdctl store-info PATH\n"
"Send COMMAND to the control socket of an abd filter and print the answer;\n"
"or show what an async filter's store file (async-store-file=) holds,\n"
"without starting nbdkit.\n"
"\n"
"Options:\n"
"  -s, --socket=PATH  the filter's control socket (async-control=,\n"
"                     memcache-control=)\n"
"  -j, --json         print the answer as one JSON object\n"
"  -h, --help         print this help\n"
"  -V, --version      print the version\n"
"\n"
"Commands of the async filter:\n"
"  status                 mode, dirty data, writeback progress, errors\n"
"  flush [SECONDS]        return when everything acknowledged before it is\n"
"                         on the lower device and flushed (default timeout 60)\n"
"  mode sync|async        switch the mode\n"
"Commands of the memcache filter:\n"
"  status                 hits, misses, per-server state and latency\n"
"  locate BLOCK           the server that holds cache block BLOCK, and its\n"
"                         key\n"
"\n"
"Exit status: 0 on OK, 1 when the filter reports an error (store-info: the\n"
"file is not a valid store file), 2 when the request could not be made.\n");
  exit (status);
}

int
main (int argc, char *argv[])
{
  static const struct option long_options[] = {
    { "socket",  required_argument, NULL, 's' },
    { "json",    no_argument,       NULL, 'j' },
    { "help",    no_argument,       NULL, 'h' },
    { "version", no_argument,       NULL, 'V' },
    { NULL }
  };
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  const char *path = NULL;
  bool json = false;
  char request[CTL_MAX_LINE];
  size_t len = 0;
  char response[65536];
  size_t rlen = 0;
  char *last;
  int c, fd, i;

  while ((c = getopt_long (argc, argv, "+s:jhV", long_options, NULL)) != -1) {
    switch (c) {
    case 's': path = optarg; break;
    case 'j': json = true; break;
    case 'h': usage (stdout, 0);
    case 'V': printf ("abdctl %s\n", PACKAGE_VERSION); exit (0);
    default: usage (stderr, 2);
    }
  }
  if (path == NULL && optind < argc &&
      strcmp (argv[optind], "store-info") == 0) {
    if (argc - optind != 2)
      usage (stderr, 2);
    exit (storefile_describe (argv[optind + 1], stdout) == 0 ? 0 : 1);
  }
  if (path == NULL || optind >= argc)
    usage (stderr, 2);

  for (i = optind; i < argc; i++) {
    int n = snprintf (request + len, sizeof request - len, "%s%s",
                      i > optind ? " " : "", argv[i]);
    if (n < 0 || (size_t) n >= sizeof request - len - 8) {
      fprintf (stderr, "abdctl: command too long\n");
      exit (2);
    }
    len += n;
  }
  len += snprintf (request + len, sizeof request - len, "%s\n",
                   json ? " --json" : "");

  if (strlen (path) >= sizeof addr.sun_path) {
    fprintf (stderr, "abdctl: socket path too long: %s\n", path);
    exit (2);
  }
  strcpy (addr.sun_path, path);
  fd = socket (AF_UNIX, SOCK_STREAM, 0);
  if (fd == -1 || connect (fd, (struct sockaddr *) &addr, sizeof addr) == -1) {
    fprintf (stderr, "abdctl: %s: %s\n", path, strerror (errno));
    exit (2);
  }
  if (write (fd, request, len) != (ssize_t) len) {
    fprintf (stderr, "abdctl: %s: write: %s\n", path, strerror (errno));
    exit (2);
  }
  for (;;) {
    ssize_t n = read (fd, response + rlen, sizeof response - 1 - rlen);
    if (n == -1 && errno == EINTR)
      continue;
    if (n == -1) {
      fprintf (stderr, "abdctl: %s: read: %s\n", path, strerror (errno));
      exit (2);
    }
    if (n == 0)
      break;
    rlen += n;
    if (rlen == sizeof response - 1) {
      fprintf (stderr, "abdctl: answer too long\n");
      exit (2);
    }
  }
  close (fd);
  response[rlen] = '\0';

  /* The last line is OK or ERR <message>; everything before it is the body. */
  if (rlen == 0 || response[rlen-1] != '\n') {
    fprintf (stderr, "abdctl: %s: incomplete answer\n", path);
    exit (2);
  }
  response[rlen-1] = '\0';
  last = strrchr (response, '\n');
  last = last ? last + 1 : response;
  fwrite (response, 1, last - response, stdout);
  if (strcmp (last, "OK") == 0)
    exit (0);
  if (strncmp (last, "ERR ", 4) == 0) {
    fprintf (stderr, "abdctl: %s\n", last + 4);
    exit (1);
  }
  fprintf (stderr, "abdctl: %s: unexpected answer: %s\n", path, last);
  exit (2);
}
