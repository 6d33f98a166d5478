/* SPDX-License-Identifier: BSD-3-Clause */
/* Concurrent stress of the memcache filter's fill queue
 * (filters/memcache/filler.c): reader threads queue fills while writer
 * threads raise block versions and the fill thread sends batches to stub
 * servers (the conn_* stand-ins below, which check every value).  Built
 * with ThreadSanitizer by tests/test-tsan.sh (data races fail the run);
 * the checks here hold in any build:
 *
 * - every value sent holds exactly the data queued for its block and
 *   version: the ring never hands the fill thread an entry that a reader
 *   is overwriting;
 * - every value goes to its block's server, in a batch of that server;
 * - every fill queued is accounted for: sent, raced (its version changed
 *   before it was sent) or dropped (queue full), and each of the three
 *   happened;
 * - every delete a writer left owed (filler_forget) is sent, to its
 *   block's server, for the generation it was owed under.
 */

#include <config.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conn.h"
#include "filler.h"
#include "health.h"
#include "stats.h"
#include "value.h"
#include "writeseq.h"

#define SERVERS 3
#define BLOCKS 64
/* Fills of BS bytes of blocks of BLOCK_SIZE: a queue of 1024 entries
 * that the readers fill up, without copying much.
 */
#define BLOCK_SIZE 65536
#define BS 512
#define READERS 4
#define WRITERS 2

static const struct ring ring = { .n = SERVERS };
static const struct filler_settings settings = { .block_size = BLOCK_SIZE };
struct memcache_stats stats;

void nbdkit_error (const char *fs, ...) { (void) fs; }
void nbdkit_debug (const char *fs, ...) { (void) fs; }

static atomic_uint failures, sent, forgot, deleted;
static atomic_bool writers_stop;

#define CHECK(cond, ...) do {                                   \
    if (!(cond)) {                                              \
      fprintf (stderr, "test-filler-threads: " __VA_ARGS__);    \
      fprintf (stderr, "\n");                                   \
      atomic_fetch_add (&failures, 1);                          \
    }                                                           \
  } while (0)

/* Block versions, as in writeseq.c. */
static uint64_t versions[BLOCKS];

uint64_t
writeseq_version (uint64_t block)
{
  return __atomic_load_n (&versions[block], __ATOMIC_ACQUIRE);
}

bool
writeseq_fill_still_valid (uint64_t block, uint64_t seq)
{
  return true;
}

/* The data a fill of BLOCK at VERSION holds. */
static unsigned char
pattern (uint64_t block, uint64_t version, size_t i)
{
  return (block * 31 + version * 7 + i) & 0xff;
}

/* A "sealed" value: block and version, then the data as is. */
int
value_seal (unsigned char *out, const struct value_ident *ident,
            const void *data, uint32_t data_len)
{
  memset (out, 0, VALUE_OVERHEAD);
  memcpy (out, &ident->block, sizeof ident->block);
  memcpy (out + 8, &ident->version, sizeof ident->version);
  memcpy (out + VALUE_OVERHEAD, data, data_len);
  return 0;
}

size_t
value_key (char *key, const struct value_ident *ident)
{
  return snprintf (key, VALUE_KEY_MAX, "k%" PRIu64, ident->block);
}

/* The pool never changes here: every snapshot is the one ring. */
const struct ring *
pool_acquire (void)
{
  return &ring;
}

void
pool_release (const struct ring *r)
{
}

bool
health_usable (size_t i)
{
  return true;
}

void
health_invalidate (size_t i)
{
  CHECK (false, "server %zu: more deletes owed than the list holds", i);
}

bool
conn_open_background (struct conn_session *s, size_t i)
{
  memset (s, 0, sizeof *s);
  s->server = i;
  s->gen = 1;
  s->background = true;
  return true;
}

void
conn_close (struct conn_session *s)
{
}

enum conn_outcome
conn_mutate_send (struct conn_session *s, struct conn_mutation *m, size_t n,
                  unsigned ttl)
{
  size_t j, i;

  for (j = 0; j < n; j++) {
    const unsigned char *v = m[j].value;
    uint64_t block, version;
    bool same = true;

    if (v == NULL) {
      /* An owed delete: key "k<block>", owed under generation 1. */
      uint64_t block = strtoull (m[j].key + 1, NULL, 10);

      CHECK (block < BLOCKS && block % SERVERS == s->server,
             "delete of block %" PRIu64 " sent to server %zu", block,
             s->server);
      atomic_fetch_add (&deleted, 1);
      continue;
    }
    CHECK (m[j].value_len == VALUE_OVERHEAD + BS,
           "a fill of the wrong length");
    memcpy (&block, v, sizeof block);
    memcpy (&version, v + 8, sizeof version);
    CHECK (block < BLOCKS && block % SERVERS == s->server,
           "block %" PRIu64 " sent to server %zu", block, s->server);
    for (i = 0; i < BS; i++)
      same &= v[VALUE_OVERHEAD + i] == pattern (block, version, i);
    CHECK (same, "block %" PRIu64 " version %" PRIu64 ": data changed "
           "while queued", block, version);
    m[j].refused = false;
    atomic_fetch_add (&sent, 1);
  }
  return CONN_OK;
}

enum conn_outcome
conn_mutate_finish (struct conn_session *s)
{
  return CONN_OK;
}

static unsigned fills_per_reader = 50000;

static void *
reader (void *arg)
{
  unsigned seed = (unsigned) (uintptr_t) arg;
  unsigned char data[BS];
  unsigned n;
  size_t i;

  for (n = 0; n < fills_per_reader; n++) {
    uint64_t block = rand_r (&seed) % BLOCKS;
    struct filler_block b = {
      .server = block % SERVERS,
      .generation = 1,
      .block = block,
      .version = writeseq_version (block),
    };

    for (i = 0; i < BS; i++)
      data[i] = pattern (block, b.version, i);
    filler_queue (&b, data, BS);
  }
  return NULL;
}

static void *
writer (void *arg)
{
  unsigned seed = (unsigned) (uintptr_t) arg;
  struct timespec ts = { 0, 20000 };

  while (!atomic_load (&writers_stop)) {
    uint64_t block = rand_r (&seed) % BLOCKS;

    __atomic_add_fetch (&versions[block], 1, __ATOMIC_ACQ_REL);
    /* Now and then, a write that skipped its server. */
    if (rand_r (&seed) % 16 == 0) {
      filler_forget (block % SERVERS, block, 1);
      atomic_fetch_add (&forgot, 1);
    }
    nanosleep (&ts, NULL);
  }
  return NULL;
}

int
main (int argc, char *argv[])
{
  pthread_t readers[READERS], writers[WRITERS];
  uint64_t total, accounted;
  struct timespec ts = { 0, 1000000 };
  unsigned t, waits;

  if (argc > 1)
    fills_per_reader = strtoul (argv[1], NULL, 0);
  if (filler_init (&ring, &settings) == -1 || filler_start (0) == -1)
    return 1;
  for (t = 0; t < WRITERS; t++)
    pthread_create (&writers[t], NULL, writer, (void *) (uintptr_t) (t + 100));
  for (t = 0; t < READERS; t++)
    pthread_create (&readers[t], NULL, reader, (void *) (uintptr_t) (t + 1));
  for (t = 0; t < READERS; t++)
    pthread_join (readers[t], NULL);
  atomic_store (&writers_stop, true);
  for (t = 0; t < WRITERS; t++)
    pthread_join (writers[t], NULL);
  for (waits = 0; (filler_queued () > 0 ||
                   atomic_load (&deleted) < atomic_load (&forgot)) &&
         waits < 30000; waits++)
    nanosleep (&ts, NULL);
  CHECK (filler_queued () == 0, "fills still queued after 30 s");
  CHECK (atomic_load (&deleted) == atomic_load (&forgot) &&
         atomic_load (&forgot) > 0,
         "%u deletes owed, %u sent", atomic_load (&forgot),
         atomic_load (&deleted));
  filler_stop ();
  filler_free ();

  total = (uint64_t) READERS * fills_per_reader;
  accounted = stats.fills + stats.fills_raced + stats.fills_dropped;
  printf ("%" PRIu64 " fills queued: %" PRIu64 " sent, %" PRIu64 " raced, %"
          PRIu64 " dropped; %u deletes owed and sent\n", total, stats.fills,
          stats.fills_raced, stats.fills_dropped, atomic_load (&deleted));
  CHECK (accounted == total, "%" PRIu64 " fills accounted for, of %" PRIu64,
         accounted, total);
  CHECK (stats.fills == atomic_load (&sent), "fills %" PRIu64 " but %u sent",
         stats.fills, atomic_load (&sent));
  CHECK (stats.fills > 0 && stats.fills_raced > 0 && stats.fills_dropped > 0,
         "nothing sent, raced or dropped: the test did not test");
  if (atomic_load (&failures)) {
    fprintf (stderr, "test-filler-threads: %u failed checks\n",
             atomic_load (&failures));
    return 1;
  }
  return 0;
}
