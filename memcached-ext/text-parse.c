/* SPDX-License-Identifier: BSD-3-Clause */
/* abd memcached-ext: the parser of memcached text replies.
 *
 * The server is untrusted, so this accepts only what a batch (text.h) can
 * legitimately get back, in the order its commands were sent, and nothing
 * it cannot bound:
 *
 *   to a get:     VALUE <key> <flags> <len>   key: one of the command's
 *                                             keys after the last one
 *                                             answered; flags < 2^32;
 *                                             len <= max_value; then
 *                                             exactly len bytes and CRLF
 *                                             (up to MCX_SKIP_MAX: read
 *                                             and dropped, MCX_TOO_LARGE
 *                                             for that key alone)
 *                 END | SERVER_ERROR <text>   the end of the command
 *   to a set:     STORED | NOT_STORED | EXISTS | NOT_FOUND
 *                 | SERVER_ERROR <text>
 *   to a delete:  DELETED | NOT_FOUND | SERVER_ERROR <text>
 *
 * A line is printable ASCII ending in "\r\n", at most MCX_LINE_MAX bytes;
 * tokens are separated by exactly one space; numbers are decimal digits
 * only, at most 19 of them (no overflow, no sign: "-1" is refused, and so
 * is 18446744073709551614, which libmemcached 1.1.4 wrapped into a
 * zero-byte buffer).  Every operation is answered exactly once, so a
 * batch ends after as many replies as it has commands: a server that
 * sends more, sends them to a connection nobody reads before it is
 * closed or to the next batch, where they fail the same checks.
 */

#include <config.h>

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "reply.h"
#include "text.h"

#define MTX_TOKENS_MAX 5

static int
mtx_proto_error (struct mtx_parser *p, const char *fs, ...)
{
  va_list args;

  va_start (args, fs);
  vsnprintf (p->error, sizeof p->error, fs, args);
  va_end (args);
  return MCX_EPROTO;
}

/* A decimal number of at most 19 digits (no sign, no spaces). */
static bool
mtx_parse_number (const char *s, size_t len, uint64_t *out)
{
  uint64_t v = 0;
  size_t i;

  if (len == 0 || len > 19)
    return false;
  for (i = 0; i < len; i++) {
    if (s[i] < '0' || s[i] > '9')
      return false;
    v = v * 10 + (s[i] - '0');
  }
  *out = v;
  return true;
}

size_t
mtx_command_end (const struct mcx_op *ops, size_t n, size_t i)
{
  size_t len, j;

  if (ops[i].type != MCX_GET)
    return i + 1;
  len = sizeof "get " - 1 + ops[i].key_len + 2;
  for (j = i + 1; j < n && ops[j].type == MCX_GET &&
         len + 1 + ops[j].key_len <= MTX_GET_LINE_MAX; j++)
    len += 1 + ops[j].key_len;
  return j;
}

/* The operation of the get command being answered whose key is KEY, at
 * p->cursor or after it; SIZE_MAX if none.
 */
static size_t
mtx_find_key (const struct mtx_parser *p, const char *key, size_t len)
{
  size_t i;

  for (i = p->cursor; i < p->cmd_end; i++)
    if (p->ops[i].key_len == len && memcmp (p->ops[i].key, key, len) == 0)
      return i;
  return SIZE_MAX;
}

int
mtx_parse (struct mtx_parser *p, const char *buf, size_t len, size_t *used,
           size_t *need)
{
  size_t pos = 0;

  *used = 0;
  *need = 0;
  for (;;) {
    struct mcx_line l;
    const char *line, *msg, *why;
    const char *const *tok = l.tok;
    const size_t *tok_len = l.tok_len;
    size_t avail, line_len, msg_len, nr_tok;
    const struct mcx_op *op;
    enum mcx_reply r;
    int pr;

    if (p->skip.on) {
      pr = mcx_skip_feed (&p->skip, buf, len, &pos, need);
      *used = pos;
      if (pr == 0)
        return 0;
      if (pr < 0)
        return mtx_proto_error (p, "value not followed by CRLF");
      p->fn (p->opaque, p->skip.index, MCX_TOO_LARGE, NULL, p->skip.len);
      continue;
    }
    if (p->next >= p->n)
      return 1;                 /* (a get command's END sets next) */
    avail = len - pos;
    pr = mcx_reply_line (buf + pos, avail, &l, need, &why);
    if (pr == 0)
      return 0;
    if (pr < 0)
      return mtx_proto_error (p, "%s", why);
    line = l.text;
    line_len = l.len;
    nr_tok = l.nr_tok;

#define MTX_IS(code) \
    (tok_len[0] == sizeof code - 1 && memcmp (tok[0], code, tok_len[0]) == 0)

    op = &p->ops[p->next];
    if (MTX_IS ("SERVER_ERROR")) {
      /* The message is the rest of the line (it has spaces). */
      msg = nr_tok > 1 ? tok[1] : "";
      msg_len = nr_tok > 1 ? line + line_len - 2 - tok[1] : 0;
      if (op->type == MCX_GET) {
        /* The get command ends here: what it did not send is a miss. */
        p->fn (p->opaque, MCX_NO_INDEX, MCX_SERVER_ERROR, msg, msg_len);
        p->next = p->cmd_end ? p->cmd_end : mtx_command_end (p->ops, p->n,
                                                             p->next);
        p->cursor = p->cmd_end = 0;
      }
      else
        p->fn (p->opaque, p->next++, MCX_SERVER_ERROR, msg, msg_len);
      pos += line_len;
      *used = pos;
      continue;
    }
    if (nr_tok > MTX_TOKENS_MAX)
      return mtx_proto_error (p, "too many tokens in reply line");

    if (op->type == MCX_GET) {
      uint64_t flags, vlen;
      size_t index;

      if (p->cmd_end == 0) {
        p->cmd_end = mtx_command_end (p->ops, p->n, p->next);
        p->cursor = p->next;
      }
      if (MTX_IS ("END") && nr_tok == 1) {
        p->next = p->cmd_end;
        p->cursor = p->cmd_end = 0;
        pos += line_len;
        *used = pos;
        continue;
      }
      if (!MTX_IS ("VALUE") || nr_tok != 4)
        return mtx_proto_error (p, "unexpected reply to get '%.*s'",
                                (int) (line_len - 2 > 20 ? 20 : line_len - 2),
                                line);
      if (!mtx_parse_number (tok[2], tok_len[2], &flags) ||
          flags > UINT32_MAX)
        return mtx_proto_error (p, "malformed flags in VALUE line");
      if (!mtx_parse_number (tok[3], tok_len[3], &vlen))
        return mtx_proto_error (p, "malformed length in VALUE line");
      if (vlen > p->max_value && vlen > MCX_SKIP_MAX)
        return mtx_proto_error (p, "value of %llu bytes, more than %zu",
                                (unsigned long long) vlen,
                                (size_t) MCX_SKIP_MAX);
      index = mtx_find_key (p, tok[1], tok_len[1]);
      if (index == SIZE_MAX)
        return mtx_proto_error (p, "VALUE for a key not asked for, "
                                "answered already or out of order");
      if (vlen > p->max_value) {
        p->cursor = index + 1;
        mcx_skip_start (&p->skip, index, vlen);
        pos += line_len;
        *used = pos;
        continue;
      }
      if (avail - line_len < vlen + 2) {
        *need = line_len + vlen + 2;
        return 0;
      }
      if (line[line_len + vlen] != '\r' || line[line_len + vlen + 1] != '\n')
        return mtx_proto_error (p, "value not followed by CRLF");
      p->fn (p->opaque, index, MCX_HIT, line + line_len, vlen);
      p->cursor = index + 1;
      pos += line_len + vlen + 2;
      *used = pos;
      continue;
    }

    if (nr_tok != 1)
      return mtx_proto_error (p, "unexpected reply '%.*s'",
                              (int) (line_len - 2 > 20 ? 20 : line_len - 2),
                              line);
    if (op->type == MCX_SET && MTX_IS ("STORED"))
      r = MCX_STORED;
    else if (op->type == MCX_SET && MTX_IS ("NOT_STORED"))
      r = MCX_NOT_STORED;
    else if (op->type == MCX_SET && MTX_IS ("EXISTS"))
      r = MCX_EXISTS;
    else if (op->type == MCX_DELETE && MTX_IS ("DELETED"))
      r = MCX_STORED;
    else if (MTX_IS ("NOT_FOUND"))
      r = MCX_NOT_FOUND;
    else
      return mtx_proto_error (p, "unexpected reply to %s '%.*s'",
                              op->type == MCX_SET ? "set" : "delete",
                              (int) (line_len - 2 > 20 ? 20 : line_len - 2),
                              line);
    p->fn (p->opaque, p->next++, r, NULL, 0);
    pos += line_len;
    *used = pos;
#undef MTX_IS
  }
}
