/* SPDX-License-Identifier: BSD-3-Clause */
/* nbdkit-memcache-filter: server health and generations, shared by all
 * threads.
 */

#ifndef MEMCACHE_HEALTH_H
#define MEMCACHE_HEALTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum health_state {
  HEALTH_UP,                    /* requests use the server */
  HEALTH_DOWN,                  /* requests skip it until the next probe */
  HEALTH_PROBING,               /* one request is trying it; others skip */
};

struct health_view {
  enum health_state state;
  uint64_t generation;
  uint64_t downs;               /* transitions to DOWN */
  uint64_t backoff_ms;          /* current probe interval */
  int64_t next_probe_ms;        /* from now; meaningful when DOWN */
};

extern int health_init (size_t n, unsigned retry_ms, unsigned retry_cap_ms);
extern void health_free (void);

/* May a request use server I now?  If so, *GEN is the generation to build
 * keys with and *INCARNATION names the connections it may use; it must
 * report how its operations went with that incarnation.  When the server
 * is down and its probe time has come, the caller becomes the prober.
 */
extern bool health_acquire (size_t i, uint64_t *gen, uint64_t *incarnation);

/* An operation made in INCARNATION completed as the server intended. */
extern void health_report_ok (size_t i, uint64_t incarnation);

/* An operation made in INCARNATION timed out or failed on the connection:
 * the server goes down at once.
 */
extern void health_report_failure (size_t i, uint64_t incarnation);

/* Stop trusting everything on every server (a huge zero or trim). */
extern void health_invalidate_all (void);

/* The current generation and incarnation of server I. */
extern uint64_t health_generation (size_t i);
extern uint64_t health_incarnation (size_t i);

/* For the warm-restart state file (state.h), at start: server I's
 * generation as the last process left it (health_generation then, saved
 * with the block versions, which make every value of an older write
 * fail).
 */
extern void health_restore_generation (size_t i, uint64_t gen);

extern void health_view (size_t i, struct health_view *view);
extern const char *health_state_name (enum health_state state);

#endif /* MEMCACHE_HEALTH_H */
