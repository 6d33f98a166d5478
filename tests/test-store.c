/* SPDX-License-Identifier: BSD-3-Clause */
/* abd: unit test of the async filter's dirty store against a model.
 *
 * The lower device is two byte arrays: "volatile" (what lower writes
 * change) and "durable" (a copy of volatile taken at each lower flush), so
 * the test can check the flush promise exactly.  Real writer and flusher
 * threads run the store's writeback while one client thread issues random
 * writes, zeroes, trims, reads and flushes of random sizes and alignments,
 * and keeps the model: the bytes the device must hold.  Trimmed bytes are
 * unspecified and not compared until written again.
 *
 * Checked: every read equals the model; after every successful flush wait
 * the durable image equals the model; lower write errors make flush waits
 * fail with EIO until the errors stop; after draining, the lower device
 * equals the model and the store is empty.
 *
 * store_check verifies the store's invariants after every operation, and
 * every 500 operations the test breaks one on purpose (a byte counter, an
 * epoch count, two entries made to overlap, a slot given two owners, the
 * dirty list's length or order, the tree's colours and links) and
 * requires store_check to name it.
 *
 * Every other round keeps the store in a file (async-store-file): before
 * the drain the store is closed without writing back, as if the process
 * had died between two requests, and opened again from the file; every
 * byte read through the rebuilt store must still equal the model.
 *
 * With --extents, the requests are those that make data extents grow,
 * merge and split (whole blocks, streams, zeroes and trims across them,
 * on a 1 MiB device, writeback delayed in half the rounds so that
 * extents stay DIRTY), and the run must have done all three.
 *
 * Usage: test-store [--extents] [SEED [OPS]]
 */

#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "store.h"
#include "store-impl.h"         /* to break invariants on purpose */

#define NWRITERS 3

static uint64_t dev_size;
static unsigned char *lower_volatile, *lower_durable;
static unsigned char *model;            /* expected content */
static unsigned char *known;            /* 0 where trimmed (unspecified) */
static pthread_mutex_t lower_lock = PTHREAD_MUTEX_INITIALIZER;
static int fail_writes;        /* percent of lower writes failing (lower_lock) */
static unsigned lower_writes, lower_write_failures;

#include "unit-rand.h"

static uint64_t
rnd_below (uint64_t n)
{
  return n ? rnd () % n : 0;
}

/* The failure rate is set by the main thread while writers read it. */
static void
set_fail_writes (int percent)
{
  pthread_mutex_lock (&lower_lock);
  fail_writes = percent;
  pthread_mutex_unlock (&lower_lock);
}

/* Whether lower writes fail now or have ever failed. */
static bool
writes_failing (void)
{
  bool r;

  pthread_mutex_lock (&lower_lock);
  r = fail_writes > 0 || lower_write_failures > 0;
  pthread_mutex_unlock (&lower_lock);
  return r;
}

#define CHECK(cond, ...)                                        \
  do {                                                          \
    if (!(cond)) {                                              \
      fprintf (stderr, "test-store: FAIL at %s:%d: ", __FILE__, __LINE__); \
      fprintf (stderr, __VA_ARGS__);                            \
      fprintf (stderr, "\n");                                   \
      exit (1);                                                 \
    }                                                           \
  } while (0)

/* The client side's lower device. */
static int
io_read (void *opaque, void *buf, uint32_t count, uint64_t offset, int *err)
{
  CHECK (offset + count <= dev_size, "read past end");
  pthread_mutex_lock (&lower_lock);
  memcpy (buf, lower_volatile + offset, count);
  pthread_mutex_unlock (&lower_lock);
  return 0;
}

static int
io_write (void *opaque, const void *buf, uint32_t count, uint64_t offset,
          int *err)
{
  CHECK (offset + count <= dev_size, "write past end");
  pthread_mutex_lock (&lower_lock);
  memcpy (lower_volatile + offset, buf, count);
  pthread_mutex_unlock (&lower_lock);
  return 0;
}

static int
io_zero (void *opaque, uint32_t count, uint64_t offset, int *err)
{
  CHECK (offset + count <= dev_size, "zero past end");
  pthread_mutex_lock (&lower_lock);
  memset (lower_volatile + offset, 0, count);
  pthread_mutex_unlock (&lower_lock);
  return 0;
}

static int
io_trim (void *opaque, uint32_t count, uint64_t offset, int *err)
{
  return io_zero (opaque, count, offset, err);
}

static void
lower_flush (void)
{
  pthread_mutex_lock (&lower_lock);
  memcpy (lower_durable, lower_volatile, dev_size);
  pthread_mutex_unlock (&lower_lock);
}

static const struct store_io io = {
  .read = io_read, .write = io_write, .zero = io_zero, .trim = io_trim,
};

static struct store *store;
static uint32_t batch_blocks;

static void *
writer_thread (void *arg)
{
  char *buf = malloc ((size_t) batch_blocks * STORE_BLOCK_SIZE);
  unsigned seed = (uintptr_t) arg;
  struct store_batch b;

  while (store_pick_wait (store, &b, buf)) {
    bool ok;
    int err;

    CHECK (b.offset + b.len <= dev_size, "batch past end");
    if (rand_r (&seed) % 4 == 0)
      usleep (rand_r (&seed) % 300);    /* let clients race the write */
    pthread_mutex_lock (&lower_lock);
    lower_writes++;
    ok = (int) (rand_r (&seed) % 100) >= fail_writes;
    if (!ok)
      lower_write_failures++;
    pthread_mutex_unlock (&lower_lock);
    if (ok) {
      if (b.kind == STORE_DATA)
        io_write (NULL, b.buf, b.len, b.offset, &err);
      else
        io_zero (NULL, b.len, b.offset, &err);
    }
    store_complete (store, &b, ok);
  }
  free (buf);
  return NULL;
}

static void *
flusher_thread (void *arg)
{
  uint32_t ticket;

  while (store_flush_begin (store, &ticket)) {
    lower_flush ();
    store_flush_end (store, ticket, true);
  }
  return NULL;
}

/* The store's invariants hold after operation OP. */
static void
check_store (unsigned op)
{
  char why[256];

  CHECK (store_check (store, why, sizeof why) == 0,
         "op %u: store_check: %s", op, why);
}

/* With the lock held (the writers wait), break an invariant with CORRUPT,
 * require store_check to report it with a message containing WANT, and
 * undo it with RESTORE.
 */
#define EXPECT_CAUGHT(want, corrupt, restore)                           \
  do {                                                                  \
    char why_[256] = "";                                                \
    corrupt;                                                            \
    CHECK (store_check_locked (store, why_, sizeof why_) == -1,          \
           "store_check missed: %s", #corrupt);                         \
    CHECK (strstr (why_, want) != NULL,                                 \
           "store_check on %s said \"%s\", not \"%s\"", #corrupt, why_, \
           want);                                                       \
    restore;                                                            \
    caught++;                                                           \
  } while (0)

static unsigned caught;

/* Break each invariant store_check verifies, one at a time. */
static void
check_catches_broken_invariants (void)
{
  struct store *s = store;
  struct entry *last, *prev = NULL, *e, *a = NULL, *b = NULL;
  uint64_t blk;
  uint32_t slot;

  pthread_mutex_lock (&s->lock);
  EXPECT_CAUGHT ("accounting", s->st.dirty_bytes += 4096,
                 s->st.dirty_bytes -= 4096);
  EXPECT_CAUGHT ("accounting", s->failed_entries++, s->failed_entries--);
  EXPECT_CAUGHT ("epoch", s->epoch_count[s->epoch_cur % EPOCH_RING]++,
                 s->epoch_count[s->epoch_cur % EPOCH_RING]--);
  EXPECT_CAUGHT ("slot", s->free_slots--, s->free_slots++);
  last = tree_max (s);
  if (last)
    prev = tree_prev (s, last);
  if (prev) {
    blk = last->blk;
    EXPECT_CAUGHT ("overlaps", last->blk = entry_end (prev) - 1,
                   last->blk = blk);
  }
  /* Two data extents, B no longer than A: B made to share A's slots. */
  for (e = tree_min (s); e; e = tree_next (s, e)) {
    if (e->kind != STORE_DATA)
      continue;
    if (a == NULL)
      a = e;
    else if (entry_blocks (e) <= entry_blocks (a)) {
      b = e;
      break;
    }
  }
  if (b) {
    slot = b->slot;
    EXPECT_CAUGHT ("two owners", b->slot = a->slot, b->slot = slot);
  }
  if (s->ndirty > 0)
    EXPECT_CAUGHT ("dirty list", s->ndirty--, s->ndirty++);
  e = dirty_oldest (s);
  if (e && e->dirty_next != NO_ENTRY) {
    uint32_t ms = e->dirtied_ms;

    EXPECT_CAUGHT ("older than", e->dirtied_ms = ms + 1000000,
                   e->dirtied_ms = ms);
  }
  /* The tree's own rules: a red root; a red leaf made black (its black
   * height then differs from its sibling side's); a link to itself.
   */
  if (s->root != ENTRY_NIL) {
    e = &s->pool[s->root];
    EXPECT_CAUGHT ("root is red", e->red = 1, e->red = 0);
    for (e = tree_min (s); e; e = tree_next (s, e))
      if (e->red && e->left == ENTRY_NIL && e->right == ENTRY_NIL)
        break;
    if (e)
      EXPECT_CAUGHT ("black height", e->red = 0, e->red = 1);
    e = tree_max (s);
    EXPECT_CAUGHT ("reached twice", e->right = e - s->pool,
                   e->right = ENTRY_NIL);
  }
  pthread_mutex_unlock (&s->lock);
  check_store (0);
}

/* Compare IMAGE with the model where the model is known. */
static void
check_image (const unsigned char *image, const char *what, unsigned op)
{
  uint64_t i;

  for (i = 0; i < dev_size; i++)
    if (known[i] && image[i] != model[i])
      CHECK (false, "op %u: %s differs from model at byte %llu: %u != %u",
             op, what, (unsigned long long) i, image[i], model[i]);
}

/* --extents: requests that make extents grow, merge and split: whole
 * blocks mostly, streams that go on where the last write ended, and
 * zeroes and trims across them, on a small device.
 */
static bool extents;
static uint64_t stream_end;

static void
random_range (uint32_t *count, uint64_t *offset)
{
  uint64_t len;

  if (extents) {
    uint64_t nblocks = dev_size / STORE_BLOCK_SIZE;

    switch (rnd_below (8)) {
    case 0: case 1: case 2:                     /* a stream goes on */
      len = STORE_BLOCK_SIZE * (1 + rnd_below (4));
      *offset = stream_end + len <= dev_size ? stream_end : 0;
      break;
    case 3:                                     /* a byte or a few */
      len = 1 + rnd_below (3 * STORE_BLOCK_SIZE);
      *offset = rnd_below (dev_size - len + 1);
      break;
    default:                                    /* whole blocks */
      len = STORE_BLOCK_SIZE * (1 + rnd_below (24));
      *offset = STORE_BLOCK_SIZE * rnd_below (nblocks - len /
                                              STORE_BLOCK_SIZE + 1);
    }
    *count = len;
    stream_end = *offset + len;
    return;
  }

  switch (rnd_below (5)) {
  case 0: len = 1 + rnd_below (16); break;              /* tiny */
  case 1: len = STORE_BLOCK_SIZE; break;                /* one block */
  case 2: len = STORE_BLOCK_SIZE * (1 + rnd_below (8)); break;
  case 3: len = 1 + rnd_below (3 * STORE_BLOCK_SIZE); break;
  default: len = 1 + rnd_below (512 * 1024); break;     /* large */
  }
  if (len > dev_size)
    len = dev_size;
  *offset = rnd_below (dev_size - len + 1);
  if (rnd_below (3) == 0)                               /* aligned */
    *offset -= *offset % STORE_BLOCK_SIZE;
  if (rnd_below (10) == 0)                              /* the tail */
    *offset = dev_size - len;
  *count = len;
}

int
main (int argc, char *argv[])
{
  uint64_t seed;
  unsigned ops;
  unsigned round, nrounds;
  unsigned long flushes = 0, eio = 0;
  uint64_t extends = 0, merges = 0, splits = 0;

  if (argc > 1 && strcmp (argv[1], "--extents") == 0) {
    extents = true;
    argc--;
    argv++;
  }
#ifdef STORE_TEST_HOOKS
  /* test-store-merge-rule.sh: the store built with a broken merge rule. */
  if (getenv ("STORE_BREAK_MERGE")) {
    extern int store_test_break_merge;

    store_test_break_merge = atoi (getenv ("STORE_BREAK_MERGE"));
  }
#endif
  seed = argc > 1 ? strtoull (argv[1], NULL, 0) : 1;
  ops = argc > 2 ? strtoul (argv[2], NULL, 0) : 20000;
  nrounds = argc > 1 ? 1 : 6;

  char store_path[] = "/tmp/test-store.XXXXXX";
  int fd = mkstemp (store_path);

  CHECK (fd >= 0, "mkstemp: %m");
  close (fd);
  for (round = 0; round < nrounds; round++, seed++) {
    struct store_params p;
    pthread_t writers[NWRITERS], flusher;
    unsigned char *buf;
    char *errmsg;
    unsigned op, i;
    int err;

    memset (&p, 0, sizeof p);   /* durable and any later field: off */
    rng_state = seed * 0x9E3779B97F4A7C15ULL + 1;
    dev_size = (extents ? 1024 * 1024 : 2 * 1024 * 1024) +
      rnd_below (3 * STORE_BLOCK_SIZE);
    p.size = dev_size;
    p.nslots = STORE_MIN_SLOTS << rnd_below (6);      /* 64K .. 2M */
    p.lock_memory = false;
    p.batch_blocks = batch_blocks = 1 << rnd_below (7);
    p.delay_ms = rnd_below (2) ? 0 : rnd_below (20);
    /* Extents merge while they are DIRTY: keep them so a while. */
    if (extents && rnd_below (2))
      p.delay_ms = 100 + rnd_below (200);
    p.background_writes = rnd_below (NWRITERS + 1);     /* 0: no limit */
    p.retry_min_ms = 1;
    p.retry_max_ms = 20;
    p.store_file = round % 2 ? store_path : NULL;
    p.store_id = "test-store";
    /* Some rounds with a drain budget: its initial 64K budget makes
     * clients wait until the writers have measured a rate.
     */
    p.max_drain_s = rnd_below (3) == 0 ? 1 : 0;
    p.drain_initial_budget = 0;
    if (p.store_file)
      unlink (store_path);

    lower_volatile = malloc (dev_size);
    lower_durable = malloc (dev_size);
    model = malloc (dev_size);
    known = malloc (dev_size);
    buf = malloc (dev_size);
    for (i = 0; i < dev_size; i++)
      lower_volatile[i] = lower_durable[i] = model[i] = rnd ();
    memset (known, 1, dev_size);
    set_fail_writes (0);

    store = store_create (&p, &errmsg);
    CHECK (store, "store_create: %s", errmsg);
    for (i = 0; i < NWRITERS; i++)
      pthread_create (&writers[i], NULL, writer_thread,
                      (void *) (uintptr_t) (seed + i));
    pthread_create (&flusher, NULL, flusher_thread, NULL);

    for (op = 0; op < ops / nrounds; op++) {
      uint32_t count;
      uint64_t offset;
      bool admit = rnd_below (8) != 0;
      unsigned k = rnd_below (100);

      if (op % 2000 == 1000)
        set_fail_writes (rnd_below (2) ? 30 : 0);
      if (op % 2000 == 1500)
        set_fail_writes (0);
      random_range (&count, &offset);
      if (op % 500 == 250)
        check_catches_broken_invariants ();

      if (k < 40) {
        for (i = 0; i < count; i++)
          buf[i] = rnd ();
        CHECK (store_write (store, buf, count, offset, admit, &io, &err) == 0,
               "write failed: %d", err);
        memcpy (model + offset, buf, count);
        memset (known + offset, 1, count);
      }
      else if (k < 50) {
        CHECK (store_zero (store, count, offset, admit, &io, &err) == 0,
               "zero failed: %d", err);
        memset (model + offset, 0, count);
        memset (known + offset, 1, count);
      }
      else if (k < 55) {
        uint64_t b0 = (offset + STORE_BLOCK_SIZE - 1) / STORE_BLOCK_SIZE;
        uint64_t end = offset + count;
        uint64_t b1 = end == dev_size
          ? (dev_size + STORE_BLOCK_SIZE - 1) / STORE_BLOCK_SIZE
          : end / STORE_BLOCK_SIZE;

        CHECK (store_trim (store, count, offset, admit, &io, &err) == 0,
               "trim failed: %d", err);
        if (b0 < b1) {
          uint64_t from = b0 * STORE_BLOCK_SIZE;
          uint64_t to = b1 * STORE_BLOCK_SIZE < dev_size
            ? b1 * STORE_BLOCK_SIZE : dev_size;
          memset (known + from, 0, to - from);
        }
      }
      else if (k < 95) {
        CHECK (store_read (store, buf, count, offset, &io, &err) == 0,
               "read failed: %d", err);
        for (i = 0; i < count; i++)
          if (known[offset + i] && buf[i] != model[offset + i])
            CHECK (false, "op %u: read at %llu+%u: byte %u is %u, model %u",
                   op, (unsigned long long) offset, count, i, buf[i],
                   model[offset + i]);
      }
      else {
        /* A client's flush (no deadline: fails at once while data is
         * FAILED) or abdctl's (retries get until the deadline).
         */
        int timeout_ms = op & 1 ? -1 : 300;
        int r = store_flush_wait (store, timeout_ms, &err);

        if (r == 0) {
          /* The promise: everything acknowledged is durable.  Write-
           * through data becomes durable with the lower flush that a
           * caller does after the wait, as the filter does.
           */
          lower_flush ();
          check_image (lower_durable, "durable image after flush", op);
          flushes++;
        }
        else {
          CHECK (err == EIO || (err == ETIMEDOUT && timeout_ms >= 0),
                 "flush wait failed with %d", err);
          CHECK (err != EIO || writes_failing (),
                 "EIO without write failures");
          if (err == EIO)
            eio++;
        }
      }
      check_store (op);
    }
    check_catches_broken_invariants ();

    if (p.store_file) {
      /* Close without writing back, open again from the file. */
      store_stop (store);
      for (i = 0; i < NWRITERS; i++)
        pthread_join (writers[i], NULL);
      pthread_join (flusher, NULL);
      {
        struct store_stats st;

        store_get_stats (store, &st);
        extends += st.extends;
        merges += st.merges;
        splits += st.splits;
      }
      store_free (store);
      /* Now and then with a smaller write size (async-write-size
       * lowered between the two runs): extents longer than the new
       * batches are loaded in pieces, or a writer's copy overflows.
       */
      if (batch_blocks > 1 && rnd_below (2))
        p.batch_blocks = batch_blocks = 1 << rnd_below (ffs (batch_blocks) - 1);
      store = store_create (&p, &errmsg);
      CHECK (store, "store_create from the file: %s", errmsg);
      check_store (ops);
      CHECK (store_read (store, buf, dev_size, 0, &io, &err) == 0,
             "read after reopening failed: %d", err);
      for (i = 0; i < dev_size; i++)
        if (known[i] && buf[i] != model[i])
          CHECK (false, "after reopening: byte %u is %u, model %u",
                 i, buf[i], model[i]);
      for (i = 0; i < NWRITERS; i++)
        pthread_create (&writers[i], NULL, writer_thread,
                        (void *) (uintptr_t) (seed + i));
      pthread_create (&flusher, NULL, flusher_thread, NULL);
    }

    /* Drain: stop failures, wait for everything, compare. */
    set_fail_writes (0);
    store_set_draining (store, true);
    while (!store_is_empty (store))
      usleep (1000);
    store_stop (store);
    for (i = 0; i < NWRITERS; i++)
      pthread_join (writers[i], NULL);
    pthread_join (flusher, NULL);
    /* Write-through data is durable after the caller's lower flush, as
     * the filter flushes the lower device after draining.
     */
    check_image (lower_volatile, "lower image after drain", ops);
    check_store (ops);

    struct store_stats st;
    store_get_stats (store, &st);
    extends += st.extends;
    merges += st.merges;
    splits += st.splits;
    CHECK (st.dirty_bytes == 0 && st.dirty_entries == 0 &&
           st.dirty_data_bytes == 0 && st.failed_bytes == 0,
           "store not empty after drain: %llu bytes, %llu entries",
           (unsigned long long) st.dirty_bytes,
           (unsigned long long) st.dirty_entries);
    store_free (store);
    free (lower_volatile);
    free (lower_durable);
    free (model);
    free (known);
    free (buf);
  }
  unlink (store_path);
  CHECK (caught > 0, "no broken invariant was tried");
  /* The extents' own paths ran: blocks added in place, merges, splits. */
  CHECK (!extents || (extends > 0 && merges > 0 && splits > 0),
         "--extents: %llu extends, %llu merges, %llu splits",
         (unsigned long long) extends, (unsigned long long) merges,
         (unsigned long long) splits);
  printf ("test-store%s: %u rounds, %u ops each, %lu flushes checked, "
          "%lu EIO flushes, %u lower writes (%u failed), store_check after "
          "every op, %u broken invariants caught; extents: %llu blocks "
          "added in place, %llu merges, %llu splits\n",
          extents ? " --extents" : "", nrounds, ops / nrounds, flushes, eio,
          lower_writes, lower_write_failures, caught,
          (unsigned long long) extends, (unsigned long long) merges,
          (unsigned long long) splits);
  return 0;
}
