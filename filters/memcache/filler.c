/* SPDX-License-Identifier: BSD-3-Clause */
/* nbdkit-memcache-filter: fills stored in the background.
 *
 * A read that missed returns as soon as the lower device answered; the
 * blocks it read are copied into this queue, and one thread (started in
 * .after_fork, stopped in .cleanup) stores them: it takes up to
 * FILLER_BATCH_BYTES of queued blocks at a time, seals them (value.c),
 * and sends each server its share as one batch (with the meta protocol,
 * quiet "ms" commands and an "mn" in one writev; all servers at once).
 *
 * The queue is bounded (FILLER_QUEUE_BYTES of block data): when it is
 * full, a fill is dropped and counted (fills_dropped), the read never
 * waits.  It is large because a reader that streams (a copy, a scan) is
 * much faster than the fills; its memory is touched only as deep as the
 * queue ever gets: the data slots are handed out from a stack, most
 * recently freed first.  A queued fill never lands after a later write of its block:
 *
 *   - just before it is sent, a fill is dropped (fills_raced) if a write
 *     of the block began since the read (writeseq_fill_still_valid), if
 *     the block's version changed, or if the server's generation did;
 *   - and if a write comes between that check and the store, the value
 *     is sealed under the version the read saw, which that write raises
 *     after its lower write: the value never authenticates afterwards
 *     (writeseq.h).  So a fill that lands late is never read.
 *
 * A server's share of a batch that fails (a timeout, a broken connection)
 * is sent once more on a new connection if the server is still up or
 * suspect (a busy server is not a reason to lose its fills), then
 * dropped; the server is not marked down for it: no client waited for
 * it, and a server that is really slow or gone is noticed by the reads,
 * which then skip it.  Fills are sent only to servers that are up or
 * suspect (conn_open_background): never to one that is down, never as a probe.
 *
 * The thread also sends the deletes owed to servers that writes skipped
 * (filler_forget): a write of a block whose server is down raises the
 * block's version, so the value the server still holds never
 * authenticates again; left there, it would cost the next read an
 * authentication failure (counted as if it were an attack) and the
 * server its memory.  Once the server is usable again those keys are
 * deleted ("md ... q"), before the fills queued after them, so the next
 * read of such a block is a plain miss (and a fill).  The list is bounded
 * (FILLER_FORGET_MAX blocks per server): past that, the server's
 * generation changes instead (health_invalidate), which makes every key
 * it holds for this device dead at once.  Deletes still owed when nbdkit
 * stops are not sent: those values only fail to authenticate later.
 *
 * Servers are slots of the pool (pool.h), which can change: each batch
 * (of fills or of owed deletes) is sent under a snapshot of the pool
 * held from start to end, and a fill or delete for a slot that is not
 * a member of it is dropped: its server left the pool (or the slot went
 * to another server, whose generation is new: health_server_join).
 *
 * Locking: filler_lock protects everything below it, the forget lists
 * included.  The entries the
 * thread is sending (the first `count` from `head`, of which it took the
 * first `taken`) are only read by it until it gives them back under the
 * lock; readers append after the last queued one.
 */

#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nbdkit-filter.h>

#include "conn.h"
#include "filler.h"
#include "health.h"
#include "pool.h"
#include "stats.h"
#include "value.h"
#include "writeseq.h"

#define FILLER_QUEUE_BYTES (64 * 1024 * 1024)
#define FILLER_BATCH_BYTES (512 * 1024)
#define FILLER_MIN_ENTRIES 4    /* for the largest block sizes */
#define FILLER_TRIES 2          /* sends of a server's share of a batch */
#define FILLER_FORGET_MAX 65536 /* deletes owed, per server */
/* While deletes are owed to a server that is not usable, the thread looks
 * again this often.
 */
#define FILLER_FORGET_POLL_MS 50

struct filler_entry {
  struct filler_block b;
  uint32_t len;
  size_t slot;                  /* its data: entry_data + slot x bs */
};

/* Set by filler_init, and the epoch by filler_start before the thread
 * starts; read-only afterwards.
 */
static const struct ring *ring;
static struct filler_settings settings;
static uint64_t epoch;

static pthread_mutex_t filler_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t filler_work = PTHREAD_COND_INITIALIZER;
static struct filler_entry *entries;    /* capacity, a ring */
static unsigned char *entry_data;       /* capacity x block_size */
static size_t *free_slots;              /* capacity - count free slots */
static size_t capacity, head, count;
static bool running, stopping;
static pthread_t thread;

/* Deletes owed to each server (ring->n lists), in the order the writes
 * skipped it: a block and the generation its old value is keyed under.
 * Allocated on first use.
 */
struct filler_forget {
  uint64_t block;
  uint64_t generation;
};
static struct filler_forget **forgets;
static size_t *nr_forgets;
static size_t forgets_total;

/* The thread's own: one batch being sent, set up by filler_init. */
static size_t batch_max;
static struct {
  const struct ring *members;           /* the pool while it is sent */
  struct conn_mutation *mutations;      /* batch_max, grouped by server */
  unsigned char *values;                /* batch_max sealed values */
  char (*keys)[VALUE_KEY_MAX];          /* batch_max */
  size_t *key_lens;                     /* batch_max */
  size_t *server_of;                    /* batch_max: entry -> server */
  bool *sealed;                         /* batch_max: entry goes out */
  struct conn_session *sessions;        /* ring->n */
  bool *tried, *open;                   /* ring->n */
  size_t *first, *nr;                   /* ring->n: its mutations */
} batch;

/* Empty the queue: every slot free, slot 0 on top.  Called with
 * filler_lock held, or before the thread starts.
 */
static void
filler_empty (void)
{
  size_t i;

  head = count = 0;
  for (i = 0; i < capacity; i++)
    free_slots[i] = capacity - 1 - i;
}

int
filler_init (const struct ring *r, const struct filler_settings *given)
{
  const size_t bs = given->block_size;

  ring = r;
  settings = *given;
  capacity = FILLER_QUEUE_BYTES / bs;
  if (capacity < FILLER_MIN_ENTRIES)
    capacity = FILLER_MIN_ENTRIES;
  batch_max = FILLER_BATCH_BYTES / bs;
  if (batch_max < 1)
    batch_max = 1;
  /* The ring is touched page by page as it is used. */
  entries = calloc (capacity, sizeof *entries);
  entry_data = malloc (capacity * bs);
  free_slots = malloc (capacity * sizeof *free_slots);
  batch.mutations = calloc (batch_max, sizeof *batch.mutations);
  batch.values = malloc (batch_max * (VALUE_OVERHEAD + bs));
  batch.keys = calloc (batch_max, sizeof *batch.keys);
  batch.key_lens = calloc (batch_max, sizeof *batch.key_lens);
  batch.server_of = calloc (batch_max, sizeof *batch.server_of);
  batch.sealed = calloc (batch_max, sizeof *batch.sealed);
  batch.sessions = calloc (ring->n, sizeof *batch.sessions);
  batch.tried = calloc (ring->n, sizeof *batch.tried);
  batch.open = calloc (ring->n, sizeof *batch.open);
  batch.first = calloc (ring->n, sizeof *batch.first);
  batch.nr = calloc (ring->n, sizeof *batch.nr);
  forgets = calloc (ring->n, sizeof *forgets);
  nr_forgets = calloc (ring->n, sizeof *nr_forgets);
  if (forgets == NULL || nr_forgets == NULL ||
      entries == NULL || entry_data == NULL || free_slots == NULL ||
      batch.mutations == NULL ||
      batch.values == NULL || batch.keys == NULL || batch.key_lens == NULL ||
      batch.server_of == NULL || batch.sealed == NULL ||
      batch.sessions == NULL || batch.tried == NULL || batch.open == NULL ||
      batch.first == NULL || batch.nr == NULL) {
    nbdkit_error ("memcache: the fill queue: %m");
    filler_free ();
    return -1;
  }
  filler_empty ();
  return 0;
}

void
filler_free (void)
{
  size_t i;

  if (forgets) {
    for (i = 0; i < ring->n; i++)
      free (forgets[i]);
  }
  free (forgets);
  free (nr_forgets);
  forgets = NULL;
  nr_forgets = NULL;
  forgets_total = 0;
  free (entries);
  free (entry_data);
  free (free_slots);
  free (batch.mutations);
  free (batch.values);
  free (batch.keys);
  free (batch.key_lens);
  free (batch.server_of);
  free (batch.sealed);
  free (batch.sessions);
  free (batch.tried);
  free (batch.open);
  free (batch.first);
  free (batch.nr);
  memset (&batch, 0, sizeof batch);
  entries = NULL;
  entry_data = NULL;
  free_slots = NULL;
  capacity = head = count = 0;
}

void
filler_queue (const struct filler_block *b, const void *data, uint32_t len)
{
  size_t i;

  pthread_mutex_lock (&filler_lock);
  if (!running || count == capacity) {
    pthread_mutex_unlock (&filler_lock);
    stats_add (stats.fills_dropped, 1);
    return;
  }
  i = (head + count) % capacity;
  entries[i].b = *b;
  entries[i].len = len;
  entries[i].slot = free_slots[capacity - count - 1];
  memcpy (entry_data + entries[i].slot * settings.block_size, data, len);
  if (count++ == 0)
    pthread_cond_signal (&filler_work);
  pthread_mutex_unlock (&filler_lock);
}

uint64_t
filler_queued (void)
{
  uint64_t n;

  pthread_mutex_lock (&filler_lock);
  n = count;
  pthread_mutex_unlock (&filler_lock);
  return n;
}

/* May entry E still be stored, and on which session?  Opens the
 * session of its server on first use.
 */
static struct conn_session *
filler_session_for (const struct filler_entry *e)
{
  const struct filler_block *b = &e->b;
  struct conn_session *s = &batch.sessions[b->server];

  if (!ring_member (batch.members, b->server) ||
      writeseq_version (b->block) != b->version ||
      !writeseq_fill_still_valid (b->block, b->seq)) {
    stats_add (stats.fills_raced, 1);
    return NULL;
  }
  if (!batch.tried[b->server]) {
    /* Never the probe of a server that is down: reads probe it. */
    batch.tried[b->server] = true;
    batch.open[b->server] = conn_open_background (s, b->server);
  }
  if (!batch.open[b->server])
    return NULL;                /* down: its blocks are not looked up */
  if (s->gen != b->generation) {
    stats_add (stats.fills_raced, 1);
    return NULL;
  }
  return s;
}

/* Collect server I's share of the batch sent; if it failed while the
 * server is still usable, send it again on a new connection, up to TRIES
 * sends in all.  True if the server answered.
 */
static bool
filler_finish (size_t i, unsigned tries)
{
  struct conn_session *s = &batch.sessions[i];
  uint64_t gen = s->gen;

  while (conn_mutate_finish (s) != CONN_OK) {
    conn_close (s);
    batch.open[i] = false;
    if (--tries == 0 || !conn_open_background (s, i))
      return false;
    batch.open[i] = true;
    /* The values are keyed and sealed under GEN. */
    if (s->gen != gen)
      return false;
    if (conn_mutate_send (s, &batch.mutations[batch.first[i]], batch.nr[i],
                          settings.ttl) != CONN_OK)
      continue;
  }
  return true;
}

/* Store the N entries from FIRST: check and seal each, then one batch
 * per server, all servers at once.
 */
static void
filler_send (size_t first, size_t n)
{
  const size_t bs = settings.block_size;
  size_t j, i, pos;

  batch.members = pool_acquire ();
  memset (batch.tried, 0, ring->n * sizeof *batch.tried);
  memset (batch.nr, 0, ring->n * sizeof *batch.nr);
  for (j = 0; j < n; j++) {
    size_t e_idx = (first + j) % capacity;
    const struct filler_entry *e = &entries[e_idx];
    struct value_ident ident = {
      .id_hash = ring->id_hash,
      .epoch = epoch,
      .generation = e->b.generation,
      .block = e->b.block,
      .version = e->b.version,
    };

    batch.sealed[j] = false;
    batch.server_of[j] = e->b.server;
    if (filler_session_for (e) == NULL)
      continue;
    if (value_seal (batch.values + j * (VALUE_OVERHEAD + bs), &ident,
                    entry_data + e->slot * bs, e->len) == -1) {
      stats_add (stats.fill_errors, 1);
      continue;
    }
    batch.key_lens[j] = value_key (batch.keys[j], &ident);
    batch.sealed[j] = true;
    batch.nr[e->b.server]++;
  }

  /* Group the mutations by server. */
  pos = 0;
  for (i = 0; i < ring->n; i++) {
    batch.first[i] = pos;
    pos += batch.nr[i];
    batch.nr[i] = 0;
  }
  for (j = 0; j < n; j++) {
    struct conn_mutation *m;

    if (!batch.sealed[j])
      continue;
    i = batch.server_of[j];
    m = &batch.mutations[batch.first[i] + batch.nr[i]++];
    m->key = batch.keys[j];
    m->key_len = batch.key_lens[j];
    m->value = batch.values + j * (VALUE_OVERHEAD + bs);
    m->value_len = VALUE_OVERHEAD + entries[(first + j) % capacity].len;
  }

  for (i = 0; i < ring->n; i++)
    if (batch.nr[i] > 0)
      conn_mutate_send (&batch.sessions[i], &batch.mutations[batch.first[i]],
                        batch.nr[i], settings.ttl);
  for (i = 0; i < ring->n; i++) {
    if (batch.nr[i] > 0 && filler_finish (i, FILLER_TRIES)) {
      for (j = batch.first[i]; j < batch.first[i] + batch.nr[i]; j++) {
        if (batch.mutations[j].refused)
          stats_add (stats.fill_errors, 1);
        else
          stats_add (stats.fills, 1);
      }
    }
    if (batch.tried[i] && batch.open[i])
      conn_close (&batch.sessions[i]);
  }
  pool_release (batch.members);
  batch.members = NULL;
}

/* Owe server I a delete of BLOCK's key under GENERATION.  Called with
 * filler_lock held.
 */
static void
filler_forget_locked (size_t i, uint64_t block, uint64_t generation)
{
  if (forgets[i] == NULL)
    forgets[i] = malloc (FILLER_FORGET_MAX * sizeof *forgets[i]);
  if (forgets[i] == NULL || nr_forgets[i] == FILLER_FORGET_MAX) {
    /* Too many to remember: drop them all at once instead. */
    health_invalidate (i);
    nbdkit_debug ("memcache: server %s: more writes skipped it than can be "
                  "deleted later: its generation changes",
                  ring->servers[i].name);
    forgets_total -= nr_forgets[i];
    nr_forgets[i] = 0;
    return;
  }
  forgets[i][nr_forgets[i]++] = (struct filler_forget) { block, generation };
  forgets_total++;
}

void
filler_forget (size_t i, uint64_t block, uint64_t generation)
{
  pthread_mutex_lock (&filler_lock);
  filler_forget_locked (i, block, generation);
  pthread_cond_signal (&filler_work);
  pthread_mutex_unlock (&filler_lock);
}

/* Send the deletes owed to every usable server, a batch at a time; those
 * whose batch failed stay owed.  Called without filler_lock.
 */
static void
filler_send_forgets (void)
{
  size_t i, j, n;

  batch.members = pool_acquire ();
  for (i = 0; i < ring->n; i++) {
    struct conn_session *s = &batch.sessions[i];
    bool done = false;

    if (!ring_member (batch.members, i)) {
      /* It left the pool: what it holds never authenticates anyway. */
      pthread_mutex_lock (&filler_lock);
      forgets_total -= nr_forgets[i];
      nr_forgets[i] = 0;
      pthread_mutex_unlock (&filler_lock);
      continue;
    }

    for (;;) {
      pthread_mutex_lock (&filler_lock);
      n = nr_forgets[i] < batch_max ? nr_forgets[i] : batch_max;
      for (j = 0; j < n; j++) {
        struct value_ident ident = {
          .id_hash = ring->id_hash,
          .epoch = epoch,
          .generation = forgets[i][j].generation,
          .block = forgets[i][j].block,
        };

        batch.key_lens[j] = value_key (batch.keys[j], &ident);
        batch.mutations[j] = (struct conn_mutation) {
          .key = batch.keys[j], .key_len = batch.key_lens[j],
        };
      }
      pthread_mutex_unlock (&filler_lock);
      if (n == 0 || !conn_open_background (s, i))
        break;
      done = conn_mutate_send (s, batch.mutations, n, 0) == CONN_OK &&
        conn_mutate_finish (s) == CONN_OK;
      conn_close (s);
      if (!done)
        break;
      stats_add (stats.invalidations, n);
      /* Only this thread removes entries; writers append after them. */
      pthread_mutex_lock (&filler_lock);
      if (nr_forgets[i] >= n) {
        memmove (forgets[i], forgets[i] + n,
                 (nr_forgets[i] - n) * sizeof *forgets[i]);
        nr_forgets[i] -= n;
        forgets_total -= n;
      }
      pthread_mutex_unlock (&filler_lock);
    }
  }
  pool_release (batch.members);
  batch.members = NULL;
}

void
filler_server_join (size_t i)
{
  pthread_mutex_lock (&filler_lock);
  if (nr_forgets) {
    forgets_total -= nr_forgets[i];
    nr_forgets[i] = 0;
  }
  pthread_mutex_unlock (&filler_lock);
}

static void *
filler_thread (void *arg)
{
  size_t first, n, j;
  bool owed;

  pthread_mutex_lock (&filler_lock);
  for (;;) {
    while (count == 0 && !stopping) {
      if (forgets_total == 0)
        pthread_cond_wait (&filler_work, &filler_lock);
      else {
        struct timespec ts;

        /* Owed deletes wait for their servers to come back. */
        pthread_mutex_unlock (&filler_lock);
        filler_send_forgets ();
        pthread_mutex_lock (&filler_lock);
        if (count > 0 || stopping || forgets_total == 0)
          continue;
        clock_gettime (CLOCK_REALTIME, &ts);
        ts.tv_nsec += FILLER_FORGET_POLL_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
          ts.tv_sec++;
          ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait (&filler_work, &filler_lock, &ts);
      }
    }
    if (stopping)
      break;
    first = head;
    n = count < batch_max ? count : batch_max;
    owed = forgets_total > 0;
    pthread_mutex_unlock (&filler_lock);

    /* The deletes a write left owed go before the fills queued after it. */
    if (owed)
      filler_send_forgets ();
    filler_send (first, n);

    pthread_mutex_lock (&filler_lock);
    /* Their slots back on the stack, the first sent on top. */
    for (j = n; j-- > 0; )
      free_slots[capacity - count + (n - 1 - j)] =
        entries[(first + j) % capacity].slot;
    head = (head + n) % capacity;
    count -= n;
  }
  pthread_mutex_unlock (&filler_lock);
  return NULL;
}

int
filler_start (uint64_t keys_epoch)
{
  int err;

  epoch = keys_epoch;
  pthread_mutex_lock (&filler_lock);
  stopping = false;
  running = true;
  pthread_mutex_unlock (&filler_lock);
  err = pthread_create (&thread, NULL, filler_thread, NULL);
  if (err != 0) {
    pthread_mutex_lock (&filler_lock);
    running = false;
    pthread_mutex_unlock (&filler_lock);
    errno = err;
    nbdkit_error ("memcache: starting the fill thread: %m");
    return -1;
  }
  return 0;
}

/* Queued fills are dropped: they are only an optimisation. */
void
filler_stop (void)
{
  bool was_running;

  pthread_mutex_lock (&filler_lock);
  was_running = running;
  running = false;
  stopping = true;
  pthread_cond_signal (&filler_work);
  pthread_mutex_unlock (&filler_lock);
  if (was_running)
    pthread_join (thread, NULL);
  pthread_mutex_lock (&filler_lock);
  filler_empty ();
  pthread_mutex_unlock (&filler_lock);
}
