/* SPDX-License-Identifier: BSD-3-Clause */
/* libFuzzer target: reading a warm-restart state file
 * (filters/memcache/state.c, memcache-state-file=).
 *
 * The file is checked for its length and its HMAC before any field is
 * used, so random bytes stop at the MAC.  To explore what lies behind
 * it, this target plays the process that wrote the file: it gives the
 * input the right magic, versions and key check, makes the expected
 * identity (memcache-id hash, servers, block size) match what the input
 * says, appends a valid MAC, and then lets state_take and state_start read
 * it.  Checked beyond memory safety: every block version restored is in
 * the version table's range and not 0, and no more servers' generations
 * are restored than the process has.
 */

#include <config.h>

#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "health.h"
#include "le.h"
#include "log.h"
#include "marker.h"
#include "params.h"
#include "state.h"
#include "value.h"
#include "writeseq.h"

/* What state.c calls in the rest of the filter. */
void nbdkit_error (const char *fs, ...) { }
void nbdkit_debug (const char *fs, ...) { }
uint64_t value_nonce_used (void) { return 0; }
uint64_t health_generation (size_t i) { return 0; }
uint64_t writeseq_version_slot (size_t slot) { return 0; }
void abd_log (int priority, const char *label, const char *fs, ...) { }
/* The servers' markers (marker.c) always agree: the file alone decides. */
int marker_init (const unsigned char secret[VALUE_SECRET_SIZE],
                 uint64_t id_hash) { return 0; }
void marker_free (void) { }
bool
marker_check (const struct ring *ring,
              const unsigned char stop_id[MARKER_STOP_ID_SIZE],
              const char **reason)
{
  return true;
}
size_t marker_set_in_use (const struct ring *ring) { return ring->n; }
int
marker_set_stopped (const struct ring *ring,
                    unsigned char stop_id[MARKER_STOP_ID_SIZE])
{
  return ring->n;
}

static size_t expected_servers;

void
health_restore_generation (size_t i, uint64_t gen)
{
  if (i >= expected_servers)
    abort ();
}

void
writeseq_version_slot_set (size_t slot, uint64_t version)
{
  if (slot >= WRITESEQ_VERSIONS || version == 0)
    abort ();
}

#define HEADER 120              /* state.c's STATE_HEADER_SIZE */
#define MAC 32
#define FILE_MAX (HEADER + 8 * MEMCACHE_SERVERS_MAX + 4 + 12 * 4096 + MAC)

static void
hmac (unsigned char out[32], const unsigned char *key, size_t key_len,
      const void *data, size_t len)
{
  unsigned int n = 32;

  if (HMAC (EVP_sha256 (), key, key_len, data, len, out, &n) == NULL)
    abort ();
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static const unsigned char secret[VALUE_SECRET_SIZE] =
    "fuzz-state secret, 32 bytes....";
  static const char servers[] = "127.0.0.1:11211";
  static char dir[4096], path[4096 + 8];
  static unsigned char buf[FILE_MAX];
  static bool ready;
  static struct ring fake_ring; /* for the markers' stubs: its size */
  unsigned char key[32];
  struct state_expect expect;
  uint64_t epoch = 0, nonce_used = 0;
  const char *reason;
  size_t len;
  int fd;

  if (!ready) {                 /* a private directory under $TMPDIR */
    const char *tmpdir = getenv ("TMPDIR");

    snprintf (dir, sizeof dir, "%s/fuzz-state.XXXXXX",
              tmpdir && *tmpdir ? tmpdir : "/tmp");
    if (mkdtemp (dir) == NULL)
      abort ();
    snprintf (path, sizeof path, "%s/state", dir);
    ready = true;
  }
  len = size < HEADER ? HEADER : size;
  if (len > FILE_MAX - MAC)
    len = FILE_MAX - MAC;
  memset (buf, 0, HEADER);
  memcpy (buf, data, size < len ? size : len);

  /* What the writer puts there: magic, versions, the key check, the
   * SHA-256 of memcache-servers.
   */
  memcpy (buf, "ABDMCST\n", 8);
  le_put (buf + 8, 2, 4);   /* state.c's STATE_VERSION */
  le_put (buf + 12, VALUE_FORMAT_VERSION, 4);
  hmac (buf + 16, secret, sizeof secret, "abd memcache state key", 22);
  if (EVP_Digest (servers, strlen (servers), buf + 56, NULL, EVP_sha256 (),
                  NULL) != 1)
    abort ();
  hmac (key, secret, sizeof secret, "abd memcache state file", 23);
  hmac (buf + len, key, sizeof key, buf, len);

  /* The process the input says it was written for. */
  expect.id_hash = le_get (buf + 48, 8);
  expect.servers = servers;
  expect.nr_servers = le_get (buf + 88, 4) % (MEMCACHE_SERVERS_MAX + 1);
  expect.block_size = le_get (buf + 92, 4);
  expected_servers = expect.nr_servers;
  fake_ring.n = expect.nr_servers;
  expect.ring = &fake_ring;

  fd = open (path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd == -1 || write (fd, buf, len + MAC) != (ssize_t) (len + MAC) ||
      close (fd) == -1)
    abort ();
  if (state_take (path, secret, &expect) == 0 &&
      state_start (le_get (buf + 96, 8), &epoch, &nonce_used, &reason)) {
#ifdef FUZZ_STATE_SHOW
    fprintf (stderr, "warm: epoch %llu\n", (unsigned long long) epoch);
#endif
  }
  state_free ();
  unlink (path);                /* state_take removed it when it read it */
  return 0;
}
