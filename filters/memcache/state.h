/* SPDX-License-Identifier: BSD-3-Clause */
/* nbdkit-memcache-filter: the warm-restart state file
 * (memcache-state-file), written at a clean stop and taken at the next
 * start.
 */

#ifndef MEMCACHE_STATE_H
#define MEMCACHE_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ring.h"
#include "value.h"

/* What this process is: a state file made for anything else is not used. */
struct state_expect {
  uint64_t id_hash;             /* ring_id_hash (memcache-id) */
  const char *servers;          /* memcache-servers, as given */
  size_t nr_servers;
  uint32_t block_size;
  const struct ring *ring;      /* the servers, for the markers at
                                   start (until state_start) */
};

/* In .get_ready, before the secret is wiped: remember PATH and derive the
 * file's keys from SECRET; then read the file if there is one and remove
 * it, whatever it holds, before anything is served.  Returns 0 (the
 * start may be warm or cold: state_start decides), or -1 after
 * nbdkit_error: the file is not a private regular file of ours (a
 * symlink, another owner, group or other access, a directory others
 * may write to), or it could not be removed.
 */
extern int state_take (const char *path,
                       const unsigned char secret[VALUE_SECRET_SIZE],
                       const struct state_expect *expect);

/* In .after_fork, with the lower device's SIZE, before anything is
 * served: true if the state taken may be used (a warm start): it was
 * made for this process and every server holds its stop marker
 * (marker.h).  Then *EPOCH and *NONCE_USED are the earlier process's,
 * and the servers' generations (health.h) and the block versions
 * (writeseq.h) are set as it left them.  False: a cold start.  *REASON
 * says why, either way (valid until state_free).  Warm or cold, every
 * server's marker is replaced with "in use" before returning.
 */
extern bool state_start (uint64_t size, uint64_t *epoch,
                         uint64_t *nonce_used, const char **reason);

/* In .unload, when the stop was clean (every request done, the lower
 * device flushed) and the pool is the one of the start (RING, a snapshot
 * of it): store a new stop marker on every server, then write
 * the state of this process (the marker's stop id, EPOCH, the device
 * SIZE, the nonces used, generations and versions) for the next start.
 * Returns 0, or -1 after nbdkit_error (the next start is cold).
 */
extern int state_save (uint64_t epoch, uint64_t size,
                       const struct ring *ring);

/* Wipe the file's keys. */
extern void state_free (void);

#endif /* MEMCACHE_STATE_H */
