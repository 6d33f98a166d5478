/* SPDX-License-Identifier: BSD-3-Clause */
/* abd memcached-ext: a small client for memcached's classic text protocol,
 * with the batch-and-deadline design of the meta client (meta.h), whose
 * operations, replies and statuses it shares.
 *
 * One struct mtx_conn is one non-blocking connection to one server.  A
 * batch is written with one writev and its replies read until every
 * command has had its answer.  The text protocol has no opaque tokens and
 * no quiet mode that still reports errors by command (a "noreply" error
 * names no command), so every command is answered, in the order sent,
 * and a reply is matched to its command by position:
 *
 *   get <key> <key> ...          -> VALUE <key> <flags> <len>\r\n
 *     (consecutive MCX_GETs,        <len bytes>\r\n for each hit, in the
 *     MTX_GET_LINE_MAX bytes a      order asked; then END.  A miss is
 *     line at most)                 absent.  SERVER_ERROR instead of END
 *                                   ends the command: the rest are misses
 *   set <key> 0 <ttl> <len>\r\n  -> STORED | NOT_STORED | EXISTS |
 *     <data>\r\n                    NOT_FOUND | SERVER_ERROR <text>
 *   delete <key>                 -> DELETED | NOT_FOUND | SERVER_ERROR <text>
 *
 * The server is not trusted (mtx_parse): a VALUE whose key is not one of
 * the command's keys still unanswered, in order; a length longer than
 * MCX_SKIP_MAX, or not a plain decimal number; a value not followed by
 * CRLF; a line longer than MCX_LINE_MAX, not printable, or not one of the
 * above (ERROR, CLIENT_ERROR, ...) is a protocol error, after which the
 * connection is broken and must be closed, as with the meta client.  A
 * value longer than the caller's maximum but not than MCX_SKIP_MAX is
 * read and dropped as it comes, and reported as MCX_TOO_LARGE for its
 * key alone (meta.h).
 *
 * Not thread-safe: one thread uses a connection at a time.
 */

#ifndef MEMCACHED_EXT_TEXT_H
#define MEMCACHED_EXT_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "meta.h"

/* The longest "get" line sent: keys are grouped into as many lines as
 * needed (at least one key each).  memcached reads any "get" line, but
 * other servers of the protocol may not read past their buffer.
 */
#define MTX_GET_LINE_MAX 1024

/* The end (one past) of the command that starts at operation I of OPS
 * (N of them): I + 1, or for a get, the following gets that fit on one
 * line.  The sender and the parser group alike through this.
 */
extern size_t mtx_command_end (const struct mcx_op *ops, size_t n, size_t i);

/* The reply parser, exposed for tests and fuzzing.  Set OPS, N,
 * MAX_VALUE, FN and OPAQUE, the rest zero, then feed it bytes.
 *
 * FN is called with: MCX_HIT and the value for a get that hit; MCX_STORED
 * (STORED or DELETED), MCX_NOT_STORED, MCX_EXISTS, MCX_NOT_FOUND or
 * MCX_SERVER_ERROR (DATA the message) with the index of the set or
 * delete answered; and MCX_SERVER_ERROR with MCX_NO_INDEX for a get
 * command that ended in an error.  Gets not reported are misses.
 */
struct mtx_parser {
  const struct mcx_op *ops;
  size_t n;
  size_t max_value;             /* longest value accepted */
  mcx_reply_fn fn;
  void *opaque;
  size_t next;                  /* the first operation of the command
                                   being answered */
  size_t cmd_end;               /* 0, or the end of the get command begun */
  size_t cursor;                /* in it, the first key a VALUE may name */
  struct mcx_skip skip;         /* a value being skipped (MCX_TOO_LARGE) */
  char error[96];               /* why the last MCX_EPROTO */
};

/* Parse replies from BUF (LEN bytes).  Whole replies only are consumed:
 * *USED is how many bytes were.  Returns 1 once every operation has been
 * answered (bytes after that are not looked at), 0 when more bytes are
 * needed (*NEED: how many bytes from BUF+*USED the next reply needs at
 * least, never more than MCX_LINE_MAX + MAX_VALUE + 2), or MCX_EPROTO.
 */
extern int mtx_parse (struct mtx_parser *p, const char *buf, size_t len,
                      size_t *used, size_t *need);

struct mtx_conn;

/* As mcx_connect, mcx_close, mcx_send, mcx_recv, mcx_broken and
 * mcx_error, for the text protocol.
 */
extern struct mtx_conn *mtx_connect (const char *host, unsigned port,
                                     int64_t deadline_ns, int *status);
extern void mtx_close (struct mtx_conn *c);
extern int mtx_send (struct mtx_conn *c, const struct mcx_op *ops, size_t n,
                     size_t max_value);
extern int mtx_recv (struct mtx_conn *c, int64_t deadline_ns,
                     mcx_reply_fn fn, void *opaque);
extern bool mtx_broken (const struct mtx_conn *c);
extern const char *mtx_error (const struct mtx_conn *c);

#endif /* MEMCACHED_EXT_TEXT_H */
