/* SPDX-License-Identifier: BSD-3-Clause */
/* abd: the memcache filter's running pool (pool.c) under threads, for
 * ThreadSanitizer (tests/test-tsan.sh): six reader threads take
 * snapshots, place blocks with them and check that a held snapshot
 * never changes (its members, their names, the placement of a block)
 * while a changer thread adds and removes servers as fast as it can,
 * with and without warm moves.  A slot given to a new server while a
 * snapshot still names it would show as a renamed member; a snapshot
 * freed too early, as a use after free (TSan, or garbage).
 *
 * Usage: test-pool-threads ROUNDS
 */

#include <config.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"
#include "ring.h"

#define UNIT_NAME "test-pool-threads"
#include "unit-check.h"

#define READERS 6
#define NAMES 8

static const char *names[NAMES] = {
  "10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11211", "10.0.0.4:11211",
  "10.0.0.5:11211", "10.0.0.6:11211", "10.0.0.7:11211", "10.0.0.8:11211",
};

static unsigned rounds;
static bool stop;               /* atomics only */
static unsigned failures;       /* atomics only */

static void
fail (const char *what)
{
  if (__atomic_fetch_add (&failures, 1, __ATOMIC_RELAXED) < 10)
    fprintf (stderr, "test-pool-threads: FAIL: %s\n", what);
}

static void *
reader (void *arg)
{
  uintptr_t me = (uintptr_t) arg;
  uint64_t block = me * 1000;

  while (!__atomic_load_n (&stop, __ATOMIC_ACQUIRE)) {
    const struct ring *r = pool_acquire ();
    const char *seen[POOL_SLOTS];
    size_t i, s1, s2, n = r->n, members = 0;
    uint64_t absent = r->absent;

    for (i = 0; i < n; i++) {
      seen[i] = NULL;
      if (ring_member (r, i)) {
        seen[i] = r->servers[i].name;
        members++;
      }
    }
    if (members == 0)
      fail ("a snapshot without members");
    s1 = ring_server_for_block (r, block);
    if (!ring_member (r, s1))
      fail ("a block placed on a non-member");
    /* Give the changer time to act, then look again. */
    for (i = 0; i < 200; i++)
      __atomic_load_n (&stop, __ATOMIC_RELAXED);
    s2 = ring_server_for_block (r, block);
    if (s1 != s2 || r->n != n || r->absent != absent)
      fail ("a held snapshot changed");
    for (i = 0; i < n; i++)
      if (seen[i] && (r->servers[i].name != seen[i] ||
                      strcmp (r->servers[i].name, seen[i]) != 0))
        fail ("a member of a held snapshot was renamed");
    ring_previous_server_for_block (r, block);
    pool_release (r);
    block++;
  }
  return NULL;
}

static void
change (unsigned i, bool *in)
{
  struct pool_change c;
  size_t slot;
  size_t members = 0, j;

  for (j = 0; j < NAMES; j++)
    members += in[j];
  pool_change_begin (&c);
  if (!in[i]) {
    struct ring_server s;

    if (ring_server_parse (&s, names[i], "test", NULL, 0) == -1 ||
        pool_change_slot (&c, &s, &slot) == -1) {
      pool_change_abort (&c);
      ring_server_clear (&s);
      return;                   /* every free slot is held: next time */
    }
    ring_server_clear (&s);
    in[i] = true;
  }
  else if (members > 1 && pool_member_slot (names[i], &slot)) {
    c.remove |= UINT64_C (1) << slot;
    in[i] = false;
  }
  if (pool_change_commit (&c, (i & 1) ? INT64_C (1000000000) : 0) == -1)
    fail ("commit");
}

int
main (int argc, char *argv[])
{
  pthread_t threads[READERS];
  struct ring initial;
  bool in[NAMES] = { true, true, true };
  unsigned k;
  uintptr_t t;

  rounds = argc > 1 ? atoi (argv[1]) : 20000;
  if (ring_parse (&initial, "10.0.0.1:11211,10.0.0.2:11211,10.0.0.3:11211",
                  64) == -1 || pool_init (&initial) == -1) {
    fprintf (stderr, "test-pool-threads: setup failed\n");
    return 1;
  }
  for (t = 0; t < READERS; t++)
    pthread_create (&threads[t], NULL, reader, (void *) t);
  srand (1);
  for (k = 0; k < rounds; k++)
    change (rand () % NAMES, in);
  __atomic_store_n (&stop, true, __ATOMIC_RELEASE);
  for (t = 0; t < READERS; t++)
    pthread_join (threads[t], NULL);
  CHECK (failures == 0, "%u failures in the reader threads", failures);
  CHECK (pool_changes () > rounds / 4, "only %" PRIu64 " changes",
         pool_changes ());
  pool_free ();
  printf ("test-pool-threads: %u rounds, %" PRIu64 " changes\n", rounds,
          pool_changes ());
  return unit_summary ();
}
