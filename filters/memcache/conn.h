/* SPDX-License-Identifier: BSD-3-Clause */
/* nbdkit-memcache-filter: connections to the memcached servers, over the
 * meta protocol (conn-meta.c, memcached-ext) or the text protocol
 * (libmemcached), as memcache-protocol says.
 */

#ifndef MEMCACHE_CONN_H
#define MEMCACHE_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libmemcached/memcached.h>

#include "ring.h"

enum conn_outcome {
  CONN_OK,                      /* done (a delete of a missing key is ok) */
  CONN_REFUSED,                 /* the server answered but did not do it */
  CONN_FAILED,                  /* timeout or connection error */
};

struct mcx_op;                  /* memcached-ext/meta.h */
struct meta_slot;               /* conn-meta.c */

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
  /* memcache-protocol=text: */
  memcached_st *mc;
  enum conn_outcome text_outcome; /* of conn_mutate_send's batch */
  /* memcache-protocol=meta: a batch between its send and its collection */
  struct meta_slot *meta_slot;  /* the connection it holds */
  struct mcx_op *meta_ops;
  const char * const *meta_keys;        /* a multi-get's */
  const size_t *meta_key_lens;
  struct conn_mutation *meta_mutations; /* a conn_mutate_send's */
  int64_t meta_deadline_ns;
};


extern int conn_init (const struct ring *ring, unsigned timeout_ms);
extern void conn_free (void);

/* Open a session to server I.  Returns false (and nothing to close) when
 * the server is down.
 */
extern bool conn_open (struct conn_session *s, size_t i);
extern void conn_close (struct conn_session *s);

/* A multi-get: conn_mget sends the request, conn_fetch collects the
 * answers, calling FOUND for every key the server has.  Send the requests
 * to all servers before fetching from any, so that they work in parallel.
 */
extern enum conn_outcome conn_mget (struct conn_session *s,
                                    const char * const *keys,
                                    const size_t *key_lens, size_t n);
typedef void (*conn_found_fn) (void *opaque, const char *key, size_t key_len,
                               const char *value, size_t value_len);
extern enum conn_outcome conn_fetch (struct conn_session *s,
                                     conn_found_fn found, void *opaque);

/* Stores and deletes, as one batch per server: conn_mutate_send sends
 * M[0..N-1] (with the meta protocol: quiet ms and md commands and an mn,
 * in one writev; the text protocol does them one by one now), and
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

#endif /* MEMCACHE_CONN_H */
