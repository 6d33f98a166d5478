/* SPDX-License-Identifier: BSD-3-Clause */
/* abd async filter: the dirty store's client requests (see store-impl.h):
 * reads, writes (with read-modify-write of partial blocks and
 * write-through in sync mode), zero and trim, extents, and flush waits.
 *
 * What happens to a write, top to bottom: store_write walks the request
 * block by block (write_bytes); for each block it asks the tree what is
 * there (tree_find_from, store-index.c) and then either updates a data
 * block in place (overwrite_pin -> entry_modified, then overwrite_copy
 * without the lock: slot pins, store-impl.h), or creates one
 * (entry_insert_block), or reads the block first (write_rmw), or cuts it
 * out of a zeroed range (entry_split_for_block), or sends it through to
 * the lower device (through_flush).  Every change of an entry's state
 * and its effects are in store-life.c; this file calls only that and the
 * tree.
 */

#include <config.h>

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store-impl.h"

/*----------------------------------------------------------------------
 * Reads.
 */

/* A piece of a read: bytes [offset, offset+len) of the device, from the
 * lower device (a gap in the store), zeros (a zero/trim range), or
 * copied from SRC in the data slots [slot, slot+nslots), which the read
 * holds read-pinned.
 */
enum piece_from { FROM_LOWER, FROM_ZEROS, FROM_SLOTS };
struct pieces {
  struct piece {
    uint64_t offset;
    uint32_t len;
    enum piece_from from;
    const char *src;
    uint32_t slot, nslots;
  } stack[32], *v;
  size_t n, cap;
};

static int
pieces_push (struct pieces *p, struct piece piece)
{
  if (p->n == p->cap) {
    struct piece *v = malloc (2 * p->cap * sizeof *v);

    if (v == NULL)
      return -1;
    memcpy (v, p->v, p->n * sizeof *v);
    if (p->v != p->stack)
      free (p->v);
    p->v = v;
    p->cap *= 2;
  }
  p->v[p->n++] = piece;
  return 0;
}

/* Release the read pins of P's pieces. */
static void
pieces_unpin (struct store *s, const struct pieces *p)
{
  size_t i;

  for (i = 0; i < p->n; i++)
    if (p->v[i].from == FROM_SLOTS)
      pins_drop (s, p->v[i].slot, p->v[i].nslots, false);
}

/* Under the lock, the pieces of [OFFSET, END): the data blocks in it
 * read-pinned, none write-pinned.  Returns 0, -1 without memory (nothing
 * pinned), or 1 after waiting for a write pin (nothing pinned, the lock
 * was dropped: look again).
 */
static int
read_pieces (struct store *s, struct pieces *p, uint64_t offset,
             uint64_t end)
{
  uint64_t pos = offset;
  struct entry *e;

  p->n = 0;
  for (e = tree_find_from (s, offset / STORE_BLOCK_SIZE);
       e && e->blk * STORE_BLOCK_SIZE < end;
       e = tree_next (s, e)) {
    uint64_t e_start = e->blk * STORE_BLOCK_SIZE;
    uint64_t e_end = e_start + blocks_len (s, e->blk, entry_blocks (e));
    uint64_t from = pos > e_start ? pos : e_start;
    uint64_t to = end < e_end ? end : e_end;
    struct piece piece = { .offset = from, .len = to - from,
                           .from = FROM_ZEROS };

    if (e_start > pos &&
        pieces_push (p, (struct piece) { .offset = pos,
                                         .len = e_start - pos,
                                         .from = FROM_LOWER }) == -1)
      goto nomem;
    if (e->kind == STORE_DATA) {
      piece.from = FROM_SLOTS;
      piece.src = slot_data (s, e->slot) + (from - e_start);
      piece.slot = e->slot + (from - e_start) / STORE_BLOCK_SIZE;
      piece.nslots = (to - 1 - e_start) / STORE_BLOCK_SIZE -
        (from - e_start) / STORE_BLOCK_SIZE + 1;
      if (slots_pinned (s, piece.slot, piece.nslots, PIN_WRITE)) {
        /* A client copies into it: wait for that, holding no pin. */
        pieces_unpin (s, p);
        pins_wake (s);
        pins_wait (s, piece.slot, piece.nslots, PIN_WRITE);
        return 1;
      }
    }
    if (pieces_push (p, piece) == -1)
      goto nomem;
    if (piece.from == FROM_SLOTS)
      pins_take (s, piece.slot, piece.nslots, false);
    pos = to;
  }
  if (pos < end &&
      pieces_push (p, (struct piece) { .offset = pos, .len = end - pos,
                                       .from = FROM_LOWER }) == -1)
    goto nomem;
  return 0;

 nomem:
  pieces_unpin (s, p);
  pins_wake (s);
  return -1;
}

/* Reads take the lock only to find the pieces and pin the data blocks;
 * the copies out of the slots are made without it.
 */
int
store_read (struct store *s, void *buf, uint32_t count, uint64_t offset,
            const struct store_io *io, int *err)
{
  struct pieces p = { .n = 0, .cap = 32 };
  uint64_t end = offset + count;
  size_t i;
  int r;

  p.v = p.stack;
  STORE_LOCK (s);
  while ((r = read_pieces (s, &p, offset, end)) == 1)
    ;
  STORE_DEBUG_CHECK (s);
  STORE_UNLOCK (s);
  if (r == -1)
    *err = ENOMEM;
  else {
    for (i = 0; i < p.n; i++) {
      char *dst = (char *) buf + (p.v[i].offset - offset);

      if (p.v[i].from == FROM_SLOTS)
        memcpy (dst, p.v[i].src, p.v[i].len);
      else if (p.v[i].from == FROM_ZEROS)
        memset (dst, 0, p.v[i].len);
    }
    pieces_unpin (s, &p);
    pins_released (s);
  }

  /* Blocks the store did not hold were clean when we looked: the lower
   * device has everything acknowledged before this read started, and
   * whatever changes them now is a write concurrent with this read.
   */
  for (i = 0; i < p.n && r == 0; i++)
    if (p.v[i].from == FROM_LOWER)
      r = io->read (io->opaque, (char *) buf + (p.v[i].offset - offset),
                    p.v[i].len, p.v[i].offset, err);
  if (p.v != p.stack)
    free (p.v);
  return r;
}

/*----------------------------------------------------------------------
 * Writes.
 */

/* Put LEN bytes of SRC (NULL: zeros) at byte FROM of block BLK of data
 * entry E, in place and under the lock: a zero of a block being written
 * back (range_op), which no one has pinned.
 */
static void
data_put (struct store *s, struct entry *e, uint64_t blk, uint32_t from,
          const char *src, uint32_t len)
{
  char *dst = block_data (s, e, blk) + from;

  assert (!slots_pinned (s, e->slot + (uint32_t) (blk - e->blk), 1,
                         PIN_ANY));
  if (src)
    memcpy (dst, src, len);
  else
    memset (dst, 0, len);
  record_touch (s, e, blk);
  entry_modified (s, e);
}

/* An overwrite of blocks of a data entry, whose slots [slot, slot+nslots)
 * the client holds write-pinned: LEN bytes of SRC (NULL: zeros) go to DST
 * without the lock (overwrite_pin and overwrite_copy).
 */
struct overwrite {
  char *dst;
  const char *src;
  uint32_t len;
  uint32_t slot, nslots;
};

/* Overwrite in place the bytes [POS, END) of the request (SRC: their
 * data, or NULL: zeros) that data entry E holds, from block BLK: pin
 * their slots for writing and do the bookkeeping now; the copy is *O's,
 * to be made after the lock is dropped.  Returns the bytes it covers, or
 * 0 after waiting (a slot was pinned, or a commit waits for the write
 * pins): the lock was dropped, look again.
 */
static uint32_t
overwrite_pin (struct store *s, struct entry *e, uint64_t blk, uint64_t pos,
               uint64_t end, const char *src, struct overwrite *o)
{
  uint64_t e_end = e->blk * STORE_BLOCK_SIZE +
    blocks_len (s, e->blk, entry_blocks (e));
  uint64_t to = end < e_end ? end : e_end;
  uint64_t b, last = (to - 1) / STORE_BLOCK_SIZE;
  uint32_t slot = e->slot + (uint32_t) (blk - e->blk);
  uint32_t n = last - blk + 1;

  if (s->pins_closed) {
    STORE_WAIT (s, &s->unpinned);
    return 0;
  }
  if (slots_pinned (s, slot, n, PIN_ANY)) {
    pins_wait (s, slot, n, PIN_ANY);
    return 0;
  }
  pins_take (s, slot, n, true);
  for (b = blk; b <= last; b++)
    record_touch (s, e, b);
  entry_modified (s, e);
  *o = (struct overwrite) {
    .dst = block_data (s, e, blk) + pos % STORE_BLOCK_SIZE,
    .src = src, .len = to - pos, .slot = slot, .nslots = n
  };
  return to - pos;
}

/* Without the lock: make overwrite O's copy and release its pins. */
static void
overwrite_copy (struct store *s, struct overwrite *o)
{
  if (o->nslots == 0)
    return;
  if (o->src)
    memcpy (o->dst, o->src, o->len);
  else
    memset (o->dst, 0, o->len);
  pins_drop (s, o->slot, o->nslots, true);
  pins_released (s);
  o->nslots = 0;
}

/* Register client-path lower I/O of blocks [B0, B1): a read-modify-write
 * (RMW) or a write-through.  Returns its index in s->lower_ops, or -1
 * after waiting for a clashing operation of the other kind (or a free
 * place in lower_ops) to finish: the lock was dropped, so the caller must
 * look at the blocks again.
 */
static int
lower_op_begin (struct store *s, uint64_t b0, uint64_t b1, bool rmw)
{
  int i, free_i = -1;

  for (i = 0; i < LOWER_OPS_MAX; i++) {
    const struct lower_op *o = &s->lower_ops[i];

    if (!o->used) {
      if (free_i == -1)
        free_i = i;
    }
    else if (o->rmw != rmw && o->b0 < b1 && b0 < o->b1)
      break;
  }
  if (i < LOWER_OPS_MAX || free_i == -1) {
    wait_changed (s, false);
    return -1;
  }
  s->lower_ops[free_i] = (struct lower_op) {
    .b0 = b0, .b1 = b1, .rmw = rmw, .used = true
  };
  return free_i;
}

static void
lower_op_end (struct store *s, int i)
{
  s->lower_ops[i].used = false;
  pthread_cond_broadcast (&s->changed);
}

/* Read-modify-write of a block the store does not hold: read it from the
 * lower device, merge the piece, insert it.  Called and returns with the
 * lock held; returns 1 if the block turned up in the store meanwhile (the
 * caller looks again), 0 when done, -1 on error.
 */
static int
write_rmw (struct store *s, uint64_t blk, uint32_t from, const char *src,
           uint32_t len, const struct store_io *io, int *err)
{
  struct entry *d;
  char *p;
  int op, r = 0;

  /* Reserve memory first: waiting for it must not hold the removal lock,
   * which the flusher needs to free memory.
   */
  while ((d = entry_new_data (s, blk)) == NULL) {
    wait_changed (s, true);
    if (entry_contains (tree_find_from (s, blk), blk))
      return 1;
  }
  s->reserved_slots++;          /* held while the lock is dropped */
  s->reserved_entries++;
  p = slot_data (s, d->slot);
  while ((op = lower_op_begin (s, blk, blk + 1, true)) == -1)
    ;
  STORE_UNLOCK (s);

  pthread_rwlock_rdlock (&s->removal);
  STORE_LOCK (s);
  if (entry_contains (tree_find_from (s, blk), blk))
    r = 1;
  else {
    STORE_UNLOCK (s);
    r = io->read (io->opaque, p, block_len (s, blk),
                  blk * STORE_BLOCK_SIZE, err);
    STORE_LOCK (s);
    if (r == 0 && entry_contains (tree_find_from (s, blk), blk))
      r = 1;
  }
  s->reserved_slots--;
  s->reserved_entries--;
  if (r == 0) {
    if (block_len (s, blk) < STORE_BLOCK_SIZE)
      memset (p + block_len (s, blk), 0, STORE_BLOCK_SIZE - block_len (s, blk));
    if (src)
      memcpy (p + from, src, len);
    else
      memset (p + from, 0, len);
    entry_insert (s, d, s->epoch_cur, true);
    entry_merge_around (s, d);
  }
  else
    entry_discard (s, d);
  lower_op_end (s, op);
  STORE_UNLOCK (s);
  pthread_rwlock_unlock (&s->removal);
  STORE_LOCK (s);
  return r;
}

/* A run of bytes that goes straight to the lower device (write-through). */
struct through {
  uint64_t offset;
  uint32_t len;
};

/* Write T to the lower device and empty it.  Returns 0, -1 on error, or 1
 * when it had to wait for a read-modify-write of one of its blocks: then
 * nothing was written and the caller must look at the blocks again from
 * T->offset (the merged block may be in the store now).
 */
static int
through_flush (struct store *s, struct through *t, const char *buf,
               uint64_t buf_offset, const struct store_io *io, int *err)
{
  uint32_t len = t->len;
  int op, r;

  if (len == 0)
    return 0;
  t->len = 0;
  op = lower_op_begin (s, t->offset / STORE_BLOCK_SIZE,
                       (t->offset + len - 1) / STORE_BLOCK_SIZE + 1, false);
  if (op == -1)
    return 1;
  STORE_UNLOCK (s);
  if (buf)
    r = io->write (io->opaque, buf + (t->offset - buf_offset), len,
                   t->offset, err);
  else
    r = io->zero (io->opaque, len, t->offset, err);
  STORE_LOCK (s);
  lower_op_end (s, op);
  return r;
}

static void
through_add (struct through *t, uint64_t offset, uint32_t len)
{
  if (t->len == 0)
    t->offset = offset;
  t->len += len;
}

/* Write BUF (NULL: zeros) at byte granularity, block by block. */
static int
write_bytes (struct store *s, const char *buf, uint32_t count,
             uint64_t offset, bool admit_clean, const struct store_io *io,
             int *err)
{
  uint64_t pos = offset, end = offset + count;
  struct through through = { 0 };
  /* The extent the previous turn made or grew, if it was a whole new
   * block (and nothing else happened since): it ends at this block.
   */
  struct entry *left = NULL;
  struct overwrite over = { .nslots = 0 };
  int r = 0;

  STORE_LOCK (s);
  while (r == 0) {
    uint64_t blk = pos / STORE_BLOCK_SIZE;
    uint32_t from = pos % STORE_BLOCK_SIZE;
    uint64_t piece_end = (blk + 1) * STORE_BLOCK_SIZE;
    uint32_t len = (end < piece_end ? end : piece_end) - pos;
    const char *src = buf ? buf + (pos - offset) : NULL;
    struct entry *e = NULL, *d, *prev = left;

    left = NULL;
    if (pos < end)
      e = tree_find_from (s, blk);

    /* A pending write-through (only !admit_clean makes one) goes down
     * before the store is touched: at the end, or at a block in the
     * store.  The lock is dropped meanwhile, so look at the blocks again
     * afterwards, from the write-through's start if it could not be done.
     */
    if (through.len && (pos == end || entry_contains (e, blk))) {
      r = through_flush (s, &through, buf, offset, io, err);
      if (r == 1) {
        pos = through.offset;
        r = 0;
      }
      continue;
    }
    if (pos == end)
      break;

    if (!entry_contains (e, blk)) {
      if (!admit_clean) {
        through_add (&through, pos, len);
        pos += len;
        continue;
      }
      if (len < block_len (s, blk)) {
        r = write_rmw (s, blk, from, src, len, io, err);
        if (r == 1)
          r = 0;              /* look again: pos is unchanged */
        else if (r == 0)
          pos += len;
        continue;
      }
      /* A whole block: no need to read the lower device. */
      if (!entry_insert_block (s, blk, src, len, e, &prev)) {
        wait_changed (s, true);
        continue;
      }
      left = prev;
      pos += len;
      continue;
    }

    if (e->kind == STORE_DATA) {
      /* An overwrite: the copy is made without the lock.  The last
       * piece of the request is copied after the end (one acquisition);
       * one in the middle at once.
       */
      uint32_t n = overwrite_pin (s, e, blk, pos, end, src, &over);

      pos += n;
      if (n > 0 && pos < end) {
        STORE_UNLOCK (s);
        overwrite_copy (s, &over);
        STORE_LOCK (s);
      }
      continue;
    }

    /* A zero/trim range: replace this block of it by a data block. */
    if (e->state != ST_DIRTY) {
      wait_changed (s, false);
      continue;
    }
    if ((d = entry_new_data (s, blk)) == NULL) {
      wait_changed (s, true);
      continue;
    }
    if (!entry_split_for_block (s, e, blk, d)) {
      entry_discard (s, d);
      wait_changed (s, true);
      continue;
    }
    /* The block is a data block now, of D or of a neighbour D merged
     * with: the next turn writes it there.
     */
  }
  if (r == 0) {
    s->st.client_write_requests++;
    s->st.client_written_bytes += count;
  }
  STORE_DEBUG_CHECK (s);
  STORE_UNLOCK (s);
  overwrite_copy (s, &over);
  return r;
}

int
store_write (struct store *s, const void *buf, uint32_t count,
             uint64_t offset, bool admit_clean, const struct store_io *io,
             int *err)
{
  return write_bytes (s, buf, count, offset, admit_clean, io, err);
}

/* Zero or trim the whole blocks [b0, b1). */
static int
range_op (struct store *s, enum store_kind kind, uint64_t b0, uint64_t b1,
          bool admit_clean, const struct store_io *io, int *err)
{
  uint64_t pos = b0;
  /* The oldest unflushed epoch among entries this operation replaced in
   * the current gap: the new range inherits it (a flush must not return
   * before the replacement is durable).  carry_held: we hold its count.
   */
  uint32_t carry = 0;
  bool carry_held = false;
  struct entry *intent;
  int r = 0;

  STORE_LOCK (s);
  intent = intent_open (s, kind, b0, b1);   /* with a store file */
  while (pos < b1 && r == 0) {
    struct entry *e = tree_find_from (s, pos), *n;
    uint32_t epoch;

    if (entry_contains (e, pos)) {
      if (e->state != ST_DIRTY) {
        if (e->kind != STORE_DATA) {
          wait_changed (s, false);
          continue;
        }
        /* Being written back: zero in place, under the lock, once no
         * one copies into or out of it; trim leaves it (a trim may leave
         * data as it was).
         */
        if (kind == STORE_ZERO) {
          uint32_t slot = e->slot + (uint32_t) (pos - e->blk);

          if (slots_pinned (s, slot, 1, PIN_ANY)) {
            pins_wait (s, slot, 1, PIN_ANY);
            continue;
          }
          data_put (s, e, pos, 0, NULL, STORE_BLOCK_SIZE);
        }
        pos++;
        continue;
      }

      /* A DIRTY entry: cut [pos, b1) out of it, once no one copies
       * into or out of the slots that frees.  We hold a count of its
       * epoch for the part cut: it becomes (or joins) the carry.
       */
      if (e->kind == STORE_DATA) {
        uint64_t cut_end = entry_end (e) < b1 ? entry_end (e) : b1;
        uint32_t slot = e->slot + (uint32_t) (pos - e->blk);

        if (slots_pinned (s, slot, cut_end - pos, PIN_ANY)) {
          pins_wait (s, slot, cut_end - pos, PIN_ANY);
          continue;
        }
      }
      if (!entry_cut (s, e, pos, b1, &epoch)) {
        wait_changed (s, true);
        continue;
      }
      if (!carry_held || ms_diff (epoch, carry) > 0) {
        /* Keep the count of the older of the two (ms_diff (a, b) > 0:
         * b is newer).  A carry holds two counts only when this zero
         * waited for space at a gap and a client wrote there meanwhile.
         */
        if (carry_held)
          epoch_drop (s, carry);
        else
          s->epoch_carries++;
        carry = epoch;
        carry_held = true;
      }
      else
        epoch_drop (s, epoch);
      continue;
    }

    /* [pos, gap_end) is absent from the store. */
    {
      uint64_t gap_end = e && e->blk < b1 ? e->blk : b1;

      if (!admit_clean) {
        uint64_t off = pos * STORE_BLOCK_SIZE;
        uint32_t len = blocks_len (s, pos, gap_end - pos);
        int op = lower_op_begin (s, pos, gap_end, false);

        if (op == -1)
          continue;             /* look again */
        STORE_UNLOCK (s);
        r = kind == STORE_ZERO ? io->zero (io->opaque, len, off, err)
                               : io->trim (io->opaque, len, off, err);
        STORE_LOCK (s);
        lower_op_end (s, op);
        pos = gap_end;
        continue;
      }
      if ((n = entry_new_range (s, kind, pos, gap_end - pos)) == NULL) {
        wait_changed (s, true);
        continue;
      }
      if (carry_held && ms_diff (carry, s->epoch_cur) > 0) {
        entry_insert (s, n, carry, false);  /* takes over the held count */
        carry_held = false;
        s->epoch_carries--;
      }
      else
        entry_insert (s, n, s->epoch_cur, true);
      pos = gap_end;
    }
  }
  /* A carry still held here was replaced by a write-through to the lower
   * device; sync-mode flushes flush the lower device after waiting for the
   * store, which makes that durable.
   */
  if (carry_held) {
    epoch_drop (s, carry);
    s->epoch_carries--;
  }
  intent_close (s, intent);
  epoch_advance (s);
  STORE_DEBUG_CHECK (s);
  STORE_UNLOCK (s);
  return r;
}

int
store_zero (struct store *s, uint32_t count, uint64_t offset,
            bool admit_clean, const struct store_io *io, int *err)
{
  uint64_t end = offset + count;
  uint64_t b0 = (offset + STORE_BLOCK_SIZE - 1) / STORE_BLOCK_SIZE;
  uint64_t b1 = end == s->size ? s->nblocks : end / STORE_BLOCK_SIZE;
  int r = 0;

  if (b0 >= b1)                 /* within one block: plain zero bytes */
    return write_bytes (s, NULL, count, offset, admit_clean, io, err);
  if (offset < b0 * STORE_BLOCK_SIZE)
    r = write_bytes (s, NULL, b0 * STORE_BLOCK_SIZE - offset, offset,
                     admit_clean, io, err);
  if (r == 0)
    r = range_op (s, STORE_ZERO, b0, b1, admit_clean, io, err);
  if (r == 0 && end > b1 * STORE_BLOCK_SIZE)
    r = write_bytes (s, NULL, end - b1 * STORE_BLOCK_SIZE,
                     b1 * STORE_BLOCK_SIZE, admit_clean, io, err);
  return r;
}

int
store_trim (struct store *s, uint32_t count, uint64_t offset,
            bool admit_clean, const struct store_io *io, int *err)
{
  uint64_t end = offset + count;
  uint64_t b0 = (offset + STORE_BLOCK_SIZE - 1) / STORE_BLOCK_SIZE;
  uint64_t b1 = end == s->size ? s->nblocks : end / STORE_BLOCK_SIZE;

  /* Trim is advisory: parts of blocks are left as they are. */
  if (b0 >= b1)
    return 0;
  return range_op (s, STORE_TRIM, b0, b1, admit_clean, io, err);
}

/*----------------------------------------------------------------------
 * Extents.
 */

int
store_extent (struct store *s, uint64_t offset, uint32_t count,
              uint64_t *len)
{
  uint64_t end = offset + count;
  uint64_t run_end;
  struct entry *e, *f;
  int kind;

  STORE_LOCK (s);
  e = tree_find_from (s, offset / STORE_BLOCK_SIZE);
  if (!entry_contains (e, offset / STORE_BLOCK_SIZE)) {
    run_end = e ? e->blk * STORE_BLOCK_SIZE : end;
    kind = -1;
  }
  else {
    /* Extend over following entries of the same kind with no gap. */
    kind = e->kind;
    for (f = e; ; ) {
      struct entry *g = tree_next (s, f);

      if (g == NULL || g->blk != entry_end (f) || g->kind != kind ||
          g->blk * STORE_BLOCK_SIZE >= end)
        break;
      f = g;
    }
    run_end = f->blk * STORE_BLOCK_SIZE + blocks_len (s, f->blk,
                                                      entry_blocks (f));
  }
  STORE_DEBUG_CHECK (s);
  STORE_UNLOCK (s);
  *len = (run_end < end ? run_end : end) - offset;
  return kind;
}

/*----------------------------------------------------------------------
 * Flush waits: a flush opens a new epoch (store-life.c) and waits until
 * every older one holds nothing.
 */


int
store_flush_wait (struct store *s, int timeout_ms, int *err)
{
  struct timespec deadline;
  uint32_t target;
  int r = 0;

  if (timeout_ms >= 0) {
    clock_gettime (CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long) (timeout_ms % 1000) * 1000000;
    if (deadline.tv_nsec >= 1000000000) {
      deadline.tv_sec++;
      deadline.tv_nsec -= 1000000000;
    }
  }

  STORE_LOCK (s);
  s->flush_waiters++;
  /* Open a new epoch; every modification so far is in an older one. */
  while (s->epoch_cur - s->epoch_lo + 1 >= EPOCH_RING && !s->stopping)
    STORE_WAIT (s, &s->changed);
  target = s->epoch_cur++;
  assert (s->epoch_count[s->epoch_cur % EPOCH_RING] == 0);
  epoch_advance (s);
  writeback_wake (s);
  pthread_cond_signal (&s->flush_work);

  while (ms_diff (target, s->epoch_lo) <= 0) {
    /* Without a deadline (a client's flush) a failure is reported at
     * once; with one (abdctl flush), retries get until the deadline.
     */
    if (s->failed_entries > 0 && timeout_ms < 0) {
      *err = EIO;
      r = -1;
      break;
    }
    if (s->stopping) {
      *err = ESHUTDOWN;
      r = -1;
      break;
    }
    if (timeout_ms < 0)
      STORE_WAIT (s, &s->changed);
    else if (STORE_TIMEDWAIT (s, &s->changed, &deadline) == ETIMEDOUT) {
      *err = s->failed_entries > 0 ? EIO : ETIMEDOUT;
      r = -1;
      break;
    }
  }
  if (r == 0 && s->failed_entries > 0) {
    *err = EIO;
    r = -1;
  }
  s->flush_waiters--;
  STORE_DEBUG_CHECK (s);
  STORE_UNLOCK (s);
  return r;
}

bool
store_has_failed (struct store *s)
{
  bool failed;

  STORE_LOCK (s);
  failed = s->failed_entries > 0;
  STORE_UNLOCK (s);
  return failed;
}

void
store_wait_empty (struct store *s)
{
  STORE_LOCK (s);
  while (!tree_empty (s) && !s->stopping) {
    s->flush_waiters++;       /* make the writers hurry */
    writeback_wake (s);
    STORE_WAIT (s, &s->changed);
    s->flush_waiters--;
  }
  STORE_UNLOCK (s);
}
