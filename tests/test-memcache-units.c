/* SPDX-License-Identifier: BSD-3-Clause */
/* abd: unit test of the memcache filter's block placement (ring.c),
 * against what ring.c and nbdkit-memcache-filter(1) promise.
 *
 * Placement: ring_server_for_block is exactly the documented rendezvous
 * function (checked against an independent computation); it is pure; it
 * spreads blocks evenly (within +/-5% of 1/N); removing or adding a server
 * moves only the blocks of that server; since the score of a server
 * depends only on its name, the server (by name) of a block does not
 * depend on the order of the list; a tie goes to the first server;
 * different ids place blocks independently.  The server list parser
 * accepts the documented forms and refuses the rest.
 *
 * The running pool (pool.c): a snapshot over the table of slots, with
 * holes, places every block on the same server (by name) as the list of
 * its members; a server joining 3 takes about 1/4 of the blocks, all
 * from the others, and one leaving 4 gives up exactly its own (about
 * 1/4); a snapshot never changes while held, and a slot is given to a
 * new server only once no snapshot names it.
 *
 * Every check prints what it expected and what it saw when it fails; the
 * test goes on and exits 1 if any check failed.
 *
 * Usage: test-memcache-units
 */

#include <config.h>

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include <nbdkit-filter.h>

#include "pool.h"
#include "ring.h"

#define UNIT_NAME "test-memcache-units"
#include "unit-check.h"

#include "unit-rand.h"

/* ---- placement --------------------------------------------------------- */

#define NBLOCKS 100000

/* The placement function as nbdkit-memcache-filter(1) states it, computed
 * here without ring.c.
 */
static size_t
reference_server (const char * const *names, size_t n, const char *id,
                  uint64_t block)
{
  uint64_t id_hash = XXH3_64bits (id, strlen (id));
  uint64_t best_score = 0;
  size_t i, best = 0;

  for (i = 0; i < n; i++) {
    uint64_t score = XXH3_64bits_withSeed (names[i], strlen (names[i]),
                                           id_hash ^ block);

    if (i == 0 || score > best_score) {
      best = i;
      best_score = score;
    }
  }
  return best;
}

/* Parse LIST into RING (must succeed) and set the id. */
static void
make_ring (struct ring *ring, const char *list, const char *id)
{
  unit_last_error[0] = '\0';
  if (ring_parse (ring, list, 64) == -1) {
    fprintf (stderr, "test-memcache-units: FAIL: ring_parse (\"%s\"): %s\n",
             list, unit_last_error);
    exit (1);
  }
  ring->id_hash = ring_id_hash (id);
}

static const char *
server_name_for_block (const struct ring *ring, uint64_t block)
{
  return ring->servers[ring_server_for_block (ring, block)].name;
}

/* Count BLOCKS(i) for i < NBLOCKS over RING and check each server gets
 * 1/n of them, +/-5%.
 */
static void
check_uniform (const struct ring *ring, const char *what,
               uint64_t (*block_of) (uint64_t))
{
  unsigned counts[64] = { 0 };
  double expect = (double) NBLOCKS / ring->n;
  uint64_t i;
  size_t s;

  for (i = 0; i < NBLOCKS; i++) {
    s = ring_server_for_block (ring, block_of (i));
    if (s >= ring->n) {
      CHECK (s < ring->n, "%s: block %" PRIu64 ": server index %zu, "
             "expected < %zu", what, block_of (i), s, ring->n);
      return;
    }
    counts[s]++;
  }
  for (s = 0; s < ring->n; s++)
    CHECK (counts[s] >= 0.95 * expect && counts[s] <= 1.05 * expect,
           "%s: server %zu (%s) holds %u of %d blocks, expected %.0f "
           "+/-5%% (%.0f..%.0f)", what, s, ring->servers[s].name,
           counts[s], NBLOCKS, expect, 0.95 * expect, 1.05 * expect);
}

static uint64_t block_seq (uint64_t i) { return i; }
static uint64_t block_stride16 (uint64_t i) { return i * 16; }
static uint64_t block_high (uint64_t i) { return i << 32 | 7; }
static uint64_t block_random (uint64_t i) { (void) i; return rnd (); }

static const char *three =
  "127.0.0.1:11211,127.0.0.1:11212,127.0.0.1:11213";

static void
test_ring_function (void)
{
  const char *names[] = {
    "127.0.0.1:11211", "127.0.0.1:11212", "127.0.0.1:11213",
  };
  struct ring r, again;
  uint64_t b;
  unsigned mismatches = 0;

  make_ring (&r, three, "disk1");
  CHECK (r.id_hash == XXH3_64bits ("disk1", 5),
         "ring_id_hash (\"disk1\"): expected %016" PRIx64 ", got %016"
         PRIx64, XXH3_64bits ("disk1", 5), r.id_hash);

  /* Exactly the documented function. */
  for (b = 0; b < NBLOCKS; b++) {
    size_t want = reference_server (names, 3, "disk1", b);
    size_t got = ring_server_for_block (&r, b);

    if (got != want && mismatches++ < 5)
      CHECK (got == want, "block %" PRIu64 ": documented function gives "
             "server %zu, ring_server_for_block gave %zu", b, want, got);
  }
  CHECK (mismatches == 0, "%u of %d blocks placed differently from the "
         "documented function", mismatches, NBLOCKS);

  /* Pure: the same answer again, and from a ring parsed anew. */
  make_ring (&again, three, "disk1");
  mismatches = 0;
  for (b = 0; b < NBLOCKS; b++) {
    size_t first = ring_server_for_block (&r, b);

    if (ring_server_for_block (&r, b) != first ||
        ring_server_for_block (&again, b) != first)
      mismatches++;
  }
  CHECK (mismatches == 0, "%u of %d blocks changed server between two "
         "calls with the same inputs", mismatches, NBLOCKS);
  ring_free (&again);

  /* Spread: consecutive blocks, every 16th (64K-aligned), high bits only,
   * random block numbers.
   */
  check_uniform (&r, "3 servers, blocks 0..99999", block_seq);
  check_uniform (&r, "3 servers, every 16th block", block_stride16);
  check_uniform (&r, "3 servers, blocks differing in the high 32 bits",
                 block_high);
  check_uniform (&r, "3 servers, random blocks", block_random);
  ring_free (&r);

  make_ring (&r, "10.0.0.1:11211,10.0.0.2:11211", "disk1");
  check_uniform (&r, "2 servers", block_seq);
  ring_free (&r);
  make_ring (&r, "a:1,b:1,c:1,d:1,e:1", "x");
  check_uniform (&r, "5 servers", block_seq);
  ring_free (&r);

  /* One server: always it. */
  make_ring (&r, "127.0.0.1:11211", "disk1");
  mismatches = 0;
  for (b = 0; b < 1000; b++)
    if (ring_server_for_block (&r, b) != 0)
      mismatches++;
  CHECK (mismatches == 0, "one server: %u blocks placed elsewhere than "
         "server 0", mismatches);
  ring_free (&r);
}

/* Removing a server moves only its blocks; adding one moves blocks only
 * onto it.
 */
static void
test_ring_membership (void)
{
  struct ring full, less, more;
  unsigned moved_other = 0, moved_to_new = 0, moved_wrong = 0;
  unsigned orphans = 0, orphan_counts[2] = { 0, 0 };
  uint64_t b;

  make_ring (&full, three, "disk1");
  make_ring (&less, "127.0.0.1:11211,127.0.0.1:11213", "disk1");
  make_ring (&more, "127.0.0.1:11211,127.0.0.1:11212,127.0.0.1:11213,"
             "127.0.0.1:11214", "disk1");

  for (b = 0; b < NBLOCKS; b++) {
    const char *was = server_name_for_block (&full, b);
    const char *now = server_name_for_block (&less, b);
    const char *grown = server_name_for_block (&more, b);

    if (strcmp (was, "127.0.0.1:11212") == 0) {
      orphans++;
      orphan_counts[ring_server_for_block (&less, b)]++;
    }
    else if (strcmp (was, now) != 0)
      moved_other++;

    if (strcmp (was, grown) != 0) {
      if (strcmp (grown, "127.0.0.1:11214") == 0)
        moved_to_new++;
      else
        moved_wrong++;
    }
  }
  CHECK (moved_other == 0, "removing 127.0.0.1:11212 moved %u blocks of "
         "the other servers, expected 0", moved_other);
  /* The removed server's blocks go to the others about evenly. */
  CHECK (orphan_counts[0] >= 0.45 * orphans &&
         orphan_counts[0] <= 0.55 * orphans,
         "blocks of the removed server: %u to the first remaining server, "
         "%u to the second; expected about half each",
         orphan_counts[0], orphan_counts[1]);
  CHECK (moved_wrong == 0, "adding 127.0.0.1:11214 moved %u blocks between "
         "the old servers, expected 0", moved_wrong);
  CHECK (moved_to_new >= 0.95 * NBLOCKS / 4 &&
         moved_to_new <= 1.05 * NBLOCKS / 4,
         "adding a 4th server moved %u blocks onto it, expected %d +/-5%%",
         moved_to_new, NBLOCKS / 4);
  ring_free (&full);
  ring_free (&less);
  ring_free (&more);
}

/* A server's score depends only on its name (and id and block), so which
 * server -- by name -- holds a block does not depend on the list order.
 * The spelling is part of the name: a different spelling of the same
 * server is a different server.
 */
static void
test_ring_order (void)
{
  const char *orders[] = {
    "127.0.0.1:11211,127.0.0.1:11212,127.0.0.1:11213",
    "127.0.0.1:11211,127.0.0.1:11213,127.0.0.1:11212",
    "127.0.0.1:11212,127.0.0.1:11211,127.0.0.1:11213",
    "127.0.0.1:11212,127.0.0.1:11213,127.0.0.1:11211",
    "127.0.0.1:11213,127.0.0.1:11211,127.0.0.1:11212",
    "127.0.0.1:11213,127.0.0.1:11212,127.0.0.1:11211",
  };
  struct ring base, r, spelled;
  unsigned moved, index_changed = 0;
  uint64_t b;
  size_t o;

  make_ring (&base, orders[0], "disk1");
  for (o = 1; o < sizeof orders / sizeof orders[0]; o++) {
    make_ring (&r, orders[o], "disk1");
    moved = 0;
    for (b = 0; b < NBLOCKS; b++) {
      if (strcmp (server_name_for_block (&base, b),
                  server_name_for_block (&r, b)) != 0)
        moved++;
      if (ring_server_for_block (&base, b) != ring_server_for_block (&r, b))
        index_changed++;
    }
    CHECK (moved == 0, "list \"%s\": %u of %d blocks on a different server "
           "than with \"%s\", expected 0", orders[o], moved, NBLOCKS,
           orders[0]);
    ring_free (&r);
  }
  /* The index follows the list, so it must change with the order: this
   * shows the comparison above compared names, not indexes.
   */
  CHECK (index_changed > 0, "server indexes never changed with the order");

  make_ring (&spelled, "localhost:11211,127.0.0.1:11212,127.0.0.1:11213",
             "disk1");
  moved = 0;
  for (b = 0; b < NBLOCKS; b++)
    if (ring_server_for_block (&base, b) !=
        ring_server_for_block (&spelled, b))
      moved++;
  CHECK (moved >= 0.25 * NBLOCKS && moved <= 0.42 * NBLOCKS,
         "respelling 127.0.0.1:11211 as localhost:11211 moved %u of %d "
         "blocks, expected about a third of them (as for a new server)",
         moved, NBLOCKS);
  ring_free (&spelled);
  ring_free (&base);
}

/* On a tie the first server wins.  Parsing refuses duplicates, so the tie
 * is made with a hand-built ring of one name twice.
 */
static void
test_ring_tie (void)
{
  struct ring_server servers[3] = {
    { .name = (char *) "127.0.0.1:11211" },
    { .name = (char *) "127.0.0.1:11212" },
    { .name = (char *) "127.0.0.1:11211" },
  };
  struct ring r = { .servers = servers, .n = 3,
                    .id_hash = ring_id_hash ("disk1") };
  unsigned to_first = 0, to_dup = 0;
  uint64_t b;

  for (b = 0; b < 10000; b++) {
    size_t s = ring_server_for_block (&r, b);

    if (s == 0)
      to_first++;
    if (s == 2)
      to_dup++;
  }
  CHECK (to_dup == 0, "tie: %u blocks went to the second copy of a name, "
         "expected all to the first", to_dup);
  CHECK (to_first > 0, "tie: no block went to server 0");
}

/* Different ids place blocks independently: with 3 servers two ids agree
 * on about a third of the blocks, and each is uniform.
 */
static void
test_ring_ids (void)
{
  const char *ids[] = { "disk1", "disk2", "disk-42", "a" };
  struct ring r[4];
  size_t i, j;
  uint64_t b;

  for (i = 0; i < 4; i++) {
    char what[96];

    make_ring (&r[i], three, ids[i]);
    snprintf (what, sizeof what, "id \"%s\"", ids[i]);
    check_uniform (&r[i], what, block_seq);
  }
  for (i = 0; i < 4; i++) {
    for (j = i + 1; j < 4; j++) {
      unsigned same = 0;

      for (b = 0; b < NBLOCKS; b++)
        if (ring_server_for_block (&r[i], b) ==
            ring_server_for_block (&r[j], b))
          same++;
      CHECK (same >= 0.30 * NBLOCKS && same <= 0.37 * NBLOCKS,
             "ids \"%s\" and \"%s\" put %u of %d blocks on the same server, "
             "expected about a third (independent placement)",
             ids[i], ids[j], same, NBLOCKS);
    }
  }
  for (i = 0; i < 4; i++)
    ring_free (&r[i]);
}

/* The server list parser. */
static void
test_ring_parse (void)
{
  const char *bad[] = {
    "", ",", "127.0.0.1:11211,", ",127.0.0.1:11211",
    "127.0.0.1:11211,,127.0.0.1:11212",
    "127.0.0.1", "127.0.0.1:", ":11211", "127.0.0.1:0", "127.0.0.1:65536",
    "127.0.0.1:-1", "127.0.0.1:+1", "127.0.0.1:11211x", "127.0.0.1: 11211",
    "::1:11211", "[::1]", "[]:11211", "[::1:11211",
    "127.0.0.1:11211,127.0.0.1:11211",
  };
  struct ring r;
  size_t i;
  char list[64 * 20];

  for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    unit_last_error[0] = '\0';
    r.n = 99;
    CHECK (ring_parse (&r, bad[i], 64) == -1,
           "ring_parse (\"%s\"): expected -1 (refused), got 0 with %zu "
           "servers", bad[i], r.n);
    CHECK (unit_last_error[0] != '\0',
           "ring_parse (\"%s\"): refused without an nbdkit_error", bad[i]);
    CHECK (r.n == 0 && r.servers == NULL,
           "ring_parse (\"%s\"): after refusing, expected an empty ring, "
           "got %zu servers", bad[i], r.n);
  }

  make_ring (&r, "127.0.0.1:11211,[::1]:11212,/run/mc.sock,mc.example:1",
             "x");
  CHECK (r.n == 4, "parsed 4 servers: expected n = 4, got %zu", r.n);
  if (r.n == 4) {
    CHECK (strcmp (r.servers[0].host, "127.0.0.1") == 0 &&
           r.servers[0].port == 11211 &&
           strcmp (r.servers[0].name, "127.0.0.1:11211") == 0,
           "server 0: expected 127.0.0.1 port 11211, got %s port %u (%s)",
           r.servers[0].host, r.servers[0].port, r.servers[0].name);
    CHECK (strcmp (r.servers[1].host, "::1") == 0 &&
           r.servers[1].port == 11212 &&
           strcmp (r.servers[1].name, "[::1]:11212") == 0,
           "server 1: expected ::1 port 11212, got %s port %u (%s)",
           r.servers[1].host, r.servers[1].port, r.servers[1].name);
    CHECK (strcmp (r.servers[2].host, "/run/mc.sock") == 0 &&
           r.servers[2].port == 0,
           "server 2: expected the socket /run/mc.sock (port 0), "
           "got %s port %u", r.servers[2].host, r.servers[2].port);
    CHECK (strcmp (r.servers[3].host, "mc.example") == 0 &&
           r.servers[3].port == 1,
           "server 3: expected mc.example port 1, got %s port %u",
           r.servers[3].host, r.servers[3].port);
  }
  ring_free (&r);
  CHECK (r.n == 0 && r.servers == NULL, "ring_free left %zu servers", r.n);

  make_ring (&r, "h:65535", "x");
  CHECK (r.n == 1 && r.servers[0].port == 65535,
         "\"h:65535\": expected port 65535, got %u", r.servers[0].port);
  ring_free (&r);

  /* At most MAX servers. */
  list[0] = '\0';
  for (i = 0; i < 5; i++)
    snprintf (list + strlen (list), sizeof list - strlen (list),
              "%sh%zu:1", i ? "," : "", i);
  CHECK (ring_parse (&r, list, 5) == 0 && r.n == 5,
         "5 servers with max 5: expected accepted, got n = %zu", r.n);
  ring_free (&r);
  strcat (list, ",h5:1");
  CHECK (ring_parse (&r, list, 5) == -1,
         "6 servers with max 5: expected refused, got n = %zu", r.n);
}

/* ---- the running pool -------------------------------------------------- */

static struct ring_server
parsed_server (const char *name)
{
  struct ring_server s;

  if (ring_server_parse (&s, name, "test", NULL, 0) == -1) {
    fprintf (stderr, "test-memcache-units: FAIL: parse %s\n", name);
    exit (1);
  }
  return s;
}

/* Add NAME to the pool; returns its slot. */
static size_t
pool_add (const char *name)
{
  struct ring_server s = parsed_server (name);
  struct pool_change c;
  size_t slot = SIZE_MAX;

  pool_change_begin (&c);
  CHECK (pool_change_slot (&c, &s, &slot) == 0, "no free slot for %s", name);
  CHECK (pool_change_commit (&c, 0) == 0, "commit of %s failed", name);
  ring_server_clear (&s);
  return slot;
}

static void
pool_remove (const char *name)
{
  struct pool_change c;
  size_t slot;

  pool_change_begin (&c);
  CHECK (pool_member_slot (name, &slot), "%s is not a member", name);
  c.remove |= UINT64_C (1) << slot;
  CHECK (pool_change_commit (&c, 0) == 0, "commit of -%s failed", name);
}

/* Blocks placed differently (by name) by A and B, and whether every
 * such block went to (or came from) server ONLY.
 */
static unsigned
moved_blocks (const struct ring *a, const struct ring *b, const char *only,
              unsigned *others)
{
  unsigned moved = 0;
  uint64_t blk;

  *others = 0;
  for (blk = 0; blk < NBLOCKS; blk++) {
    const char *x = server_name_for_block (a, blk);
    const char *y = server_name_for_block (b, blk);

    if (strcmp (x, y) != 0) {
      moved++;
      if (strcmp (x, only) != 0 && strcmp (y, only) != 0)
        (*others)++;
    }
  }
  return moved;
}

static void
test_pool (void)
{
  struct ring initial, members;
  const struct ring *three_s, *four_s, *holes_s, *r;
  unsigned moved, others, mismatches = 0;
  size_t slot, slot2;
  uint64_t blk;

  make_ring (&initial, "127.0.0.1:11211,127.0.0.1:11212,127.0.0.1:11213",
             "disk1");
  CHECK (pool_init (&initial) == 0, "pool_init failed");
  three_s = pool_acquire ();
  CHECK (three_s->n == 3 && three_s->absent == 0,
         "initial snapshot: n %zu absent %" PRIx64, three_s->n,
         three_s->absent);

  /* A 4th joins 3: about 1/4 of the blocks move, all onto it. */
  slot = pool_add ("127.0.0.1:11214");
  CHECK (slot == 3, "the 4th server got slot %zu, expected 3", slot);
  four_s = pool_acquire ();
  moved = moved_blocks (three_s, four_s, "127.0.0.1:11214", &others);
  CHECK (others == 0, "adding a 4th moved %u blocks between the others",
         others);
  CHECK (moved >= 0.95 * NBLOCKS / 4 && moved <= 1.05 * NBLOCKS / 4,
         "adding a 4th server to 3 moved %u of %d blocks, expected 1/4 "
         "+/-5%%", moved, NBLOCKS);
  printf ("test-memcache-units: add a 4th to 3: %.4f of the blocks moved\n",
          (double) moved / NBLOCKS);

  /* The held snapshot did not change. */
  CHECK (three_s->n == 3 && three_s->absent == 0,
         "a held snapshot changed: n %zu", three_s->n);

  /* One of 4 leaves: exactly its own blocks move. */
  pool_remove ("127.0.0.1:11212");
  holes_s = pool_acquire ();
  CHECK (holes_s->n == 4 && holes_s->absent == 2,
         "after removing slot 1: n %zu absent %" PRIx64 ", expected 4, 2",
         holes_s->n, holes_s->absent);
  moved = moved_blocks (four_s, holes_s, "127.0.0.1:11212", &others);
  CHECK (others == 0, "removing one of 4 moved %u blocks of the others",
         others);
  CHECK (moved >= 0.95 * NBLOCKS / 4 && moved <= 1.05 * NBLOCKS / 4,
         "removing one of 4 moved %u of %d blocks, expected 1/4 +/-5%%",
         moved, NBLOCKS);
  printf ("test-memcache-units: remove one of 4: %.4f of the blocks "
          "moved\n", (double) moved / NBLOCKS);

  /* With a hole, placement is that of the members' list. */
  make_ring (&members, "127.0.0.1:11211,127.0.0.1:11213,127.0.0.1:11214",
             "disk1");
  for (blk = 0; blk < NBLOCKS; blk++)
    if (strcmp (server_name_for_block (holes_s, blk),
                server_name_for_block (&members, blk)) != 0)
      mismatches++;
  CHECK (mismatches == 0, "a snapshot with a hole placed %u blocks unlike "
         "the list of its members", mismatches);
  ring_free (&members);

  /* Slot 1 is still named by three_s and four_s: a new server must not
   * get it.
   */
  slot2 = pool_add ("127.0.0.1:11215");
  CHECK (slot2 != 1, "a new server got slot 1 while snapshots name it");
  CHECK (strcmp (three_s->servers[1].name, "127.0.0.1:11212") == 0,
         "slot 1 of a held snapshot was renamed to %s",
         three_s->servers[1].name);
  pool_remove ("127.0.0.1:11215");
  pool_release (three_s);
  pool_release (four_s);
  pool_release (holes_s);
  /* Now nothing names slot 1 (slot 4, of 11215, is named by no snapshot
   * either): the next server may have it.
   */
  slot2 = pool_add ("127.0.0.1:11216");
  CHECK (slot2 == 1, "once released, slot 1 was not reused (got %zu)",
         slot2);
  r = pool_acquire ();
  CHECK (strcmp (r->servers[1].name, "127.0.0.1:11216") == 0,
         "slot 1 holds %s", r->servers[1].name);
  pool_release (r);
  pool_free ();
}

int
main (void)
{
  test_ring_function ();
  test_ring_membership ();
  test_ring_order ();
  test_ring_tie ();
  test_ring_ids ();
  test_ring_parse ();
  test_pool ();

  return unit_summary ();
}
