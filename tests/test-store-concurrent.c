/* SPDX-License-Identifier: BSD-3-Clause */
/* abd: the dirty store under many client threads rewriting, zeroing and
 * reading the same few dirty blocks while writer threads take them and a
 * flusher flushes: the store's client-path locking (store-impl.h,
 * "Locks") checked against a model of the last acknowledged value of
 * each block.
 *
 * Every block written holds one stamp (writer thread, sequence number)
 * repeated over its 4 KiB, or zeros, so a torn block (two writes mixed,
 * or a write mixed with a writer's copy) shows.  The blocks:
 * - owned: block b belongs to client thread b % NCLIENTS, which alone
 *   writes or zeroes it; its model (last[b]) is the last value the owner
 *   wrote and had acknowledged.  The owner reads it back at once and
 *   after each of its flushes requires the lower device's durable copy to
 *   be it (a flush covers every write acknowledged before it);
 * - shared: every client writes them (1 to 4 blocks a request), so no
 *   value is the last; every read of one must be whole (one stamp, or
 *   zeros), and a stamp of a thread that wrote it.
 * Other threads read owned blocks too: whole, and stamped by the owner.
 * At the end (after a flush and with the writers stopped) the lower
 * device holds exactly what the store reads, and the owned blocks their
 * models.
 *
 * Usage: test-store-concurrent [SECONDS [SEED]] (default 3 s).
 */

#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store.h"

#define UNIT_NAME "test-store-concurrent"
#include "unit-check.h"

#define NCLIENTS 8
#define NWRITERS 3
#define OWNED 64                /* blocks 0 .. OWNED-1 */
#define SHARED 32               /* blocks OWNED .. OWNED+SHARED-1 */
#define NBLOCKS (OWNED + SHARED)
#define BS STORE_BLOCK_SIZE

static const uint64_t dev_size = (uint64_t) NBLOCKS * BS;
static unsigned char *lower_volatile, *lower_durable;
static pthread_mutex_t lower_lock = PTHREAD_MUTEX_INITIALIZER;
static struct store *store;
static uint32_t batch_blocks = 8;
static volatile int stop_clients;
static unsigned failures;       /* atomically, from every thread */

#define FAIL(...)                                                       \
  do {                                                                  \
    __atomic_fetch_add (&failures, 1, __ATOMIC_RELAXED);                \
    fprintf (stderr, UNIT_NAME ": FAIL at %s:%d: ", __FILE__, __LINE__); \
    fprintf (stderr, __VA_ARGS__);                                      \
    fprintf (stderr, "\n");                                             \
  } while (0)

/* A stamp: the writing thread (1 .. NCLIENTS) and its sequence number;
 * 0 is a zeroed block.
 */
static uint64_t
stamp_of (unsigned thread, uint64_t seq)
{
  return (uint64_t) thread << 48 | seq;
}

static void
fill (unsigned char *p, uint64_t stamp)
{
  size_t i;

  for (i = 0; i < BS; i += 8)
    memcpy (p + i, &stamp, 8);
}

/* The stamp every 8 bytes of block P hold, or false if they differ. */
static bool
whole (const unsigned char *p, uint64_t *stamp)
{
  size_t i;

  memcpy (stamp, p, 8);
  for (i = 8; i < BS; i += 8)
    if (memcmp (p + i, stamp, 8) != 0)
      return false;
  return true;
}

static int
io_read (void *opaque, void *buf, uint32_t count, uint64_t offset, int *err)
{
  pthread_mutex_lock (&lower_lock);
  memcpy (buf, lower_volatile + offset, count);
  pthread_mutex_unlock (&lower_lock);
  return 0;
}

static int
io_write (void *opaque, const void *buf, uint32_t count, uint64_t offset,
          int *err)
{
  pthread_mutex_lock (&lower_lock);
  memcpy (lower_volatile + offset, buf, count);
  pthread_mutex_unlock (&lower_lock);
  return 0;
}

static int
io_zero (void *opaque, uint32_t count, uint64_t offset, int *err)
{
  pthread_mutex_lock (&lower_lock);
  memset (lower_volatile + offset, 0, count);
  pthread_mutex_unlock (&lower_lock);
  return 0;
}

static const struct store_io io = {
  .read = io_read, .write = io_write, .zero = io_zero, .trim = io_zero,
};

static void *
writer_thread (void *arg)
{
  char *buf = malloc ((size_t) batch_blocks * BS);
  unsigned seed = (uintptr_t) arg;
  struct store_batch b;
  int err;

  while (store_pick_wait (store, &b, buf)) {
    if (rand_r (&seed) % 4 == 0)
      usleep (rand_r (&seed) % 200);    /* let clients race the write */
    if (b.kind == STORE_DATA)
      io_write (NULL, b.buf, b.len, b.offset, &err);
    else
      io_zero (NULL, b.len, b.offset, &err);
    store_complete (store, &b, true);
  }
  free (buf);
  return NULL;
}

static void *
flusher_thread (void *arg)
{
  uint32_t ticket;

  while (store_flush_begin (store, &ticket)) {
    pthread_mutex_lock (&lower_lock);
    memcpy (lower_durable, lower_volatile, dev_size);
    pthread_mutex_unlock (&lower_lock);
    store_flush_end (store, ticket, true);
  }
  return NULL;
}

struct client {
  unsigned id;                  /* 1 .. NCLIENTS */
  unsigned seed;
  uint64_t seq;
  uint64_t last[OWNED];         /* the model of this client's blocks */
  unsigned long ops, reads, flushes;
};

/* Check a block read by client C: whole, and stamped by a thread that
 * may write it (its owner, for an owned block).
 */
static void
check_read (const struct client *c, uint64_t blk, const unsigned char *p)
{
  uint64_t stamp;
  unsigned by;

  if (!whole (p, &stamp)) {
    FAIL ("client %u: block %llu read torn", c->id,
          (unsigned long long) blk);
    return;
  }
  by = stamp >> 48;
  if (stamp != 0 && (by < 1 || by > NCLIENTS))
    FAIL ("client %u: block %llu holds a stamp nobody wrote: %llx", c->id,
          (unsigned long long) blk, (unsigned long long) stamp);
  if (blk < OWNED && stamp != 0 && by != blk % NCLIENTS + 1)
    FAIL ("client %u: owned block %llu holds thread %u's stamp", c->id,
          (unsigned long long) blk, by);
}

static void *
client_thread (void *arg)
{
  struct client *c = arg;
  unsigned char *buf = malloc (4 * BS);
  int err;

  while (!__atomic_load_n (&stop_clients, __ATOMIC_RELAXED)) {
    unsigned k = rand_r (&c->seed) % 100;
    uint64_t blk, stamp;

    c->ops++;
    if (k < 35) {               /* rewrite one of my blocks, read it back */
      blk = (rand_r (&c->seed) % (OWNED / NCLIENTS)) * NCLIENTS + c->id - 1;
      stamp = stamp_of (c->id, ++c->seq);
      fill (buf, stamp);
      if (store_write (store, buf, BS, blk * BS, true, &io, &err) == -1)
        FAIL ("client %u: write: %d", c->id, err);
      c->last[blk] = stamp;
      if (store_read (store, buf, BS, blk * BS, &io, &err) == -1)
        FAIL ("client %u: read: %d", c->id, err);
      else if (!whole (buf, &stamp) || stamp != c->last[blk])
        FAIL ("client %u: block %llu does not read back what was written",
              c->id, (unsigned long long) blk);
    }
    else if (k < 40) {          /* zero one of mine */
      blk = (rand_r (&c->seed) % (OWNED / NCLIENTS)) * NCLIENTS + c->id - 1;
      if (store_zero (store, BS, blk * BS, true, &io, &err) == -1)
        FAIL ("client %u: zero: %d", c->id, err);
      c->last[blk] = 0;
    }
    else if (k < 65) {          /* write 1 to 4 shared blocks */
      unsigned n = 1 + rand_r (&c->seed) % 4, i;

      blk = OWNED + rand_r (&c->seed) % (SHARED - n + 1);
      for (i = 0; i < n; i++)
        fill (buf + (size_t) i * BS, stamp_of (c->id, ++c->seq));
      if (store_write (store, buf, n * BS, blk * BS, true, &io, &err) == -1)
        FAIL ("client %u: write: %d", c->id, err);
    }
    else if (k < 99) {          /* read 1 to 4 blocks anywhere */
      unsigned n = 1 + rand_r (&c->seed) % 4, i;

      blk = rand_r (&c->seed) % (NBLOCKS - n + 1);
      c->reads++;
      if (store_read (store, buf, n * BS, blk * BS, &io, &err) == -1)
        FAIL ("client %u: read: %d", c->id, err);
      else
        for (i = 0; i < n; i++)
          check_read (c, blk + i, buf + (size_t) i * BS);
    }
    else {                      /* flush: my blocks are durable */
      uint64_t b;

      c->flushes++;
      if (store_flush_wait (store, -1, &err) == -1)
        FAIL ("client %u: flush: %d", c->id, err);
      pthread_mutex_lock (&lower_lock);
      for (b = c->id - 1; b < OWNED; b += NCLIENTS)
        if (!whole (lower_durable + b * BS, &stamp) || stamp != c->last[b])
          FAIL ("client %u: block %llu is not durable after a flush",
                c->id, (unsigned long long) b);
      pthread_mutex_unlock (&lower_lock);
    }
  }
  free (buf);
  return NULL;
}

int
main (int argc, char *argv[])
{
  unsigned seconds = argc > 1 ? atoi (argv[1]) : 3;
  unsigned seed = argc > 2 ? atoi (argv[2]) : time (NULL);
  pthread_t writers[NWRITERS], flusher, clients[NCLIENTS];
  static struct client cl[NCLIENTS];
  struct store_params p;
  unsigned char *buf = malloc (dev_size);
  unsigned long ops = 0, reads = 0, flushes = 0;
  char *errmsg = NULL, why[256];
  uint64_t b, stamp;
  unsigned i;
  int err;

  printf (UNIT_NAME ": seed %u, %u s\n", seed, seconds);
  memset (&p, 0, sizeof p);
  p.size = dev_size;
  p.nslots = STORE_MIN_SLOTS;
  p.batch_blocks = batch_blocks;
  p.delay_ms = 0;               /* writers take blocks as soon as they can */
  p.background_writes = 0;
  p.retry_min_ms = 1;
  p.retry_max_ms = 20;
  lower_volatile = calloc (1, dev_size);
  lower_durable = calloc (1, dev_size);
  store = store_create (&p, &errmsg);
  CHECK (store, "store_create: %s", errmsg);
  if (store == NULL)
    return unit_summary ();
  for (i = 0; i < NWRITERS; i++)
    pthread_create (&writers[i], NULL, writer_thread,
                    (void *) (uintptr_t) (seed + i));
  pthread_create (&flusher, NULL, flusher_thread, NULL);
  for (i = 0; i < NCLIENTS; i++) {
    cl[i].id = i + 1;
    cl[i].seed = seed * 31 + i;
    pthread_create (&clients[i], NULL, client_thread, &cl[i]);
  }
  sleep (seconds);
  __atomic_store_n (&stop_clients, 1, __ATOMIC_RELAXED);
  for (i = 0; i < NCLIENTS; i++) {
    pthread_join (clients[i], NULL);
    ops += cl[i].ops;
    reads += cl[i].reads;
    flushes += cl[i].flushes;
  }

  /* Everything acknowledged is on the lower device after a flush, and
   * it is what the store reads.
   */
  CHECK (store_flush_wait (store, -1, &err) == 0, "final flush: %d", err);
  CHECK (store_read (store, buf, dev_size, 0, &io, &err) == 0,
         "final read: %d", err);
  for (b = 0; b < OWNED; b++)
    CHECK (whole (buf + b * BS, &stamp) &&
           stamp == cl[b % NCLIENTS].last[b],
           "block %llu does not hold its last acknowledged value",
           (unsigned long long) b);
  for (b = OWNED; b < NBLOCKS; b++)
    CHECK (whole (buf + b * BS, &stamp), "shared block %llu torn",
           (unsigned long long) b);
  pthread_mutex_lock (&lower_lock);
  CHECK (memcmp (buf, lower_volatile, dev_size) == 0,
         "the lower device differs from what the store reads");
  CHECK (memcmp (buf, lower_durable, dev_size) == 0,
         "the durable lower device differs from what the store reads");
  pthread_mutex_unlock (&lower_lock);
  CHECK (store_check (store, why, sizeof why) == 0, "store_check: %s", why);

  store_stop (store);
  for (i = 0; i < NWRITERS; i++)
    pthread_join (writers[i], NULL);
  pthread_join (flusher, NULL);
  store_free (store);
  printf (UNIT_NAME ": %lu client operations (%lu reads, %lu flushes)\n",
          ops, reads, flushes);
  CHECK (failures == 0, "%u failures in the client threads", failures);
  free (buf);
  free (lower_volatile);
  free (lower_durable);
  return unit_summary ();
}
