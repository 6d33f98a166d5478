/* SPDX-License-Identifier: BSD-3-Clause */
/* nbdkit-memcache-filter: the key names and the sealed value format. */

#ifndef MEMCACHE_VALUE_H
#define MEMCACHE_VALUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VALUE_FORMAT_VERSION 3
#define VALUE_SECRET_SIZE 32            /* memcache-key-file holds this */
#define VALUE_HEADER_SIZE 16            /* magic + nonce */
#define VALUE_TAG_SIZE 16               /* AES-GCM tag, after the data */
#define VALUE_OVERHEAD (VALUE_HEADER_SIZE + VALUE_TAG_SIZE)

/* "abd3:" + 22 base64url digits + NUL, with room to spare. */
#define VALUE_KEY_MAX 48

/* What identifies one cached block.  All of it is bound into the value's
 * authentication, so a value is only ever accepted for exactly the
 * device, process, server generation, block and block version it was
 * sealed for.
 */
struct value_ident {
  uint64_t id_hash;             /* ring_id_hash (memcache-id) */
  uint64_t epoch;               /* random, chosen at every start */
  uint64_t generation;          /* the server's generation (health.h) */
  uint64_t block;               /* block number */
  uint64_t version;             /* the block's version (writeseq.h) */
};

enum value_verdict {
  VALUE_OK,
  VALUE_BAD_FORMAT,             /* wrong magic or length */
  VALUE_BAD_AUTH,               /* does not authenticate for this ident */
};

/* Read a secret from PATH (exactly VALUE_SECRET_SIZE bytes, a regular
 * file owned by us or root that no group or other may access) into
 * SECRET.  Returns 0, or -1 after nbdkit_error.
 */
extern int value_read_secret_file (const char *path,
                                   unsigned char secret[VALUE_SECRET_SIZE]);

/* Derive this process's keys from SECRET for the device ID_HASH and the
 * start EPOCH.  Returns 0, or -1 after nbdkit_error.  Call once, before
 * any function below; value_keys_free wipes them.
 */
extern int value_keys_init (const unsigned char secret[VALUE_SECRET_SIZE],
                            uint64_t id_hash, uint64_t epoch);
extern void value_keys_free (void);

/* The nonce counter: the last nonce used under the current keys, and
 * setting it after value_keys_init when the keys are those of an earlier
 * process (warm restart, state.h), so that no nonce is used twice.
 */
extern uint64_t value_nonce_used (void);
extern void value_nonce_resume (uint64_t used);

/* Write the key name of IDENT's block and generation into KEY
 * (VALUE_KEY_MAX bytes); returns its length.  The name is a keyed
 * permutation of (block, generation): it tells nobody without the secret
 * which device or block it is.
 */
extern size_t value_key (char *key, const struct value_ident *ident);

/* Invert value_key: true if KEY (LEN bytes, as returned by a server) is a
 * name this process made, with the block and generation it names.
 */
extern bool value_key_parse (const char *key, size_t len,
                             uint64_t *block, uint64_t *generation);

/* Seal DATA_LEN bytes of DATA for IDENT into OUT (VALUE_OVERHEAD +
 * DATA_LEN bytes).  Returns 0, or -1 if the cipher failed (do not store).
 */
extern int value_seal (unsigned char *out, const struct value_ident *ident,
                       const void *data, uint32_t data_len);

/* Open VALUE (LEN bytes, as fetched) for IDENT and the expected data
 * length into DATA (DATA_LEN bytes).  On anything but VALUE_OK, DATA is
 * zeroed: no byte of a value that failed is ever used.
 */
extern enum value_verdict value_open (void *data, const void *value,
                                      size_t len,
                                      const struct value_ident *ident,
                                      uint32_t data_len);

#endif /* MEMCACHE_VALUE_H */
