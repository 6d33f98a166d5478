/* SPDX-License-Identifier: BSD-3-Clause */
/* nbdkit-memcache-filter: the servers' check at start (startcheck.c). */

#ifndef MEMCACHE_STARTCHECK_H
#define MEMCACHE_STARTCHECK_H

#include <stddef.h>

#include "ring.h"

/* Warn about every server of RING that does not answer a no-op within a
 * second.  Returns how many did not.
 */
extern size_t startcheck_servers (const struct ring *ring);

#endif /* MEMCACHE_STARTCHECK_H */
