/* SPDX-License-Identifier: BSD-3-Clause */
/* abd: the control channel (see control.h for the protocol).
 *
 * Threads: ctl_listen binds the socket (before nbdkit forks, so that a bad
 * path stops nbdkit at start) with mode 0600: only nbdkit's user (and
 * root) may connect.  ctl_serve starts one listener thread.  It accepts
 * connections and reads their request lines itself, from non-blocking
 * sockets, so that a connection that sends nothing costs no thread.  Each
 * connection has CTL_REQUEST_TIMEOUT_MS from accept to the end of its line
 * (a whole-request deadline: trickling bytes does not extend it); at most
 * CTL_MAX_WAITING wait for their line, and a new connection closes the
 * oldest when they are all taken.  A complete request runs on a detached
 * thread of its own, at most CTL_MAX_CLIENTS at once (more are answered
 * "ERR busy"), so the handler may block (a flush with a timeout) without
 * stopping status requests.  ctl_stop wakes the listener through a pipe,
 * joins it (it closes the connections still waiting), and waits until no
 * request thread is left; a request thread stops writing its reply when
 * the pipe is written.
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
#include <time.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <nbdkit-filter.h>

#include "control.h"

#define CTL_MAX_CLIENTS 16        /* requests being handled at once */
#define CTL_MAX_WAITING 16        /* connections still sending their line */
#define CTL_REQUEST_TIMEOUT_MS 5000 /* from accept to the line's '\n' */
#define CTL_REPLY_TIMEOUT_MS 5000 /* to write the reply */
#define CTL_MAX_DEPTH 8

/* A connection accepted whose request line has not all arrived.  Only the
 * listener thread touches these.
 */
struct waiting {
  int fd;                       /* -1: the slot is free */
  int64_t deadline;             /* now_ms () at accept + the timeout */
  size_t len;                   /* bytes read into line */
  char line[CTL_MAX_LINE];
};

struct ctl_server {
  char *path;
  dev_t dev;                    /* the socket bound at path, which */
  ino_t ino;                    /* ctl_stop removes and nothing else */
  int listen_fd;
  int stop_pipe[2];             /* listener polls [0]; ctl_stop writes [1] */
  pthread_t listener;
  bool serving;                 /* the listener thread runs */
  struct waiting waiting[CTL_MAX_WAITING]; /* the listener's own */
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

/* Text value: control bytes as \xNN, so that no value can end its line and
 * start another (a false "OK", or a field the client would believe).
 */
static void
buf_add_text_value (struct buf *b, const char *s)
{
  for (; *s; s++) {
    unsigned char c = *s;

    if (c < 0x20 || c == 0x7f)
      buf_add (b, "\\x%02x", c);
    else
      buf_add (b, "%c", c);
  }
}

void
ctl_reply_str (struct ctl_reply *r, const char *name, const char *v)
{
  reply_name (r, name);
  if (r->json)
    buf_add_json_string (&r->body, v);
  else {
    buf_add (&r->body, " ");
    buf_add_text_value (&r->body, v);
    buf_add (&r->body, "\n");
  }
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

  /* Exactly one space between words.  An empty word (a space at either
   * end, or two in a row) is refused rather than dropped: "flush " is not
   * "flush", it is a flush with an empty timeout.
   */
  for (i = 0; ; ) {
    if (i == len || line[i] == ' ' || argc == CTL_MAX_WORDS)
      return -1;
    argv[argc++] = &line[i];
    while (i < len && line[i] != ' ')
      i++;
    if (i == len)
      break;
    line[i++] = '\0';
  }
  if (strcmp (argv[argc-1], "--json") == 0) {
    *json = true;
    argc--;
  }
  return argc > 0 ? argc : -1;
}

int
ctl_parse_uint (const char *word, unsigned max, unsigned *out)
{
  uint64_t v = 0;
  const char *p;

  if (*word == '\0')
    return -1;
  for (p = word; *p; p++) {
    if (*p < '0' || *p > '9')
      return -1;
    v = v * 10 + (*p - '0');
    if (v > max)                /* also stops before v can overflow */
      return -1;
  }
  *out = v;
  return 0;
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
    ctl_reply_error (&r, "malformed request (one line of printable words "
                     "separated by single spaces, at most %d bytes)",
                     CTL_MAX_LINE - 1);
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

/* Milliseconds on the monotonic clock, for deadlines. */
static int64_t
now_ms (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A short refusal from the listener thread ("ERR busy", "ERR timed out"):
 * one non-blocking send, lost if the client does not read, so that no
 * client can stall the listener.
 */
static void
send_refusal (int fd, const char *msg)
{
  ssize_t r = send (fd, msg, strlen (msg), MSG_DONTWAIT | MSG_NOSIGNAL);

  (void) r;
}

/* Write the reply on the (non-blocking) socket within CTL_REPLY_TIMEOUT_MS,
 * and give up at once when the server stops: a client that does not read
 * its reply must not hold a request thread, nor ctl_stop.
 */
static void
write_reply (struct ctl_server *s, int fd, const char *p, size_t len)
{
  int64_t deadline = now_ms () + CTL_REPLY_TIMEOUT_MS;

  while (len > 0) {
    struct pollfd pfd[2] = {
      { .fd = fd, .events = POLLOUT },
      { .fd = s->stop_pipe[0], .events = POLLIN },
    };
    ssize_t n = send (fd, p, len, MSG_NOSIGNAL);
    int64_t left;

    if (n > 0) {
      p += n;
      len -= n;
      continue;
    }
    if (n == -1 && errno == EINTR)
      continue;
    if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
      return;
    left = deadline - now_ms ();
    if (left <= 0 || poll (pfd, 2, left) <= 0 || pfd[1].revents)
      return;
  }
}

/* One complete request line, handed from the listener to its thread. */
struct request {
  struct ctl_server *server;
  int fd;
  size_t len;                   /* of line, without the '\n' */
  char line[CTL_MAX_LINE];
};

static void *
request_thread (void *arg)
{
  struct request *req = arg;
  struct ctl_server *s = req->server;
  char *response;

  response = ctl_respond (req->line, req->len, s->handler, s->opaque);
  if (response) {
    write_reply (s, req->fd, response, strlen (response));
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

/* Run the handler for a complete request on a thread of its own; takes
 * over FD.  At most CTL_MAX_CLIENTS handlers run at once.
 */
static void
start_request (struct ctl_server *s, int fd, const char *line, size_t len)
{
  struct request *req;
  pthread_attr_t attr;
  pthread_t thread;
  bool ok = false;

  pthread_mutex_lock (&s->lock);
  if (s->clients < CTL_MAX_CLIENTS && (req = malloc (sizeof *req)) != NULL) {
    req->server = s;
    req->fd = fd;
    req->len = len;
    memcpy (req->line, line, len);
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
    send_refusal (fd, "ERR busy\n");
    close (fd);
  }
}

static void
waiting_close (struct waiting *w, const char *msg)
{
  if (msg)
    send_refusal (w->fd, msg);
  close (w->fd);
  w->fd = -1;
}

/* A new connection takes a free slot, or the slot of the connection that
 * has waited longest: that one has had the most time to send its line, and
 * a legitimate client (abdctl) sends it at once.  So no number of idle
 * connections can keep a new one, such as the UPS handler's, from being
 * read at once.
 */
static void
waiting_add (struct ctl_server *s, int fd)
{
  struct waiting *w = NULL;
  size_t i;

  for (i = 0; i < CTL_MAX_WAITING; i++) {
    struct waiting *c = &s->waiting[i];

    if (c->fd == -1) {
      w = c;
      break;
    }
    if (w == NULL || c->deadline < w->deadline)
      w = c;
  }
  if (w->fd != -1) {
    nbdkit_debug ("control: %d connections without a request: closing the "
                  "oldest", CTL_MAX_WAITING);
    waiting_close (w, "ERR busy: too many connections without a request\n");
  }
  w->fd = fd;
  w->deadline = now_ms () + CTL_REQUEST_TIMEOUT_MS;
  w->len = 0;
}

/* Read what has arrived; start the request once its line is complete. */
static void
waiting_read (struct ctl_server *s, struct waiting *w)
{
  ssize_t n = read (w->fd, w->line + w->len, sizeof w->line - w->len);
  char *nl;

  if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
    return;
  if (n <= 0) {
    waiting_close (w, "ERR malformed request\n");
    return;
  }
  w->len += n;
  nl = memchr (w->line, '\n', w->len);
  if (nl) {
    start_request (s, w->fd, w->line, nl - w->line);
    w->fd = -1;
  }
  else if (w->len == sizeof w->line)
    waiting_close (w, "ERR malformed request\n");
}

static void *
listener_thread (void *arg)
{
  struct ctl_server *s = arg;
  struct pollfd pfd[2 + CTL_MAX_WAITING];
  struct waiting *polled[CTL_MAX_WAITING];
  size_t i, n;

  for (;;) {
    int64_t now = now_ms (), next = -1;
    int fd;

    /* Expire the late, poll the others until the earliest deadline. */
    pfd[0] = (struct pollfd) { .fd = s->listen_fd, .events = POLLIN };
    pfd[1] = (struct pollfd) { .fd = s->stop_pipe[0], .events = POLLIN };
    n = 2;
    for (i = 0; i < CTL_MAX_WAITING; i++) {
      struct waiting *w = &s->waiting[i];

      if (w->fd == -1)
        continue;
      if (w->deadline <= now) {
        waiting_close (w, "ERR timed out waiting for the request line\n");
        continue;
      }
      if (next == -1 || w->deadline < next)
        next = w->deadline;
      polled[n - 2] = w;
      pfd[n++] = (struct pollfd) { .fd = w->fd, .events = POLLIN };
    }

    if (poll (pfd, n, next == -1 ? -1 : (int) (next - now)) == -1) {
      if (errno == EINTR)
        continue;
      nbdkit_error ("control: poll: %m");
      break;
    }
    if (pfd[1].revents)
      break;
    for (i = 2; i < n; i++)
      if (pfd[i].revents)
        waiting_read (s, polled[i - 2]);
    if (pfd[0].revents & POLLIN) {
      fd = accept4 (s->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (fd >= 0)
        waiting_add (s, fd);
    }
  }

  /* Stopping: connections without a complete request are just closed. */
  for (i = 0; i < CTL_MAX_WAITING; i++)
    if (s->waiting[i].fd != -1)
      waiting_close (&s->waiting[i], NULL);
  return NULL;
}

/* Bind LISTEN_FD to ADDR so that the socket is created with mode 0600,
 * without a chmod on the path afterwards (which would follow a symlink
 * that someone put there meanwhile, and which leaves the socket open to
 * others until it runs).  Linux creates the socket's inode at bind with
 * the mode of the unbound socket less the umask; the unbound socket's
 * mode is set by fchmod.  Other systems ignore that fchmod, so the umask
 * is 0177 too during bind.  The umask is process-wide, but this runs in
 * .get_ready, before nbdkit or the filters start threads, and a stricter
 * umask can only make a file created meanwhile more private.
 */
static int
bind_private (int listen_fd, const struct sockaddr_un *addr)
{
  mode_t old_umask;
  int r, saved_errno;

  if (fchmod (listen_fd, 0600) == -1)
    return -1;
  old_umask = umask (0177);
  r = bind (listen_fd, (const struct sockaddr *) addr, sizeof *addr);
  saved_errno = errno;
  umask (old_umask);
  errno = saved_errno;
  return r;
}

struct ctl_server *
ctl_listen (const char *key, const char *path)
{
  struct ctl_server *s;
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  struct stat st;
  size_t i;

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
  for (i = 0; i < CTL_MAX_WAITING; i++)
    s->waiting[i].fd = -1;
  pthread_mutex_init (&s->lock, NULL);
  pthread_cond_init (&s->idle, NULL);
  s->path = strdup (path);
  s->listen_fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
                         0);
  if (s->path == NULL || s->listen_fd == -1) {
    nbdkit_error ("%s: socket: %m", key);
    goto err;
  }
  if (bind_private (s->listen_fd, &addr) == -1) {
    nbdkit_error ("%s=%s: %m", key, path);
    goto err;
  }
  /* Check what bind made, and remember it for ctl_stop. */
  if (lstat (path, &st) == -1) {
    nbdkit_error ("%s=%s: %m", key, path);
    goto err;
  }
  if (!S_ISSOCK (st.st_mode) || st.st_uid != geteuid () ||
      (st.st_mode & 07777) != 0600) {
    nbdkit_error ("%s=%s: after bind, the path is not our socket with "
                  "mode 0600 (type and mode %06o, owner %u)", key, path,
                  (unsigned) st.st_mode, (unsigned) st.st_uid);
    goto err;
  }
  s->dev = st.st_dev;
  s->ino = st.st_ino;
  if (listen (s->listen_fd, 16) == -1) {
    nbdkit_error ("%s=%s: listen: %m", key, path);
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
    struct stat st;

    close (s->listen_fd);
    /* Only our socket: whatever replaced it since is not ours to remove. */
    if (s->ino != 0 && lstat (s->path, &st) == 0 &&
        st.st_dev == s->dev && st.st_ino == s->ino)
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
