/* SPDX-License-Identifier: BSD-3-Clause */
/* libFuzzer target: the meta reply parser of memcached-ext
 * (memcached-ext/meta-parse.c), which reads whatever bytes a memcached
 * server sends back for a batch.
 *
 * The first 4 bytes of the input choose the batch (the number of
 * operations, 1-8, and the kind of each: get, set, delete) and the
 * largest value accepted (0-1023 bytes); the rest is the server's reply.
 * It is parsed whole, and again fed in pieces as a socket delivers it
 * (the buffer growing by the piece lengths the input's bytes choose).
 * Checked beyond memory safety: both ways give the same result and the
 * same replies; every reply names an operation of the right kind at most
 * once; a value lies inside the input and is no longer than allowed (a
 * longer one is skipped, MCX_TOO_LARGE, up to MCX_SKIP_MAX); no
 * more bytes are consumed than given; when more are needed, the count is
 * more than what is there and within MCX_LINE_MAX + max value + 2.
 */

#include <config.h>

#include <stdint.h>
#include <stdlib.h>

#include "meta.h"

#define FUZZ_OPS_MAX 8
#define FUZZ_REPLIES_MAX 4096

struct fuzz_reply {
  size_t index;
  int kind;
  size_t len;
  const char *data;
};

struct fuzz_run {
  const struct mcx_op *ops;
  size_t n, max_value;
  const char *buf;
  size_t buf_len;
  size_t nr;
  struct fuzz_reply r[FUZZ_REPLIES_MAX];
};

static void
fuzz_collect (void *opaque, size_t index, enum mcx_reply kind,
              const char *data, size_t len)
{
  struct fuzz_run *run = opaque;

  if (index != MCX_NO_INDEX) {
    if (index >= run->n)
      abort ();
    if ((kind == MCX_HIT || kind == MCX_MISS || kind == MCX_TOO_LARGE) !=
        (run->ops[index].type == MCX_GET))
      abort ();
  }
  else if (kind != MCX_SERVER_ERROR)
    abort ();
  if (kind == MCX_HIT || kind == MCX_SERVER_ERROR) {
    if (len > 0 && (data < run->buf || data + len > run->buf + run->buf_len))
      abort ();
    if (kind == MCX_HIT && len > run->max_value)
      abort ();
  }
  /* A value skipped: longer than allowed, not longer than skippable. */
  if (kind == MCX_TOO_LARGE &&
      (data != NULL || len <= run->max_value || len > MCX_SKIP_MAX))
    abort ();
  if (run->nr < FUZZ_REPLIES_MAX)
    run->r[run->nr++] = (struct fuzz_reply) { index, kind, len, data };
}

/* Parse BUF (LEN bytes) in pieces of the sizes in STEPS (cycled; 0 = all
 * at once).  Returns mcx_parse's last result.
 */
static int
fuzz_parse (struct fuzz_run *run, const uint8_t *steps, size_t nr_steps)
{
  unsigned char answered[FUZZ_OPS_MAX] = { 0 };
  struct mcx_parser p = {
    .ops = run->ops, .n = run->n, .answered = answered,
    .max_value = run->max_value, .fn = fuzz_collect, .opaque = run,
  };
  size_t pos = 0, have = 0, used, need, k = 0;
  int r;

  run->nr = 0;
  for (;;) {
    if (nr_steps == 0)
      have = run->buf_len;
    else {
      have += steps[k++ % nr_steps] % 64 + 1;
      if (have > run->buf_len)
        have = run->buf_len;
    }
    r = mcx_parse (&p, run->buf + pos, have - pos, &used, &need);
    if (used > have - pos)
      abort ();
    pos += used;
    if (r != 0)
      return r;
    if (need <= have - pos ||
        need > MCX_LINE_MAX + run->max_value + 2)
      abort ();
    if (have == run->buf_len)
      return r;
  }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static struct fuzz_run whole, pieces;
  struct mcx_op ops[FUZZ_OPS_MAX];
  size_t n, i, max_value;
  int r1, r2;

  if (size < 4)
    return 0;
  n = data[0] % FUZZ_OPS_MAX + 1;
  for (i = 0; i < n; i++)
    ops[i] = (struct mcx_op) {
      .type = (data[1] >> (i % 4 * 2)) % 3, .key = "k", .key_len = 1,
    };
  max_value = (data[2] | data[3] << 8) % 1024;

  whole = (struct fuzz_run) { .ops = ops, .n = n, .max_value = max_value,
                              .buf = (const char *) data + 4,
                              .buf_len = size - 4 };
  pieces = whole;
  r1 = fuzz_parse (&whole, NULL, 0);
  r2 = fuzz_parse (&pieces, data + 4, size - 4);
  if (r1 != r2 || whole.nr != pieces.nr)
    abort ();
  for (i = 0; i < whole.nr; i++)
    if (whole.r[i].index != pieces.r[i].index ||
        whole.r[i].kind != pieces.r[i].kind ||
        whole.r[i].len != pieces.r[i].len ||
        whole.r[i].data != pieces.r[i].data)
      abort ();
  return 0;
}
