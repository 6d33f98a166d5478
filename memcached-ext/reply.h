/* SPDX-License-Identifier: BSD-3-Clause */
/* abd memcached-ext: what the two reply parsers (meta-parse.c,
 * text-parse.c) share: cutting the next reply line out of the bytes
 * received and splitting it into tokens, and dropping the bytes of a
 * value too long to hand on.  Internal to memcached-ext.
 */

#ifndef MEMCACHED_EXT_REPLY_H
#define MEMCACHED_EXT_REPLY_H

#include <stdbool.h>
#include <stddef.h>

#include "meta.h"

/* The most tokens a reply line of either protocol may have (a text
 * protocol VALUE line: VALUE, key, flags, length, and one too many).
 */
#define MCX_REPLY_TOKENS_MAX 5

struct mcx_line {
  const char *text;             /* the line, CRLF included */
  size_t len;
  const char *tok[MCX_REPLY_TOKENS_MAX];
  size_t tok_len[MCX_REPLY_TOKENS_MAX];
  size_t nr_tok;                /* all of them, also those not stored */
};

/* The reply line at the start of BUF (AVAIL bytes): printable ASCII
 * split on single spaces, ending in CRLF, at most MCX_LINE_MAX bytes.
 * Returns 1 (*LINE filled), 0 when more bytes are needed (*NEED: how many
 * from BUF at least), or MCX_EPROTO (*WHY says why).
 */
extern int mcx_reply_line (const char *buf, size_t avail,
                           struct mcx_line *line, size_t *need,
                           const char **why);

/* Start skipping a value of LEN bytes for operation INDEX. */
extern void mcx_skip_start (struct mcx_skip *skip, size_t index, size_t len);

/* Drop the skipped value's bytes from BUF + *POS (BUF holds LEN bytes) as
 * they come, so that it never needs a buffer of its size.  Returns 1 once
 * the value and its CRLF are consumed (skip->on is false again), 0 when
 * more bytes are needed (*NEED counted from BUF + *POS: the value's next
 * byte or its CRLF, not the rest of the value, or the buffer would grow
 * to it), or MCX_EPROTO if the value is not followed by CRLF.
 */
extern int mcx_skip_feed (struct mcx_skip *skip, const char *buf, size_t len,
                          size_t *pos, size_t *need);

#endif /* MEMCACHED_EXT_REPLY_H */
