/* SPDX-License-Identifier: BSD-3-Clause */
/* nbdkit-memcache-filter: the sequential stream detector (seqdetect.h
 * says what a stream is and when it is sequential).
 *
 * Invariants of a used stream: start <= front; the window's bit for
 * granule g (front - SEQDETECT_WINDOW <= g < front) is set only if g was
 * read and g >= start; confirmed + lost counts the granules from start
 * that have left the window, and those of re-reads.
 */

#include <config.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "seqdetect.h"

void
seqdetect_init (struct seqdetect *d, uint64_t cutoff)
{
  memset (d, 0, sizeof *d);
  d->cutoff_granules = (cutoff + SEQDETECT_GRANULE - 1) / SEQDETECT_GRANULE;
  pthread_mutex_init (&d->lock, NULL);
}

static bool
seqdetect_bit (const struct seqdetect_stream *s, uint64_t g)
{
  g %= SEQDETECT_WINDOW;
  return s->window[g / 64] & (UINT64_C (1) << (g % 64));
}

static void
seqdetect_set_bit (struct seqdetect_stream *s, uint64_t g, bool read)
{
  uint64_t mask;

  g %= SEQDETECT_WINDOW;
  mask = UINT64_C (1) << (g % 64);
  if (read)
    s->window[g / 64] |= mask;
  else
    s->window[g / 64] &= ~mask;
}

/* N granules lost: too many (more than one for 8 confirmed) and the
 * stream starts again at granule START, the front or the oldest granule
 * of the window (those read before it are forgotten).
 */
static void
seqdetect_lose (struct seqdetect_stream *s, uint64_t n, uint64_t start)
{
  uint64_t g;

  s->lost += n;
  if (s->lost * 8 > s->confirmed) {
    g = s->front > SEQDETECT_WINDOW ? s->front - SEQDETECT_WINDOW : 0;
    for (; g < start; g++)
      seqdetect_set_bit (s, g, false);
    s->start = start;
    s->confirmed = 0;
    s->lost = 0;
  }
}

/* The stream's length so far, in granules: those confirmed, and those
 * read in the window.
 */
static uint64_t
seqdetect_length (const struct seqdetect_stream *s)
{
  uint64_t n = s->confirmed;
  size_t i;

  for (i = 0; i < SEQDETECT_WINDOW / 64; i++)
    n += __builtin_popcountll (s->window[i]);
  return n;
}

/* Move S's front on by one granule: the oldest granule of the window
 * leaves it, read (confirmed) or not (lost), and its bit is the new
 * front granule's, not read yet.
 */
static void
seqdetect_advance (struct seqdetect_stream *s)
{
  if (s->front >= s->start + SEQDETECT_WINDOW) {
    if (seqdetect_bit (s, s->front))
      s->confirmed++;
    else
      seqdetect_lose (s, 1, s->front - SEQDETECT_WINDOW + 1);
  }
  seqdetect_set_bit (s, s->front, false);
  s->front++;
}

/* How far granules [G0, G1) are from S's front, or UINT64_MAX if they do
 * not continue S: they must overlap its window or start at most
 * SEQDETECT_AHEAD past its front.
 */
static uint64_t
seqdetect_distance (const struct seqdetect_stream *s, uint64_t g0,
                    uint64_t g1)
{
  if (!s->used || g1 + SEQDETECT_WINDOW <= s->front ||
      g0 > s->front + SEQDETECT_AHEAD)
    return UINT64_MAX;
  if (g0 >= s->front)
    return g0 - s->front;
  if (g1 >= s->front)
    return 0;
  return s->front - g1;
}

/* The stream [G0, G1) continues, or the least recently used entry,
 * started afresh at G0.
 */
static struct seqdetect_stream *
seqdetect_find (struct seqdetect *d, uint64_t g0, uint64_t g1)
{
  struct seqdetect_stream *best = NULL, *lru = &d->streams[0];
  uint64_t best_distance = UINT64_MAX;
  size_t i;

  for (i = 0; i < SEQDETECT_STREAMS; i++) {
    struct seqdetect_stream *s = &d->streams[i];
    uint64_t distance = seqdetect_distance (s, g0, g1);

    if (distance < best_distance) {
      best = s;
      best_distance = distance;
    }
    if (!s->used || (lru->used && s->last_use < lru->last_use))
      lru = s;
  }
  if (best)
    return best;

  memset (lru, 0, sizeof *lru);
  lru->used = true;
  lru->start = g0;
  lru->front = g0;
  return lru;
}

/* Does [G0, G1) lie wholly behind S's front granule, in the window, and
 * read already?  Then it is a re-read, which a stream does not make.
 */
static bool
seqdetect_is_reread (const struct seqdetect_stream *s, uint64_t g0,
                     uint64_t g1)
{
  uint64_t g;

  if (g1 >= s->front || g0 + SEQDETECT_WINDOW < s->front || g0 < s->start)
    return false;
  for (g = g0; g < g1; g++)
    if (!seqdetect_bit (s, g))
      return false;
  return true;
}

/* Two streams whose fronts are less than a window apart would share the
 * requests of one region of the device, each making the other's look
 * new: random reads would pass for streams.  The shorter goes.
 */
static void
seqdetect_merge (struct seqdetect *d, struct seqdetect_stream *s)
{
  size_t i;

  for (i = 0; i < SEQDETECT_STREAMS; i++) {
    struct seqdetect_stream *t = &d->streams[i];

    if (t == s || !t->used ||
        t->front + SEQDETECT_WINDOW <= s->front ||
        s->front + SEQDETECT_WINDOW <= t->front)
      continue;
    if (seqdetect_length (t) < seqdetect_length (s))
      t->used = false;
    else {
      s->used = false;
      return;
    }
  }
}

bool
seqdetect_request (struct seqdetect *d, uint64_t offset, uint64_t count)
{
  struct seqdetect_stream *s;
  uint64_t g0, g1, g;
  bool sequential;

  if (d->cutoff_granules == 0 || count == 0)
    return false;
  g0 = offset / SEQDETECT_GRANULE;
  g1 = (offset + count - 1) / SEQDETECT_GRANULE + 1;

  pthread_mutex_lock (&d->lock);
  s = seqdetect_find (d, g0, g1);
  s->last_use = ++d->tick;
  if (seqdetect_is_reread (s, g0, g1))
    seqdetect_lose (s, g1 - g0, s->front);
  else {
    for (g = g0; g < g1; g++) {
      while (g >= s->front)
        seqdetect_advance (s);
      /* Granules older than the window or the stream are not counted. */
      if (g + SEQDETECT_WINDOW >= s->front && g >= s->start)
        seqdetect_set_bit (s, g, true);
    }
  }
  sequential = seqdetect_length (s) > d->cutoff_granules;
  seqdetect_merge (d, s);
  pthread_mutex_unlock (&d->lock);
  return sequential;
}
