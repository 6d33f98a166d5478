/* SPDX-License-Identifier: BSD-3-Clause */
/* abd: `abdctl status` for people: sizes in KiB/MiB/GiB (with the byte
 * count where it matters), the dirty share of the maximum, the memcache
 * hit ratio, durations in seconds.  Scripts use --json or --raw, whose
 * fields and numbers are the filter's own.
 *
 * Fields this file does not know (a newer filter) are printed as the
 * filter gave them, after the ones it knows, so nothing is hidden.
 */

#include <config.h>

#include <inttypes.h>
#include <stdarg.h>
#include <string.h>

#include "abdctl.h"

const char *
fmt_size (char *buf, uint64_t bytes)
{
  static const char *const units[] = { "KiB", "MiB", "GiB", "TiB", "PiB" };
  double v = bytes;
  int u = -1;

  if (bytes < 1024) {
    snprintf (buf, SIZE_BUF, "%" PRIu64 " B", bytes);
    return buf;
  }
  while (v >= 1024 && u < 4) {
    v /= 1024;
    u++;
  }
  snprintf (buf, SIZE_BUF, "%.1f %s", v, units[u]);
  return buf;
}

const char *
fmt_size_raw (char *buf, uint64_t bytes)
{
  char unit[SIZE_BUF];

  if (bytes < 1024)
    return fmt_size (buf, bytes);
  snprintf (buf, SIZE_BUF, "%s (%" PRIu64 " bytes)",
            fmt_size (unit, bytes), bytes);
  return buf;
}

/* "850 ms", "4.2 s", "3 min 20 s", "2 h 05 min". */
static const char *
fmt_ms (char *buf, uint64_t ms)
{
  uint64_t s = ms / 1000;

  if (ms < 1000)
    snprintf (buf, SIZE_BUF, "%" PRIu64 " ms", ms);
  else if (ms < 60000)
    snprintf (buf, SIZE_BUF, "%.1f s", ms / 1000.0);
  else if (s < 3600)
    snprintf (buf, SIZE_BUF, "%" PRIu64 " min %02" PRIu64 " s",
              s / 60, s % 60);
  else
    snprintf (buf, SIZE_BUF, "%" PRIu64 " h %02" PRIu64 " min",
              s / 3600, s / 60 % 60);
  return buf;
}

/* PART as a percentage of WHOLE, "-" when WHOLE is 0. */
static const char *
fmt_pct (char *buf, uint64_t part, uint64_t whole)
{
  if (whole == 0)
    snprintf (buf, SIZE_BUF, "-");
  else
    snprintf (buf, SIZE_BUF, "%.1f%%", 100.0 * part / whole);
  return buf;
}

/* One line: a label in a column, then the text. */
static void __attribute__ ((format (printf, 4, 5)))
show_line (FILE *fp, int indent, const char *label, const char *fmt, ...)
{
  va_list args;
  char col[32];

  snprintf (col, sizeof col, "%s:", label);
  fprintf (fp, "%*s%-16s ", indent, "", col);
  va_start (args, fmt);
  vfprintf (fp, fmt, args);
  va_end (args);
  fputc ('\n', fp);
}

/* Missing numbers show as 0: an older filter, whose other fields show. */
static uint64_t
u64 (struct fields *fs, const char *name)
{
  uint64_t v = 0;

  fields_u64 (fs, name, &v);
  return v;
}

static const char *
str (struct fields *fs, const char *name)
{
  const char *s = fields_str (fs, name);

  return s ? s : "?";
}

/* async-max-drain-seconds and async-store-file. */
static void
show_async_budget (FILE *fp, struct fields *fs)
{
  char a[SIZE_BUF], b[SIZE_BUF];
  uint64_t secs = u64 (fs, "max_drain_seconds");
  uint64_t budget = u64 (fs, "drain_budget_bytes");
  uint64_t drain_rate = u64 (fs, "drain_rate_bytes_per_sec");
  uint64_t waits = u64 (fs, "drain_budget_waits");
  const char *file = fields_str (fs, "store_file");

  if (secs == 0)
    show_line (fp, 2, "drain budget", "off (drain rate %s/s)",
               fmt_size (a, drain_rate));
  else
    show_line (fp, 2, "drain budget", "%s: %" PRIu64 " s at %s/s; %"
               PRIu64 " waits", fmt_size (a, budget), secs,
               fmt_size (b, drain_rate), waits);
  show_line (fp, 2, "store file", "%s%s%s",
             file && *file ? file : "none (a crash loses dirty data)",
             file && *file ? ", " : "",
             file && *file ? fmt_size (a, u64 (fs, "store_file_dirty_bytes"))
             : "");
  if (!(file && *file))
    (void) u64 (fs, "store_file_dirty_bytes");
  {
    const char *flush = fields_str (fs, "store_flush");
    uint64_t commits = u64 (fs, "store_commits");
    uint64_t failed = u64 (fs, "store_commit_failed");

    if (flush && strcmp (flush, "store") == 0)
      show_line (fp, 2, "flushes", "durable in the store file: %" PRIu64
                 " commits%s", commits,
                 failed ? ", A COMMIT FAILED (flushes fail: restart)" : "");
    else
      show_line (fp, 2, "flushes", "%s",
                 "from RAM (async-flush=ram: needs a UPS)");
  }
}

static void
show_async (FILE *fp, struct fields *fs)
{
  char a[SIZE_BUF], b[SIZE_BUF], c[SIZE_BUF];
  uint64_t max = u64 (fs, "max_dirty_bytes");
  uint64_t dirty = u64 (fs, "dirty_bytes");
  uint64_t rate = u64 (fs, "writeback_rate_bytes_per_sec");
  uint64_t age;
  int64_t eta = -1;
  const char *mode = str (fs, "mode"), *reason = str (fs, "mode_reason");

  show_line (fp, 2, "mode", "%s (%s)%s", mode, reason,
             u64 (fs, "draining") ? ", draining: nbdkit is stopping" : "");
  show_line (fp, 2, "sync writes", "%s", str (fs, "sync_writes"));
  show_line (fp, 2, "dirty", "%s, %s of %s", fmt_size_raw (a, dirty),
             fmt_pct (b, dirty, max), fmt_size (c, max));
  show_line (fp, 2, "dirty data", "%s in %" PRIu64 " ranges, %"
             PRIu64 " entries",
             fmt_size_raw (a, u64 (fs, "dirty_data_bytes")),
             u64 (fs, "dirty_ranges"), u64 (fs, "dirty_entries"));
  age = u64 (fs, "oldest_dirty_age_ms");
  show_line (fp, 2, "oldest dirty", "%s", dirty ? fmt_ms (a, age) : "-");
  show_line (fp, 2, "in flight", "%" PRIu64 " writes, %s",
             u64 (fs, "writes_in_flight"),
             fmt_size (a, u64 (fs, "bytes_in_flight")));
  show_line (fp, 2, "written back", "%s in %" PRIu64 " writes, %" PRIu64
             " lower flushes",
             fmt_size_raw (a, u64 (fs, "written_back_bytes")),
             u64 (fs, "written_back_requests"), u64 (fs, "lower_flushes"));
  show_line (fp, 2, "writeback rate", "%s/s", fmt_size (a, rate));
  fields_i64 (fs, "drain_estimate_seconds", &eta);
  if (eta == 0)
    show_line (fp, 2, "drain estimate", "0 s (nothing dirty)");
  else if (eta > 0)
    show_line (fp, 2, "drain estimate", "%s",
               fmt_ms (a, (uint64_t) eta * 1000));
  else
    show_line (fp, 2, "drain estimate", "unknown (no writeback lately)");
  show_line (fp, 2, "lower errors", "%" PRIu64 " writes, %" PRIu64
             " flushes; %s not yet durable",
             u64 (fs, "lower_write_errors"), u64 (fs, "lower_flush_errors"),
             fmt_size (a, u64 (fs, "failed_bytes")));
  show_line (fp, 2, "client writes", "%" PRIu64 " requests, %s",
             u64 (fs, "client_write_requests"),
             fmt_size_raw (a, u64 (fs, "client_written_bytes")));
  show_line (fp, 2, "space waits", "%" PRIu64, u64 (fs, "space_waits"));
  show_async_budget (fp, fs);
}

/* Lookups answered from memcached, of all lookups. */
static const char *
hit_ratio (char *buf, struct fields *fs)
{
  uint64_t hits = u64 (fs, "hits"), misses = u64 (fs, "misses");
  uint64_t skipped = u64 (fs, "skipped_down");
  char pct[SIZE_BUF];

  snprintf (buf, SIZE_BUF * 2, "%s (%" PRIu64 " hits, %" PRIu64
            " misses, %" PRIu64 " skipped: server down)",
            fmt_pct (pct, hits, hits + misses + skipped),
            hits, misses, skipped);
  return buf;
}

static void
show_server (FILE *fp, struct fields *srv)
{
  char a[SIZE_BUF * 2];
  uint64_t max_us = u64 (srv, "latency_max_us");
  const char *avg = str (srv, "latency_avg_us");

  fprintf (fp, "    %s: %s", str (srv, "address"), str (srv, "state"));
  fprintf (fp, ", hit ratio %s\n", hit_ratio (a, srv));
  fprintf (fp, "      %" PRIu64 " ops, latency avg %s us, max %" PRIu64
           " us; %" PRIu64 " timeouts, %" PRIu64 " errors, %" PRIu64
           " times down\n", u64 (srv, "ops"), avg, max_us,
           u64 (srv, "timeouts"), u64 (srv, "errors"), u64 (srv, "downs"));
}

static void
show_memcache (FILE *fp, struct fields *fs)
{
  char a[SIZE_BUF * 2];
  size_t i;

  show_line (fp, 2, "id", "%s (epoch %s)", str (fs, "id"), str (fs, "epoch"));
  show_line (fp, 2, "cache", "blocks of %s, write policy %s, timeout %"
             PRIu64 " ms", fmt_size (a, u64 (fs, "block_size")),
             str (fs, "write_policy"), u64 (fs, "timeout_ms"));
  show_line (fp, 2, "hit ratio", "%s", hit_ratio (a, fs));
  show_line (fp, 2, "fills", "%" PRIu64 " (%" PRIu64 " raced, %" PRIu64
             " dropped, %" PRIu64 " queued, %" PRIu64 " errors)",
             u64 (fs, "fills"), u64 (fs, "fills_raced"),
             u64 (fs, "fills_dropped"), u64 (fs, "fills_queued"),
             u64 (fs, "fill_errors"));
  show_line (fp, 2, "on writes", "%" PRIu64 " updates, %" PRIu64
             " invalidations, %" PRIu64 " mass invalidations",
             u64 (fs, "updates"), u64 (fs, "invalidations"),
             u64 (fs, "mass_invalidations"));
  show_line (fp, 2, "problems", "%" PRIu64 " timeouts, %" PRIu64
             " errors, %" PRIu64 " uncertain, %" PRIu64
             " format mismatches, %" PRIu64 " auth failures",
             u64 (fs, "timeouts"), u64 (fs, "errors"), u64 (fs, "uncertain"),
             u64 (fs, "format_mismatches"), u64 (fs, "auth_failures"));
  show_line (fp, 2, "lower reads", "%" PRIu64, u64 (fs, "lower_reads"));
  if (u64 (fs, "sequential_cutoff") == 0)
    show_line (fp, 2, "sequential", "cutoff off");
  else
    show_line (fp, 2, "sequential", "cutoff %s; not stored: %" PRIu64
               " blocks read, %" PRIu64 " blocks written",
               fmt_size (a, u64 (fs, "sequential_cutoff")),
               u64 (fs, "seq_bypass_blocks"), u64 (fs, "seq_bypass_stores"));
  show_line (fp, 2, "servers", "%" PRIu64, u64 (fs, "servers_total"));

  /* servers: one nested object per server, each a slice of fields. */
  for (i = 0; i < fs->n; i++) {
    struct fields srv;
    size_t j;

    if (fs->f[i].depth != 1 || fs->f[i].value != NULL)
      continue;
    for (j = i + 1; j < fs->n && fs->f[j].depth > 1; j++)
      ;
    srv.f = &fs->f[i + 1];
    srv.n = j - i - 1;
    if (srv.n > 0)
      show_server (fp, &srv);
  }
  fields_str (fs, "servers");
}

void
show_status (FILE *fp, struct fields *fs, enum layer layer)
{
  size_t i;

  if (layer == LAYER_ASYNC)
    show_async (fp, fs);
  else if (layer == LAYER_MEMCACHE)
    show_memcache (fp, fs);

  for (i = 0; i < fs->n; i++) {
    const struct field *f = &fs->f[i];

    if (layer == LAYER_UNKNOWN)
      fprintf (fp, "%*s%s:%s%s\n", 2 + 2 * f->depth, "", f->name,
               f->value ? " " : "", f->value ? f->value : "");
    else if (f->depth == 0 && !f->used && f->value)
      show_line (fp, 2, f->name, "%s", f->value);
  }
}
