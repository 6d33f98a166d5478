/* SPDX-License-Identifier: BSD-3-Clause */
/* nbdkit-memcache-filter: state set up at start (.get_ready) and read-only
 * afterwards, so every thread reads it without a lock.
 */

#ifndef MEMCACHE_MEMCACHE_H
#define MEMCACHE_MEMCACHE_H

#include <stdint.h>

#include "ring.h"

/* The servers of memcache-servers, and the hash of memcache-id. */
extern struct ring ring;

/* Chosen in .after_fork: random at every start, so that nothing an
 * earlier process stored is trusted, unless memcache-state-file vouches
 * for the cache an earlier process left after a clean stop (state.h).
 */
extern uint64_t epoch;

#endif /* MEMCACHE_MEMCACHE_H */
