/* SPDX-License-Identifier: BSD-3-Clause */
/* nbdkit-memcache-filter: the server list and block placement. */

#ifndef MEMCACHE_RING_H
#define MEMCACHE_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ring_server {
  char *name;                   /* as written in memcache-servers */
  char *host;                   /* host name or address, or socket path */
  unsigned port;                /* 0 for a Unix socket */
};

struct ring {
  struct ring_server *servers;
  size_t n;
  uint64_t id_hash;             /* ring_id_hash (memcache-id) */
};

/* Parse LIST ("HOST:PORT,[V6ADDR]:PORT,/unix/path,...") into RING.
 * Returns 0, or -1 after nbdkit_error naming the bad entry.
 */
extern int ring_parse (struct ring *ring, const char *list, size_t max);
extern void ring_free (struct ring *ring);

/* XXH3-64 of the device id: part of every key and value header. */
extern uint64_t ring_id_hash (const char *id);

/* The server that holds BLOCK (an index into ring->servers). */
extern size_t ring_server_for_block (const struct ring *ring, uint64_t block);

#endif /* MEMCACHE_RING_H */
