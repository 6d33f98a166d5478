/* SPDX-License-Identifier: BSD-3-Clause */
/* nbdkit-memcache-filter: one get or set on a connection of its own, for
 * the start and the stop (the start check, the state file's markers).
 *
 * These run before the first request or after the last one, once per
 * server, with a deadline of their own (a second, not memcache-timeout:
 * their outcome decides whether a start is warm, or what a person is
 * warned about, so a busy machine must not turn them into false alarms).
 * So they use neither sessions, pools nor health states: a server that
 * fails here is not marked down, and nothing is left open.  One function
 * per protocol, each the conn_ops.oneshot of its table; what the server
 * sends is checked by memcached-ext as for any batch.
 */

#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "meta.h"
#include "text.h"

/* O as one operation of a batch. */
static struct mcx_op
conn_oneshot_op (const struct conn_oneshot *o)
{
  return (struct mcx_op) {
    .type = o->value ? MCX_SET : MCX_GET,
    .key = o->key, .key_len = o->key_len,
    .value = o->value, .value_len = o->value_len, .ttl = 0,
  };
}

static void
conn_oneshot_reply (void *opaque, size_t index, enum mcx_reply r,
                    const char *data, size_t len)
{
  struct conn_oneshot *o = opaque;

  if (index == MCX_NO_INDEX || r == MCX_SERVER_ERROR) {
    o->refused = true;
    return;
  }
  if (o->value) {
    /* The meta protocol's quiet set answers only a failure; the text
     * protocol's answers STORED too.
     */
    if (r != MCX_STORED)
      o->refused = true;
    return;
  }
  if (r == MCX_HIT && !o->found) {
    o->got = malloc (len ? len : 1);
    if (o->got == NULL) {
      o->refused = true;
      return;
    }
    memcpy (o->got, data, len);
    o->got_len = len;
    o->found = true;
  }
}

/* Say in O's why what STATUS and the client's ERROR say (once if the
 * same).
 */
static void
conn_oneshot_why (struct conn_oneshot *o, int status, const char *error)
{
  const char *what = mcx_strstatus (status);

  if (error == NULL || error[0] == '\0' || strcmp (error, what) == 0)
    snprintf (o->why, sizeof o->why, "%s", what);
  else
    snprintf (o->why, sizeof o->why, "%s: %s", what, error);
}

static void
conn_oneshot_reset (struct conn_oneshot *o)
{
  o->connected = o->found = o->refused = false;
  o->got = NULL;
  o->got_len = 0;
  o->why[0] = '\0';
}

int
conn_meta_oneshot (const struct ring_server *server, struct conn_oneshot *o,
                   size_t max_value, int64_t deadline_ns)
{
  struct mcx_op op = conn_oneshot_op (o);
  struct mcx_conn *c;
  int status;

  conn_oneshot_reset (o);
  c = mcx_connect (server->host, server->port, deadline_ns, &status);
  if (c == NULL) {
    conn_oneshot_why (o, status, NULL);
    return -1;
  }
  o->connected = true;
  status = mcx_batch (c, &op, 1, max_value, deadline_ns,
                      conn_oneshot_reply, o);
  if (status != MCX_OK)
    conn_oneshot_why (o, status, mcx_error (c));
  mcx_close (c);
  if (status != MCX_OK) {
    free (o->got);
    o->got = NULL;
    o->found = false;
    return -1;
  }
  return 0;
}

int
conn_text_oneshot (const struct ring_server *server, struct conn_oneshot *o,
                   size_t max_value, int64_t deadline_ns)
{
  struct mcx_op op = conn_oneshot_op (o);
  struct mtx_conn *c;
  int status;

  conn_oneshot_reset (o);
  c = mtx_connect (server->host, server->port, deadline_ns, &status);
  if (c == NULL) {
    conn_oneshot_why (o, status, NULL);
    return -1;
  }
  o->connected = true;
  status = mtx_send (c, &op, 1, max_value);
  if (status == MCX_OK)
    status = mtx_recv (c, deadline_ns, conn_oneshot_reply, o);
  if (status != MCX_OK)
    conn_oneshot_why (o, status, mtx_error (c));
  mtx_close (c);
  if (status != MCX_OK) {
    free (o->got);
    o->got = NULL;
    o->found = false;
    return -1;
  }
  return 0;
}
