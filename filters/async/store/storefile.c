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

/* The header a file for G has. */
static void
header_make (struct header *h, const struct storefile_geometry *g)
{
  uint64_t records_bytes = (uint64_t) g->nslots * 2 * sizeof (struct record);

  memset (h, 0, sizeof *h);
  memcpy (h->magic, MAGIC, 8);
  h->version = STOREFILE_VERSION;
  h->block_size = STORE_BLOCK_SIZE;
  h->size = g->size;
  h->nslots = g->nslots;
  h->header_bytes = HEADER_BYTES;
  h->records_offset = HEADER_BYTES;
  h->data_offset = HEADER_BYTES + page_round (records_bytes);
  h->file_size = h->data_offset + (uint64_t) g->nslots * STORE_BLOCK_SIZE;
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
  if (h->version < 1 || h->version > STOREFILE_VERSION) {
    if (asprintf (errmsg, "%s: unknown store file version %" PRIu32 " (this "
                  "build knows version %d): refusing to use it; write it "
                  "back with the abd that made it", path, h->version,
                  STOREFILE_VERSION) == -1)
      *errmsg = NULL;
    return -1;
  }
  if (h->check != header_check (h) || h->id[STOREFILE_ID_MAX] != '\0')
    goto damaged;
  /* Everything else follows from size, nslots and id. */
  g.size = h->size;
  g.nslots = h->nslots;
  g.id = h->id;
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
  if (pwrite (fd, &h, sizeof h, 0) != (ssize_t) sizeof h)
    goto err;
  if (close (fd) == -1) {
    fd = -1;
    goto err;
  }
  fd = -1;
  if (renameat2 (dirfd, tmp, dirfd, name, RENAME_NOREPLACE) == -1 &&
      (errno != EEXIST || unlinkat (dirfd, tmp, 0) == -1))
    goto err;
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

static int
geometry_matches (const struct header *h, const struct storefile_geometry *g)
{
  return h->version == STOREFILE_VERSION &&
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
  if (h->version != STOREFILE_VERSION) {
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
  f->map_bytes = h.file_size;
  f->map = mmap (NULL, f->map_bytes, PROT_READ | PROT_WRITE, MAP_SHARED,
                 f->fd, 0);
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
  map = mmap (NULL, h.file_size, PROT_READ, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED) {
    if (asprintf (errmsg, "%s: mmap: %m", path) == -1)
      *errmsg = NULL;
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
  munmap (map, h.file_size);
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
}

void
storefile_clear (struct storefile *f, uint32_t index)
{
  struct record *pair = &f->records[2 * (size_t) index];
  int older = pair[0].seq <= pair[1].seq ? 0 : 1;

  /* The older first: never let a stale copy become the newest. */
  __atomic_store_n (&pair[older].seq, 0, __ATOMIC_RELEASE);
  __atomic_store_n (&pair[1 - older].seq, 0, __ATOMIC_RELEASE);
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
  map = mmap (NULL, h.file_size, PROT_READ, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED) {
    if (asprintf (&errmsg, "%s: mmap: %m", path) == -1)
      errmsg = NULL;
    goto err;
  }
  if (records_scan (&h, (struct record *) (map + h.records_offset), path,
                    &recs, &nrecs, &errmsg) == -1) {
    munmap (map, h.file_size);
    goto err;
  }
  munmap (map, h.file_size);
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
