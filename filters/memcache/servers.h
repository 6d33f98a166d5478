/* SPDX-License-Identifier: BSD-3-Clause */
/* nbdkit-memcache-filter: changing the pool while nbdkit runs (abdctl
 * servers), and memcache-servers-file.
 */

#ifndef MEMCACHE_SERVERS_H
#define MEMCACHE_SERVERS_H

#include <stdbool.h>
#include <stddef.h>

#include "control.h"

/* What the changes need (memcache.c fills it in, in .after_fork). */
struct servers_settings {
  const char *file;             /* memcache-servers-file, or NULL */
  bool markers;                 /* mark a joining server "in use"
                                   (marker.h: the keys are set up) */
};
extern void servers_init (const struct servers_settings *settings);

/* Read PATH (one server per line; blank lines and # comments ignored)
 * into *LIST, "NAME,NAME,..." (malloc'd), as memcache-servers= would be
 * written.  Returns 0, or -1 with WHY (WHY_LEN bytes) saying why.  The
 * names are not checked here (ring_parse does).
 */
extern int servers_file_read (const char *path, char **list, char *why,
                              size_t why_len);

/* The control commands "servers", "servers add NAME", "servers remove
 * NAME", "servers reload" (ARGV[0] is "servers").
 */
extern int servers_control (int argc, char **argv, struct ctl_reply *reply);

#endif /* MEMCACHE_SERVERS_H */
