/* SPDX-License-Identifier: BSD-3-Clause */
/* nbdkit-memcache-filter: server health and generations, shared by all
 * threads.
 */

#ifndef MEMCACHE_HEALTH_H
#define MEMCACHE_HEALTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ring.h"

enum health_state {
  HEALTH_UP,                    /* requests use the server */
  HEALTH_SUSPECT,               /* a request timed out: requests still use
                                   it; more failures in a row take it down */
  HEALTH_DOWN,                  /* requests skip it until the next probe */
  HEALTH_PROBING,               /* one request is trying it; others skip */
};

/* How an operation failed, for health_report_failure. */
enum health_failure {
  HEALTH_FAIL_SOFT,             /* a timeout or a garbled reply: the server
                                   may only be busy (mcrouter's soft TKO) */
  HEALTH_FAIL_HARD,             /* refused, reset or closed: unlikely to
                                   clear by itself at the next request */
};

/* Soft failures in a row (each seen by a request sent after the previous
 * one was reported) that take a server down.
 */
#define HEALTH_SUSPECT_MAX 3

/* A server taken down by soft failures is probed this soon first (or
 * after memcache-retry, if shorter): it was alive a moment ago.
 */
#define HEALTH_SOFT_RETRY_MS 10

struct health_view {
  enum health_state state;
  uint64_t generation;
  uint64_t downs;               /* transitions from UP or SUSPECT to DOWN */
  unsigned failures;            /* soft failures in a row counted so far */
  uint64_t backoff_ms;          /* current probe interval */
  int64_t next_probe_ms;        /* from now; meaningful when DOWN */
};

/* Every server of RING up, at generation 1 (RING is kept until
 * health_free: its names are in the messages).  A server down is probed
 * after RETRY_MS first, doubling up to RETRY_CAP_MS (health.c).  A probe
 * is given PROBE_WAIT_MS to report (at least the longest any operation
 * may take, deadlines included): until then no other request probes
 * the server, and a probe that has not reported by then counts as a
 * failed one.
 */
extern int health_init (const struct ring *ring, unsigned retry_ms,
                        unsigned retry_cap_ms, unsigned probe_wait_ms);
extern void health_free (void);

/* May a request use server I now?  If so, *GEN is the generation to build
 * keys with and *INCARNATION names the connections it may use; it must
 * report how its operations went with that incarnation.  When the server
 * is down and its probe time has come, the caller becomes the prober.
 */
extern bool health_acquire (size_t i, uint64_t *gen, uint64_t *incarnation);

/* As health_acquire, but only if server I is up or suspect: never as
 * its probe.  For the fill thread, whose failures are not reported (a
 * probe that never reports would hold the server down for the probe
 * wait).
 */
extern bool health_acquire_usable (size_t i, uint64_t *gen,
                                   uint64_t *incarnation);

/* Is server I up or suspect (usable without probing it)? */
extern bool health_usable (size_t i);

/* An operation made in INCARNATION, sent at STARTED_NS (CLOCK_MONOTONIC),
 * completed as the server intended.
 */
extern void health_report_ok (size_t i, uint64_t incarnation,
                              uint64_t started_ns);

/* An operation made in INCARNATION, sent at STARTED_NS, failed HOW. */
extern void health_report_failure (size_t i, uint64_t incarnation,
                                   uint64_t started_ns,
                                   enum health_failure how);

/* Server I (a slot of the pool, pool.h) has just been given to a server
 * joining the pool: up, with a generation never handed out before (so
 * nothing the server holds from an earlier time is asked for), and a
 * new incarnation (no connection to the slot's last server is used).
 * Called while no snapshot names the slot.
 */
extern void health_server_join (size_t i);

/* Server I has left the pool: a new incarnation, so that connections to
 * it are closed as the requests still using it give them back.
 */
extern void health_server_leave (size_t i);

/* Stop trusting everything on every server (a huge zero or trim). */
extern void health_invalidate_all (void);

/* Stop trusting everything on server I (more writes skipped it than the
 * fill thread can remember to delete, filler.h).
 */
extern void health_invalidate (size_t i);

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
