/* SPDX-License-Identifier: BSD-3-Clause */
/* abd tests: LD_PRELOAD for one process only.
 *
 * Sanitizer builds run nbdkit with the ASan runtime preloaded (the filters
 * need it; nbdkit is not built with it).  Preloaded last, this library
 * takes LD_PRELOAD out of nbdkit's environment once the loader has used
 * it, so the programs nbdkit starts (--run commands, the eval plugin's
 * scripts, Python with libnbd) run as they would without sanitizers.
 * Python, for one, hangs at start with the ASan runtime and libp11-kit
 * preloaded (tests/functions.sh says why libp11-kit is).
 *
 * Built without sanitizer flags, only when ./configure --enable-sanitizers.
 */

#include <stdlib.h>

__attribute__((constructor)) static void
preload_once (void)
{
  unsetenv ("LD_PRELOAD");
}
