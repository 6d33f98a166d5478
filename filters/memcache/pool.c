/* SPDX-License-Identifier: BSD-3-Clause */
/* nbdkit-memcache-filter: the running pool of servers and its snapshots.
 *
 * The pool can change while requests run (abdctl servers add, remove,
 * reload: servers.c).  Requests never see it change under them: each
 * takes the current membership at its start (pool_acquire), an
 * immutable snapshot published by pointer, places all its blocks with
 * it and gives it back at its end (pool_release).  A change builds a new
 * snapshot and swaps the pointer; the old one is freed when the last
 * request that holds it gives it back (RCU-like, with a reference count
 * instead of grace periods: one lock hold per request is nothing next to
 * a network round trip).  So a request in flight during a change
 * finishes on the membership it started with: its lookups, stores and
 * deletes go to the servers that membership placed its blocks on, even
 * a server just removed (whose connections stay open until then), and
 * its data is correct either way (the stale-data argument is in
 * servers.c).
 *
 * Warm moves.  A change may keep the membership before it in the new
 * snapshot (prev_absent, for WARM_NS nanoseconds): a block that misses
 * on its new server is then asked of its previous one (reader.c), which
 * is still reachable: a member still after an add, or a server removed
 * with a drain, whose slot the snapshot keeps (named) until it is
 * replaced.  The next change ends it: only one previous membership is
 * kept.
 *
 * Slots.  Every server is in one slot of a fixed table (POOL_SLOTS), and
 * the other modules index their per-server state by slot (health.c,
 * conn*.c, stats.c, filler.c).  A snapshot is a struct ring over the
 * table with the non-members masked (ring.h: absent).  The invariant
 * that makes this safe: a slot gets a new server only once no snapshot
 * names it (slot_users[i] == 0) and it is not a member.  Until then its
 * address, health and connections are those of its old server, for the
 * requests still using it.
 *
 * Locks: pool_lock protects current, every snapshot's refs and
 * slot_users; it is held only for counting, never across I/O.
 * change_lock makes changes one at a time (control requests run on
 * threads of their own); it is taken before pool_lock.
 */

#include <config.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nbdkit-filter.h>

#include "pool.h"

_Static_assert (POOL_SLOTS <= 64, "struct ring's absent is 64 bits");

struct snapshot {
  struct ring ring;             /* first: a ring * is a snapshot * */
  unsigned refs;                /* holders, the pool itself while current */
  uint64_t named;               /* members, and previous members while
                                   warm: the slots it keeps (slot_users) */
};

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t change_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ring_server slots[POOL_SLOTS];
static unsigned slot_users[POOL_SLOTS];
static struct snapshot *current;
static uint64_t changes;
static struct ring all = { .servers = slots, .n = POOL_SLOTS };

static uint64_t
pool_members_of (const struct ring *r)
{
  uint64_t members = 0;
  size_t i;

  for (i = 0; i < r->n; i++)
    if (ring_member (r, i))
      members |= UINT64_C (1) << i;
  return members;
}

/* A snapshot of the slots in MEMBERS, held once (by the pool); with
 * WARM_NS > 0, the slots in PREV are the previous members, asked for
 * the blocks that moved for that long (warm moves).  Called with
 * pool_lock held.
 */
static struct snapshot *
pool_snapshot_new (uint64_t members, uint64_t prev, int64_t warm_ns)
{
  struct snapshot *s = calloc (1, sizeof *s);
  uint64_t mask;
  size_t i;

  if (s == NULL) {
    nbdkit_error ("calloc: %m");
    return NULL;
  }
  if (warm_ns <= 0)
    prev = 0;
  s->named = members | prev;
  s->ring.servers = slots;
  s->ring.id_hash = all.id_hash;
  for (i = 0; i < POOL_SLOTS; i++)
    if (s->named >> i & 1) {
      s->ring.n = i + 1;
      slot_users[i]++;
    }
  mask = s->ring.n == 64 ? UINT64_MAX : (UINT64_C (1) << s->ring.n) - 1;
  s->ring.absent = ~members & mask;
  if (prev) {
    struct timespec ts;

    clock_gettime (CLOCK_MONOTONIC, &ts);
    s->ring.warm = true;
    s->ring.prev_absent = ~prev & mask;
    s->ring.warm_until_ns = ts.tv_sec * INT64_C (1000000000) + ts.tv_nsec
      + warm_ns;
  }
  s->refs = 1;
  return s;
}

/* Drop one hold of S; the last frees it.  Called with pool_lock held. */
static void
pool_snapshot_put (struct snapshot *s)
{
  size_t i;

  if (--s->refs > 0)
    return;
  for (i = 0; i < s->ring.n; i++)
    if (s->named >> i & 1)
      slot_users[i]--;
  free (s);
}

int
pool_init (struct ring *initial)
{
  uint64_t members = 0;
  size_t i;

  if (initial->n > POOL_SLOTS) {
    nbdkit_error ("memcache-servers: more than %d servers", POOL_SLOTS);
    return -1;
  }
  all.id_hash = initial->id_hash;
  for (i = 0; i < initial->n; i++) {
    slots[i] = initial->servers[i];
    members |= UINT64_C (1) << i;
  }
  free (initial->servers);
  initial->servers = NULL;
  initial->n = 0;
  pthread_mutex_lock (&pool_lock);
  current = pool_snapshot_new (members, 0, 0);
  pthread_mutex_unlock (&pool_lock);
  return current ? 0 : -1;
}

void
pool_free (void)
{
  size_t i;

  /* Every request is done: the pool's own hold is the last. */
  if (current)
    pool_snapshot_put (current);
  current = NULL;
  for (i = 0; i < POOL_SLOTS; i++)
    ring_server_clear (&slots[i]);
}

struct ring_server *
pool_slots (void)
{
  return slots;
}

const struct ring *
pool_all (void)
{
  return &all;
}

const struct ring *
pool_acquire (void)
{
  struct snapshot *s;

  pthread_mutex_lock (&pool_lock);
  s = current;
  s->refs++;
  pthread_mutex_unlock (&pool_lock);
  return &s->ring;
}

void
pool_release (const struct ring *snapshot)
{
  pthread_mutex_lock (&pool_lock);
  pool_snapshot_put ((struct snapshot *) snapshot);
  pthread_mutex_unlock (&pool_lock);
}

uint64_t
pool_named (const struct ring *snapshot)
{
  return ((const struct snapshot *) snapshot)->named;
}

uint64_t
pool_changes (void)
{
  uint64_t n;

  pthread_mutex_lock (&pool_lock);
  n = changes;
  pthread_mutex_unlock (&pool_lock);
  return n;
}

void
pool_change_begin (struct pool_change *c)
{
  pthread_mutex_lock (&change_lock);
  c->add = c->remove = 0;
}

bool
pool_member_slot (const char *name, size_t *slot)
{
  const struct ring *r = &current->ring;  /* only changes change it */
  size_t i;

  for (i = 0; i < r->n; i++)
    if (ring_member (r, i) && strcmp (slots[i].name, name) == 0) {
      *slot = i;
      return true;
    }
  return false;
}

int
pool_change_slot (struct pool_change *c, const struct ring_server *server,
                  size_t *slot)
{
  uint64_t members = pool_members_of (&current->ring);
  size_t i;
  int r = -1;

  pthread_mutex_lock (&pool_lock);
  for (i = 0; i < POOL_SLOTS; i++) {
    if (slot_users[i] > 0 || (members >> i & 1) || (c->add >> i & 1))
      continue;
    /* Free: no snapshot names it, so nothing reads its old entry. */
    ring_server_clear (&slots[i]);
    slots[i].name = strdup (server->name);
    slots[i].host = strdup (server->host);
    slots[i].port = server->port;
    if (slots[i].name == NULL || slots[i].host == NULL) {
      nbdkit_error ("strdup: %m");
      ring_server_clear (&slots[i]);
      break;
    }
    c->add |= UINT64_C (1) << i;
    *slot = i;
    r = 0;
    break;
  }
  pthread_mutex_unlock (&pool_lock);
  return r;
}

size_t
pool_change_members (const struct pool_change *c)
{
  uint64_t members = (pool_members_of (&current->ring) & ~c->remove)
    | c->add;

  return __builtin_popcountll (members);
}

int
pool_change_commit (struct pool_change *c, int64_t warm_ns)
{
  uint64_t before = pool_members_of (&current->ring);
  uint64_t members = (before & ~c->remove) | c->add;
  struct snapshot *s, *old;

  pthread_mutex_lock (&pool_lock);
  s = pool_snapshot_new (members, before, warm_ns);
  if (s == NULL) {
    pthread_mutex_unlock (&pool_lock);
    pool_change_abort (c);
    return -1;
  }
  old = current;
  current = s;
  if (c->add || c->remove)
    changes++;
  pool_snapshot_put (old);
  pthread_mutex_unlock (&pool_lock);
  pthread_mutex_unlock (&change_lock);
  return 0;
}

void
pool_change_abort (struct pool_change *c)
{
  size_t i;

  for (i = 0; i < POOL_SLOTS; i++)
    if (c->add >> i & 1)
      ring_server_clear (&slots[i]);
  c->add = c->remove = 0;
  pthread_mutex_unlock (&change_lock);
}
