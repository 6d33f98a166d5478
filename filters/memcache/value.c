/* SPDX-License-Identifier: BSD-3-Clause */
/* nbdkit-memcache-filter: key names and sealed values.
 *
 * memcached has no authentication: whoever reaches a server can list its
 * keys (`lru_crawler metadump all`), read every value and store values of
 * their own.  So nothing a server holds is readable or believable without
 * a secret that never leaves this process (memcache-key-file, or a random
 * one made at every start):
 *
 *   secret --HMAC-SHA256(label, id_hash, epoch)--> value key, name key
 *
 * Key name:  "abd3:" + base64url (AES-256 (name key, block || generation))
 *
 *   A permutation of (block, generation), so names never collide, tell
 *   an observer nothing about the device or block, and can be turned back
 *   into the block by value_key_parse when a server returns them.
 *
 * Value:     offset  size
 *                 0     4  magic "ABD2"
 *                 4    12  nonce: a 64-bit counter (LE), then this
 *                             start's 4 random bytes
 *                16     n  the block's data, AES-256-GCM encrypted
 *              16+n    16  GCM tag
 *
 *   The associated data is everything that identifies the value: magic,
 *   format version, data length, block version (writeseq.h, 64 bits),
 *   id_hash, epoch, server generation and block.  A value replayed under
 *   another name, for another block, from an older generation or an older
 *   write of the same block, from another device or process, truncated,
 *   flipped or forged fails the tag and is a miss.
 *
 * Nonces never repeat under one key: the value key is new for every epoch
 * (a random 64-bit number chosen at every cold start) and the counter
 * only goes up within it, across warm restarts too (state.c resumes it).
 * A state file put back from a copy (a backup, a snapshot) resumes an
 * epoch's counter a second time, so every start also draws 4 random
 * bytes for the rest of its nonces: two starts from the same copy repeat
 * a nonce only if they draw the same 4 bytes, a chance of 2^-32 for
 * each pair of them, instead of for certain.
 *
 * Why AES-256-GCM from OpenSSL's libcrypto: on this project's machines
 * (AES-NI, 2 cores) it sealed a 4 KiB block in about 1 us, against 3 us
 * for libsodium's XChaCha20-Poly1305 and its AES-256-GCM (measured with a
 * 200,000-round loop of each); the counter nonce takes away GCM's one
 * weakness, random-nonce collisions.
 *
 * scripts/bench builds a second copy of the filter with
 * -DABD_BENCH_UNSEALED, in which values keep this layout but the data is
 * copied in the clear and the tag is not checked, to measure what sealing
 * costs.  No build that is installed or tested is made that way.
 *
 * OpenSSL cipher contexts are not thread-safe, so every thread that seals
 * or opens gets its own, made on first use with the keys already set up
 * and freed when the thread exits.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <nbdkit-filter.h>

#include "le.h"
#include "value.h"

#define VALUE_NONCE_SIZE 12
#define VALUE_AD_SIZE 52

static const char value_magic[4] = { 'A', 'B', 'D', '2' };
/* The 16 bytes of a name in base64url without padding: 22 characters,
 * the last one carrying 2 bits (its other 4 are zero).  Not hex: every
 * byte of a key is memory in every item, and 10 bytes fewer per 4K block
 * let a memcached tuned for blocks (memcached-ext/abd-memcached.conf)
 * give more than 97% of its chunk bytes to block data.
 */
static const char value_key_prefix[] = "abd3:";
static const char value_b64[] =
  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
#define VALUE_KEY_PREFIX_LEN (sizeof value_key_prefix - 1)
#define VALUE_KEY_B64_LEN 22
#define VALUE_KEY_LEN (VALUE_KEY_PREFIX_LEN + VALUE_KEY_B64_LEN)

/* Set by value_keys_init (once in the filter, more often in tests),
 * read-only afterwards.
 */
static struct {
  bool ready;
  unsigned serial;              /* which keys the contexts were made with */
  uint64_t id_hash, epoch;
  unsigned char seal_key[32];
  unsigned char name_key[32];
  unsigned char nonce_start[4]; /* random, drawn by value_keys_init */
} keys;

static uint64_t nonce_counter;  /* atomic */

/* One thread's cipher contexts, with the keys set. */
struct value_ctx {
  unsigned serial;              /* keys.serial when made */
  EVP_CIPHER_CTX *seal;         /* AES-256-GCM, encrypt */
  EVP_CIPHER_CTX *open;         /* AES-256-GCM, decrypt */
  EVP_CIPHER_CTX *name;         /* AES-256-ECB, encrypt */
  EVP_CIPHER_CTX *unname;       /* AES-256-ECB, decrypt */
};

static pthread_key_t ctx_key;
static bool ctx_key_made;

int
value_read_secret_file (const char *path,
                        unsigned char secret[VALUE_SECRET_SIZE])
{
  struct stat st;
  ssize_t r;
  char extra;
  int fd;

  fd = open (path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd == -1) {
    nbdkit_error ("memcache-key-file=%s: %m", path);
    return -1;
  }
  if (fstat (fd, &st) == -1) {
    nbdkit_error ("memcache-key-file=%s: %m", path);
    goto err;
  }
  if (!S_ISREG (st.st_mode)) {
    nbdkit_error ("memcache-key-file=%s: not a regular file", path);
    goto err;
  }
  if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    nbdkit_error ("memcache-key-file=%s: mode %04o lets group or others "
                  "at the secret: chmod 600 it", path,
                  (unsigned) (st.st_mode & 07777));
    goto err;
  }
  if (st.st_uid != geteuid () && st.st_uid != 0) {
    nbdkit_error ("memcache-key-file=%s: owned by uid %u, not by this "
                  "process (uid %u) or root", path, (unsigned) st.st_uid,
                  (unsigned) geteuid ());
    goto err;
  }
  if (st.st_size != VALUE_SECRET_SIZE) {
    nbdkit_error ("memcache-key-file=%s: %lld bytes, must be exactly %d "
                  "random bytes (head -c %d /dev/urandom)", path,
                  (long long) st.st_size, VALUE_SECRET_SIZE,
                  VALUE_SECRET_SIZE);
    goto err;
  }
  r = read (fd, secret, VALUE_SECRET_SIZE);
  if (r != VALUE_SECRET_SIZE || read (fd, &extra, 1) != 0) {
    nbdkit_error ("memcache-key-file=%s: could not read exactly %d bytes",
                  path, VALUE_SECRET_SIZE);
    OPENSSL_cleanse (secret, VALUE_SECRET_SIZE);
    goto err;
  }
  close (fd);
  return 0;

 err:
  close (fd);
  return -1;
}

static void
value_ctx_free (void *p)
{
  struct value_ctx *c = p;

  if (c == NULL)
    return;
  EVP_CIPHER_CTX_free (c->seal);
  EVP_CIPHER_CTX_free (c->open);
  EVP_CIPHER_CTX_free (c->name);
  EVP_CIPHER_CTX_free (c->unname);
  free (c);
}

/* This thread's contexts, made on first use; NULL if that failed. */
static struct value_ctx *
value_ctx (void)
{
  struct value_ctx *c = pthread_getspecific (ctx_key);

  if (c != NULL && c->serial == keys.serial)
    return c;
  value_ctx_free (c);
  pthread_setspecific (ctx_key, NULL);
  if (!keys.ready)
    return NULL;
  c = calloc (1, sizeof *c);
  if (c == NULL)
    return NULL;
  c->serial = keys.serial;
  c->seal = EVP_CIPHER_CTX_new ();
  c->open = EVP_CIPHER_CTX_new ();
  c->name = EVP_CIPHER_CTX_new ();
  c->unname = EVP_CIPHER_CTX_new ();
  if (c->seal == NULL || c->open == NULL || c->name == NULL ||
      c->unname == NULL ||
      EVP_EncryptInit_ex (c->seal, EVP_aes_256_gcm (), NULL,
                          keys.seal_key, NULL) != 1 ||
      EVP_CIPHER_CTX_ctrl (c->seal, EVP_CTRL_GCM_SET_IVLEN,
                           VALUE_NONCE_SIZE, NULL) != 1 ||
      EVP_DecryptInit_ex (c->open, EVP_aes_256_gcm (), NULL,
                          keys.seal_key, NULL) != 1 ||
      EVP_CIPHER_CTX_ctrl (c->open, EVP_CTRL_GCM_SET_IVLEN,
                           VALUE_NONCE_SIZE, NULL) != 1 ||
      EVP_EncryptInit_ex (c->name, EVP_aes_256_ecb (), NULL,
                          keys.name_key, NULL) != 1 ||
      EVP_DecryptInit_ex (c->unname, EVP_aes_256_ecb (), NULL,
                          keys.name_key, NULL) != 1 ||
      EVP_CIPHER_CTX_set_padding (c->name, 0) != 1 ||
      EVP_CIPHER_CTX_set_padding (c->unname, 0) != 1 ||
      pthread_setspecific (ctx_key, c) != 0) {
    value_ctx_free (c);
    return NULL;
  }
  return c;
}

/* KEY = HMAC-SHA256 (SECRET, LABEL || id_hash || epoch). */
static int
value_derive (unsigned char key[32], const unsigned char *secret,
              const char *label, uint64_t id_hash, uint64_t epoch)
{
  unsigned char msg[64];
  size_t label_len = strlen (label);
  unsigned int len = 32;

  memcpy (msg, label, label_len);
  le_put (msg + label_len, id_hash, 8);
  le_put (msg + label_len + 8, epoch, 8);
  if (HMAC (EVP_sha256 (), secret, VALUE_SECRET_SIZE, msg, label_len + 16,
            key, &len) == NULL || len != 32) {
    nbdkit_error ("memcache: deriving the %s key failed", label);
    return -1;
  }
  return 0;
}

int
value_keys_init (const unsigned char secret[VALUE_SECRET_SIZE],
                 uint64_t id_hash, uint64_t epoch)
{
  int err;

  if (!ctx_key_made) {
    err = pthread_key_create (&ctx_key, value_ctx_free);
    if (err != 0) {
      errno = err;
      nbdkit_error ("pthread_key_create: %m");
      return -1;
    }
    ctx_key_made = true;
  }
  if (value_derive (keys.seal_key, secret, "abd memcache value 2",
                    id_hash, epoch) == -1 ||
      value_derive (keys.name_key, secret, "abd memcache name 2",
                    id_hash, epoch) == -1)
    return -1;
  if (getrandom (keys.nonce_start, sizeof keys.nonce_start, 0) !=
      sizeof keys.nonce_start) {
    nbdkit_error ("memcache: getrandom: %m");
    return -1;
  }
  keys.serial++;
  keys.id_hash = id_hash;
  keys.epoch = epoch;
  __atomic_store_n (&nonce_counter, 0, __ATOMIC_RELAXED);
  keys.ready = true;
  return 0;
}

uint64_t
value_nonce_used (void)
{
  return __atomic_load_n (&nonce_counter, __ATOMIC_RELAXED);
}

void
value_nonce_resume (uint64_t used)
{
  __atomic_store_n (&nonce_counter, used, __ATOMIC_RELAXED);
}

void
value_keys_free (void)
{
  if (ctx_key_made) {
    value_ctx_free (pthread_getspecific (ctx_key));
    pthread_setspecific (ctx_key, NULL);
  }
  OPENSSL_cleanse (keys.seal_key, sizeof keys.seal_key);
  OPENSSL_cleanse (keys.name_key, sizeof keys.name_key);
  keys.ready = false;
  keys.serial++;
}

/* The 16 bytes a key name encrypts. */
static void
value_name_block (unsigned char out[16], uint64_t block, uint64_t generation)
{
  le_put (out, block, 8);
  le_put (out + 8, generation, 8);
}

size_t
value_key (char *key, const struct value_ident *ident)
{
  struct value_ctx *c = value_ctx ();
  unsigned char in[16], out[16];
  char *p = key + VALUE_KEY_PREFIX_LEN;
  uint32_t bits = 0;
  int len, i, nbits = 0;

  value_name_block (in, ident->block, ident->generation);
  memcpy (key, value_key_prefix, VALUE_KEY_PREFIX_LEN);
  if (c == NULL || EVP_EncryptUpdate (c->name, out, &len, in, 16) != 1 ||
      len != 16) {
    /* Cannot happen with a working libcrypto; a name no server holds
     * makes every lookup of it a miss, and nothing is stored under it
     * because value_seal fails the same way.
     */
    memset (out, 0, sizeof out);
  }
  for (i = 0; i < 16; i++) {
    bits = bits << 8 | out[i];
    nbits += 8;
    while (nbits >= 6) {
      nbits -= 6;
      *p++ = value_b64[(bits >> nbits) & 63];
    }
  }
  *p++ = value_b64[(bits << (6 - nbits)) & 63];
  *p = '\0';
  return VALUE_KEY_LEN;
}

static int
value_b64_digit (char ch)
{
  if (ch >= 'A' && ch <= 'Z')
    return ch - 'A';
  if (ch >= 'a' && ch <= 'z')
    return ch - 'a' + 26;
  if (ch >= '0' && ch <= '9')
    return ch - '0' + 52;
  if (ch == '-')
    return 62;
  if (ch == '_')
    return 63;
  return -1;
}

bool
value_key_parse (const char *key, size_t len, uint64_t *block,
                 uint64_t *generation)
{
  struct value_ctx *c;
  unsigned char in[16], out[16];
  uint32_t bits = 0;
  int outlen, i, nbits = 0, n = 0;

  if (len != VALUE_KEY_LEN ||
      memcmp (key, value_key_prefix, VALUE_KEY_PREFIX_LEN) != 0)
    return false;
  for (i = 0; i < VALUE_KEY_B64_LEN; i++) {
    int d = value_b64_digit (key[VALUE_KEY_PREFIX_LEN + i]);

    if (d < 0)
      return false;
    bits = bits << 6 | d;
    nbits += 6;
    if (nbits >= 8) {
      nbits -= 8;
      in[n++] = bits >> nbits;
    }
  }
  /* One spelling per name: the bits after the 16 bytes are zero. */
  if (n != 16 || (bits & ((1u << nbits) - 1)) != 0)
    return false;
  c = value_ctx ();
  if (c == NULL || EVP_DecryptUpdate (c->unname, out, &outlen, in, 16) != 1 ||
      outlen != 16)
    return false;
  *block = le_get (out, 8);
  *generation = le_get (out + 8, 8);
  return true;
}

/* The associated data: everything that identifies the value. */
static void
value_ad (unsigned char ad[VALUE_AD_SIZE], const struct value_ident *ident,
          uint32_t data_len)
{
  memcpy (ad, value_magic, 4);
  le_put (ad + 4, VALUE_FORMAT_VERSION, 4);
  le_put (ad + 8, data_len, 4);
  le_put (ad + 12, ident->version, 8);
  le_put (ad + 20, ident->id_hash, 8);
  le_put (ad + 28, ident->epoch, 8);
  le_put (ad + 36, ident->generation, 8);
  le_put (ad + 44, ident->block, 8);
}

int
value_seal (unsigned char *out, const struct value_ident *ident,
            const void *data, uint32_t data_len)
{
  struct value_ctx *c = value_ctx ();
  unsigned char ad[VALUE_AD_SIZE];
  unsigned char *nonce = out + 4;
  unsigned char *body = out + VALUE_HEADER_SIZE;
  int len, fin;

  /* Keys are derived for one device and epoch: anything else is a bug. */
  if (c == NULL || ident->id_hash != keys.id_hash ||
      ident->epoch != keys.epoch)
    return -1;
  memcpy (out, value_magic, 4);
  le_put (nonce, __atomic_add_fetch (&nonce_counter, 1,
                                           __ATOMIC_RELAXED), 8);
  memcpy (nonce + 8, keys.nonce_start, 4);
  value_ad (ad, ident, data_len);
#ifdef ABD_BENCH_UNSEALED
  memcpy (body, data, data_len);
  memset (body + data_len, 0, VALUE_TAG_SIZE);
  return 0;
#endif
  if (EVP_EncryptInit_ex (c->seal, NULL, NULL, NULL, nonce) != 1 ||
      EVP_EncryptUpdate (c->seal, NULL, &len, ad, sizeof ad) != 1 ||
      EVP_EncryptUpdate (c->seal, body, &len, data, data_len) != 1 ||
      (uint32_t) len != data_len ||
      EVP_EncryptFinal_ex (c->seal, body + len, &fin) != 1 ||
      EVP_CIPHER_CTX_ctrl (c->seal, EVP_CTRL_GCM_GET_TAG, VALUE_TAG_SIZE,
                           body + data_len) != 1)
    return -1;
  return 0;
}

enum value_verdict
value_open (void *data, const void *value, size_t len,
            const struct value_ident *ident, uint32_t data_len)
{
  const unsigned char *p = value;
  struct value_ctx *c;
  unsigned char ad[VALUE_AD_SIZE];
  unsigned char tag[VALUE_TAG_SIZE];
  int outlen, fin;

  if (len != (size_t) VALUE_OVERHEAD + data_len ||
      memcmp (p, value_magic, 4) != 0) {
    memset (data, 0, data_len);
    return VALUE_BAD_FORMAT;
  }
#ifdef ABD_BENCH_UNSEALED
  memcpy (data, p + VALUE_HEADER_SIZE, data_len);
  return VALUE_OK;
#endif
  c = value_ctx ();
  value_ad (ad, ident, data_len);
  /* The tag is copied out because OpenSSL's SET_TAG takes a non-const
   * pointer.
   */
  memcpy (tag, p + VALUE_HEADER_SIZE + data_len, VALUE_TAG_SIZE);
  if (c == NULL ||
      ident->id_hash != keys.id_hash || ident->epoch != keys.epoch ||
      EVP_DecryptInit_ex (c->open, NULL, NULL, NULL, p + 4) != 1 ||
      EVP_DecryptUpdate (c->open, NULL, &outlen, ad, sizeof ad) != 1 ||
      EVP_DecryptUpdate (c->open, data, &outlen, p + VALUE_HEADER_SIZE,
                         data_len) != 1 ||
      EVP_CIPHER_CTX_ctrl (c->open, EVP_CTRL_GCM_SET_TAG, VALUE_TAG_SIZE,
                           tag) != 1 ||
      EVP_DecryptFinal_ex (c->open, (unsigned char *) data + outlen,
                           &fin) != 1) {
    memset (data, 0, data_len);
    return VALUE_BAD_AUTH;
  }
  return VALUE_OK;
}
