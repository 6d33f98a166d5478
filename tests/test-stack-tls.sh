#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The whole stack exported over TCP the way abd(7) SECURITY says to:
# nbdkit --tls=require with a pre-shared key.  A client without TLS is
# refused; a client with the key reads and writes exactly.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-memcache-helpers.sh"
requires nbdcopy nbdinfo

start_memcached tls
port=$(free_port)
# nbdkit's PSK file: USERNAME:HEX-KEY per line, private.
(umask 077; printf 'alice:%s\n' "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
    > "$tmp/keys.psk")

head -c $(( 4 << 20 )) /dev/urandom > "$tmp/img"
cp "$tmp/img" "$tmp/expected"
nbdkit -P "$tmp/nbdkit.pid" -i 127.0.0.1 -p "$port" \
    --tls=require --tls-psk="$tmp/keys.psk" \
    --filter="$ASYNC_FILTER" --filter="$MEMCACHE_FILTER" file "$tmp/img" \
    memcache-servers="127.0.0.1:$mc_port" memcache-id=tls-test
wait_for 10 test -s "$tmp/nbdkit.pid" || fail "nbdkit did not start"
pid=$(cat "$tmp/nbdkit.pid")
cleanup_fn kill_wait "$pid"

plain="nbd://127.0.0.1:$port/"
tls="nbds://alice@127.0.0.1:$port/?tls-psk-file=$tmp/keys.psk"
wait_for 10 nbdinfo --size "$tls" >/dev/null || fail "TLS client refused"

# Without TLS: refused, and nothing read.
if nbdcopy "$plain" "$tmp/plain-out" 2>"$tmp/plain.err"; then
    fail "a client without TLS could read the device"
fi
# With the wrong key: refused.
(umask 077; printf 'alice:%s\n' "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
    > "$tmp/wrong.psk")
if nbdinfo --size "nbds://alice@127.0.0.1:$port/?tls-psk-file=$tmp/wrong.psk" \
       >/dev/null 2>&1; then
    fail "a client with the wrong key was let in"
fi

# With the key: write 1 MiB at 1 MiB, read everything back.
head -c $(( 1 << 20 )) /dev/urandom > "$tmp/part"
dd if="$tmp/part" of="$tmp/expected" bs=1M seek=1 conv=notrunc status=none
nbdcopy "$tmp/expected" "$tls" || fail "writing over TLS failed"
nbdcopy "$tls" "$tmp/out" || fail "reading over TLS failed"
cmp "$tmp/expected" "$tmp/out" || fail "read over TLS differs"
kill_wait "$pid" 60 || fail "nbdkit had to be killed"
cmp "$tmp/expected" "$tmp/img" || fail "image differs after the stop"
echo "$0: OK"
