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

/* Random at every start: nothing a previous process stored is trusted. */
extern uint64_t epoch;

#endif /* MEMCACHE_MEMCACHE_H */
