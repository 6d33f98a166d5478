/* SPDX-License-Identifier: BSD-3-Clause */
/* nbdkit-memcache-filter: the parameters' defaults and limits.
 *
 * This is the one table of the filter's settings: memcache.c parses them
 * (and refuses anything outside these limits at start), config_help and
 * nbdkit-memcache-filter(1) describe them with the same numbers.  The
 * values parsed are memcache.c's alone: it hands each module the few it
 * needs at its init (struct conn_settings, reader_settings, ...), so no
 * other file reads the parameters.
 */

#ifndef MEMCACHE_PARAMS_H
#define MEMCACHE_PARAMS_H

#include <stdbool.h>
#include <stdint.h>

/* memcache-block-size: power of 2. */
#define MEMCACHE_BLOCK_SIZE_DEFAULT 4096
#define MEMCACHE_BLOCK_SIZE_MIN     512
#define MEMCACHE_BLOCK_SIZE_MAX     (1024 * 1024)

/* memcache-timeout, milliseconds: a batch's deadline, connecting included. */
#define MEMCACHE_TIMEOUT_DEFAULT    5
#define MEMCACHE_TIMEOUT_MIN        1
#define MEMCACHE_TIMEOUT_MAX        60000
/* Sets and deletes get this many times memcache-timeout: they carry more
 * bytes than a lookup, and a timeout marks the server down (its blocks
 * are read from the lower device until a probe succeeds).  An unknown
 * outcome costs nothing else: block versions make a late store harmless.
 */
#define MEMCACHE_STORE_TIMEOUT_FACTOR 4

/* memcache-retry, milliseconds: first probe of a down server after this;
 * doubled after every failed probe, up to MEMCACHE_RETRY_CAP (or the
 * retry itself if larger).
 */
#define MEMCACHE_RETRY_DEFAULT      1000
#define MEMCACHE_RETRY_MIN          1
#define MEMCACHE_RETRY_MAX          3600000
#define MEMCACHE_RETRY_CAP          30000

/* Misses separated by at most this many bytes of hits are read from the
 * lower device in one request (the hits in between are read again): one
 * round trip costs more than reading a few blocks more.
 */
#define MEMCACHE_LOWER_GAP_MAX      (128 * 1024)

/* memcache-ttl, seconds; 0 = items never expire.  memcached reads larger
 * values than 30 days as absolute Unix times, so they are refused.
 */
#define MEMCACHE_TTL_DEFAULT        86400
#define MEMCACHE_TTL_MAX            (30 * 86400)

/* memcache-sequential-cutoff, bytes: reads that continue a sequential
 * stream longer than this do not fill the cache, and sequential writes
 * beyond it delete their blocks rather than store them (seqdetect.h);
 * 0 = off.  bcache's sequential_cutoff has the same default.  At most
 * MEMCACHE_SEQUENTIAL_CUTOFF_MAX: a stream longer than a memcached
 * pool is rare, and a larger value is most likely a typo.
 */
#define MEMCACHE_SEQUENTIAL_CUTOFF_DEFAULT (4 * 1024 * 1024)
#define MEMCACHE_SEQUENTIAL_CUTOFF_MAX     (UINT64_C (1) << 40)

/* memcache-servers: at most this many. */
#define MEMCACHE_SERVERS_MAX        64

/* Warm moves (abdctl servers): after a change, a block that misses on
 * its new server is asked of the server that held it before, for this
 * many seconds: by default after an add (whose old owners are all still
 * members), and with --drain SECONDS after a remove; --warm/--drain 0
 * turns it off.  At most MEMCACHE_WARM_MAX.
 */
#define MEMCACHE_WARM_ADD_DEFAULT   300
#define MEMCACHE_WARM_MAX           3600

enum write_policy {
  WRITE_POLICY_UPDATE,          /* whole blocks written are stored */
  WRITE_POLICY_INVALIDATE,      /* every block written is deleted */
};

/* memcache-protocol: how the filter talks to memcached. */
enum memcache_protocol {
  MEMCACHE_PROTOCOL_META,       /* meta commands, memcached-ext (default) */
  MEMCACHE_PROTOCOL_TEXT,       /* classic get/set/delete, memcached-ext */
};

#endif /* MEMCACHE_PARAMS_H */
