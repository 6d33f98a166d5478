/* abd: the control channel (see control.h for the protocol).
 *
 * Threads: ctl_listen binds the socket (before nbdkit forks, so that a bad
 * path stops nbdkit at start); ctl_serve starts one listener thread; it accepts connections and
 * starts one detached thread per request, at most CTL_MAX_CLIENTS at once
 * (more are answered "ERR busy").  ctl_stop wakes the listener through a
 * pipe, joins it, and waits until no request thread is left.  The handler
 * runs on the request threads, so it may block (a flush with a timeout)
 * without stopping status requests.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <nbdkit-filter.h>

#include "control.h"

#define CTL_MAX_CLIENTS 16
#define CTL_READ_TIMEOUT_MS 5000
#define CTL_MAX_DEPTH 8

struct ctl_server {
  char *path;
  int listen_fd;
  int stop_pipe[2];             /* listener polls [0]; ctl_stop writes [1] */
  pthread_t listener;
  bool serving;                 /* the listener thread runs */
  ctl_handler handler;
  void *opaque;

  pthread_mutex_t lock;         /* protects clients */
  pthread_cond_t idle;          /* signalled when clients drops to 0 */
  unsigned clients;             /* request threads running */
};

/* A growing text buffer. */
struct buf {
  char *p;
  size_t len, cap;
  bool oom;
};

struct ctl_reply {
  bool json;
  struct buf body;
  char *error;                  /* set by ctl_reply_error */
  int depth;                    /* nesting of ctl_reply_begin */
  bool first[CTL_MAX_DEPTH + 1];/* JSON: nothing written yet at this depth */
};

static void
buf_vadd (struct buf *b, const char *fmt, va_list args)
{
  va_list copy;
  int n;

  if (b->oom)
    return;
  va_copy (copy, args);
  n = vsnprintf (NULL, 0, fmt, copy);
  va_end (copy);
  if (n < 0) {
    b->oom = true;
    return;
  }
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    char *p;

    while (b->len + n + 1 > cap)
      cap *= 2;
    p = realloc (b->p, cap);
    if (p == NULL) {
      b->oom = true;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  vsnprintf (b->p + b->len, n + 1, fmt, args);
  b->len += n;
}

static void __attribute__ ((format (printf, 2, 3)))
buf_add (struct buf *b, const char *fmt, ...)
{
  va_list args;

  va_start (args, fmt);
  buf_vadd (b, fmt, args);
  va_end (args);
}

/* JSON string with the escapes RFC 8259 requires. */
static void
buf_add_json_string (struct buf *b, const char *s)
{
  buf_add (b, "\"");
  for (; *s; s++) {
    unsigned char c = *s;

    if (c == '"' || c == '\\')
      buf_add (b, "\\%c", c);
    else if (c < 0x20)
      buf_add (b, "\\u%04x", c);
    else
      buf_add (b, "%c", c);
  }
  buf_add (b, "\"");
}

/* Writes "name" and whatever separates it from the previous field. */
static void
reply_name (struct ctl_reply *r, const char *name)
{
  if (r->json) {
    if (!r->first[r->depth])
      buf_add (&r->body, ",");
    r->first[r->depth] = false;
    buf_add_json_string (&r->body, name);
    buf_add (&r->body, ":");
  }
  else
    buf_add (&r->body, "%*s%s:", r->depth * 2, "", name);
}

void
ctl_reply_u64 (struct ctl_reply *r, const char *name, uint64_t v)
{
  reply_name (r, name);
  buf_add (&r->body, r->json ? "%" PRIu64 : " %" PRIu64 "\n", v);
}

void
ctl_reply_i64 (struct ctl_reply *r, const char *name, int64_t v)
{
  reply_name (r, name);
  buf_add (&r->body, r->json ? "%" PRIi64 : " %" PRIi64 "\n", v);
}

void
ctl_reply_double (struct ctl_reply *r, const char *name, double v)
{
  reply_name (r, name);
  buf_add (&r->body, r->json ? "%.3f" : " %.3f\n", v);
}

void
ctl_reply_bool (struct ctl_reply *r, const char *name, bool v)
{
  reply_name (r, name);
  buf_add (&r->body, r->json ? "%s" : " %s\n", v ? "true" : "false");
}

void
ctl_reply_str (struct ctl_reply *r, const char *name, const char *v)
{
  reply_name (r, name);
  if (r->json)
    buf_add_json_string (&r->body, v);
  else
    buf_add (&r->body, " %s\n", v);
}

void
ctl_reply_begin (struct ctl_reply *r, const char *name)
{
  reply_name (r, name);
  buf_add (&r->body, r->json ? "{" : "\n");
  if (r->depth < CTL_MAX_DEPTH)
    r->depth++;
  r->first[r->depth] = true;
}

void
ctl_reply_end (struct ctl_reply *r)
{
  if (r->depth > 0)
    r->depth--;
  if (r->json)
    buf_add (&r->body, "}");
}

void
ctl_reply_error (struct ctl_reply *r, const char *fmt, ...)
{
  va_list args;
  char *msg;

  va_start (args, fmt);
  if (vasprintf (&msg, fmt, args) == -1)
    msg = NULL;
  va_end (args);
  free (r->error);
  r->error = msg ? msg : strdup ("out of memory");
}

int
ctl_parse_request (char *line, size_t len, char **argv, bool *json)
{
  int argc = 0;
  size_t i;

  *json = false;
  if (len == 0 || len >= CTL_MAX_LINE)
    return -1;
  for (i = 0; i < len; i++)
    if (line[i] < 0x20 || line[i] > 0x7e)
      return -1;
  line[len] = '\0';

  for (i = 0; i < len; ) {
    while (i < len && line[i] == ' ')
      line[i++] = '\0';
    if (i == len)
      break;
    if (argc == CTL_MAX_WORDS)
      return -1;
    argv[argc++] = &line[i];
    while (i < len && line[i] != ' ')
      i++;
  }
  if (argc > 0 && strcmp (argv[argc-1], "--json") == 0) {
    *json = true;
    argc--;
  }
  return argc > 0 ? argc : -1;
}

char *
ctl_respond (const char *line, size_t len, ctl_handler handler, void *opaque)
{
  char copy[CTL_MAX_LINE];
  char *argv[CTL_MAX_WORDS];
  struct ctl_reply r = { .first = { true } };
  struct buf out = { 0 };
  int argc;

  if (len < CTL_MAX_LINE)
    memcpy (copy, line, len);
  argc = ctl_parse_request (copy, len, argv, &r.json);
  if (argc == -1)
    ctl_reply_error (&r, "malformed request (one line of printable words, "
                     "at most %d bytes)", CTL_MAX_LINE - 1);
  else {
    if (r.json)
      buf_add (&r.body, "{");
    if (handler (opaque, argc, argv, &r) == -1 && r.error == NULL)
      ctl_reply_error (&r, "%s failed", argv[0]);
    if (r.json)
      buf_add (&r.body, "}\n");
  }

  if (r.body.oom)
    ctl_reply_error (&r, "out of memory");
  if (r.error)
    buf_add (&out, "ERR %s\n", r.error);
  else
    buf_add (&out, "%sOK\n", r.body.len ? r.body.p : "");
  free (r.body.p);
  free (r.error);
  if (out.oom) {
    free (out.p);
    return NULL;
  }
  return out.p;
}

/* Read one line (up to '\n') with a timeout.  Returns its length without
 * the newline, or -1.
 */
static ssize_t
read_request (int fd, char *line, size_t size)
{
  size_t len = 0;

  while (len < size) {
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    ssize_t n;
    char *nl;

    if (poll (&pfd, 1, CTL_READ_TIMEOUT_MS) <= 0)
      return -1;
    n = read (fd, line + len, size - len);
    if (n <= 0)
      return -1;
    len += n;
    nl = memchr (line, '\n', len);
    if (nl)
      return nl - line;
  }
  return -1;
}

static void
write_all (int fd, const char *p, size_t len)
{
  while (len > 0) {
    ssize_t n = write (fd, p, len);

    if (n <= 0)
      return;
    p += n;
    len -= n;
  }
}

struct request {
  struct ctl_server *server;
  int fd;
};

static void *
request_thread (void *arg)
{
  struct request *req = arg;
  struct ctl_server *s = req->server;
  char line[CTL_MAX_LINE];
  ssize_t len;
  char *response;

  len = read_request (req->fd, line, sizeof line);
  if (len == -1)
    response = strdup ("ERR malformed request\n");
  else
    response = ctl_respond (line, len, s->handler, s->opaque);
  if (response) {
    write_all (req->fd, response, strlen (response));
    free (response);
  }
  close (req->fd);
  free (req);

  pthread_mutex_lock (&s->lock);
  if (--s->clients == 0)
    pthread_cond_broadcast (&s->idle);
  pthread_mutex_unlock (&s->lock);
  return NULL;
}

static void
start_request (struct ctl_server *s, int fd)
{
  static const char busy[] = "ERR busy\n";
  struct request *req;
  pthread_attr_t attr;
  pthread_t thread;
  bool ok = false;

  pthread_mutex_lock (&s->lock);
  if (s->clients < CTL_MAX_CLIENTS && (req = malloc (sizeof *req)) != NULL) {
    req->server = s;
    req->fd = fd;
    pthread_attr_init (&attr);
    pthread_attr_setdetachstate (&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create (&thread, &attr, request_thread, req) == 0) {
      s->clients++;
      ok = true;
    }
    else
      free (req);
    pthread_attr_destroy (&attr);
  }
  pthread_mutex_unlock (&s->lock);

  if (!ok) {
    write_all (fd, busy, sizeof busy - 1);
    close (fd);
  }
}

static void *
listener_thread (void *arg)
{
  struct ctl_server *s = arg;

  for (;;) {
    struct pollfd pfd[2] = {
      { .fd = s->listen_fd, .events = POLLIN },
      { .fd = s->stop_pipe[0], .events = POLLIN },
    };
    int fd;

    if (poll (pfd, 2, -1) == -1) {
      if (errno == EINTR)
        continue;
      nbdkit_error ("control: poll: %m");
      return NULL;
    }
    if (pfd[1].revents)
      return NULL;
    if (pfd[0].revents & POLLIN) {
      fd = accept4 (s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
      if (fd >= 0)
        start_request (s, fd);
    }
  }
}

struct ctl_server *
ctl_listen (const char *key, const char *path)
{
  struct ctl_server *s;
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  struct stat st;

  if (strlen (path) >= sizeof addr.sun_path) {
    nbdkit_error ("%s=%s: the path is too long for a socket (at most %zu "
                  "bytes)", key, path, sizeof addr.sun_path - 1);
    return NULL;
  }
  strcpy (addr.sun_path, path);

  /* Replace a stale socket, but never delete anything else. */
  if (lstat (path, &st) == 0) {
    if (!S_ISSOCK (st.st_mode)) {
      nbdkit_error ("%s=%s: exists and is not a socket", key, path);
      return NULL;
    }
    unlink (path);
  }

  s = calloc (1, sizeof *s);
  if (s == NULL) {
    nbdkit_error ("calloc: %m");
    return NULL;
  }
  s->stop_pipe[0] = s->stop_pipe[1] = -1;
  s->listen_fd = -1;
  pthread_mutex_init (&s->lock, NULL);
  pthread_cond_init (&s->idle, NULL);
  s->path = strdup (path);
  s->listen_fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s->path == NULL || s->listen_fd == -1) {
    nbdkit_error ("%s: socket: %m", key);
    goto err;
  }
  if (bind (s->listen_fd, (struct sockaddr *) &addr, sizeof addr) == -1 ||
      chmod (path, 0600) == -1 ||
      listen (s->listen_fd, 16) == -1) {
    nbdkit_error ("%s=%s: %m", key, path);
    goto err;
  }
  if (pipe2 (s->stop_pipe, O_CLOEXEC) == -1) {
    nbdkit_error ("pipe2: %m");
    goto err;
  }
  return s;

 err:
  ctl_stop (s);
  return NULL;
}

int
ctl_serve (struct ctl_server *s, ctl_handler handler, void *opaque)
{
  s->handler = handler;
  s->opaque = opaque;
  errno = pthread_create (&s->listener, NULL, listener_thread, s);
  if (errno) {
    nbdkit_error ("control: pthread_create: %m");
    return -1;
  }
  s->serving = true;
  return 0;
}

void
ctl_stop (struct ctl_server *s)
{
  if (s == NULL)
    return;
  if (s->serving) {
    if (write (s->stop_pipe[1], "x", 1) != 1)
      nbdkit_debug ("control: write to stop pipe: %m");
    pthread_join (s->listener, NULL);
  }
  if (s->listen_fd >= 0) {
    close (s->listen_fd);
    unlink (s->path);
  }

  pthread_mutex_lock (&s->lock);
  while (s->clients > 0)
    pthread_cond_wait (&s->idle, &s->lock);
  pthread_mutex_unlock (&s->lock);

  if (s->stop_pipe[0] >= 0) {
    close (s->stop_pipe[0]);
    close (s->stop_pipe[1]);
  }
  pthread_mutex_destroy (&s->lock);
  pthread_cond_destroy (&s->idle);
  free (s->path);
  free (s);
}
