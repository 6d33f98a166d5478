/* SPDX-License-Identifier: BSD-3-Clause */
/* nbdkit-memcache-filter: the warm-restart state file.
 *
 * Every start picks a new random epoch, and the value and name keys are
 * derived from it (value.c): nothing an earlier process stored is ever
 * found again, so a restart starts with a cold cache.  With
 * memcache-state-file=PATH (and memcache-key-file, so that the secret is
 * the same), a clean stop writes down what the next process needs to
 * trust the cache exactly as much as this one did at its end:
 *
 *   the epoch                 -> the same keys and key names
 *   the nonces used           -> no nonce is used twice under those keys
 *   each server's generation  -> the same keys; a server's cache that was
 *                                not trusted any more stays untrusted
 *                                (health_generation)
 *   the block versions        -> a value sealed before a block's last
 *                                write still fails to authenticate
 *
 * and what it was made for (the key file, memcache-id, memcache-servers
 * as written, the block size, the value format, the device size): a
 * start with anything else is cold.
 *
 * Invariant: a state file describes the cache as the process that wrote
 * it left it, and is used by at most one start.  So it is written only
 * after the last request and a flush of the lower device (.unload after
 * .cleanup), and a start removes it (and syncs the directory) before
 * anything is served, whatever it holds: after a crash there is no file,
 * and the next start is cold; a file cannot be used again after a start
 * that went on to write the device.  Its directory may be written only
 * by us (or root), so nobody can keep an old file aside and put it back.
 *
 * A backup or a snapshot still can, without anyone meaning to, and
 * nothing on this host can tell that copy from the original: it would
 * bring the block versions back, and a block written since the copy,
 * whose store or delete failed or whose old value is replayed, would
 * be served old.  So the witness of "used at most once" also lives on
 * the servers (marker.c): the stop stores a marker with a random stop
 * id on every server and writes the id here; state_start uses the file
 * only if every server holds that marker, and then, warm or cold,
 * replaces every marker with "in use" before anything is served.  What
 * that cannot see (a start in between that reached no server; a peer
 * replaying recorded markers while a copy is put back) is in marker.c
 * and the man page.  The nonces stay unique even then (each start
 * draws part of them, value.c).
 *
 * The file is authenticated with a key derived from the secret, so a
 * damaged or forged file, or one written with another key file, is not
 * used.
 *
 * The contract the file cannot check (nbdkit-memcache-filter(1)): while
 * nbdkit is stopped, nothing else writes the lower device.
 *
 * File format, little-endian:
 *
 *   offset  size
 *        0     8  magic "ABDMCST\n"
 *        8     4  format version (STATE_VERSION)
 *       12     4  value format version (VALUE_FORMAT_VERSION)
 *       16    32  key check: HMAC-SHA256 (secret, "abd memcache state key")
 *       48     8  id hash
 *       56    32  SHA-256 of memcache-servers, as written
 *       88     4  N, the number of servers
 *       92     4  block size
 *       96     8  device size
 *      104     8  epoch
 *      112     8  nonces used
 *      120    16  stop id: the servers' markers carry it (marker.c)
 *      136    8N  each server's generation
 *     +8N      4  M, the number of block versions that are not 0
 *       +4   12M  (slot: 4 bytes, version: 8 bytes) pairs, slots
 *                 ascending
 *     +12M    32  HMAC-SHA256 (state key, everything before)
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <nbdkit-filter.h>

#include "health.h"
#include "le.h"
#include "log.h"
#include "marker.h"
#include "params.h"
#include "state.h"
#include "writeseq.h"

#define STATE_VERSION 3         /* 1: 32-bit block versions; 2: no stop id */
#define STATE_PAIR_SIZE 12      /* a (slot, version) pair */
#define STATE_HEADER_SIZE 136
#define STATE_MAC_SIZE 32
/* A restart goes on with the nonce counter this much past the last one
 * the file says was used: a margin against any seal that could still
 * have happened after the count was read.
 */
#define STATE_NONCE_MARGIN (UINT64_C (1) << 32)

static const char state_magic[8] = { 'A', 'B', 'D', 'M', 'C', 'S', 'T', '\n' };

/* Set by state_take, read by state_start and state_save; all in
 * nbdkit's single-threaded phases (.get_ready, .after_fork, .unload).
 */
static const char *state_path;
static int state_dirfd = -1;
static struct state_expect state_expect;
static unsigned char state_key[32];        /* authenticates the file */
static unsigned char state_key_check[32];  /* tells the key file apart */
static unsigned char state_servers_hash[32];

/* What the file taken at start held, when it was made for this process. */
static struct {
  bool valid;
  const char *reason;           /* why not, when !valid */
  uint64_t size, epoch, nonce_used;
  unsigned char stop_id[MARKER_STOP_ID_SIZE];
  uint64_t *generations;
  uint32_t nr_versions;
  unsigned char *versions;      /* nr_versions (slot, version) pairs */
} taken = { .reason = "memcache-state-file is not set" };

static int
state_hmac (unsigned char out[32], const unsigned char *key, size_t key_len,
            const void *msg, size_t len)
{
  unsigned int out_len = 32;

  if (HMAC (EVP_sha256 (), key, key_len, msg, len, out, &out_len) == NULL ||
      out_len != 32) {
    nbdkit_error ("memcache-state-file: HMAC-SHA256 failed");
    return -1;
  }
  return 0;
}

/* The directory of PATH, opened for fsync; it must be ours or root's and
 * writable by nobody else, or whoever can write it could keep a state
 * file aside and put it back after a later start.
 */
static int
state_open_dir (const char *path)
{
  char *dir = strdup (path);
  char *slash;
  struct stat st;
  int fd;

  if (dir == NULL) {
    nbdkit_error ("strdup: %m");
    return -1;
  }
  slash = strrchr (dir, '/');
  if (slash == dir)
    slash[1] = '\0';
  else
    *slash = '\0';
  fd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd == -1) {
    nbdkit_error ("memcache-state-file=%s: directory %s: %m", path, dir);
    goto err;
  }
  if (fstat (fd, &st) == -1) {
    nbdkit_error ("memcache-state-file=%s: directory %s: %m", path, dir);
    goto err;
  }
  if (st.st_uid != geteuid () && st.st_uid != 0) {
    nbdkit_error ("memcache-state-file=%s: directory %s is owned by uid %u, "
                  "not by this process (uid %u) or root", path, dir,
                  (unsigned) st.st_uid, (unsigned) geteuid ());
    goto err;
  }
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    nbdkit_error ("memcache-state-file=%s: directory %s (mode %04o) is "
                  "writable by group or others: put the file in a "
                  "directory only this user may write to", path, dir,
                  (unsigned) (st.st_mode & 07777));
    goto err;
  }
  free (dir);
  return fd;

 err:
  if (fd >= 0)
    close (fd);
  free (dir);
  return -1;
}

/* Read the whole file into *BUF (*LEN bytes) if it exists: 1, 0 if it
 * does not, -1 after nbdkit_error if it is not a private regular file of
 * ours or cannot be read.
 */
static int
state_read (unsigned char **buf, size_t *len)
{
  const size_t max = STATE_HEADER_SIZE + 8 * MEMCACHE_SERVERS_MAX + 4 +
    STATE_PAIR_SIZE * (size_t) WRITESEQ_VERSIONS + STATE_MAC_SIZE;
  struct stat st;
  size_t done = 0;
  ssize_t r;
  int fd;

  *buf = NULL;
  fd = open (state_path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY |
             O_NONBLOCK);
  if (fd == -1 && errno == ENOENT)
    return 0;
  if (fd == -1 && errno == ELOOP) {
    nbdkit_error ("memcache-state-file=%s: a symlink; refusing to follow it",
                  state_path);
    return -1;
  }
  if (fd == -1 || fstat (fd, &st) == -1) {
    nbdkit_error ("memcache-state-file=%s: %m", state_path);
    goto err;
  }
  if (!S_ISREG (st.st_mode)) {
    nbdkit_error ("memcache-state-file=%s: not a regular file", state_path);
    goto err;
  }
  if (st.st_uid != geteuid () && st.st_uid != 0) {
    nbdkit_error ("memcache-state-file=%s: owned by uid %u, not by this "
                  "process (uid %u) or root", state_path,
                  (unsigned) st.st_uid, (unsigned) geteuid ());
    goto err;
  }
  if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    nbdkit_error ("memcache-state-file=%s: mode %04o lets group or others "
                  "at it: this filter writes it with mode 0600",
                  state_path, (unsigned) (st.st_mode & 07777));
    goto err;
  }
  /* A file too long to be ours is read only as far as that shows. */
  *len = (uint64_t) st.st_size > max ? max + 1 : (size_t) st.st_size;
  *buf = malloc (*len ? *len : 1);
  if (*buf == NULL) {
    nbdkit_error ("malloc: %m");
    goto err;
  }
  while (done < *len) {
    r = read (fd, *buf + done, *len - done);
    if (r == -1 && errno == EINTR)
      continue;
    if (r == -1) {
      nbdkit_error ("memcache-state-file=%s: %m", state_path);
      goto err;
    }
    if (r == 0)
      break;
    done += r;
  }
  *len = done;
  close (fd);
  return 1;

 err:
  if (fd >= 0)
    close (fd);
  free (*buf);
  *buf = NULL;
  return -1;
}

/* Check BUF (LEN bytes) and keep what it holds in TAKEN, or say in
 * taken.reason why it may not be used.
 */
static void
state_parse (const unsigned char *buf, size_t len)
{
  unsigned char mac[32];
  uint64_t n, m, i, prev_slot = 0;
  const unsigned char *p;

  if (len < STATE_HEADER_SIZE + 4 + STATE_MAC_SIZE ||
      memcmp (buf, state_magic, sizeof state_magic) != 0) {
    taken.reason = "the state file is damaged (not a state file)";
    return;
  }
  if (le_get (buf + 8, 4) != STATE_VERSION ||
      le_get (buf + 12, 4) != VALUE_FORMAT_VERSION) {
    taken.reason = "the state file is of another version";
    return;
  }
  if (CRYPTO_memcmp (buf + 16, state_key_check, 32) != 0) {
    taken.reason = "the state file was written with another key file";
    return;
  }
  n = le_get (buf + 88, 4);
  if (n > MEMCACHE_SERVERS_MAX ||
      len < STATE_HEADER_SIZE + 8 * n + 4 + STATE_MAC_SIZE) {
    taken.reason = "the state file is damaged (length)";
    return;
  }
  m = le_get (buf + STATE_HEADER_SIZE + 8 * n, 4);
  if (m > WRITESEQ_VERSIONS ||
      len != STATE_HEADER_SIZE + 8 * n + 4 + STATE_PAIR_SIZE * m +
      STATE_MAC_SIZE) {
    taken.reason = "the state file is damaged (length)";
    return;
  }
  if (state_hmac (mac, state_key, sizeof state_key, buf,
                  len - STATE_MAC_SIZE) == -1 ||
      CRYPTO_memcmp (mac, buf + len - STATE_MAC_SIZE, 32) != 0) {
    taken.reason = "the state file is damaged (checksum)";
    return;
  }

  /* Authentic: now, was it made for this process? */
  if (le_get (buf + 48, 8) != state_expect.id_hash) {
    taken.reason = "memcache-id changed";
    return;
  }
  if (memcmp (buf + 56, state_servers_hash, 32) != 0 ||
      n != state_expect.nr_servers) {
    taken.reason = "memcache-servers changed";
    return;
  }
  if (le_get (buf + 92, 4) != state_expect.block_size) {
    taken.reason = "memcache-block-size changed";
    return;
  }
  taken.size = le_get (buf + 96, 8);
  taken.epoch = le_get (buf + 104, 8);
  taken.nonce_used = le_get (buf + 112, 8);
  memcpy (taken.stop_id, buf + 120, MARKER_STOP_ID_SIZE);
  if (taken.nonce_used > UINT64_MAX - STATE_NONCE_MARGIN) {
    taken.reason = "the epoch's nonces are used up";
    return;
  }
  p = buf + STATE_HEADER_SIZE + 8 * n + 4;
  for (i = 0; i < m; i++) {
    uint64_t slot = le_get (p + STATE_PAIR_SIZE * i, 4);

    if (slot >= WRITESEQ_VERSIONS || (i > 0 && slot <= prev_slot) ||
        le_get (p + STATE_PAIR_SIZE * i + 4, 8) == 0) {
      taken.reason = "the state file is damaged (versions)";
      return;
    }
    prev_slot = slot;
  }
  taken.generations = malloc (n * sizeof *taken.generations + 1);
  taken.versions = malloc (STATE_PAIR_SIZE * m + 1);
  if (taken.generations == NULL || taken.versions == NULL) {
    taken.reason = "out of memory reading the state file";
    return;
  }
  for (i = 0; i < n; i++)
    taken.generations[i] = le_get (buf + STATE_HEADER_SIZE + 8 * i, 8);
  memcpy (taken.versions, p, STATE_PAIR_SIZE * m);
  taken.nr_versions = m;
  taken.valid = true;
}

int
state_take (const char *path, const unsigned char secret[VALUE_SECRET_SIZE],
            const struct state_expect *expect)
{
  static const char key_label[] = "abd memcache state file";
  static const char check_label[] = "abd memcache state key";
  unsigned char *buf;
  size_t len;
  int r;

  state_path = path;
  state_expect = *expect;
  if (state_hmac (state_key, secret, VALUE_SECRET_SIZE, key_label,
                  sizeof key_label - 1) == -1 ||
      state_hmac (state_key_check, secret, VALUE_SECRET_SIZE, check_label,
                  sizeof check_label - 1) == -1)
    return -1;
  if (marker_init (secret, expect->id_hash) == -1)
    return -1;
  if (EVP_Digest (expect->servers, strlen (expect->servers),
                  state_servers_hash, NULL, EVP_sha256 (), NULL) != 1) {
    nbdkit_error ("memcache-state-file: SHA-256 failed");
    return -1;
  }

  state_dirfd = state_open_dir (path);
  if (state_dirfd == -1)
    return -1;
  r = state_read (&buf, &len);
  if (r == -1)
    return -1;
  if (r == 0) {
    taken.reason = "no state file (first start, or the last stop was "
      "not clean)";
    nbdkit_debug ("memcache-state-file=%s: %s", path, taken.reason);
    return 0;
  }

  /* Used at most once: gone before anything is served. */
  if (unlink (path) == -1 || fsync (state_dirfd) == -1) {
    nbdkit_error ("memcache-state-file=%s: cannot remove it before "
                  "serving: %m", path);
    free (buf);
    return -1;
  }
  state_parse (buf, len);
  free (buf);
  if (!taken.valid)
    nbdkit_debug ("memcache-state-file=%s: %s", path, taken.reason);
  return 0;
}

bool
state_start (uint64_t size, uint64_t *epoch, uint64_t *nonce_used,
             const char **reason)
{
  const struct ring *ring = state_expect.ring;
  size_t marked;
  uint32_t i;

  if (taken.valid && taken.size != size) {
    taken.valid = false;
    taken.reason = "the device size changed";
  }
  /* The file is authentic and made for this process; is it the one the
   * last clean stop wrote, used by no start since (marker.c)?
   */
  if (taken.valid && !marker_check (ring, taken.stop_id, &taken.reason)) {
    taken.valid = false;
    abd_log (LOG_NOTICE, "memcache", "memcache-state-file=%s not used, "
             "cold start: %s", state_path, taken.reason);
  }

  /* Warm or cold, before anything is served: from now on this start
   * may write the device, so no copy of any state file written before
   * it may be used again.
   */
  marked = marker_set_in_use (ring);
  if (marked == 0)
    abd_log (LOG_WARNING, "memcache", "memcache-state-file: no server took "
             "this start's marker: if a copy of the state file (a backup, "
             "a snapshot) is put back later, it cannot be told from the "
             "original");
  else
    nbdkit_debug ("memcache-state-file: %zu of %zu servers marked in use",
                  marked, ring->n);

  if (!taken.valid) {
    *reason = taken.reason;
    return false;
  }
  for (i = 0; i < state_expect.nr_servers; i++)
    health_restore_generation (i, taken.generations[i]);
  for (i = 0; i < taken.nr_versions; i++)
    writeseq_version_slot_set (le_get (taken.versions + STATE_PAIR_SIZE * i,
                                       4),
                               le_get (taken.versions + STATE_PAIR_SIZE * i
                                       + 4, 8));
  *epoch = taken.epoch;
  *nonce_used = taken.nonce_used + STATE_NONCE_MARGIN;
  *reason = "the state file of the last clean stop, and every server's "
    "marker";
  nbdkit_debug ("memcache-state-file=%s: warm start, epoch %016" PRIx64
                ", %" PRIu32 " block versions", state_path, taken.epoch,
                taken.nr_versions);
  return true;
}

/* Write all of BUF to FD. */
static int
state_write_all (int fd, const unsigned char *buf, size_t len)
{
  ssize_t r;

  while (len > 0) {
    r = write (fd, buf, len);
    if (r == -1 && errno == EINTR)
      continue;
    if (r == -1)
      return -1;
    buf += r;
    len -= r;
  }
  return 0;
}

int
state_save (uint64_t epoch, uint64_t size, const struct ring *ring)
{
  size_t n = state_expect.nr_servers, m = 0, len, i, off;
  unsigned char stop_id[MARKER_STOP_ID_SIZE];
  unsigned char *buf = NULL;
  char *tmp = NULL;
  int fd = -1, r, marked;

  /* The markers first: a stop that dies between them and the file
   * leaves markers no file carries, and the next start is cold.
   */
  marked = marker_set_stopped (ring, stop_id);
  if (marked == -1)
    goto err;
  if ((size_t) marked < ring->n)
    nbdkit_error ("memcache-state-file=%s: %zu of %zu servers did not take "
                  "the stop marker: the next start is cold",
                  state_path, ring->n - marked, ring->n);
  for (i = 0; i < WRITESEQ_VERSIONS; i++)
    if (writeseq_version_slot (i) != 0)
      m++;
  len = STATE_HEADER_SIZE + 8 * n + 4 + STATE_PAIR_SIZE * m + STATE_MAC_SIZE;
  buf = malloc (len);
  if (buf == NULL) {
    nbdkit_error ("malloc: %m");
    goto err;
  }
  memcpy (buf, state_magic, sizeof state_magic);
  le_put (buf + 8, STATE_VERSION, 4);
  le_put (buf + 12, VALUE_FORMAT_VERSION, 4);
  memcpy (buf + 16, state_key_check, 32);
  le_put (buf + 48, state_expect.id_hash, 8);
  memcpy (buf + 56, state_servers_hash, 32);
  le_put (buf + 88, n, 4);
  le_put (buf + 92, state_expect.block_size, 4);
  le_put (buf + 96, size, 8);
  le_put (buf + 104, epoch, 8);
  le_put (buf + 112, value_nonce_used (), 8);
  memcpy (buf + 120, stop_id, MARKER_STOP_ID_SIZE);
  for (i = 0; i < n; i++)
    le_put (buf + STATE_HEADER_SIZE + 8 * i,
                  health_generation (i), 8);
  off = STATE_HEADER_SIZE + 8 * n;
  le_put (buf + off, m, 4);
  off += 4;
  for (i = 0; i < WRITESEQ_VERSIONS; i++) {
    uint64_t v = writeseq_version_slot (i);

    if (v != 0) {
      le_put (buf + off, i, 4);
      le_put (buf + off + 4, v, 8);
      off += STATE_PAIR_SIZE;
    }
  }
  if (state_hmac (buf + off, state_key, sizeof state_key, buf, off) == -1)
    goto err;

  /* A new file beside it, renamed over it: a stop that dies half way
   * leaves no file, or the whole one.
   */
  if (asprintf (&tmp, "%s.XXXXXX", state_path) == -1) {
    tmp = NULL;
    nbdkit_error ("asprintf: %m");
    goto err;
  }
  fd = mkostemp (tmp, O_CLOEXEC);
  if (fd == -1) {
    nbdkit_error ("memcache-state-file=%s: %s: %m", state_path, tmp);
    free (tmp);
    tmp = NULL;
    goto err;
  }
  if (state_write_all (fd, buf, len) == -1 || fsync (fd) == -1) {
    nbdkit_error ("memcache-state-file=%s: writing %s: %m", state_path, tmp);
    goto err;
  }
  r = close (fd);
  fd = -1;
  if (r == -1) {
    nbdkit_error ("memcache-state-file=%s: writing %s: %m", state_path, tmp);
    goto err;
  }
  if (rename (tmp, state_path) == -1) {
    nbdkit_error ("memcache-state-file=%s: %m", state_path);
    goto err;
  }
  if (fsync (state_dirfd) == -1) {
    /* Whether the file is there after a power cut is unknown; a start
     * that finds it uses it rightly, one that does not starts cold.
     */
    nbdkit_error ("memcache-state-file=%s: syncing its directory: %m",
                  state_path);
  }
  nbdkit_debug ("memcache-state-file=%s: written (epoch %016" PRIx64
                ", %zu block versions)", state_path, epoch, m);
  free (tmp);
  free (buf);
  return 0;

 err:
  if (fd >= 0)
    close (fd);
  if (tmp) {
    unlink (tmp);
    free (tmp);
  }
  free (buf);
  nbdkit_error ("memcache-state-file=%s: not written: the next start is "
                "cold", state_path);
  return -1;
}

void
state_free (void)
{
  OPENSSL_cleanse (state_key, sizeof state_key);
  marker_free ();
  free (taken.generations);
  free (taken.versions);
  taken.generations = NULL;
  taken.versions = NULL;
  taken.valid = false;
  if (state_dirfd >= 0)
    close (state_dirfd);
  state_dirfd = -1;
}
