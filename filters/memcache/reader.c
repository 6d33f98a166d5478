/* SPDX-License-Identifier: BSD-3-Clause */
/* nbdkit-memcache-filter: the read path.
 *
 * First, is the read part of a sequential stream longer than
 * memcache-sequential-cutoff (seqdetect.h)?  Such a read is served as any
 * other, from memcached where the blocks are there, but its misses are
 * not stored (step 4): a scan of the device would evict every other
 * device's hot blocks from memcached's LRU.  Then the read is split into
 * blocks and handled in batches of at most READER_BATCH_BYTES.  For each
 * batch, top to bottom:
 *
 *   1. place every block on its server (ring.c); a block whose server is
 *      down is not looked up (health.c: this costs nothing);
 *   2. send one multi-get to every server involved, then collect the
 *      answers from each, so all servers work in parallel; a value is
 *      accepted only if its header and checksum match (value.c); right
 *      after a change of the pool (warm moves, pool.c), the blocks that
 *      missed and moved are asked of their previous server the same
 *      way, and those found there are copied to their server in step 4;
 *   3. read every run of adjacent blocks not found from the lower device
 *      with one request per run;
 *   4. queue the blocks read in step 3 to be stored on their servers in
 *      the background (filler.c), unless the read is sequential, their
 *      server is down or a write of the block was in progress before the
 *      lower read (writeseq.c); the read returns without waiting for
 *      them.
 *
 * A read places all its blocks with one snapshot of the pool (pool.h),
 * taken at its start and given back at its end, however the pool
 * changes meanwhile.
 *
 * Whatever goes wrong with memcached, the read is served from the lower
 * device; only a lower device error fails it.  Blocks are always read and
 * stored whole, so the cache holds whole blocks only.  A session to a
 * server is closed as soon as its multi-get is collected, so no
 * connection is held while the lower device is read.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <nbdkit-filter.h>

#include "conn.h"
#include "filler.h"
#include "health.h"
#include "params.h"
#include "pool.h"
#include "reader.h"
#include "seqdetect.h"
#include "stats.h"
#include "value.h"
#include "writeseq.h"

#define READER_BATCH_BYTES (2 * 1024 * 1024)

enum block_state {
  BLOCK_WANTED,                 /* not found (yet) */
  BLOCK_HIT,                    /* served from memcached */
  BLOCK_UNCACHED,               /* its server is down: lower; filled only
                                   if the server is back by then */
};

struct read_block {
  uint64_t block;
  uint32_t len;                 /* bytes: the block size, less at the end */
  size_t server;
  enum block_state state;
  uint64_t version;             /* writeseq_version before the lookup */
  bool fill;                    /* queue it after the lower read */
  uint64_t fill_seq;            /* writeseq_fill_begin */
  size_t key_len;
  char key[VALUE_KEY_MAX];
  size_t prev;                  /* warm moves: its previous server, asked */
  bool copy;                    /* found there: copy it to its server */
  size_t prev_key_len;
  char prev_key[VALUE_KEY_MAX];
};

/* One server's part of a batch. */
struct read_server {
  bool wanted;                  /* some block of the batch is on it */
  bool open;                    /* session open */
  bool back;                    /* usable after the lower read: fill its
                                   blocks, even those it was down for */
  struct conn_session session;
  size_t nr_keys;
  const char **keys;            /* nr_keys of the batch's keys */
  size_t *key_lens;
};

struct read_batch {
  const struct ring *ring;      /* the pool, for the whole read */
  uint64_t first;               /* block number of blocks[0] */
  size_t n;
  struct read_block *blocks;
  unsigned char *data;          /* n * block_size */
  struct read_server *servers;  /* ring->n: by slot */
};

/* Set by reader_init, read-only afterwards. */
static struct reader_settings settings;
static uint64_t epoch;

/* The streams of reads (the writes have theirs, writer.c), across all
 * connections; it has its own lock.
 */
static struct seqdetect streams;

void
reader_init (const struct reader_settings *given, uint64_t keys_epoch)
{
  settings = *given;
  epoch = keys_epoch;
  seqdetect_init (&streams, settings.sequential_cutoff);
}

static void
reader_free_batch (struct read_batch *b)
{
  size_t i;

  if (b->servers) {
    for (i = 0; i < b->ring->n; i++) {
      free (b->servers[i].keys);
      free (b->servers[i].key_lens);
    }
  }
  free (b->servers);
  free (b->blocks);
  free (b->data);
}

static int
reader_alloc_batch (struct read_batch *b, const struct ring *ring,
                    size_t max_blocks)
{
  size_t i;

  memset (b, 0, sizeof *b);
  b->ring = ring;
  b->blocks = calloc (max_blocks, sizeof *b->blocks);
  b->data = malloc (max_blocks * settings.block_size);
  b->servers = calloc (ring->n, sizeof *b->servers);
  if (b->blocks == NULL || b->data == NULL || b->servers == NULL)
    goto err;
  for (i = 0; i < ring->n; i++) {
    b->servers[i].keys = malloc (max_blocks * sizeof (char *));
    b->servers[i].key_lens = malloc (max_blocks * sizeof (size_t));
    if (b->servers[i].keys == NULL || b->servers[i].key_lens == NULL)
      goto err;
  }
  return 0;

 err:
  nbdkit_error ("malloc: %m");
  reader_free_batch (b);
  return -1;
}

static void
reader_ident (const struct read_batch *b, const struct read_block *blk,
              struct value_ident *ident)
{
  ident->id_hash = b->ring->id_hash;
  ident->epoch = epoch;
  ident->generation = b->servers[blk->server].session.gen;
  ident->block = blk->block;
  ident->version = blk->version;
}

/* Step 1: place the blocks and open a session to each server needed. */
static void
reader_place (struct read_batch *b, uint64_t first, size_t n, uint64_t size)
{
  const uint32_t bs = settings.block_size;
  size_t i;

  b->first = first;
  b->n = n;
  for (i = 0; i < b->ring->n; i++) {
    b->servers[i].wanted = false;
    b->servers[i].open = false;
    b->servers[i].nr_keys = 0;
  }

  for (i = 0; i < n; i++) {
    struct read_block *blk = &b->blocks[i];
    struct read_server *srv;

    blk->block = first + i;
    blk->len = size - blk->block * bs < bs ? size - blk->block * bs : bs;
    blk->server = ring_server_for_block (b->ring, blk->block);
    blk->state = BLOCK_WANTED;
    blk->fill = false;
    blk->prev = SIZE_MAX;
    blk->copy = false;
    blk->version = writeseq_version (blk->block);
    srv = &b->servers[blk->server];
    if (!srv->wanted) {
      srv->wanted = true;
      srv->open = conn_open (&srv->session, blk->server);
    }
    if (srv->open) {
      struct value_ident ident;

      reader_ident (b, blk, &ident);
      blk->key_len = value_key (blk->key, &ident);
      srv->keys[srv->nr_keys] = blk->key;
      srv->key_lens[srv->nr_keys] = blk->key_len;
      srv->nr_keys++;
    }
    else {
      blk->state = BLOCK_UNCACHED;
      stats_add (stats.skipped_down, 1);
      stats_add (server_stats[blk->server].skipped_down, 1);
    }
  }
}

/* conn_fetch callback: one value found. */
struct reader_found_ctx {
  struct read_batch *batch;
  size_t server;
  bool previous;                /* asked as the blocks' previous server */
};

static void
reader_found (void *opaque, const char *key, size_t key_len,
              const char *value, size_t value_len)
{
  struct reader_found_ctx *ctx = opaque;
  struct read_batch *b = ctx->batch;
  struct read_block *blk;
  struct value_ident ident;
  uint64_t block, generation;

  /* Only a name this process made, for a block of this batch, asked of
   * this server under its current generation, is looked at.
   */
  if (!value_key_parse (key, key_len, &block, &generation) ||
      block < b->first || block - b->first >= b->n)
    return;
  blk = &b->blocks[block - b->first];
  if ((ctx->previous ? blk->prev : blk->server) != ctx->server ||
      blk->state != BLOCK_WANTED ||
      generation != b->servers[ctx->server].session.gen ||
      (ctx->previous
       ? blk->prev_key_len != key_len || memcmp (blk->prev_key, key, key_len)
       : blk->key_len != key_len || memcmp (blk->key, key, key_len)) != 0)
    return;

  reader_ident (b, blk, &ident);
  ident.generation = generation;
  switch (value_open (b->data + (block - b->first) * settings.block_size,
                      value, value_len, &ident, blk->len)) {
  case VALUE_OK:
    blk->state = BLOCK_HIT;
    blk->copy = ctx->previous;
    break;
  case VALUE_BAD_FORMAT:
    stats_add (stats.format_mismatches, 1);
    nbdkit_debug ("memcache: block %" PRIu64 ": value of a wrong format "
                  "or length", block);
    break;
  case VALUE_BAD_AUTH:
    stats_add (stats.auth_failures, 1);
    nbdkit_debug ("memcache: block %" PRIu64 ": value does not "
                  "authenticate", block);
    break;
  }
}

/* Send every server's keys of B as one multi-get, all servers at once,
 * then collect the answers (PREVIOUS: the keys are those of the blocks'
 * previous servers, reader_lookup_previous).
 */
static void
reader_get_all (struct read_batch *b, bool previous)
{
  size_t i;

  for (i = 0; i < b->ring->n; i++) {
    struct read_server *srv = &b->servers[i];

    if (srv->open && srv->nr_keys > 0)
      conn_mget (&srv->session, srv->keys, srv->key_lens, srv->nr_keys);
  }
  for (i = 0; i < b->ring->n; i++) {
    struct read_server *srv = &b->servers[i];
    struct reader_found_ctx ctx = { .batch = b, .server = i,
                                    .previous = previous };

    if (srv->open && srv->nr_keys > 0)
      conn_fetch (&srv->session, reader_found, &ctx);
  }
}

/* Step 2, warm moves: the blocks that missed and moved in the last change
 * of the pool are asked of their previous server, all of them in
 * parallel.  Sessions opened for the first round are used again.
 */
static void
reader_lookup_previous (struct read_batch *b)
{
  size_t i;
  bool any = false;

  for (i = 0; i < b->n; i++) {
    struct read_block *blk = &b->blocks[i];
    struct read_server *srv;
    struct value_ident ident;
    size_t p;

    if (blk->state != BLOCK_WANTED)
      continue;
    p = ring_previous_server_for_block (b->ring, blk->block);
    if (p == SIZE_MAX || p == blk->server)
      continue;
    srv = &b->servers[p];
    if (!any) {
      size_t j;

      for (j = 0; j < b->ring->n; j++)
        b->servers[j].nr_keys = 0;
      any = true;
    }
    if (!srv->wanted) {
      srv->wanted = true;
      srv->open = conn_open (&srv->session, p);
    }
    if (!srv->open)
      continue;
    blk->prev = p;
    reader_ident (b, blk, &ident);
    ident.generation = srv->session.gen;
    blk->prev_key_len = value_key (blk->prev_key, &ident);
    srv->keys[srv->nr_keys] = blk->prev_key;
    srv->key_lens[srv->nr_keys] = blk->prev_key_len;
    srv->nr_keys++;
  }
  if (any)
    reader_get_all (b, true);
}

/* Step 2: multi-get from all servers in parallel. */
static void
reader_lookup (struct read_batch *b)
{
  size_t i;

  reader_get_all (b, false);
  reader_lookup_previous (b);

  for (i = 0; i < b->n; i++) {
    struct read_block *blk = &b->blocks[i];

    if (blk->state == BLOCK_HIT && blk->copy) {
      stats_add (stats.hits, 1);
      stats_add (stats.warm_hits, 1);
      stats_add (server_stats[blk->prev].hits, 1);
    }
    else if (blk->state == BLOCK_HIT) {
      stats_add (stats.hits, 1);
      stats_add (server_stats[blk->server].hits, 1);
    }
    else if (blk->state == BLOCK_WANTED) {
      stats_add (stats.misses, 1);
      stats_add (server_stats[blk->server].misses, 1);
    }
  }
}

/* Step 3: read the blocks not found, one request per run of adjacent
 * blocks.  A read of a sequential stream (SEQUENTIAL) fills nothing.
 * Otherwise the fill decision is taken before the lower read: a write in
 * progress would make the fill useless (its version goes up).  A block
 * whose lookup failed (its server timed out) is filled too: a server
 * that is only busy must still warm up, and the fill thread stores only
 * to servers that are up or suspect (health.h).  So is a block whose
 * server was down, if it is usable again once the lower read is done (a
 * server taken down by timeouts is probed again within 10 ms).
 */
static int
reader_read_lower (struct read_batch *b, bool sequential, nbdkit_next *next,
                   int *err)
{
  const uint32_t bs = settings.block_size;
  size_t i, j;

  for (i = 0; i < b->n; i++) {
    struct read_block *blk = &b->blocks[i];

    if (blk->state != BLOCK_HIT && sequential)
      stats_add (stats.seq_bypass_blocks, 1);
    else if (blk->state != BLOCK_HIT) {
      blk->fill = writeseq_fill_begin (blk->block, &blk->fill_seq);
      if (!blk->fill)
        stats_add (stats.fills_raced, 1);
    }
  }

  /* One lower read per run of misses, runs joined across short gaps of
   * hits (whose data is then replaced by the lower device's, which is
   * never older).
   */
  for (i = 0; i < b->n; i = j) {
    uint64_t len = 0;
    size_t last;

    if (b->blocks[i].state == BLOCK_HIT) {
      j = i + 1;
      continue;
    }
    last = i;
    for (j = i + 1; j < b->n; j++) {
      if (b->blocks[j].state != BLOCK_HIT)
        last = j;
      else if ((uint64_t) (j - last) * bs >= MEMCACHE_LOWER_GAP_MAX)
        break;
    }
    j = last + 1;
    for (size_t k = i; k < j; k++)
      len += b->blocks[k].len;
    stats_add (stats.lower_reads, 1);
    if (next->pread (next, b->data + i * bs, len, b->blocks[i].block * bs,
                     0, err) == -1)
      return -1;
  }
  return 0;
}

/* Step 4: queue what was read from the lower device to be stored. */
static void
reader_fill (struct read_batch *b)
{
  size_t i;

  /* A server that was down at the lookup (its blocks BLOCK_UNCACHED):
   * is it back?
   */
  for (i = 0; i < b->ring->n; i++)
    b->servers[i].back = b->servers[i].wanted && health_usable (i);
  for (i = 0; i < b->n; i++) {
    const struct read_block *blk = &b->blocks[i];
    const struct filler_block fb = {
      .server = blk->server,
      .generation = b->servers[blk->server].session.gen,
      .block = blk->block,
      .version = blk->version,
      .seq = blk->fill_seq,
    };

    if (blk->fill &&
        (blk->state != BLOCK_UNCACHED || b->servers[blk->server].back))
      filler_queue (&fb, b->data + i * settings.block_size, blk->len);
    /* A warm move: copied under the version it authenticated for, so
     * never over a newer write (the fill thread drops it if the version
     * moved); not while a write of it is in progress.
     */
    if (blk->copy) {
      struct filler_block copy = fb;

      if (writeseq_fill_begin (blk->block, &copy.seq)) {
        stats_add (stats.warm_copies, 1);
        filler_queue (&copy, b->data + i * settings.block_size, blk->len);
      }
    }
  }
}

static void
reader_close (struct read_batch *b)
{
  size_t i;

  for (i = 0; i < b->ring->n; i++) {
    if (b->servers[i].open)
      conn_close (&b->servers[i].session);
    b->servers[i].open = false;
  }
}

int
reader_pread (nbdkit_next *next, void *buf, uint32_t count, uint64_t offset,
              int *err)
{
  const uint32_t bs = settings.block_size;
  const size_t batch_blocks = READER_BATCH_BYTES / bs;
  const struct ring *ring;
  struct read_batch b;
  uint64_t first, last, block;
  int64_t size;
  bool sequential;
  int r = 0;

  if (count == 0)
    return next->pread (next, buf, count, offset, 0, err);
  sequential = seqdetect_request (&streams, offset, count);
  size = next->get_size (next);
  if (size == -1) {
    *err = errno ? errno : EIO;
    return -1;
  }

  first = offset / bs;
  last = (offset + count - 1) / bs;
  ring = pool_acquire ();
  if (reader_alloc_batch (&b, ring, last - first + 1 < batch_blocks
                          ? last - first + 1 : batch_blocks) == -1) {
    pool_release (ring);
    *err = ENOMEM;
    return -1;
  }

  for (block = first; block <= last; block += b.n) {
    size_t n = last - block + 1 < batch_blocks ? last - block + 1
      : batch_blocks;
    uint64_t start, end;

    reader_place (&b, block, n, size);
    reader_lookup (&b);
    reader_close (&b);
    r = reader_read_lower (&b, sequential, next, err);
    if (r == -1)
      break;
    reader_fill (&b);

    /* Copy the part of the batch that was asked for. */
    start = block * bs > offset ? block * bs : offset;
    end = (block + n) * bs < offset + count ? (block + n) * bs
      : offset + count;
    memcpy ((char *) buf + (start - offset), b.data + (start - block * bs),
            end - start);
  }

  reader_free_batch (&b);
  pool_release (ring);
  return r;
}
