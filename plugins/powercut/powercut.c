/* SPDX-License-Identifier: BSD-3-Clause */
/* abd: nbdkit-powercut-plugin, a disk with a volatile write cache.
 *
 * It serves an image file the way a disk with a write cache serves its
 * medium: writes go into RAM (cache.c) and reach the file only on a flush
 * or a FUA request, so killing nbdkit (SIGKILL, or any other exit) leaves
 * the file holding exactly what was flushed.  That is what a test of a
 * flush promise needs, and what the file plugin cannot give (the host's
 * page cache keeps unflushed writes across a SIGKILL).  With
 * unflushed-persist=FRACTION, a seeded random subset of the unflushed
 * sectors also reaches the file as they are written, as a real disk may
 * put any of them on the medium before the power goes.
 *
 * This file holds the parameters and the nbdkit callbacks, each a thin
 * call into the cache.  What happens to a write: powercut_pwrite ->
 * cache_write (into RAM, maybe leaked to the file) -> if FUA, cache_flush.
 *
 * No threads of its own.  Thread model parallel: the cache's one mutex
 * serializes the requests of every connection (a test device, correct
 * first), and all connections share one cache, so a flush on any
 * connection covers the writes of all (can_multi_conn).
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "cache.h"

/* Parameters: defaults and limits. */
#define POWERCUT_CACHE_MAX_DEFAULT (UINT64_C (1) << 30)
#define POWERCUT_CACHE_MAX_MIN CACHE_PAGE_SIZE
#define POWERCUT_CACHE_MAX_MAX (UINT64_C (1) << 40)
#define POWERCUT_SEED_DEFAULT 1

static char *filename;
static double persist;
static uint32_t seed = POWERCUT_SEED_DEFAULT;
static uint64_t cache_max = POWERCUT_CACHE_MAX_DEFAULT;

/* Set in .get_ready, read-only afterwards (the cache has its own lock). */
static int fd = -1;
static int64_t size;
static struct cache *cache;

/*----------------------------------------------------------------------
 * Parameters.
 */

/* A fraction 0 <= f <= 1 written as a decimal number (0, 0.3, 1, 1e-3). */
static int
powercut_parse_fraction (const char *key, const char *value, double *out)
{
  char *end;
  double f;

  errno = 0;
  f = strtod (value, &end);
  if (*value == '\0' || *end != '\0' || errno != 0 || isnan (f) ||
      f < 0 || f > 1) {
    nbdkit_error ("%s: expected a fraction from 0 to 1 (e.g. 0.3), "
                  "got '%s'", key, value);
    return -1;
  }
  *out = f;
  return 0;
}

static int
powercut_config (const char *key, const char *value)
{
  int64_t r;

  if (strcmp (key, "file") == 0) {
    free (filename);
    /* Absolute, because nbdkit changes directory to / when it forks;
     * and it must exist (realpath fails otherwise).
     */
    filename = realpath (value, NULL);
    if (filename == NULL) {
      nbdkit_error ("file: %s: %m", value);
      return -1;
    }
    return 0;
  }
  if (strcmp (key, "unflushed-persist") == 0)
    return powercut_parse_fraction (key, value, &persist);
  if (strcmp (key, "seed") == 0)
    return nbdkit_parse_uint32_t (key, value, &seed);
  if (strcmp (key, "cache-max") == 0) {
    r = nbdkit_parse_size (value);
    if (r == -1) {
      nbdkit_error ("cache-max: '%s' is not a size (e.g. 4K, 64M, 1G)",
                    value);
      return -1;
    }
    if ((uint64_t) r < POWERCUT_CACHE_MAX_MIN ||
        (uint64_t) r > POWERCUT_CACHE_MAX_MAX) {
      nbdkit_error ("cache-max: %s is out of range (4K..1T)", value);
      return -1;
    }
    cache_max = r;
    return 0;
  }
  nbdkit_error ("unknown parameter '%s' (see nbdkit-powercut-plugin(1))",
                key);
  return -1;
}

static int
powercut_config_complete (void)
{
  if (filename == NULL) {
    nbdkit_error ("the file parameter is required: "
                  "nbdkit powercut file=IMAGE");
    return -1;
  }
  return 0;
}

#define powercut_config_help \
  "file=IMAGE                (required) The image: an existing file or\n" \
  "                          block device, a multiple of 512 bytes.\n" \
  "unflushed-persist=FRACTION\n" \
  "                          Each unflushed sector written also reaches\n" \
  "                          IMAGE at once with this probability\n" \
  "                          (default 0: only flushes reach it).\n" \
  "seed=N                    Seed of those choices (default 1).\n" \
  "cache-max=SIZE            Write the cache back when it would grow\n" \
  "                          past SIZE (default 1G)."

/*----------------------------------------------------------------------
 * Life cycle.
 */

/* Open the image before nbdkit forks, so that a bad file stops it at
 * start with a message.
 */
static int
powercut_get_ready (void)
{
  struct cache_params p;

  fd = open (filename, O_RDWR | O_CLOEXEC);
  if (fd == -1) {
    nbdkit_error ("file: %s: %m", filename);
    return -1;
  }
  size = lseek (fd, 0, SEEK_END);
  if (size == -1) {
    nbdkit_error ("file: %s: cannot find its size: %m", filename);
    return -1;
  }
  if (size % CACHE_SECTOR_SIZE) {
    nbdkit_error ("file: %s: its size (%" PRIi64 " bytes) is not a "
                  "multiple of %d", filename, size, CACHE_SECTOR_SIZE);
    return -1;
  }

  p.fd = fd;
  p.size = size;
  p.max_bytes = cache_max;
  p.persist = persist;
  p.seed = seed;
  cache = cache_create (&p);
  if (cache == NULL) {
    nbdkit_error ("powercut: cannot create the cache: %m");
    return -1;
  }
  nbdkit_debug ("powercut: %s, %" PRIi64 " bytes, unflushed-persist=%g "
                "seed=%" PRIu32 " cache-max=%" PRIu64,
                filename, size, persist, seed, cache_max);
  return 0;
}

/* Whatever was not flushed is lost here, as in a power cut. */
static void
powercut_unload (void)
{
  if (cache) {
    struct cache_stats st;

    cache_get_stats (cache, &st);
    nbdkit_debug ("powercut: exit drops %" PRIu64 " unflushed sectors "
                  "(%" PRIu64 " leaked, %" PRIu64 " flushes, %" PRIu64
                  " evictions)", st.dirty_sectors, st.leaked_sectors,
                  st.flushes, st.evictions);
    cache_free (cache);
  }
  if (fd >= 0)
    close (fd);
  free (filename);
}

static void *
powercut_open (int readonly)
{
  return NBDKIT_HANDLE_NOT_NEEDED;
}

/*----------------------------------------------------------------------
 * Requests.
 */

static int64_t
powercut_get_size (void *handle)
{
  return size;
}

static int
powercut_can_multi_conn (void *handle)
{
  return 1;
}

static int
powercut_can_fua (void *handle)
{
  return NBDKIT_FUA_NATIVE;
}

static int
powercut_pread (void *handle, void *buf, uint32_t count, uint64_t offset,
                uint32_t flags)
{
  if (cache_read (cache, buf, count, offset) == -1) {
    nbdkit_error ("pread: %m");
    return -1;
  }
  return 0;
}

static int
powercut_flush (void *handle, uint32_t flags)
{
  if (cache_flush (cache) == -1) {
    nbdkit_error ("flush: %m");
    return -1;
  }
  return 0;
}

/* A write, zero or trim (BUF NULL: zeroes), then a flush if FUA: making
 * the whole cache durable is the simple correct way to make this request
 * durable.
 */
static int
powercut_write_common (const char *what, const void *buf, uint32_t count,
                       uint64_t offset, uint32_t flags)
{
  if (cache_write (cache, buf, count, offset) == -1) {
    nbdkit_error ("%s: %m", what);
    return -1;
  }
  if (flags & NBDKIT_FLAG_FUA)
    return powercut_flush (NULL, 0);
  return 0;
}

static int
powercut_pwrite (void *handle, const void *buf, uint32_t count,
                 uint64_t offset, uint32_t flags)
{
  return powercut_write_common ("pwrite", buf, count, offset, flags);
}

static int
powercut_zero (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  return powercut_write_common ("zero", NULL, count, offset, flags);
}

/* A trim writes zeroes into the cache: a real disk may answer later reads
 * of a trimmed sector with zeroes or with the old data, but a test's model
 * wants one answer, and zeroes keep the rule "each sector holds its last
 * flushed content or some later written content" with a trim as a write.
 */
static int
powercut_trim (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  return powercut_write_common ("trim", NULL, count, offset, flags);
}

#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL

static struct nbdkit_plugin plugin = {
  .name              = "powercut",
  .longname          = "nbdkit powercut plugin (volatile write cache)",
  .version           = PACKAGE_VERSION,
  .config            = powercut_config,
  .config_complete   = powercut_config_complete,
  .config_help       = powercut_config_help,
  .magic_config_key  = "file",
  .get_ready         = powercut_get_ready,
  .unload            = powercut_unload,
  .open              = powercut_open,
  .get_size          = powercut_get_size,
  .can_multi_conn    = powercut_can_multi_conn,
  .can_fua           = powercut_can_fua,
  .pread             = powercut_pread,
  .pwrite            = powercut_pwrite,
  .zero              = powercut_zero,
  .trim              = powercut_trim,
  .flush             = powercut_flush,
  .errno_is_preserved = 1,
};

NBDKIT_REGISTER_PLUGIN (plugin)
