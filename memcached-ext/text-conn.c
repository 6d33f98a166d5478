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
 * The socket code is the meta client's too (sock.c).
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

#include "sock.h"
#include "text.h"

/* The receive buffer's first size: the answer to a 64 KiB read's
 * multi-get (16 values of 4 KiB and their headers, a little over 64 KiB)
 * in one read() after one wait; at 64 KiB it took two of each.
 */
#define MTX_RBUF_MIN (128 * 1024)
/* The text of one command, key excepted: "set  0 <ttl> <len>\r\n". */
#define MTX_CMD_OVERHEAD 80

struct mtx_conn {
  struct mcx_sock s;            /* the socket, the batch's iovecs, rbuf */

  /* The batch in flight (s.in_flight). */
  char *text;                   /* command lines */
  size_t text_cap;
  struct mtx_parser parser;
};

const char *
mtx_error (const struct mtx_conn *c)
{
  return c->s.error;
}

bool
mtx_broken (const struct mtx_conn *c)
{
  return c->s.broken;
}

static int
mtx_fail (struct mtx_conn *c, int status, const char *what)
{
  return mcx_sock_fail (&c->s, status, what);
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
  c->s.fd = -1;
  r = mcx_sock_connect (&c->s, host, port, deadline_ns);
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
  mcx_sock_close (&c->s);
  free (c->text);
  free (c);
}

int
mtx_send (struct mtx_conn *c, const struct mcx_op *ops, size_t n,
          size_t max_value)
{
  static const char crlf[] = "\r\n";
  size_t text_want = 1, i, j, end, pos = 0;

  if (c->s.broken)
    return MCX_EIO;
  if (c->s.in_flight)
    return mtx_fail (c, MCX_EINVAL, "a batch is already in flight");
  for (i = 0; i < n; i++) {
    if (!mcx_sock_key_ok (&ops[i]) || ops[i].type > MCX_DELETE)
      return MCX_EINVAL;
    text_want += ops[i].key_len + MTX_CMD_OVERHEAD;
  }
  if (!mcx_sock_reserve (&c->text, &c->text_cap, text_want, 1) ||
      !mcx_sock_reserve (&c->s.iov, &c->s.iov_cap, 3 * n + 1, sizeof *c->s.iov))
    return mtx_fail (c, MCX_ENOMEM, "out of memory");

  c->s.nr_iov = c->s.iov_done = 0;
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
    mcx_sock_add_iov (&c->s, line, len);
    if (op->type == MCX_SET) {
      mcx_sock_add_iov (&c->s, op->value, op->value_len);
      mcx_sock_add_iov (&c->s, crlf, 2);
    }
  }

  c->parser = (struct mtx_parser) {
    .ops = ops, .n = n, .max_value = max_value,
  };
  c->s.in_flight = true;
  return mcx_sock_write_some (&c->s);
}

int
mtx_recv (struct mtx_conn *c, int64_t deadline_ns, mcx_reply_fn fn,
          void *opaque)
{
  if (c->s.broken)
    return MCX_EIO;
  if (!c->s.in_flight)
    return mtx_fail (c, MCX_EINVAL, "no batch in flight");
  c->parser.fn = fn;
  c->parser.opaque = opaque;

  for (;;) {
    size_t used, need;
    short revents;
    ssize_t r;
    int pr;

    pr = mtx_parse (&c->parser, c->s.rbuf + c->s.rpos, c->s.rlen - c->s.rpos,
                    &used, &need);
    c->s.rpos += used;
    if (pr < 0)
      return mtx_fail (c, MCX_EPROTO, c->parser.error);
    if (pr == 1) {
      /* The server speaks only when spoken to. */
      if (c->s.rpos != c->s.rlen || c->s.iov_done != c->s.nr_iov)
        return mtx_fail (c, MCX_EPROTO, "data after the last reply");
      c->s.rpos = c->s.rlen = 0;
      c->s.in_flight = false;
      return MCX_OK;
    }

    if (!mcx_sock_rbuf_room (&c->s, need, MTX_RBUF_MIN))
      return mtx_fail (c, MCX_ENOMEM, "out of memory");

    pr = mcx_sock_wait (&c->s, POLLIN | (c->s.iov_done < c->s.nr_iov ? POLLOUT : 0),
                   deadline_ns, &revents);
    if (pr < 0)
      return pr;
    if ((revents & POLLOUT) && mcx_sock_write_some (&c->s) < 0)
      return MCX_EIO;
    if (revents & (POLLIN | POLLHUP | POLLERR)) {
      r = read (c->s.fd, c->s.rbuf + c->s.rlen, c->s.rcap - c->s.rlen);
      if (r == 0) {
        errno = 0;
        return mtx_fail (c, MCX_EIO, "the server closed the connection");
      }
      if (r == -1) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
          return mtx_fail (c, MCX_EIO, "read");
        continue;
      }
      c->s.rlen += r;
    }
  }
}
