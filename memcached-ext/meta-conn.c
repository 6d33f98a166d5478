/* SPDX-License-Identifier: BSD-3-Clause */
/* abd memcached-ext: connections and batches (see meta.h).
 *
 * A connection keeps the batch in flight between mcx_send and mcx_recv:
 * the command text (one buffer, sized for the whole batch before it is
 * written, so pointers into it stay valid) and, in its socket (sock.c,
 * shared with the text client), the iovec array that interleaves it with
 * the callers' values, how much of it is written, and the receive
 * buffer.  The receive buffer grows to hold the largest
 * reply seen (at most MCX_LINE_MAX + max_value + 2), so a value is always
 * handed to the caller in one piece.
 *
 * Every wait is a poll() bounded by the batch's deadline and, if one is
 * set, by the idle timeout counted from the start of mcx_recv or the last
 * byte that moved, whichever is later (on this connection or, with a
 * shared progress clock, a byte read on any connection to the same
 * server).  Counted from mcx_recv, not from the send: a caller that
 * collects several servers' answers one after the other gives each its
 * whole idle timeout once it waits for it, and what arrived meanwhile is
 * progress already made.  Output still pending is written while replies
 * are read: a big batch of sets must not stall on a server that is
 * itself waiting for us to read.
 */

#include <config.h>

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "meta.h"
#include "sock.h"

/* The receive buffer's first size: the answer to a 64 KiB read's
 * multi-get (16 values of 4 KiB and their headers, a little over 64 KiB)
 * in one read() after one wait; at 64 KiB it took two of each.
 */
#define MCX_RBUF_MIN (128 * 1024)
/* The text of one command, key excepted: "ms  <len> T<ttl> q O<i>\r\n". */
#define MCX_CMD_OVERHEAD 80

struct mcx_conn {
  struct mcx_sock s;            /* the socket, the batch's iovecs, rbuf */
  int64_t idle_ns;              /* mcx_set_idle_timeout; 0: none */
  int64_t *progress_clock;      /* mcx_set_progress_clock, or NULL */

  /* The batch in flight (s.in_flight). */
  char *text;                   /* command lines */
  size_t text_cap;
  struct mcx_parser parser;
  unsigned char *answered;
  size_t answered_cap;
};

int64_t
mcx_now_ns (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * INT64_C (1000000000) + ts.tv_nsec;
}

const char *
mcx_strstatus (int status)
{
  switch (status) {
  case MCX_OK:        return "ok";
  case MCX_ETIMEDOUT: return "timed out";
  case MCX_EIO:       return "connection error";
  case MCX_EPROTO:    return "protocol error";
  case MCX_ENOMEM:    return "out of memory";
  case MCX_EINVAL:    return "invalid request";
  }
  return "unknown status";
}

const char *
mcx_error (const struct mcx_conn *c)
{
  return c->s.error;
}

bool
mcx_broken (const struct mcx_conn *c)
{
  return c->s.broken;
}

static int
mcx_fail (struct mcx_conn *c, int status, const char *what)
{
  return mcx_sock_fail (&c->s, status, what);
}

struct mcx_conn *
mcx_connect (const char *host, unsigned port, int64_t deadline_ns,
             int *status)
{
  struct mcx_conn *c;
  int r;

  c = calloc (1, sizeof *c);
  if (c == NULL) {
    *status = MCX_ENOMEM;
    return NULL;
  }
  c->s.fd = -1;
  r = mcx_sock_connect (&c->s, host, port, deadline_ns);
  if (r != MCX_OK) {
    *status = r;
    mcx_close (c);
    return NULL;
  }
  *status = MCX_OK;
  return c;
}

void
mcx_close (struct mcx_conn *c)
{
  if (c == NULL)
    return;
  mcx_sock_close (&c->s);
  free (c->text);
  free (c->answered);
  free (c);
}

void
mcx_set_idle_timeout (struct mcx_conn *c, int64_t idle_ns)
{
  c->idle_ns = idle_ns > 0 ? idle_ns : 0;
}

void
mcx_set_progress_clock (struct mcx_conn *c, int64_t *clock)
{
  c->progress_clock = clock;
}

/* Bytes moved on C at NOW_NS: progress for it; if they were READ, for
 * its shared clock too (what we write may only fill the kernel's socket
 * buffers of a server that does not run).
 */
static void
mcx_progress (struct mcx_conn *c, int64_t *progress_ns, int64_t now_ns,
              bool read)
{
  *progress_ns = now_ns;
  if (read && c->progress_clock &&
      __atomic_load_n (c->progress_clock, __ATOMIC_RELAXED) < now_ns)
    __atomic_store_n (c->progress_clock, now_ns, __ATOMIC_RELAXED);
}

/* mcx_recv's wait for EVENTS: until DEADLINE_NS, or the idle timeout
 * after the last progress (PROGRESS_NS, or the shared clock's, whichever
 * is later; it is looked at again when the timeout comes, since other
 * connections may have moved it meanwhile).
 */
static int
mcx_recv_wait (struct mcx_conn *c, short events, int64_t deadline_ns,
               int64_t progress_ns, short *revents)
{
  struct pollfd pfd = { .fd = c->s.fd, .events = events };

  for (;;) {
    int64_t until = deadline_ns, last = progress_ns;
    int ms, r;

    if (c->idle_ns == 0)
      return mcx_sock_wait (&c->s, events, deadline_ns, revents);
    if (c->progress_clock) {
      int64_t shared = __atomic_load_n (c->progress_clock, __ATOMIC_RELAXED);

      if (shared > last)
        last = shared;
    }
    if (last + c->idle_ns < until)
      until = last + c->idle_ns;
    ms = mcx_sock_poll_ms (until);
    r = poll (&pfd, 1, ms < 0 ? 0 : ms);
    if (r > 0) {
      *revents = pfd.revents;
      return 0;
    }
    if (r == -1 && errno != EINTR)
      return mcx_fail (c, MCX_EIO, "poll");
    if (r == 0 && ms < 0) {
      int64_t late;

      /* Nothing ready and the wait is over: unless the shared clock
       * moved while we waited, the server made no progress in time.
       */
      if (until == deadline_ns)
        return mcx_fail (c, MCX_ETIMEDOUT, "timed out");
      if (c->progress_clock &&
          __atomic_load_n (c->progress_clock, __ATOMIC_RELAXED) > last)
        continue;
      /* Unless this thread was not watching: it ran again more than
       * half an idle timeout after the window closed, so the host had
       * no CPU for it, and likely none for a server beside it either.
       * A failure detector must not blame a peer for its own pause: the
       * window starts again from now (the deadline still bounds it).
       */
      late = mcx_now_ns () - until;
      if (late > c->idle_ns / 2) {
        progress_ns = mcx_now_ns ();
        continue;
      }
      return mcx_fail (c, MCX_ETIMEDOUT, "no progress in time");
    }
  }
}

int
mcx_send (struct mcx_conn *c, const struct mcx_op *ops, size_t n,
          size_t max_value)
{
  static const char crlf[] = "\r\n", noop[] = "mn\r\n";
  size_t text_want = sizeof noop, i, pos = 0;

  if (c->s.broken)
    return MCX_EIO;
  if (c->s.in_flight)
    return mcx_fail (c, MCX_EINVAL, "a batch is already in flight");
  for (i = 0; i < n; i++) {
    if (!mcx_sock_key_ok (&ops[i]))
      return MCX_EINVAL;
    text_want += ops[i].key_len + MCX_CMD_OVERHEAD;
  }
  if (!mcx_sock_reserve (&c->text, &c->text_cap, text_want, 1) ||
      !mcx_sock_reserve (&c->s.iov, &c->s.iov_cap, 3 * n + 1, sizeof *c->s.iov) ||
      !mcx_sock_reserve (&c->answered, &c->answered_cap, n ? n : 1, 1))
    return mcx_fail (c, MCX_ENOMEM, "out of memory");

  c->s.nr_iov = c->s.iov_done = 0;
  for (i = 0; i < n; i++) {
    const struct mcx_op *op = &ops[i];
    char *line = c->text + pos;
    int len;

    switch (op->type) {
    case MCX_GET:
      len = snprintf (line, text_want - pos, "mg %.*s v q O%zu\r\n",
                      (int) op->key_len, op->key, i);
      break;
    case MCX_SET:
      len = snprintf (line, text_want - pos, "ms %.*s %zu T%u q O%zu\r\n",
                      (int) op->key_len, op->key, op->value_len, op->ttl, i);
      break;
    case MCX_DELETE:
      len = snprintf (line, text_want - pos, "md %.*s q O%zu\r\n",
                      (int) op->key_len, op->key, i);
      break;
    default:
      return MCX_EINVAL;
    }
    pos += len;
    mcx_sock_add_iov (&c->s, line, len);
    if (op->type == MCX_SET) {
      mcx_sock_add_iov (&c->s, op->value, op->value_len);
      mcx_sock_add_iov (&c->s, crlf, 2);
    }
  }
  memcpy (c->text + pos, noop, sizeof noop - 1);
  mcx_sock_add_iov (&c->s, c->text + pos, sizeof noop - 1);

  memset (c->answered, 0, n);
  c->parser = (struct mcx_parser) {
    .ops = ops, .n = n, .answered = c->answered, .max_value = max_value,
  };
  c->s.in_flight = true;
  return mcx_sock_write_some (&c->s);
}

int
mcx_recv (struct mcx_conn *c, int64_t deadline_ns, mcx_reply_fn fn,
          void *opaque)
{
  int64_t progress_ns;

  if (c->s.broken)
    return MCX_EIO;
  if (!c->s.in_flight)
    return mcx_fail (c, MCX_EINVAL, "no batch in flight");
  c->parser.fn = fn;
  c->parser.opaque = opaque;
  progress_ns = mcx_now_ns ();

  for (;;) {
    size_t used, need;
    uint64_t sent = c->s.sent;
    short revents;
    ssize_t r;
    int pr;

    pr = mcx_parse (&c->parser, c->s.rbuf + c->s.rpos, c->s.rlen - c->s.rpos,
                    &used, &need);
    c->s.rpos += used;
    if (pr < 0)
      return mcx_fail (c, MCX_EPROTO, c->parser.error);
    if (pr == 1) {
      /* The server speaks only when spoken to. */
      if (c->s.rpos != c->s.rlen || c->s.iov_done != c->s.nr_iov)
        return mcx_fail (c, MCX_EPROTO, "data after MN");
      c->s.rpos = c->s.rlen = 0;
      c->s.in_flight = false;
      return MCX_OK;
    }

    if (!mcx_sock_rbuf_room (&c->s, need, MCX_RBUF_MIN))
      return mcx_fail (c, MCX_ENOMEM, "out of memory");

    pr = mcx_recv_wait (c, POLLIN | (c->s.iov_done < c->s.nr_iov ? POLLOUT : 0),
                        deadline_ns, progress_ns, &revents);
    if (pr < 0)
      return pr;
    if ((revents & POLLOUT) && mcx_sock_write_some (&c->s) < 0)
      return MCX_EIO;
    if (c->s.sent != sent)
      mcx_progress (c, &progress_ns, mcx_now_ns (), false);
    if (revents & (POLLIN | POLLHUP | POLLERR)) {
      r = read (c->s.fd, c->s.rbuf + c->s.rlen, c->s.rcap - c->s.rlen);
      if (r == 0) {
        errno = 0;
        return mcx_fail (c, MCX_EIO, "the server closed the connection");
      }
      if (r == -1) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
          return mcx_fail (c, MCX_EIO, "read");
        continue;
      }
      c->s.rlen += r;
      mcx_progress (c, &progress_ns, mcx_now_ns (), true);
    }
  }
}

int
mcx_batch (struct mcx_conn *c, const struct mcx_op *ops, size_t n,
           size_t max_value, int64_t deadline_ns, mcx_reply_fn fn,
           void *opaque)
{
  int r = mcx_send (c, ops, n, max_value);

  if (r < 0)
    return r;
  return mcx_recv (c, deadline_ns, fn, opaque);
}
