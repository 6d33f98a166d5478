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

struct mcx_op;                  /* memcached-ext/meta.h */
struct meta_slot;               /* conn-meta.c */

/* One request's use of one server: opened only if the server is usable,
 * always closed by the same thread.
 */
struct conn_session {
  size_t server;
  uint64_t gen;                 /* the server's generation at open */
  uint64_t incarnation;         /* and its incarnation (health.h) */
  bool writing;                 /* opened to change cached values */
  bool failed;                  /* an operation failed; the server is down */
  uint64_t mget_start_ns;       /* for the latency of a multi-get */
  /* memcache-protocol=text: */
  memcached_st *mc;
  /* memcache-protocol=meta: a multi-get between conn_mget and conn_fetch */
  struct meta_slot *meta_slot;  /* the connection it holds */
  struct mcx_op *meta_ops;
  const char * const *meta_keys;
  const size_t *meta_key_lens;
  int64_t meta_deadline_ns;
};

enum conn_outcome {
  CONN_OK,                      /* done (a delete of a missing key is ok) */
  CONN_REFUSED,                 /* the server answered but did not do it */
  CONN_FAILED,                  /* timeout or connection error */
};

extern int conn_init (const struct ring *ring, unsigned timeout_ms);
extern void conn_free (void);

/* Open a session to server I.  Returns false (and nothing to close) when
 * the server is down.  WRITING: the session is for a write's updates or
 * invalidations, so not reaching the server taints it (health.h), and so
 * does every set or delete that fails.
 */
extern bool conn_open (struct conn_session *s, size_t i, bool writing);
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

extern enum conn_outcome conn_set (struct conn_session *s,
                                   const char *key, size_t key_len,
                                   const void *value, size_t value_len,
                                   unsigned ttl);
extern enum conn_outcome conn_delete (struct conn_session *s,
                                      const char *key, size_t key_len);

/* The outcome of a set or delete of this session is unknown: stop
 * trusting what the server holds (health_report_uncertain).
 */
extern void conn_uncertain (struct conn_session *s);

#endif /* MEMCACHE_CONN_H */
