/* SPDX-License-Identifier: BSD-3-Clause */
/* nbdkit-memcache-filter: connections to the memcached servers, over the
 * meta protocol (conn-meta.c) or the text protocol (conn-text.c), both
 * with memcached-ext, as memcache-protocol says.
 */

#ifndef MEMCACHE_CONN_H
#define MEMCACHE_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "params.h"
#include "ring.h"

enum conn_outcome {
  CONN_OK,                      /* done (a delete of a missing key is ok) */
  CONN_REFUSED,                 /* the server answered but did not do it */
  CONN_FAILED,                  /* timeout or connection error */
};

struct mcx_op;                  /* memcached-ext/meta.h */
struct meta_slot;               /* conn-meta.c */
struct mtx_conn;                /* memcached-ext/text.h */

/* One store (VALUE set) or delete (VALUE NULL) of a batch (conn_mutate). */
struct conn_mutation {
  const char *key;
  size_t key_len;
  const void *value;
  size_t value_len;
  bool refused;                 /* out: the server answered, did not do it */
};

/* One request's use of one server: opened only if the server is usable,
 * always closed by the same thread.
 */
struct conn_session {
  size_t server;
  uint64_t gen;                 /* the server's generation at open */
  uint64_t incarnation;         /* and its incarnation (health.h) */
  bool failed;                  /* an operation failed; the server is down */
  bool background;              /* the fill thread's: a failure only ends
                                   the session (no client waits for it) */
  uint64_t batch_start_ns;      /* for the latency of a batch */
  /* memcache-protocol=text: the session's connection (taken at open),
   * and a batch between its send and its collection.
   */
  struct {
    struct mtx_conn *c;         /* NULL: not connected yet */
    bool sent;                  /* a batch is in flight on c */
    struct mcx_op *ops;
    const char * const *keys;   /* a multi-get's */
    const size_t *key_lens;
    struct conn_mutation *mutations;    /* a conn_mutate_send's */
    int64_t deadline_ns;
  } text;
  /* memcache-protocol=meta: a batch between its send and its collection */
  struct meta_slot *meta_slot;  /* the connection it holds */
  struct mcx_op *meta_ops;
  const char * const *meta_keys;        /* a multi-get's */
  const size_t *meta_key_lens;
  struct conn_mutation *meta_mutations; /* a conn_mutate_send's */
  int64_t meta_deadline_ns;
  int64_t meta_span_ns;          /* the deadline's length, from the send */
};


/* One get (VALUE NULL) or set of KEY outside any session: conn_oneshot. */
struct conn_oneshot {
  const char *key;
  size_t key_len;
  const void *value;            /* a set's value (stored with no expiry) */
  size_t value_len;
  /* out */
  bool connected;               /* the server took the connection */
  bool found;                   /* a get: the server had the key */
  unsigned char *got;           /* then its value (malloc'd, to free) */
  size_t got_len;
  bool refused;                 /* the server answered, did not do it */
  char why[160];                /* what went wrong, for logs */
};

/* What the connections need of the parameters (memcache.c fills it in);
 * each protocol keeps its own copy.
 */
struct conn_settings {
  enum memcache_protocol protocol;      /* memcache-protocol */
  uint32_t block_size;          /* memcache-block-size: bounds the values
                                   a multi-get accepts */
  unsigned timeout_ms;          /* memcache-timeout */
};

/* A protocol's half of the functions below, with the same meanings;
 * conn.c checks and reports around them.  OPEN, if not NULL, is called
 * once the server is known to be usable; false: skip it this time.
 */
typedef void (*conn_found_fn) (void *opaque, const char *key, size_t key_len,
                               const char *value, size_t value_len);
struct conn_ops {
  const char *name;
  int (*init) (const struct ring *ring,
               const struct conn_settings *settings);
  void (*free) (void);
  bool (*open) (struct conn_session *s);
  void (*close) (struct conn_session *s);
  enum conn_outcome (*mget) (struct conn_session *s,
                             const char * const *keys,
                             const size_t *key_lens, size_t n);
  enum conn_outcome (*fetch) (struct conn_session *s,
                              conn_found_fn found, void *opaque);
  enum conn_outcome (*mutate_send) (struct conn_session *s,
                                    struct conn_mutation *m, size_t n,
                                    unsigned ttl);
  enum conn_outcome (*mutate_finish) (struct conn_session *s);
  int (*oneshot) (const struct ring_server *server, struct conn_oneshot *o,
                  size_t max_value, int64_t deadline_ns);
  void (*forget) (size_t i);
};

extern const struct conn_ops conn_meta_protocol;     /* conn.c */
extern const struct conn_ops conn_text_protocol;     /* conn-text.c */

/* Each protocol's conn_ops.oneshot (conn-oneshot.c). */
extern int conn_meta_oneshot (const struct ring_server *server,
                              struct conn_oneshot *o, size_t max_value,
                              int64_t deadline_ns);
extern int conn_text_oneshot (const struct ring_server *server,
                              struct conn_oneshot *o, size_t max_value,
                              int64_t deadline_ns);

/* Set up the protocol's connections to the servers of RING (kept until
 * conn_free): the table of operations is chosen here, once, from
 * SETTINGS->protocol.
 */
extern int conn_init (const struct ring *ring,
                      const struct conn_settings *settings);
extern void conn_free (void);

/* Open a session to server I.  Returns false (and nothing to close) when
 * the server is down.
 */
extern bool conn_open (struct conn_session *s, size_t i);
/* The same for the fill thread: only if the server is up or suspect (it
 * never probes), and its failures end the session without counting
 * against the server (background).
 */
extern bool conn_open_background (struct conn_session *s, size_t i);
extern void conn_close (struct conn_session *s);

/* Server I has left the pool (servers.c): close its idle connections
 * now; those in use are closed when given back (a new incarnation,
 * health_server_leave, comes first).
 */
extern void conn_forget (size_t i);

/* A multi-get: conn_mget sends the request, conn_fetch collects the
 * answers, calling FOUND for every key the server has.  Send the requests
 * to all servers before fetching from any, so that they work in parallel.
 */
extern enum conn_outcome conn_mget (struct conn_session *s,
                                    const char * const *keys,
                                    const size_t *key_lens, size_t n);
extern enum conn_outcome conn_fetch (struct conn_session *s,
                                     conn_found_fn found, void *opaque);

/* Stores and deletes, as one batch per server: conn_mutate_send sends
 * M[0..N-1] (with the meta protocol: quiet ms and md commands and an mn,
 * in one writev; with the text protocol set and delete commands, each
 * answered), and
 * conn_mutate_finish collects the answers, setting M[i].refused for each
 * the server would not do.  Send to all servers before collecting from
 * any.  M and the values must stay valid until conn_mutate_finish.
 * CONN_FAILED: the outcome of some of them is unknown; they may still be
 * carried out, late.  That is harmless: every value is sealed under its
 * block's version (writeseq.h), so a late store can only put back a
 * value that no longer authenticates.
 */
extern enum conn_outcome conn_mutate_send (struct conn_session *s,
                                           struct conn_mutation *m,
                                           size_t n, unsigned ttl);
extern enum conn_outcome conn_mutate_finish (struct conn_session *s);

/* O (a get or a set) to SERVER in the protocol in use, on a connection
 * made for it and closed before returning, before DEADLINE_NS
 * (mcx_now_ns); a get accepts values of MAX_VALUE bytes at most.  For
 * the start and the stop only (conn-oneshot.c): it touches no session,
 * pool or health state.  Returns 0 when the server answered (O's
 * found, got and refused say how), or -1 (O's connected and why say
 * what went wrong).
 */
extern int conn_oneshot (const struct ring_server *server,
                         struct conn_oneshot *o, size_t max_value,
                         int64_t deadline_ns);

#endif /* MEMCACHE_CONN_H */
