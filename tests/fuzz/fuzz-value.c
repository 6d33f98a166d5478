/* SPDX-License-Identifier: BSD-3-Clause */
/* libFuzzer target: opening a cached value (filters/memcache/value.c),
 * which reads whatever bytes a memcached server returns: garbage, another
 * block's value, a truncated or forged value, and the key names it
 * returns with them.
 *
 * The first 40 bytes of the input choose the identity the value is
 * opened for (generation, block, version) and the expected data length;
 * the rest is the value, and also a key name to parse.  Checked beyond
 * memory safety: nothing but a value sealed with this process's keys can
 * open, so a random input never does (a forgery would need the 128-bit
 * tag), and a refused value leaves the output zeroed.  A sealed value is
 * opened as well, so the fuzzer explores what is around a genuine one:
 * it must open exactly for its identity and give back its data.
 */

#include <config.h>

#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "value.h"

void
nbdkit_error (const char *fs, ...)
{
}

#define FUZZ_DATA_MAX (1 << 16)

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static const unsigned char secret[VALUE_SECRET_SIZE] = "fuzz-value secret, 32 bytes....";
  static unsigned char out[FUZZ_DATA_MAX];
  static unsigned char sealed[VALUE_OVERHEAD + FUZZ_DATA_MAX];
  static int ready;
  struct value_ident ident = { .id_hash = 1, .epoch = 2 };
  uint32_t data_len, v_low, v_high;
  uint64_t block, generation;
  const unsigned char *value;
  size_t len, i;

  if (!ready) {
    if (value_keys_init (secret, 1, 2) == -1)
      abort ();
    ready = 1;
  }
  if (size < 40)
    return 0;
  memcpy (&ident.generation, data, 8);
  memcpy (&ident.block, data + 8, 8);
  memcpy (&v_low, data + 16, 4);
  memcpy (&v_high, data + 24, 4);
  ident.version = (uint64_t) v_high << 32 | v_low;
  memcpy (&data_len, data + 20, 4);
  data_len %= FUZZ_DATA_MAX;
  value = data + 40;
  len = size - 40;

  /* Untrusted bytes: never open, output zeroed. */
  if (value_open (out, value, len, &ident, data_len) == VALUE_OK)
    abort ();
  for (i = 0; i < data_len; i++)
    if (out[i] != 0)
      abort ();
  (void) value_key_parse ((const char *) value, len, &block, &generation);

  /* A genuine value of the input's bytes opens for its identity only. */
  if (len > FUZZ_DATA_MAX)
    len = FUZZ_DATA_MAX;
  if (value_seal (sealed, &ident, value, len) == -1)
    abort ();
  if (value_open (out, sealed, VALUE_OVERHEAD + len, &ident, len) != VALUE_OK ||
      memcmp (out, value, len) != 0)
    abort ();
  ident.version++;
  if (value_open (out, sealed, VALUE_OVERHEAD + len, &ident, len) == VALUE_OK)
    abort ();
  return 0;
}
