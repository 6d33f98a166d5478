/* SPDX-License-Identifier: BSD-3-Clause */
/* abd: the control channel both filters serve on a Unix socket.
 *
 * Protocol (also in abdctl(1)).  The client sends one request line: words
 * separated by single spaces, at most CTL_MAX_LINE bytes including the
 * final '\n'.  The line must be complete within 5 s of connecting.
 * A last word "--json" asks for the reply body as one JSON object.  The server
 * answers with body lines and then exactly one final line, "OK" or
 * "ERR <message>", and closes the connection.  One request per connection.
 *
 * The filter supplies one handler.  It is called on the control thread with
 * the words of the request and fills a reply: fields (name, value), nested
 * objects, or an error.  The reply renders itself as "name: value" text or as
 * JSON, so every field is written once and appears identically in both.
 */

#ifndef ABD_CONTROL_H
#define ABD_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CTL_MAX_LINE 1024
#define CTL_MAX_WORDS 16

struct ctl_reply;
struct ctl_server;

/* Called for every request.  argv[0] is the command.  Return 0 after
 * filling the reply, or -1 after ctl_reply_error.
 */
typedef int (*ctl_handler) (void *opaque, int argc, char **argv,
                            struct ctl_reply *reply);

/* Bind and listen on PATH (a stale socket there is replaced; anything
 * else there is an error).  Call it in .get_ready, so that a bad path
 * stops nbdkit before it forks.  Returns NULL after nbdkit_error, whose
 * message names the parameter KEY.
 */
struct ctl_server *ctl_listen (const char *key, const char *path);

/* Serve requests on a new thread; call it in .after_fork.  Returns -1
 * after nbdkit_error.
 */
int ctl_serve (struct ctl_server *server, ctl_handler handler, void *opaque);

/* Stop serving, wait for requests in progress, remove the socket.  Also
 * frees a server that was never served.  NULL is ignored.
 */
void ctl_stop (struct ctl_server *server);

/* Split LINE (LEN bytes, without the '\n') into words, in place.  Sets
 * *JSON when the last word is "--json" (and drops it).  Returns the number
 * of words, or -1 if the line is empty, too long, holds a byte that is not
 * printable ASCII, has an empty word (words are separated by exactly one
 * space), or has more than CTL_MAX_WORDS words.
 */
int ctl_parse_request (char *line, size_t len, char **argv, bool *json);

/* A number argument: WORD must be decimal digits only (no sign, no space,
 * no suffix) with a value from 0 to MAX.  Returns 0 and sets *OUT, or -1.
 */
int ctl_parse_uint (const char *word, unsigned max, unsigned *out);

/* Building a reply.  Names are lower_case identifiers. */
void ctl_reply_u64 (struct ctl_reply *r, const char *name, uint64_t v);
void ctl_reply_i64 (struct ctl_reply *r, const char *name, int64_t v);
void ctl_reply_double (struct ctl_reply *r, const char *name, double v);
void ctl_reply_bool (struct ctl_reply *r, const char *name, bool v);
void ctl_reply_str (struct ctl_reply *r, const char *name, const char *v);
void ctl_reply_begin (struct ctl_reply *r, const char *name);
void ctl_reply_end (struct ctl_reply *r);
void ctl_reply_error (struct ctl_reply *r, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));

/* For tests and fuzzing: run HANDLER on one request line as the server
 * would and return the whole response text (malloc'd).
 */
char *ctl_respond (const char *line, size_t len, ctl_handler handler,
                   void *opaque);

#endif /* ABD_CONTROL_H */
