/* SPDX-License-Identifier: BSD-3-Clause */
/* abd: unit test of the memcache filter's key names and sealed values
 * (filters/memcache/value.c), against what value.c promises.
 *
 * A value sealed for an identity opens to the same data, and only for
 * exactly that identity: any other device, epoch, generation, block,
 * block version, length or secret, any flipped bit, a truncated or
 * longer value, garbage and the previous format (version 1) are refused,
 * and a refused value leaves no byte of it in the output.  No plaintext
 * appears in a value; two seals of the same data differ.  Key names are
 * "abd3:" + 22 base64url digits, distinct for every block and generation,
 * show neither, and value_key_parse inverts them and nothing else.  The
 * secret file is refused unless it is private and exactly 32 bytes.
 * Block versions (writeseq.c) do not wrap where 32-bit ones did: a value
 * sealed under a block's version stops authenticating once the version
 * has been raised 2^32 times.  Nonces carry a part drawn at every start:
 * two starts from the same keys and counter (a state file put back from
 * a copy) do not use the same nonces.
 *
 * Every check prints what it expected and what it saw when it fails; the
 * test goes on and exits 1 if any check failed.
 *
 * Usage: test-memcache-value
 */

#include <config.h>

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nbdkit-filter.h>

#include "value.h"
#include "writeseq.h"

#define UNIT_NAME "test-memcache-value"
#include "unit-check.h"

#define DATA_MAX 4096
#define ID_HASH 0x0123456789abcdefULL
#define EPOCH 0xfedcba9876543210ULL

static const unsigned char secret[VALUE_SECRET_SIZE] = "abd test secret, 32 bytes long!";
static const struct value_ident base = {
  .id_hash = ID_HASH, .epoch = EPOCH, .generation = 3, .block = 4096,
  .version = 7,
};

static const char *
verdict_name (enum value_verdict v)
{
  switch (v) {
  case VALUE_OK: return "VALUE_OK";
  case VALUE_BAD_FORMAT: return "VALUE_BAD_FORMAT";
  case VALUE_BAD_AUTH: return "VALUE_BAD_AUTH";
  }
  return "(unknown verdict)";
}

static bool
all_zero (const unsigned char *p, size_t n)
{
  size_t i;

  for (i = 0; i < n; i++)
    if (p[i])
      return false;
  return true;
}

/* Open VALUE (LEN) for IDENT and DATA_LEN; check the verdict is WANT
 * and, if it is not VALUE_OK, that the output was zeroed.
 */
static void
check_open (const unsigned char *value, size_t len,
            const struct value_ident *ident, uint32_t data_len,
            enum value_verdict want, const char *what)
{
  static unsigned char out[DATA_MAX + 64];
  enum value_verdict got;

  memset (out, 0xa5, sizeof out);
  got = value_open (out, value, len, ident, data_len);
  CHECK (got == want, "%s: expected %s, got %s", what, verdict_name (want),
         verdict_name (got));
  if (got != VALUE_OK)
    CHECK (all_zero (out, data_len), "%s: refused, but output not zeroed",
           what);
}

static void
fill (unsigned char *data, size_t len, unsigned seed)
{
  size_t i;

  for (i = 0; i < len; i++)
    data[i] = (i * 131 + seed * 7 + (i >> 8)) & 0xff;
}

static void
test_roundtrip (void)
{
  static const uint32_t lens[] = { DATA_MAX, 512, 3000, 1, 0 };
  unsigned char data[DATA_MAX], out[DATA_MAX];
  unsigned char value[VALUE_OVERHEAD + DATA_MAX];
  unsigned char again[VALUE_OVERHEAD + DATA_MAX];
  size_t i;

  for (i = 0; i < sizeof lens / sizeof lens[0]; i++) {
    uint32_t len = lens[i];

    fill (data, len, i);
    CHECK (value_seal (value, &base, data, len) == 0, "seal %u bytes", len);
    CHECK (memcmp (value, "ABD2", 4) == 0, "magic of a %u-byte value", len);
    memset (out, 0, sizeof out);
    CHECK (value_open (out, value, VALUE_OVERHEAD + len, &base, len) ==
           VALUE_OK && memcmp (out, data, len) == 0,
           "%u bytes: sealed, then opened, differ", len);
    CHECK (value_seal (again, &base, data, len) == 0 &&
           memcmp (again, value, VALUE_OVERHEAD + len) != 0,
           "%u bytes sealed twice: expected different values", len);
  }
}

/* A marker written many times must not show in the value. */
static void
test_no_plaintext (void)
{
  static const char marker[] = "ABD-PLAINTEXT-MARKER";
  unsigned char data[DATA_MAX], value[VALUE_OVERHEAD + DATA_MAX];
  size_t i, m = strlen (marker);

  for (i = 0; i + m <= DATA_MAX; i += m)
    memcpy (data + i, marker, m);
  memset (data + i, 'x', DATA_MAX - i);
  CHECK (value_seal (value, &base, data, DATA_MAX) == 0, "seal marker");
  CHECK (memmem (value, sizeof value, marker, 8) == NULL,
         "the marker's plaintext shows in the sealed value");
  CHECK (memmem (value, sizeof value, "xxxxxxxx", 8) == NULL,
         "the tail's plaintext shows in the sealed value");
}

static void
test_wrong_ident (void)
{
  unsigned char data[DATA_MAX], value[VALUE_OVERHEAD + DATA_MAX];
  const size_t vlen = VALUE_OVERHEAD + DATA_MAX;
  struct value_ident other;

  fill (data, DATA_MAX, 1);
  CHECK (value_seal (value, &base, data, DATA_MAX) == 0, "seal");
  check_open (value, vlen, &base, DATA_MAX, VALUE_OK, "the right identity");

  other = base; other.id_hash ^= 1;
  check_open (value, vlen, &other, DATA_MAX, VALUE_BAD_AUTH, "other device");
  other = base; other.epoch ^= 1;
  check_open (value, vlen, &other, DATA_MAX, VALUE_BAD_AUTH, "other epoch");
  other = base; other.generation++;
  check_open (value, vlen, &other, DATA_MAX, VALUE_BAD_AUTH,
              "newer generation");
  other = base; other.block++;
  check_open (value, vlen, &other, DATA_MAX, VALUE_BAD_AUTH, "next block");
  other = base; other.version++;
  check_open (value, vlen, &other, DATA_MAX, VALUE_BAD_AUTH,
              "an older version of the block");
  check_open (value, vlen, &base, DATA_MAX - 1, VALUE_BAD_FORMAT,
              "expected one byte shorter");
  check_open (value, vlen - 1, &base, DATA_MAX - 1, VALUE_BAD_AUTH,
              "one byte shorter, as a shorter block");
  check_open (value, vlen, &base, 512, VALUE_BAD_FORMAT, "expected 512");

  /* Another secret: seal under it, open under ours. */
  CHECK (value_keys_init ((const unsigned char *)
                          "another secret, also 32 bytes!!", ID_HASH,
                          EPOCH) == 0, "keys for another secret");
  CHECK (value_seal (value, &base, data, DATA_MAX) == 0, "seal, other secret");
  CHECK (value_keys_init (secret, ID_HASH, EPOCH) == 0, "keys again");
  check_open (value, vlen, &base, DATA_MAX, VALUE_BAD_AUTH,
              "sealed under another secret");
}

static void
test_tampered (void)
{
  unsigned char data[DATA_MAX], value[VALUE_OVERHEAD + DATA_MAX + 16];
  const size_t vlen = VALUE_OVERHEAD + DATA_MAX;
  char what[64];
  size_t i;
  int bit;

  fill (data, DATA_MAX, 2);
  CHECK (value_seal (value, &base, data, DATA_MAX) == 0, "seal");
  for (i = 0; i < vlen; i += i < 64 || i >= vlen - 32 ? 1 : 61) {
    for (bit = 0; bit < 8; bit += 7) {
      value[i] ^= 1 << bit;
      snprintf (what, sizeof what, "byte %zu bit %d flipped", i, bit);
      check_open (value, vlen, &base, DATA_MAX,
                  i < 4 ? VALUE_BAD_FORMAT : VALUE_BAD_AUTH, what);
      value[i] ^= 1 << bit;
    }
  }
  check_open (value, vlen, &base, DATA_MAX, VALUE_OK, "flips undone");
  for (i = 0; i < vlen; i += i < VALUE_OVERHEAD ? 1 : 509) {
    snprintf (what, sizeof what, "truncated to %zu bytes", i);
    check_open (value, i, &base, DATA_MAX, VALUE_BAD_FORMAT, what);
  }
  memset (value + vlen, 0, 16);
  check_open (value, vlen + 1, &base, DATA_MAX, VALUE_BAD_FORMAT,
              "one byte appended");
  check_open (value, vlen + 16, &base, DATA_MAX, VALUE_BAD_FORMAT,
              "16 bytes appended");

  /* Data and tag swapped around, nonce zeroed, all zero, all ones. */
  memcpy (value + 4, "\0\0\0\0\0\0\0\0\0\0\0\0", 12);
  check_open (value, vlen, &base, DATA_MAX, VALUE_BAD_AUTH, "nonce zeroed");
  memset (value + 4, 0, vlen - 4);
  check_open (value, vlen, &base, DATA_MAX, VALUE_BAD_AUTH,
              "right magic, all zero");
  memset (value, 0xff, vlen);
  check_open (value, vlen, &base, DATA_MAX, VALUE_BAD_FORMAT, "all ones");
}

/* A version 1 value: the 56-byte header with an unkeyed checksum, then
 * the plaintext.  Whatever its length, it is refused.
 */
static void
test_old_format (void)
{
  unsigned char value[56 + DATA_MAX];

  memset (value, 0, sizeof value);
  memcpy (value, "ABDM", 4);
  value[4] = 1;
  value[6] = 56;
  fill (value + 56, DATA_MAX, 3);
  check_open (value, sizeof value, &base, DATA_MAX, VALUE_BAD_FORMAT,
              "a version 1 value");
  check_open (value, VALUE_OVERHEAD + DATA_MAX, &base, DATA_MAX,
              VALUE_BAD_FORMAT, "a version 1 value cut to the new length");
  memcpy (value, "ABD2", 4);
  check_open (value, VALUE_OVERHEAD + DATA_MAX, &base, DATA_MAX,
              VALUE_BAD_AUTH, "a version 1 value with the new magic");
}

static void
test_keys (void)
{
  char key[VALUE_KEY_MAX + 16], other[VALUE_KEY_MAX], plain[40];
  struct value_ident id = base, o;
  uint64_t block, gen;
  size_t len, i;

  memset (key, 'X', sizeof key);
  len = value_key (key, &id);
  CHECK (len == 27 && strlen (key) == 27 && strncmp (key, "abd3:", 5) == 0,
         "key: expected abd3: + 22 base64url digits, got \"%s\" (%zu)",
         key, len);
  CHECK (key[VALUE_KEY_MAX] == 'X', "value_key wrote past VALUE_KEY_MAX");
  for (i = 5; i < len; i++)
    CHECK ((key[i] >= '0' && key[i] <= '9') || (key[i] >= 'a' && key[i] <= 'z') ||
           (key[i] >= 'A' && key[i] <= 'Z') || key[i] == '-' || key[i] == '_',
           "key byte %zu: expected base64url, got 0x%02x", i,
           (unsigned char) key[i]);
  snprintf (plain, sizeof plain, "%" PRIx64, id.block);
  CHECK (strstr (key + 5, plain) == NULL || strlen (plain) < 5,
         "key \"%s\" shows the block number", key);
  CHECK (value_key_parse (key, len, &block, &gen) &&
         block == id.block && gen == id.generation,
         "parse \"%s\": expected block %" PRIu64 " generation %" PRIu64,
         key, id.block, id.generation);

  /* The version is not in the name: a write replaces the same key. */
  o = id; o.version++;
  value_key (other, &o);
  CHECK (strcmp (key, other) == 0, "version changed the key name");
  o = id; o.block++;
  value_key (other, &o);
  CHECK (strcmp (key, other) != 0, "next block: same key name");
  o = id; o.generation++;
  value_key (other, &o);
  CHECK (strcmp (key, other) != 0, "next generation: same key name");

  CHECK (value_keys_init (secret, ID_HASH ^ 1, EPOCH) == 0, "keys, device 2");
  value_key (other, &id);
  CHECK (strcmp (key, other) != 0, "another device: same key name");
  CHECK (!value_key_parse (key, len, &block, &gen) ||
         block != id.block || gen != id.generation,
         "another device's key name parsed as ours");
  CHECK (value_keys_init (secret, ID_HASH, EPOCH) == 0, "keys again");

  /* Names this process did not make. */
  memcpy (other, key, len + 1);
  other[5] = '+';
  CHECK (!value_key_parse (other, len, &block, &gen), "non-base64url parsed");
  /* The last digit carries 2 bits; another spelling of them is refused. */
  memcpy (other, key, len + 1);
  other[len - 1] = other[len - 1] == 'B' ? 'C' : 'B';
  CHECK (!value_key_parse (other, len, &block, &gen),
         "a key with non-zero padding bits parsed");
  CHECK (!value_key_parse (key, len - 1, &block, &gen), "short key parsed");
  CHECK (!value_key_parse ("abd1:0123456789abcdef:0:0:1000", 30, &block, &gen),
         "a version 1 key parsed");
  memcpy (other, key, len + 1);
  other[3] = '2';
  CHECK (!value_key_parse (other, len, &block, &gen), "abd2: prefix parsed");
}

/* Write LEN bytes to a new file in DIR with MODE; return its path. */
static const char *
secret_file (const char *dir, const char *name, size_t len, mode_t mode)
{
  static char path[256];
  FILE *f;

  snprintf (path, sizeof path, "%s/%s", dir, name);
  f = fopen (path, "w");
  if (f == NULL || fwrite (secret, 1, len, f) != len || fclose (f) != 0 ||
      chmod (path, mode) != 0) {
    perror (path);
    exit (1);
  }
  return path;
}

/* Every name parses back to its block and generation, over many of them
 * (single bits, all-zero and all-one generations, then pseudo-random
 * pairs), and consecutive names differ.
 */
static void
test_keys_many (void)
{
  struct value_ident id = base;
  char key[VALUE_KEY_MAX], prev[VALUE_KEY_MAX] = "";
  uint64_t block, gen, x = 0x9e3779b97f4a7c15;
  unsigned i;

  for (i = 0; i < 20000; i++) {
    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    id.block = i < 128 ? UINT64_C (1) << (i % 64) : x;
    id.generation = i < 128 ? (i < 64 ? 0 : UINT64_MAX) : x >> 3;
    value_key (key, &id);
    if (!value_key_parse (key, strlen (key), &block, &gen) ||
        block != id.block || gen != id.generation) {
      CHECK (false, "key \"%s\" of block %" PRIu64 " generation %" PRIu64
             " does not parse back", key, id.block, id.generation);
      return;
    }
    CHECK (strcmp (key, prev) != 0, "two names \"%s\"", key);
    strcpy (prev, key);
  }
}

static void
test_secret_file (void)
{
  char dir[] = "/tmp/abd-test-value.XXXXXX";
  unsigned char got[VALUE_SECRET_SIZE];
  const char *p;
  char cmd[300];

  if (mkdtemp (dir) == NULL) {
    perror ("mkdtemp");
    exit (1);
  }
  p = secret_file (dir, "ok", VALUE_SECRET_SIZE, 0600);
  CHECK (value_read_secret_file (p, got) == 0 &&
         memcmp (got, secret, sizeof got) == 0, "0600, 32 bytes: %s",
         unit_last_error);
  p = secret_file (dir, "ro", VALUE_SECRET_SIZE, 0400);
  CHECK (value_read_secret_file (p, got) == 0, "0400: %s", unit_last_error);
  p = secret_file (dir, "group", VALUE_SECRET_SIZE, 0640);
  CHECK (value_read_secret_file (p, got) == -1 && strstr (unit_last_error, "0640"),
         "0640 accepted (or no mode in \"%s\")", unit_last_error);
  p = secret_file (dir, "other", VALUE_SECRET_SIZE, 0604);
  CHECK (value_read_secret_file (p, got) == -1, "0604 accepted");
  p = secret_file (dir, "short", VALUE_SECRET_SIZE - 1, 0600);
  CHECK (value_read_secret_file (p, got) == -1 && strstr (unit_last_error, "31"),
         "31 bytes accepted (or no size in \"%s\")", unit_last_error);
  p = secret_file (dir, "long", VALUE_SECRET_SIZE, 0600);
  {
    FILE *f = fopen (p, "a");
    fputc ('\n', f);
    fclose (f);
  }
  CHECK (value_read_secret_file (p, got) == -1, "33 bytes accepted");
  CHECK (value_read_secret_file (dir, got) == -1, "a directory accepted");
  snprintf (cmd, sizeof cmd, "%s/missing", dir);
  CHECK (value_read_secret_file (cmd, got) == -1, "a missing file accepted");

  snprintf (cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system (cmd) != 0)
    fprintf (stderr, "test-memcache-value: could not remove %s\n", dir);
}

/* A block's version raised 2^32 times, as a hot block at 10,000 writes a
 * second does in five days: the value sealed before must not open.  The
 * raises before the last are made by setting the slot (the table has no
 * other state).
 */
static void
test_version_wrap (void)
{
  struct value_ident id = base;
  unsigned char value[VALUE_OVERHEAD + 64], data[64], out[64];
  const uint64_t block = 123456;
  uint64_t v;

  memset (data, 0xa5, sizeof data);
  id.block = block;
  id.version = writeseq_version (block);
  CHECK (id.version == 0, "a block never written has version %" PRIu64,
         (uint64_t) id.version);
  CHECK (value_seal (value, &id, data, sizeof data) == 0, "seal");

  writeseq_version_slot_set (block & (WRITESEQ_VERSIONS - 1), UINT32_MAX);
  v = writeseq_version_bump (block);
  CHECK (v == UINT64_C (1) << 32, "the 2^32-th raise gave version %" PRIu64
         ", expected 2^32", (uint64_t) v);
  id.version = writeseq_version (block);
  CHECK (id.version == v, "writeseq_version after the raise: %" PRIu64,
         (uint64_t) id.version);
  CHECK (value_open (out, value, sizeof value, &id, sizeof data)
         == VALUE_BAD_AUTH,
         "the value sealed 2^32 raises ago authenticates");
  CHECK (all_zero (out, sizeof out), "a refused value left bytes");

  /* What a 32-bit version would have been: the old value opens under it,
   * so the check above can tell.
   */
  id.version = (uint32_t) v;
  CHECK (value_open (out, value, sizeof value, &id, sizeof data) == VALUE_OK,
         "the old value under the version cut to 32 bits");

  /* Far beyond: raises go on without wrapping. */
  writeseq_version_slot_set (block & (WRITESEQ_VERSIONS - 1),
                             UINT64_MAX - 1);
  CHECK (writeseq_version_bump (block) == UINT64_MAX,
         "the raise to 2^64 - 1");
  writeseq_version_slot_set (block & (WRITESEQ_VERSIONS - 1), 0);
}

/* Two starts with the same keys and nonce counter (value_keys_init, then
 * value_nonce_resume to the same count) seal with different nonces: the
 * 4 bytes after the counter are drawn at every start.
 */
static void
test_nonce_start (void)
{
  unsigned char a[VALUE_OVERHEAD + 16], b[VALUE_OVERHEAD + 16];
  unsigned char data[16] = { 0 };
  int same = 0, i;

  for (i = 0; i < 4; i++) {
    value_keys_init (secret, ID_HASH, EPOCH);
    value_nonce_resume (1000);
    value_seal (a, &base, data, sizeof data);
    value_keys_init (secret, ID_HASH, EPOCH);
    value_nonce_resume (1000);
    value_seal (b, &base, data, sizeof data);
    CHECK (memcmp (a + 4, b + 4, 8) == 0,
           "the same counter gave different counter bytes");
    same += memcmp (a + 4, b + 4, 12) == 0;
  }
  /* 4 draws of 32 bits all equal: a chance of 2^-128, or a bug. */
  CHECK (same < 4, "two starts from the same counter repeat nonces");
  value_keys_init (secret, ID_HASH, EPOCH);
}

int
main (void)
{
  if (value_keys_init (secret, ID_HASH, EPOCH) == -1) {
    fprintf (stderr, "test-memcache-value: value_keys_init: %s\n",
             unit_last_error);
    return 1;
  }
  test_roundtrip ();
  test_no_plaintext ();
  test_wrong_ident ();
  test_tampered ();
  test_old_format ();
  test_keys ();
  test_keys_many ();
  test_secret_file ();
  test_version_wrap ();
  test_nonce_start ();
  value_keys_free ();

  return unit_summary ();
}
