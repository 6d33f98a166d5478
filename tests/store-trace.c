/* SPDX-License-Identifier: BSD-3-Clause */
/* abd: follow one client request through the async store, call by call.
 *
 * Built with -finstrument-functions -O0 (every function of the store is
 * a stop, none is inlined away), it creates a store with the filter's
 * defaults (tests/store_trace.py has no thread: nothing is written back),
 * sets up the scenario, and records every function entered and left
 * during the one traced call.  It prints "E ADDR" and "X ADDR" lines,
 * addresses relative to the executable's load address, for
 * tests/store_trace.py to name with addr2line and count (stops, files,
 * returns to a file already visited) and to check the layering.
 *
 * Scenarios (the first argument):
 *   new4k     a 4 KiB aligned write to a block the store does not hold
 *   over4k    the same write again, to the block it now holds (DIRTY)
 *   partial   512 bytes into a block it does not hold (read-modify-write)
 *   seq64k    a 64 KiB aligned write to blocks it does not hold
 *   zero64k   a 64 KiB aligned zero of blocks it does not hold
 *
 * Usage: store-trace SCENARIO [STORE-FILE]
 */

#include <config.h>

#include <dlfcn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store.h"

#define NOTRACE __attribute__ ((no_instrument_function))

static bool tracing;
static uintptr_t base;
static FILE *out;

void __cyg_profile_func_enter (void *fn, void *site) NOTRACE;
void __cyg_profile_func_exit (void *fn, void *site) NOTRACE;

void
__cyg_profile_func_enter (void *fn, void *site)
{
  if (tracing)
    fprintf (out, "E %#lx\n", (unsigned long) ((uintptr_t) fn - base));
}

void
__cyg_profile_func_exit (void *fn, void *site)
{
  if (tracing)
    fprintf (out, "X %#lx\n", (unsigned long) ((uintptr_t) fn - base));
}

static char lower[1 << 20];

static int NOTRACE
io_read (void *opaque, void *buf, uint32_t count, uint64_t offset, int *err)
{
  memcpy (buf, lower + offset, count);
  return 0;
}

static int NOTRACE
io_write (void *opaque, const void *buf, uint32_t count, uint64_t offset,
          int *err)
{
  memcpy (lower + offset, buf, count);
  return 0;
}

static int NOTRACE
io_zero (void *opaque, uint32_t count, uint64_t offset, int *err)
{
  memset (lower + offset, 0, count);
  return 0;
}

static const struct store_io io = {
  .read = io_read, .write = io_write, .zero = io_zero, .trim = io_zero,
};

int NOTRACE
main (int argc, char *argv[])
{
  const char *scenario = argc > 1 ? argv[1] : "new4k";
  static char buf[65536];
  struct store_params p = {
    /* The filter's defaults (params.h): 256M of dirty data, 256K writes,
     * 50 ms delay, 4 background writers of 16, no drain budget.
     */
    .size = sizeof lower, .nslots = (256 << 20) / STORE_BLOCK_SIZE,
    .batch_blocks = 64,
    .delay_ms = 50, .background_writes = 4, .retry_min_ms = 100,
    .retry_max_ms = 5000, .store_file = argc > 2 ? argv[2] : NULL,
    .store_id = "",
  };
  struct store *s;
  Dl_info info;
  char *errmsg;
  int err, r;

  if (dladdr ((void *) main, &info) == 0) {
    fprintf (stderr, "store-trace: dladdr failed\n");
    return 1;
  }
  base = (uintptr_t) info.dli_fbase;
  out = stdout;
  s = store_create (&p, &errmsg);
  if (s == NULL) {
    fprintf (stderr, "store-trace: %s\n", errmsg);
    return 1;
  }
  memset (buf, 0xab, sizeof buf);
  if (strcmp (scenario, "over4k") == 0)
    store_write (s, buf, 4096, 8192, true, &io, &err);

  tracing = true;
  if (strcmp (scenario, "new4k") == 0 || strcmp (scenario, "over4k") == 0)
    r = store_write (s, buf, 4096, 8192, true, &io, &err);
  else if (strcmp (scenario, "partial") == 0)
    r = store_write (s, buf, 512, 8192 + 1024, true, &io, &err);
  else if (strcmp (scenario, "seq64k") == 0)
    r = store_write (s, buf, 65536, 65536, true, &io, &err);
  else if (strcmp (scenario, "zero64k") == 0)
    r = store_zero (s, 65536, 65536, true, &io, &err);
  else {
    tracing = false;
    fprintf (stderr, "store-trace: unknown scenario '%s'\n", scenario);
    return 2;
  }
  tracing = false;
  if (r == -1) {
    fprintf (stderr, "store-trace: %s failed: %d\n", scenario, err);
    return 1;
  }
  store_stop (s);
  store_free (s);
  return 0;
}
