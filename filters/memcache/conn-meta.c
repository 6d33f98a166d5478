/* SPDX-License-Identifier: BSD-3-Clause */
/* nbdkit-memcache-filter: connections over memcached's meta protocol
 * (memcache-protocol=meta, the default), with memcached-ext.
 *
 * Each server has a pool of CONN_META_PER_SERVER non-blocking
 * connections shared by all nbdkit threads: a host opens at most that
 * many connections to a server, however many threads nbdkit runs
 * (memcached's default limit, -c 1024, is shared by all hosts: 256 hosts
 * of one filter instance each).  A connection is taken for one batch only
 * (conn_meta_mget to conn_meta_fetch, or conn_meta_mutate_send to
 * conn_meta_mutate_finish) and given back at once, so a thread never
 * holds one while it reads the lower device.  A thread that finds
 * none free waits on the pool's condition variable until the batch's
 * deadline; if it passes, the server counts as timed out for this
 * request (the session fails), but it is not marked down: it is this
 * host that is busy, not the server that is slow.
 *
 * Like conn.c's handles, a connection is reused only within the server
 * incarnation it was opened in (health.h), and one whose batch failed
 * (timeout, error, protocol error: it may still carry a late answer) is
 * closed, never reused.
 *
 * A multi-get is one batch ("mg <key> v q O<i>" per key, then "mn"): the
 * reply names each hit by its index, and conn_meta_fetch hands back the
 * key asked for at that index.  Stores and deletes are one batch too
 * ("ms <key> <len> T<ttl> q O<i>" with the value, "md <key> q O<i>",
 * then "mn"): only those not done are answered.
 *
 * What memcache-timeout bounds: the wait for an answer, not the whole
 * batch.  A batch fails when no byte of it has moved for memcache-timeout
 * (x MEMCACHE_STORE_TIMEOUT_FACTOR for stores and deletes, which carry
 * the data), the idle timeout of memcached-ext, where a byte read on any
 * connection to the server counts too (a batch queued behind others on
 * a busy server waits while the server answers them); and, so that a
 * server that trickles a byte now and then cannot hold a request
 * forever, when its deadline passes: CONN_META_DEADLINE_IDLES times
 * that, plus the time the bytes it may move take at CONN_META_MIN_RATE,
 * from the send (and once more from the start of its collection: a read
 * collects its servers one after the other, and the time spent on a
 * slow one is not the next one's).
 * A 2 MiB multi-get queued behind three others on a busy server takes
 * more than 5 ms in all, yet its answer keeps coming; with a whole-batch
 * deadline of 5 ms such a batch failed, which cost its hits and, then,
 * the server.  The wait for a free connection and the connect count
 * against the deadline.
 */

#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nbdkit-filter.h>

#include "conn-meta.h"
#include "health.h"
#include "meta.h"
#include "params.h"
#include "stats.h"
#include "value.h"

#define NS_PER_MS INT64_C (1000000)

/* The longest value a multi-get accepts.  A value of the wrong length but
 * of a plausible size (someone else's, or tampered with) is handed on and
 * refused by value.c for that block alone, and counted; a longer one (up
 * to MCX_SKIP_MAX) is read and dropped by memcached-ext and counted here
 * the same way (format_mismatches): one miss, for that block alone, not
 * a lost batch, a closed connection and a server taken down (whoever can
 * reach a server can store such a value under a hot key).  This also
 * bounds the receive buffer of each connection.
 */
#define CONN_META_VALUE_MAX (2 * (VALUE_OVERHEAD + settings.block_size))

/* The slowest transfer a batch's deadline allows for, bytes per second:
 * far below loopback or any LAN, far above a trickle.
 */
#define CONN_META_MIN_RATE (16 * 1024 * 1024)

/* A batch's deadline, from the send: this many idle timeouts (time to
 * wait for a free connection, and for a server that answers others
 * first), plus its bytes at CONN_META_MIN_RATE.
 */
#define CONN_META_DEADLINE_IDLES 4

/* Bytes a reply line or command line costs besides key and value. */
#define CONN_META_LINE_BYTES 64

struct meta_slot {
  struct mcx_conn *c;           /* NULL: not connected */
  uint64_t incarnation;         /* of the server when c was opened */
  bool busy;                    /* a thread is using it */
};

struct meta_pool {
  const struct ring_server *server;
  int64_t progress_ns;          /* when any of its connections last read
                                   a byte (mcx_set_progress_clock) */
  pthread_mutex_t lock;         /* protects slots[] */
  pthread_cond_t freed;         /* a slot was given back */
  struct meta_slot slots[CONN_META_PER_SERVER];
};

static struct meta_pool *pools;
static size_t nr_pools;

/* Set by conn_meta_init, read-only afterwards. */
static struct conn_settings settings;

int
conn_meta_init (const struct ring *ring,
                const struct conn_settings *given)
{
  pthread_condattr_t attr;
  size_t i;

  settings = *given;
  pools = calloc (ring->n, sizeof *pools);
  if (pools == NULL) {
    nbdkit_error ("calloc: %m");
    return -1;
  }
  pthread_condattr_init (&attr);
  pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
  for (i = 0; i < ring->n; i++) {
    pools[i].server = &ring->servers[i];
    pthread_mutex_init (&pools[i].lock, NULL);
    pthread_cond_init (&pools[i].freed, &attr);
  }
  pthread_condattr_destroy (&attr);
  nr_pools = ring->n;
  return 0;
}

void
conn_meta_free (void)
{
  size_t i, j;

  for (i = 0; i < nr_pools; i++) {
    for (j = 0; j < CONN_META_PER_SERVER; j++)
      mcx_close (pools[i].slots[j].c);
    pthread_mutex_destroy (&pools[i].lock);
    pthread_cond_destroy (&pools[i].freed);
  }
  free (pools);
  pools = NULL;
  nr_pools = 0;
}

/* Take a connection to S's server, connected in S's incarnation, before
 * DEADLINE_NS (a connect, within IDLE_NS too).  Returns NULL after
 * reporting why on S.
 */
static struct meta_slot *
conn_meta_acquire (struct conn_session *s, int64_t deadline_ns,
                   int64_t idle_ns)
{
  struct meta_pool *pool = &pools[s->server];
  struct meta_slot *slot = NULL;
  struct timespec ts = {
    .tv_sec = deadline_ns / 1000000000,
    .tv_nsec = deadline_ns % 1000000000,
  };
  size_t i;
  int status;

  pthread_mutex_lock (&pool->lock);
  for (;;) {
    /* A free connected slot of this incarnation, else any free slot. */
    for (i = 0; i < CONN_META_PER_SERVER; i++) {
      struct meta_slot *t = &pool->slots[i];

      if (t->busy)
        continue;
      if (t->c && t->incarnation == s->incarnation) {
        slot = t;
        break;
      }
      if (slot == NULL)
        slot = t;
    }
    if (slot != NULL)
      break;
    if (pthread_cond_timedwait (&pool->freed, &pool->lock, &ts) == ETIMEDOUT)
      break;
  }
  if (slot)
    slot->busy = true;
  pthread_mutex_unlock (&pool->lock);

  if (slot == NULL) {
    conn_report_failure (s, true, CONN_FAULT_OURS,
                         "all connections busy until the deadline");
    return NULL;
  }
  if (slot->c && slot->incarnation != s->incarnation) {
    mcx_close (slot->c);
    slot->c = NULL;
  }
  if (slot->c == NULL) {
    int64_t connect_by = mcx_now_ns () + idle_ns;

    slot->c = mcx_connect (pool->server->host, pool->server->port,
                           connect_by < deadline_ns ? connect_by : deadline_ns,
                           &status);
    slot->incarnation = s->incarnation;
    if (slot->c == NULL) {
      conn_report_failure (s, status == MCX_ETIMEDOUT,
                           status == MCX_ETIMEDOUT ? CONN_FAULT_SOFT
                           : status == MCX_EIO ? CONN_FAULT_HARD
                           : CONN_FAULT_OURS,
                           mcx_strstatus (status));
      pthread_mutex_lock (&pool->lock);
      slot->busy = false;
      pthread_cond_signal (&pool->freed);
      pthread_mutex_unlock (&pool->lock);
      return NULL;
    }
  }
  return slot;
}

/* Give SLOT back; its connection is closed unless the batch went well. */
static void
conn_meta_release (struct conn_session *s, struct meta_slot *slot, bool ok)
{
  struct meta_pool *pool = &pools[s->server];
  struct mcx_conn *dead = NULL;

  /* A server that left the pool (health_server_leave) keeps nothing. */
  if (ok && health_incarnation (s->server) != s->incarnation)
    ok = false;
  pthread_mutex_lock (&pool->lock);
  if (!ok || mcx_broken (slot->c)) {
    dead = slot->c;
    slot->c = NULL;
  }
  slot->busy = false;
  pthread_cond_signal (&pool->freed);
  pthread_mutex_unlock (&pool->lock);
  mcx_close (dead);
}

/* The outcome of a batch that failed with STATUS. */
static enum conn_outcome
conn_meta_failed (struct conn_session *s, struct meta_slot *slot, int status)
{
  char why[160];

  snprintf (why, sizeof why, "%s: %s", mcx_strstatus (status),
            mcx_error (slot->c));
  conn_meta_release (s, slot, false);
  conn_report_failure (s, status == MCX_ETIMEDOUT,
                       status == MCX_ENOMEM || status == MCX_EINVAL
                       ? CONN_FAULT_OURS
                       : status == MCX_EIO ? CONN_FAULT_HARD
                       : CONN_FAULT_SOFT, why);
  return CONN_FAILED;
}

void
conn_meta_forget (size_t i)
{
  struct meta_pool *pool = &pools[i];
  struct mcx_conn *idle[CONN_META_PER_SERVER];
  size_t j, n = 0;

  pthread_mutex_lock (&pool->lock);
  for (j = 0; j < CONN_META_PER_SERVER; j++)
    if (!pool->slots[j].busy && pool->slots[j].c) {
      idle[n++] = pool->slots[j].c;
      pool->slots[j].c = NULL;
    }
  pthread_mutex_unlock (&pool->lock);
  for (j = 0; j < n; j++)
    mcx_close (idle[j]);
}

void
conn_meta_close (struct conn_session *s)
{
  /* A multi-get sent and never fetched: its answer is still coming. */
  if (s->meta_slot)
    conn_meta_release (s, s->meta_slot, false);
  s->meta_slot = NULL;
  free (s->meta_ops);
  s->meta_ops = NULL;
}

/* Send OPS (N of them, owned by S from now on) as one batch on a
 * connection of S's server, to be collected with no wait of more than
 * IDLE_MS for the answer to progress, and before a deadline that grows
 * with the BYTES the batch may move.
 */
static enum conn_outcome
conn_meta_send (struct conn_session *s, struct mcx_op *ops, size_t n,
                size_t max_value, unsigned idle_ms, uint64_t bytes)
{
  const int64_t idle_ns = idle_ms * NS_PER_MS;
  int r;

  free (s->meta_ops);
  s->meta_ops = ops;
  s->meta_span_ns = CONN_META_DEADLINE_IDLES * idle_ns
    + (int64_t) (bytes * 1000000000.0 / CONN_META_MIN_RATE);
  s->meta_deadline_ns = mcx_now_ns () + s->meta_span_ns;
  s->meta_slot = conn_meta_acquire (s, s->meta_deadline_ns, idle_ns);
  if (s->meta_slot == NULL)
    return CONN_FAILED;
  mcx_set_idle_timeout (s->meta_slot->c, idle_ns);
  mcx_set_progress_clock (s->meta_slot->c, &pools[s->server].progress_ns);
  r = mcx_send (s->meta_slot->c, ops, n, max_value);
  if (r != MCX_OK) {
    struct meta_slot *slot = s->meta_slot;

    s->meta_slot = NULL;
    return conn_meta_failed (s, slot, r);
  }
  return CONN_OK;
}

/* Collect the batch conn_meta_send sent, calling FN for every reply. */
static enum conn_outcome
conn_meta_recv (struct conn_session *s, mcx_reply_fn fn, void *opaque)
{
  struct meta_slot *slot = s->meta_slot;
  int r;

  if (slot == NULL)
    return CONN_FAILED;
  s->meta_slot = NULL;
  /* A read collects its servers one after the other: this one's answer
   * may have waited (in the kernel's buffers, or in part still on the
   * way) while another server was slow.  That wait is not this server's:
   * its deadline runs again from now, once.
   */
  if (s->meta_deadline_ns < mcx_now_ns () + s->meta_span_ns)
    s->meta_deadline_ns = mcx_now_ns () + s->meta_span_ns;
  r = mcx_recv (slot->c, s->meta_deadline_ns, fn, opaque);
  free (s->meta_ops);
  s->meta_ops = NULL;
  if (r != MCX_OK)
    return conn_meta_failed (s, slot, r);
  conn_meta_release (s, slot, true);
  conn_report_ok (s);
  return CONN_OK;
}

static struct mcx_op *
conn_meta_ops (struct conn_session *s, size_t n)
{
  struct mcx_op *ops = calloc (n ? n : 1, sizeof *ops);

  if (ops == NULL)
    conn_report_failure (s, false, CONN_FAULT_OURS, "out of memory");
  return ops;
}

enum conn_outcome
conn_meta_mget (struct conn_session *s, const char * const *keys,
                const size_t *key_lens, size_t n)
{
  struct mcx_op *ops = conn_meta_ops (s, n);
  size_t i;

  if (ops == NULL)
    return CONN_FAILED;
  for (i = 0; i < n; i++)
    ops[i] = (struct mcx_op) { .type = MCX_GET, .key = keys[i],
                               .key_len = key_lens[i] };
  s->meta_keys = keys;
  s->meta_key_lens = key_lens;
  return conn_meta_send (s, ops, n, CONN_META_VALUE_MAX, settings.timeout_ms,
                         n * (uint64_t) (CONN_META_VALUE_MAX
                                         + CONN_META_LINE_BYTES));
}

struct conn_meta_fetch_ctx {
  struct conn_session *s;
  conn_found_fn found;
  void *opaque;
};

static void
conn_meta_hit (void *opaque, size_t index, enum mcx_reply r, const char *data,
               size_t len)
{
  struct conn_meta_fetch_ctx *ctx = opaque;
  struct conn_session *s = ctx->s;

  if (r == MCX_HIT)
    ctx->found (ctx->opaque, s->meta_keys[index], s->meta_key_lens[index],
                data, len);
  else if (r == MCX_TOO_LARGE) {
    /* A miss for this block alone: the read fills it from the lower
     * device, which replaces the value.
     */
    stats_add (stats.format_mismatches, 1);
    nbdkit_debug ("memcache: server %zu: a value of %zu bytes, more than "
                  "a block's, dropped", s->server, len);
  }
  else if (r == MCX_SERVER_ERROR)
    nbdkit_debug ("memcache: server %zu: SERVER_ERROR %.*s", s->server,
                  (int) len, data);
}

enum conn_outcome
conn_meta_fetch (struct conn_session *s, conn_found_fn found, void *opaque)
{
  struct conn_meta_fetch_ctx ctx = { s, found, opaque };

  return conn_meta_recv (s, conn_meta_hit, &ctx);
}

enum conn_outcome
conn_meta_mutate_send (struct conn_session *s, struct conn_mutation *m,
                       size_t n, unsigned ttl)
{
  struct mcx_op *ops = conn_meta_ops (s, n);
  uint64_t bytes = 0;
  size_t i;

  if (ops == NULL)
    return CONN_FAILED;
  for (i = 0; i < n; i++) {
    bytes += m[i].value_len + CONN_META_LINE_BYTES;
    ops[i] = (struct mcx_op) {
      .type = m[i].value ? MCX_SET : MCX_DELETE,
      .key = m[i].key, .key_len = m[i].key_len,
      .value = m[i].value, .value_len = m[i].value_len, .ttl = ttl,
    };
    m[i].refused = false;
  }
  s->meta_mutations = m;
  return conn_meta_send (s, ops, n, 0,
                         settings.timeout_ms * MEMCACHE_STORE_TIMEOUT_FACTOR,
                         bytes);
}

/* A batch of stores is quiet: only what was not done is answered.  A
 * delete that found nothing to delete (NF) is done.
 */
static void
conn_meta_mutation_reply (void *opaque, size_t index, enum mcx_reply r,
                          const char *data, size_t len)
{
  struct conn_session *s = opaque;
  struct conn_mutation *m;

  if (index == MCX_NO_INDEX) {
    nbdkit_debug ("memcache: server %zu: SERVER_ERROR %.*s", s->server,
                  (int) len, data);
    return;
  }
  m = &s->meta_mutations[index];
  if (r != MCX_STORED && (m->value || r != MCX_NOT_FOUND))
    m->refused = true;
}

enum conn_outcome
conn_meta_mutate_finish (struct conn_session *s)
{
  return conn_meta_recv (s, conn_meta_mutation_reply, s);
}
