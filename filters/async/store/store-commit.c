/* SPDX-License-Identifier: BSD-3-Clause */
/* abd async filter: group commits of a durable store file
 * (async-flush=store): a client flush returns once everything written
 * before it is durable in the store file, and flushes that arrive while
 * a commit runs share the next one.
 *
 * A commit has two steps (storefile.h): under the store's lock, the
 * pages changed since the last commit are written to the next journal
 * transaction (memory speed: the lock is held as long as a copy of them
 * takes); without it, one fdatasync, then the pages go to their place.
 * Before the first step the leader waits for the clients copying into
 * slots without the lock (pins_wait_writes, store-life.c), so that it
 * takes no page half copied; an overwrite that begins meanwhile waits
 * for that short wait and the copy of the pages, nothing longer.  Writes
 * never wait for the fdatasync, only flushes do.
 *
 * Commits are numbered; commit_started is the last one begun, and it
 * took every change made before it began.  A caller arriving now needs
 * commit_started + 1: it waits while another runs, then runs one itself
 * (it becomes the leader) unless someone else did.  So while a commit's
 * fdatasync runs, every flush that arrives waits for one more commit,
 * and that one commit covers all of them.
 *
 * It calls the store file (layer 0) and the slot pins (layer 2) only;
 * it is in layer 4 with the other client paths (store-impl.h).
 */

#include <config.h>

#include <errno.h>
#include <pthread.h>

#include "store-impl.h"

int
store_commit (struct store *s, int *err)
{
  uint64_t need, gen;
  int r, e;

  if (!s->durable)
    return 0;
  STORE_LOCK (s);
  need = s->commit_started + 1;
  s->st.commit_waits++;
  while (s->commit_done < need && !s->commit_failed) {
    if (s->committing) {
      STORE_WAIT (s, &s->committed);
      continue;
    }
    s->committing = true;
    /* The pages are taken between two operations: after every client
     * copy into a slot that began (slot pins, store-impl.h), before the
     * next.  Flushes that arrive meanwhile share this commit.
     */
    pins_wait_writes (s);
    gen = ++s->commit_started;
    r = storefile_commit_begin (s->file);
    e = errno;
    STORE_UNLOCK (s);
    if (r == 0) {
      r = storefile_commit_end (s->file);
      e = errno;
    }
    STORE_LOCK (s);
    s->committing = false;
    if (r == -1) {
      s->commit_failed = true;
      errno = e;
    }
    else
      s->commit_done = gen;
    pthread_cond_broadcast (&s->committed);
  }
  r = s->commit_failed ? -1 : 0;
  STORE_UNLOCK (s);
  if (r == -1)
    *err = EIO;
  return r;
}
