/* SPDX-License-Identifier: BSD-3-Clause */
/* nbdkit-memcache-filter: connections to the memcached servers.
 *
 * Two protocols behind one interface, each a table of operations (struct
 * conn_ops): memcache-protocol=meta (the default) in conn-meta.c,
 * memcache-protocol=text in conn-text.c, both over memcached-ext.  The
 * table is chosen once, in conn_init; nothing else in the filter asks
 * which protocol is in use.
 *
 * This file holds what the two share: sessions (one request's use of one
 * server, opened only while health.c says the server is usable), the
 * checks every operation makes (after one failure a session does no more
 * network operations), and the reporting of outcomes: to health.c
 * (whether the server stays up), and latencies and failures to stats.c,
 * so callers only decide what an outcome means for the data.
 */

#include <config.h>

#include <time.h>

#include <nbdkit-filter.h>

#include "conn.h"
#include "conn-meta.h"
#include "health.h"
#include "params.h"
#include "stats.h"

/* The meta protocol's table: its functions are conn-meta.c's. */
const struct conn_ops conn_meta_protocol = {
  .name          = "meta",
  .init          = conn_meta_init,
  .free          = conn_meta_free,
  .close         = conn_meta_close,
  .mget          = conn_meta_mget,
  .fetch         = conn_meta_fetch,
  .mutate_send   = conn_meta_mutate_send,
  .mutate_finish = conn_meta_mutate_finish,
  .oneshot       = conn_meta_oneshot,
  .forget        = conn_meta_forget,
};

/* Set by conn_init, before any session; read-only afterwards. */
static const struct conn_ops *ops;

static uint64_t
conn_now_ns (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * UINT64_C (1000000000) + ts.tv_nsec;
}

int
conn_init (const struct ring *ring, const struct conn_settings *settings)
{
  ops = settings->protocol == MEMCACHE_PROTOCOL_TEXT
    ? &conn_text_protocol : &conn_meta_protocol;
  nbdkit_debug ("memcache: the %s protocol", ops->name);
  return ops->init (ring, settings);
}

void
conn_free (void)
{
  if (ops)
    ops->free ();
}

bool
conn_open (struct conn_session *s, size_t i)
{
  *s = (struct conn_session) {
    .server = i, .batch_start_ns = conn_now_ns (),
  };
  if (!health_acquire (i, &s->gen, &s->incarnation))
    return false;
  return ops->open == NULL || ops->open (s);
}

bool
conn_open_background (struct conn_session *s, size_t i)
{
  *s = (struct conn_session) {
    .server = i, .batch_start_ns = conn_now_ns (), .background = true,
  };
  if (!health_acquire_usable (i, &s->gen, &s->incarnation))
    return false;
  return ops->open == NULL || ops->open (s);
}

void
conn_close (struct conn_session *s)
{
  ops->close (s);
}

void
conn_forget (size_t i)
{
  ops->forget (i);
}

void
conn_report_ok (struct conn_session *s)
{
  health_report_ok (s->server, s->incarnation, s->batch_start_ns);
}

void
conn_report_failure (struct conn_session *s, bool timeout,
                     enum conn_fault fault, const char *why)
{
  if (timeout) {
    stats_add (stats.timeouts, 1);
    stats_add (server_stats[s->server].timeouts, 1);
  }
  else {
    stats_add (stats.errors, 1);
    stats_add (server_stats[s->server].errors, 1);
  }
  nbdkit_debug ("memcache: server %zu: %s", s->server, why);
  s->failed = true;
  if (fault != CONN_FAULT_OURS && !s->background)
    health_report_failure (s->server, s->incarnation, s->batch_start_ns,
                           fault == CONN_FAULT_HARD ? HEALTH_FAIL_HARD
                           : HEALTH_FAIL_SOFT);
}

static void
conn_latency (struct conn_session *s, uint64_t start_ns)
{
  stats_latency (s->server, (conn_now_ns () - start_ns) / 1000);
}

enum conn_outcome
conn_mget (struct conn_session *s, const char * const *keys,
           const size_t *key_lens, size_t n)
{
  enum conn_outcome r;

  if (s->failed)
    return CONN_FAILED;
  s->batch_start_ns = conn_now_ns ();
  r = ops->mget (s, keys, key_lens, n);
  if (r != CONN_OK)
    conn_latency (s, s->batch_start_ns);
  return r;
}

enum conn_outcome
conn_fetch (struct conn_session *s, conn_found_fn found, void *opaque)
{
  enum conn_outcome r;

  if (s->failed)
    return CONN_FAILED;
  r = ops->fetch (s, found, opaque);
  conn_latency (s, s->batch_start_ns);
  return r;
}

enum conn_outcome
conn_mutate_send (struct conn_session *s, struct conn_mutation *m, size_t n,
                  unsigned ttl)
{
  enum conn_outcome r;

  if (s->failed)
    return CONN_FAILED;
  s->batch_start_ns = conn_now_ns ();
  r = ops->mutate_send (s, m, n, ttl);
  if (r != CONN_OK)
    conn_latency (s, s->batch_start_ns);
  return r;
}

enum conn_outcome
conn_mutate_finish (struct conn_session *s)
{
  enum conn_outcome r;

  if (s->failed)
    r = CONN_FAILED;
  else {
    r = ops->mutate_finish (s);
    conn_latency (s, s->batch_start_ns);
  }
  if (r == CONN_FAILED)
    stats_add (stats.uncertain, 1);
  return r;
}

int
conn_oneshot (const struct ring_server *server, struct conn_oneshot *o,
              size_t max_value, int64_t deadline_ns)
{
  return ops->oneshot (server, o, max_value, deadline_ns);
}
