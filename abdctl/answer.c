/* SPDX-License-Identifier: BSD-3-Clause */
/* abd: abdctl's side of the control protocol (control.h): one request per
 * connection, the answer read to the end, its last line OK or ERR; and the
 * text body parsed into fields for show.c, progress.c and metrics.c.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "abdctl.h"

/* Larger than any answer the filters give (a memcache status with many
 * servers is the longest, about 400 bytes a server).
 */
#define ANSWER_MAX (1024 * 1024)

/* A failure to ask, on ERR unless it is NULL (progress.c's polls, which
 * just try again).
 */
static void __attribute__ ((format (printf, 2, 3)))
say (FILE *err, const char *fmt, ...)
{
  va_list args;

  if (err == NULL)
    return;
  va_start (args, fmt);
  vfprintf (err, fmt, args);
  va_end (args);
}

int
ask_send (const char *path, const char *request, FILE *err)
{
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  size_t len = strlen (request);
  int fd;

  if (strlen (path) >= sizeof addr.sun_path) {
    say (err, "abdctl: socket path too long: %s\n", path);
    return -1;
  }
  strcpy (addr.sun_path, path);
  fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd == -1 || connect (fd, (struct sockaddr *) &addr, sizeof addr) == -1) {
    say (err, "abdctl: %s: %s\n", path, strerror (errno));
    if (fd >= 0)
      close (fd);
    return -1;
  }
  if (send (fd, request, len, MSG_NOSIGNAL) != (ssize_t) len) {
    say (err, "abdctl: %s: write: %s\n", path, strerror (errno));
    close (fd);
    return -1;
  }
  return fd;
}

int
ask_receive (int fd, const char *path, struct answer *a, FILE *err)
{
  size_t len = 0, cap = 4096;
  char *buf = malloc (cap), *last;

  a->body = a->error = NULL;
  if (buf == NULL) {
    say (err, "abdctl: out of memory\n");
    close (fd);
    return EXIT_FAILED;
  }
  for (;;) {
    ssize_t n;

    if (len + 1 == cap) {
      char *p = cap < ANSWER_MAX ? realloc (buf, cap * 2) : NULL;

      if (p == NULL) {
        say (err, "abdctl: %s: answer too long\n", path);
        goto failed;
      }
      buf = p;
      cap *= 2;
    }
    n = read (fd, buf + len, cap - 1 - len);
    if (n == -1 && errno == EINTR)
      continue;
    if (n == -1) {
      say (err, "abdctl: %s: read: %s\n", path, strerror (errno));
      goto failed;
    }
    if (n == 0)
      break;
    len += n;
  }
  close (fd);
  fd = -1;
  buf[len] = '\0';

  /* The last line is OK or ERR <message>; everything before it is the
   * body.
   */
  if (len == 0 || buf[len-1] != '\n') {
    say (err, "abdctl: %s: incomplete answer\n", path);
    goto failed;
  }
  buf[len-1] = '\0';
  last = strrchr (buf, '\n');
  last = last ? last + 1 : buf;
  if (strcmp (last, "OK") == 0) {
    *last = '\0';
    a->body = buf;
    return EXIT_OK;
  }
  if (strncmp (last, "ERR ", 4) == 0) {
    a->error = strdup (last + 4);
    *last = '\0';
    a->body = buf;
    return EXIT_ERR;
  }
  say (err, "abdctl: %s: unexpected answer: %s\n", path, last);

 failed:
  if (fd >= 0)
    close (fd);
  free (buf);
  return EXIT_FAILED;
}

int
ask (const char *path, const char *request, struct answer *a, FILE *err)
{
  int fd = ask_send (path, request, err);

  a->body = a->error = NULL;
  if (fd == -1)
    return EXIT_FAILED;
  return ask_receive (fd, path, a, err);
}

void
answer_free (struct answer *a)
{
  free (a->body);
  free (a->error);
  a->body = a->error = NULL;
}

int
fields_parse (char *body, struct fields *fs)
{
  char *line, *next;

  fs->f = NULL;
  fs->n = 0;
  for (line = body; *line; line = next) {
    struct field *f, *grown;
    char *colon;
    int spaces = 0;

    next = strchr (line, '\n');
    if (next)
      *next++ = '\0';
    else
      next = line + strlen (line);
    while (line[spaces] == ' ')
      spaces++;
    colon = strchr (line, ':');
    if (colon == NULL || colon == line + spaces || spaces % 2 != 0 ||
        (colon[1] != '\0' && colon[1] != ' '))
      goto bad;
    grown = realloc (fs->f, (fs->n + 1) * sizeof *fs->f);
    if (grown == NULL)
      goto bad;
    fs->f = grown;
    f = &fs->f[fs->n++];
    *colon = '\0';
    f->depth = spaces / 2;
    f->name = line + spaces;
    f->value = colon[1] ? colon + 2 : NULL;
    f->used = false;
  }
  return 0;

 bad:
  fields_free (fs);
  return -1;
}

void
fields_free (struct fields *fs)
{
  free (fs->f);
  fs->f = NULL;
  fs->n = 0;
}

static struct field *
fields_find (const struct fields *fs, const char *name)
{
  size_t i;

  for (i = 0; i < fs->n; i++)
    if (fs->f[i].depth == fs->f[0].depth && strcmp (fs->f[i].name, name) == 0)
      return &fs->f[i];
  return NULL;
}

const char *
fields_str (struct fields *fs, const char *name)
{
  struct field *f = fields_find (fs, name);

  if (f == NULL)
    return NULL;
  f->used = true;
  return f->value;
}

bool
fields_u64 (struct fields *fs, const char *name, uint64_t *v)
{
  const char *s = fields_str (fs, name);
  char *end;

  if (s == NULL || *s < '0' || *s > '9')
    return false;
  errno = 0;
  *v = strtoull (s, &end, 10);
  return errno == 0 && *end == '\0';
}

bool
fields_i64 (struct fields *fs, const char *name, int64_t *v)
{
  const char *s = fields_str (fs, name);
  char *end;

  if (s == NULL || *s == '\0')
    return false;
  errno = 0;
  *v = strtoll (s, &end, 10);
  return errno == 0 && *end == '\0';
}

enum layer
layer_of (const struct fields *fs)
{
  if (fields_find (fs, "dirty_bytes"))
    return LAYER_ASYNC;
  if (fields_find (fs, "servers_total"))
    return LAYER_MEMCACHE;
  return LAYER_UNKNOWN;
}

const char *
layer_name (enum layer layer)
{
  switch (layer) {
  case LAYER_ASYNC: return "async";
  case LAYER_MEMCACHE: return "memcache";
  case LAYER_UNKNOWN: break;
  }
  return "unknown";
}
