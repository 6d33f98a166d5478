/* SPDX-License-Identifier: BSD-3-Clause */
/* abd memcached-ext: a small client for memcached's meta protocol.
 *
 * One struct mcx_conn is one non-blocking connection to one server (TCP or
 * a Unix socket).  It runs batches: a caller gives an array of operations
 * (get, set, delete), mcx_send writes the whole batch as quiet meta
 * commands with one writev, each tagged with its index as opaque token
 * (O<index>), followed by "mn"; mcx_recv then reads until "MN", calling
 * back for every reply with the index of the operation it answers:
 *
 *   mg <key> v q O<i>                  -> VA <len> O<i> + data (hit);
 *                                         nothing on a miss
 *   ms <key> <len> T<ttl> q O<i> + data -> nothing when stored;
 *                                         NS / EX / NF O<i> otherwise
 *   md <key> q O<i>                     -> nothing when deleted; NF O<i>
 *                                         when there was nothing to delete
 *   mn                                  -> MN: the batch is complete
 *
 * The server is not trusted: everything it sends is parsed strictly and
 * bounds-checked (mcx_parse).  A value longer than the caller's maximum
 * but announced at most MCX_SKIP_MAX long is read and thrown away, and
 * reported as MCX_TOO_LARGE for its operation alone: one value someone
 * else stored under a key must not cost the batch's other answers and the
 * connection.  A longer one, an opaque token that names no operation of
 * the batch (or one already answered, or of the wrong kind), a malformed
 * line, or a line longer than MCX_LINE_MAX is a protocol error.
 * SERVER_ERROR lines carry no opaque token in memcached 1.6: they are
 * passed on with index MCX_NO_INDEX and the batch goes on.
 *
 * Every batch has a deadline (CLOCK_MONOTONIC nanoseconds, mcx_now_ns)
 * for the whole of it, not per read, and may have an idle timeout
 * (mcx_set_idle_timeout): the longest wait without a byte read or
 * written.  After either, only what has already arrived is read.  Any
 * error (timeout, I/O, protocol) leaves the connection broken: the
 * caller must mcx_close it, because the server may still answer the
 * abandoned batch later.
 *
 * Not thread-safe: one thread uses a connection at a time.
 */

#ifndef MEMCACHED_EXT_META_H
#define MEMCACHED_EXT_META_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The longest reply line accepted, "\r\n" included. */
#define MCX_LINE_MAX 1024

/* The longest value skipped (MCX_TOO_LARGE) rather than refused: four
 * times memcached's default item size limit (-I 1m).
 */
#define MCX_SKIP_MAX (4 * 1024 * 1024)

/* memcached's own limit on key length. */
#define MCX_KEY_MAX 250

/* The index passed with replies that name no operation (SERVER_ERROR). */
#define MCX_NO_INDEX SIZE_MAX

enum mcx_status {
  MCX_OK        =  0,
  MCX_ETIMEDOUT = -1,           /* the deadline passed */
  MCX_EIO       = -2,           /* connect, read or write failed; EOF */
  MCX_EPROTO    = -3,           /* the server sent something not allowed */
  MCX_ENOMEM    = -4,
  MCX_EINVAL    = -5,           /* a bad key or operation: nothing sent */
};

enum mcx_op_type { MCX_GET, MCX_SET, MCX_DELETE };

struct mcx_op {
  enum mcx_op_type type;
  const char *key;              /* printable, no space, 1..MCX_KEY_MAX */
  size_t key_len;
  const void *value;            /* MCX_SET: must stay valid until mcx_recv */
  size_t value_len;
  unsigned ttl;                 /* MCX_SET: seconds, 0 = no expiry */
};

/* What a reply says about one operation. */
enum mcx_reply {
  MCX_HIT,                      /* MCX_GET: DATA, LEN is the value */
  MCX_MISS,                     /* MCX_GET: EN (only if not quiet) */
  MCX_STORED,                   /* MCX_SET / MCX_DELETE: HD (not quiet) */
  MCX_NOT_STORED,               /* NS */
  MCX_EXISTS,                   /* EX */
  MCX_NOT_FOUND,                /* NF: a delete found nothing */
  MCX_SERVER_ERROR,             /* INDEX is MCX_NO_INDEX; DATA the message */
  MCX_TOO_LARGE,                /* MCX_GET: a value longer than the caller's
                                   maximum, skipped; DATA is NULL, LEN its
                                   length */
};

typedef void (*mcx_reply_fn) (void *opaque, size_t index, enum mcx_reply r,
                              const char *data, size_t len);

/* The reply parser, exposed for tests and fuzzing.  Set OPS, N, ANSWERED
 * (N bytes, zeroed), MAX_VALUE, FN and OPAQUE, the rest zero, then feed
 * it bytes.
 */
/* A value being skipped (MCX_TOO_LARGE): its operation, its length, and
 * how many of its bytes are still to come (then "\r\n").  (reply.c)
 */
struct mcx_skip {
  bool on;
  size_t index;
  size_t len, left;
};

struct mcx_parser {
  const struct mcx_op *ops;
  size_t n;
  unsigned char *answered;      /* answered[i]: operation i had a reply */
  size_t max_value;             /* longest value accepted */
  mcx_reply_fn fn;
  void *opaque;
  size_t nr_errors;             /* SERVER_ERROR lines so far */
  char error[96];               /* why the last MCX_EPROTO */
  struct mcx_skip skip;         /* a value being skipped (MCX_TOO_LARGE) */
};

/* Parse replies from BUF (LEN bytes).  Whole replies only are consumed
 * (but the bytes of a value being skipped as they come): *USED is how
 * many bytes were.  Returns 1 once MN was parsed (the batch
 * is complete; bytes after it are not looked at), 0 when more bytes are
 * needed (*NEED: how many bytes from BUF+*USED the next reply needs at
 * least, never more than MCX_LINE_MAX + MAX_VALUE + 2), or MCX_EPROTO.
 */
extern int mcx_parse (struct mcx_parser *p, const char *buf, size_t len,
                      size_t *used, size_t *need);

struct mcx_conn;

/* Connect to HOST:PORT, or to the Unix socket HOST when PORT is 0, before
 * DEADLINE_NS.  Returns NULL with *STATUS set on failure.
 */
extern struct mcx_conn *mcx_connect (const char *host, unsigned port,
                                     int64_t deadline_ns, int *status);
extern void mcx_close (struct mcx_conn *c);

/* Bound every wait of the next batches for the server's answer (mcx_recv)
 * by IDLE_NS without progress: a batch fails when no byte has been read
 * or written for that long, even before its deadline.  0: no such bound.
 * A large batch, or one queued behind others on a busy server, takes
 * longer than a few ms in all, yet its answer keeps coming.
 */
extern void mcx_set_idle_timeout (struct mcx_conn *c, int64_t idle_ns);

/* Share a progress clock (CLOCK_MONOTONIC ns, updated with relaxed atomic
 * operations) among connections to one server: every byte one of them
 * reads counts as progress for all, so a batch queued behind the others
 * of a busy server that keeps answering does not time out while the
 * server works through them (its deadline still bounds it).  NULL: none.
 */
extern void mcx_set_progress_clock (struct mcx_conn *c, int64_t *clock);

/* Send a batch: everything that can be written without blocking is
 * written now, the rest by mcx_recv.  OPS (and the values they point to)
 * must stay valid until mcx_recv returns.  MAX_VALUE: the longest value
 * a reply may carry.
 */
extern int mcx_send (struct mcx_conn *c, const struct mcx_op *ops, size_t n,
                     size_t max_value);

/* Finish the batch sent by mcx_send: write the rest, read and parse the
 * replies until MN, calling FN for each, before DEADLINE_NS (and within
 * the idle timeout of every byte, if one is set).
 */
extern int mcx_recv (struct mcx_conn *c, int64_t deadline_ns,
                     mcx_reply_fn fn, void *opaque);

/* mcx_send then mcx_recv. */
extern int mcx_batch (struct mcx_conn *c, const struct mcx_op *ops, size_t n,
                      size_t max_value, int64_t deadline_ns,
                      mcx_reply_fn fn, void *opaque);

/* True once an error has made the connection unusable. */
extern bool mcx_broken (const struct mcx_conn *c);

/* What went wrong last on C, for logs. */
extern const char *mcx_error (const struct mcx_conn *c);
extern const char *mcx_strstatus (int status);

/* CLOCK_MONOTONIC in nanoseconds: the clock of all deadlines. */
extern int64_t mcx_now_ns (void);

#endif /* MEMCACHED_EXT_META_H */
