/* SPDX-License-Identifier: BSD-3-Clause */
/* nbdkit-memcache-filter: the server list and block placement.
 *
 * Placement is a pure function of (server list as written, device id,
 * block number), so every host and every restart with the same
 * memcache-servers and memcache-id puts a block on the same server:
 *
 *   id_hash = XXH3_64bits (id)
 *   score_i = XXH3_64bits_withSeed (name_i, strlen (name_i), id_hash ^ block)
 *   server  = the i with the highest score_i (the first one on a tie)
 *
 * This is rendezvous (highest random weight) hashing.  It is chosen over
 * "hash mod N" because adding or removing one server moves only the blocks
 * that belong to it, and over libmemcached's ketama ring because it needs
 * no table and is easy to state exactly.  Its cost, N short hashes per
 * block, is negligible next to a network round trip.
 *
 * Invariant: a block is never placed anywhere else while its server is
 * down.  The caller sends such blocks to the lower device instead; moving
 * them to another server would leave copies that nobody invalidates.
 */

#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include <nbdkit-filter.h>

#include "ring.h"

uint64_t
ring_id_hash (const char *id)
{
  return XXH3_64bits (id, strlen (id));
}

size_t
ring_server_for_block (const struct ring *ring, uint64_t block)
{
  uint64_t seed = ring->id_hash ^ block;
  uint64_t best_score = 0;
  size_t i, best = 0;

  for (i = 0; i < ring->n; i++) {
    const char *name = ring->servers[i].name;
    uint64_t score = XXH3_64bits_withSeed (name, strlen (name), seed);

    if (i == 0 || score > best_score) {
      best = i;
      best_score = score;
    }
  }
  return best;
}

/* Parse one entry NAME (already split off the list) into S. */
static int
ring_parse_server (struct ring_server *s, const char *name)
{
  const char *colon, *host_start, *host_end;
  char *end;
  unsigned long port;

  if (name[0] == '/') {
    s->host = strdup (name);
    s->port = 0;
    goto done;
  }

  colon = strrchr (name, ':');
  if (colon == NULL || colon == name) {
    nbdkit_error ("memcache-servers: '%s': expected HOST:PORT, "
                  "[IPV6]:PORT or an absolute Unix socket path", name);
    return -1;
  }
  errno = 0;
  port = strtoul (colon + 1, &end, 10);
  if (colon[1] < '0' || colon[1] > '9' || *end != '\0' || errno != 0 ||
      port < 1 || port > 65535) {
    nbdkit_error ("memcache-servers: '%s': the port must be a number "
                  "from 1 to 65535", name);
    return -1;
  }

  host_start = name;
  host_end = colon;
  if (name[0] == '[') {
    if (colon[-1] != ']' || colon - name < 3) {
      nbdkit_error ("memcache-servers: '%s': expected [IPV6]:PORT", name);
      return -1;
    }
    host_start++;
    host_end--;
  }
  else if (memchr (name, ':', colon - name) != NULL) {
    nbdkit_error ("memcache-servers: '%s': write IPv6 addresses in "
                  "brackets: [ADDRESS]:PORT", name);
    return -1;
  }
  s->host = strndup (host_start, host_end - host_start);
  s->port = port;

 done:
  s->name = strdup (name);
  if (s->host == NULL || s->name == NULL) {
    nbdkit_error ("strdup: %m");
    return -1;
  }
  return 0;
}

int
ring_parse (struct ring *ring, const char *list, size_t max)
{
  const char *p = list;
  size_t i;

  ring->servers = NULL;
  ring->n = 0;

  for (;;) {
    size_t len = strcspn (p, ",");
    struct ring_server *servers;
    char *name;
    int r;

    if (len == 0) {
      nbdkit_error ("memcache-servers: empty entry in '%s'", list);
      goto err;
    }
    if (ring->n == max) {
      nbdkit_error ("memcache-servers: more than %zu servers", max);
      goto err;
    }
    name = strndup (p, len);
    if (name == NULL) {
      nbdkit_error ("strndup: %m");
      goto err;
    }
    for (i = 0; i < ring->n; i++) {
      if (strcmp (ring->servers[i].name, name) == 0) {
        nbdkit_error ("memcache-servers: '%s' is listed twice", name);
        free (name);
        goto err;
      }
    }
    servers = realloc (ring->servers, (ring->n + 1) * sizeof *servers);
    if (servers == NULL) {
      nbdkit_error ("realloc: %m");
      free (name);
      goto err;
    }
    ring->servers = servers;
    memset (&servers[ring->n], 0, sizeof servers[ring->n]);
    r = ring_parse_server (&servers[ring->n], name);
    ring->n++;
    free (name);
    if (r == -1)
      goto err;

    p += len;
    if (*p == '\0')
      break;
    p++;                        /* the comma */
  }
  return 0;

 err:
  ring_free (ring);
  return -1;
}

void
ring_free (struct ring *ring)
{
  size_t i;

  for (i = 0; i < ring->n; i++) {
    free (ring->servers[i].name);
    free (ring->servers[i].host);
  }
  free (ring->servers);
  ring->servers = NULL;
  ring->n = 0;
}
