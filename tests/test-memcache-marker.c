/* SPDX-License-Identifier: BSD-3-Clause */
/* abd: unit test of the state file's markers on the servers
 * (filters/memcache/marker.c), against what marker.h promises, over
 * servers faked in memory (conn_oneshot is this file's).
 *
 * A start is told to be warm only if every server holds the stop marker
 * with the state file's stop id: not after "in use" replaced it on any
 * one server, not with another stop's id, not when one server lost its
 * marker, cannot be reached or answers SERVER_ERROR, not when a marker
 * has any byte flipped, is cut or extended, was moved from another
 * server, or was sealed for another device or with another secret.
 * Devices and secrets have markers of their own names.  A store a server
 * refuses is not counted.
 *
 * Usage: test-memcache-marker
 */

#include <config.h>

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nbdkit-filter.h>

#include "conn.h"
#include "marker.h"
#include "meta.h"

#define UNIT_NAME "test-memcache-marker"
#include "unit-check.h"

#define SERVERS 3
#define VALUE_MAX 256

void
nbdkit_debug (const char *fs, ...)
{
}

int64_t
mcx_now_ns (void)
{
  return 0;
}

/* The fake servers: one key each is all the markers need. */
static struct {
  char key[64];
  unsigned char value[VALUE_MAX];
  size_t len;                   /* 0: no item */
  bool down;                    /* connection refused */
  bool server_error;            /* answers SERVER_ERROR */
} fake[SERVERS];

static struct ring_server servers[SERVERS] = {
  { .name = (char *) "s0" }, { .name = (char *) "s1" },
  { .name = (char *) "s2" },
};
static const struct ring ring = { .servers = servers, .n = SERVERS };

int
conn_oneshot (const struct ring_server *server, struct conn_oneshot *o,
              size_t max_value, int64_t deadline_ns)
{
  size_t i = server - servers;

  o->connected = o->found = o->refused = false;
  o->got = NULL;
  o->got_len = 0;
  if (fake[i].down) {
    snprintf (o->why, sizeof o->why, "connection refused");
    return -1;
  }
  o->connected = true;
  if (fake[i].server_error) {
    o->refused = true;
    return 0;
  }
  if (o->value) {
    if (o->value_len > VALUE_MAX) {
      o->refused = true;
      return 0;
    }
    snprintf (fake[i].key, sizeof fake[i].key, "%.*s", (int) o->key_len,
              o->key);
    memcpy (fake[i].value, o->value, o->value_len);
    fake[i].len = o->value_len;
    return 0;
  }
  if (fake[i].len == 0 || strlen (fake[i].key) != o->key_len ||
      memcmp (fake[i].key, o->key, o->key_len) != 0)
    return 0;
  if (fake[i].len > max_value) {
    snprintf (o->why, sizeof o->why, "protocol error");
    return -1;
  }
  o->got = malloc (fake[i].len);
  memcpy (o->got, fake[i].value, fake[i].len);
  o->got_len = fake[i].len;
  o->found = true;
  return 0;
}

static const unsigned char secret[VALUE_SECRET_SIZE] =
  "abd test secret, 32 bytes long!";
static const unsigned char secret2[VALUE_SECRET_SIZE] =
  "another secret, 32 bytes long!!";
#define ID_HASH 0x0123456789abcdefULL

/* Check the markers against ID: WANT (warm or not), and the reason has
 * WHY in it.
 */
static void
expect (const unsigned char id[MARKER_STOP_ID_SIZE], bool want,
        const char *why, const char *what)
{
  const char *reason = "";
  bool got = marker_check (&ring, id, &reason);

  CHECK (got == want, "%s: marker_check %d, expected %d (%s)", what, got,
         want, reason);
  if (!want && why)
    CHECK (strstr (reason, why) != NULL, "%s: reason '%s', expected '%s'",
           what, reason, why);
}

int
main (void)
{
  unsigned char id[MARKER_STOP_ID_SIZE], id2[MARKER_STOP_ID_SIZE];
  unsigned char saved[VALUE_MAX];
  size_t i, j, len;
  char name[64];

  CHECK (marker_init (secret, ID_HASH) == 0, "marker_init");

  /* Nothing stored yet: missing. */
  memset (id, 0, sizeof id);
  expect (id, false, "is missing", "no marker");

  /* A stop, then its check: warm. */
  CHECK (marker_set_stopped (&ring, id) == SERVERS, "stored on all");
  expect (id, true, NULL, "the stop's own id");
  CHECK (strncmp (fake[0].key, "abdm:", 5) == 0 &&
         strlen (fake[0].key) == 27, "marker name '%s'", fake[0].key);
  CHECK (strcmp (fake[0].key, fake[1].key) == 0, "one name on every server");
  /* Another stop's id; a later stop. */
  memcpy (id2, id, sizeof id2);
  id2[5] ^= 1;
  expect (id2, false, "another clean stop", "another id");
  CHECK (marker_set_stopped (&ring, id2) == SERVERS, "a second stop");
  CHECK (memcmp (id, id2, sizeof id) != 0, "stop ids are drawn anew");
  expect (id, false, "another clean stop", "an older stop's id");
  expect (id2, true, NULL, "the later stop's id");

  /* "In use" on one server only is enough. */
  memcpy (saved, fake[1].value, fake[1].len);
  len = fake[1].len;
  fake[0].down = fake[2].down = true;
  CHECK (marker_set_in_use (&ring) == 1, "in use on the one server up");
  fake[0].down = fake[2].down = false;
  expect (id2, false, "says a start has used the state", "one in use");
  /* A peer puts the recorded stop marker back: warm again (the limit
   * the man page states: it takes the state file put back as well).
   */
  memcpy (fake[1].value, saved, len);
  expect (id2, true, NULL, "the recorded marker replayed");

  /* Every byte flipped, one at a time; cut; extended. */
  for (j = 0; j < len; j++) {
    fake[2].value[j] ^= 0x40;
    expect (id2, false, "does not authenticate", "a flipped byte");
    fake[2].value[j] ^= 0x40;
  }
  fake[2].len = len - 1;
  expect (id2, false, "does not authenticate", "cut short");
  fake[2].len = len + 1;
  expect (id2, false, "does not authenticate", "extended");
  fake[2].len = len;
  expect (id2, true, NULL, "put right");

  /* Moved from another server (the same stop id): refused. */
  memcpy (saved, fake[2].value, len);
  memcpy (fake[2].value, fake[0].value, len);
  expect (id2, false, "does not authenticate", "moved from server 0");
  memcpy (fake[2].value, saved, len);

  /* One server down, answering SERVER_ERROR, or flushed. */
  fake[1].down = true;
  expect (id2, false, "could not be read", "a server down");
  fake[1].down = false;
  fake[1].server_error = true;
  expect (id2, false, "could not be read", "SERVER_ERROR");
  CHECK (marker_set_stopped (&ring, id) == SERVERS - 1,
         "a refused store is not counted");
  fake[1].server_error = false;
  CHECK (marker_set_stopped (&ring, id) == SERVERS, "stored on all again");
  fake[2].len = 0;
  expect (id, false, "is missing", "a server flushed");
  CHECK (marker_set_stopped (&ring, id) == SERVERS, "stored on all again");

  /* Another device, another secret: other names; and a marker sealed
   * for another device under this one's name does not authenticate.
   */
  snprintf (name, sizeof name, "%s", fake[0].key);
  marker_free ();
  CHECK (marker_init (secret, ID_HASH + 1) == 0, "marker_init, device 2");
  expect (id, false, "is missing", "another device");
  CHECK (marker_set_stopped (&ring, id2) == SERVERS, "device 2's stop");
  CHECK (strcmp (fake[0].key, name) != 0, "another device, another name");
  for (i = 0; i < SERVERS; i++)
    snprintf (fake[i].key, sizeof fake[i].key, "%s", name);
  marker_free ();
  CHECK (marker_init (secret, ID_HASH) == 0, "marker_init, device 1");
  expect (id2, false, "does not authenticate", "device 2's marker");
  marker_free ();
  CHECK (marker_init (secret2, ID_HASH) == 0, "marker_init, secret 2");
  CHECK (marker_set_stopped (&ring, id) == SERVERS, "secret 2's stop");
  CHECK (strcmp (fake[0].key, name) != 0, "another secret, another name");
  for (i = 0; i < SERVERS; i++)
    snprintf (fake[i].key, sizeof fake[i].key, "%s", name);
  marker_free ();
  CHECK (marker_init (secret, ID_HASH) == 0, "marker_init, secret 1");
  expect (id, false, "does not authenticate", "secret 2's marker");
  marker_free ();
  return unit_summary ();
}
