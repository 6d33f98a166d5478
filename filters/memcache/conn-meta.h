/* SPDX-License-Identifier: BSD-3-Clause */
/* nbdkit-memcache-filter: the meta protocol backend of conn.c.
 *
 * conn.c owns sessions and decides which backend serves them; these are
 * its meta halves, and the two reporting helpers they share with conn.c.
 */

#ifndef MEMCACHE_CONN_META_H
#define MEMCACHE_CONN_META_H

#include "conn.h"

/* Connections per server per nbdkit process (so per host). */
#define CONN_META_PER_SERVER 4

extern int conn_meta_init (const struct ring *ring,
                           const struct conn_settings *settings);
extern void conn_meta_free (void);
extern void conn_meta_close (struct conn_session *s);
extern void conn_meta_forget (size_t i);
extern enum conn_outcome conn_meta_mget (struct conn_session *s,
                                         const char * const *keys,
                                         const size_t *key_lens, size_t n);
extern enum conn_outcome conn_meta_fetch (struct conn_session *s,
                                          conn_found_fn found, void *opaque);
extern enum conn_outcome conn_meta_mutate_send (struct conn_session *s,
                                                struct conn_mutation *m,
                                                size_t n, unsigned ttl);
extern enum conn_outcome conn_meta_mutate_finish (struct conn_session *s);

/* Whose fault a failure is (health.h). */
enum conn_fault {
  CONN_FAULT_OURS,              /* out of memory, all connections busy:
                                   the server's health is not in question */
  CONN_FAULT_SOFT,              /* no answer in time, a garbled reply */
  CONN_FAULT_HARD,              /* refused, reset, closed by the server */
};

/* In conn.c: an operation of S went as the server intended. */
extern void conn_report_ok (struct conn_session *s);
/* In conn.c: S failed (TIMEOUT or another error, WHY for the debug log),
 * FAULT says whose fault it was.
 */
extern void conn_report_failure (struct conn_session *s, bool timeout,
                                 enum conn_fault fault, const char *why);

#endif /* MEMCACHE_CONN_META_H */
