/* SPDX-License-Identifier: BSD-3-Clause */
/* nbdkit-memcache-filter: the state file's markers on the servers, the
 * witnesses that tell a state file used once from a copy put back.
 *
 * A state file (state.c) vouches for the cache as a clean stop left it:
 * its epoch, generations and block versions.  It is removed by the start
 * that takes it, so it is used at most once, as long as nobody puts it
 * back.  A backup, a VM or LVM snapshot or a restored image does: then a
 * start resumes versions that later writes had already raised, and a
 * value sealed before those writes authenticates again: a block whose
 * store or delete failed, or that a later cold start wrote under its own
 * epoch, or that a peer recorded and replays, is served old.  Nothing
 * local can tell the copy from the original (a copy brings back
 * whatever local proof there is), so the witness is kept where the
 * cache is, on the servers, which a restore does not put back:
 *
 *   clean stop:   draw a random stop id R; store on every server a
 *                 marker "stopped, R"; write R into the state file
 *                 (authenticated with the rest).
 *   every start:  read every server's marker; the state file is used
 *                 only if every server answers with "stopped, R" for
 *                 the file's R.  Then, warm or cold, and before
 *                 anything is served, replace every marker with
 *                 "in use" (a fresh random id, never saved).
 *
 * So once a start has got as far as serving, a copy of the file it took
 * (or of any earlier one) finds "in use" or a later stop's R on a server
 * it marked, and starts cold.  "Every server", not a majority: the one
 * start in between may have reached only one server; requiring all
 * makes one marked server enough.  A server that is down, lost its
 * memory or evicted the marker, or answers with anything that does not
 * authenticate, is a cold start: every doubt falls on the safe side, at
 * the price of a cold cache.
 *
 * What it cannot see: a start in between that reached no server at all
 * before serving (every server down or unreachable for it) leaves no
 * trace; state.c warns when that happens.  And a peer that can write to
 * the servers, that recorded the "stopped, R" markers before the next
 * start replaced them, can put them back; with a copy of the state file
 * put back as well, that start is warm from the copy, and the peer can
 * then have old blocks served.  It cannot forge a marker for any other
 * R (they are sealed), nor do anything with a replayed marker unless the
 * state file is put back too, which takes someone who can write the
 * state file's directory or restore its backup.
 *
 * Marker name:  "abdm:" + base64url (the first 16 bytes of
 *               HMAC-SHA256 (secret, label || id_hash)): one per device
 *               (memcache-id) and key file, the same on every server;
 *               it tells nobody without the secret which device it is.
 * Marker value: offset  size
 *                    0     4  magic "ABDk"
 *                    4    12  nonce (random: a few seals per start)
 *                   16    17  AES-256-GCM (kind: 1 stopped, 2 in use;
 *                             the 16-byte id)
 *                   33    16  GCM tag
 *               The associated data binds the magic, the format, the
 *               device (id_hash) and the server's place in
 *               memcache-servers, so a marker is accepted only for the
 *               server and device it was sealed for.
 * Markers are stored with no expiry; memcached may still evict one,
 * which is a cold start.
 */

#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <nbdkit-filter.h>

#include "conn.h"
#include "le.h"
#include "marker.h"
#include "meta.h"

#define MARKER_FORMAT 1
#define MARKER_NONCE_SIZE 12
#define MARKER_PLAIN_SIZE (1 + MARKER_STOP_ID_SIZE)
#define MARKER_TAG_SIZE 16
#define MARKER_VALUE_SIZE (4 + MARKER_NONCE_SIZE + MARKER_PLAIN_SIZE + \
                           MARKER_TAG_SIZE)
#define MARKER_AD_SIZE 20
#define MARKER_NAME_LEN 27      /* "abdm:" + 22 base64url digits */
/* Each server's read or store at start or stop: long enough for a busy
 * machine, since a timeout here costs a warm start.
 */
#define MARKER_TIMEOUT_MS 1000

enum marker_kind {
  MARKER_STOPPED = 1,
  MARKER_IN_USE = 2,
};

static const char marker_magic[4] = { 'A', 'B', 'D', 'k' };
static const char marker_b64[] =
  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Set by marker_init; used in nbdkit's single-threaded phases (.after_fork,
 * .unload), and by one change of the pool at a time (servers.c, under
 * the pool's change lock; the control thread is stopped before .unload).
 * marker_reason is only written by marker_check, at start.
 */
static bool marker_ready;
static uint64_t marker_id_hash;
static unsigned char marker_key[32];
static char marker_name[MARKER_NAME_LEN + 1];
static char marker_reason[256];

/* OUT = HMAC-SHA256 (SECRET, LABEL || id_hash). */
static int
marker_derive (unsigned char out[32],
               const unsigned char secret[VALUE_SECRET_SIZE],
               const char *label, uint64_t id_hash)
{
  unsigned char msg[64];
  size_t label_len = strlen (label);
  unsigned int len = 32;

  memcpy (msg, label, label_len);
  le_put (msg + label_len, id_hash, 8);
  if (HMAC (EVP_sha256 (), secret, VALUE_SECRET_SIZE, msg, label_len + 8,
            out, &len) == NULL || len != 32) {
    nbdkit_error ("memcache-state-file: deriving the marker's %s failed",
                  label);
    return -1;
  }
  return 0;
}

int
marker_init (const unsigned char secret[VALUE_SECRET_SIZE], uint64_t id_hash)
{
  unsigned char name[32];
  uint32_t bits = 0;
  int i, nbits = 0;
  char *p;

  if (marker_derive (marker_key, secret, "abd memcache marker key",
                     id_hash) == -1 ||
      marker_derive (name, secret, "abd memcache marker name",
                     id_hash) == -1)
    return -1;
  memcpy (marker_name, "abdm:", 5);
  p = marker_name + 5;
  for (i = 0; i < 16; i++) {
    bits = bits << 8 | name[i];
    nbits += 8;
    while (nbits >= 6) {
      nbits -= 6;
      *p++ = marker_b64[(bits >> nbits) & 63];
    }
  }
  *p++ = marker_b64[(bits << (6 - nbits)) & 63];
  *p = '\0';
  marker_id_hash = id_hash;
  marker_ready = true;
  return 0;
}

void
marker_free (void)
{
  OPENSSL_cleanse (marker_key, sizeof marker_key);
  marker_ready = false;
}

static void
marker_ad (unsigned char ad[MARKER_AD_SIZE], size_t server)
{
  memcpy (ad, marker_magic, 4);
  le_put (ad + 4, MARKER_FORMAT, 4);
  le_put (ad + 8, marker_id_hash, 8);
  le_put (ad + 16, server, 4);
}

/* Seal KIND and ID for SERVER into OUT (MARKER_VALUE_SIZE bytes). */
static int
marker_seal (unsigned char out[MARKER_VALUE_SIZE], size_t server,
             enum marker_kind kind,
             const unsigned char id[MARKER_STOP_ID_SIZE])
{
  unsigned char ad[MARKER_AD_SIZE], plain[MARKER_PLAIN_SIZE];
  unsigned char *nonce = out + 4, *body = nonce + MARKER_NONCE_SIZE;
  EVP_CIPHER_CTX *c;
  int len, fin, ok;

  if (!marker_ready ||
      getrandom (nonce, MARKER_NONCE_SIZE, 0) != MARKER_NONCE_SIZE)
    return -1;
  memcpy (out, marker_magic, 4);
  marker_ad (ad, server);
  plain[0] = kind;
  memcpy (plain + 1, id, MARKER_STOP_ID_SIZE);
  c = EVP_CIPHER_CTX_new ();
  ok = c != NULL &&
    EVP_EncryptInit_ex (c, EVP_aes_256_gcm (), NULL, NULL, NULL) == 1 &&
    EVP_CIPHER_CTX_ctrl (c, EVP_CTRL_GCM_SET_IVLEN, MARKER_NONCE_SIZE,
                         NULL) == 1 &&
    EVP_EncryptInit_ex (c, NULL, NULL, marker_key, nonce) == 1 &&
    EVP_EncryptUpdate (c, NULL, &len, ad, sizeof ad) == 1 &&
    EVP_EncryptUpdate (c, body, &len, plain, sizeof plain) == 1 &&
    len == MARKER_PLAIN_SIZE &&
    EVP_EncryptFinal_ex (c, body + len, &fin) == 1 &&
    EVP_CIPHER_CTX_ctrl (c, EVP_CTRL_GCM_GET_TAG, MARKER_TAG_SIZE,
                         body + MARKER_PLAIN_SIZE) == 1;
  EVP_CIPHER_CTX_free (c);
  return ok ? 0 : -1;
}

/* Open VALUE (LEN bytes, from SERVER: hostile) into *KIND and ID; false
 * if it is not a marker sealed for this device and server.
 */
static bool
marker_open (const unsigned char *value, size_t len, size_t server,
             enum marker_kind *kind, unsigned char id[MARKER_STOP_ID_SIZE])
{
  unsigned char ad[MARKER_AD_SIZE], plain[MARKER_PLAIN_SIZE];
  unsigned char tag[MARKER_TAG_SIZE];
  const unsigned char *nonce = value + 4, *body = nonce + MARKER_NONCE_SIZE;
  EVP_CIPHER_CTX *c;
  int outlen, fin;
  bool ok;

  if (!marker_ready || len != MARKER_VALUE_SIZE ||
      memcmp (value, marker_magic, 4) != 0)
    return false;
  marker_ad (ad, server);
  /* SET_TAG takes a non-const pointer. */
  memcpy (tag, body + MARKER_PLAIN_SIZE, MARKER_TAG_SIZE);
  c = EVP_CIPHER_CTX_new ();
  ok = c != NULL &&
    EVP_DecryptInit_ex (c, EVP_aes_256_gcm (), NULL, NULL, NULL) == 1 &&
    EVP_CIPHER_CTX_ctrl (c, EVP_CTRL_GCM_SET_IVLEN, MARKER_NONCE_SIZE,
                         NULL) == 1 &&
    EVP_DecryptInit_ex (c, NULL, NULL, marker_key, nonce) == 1 &&
    EVP_DecryptUpdate (c, NULL, &outlen, ad, sizeof ad) == 1 &&
    EVP_DecryptUpdate (c, plain, &outlen, body, MARKER_PLAIN_SIZE) == 1 &&
    outlen == MARKER_PLAIN_SIZE &&
    EVP_CIPHER_CTX_ctrl (c, EVP_CTRL_GCM_SET_TAG, MARKER_TAG_SIZE,
                         tag) == 1 &&
    EVP_DecryptFinal_ex (c, plain + outlen, &fin) == 1;
  EVP_CIPHER_CTX_free (c);
  if (!ok || (plain[0] != MARKER_STOPPED && plain[0] != MARKER_IN_USE)) {
    OPENSSL_cleanse (plain, sizeof plain);
    return false;
  }
  *kind = plain[0];
  memcpy (id, plain + 1, MARKER_STOP_ID_SIZE);
  return true;
}

static int64_t
marker_deadline (void)
{
  return mcx_now_ns () + MARKER_TIMEOUT_MS * INT64_C (1000000);
}

bool
marker_check (const struct ring *ring,
              const unsigned char stop_id[MARKER_STOP_ID_SIZE],
              const char **reason)
{
  size_t i;

  for (i = 0; i < ring->n; i++) {
    const struct ring_server *srv = &ring->servers[i];
    struct conn_oneshot o = { .key = marker_name,
                              .key_len = MARKER_NAME_LEN };
    unsigned char id[MARKER_STOP_ID_SIZE];
    enum marker_kind kind;
    const char *why = NULL;

    /* Twice the marker's size: a longer value is a protocol error. */
    if (conn_oneshot (srv, &o, 2 * MARKER_VALUE_SIZE, marker_deadline ())
        == -1)
      snprintf (marker_reason, sizeof marker_reason,
                "the state marker on server %s could not be read (%s)",
                srv->name, o.why);
    else if (o.refused)
      why = "could not be read (SERVER_ERROR)";
    else if (!o.found)
      why = "is missing (the server was flushed or restarted, or "
        "evicted it)";
    else if (!marker_open (o.got, o.got_len, i, &kind, id))
      why = "does not authenticate (damaged, forged, or for another "
        "server)";
    else if (kind == MARKER_IN_USE)
      why = "says a start has used the state since this state file "
        "was written (a copy put back?)";
    else if (CRYPTO_memcmp (id, stop_id, MARKER_STOP_ID_SIZE) != 0)
      why = "is from another clean stop than this state file's (a copy "
        "put back?)";
    else {
      free (o.got);
      nbdkit_debug ("memcache-state-file: server %s holds this state "
                    "file's stop marker", srv->name);
      continue;
    }
    free (o.got);
    if (why)
      snprintf (marker_reason, sizeof marker_reason,
                "the state marker on server %s %s", srv->name, why);
    *reason = marker_reason;
    return false;
  }
  return true;
}

/* Store a marker of KIND with ID on every server of RING; returns how
 * many took it, or -1 if no marker could be sealed.
 */
static int
marker_store_all (const struct ring *ring, enum marker_kind kind,
                  const unsigned char id[MARKER_STOP_ID_SIZE])
{
  unsigned char value[MARKER_VALUE_SIZE];
  size_t i;
  int stored = 0;

  for (i = 0; i < ring->n; i++) {
    const struct ring_server *srv = &ring->servers[i];
    struct conn_oneshot o = { .key = marker_name,
                              .key_len = MARKER_NAME_LEN,
                              .value = value,
                              .value_len = sizeof value };

    if (marker_seal (value, i, kind, id) == -1)
      return -1;
    if (conn_oneshot (srv, &o, 0, marker_deadline ()) == 0 && !o.refused) {
      stored++;
      continue;
    }
    nbdkit_debug ("memcache-state-file: server %s did not take the %s "
                  "marker (%s)", srv->name,
                  kind == MARKER_STOPPED ? "stop" : "in-use",
                  o.refused ? "refused" : o.why);
  }
  return stored;
}

size_t
marker_set_in_use (const struct ring *ring)
{
  unsigned char id[MARKER_STOP_ID_SIZE];
  int stored;

  if (getrandom (id, sizeof id, 0) != sizeof id)
    return 0;
  stored = marker_store_all (ring, MARKER_IN_USE, id);
  return stored > 0 ? stored : 0;
}

int
marker_set_stopped (const struct ring *ring,
                    unsigned char stop_id[MARKER_STOP_ID_SIZE])
{
  int stored;

  if (getrandom (stop_id, MARKER_STOP_ID_SIZE, 0) != MARKER_STOP_ID_SIZE) {
    nbdkit_error ("memcache-state-file: getrandom: %m");
    return -1;
  }
  stored = marker_store_all (ring, MARKER_STOPPED, stop_id);
  if (stored == -1)
    nbdkit_error ("memcache-state-file: sealing the stop marker failed");
  return stored;
}
