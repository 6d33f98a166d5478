/* SPDX-License-Identifier: BSD-3-Clause */
/* nbdkit-memcache-filter: a read cache in a pool of memcached servers.
 *
 * This file holds only the nbdkit callbacks and the parameters; the work
 * is done in files named for their concept:
 *
 *   ring.c      server list and block placement (which server holds a block)
 *   pool.c      the running pool: slots, and snapshots for the requests
 *   servers.c   changes of the pool (abdctl servers), memcache-servers-file
 *   health.c    shared server state (up, down, probing) and generations
 *   conn.c      connections: sessions, outcomes, the protocol's table
 *   conn-meta.c the meta protocol (memcached-ext/), a pool of
 *               CONN_META_PER_SERVER connections per server
 *   conn-text.c the text protocol (memcached-ext/), idle connections
 *               per server
 *   value.c     key names and sealed (encrypted, authenticated) values
 *   writeseq.c  ordering cache stores against writes in this process
 *   reader.c    the read path: multi-get, lower read, fill queued
 *   seqdetect.c sequential streams, whose reads do not fill the cache
 *               and whose writes do not store (memcache-sequential-cutoff)
 *   filler.c    fills stored in the background, batched per server
 *   writer.c    the write path: lower first, then update or invalidate
 *   stats.c     counters and the control channel (abdctl status)
 *   state.c       the warm-restart state file (memcache-state-file)
 *   marker.c      its markers on the servers (a copy put back is cold)
 *   conn-oneshot.c  one get or set outside the sessions (start, stop)
 *   startcheck.c  a warning at start for each server that does not answer
 *
 * The parameters and the epoch live here alone: each
 * module is handed what it needs at its init (conn_init, health_init,
 * stats_init, filler_init, reader_init, writer_init; its header says
 * what) and keeps it: no other file reads them, and a module can be set
 * up on its own in a test.  (The counters, stats.h, are still shared.)
 *
 * Lifetime: parameters are parsed in .config and checked in
 * .config_complete; the servers, health and connection state are set up in
 * .get_ready and freed in .unload.  The control socket is bound in
 * .get_ready; its thread and the fill thread are started in .after_fork
 * and stopped in .cleanup.  The epoch and the keys are chosen in
 * .after_fork, before anything is served: a warm restart needs the lower
 * device's size to decide; the read and write paths are set up there,
 * once the epoch is known.  With memcache-state-file, the state file is
 * taken (and removed) in .get_ready, the lower device flushed in
 * .cleanup, after the last request and the last fill, and the file
 * written in .unload.
 */

#include <config.h>

#include <errno.h>
#include <stdbool.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <openssl/crypto.h>

#include <nbdkit-filter.h>

#include "conn.h"
#include "control.h"
#include "filler.h"
#include "log.h"
#include "health.h"
#include "marker.h"
#include "params.h"
#include "pool.h"
#include "reader.h"
#include "ring.h"
#include "servers.h"
#include "state.h"
#include "startcheck.h"
#include "stats.h"
#include "value.h"
#include "writer.h"

/* The parameters as parsed (params.h has their defaults and limits).
 * Set in .config and .config_complete, read-only afterwards; each module
 * is given the few it needs at its init, and reads no other.
 */
static struct {
  const char *servers;          /* memcache-servers, as given, or the list
                                   read from memcache-servers-file */
  const char *servers_file;     /* memcache-servers-file, or NULL */
  const char *id;               /* memcache-id */
  uint32_t block_size;
  unsigned timeout_ms;
  unsigned retry_ms;
  unsigned ttl;
  enum write_policy write_policy;
  enum memcache_protocol protocol;
  uint64_t sequential_cutoff;   /* bytes, 0 = off */
  const char *control;          /* memcache-control socket, or NULL */
  const char *key_file;         /* memcache-key-file, or NULL */
  const char *state_file;       /* memcache-state-file, or NULL */
} params = {
  .block_size   = MEMCACHE_BLOCK_SIZE_DEFAULT,
  .timeout_ms   = MEMCACHE_TIMEOUT_DEFAULT,
  .retry_ms     = MEMCACHE_RETRY_DEFAULT,
  .ttl          = MEMCACHE_TTL_DEFAULT,
  .write_policy = WRITE_POLICY_UPDATE,
  .protocol     = MEMCACHE_PROTOCOL_META,
  .sequential_cutoff = MEMCACHE_SEQUENTIAL_CUTOFF_DEFAULT,
};

/* The hash of memcache-id, set in .config_complete.  The servers are the
 * pool's (pool.h), set up in .config_complete and freed in .unload; the
 * modules are given pool_all () at their init, for their per-server
 * arrays, and each request takes a snapshot of the members.
 */
static uint64_t id_hash;

/* memcache-servers-file's list, read in .config_complete (params.servers
 * then points to it).
 */
static char *servers_from_file;

/* The pool as it was at start: held from .get_ready to the end of
 * .after_fork, for the start check, the markers and the state file.
 */
static const struct ring *start_ring;

/* Drawn at random in .get_ready, so that nothing an earlier process
 * stored is trusted; replaced in .after_fork by the earlier process's if
 * memcache-state-file vouches for the cache it left after a clean stop
 * (state.h).  Then the modules that make keys are given it (reader_init,
 * writer_init, filler_start), before anything is served.
 */
static uint64_t epoch;

static struct ctl_server *control;

/* The secret the value keys are derived from: read from
 * memcache-key-file in .config_complete, or random in .get_ready; wiped
 * once the keys are derived (.after_fork).
 */
static unsigned char secret[VALUE_SECRET_SIZE];
static bool secret_from_file;

/* With memcache-state-file: a context on the lower device, opened in
 * .after_fork (its size) and closed in .cleanup (a flush); the size; and
 * whether the stop was clean, so that .unload writes the state file.
 */
static nbdkit_next *lower;
static uint64_t lower_size;
static bool stop_clean;

/* Parse an unsigned number of VALUE for KEY within [MIN, MAX]. */
static int
memcache_parse_range (const char *key, const char *value, unsigned min,
                      unsigned max, const char *unit, unsigned *out)
{
  if (nbdkit_parse_unsigned (key, value, out) == -1)
    return -1;
  if (*out < min || *out > max) {
    nbdkit_error ("%s=%s: must be from %u to %u %s",
                  key, value, min, max, unit);
    return -1;
  }
  return 0;
}

/* Strings that abdctl status prints (the id, the server addresses) must
 * not hold control bytes, which could end a status line and forge others.
 */
static int
memcache_check_printable (const char *key, const char *value)
{
  const unsigned char *p;

  for (p = (const unsigned char *) value; *p; p++)
    if (*p < 0x20 || *p == 0x7f) {
      nbdkit_error ("%s: control character 0x%02x at byte %zu is not allowed",
                    key, *p, (size_t) (p - (const unsigned char *) value));
      return -1;
    }
  return 0;
}

static int
memcache_config (nbdkit_next_config *next, nbdkit_backend *nxdata,
                 const char *key, const char *value)
{
  if (strcmp (key, "memcache-servers") == 0) {
    if (memcache_check_printable (key, value) == -1)
      return -1;
    params.servers = value;
    return 0;
  }
  if (strcmp (key, "memcache-servers-file") == 0) {
    if (value[0] != '/') {
      nbdkit_error ("memcache-servers-file=%s: must be an absolute path",
                    value);
      return -1;
    }
    params.servers_file = value;
    return 0;
  }
  if (strcmp (key, "memcache-id") == 0) {
    if (value[0] == '\0') {
      nbdkit_error ("memcache-id must not be empty");
      return -1;
    }
    if (memcache_check_printable (key, value) == -1)
      return -1;
    params.id = value;
    return 0;
  }
  if (strcmp (key, "memcache-block-size") == 0) {
    int64_t size = nbdkit_parse_size (value);

    if (size == -1) {
      nbdkit_error ("memcache-block-size=%s: not a size", value);
      return -1;
    }
    if (size < MEMCACHE_BLOCK_SIZE_MIN || size > MEMCACHE_BLOCK_SIZE_MAX ||
        (size & (size - 1)) != 0) {
      nbdkit_error ("memcache-block-size=%s: must be a power of 2 from "
                    "%d to %d bytes", value,
                    MEMCACHE_BLOCK_SIZE_MIN, MEMCACHE_BLOCK_SIZE_MAX);
      return -1;
    }
    params.block_size = size;
    return 0;
  }
  if (strcmp (key, "memcache-sequential-cutoff") == 0) {
    int64_t size = nbdkit_parse_size (value);

    if (size == -1) {
      nbdkit_error ("memcache-sequential-cutoff=%s: not a size", value);
      return -1;
    }
    if ((uint64_t) size > MEMCACHE_SEQUENTIAL_CUTOFF_MAX) {
      nbdkit_error ("memcache-sequential-cutoff=%s: must be from 0 (off) "
                    "to %" PRIu64 " bytes", value,
                    MEMCACHE_SEQUENTIAL_CUTOFF_MAX);
      return -1;
    }
    params.sequential_cutoff = size;
    return 0;
  }
  if (strcmp (key, "memcache-timeout") == 0)
    return memcache_parse_range (key, value, MEMCACHE_TIMEOUT_MIN,
                                 MEMCACHE_TIMEOUT_MAX, "milliseconds",
                                 &params.timeout_ms);
  if (strcmp (key, "memcache-retry") == 0)
    return memcache_parse_range (key, value, MEMCACHE_RETRY_MIN,
                                 MEMCACHE_RETRY_MAX, "milliseconds",
                                 &params.retry_ms);
  if (strcmp (key, "memcache-ttl") == 0)
    return memcache_parse_range (key, value, 0, MEMCACHE_TTL_MAX, "seconds",
                                 &params.ttl);
  if (strcmp (key, "memcache-write-policy") == 0) {
    if (strcmp (value, "update") == 0)
      params.write_policy = WRITE_POLICY_UPDATE;
    else if (strcmp (value, "invalidate") == 0)
      params.write_policy = WRITE_POLICY_INVALIDATE;
    else {
      nbdkit_error ("memcache-write-policy=%s: must be 'update' or "
                    "'invalidate'", value);
      return -1;
    }
    return 0;
  }
  if (strcmp (key, "memcache-protocol") == 0) {
    if (strcmp (value, "meta") == 0)
      params.protocol = MEMCACHE_PROTOCOL_META;
    else if (strcmp (value, "text") == 0)
      params.protocol = MEMCACHE_PROTOCOL_TEXT;
    else {
      nbdkit_error ("memcache-protocol=%s: must be 'meta' or 'text'", value);
      return -1;
    }
    return 0;
  }
  if (strcmp (key, "memcache-key-file") == 0) {
    params.key_file = value;
    return 0;
  }
  if (strcmp (key, "memcache-state-file") == 0) {
    if (value[0] != '/') {
      nbdkit_error ("memcache-state-file=%s: must be an absolute path",
                    value);
      return -1;
    }
    params.state_file = value;
    return 0;
  }
  if (strcmp (key, "memcache-control") == 0) {
    if (value[0] != '/') {
      nbdkit_error ("memcache-control=%s: must be an absolute path", value);
      return -1;
    }
    params.control = value;
    return 0;
  }
  if (strncmp (key, "memcache-", 9) == 0) {
    nbdkit_error ("unknown parameter '%s' (see nbdkit-memcache-filter(1))",
                  key);
    return -1;
  }
  return next (nxdata, key, value);
}

static int
memcache_config_complete (nbdkit_next_config_complete *next,
                          nbdkit_backend *nxdata)
{
  struct ring parsed;

  if (params.servers && params.servers_file) {
    nbdkit_error ("memcache-servers and memcache-servers-file exclude each "
                  "other: the file is the one list (abdctl servers reload "
                  "reads it again)");
    return -1;
  }
  if (params.servers_file) {
    char why[RING_WHY_MAX];

    if (servers_file_read (params.servers_file, &servers_from_file, why,
                           sizeof why) == -1) {
      nbdkit_error ("%s", why);
      return -1;
    }
    params.servers = servers_from_file;
  }
  if (params.servers == NULL) {
    nbdkit_error ("memcache-servers=HOST:PORT,... is required (or "
                  "memcache-servers-file=PATH)");
    return -1;
  }
  if (params.id == NULL) {
    nbdkit_error ("memcache-id=STRING is required: it names this device's "
                  "blocks on the servers");
    return -1;
  }
  /* Parse now so that a bad server list stops nbdkit at start. */
  if (ring_parse (&parsed, params.servers, MEMCACHE_SERVERS_MAX) == -1)
    return -1;
  id_hash = ring_id_hash (params.id);
  parsed.id_hash = id_hash;
  if (pool_init (&parsed) == -1) {
    ring_free (&parsed);
    return -1;
  }
  if (params.key_file) {
    if (value_read_secret_file (params.key_file, secret) == -1)
      return -1;
    secret_from_file = true;
  }
  if (params.state_file && !params.key_file) {
    nbdkit_error ("memcache-state-file needs memcache-key-file: with a "
                  "random secret at every start nothing cached could be "
                  "used again");
    return -1;
  }
  return next (nxdata);
}

#define memcache_config_help \
  "memcache-servers=HOST:PORT,...  (required, or the next) memcached\n" \
  "                                servers; also [IPV6]:PORT and\n" \
  "                                /unix/socket/paths.\n" \
  "memcache-servers-file=PATH      The servers, one a line (# comments);\n" \
  "                                abdctl servers reload reads it again.\n" \
  "memcache-id=STRING              (required) names this device's blocks.\n" \
  "memcache-block-size=SIZE        Cache block size, power of 2 from 512\n" \
  "                                to 1M (default 4K).\n" \
  "memcache-timeout=MS             Server timeout in ms (default 5).\n" \
  "memcache-retry=MS               Probe a down server after MS ms, then\n" \
  "                                back off to 30 s (default 1000).\n" \
  "memcache-ttl=SECONDS            Item lifetime, 0 = none (default 86400).\n" \
  "memcache-write-policy=update|invalidate\n" \
  "                                Store or delete written blocks\n" \
  "                                (default update).\n" \
  "memcache-sequential-cutoff=SIZE Reads continuing a sequential stream\n" \
  "                                longer than SIZE do not fill the cache,\n" \
  "                                its writes delete rather than store;\n" \
  "                                0 = off (default 4M).\n" \
  "memcache-protocol=meta|text     memcached's meta protocol, 4 connections\n" \
  "                                per server (default), or the text one,\n" \
  "                                one connection per thread per server.\n" \
  "memcache-key-file=PATH          32-byte secret for the cached values\n" \
  "                                (default: a random one at every start).\n" \
  "memcache-state-file=PATH        Keep the cache across a clean restart\n" \
  "                                (needs memcache-key-file).\n" \
  "memcache-control=PATH           Serve abdctl on this Unix socket."

static int
memcache_get_ready (int thread_model)
{
  const struct conn_settings conn_settings = {
    .protocol   = params.protocol,
    .block_size = params.block_size,
    .timeout_ms = params.timeout_ms,
  };
  const struct stats_settings stats_settings = {
    .id           = params.id,
    .block_size   = params.block_size,
    .write_policy = params.write_policy,
    .timeout_ms   = params.timeout_ms,
    .sequential_cutoff = params.sequential_cutoff,
  };
  const struct filler_settings filler_settings = {
    .block_size = params.block_size,
    .ttl        = params.ttl,
  };

  if (getrandom (&epoch, sizeof epoch, 0) != sizeof epoch) {
    nbdkit_error ("getrandom: %m");
    return -1;
  }
  if (!secret_from_file &&
      getrandom (secret, sizeof secret, 0) != sizeof secret) {
    nbdkit_error ("getrandom: %m");
    return -1;
  }
  start_ring = pool_acquire ();
  if (params.state_file) {
    const struct state_expect expect = {
      .id_hash = id_hash,
      .servers = params.servers,
      .nr_servers = start_ring->n,
      .block_size = params.block_size,
      .ring = start_ring,
    };

    if (state_take (params.state_file, secret, &expect) == -1)
      return -1;
  }
  /* A probe may take as long as any batch (conn-meta.c: 4 idle timeouts,
   * MEMCACHE_STORE_TIMEOUT_FACTOR times longer for stores, plus its bytes
   * at 16 MiB/s, under a second for the largest): it is given that, and a
   * second more, to report.
   */
  if (health_init (pool_all (), params.retry_ms, MEMCACHE_RETRY_CAP,
                   4 * MEMCACHE_STORE_TIMEOUT_FACTOR * params.timeout_ms
                   + 2000) == -1 ||
      stats_init (pool_all (), &stats_settings, epoch) == -1 ||
      conn_init (pool_all (), &conn_settings) == -1 ||
      filler_init (pool_all (), &filler_settings) == -1)
    return -1;
  /* Before nbdkit forks: a person starting it sees the warnings. */
  startcheck_servers (start_ring);
  /* Bound before nbdkit forks, so a bad path stops it at start. */
  if (params.control) {
    control = ctl_listen ("memcache-control", params.control);
    if (control == NULL)
      return -1;
  }
  return 0;
}

/* The lower device's size, through a context kept open until .cleanup. */
static int
memcache_open_lower (nbdkit_backend *backend)
{
  int64_t size;

  lower = nbdkit_next_context_open (backend, 0, "", 1);
  if (lower == NULL) {
    nbdkit_error ("memcache: cannot open the lower device");
    return -1;
  }
  if (lower->prepare (lower) == -1)
    return -1;
  size = lower->get_size (lower);
  if (size == -1)
    return -1;
  lower_size = size;
  return 0;
}

static int
memcache_after_fork (nbdkit_backend *backend)
{
  const struct reader_settings reader_settings = {
    .block_size        = params.block_size,
    .sequential_cutoff = params.sequential_cutoff,
  };
  const struct writer_settings writer_settings = {
    .block_size        = params.block_size,
    .ttl               = params.ttl,
    .write_policy      = params.write_policy,
    .sequential_cutoff = params.sequential_cutoff,
  };
  const struct servers_settings servers_settings = {
    .file    = params.servers_file,
    .markers = secret_from_file,
  };
  const char *start = "cold";
  const char *reason = "memcache-state-file is not set";
  uint64_t nonce_used = 0;

  if (params.state_file) {
    if (memcache_open_lower (backend) == -1)
      return -1;
    if (state_start (lower_size, &epoch, &nonce_used, &reason))
      start = "warm";
    else
      nbdkit_debug ("memcache: cold start: %s", reason);
  }
  else if (secret_from_file) {
    /* A state file may be waiting for a later start with
     * memcache-state-file; this start may write the device, so it marks
     * the servers as such a start would (marker.c), and that file will
     * not be used.
     */
    if (marker_init (secret, id_hash) == -1)
      return -1;
    nbdkit_debug ("memcache: %zu of %zu servers marked in use",
                  marker_set_in_use (start_ring), start_ring->n);
    /* The keys stay until .unload: a server that joins the pool is
     * marked too (servers.c).
     */
  }
  if (value_keys_init (secret, id_hash, epoch) == -1)
    return -1;
  OPENSSL_cleanse (secret, sizeof secret);
  if (nonce_used)
    value_nonce_resume (nonce_used);
  reader_init (&reader_settings, epoch);
  writer_init (&writer_settings, epoch);
  servers_init (&servers_settings);
  stats_set_start (epoch, start, reason);
  nbdkit_debug ("memcache: %zu servers, id hash %016" PRIx64
                ", epoch %016" PRIx64 ", %s start", start_ring->n, id_hash,
                epoch, start);
  pool_release (start_ring);
  start_ring = NULL;

  if (control && ctl_serve (control, stats_control, NULL) == -1)
    return -1;
  return filler_start (epoch);
}

static void
memcache_cleanup (nbdkit_backend *backend)
{
  int err = 0;

  filler_stop ();
  ctl_stop (control);
  control = NULL;
  /* Every request is done (the async filter above drained in its own
   * .cleanup, which runs before this one): what the lower device holds
   * now is what the state file will vouch for, so it must be on stable
   * storage first.
   */
  if (lower) {
    int can_flush = lower->can_flush (lower);

    stop_clean = can_flush == 0 ||
      (can_flush == 1 && lower->flush (lower, 0, &err) == 0);
    if (!stop_clean)
      nbdkit_error ("memcache: flushing the lower device at stop failed: "
                    "the next start is cold");
    lower->finalize (lower);
    nbdkit_next_context_close (lower);
    lower = NULL;
  }
}

static void
memcache_unload (void)
{
  filler_free ();
  conn_free ();
  if (stop_clean && pool_changes () > 0)
    abd_log (LOG_NOTICE, "memcache", "memcache-state-file: the pool "
             "changed while nbdkit ran: the next start is cold");
  else if (stop_clean) {
    const struct ring *ring = pool_acquire ();

    state_save (epoch, lower_size, ring);
    pool_release (ring);
  }
  state_free ();
  marker_free ();
  OPENSSL_cleanse (secret, sizeof secret);
  value_keys_free ();
  stats_free ();
  health_free ();
  pool_free ();
  free (servers_from_file);
  servers_from_file = NULL;
}

static int
memcache_pread (nbdkit_next *next, void *handle, void *buf, uint32_t count,
                uint64_t offset, uint32_t flags, int *err)
{
  return reader_pread (next, buf, count, offset, err);
}

static int
memcache_pwrite (nbdkit_next *next, void *handle, const void *buf,
                 uint32_t count, uint64_t offset, uint32_t flags, int *err)
{
  return writer_write (next, WRITER_PWRITE, buf, count, offset, flags, err);
}

static int
memcache_zero (nbdkit_next *next, void *handle, uint32_t count,
               uint64_t offset, uint32_t flags, int *err)
{
  return writer_write (next, WRITER_ZERO, NULL, count, offset, flags, err);
}

static int
memcache_trim (nbdkit_next *next, void *handle, uint32_t count,
               uint64_t offset, uint32_t flags, int *err)
{
  return writer_write (next, WRITER_TRIM, NULL, count, offset, flags, err);
}

static struct nbdkit_filter filter = {
  .name              = "memcache",
  .longname          = "nbdkit memcache filter",
  .config            = memcache_config,
  .config_complete   = memcache_config_complete,
  .config_help       = memcache_config_help,
  .get_ready         = memcache_get_ready,
  .after_fork        = memcache_after_fork,
  .cleanup           = memcache_cleanup,
  .unload            = memcache_unload,
  .pread             = memcache_pread,
  .pwrite            = memcache_pwrite,
  .zero              = memcache_zero,
  .trim              = memcache_trim,
};

NBDKIT_REGISTER_FILTER (filter)
