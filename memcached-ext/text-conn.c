/* SPDX-License-Identifier: BSD-3-Clause */
/* abd memcached-ext: text protocol connections and batches (see text.h).
 *
 * The connection and its I/O are those of the meta client (meta-conn.c):
 * the batch in flight is one buffer of command lines sized before it is
 * written, an iovec array interleaving it with the callers' values
 * (written with sendmsg and MSG_NOSIGNAL), and a receive buffer that
 * grows to hold the largest reply seen (at most MCX_LINE_MAX +
 * max_value + 2), so a value is handed to the caller in one piece.
 * Every wait is a poll() bounded by the batch's deadline; output still
 * pending is written while replies are read.  Only the commands written
 * (mtx_send) and the parser (text-parse.c) differ.
 *
 * The two files keep their own copy of the socket code for now, so that
 * changes to the meta client's timeouts merge without conflicts; they
 * are to share one file (memcached-ext/sock.c) once those have landed.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "text.h"

/* The receive buffer's first size: the answer to a 64 KiB read's
 * multi-get (16 values of 4 KiB and their headers, a little over 64 KiB)
 * in one read() after one wait; at 64 KiB it took two of each.
 */
#define MTX_RBUF_MIN (128 * 1024)
/* The text of one command, key excepted: "set  0 <ttl> <len>\r\n". */
#define MTX_CMD_OVERHEAD 80

struct mtx_conn {
  int fd;
  bool broken;
  char error[128];

  /* The batch in flight. */
  bool in_flight;
  char *text;                   /* command lines */
  size_t text_cap;
  struct iovec *iov;
  size_t nr_iov, iov_cap, iov_done;
  struct mtx_parser parser;

  /* Received, not yet parsed: rbuf[rpos..rlen). */
  char *rbuf;
  size_t rcap, rpos, rlen;
};

const char *
mtx_error (const struct mtx_conn *c)
{
  return c->error;
}

bool
mtx_broken (const struct mtx_conn *c)
{
  return c->broken;
}

/* Record why C failed; it is unusable from now on. */
static int
mtx_fail (struct mtx_conn *c, int status, const char *what)
{
  if (!c->broken) {
    if (status == MCX_EIO && errno != 0)
      snprintf (c->error, sizeof c->error, "%s: %s", what, strerror (errno));
    else
      snprintf (c->error, sizeof c->error, "%s", what);
  }
  c->broken = true;
  c->in_flight = false;
  return status;
}

/* Milliseconds left until DEADLINE_NS for poll, rounded up; -1 if none. */
static int
mtx_poll_ms (int64_t deadline_ns)
{
  int64_t left = deadline_ns - mcx_now_ns ();

  if (left <= 0)
    return -1;
  if (left > INT64_C (3600000000000))
    left = INT64_C (3600000000000);
  return (left + 999999) / 1000000;
}

/* Wait for EVENTS on C's socket until DEADLINE_NS.  Once the deadline
 * has passed, what is ready at once still counts (poll with no timeout):
 * a batch whose answer arrived in time is not failed because the caller
 * was busy collecting another server's answer first.
 */
static int
mtx_wait (struct mtx_conn *c, short events, int64_t deadline_ns,
          short *revents)
{
  struct pollfd pfd = { .fd = c->fd, .events = events };
  int ms, r;

  for (;;) {
    ms = mtx_poll_ms (deadline_ns);
    r = poll (&pfd, 1, ms < 0 ? 0 : ms);
    if (r > 0) {
      *revents = pfd.revents;
      return 0;
    }
    if (r == -1 && errno != EINTR)
      return mtx_fail (c, MCX_EIO, "poll");
    if (r == 0 && ms < 0)
      return mtx_fail (c, MCX_ETIMEDOUT, "timed out");
  }
}

static int
mtx_connect_addr (struct mtx_conn *c, const struct sockaddr *sa,
                  socklen_t len, int64_t deadline_ns)
{
  int fd, err = 0, one = 1, r;
  socklen_t err_len = sizeof err;
  short revents;

  fd = socket (sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd == -1)
    return mtx_fail (c, MCX_EIO, "socket");
  if (sa->sa_family != AF_UNIX)
    setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  c->fd = fd;
  if (connect (fd, sa, len) == 0)
    return 0;
  if (errno != EINPROGRESS && errno != EAGAIN)
    return mtx_fail (c, MCX_EIO, "connect");
  r = mtx_wait (c, POLLOUT, deadline_ns, &revents);
  if (r < 0)
    return r;
  if (getsockopt (fd, SOL_SOCKET, SO_ERROR, &err, &err_len) == -1)
    return mtx_fail (c, MCX_EIO, "getsockopt");
  if (err != 0) {
    errno = err;
    return mtx_fail (c, MCX_EIO, "connect");
  }
  return 0;
}

struct mtx_conn *
mtx_connect (const char *host, unsigned port, int64_t deadline_ns,
             int *status)
{
  struct mtx_conn *c;
  int r;

  c = calloc (1, sizeof *c);
  if (c == NULL) {
    *status = MCX_ENOMEM;
    return NULL;
  }
  c->fd = -1;
  if (port == 0) {
    struct sockaddr_un sun = { .sun_family = AF_UNIX };

    if (strlen (host) >= sizeof sun.sun_path)
      r = mtx_fail (c, MCX_EINVAL, "socket path too long");
    else {
      strcpy (sun.sun_path, host);
      r = mtx_connect_addr (c, (struct sockaddr *) &sun, sizeof sun,
                            deadline_ns);
    }
  }
  else {
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_NUMERICSERV };
    struct addrinfo *res = NULL, *ai;
    char service[16];

    snprintf (service, sizeof service, "%u", port);
    if (getaddrinfo (host, service, &hints, &res) != 0 || res == NULL)
      r = mtx_fail (c, MCX_EIO, "cannot resolve the server's address");
    else {
      r = MCX_EIO;
      for (ai = res; ai != NULL && r != MCX_OK && r != MCX_ETIMEDOUT;
           ai = ai->ai_next) {
        if (c->fd >= 0)
          close (c->fd);
        c->fd = -1;
        c->broken = false;
        r = mtx_connect_addr (c, ai->ai_addr, ai->ai_addrlen, deadline_ns);
      }
      freeaddrinfo (res);
    }
  }
  if (r != MCX_OK) {
    *status = r;
    mtx_close (c);
    return NULL;
  }
  *status = MCX_OK;
  return c;
}

void
mtx_close (struct mtx_conn *c)
{
  if (c == NULL)
    return;
  if (c->fd >= 0)
    close (c->fd);
  free (c->text);
  free (c->iov);
  free (c->rbuf);
  free (c);
}

static bool
mtx_key_ok (const struct mcx_op *op)
{
  size_t i;

  if (op->key_len == 0 || op->key_len > MCX_KEY_MAX)
    return false;
  for (i = 0; i < op->key_len; i++)
    if (op->key[i] < 0x21 || op->key[i] > 0x7e)
      return false;
  return true;
}

/* Grow *BUF (of *CAP elements of SIZE bytes) to at least WANT elements. */
static bool
mtx_reserve (void *bufp, size_t *cap, size_t want, size_t size)
{
  void **buf = bufp, *p;

  if (*cap >= want)
    return true;
  p = realloc (*buf, want * size);
  if (p == NULL)
    return false;
  *buf = p;
  *cap = want;
  return true;
}

/* Add LEN bytes at BASE to the iovec array, joining it to the previous
 * entry when it follows it in memory (consecutive command lines).
 */
static void
mtx_add_iov (struct mtx_conn *c, const void *base, size_t len)
{
  struct iovec *last = c->nr_iov ? &c->iov[c->nr_iov - 1] : NULL;

  if (len == 0)
    return;
  if (last && (const char *) last->iov_base + last->iov_len == base)
    last->iov_len += len;
  else
    c->iov[c->nr_iov++] = (struct iovec) { (void *) base, len };
}

/* Write what can be written without blocking. */
static int
mtx_write_some (struct mtx_conn *c)
{
  while (c->iov_done < c->nr_iov) {
    size_t cnt = c->nr_iov - c->iov_done;
    struct msghdr msg = { .msg_iov = &c->iov[c->iov_done] };
    ssize_t r;

    /* sendmsg, not writev: MSG_NOSIGNAL, no SIGPIPE if the server left. */
    msg.msg_iovlen = cnt > IOV_MAX ? IOV_MAX : cnt;
    r = sendmsg (c->fd, &msg, MSG_NOSIGNAL);
    if (r == -1) {
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        return 0;
      if (errno == EINTR)
        continue;
      return mtx_fail (c, MCX_EIO, "write");
    }
    while (r > 0) {
      struct iovec *v = &c->iov[c->iov_done];

      if ((size_t) r >= v->iov_len) {
        r -= v->iov_len;
        c->iov_done++;
      }
      else {
        v->iov_base = (char *) v->iov_base + r;
        v->iov_len -= r;
        r = 0;
      }
    }
  }
  return 0;
}

int
mtx_send (struct mtx_conn *c, const struct mcx_op *ops, size_t n,
          size_t max_value)
{
  static const char crlf[] = "\r\n";
  size_t text_want = 1, i, j, end, pos = 0;

  if (c->broken)
    return MCX_EIO;
  if (c->in_flight)
    return mtx_fail (c, MCX_EINVAL, "a batch is already in flight");
  for (i = 0; i < n; i++) {
    if (!mtx_key_ok (&ops[i]) || ops[i].type > MCX_DELETE)
      return MCX_EINVAL;
    text_want += ops[i].key_len + MTX_CMD_OVERHEAD;
  }
  if (!mtx_reserve (&c->text, &c->text_cap, text_want, 1) ||
      !mtx_reserve (&c->iov, &c->iov_cap, 3 * n + 1, sizeof *c->iov))
    return mtx_fail (c, MCX_ENOMEM, "out of memory");

  c->nr_iov = c->iov_done = 0;
  for (i = 0; i < n; i = end) {
    const struct mcx_op *op = &ops[i];
    char *line = c->text + pos;
    int len = 0;

    end = mtx_command_end (ops, n, i);
    switch (op->type) {
    case MCX_GET:
      len = snprintf (line, text_want - pos, "get");
      for (j = i; j < end; j++)
        len += snprintf (line + len, text_want - pos - len, " %.*s",
                         (int) ops[j].key_len, ops[j].key);
      len += snprintf (line + len, text_want - pos - len, "\r\n");
      break;
    case MCX_SET:
      len = snprintf (line, text_want - pos, "set %.*s 0 %u %zu\r\n",
                      (int) op->key_len, op->key, op->ttl, op->value_len);
      break;
    case MCX_DELETE:
      len = snprintf (line, text_want - pos, "delete %.*s\r\n",
                      (int) op->key_len, op->key);
      break;
    }
    pos += len;
    mtx_add_iov (c, line, len);
    if (op->type == MCX_SET) {
      mtx_add_iov (c, op->value, op->value_len);
      mtx_add_iov (c, crlf, 2);
    }
  }

  c->parser = (struct mtx_parser) {
    .ops = ops, .n = n, .max_value = max_value,
  };
  c->in_flight = true;
  return mtx_write_some (c);
}

int
mtx_recv (struct mtx_conn *c, int64_t deadline_ns, mcx_reply_fn fn,
          void *opaque)
{
  if (c->broken)
    return MCX_EIO;
  if (!c->in_flight)
    return mtx_fail (c, MCX_EINVAL, "no batch in flight");
  c->parser.fn = fn;
  c->parser.opaque = opaque;

  for (;;) {
    size_t used, need;
    short revents;
    ssize_t r;
    int pr;

    pr = mtx_parse (&c->parser, c->rbuf + c->rpos, c->rlen - c->rpos,
                    &used, &need);
    c->rpos += used;
    if (pr < 0)
      return mtx_fail (c, MCX_EPROTO, c->parser.error);
    if (pr == 1) {
      /* The server speaks only when spoken to. */
      if (c->rpos != c->rlen || c->iov_done != c->nr_iov)
        return mtx_fail (c, MCX_EPROTO, "data after the last reply");
      c->rpos = c->rlen = 0;
      c->in_flight = false;
      return MCX_OK;
    }

    /* Room for NEED bytes from rpos, and some to read into. */
    if (c->rpos > 0 && c->rcap - c->rpos < need + 4096) {
      memmove (c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
      c->rlen -= c->rpos;
      c->rpos = 0;
    }
    if (c->rcap - c->rpos < need || c->rcap == c->rlen) {
      size_t want = c->rpos + need > MTX_RBUF_MIN ? c->rpos + need
        : MTX_RBUF_MIN;

      if (want <= c->rcap)
        want = c->rcap * 2;
      if (!mtx_reserve (&c->rbuf, &c->rcap, want, 1))
        return mtx_fail (c, MCX_ENOMEM, "out of memory");
    }

    pr = mtx_wait (c, POLLIN | (c->iov_done < c->nr_iov ? POLLOUT : 0),
                   deadline_ns, &revents);
    if (pr < 0)
      return pr;
    if ((revents & POLLOUT) && mtx_write_some (c) < 0)
      return MCX_EIO;
    if (revents & (POLLIN | POLLHUP | POLLERR)) {
      r = read (c->fd, c->rbuf + c->rlen, c->rcap - c->rlen);
      if (r == 0) {
        errno = 0;
        return mtx_fail (c, MCX_EIO, "the server closed the connection");
      }
      if (r == -1) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
          return mtx_fail (c, MCX_EIO, "read");
        continue;
      }
      c->rlen += r;
    }
  }
}
