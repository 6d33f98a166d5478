/* SPDX-License-Identifier: BSD-3-Clause */
/* abd memcached-ext: the raw round trip of memcached's meta protocol, with
 * the project's own client (meta.h), for scripts/bench's "limit" row.
 *
 *   abd-mcx-rtt [-b BLOCK] [-n COUNT] HOST:PORT[,HOST:PORT...]
 *
 * A warm read through the memcache filter costs at least the NBD path (the
 * memory plugin's latency) plus one round trip to memcached; this measures
 * the second term as the filter makes it, without nbdkit:
 *
 *   mg1_us      one block-sized "mg" (BLOCK + the sealing overhead, 32
 *               bytes), alone on a connection: depth 1
 *   mg16_us     16 of them pipelined in one batch on one connection,
 *               per "mg" (the batch's time / 16): depth 16
 *   mget64k_us  the multi-get of a 64K read: 64K / BLOCK keys spread over
 *               the servers, one batch per server, all sent before any
 *               answer is collected (as reader.c does)
 *
 * Each is the median of COUNT tries (default 2000), after 200 not
 * counted; printed as NAME=MICROSECONDS lines.  Its keys ("abd-rtt:...")
 * are stored first on every server, with a TTL of 60 s.
 */

#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "meta.h"

#define RTT_KEYS 256                    /* per server */
#define RTT_WARMUP 200
#define RTT_VALUE_OVERHEAD 32           /* value.h: VALUE_OVERHEAD */
#define RTT_DEADLINE_NS (INT64_C (5000) * 1000000)
#define RTT_DEPTH 16

struct rtt_server {
  char *host;
  unsigned port;
  struct mcx_conn *c;
  char keys[RTT_KEYS][48];
};

static struct rtt_server *servers;
static size_t nr_servers;
static size_t value_len;
static size_t hits;                     /* of the last batch */
static struct mcx_op *ops;              /* a batch's, for every server */

static void __attribute__ ((noreturn))
rtt_die (const char *what, int status)
{
  fprintf (stderr, "abd-mcx-rtt: %s: %s\n", what, mcx_strstatus (status));
  exit (1);
}

static void
rtt_count (void *opaque, size_t index, enum mcx_reply r, const char *data,
           size_t len)
{
  if (r == MCX_HIT && len == value_len)
    hits++;
}

/* Parse "HOST:PORT,..." into servers. */
static void
rtt_parse_servers (char *list)
{
  char *tok, *save = NULL;

  for (tok = strtok_r (list, ",", &save); tok;
       tok = strtok_r (NULL, ",", &save)) {
    char *colon = strrchr (tok, ':');

    servers = realloc (servers, (nr_servers + 1) * sizeof *servers);
    if (servers == NULL || colon == NULL) {
      fprintf (stderr, "abd-mcx-rtt: '%s': want HOST:PORT\n", tok);
      exit (1);
    }
    memset (&servers[nr_servers], 0, sizeof *servers);
    *colon = '\0';
    servers[nr_servers].host = tok;
    servers[nr_servers].port = atoi (colon + 1);
    nr_servers++;
  }
}

/* Connect to every server and store its keys. */
static void
rtt_setup (void)
{
  char *value = malloc (value_len);
  size_t i, k;
  int st;

  if (value == NULL)
    rtt_die ("malloc", MCX_ENOMEM);
  for (k = 0; k < value_len; k++)
    value[k] = k * 31 + 7;
  for (i = 0; i < nr_servers; i++) {
    struct rtt_server *s = &servers[i];

    s->c = mcx_connect (s->host, s->port, mcx_now_ns () + RTT_DEADLINE_NS,
                        &st);
    if (s->c == NULL)
      rtt_die (s->host, st);
    for (k = 0; k < RTT_KEYS; k++) {
      snprintf (s->keys[k], sizeof s->keys[k], "abd-rtt:%d:%zu:%zu",
                (int) getpid (), i, k);
      ops[k] = (struct mcx_op) { .type = MCX_SET, .key = s->keys[k],
                                 .key_len = strlen (s->keys[k]),
                                 .value = value, .value_len = value_len,
                                 .ttl = 60 };
    }
    st = mcx_batch (s->c, ops, RTT_KEYS, 0, mcx_now_ns () + RTT_DEADLINE_NS,
                    rtt_count, NULL);
    if (st != MCX_OK)
      rtt_die ("storing the keys", st);
  }
  free (value);
}

/* One batch of N gets of random keys to each of the servers in USE
 * (sent to all, then collected from each); returns its time in ns.
 */
static int64_t
rtt_batch (const size_t *per_server, unsigned *seed)
{
  size_t i, k, n, want = 0;
  int64_t start;
  int st;

  hits = 0;
  start = mcx_now_ns ();
  for (i = 0, n = 0; i < nr_servers; i++) {
    struct rtt_server *s = &servers[i];
    struct mcx_op *o = &ops[n];

    if (per_server[i] == 0)
      continue;
    for (k = 0; k < per_server[i]; k++) {
      const char *key = s->keys[rand_r (seed) % RTT_KEYS];

      o[k] = (struct mcx_op) { .type = MCX_GET, .key = key,
                               .key_len = strlen (key) };
    }
    st = mcx_send (s->c, o, per_server[i], value_len);
    if (st != MCX_OK)
      rtt_die ("send", st);
    n += per_server[i];
    want += per_server[i];
  }
  for (i = 0; i < nr_servers; i++) {
    if (per_server[i] == 0)
      continue;
    st = mcx_recv (servers[i].c, mcx_now_ns () + RTT_DEADLINE_NS, rtt_count,
                   NULL);
    if (st != MCX_OK)
      rtt_die ("recv", st);
  }
  if (hits != want) {
    fprintf (stderr, "abd-mcx-rtt: %zu hits of %zu keys (evicted?)\n",
             hits, want);
    exit (1);
  }
  return mcx_now_ns () - start;
}

static int
rtt_cmp (const void *a, const void *b)
{
  int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;

  return x < y ? -1 : x > y;
}

/* The median time of COUNT batches of PER_SERVER gets, in microseconds,
 * divided by DIVISOR.
 */
static double
rtt_median_us (const size_t *per_server, size_t count, unsigned divisor)
{
  int64_t *t = malloc (count * sizeof *t);
  unsigned seed = 1;
  size_t i;
  double us;

  if (t == NULL)
    rtt_die ("malloc", MCX_ENOMEM);
  for (i = 0; i < RTT_WARMUP; i++)
    rtt_batch (per_server, &seed);
  for (i = 0; i < count; i++)
    t[i] = rtt_batch (per_server, &seed);
  qsort (t, count, sizeof *t, rtt_cmp);
  us = t[count / 2] / 1000.0 / divisor;
  free (t);
  return us;
}

int
main (int argc, char *argv[])
{
  size_t block = 4096, count = 2000, i, *per_server, keys64k;
  int c;

  while ((c = getopt (argc, argv, "b:n:")) != -1) {
    switch (c) {
    case 'b':
      block = strtoul (optarg, NULL, 0);
      break;
    case 'n':
      count = strtoul (optarg, NULL, 0);
      break;
    default:
      goto usage;
    }
  }
  if (optind != argc - 1 || block < 512 || block > 65536 || count == 0)
    goto usage;
  rtt_parse_servers (argv[optind]);
  value_len = block + RTT_VALUE_OVERHEAD;
  per_server = calloc (nr_servers, sizeof *per_server);
  /* Room for a store of every key of a server, or any batch below. */
  ops = calloc (RTT_KEYS > 65536 / 512 ? RTT_KEYS : 65536 / 512, sizeof *ops);
  if (per_server == NULL || ops == NULL)
    rtt_die ("calloc", MCX_ENOMEM);
  rtt_setup ();

  per_server[0] = 1;
  printf ("mg1_us=%.1f\n", rtt_median_us (per_server, count, 1));
  per_server[0] = RTT_DEPTH;
  printf ("mg16_us=%.2f\n", rtt_median_us (per_server, count, RTT_DEPTH));
  /* A 64K read's blocks, spread over the servers as evenly as the
   * placement does on average.
   */
  keys64k = 65536 / block;
  for (i = 0; i < nr_servers; i++)
    per_server[i] = keys64k / nr_servers + (i < keys64k % nr_servers);
  printf ("mget64k_us=%.1f\n", rtt_median_us (per_server, count, 1));
  for (i = 0; i < nr_servers; i++)
    mcx_close (servers[i].c);
  free (per_server);
  free (ops);
  free (servers);
  return 0;

 usage:
  fprintf (stderr, "usage: abd-mcx-rtt [-b BLOCK] [-n COUNT] "
           "HOST:PORT[,HOST:PORT...]\n");
  return 2;
}
