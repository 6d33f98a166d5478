/* SPDX-License-Identifier: BSD-3-Clause */
/* abd memcached-ext: the parser of memcached meta replies.
 *
 * The server is untrusted, so this accepts only what a quiet batch
 * (meta.h) can legitimately get back, and nothing it cannot bound:
 *
 *   VA <len> O<i>        operation i is a get; len <= max_value; then
 *                        exactly len bytes and "\r\n"; a len above
 *                        max_value but at most MCX_SKIP_MAX: the bytes
 *                        are consumed as they come and dropped, then
 *                        "\r\n", and operation i gets MCX_TOO_LARGE
 *   EN O<i>              operation i is a get (a miss, if not quiet)
 *   HD|NS|EX|NF O<i>     operation i is a set or a delete
 *   SERVER_ERROR <text>  passed on without an index; at most one per
 *                        command of the batch
 *   MN                   the end of the batch
 *
 * A line is printable ASCII ending in "\r\n", at most MCX_LINE_MAX bytes;
 * tokens are separated by exactly one space; numbers are decimal digits
 * only, without overflow; each operation is answered at most once.
 * Anything else (ERROR, CLIENT_ERROR, unknown codes or flags) is a
 * protocol error: the caller closes the connection.
 */

#include <config.h>

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "meta.h"
#include "reply.h"

#define MCX_TOKENS_MAX 4

static int
mcx_proto_error (struct mcx_parser *p, const char *fs, ...)
{
  va_list args;

  va_start (args, fs);
  vsnprintf (p->error, sizeof p->error, fs, args);
  va_end (args);
  return MCX_EPROTO;
}

/* A decimal number of at most 19 digits (no sign, no spaces). */
static bool
mcx_parse_number (const char *s, size_t len, uint64_t *out)
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

/* The flags of a reply: exactly one token, O<index>, naming an operation
 * of the batch of type TYPE (or, for HD/NS/EX/NF, a set or a delete) not
 * answered yet.
 */
static int
mcx_parse_opaque (struct mcx_parser *p, const char *tok, size_t len,
                  bool want_get, size_t *index)
{
  uint64_t i;

  if (len < 2 || tok[0] != 'O' || !mcx_parse_number (tok + 1, len - 1, &i))
    return mcx_proto_error (p, "bad flag '%.*s'", (int) (len > 20 ? 20 : len),
                            tok);
  if (i >= p->n)
    return mcx_proto_error (p, "unknown opaque %llu", (unsigned long long) i);
  if ((p->ops[i].type == MCX_GET) != want_get)
    return mcx_proto_error (p, "reply of the wrong kind for opaque %llu",
                            (unsigned long long) i);
  if (p->answered[i])
    return mcx_proto_error (p, "second reply for opaque %llu",
                            (unsigned long long) i);
  *index = i;
  return 0;
}

int
mcx_parse (struct mcx_parser *p, const char *buf, size_t len, size_t *used,
           size_t *need)
{
  size_t pos = 0;

  *used = 0;
  *need = 0;
  for (;;) {
    struct mcx_line l;
    const char *line, *why;
    const char *const *tok = l.tok;
    const size_t *tok_len = l.tok_len;
    size_t avail, line_len, nr_tok, index;
    int r;

    if (p->skip.on) {
      r = mcx_skip_feed (&p->skip, buf, len, &pos, need);
      *used = pos;
      if (r == 0)
        return 0;
      if (r < 0)
        return mcx_proto_error (p, "value not followed by CRLF");
      p->fn (p->opaque, p->skip.index, MCX_TOO_LARGE, NULL, p->skip.len);
      continue;
    }

    avail = len - pos;
    r = mcx_reply_line (buf + pos, avail, &l, need, &why);
    if (r == 0)
      return 0;
    if (r < 0)
      return mcx_proto_error (p, "%s", why);
    line = l.text;
    line_len = l.len;
    nr_tok = l.nr_tok;

#define MCX_IS(code) \
    (tok_len[0] == sizeof code - 1 && memcmp (tok[0], code, tok_len[0]) == 0)

    if (MCX_IS ("SERVER_ERROR")) {
      /* The message is the rest of the line (it has spaces). */
      size_t skip = sizeof "SERVER_ERROR" - 1;
      size_t msg = line_len - 2 > skip ? line_len - 2 - skip - 1 : 0;

      /* Bounded, so that a server cannot keep a batch going forever. */
      if (++p->nr_errors > p->n + 1)
        return mcx_proto_error (p, "more SERVER_ERROR lines than commands");
      p->fn (p->opaque, MCX_NO_INDEX, MCX_SERVER_ERROR,
             msg ? line + skip + 1 : "", msg);
      pos += line_len;
      *used = pos;
      continue;
    }
    if (nr_tok > MCX_TOKENS_MAX)
      return mcx_proto_error (p, "too many tokens in reply line");

    if (MCX_IS ("MN")) {
      if (nr_tok != 1)
        return mcx_proto_error (p, "MN with flags");
      *used = pos + line_len;
      return 1;
    }
    if (MCX_IS ("VA")) {
      uint64_t vlen;

      if (nr_tok != 3 || !mcx_parse_number (tok[1], tok_len[1], &vlen))
        return mcx_proto_error (p, "malformed VA line");
      if (vlen > p->max_value && vlen > MCX_SKIP_MAX)
        return mcx_proto_error (p, "value of %llu bytes, more than %zu",
                                (unsigned long long) vlen,
                                (size_t) MCX_SKIP_MAX);
      r = mcx_parse_opaque (p, tok[2], tok_len[2], true, &index);
      if (r < 0)
        return r;
      if (vlen > p->max_value) {
        p->answered[index] = 1;
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
        return mcx_proto_error (p, "value not followed by CRLF");
      p->answered[index] = 1;
      p->fn (p->opaque, index, MCX_HIT, line + line_len, vlen);
      pos += line_len + vlen + 2;
      *used = pos;
      continue;
    }
    if (nr_tok != 2)
      return mcx_proto_error (p, "unexpected reply line '%.*s'",
                              (int) (line_len - 2 > 20 ? 20 : line_len - 2),
                              line);
    if (MCX_IS ("EN"))
      r = mcx_parse_opaque (p, tok[1], tok_len[1], true, &index);
    else if (MCX_IS ("HD") || MCX_IS ("NS") || MCX_IS ("EX") || MCX_IS ("NF"))
      r = mcx_parse_opaque (p, tok[1], tok_len[1], false, &index);
    else
      return mcx_proto_error (p, "unknown reply '%.*s'",
                              (int) (tok_len[0] > 20 ? 20 : tok_len[0]),
                              tok[0]);
    if (r < 0)
      return r;
    p->answered[index] = 1;
    p->fn (p->opaque, index,
           MCX_IS ("EN") ? MCX_MISS :
           MCX_IS ("HD") ? MCX_STORED :
           MCX_IS ("NS") ? MCX_NOT_STORED :
           MCX_IS ("EX") ? MCX_EXISTS : MCX_NOT_FOUND,
           NULL, 0);
    pos += line_len;
    *used = pos;
#undef MCX_IS
  }
}
