/* SPDX-License-Identifier: BSD-3-Clause */
/* abd async filter: the store file (format and crash-consistency argument
 * in storefile.h).
 *
 * This file knows the layout of the file and nothing of the store's tree:
 * it checks a file, maps it, and writes and retires single records in the
 * order storefile.h describes.  It does not use nbdkit, so abdctl links it
 * too (abdctl store-info).  The caller serialises storefile_put and
 * storefile_clear (store-life.c calls them under the store's lock).
 * It is in the store's lowest layer (store-impl.h): it calls no file of
 * the store.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include "privfile.h"
#include "store-block.h"
#include "storefile.h"

#define MAGIC "ABDSTORE"
#define HEADER_BYTES 4096
#define NO_SLOT UINT32_MAX
#define PAGE 4096
#define JOURNAL_MAGIC "ABDJRNL1"
#define BOUNCE_BYTES (1u << 20)

/* The header, at offset 0.  Never changed after the file is made. */
struct header {
  char magic[8];
  uint32_t version;
  uint32_t block_size;
  uint64_t size;                /* device size in bytes */
  uint32_t nslots;
  uint32_t header_bytes;
  uint64_t records_offset, data_offset, file_size;
  char id[STOREFILE_ID_MAX + 1];
  uint64_t check;               /* XXH3 of everything above */
};

/* One copy of a record: seq is written last (see storefile.h). */
struct record {
  uint64_t seq;                 /* 0: empty */
  uint64_t blk;
  uint32_t count;
  uint32_t slot;
  uint32_t kind;
  uint32_t check;               /* low 32 bits of XXH3 of the rest */
};

struct storefile {
  char *path;
  int fd;
  char *map;
  size_t map_bytes;
  struct record *records;       /* 2 * nslots copies */
  char *data;

  /* A durable file (version 3): the map is private (MAP_PRIVATE), so
   * nothing reaches the file but what a commit writes.  The caller's lock
   * guards the bitmap and next_seq; commit_begin and commit_end run one
   * at a time (the caller's group commit).
   */
  bool durable;
  bool failed;                  /* a commit failed: no more commits */
  bool skip_sync;               /* tests only: commits without fdatasync */
  uint64_t home_offset;         /* the first page a commit may write */
  uint64_t npages;              /* pages from there: records, then data */
  uint64_t nrecord_pages;
  uint64_t *changed;            /* bitmap of pages changed since begin */
  uint64_t *index;              /* the transaction's pages */
  uint64_t index_cap;           /* ... room for this many (<= npages) */
  uint64_t pending;             /* pages written by begin, not yet synced */
  uint64_t pending_n;           /* pages of the transaction being written */
  uint64_t journal_offset, region_bytes, index_bytes;
  uint64_t next_seq;            /* the next transaction's number */
  XXH3_state_t *hash;
  char *bounce;                 /* BOUNCE_BYTES, for copying pages home */
  uint64_t commits, committed_pages;
};

static uint64_t
header_check (const struct header *h)
{
  return XXH3_64bits (h, offsetof (struct header, check));
}

static uint32_t
record_check (uint64_t seq, uint64_t blk, uint32_t count, uint32_t slot,
              uint32_t kind)
{
  struct { uint64_t seq, blk; uint32_t count, slot, kind; } v;

  memset (&v, 0, sizeof v);
  v.seq = seq; v.blk = blk; v.count = count; v.slot = slot; v.kind = kind;
  return (uint32_t) XXH3_64bits (&v, sizeof v);
}

static uint64_t
page_round (uint64_t n)
{
  return (n + 4095) & ~(uint64_t) 4095;
}

/* The layout of a durable file's journal (storefile.h): two regions
 * after the data, each big enough for a transaction that rewrites every
 * page from the records on: a header page, the index (one 8-byte page
 * number per page, rounded up to a page), the pages.
 */
struct journal_layout {
  uint64_t home_offset, npages;   /* the pages a transaction may hold */
  uint64_t index_bytes, region_bytes;
  uint64_t offset;                /* of region 0; region 1 follows */
};

static void
journal_layout (uint64_t records_offset, uint64_t data_offset,
                uint32_t nslots, struct journal_layout *j)
{
  j->home_offset = records_offset;
  j->npages = (data_offset - records_offset) / PAGE + nslots;
  j->index_bytes = page_round (j->npages * 8);
  j->region_bytes = PAGE + j->index_bytes + j->npages * PAGE;
  j->offset = data_offset + (uint64_t) nslots * PAGE;
}

/* The header a file for G has. */
static void
header_make (struct header *h, const struct storefile_geometry *g)
{
  uint64_t records_bytes = (uint64_t) g->nslots * 2 * sizeof (struct record);

  memset (h, 0, sizeof *h);
  memcpy (h->magic, MAGIC, 8);
  h->version = g->durable ? STOREFILE_VERSION_DURABLE : STOREFILE_VERSION;
  h->block_size = STORE_BLOCK_SIZE;
  h->size = g->size;
  h->nslots = g->nslots;
  h->header_bytes = HEADER_BYTES;
  h->records_offset = HEADER_BYTES;
  h->data_offset = HEADER_BYTES + page_round (records_bytes);
  h->file_size = h->data_offset + (uint64_t) g->nslots * STORE_BLOCK_SIZE;
  if (g->durable) {
    struct journal_layout j;

    journal_layout (h->records_offset, h->data_offset, g->nslots, &j);
    h->file_size = j.offset + 2 * j.region_bytes;
  }
  snprintf (h->id, sizeof h->id, "%s", g->id);
  h->check = header_check (h);
}

uint64_t
storefile_size (uint32_t nslots)
{
  struct storefile_geometry g = { .size = 0, .nslots = nslots, .id = "" };
  struct header h;

  header_make (&h, &g);
  return h.file_size;
}

/* Read and check the header of FD; FILE_SIZE is the file's size. */
static int
header_read (int fd, const char *path, uint64_t file_size, struct header *h,
             char **errmsg)
{
  struct header want;
  struct storefile_geometry g;
  ssize_t r;

  if (file_size < HEADER_BYTES)
    goto truncated;
  r = pread (fd, h, sizeof *h, 0);
  if (r != (ssize_t) sizeof *h) {
    if (asprintf (errmsg, "%s: cannot read the header: %s", path,
                  r == -1 ? strerror (errno) : "short read") == -1)
      *errmsg = NULL;
    return -1;
  }
  if (memcmp (h->magic, MAGIC, 8) != 0) {
    if (asprintf (errmsg, "%s is not an abd store file (no magic): refusing "
                  "to use it; move it away if it is not needed", path) == -1)
      *errmsg = NULL;
    return -1;
  }
  /* Version 1 (a data record is one block) is read, to recreate an
   * empty one and to refuse one with records: storefile_open.
   */
  if (h->version < 1 || h->version > STOREFILE_VERSION_DURABLE) {
    if (asprintf (errmsg, "%s: unknown store file version %" PRIu32 " (this "
                  "build knows version %d): refusing to use it; write it "
                  "back with the abd that made it", path, h->version,
                  STOREFILE_VERSION_DURABLE) == -1)
      *errmsg = NULL;
    return -1;
  }
  if (h->check != header_check (h) || h->id[STOREFILE_ID_MAX] != '\0')
    goto damaged;
  /* Everything else follows from size, nslots and id. */
  g.size = h->size;
  g.nslots = h->nslots;
  g.id = h->id;
  g.durable = h->version == STOREFILE_VERSION_DURABLE;
  header_make (&want, &g);
  want.version = h->version;
  want.check = header_check (&want);
  if (memcmp (&want, h, sizeof want) != 0 || h->nslots == 0)
    goto damaged;
  if (file_size != h->file_size) {
  truncated:
    if (asprintf (errmsg, "%s: the store file is truncated or resized (%"
                  PRIu64 " bytes, its header says %" PRIu64 "): refusing to "
                  "use it", path, file_size,
                  file_size < HEADER_BYTES ? (uint64_t) 0 : h->file_size) == -1)
      *errmsg = NULL;
    return -1;
  }
  return 0;

 damaged:
  if (asprintf (errmsg, "%s: the store file's header is damaged (checksum "
                "or layout mismatch): refusing to use it", path) == -1)
    *errmsg = NULL;
  return -1;
}

static int
rec_cmp_slot (const void *a, const void *b)
{
  const struct storefile_rec *x = *(const struct storefile_rec *const *) a;
  const struct storefile_rec *y = *(const struct storefile_rec *const *) b;

  return x->slot < y->slot ? -1 : x->slot > y->slot;
}

/* Do two data records among the N of V name one slot for two blocks?
 * Two records may name one slot only for the same block: a merge of two
 * extents publishes the merged record before it retires the other, so a
 * crash in between leaves both, and they agree.  Returns why not, or
 * NULL.
 */
static const char *
slots_shared (const struct storefile_rec *v, size_t n)
{
  const struct storefile_rec **d = malloc (sizeof *d * (n ? n : 1));
  const struct storefile_rec *reach = NULL;   /* the furthest so far */
  const char *why = NULL;
  size_t i, nd = 0;

  if (d == NULL)
    return strerror (ENOMEM);
  for (i = 0; i < n; i++)
    if (v[i].kind == STORE_DATA)
      d[nd++] = &v[i];
  qsort (d, nd, sizeof *d, rec_cmp_slot);
  for (i = 0; i < nd && why == NULL; i++) {
    if (reach && reach->slot + reach->count > d[i]->slot &&
        reach->blk - reach->slot != d[i]->blk - d[i]->slot)
      why = "two records use the same slot for different blocks";
    if (reach == NULL ||
        d[i]->slot + d[i]->count > reach->slot + reach->count)
      reach = d[i];
  }
  free (d);
  return why;
}

/* Collect the valid records of a mapped file and check them.  Changes
 * nothing.
 */
static int
records_scan (const struct header *h, const struct record *records,
              const char *path, struct storefile_rec **recs, size_t *nrecs,
              char **errmsg)
{
  uint64_t nblocks = (h->size + STORE_BLOCK_SIZE - 1) / STORE_BLOCK_SIZE;
  struct storefile_rec *v = malloc (sizeof *v * 64);
  size_t n = 0, cap = 64;
  const char *why = NULL;
  uint32_t i, k;

  if (v == NULL) {
    if (asprintf (errmsg, "%s: %s", path, strerror (ENOMEM)) == -1)
      *errmsg = NULL;
    return -1;
  }
  for (i = 0; i < h->nslots && why == NULL; i++) {
    const struct record *best = NULL;

    for (k = 0; k < 2; k++) {
      const struct record *r = &records[2 * (size_t) i + k];

      if (r->seq == 0)
        continue;
      if (r->check != record_check (r->seq, r->blk, r->count, r->slot,
                                    r->kind)) {
        why = "a record's checksum does not match";
        break;
      }
      if (best && best->seq == r->seq) {
        why = "two copies of a record have the same sequence number";
        break;
      }
      if (best == NULL || r->seq > best->seq)
        best = r;
    }
    if (why || best == NULL)
      continue;
    if (best->kind > STORE_TRIM || best->count == 0 ||
        best->blk >= nblocks || best->count > nblocks - best->blk)
      why = "a record lies outside the device";
    else if (best->kind == STORE_DATA &&
             (best->count > (h->version == 1 ? 1 : STOREFILE_EXTENT_MAX) ||
              best->slot >= h->nslots || best->count > h->nslots - best->slot))
      why = "a data record's slots are out of range";
    else if (best->kind != STORE_DATA && best->slot != NO_SLOT)
      why = "a range record has a slot";
    if (why)
      break;
    if (n == cap) {
      struct storefile_rec *w = realloc (v, sizeof *v * cap * 2);

      if (w == NULL) {
        why = strerror (ENOMEM);
        break;
      }
      v = w;
      cap *= 2;
    }
    v[n++] = (struct storefile_rec) {
      .index = i, .seq = best->seq, .blk = best->blk, .count = best->count,
      .slot = best->slot, .kind = best->kind
    };
  }
  if (why == NULL)
    why = slots_shared (v, n);
  if (why) {
    free (v);
    if (asprintf (errmsg, "%s: the store file is damaged (%s, entry %" PRIu32
                  "): refusing to use it; nothing was written back", path,
                  why, i) == -1)
      *errmsg = NULL;
    return -1;
  }
  *recs = v;
  *nrecs = n;
  return 0;
}

/* Create a new file NAME.new.RANDOM in DIRFD, mode 0600, and set *TMP
 * to its name (mkstemp, but in a directory descriptor).
 */
static int
file_create_tmp (int dirfd, const char *name, char **tmp)
{
  uint64_t r;
  int i, fd;

  for (i = 0; i < 100; i++) {
    if (getrandom (&r, sizeof r, 0) != sizeof r)
      return -1;
    if (asprintf (tmp, "%s.new.%016" PRIx64, name, r) == -1) {
      *tmp = NULL;
      errno = ENOMEM;
      return -1;
    }
    fd = openat (dirfd, *tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW |
                 O_CLOEXEC, 0600);
    if (fd >= 0 || errno != EEXIST)
      return fd;
    free (*tmp);
    *tmp = NULL;
  }
  return -1;
}

/* Write zeros over the first SIZE bytes of FD. */
static int
file_zero (int fd, uint64_t size)
{
  char *zeros = calloc (1, BOUNCE_BYTES);
  uint64_t off;
  int r = 0;

  if (zeros == NULL)
    return -1;
  for (off = 0; off < size && r == 0; off += BOUNCE_BYTES) {
    size_t n = size - off < BOUNCE_BYTES ? size - off : BOUNCE_BYTES;

    if (pwrite (fd, zeros, n, off) != (ssize_t) n)
      r = -1;
  }
  free (zeros);
  return r;
}

/* Make a new file for G as NAME in DIRFD (PATH): a temporary file,
 * filled, renamed.  It never replaces a file that appeared meanwhile:
 * that one is then opened and judged like any other.
 */
static int
file_create (int dirfd, const char *name, const char *path,
             const struct storefile_geometry *g, char **errmsg)
{
  struct header h;
  char *tmp = NULL;
  int fd = -1, e;

  header_make (&h, g);
  fd = file_create_tmp (dirfd, name, &tmp);
  if (fd == -1)
    goto err;
  /* Allocate it all now: a full tmpfs must refuse the start, not kill
   * the process with SIGBUS at a write.
   */
  if ((e = posix_fallocate (fd, 0, h.file_size)) != 0) {
    errno = e;
    goto err;
  }
  /* A durable file is written in full once: a commit's fdatasync then
   * never has to turn allocated-but-unwritten extents into written ones
   * (a filesystem journal commit, a second device flush, on every commit
   * that reaches a page for the first time).
   */
  if (g->durable && file_zero (fd, h.file_size) == -1)
    goto err;
  if (pwrite (fd, &h, sizeof h, 0) != (ssize_t) sizeof h)
    goto err;
  /* A durable file must outlive a power cut from its first commit on:
   * its blocks and header first, then (below) its name.
   */
  if (g->durable && fsync (fd) == -1)
    goto err;
  if (close (fd) == -1) {
    fd = -1;
    goto err;
  }
  fd = -1;
  if (renameat2 (dirfd, tmp, dirfd, name, RENAME_NOREPLACE) == -1 &&
      (errno != EEXIST || unlinkat (dirfd, tmp, 0) == -1))
    goto err;
  if (g->durable) {
    /* dirfd is an O_PATH descriptor: fsync needs one that reads. */
    int d = openat (dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (d == -1 || fsync (d) == -1) {
      e = errno;
      if (d >= 0)
        close (d);
      errno = e;
      goto err;
    }
    close (d);
  }
  free (tmp);
  return 0;

 err:
  e = errno;
  if (fd >= 0)
    close (fd);
  if (tmp)
    unlinkat (dirfd, tmp, 0);
  if (asprintf (errmsg, "%s: cannot create the store file (%" PRIu64
                " bytes): %s", path, h.file_size, strerror (e)) == -1)
    *errmsg = NULL;
  free (tmp);
  return -1;
}

static uint32_t
geometry_version (const struct storefile_geometry *g)
{
  return g->durable ? STOREFILE_VERSION_DURABLE : STOREFILE_VERSION;
}

static int
geometry_matches (const struct header *h, const struct storefile_geometry *g)
{
  return h->version == geometry_version (g) &&
    h->size == g->size && h->nslots == g->nslots &&
    strcmp (h->id, g->id) == 0;
}

/* The refusal of a file that holds NRECS records (RECS) and does not
 * match G (G->size 0: the device size is not known yet).
 */
static void
geometry_refuse (const char *path, const struct header *h,
                 const struct storefile_geometry *g,
                 const struct storefile_rec *recs, size_t nrecs,
                 char **errmsg)
{
  uint64_t bytes = 0;
  size_t i;

  for (i = 0; i < nrecs; i++)
    bytes += (uint64_t) recs[i].count * STORE_BLOCK_SIZE;
  if (h->version >= STOREFILE_VERSION && h->version != geometry_version (g)) {
    if (asprintf (errmsg, "%s holds %zu records (up to %" PRIu64 " dirty "
                  "bytes) written with async-flush=%s: start once with "
                  "async-flush=%s to write them back", path, nrecs, bytes,
                  h->version == STOREFILE_VERSION_DURABLE ? "store" : "ram",
                  h->version == STOREFILE_VERSION_DURABLE ? "store" : "ram")
        == -1)
      *errmsg = NULL;
  }
  else if (h->version < STOREFILE_VERSION) {
    if (asprintf (errmsg, "%s holds %zu records (up to %" PRIu64 " dirty "
                  "bytes) in store file version %" PRIu32 " (this build "
                  "writes version %d): refusing to use it; write it back "
                  "with the abd that made it", path, nrecs, bytes,
                  h->version, STOREFILE_VERSION) == -1)
      *errmsg = NULL;
  }
  else if (g->size == 0 && strcmp (h->id, g->id) != 0) {
    if (asprintf (errmsg, "%s holds %zu records (up to %" PRIu64 " dirty "
                  "bytes) of another device (id '%s'); this device has "
                  "id '%s': refusing to write them here; start with the "
                  "device they belong to", path, nrecs, bytes, h->id,
                  g->id) == -1)
      *errmsg = NULL;
  }
  else if (g->size != 0 &&
           (h->size != g->size || strcmp (h->id, g->id) != 0)) {
    if (asprintf (errmsg, "%s holds %zu records (up to %" PRIu64 " dirty "
                  "bytes) of another device (size %" PRIu64 ", id '%s'); "
                  "this device has size %" PRIu64 ", id '%s': refusing "
                  "to write them here; start with the device they "
                  "belong to", path, nrecs, bytes, h->size, h->id,
                  g->size, g->id) == -1)
      *errmsg = NULL;
  }
  else if (asprintf (errmsg, "%s holds %zu records of dirty data and was "
                     "made with async-max-dirty=%" PRIu64 ", not %" PRIu64
                     ": start once with async-max-dirty=%" PRIu64 " to "
                     "write them back", path, nrecs,
                     (uint64_t) h->nslots * STORE_BLOCK_SIZE,
                     (uint64_t) g->nslots * STORE_BLOCK_SIZE,
                     (uint64_t) h->nslots * STORE_BLOCK_SIZE) == -1)
    *errmsg = NULL;
}

/* A file that is not private (privfile.h) is refused before anything in
 * it is read: its records say what to write to the device, so whoever
 * could write it could write the device through us (and read, change or
 * truncate our dirty data later).  Add to *ERRMSG what was not done.
 */
static void
private_refuse (char **errmsg)
{
  char *m;

  if (*errmsg == NULL)
    return;
  if (asprintf (&m, "%s; refusing to use it as the store file: nothing "
                "was read or written back", *errmsg) == -1)
    return;
  free (*errmsg);
  *errmsg = m;
}

/* Open PATH read-only if it is private: the descriptor,
 * PRIVFILE_MISSING (its directory is private, so it can be created), or
 * -1 with *ERRMSG.
 */
static int
private_open_ro (const char *path, char **errmsg)
{
  char *name;
  int dirfd, fd;

  *errmsg = NULL;
  dirfd = privfile_dir_open (path, &name, errmsg);
  if (dirfd == -1) {
    private_refuse (errmsg);
    return -1;
  }
  fd = privfile_open (dirfd, name, path, O_RDONLY, errmsg);
  if (fd == -1)
    private_refuse (errmsg);
  close (dirfd);
  free (name);
  return fd;
}

/*----------------------------------------------------------------------
 * The journal of a durable file (storefile.h has the format and the
 * crash argument).
 */

/* Where a transaction of NPAGES pages at BASE keeps its pages: right
 * after its header and its index, so that a small commit writes one run
 * of consecutive pages (one extent for its fdatasync to flush).
 */
static uint64_t
journal_pages_at (uint64_t base, uint64_t npages)
{
  return base + PAGE + page_round (npages * 8);
}

/* A transaction's header, at the start of its region. */
struct journal_header {
  char magic[8];                /* JOURNAL_MAGIC */
  uint64_t seq;                 /* the transaction's number, from 1 */
  uint64_t npages;
  uint64_t sum;                 /* XXH3 of the index, then the pages */
  uint64_t check;               /* XXH3 of everything above */
};

static uint64_t
journal_header_check (const struct journal_header *jh)
{
  return XXH3_64bits (jh, offsetof (struct journal_header, check));
}

/* A transaction read back from a region. */
struct journal_txn {
  uint64_t seq, npages;
  uint64_t *index;              /* malloc'd */
  uint64_t base;                /* the region's offset */
};

/* Read the transaction in region K of FD (layout J): 1 if it is whole
 * (its header, index and pages match their checksums, every page number
 * is in range), with *T filled; 0 if it is empty, torn or stale (it was
 * never committed: its fdatasync did not return); -1 on a read error.
 */
static int
journal_read (int fd, const struct journal_layout *j, int k, char *bounce,
              struct journal_txn *t)
{
  struct journal_header jh;
  XXH3_state_t *hash = NULL;
  uint64_t i, done;
  int r = 0;

  t->index = NULL;
  t->base = j->offset + (uint64_t) k * j->region_bytes;
  if (pread (fd, &jh, sizeof jh, t->base) != (ssize_t) sizeof jh)
    return -1;
  if (memcmp (jh.magic, JOURNAL_MAGIC, 8) != 0 ||
      jh.check != journal_header_check (&jh) ||
      jh.npages == 0 || jh.npages > j->npages)
    return 0;
  t->seq = jh.seq;
  t->npages = jh.npages;
  t->index = malloc (jh.npages * 8);
  hash = XXH3_createState ();
  if (t->index == NULL || hash == NULL) {
    errno = ENOMEM;
    r = -1;
    goto out;
  }
  if (pread (fd, t->index, jh.npages * 8, t->base + PAGE) !=
      (ssize_t) (jh.npages * 8)) {
    r = -1;
    goto out;
  }
  XXH3_64bits_reset (hash);
  XXH3_64bits_update (hash, t->index, jh.npages * 8);
  for (done = 0; done < jh.npages; ) {
    uint64_t n = jh.npages - done;

    if (n > BOUNCE_BYTES / PAGE)
      n = BOUNCE_BYTES / PAGE;
    if (pread (fd, bounce, n * PAGE,
               journal_pages_at (t->base, t->npages) + done * PAGE) !=
        (ssize_t) (n * PAGE)) {
      r = -1;
      goto out;
    }
    XXH3_64bits_update (hash, bounce, n * PAGE);
    done += n;
  }
  r = XXH3_64bits_digest (hash) == jh.sum;
  for (i = 0; r == 1 && i < jh.npages; i++)
    if (t->index[i] >= j->npages)
      r = 0;
 out:
  XXH3_freeState (hash);
  if (r != 1) {
    free (t->index);
    t->index = NULL;
  }
  return r;
}

/* Apply transaction T: hand each of its pages to APPLY (in order).
 * Returns 0, or -1 (errno) if a read or APPLY failed.
 */
static int
journal_apply (int fd, const struct journal_layout *j,
               const struct journal_txn *t, char *bounce,
               int (*apply) (void *ctx, uint64_t page, const char *data),
               void *ctx)
{
  uint64_t done, i;

  for (done = 0; done < t->npages; ) {
    uint64_t n = t->npages - done;

    if (n > BOUNCE_BYTES / PAGE)
      n = BOUNCE_BYTES / PAGE;
    if (pread (fd, bounce, n * PAGE,
               journal_pages_at (t->base, t->npages) + done * PAGE) !=
        (ssize_t) (n * PAGE))
      return -1;
    for (i = 0; i < n; i++)
      if (apply (ctx, t->index[done + i], bounce + i * PAGE) == -1)
        return -1;
    done += n;
  }
  return 0;
}

/* Replay the journal of durable file FD (header H): apply its whole
 * transactions, oldest first, through APPLY.  *NEXT_SEQ (if not NULL) is
 * the number the next transaction gets.  Returns 0, or -1 with *ERRMSG.
 */
static int
journal_replay (int fd, const struct header *h, const char *path,
                int (*apply) (void *ctx, uint64_t page, const char *data),
                void *ctx, uint64_t *next_seq, char **errmsg)
{
  struct journal_layout j;
  struct journal_txn t[2];
  char *bounce = malloc (BOUNCE_BYTES);
  int ok[2] = { 0, 0 }, k, first, r = -1;
  uint64_t max_seq = 0;

  journal_layout (h->records_offset, h->data_offset, h->nslots, &j);
  t[0].index = t[1].index = NULL;
  if (bounce == NULL) {
    errno = ENOMEM;
    goto out;
  }
  for (k = 0; k < 2; k++) {
    ok[k] = journal_read (fd, &j, k, bounce, &t[k]);
    if (ok[k] == -1)
      goto out;
    if (ok[k] && t[k].seq > max_seq)
      max_seq = t[k].seq;
  }
  first = ok[0] && ok[1] && t[1].seq < t[0].seq ? 1 : 0;
  for (k = first; k < first + 2; k++)
    if (ok[k % 2] &&
        journal_apply (fd, &j, &t[k % 2], bounce, apply, ctx) == -1)
      goto out;
  if (next_seq)
    *next_seq = max_seq + 1;
  r = 0;
 out:
  if (r == -1 && asprintf (errmsg, "%s: cannot replay the store file's "
                           "journal: %m", path) == -1)
    *errmsg = NULL;
  free (t[0].index);
  free (t[1].index);
  free (bounce);
  return r;
}

/* journal_replay's APPLY at start: a page goes to its place in the file. */
struct home_ctx {
  int fd;
  uint64_t home_offset;
};

static int
apply_to_file (void *ctx, uint64_t page, const char *data)
{
  struct home_ctx *c = ctx;

  return pwrite (c->fd, data, PAGE, c->home_offset + page * PAGE) == PAGE
    ? 0 : -1;
}

/* journal_replay's APPLY for a look that changes nothing: a page goes
 * into a private map of the file (from HOME_OFFSET).
 */
static int
apply_to_map (void *ctx, uint64_t page, const char *data)
{
  memcpy ((char *) ctx + page * PAGE, data, PAGE);
  return 0;
}

/* The file FD as its records say after a replay, changing nothing: a
 * private map of it up to its data's end (the caller unmaps
 * h->data_offset + nslots pages), with the journal applied for a durable
 * file.  NULL with *ERRMSG on failure.
 */
static char *
map_replayed (int fd, const struct header *h, const char *path,
              char **errmsg)
{
  size_t bytes = h->data_offset + (uint64_t) h->nslots * PAGE;
  char *map;

  map = mmap (NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  if (map == MAP_FAILED) {
    if (asprintf (errmsg, "%s: mmap: %m", path) == -1)
      *errmsg = NULL;
    return NULL;
  }
  if (h->version == STOREFILE_VERSION_DURABLE &&
      journal_replay (fd, h, path, apply_to_map, map + h->records_offset,
                      NULL, errmsg) == -1) {
    munmap (map, bytes);
    return NULL;
  }
  return map;
}

/* Set up the commits of durable file F (header H), after its replay. */
static int
durable_init (struct storefile *f, const struct header *h, uint64_t next_seq,
              char **errmsg)
{
  struct journal_layout j;

  journal_layout (h->records_offset, h->data_offset, h->nslots, &j);
  f->durable = true;
  f->skip_sync = getenv ("ABD_TEST_STORE_NO_FDATASYNC") != NULL;
  f->home_offset = j.home_offset;
  f->npages = j.npages;
  f->nrecord_pages = (h->data_offset - h->records_offset) / PAGE;
  f->journal_offset = j.offset;
  f->region_bytes = j.region_bytes;
  f->index_bytes = j.index_bytes;
  f->next_seq = next_seq;
  f->changed = calloc ((f->npages + 63) / 64, sizeof *f->changed);
  f->bounce = malloc (BOUNCE_BYTES);
  f->hash = XXH3_createState ();
  if (f->changed == NULL || f->bounce == NULL ||
      f->hash == NULL) {
    if (asprintf (errmsg, "%s: %s", f->path, strerror (ENOMEM)) == -1)
      *errmsg = NULL;
    return -1;
  }
  return 0;
}

static void
page_changed (struct storefile *f, uint64_t page)
{
  f->changed[page / 64] |= UINT64_C (1) << (page % 64);
}

void
storefile_touch (struct storefile *f, uint32_t slot)
{
  if (f->durable)
    page_changed (f, f->nrecord_pages + slot);
}

/* Write the pages of the index's [I, I+N) (consecutive page numbers) to
 * the transaction at position POS, from the map, and hash them.
 */
static int
commit_write_run (struct storefile *f, uint64_t base, uint64_t i, uint64_t n)
{
  const char *src = f->map + f->home_offset + f->index[i] * PAGE;
  uint64_t off = journal_pages_at (base, f->pending_n) + i * PAGE;

  XXH3_64bits_update (f->hash, src, n * PAGE);
  return pwrite (f->fd, src, n * PAGE, off) == (ssize_t) (n * PAGE) ? 0 : -1;
}

int
storefile_commit_begin (struct storefile *f)
{
  struct journal_header jh;
  uint64_t base, n = 0, w, i, run;

  f->pending = 0;
  if (!f->durable)
    return 0;
  if (f->failed) {
    errno = EIO;
    return -1;
  }
  /* The index holds as many page numbers as pages changed: grown, not
   * sized for the whole file (8 bytes a page: 2 GiB at 1 TiB of slots).
   */
  for (w = 0; w < (f->npages + 63) / 64; w++)
    n += __builtin_popcountll (f->changed[w]);
  if (n > f->index_cap) {
    uint64_t cap = n < f->npages / 2 ? 2 * n : f->npages;
    uint64_t *p = realloc (f->index, cap * sizeof *p);

    if (p == NULL)
      return -1;                /* ENOMEM; the pages stay marked */
    f->index = p;
    f->index_cap = cap;
  }
  n = 0;
  for (w = 0; w < (f->npages + 63) / 64; w++) {
    uint64_t bits = f->changed[w];

    while (bits) {
      f->index[n++] = w * 64 + __builtin_ctzll (bits);
      bits &= bits - 1;
    }
    f->changed[w] = 0;
  }
  if (n == 0)
    return 0;                   /* the last commit covers everything */
  base = f->journal_offset + (f->next_seq % 2) * f->region_bytes;
  f->pending_n = n;
  XXH3_64bits_reset (f->hash);
  XXH3_64bits_update (f->hash, f->index, n * 8);
  for (i = 0; i < n; i += run) {
    for (run = 1; i + run < n && f->index[i + run] == f->index[i] + run; run++)
      ;
    if (commit_write_run (f, base, i, run) == -1)
      goto fail;
  }
  if (pwrite (f->fd, f->index, n * 8, base + PAGE) != (ssize_t) (n * 8))
    goto fail;
  memset (&jh, 0, sizeof jh);
  memcpy (jh.magic, JOURNAL_MAGIC, 8);
  jh.seq = f->next_seq;
  jh.npages = n;
  jh.sum = XXH3_64bits_digest (f->hash);
  jh.check = journal_header_check (&jh);
  if (pwrite (f->fd, &jh, sizeof jh, base) != (ssize_t) sizeof jh)
    goto fail;
  f->pending = n;
  return 0;

 fail:
  f->failed = true;
  return -1;
}

int
storefile_commit_end (struct storefile *f)
{
  struct journal_txn t;
  struct journal_layout j;
  struct home_ctx c = { .fd = f->fd, .home_offset = f->home_offset };

  if (f->pending == 0)
    return 0;
  /* The transaction is durable, or this commit fails. */
  if (!f->skip_sync && fdatasync (f->fd) == -1)
    goto fail;
  /* Then its pages go to their place: made durable by the next commit's
   * fdatasync, before that one's transaction can overwrite this one's
   * region's neighbour (the regions alternate).
   */
  j.home_offset = f->home_offset;
  j.npages = f->npages;
  j.index_bytes = f->index_bytes;
  j.region_bytes = f->region_bytes;
  j.offset = f->journal_offset;
  t.seq = f->next_seq;
  t.npages = f->pending;
  t.index = f->index;
  t.base = f->journal_offset + (f->next_seq % 2) * f->region_bytes;
  if (journal_apply (f->fd, &j, &t, f->bounce, apply_to_file, &c) == -1)
    goto fail;
  f->next_seq++;
  f->commits++;
  f->committed_pages += f->pending;
  f->pending = 0;
  return 0;

 fail:
  f->failed = true;
  f->pending = 0;
  return -1;
}

uint64_t
storefile_commits (struct storefile *f)
{
  return f->commits;
}

uint64_t
storefile_committed_pages (struct storefile *f)
{
  return f->committed_pages;
}

struct storefile *
storefile_open (const char *path, const struct storefile_geometry *g,
                bool lock_memory, struct storefile_rec **recs, size_t *nrecs,
                char **errmsg)
{
  struct storefile *f;
  struct header h;
  struct stat st;
  bool created = false;
  char *name = NULL;
  int dirfd = -1;
  uint64_t next_seq = 1;

  *errmsg = NULL;
  *recs = NULL;
  *nrecs = 0;
  if (strlen (g->id) > STOREFILE_ID_MAX) {
    if (asprintf (errmsg, "the device id is longer than %d bytes",
                  STOREFILE_ID_MAX) == -1)
      *errmsg = NULL;
    return NULL;
  }
  f = calloc (1, sizeof *f);
  if (f == NULL || (f->path = strdup (path)) == NULL) {
    free (f);
    if (asprintf (errmsg, "%s: %s", path, strerror (ENOMEM)) == -1)
      *errmsg = NULL;
    return NULL;
  }
  f->fd = -1;
  dirfd = privfile_dir_open (path, &name, errmsg);
  if (dirfd == -1) {
    private_refuse (errmsg);
    goto fail;
  }

 again:
  f->fd = privfile_open (dirfd, name, path, O_RDWR, errmsg);
  if (f->fd == PRIVFILE_MISSING && !created) {
    f->fd = -1;
    if (file_create (dirfd, name, path, g, errmsg) == -1)
      goto fail;
    created = true;
    goto again;
  }
  if (f->fd == PRIVFILE_MISSING) {
    f->fd = -1;
    if (asprintf (errmsg, "%s: the new store file is gone", path) == -1)
      *errmsg = NULL;
    goto fail;
  }
  if (f->fd == -1) {
    private_refuse (errmsg);
    goto fail;
  }
  /* One process per file: a second one would overwrite the first's. */
  if (flock (f->fd, LOCK_EX | LOCK_NB) == -1) {
    if (asprintf (errmsg, "%s: the store file is in use by another process "
                  "(flock: %m)", path) == -1)
      *errmsg = NULL;
    goto fail;
  }
  if (fstat (f->fd, &st) == -1) {
    if (asprintf (errmsg, "%s: fstat: %m", path) == -1)
      *errmsg = NULL;
    goto fail;
  }
  if (header_read (f->fd, path, st.st_size, &h, errmsg) == -1)
    goto fail;
  /* A durable file: what its last commits left in the journal goes to
   * its place first (and is made durable there), so that the file says
   * what its last commit said.
   */
  if (h.version == STOREFILE_VERSION_DURABLE) {
    struct home_ctx c = { .fd = f->fd, .home_offset = h.records_offset };

    if (journal_replay (f->fd, &h, path, apply_to_file, &c, &next_seq,
                        errmsg) == -1)
      goto fail;
    if (fdatasync (f->fd) == -1) {
      if (asprintf (errmsg, "%s: fdatasync after the journal's replay: %m",
                    path) == -1)
        *errmsg = NULL;
      goto fail;
    }
  }
  /* The header, the records and the data; a durable file's is private:
   * only its commits write the file.
   */
  f->map_bytes = h.data_offset + (uint64_t) h.nslots * STORE_BLOCK_SIZE;
  f->map = mmap (NULL, f->map_bytes, PROT_READ | PROT_WRITE,
                 h.version == STOREFILE_VERSION_DURABLE
                 ? MAP_PRIVATE : MAP_SHARED, f->fd, 0);
  if (f->map == MAP_FAILED) {
    f->map = NULL;
    if (asprintf (errmsg, "%s: mmap: %m", path) == -1)
      *errmsg = NULL;
    goto fail;
  }
  f->records = (struct record *) (f->map + h.records_offset);
  f->data = f->map + h.data_offset;
  if (records_scan (&h, f->records, path, recs, nrecs, errmsg) == -1)
    goto fail;

  if (!geometry_matches (&h, g)) {
    if (*nrecs > 0) {
      geometry_refuse (path, &h, g, *recs, *nrecs, errmsg);
      goto fail;
    }
    /* Nothing in it: make it anew for this device. */
    munmap (f->map, f->map_bytes);
    f->map = NULL;
    close (f->fd);
    f->fd = -1;
    free (*recs);
    *recs = NULL;
    if (created || unlinkat (dirfd, name, 0) == -1) {
      if (asprintf (errmsg, "%s: cannot replace the clean store file: %s",
                    path, created ? "it changed meanwhile" : strerror (errno))
          == -1)
        *errmsg = NULL;
      goto fail;
    }
    goto again;
  }

  if (g->durable && durable_init (f, &h, next_seq, errmsg) == -1)
    goto fail;
  if (lock_memory && mlock (f->map, f->map_bytes) == -1) {
    if (asprintf (errmsg, "cannot lock the %zu bytes of %s in memory (%m): "
                  "raise the locked-memory limit (ulimit -l, LimitMEMLOCK=) "
                  "or lower async-max-dirty", f->map_bytes, path) == -1)
      *errmsg = NULL;
    goto fail;
  }
  close (dirfd);
  free (name);
  return f;

 fail:
  free (*recs);
  *recs = NULL;
  *nrecs = 0;
  storefile_close (f);
  if (dirfd >= 0)
    close (dirfd);
  free (name);
  return NULL;
}

int
storefile_check (const char *path, const struct storefile_geometry *g,
                 char **errmsg)
{
  struct storefile_geometry want = *g;
  struct storefile_rec *recs = NULL;
  size_t nrecs = 0;
  struct header h;
  struct stat st;
  char *map;
  int fd, r = -1;

  fd = private_open_ro (path, errmsg);
  if (fd == PRIVFILE_MISSING)
    return 0;                   /* it will be created */
  if (fd == -1)
    return -1;
  if (fstat (fd, &st) == -1) {
    if (asprintf (errmsg, "%s: fstat: %m", path) == -1)
      *errmsg = NULL;
    close (fd);
    return -1;
  }
  /* Whether another process holds it; released at once (close). */
  if (flock (fd, LOCK_EX | LOCK_NB) == -1) {
    if (asprintf (errmsg, "%s: the store file is in use by another process "
                  "(flock: %m)", path) == -1)
      *errmsg = NULL;
    close (fd);
    return -1;
  }
  if (header_read (fd, path, st.st_size, &h, errmsg) == -1) {
    close (fd);
    return -1;
  }
  map = map_replayed (fd, &h, path, errmsg);
  if (map == NULL) {
    close (fd);
    return -1;
  }
  if (records_scan (&h, (struct record *) (map + h.records_offset), path,
                    &recs, &nrecs, errmsg) == 0) {
    if (want.size == 0)
      want.size = h.size;       /* not known yet */
    if (nrecs > 0 && !geometry_matches (&h, &want))
      geometry_refuse (path, &h, g, recs, nrecs, errmsg);
    else
      r = 0;
  }
  free (recs);
  munmap (map, h.data_offset + (uint64_t) h.nslots * STORE_BLOCK_SIZE);
  close (fd);
  return r;
}

void
storefile_close (struct storefile *f)
{
  if (f == NULL)
    return;
  if (f->map)
    munmap (f->map, f->map_bytes);
  if (f->fd >= 0)
    close (f->fd);              /* releases the flock */
  free (f->changed);
  free (f->index);
  free (f->bounce);
  XXH3_freeState (f->hash);
  free (f->path);
  free (f);
}

char *
storefile_data (struct storefile *f)
{
  return f->data;
}

const char *
storefile_path (struct storefile *f)
{
  return f->path;
}

void
storefile_put (struct storefile *f, uint32_t index, uint64_t seq,
               uint64_t blk, uint32_t count, uint32_t slot, uint32_t kind)
{
  struct record *pair = &f->records[2 * (size_t) index];
  /* Overwrite the older (or empty) copy; the newer stays valid meanwhile. */
  struct record *r = pair[0].seq <= pair[1].seq ? &pair[0] : &pair[1];
  struct record *old = r == &pair[0] ? &pair[1] : &pair[0];

  __atomic_store_n (&r->seq, 0, __ATOMIC_RELAXED);
  __atomic_thread_fence (__ATOMIC_RELEASE);   /* seq 0 before the fields */
  r->blk = blk;
  r->count = count;
  r->slot = slot;
  r->kind = kind;
  r->check = record_check (seq, blk, count, slot, kind);
  /* The data and the fields before the record counts. */
  __atomic_store_n (&r->seq, seq, __ATOMIC_RELEASE);
  /* The newer copy wins already; the older one goes. */
  __atomic_store_n (&old->seq, 0, __ATOMIC_RELEASE);
  if (f->durable) {
    uint32_t i;

    page_changed (f, (uint64_t) index * 2 * sizeof *r / PAGE);
    if (kind == STORE_DATA)
      for (i = 0; i < count; i++)
        page_changed (f, f->nrecord_pages + slot + i);
  }
}

void
storefile_clear (struct storefile *f, uint32_t index)
{
  struct record *pair = &f->records[2 * (size_t) index];
  int older = pair[0].seq <= pair[1].seq ? 0 : 1;

  /* The older first: never let a stale copy become the newest. */
  __atomic_store_n (&pair[older].seq, 0, __ATOMIC_RELEASE);
  __atomic_store_n (&pair[1 - older].seq, 0, __ATOMIC_RELEASE);
  if (f->durable)
    page_changed (f, (uint64_t) index * 2 * sizeof *pair / PAGE);
}

/*----------------------------------------------------------------------
 * abdctl store-info.
 */

static int
rec_cmp_blk (const void *a, const void *b)
{
  const struct storefile_rec *x = a, *y = b;

  return x->blk < y->blk ? -1 : x->blk > y->blk;
}

int
storefile_describe (const char *path, FILE *fp)
{
  static const char *const kinds[] = { "data", "zero", "trim" };
  struct header h;
  struct stat st;
  struct storefile_rec *recs = NULL;
  size_t nrecs = 0, i, per_kind[3] = { 0, 0, 0 };
  uint64_t dirty = 0, end = 0, max_seq = 0;
  char *errmsg = NULL, *map;
  int fd;

  fd = private_open_ro (path, &errmsg);
  if (fd == PRIVFILE_MISSING) {
    fprintf (stderr, "%s: %s\n", path, strerror (ENOENT));
    return -1;
  }
  if (fd == -1) {
    fprintf (stderr, "%s\n", errmsg ? errmsg : "out of memory");
    free (errmsg);
    return -1;
  }
  if (fstat (fd, &st) == -1) {
    if (asprintf (&errmsg, "%s: fstat: %m", path) == -1)
      errmsg = NULL;
    goto err;
  }
  if (header_read (fd, path, st.st_size, &h, &errmsg) == -1)
    goto err;
  map = map_replayed (fd, &h, path, &errmsg);
  if (map == NULL)
    goto err;
  if (records_scan (&h, (struct record *) (map + h.records_offset), path,
                    &recs, &nrecs, &errmsg) == -1) {
    munmap (map, h.data_offset + (uint64_t) h.nslots * STORE_BLOCK_SIZE);
    goto err;
  }
  munmap (map, h.data_offset + (uint64_t) h.nslots * STORE_BLOCK_SIZE);
  close (fd);

  /* Records overlap only after a crash inside an operation: count each
   * block once.
   */
  qsort (recs, nrecs, sizeof *recs, rec_cmp_blk);
  for (i = 0; i < nrecs; i++) {
    uint64_t b0 = recs[i].blk, b1 = recs[i].blk + recs[i].count;

    per_kind[recs[i].kind]++;
    if (recs[i].seq > max_seq)
      max_seq = recs[i].seq;
    if (b0 < end)
      b0 = end;
    if (b1 > b0) {
      dirty += (b1 - b0) * STORE_BLOCK_SIZE;
      end = b1;
    }
  }
  if (dirty > 0 && end * STORE_BLOCK_SIZE > h.size)
    dirty -= end * STORE_BLOCK_SIZE - h.size;   /* short last block */

  fprintf (fp, "path: %s\n", path);
  fprintf (fp, "format: abd-async-store\n");
  fprintf (fp, "version: %" PRIu32 "\n", h.version);
  fprintf (fp, "device_size: %" PRIu64 "\n", h.size);
  fprintf (fp, "device_id: %s\n", h.id);
  fprintf (fp, "block_size: %" PRIu32 "\n", h.block_size);
  fprintf (fp, "max_dirty_bytes: %" PRIu64 "\n",
           (uint64_t) h.nslots * STORE_BLOCK_SIZE);
  fprintf (fp, "file_size: %" PRIu64 "\n", h.file_size);
  fprintf (fp, "state: %s\n", nrecs ? "dirty" : "clean");
  fprintf (fp, "dirty_bytes: %" PRIu64 "\n", dirty);
  fprintf (fp, "records: %zu\n", nrecs);
  for (i = 0; i < 3; i++)
    fprintf (fp, "%s_records: %zu\n", kinds[i], per_kind[i]);
  fprintf (fp, "highest_seq: %" PRIu64 "\n", max_seq);
  free (recs);
  return 0;

 err:
  close (fd);
  fprintf (stderr, "%s\n", errmsg ? errmsg : "out of memory");
  free (errmsg);
  return -1;
}
