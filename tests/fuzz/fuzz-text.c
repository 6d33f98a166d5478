/* SPDX-License-Identifier: BSD-3-Clause */
/* libFuzzer target: the text reply parser of memcached-ext
 * (memcached-ext/text-parse.c), which reads whatever bytes a memcached
 * server sends back for a text protocol batch.
 *
 * The first 4 bytes of the input choose the batch (the number of
 * operations, 1-8, the kind of each: get, set, delete; keys "a", "b", ...
 * with a repeat now and then) and the largest value accepted (0-1023
 * bytes); the rest is the server's reply.  It is parsed whole, and again
 * fed in pieces as a socket delivers it.  Checked beyond memory safety:
 * both ways give the same result and the same replies; every reply names
 * an operation of the right kind, at most once, in the order sent, and a
 * value comes with the key asked for; a value lies inside the input and
 * is no longer than allowed (a longer one, up to MCX_SKIP_MAX, is
 * skipped and reported MCX_TOO_LARGE for a get alone); no more bytes are consumed than given; when
 * more are needed, the count is more than what is there and within
 * MCX_LINE_MAX + max value + 2; a finished batch answered every set and
 * delete.
 */

#include <config.h>

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "text.h"

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
  unsigned char answered[FUZZ_OPS_MAX];
  size_t last;                  /* one past the last operation answered */
  size_t nr;
  struct fuzz_reply r[FUZZ_REPLIES_MAX];
};

/* The VALUE line before DATA names OP's key. */
static void
fuzz_check_key (const struct fuzz_run *run, const struct mcx_op *op,
                const char *data)
{
  const char *line = data - 2;

  if (line < run->buf || line[0] != '\r' || line[1] != '\n')
    abort ();
  while (line > run->buf && line[-1] != '\n')
    line--;
  if (data - line < 6 + (ptrdiff_t) op->key_len + 1 ||
      memcmp (line, "VALUE ", 6) != 0 ||
      memcmp (line + 6, op->key, op->key_len) != 0 || line[6 + op->key_len] != ' ')
    abort ();
}

static void
fuzz_collect (void *opaque, size_t index, enum mcx_reply kind,
              const char *data, size_t len)
{
  struct fuzz_run *run = opaque;

  if (index != MCX_NO_INDEX) {
    if (index >= run->n || run->answered[index] || index < run->last)
      abort ();
    run->answered[index] = 1;
    run->last = index + 1;
    if ((kind == MCX_HIT || kind == MCX_TOO_LARGE) !=
        (run->ops[index].type == MCX_GET))
      abort ();
    if (kind == MCX_TOO_LARGE &&
        (data != NULL || len <= run->max_value || len > MCX_SKIP_MAX))
      abort ();
    if (kind == MCX_MISS || (kind == MCX_EXISTS &&
                             run->ops[index].type != MCX_SET))
      abort ();
    if (kind == MCX_HIT)
      fuzz_check_key (run, &run->ops[index], data);
  }
  else if (kind != MCX_SERVER_ERROR)
    abort ();
  if (kind == MCX_HIT || kind == MCX_SERVER_ERROR) {
    if (len > 0 && (data < run->buf || data + len > run->buf + run->buf_len))
      abort ();
    if (kind == MCX_HIT && len > run->max_value)
      abort ();
  }
  if (run->nr < FUZZ_REPLIES_MAX)
    run->r[run->nr++] = (struct fuzz_reply) { index, kind, len, data };
}

/* Parse BUF (LEN bytes) in pieces of the sizes in STEPS (cycled; 0 = all
 * at once).  Returns mtx_parse's last result.
 */
static int
fuzz_parse (struct fuzz_run *run, const uint8_t *steps, size_t nr_steps)
{
  struct mtx_parser p = {
    .ops = run->ops, .n = run->n, .max_value = run->max_value,
    .fn = fuzz_collect, .opaque = run,
  };
  size_t pos = 0, have = 0, used, need, k = 0, i;
  int r;

  run->nr = 0;
  run->last = 0;
  memset (run->answered, 0, sizeof run->answered);
  for (;;) {
    if (nr_steps == 0)
      have = run->buf_len;
    else {
      have += steps[k++ % nr_steps] % 64 + 1;
      if (have > run->buf_len)
        have = run->buf_len;
    }
    r = mtx_parse (&p, run->buf + pos, have - pos, &used, &need);
    if (used > have - pos)
      abort ();
    pos += used;
    if (r == 1)
      for (i = 0; i < run->n; i++)
        if (run->ops[i].type != MCX_GET && !run->answered[i])
          abort ();
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
  static const char *const names[] = { "a", "b", "c", "d" };
  static struct fuzz_run whole, pieces;
  struct mcx_op ops[FUZZ_OPS_MAX];
  size_t n, i, max_value;
  int r1, r2;

  if (size < 4)
    return 0;
  n = data[0] % FUZZ_OPS_MAX + 1;
  for (i = 0; i < n; i++) {
    /* Mostly distinct keys; a repeat when bit 7 of data[0] is set. */
    const char *key = names[(data[0] & 0x80 ? i / 2 : i) % 4];

    ops[i] = (struct mcx_op) {
      .type = (data[1] >> (i % 4 * 2)) % 3, .key = key, .key_len = 1,
    };
  }
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
