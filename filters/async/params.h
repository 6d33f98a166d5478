/* SPDX-License-Identifier: BSD-3-Clause */
/* abd async filter: parameter defaults and limits, in one place.
 * async.c (config, config_help), man/nbdkit-async-filter.pod and README.md
 * must agree with this table.
 */

#ifndef ABD_ASYNC_PARAMS_H
#define ABD_ASYNC_PARAMS_H

#define ASYNC_MAX_DIRTY_DEFAULT   (256ULL << 20)    /* async-max-dirty */
#define ASYNC_MAX_DIRTY_MIN       (64ULL << 10)
#define ASYNC_MAX_DIRTY_MAX       (1023ULL << 30)   /* < ENTRY_MAX blocks */
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

#endif /* ABD_ASYNC_PARAMS_H */
