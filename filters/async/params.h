/* SPDX-License-Identifier: BSD-3-Clause */
/* abd async filter: the parameters, in one place: their defaults and
 * limits (this table), their parsing, help and the values derived from
 * them (params.c).  params.c's config and config_help,
 * man/nbdkit-async-filter.pod and README.md must agree with this table.
 */

#ifndef ABD_ASYNC_PARAMS_H
#define ABD_ASYNC_PARAMS_H

#define ASYNC_MAX_DIRTY_DEFAULT   (256ULL << 20)    /* async-max-dirty */
#define ASYNC_MAX_DIRTY_MIN       (64ULL << 10)
#define ASYNC_MAX_DIRTY_MAX       (1023ULL << 30)   /* < STORE_MAX_SLOTS */
#define ASYNC_SYNC_RATE_DEFAULT   (8ULL << 20)      /* async-sync-rate, B/s */
#define ASYNC_SYNC_RATE_MIN       4096
#define ASYNC_WRITERS_DEFAULT     16                /* async-writers */
#define ASYNC_WRITERS_MAX         256
#define ASYNC_WRITE_SIZE_DEFAULT  (256U << 10)      /* async-write-size */
#define ASYNC_WRITE_SIZE_MAX      (32U << 20)
#define ASYNC_DELAY_DEFAULT       50                /* async-writeback-delay */
#define ASYNC_DELAY_MAX           60000
/* While nothing hurries the writers (no flush waits, the store is not
 * nearly full, async mode), at most 1/N of them write at once: the rest
 * of the CPU is the clients'.
 */
#define ASYNC_BACKGROUND_SHARE    4
#define ASYNC_EXIT_TIMEOUT_DEFAULT 60               /* async-exit-timeout */
#define ASYNC_EXIT_TIMEOUT_MAX    86400
#define ASYNC_FLUSH_TIMEOUT_DEFAULT 60              /* abdctl flush [SECONDS] */
#define ASYNC_FLUSH_TIMEOUT_MAX   86400
#define ASYNC_MAX_DRAIN_DEFAULT   0                 /* async-max-drain-seconds */
#define ASYNC_MAX_DRAIN_MAX       86400             /* (0: no drain budget) */
/* The drain budget before the writers have measured a rate: N seconds of
 * 100 scattered 4 KiB writes a second (a disk's random-write rate), and
 * at most 1 MiB, which drains in seconds on any device worth caching.
 */
#define ASYNC_DRAIN_INITIAL_RATE  (100 * 4096)
#define ASYNC_DRAIN_INITIAL_MAX   (1ULL << 20)
#define ASYNC_SYNC_FILE_POLL_MS   100
#define ASYNC_RETRY_MIN_MS        100               /* lower error backoff */
#define ASYNC_RETRY_MAX_MS        5000
/* nbdkit's exit status when a stop leaves dirty data behind (set from
 * .unload, the last callback: nbdkit 1.32 itself always exits 0): kept
 * in the store file (EX_TEMPFAIL: the next start writes it back), or lost
 * without one.
 */
#define ASYNC_EXIT_KEPT           75
#define ASYNC_EXIT_LOST           1

#include <stdbool.h>
#include <stdint.h>

#include <nbdkit-filter.h>

#include "store.h"

/* async-sync-writes: what sync mode does with writes to clean blocks. */
enum sync_writes { SYNC_THROUGH, SYNC_RATE, SYNC_HOLD };
extern const char *const sync_writes_names[];

/* The parameters, converted and range-checked once (params_config), and
 * the values derived from them (params_complete).  Written only while
 * nbdkit reads its command line, read-only afterwards: no lock.
 */
struct async_params {
  uint64_t max_dirty;           /* async-max-dirty, bytes */
  uint32_t nslots;              /*   the same in blocks: the store's slots */
  unsigned max_drain_s;         /* async-max-drain-seconds, 0: none */
  uint64_t drain_initial_budget;  /*   bytes, until a rate is measured */
  bool lock_memory;             /* async-mlock */
  bool start_sync;              /* async-mode=sync */
  const char *sync_file;        /* async-sync-file (absolute), or NULL */
  enum sync_writes sync_writes; /* async-sync-writes */
  uint64_t sync_rate;           /* async-sync-rate, bytes per second */
  const char *control_path;     /* async-control (absolute), or NULL */
  unsigned nwriters;            /* async-writers */
  unsigned background_writes;   /*   those writing while nothing hurries */
  uint32_t write_size;          /* async-write-size, bytes */
  uint32_t batch_blocks;        /*   the same in blocks */
  unsigned delay_ms;            /* async-writeback-delay */
  unsigned exit_timeout;        /* async-exit-timeout, seconds, 0: never */
  const char *store_file;       /* async-store-file (absolute), or NULL */
  const char *store_id;         /* async-store-id, "" if none */
  bool flush_store;             /* async-flush=store (needs store_file) */
};
extern struct async_params async_params;

/* .config: parse KEY=VALUE if it is ours (0, or -1 after nbdkit_error),
 * else pass it on with NEXT.
 */
int params_config (nbdkit_next_config *next, nbdkit_backend *nxdata,
                   const char *key, const char *value);

/* .config_complete: derive what the parameters imply; -1 after
 * nbdkit_error if they contradict each other.
 */
int params_complete (void);

/* The store's parameters for a device of SIZE bytes. */
void params_store (struct store_params *p, uint64_t size);

#define async_config_help \
  "async-max-dirty=SIZE       RAM for dirty data (default 256M).\n" \
  "async-max-drain-seconds=N  Admit dirty data only while writing it back\n" \
  "                           takes at most N s at the measured rate\n" \
  "                           (default 0: no limit but async-max-dirty).\n" \
  "async-mlock=BOOL           Lock that memory (default false).\n" \
  "async-mode=async|sync      Start mode (default async: flushes are\n" \
  "                           acknowledged from RAM, for UPS-backed hosts).\n" \
  "async-sync-file=PATH       Sync mode while PATH (absolute) exists.\n" \
  "async-sync-writes=through|rate|hold\n" \
  "                           Sync mode: writes to clean ranges go\n" \
  "                           through, are rate limited, or wait for the\n" \
  "                           store to drain (default through).\n" \
  "async-sync-rate=SIZE       Bytes per second for rate (default 8M).\n" \
  "async-control=PATH         Control socket for abdctl (absolute path,\n" \
  "                           mode 0600).\n" \
  "async-writers=N            Lower writes in flight when hurried (default\n" \
  "                           16; a quarter of them in the background).\n" \
  "async-write-size=SIZE      Largest coalesced lower write (default 256K).\n" \
  "async-writeback-delay=MS   Let new data settle first (default 50).\n" \
  "async-flush=ram|store      What an async-mode flush waits for: nothing\n" \
  "                           (ram, the default: data is in RAM, for\n" \
  "                           UPS-backed hosts) or a commit of the store\n" \
  "                           file (store: needs async-store-file on a\n" \
  "                           persistent filesystem; survives power cuts).\n" \
  "async-exit-timeout=SECS    Give up draining a failing lower device\n" \
  "                           at exit after SECS (default 60, 0 = never).\n" \
  "async-store-file=PATH      Keep dirty data in this file (on tmpfs), so\n" \
  "                           that it survives the process (with\n" \
  "                           async-flush=store: on a disk, so that flushed\n" \
  "                           data survives a power cut) (an absolute\n" \
  "                           path; a private file in a private directory;\n" \
  "                           default none).\n" \
  "async-store-id=STRING      The device's name, recorded in the store file\n" \
  "                           (default empty)."

#endif /* ABD_ASYNC_PARAMS_H */
