/* SPDX-License-Identifier: BSD-3-Clause */
/* abd: `abdctl metrics`: the filters' status in the Prometheus text
 * exposition format (version 0.0.4), for node_exporter's textfile
 * collector.
 *
 * Each metric comes from one status field and is described once, in the
 * tables below: its name, type and help.  Counters (fields that only
 * grow while nbdkit runs) end in _total; sizes are in bytes, times in
 * seconds (Prometheus' base units).  Memcache per-server metrics carry the
 * server's address as server="...".  metrics_print writes each metric's
 * HELP and TYPE once and then all its samples, across layers and servers,
 * as the format requires.
 */

#include <config.h>

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "abdctl.h"

struct metric {
  const char *field;            /* the status field */
  const char *name;             /* the metric, without the layer prefix */
  const char *type;             /* "gauge" or "counter" */
  double scale;                 /* multiplies the field's value */
  const char *help;
};

static const struct metric async_metrics[] = {
  { "max_dirty_bytes", "max_dirty_bytes", "gauge", 1,
    "RAM allowed for dirty data (async-max-dirty)." },
  { "dirty_bytes", "dirty_bytes", "gauge", 1,
    "Bytes acknowledged but not yet on the lower device: lost on a power cut." },
  { "dirty_data_bytes", "dirty_data_bytes", "gauge", 1,
    "Dirty bytes held as data (not zero or trim ranges)." },
  { "dirty_ranges", "dirty_ranges", "gauge", 1,
    "Dirty ranges." },
  { "dirty_entries", "dirty_entries", "gauge", 1,
    "Dirty entries (writes, zeroes and trims not yet merged)." },
  { "oldest_dirty_age_ms", "oldest_dirty_age_seconds", "gauge", 1e-3,
    "Age of the oldest dirty data." },
  { "writes_in_flight", "writes_in_flight", "gauge", 1,
    "Writes to the lower device under way." },
  { "bytes_in_flight", "bytes_in_flight", "gauge", 1,
    "Bytes of the writes to the lower device under way." },
  { "written_back_bytes", "written_back_bytes_total", "counter", 1,
    "Bytes written back to the lower device." },
  { "written_back_requests", "written_back_requests_total", "counter", 1,
    "Writes to the lower device." },
  { "lower_flushes", "lower_flushes_total", "counter", 1,
    "Flushes of the lower device." },
  { "writeback_rate_bytes_per_sec", "writeback_rate_bytes_per_second",
    "gauge", 1, "Recent write-back rate." },
  { "drain_estimate_seconds", "drain_estimate_seconds", "gauge", 1,
    "Time to write back what is dirty at the recent rate (-1: unknown)." },
  { "lower_write_errors", "lower_write_errors_total", "counter", 1,
    "Failed writes to the lower device." },
  { "lower_flush_errors", "lower_flush_errors_total", "counter", 1,
    "Failed flushes of the lower device." },
  { "failed_bytes", "failed_bytes", "gauge", 1,
    "Dirty bytes whose write-back failed and is being retried." },
  { "client_write_requests", "client_write_requests_total", "counter", 1,
    "Write, zero and trim requests from clients." },
  { "client_written_bytes", "client_written_bytes_total", "counter", 1,
    "Bytes written, zeroed or trimmed by clients." },
  { "space_waits", "space_waits_total", "counter", 1,
    "Client writes that waited for dirty space." },
};

static const struct metric memcache_metrics[] = {
  { "block_size", "block_size_bytes", "gauge", 1,
    "Cache block size (memcache-block-size)." },
  { "hits", "hits_total", "counter", 1,
    "Blocks served from memcached." },
  { "misses", "misses_total", "counter", 1,
    "Blocks looked up and not served (including rejected values)." },
  { "skipped_down", "skipped_down_total", "counter", 1,
    "Blocks not looked up because their server was down." },
  { "fills", "fills_total", "counter", 1,
    "Blocks stored in memcached after a miss." },
  { "fills_raced", "fills_raced_total", "counter", 1,
    "Fills dropped because a write of the block came." },
  { "fills_dropped", "fills_dropped_total", "counter", 1,
    "Fills dropped because the fill queue was full." },
  { "fills_queued", "fills_queued", "gauge", 1,
    "Fills waiting in the fill queue." },
  { "fill_errors", "fill_errors_total", "counter", 1,
    "Fills that failed." },
  { "updates", "updates_total", "counter", 1,
    "Blocks updated in memcached on writes (write policy update)." },
  { "updates_raced", "updates_raced_total", "counter", 1,
    "Blocks whose version was raised again: overlapping writes." },
  { "invalidations", "invalidations_total", "counter", 1,
    "Deletes done in memcached on writes." },
  { "mass_invalidations", "mass_invalidations_total", "counter", 1,
    "Large zeroes or trims that invalidated every block at once." },
  { "format_mismatches", "format_mismatches_total", "counter", 1,
    "Values of a wrong length or magic." },
  { "auth_failures", "auth_failures_total", "counter", 1,
    "Values that do not authenticate: damaged, replayed or forged." },
  { "timeouts", "timeouts_total", "counter", 1,
    "Requests to memcached that timed out." },
  { "errors", "errors_total", "counter", 1,
    "Requests to memcached that failed." },
  { "uncertain", "uncertain_total", "counter", 1,
    "Batches of stores and deletes with an unknown outcome." },
  { "lower_reads", "lower_reads_total", "counter", 1,
    "Reads from the lower device." },
  { "sequential_cutoff", "sequential_cutoff_bytes", "gauge", 1,
    "Sequential streams longer than this are not cached, 0 = off." },
  { "seq_bypass_blocks", "seq_bypass_blocks_total", "counter", 1,
    "Blocks read from the lower device and not stored: sequential." },
  { "seq_bypass_stores", "seq_bypass_stores_total", "counter", 1,
    "Blocks of sequential writes deleted rather than stored." },
  { "servers_total", "servers", "gauge", 1,
    "memcached servers (memcache-servers)." },
};

static const struct metric server_metrics[] = {
  { "hits", "server_hits_total", "counter", 1,
    "Blocks this server served." },
  { "misses", "server_misses_total", "counter", 1,
    "Blocks looked up on this server and not served." },
  { "skipped_down", "server_skipped_down_total", "counter", 1,
    "Blocks not looked up because this server was down." },
  { "timeouts", "server_timeouts_total", "counter", 1,
    "Requests to this server that timed out." },
  { "errors", "server_errors_total", "counter", 1,
    "Requests to this server that failed." },
  { "ops", "server_requests_total", "counter", 1,
    "Round trips to this server." },
  { "downs", "server_downs_total", "counter", 1,
    "Times this server was marked down." },
  { "latency_avg_us", "server_latency_avg_seconds", "gauge", 1e-6,
    "Mean round-trip time to this server." },
  { "latency_max_us", "server_latency_max_seconds", "gauge", 1e-6,
    "Longest round trip to this server." },
};

#define N(a) (sizeof (a) / sizeof (a)[0])

static void
metric_head (FILE *fp, const char *prefix, const struct metric *m)
{
  fprintf (fp, "# HELP %s%s %s\n", prefix, m->name, m->help);
  fprintf (fp, "# TYPE %s%s %s\n", prefix, m->name, m->type);
}

/* A label value with the escapes the format requires. */
static void
label_value (FILE *fp, const char *s)
{
  for (; *s; s++) {
    if (*s == '\\' || *s == '"')
      fprintf (fp, "\\%c", *s);
    else if (*s == '\n')
      fputs ("\\n", fp);
    else
      fputc (*s, fp);
  }
}

/* The sample of M from FS, if the field is there and a number. */
static void
metric_sample (FILE *fp, const char *prefix, const struct metric *m,
               struct fields *fs, const char *server)
{
  const char *v = fields_str (fs, m->field);
  char *end;
  double d;

  if (v == NULL)
    return;
  d = strtod (v, &end);
  if (end == v || *end != '\0')
    return;
  fprintf (fp, "%s%s", prefix, m->name);
  if (server) {
    fputs ("{server=\"", fp);
    label_value (fp, server);
    fputs ("\"}", fp);
  }
  if (m->scale == 1 && strspn (v, "-0123456789") == strlen (v))
    fprintf (fp, " %s\n", v);   /* integers exactly as the filter gave */
  else
    fprintf (fp, " %.9g\n", d * m->scale);
}

/* The memcache servers: each a slice of FS (see abdctl.h). */
static size_t
servers_of (struct fields *fs, struct fields *out, size_t max)
{
  size_t i, j, n = 0;

  for (i = 0; i < fs->n && n < max; i++) {
    if (fs->f[i].depth != 1 || fs->f[i].value != NULL)
      continue;
    for (j = i + 1; j < fs->n && fs->f[j].depth > 1; j++)
      ;
    out[n].f = &fs->f[i + 1];
    out[n].n = j - i - 1;
    if (out[n].n > 0)
      n++;
  }
  return n;
}

#define MAX_SERVERS 256

void
metrics_print (FILE *fp, struct layer_status *ls, size_t n)
{
  static const struct metric up = {
    NULL, "up", "gauge", 1,
    "1 if the layer's control socket answered status, else 0."
  };
  size_t i, k, s;

  metric_head (fp, "abd_", &up);
  for (i = 0; i < n; i++)
    fprintf (fp, "abd_up{layer=\"%s\"} %d\n", layer_name (ls[i].layer),
             ls[i].up);

  for (i = 0; i < n; i++) {
    const char *mode;

    if (!ls[i].up || ls[i].layer != LAYER_ASYNC)
      continue;
    fprintf (fp, "# HELP abd_async_sync_mode 1 in sync mode (client flushes "
             "honoured), 0 in async mode.\n"
             "# TYPE abd_async_sync_mode gauge\n");
    mode = fields_str (&ls[i].fs, "mode");
    if (mode)
      fprintf (fp, "abd_async_sync_mode %d\n", strcmp (mode, "sync") == 0);
    for (k = 0; k < N (async_metrics); k++) {
      metric_head (fp, "abd_async_", &async_metrics[k]);
      metric_sample (fp, "abd_async_", &async_metrics[k], &ls[i].fs, NULL);
    }
  }

  for (i = 0; i < n; i++) {
    struct fields servers[MAX_SERVERS];
    size_t ns;

    if (!ls[i].up || ls[i].layer != LAYER_MEMCACHE)
      continue;
    for (k = 0; k < N (memcache_metrics); k++) {
      metric_head (fp, "abd_memcache_", &memcache_metrics[k]);
      metric_sample (fp, "abd_memcache_", &memcache_metrics[k], &ls[i].fs,
                     NULL);
    }
    ns = servers_of (&ls[i].fs, servers, MAX_SERVERS);
    fprintf (fp, "# HELP abd_memcache_server_up 1 if the server is up, 0 "
             "if it is down or being probed.\n"
             "# TYPE abd_memcache_server_up gauge\n");
    for (s = 0; s < ns; s++) {
      const char *addr = fields_str (&servers[s], "address");
      const char *state = fields_str (&servers[s], "state");

      if (addr == NULL || state == NULL)
        continue;
      fputs ("abd_memcache_server_up{server=\"", fp);
      label_value (fp, addr);
      fprintf (fp, "\"} %d\n", strcmp (state, "up") == 0);
    }
    for (k = 0; k < N (server_metrics); k++) {
      metric_head (fp, "abd_memcache_", &server_metrics[k]);
      for (s = 0; s < ns; s++) {
        const char *addr = fields_str (&servers[s], "address");

        if (addr)
          metric_sample (fp, "abd_memcache_", &server_metrics[k],
                         &servers[s], addr);
      }
    }
  }
}
