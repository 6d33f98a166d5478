/* SPDX-License-Identifier: BSD-3-Clause */
/* nbdkit-memcache-filter: at start, ask every server once whether it
 * answers, and warn about each one that does not.
 *
 * Only a warning: a server that is down at start is one that is down,
 * which the filter survives (its blocks come from the lower device until
 * a probe finds it up, health.c).  But a typo in memcache-servers, or a
 * memcached that never started, would otherwise go unnoticed until the
 * hit ratio is looked at.
 *
 * The check is a get of a key nobody stores, in the protocol in use
 * (conn_oneshot): with the meta protocol "mg ... v q" then "mn", answered
 * "MN"; with the text protocol "get ...", answered "END".  So it asks a
 * server only what the filter will ask it anyway: a text-only server or
 * proxy (memcache-protocol=text) is not warned about for not knowing a
 * meta command, and a server that does not speak the meta protocol is
 * warned about when that protocol is chosen.  The connection is its own,
 * closed afterwards: it touches neither the health states nor the pools.
 */

#include <config.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <nbdkit-filter.h>

#include "conn.h"
#include "log.h"
#include "meta.h"
#include "startcheck.h"

/* Long enough for a remote server on a busy network: a warning here is
 * seen by a person, so it must not be a false alarm.
 */
#define STARTCHECK_TIMEOUT_MS 1000

/* The key asked for: not a name the filter stores (value.c's names start
 * "abd3:", the state markers' "abdm:"), so always a miss, unless someone
 * stores it; a short value is read and dropped then, a long one is a
 * protocol error, which is worth the warning.
 */
static const char startcheck_key[] = "abd:startcheck";
#define STARTCHECK_VALUE_MAX 1024

bool
startcheck_server (const struct ring_server *srv, char *why, size_t len)
{
  struct conn_oneshot o = {
    .key = startcheck_key, .key_len = sizeof startcheck_key - 1,
  };
  int r;

  r = conn_oneshot (srv, &o, STARTCHECK_VALUE_MAX,
                    mcx_now_ns () + STARTCHECK_TIMEOUT_MS * INT64_C (1000000));
  free (o.got);
  if (r == 0 && !o.refused)
    return true;
  snprintf (why, len, "%s%s", o.connected ? "" : "unreachable: ",
            o.refused ? "SERVER_ERROR" : o.why);
  return false;
}

size_t
startcheck_servers (const struct ring *ring)
{
  size_t i, unreachable = 0;

  for (i = 0; i < ring->n; i++) {
    const struct ring_server *srv = &ring->servers[i];
    struct conn_oneshot o = {
      .key = startcheck_key, .key_len = sizeof startcheck_key - 1,
    };
    int r;

    if (!ring_member (ring, i))
      continue;
    r = conn_oneshot (srv, &o, STARTCHECK_VALUE_MAX,
                      mcx_now_ns () + STARTCHECK_TIMEOUT_MS * INT64_C (1000000));
    free (o.got);
    if (r == 0 && !o.refused) {
      nbdkit_debug ("memcache: server %s answers", srv->name);
      continue;
    }
    unreachable++;
    if (!o.connected)
      abd_log (LOG_WARNING, "memcache",
               "server %s is unreachable at start (%s): its blocks are "
               "read from the lower device until it answers",
               srv->name, o.why);
    else
      abd_log (LOG_WARNING, "memcache",
               "server %s does not answer at start (%s): its blocks "
               "are read from the lower device until it answers",
               srv->name, o.refused ? "SERVER_ERROR" : o.why);
  }
  return unreachable;
}
