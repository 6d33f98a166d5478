/* SPDX-License-Identifier: BSD-3-Clause */
/* nbdkit-memcache-filter: the write path (pwrite, zero, trim).
 *
 * What happens to a write, top to bottom (writer_write):
 *
 *   1. register it (writeseq.c), so that reads do not queue fills of its
 *      blocks from now on;
 *   2. send it to the lower device; the client's request waits for it;
 *   3. raise each block's version (writeseq.h): from now on no value
 *      sealed before, whoever stores it and however late it lands,
 *      authenticates.  This step alone keeps the cache from serving a
 *      block older than the lower device's; the next ones only keep the
 *      cache useful and its memory clean;
 *   4. bring the cache up to date: with memcache-write-policy=update, a
 *      pwrite that succeeded stores every block it covers whole, sealed
 *      under the new version, unless it continues a sequential stream of
 *      writes longer than memcache-sequential-cutoff (seqdetect.h: a
 *      restore or a dd would evict every other device's hot blocks, as a
 *      scan would); every other block (partial blocks, zero, trim, the
 *      invalidate policy, a failed lower write, a sequential write) is
 *      deleted, which only frees the memory of a value that no longer
 *      authenticates.  Each server gets its share as one batch (quiet
 *      "ms" and "md" commands with the meta protocol), in batches of at
 *      most WRITER_BATCH_BYTES, all servers at once.  Their outcome does
 *      not matter for correctness: a store or delete that timed out, and
 *      may still be carried out later, cannot make an old value readable;
 *   5. unregister it.  If another write of the same block overlapped it,
 *      their lower writes and their stores may have run in different
 *      orders, so the block's version is raised once more: what either
 *      stored never authenticates.
 *
 * A write places its blocks with one snapshot of the pool (pool.h), taken
 * at its start and given back at its end, however the pool changes
 * meanwhile: its stores and deletes go where that snapshot puts them.
 * Step 3 does not depend on placement at all.
 *
 * A server that is down is skipped: step 3 already made what it holds
 * for these blocks unreadable, also if it comes back with its old memory;
 * the fill thread deletes those values once it is back (filler_forget).
 *
 * A write of more than WRITER_MASS_BLOCKS blocks (a big zero or trim)
 * changes every server's generation instead of steps 3 to 5 (health.c):
 * no key made before is asked for again.
 */

#include <config.h>

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <nbdkit-filter.h>

#include "conn.h"
#include "filler.h"
#include "health.h"
#include "pool.h"
#include "seqdetect.h"
#include "stats.h"
#include "value.h"
#include "writer.h"
#include "writeseq.h"

#define WRITER_MASS_BLOCKS 4096
#define WRITER_BATCH_BYTES (512 * 1024)

/* Set by writer_init, read-only afterwards. */
static struct writer_settings settings;
static uint64_t epoch;

/* The streams of pwrites (zero and trim store nothing: they need none),
 * across all connections, apart from the reads' (reader.c): a stream
 * read back as it is written would otherwise look like one stream.  It
 * only ever turns a store into a delete, never the other way.
 */
static struct seqdetect streams;

void
writer_init (const struct writer_settings *given, uint64_t keys_epoch)
{
  settings = *given;
  epoch = keys_epoch;
  seqdetect_init (&streams, settings.sequential_cutoff);
}

/* The cache updates of one write. */
struct writer_updates {
  const struct ring *ring;      /* the pool, for the whole write */
  bool *tried, *open;           /* u->ring->n: sessions, opened on first use */
  struct conn_session *sessions;
  size_t max;                   /* blocks per batch */
  uint64_t *versions;           /* max: each block's new version */
  struct conn_mutation *mutations;      /* max, grouped by server */
  size_t *server_of;            /* max */
  char (*keys)[VALUE_KEY_MAX];  /* max */
  unsigned char *values;        /* max sealed values */
  size_t *first, *nr;           /* u->ring->n: its mutations in the batch */
};

static void
writer_updates_free (struct writer_updates *u)
{
  size_t i;

  if (u->open) {
    for (i = 0; i < u->ring->n; i++)
      if (u->open[i])
        conn_close (&u->sessions[i]);
  }
  free (u->tried);
  free (u->open);
  free (u->sessions);
  free (u->versions);
  free (u->mutations);
  free (u->server_of);
  free (u->keys);
  free (u->values);
  free (u->first);
  free (u->nr);
}

static int
writer_updates_alloc (struct writer_updates *u, const struct ring *ring,
                      uint64_t n)
{
  const size_t bs = settings.block_size;
  size_t max = WRITER_BATCH_BYTES / bs;

  if (max < 1)
    max = 1;
  if (n < max)
    max = n;
  memset (u, 0, sizeof *u);
  u->ring = ring;
  u->max = max;
  u->tried = calloc (ring->n, sizeof *u->tried);
  u->open = calloc (ring->n, sizeof *u->open);
  u->sessions = calloc (ring->n, sizeof *u->sessions);
  u->first = calloc (ring->n, sizeof *u->first);
  u->nr = calloc (ring->n, sizeof *u->nr);
  u->versions = calloc (max, sizeof *u->versions);
  u->mutations = calloc (max, sizeof *u->mutations);
  u->server_of = calloc (max, sizeof *u->server_of);
  u->keys = calloc (max, sizeof *u->keys);
  u->values = malloc (max * (VALUE_OVERHEAD + bs));
  if (u->tried == NULL || u->open == NULL || u->sessions == NULL ||
      u->first == NULL || u->nr == NULL || u->versions == NULL ||
      u->mutations == NULL || u->server_of == NULL || u->keys == NULL ||
      u->values == NULL) {
    writer_updates_free (u);
    return -1;
  }
  return 0;
}

static struct conn_session *
writer_session (struct writer_updates *u, size_t i)
{
  if (!u->tried[i]) {
    u->tried[i] = true;
    u->open[i] = conn_open (&u->sessions[i], i);
  }
  return u->open[i] ? &u->sessions[i] : NULL;
}

/* Step 4 for the N blocks from FIRST (whose new versions are in
 * u->versions): one batch per server.  STORE says which blocks are stored
 * from BUF (the write's data, from OFFSET) rather than deleted.
 */
static void
writer_update_batch (struct writer_updates *u, uint64_t first, size_t n,
                     uint64_t size, bool store_whole, const void *buf,
                     uint32_t count, uint64_t offset)
{
  const uint32_t bs = settings.block_size;
  size_t j, i, pos;

  for (i = 0; i < u->ring->n; i++)
    u->nr[i] = 0;
  for (j = 0; j < n; j++) {
    u->server_of[j] = ring_server_for_block (u->ring, first + j);
    if (writer_session (u, u->server_of[j]))
      u->nr[u->server_of[j]]++;
  }
  for (pos = 0, i = 0; i < u->ring->n; i++) {
    u->first[i] = pos;
    pos += u->nr[i];
    u->nr[i] = 0;
  }

  for (j = 0; j < n; j++) {
    const uint64_t block = first + j, start = block * bs;
    const uint32_t len = size - start < bs ? size - start : bs;
    struct value_ident ident = {
      .id_hash = u->ring->id_hash,
      .epoch = epoch,
      .block = block,
      .version = u->versions[j],
    };
    struct conn_mutation *m;
    unsigned char *value = u->values + j * (VALUE_OVERHEAD + bs);

    i = u->server_of[j];
    if (!u->open[i]) {
      /* Down: step 3 made what it holds unreadable; have it deleted when
       * the server is back, so that it costs a plain miss.
       */
      filler_forget (i, block, health_generation (i));
      continue;
    }
    ident.generation = u->sessions[i].gen;
    m = &u->mutations[u->first[i] + u->nr[i]++];
    m->key = u->keys[j];
    m->key_len = value_key (u->keys[j], &ident);
    m->value = NULL;
    m->value_len = 0;
    if (store_whole && start >= offset && start + len <= offset + count &&
        value_seal (value, &ident, (const char *) buf + (start - offset),
                    len) == 0) {
      m->value = value;
      m->value_len = VALUE_OVERHEAD + len;
    }
  }

  for (i = 0; i < u->ring->n; i++)
    if (u->nr[i] > 0)
      conn_mutate_send (&u->sessions[i], &u->mutations[u->first[i]],
                        u->nr[i], settings.ttl);
  for (i = 0; i < u->ring->n; i++) {
    if (u->nr[i] == 0 || conn_mutate_finish (&u->sessions[i]) != CONN_OK)
      continue;
    for (j = u->first[i]; j < u->first[i] + u->nr[i]; j++) {
      const struct conn_mutation *m = &u->mutations[j];

      if (m->value && !m->refused)
        stats_add (stats.updates, 1);
      else if (!m->value)
        stats_add (stats.invalidations, 1);
    }
  }
}

static int
writer_lower (nbdkit_next *next, enum writer_op op, const void *buf,
              uint32_t count, uint64_t offset, uint32_t flags, int *err)
{
  switch (op) {
  case WRITER_PWRITE:
    return next->pwrite (next, buf, count, offset, flags, err);
  case WRITER_ZERO:
    return next->zero (next, count, offset, flags, err);
  case WRITER_TRIM:
    return next->trim (next, count, offset, flags, err);
  }
  abort ();
}

int
writer_write (nbdkit_next *next, enum writer_op op, const void *buf,
              uint32_t count, uint64_t offset, uint32_t flags, int *err)
{
  const uint32_t bs = settings.block_size;
  const struct ring *ring;
  struct writer_updates u;
  struct writeseq_write w;
  uint64_t first, n, i, done;
  bool store_whole, updates;
  int64_t size;
  int r;

  if (count == 0)
    return writer_lower (next, op, buf, count, offset, flags, err);
  size = next->get_size (next);
  if (size == -1) {
    *err = errno ? errno : EIO;
    return -1;
  }
  first = offset / bs;
  n = (offset + count - 1) / bs - first + 1;

  /* 1. */
  if (writeseq_write_begin (&w, first, n) == -1) {
    *err = ENOMEM;
    return -1;
  }

  /* 2. */
  r = writer_lower (next, op, buf, count, offset, flags, err);

  if (n > WRITER_MASS_BLOCKS) {
    stats_add (stats.mass_invalidations, 1);
    health_invalidate_all ();
    writeseq_write_end (&w);
    writeseq_write_free (&w);
    return r;
  }

  /* 3 and 4, in batches. */
  store_whole = op == WRITER_PWRITE && r == 0 &&
    settings.write_policy == WRITE_POLICY_UPDATE;
  if (store_whole && seqdetect_request (&streams, offset, count)) {
    store_whole = false;
    stats_add (stats.seq_bypass_stores, n);
  }
  ring = pool_acquire ();
  updates = writer_updates_alloc (&u, ring, n) == 0;
  if (!updates)
    nbdkit_debug ("memcache: out of memory for the cache updates of a "
                  "write: its blocks' versions are raised all the same");
  for (done = 0; done < n; ) {
    size_t batch = updates && n - done > u.max ? u.max : n - done;

    for (i = 0; i < batch; i++) {
      uint64_t v = writeseq_version_bump (first + done + i);

      if (updates)
        u.versions[i] = v;
    }
    if (updates)
      writer_update_batch (&u, first + done, batch, size, store_whole,
                           buf, count, offset);
    done += batch;
  }

  /* 5. */
  writeseq_write_end (&w);
  for (i = 0; i < n; i++)
    if (!writeseq_write_kept (&w, first + i)) {
      writeseq_version_bump (first + i);
      stats_add (stats.updates_raced, 1);
    }

  if (updates)
    writer_updates_free (&u);
  pool_release (ring);
  writeseq_write_free (&w);
  return r;
}
