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
 * Only members count (struct ring's absent): a snapshot of the running
 * pool (pool.c) is indexed by slot, and a slot may be empty.  Placement
 * depends on the names alone, not on slots or their order, so adding a
 * server moves exactly the blocks it wins (about 1/(n+1) of them) and
 * removing one moves exactly its own, each to its second choice.
 *
 * Invariant: a block is never placed anywhere else while its server is
 * down.  The caller sends such blocks to the lower device instead; moving
 * them to another server would leave copies that nobody invalidates.
 */

#include <config.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <xxhash.h>

#include <nbdkit-filter.h>

#include "ring.h"

uint64_t
ring_id_hash (const char *id)
{
  return XXH3_64bits (id, strlen (id));
}

/* The highest score among the servers of RING whose bit in ABSENT is 0. */
static size_t
ring_best (const struct ring *ring, uint64_t absent, uint64_t block)
{
  uint64_t seed = ring->id_hash ^ block;
  uint64_t best_score = 0;
  size_t i, best = 0;
  bool any = false;

  for (i = 0; i < ring->n; i++) {
    const char *name;
    uint64_t score;

    if (i < 64 && (absent >> i & 1))
      continue;
    name = ring->servers[i].name;
    score = XXH3_64bits_withSeed (name, strlen (name), seed);
    if (!any || score > best_score) {
      any = true;
      best = i;
      best_score = score;
    }
  }
  return best;
}

size_t
ring_server_for_block (const struct ring *ring, uint64_t block)
{
  return ring_best (ring, ring->absent, block);
}

size_t
ring_previous_server_for_block (const struct ring *ring, uint64_t block)
{
  struct timespec ts;

  if (!ring->warm)
    return SIZE_MAX;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  if (ts.tv_sec * INT64_C (1000000000) + ts.tv_nsec >= ring->warm_until_ns)
    return SIZE_MAX;
  return ring_best (ring, ring->prev_absent, block);
}

/* Report a bad entry: into WHY if given, else with nbdkit_error. */
static void __attribute__ ((format (printf, 3, 4)))
ring_bad (char *why, size_t why_len, const char *fmt, ...)
{
  va_list args;
  char msg[RING_WHY_MAX];

  va_start (args, fmt);
  vsnprintf (msg, sizeof msg, fmt, args);
  va_end (args);
  if (why)
    snprintf (why, why_len, "%s", msg);
  else
    nbdkit_error ("%s", msg);
}

int
ring_server_parse (struct ring_server *s, const char *name, const char *what,
                   char *why, size_t why_len)
{
  const char *colon, *host_start, *host_end;
  const unsigned char *p;
  char *end;
  unsigned long port;

  s->name = s->host = NULL;
  /* abdctl shows the names: a control byte could forge its lines; a
   * comma or a space could not be written back in memcache-servers.
   */
  for (p = (const unsigned char *) name; *p; p++)
    if (*p <= 0x20 || *p == 0x7f || *p == ',' || *p == '#') {
      ring_bad (why, why_len, "%s: '%s': byte 0x%02x at %zu is not "
                "allowed in a server address", what, name, *p,
                (size_t) (p - (const unsigned char *) name));
      return -1;
    }
  if (name[0] == '\0' || strlen (name) > RING_NAME_MAX) {
    ring_bad (why, why_len, "%s: '%s': a server address is 1 to %d bytes",
              what, name, RING_NAME_MAX);
    return -1;
  }
  if (name[0] == '/') {
    if (strlen (name) >= 108) {
      ring_bad (why, why_len, "%s: '%s': a Unix socket path is at most "
                "107 bytes", what, name);
      return -1;
    }
    s->host = strdup (name);
    s->port = 0;
    goto done;
  }

  colon = strrchr (name, ':');
  if (colon == NULL || colon == name) {
    ring_bad (why, why_len, "%s: '%s': expected HOST:PORT, "
              "[IPV6]:PORT or an absolute Unix socket path", what, name);
    return -1;
  }
  errno = 0;
  port = strtoul (colon + 1, &end, 10);
  if (colon[1] < '0' || colon[1] > '9' || *end != '\0' || errno != 0 ||
      port < 1 || port > 65535) {
    ring_bad (why, why_len, "%s: '%s': the port must be a number "
              "from 1 to 65535", what, name);
    return -1;
  }

  host_start = name;
  host_end = colon;
  if (name[0] == '[') {
    if (colon[-1] != ']' || colon - name < 3) {
      ring_bad (why, why_len, "%s: '%s': expected [IPV6]:PORT", what, name);
      return -1;
    }
    host_start++;
    host_end--;
  }
  else if (memchr (name, ':', colon - name) != NULL) {
    ring_bad (why, why_len, "%s: '%s': write IPv6 addresses in "
              "brackets: [ADDRESS]:PORT", what, name);
    return -1;
  }
  s->host = strndup (host_start, host_end - host_start);
  s->port = port;

 done:
  s->name = strdup (name);
  if (s->host == NULL || s->name == NULL) {
    ring_bad (why, why_len, "strdup: %m");
    ring_server_clear (s);
    return -1;
  }
  return 0;
}

void
ring_server_clear (struct ring_server *s)
{
  free (s->name);
  free (s->host);
  s->name = s->host = NULL;
  s->port = 0;
}

int
ring_parse_why (struct ring *ring, const char *list, size_t max, char *why,
                size_t why_len)
{
  const char *p = list;
  size_t i;

  ring->servers = NULL;
  ring->n = 0;
  ring->absent = 0;

  for (;;) {
    size_t len = strcspn (p, ",");
    struct ring_server *servers;
    char *name;
    int r;

    if (len == 0) {
      ring_bad (why, why_len, "memcache-servers: empty entry in '%s'", list);
      goto err;
    }
    if (ring->n == max) {
      ring_bad (why, why_len, "memcache-servers: more than %zu servers", max);
      goto err;
    }
    name = strndup (p, len);
    if (name == NULL) {
      ring_bad (why, why_len, "strndup: %m");
      goto err;
    }
    for (i = 0; i < ring->n; i++) {
      if (strcmp (ring->servers[i].name, name) == 0) {
        ring_bad (why, why_len, "memcache-servers: '%s' is listed twice", name);
        free (name);
        goto err;
      }
    }
    servers = realloc (ring->servers, (ring->n + 1) * sizeof *servers);
    if (servers == NULL) {
      ring_bad (why, why_len, "realloc: %m");
      free (name);
      goto err;
    }
    ring->servers = servers;
    memset (&servers[ring->n], 0, sizeof servers[ring->n]);
    r = ring_server_parse (&servers[ring->n], name, "memcache-servers",
                           why, why_len);
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

int
ring_parse (struct ring *ring, const char *list, size_t max)
{
  return ring_parse_why (ring, list, max, NULL, 0);
}

void
ring_free (struct ring *ring)
{
  size_t i;

  for (i = 0; i < ring->n; i++)
    ring_server_clear (&ring->servers[i]);
  free (ring->servers);
  ring->servers = NULL;
  ring->n = 0;
}
