#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Control sockets (common/control.c) are private: mode 0600 and owned by
# nbdkit's user whatever the umask, for both filters; another user cannot
# connect, root can.  The mode is set at bind, not by a chmod of the path
# afterwards: when someone swaps the new socket for a symlink right after
# bind (simulated by an LD_PRELOAD shim around bind), the symlink's target
# keeps its mode and nbdkit refuses to start.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-helpers.sh"
requires cc setpriv timeout

umask 000
# Let another user reach $tmp/pub, so that only the socket's own mode
# keeps it out.
chmod 0711 "$tmp"
mkdir -m 0755 "$tmp/pub"
truncate -s 1M "$tmp/disk"
async_start m --filter="$ASYNC_FILTER" --filter="$MEMCACHE_FILTER" \
    file "$tmp/disk" async-control="$tmp/pub/async.ctl" \
    memcache-servers=127.0.0.1:1 memcache-id=m \
    memcache-control="$tmp/pub/mc.ctl"
wait_for 10 test -S "$tmp/pub/mc.ctl" || fail "no memcache control socket"

for c in async.ctl mc.ctl; do
    got=$(stat -c '%a %u %F' "$tmp/pub/$c")
    [ "$got" = "600 $(id -u) socket" ] ||
        fail "$c: mode, owner, type '$got', expected '600 $(id -u) socket'"
    abdctl -s "$tmp/pub/$c" status >/dev/null || fail "$c: status as $(id -un)"
    rc=0
    setpriv --reuid=nobody --regid=nogroup --clear-groups \
        "$ABDCTL" -s "$tmp/pub/$c" status >"$tmp/out" 2>&1 || rc=$?
    [ "$rc" -eq 2 ] && grep -q 'Permission denied' "$tmp/out" ||
        fail "$c: user nobody got exit $rc: $(cat "$tmp/out")"
done

# The swap.  (Skipped in sanitizer runs: there nbdkit is a wrapper that
# sets LD_PRELOAD itself.)
if [ -n "${ABD_SANITIZER_PRELOAD:-}" ]; then
    echo "$0: OK (without the symlink swap: sanitizer run)"
    exit 0
fi
cat > "$tmp/swap.c" <<'CEOF'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* bind, then replace the socket at $SWAP_PATH by a symlink to $SWAP_TARGET. */
int
bind (int fd, const struct sockaddr *addr, socklen_t len)
{
  int (*real_bind) (int, const struct sockaddr *, socklen_t) =
    dlsym (RTLD_NEXT, "bind");
  const char *path = getenv ("SWAP_PATH"), *target = getenv ("SWAP_TARGET");
  int r = real_bind (fd, addr, len);

  if (r == 0 && path && target && addr->sa_family == AF_UNIX &&
      strcmp (((const struct sockaddr_un *) addr)->sun_path, path) == 0 &&
      (unlink (path) == -1 || symlink (target, path) == -1))
    abort ();
  return r;
}
CEOF
cc -shared -fPIC -o "$tmp/swap.so" "$tmp/swap.c" -ldl || fail "cannot build the shim"
touch "$tmp/victim"
chmod 0644 "$tmp/victim"
rc=0
LD_PRELOAD=$tmp/swap.so SWAP_PATH=$tmp/pub/swap.ctl SWAP_TARGET=$tmp/victim \
    timeout 60 nbdkit -U "$tmp/swap.sock" --filter="$ASYNC_FILTER" memory 1M \
    async-control="$tmp/pub/swap.ctl" --run true >"$tmp/swap.out" 2>&1 || rc=$?
[ "$(stat -c %a "$tmp/victim")" = 644 ] ||
    fail "the symlink's target got mode $(stat -c %a "$tmp/victim")"
[ -L "$tmp/pub/swap.ctl" ] ||
    fail "the shim did not swap the socket, or nbdkit removed the symlink"
[ "$rc" -ne 0 ] && grep -q 'async-control=.*swap.ctl' "$tmp/swap.out" ||
    fail "nbdkit served on a swapped socket (exit $rc): $(cat "$tmp/swap.out")"
echo "$0: OK"
