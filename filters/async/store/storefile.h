/* SPDX-License-Identifier: BSD-3-Clause */
/* abd async filter: the store file, where dirty data outlives the process.
 *
 * With async-store-file=PATH the store's data arena and a record of every
 * entry live in a file mapped MAP_SHARED (on tmpfs: /run, /dev/shm), or,
 * durable (async-flush=store, below), mapped private and committed to a
 * disk.  The
 * page cache keeps what the process wrote there when the process dies
 * (SIGKILL, abort, OOM kill), so the next start finds every acknowledged
 * byte and writes it back before it serves.  Nothing is fsync'd: a reboot
 * or a power cut clears tmpfs, exactly as it clears RAM.
 *
 * Layout (version 2, little-endian, all offsets page-aligned):
 *
 *   header     4096 bytes: magic "ABDSTOR1", version, block size, device
 *              size, number of slots, offsets, the device id given by
 *              async-store-id=, and an XXH3 checksum of all of it.
 *              Written once, into a temporary file renamed into place:
 *              a header is whole or absent.
 *   records    two 32-byte copies per entry of the store's entry pool
 *              (entry i owns copies 2i and 2i+1): seq, first block,
 *              blocks, slot, kind, check.  seq 0 means empty.  A data
 *              record covers 1 to STOREFILE_EXTENT_MAX blocks in as many
 *              consecutive slots from its slot (version 1: one block; a
 *              file of version 1 is recreated if it holds no record and
 *              refused if it holds some).
 *   data       one 4096-byte slot per block of async-max-dirty.
 *
 * Crash consistency, when a SIGKILL can stop the process between any two
 * instructions (only the order of stores within the process matters; a
 * store that executed is in the page cache):
 * - A record copy is written as: seq = 0; (release fence) the fields and
 *   their check; seq = S (release store).  So a copy whose seq is not 0
 *   is complete, and its check must match: a mismatch is damage, not a
 *   crash.
 * - An entry's record is changed by writing its other copy with a new,
 *   higher seq, then clearing the old copy: of two valid copies of one
 *   entry the higher seq wins.
 * - Data is copied into its slot before the record that points to the
 *   slot is published (release), and a record is retired (seq = 0) only
 *   after its blocks are written back and the lower device flushed, or
 *   after a newer record covers the same blocks.  A slot is reused only
 *   after its record was retired.
 * - When records overlap (the process died inside an operation that
 *   replaces one entry by others), the record with the higher seq wins,
 *   block by block: replacements are published before what they replace
 *   is retired (the store keeps this order), so every block shows either
 *   its acknowledged content or that of the write in progress.  Two
 *   records may name one slot only for the same block (a merge of two
 *   extents publishes the merged record before it retires the other).
 * A client write updates a data slot in place: if the process dies in the
 * middle, that block holds part of the unacknowledged write, as a disk
 * would.
 *
 * A durable file (async-flush=store, version 3: on a disk, where the page
 * cache writes pages back in any order, so the order of stores above
 * means nothing after a power cut) adds two journal regions after the
 * data, each big enough for every page from the records on (a 4 KiB
 * header: magic "ABDJRNL1", seq, page count, XXH3 of the index and the
 * pages, XXH3 of the header; an index of 8-byte page numbers; the pages,
 * consecutive from the header on).
 * - The map is MAP_PRIVATE: nothing reaches the file but commits.
 *   storefile_put, storefile_clear and storefile_touch note the pages
 *   they change.
 * - Commit N (storefile_commit_begin under the store's lock, so the pages
 *   are a state the store was in between two operations; _end without
 *   it): the changed pages, the index and the header go to region N % 2;
 *   one fdatasync; only then is the flush acknowledged; then the pages
 *   are copied to their home places, without a sync of their own.
 * - A torn or stale transaction fails its checksums and is ignored: one
 *   that is used was whole when its fdatasync returned.
 * - Commit N overwrites commit N-2's region after commit N-1's fdatasync
 *   returned, which was issued after N-2's home copy: N-2 is durable at
 *   home and no longer needed; N-1, whose home copy may be incomplete,
 *   is in the other region.
 * - Replay (storefile_open; in memory for storefile_check and
 *   storefile_describe) applies the whole transactions, older first, then
 *   fdatasyncs: the home pages say what the last whole commit said, and
 *   the rules above load them as for a tmpfs file.
 * The argument in full, with what a power cut loses: the man page,
 * "Durable store file".
 */

#ifndef ABD_ASYNC_STOREFILE_H
#define ABD_ASYNC_STOREFILE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define STOREFILE_VERSION 2
#define STOREFILE_VERSION_DURABLE 3     /* version 2 + the journal */
#define STOREFILE_ID_MAX 255            /* bytes of async-store-id */
#define STOREFILE_EXTENT_MAX 16         /* blocks of a data record */

/* What the store expects the file to describe. */
struct storefile_geometry {
  uint64_t size;                /* device size in bytes */
  uint32_t nslots;              /* data blocks (= entries) */
  const char *id;               /* device id, "" if none */
  bool durable;                 /* async-flush=store: version 3, with a
                                 * journal, committed by storefile_commit */
};

/* One valid record, as read from the file. */
struct storefile_rec {
  uint32_t index;               /* the entry that owns it */
  uint64_t seq;
  uint64_t blk;
  uint32_t count;               /* blocks */
  uint32_t slot;                /* STORE_DATA: its slot, else UINT32_MAX */
  uint32_t kind;                /* enum store_kind */
};

struct storefile;

/* Open PATH (create it if missing), check it, lock it against a second
 * process (flock), map it and, with LOCK_MEMORY, mlock the mapping.  A
 * file that is not private (common/privfile.h: a symlink, not ours, group
 * or other bits, in a directory others may write to) is refused before
 * anything in it is read: whoever could write it could write the device
 * through us.  A file that is damaged, truncated, of another format or version, or that
 * holds records for another device (size or id) or another geometry, is
 * refused with *ERRMSG (malloc'd) and left as it is.  A file holding no
 * record is recreated for G if it does not match.  On success *RECS
 * (malloc'd, *NRECS long) holds its valid records, checked: inside the
 * device, slots in range and used once, no damaged copy.
 */
struct storefile *storefile_open (const char *path,
                                  const struct storefile_geometry *g,
                                  bool lock_memory,
                                  struct storefile_rec **recs, size_t *nrecs,
                                  char **errmsg);
void storefile_close (struct storefile *f);

/* Check the file at PATH as storefile_open would, changing and keeping
 * nothing: for .get_ready, so that a bad file stops nbdkit before it
 * forks.  G->size 0 means the device size is not known yet (it is
 * checked by storefile_open).  A missing file is fine if its directory
 * exists.  Returns 0, or -1 with *ERRMSG (malloc'd).
 */
int storefile_check (const char *path, const struct storefile_geometry *g,
                     char **errmsg);

/* The size of a file for NSLOTS slots: the header, the records and the
 * data (what storefile_open maps and, with LOCK_MEMORY, locks).
 */
uint64_t storefile_size (uint32_t nslots);

/* The data arena: nslots blocks. */
char *storefile_data (struct storefile *f);
const char *storefile_path (struct storefile *f);

/* Publish entry INDEX's record with sequence number SEQ (higher than any
 * before it), after its data is in place.
 */
void storefile_put (struct storefile *f, uint32_t index, uint64_t seq,
                    uint64_t blk, uint32_t count, uint32_t slot,
                    uint32_t kind);

/* Retire entry INDEX's record. */
void storefile_clear (struct storefile *f, uint32_t index);

/* A durable file: the data of SLOT changed in place (storefile_put and
 * storefile_clear note their own pages).  Nothing for a tmpfs file.
 */
void storefile_touch (struct storefile *f, uint32_t slot);

/* A durable file: make every change made so far durable.  In two steps:
 * storefile_commit_begin, called under the same lock as storefile_put,
 * writes the changed pages to the next journal transaction (into the
 * page cache, at memory speed); storefile_commit_end, called without the
 * lock, fdatasyncs it and copies the pages to their place in the file.
 * The caller runs one commit at a time.  Each returns 0, or -1 with
 * errno set; after a failure every later commit fails (EIO): what the
 * kernel did with the pages is not known.  A file that is not durable
 * commits nothing and succeeds.
 */
int storefile_commit_begin (struct storefile *f);
int storefile_commit_end (struct storefile *f);

/* Commits done, pages they wrote (abdctl status). */
uint64_t storefile_commits (struct storefile *f);
uint64_t storefile_committed_pages (struct storefile *f);

/* abdctl store-info: print what the file at PATH holds to FP, without
 * changing it.  Returns 0, or -1 with a message on stderr when it is not
 * a valid store file or not private (the same rules as storefile_open).
 */
int storefile_describe (const char *path, FILE *fp);

#endif /* ABD_ASYNC_STOREFILE_H */
