/* nbdkit-memcache-filter: the key and value format.
 *
 * Key (text, 72 bytes at most, no spaces: safe for the text protocol):
 *
 *   abd1:<id_hash>:<epoch>:<generation>:<block>     (lower-case hex)
 *
 * Value: a 56-byte header, then the block's data (the last block of a
 * device whose size is not a multiple of the block size is shorter).
 * All integers are little-endian.
 *
 *   offset  size  field
 *        0     4  magic "ABDM"
 *        4     2  format version (1)
 *        6     2  header size (56)
 *        8     4  data length
 *       12     4  zero
 *       16     8  id_hash
 *       24     8  epoch
 *       32     8  generation
 *       40     8  block number
 *       48     8  XXH3-64 of the data
 *
 * The identity is in the key (so the right value is found) and again in
 * the header (so a value stored under the wrong key, by a bug, another
 * program or a corrupted item, is recognised).  A value is accepted only
 * if every field matches what the reader expected and the checksum of the
 * data matches; anything else is a miss and is counted.
 */

#include <config.h>

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <xxhash.h>

#include "value.h"

static const char value_magic[4] = { 'A', 'B', 'D', 'M' };

static void
value_put_le (unsigned char *p, uint64_t v, int bytes)
{
  int i;

  for (i = 0; i < bytes; i++)
    p[i] = v >> (8 * i);
}

static uint64_t
value_get_le (const unsigned char *p, int bytes)
{
  uint64_t v = 0;
  int i;

  for (i = 0; i < bytes; i++)
    v |= (uint64_t) p[i] << (8 * i);
  return v;
}

size_t
value_key (char *key, const struct value_ident *ident)
{
  return snprintf (key, VALUE_KEY_MAX,
                   "abd1:%016" PRIx64 ":%016" PRIx64 ":%" PRIx64 ":%" PRIx64,
                   ident->id_hash, ident->epoch, ident->generation,
                   ident->block);
}

void
value_encode_header (unsigned char *out, const struct value_ident *ident,
                     const void *data, uint32_t data_len)
{
  memcpy (out, value_magic, 4);
  value_put_le (out + 4, VALUE_FORMAT_VERSION, 2);
  value_put_le (out + 6, VALUE_HEADER_SIZE, 2);
  value_put_le (out + 8, data_len, 4);
  value_put_le (out + 12, 0, 4);
  value_put_le (out + 16, ident->id_hash, 8);
  value_put_le (out + 24, ident->epoch, 8);
  value_put_le (out + 32, ident->generation, 8);
  value_put_le (out + 40, ident->block, 8);
  value_put_le (out + 48, XXH3_64bits (data, data_len), 8);
}

enum value_verdict
value_check (const void *value, size_t len, const struct value_ident *ident,
             uint32_t data_len)
{
  const unsigned char *p = value;

  if (len != (size_t) VALUE_HEADER_SIZE + data_len ||
      memcmp (p, value_magic, 4) != 0 ||
      value_get_le (p + 4, 2) != VALUE_FORMAT_VERSION ||
      value_get_le (p + 6, 2) != VALUE_HEADER_SIZE ||
      value_get_le (p + 8, 4) != data_len ||
      value_get_le (p + 12, 4) != 0 ||
      value_get_le (p + 16, 8) != ident->id_hash ||
      value_get_le (p + 24, 8) != ident->epoch ||
      value_get_le (p + 32, 8) != ident->generation ||
      value_get_le (p + 40, 8) != ident->block)
    return VALUE_BAD_HEADER;
  if (value_get_le (p + 48, 8) !=
      XXH3_64bits (p + VALUE_HEADER_SIZE, data_len))
    return VALUE_BAD_CHECKSUM;
  return VALUE_OK;
}
