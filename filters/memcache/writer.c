/* SPDX-License-Identifier: BSD-3-Clause */
/* nbdkit-memcache-filter: the write path (pwrite, zero, trim).
 *
 * What happens to a write, top to bottom (writer_write):
 *
 *   1. register it (writeseq.c), so that no read stores the old data of
 *      its blocks from now on;
 *   2. send it to the lower device; the client's request waits for it;
 *   3. raise each block's version (writeseq.h), so that no value sealed
 *      before this write authenticates any more, whoever stores it and
 *      however late; then bring the cache up to date, block by block on
 *      each block's server:
 *      with memcache-write-policy=update, a pwrite that succeeded stores
 *      every block it covers whole; anything else (partial blocks, zero,
 *      trim, the invalidate policy, a failed lower write, which may have
 *      written part) deletes the block;
 *   4. unregister it; a block it stored while another write of the same
 *      block overlapped is deleted again.
 *
 * If a store or delete has an unknown outcome (the server answered with
 * an error), the server's generation changes; if it timed out or failed,
 * the server goes down, which changes it too (health.c).  Either way
 * nothing the server held for this device is trusted afterwards, so the
 * cache never holds a block older than the lower device's.  A server that
 * is already down is skipped: its generation changed when it went down.
 *
 * A write of more than WRITER_MASS_BLOCKS blocks (a big zero or trim)
 * changes every server's generation instead of deleting block by block.
 */

#include <config.h>

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <nbdkit-filter.h>

#include "conn.h"
#include "health.h"
#include "memcache.h"
#include "params.h"
#include "stats.h"
#include "value.h"
#include "writer.h"
#include "writeseq.h"

#define WRITER_MASS_BLOCKS 4096

/* Sessions of one write, opened on first use. */
struct writer_servers {
  bool *tried;
  bool *open;
  struct conn_session *sessions;
};

static struct conn_session *
writer_session (struct writer_servers *ws, size_t i)
{
  if (!ws->tried[i]) {
    ws->tried[i] = true;
    ws->open[i] = conn_open (&ws->sessions[i], i, true);
  }
  return ws->open[i] ? &ws->sessions[i] : NULL;
}

static void
writer_delete (struct conn_session *s, uint64_t block)
{
  const struct value_ident ident = {
    .id_hash = ring.id_hash,
    .epoch = epoch,
    .generation = s->gen,
    .block = block,
  };
  char key[VALUE_KEY_MAX];
  size_t key_len;

  key_len = value_key (key, &ident);
  stats_add (stats.invalidations, 1);
  if (conn_delete (s, key, key_len) == CONN_REFUSED)
    conn_uncertain (s);
}

/* Store DATA (LEN bytes) as VERSION of BLOCK.  Returns true if it was
 * stored.
 */
static bool
writer_store (struct conn_session *s, uint64_t block, uint32_t version,
              const void *data, uint32_t len, unsigned char *value)
{
  const struct value_ident ident = {
    .id_hash = ring.id_hash,
    .epoch = epoch,
    .generation = s->gen,
    .block = block,
    .version = version,
  };
  char key[VALUE_KEY_MAX];
  size_t key_len;

  key_len = value_key (key, &ident);
  if (value_seal (value, &ident, data, len) == -1)
    return false;
  switch (conn_set (s, key, key_len, value, VALUE_OVERHEAD + len,
                    params.ttl)) {
  case CONN_OK:
    stats_add (stats.updates, 1);
    return true;
  case CONN_REFUSED:
    /* The old value may still be there (a set that failed for lack of
     * memory), under the current generation.
     */
    conn_uncertain (s);
    return false;
  case CONN_FAILED:
    return false;
  }
  return false;
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
  const uint32_t bs = params.block_size;
  struct writer_servers ws = { 0 };
  struct writeseq_write w;
  unsigned char *value = NULL;
  bool *stored = NULL;
  uint64_t first, n, i;
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

  /* 3. */
  if (n > WRITER_MASS_BLOCKS) {
    stats_add (stats.mass_invalidations, 1);
    health_invalidate_all ();
    goto end;
  }

  ws.tried = calloc (ring.n, sizeof *ws.tried);
  ws.open = calloc (ring.n, sizeof *ws.open);
  ws.sessions = calloc (ring.n, sizeof *ws.sessions);
  stored = calloc (n, sizeof *stored);
  value = malloc (VALUE_OVERHEAD + bs);
  if (ws.tried == NULL || ws.open == NULL || ws.sessions == NULL ||
      stored == NULL || value == NULL) {
    /* We cannot tell the servers; make them forget everything. */
    nbdkit_debug ("memcache: out of memory in the write path");
    stats_add (stats.mass_invalidations, 1);
    health_invalidate_all ();
    goto end;
  }

  for (i = 0; i < n; i++) {
    uint64_t block = first + i;
    uint64_t start = block * bs;
    uint32_t len = size - start < bs ? size - start : bs;
    uint32_t version = writeseq_version_bump (block);
    struct conn_session *s;

    s = writer_session (&ws, ring_server_for_block (&ring, block));
    if (s == NULL)
      continue;                 /* down: already untrusted */
    if (op == WRITER_PWRITE && r == 0 &&
        params.write_policy == WRITE_POLICY_UPDATE &&
        start >= offset && start + len <= offset + count)
      stored[i] = writer_store (s, block, version,
                                (const char *) buf + (start - offset), len,
                                value);
    else
      writer_delete (s, block);
  }

 end:
  /* 4. */
  writeseq_write_end (&w);
  if (stored) {
    for (i = 0; i < n; i++) {
      uint64_t block = first + i;

      if (stored[i] && !writeseq_write_kept (&w, block))
        writer_delete (&ws.sessions[ring_server_for_block (&ring, block)],
                       block);
    }
  }

  if (ws.open) {
    for (i = 0; i < ring.n; i++)
      if (ws.open[i])
        conn_close (&ws.sessions[i]);
  }
  writeseq_write_free (&w);
  free (ws.tried);
  free (ws.open);
  free (ws.sessions);
  free (stored);
  free (value);
  return r;
}
