/* SPDX-License-Identifier: BSD-3-Clause */
/* abd tests: memcached-ext's text client against a real memcached, and
 * its reply parser against crafted replies.  Run by test-text-client.sh:
 *
 *   test-text-client parser               crafted replies, no server
 *   test-text-client basic HOST PORT      gets (300 keys: several "get"
 *                                         lines), sets, deletes, 1 MiB
 *                                         values, a value over the maximum
 *                                         (PORT 0: HOST is a Unix socket)
 *   test-text-client timeout HOST PORT MS the server is stopped: a batch
 *                                         fails with a timeout in MS + slack
 */

#include <config.h>

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "text.h"

#define NS_PER_MS INT64_C (1000000)
#define SLACK_MS 500            /* a loaded machine's scheduling delay */
#define MIB (1024 * 1024)

static void __attribute__ ((noreturn))
die (const char *what, int status)
{
  fprintf (stderr, "test-text-client: %s: %s\n", what, mcx_strstatus (status));
  exit (1);
}

/* Replies collected by the callback. */
struct reply {
  int kind;                     /* enum mcx_reply, or -1 for none */
  size_t len;
  char *data;
};

struct replies {
  size_t n;
  struct reply *r;
  size_t errors;                /* SERVER_ERROR lines ending a get */
};

static void
collect (void *opaque, size_t index, enum mcx_reply kind, const char *data,
         size_t len)
{
  struct replies *rs = opaque;

  if (index == MCX_NO_INDEX) {
    rs->errors++;
    return;
  }
  assert (index < rs->n);
  assert (rs->r[index].kind == -1);
  rs->r[index].kind = kind;
  rs->r[index].len = len;
  if (kind == MCX_HIT) {
    rs->r[index].data = malloc (len ? len : 1);
    assert (rs->r[index].data);
    memcpy (rs->r[index].data, data, len);
  }
}

static void
replies_init (struct replies *rs, size_t n)
{
  size_t i;

  rs->n = n;
  rs->errors = 0;
  rs->r = calloc (n, sizeof *rs->r);
  assert (rs->r);
  for (i = 0; i < n; i++)
    rs->r[i].kind = -1;
}

static void
replies_free (struct replies *rs)
{
  size_t i;

  for (i = 0; i < rs->n; i++)
    free (rs->r[i].data);
  free (rs->r);
}

static int
run (struct mtx_conn *c, const struct mcx_op *ops, size_t n, size_t max,
     int64_t timeout_ms, struct replies *rs)
{
  int r;

  replies_init (rs, n);
  r = mtx_send (c, ops, n, max);
  if (r != MCX_OK)
    return r;
  return mtx_recv (c, mcx_now_ns () + timeout_ms * NS_PER_MS, collect, rs);
}

/* Parse TEXT as the reply to OPS (gets of a and b, a set of c, a delete
 * of d) with values of at most 16 bytes: mtx_parse's result after the
 * whole text at once, checked against feeding it byte by byte.  *RS gets
 * the replies.
 */
static int
parse_text (const char *text, struct replies *rs)
{
  static const struct mcx_op ops[4] = {
    { .type = MCX_GET, .key = "a", .key_len = 1 },
    { .type = MCX_GET, .key = "b", .key_len = 1 },
    { .type = MCX_SET, .key = "c", .key_len = 1 },
    { .type = MCX_DELETE, .key = "d", .key_len = 1 },
  };
  struct replies bytewise;
  struct mtx_parser p = {
    .ops = ops, .n = 4, .max_value = 16, .fn = collect, .opaque = rs,
  };
  size_t len = strlen (text), used, need, pos = 0, fed;
  int r, r1 = 0;

  replies_init (rs, 4);
  r = mtx_parse (&p, text, len, &used, &need);

  p = (struct mtx_parser) {
    .ops = ops, .n = 4, .max_value = 16, .fn = collect, .opaque = &bytewise,
  };
  replies_init (&bytewise, 4);
  for (fed = 0; fed <= len; fed++) {
    r1 = mtx_parse (&p, text + pos, fed - pos, &used, &need);
    pos += used;
    if (r1 != 0)
      break;
    assert (need >= 1);
  }
  replies_free (&bytewise);
  if (r1 != r) {
    fprintf (stderr, "parser: whole and byte-wise disagree on '%s'\n", text);
    exit (1);
  }
  return r;
}

static void
test_parser (void)
{
  static const struct { const char *text; int want; } cases[] = {
    { "END\r\nSTORED\r\nDELETED\r\n", 1 },
    { "VALUE a 0 3\r\nabc\r\nVALUE b 7 0\r\n\r\nEND\r\nNOT_STORED\r\n"
      "NOT_FOUND\r\n", 1 },
    { "VALUE b 0 1\r\nx\r\nEND\r\nEXISTS\r\nNOT_FOUND\r\n", 1 },
    { "SERVER_ERROR out of memory writing get response\r\n"
      "SERVER_ERROR out of memory storing object\r\nDELETED\r\n", 1 },
    { "VALUE a 0 3\r\nab", 0 },                     /* incomplete */
    { "END\r\nSTORED\r\n", 0 },                     /* the delete's reply */
    { "VALUE a 0 17\r\n", 0 },      /* over the maximum: being skipped */
    { "VALUE a 0 17\r\n01234567890123456xx", MCX_EPROTO }, /* no CRLF */
    { "VALUE a 0 4194305\r\n", MCX_EPROTO },       /* over MCX_SKIP_MAX */
    { "VALUE b 0 17\r\n01234567890123456\r\nVALUE a 0 1\r\nx\r\n",
      MCX_EPROTO },                                 /* skipped, then order */
    { "VALUE a 0 18446744073709551614\r\n", MCX_EPROTO }, /* 20 digits */
    { "VALUE a 0 99999999999999999999\r\n", MCX_EPROTO },
    { "VALUE a 0 -1\r\n", MCX_EPROTO },
    { "VALUE a 0 +1\r\n", MCX_EPROTO },
    { "VALUE a 4294967296 1\r\nx\r\nEND\r\n", MCX_EPROTO }, /* flags */
    { "VALUE a 0 1 5\r\nx\r\nEND\r\n", MCX_EPROTO },        /* a cas */
    { "VALUE c 0 1\r\nx\r\nEND\r\n", MCX_EPROTO },  /* key not asked */
    { "VALUE b 0 1\r\nx\r\nVALUE a 0 1\r\ny\r\n", MCX_EPROTO }, /* order */
    { "VALUE a 0 1\r\nx\r\nVALUE a 0 1\r\ny\r\n", MCX_EPROTO }, /* twice */
    { "VALUE aa 0 1\r\nx\r\nEND\r\n", MCX_EPROTO },
    { "VALUE a 0 3\r\nabcd\r\n", MCX_EPROTO },      /* length lies */
    { "VALUE a  0 3\r\nabc\r\n", MCX_EPROTO },      /* double space */
    { "END\r\nVALUE a 0 1\r\nx\r\n", MCX_EPROTO },  /* VALUE for a set */
    { "END\r\nDELETED\r\n", MCX_EPROTO },           /* DELETED for a set */
    { "END\r\nSTORED\r\nSTORED\r\n", MCX_EPROTO },  /* STORED for a delete */
    { "STORED\r\n", MCX_EPROTO },                   /* STORED for a get */
    { "END x\r\n", MCX_EPROTO },
    { "END\n", MCX_EPROTO },                        /* no CR */
    { "ERROR\r\n", MCX_EPROTO },
    { "CLIENT_ERROR bad command line format\r\n", MCX_EPROTO },
    { "VA 3 O0\r\nabc\r\n", MCX_EPROTO },           /* meta protocol */
    { "\r\n", MCX_EPROTO },
    { "E\x01\r\n", MCX_EPROTO },
  };
  char line[MCX_LINE_MAX + 64];
  struct replies rs;
  size_t i;

  for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int r = parse_text (cases[i].text, &rs);

    replies_free (&rs);
    if (r != cases[i].want) {
      fprintf (stderr, "parser: case %zu: got %d, want %d\n", i, r,
               cases[i].want);
      exit (1);
    }
  }

  /* What the replies said, for a complete one. */
  assert (parse_text ("VALUE b 0 2\r\nhi\r\nEND\r\nNOT_STORED\r\n"
                      "SERVER_ERROR busy\r\n", &rs) == 1);
  assert (rs.r[0].kind == -1);
  assert (rs.r[1].kind == MCX_HIT && rs.r[1].len == 2 &&
          memcmp (rs.r[1].data, "hi", 2) == 0);
  assert (rs.r[2].kind == MCX_NOT_STORED);
  assert (rs.r[3].kind == MCX_SERVER_ERROR && rs.r[3].len == 4);
  replies_free (&rs);

  /* A value over the maximum (someone else's, under one of our keys) is
   * that key's miss alone: dropped, reported MCX_TOO_LARGE with its
   * length; the batch's other replies stand.
   */
  assert (parse_text ("VALUE a 0 20\r\n01234567890123456789\r\n"
                      "VALUE b 0 2\r\nhi\r\nEND\r\nSTORED\r\nDELETED\r\n",
                      &rs) == 1);
  assert (rs.r[0].kind == MCX_TOO_LARGE && rs.r[0].len == 20 &&
          rs.r[0].data == NULL);
  assert (rs.r[1].kind == MCX_HIT && rs.r[1].len == 2 &&
          memcmp (rs.r[1].data, "hi", 2) == 0);
  assert (rs.r[2].kind == MCX_STORED && rs.r[3].kind == MCX_STORED);
  replies_free (&rs);

  /* A line of MCX_LINE_MAX bytes without its end is refused at once, a
   * key of 300 bytes too (it is no key of the batch).
   */
  memset (line, 'V', MCX_LINE_MAX);
  line[MCX_LINE_MAX] = '\0';
  assert (parse_text (line, &rs) == MCX_EPROTO);
  replies_free (&rs);
  memcpy (line, "VALUE ", 6);
  memset (line + 6, 'a', 300);
  strcpy (line + 306, " 0 1\r\nx\r\nEND\r\n");
  assert (parse_text (line, &rs) == MCX_EPROTO);
  replies_free (&rs);
  printf ("parser: %zu cases ok\n", i + 4);
}

/* The "get" lines a batch of N gets of KEY_LEN-byte keys makes. */
static size_t
get_lines (const struct mcx_op *ops, size_t n)
{
  size_t i, lines = 0;

  for (i = 0; i < n; i = mtx_command_end (ops, n, i))
    lines++;
  return lines;
}

static void
make_key (char *key, size_t i, unsigned salt)
{
  snprintf (key, 48, "abd3:%08x%014zx", salt, i);
}

static void
test_basic (const char *host, unsigned port)
{
  const size_t n = 300;
  struct mcx_op *ops = calloc (n, sizeof *ops);
  char (*keys)[48] = calloc (n, 48);
  char *big = malloc (MIB);
  unsigned salt = getpid ();
  struct replies rs;
  struct mtx_conn *c;
  size_t i, hits;
  int st;

  assert (ops && keys && big);
  for (i = 0; i < MIB; i++)
    big[i] = i * 7 + (i >> 13);
  c = mtx_connect (host, port, mcx_now_ns () + 5000 * NS_PER_MS, &st);
  if (c == NULL)
    die ("connect", st);

  /* Set the even keys (values of varied length), in one batch: every set
   * is answered.
   */
  for (i = 0; i < n; i++) {
    make_key (keys[i], i, salt);
    ops[i] = (struct mcx_op) { .type = MCX_SET, .key = keys[i],
                               .key_len = strlen (keys[i]),
                               .value = big + i, .value_len = i * 61,
                               .ttl = 600 };
  }
  for (i = 0; i < n / 2; i++)
    ops[i] = ops[2 * i];
  st = run (c, ops, n / 2, 0, 5000, &rs);
  if (st != MCX_OK)
    die (mtx_error (c), st);
  for (i = 0; i < n / 2; i++)
    assert (rs.r[i].kind == MCX_STORED);
  replies_free (&rs);

  /* Get all: hits exactly for the even ones, with their values, over
   * several "get" lines.
   */
  for (i = 0; i < n; i++)
    ops[i] = (struct mcx_op) { .type = MCX_GET, .key = keys[i],
                               .key_len = strlen (keys[i]) };
  assert (get_lines (ops, n) > 5);
  st = run (c, ops, n, MIB, 5000, &rs);
  if (st != MCX_OK)
    die (mtx_error (c), st);
  for (i = 0, hits = 0; i < n; i++) {
    if (i % 2 == 0) {
      assert (rs.r[i].kind == MCX_HIT);
      assert (rs.r[i].len == i * 61);
      assert (memcmp (rs.r[i].data, big + i, i * 61) == 0);
      hits++;
    }
    else
      assert (rs.r[i].kind == -1);
  }
  assert (hits == n / 2);
  replies_free (&rs);
  printf ("%zu keys on %zu get lines: %zu hits, %zu misses ok\n", n,
          get_lines (ops, n), hits, n - hits);

  /* Delete 0 and 1 (1 was never set: NOT_FOUND), get 2, set 3. */
  ops[0] = (struct mcx_op) { .type = MCX_DELETE, .key = keys[0],
                             .key_len = strlen (keys[0]) };
  ops[1] = (struct mcx_op) { .type = MCX_DELETE, .key = keys[1],
                             .key_len = strlen (keys[1]) };
  ops[2] = (struct mcx_op) { .type = MCX_GET, .key = keys[2],
                             .key_len = strlen (keys[2]) };
  ops[3] = (struct mcx_op) { .type = MCX_SET, .key = keys[3],
                             .key_len = strlen (keys[3]),
                             .value = "three", .value_len = 5 };
  st = run (c, ops, 4, MIB, 5000, &rs);
  if (st != MCX_OK)
    die (mtx_error (c), st);
  assert (rs.r[0].kind == MCX_STORED);
  assert (rs.r[1].kind == MCX_NOT_FOUND);
  assert (rs.r[2].kind == MCX_HIT && rs.r[2].len == 2 * 61);
  assert (rs.r[3].kind == MCX_STORED);
  replies_free (&rs);
  for (i = 0; i < 4; i++)
    ops[i].type = MCX_GET;
  st = run (c, ops, 4, MIB, 5000, &rs);
  if (st != MCX_OK)
    die (mtx_error (c), st);
  assert (rs.r[0].kind == -1 && rs.r[1].kind == -1);
  assert (rs.r[2].kind == MCX_HIT);
  assert (rs.r[3].kind == MCX_HIT && rs.r[3].len == 5 &&
          memcmp (rs.r[3].data, "three", 5) == 0);
  replies_free (&rs);
  printf ("sets and deletes ok\n");

  /* Big values: four of 1 MiB set and got back in one batch each. */
  for (i = 0; i < 4; i++)
    ops[i] = (struct mcx_op) { .type = MCX_SET, .key = keys[i],
                               .key_len = strlen (keys[i]),
                               .value = big, .value_len = MIB };
  st = run (c, ops, 4, 0, 5000, &rs);
  if (st != MCX_OK)
    die (mtx_error (c), st);
  replies_free (&rs);
  for (i = 0; i < 4; i++)
    ops[i].type = MCX_GET;
  st = run (c, ops, 4, MIB, 5000, &rs);
  if (st != MCX_OK)
    die (mtx_error (c), st);
  for (i = 0; i < 4; i++)
    assert (rs.r[i].kind == MCX_HIT && rs.r[i].len == MIB &&
            memcmp (rs.r[i].data, big, MIB) == 0);
  replies_free (&rs);
  printf ("1 MiB values ok\n");

  /* A key memcached would refuse is refused before anything is sent. */
  ops[0].key_len = MCX_KEY_MAX + 1;
  assert (mtx_send (c, ops, 1, MIB) == MCX_EINVAL && !mtx_broken (c));
  ops[0].key_len = strlen (keys[0]);

  /* A value longer than the caller allows is that key's miss alone
   * (MCX_TOO_LARGE): read and dropped, the connection still usable.
   */
  ops[1] = ops[0];
  ops[1].key = "abd3:not-stored";
  ops[1].key_len = strlen (ops[1].key);
  st = run (c, ops, 2, MIB - 1, 5000, &rs);
  if (st != MCX_OK || mtx_broken (c) || rs.r[0].kind != MCX_TOO_LARGE ||
      rs.r[0].len != MIB || rs.r[1].kind != -1) {
    fprintf (stderr, "an oversized value was not skipped: %s\n",
             mcx_strstatus (st));
    exit (1);
  }
  replies_free (&rs);
  st = run (c, ops, 1, MIB, 5000, &rs);
  if (st != MCX_OK || rs.r[0].kind != MCX_HIT || rs.r[0].len != MIB)
    die ("the get after a skipped value", st);
  replies_free (&rs);
  printf ("oversized value skipped, the connection kept\n");
  mtx_close (c);
  free (big);
  free (keys);
  free (ops);
}

/* The server is stopped: a batch must fail with a timeout in about MS. */
static void
test_timeout (const char *host, unsigned port, int64_t ms)
{
  struct mcx_op op = { .type = MCX_GET, .key = "abd3:x", .key_len = 6 };
  struct replies rs;
  struct mtx_conn *c;
  int64_t start = mcx_now_ns (), took;
  int st;

  c = mtx_connect (host, port, start + ms * NS_PER_MS, &st);
  if (c != NULL) {
    replies_init (&rs, 1);
    st = mtx_send (c, &op, 1, 16);
    if (st == MCX_OK)
      st = mtx_recv (c, start + ms * NS_PER_MS, collect, &rs);
    replies_free (&rs);
    mtx_close (c);
  }
  took = (mcx_now_ns () - start) / NS_PER_MS;
  printf ("stopped server: %s after %lld ms (deadline %lld ms)\n",
          mcx_strstatus (st), (long long) took, (long long) ms);
  if (st != MCX_ETIMEDOUT || took < ms || took > ms + SLACK_MS)
    exit (1);
}

int
main (int argc, char *argv[])
{
  if (argc == 2 && strcmp (argv[1], "parser") == 0)
    test_parser ();
  else if (argc == 4 && strcmp (argv[1], "basic") == 0)
    test_basic (argv[2], atoi (argv[3]));
  else if (argc == 5 && strcmp (argv[1], "timeout") == 0)
    test_timeout (argv[2], atoi (argv[3]), atoll (argv[4]));
  else {
    fprintf (stderr, "usage: see the top of tests/test-text-client.c\n");
    return 2;
  }
  return 0;
}
