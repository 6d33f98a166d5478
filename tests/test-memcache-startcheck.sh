#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-memcache-filter: the check at start asks each server in the
# protocol in use.  With memcache-protocol=text, neither a real memcached
# nor a server that speaks the text protocol only (a proxy, say:
# memcached_hostile.py text ... honest, which answers ERROR to a meta
# command) is warned about: before, the check was always the meta no-op
# "mn", and the text-only server got "does not answer at start" at every
# start.  With the meta protocol, the text-only server is warned about
# (the filter would fail to talk to it), and a real memcached is not.
# nbdkit -f, stderr to a file, no -v: what an operator sees.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-memcache-helpers.sh"

start_memcached real
real=127.0.0.1:$mc_port
rm -f "$tmp/port"
python3 "$abs_top_srcdir/tests/memcached_hostile.py" text "$tmp/port" \
    "$tmp/attacks" honest >"$tmp/textonly.log" 2>&1 &
textonly_pid=$!
cleanup_fn kill_wait "$textonly_pid" 10
wait_for 10 test -s "$tmp/port" || fail "the text-only server did not start"
textonly=127.0.0.1:$(cat "$tmp/port")
head -c 1M /dev/urandom > "$tmp/img"
log=$tmp/nbdkit.err

# run PROTOCOL SERVER: start nbdkit in the foreground over SERVER, read
# the whole device (it must equal the image), stop it; its stderr is in
# $log.
run ()
{
    local n
    rm -f "$tmp/mc.sock"
    : > "$log"
    nbdkit -f -U "$tmp/mc.sock" --filter="$MEMCACHE_FILTER" file "$tmp/img" \
        memcache-servers="$2" memcache-id=startcheck-test \
        memcache-protocol="$1" memcache-timeout=500 2>"$log" &
    n=$!
    cleanup_fn kill_wait "$n"
    wait_for 20 test -S "$tmp/mc.sock" || fail "nbdkit ($1, $2) did not start"
    nbdcopy --no-extents "nbd+unix:///?socket=$tmp/mc.sock" "$tmp/out"
    cmp "$tmp/img" "$tmp/out" || fail "$1, $2: a read differs from the image"
    kill_wait "$n" || fail "nbdkit ($1, $2) had to be killed"
}

for server in "$real" "$textonly"; do
    run text "$server"
    [ ! -s "$log" ] || { cat "$log"; fail "text protocol, $server: messages at start"; }
done

run meta "$real"
[ ! -s "$log" ] || { cat "$log"; fail "meta protocol, $real: messages at start"; }
run meta "$textonly"
grep -F "server $textonly does not answer at start" "$log" ||
    { cat "$log"; fail "meta protocol: no warning for the text-only $textonly"; }
echo "$0: OK"
