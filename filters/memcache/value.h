/* nbdkit-memcache-filter: the key and value format. */

#ifndef MEMCACHE_VALUE_H
#define MEMCACHE_VALUE_H

#include <stddef.h>
#include <stdint.h>

#define VALUE_HEADER_SIZE 56
#define VALUE_FORMAT_VERSION 1

/* "abd1:" + 4 x (16 hex digits + separator) + NUL, with room to spare. */
#define VALUE_KEY_MAX 96

/* What identifies one cached block: the key and the header carry all of
 * it, so a value is only ever accepted for exactly the block, device,
 * process and server generation it was written for.
 */
struct value_ident {
  uint64_t id_hash;             /* ring_id_hash (memcache-id) */
  uint64_t epoch;               /* random, chosen at every start */
  uint64_t generation;          /* the server's generation (health.h) */
  uint64_t block;               /* block number */
};

enum value_verdict {
  VALUE_OK,
  VALUE_BAD_HEADER,             /* wrong magic, version, identity or size */
  VALUE_BAD_CHECKSUM,           /* header right, data checksum wrong */
};

/* Write the key of IDENT into KEY (VALUE_KEY_MAX bytes); returns its
 * length.
 */
extern size_t value_key (char *key, const struct value_ident *ident);

/* Write the header for DATA_LEN bytes of DATA into OUT
 * (VALUE_HEADER_SIZE bytes); the value is the header followed by DATA.
 */
extern void value_encode_header (unsigned char *out,
                                 const struct value_ident *ident,
                                 const void *data, uint32_t data_len);

/* Check VALUE (LEN bytes, as fetched) against IDENT and the expected data
 * length.  On VALUE_OK the data starts at VALUE + VALUE_HEADER_SIZE.
 */
extern enum value_verdict value_check (const void *value, size_t len,
                                       const struct value_ident *ident,
                                       uint32_t data_len);

#endif /* MEMCACHE_VALUE_H */
