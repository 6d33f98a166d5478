/* SPDX-License-Identifier: BSD-3-Clause */
/* abd memcached-ext: reply lines and skipped values (see reply.h). */

#include <config.h>

#include <string.h>

#include "reply.h"

int
mcx_reply_line (const char *buf, size_t avail, struct mcx_line *line,
                size_t *need, const char **why)
{
  const char *nl;
  size_t i, start;

  if (avail == 0) {             /* (BUF may be NULL then) */
    *need = 1;
    return 0;
  }
  nl = memchr (buf, '\n', avail < MCX_LINE_MAX ? avail : MCX_LINE_MAX);
  if (nl == NULL) {
    if (avail >= MCX_LINE_MAX) {
      *why = "reply line longer than MCX_LINE_MAX bytes";
      return MCX_EPROTO;
    }
    *need = avail + 1;
    return 0;
  }
  line->text = buf;
  line->len = nl - buf + 1;
  line->nr_tok = 0;
  if (line->len < 2 || nl[-1] != '\r') {
    *why = "reply line not ended by CRLF";
    return MCX_EPROTO;
  }
  for (i = 0, start = 0; i <= line->len - 2; i++) {
    if (i == line->len - 2 || buf[i] == ' ') {
      if (i == start) {
        *why = "empty token in reply line";
        return MCX_EPROTO;
      }
      if (line->nr_tok < MCX_REPLY_TOKENS_MAX) {
        line->tok[line->nr_tok] = buf + start;
        line->tok_len[line->nr_tok] = i - start;
      }
      line->nr_tok++;
      start = i + 1;
    }
    else if (buf[i] < 0x21 || buf[i] > 0x7e) {
      *why = "unprintable byte in reply line";
      return MCX_EPROTO;
    }
  }
  return 1;
}

void
mcx_skip_start (struct mcx_skip *skip, size_t index, size_t len)
{
  *skip = (struct mcx_skip) { .on = true, .index = index,
                              .len = len, .left = len };
}

int
mcx_skip_feed (struct mcx_skip *skip, const char *buf, size_t len,
               size_t *pos, size_t *need)
{
  size_t avail = len - *pos;
  size_t k = avail < skip->left ? avail : skip->left;

  *pos += k;
  avail -= k;
  skip->left -= k;
  if (skip->left > 0 || avail < 2) {
    *need = skip->left > 0 ? 1 : 2;
    return 0;
  }
  if (buf[*pos] != '\r' || buf[*pos + 1] != '\n')
    return MCX_EPROTO;
  *pos += 2;
  skip->on = false;
  return 1;
}
