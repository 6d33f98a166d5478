/* SPDX-License-Identifier: BSD-3-Clause */
/* nbdkit-memcache-filter: the running pool of servers, changed without a
 * restart, read by requests as immutable snapshots.
 */

#ifndef MEMCACHE_POOL_H
#define MEMCACHE_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "params.h"
#include "ring.h"

/* The pool's slots: a server has one slot while it is a member, or while
 * any snapshot that has it is still held.  Every per-server array of the
 * filter (health, connections, counters, the fill thread's) is indexed
 * by slot and has POOL_SLOTS entries.
 */
#define POOL_SLOTS MEMCACHE_SERVERS_MAX

/* Set up the pool with the servers of INITIAL (ring_parse'd, taken over:
 * INITIAL is left empty) in slots 0 .. n-1, in their order.  Returns 0,
 * or -1 after nbdkit_error.
 */
extern int pool_init (struct ring *initial);
extern void pool_free (void);

/* The table of slots, for names in messages: the pointer lives from
 * pool_init to pool_free; slot I's entry changes only while no snapshot
 * names I.  pool_all is a ring over every slot (for the modules' init).
 */
extern struct ring_server *pool_slots (void);
extern const struct ring *pool_all (void);

/* The current membership, a snapshot that stays the same until
 * pool_release however the pool changes meanwhile: its slots keep their
 * server (address, health, connections) while it is held.  Every request
 * takes one at its start and uses it to its end.
 */
extern const struct ring *pool_acquire (void);
extern void pool_release (const struct ring *snapshot);

/* How many times the membership changed since pool_init. */
extern uint64_t pool_changes (void);

/* A change: the servers to add (by name, already checked with
 * ring_server_parse) and to remove (by name, members).  pool_change_begin
 * takes the change lock (one change at a time) and, with
 * pool_change_slot, finds a free slot for each server to add; the caller
 * sets up each such slot (health, counters) and then publishes with
 * pool_change_commit, or gives up with pool_change_abort.  Between begin
 * and commit the new slots are in no snapshot, so nothing uses them.
 */
struct pool_change {
  uint64_t add;                 /* bit i: slot i joins */
  uint64_t remove;              /* bit i: slot i leaves */
};
extern void pool_change_begin (struct pool_change *c);
/* A free slot for NAME, filled in (*SLOT), or -1 (all POOL_SLOTS held). */
extern int pool_change_slot (struct pool_change *c,
                             const struct ring_server *server, size_t *slot);
/* Is NAME a member now (*SLOT its slot)?  Under the change lock. */
extern bool pool_member_slot (const char *name, size_t *slot);
/* How many members the pool would have after C. */
extern size_t pool_change_members (const struct pool_change *c);
/* WARM_NS > 0: for that long, blocks that moved are also asked of the
 * server that held them before (warm moves, ring.h).
 */
extern int pool_change_commit (struct pool_change *c, int64_t warm_ns);
/* The slots SNAPSHOT keeps: its members, and its previous members while
 * it may ask them.
 */
extern uint64_t pool_named (const struct ring *snapshot);
extern void pool_change_abort (struct pool_change *c);

#endif /* MEMCACHE_POOL_H */
