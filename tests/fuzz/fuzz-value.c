/* libFuzzer target: the check of a cached value's header
 * (filters/memcache/value.c), which reads whatever bytes a memcached
 * server returns: garbage, another block's value, a truncated value.
 *
 * The first 36 bytes of the input choose the identity the value is
 * checked against and the expected data length; the rest is the value.
 * Checked beyond memory safety: a value is accepted only if it is exactly
 * what value_encode_header would have made for that identity and data,
 * so nothing but a genuine value can ever pass.
 */

#include <config.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "value.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  struct value_ident ident;
  uint32_t data_len;
  unsigned char header[VALUE_HEADER_SIZE];
  const unsigned char *value;
  size_t len;

  if (size < sizeof ident + sizeof data_len)
    return 0;
  memcpy (&ident, data, sizeof ident);
  memcpy (&data_len, data + sizeof ident, sizeof data_len);
  data_len %= 1 << 21;
  value = data + sizeof ident + sizeof data_len;
  len = size - sizeof ident - sizeof data_len;

  switch (value_check (value, len, &ident, data_len)) {
  case VALUE_OK:
    if (len != VALUE_HEADER_SIZE + (size_t) data_len)
      abort ();
    value_encode_header (header, &ident, value + VALUE_HEADER_SIZE, data_len);
    if (memcmp (header, value, VALUE_HEADER_SIZE) != 0)
      abort ();
    break;
  case VALUE_BAD_HEADER:
  case VALUE_BAD_CHECKSUM:
    break;
  default:
    abort ();
  }
  return 0;
}
