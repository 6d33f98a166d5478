/* SPDX-License-Identifier: BSD-3-Clause */
/* abd: what abdctl's files share: asking a control socket, the parsed
 * answer, and the three ways of showing it (human-readable status, flush
 * progress, Prometheus metrics).
 *
 * Files: abdctl.c (options, which socket, the commands), answer.c (one
 * request on a control socket; the text body parsed into fields), show.c
 * (status for people), progress.c (flush --progress), metrics.c
 * (abdctl metrics).
 */

#ifndef ABDCTL_H
#define ABDCTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Exit statuses (abdctl(1), EXIT STATUS). */
#define EXIT_OK     0           /* the filter answered OK */
#define EXIT_ERR    1           /* the filter answered ERR */
#define EXIT_FAILED 2           /* usage error, or the request failed */

/* The default control sockets: where abd.service puts them. */
#define ASYNC_SOCKET    "/run/abd/async.ctl"
#define MEMCACHE_SOCKET "/run/abd/memcache.ctl"

/* One answer of a filter. */
struct answer {
  char *body;                   /* lines before the last one (malloc'd) */
  char *error;                  /* the text after "ERR ", or NULL on OK */
};

/* Connect to PATH and send REQUEST (one line, with its '\n').  Returns
 * the socket, or -1 after a message on ERR (none if ERR is NULL).
 */
int ask_send (const char *path, const char *request, FILE *err);

/* Read the whole answer from FD (closed).  Returns EXIT_OK, EXIT_ERR (the
 * message in a->error) or EXIT_FAILED after a message on ERR.
 */
int ask_receive (int fd, const char *path, struct answer *a, FILE *err);

/* ask_send and ask_receive. */
int ask (const char *path, const char *request, struct answer *a,
         FILE *err);
void answer_free (struct answer *a);

/* A text body ("name: value" lines, nested objects indented by two
 * spaces under a "name:" line) as a list of fields in answer order.
 */
struct field {
  int depth;                    /* 0 at top level */
  const char *name;
  const char *value;            /* NULL: the heading of a nested object */
  bool used;                    /* show.c: already printed */
};
struct fields {
  struct field *f;
  size_t n;
};

/* Parse BODY, in place (the fields point into it).  Returns -1 if a line
 * is not a field.
 */
int fields_parse (char *body, struct fields *fs);
void fields_free (struct fields *fs);

/* A nested object's fields are a slice of its parent's: { &f[i + 1], n }
 * for the object headed by f[i] with the n fields below it.
 */

/* Fields by name, at the depth of the first field (the top level of a
 * slice); marked used.  fields_u64 and fields_i64
 * return false when the field is missing or not a number.
 */
const char *fields_str (struct fields *fs, const char *name);
bool fields_u64 (struct fields *fs, const char *name, uint64_t *v);
bool fields_i64 (struct fields *fs, const char *name, int64_t *v);

/* Which filter answered a status request, told by its fields. */
enum layer { LAYER_UNKNOWN, LAYER_ASYNC, LAYER_MEMCACHE };
enum layer layer_of (const struct fields *fs);
const char *layer_name (enum layer layer);

/* show.c: sizes and rates for people. */
#define SIZE_BUF 64
const char *fmt_size (char *buf, uint64_t bytes);       /* "1.5 MiB" */
const char *fmt_size_raw (char *buf, uint64_t bytes);   /* "1.5 MiB (1572864 bytes)" */
void show_status (FILE *fp, struct fields *fs, enum layer layer);

/* progress.c: send REQUEST (a flush) to PATH; while it waits, poll status
 * every INTERVAL seconds on other connections and show the drain on
 * stdout.  Returns an exit status.
 */
int progress_flush (const char *path, const char *request, double interval);

/* metrics.c: one layer's status in the Prometheus text format.  Call
 * metrics_print once with every layer, so that each metric's HELP and
 * TYPE come once, before all its samples.
 */
struct layer_status {
  enum layer layer;
  bool up;                      /* answered: fs holds its status */
  struct fields fs;
};
void metrics_print (FILE *fp, struct layer_status *ls, size_t n);

#endif /* ABDCTL_H */
