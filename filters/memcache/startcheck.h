/* SPDX-License-Identifier: BSD-3-Clause */
/* nbdkit-memcache-filter: the servers' check at start (startcheck.c). */

#ifndef MEMCACHE_STARTCHECK_H
#define MEMCACHE_STARTCHECK_H

#include <stdbool.h>
#include <stddef.h>

#include "ring.h"

/* Warn about every member of RING that does not answer a no-op within a
 * second.  Returns how many did not.
 */
extern size_t startcheck_servers (const struct ring *ring);

/* Does SRV answer a get within a second?  If not, WHY (LEN bytes) says
 * what went wrong (abdctl servers add refuses such a server).
 */
extern bool startcheck_server (const struct ring_server *srv, char *why,
                               size_t len);

#endif /* MEMCACHE_STARTCHECK_H */
