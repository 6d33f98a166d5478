/* SPDX-License-Identifier: BSD-3-Clause */
/* nbdkit-memcache-filter: changing the pool while nbdkit runs.
 *
 * The control commands (memcache-control, abdctl servers ...):
 *
 *   servers              every member: address, state, share of the
 *                        blocks, hits, misses, hit ratio
 *   servers add NAME [--warm SECONDS]
 *                        NAME joins (it must answer a get first)
 *   servers remove NAME [--drain SECONDS]
 *                        NAME leaves (not the last member)
 *   servers reload [--drain SECONDS]
 *                        the pool becomes memcache-servers-file's list
 *
 * Warm moves: for --warm or --drain SECONDS after a change (by default
 * MEMCACHE_WARM_ADD_DEFAULT after a change that removes nothing, none
 * after one that does), a block that misses on its new server is asked
 * of the server that held it before the change (reader.c), and a value
 * that authenticates is served and copied to the new server by the fill
 * thread, under the version the read saw: never over a newer write
 * (filler.c drops it if the version moved, and a late copy does not
 * authenticate).  A removed server is drained this way while it runs.
 *
 * Each change is checked whole before anything changes (the address,
 * duplicates, MEMCACHE_SERVERS_MAX, at least one member left, a file
 * that reads and parses): a bad request is answered with an error and
 * the pool stays as it was.  Then a free slot is set up for each server
 * that joins (health_server_join: up, a generation never used before;
 * its counters and owed deletes cleared; with a key file, its marker
 * set to "in use", marker.h) and the new membership is published at
 * once (pool.c).  A server that leaves gets a new incarnation and its
 * idle connections are closed (those in use are closed as they are
 * given back).  Requests in flight finish on the membership they
 * started with; placement stays rendezvous hashing over the names
 * (ring.c), so a server that joins n others takes about 1/(n+1) of the
 * blocks and one that leaves gives up only its own.
 *
 * Why no change can make the cache serve a block older than the lower
 * device's (nbdkit-memcache-filter(1), "Stale-data safety"):
 *
 *   - A value is accepted only if it authenticates for its block's
 *     current version (writeseq.h).  Versions are kept per block, not
 *     per server, and every write raises them whatever server the block
 *     is on, down, leaving or not yet there.  So a block that moves to
 *     a server still holding a value of it from an earlier membership
 *     gets that value only if no write of the block came since, when it
 *     is still the lower device's data.
 *   - The one thing versions do not cover is a write too big to handle
 *     block by block (writer.c: mass invalidation), which raises the
 *     servers' generations instead.  A server outside the pool at that
 *     moment misses it; so a server that joins always gets a generation
 *     never handed out before (health.c), and nothing it holds from an
 *     earlier time in the pool, or from anyone, is ever asked for.
 *   - A write in flight during a change stores its blocks on the
 *     servers of its own snapshot, under the version it raised after
 *     its lower write; a read under the new snapshot that took the
 *     version before that raise looks for a value of the old version,
 *     which holds the data of before the write, still correct for a
 *     read that overlapped the write; one that took it after finds the
 *     write's value or misses.  Fills are dropped when the version
 *     moved (filler.c).  None of this depends on placement.
 *   - Hosts: every process draws its own epoch, and the keys and key
 *     names come from it (value.c), so two hosts never read each other's
 *     values, whichever membership each of them uses at any moment.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nbdkit-filter.h>

#include "conn.h"
#include "filler.h"
#include "health.h"
#include "log.h"
#include "marker.h"
#include "params.h"
#include "pool.h"
#include "ring.h"
#include "servers.h"
#include "startcheck.h"
#include "stats.h"

/* Blocks 0 .. SERVERS_SAMPLE-1 measure a server's share and the blocks
 * a change moves: placement hashes the block number, so consecutive
 * blocks are as good a sample as any.
 */
#define SERVERS_SAMPLE 16384

/* Set by servers_init (.after_fork), read-only afterwards. */
static struct servers_settings settings;

void
servers_init (const struct servers_settings *given)
{
  settings = *given;
}

int
servers_file_read (const char *path, char **list, char *why, size_t why_len)
{
  FILE *fp;
  char *line = NULL, *out = NULL;
  size_t cap = 0, len = 0, out_len = 0;
  ssize_t r;
  unsigned lineno = 0;

  fp = fopen (path, "r");
  if (fp == NULL) {
    snprintf (why, why_len, "memcache-servers-file=%s: %s", path,
              strerror (errno));
    return -1;
  }
  while ((r = getline (&line, &cap, fp)) != -1) {
    char *p = line, *end, *hash;
    char *grown;

    lineno++;
    hash = strchr (p, '#');
    if (hash)
      *hash = '\0';
    while (*p == ' ' || *p == '\t')
      p++;
    end = p + strlen (p);
    while (end > p && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\n'
                       || end[-1] == '\r'))
      *--end = '\0';
    if (*p == '\0')
      continue;
    len = end - p;
    if (strpbrk (p, " \t,") != NULL) {
      snprintf (why, why_len, "memcache-servers-file=%s: line %u: one "
                "server per line", path, lineno);
      goto err;
    }
    grown = realloc (out, out_len + len + 2);
    if (grown == NULL) {
      snprintf (why, why_len, "realloc: %s", strerror (errno));
      goto err;
    }
    out = grown;
    if (out_len > 0)
      out[out_len++] = ',';
    memcpy (out + out_len, p, len);
    out_len += len;
    out[out_len] = '\0';
  }
  if (ferror (fp)) {
    snprintf (why, why_len, "memcache-servers-file=%s: %s", path,
              strerror (errno));
    goto err;
  }
  if (out == NULL) {
    snprintf (why, why_len, "memcache-servers-file=%s: no server in it",
              path);
    goto err;
  }
  free (line);
  fclose (fp);
  *list = out;
  return 0;

 err:
  free (line);
  free (out);
  fclose (fp);
  return -1;
}

/* The share of the sample blocks that RING puts on each slot, into
 * COUNT (POOL_SLOTS entries).
 */
static void
servers_shares (const struct ring *ring, unsigned *count)
{
  uint64_t b;

  memset (count, 0, POOL_SLOTS * sizeof *count);
  for (b = 0; b < SERVERS_SAMPLE; b++)
    count[ring_server_for_block (ring, b)]++;
}

/* The share of the sample blocks placed differently by A and B. */
static double
servers_moved (const struct ring *a, const struct ring *b)
{
  unsigned moved = 0;
  uint64_t blk;

  for (blk = 0; blk < SERVERS_SAMPLE; blk++)
    if (ring_server_for_block (a, blk) != ring_server_for_block (b, blk))
      moved++;
  return (double) moved / SERVERS_SAMPLE;
}

static int
servers_list (struct ctl_reply *r)
{
  const struct ring *ring = pool_acquire ();
  unsigned count[POOL_SLOTS];
  size_t i, members = 0;

  servers_shares (ring, count);
  for (i = 0; i < ring->n; i++)
    if (ring_member (ring, i))
      members++;
  ctl_reply_u64 (r, "members", members);
  ctl_reply_u64 (r, "changes", pool_changes ());
  ctl_reply_str (r, "servers_file", settings.file ? settings.file : "");
  ctl_reply_begin (r, "servers");
  for (i = 0; i < ring->n; i++) {
    if (ring_member (ring, i))
      stats_reply_server_brief (r, ring, i,
                                (double) count[i] / SERVERS_SAMPLE);
  }
  ctl_reply_end (r);
  pool_release (ring);
  return 0;
}

/* The joining server in SLOT: fresh health, counters, owed deletes, and
 * its marker.
 */
static void
servers_join (size_t slot)
{
  health_server_join (slot);
  stats_server_join (slot);
  filler_server_join (slot);
  if (settings.markers) {
    struct ring one = { .servers = &pool_slots ()[slot], .n = 1 };

    if (marker_set_in_use (&one) != 1)
      nbdkit_debug ("memcache: server %s did not take the in-use marker",
                    one.servers[0].name);
  }
}

/* Publish C, warm for WARM seconds, and answer what it did, from BEFORE
 * (held) to the new pool.
 */
static int
servers_commit (struct ctl_reply *r, struct pool_change *c,
                const struct ring *before, const char *what, unsigned warm)
{
  const struct ring *after;
  uint64_t gone;
  size_t i, members = 0;

  for (i = 0; i < POOL_SLOTS; i++)
    if (c->add >> i & 1)
      servers_join (i);
  if (pool_change_commit (c, warm * INT64_C (1000000000)) == -1) {
    pool_release (before);
    ctl_reply_error (r, "%s: out of memory: nothing changed", what);
    return -1;
  }
  after = pool_acquire ();
  for (i = 0; i < after->n; i++)
    if (ring_member (after, i))
      members++;
  ctl_reply_u64 (r, "added", __builtin_popcountll (c->add));
  ctl_reply_u64 (r, "removed", __builtin_popcountll (c->remove));
  ctl_reply_u64 (r, "members", members);
  ctl_reply_double (r, "moved_share", servers_moved (before, after));
  ctl_reply_u64 (r, "warm_seconds", warm);
  /* Servers the pool no longer asks (left, or drained by an earlier
   * change): their connections go.  Requests in flight may still use
   * them, their snapshot keeps the slot.
   */
  gone = pool_named (before) & ~pool_named (after);
  for (i = 0; i < POOL_SLOTS; i++) {
    if (c->add >> i & 1)
      abd_log (LOG_NOTICE, "memcache", "server %s joined the pool",
               pool_slots ()[i].name);
    if (c->remove >> i & 1)
      abd_log (LOG_NOTICE, "memcache", "server %s left the pool%s",
               before->servers[i].name,
               warm ? ", drained while it answers" : "");
    if (gone >> i & 1) {
      health_server_leave (i);
      conn_forget (i);
    }
  }
  pool_release (after);
  pool_release (before);
  return 0;
}

static int
servers_add (struct ctl_reply *r, const char *name, unsigned warm)
{
  struct ring_server s;
  struct pool_change c;
  const struct ring *before;
  char why[RING_WHY_MAX];
  size_t slot;

  if (ring_server_parse (&s, name, "servers add", why, sizeof why) == -1) {
    ctl_reply_error (r, "%s: nothing changed", why);
    return -1;
  }
  /* Before the change lock: this may take a second. */
  if (!startcheck_server (&s, why, sizeof why)) {
    ctl_reply_error (r, "servers add: %s does not answer (%s): nothing "
                     "changed", name, why);
    ring_server_clear (&s);
    return -1;
  }
  pool_change_begin (&c);
  if (pool_member_slot (name, &slot)) {
    pool_change_abort (&c);
    ring_server_clear (&s);
    ctl_reply_error (r, "servers add: %s is in the pool already", name);
    return -1;
  }
  if (pool_change_members (&c) >= MEMCACHE_SERVERS_MAX ||
      pool_change_slot (&c, &s, &slot) == -1) {
    pool_change_abort (&c);
    ring_server_clear (&s);
    ctl_reply_error (r, "servers add: the pool holds %d servers at most "
                     "(or every free slot is still used by requests in "
                     "flight): nothing changed", MEMCACHE_SERVERS_MAX);
    return -1;
  }
  ring_server_clear (&s);
  before = pool_acquire ();
  return servers_commit (r, &c, before, "servers add", warm);
}

static int
servers_remove (struct ctl_reply *r, const char *name, unsigned drain)
{
  struct pool_change c;
  const struct ring *before;
  size_t slot;

  pool_change_begin (&c);
  if (!pool_member_slot (name, &slot)) {
    pool_change_abort (&c);
    ctl_reply_error (r, "servers remove: %s is not in the pool "
                     "(abdctl servers lists it)", name);
    return -1;
  }
  c.remove |= UINT64_C (1) << slot;
  if (pool_change_members (&c) == 0) {
    pool_change_abort (&c);
    ctl_reply_error (r, "servers remove: %s is the last server of the "
                     "pool: nothing changed", name);
    return -1;
  }
  before = pool_acquire ();
  return servers_commit (r, &c, before, "servers remove", drain);
}

static int
servers_reload (struct ctl_reply *r, int drain)
{
  struct ring wanted;
  struct pool_change c;
  const struct ring *before;
  char why[RING_WHY_MAX];
  char *list;
  size_t i, slot;

  if (settings.file == NULL) {
    ctl_reply_error (r, "servers reload: memcache-servers-file is not set");
    return -1;
  }
  if (servers_file_read (settings.file, &list, why, sizeof why) == -1) {
    ctl_reply_error (r, "servers reload: %s: nothing changed", why);
    return -1;
  }
  /* Parsed whole first: a bad line changes nothing. */
  if (ring_parse_why (&wanted, list, MEMCACHE_SERVERS_MAX, why,
                      sizeof why) == -1) {
    free (list);
    ctl_reply_error (r, "servers reload: %s: nothing changed", why);
    return -1;
  }
  free (list);

  pool_change_begin (&c);
  before = pool_acquire ();
  for (i = 0; i < before->n; i++) {
    size_t j;
    bool kept = false;

    if (!ring_member (before, i))
      continue;
    for (j = 0; j < wanted.n && !kept; j++)
      kept = strcmp (wanted.servers[j].name, before->servers[i].name) == 0;
    if (!kept)
      c.remove |= UINT64_C (1) << i;
  }
  for (i = 0; i < wanted.n; i++) {
    if (pool_member_slot (wanted.servers[i].name, &slot))
      continue;
    if (pool_change_slot (&c, &wanted.servers[i], &slot) == -1) {
      pool_change_abort (&c);
      pool_release (before);
      ring_free (&wanted);
      ctl_reply_error (r, "servers reload: no free slot (the slots of "
                       "servers removed are still used by requests in "
                       "flight): try again; nothing changed");
      return -1;
    }
  }
  ring_free (&wanted);
  return servers_commit (r, &c, before, "servers reload",
                        drain >= 0 ? (unsigned) drain
                        : c.remove ? 0 : MEMCACHE_WARM_ADD_DEFAULT);
}

/* The option OPT SECONDS at ARGV[I], if ARGC leaves room for it: *OUT.
 * Returns 1 if there, 0 if not, -1 if malformed.
 */
static int
servers_option (int argc, char **argv, int i, const char *opt, int *out)
{
  unsigned v;

  if (argc == i)
    return 0;
  if (argc != i + 2 || strcmp (argv[i], opt) != 0 ||
      ctl_parse_uint (argv[i + 1], MEMCACHE_WARM_MAX, &v) == -1)
    return -1;
  *out = v;
  return 1;
}

int
servers_control (int argc, char **argv, struct ctl_reply *reply)
{
  int secs = -1;

  if (argc == 1)
    return servers_list (reply);
  if (argc >= 3 && strcmp (argv[1], "add") == 0 &&
      servers_option (argc, argv, 3, "--warm", &secs) >= 0)
    return servers_add (reply, argv[2],
                        secs >= 0 ? secs : MEMCACHE_WARM_ADD_DEFAULT);
  if (argc >= 3 && strcmp (argv[1], "remove") == 0 &&
      servers_option (argc, argv, 3, "--drain", &secs) >= 0)
    return servers_remove (reply, argv[2], secs >= 0 ? secs : 0);
  if (argc >= 2 && strcmp (argv[1], "reload") == 0 &&
      servers_option (argc, argv, 2, "--drain", &secs) >= 0)
    return servers_reload (reply, secs);
  ctl_reply_error (reply, "usage: servers [add HOST:PORT [--warm SECONDS] | "
                   "remove HOST:PORT [--drain SECONDS] | reload [--drain "
                   "SECONDS]] (SECONDS up to %d)", MEMCACHE_WARM_MAX);
  return -1;
}
