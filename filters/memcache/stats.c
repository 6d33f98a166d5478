/* SPDX-License-Identifier: BSD-3-Clause */
/* nbdkit-memcache-filter: statistics and the control channel's commands.
 *
 * The counters live here; the read and write paths bump them.  The
 * control thread (common/control.c, started in .after_fork when
 * memcache-control= is given) calls stats_control for each request:
 *
 *   status         totals, then one nested object per server
 *   locate BLOCK   where BLOCK lives now: server, state and key
 *   servers ...    the pool, and changes to it (servers.c)
 *
 * Both answer as text or JSON (abdctl --json) from the same ctl_reply_*
 * calls.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nbdkit-filter.h>

#include "filler.h"
#include "health.h"
#include "pool.h"
#include "servers.h"
#include "stats.h"
#include "value.h"
#include "writeseq.h"

struct memcache_stats stats;
struct server_stats *server_stats;

/* Set by stats_init, read-only afterwards. */
static struct stats_settings stats_settings;
static uint64_t stats_epoch;
static const char *stats_start = "cold";
static const char *stats_start_reason = "";

int
stats_init (const struct ring *ring, const struct stats_settings *given,
            uint64_t epoch)
{
  server_stats = calloc (ring->n, sizeof *server_stats);
  if (server_stats == NULL) {
    nbdkit_error ("calloc: %m");
    return -1;
  }
  stats_settings = *given;
  stats_epoch = epoch;
  return 0;
}

void
stats_set_start (uint64_t epoch, const char *start, const char *reason)
{
  stats_epoch = epoch;
  stats_start = start;
  stats_start_reason = reason;
}

void
stats_free (void)
{
  free (server_stats);
  server_stats = NULL;
}

void
stats_server_join (size_t i)
{
  memset (&server_stats[i], 0, sizeof server_stats[i]);
}

void
stats_latency (size_t i, uint64_t us)
{
  struct server_stats *s = &server_stats[i];
  uint64_t max = __atomic_load_n (&s->latency_max_us, __ATOMIC_RELAXED);

  stats_add (s->ops, 1);
  stats_add (s->latency_sum_us, us);
  while (us > max &&
         !__atomic_compare_exchange_n (&s->latency_max_us, &max, us, false,
                                       __ATOMIC_RELAXED, __ATOMIC_RELAXED))
    ;
}

static uint64_t
stats_get (const uint64_t *field)
{
  return __atomic_load_n (field, __ATOMIC_RELAXED);
}

static void
stats_reply_server (struct ctl_reply *r, const struct ring *ring, size_t i)
{
  const struct server_stats *s = &server_stats[i];
  struct health_view h;
  char name[32];
  uint64_t ops = stats_get (&s->ops);

  health_view (i, &h);
  snprintf (name, sizeof name, "server%zu", i);
  ctl_reply_begin (r, name);
  ctl_reply_str (r, "address", ring->servers[i].name);
  ctl_reply_str (r, "state", health_state_name (h.state));
  ctl_reply_u64 (r, "generation", h.generation);
  ctl_reply_u64 (r, "downs", h.downs);
  ctl_reply_i64 (r, "next_probe_ms", h.next_probe_ms);
  ctl_reply_u64 (r, "hits", stats_get (&s->hits));
  ctl_reply_u64 (r, "misses", stats_get (&s->misses));
  ctl_reply_u64 (r, "skipped_down", stats_get (&s->skipped_down));
  ctl_reply_u64 (r, "timeouts", stats_get (&s->timeouts));
  ctl_reply_u64 (r, "errors", stats_get (&s->errors));
  ctl_reply_u64 (r, "ops", ops);
  ctl_reply_double (r, "latency_avg_us",
                    ops ? (double) stats_get (&s->latency_sum_us) / ops : 0);
  ctl_reply_u64 (r, "latency_max_us", stats_get (&s->latency_max_us));
  ctl_reply_end (r);
}

void
stats_reply_server_brief (struct ctl_reply *r, const struct ring *ring,
                          size_t i, double share)
{
  const struct server_stats *s = &server_stats[i];
  struct health_view h;
  char name[32];
  uint64_t hits = stats_get (&s->hits), misses = stats_get (&s->misses);

  health_view (i, &h);
  snprintf (name, sizeof name, "server%zu", i);
  ctl_reply_begin (r, name);
  ctl_reply_str (r, "address", ring->servers[i].name);
  ctl_reply_u64 (r, "slot", i);
  ctl_reply_str (r, "state", health_state_name (h.state));
  ctl_reply_u64 (r, "generation", h.generation);
  ctl_reply_double (r, "share", share);
  ctl_reply_u64 (r, "hits", hits);
  ctl_reply_u64 (r, "misses", misses);
  ctl_reply_double (r, "hit_ratio",
                    hits + misses ? (double) hits / (hits + misses) : 0);
  ctl_reply_end (r);
}

static void
stats_reply_status (struct ctl_reply *r)
{
  const struct ring *ring = pool_acquire ();
  char epoch[17];
  size_t i, members = 0;

  snprintf (epoch, sizeof epoch, "%016" PRIx64, stats_epoch);
  ctl_reply_str (r, "id", stats_settings.id);
  ctl_reply_str (r, "epoch", epoch);
  ctl_reply_str (r, "start", stats_start);
  ctl_reply_str (r, "start_reason", stats_start_reason);
  ctl_reply_u64 (r, "block_size", stats_settings.block_size);
  ctl_reply_str (r, "write_policy",
                 stats_settings.write_policy == WRITE_POLICY_UPDATE
                 ? "update" : "invalidate");
  ctl_reply_u64 (r, "timeout_ms", stats_settings.timeout_ms);
  ctl_reply_u64 (r, "sequential_cutoff", stats_settings.sequential_cutoff);
  ctl_reply_u64 (r, "hits", stats_get (&stats.hits));
  ctl_reply_u64 (r, "misses", stats_get (&stats.misses));
  ctl_reply_u64 (r, "skipped_down", stats_get (&stats.skipped_down));
  ctl_reply_u64 (r, "fills", stats_get (&stats.fills));
  ctl_reply_u64 (r, "fills_raced", stats_get (&stats.fills_raced));
  ctl_reply_u64 (r, "fills_dropped", stats_get (&stats.fills_dropped));
  ctl_reply_u64 (r, "fills_queued", filler_queued ());
  ctl_reply_u64 (r, "fill_errors", stats_get (&stats.fill_errors));
  ctl_reply_u64 (r, "updates", stats_get (&stats.updates));
  ctl_reply_u64 (r, "updates_raced", stats_get (&stats.updates_raced));
  ctl_reply_u64 (r, "invalidations", stats_get (&stats.invalidations));
  ctl_reply_u64 (r, "mass_invalidations",
                 stats_get (&stats.mass_invalidations));
  ctl_reply_u64 (r, "format_mismatches", stats_get (&stats.format_mismatches));
  ctl_reply_u64 (r, "auth_failures", stats_get (&stats.auth_failures));
  ctl_reply_u64 (r, "timeouts", stats_get (&stats.timeouts));
  ctl_reply_u64 (r, "errors", stats_get (&stats.errors));
  ctl_reply_u64 (r, "uncertain", stats_get (&stats.uncertain));
  ctl_reply_u64 (r, "lower_reads", stats_get (&stats.lower_reads));
  ctl_reply_u64 (r, "warm_hits", stats_get (&stats.warm_hits));
  ctl_reply_u64 (r, "warm_copies", stats_get (&stats.warm_copies));
  ctl_reply_u64 (r, "seq_bypass_blocks", stats_get (&stats.seq_bypass_blocks));
  ctl_reply_u64 (r, "seq_bypass_stores", stats_get (&stats.seq_bypass_stores));
  for (i = 0; i < ring->n; i++)
    if (ring_member (ring, i))
      members++;
  ctl_reply_u64 (r, "servers_total", members);
  ctl_reply_begin (r, "servers");
  for (i = 0; i < ring->n; i++)
    if (ring_member (ring, i))
      stats_reply_server (r, ring, i);
  ctl_reply_end (r);
  pool_release (ring);
}

static int
stats_reply_locate (struct ctl_reply *r, const char *arg)
{
  const struct ring *ring;
  struct value_ident ident;
  struct health_view h;
  char key[VALUE_KEY_MAX];
  char *end;
  size_t i;

  errno = 0;
  ident.block = strtoull (arg, &end, 0);
  if (errno != 0 || end == arg || *end != '\0' || arg[0] == '-') {
    ctl_reply_error (r, "locate: '%s' is not a block number", arg);
    return -1;
  }
  ring = pool_acquire ();
  i = ring_server_for_block (ring, ident.block);
  health_view (i, &h);
  ident.id_hash = ring->id_hash;
  ident.epoch = stats_epoch;
  ident.generation = h.generation;
  ident.version = writeseq_version (ident.block);
  value_key (key, &ident);

  ctl_reply_u64 (r, "block", ident.block);
  ctl_reply_u64 (r, "server", i);
  ctl_reply_str (r, "address", ring->servers[i].name);
  ctl_reply_str (r, "state", health_state_name (h.state));
  ctl_reply_u64 (r, "generation", h.generation);
  ctl_reply_str (r, "key", key);
  pool_release (ring);
  return 0;
}

int
stats_control (void *opaque, int argc, char **argv, struct ctl_reply *reply)
{
  if (strcmp (argv[0], "status") == 0) {
    if (argc != 1) {
      ctl_reply_error (reply, "usage: status");
      return -1;
    }
    stats_reply_status (reply);
    return 0;
  }
  if (strcmp (argv[0], "locate") == 0) {
    if (argc != 2) {
      ctl_reply_error (reply, "usage: locate BLOCK");
      return -1;
    }
    return stats_reply_locate (reply, argv[1]);
  }

  if (strcmp (argv[0], "servers") == 0)
    return servers_control (argc, argv, reply);

  ctl_reply_error (reply, "unknown command '%s' (memcache filter commands: "
                   "status, locate BLOCK, servers [add|remove HOST:PORT | "
                   "reload])", argv[0]);
  return -1;
}
