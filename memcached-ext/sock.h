/* SPDX-License-Identifier: BSD-3-Clause */
/* abd memcached-ext: the socket under both clients (meta-conn.c,
 * text-conn.c), internal to memcached-ext.
 *
 * A non-blocking stream socket to one server (TCP or a Unix socket), the
 * iovec array of the batch being written (sendmsg with MSG_NOSIGNAL),
 * and a receive buffer that the protocol's parser reads in place.  Every
 * wait is a poll() bounded by a deadline (CLOCK_MONOTONIC nanoseconds,
 * mcx_now_ns).  After any failure the socket is broken: its error says
 * why, and it must be closed.  One thread uses a socket at a time.
 */

#ifndef MEMCACHED_EXT_SOCK_H
#define MEMCACHED_EXT_SOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "meta.h"

struct mcx_sock {
  int fd;                       /* -1: none */
  bool broken;
  char error[128];
  bool in_flight;               /* a batch is sent and not yet collected */

  /* The batch being written: iov[iov_done..nr_iov). */
  struct iovec *iov;
  size_t nr_iov, iov_cap, iov_done;
  uint64_t sent;                /* bytes written, ever: progress */

  /* Received, not yet parsed: rbuf[rpos..rlen). */
  char *rbuf;
  size_t rcap, rpos, rlen;
};

/* Connect S (zeroed, fd -1) to HOST:PORT (PORT 0: HOST is the path of a
 * Unix socket) before DEADLINE_NS.  Returns MCX_OK or a failure.
 */
extern int mcx_sock_connect (struct mcx_sock *s, const char *host,
                             unsigned port, int64_t deadline_ns);
/* Close S's socket and free its buffers (not S itself). */
extern void mcx_sock_close (struct mcx_sock *s);

/* Record why S failed (WHAT, and errno for MCX_EIO); S is broken from
 * now on.  Returns STATUS.
 */
extern int mcx_sock_fail (struct mcx_sock *s, int status, const char *what);

/* Milliseconds left until DEADLINE_NS for poll, rounded up; -1 if none. */
extern int mcx_sock_poll_ms (int64_t deadline_ns);

/* Wait for EVENTS on S until DEADLINE_NS (*REVENTS what came).  Once the
 * deadline has passed, what is ready at once still counts.
 */
extern int mcx_sock_wait (struct mcx_sock *s, short events,
                          int64_t deadline_ns, short *revents);

/* Is OP's key one memcached takes (1-250 printable bytes, no space)? */
extern bool mcx_sock_key_ok (const struct mcx_op *op);

/* Grow *BUF (of *CAP elements of SIZE bytes) to at least WANT elements. */
extern bool mcx_sock_reserve (void *bufp, size_t *cap, size_t want,
                              size_t size);

/* Room in S's receive buffer for NEED bytes from rpos, and some to read
 * into: the parsed bytes are moved out, and the buffer grows (to MIN at
 * least, doubling).  False if out of memory.
 */
extern bool mcx_sock_rbuf_room (struct mcx_sock *s, size_t need, size_t min);

/* Add LEN bytes at BASE to the batch being written, joined to the
 * previous piece when it follows it in memory.  iov has room (reserved).
 */
extern void mcx_sock_add_iov (struct mcx_sock *s, const void *base,
                              size_t len);

/* Write what can be written of the batch without blocking. */
extern int mcx_sock_write_some (struct mcx_sock *s);

#endif /* MEMCACHED_EXT_SOCK_H */
