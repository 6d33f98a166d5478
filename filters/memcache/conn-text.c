/* SPDX-License-Identifier: BSD-3-Clause */
/* nbdkit-memcache-filter: connections over memcached's classic text
 * protocol (memcache-protocol=text), with memcached-ext's text client
 * (memcached-ext/text.h).
 *
 * For servers or proxies that do not speak the meta protocol.  The text
 * client has the meta client's design, so this has the same batches: a
 * multi-get is one batch of "get" commands (as many keys per line as fit),
 * stores and deletes one batch of "set" and "delete" commands, each with
 * one deadline for the whole batch (memcache-timeout from the send;
 * stores and deletes, memcache-timeout x MEMCACHE_STORE_TIMEOUT_FACTOR).
 * Every command is answered, in order: the text protocol's "noreply"
 * would save a line per store, but an error it still sends names no
 * command, so a batch could not tell which store failed.
 *
 * Connections: a session takes one at open, from its server's stack of
 * idle connections, and gives it back at close, so a connection is used
 * by one thread at a time, as the client requires.  A connection is
 * reused only within the server incarnation it was opened in (health.h),
 * and one whose batch failed (timeout, error, protocol error: it may
 * still carry a late answer) or was sent and never collected is closed,
 * never reused.  A session without an idle connection connects at its
 * first batch, within that batch's deadline.
 */

#include <config.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nbdkit-filter.h>

#include "conn.h"
#include "conn-meta.h"
#include "health.h"
#include "params.h"
#include "stats.h"
#include "text.h"
#include "value.h"

#define NS_PER_MS INT64_C (1000000)

/* Idle connections kept per server. */
#define CONN_TEXT_IDLE_MAX 64

/* The longest value a multi-get accepts, as with the meta protocol
 * (conn-meta.c): a value of the wrong length but of a plausible size is
 * refused by value.c for its block alone; a longer one (up to
 * MCX_SKIP_MAX) is dropped by memcached-ext and counted here
 * (format_mismatches), one miss for that block alone.  This also bounds
 * each connection's receive buffer.
 */
#define CONN_TEXT_VALUE_MAX (2 * (VALUE_OVERHEAD + settings.block_size))

struct text_idle {
  struct mtx_conn *c;
  uint64_t incarnation;         /* of the server when c was opened */
};

struct text_pool {
  const struct ring_server *server;
  pthread_mutex_t lock;         /* protects idle[] and nr_idle */
  struct text_idle idle[CONN_TEXT_IDLE_MAX];
  size_t nr_idle;
};

static struct text_pool *pools;
static size_t nr_pools;

/* Set by conn_text_init, read-only afterwards. */
static struct conn_settings settings;

static int
conn_text_init (const struct ring *ring,
                const struct conn_settings *given)
{
  size_t i;

  settings = *given;
  pools = calloc (ring->n, sizeof *pools);
  if (pools == NULL) {
    nbdkit_error ("calloc: %m");
    return -1;
  }
  for (i = 0; i < ring->n; i++) {
    pools[i].server = &ring->servers[i];
    pthread_mutex_init (&pools[i].lock, NULL);
  }
  nr_pools = ring->n;
  return 0;
}

static void
conn_text_free (void)
{
  size_t i, j;

  for (i = 0; i < nr_pools; i++) {
    for (j = 0; j < pools[i].nr_idle; j++)
      mtx_close (pools[i].idle[j].c);
    pthread_mutex_destroy (&pools[i].lock);
  }
  free (pools);
  pools = NULL;
  nr_pools = 0;
}

/* Take an idle connection of S's incarnation, if there is one; those of
 * an earlier incarnation are closed on the way.
 */
static bool
conn_text_open (struct conn_session *s)
{
  struct text_pool *pool = &pools[s->server];
  struct mtx_conn *stale[CONN_TEXT_IDLE_MAX];
  size_t nr_stale = 0, j;

  pthread_mutex_lock (&pool->lock);
  while (pool->nr_idle > 0 && s->text.c == NULL) {
    struct text_idle *h = &pool->idle[--pool->nr_idle];

    if (h->incarnation == s->incarnation)
      s->text.c = h->c;
    else
      stale[nr_stale++] = h->c;
  }
  pthread_mutex_unlock (&pool->lock);
  for (j = 0; j < nr_stale; j++)
    mtx_close (stale[j]);
  return true;
}

static void
conn_text_close (struct conn_session *s)
{
  struct text_pool *pool = &pools[s->server];
  bool keep;

  free (s->text.ops);
  s->text.ops = NULL;
  if (s->text.c == NULL)
    return;
  keep = !s->failed && !s->text.sent && !mtx_broken (s->text.c) &&
    health_incarnation (s->server) == s->incarnation;
  if (keep) {
    pthread_mutex_lock (&pool->lock);
    if (pool->nr_idle < CONN_TEXT_IDLE_MAX)
      pool->idle[pool->nr_idle++] = (struct text_idle) {
        s->text.c, s->incarnation
      };
    else
      keep = false;
    pthread_mutex_unlock (&pool->lock);
  }
  if (!keep)
    mtx_close (s->text.c);
  s->text.c = NULL;
  s->text.sent = false;
}

static void
conn_text_forget (size_t i)
{
  struct text_pool *pool = &pools[i];
  struct text_idle idle[CONN_TEXT_IDLE_MAX];
  size_t j, n;

  pthread_mutex_lock (&pool->lock);
  n = pool->nr_idle;
  memcpy (idle, pool->idle, n * sizeof idle[0]);
  pool->nr_idle = 0;
  pthread_mutex_unlock (&pool->lock);
  for (j = 0; j < n; j++)
    mtx_close (idle[j].c);
}

/* S's batch failed with STATUS: its connection is closed. */
static enum conn_outcome
conn_text_failed (struct conn_session *s, int status)
{
  char why[160];

  snprintf (why, sizeof why, "%s: %s", mcx_strstatus (status),
            s->text.c ? mtx_error (s->text.c) : "");
  mtx_close (s->text.c);
  s->text.c = NULL;
  s->text.sent = false;
  conn_report_failure (s, status == MCX_ETIMEDOUT,
                       status == MCX_ENOMEM || status == MCX_EINVAL
                       ? CONN_FAULT_OURS
                       : status == MCX_EIO ? CONN_FAULT_HARD
                       : CONN_FAULT_SOFT, why);
  return CONN_FAILED;
}

/* Send OPS (N of them, owned by S from now on) as one batch, to be
 * collected before DEADLINE_NS; connect first if S has no connection.
 */
static enum conn_outcome
conn_text_send (struct conn_session *s, struct mcx_op *ops, size_t n,
                size_t max_value, int64_t deadline_ns)
{
  const struct ring_server *server = pools[s->server].server;
  int r;

  free (s->text.ops);
  s->text.ops = ops;
  s->text.deadline_ns = deadline_ns;
  if (s->text.c == NULL) {
    s->text.c = mtx_connect (server->host, server->port, deadline_ns, &r);
    if (s->text.c == NULL)
      return conn_text_failed (s, r);
  }
  r = mtx_send (s->text.c, ops, n, max_value);
  if (r != MCX_OK)
    return conn_text_failed (s, r);
  s->text.sent = true;
  return CONN_OK;
}

/* Collect the batch conn_text_send sent, calling FN for every reply. */
static enum conn_outcome
conn_text_recv (struct conn_session *s, mcx_reply_fn fn, void *opaque)
{
  int r;

  if (!s->text.sent)
    return CONN_FAILED;
  r = mtx_recv (s->text.c, s->text.deadline_ns, fn, opaque);
  s->text.sent = false;
  free (s->text.ops);
  s->text.ops = NULL;
  if (r != MCX_OK)
    return conn_text_failed (s, r);
  conn_report_ok (s);
  return CONN_OK;
}

static struct mcx_op *
conn_text_ops_alloc (struct conn_session *s, size_t n)
{
  struct mcx_op *o = calloc (n ? n : 1, sizeof *o);

  if (o == NULL)
    conn_report_failure (s, false, CONN_FAULT_OURS, "out of memory");
  return o;
}

static enum conn_outcome
conn_text_mget (struct conn_session *s, const char * const *keys,
                const size_t *key_lens, size_t n)
{
  struct mcx_op *o = conn_text_ops_alloc (s, n);
  size_t i;

  if (o == NULL)
    return CONN_FAILED;
  for (i = 0; i < n; i++)
    o[i] = (struct mcx_op) { .type = MCX_GET, .key = keys[i],
                             .key_len = key_lens[i] };
  s->text.keys = keys;
  s->text.key_lens = key_lens;
  return conn_text_send (s, o, n, CONN_TEXT_VALUE_MAX,
                         mcx_now_ns () + settings.timeout_ms * NS_PER_MS);
}

struct conn_text_fetch_ctx {
  struct conn_session *s;
  conn_found_fn found;
  void *opaque;
};

static void
conn_text_hit (void *opaque, size_t index, enum mcx_reply r,
               const char *data, size_t len)
{
  struct conn_text_fetch_ctx *ctx = opaque;
  struct conn_session *s = ctx->s;

  if (r == MCX_HIT)
    ctx->found (ctx->opaque, s->text.keys[index], s->text.key_lens[index],
                data, len);
  else if (r == MCX_TOO_LARGE) {
    /* A miss for this block alone, as in conn-meta.c. */
    stats_add (stats.format_mismatches, 1);
    nbdkit_debug ("memcache: server %zu: a value of %zu bytes, more than "
                  "a block's, dropped", s->server, len);
  }
  else if (r == MCX_SERVER_ERROR)
    nbdkit_debug ("memcache: server %zu: SERVER_ERROR %.*s", s->server,
                  (int) len, data);
}

static enum conn_outcome
conn_text_fetch (struct conn_session *s, conn_found_fn found, void *opaque)
{
  struct conn_text_fetch_ctx ctx = { s, found, opaque };

  return conn_text_recv (s, conn_text_hit, &ctx);
}

static enum conn_outcome
conn_text_mutate_send (struct conn_session *s, struct conn_mutation *m,
                       size_t n, unsigned ttl)
{
  struct mcx_op *o = conn_text_ops_alloc (s, n);
  size_t i;

  if (o == NULL)
    return CONN_FAILED;
  for (i = 0; i < n; i++) {
    o[i] = (struct mcx_op) {
      .type = m[i].value ? MCX_SET : MCX_DELETE,
      .key = m[i].key, .key_len = m[i].key_len,
      .value = m[i].value, .value_len = m[i].value_len, .ttl = ttl,
    };
    m[i].refused = false;
  }
  s->text.mutations = m;
  return conn_text_send (s, o, n, 0,
                         mcx_now_ns () + settings.timeout_ms
                         * MEMCACHE_STORE_TIMEOUT_FACTOR * NS_PER_MS);
}

/* Every store and delete is answered: STORED or DELETED is done, and so
 * is a delete that found nothing to delete; anything else was refused.
 */
static void
conn_text_mutation_reply (void *opaque, size_t index, enum mcx_reply r,
                          const char *data, size_t len)
{
  struct conn_session *s = opaque;
  struct conn_mutation *m = &s->text.mutations[index];

  if (r == MCX_SERVER_ERROR)
    nbdkit_debug ("memcache: server %zu: SERVER_ERROR %.*s", s->server,
                  (int) len, data);
  if (r != MCX_STORED && (m->value || r != MCX_NOT_FOUND))
    m->refused = true;
}

static enum conn_outcome
conn_text_mutate_finish (struct conn_session *s)
{
  return conn_text_recv (s, conn_text_mutation_reply, s);
}

const struct conn_ops conn_text_protocol = {
  .name          = "text",
  .init          = conn_text_init,
  .free          = conn_text_free,
  .open          = conn_text_open,
  .close         = conn_text_close,
  .mget          = conn_text_mget,
  .fetch         = conn_text_fetch,
  .mutate_send   = conn_text_mutate_send,
  .mutate_finish = conn_text_mutate_finish,
  .oneshot       = conn_text_oneshot,
  .forget        = conn_text_forget,
};
