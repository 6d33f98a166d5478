/* SPDX-License-Identifier: BSD-3-Clause */
/* nbdkit-memcache-filter: connections to the memcached servers.
 *
 * Two backends behind one interface: memcache-protocol=meta (the default)
 * is in conn-meta.c; this file holds the sessions, the reporting of
 * outcomes, and memcache-protocol=text, with libmemcached:
 *
 * Each server has its own libmemcached handle template holding only that
 * server, so libmemcached never chooses or redistributes servers: the ring
 * (ring.c) has already chosen.  Behaviours: TCP_NODELAY on (a multi-get
 * miss costs 44 ms without it), poll and connect timeouts = memcache-timeout,
 * auto-eject and remove-failed-servers off.
 *
 * Handles are cloned from the template on demand and kept in a per-server
 * stack of idle handles for reuse.  A handle is reused only within the
 * server's incarnation it was opened in (health.h): after a failure or a
 * probe, connections are made afresh, so a connection that timed out or
 * broke, or one to a server that restarted, is never used again.
 *
 * Every operation reports its outcome to health.c and its latency and
 * failures to stats.c, so callers only decide what an outcome means for
 * the data.  After one failure a session does no more network operations.
 */

#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include <nbdkit-filter.h>

#include "conn.h"
#include "conn-meta.h"
#include "health.h"
#include "params.h"
#include "stats.h"

#define CONN_IDLE_MAX 64

struct idle_handle {
  memcached_st *mc;
  uint64_t incarnation;
};

struct conn_pool {
  memcached_st *template;       /* set in conn_init, then only cloned */
  pthread_mutex_t lock;         /* protects idle, nr_idle, cloning */
  struct idle_handle idle[CONN_IDLE_MAX];
  size_t nr_idle;
};

static struct conn_pool *pools;
static size_t nr_pools;
static unsigned read_timeout_ms, store_timeout_ms;

static uint64_t
conn_now_ns (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * UINT64_C (1000000000) + ts.tv_nsec;
}

static int
conn_make_template (struct conn_pool *pool, const struct ring_server *server,
                    unsigned timeout_ms)
{
  memcached_st *mc;
  memcached_return_t rc;

  mc = memcached_create (NULL);
  if (mc == NULL) {
    nbdkit_error ("memcached_create: out of memory");
    return -1;
  }
  if (server->port == 0)
    rc = memcached_server_add_unix_socket (mc, server->host);
  else
    rc = memcached_server_add (mc, server->host, server->port);
  if (rc == MEMCACHED_SUCCESS)
    rc = memcached_behavior_set (mc, MEMCACHED_BEHAVIOR_TCP_NODELAY, 1);
  if (rc == MEMCACHED_SUCCESS)
    rc = memcached_behavior_set (mc, MEMCACHED_BEHAVIOR_POLL_TIMEOUT,
                                 timeout_ms);
  if (rc == MEMCACHED_SUCCESS)
    rc = memcached_behavior_set (mc, MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT,
                                 timeout_ms);
  if (rc == MEMCACHED_SUCCESS)
    rc = memcached_behavior_set (mc, MEMCACHED_BEHAVIOR_AUTO_EJECT_HOSTS, 0);
  if (rc == MEMCACHED_SUCCESS)
    rc = memcached_behavior_set (mc, MEMCACHED_BEHAVIOR_REMOVE_FAILED_SERVERS,
                                 0);
  if (rc != MEMCACHED_SUCCESS) {
    nbdkit_error ("memcache: setting up %s: %s",
                  server->name, memcached_strerror (mc, rc));
    memcached_free (mc);
    return -1;
  }
  pool->template = mc;
  return 0;
}

int
conn_init (const struct ring *ring, unsigned timeout_ms)
{
  size_t i;

  read_timeout_ms = timeout_ms;
  store_timeout_ms = timeout_ms * MEMCACHE_STORE_TIMEOUT_FACTOR;
  if (params.protocol == MEMCACHE_PROTOCOL_META)
    return conn_meta_init (ring);

  pools = calloc (ring->n, sizeof *pools);
  if (pools == NULL) {
    nbdkit_error ("calloc: %m");
    return -1;
  }
  for (i = 0; i < ring->n; i++) {
    pthread_mutex_init (&pools[i].lock, NULL);
    nr_pools++;
    if (conn_make_template (&pools[i], &ring->servers[i], timeout_ms) == -1) {
      conn_free ();
      return -1;
    }
  }
  return 0;
}

void
conn_free (void)
{
  size_t i, j;

  conn_meta_free ();
  for (i = 0; i < nr_pools; i++) {
    for (j = 0; j < pools[i].nr_idle; j++)
      memcached_free (pools[i].idle[j].mc);
    if (pools[i].template)
      memcached_free (pools[i].template);
    pthread_mutex_destroy (&pools[i].lock);
  }
  free (pools);
  pools = NULL;
  nr_pools = 0;
}

bool
conn_open (struct conn_session *s, size_t i)
{
  struct conn_pool *pool = &pools[i];
  memcached_st *stale[CONN_IDLE_MAX];
  size_t nr_stale = 0, j;

  s->server = i;
  s->failed = false;
  s->mc = NULL;
  s->meta_slot = NULL;
  s->meta_ops = NULL;
  s->meta_mutations = NULL;
  s->background = false;
  s->batch_start_ns = conn_now_ns ();
  if (!health_acquire (i, &s->gen, &s->incarnation))
    return false;
  if (params.protocol == MEMCACHE_PROTOCOL_META)
    return true;                /* connections are taken per batch */

  pthread_mutex_lock (&pool->lock);
  while (pool->nr_idle > 0 && s->mc == NULL) {
    struct idle_handle *h = &pool->idle[--pool->nr_idle];

    if (h->incarnation == s->incarnation)
      s->mc = h->mc;
    else
      stale[nr_stale++] = h->mc;
  }
  /* Cloning only reads the template, but libmemcached does not promise
   * that concurrent clones are safe, so they are made under the lock.
   * A clone opens no connection: it is cheap.
   */
  if (s->mc == NULL)
    s->mc = memcached_clone (NULL, pool->template);
  pthread_mutex_unlock (&pool->lock);
  for (j = 0; j < nr_stale; j++)
    memcached_free (stale[j]);

  if (s->mc == NULL) {
    /* Out of memory: skip the server for this request.  If this request
     * was the probe, health.c starts another one later.
     */
    nbdkit_debug ("memcache: memcached_clone failed");
    return false;
  }
  return true;
}

void
conn_close (struct conn_session *s)
{
  struct conn_pool *pool = &pools[s->server];
  bool keep;

  if (params.protocol == MEMCACHE_PROTOCOL_META) {
    conn_meta_close (s);
    return;
  }
  keep = !s->failed && health_incarnation (s->server) == s->incarnation;
  if (keep) {
    pthread_mutex_lock (&pool->lock);
    if (pool->nr_idle < CONN_IDLE_MAX) {
      pool->idle[pool->nr_idle].mc = s->mc;
      pool->idle[pool->nr_idle].incarnation = s->incarnation;
      pool->nr_idle++;
    }
    else
      keep = false;
    pthread_mutex_unlock (&pool->lock);
  }
  if (!keep)
    memcached_free (s->mc);
  s->mc = NULL;
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

/* Turn a libmemcached return code into an outcome, and report it. */
static enum conn_outcome
conn_outcome (struct conn_session *s, memcached_return_t rc)
{
  switch (rc) {
  case MEMCACHED_SUCCESS:
  case MEMCACHED_STORED:
  case MEMCACHED_DELETED:
  case MEMCACHED_END:
  case MEMCACHED_NOTFOUND:
    conn_report_ok (s);
    return CONN_OK;

  case MEMCACHED_NOTSTORED:
  case MEMCACHED_DATA_EXISTS:
  case MEMCACHED_E2BIG:
  case MEMCACHED_SERVER_ERROR:
  case MEMCACHED_SERVER_MEMORY_ALLOCATION_FAILURE:
  case MEMCACHED_MEMORY_ALLOCATION_FAILURE:
    conn_report_ok (s);
    return CONN_REFUSED;

  case MEMCACHED_TIMEOUT:
    stats_add (stats.timeouts, 1);
    stats_add (server_stats[s->server].timeouts, 1);
    break;

  default:
    stats_add (stats.errors, 1);
    stats_add (server_stats[s->server].errors, 1);
    break;
  }

  nbdkit_debug ("memcache: server %zu: %s", s->server,
                memcached_strerror (s->mc, rc));
  s->failed = true;
  if (!s->background)
    health_report_failure (s->server, s->incarnation, s->batch_start_ns,
                           rc == MEMCACHED_TIMEOUT ? HEALTH_FAIL_SOFT
                           : HEALTH_FAIL_HARD);
  return CONN_FAILED;
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
  memcached_return_t rc;

  if (s->failed)
    return CONN_FAILED;
  s->batch_start_ns = conn_now_ns ();
  if (params.protocol == MEMCACHE_PROTOCOL_META) {
    enum conn_outcome r = conn_meta_mget (s, keys, key_lens, n);

    if (r != CONN_OK)
      conn_latency (s, s->batch_start_ns);
    return r;
  }
  rc = memcached_mget (s->mc, keys, key_lens, n);
  if (rc != MEMCACHED_SUCCESS) {
    conn_latency (s, s->batch_start_ns);
    return conn_outcome (s, rc);
  }
  return CONN_OK;
}

enum conn_outcome
conn_fetch (struct conn_session *s, conn_found_fn found, void *opaque)
{
  memcached_result_st result;
  memcached_return_t rc = MEMCACHED_SUCCESS;

  if (s->failed)
    return CONN_FAILED;
  if (params.protocol == MEMCACHE_PROTOCOL_META) {
    enum conn_outcome r = conn_meta_fetch (s, found, opaque);

    conn_latency (s, s->batch_start_ns);
    return r;
  }
  if (memcached_result_create (s->mc, &result) == NULL)
    return conn_outcome (s, MEMCACHED_MEMORY_ALLOCATION_FAILURE);
  while (memcached_fetch_result (s->mc, &result, &rc) != NULL) {
    found (opaque,
           memcached_result_key_value (&result),
           memcached_result_key_length (&result),
           memcached_result_value (&result),
           memcached_result_length (&result));
  }
  memcached_result_free (&result);
  conn_latency (s, s->batch_start_ns);
  return conn_outcome (s, rc);
}

/* memcache-protocol=text: one set or delete of the batch. */
static enum conn_outcome
conn_text_mutate (struct conn_session *s, struct conn_mutation *m,
                  unsigned ttl)
{
  uint64_t start = conn_now_ns ();
  memcached_return_t rc;
  enum conn_outcome r;

  if (m->value)
    rc = memcached_set (s->mc, m->key, m->key_len, m->value, m->value_len,
                        ttl, 0);
  else
    rc = memcached_delete (s->mc, m->key, m->key_len, 0);
  conn_latency (s, start);
  r = conn_outcome (s, rc);
  m->refused = r == CONN_REFUSED;
  return r;
}

enum conn_outcome
conn_mutate_send (struct conn_session *s, struct conn_mutation *m, size_t n,
                  unsigned ttl)
{
  enum conn_outcome r = CONN_OK;
  size_t i;

  s->text_outcome = CONN_FAILED;
  if (s->failed)
    return CONN_FAILED;
  s->batch_start_ns = conn_now_ns ();
  if (params.protocol == MEMCACHE_PROTOCOL_META) {
    r = conn_meta_mutate_send (s, m, n, ttl);
    if (r != CONN_OK)
      conn_latency (s, s->batch_start_ns);
    return r;
  }

  memcached_behavior_set (s->mc, MEMCACHED_BEHAVIOR_POLL_TIMEOUT,
                          store_timeout_ms);
  for (i = 0; i < n && r != CONN_FAILED; i++)
    if (conn_text_mutate (s, &m[i], ttl) == CONN_FAILED)
      r = CONN_FAILED;
  memcached_behavior_set (s->mc, MEMCACHED_BEHAVIOR_POLL_TIMEOUT,
                          read_timeout_ms);
  s->text_outcome = r;
  return r;
}

enum conn_outcome
conn_mutate_finish (struct conn_session *s)
{
  enum conn_outcome r;

  if (params.protocol != MEMCACHE_PROTOCOL_META)
    r = s->text_outcome;
  else if (s->failed)
    r = CONN_FAILED;
  else {
    r = conn_meta_mutate_finish (s);
    conn_latency (s, s->batch_start_ns);
  }
  if (r == CONN_FAILED)
    stats_add (stats.uncertain, 1);
  return r;
}
