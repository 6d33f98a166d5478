/* SPDX-License-Identifier: BSD-3-Clause */
/* nbdkit-memcache-filter: at start, ask every server once whether it
 * answers, and warn about each one that does not.
 *
 * Only a warning: a server that is down at start is one that is down,
 * which the filter survives (its blocks come from the lower device until
 * a probe finds it up, health.c).  But a typo in memcache-servers, or a
 * memcached that never started, would otherwise go unnoticed until the
 * hit ratio is looked at.  The check is a meta no-op ("mn", answered
 * "MN" by every memcached since 1.6) on a connection of its own, closed
 * afterwards, so it touches neither the health states nor the pools.
 */

#include <config.h>

#include <stdint.h>

#include <nbdkit-filter.h>

#include "log.h"
#include "meta.h"
#include "startcheck.h"

/* Long enough for a remote server on a busy network: a warning here is
 * seen by a person, so it must not be a false alarm.
 */
#define STARTCHECK_TIMEOUT_MS 1000

/* A no-op has no replies of its own; a SERVER_ERROR line is ignored. */
static void
startcheck_reply (void *opaque, size_t index, enum mcx_reply r,
                  const char *data, size_t len)
{
}

size_t
startcheck_servers (const struct ring *ring)
{
  size_t i, unreachable = 0;

  for (i = 0; i < ring->n; i++) {
    const struct ring_server *srv = &ring->servers[i];
    int64_t deadline =
      mcx_now_ns () + STARTCHECK_TIMEOUT_MS * INT64_C (1000000);
    struct mcx_conn *c;
    int status;

    c = mcx_connect (srv->host, srv->port, deadline, &status);
    if (c == NULL) {
      abd_log (LOG_WARNING, "memcache",
               "server %s is unreachable at start (%s): its blocks are "
               "read from the lower device until it answers",
               srv->name, mcx_strstatus (status));
      unreachable++;
      continue;
    }
    status = mcx_batch (c, NULL, 0, 0, deadline, startcheck_reply, NULL);
    if (status != MCX_OK) {
      abd_log (LOG_WARNING, "memcache",
               "server %s does not answer at start (%s: %s): its blocks "
               "are read from the lower device until it answers",
               srv->name, mcx_strstatus (status), mcx_error (c));
      unreachable++;
    }
    else
      nbdkit_debug ("memcache: server %s answers", srv->name);
    mcx_close (c);
  }
  return unreachable;
}
