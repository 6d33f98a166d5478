/* SPDX-License-Identifier: BSD-3-Clause */
/* abd tests: memcached-ext's meta client against a real memcached, and
 * its reply parser against crafted replies.  Run by test-meta-client.sh:
 *
 *   test-meta-client parser               crafted replies, no server
 *   test-meta-client basic HOST PORT      gets, sets, deletes, big values,
 *                                         a batch of 256 keys (PORT 0: HOST
 *                                         is a Unix socket)
 *   test-meta-client timeout HOST PORT MS the server is stopped: a batch
 *                                         fails with a timeout in MS + slack
 *   test-meta-client killed HOST PORT PID set|get
 *                                         kills PID (the server) in the
 *                                         middle of a batch of 64 x 1 MiB
 *                                         sets (our writes fail), or of 64
 *                                         gets (the caller has stopped it, so
 *                                         our reads see the end): an error, at
 *                                         once, not at the deadline
 */

#include <config.h>

#include <assert.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "meta.h"

#define NS_PER_MS INT64_C (1000000)
#define SLACK_MS 500            /* a loaded machine's scheduling delay */
#define MIB (1024 * 1024)

static void __attribute__ ((noreturn))
die (const char *what, int status)
{
  fprintf (stderr, "test-meta-client: %s: %s\n", what, mcx_strstatus (status));
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
  size_t errors;                /* SERVER_ERROR lines */
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
run (struct mcx_conn *c, const struct mcx_op *ops, size_t n, size_t max,
     int64_t timeout_ms, struct replies *rs)
{
  replies_init (rs, n);
  return mcx_batch (c, ops, n, max, mcx_now_ns () + timeout_ms * NS_PER_MS,
                    collect, rs);
}

/* Parse TEXT as the reply to OPS (2 gets then a set then a delete) with
 * values of at most 16 bytes.  Returns mcx_parse's result after feeding
 * the whole text at once, and checks that feeding it byte by byte agrees.
 */
static int
parse_text (const char *text)
{
  static const struct mcx_op ops[4] = {
    { .type = MCX_GET, .key = "a", .key_len = 1 },
    { .type = MCX_GET, .key = "b", .key_len = 1 },
    { .type = MCX_SET, .key = "c", .key_len = 1 },
    { .type = MCX_DELETE, .key = "d", .key_len = 1 },
  };
  unsigned char answered[4] = { 0 };
  struct replies rs;
  struct mcx_parser p = {
    .ops = ops, .n = 4, .answered = answered, .max_value = 16,
    .fn = collect, .opaque = &rs,
  };
  size_t len = strlen (text), used, need, pos = 0, fed;
  int r, r1 = 0;

  replies_init (&rs, 4);
  r = mcx_parse (&p, text, len, &used, &need);
  replies_free (&rs);

  /* Again, growing the input one byte at a time as a socket might. */
  memset (answered, 0, sizeof answered);
  p = (struct mcx_parser) {
    .ops = ops, .n = 4, .answered = answered, .max_value = 16,
    .fn = collect, .opaque = &rs,
  };
  replies_init (&rs, 4);
  for (fed = 0; fed <= len; fed++) {
    r1 = mcx_parse (&p, text + pos, fed - pos, &used, &need);
    pos += used;
    if (r1 != 0)
      break;
    assert (need >= 1);
  }
  replies_free (&rs);
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
    { "MN\r\n", 1 },
    { "VA 3 O0\r\nabc\r\nMN\r\n", 1 },
    { "VA 0 O1\r\n\r\nNS O2\r\nNF O3\r\nMN\r\n", 1 },
    { "SERVER_ERROR out of memory\r\nMN\r\n", 1 },
    { "SERVER_ERROR a\r\nSERVER_ERROR a\r\nSERVER_ERROR a\r\nSERVER_ERROR a\r\n"
      "SERVER_ERROR a\r\nSERVER_ERROR a\r\n", MCX_EPROTO }, /* endless */
    { "EN O0\r\nHD O2\r\nMN\r\n", 1 },
    { "VA 3 O0\r\nab", 0 },                         /* incomplete */
    { "VA 17 O0\r\n", 0 },                  /* over the maximum: skipped */
    { "VA 17 O0\r\n0123456789abcdefg\r\nVA 3 O1\r\nabc\r\nMN\r\n", 1 },
    { "VA 17 O0\r\n0123456789abcdefgXY", MCX_EPROTO }, /* no CRLF after */
    { "VA 17 O0\r\n0123456789abcdefg\r\nVA 3 O0\r\nabc\r\n", MCX_EPROTO },
    { "VA 4194305 O0\r\n", MCX_EPROTO },           /* over MCX_SKIP_MAX */
    { "VA 17 O2\r\n", MCX_EPROTO },                 /* skipped, for a set */
    { "VA 99999999999999999999 O0\r\n", MCX_EPROTO }, /* overflow */
    { "VA 3 O4\r\nabc\r\nMN\r\n", MCX_EPROTO },     /* unknown opaque */
    { "VA 3 O0\r\nabc\r\nVA 3 O0\r\nabc\r\n", MCX_EPROTO }, /* twice */
    { "VA 3 O2\r\nabc\r\n", MCX_EPROTO },           /* VA for a set */
    { "NS O0\r\n", MCX_EPROTO },                    /* NS for a get */
    { "VA 3 O0\r\nabcd\r\n", MCX_EPROTO },          /* length lies */
    { "VA 3  O0\r\nabc\r\n", MCX_EPROTO },          /* double space */
    { "VA 3 O0 k\r\nabc\r\n", MCX_EPROTO },         /* a flag not asked */
    { "VA -3 O0\r\n", MCX_EPROTO },
    { "VA 3 O+0\r\n", MCX_EPROTO },
    { "MN\n", MCX_EPROTO },                         /* no CR */
    { "MN x\r\n", MCX_EPROTO },
    { "ERROR\r\n", MCX_EPROTO },
    { "CLIENT_ERROR bad command line format\r\n", MCX_EPROTO },
    { "VALUE a 0 3\r\nabc\r\nEND\r\n", MCX_EPROTO },/* text protocol */
    { "\r\n", MCX_EPROTO },
    { "HD\r\n", MCX_EPROTO },                       /* no opaque */
    { "VA 3 O0\r\na\0c\r\n", 0 },                   /* strlen stops */
    { "M\x01\r\n", MCX_EPROTO },
  };
  char longline[MCX_LINE_MAX + 8];
  size_t i;

  for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int r = parse_text (cases[i].text);

    if (r != cases[i].want) {
      fprintf (stderr, "parser: case %zu: got %d, want %d\n", i, r,
               cases[i].want);
      exit (1);
    }
  }
  /* A line of MCX_LINE_MAX bytes without its end is refused at once. */
  memset (longline, 'S', sizeof longline - 1);
  longline[sizeof longline - 1] = '\0';
  if (parse_text (longline) != MCX_EPROTO) {
    fprintf (stderr, "parser: an oversized line is accepted\n");
    exit (1);
  }
  printf ("parser: %zu cases ok\n", i + 1);
}

static void
make_key (char *key, size_t i, unsigned salt)
{
  snprintf (key, 48, "abd2:%08x%024zx", salt, i);
}

static void
test_basic (const char *host, unsigned port)
{
  const size_t n = 256;
  struct mcx_op *ops = calloc (n, sizeof *ops);
  char (*keys)[48] = calloc (n, 48);
  char *big = malloc (MIB);
  unsigned salt = getpid ();
  struct replies rs;
  struct mcx_conn *c;
  size_t i, hits;
  int st;

  assert (ops && keys && big);
  for (i = 0; i < MIB; i++)
    big[i] = i * 7 + (i >> 13);
  c = mcx_connect (host, port, mcx_now_ns () + 5000 * NS_PER_MS, &st);
  if (c == NULL)
    die ("connect", st);

  /* Fill the even keys of 256 (values of varied length), in one batch. */
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
    die (mcx_error (c), st);
  for (i = 0; i < n / 2; i++)
    assert (rs.r[i].kind == -1);        /* quiet: nothing when stored */
  assert (rs.errors == 0);
  replies_free (&rs);

  /* Get all 256: hits exactly for the even ones, with their values. */
  for (i = 0; i < n; i++)
    ops[i] = (struct mcx_op) { .type = MCX_GET, .key = keys[i],
                               .key_len = strlen (keys[i]) };
  st = run (c, ops, n, MIB, 5000, &rs);
  if (st != MCX_OK)
    die (mcx_error (c), st);
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
  printf ("256 keys: %zu hits, %zu misses ok\n", hits, n - hits);

  /* Delete 0 and 1 (1 was never set: NF), set 3, in one batch with a
   * get of 2 between them.
   */
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
    die (mcx_error (c), st);
  assert (rs.r[0].kind == -1);
  assert (rs.r[1].kind == MCX_NOT_FOUND);
  assert (rs.r[2].kind == MCX_HIT && rs.r[2].len == 2 * 61);
  assert (rs.r[3].kind == -1);
  replies_free (&rs);
  for (i = 0; i < 4; i++)
    ops[i].type = MCX_GET;
  st = run (c, ops, 4, MIB, 5000, &rs);
  if (st != MCX_OK)
    die (mcx_error (c), st);
  assert (rs.r[0].kind == -1 && rs.r[1].kind == -1);
  assert (rs.r[2].kind == MCX_HIT);
  assert (rs.r[3].kind == MCX_HIT && rs.r[3].len == 5 &&
          memcmp (rs.r[3].data, "three", 5) == 0);
  replies_free (&rs);
  printf ("sets and deletes ok\n");

  /* Big values: four of 1 MiB set and got back in one batch each. */
  for (i = 0; i < 4; i++) {
    big[0] = i;
    ops[i] = (struct mcx_op) { .type = MCX_SET, .key = keys[i],
                               .key_len = strlen (keys[i]),
                               .value = big, .value_len = MIB };
  }
  st = run (c, ops, 4, 0, 5000, &rs);
  if (st != MCX_OK)
    die (mcx_error (c), st);
  assert (rs.errors == 0);
  replies_free (&rs);
  for (i = 0; i < 4; i++)
    ops[i].type = MCX_GET;
  st = run (c, ops, 4, MIB, 5000, &rs);
  if (st != MCX_OK)
    die (mcx_error (c), st);
  for (i = 0; i < 4; i++)
    assert (rs.r[i].kind == MCX_HIT && rs.r[i].len == MIB &&
            memcmp (rs.r[i].data + 1, big + 1, MIB - 1) == 0);
  replies_free (&rs);
  printf ("1 MiB values ok\n");

  /* A value longer than the caller allows is skipped: that operation
   * alone gets MCX_TOO_LARGE, the others their values, and the
   * connection goes on.
   */
  ops[1] = (struct mcx_op) { .type = MCX_GET, .key = keys[4],
                             .key_len = strlen (keys[4]) };
  st = run (c, ops, 2, MIB - 1, 5000, &rs);
  if (st != MCX_OK || mcx_broken (c))
    die ("a batch with an oversized value", st);
  assert (rs.r[0].kind == MCX_TOO_LARGE && rs.r[0].len == MIB);
  assert (rs.r[1].kind == MCX_HIT && rs.r[1].len == 4 * 61 &&
          memcmp (rs.r[1].data, big + 4, 4 * 61) == 0);
  replies_free (&rs);
  st = run (c, ops, 1, MIB, 5000, &rs);
  if (st != MCX_OK)
    die ("the batch after an oversized value", st);
  assert (rs.r[0].kind == MCX_HIT && rs.r[0].len == MIB);
  replies_free (&rs);
  printf ("oversized value skipped, connection kept\n");
  mcx_close (c);
  free (big);
  free (keys);
  free (ops);
}

/* The server is stopped: a batch must fail with a timeout in about MS. */
static void
test_timeout (const char *host, unsigned port, int64_t ms)
{
  struct mcx_op op = { .type = MCX_GET, .key = "abd2:x", .key_len = 6 };
  struct replies rs;
  struct mcx_conn *c;
  int64_t start = mcx_now_ns (), took;
  int st;

  c = mcx_connect (host, port, start + ms * NS_PER_MS, &st);
  if (c != NULL) {
    st = mcx_batch (c, &op, 1, 16, start + ms * NS_PER_MS, collect,
                    (replies_init (&rs, 1), &rs));
    replies_free (&rs);
    mcx_close (c);
  }
  took = (mcx_now_ns () - start) / NS_PER_MS;
  printf ("stopped server: %s after %lld ms (deadline %lld ms)\n",
          mcx_strstatus (st), (long long) took, (long long) ms);
  if (st != MCX_ETIMEDOUT || took < ms || took > ms + SLACK_MS)
    exit (1);
}

/* Kill the server in the middle of a batch: an error long before the
 * deadline.
 */
static void
test_killed (const char *host, unsigned port, pid_t server, bool get)
{
  const size_t n = 64;
  const int64_t deadline_ms = 20000;
  struct mcx_op ops[64];
  char keys[64][48];
  char *big = calloc (1, MIB);
  struct replies rs;
  struct mcx_conn *c;
  int64_t start, took;
  size_t i;
  int st;

  c = mcx_connect (host, port, mcx_now_ns () + 5000 * NS_PER_MS, &st);
  if (c == NULL)
    die ("connect", st);
  for (i = 0; i < n; i++) {
    make_key (keys[i], i, 0xdead);
    ops[i] = (struct mcx_op) { .type = get ? MCX_GET : MCX_SET,
                               .key = keys[i], .key_len = strlen (keys[i]),
                               .value = big, .value_len = MIB };
  }
  start = mcx_now_ns ();
  st = mcx_send (c, ops, n, MIB);
  if (st != MCX_OK)
    die ("send", st);
  if (kill (server, SIGKILL) == -1) {
    perror ("kill");
    exit (1);
  }
  replies_init (&rs, n);
  st = mcx_recv (c, start + deadline_ms * NS_PER_MS, collect, &rs);
  replies_free (&rs);
  took = (mcx_now_ns () - start) / NS_PER_MS;
  printf ("killed server: %s (%s) after %lld ms\n", mcx_strstatus (st),
          mcx_error (c), (long long) took);
  mcx_close (c);
  free (big);
  if (st != MCX_EIO || took > deadline_ms / 2)
    exit (1);
}

int
main (int argc, char *argv[])
{
  signal (SIGPIPE, SIG_IGN);
  alarm (120);                  /* a broken client must not hang the test */
  if (argc == 2 && strcmp (argv[1], "parser") == 0)
    test_parser ();
  else if (argc == 4 && strcmp (argv[1], "basic") == 0)
    test_basic (argv[2], atoi (argv[3]));
  else if (argc == 5 && strcmp (argv[1], "timeout") == 0)
    test_timeout (argv[2], atoi (argv[3]), atoll (argv[4]));
  else if (argc == 6 && strcmp (argv[1], "killed") == 0)
    test_killed (argv[2], atoi (argv[3]), atoi (argv[4]),
                 strcmp (argv[5], "get") == 0);
  else {
    fprintf (stderr, "usage: see the comment in tests/test-meta-client.c\n");
    return 2;
  }
  return 0;
}
