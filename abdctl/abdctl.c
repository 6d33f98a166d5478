/* SPDX-License-Identifier: BSD-3-Clause */
/* abd: abdctl, the operator's client of the filters' control sockets:
 * options, which socket a command goes to, and the commands.  Exit
 * status: 0 when the filter answered OK, 1 when it answered ERR, 2 for
 * usage errors and when the request could not be made.  See abdctl(1).
 *
 * Which socket: -s PATH, else $ABDCTL_SOCKET, else the command's default:
 * flush and mode go to the async filter's /run/abd/async.ctl, locate and
 * servers to the memcache filter's /run/abd/memcache.ctl, and status and
 * metrics to each of the two that exists.
 */

#include <config.h>

#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "abdctl.h"
#include "control.h"
#include "storefile.h"

static void __attribute__ ((noreturn))
usage (FILE *fp, int status)
{
  fprintf (fp,
"Usage: abdctl [-s SOCKET] [--json|--raw] status\n"
"       abdctl [-s SOCKET] flush [--progress] [--interval=SECONDS] [SECONDS]\n"
"       abdctl [-s SOCKET] [--json] mode sync|async\n"
"       abdctl [-s SOCKET] [--json] locate BLOCK\n"
"       abdctl [-s SOCKET] [--json] servers [add HOST:PORT [--warm SECONDS] |\n"
"                 remove HOST:PORT [--drain SECONDS] |\n"
"                 reload [--drain SECONDS]]\n"
"       abdctl [-s SOCKET] metrics\n"
"       abdctl store-info PATH\n"
"Send a command to the control socket of an abd filter and show the\n"
"answer; or show what an async filter's store file (async-store-file=)\n"
"holds, without starting nbdkit.\n"
"\n"
"Options:\n"
"  -s, --socket=PATH    the filter's control socket (async-control=,\n"
"                       memcache-control=); default $ABDCTL_SOCKET, else\n"
"                       " ASYNC_SOCKET " (status, metrics: and\n"
"                       " MEMCACHE_SOCKET "; locate, servers: only that)\n"
"  -j, --json           the answer as one JSON object, as the filter gave it\n"
"  -r, --raw            the answer as the filter's name: value lines\n"
"  -p, --progress       flush: show the drain while it runs\n"
"  -i, --interval=SECS  flush --progress: seconds between lines when\n"
"                       stdout is not a terminal (default 1)\n"
"  -h, --help           print this help\n"
"  -V, --version        print the version\n"
"\n"
"Commands of the async filter:\n"
"  status                 mode, dirty data, writeback progress, errors\n"
"  flush [SECONDS]        return when everything acknowledged before it is\n"
"                         on the lower device and flushed (default timeout 60)\n"
"  mode sync|async        switch the mode\n"
"Commands of the memcache filter:\n"
"  status                 hit ratio, misses, per-server state and latency\n"
"  locate BLOCK           the server that holds cache block BLOCK, and its\n"
"                         key\n"
"  servers                the pool: each server's address, state, share\n"
"                         of the blocks and hit ratio\n"
"  servers add HOST:PORT [--warm SECONDS]\n"
"                         add a server to the running pool (it must answer);\n"
"                         for SECONDS (default 300) misses on moved blocks\n"
"                         are asked of their previous server and copied\n"
"  servers remove HOST:PORT [--drain SECONDS]\n"
"                         take a server out of the running pool (drained\n"
"                         for SECONDS: it must keep running meanwhile)\n"
"  servers reload [--drain SECONDS]\n"
"                         make the pool memcache-servers-file's list again\n"
"Of both:\n"
"  metrics                status in the Prometheus text format\n"
"\n"
"Exit status: 0 on OK, 1 when the filter reports an error (store-info: the\n"
"file is not a valid store file), 2 on a usage error or when the request\n"
"could not be made.\n");
  exit (status);
}

static void __attribute__ ((noreturn, format (printf, 1, 2)))
usage_error (const char *fmt, ...)
{
  va_list args;

  fprintf (stderr, "abdctl: ");
  va_start (args, fmt);
  vfprintf (stderr, fmt, args);
  va_end (args);
  fprintf (stderr, "\nTry 'abdctl --help'.  Usage: abdctl [-s SOCKET] "
           "[OPTION]... COMMAND [ARG]...\n");
  exit (EXIT_FAILED);
}

static double
parse_interval (const char *arg)
{
  char *end;
  double secs = strtod (arg, &end);

  if (end == arg || *end != '\0' || !(secs >= 0.05) || secs > 3600)
    usage_error ("--interval=%s: expected seconds from 0.05 to 3600", arg);
  return secs;
}

/* How the answer is shown. */
enum format { FORMAT_HUMAN, FORMAT_JSON, FORMAT_RAW };

/* Join COMMAND's words into one request line; --json is the last word. */
static void
build_request (char *request, int argc, char **argv, bool json)
{
  size_t len = 0;
  int i;

  for (i = 0; i < argc; i++) {
    int n = snprintf (request + len, CTL_MAX_LINE - len, "%s%s",
                      i > 0 ? " " : "", argv[i]);

    if (n < 0 || (size_t) n >= CTL_MAX_LINE - len - 8) {
      fprintf (stderr, "abdctl: command too long\n");
      exit (EXIT_FAILED);
    }
    len += n;
  }
  snprintf (request + len, CTL_MAX_LINE - len, "%s\n", json ? " --json" : "");
}

static bool
exists (const char *path)
{
  struct stat st;

  return stat (path, &st) == 0;
}

/* The sockets of status and metrics without -s: each default that
 * exists.  Returns how many.
 */
static size_t
default_layers (const char **paths, enum layer *layers)
{
  size_t n = 0;

  if (exists (ASYNC_SOCKET)) {
    paths[n] = ASYNC_SOCKET;
    layers[n++] = LAYER_ASYNC;
  }
  if (exists (MEMCACHE_SOCKET)) {
    paths[n] = MEMCACHE_SOCKET;
    layers[n++] = LAYER_MEMCACHE;
  }
  if (n == 0) {
    fprintf (stderr, "abdctl: neither %s nor %s exists: is abd running?  "
             "(-s PATH or ABDCTL_SOCKET=PATH names another socket)\n",
             ASYNC_SOCKET, MEMCACHE_SOCKET);
    exit (EXIT_FAILED);
  }
  return n;
}

/* Print one answer as the filter gave it; report an ERR.  Returns the
 * exit status.
 */
static int
print_answer (int rc, struct answer *a)
{
  if (rc == EXIT_FAILED)
    return rc;
  fputs (a->body, stdout);
  if (rc == EXIT_ERR)
    fprintf (stderr, "abdctl: %s\n", a->error ? a->error : "error");
  return rc;
}

/* Indent every line of TEXT by two spaces (--raw of several layers: the
 * control protocol's own nesting).
 */
static void
print_indented (const char *text)
{
  const char *p;

  for (p = text; *p; ) {
    const char *nl = strchr (p, '\n');
    size_t len = nl ? (size_t) (nl - p + 1) : strlen (p);

    printf ("  %.*s", (int) len, p);
    p += len;
  }
}

/* status of one or more layers.  One layer: --json and --raw print the
 * filter's answer unchanged.  Several: each under its layer name (JSON:
 * one object with a key per layer).  The exit status is the worst.
 */
static int
cmd_status (const char **paths, enum layer *layers, size_t n,
            enum format format, int argc, char **argv)
{
  char request[CTL_MAX_LINE];
  int worst = EXIT_OK;
  bool json_started = false;
  size_t i;

  build_request (request, argc, argv, format == FORMAT_JSON);
  for (i = 0; i < n; i++) {
    struct answer a;
    struct fields fs;
    int rc = ask (paths[i], request, &a, stderr);

    if (rc != EXIT_OK || (n == 1 && format != FORMAT_HUMAN)) {
      rc = print_answer (rc, &a);
      goto next;
    }
    if (format == FORMAT_JSON) {
      size_t len = strlen (a.body);

      while (len > 0 && a.body[len - 1] == '\n')
        len--;
      printf ("%s\"%s\":%.*s", json_started ? "," : "{",
              layer_name (layers[i]), (int) len, a.body);
      json_started = true;
    }
    else if (format == FORMAT_RAW) {
      printf ("%s:\n", layer_name (layers[i]));
      print_indented (a.body);
    }
    else if (fields_parse (a.body, &fs) == -1) {
      fprintf (stderr, "abdctl: %s: cannot read the answer\n", paths[i]);
      rc = EXIT_FAILED;
    }
    else {
      if (layers[i] == LAYER_UNKNOWN)
        layers[i] = layer_of (&fs);
      printf ("%s%s: %s\n", i > 0 ? "\n" : "", layer_name (layers[i]),
              paths[i]);
      show_status (stdout, &fs, layers[i]);
      fields_free (&fs);
    }
  next:
    answer_free (&a);
    if (rc > worst)
      worst = rc;
  }
  if (json_started)
    printf ("}\n");
  return worst;
}

/* metrics: abd_up is 0 for a layer that did not answer; the exit status
 * is the worst, so that a collector script can keep the last good file.
 */
static int
cmd_metrics (const char **paths, enum layer *layers, size_t n)
{
  struct layer_status ls[2];
  struct answer a[2];
  int worst = EXIT_OK;
  size_t i;

  for (i = 0; i < n; i++) {
    int rc = ask (paths[i], "status\n", &a[i], stderr);

    ls[i].layer = layers[i];
    ls[i].up = false;
    if (rc == EXIT_ERR)
      fprintf (stderr, "abdctl: %s: %s\n", paths[i], a[i].error);
    else if (rc == EXIT_OK && fields_parse (a[i].body, &ls[i].fs) == -1) {
      fprintf (stderr, "abdctl: %s: cannot read the answer\n", paths[i]);
      rc = EXIT_FAILED;
    }
    else if (rc == EXIT_OK) {
      ls[i].up = true;
      if (ls[i].layer == LAYER_UNKNOWN)
        ls[i].layer = layer_of (&ls[i].fs);
    }
    if (rc > worst)
      worst = rc;
  }
  metrics_print (stdout, ls, n);
  for (i = 0; i < n; i++) {
    if (ls[i].up)
      fields_free (&ls[i].fs);
    answer_free (&a[i]);
  }
  return worst;
}

int
main (int argc, char *argv[])
{
  static const struct option long_options[] = {
    { "socket",   required_argument, NULL, 's' },
    { "json",     no_argument,       NULL, 'j' },
    { "raw",      no_argument,       NULL, 'r' },
    { "progress", no_argument,       NULL, 'p' },
    { "interval", required_argument, NULL, 'i' },
    { "help",     no_argument,       NULL, 'h' },
    { "version",  no_argument,       NULL, 'V' },
    { NULL }
  };
  const char *path = NULL, *cmd;
  const char *paths[2];
  enum layer layers[2] = { LAYER_UNKNOWN, LAYER_UNKNOWN };
  enum format format = FORMAT_HUMAN;
  bool progress = false, json = false, raw = false;
  double interval = 1;
  char request[CTL_MAX_LINE];
  struct answer a;
  char **words;
  int c, nwords, i, j;
  size_t n = 1;

  /* Options come before the command ("+"); abdctl's own options may
   * also follow it (flush --progress, status --json), see below.
   */
  while ((c = getopt_long (argc, argv, "+s:jrpi:hV", long_options,
                           NULL)) != -1) {
    switch (c) {
    case 's': path = optarg; break;
    case 'j': json = true; break;
    case 'r': raw = true; break;
    case 'p': progress = true; break;
    case 'i': interval = parse_interval (optarg); break;
    case 'h': usage (stdout, EXIT_OK);
    case 'V': printf ("abdctl %s\n", PACKAGE_VERSION); exit (EXIT_OK);
    default: usage (stderr, EXIT_FAILED);
    }
  }
  if (optind >= argc)
    usage_error ("no command given");
  cmd = argv[optind];
  if (path == NULL && strcmp (cmd, "store-info") == 0) {
    if (argc - optind != 2)
      usage_error ("store-info takes one PATH");
    exit (storefile_describe (argv[optind + 1], stdout) == 0
          ? EXIT_OK : EXIT_ERR);
  }

  /* The command's words, without the options of abdctl after it. */
  words = &argv[optind];
  nwords = argc - optind;
  for (i = j = 1; i < nwords; i++) {
    const char *w = words[i];

    if (strcmp (w, "--json") == 0 || strcmp (w, "-j") == 0)
      json = true;
    else if (strcmp (w, "--raw") == 0 || strcmp (w, "-r") == 0)
      raw = true;
    else if (strcmp (w, "--progress") == 0 || strcmp (w, "-p") == 0)
      progress = true;
    else if (strncmp (w, "--interval=", 11) == 0)
      interval = parse_interval (w + 11);
    else if (strcmp (w, "--interval") == 0 || strcmp (w, "-i") == 0) {
      if (i + 1 == nwords)
        usage_error ("%s needs a number of seconds", w);
      interval = parse_interval (words[++i]);
    }
    else
      words[j++] = words[i];
  }
  nwords = j;
  if (json && raw)
    usage_error ("--json and --raw exclude each other");
  format = json ? FORMAT_JSON : raw ? FORMAT_RAW : FORMAT_HUMAN;
  if (progress && strcmp (cmd, "flush") != 0)
    usage_error ("--progress is an option of flush");
  if (progress && json)
    usage_error ("flush --progress shows progress, not JSON");

  if (path == NULL && getenv ("ABDCTL_SOCKET") &&
      getenv ("ABDCTL_SOCKET")[0] != '\0')
    path = getenv ("ABDCTL_SOCKET");

  if (strcmp (cmd, "status") == 0 || strcmp (cmd, "metrics") == 0) {
    if (path)
      paths[0] = path;
    else
      n = default_layers (paths, layers);
    if (strcmp (cmd, "status") == 0)
      exit (cmd_status (paths, layers, n, format, nwords, words));
    if (nwords != 1)
      usage_error ("metrics takes no argument");
    if (format != FORMAT_HUMAN)
      usage_error ("metrics has one format: Prometheus text");
    exit (cmd_metrics (paths, layers, n));
  }

  if (path == NULL) {
    if (strcmp (cmd, "flush") == 0 || strcmp (cmd, "mode") == 0)
      path = ASYNC_SOCKET;
    else if (strcmp (cmd, "locate") == 0 || strcmp (cmd, "servers") == 0)
      path = MEMCACHE_SOCKET;
    else
      usage_error ("unknown command '%s'", cmd);
  }
  build_request (request, nwords, words, json);
  if (progress)
    exit (progress_flush (path, request, interval));
  exit (print_answer (ask (path, request, &a, stderr), &a));
}
