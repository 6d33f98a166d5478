/* SPDX-License-Identifier: BSD-3-Clause */
/* nbdkit-memcache-filter: the state file's markers on the servers
 * (marker.c), which tell a state file used once from a copy put back.
 */

#ifndef MEMCACHE_MARKER_H
#define MEMCACHE_MARKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ring.h"
#include "value.h"

#define MARKER_STOP_ID_SIZE 16

/* Derive the markers' name and key from SECRET for the device ID_HASH
 * (in .get_ready, before the secret is wiped).  Returns 0, or -1 after
 * nbdkit_error.
 */
extern int marker_init (const unsigned char secret[VALUE_SECRET_SIZE],
                        uint64_t id_hash);
extern void marker_free (void);

/* At start, before marker_set_in_use: true if every server of RING holds
 * a stop marker carrying STOP_ID; false (*REASON a message for the log,
 * valid until the next call) if any does not, cannot be read, or holds
 * anything else.
 */
extern bool marker_check (const struct ring *ring,
                          const unsigned char stop_id[MARKER_STOP_ID_SIZE],
                          const char **reason);

/* At every start, before anything is served: replace the marker on
 * every server of RING with one that says "in use" (a new random id).
 * Returns how many servers took it.
 */
extern size_t marker_set_in_use (const struct ring *ring);

/* At a clean stop, before the state file is written: draw a new
 * STOP_ID and store a stop marker carrying it on every server of RING.
 * Returns how many servers took it (fewer than all: the next start
 * will be cold), or -1 after nbdkit_error (no random bytes, no cipher).
 */
extern int marker_set_stopped (const struct ring *ring,
                               unsigned char stop_id[MARKER_STOP_ID_SIZE]);

#endif /* MEMCACHE_MARKER_H */
