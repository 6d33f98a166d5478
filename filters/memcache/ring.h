/* SPDX-License-Identifier: BSD-3-Clause */
/* nbdkit-memcache-filter: the server list and block placement. */

#ifndef MEMCACHE_RING_H
#define MEMCACHE_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The longest server address: a host name (255) with a port, or a Unix
 * socket path (108 with its NUL).
 */
#define RING_NAME_MAX 262

struct ring_server {
  char *name;                   /* as written in memcache-servers */
  char *host;                   /* host name or address, or socket path */
  unsigned port;                /* 0 for a Unix socket */
};

/* A list of servers: memcache-servers as parsed (ring_parse), or one
 * snapshot of the running pool (pool.h), in which servers[] is the
 * pool's table of slots and some slots below n are not members (a bit
 * set in absent).  Placement only ever looks at members.
 */
struct ring {
  struct ring_server *servers;
  size_t n;                     /* servers[0 .. n-1] */
  uint64_t absent;              /* bit i: servers[i] is not a member */
  uint64_t id_hash;             /* ring_id_hash (memcache-id) */
  /* Warm moves (pool.c): until warm_until_ns (CLOCK_MONOTONIC), a block
   * that missed on its server is asked of its owner under the
   * membership before the last change (bit i of prev_absent: servers[i]
   * was not a member then).  warm false: no previous owner.
   */
  bool warm;
  uint64_t prev_absent;
  int64_t warm_until_ns;
};

/* Is servers[I] a member of RING? */
static inline bool
ring_member (const struct ring *ring, size_t i)
{
  return i < ring->n && (i >= 64 || (ring->absent >> i & 1) == 0);
}

/* Parse LIST ("HOST:PORT,[V6ADDR]:PORT,/unix/path,...") into RING.
 * Returns 0, or -1 after nbdkit_error naming the bad entry.
 */
extern int ring_parse (struct ring *ring, const char *list, size_t max);
/* The same, writing why into WHY (WHY_LEN bytes) instead. */
extern int ring_parse_why (struct ring *ring, const char *list, size_t max,
                           char *why, size_t why_len);
extern void ring_free (struct ring *ring);

/* Parse one entry NAME (HOST:PORT, [V6ADDR]:PORT or /unix/path) into S;
 * WHAT names the parameter or command in the message.  Returns 0, or -1
 * (S holds nothing to free then) after writing why into WHY (WHY_LEN
 * bytes), or with nbdkit_error if WHY is NULL.
 */
#define RING_WHY_MAX 400
extern int ring_server_parse (struct ring_server *s, const char *name,
                              const char *what, char *why, size_t why_len);
extern void ring_server_clear (struct ring_server *s);

/* XXH3-64 of the device id: part of every key and value header. */
extern uint64_t ring_id_hash (const char *id);

/* The member of RING that holds BLOCK (an index into ring->servers);
 * RING must have one member at least.
 */
extern size_t ring_server_for_block (const struct ring *ring, uint64_t block);

/* Warm moves: if RING has a previous membership still warm, the server
 * that held BLOCK under it; else SIZE_MAX.
 */
extern size_t ring_previous_server_for_block (const struct ring *ring,
                                              uint64_t block);

#endif /* MEMCACHE_RING_H */
