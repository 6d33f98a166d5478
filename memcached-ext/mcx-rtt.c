/* SPDX-License-Identifier: BSD-3-Clause */
/* abd memcached-ext: mcx-rtt measures the raw round trips of block reads
 * against running memcached servers, with the project's own meta client.
 *
 * A warm read through the memcache filter cannot be faster than the NBD
 * path alone (nbdkit's memory plugin) plus the memcached round trips it
 * needs, so scripts/bench measures those round trips with this tool and
 * compares the filter against the sum (its "limit" rows).  Per server,
 * three measures, each after storing its own keys (BLOCK-byte values,
 * removed again at the end):
 *
 *   depth 1    one `mg` at a time on one connection: what a 4K read at
 *              queue depth 1 waits for
 *   in flight  DEPTH connections, each with one `mg` in flight, refilled
 *              as soon as it is answered (one thread, round robin): the
 *              rate a 4K read at queue depth DEPTH can at best be served
 *              at; no thread hand-offs, so a floor of the cost
 *   multi-get  one batch of BATCH gets (quiet, then `mn`) on one
 *              connection: what a 64 KiB read asks one server for
 *
 * For each: the latency of every request (sent to answered) as median,
 * p99 and mean, and the interval, wall time / requests (1 / rate: what
 * IOPS measures).  Every get must hit and return the value stored: a miss
 * would measure something else, so it is an error (exit 1).
 *
 * Exit status: 0 measured, 1 a server failed (connect, timeout, protocol,
 * miss), 2 bad arguments.
 */

#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "meta.h"

#define NS_PER_US 1000.0
#define NS_PER_MS INT64_C (1000000)
/* Requests before the timed ones: connections and caches warm up. */
#define WARMUP 100
/* Stored keys expire by themselves should the tool die before md. */
#define KEY_TTL 600

/* Options, with their defaults. */
static unsigned long opt_count = 5000;
static unsigned long opt_depth = 16;
static unsigned long opt_batch = 16;
static unsigned long opt_block = 4096;
static unsigned long opt_timeout_ms = 1000;
static bool opt_json;

static const char *progname = "mcx-rtt";

static void
usage (FILE *f)
{
  fprintf (f,
"Usage: %s [OPTIONS] SERVER...\n"
"Measure memcached's raw round trips for block reads with the meta client:\n"
"per SERVER (HOST:PORT, or the path of a Unix socket), one `mg` of a\n"
"block-sized value at depth 1; DEPTH gets in flight, one on each of DEPTH\n"
"connections, each refilled when answered; and a multi-get of BATCH\n"
"blocks in one batch (what a 64 KiB read asks a server for).  Stores its\n"
"own keys first and deletes them after.  Prints, in microseconds, the\n"
"median, p99 and mean latency of a request (sent to answered) and its\n"
"interval: wall time / requests, 1 / the rate (a multi-get's interval /\n"
"BATCH: the cost of a get pipelined BATCH deep on one connection).\n"
"\n"
"  -n, --count N      timed requests per measure (default %lu)\n"
"  -d, --depth N      gets in flight for the second measure (default %lu)\n"
"  -b, --batch N      keys of the multi-get (default %lu)\n"
"  -s, --block BYTES  value size (default %lu)\n"
"  -t, --timeout MS   deadline of each request or batch (default %lu)\n"
"  -j, --json         one JSON object on stdout\n"
"  -h, --help         this help\n"
"\n"
"Exit status: 0 measured; 1 a server failed, or a get missed; 2 bad\n"
"arguments.\n",
           progname, opt_count, opt_depth, opt_batch, opt_block,
           opt_timeout_ms);
}

/* A message about the command line, then exit 2. */
static void __attribute__ ((noreturn, format (printf, 1, 2)))
bad_usage (const char *fmt, ...)
{
  va_list ap;

  fprintf (stderr, "%s: ", progname);
  va_start (ap, fmt);
  vfprintf (stderr, fmt, ap);
  va_end (ap);
  fprintf (stderr, " (see --help)\n");
  exit (2);
}

/* Parse a whole decimal number in [MIN, MAX] or exit 2. */
static unsigned long
parse_number (const char *opt, const char *arg, unsigned long min,
              unsigned long max)
{
  unsigned long v;
  char *end;

  errno = 0;
  if (arg[0] < '0' || arg[0] > '9')
    bad_usage ("%s takes a number", opt);
  v = strtoul (arg, &end, 10);
  if (errno != 0 || *end != '\0' || v < min || v > max) {
    fprintf (stderr, "%s: %s: '%s' is not a number from %lu to %lu\n",
             progname, opt, arg, min, max);
    exit (2);
  }
  return v;
}

/* One server as given on the command line. */
struct server {
  const char *arg;
  char host[256];
  unsigned port;                /* 0: HOST is a Unix socket's path */
};

/* HOST:PORT, [IPv6]:PORT, or a path (it holds a '/'). */
static void
parse_server (const char *arg, struct server *s)
{
  const char *colon;
  size_t host_len;
  char *end;
  unsigned long port;

  s->arg = arg;
  if (strchr (arg, '/') != NULL) {
    if (strlen (arg) >= sizeof s->host)
      bad_usage ("socket path too long: %s", arg);
    strcpy (s->host, arg);
    s->port = 0;
    return;
  }
  colon = strrchr (arg, ':');
  if (colon == NULL || colon == arg)
    bad_usage ("'%s' is neither HOST:PORT nor a socket path", arg);
  host_len = colon - arg;
  if (arg[0] == '[' && host_len >= 2 && arg[host_len - 1] == ']') {
    arg++;
    host_len -= 2;
  }
  if (host_len == 0 || host_len >= sizeof s->host)
    bad_usage ("bad host in '%s'", s->arg);
  memcpy (s->host, arg, host_len);
  s->host[host_len] = '\0';
  errno = 0;
  port = strtoul (colon + 1, &end, 10);
  if (colon[1] < '0' || colon[1] > '9' || *end != '\0' || errno != 0 ||
      port == 0 || port > 65535)
    bad_usage ("bad port in '%s'", s->arg);
  s->port = port;
}

/* What the reply callback saw. */
struct tally {
  const char *expect;           /* the value every key holds */
  size_t expect_len;
  bool check_data;              /* compare the bytes too (untimed passes) */
  uint64_t hits, bad;
};

static void
tally_reply (void *opaque, size_t index, enum mcx_reply r, const char *data,
             size_t len)
{
  struct tally *t = opaque;

  (void) index;
  if (r == MCX_HIT && len == t->expect_len &&
      (!t->check_data || memcmp (data, t->expect, len) == 0))
    t->hits++;
  else
    t->bad++;                   /* a wrong value, NS, or a SERVER_ERROR */
}

/* Results of one measure. */
struct measure {
  const char *name;
  unsigned long per_request;    /* gets per request (batch size) */
  uint64_t requests, gets, hits;
  double median_us, p99_us, mean_us, interval_us;
};

static int
cmp_i64 (const void *a, const void *b)
{
  int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;

  return x < y ? -1 : x > y;
}

/* Fill M's statistics from N latencies (ns) and the wall time. */
static void
summarise (struct measure *m, int64_t *lat, size_t n, int64_t wall_ns)
{
  double sum = 0;
  size_t i, rank;

  qsort (lat, n, sizeof *lat, cmp_i64);
  for (i = 0; i < n; i++)
    sum += lat[i];
  /* Nearest rank: the smallest sample with at least p% at or below it. */
  rank = (n * 99 + 99) / 100;
  m->median_us = lat[(n - 1) / 2] / NS_PER_US;
  m->p99_us = lat[rank - 1] / NS_PER_US;
  m->mean_us = sum / n / NS_PER_US;
  m->interval_us = wall_ns / NS_PER_US / n;
  m->requests = n;
}

struct run {
  const struct server *srv;
  struct mcx_conn **conns;      /* opt_depth of them; conns[0] the main one */
  char (*keys)[64];             /* nr_keys keys */
  size_t nr_keys;
  struct mcx_op *ops;           /* the get of each key */
  struct tally tally;
  char error[256];
};

static int
run_fail (struct run *r, struct mcx_conn *c, int status, const char *what)
{
  snprintf (r->error, sizeof r->error, "%s: %s: %s", r->srv->arg, what,
            c ? mcx_error (c) : mcx_strstatus (status));
  return -1;
}

static int64_t
deadline (void)
{
  return mcx_now_ns () + (int64_t) opt_timeout_ms * NS_PER_MS;
}

/* One batch of N ops on C, checked: every get a hit, nothing else said. */
static int
run_batch (struct run *r, struct mcx_conn *c, const struct mcx_op *ops,
           size_t n, const char *what)
{
  uint64_t hits = r->tally.hits, bad = r->tally.bad;
  size_t gets = 0, i;
  int s;

  s = mcx_batch (c, ops, n, opt_block, deadline (), tally_reply, &r->tally);
  if (s != MCX_OK)
    return run_fail (r, c, s, what);
  for (i = 0; i < n; i++)
    gets += ops[i].type == MCX_GET;
  if (r->tally.bad != bad || r->tally.hits - hits != gets) {
    snprintf (r->error, sizeof r->error,
              "%s: %s: %" PRIu64 " of %zu gets hit, %" PRIu64
              " wrong or refused replies", r->srv->arg, what,
              r->tally.hits - hits, gets, r->tally.bad - bad);
    return -1;
  }
  return 0;
}

/* The get of key I, in OPS[I]. */
static const struct mcx_op *
get_op (struct run *r, size_t i)
{
  return &r->ops[i % r->nr_keys];
}

/* Depth 1: WARMUP + opt_count single gets, one after the other. */
static int
measure_depth1 (struct run *r, struct measure *m, int64_t *lat)
{
  size_t i, n = opt_count;
  int64_t t0 = 0, t;
  uint64_t hits0 = 0;

  for (i = 0; i < WARMUP + n; i++) {
    if (i == WARMUP) {
      t0 = mcx_now_ns ();
      hits0 = r->tally.hits;
    }
    t = mcx_now_ns ();
    if (run_batch (r, r->conns[0], get_op (r, i), 1, "mg, depth 1") < 0)
      return -1;
    if (i >= WARMUP)
      lat[i - WARMUP] = mcx_now_ns () - t;
  }
  summarise (m, lat, n, mcx_now_ns () - t0);
  m->gets = n;
  m->hits = r->tally.hits - hits0;
  return 0;
}

/* Depth N: one get in flight on each of opt_depth connections; answers
 * are collected in turn and each connection is given its next get at
 * once, so about opt_depth are always in flight.  The latency of each
 * includes the wait behind the others, as for a queue of reads.
 */
static int
measure_inflight (struct run *r, struct measure *m, int64_t *lat)
{
  size_t depth = opt_depth, total = WARMUP + opt_count, sent = 0, done = 0;
  int64_t *t_sent, t0 = 0;
  uint64_t hits0 = 0;
  const struct mcx_op **op;
  size_t i;
  int s;

  t_sent = calloc (depth, sizeof *t_sent);
  op = calloc (depth, sizeof *op);
  if (t_sent == NULL || op == NULL) {
    free (t_sent);
    free (op);
    snprintf (r->error, sizeof r->error, "out of memory");
    return -1;
  }
  for (i = 0; i < depth && sent < total; i++, sent++) {
    op[i] = get_op (r, sent);
    t_sent[i] = mcx_now_ns ();
    s = mcx_send (r->conns[i], op[i], 1, opt_block);
    if (s != MCX_OK)
      goto fail;
  }
  for (i = 0; done < total; i = (i + 1) % depth) {
    uint64_t hits = r->tally.hits, bad = r->tally.bad;

    if (op[i] == NULL)
      continue;
    s = mcx_recv (r->conns[i], deadline (), tally_reply, &r->tally);
    if (s != MCX_OK)
      goto fail;
    if (r->tally.hits != hits + 1 || r->tally.bad != bad) {
      snprintf (r->error, sizeof r->error, "%s: a get in flight missed",
                r->srv->arg);
      goto out;
    }
    if (done == WARMUP) {
      t0 = mcx_now_ns ();
      hits0 = r->tally.hits - 1;
    }
    if (done >= WARMUP)
      lat[done - WARMUP] = mcx_now_ns () - t_sent[i];
    done++;
    op[i] = NULL;
    if (sent < total) {
      op[i] = get_op (r, sent++);
      t_sent[i] = mcx_now_ns ();
      s = mcx_send (r->conns[i], op[i], 1, opt_block);
      if (s != MCX_OK)
        goto fail;
    }
  }
  /* The interval from the first timed answer on: the pipeline is full. */
  summarise (m, lat, opt_count, mcx_now_ns () - t0);
  m->gets = opt_count;
  m->hits = r->tally.hits - hits0;
  free (t_sent);
  free (op);
  return 0;

 fail:
  run_fail (r, r->conns[i], s, "gets in flight");
 out:
  free (t_sent);
  free (op);
  return -1;
}

/* Multi-get: WARMUP + opt_count batches of opt_batch gets (consecutive
 * keys, as the blocks of one read).
 */
static int
measure_multiget (struct run *r, struct measure *m, int64_t *lat)
{
  size_t i, k = 0, n = opt_count;
  int64_t t0 = 0, t;
  uint64_t hits0 = 0;

  for (i = 0; i < WARMUP + n; i++, k += opt_batch) {
    /* The batch's ops are consecutive in r->ops: keys k .. k+batch-1 of
     * the first nr_keys - batch + 1 starting points.
     */
    size_t first = k % (r->nr_keys - opt_batch + 1);

    if (i == WARMUP) {
      t0 = mcx_now_ns ();
      hits0 = r->tally.hits;
    }
    t = mcx_now_ns ();
    if (run_batch (r, r->conns[0], &r->ops[first], opt_batch,
                   "multi-get") < 0)
      return -1;
    if (i >= WARMUP)
      lat[i - WARMUP] = mcx_now_ns () - t;
  }
  summarise (m, lat, n, mcx_now_ns () - t0);
  m->gets = n * opt_batch;
  m->hits = r->tally.hits - hits0;
  return 0;
}

/* Store the keys (one batch of sets), then read each back and compare. */
static int
store_keys (struct run *r, const char *value)
{
  struct mcx_op *sets;
  size_t i;
  int ret;

  sets = calloc (r->nr_keys, sizeof *sets);
  if (sets == NULL) {
    snprintf (r->error, sizeof r->error, "out of memory");
    return -1;
  }
  for (i = 0; i < r->nr_keys; i++)
    sets[i] = (struct mcx_op) {
      .type = MCX_SET, .key = r->keys[i], .key_len = strlen (r->keys[i]),
      .value = value, .value_len = opt_block, .ttl = KEY_TTL,
    };
  ret = run_batch (r, r->conns[0], sets, r->nr_keys, "storing the keys");
  free (sets);
  if (ret < 0)
    return -1;
  r->tally.check_data = true;
  ret = run_batch (r, r->conns[0], r->ops, r->nr_keys,
                   "reading the keys back");
  r->tally.check_data = false;
  return ret;
}

/* Delete the keys after a measurement that went through; a failure here
 * is only reported.  After a failed one they are left to expire
 * (KEY_TTL): a connection may still have a batch in flight, and a server
 * that did not answer would only make us wait again.
 */
static void
delete_keys (struct run *r)
{
  struct mcx_op *dels;
  size_t i;
  int s;

  dels = calloc (r->nr_keys, sizeof *dels);
  if (dels == NULL)
    return;
  for (i = 0; i < r->nr_keys; i++)
    dels[i] = (struct mcx_op) {
      .type = MCX_DELETE, .key = r->keys[i], .key_len = strlen (r->keys[i]),
    };
  s = mcx_batch (r->conns[0], dels, r->nr_keys, 0, deadline (),
                 tally_reply, &r->tally);
  if (s != MCX_OK)
    fprintf (stderr, "%s: %s: deleting the keys: %s\n", progname,
             r->srv->arg, mcx_error (r->conns[0]));
  free (dels);
}

/* All three measures against one server.  M: 3 results. */
static int
measure_server (const struct server *srv, const char *value,
                struct measure m[3], char *error, size_t error_len)
{
  struct run r = { .srv = srv };
  int64_t *lat = NULL;
  size_t i;
  int s, ret = -1;

  /* Enough keys for every connection in flight and a batch to start at
   * several places, so that no request reads the previous one's key.
   */
  r.nr_keys = 2 * (opt_depth > opt_batch ? opt_depth : opt_batch);
  r.conns = calloc (opt_depth, sizeof *r.conns);
  r.keys = calloc (r.nr_keys, sizeof *r.keys);
  r.ops = calloc (r.nr_keys, sizeof *r.ops);
  lat = calloc (opt_count, sizeof *lat);
  if (r.conns == NULL || r.keys == NULL || r.ops == NULL || lat == NULL) {
    snprintf (r.error, sizeof r.error, "out of memory");
    goto out;
  }
  r.tally.expect = value;
  r.tally.expect_len = opt_block;
  for (i = 0; i < r.nr_keys; i++) {
    snprintf (r.keys[i], sizeof r.keys[i], "mcx-rtt:%ld:%zu",
              (long) getpid (), i);
    r.ops[i] = (struct mcx_op) {
      .type = MCX_GET, .key = r.keys[i], .key_len = strlen (r.keys[i]),
    };
  }
  for (i = 0; i < opt_depth; i++) {
    r.conns[i] = mcx_connect (srv->host, srv->port, deadline (), &s);
    if (r.conns[i] == NULL) {
      run_fail (&r, NULL, s, "connect");
      goto out;
    }
  }
  if (store_keys (&r, value) < 0)
    goto out;

  m[0] = (struct measure) { .name = "depth1", .per_request = 1 };
  m[1] = (struct measure) { .name = "inflight", .per_request = 1 };
  m[2] = (struct measure) { .name = "multiget", .per_request = opt_batch };
  if (measure_depth1 (&r, &m[0], lat) < 0 ||
      measure_inflight (&r, &m[1], lat) < 0 ||
      measure_multiget (&r, &m[2], lat) < 0)
    goto out;
  ret = 0;

 out:
  if (ret == 0)
    delete_keys (&r);
  if (ret < 0)
    snprintf (error, error_len, "%s", r.error);
  if (r.conns)
    for (i = 0; i < opt_depth; i++)
      mcx_close (r.conns[i]);
  free (r.conns);
  free (r.keys);
  free (r.ops);
  free (lat);
  return ret;
}

/* A JSON string of S (server arguments: escape what JSON requires). */
static void
json_string (const char *s)
{
  putchar ('"');
  for (; *s; s++) {
    unsigned char ch = *s;

    if (ch == '"' || ch == '\\')
      printf ("\\%c", ch);
    else if (ch < 0x20)
      printf ("\\u%04x", ch);
    else
      putchar (ch);
  }
  putchar ('"');
}

static void
print_text (const struct server *srv, const struct measure m[3])
{
  char label[3][64];
  int i;

  snprintf (label[0], sizeof label[0], "mg, depth 1");
  snprintf (label[1], sizeof label[1], "mg, %lu in flight, %lu conns",
            opt_depth, opt_depth);
  snprintf (label[2], sizeof label[2], "multi-get of %lu keys", opt_batch);
  printf ("%s: %lu-byte values, %lu timed requests each\n", srv->arg,
          opt_block, opt_count);
  printf ("  %-26s %9s %9s %9s %11s   (us)\n", "", "median", "p99", "mean",
          "interval");
  for (i = 0; i < 3; i++)
    printf ("  %-26s %9.1f %9.1f %9.1f %11.1f\n", label[i], m[i].median_us,
            m[i].p99_us, m[i].mean_us, m[i].interval_us);
  printf ("  hits: %" PRIu64 " of %" PRIu64 " timed gets\n",
          m[0].hits + m[1].hits + m[2].hits,
          m[0].gets + m[1].gets + m[2].gets);
}

static void
print_json (const struct server *srv, const struct measure m[3], bool first)
{
  int i;

  printf ("%s\n  {\"server\": ", first ? "" : ",");
  json_string (srv->arg);
  printf (", \"block\": %lu, \"count\": %lu", opt_block, opt_count);
  for (i = 0; i < 3; i++) {
    printf (",\n   \"%s\": {\"depth\": %lu, \"keys_per_request\": %lu, "
            "\"requests\": %" PRIu64 ", \"gets\": %" PRIu64 ", "
            "\"hits\": %" PRIu64 ", \"median_us\": %.2f, \"p99_us\": %.2f, "
            "\"mean_us\": %.2f, \"interval_us\": %.2f}",
            m[i].name, i == 1 ? opt_depth : 1, m[i].per_request,
            m[i].requests, m[i].gets, m[i].hits, m[i].median_us,
            m[i].p99_us, m[i].mean_us, m[i].interval_us);
  }
  printf ("}");
}

int
main (int argc, char *argv[])
{
  static const struct option long_options[] = {
    { "count",   required_argument, NULL, 'n' },
    { "depth",   required_argument, NULL, 'd' },
    { "batch",   required_argument, NULL, 'b' },
    { "block",   required_argument, NULL, 's' },
    { "timeout", required_argument, NULL, 't' },
    { "json",    no_argument,       NULL, 'j' },
    { "help",    no_argument,       NULL, 'h' },
    { NULL }
  };
  struct server *servers;
  char *value;
  int c, i, nr, failed = 0;
  size_t k;

  opterr = 0;
  while ((c = getopt_long (argc, argv, "n:d:b:s:t:jh", long_options,
                           NULL)) != -1) {
    switch (c) {
    case 'n': opt_count = parse_number ("--count", optarg, 1, 10000000); break;
    case 'd': opt_depth = parse_number ("--depth", optarg, 1, 1024); break;
    case 'b': opt_batch = parse_number ("--batch", optarg, 1, 1024); break;
    /* memcached's default item size limit (-I) is 1 MiB; a value that
     * large does not fit with its key and header, and is refused by
     * the server: an error from the store, exit 1.
     */
    case 's': opt_block = parse_number ("--block", optarg, 1, 1048576); break;
    case 't':
      opt_timeout_ms = parse_number ("--timeout", optarg, 1, 3600000);
      break;
    case 'j': opt_json = true; break;
    case 'h': usage (stdout); exit (0);
    default:
      if (optopt != 0 && strchr ("ndbst", optopt) != NULL)
        fprintf (stderr, "%s: -%c takes a value (see --help)\n", progname,
                 optopt);
      else
        fprintf (stderr, "%s: unknown option '%s' (see --help)\n", progname,
                 argv[optind - 1]);
      exit (2);
    }
  }
  nr = argc - optind;
  if (nr == 0)
    bad_usage ("no server given");
  servers = calloc (nr, sizeof *servers);
  value = malloc (opt_block);
  if (servers == NULL || value == NULL) {
    perror (progname);
    exit (1);
  }
  for (i = 0; i < nr; i++)
    parse_server (argv[optind + i], &servers[i]);
  /* Not a repeated byte: a value the server or the copy could mangle
   * without the check noticing would prove nothing.
   */
  for (k = 0; k < opt_block; k++)
    value[k] = (char) (k * 131 + k / 251);

  if (opt_json)
    printf ("{\"servers\": [");
  for (i = 0; i < nr; i++) {
    struct measure m[3];
    char error[256] = "";

    if (measure_server (&servers[i], value, m, error, sizeof error) < 0) {
      fprintf (stderr, "%s: %s\n", progname, error);
      failed = 1;
      break;
    }
    if (opt_json)
      print_json (&servers[i], m, i == 0);
    else
      print_text (&servers[i], m);
  }
  if (opt_json)
    printf ("]%s}\n", failed ? ", \"error\": true" : "");
  free (servers);
  free (value);
  return failed;
}
