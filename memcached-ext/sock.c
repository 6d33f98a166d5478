/* SPDX-License-Identifier: BSD-3-Clause */
/* abd memcached-ext: the socket under both clients (see sock.h). */

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
#include <unistd.h>

#include "sock.h"

int
mcx_sock_fail (struct mcx_sock *s, int status, const char *what)
{
  if (!s->broken) {
    if (status == MCX_EIO && errno != 0)
      snprintf (s->error, sizeof s->error, "%s: %s", what, strerror (errno));
    else
      snprintf (s->error, sizeof s->error, "%s", what);
  }
  s->broken = true;
  s->in_flight = false;
  return status;
}

int
mcx_sock_poll_ms (int64_t deadline_ns)
{
  int64_t left = deadline_ns - mcx_now_ns ();

  if (left <= 0)
    return -1;
  if (left > INT64_C (3600000000000))
    left = INT64_C (3600000000000);
  return (left + 999999) / 1000000;
}

/* Once the deadline has passed, what is ready at once still counts
 * (poll with no timeout): a batch whose answer arrived in time is not
 * failed because the caller was busy collecting another server's answer
 * first.
 */
int
mcx_sock_wait (struct mcx_sock *s, short events, int64_t deadline_ns,
               short *revents)
{
  struct pollfd pfd = { .fd = s->fd, .events = events };
  int ms, r;

  for (;;) {
    ms = mcx_sock_poll_ms (deadline_ns);
    r = poll (&pfd, 1, ms < 0 ? 0 : ms);
    if (r > 0) {
      *revents = pfd.revents;
      return 0;
    }
    if (r == -1 && errno != EINTR)
      return mcx_sock_fail (s, MCX_EIO, "poll");
    if (r == 0 && ms < 0)
      return mcx_sock_fail (s, MCX_ETIMEDOUT, "timed out");
  }
}

static int
mcx_sock_connect_addr (struct mcx_sock *s, const struct sockaddr *sa,
                       socklen_t len, int64_t deadline_ns)
{
  int fd, err = 0, one = 1, r;
  socklen_t err_len = sizeof err;
  short revents;

  fd = socket (sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd == -1)
    return mcx_sock_fail (s, MCX_EIO, "socket");
  if (sa->sa_family != AF_UNIX)
    setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  s->fd = fd;
  if (connect (fd, sa, len) == 0)
    return 0;
  if (errno != EINPROGRESS && errno != EAGAIN)
    return mcx_sock_fail (s, MCX_EIO, "connect");
  r = mcx_sock_wait (s, POLLOUT, deadline_ns, &revents);
  if (r < 0)
    return r;
  if (getsockopt (fd, SOL_SOCKET, SO_ERROR, &err, &err_len) == -1)
    return mcx_sock_fail (s, MCX_EIO, "getsockopt");
  if (err != 0) {
    errno = err;
    return mcx_sock_fail (s, MCX_EIO, "connect");
  }
  return 0;
}

bool
mcx_sock_key_ok (const struct mcx_op *op)
{
  size_t i;

  if (op->key_len == 0 || op->key_len > MCX_KEY_MAX)
    return false;
  for (i = 0; i < op->key_len; i++)
    if (op->key[i] < 0x21 || op->key[i] > 0x7e)
      return false;
  return true;
}

bool
mcx_sock_reserve (void *bufp, size_t *cap, size_t want, size_t size)
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

bool
mcx_sock_rbuf_room (struct mcx_sock *s, size_t need, size_t min)
{
  size_t want;

  if (s->rpos > 0 && s->rcap - s->rpos < need + 4096) {
    memmove (s->rbuf, s->rbuf + s->rpos, s->rlen - s->rpos);
    s->rlen -= s->rpos;
    s->rpos = 0;
  }
  if (s->rcap - s->rpos >= need && s->rcap != s->rlen)
    return true;
  want = s->rpos + need > min ? s->rpos + need : min;
  if (want <= s->rcap)
    want = s->rcap * 2;
  return mcx_sock_reserve (&s->rbuf, &s->rcap, want, 1);
}

void
mcx_sock_add_iov (struct mcx_sock *s, const void *base, size_t len)
{
  struct iovec *last = s->nr_iov ? &s->iov[s->nr_iov - 1] : NULL;

  if (len == 0)
    return;
  if (last && (const char *) last->iov_base + last->iov_len == base)
    last->iov_len += len;
  else
    s->iov[s->nr_iov++] = (struct iovec) { (void *) base, len };
}

int
mcx_sock_write_some (struct mcx_sock *s)
{
  while (s->iov_done < s->nr_iov) {
    size_t cnt = s->nr_iov - s->iov_done;
    struct msghdr msg = { .msg_iov = &s->iov[s->iov_done] };
    ssize_t r;

    /* sendmsg, not writev: MSG_NOSIGNAL, no SIGPIPE if the server left. */
    msg.msg_iovlen = cnt > IOV_MAX ? IOV_MAX : cnt;
    r = sendmsg (s->fd, &msg, MSG_NOSIGNAL);
    if (r == -1) {
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        return 0;
      if (errno == EINTR)
        continue;
      return mcx_sock_fail (s, MCX_EIO, "write");
    }
    s->sent += r;
    while (r > 0) {
      struct iovec *v = &s->iov[s->iov_done];

      if ((size_t) r >= v->iov_len) {
        r -= v->iov_len;
        s->iov_done++;
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
mcx_sock_connect (struct mcx_sock *s, const char *host, unsigned port,
                  int64_t deadline_ns)
{
  int r;

  if (port == 0) {
    struct sockaddr_un sun = { .sun_family = AF_UNIX };

    if (strlen (host) >= sizeof sun.sun_path)
      return mcx_sock_fail (s, MCX_EINVAL, "socket path too long");
    strcpy (sun.sun_path, host);
    return mcx_sock_connect_addr (s, (struct sockaddr *) &sun, sizeof sun,
                                  deadline_ns);
  }
  else {
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_NUMERICSERV };
    struct addrinfo *res = NULL, *ai;
    char service[16];

    snprintf (service, sizeof service, "%u", port);
    if (getaddrinfo (host, service, &hints, &res) != 0 || res == NULL)
      return mcx_sock_fail (s, MCX_EIO, "cannot resolve the server's address");
    r = MCX_EIO;
    for (ai = res; ai != NULL && r != MCX_OK && r != MCX_ETIMEDOUT;
         ai = ai->ai_next) {
      if (s->fd >= 0)
        close (s->fd);
      s->fd = -1;
      s->broken = false;
      r = mcx_sock_connect_addr (s, ai->ai_addr, ai->ai_addrlen, deadline_ns);
    }
    freeaddrinfo (res);
    return r;
  }
}

void
mcx_sock_close (struct mcx_sock *s)
{
  if (s->fd >= 0)
    close (s->fd);
  s->fd = -1;
  free (s->iov);
  free (s->rbuf);
  s->iov = NULL;
  s->rbuf = NULL;
}
