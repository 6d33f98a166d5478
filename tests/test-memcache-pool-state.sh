#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-memcache-filter: memcache-state-file and changes of the pool.
# The state file ties each server's generation to its place in the list
# of the start; after a change that place may hold another server, so a
# process whose pool changed writes no state file (the next start is
# cold, and the log says why); one whose pool did not change still does
# (a reload of the same file is no change).  The servers come from
# memcache-servers-file, as abd.service would give them.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-memcache-helpers.sh"

start_memcached a; a=127.0.0.1:$mc_port
start_memcached b; b=127.0.0.1:$mc_port
head -c 32 /dev/urandom > "$tmp/key"
chmod 600 "$tmp/key"
mkdir -m 700 "$tmp/state"
state=$tmp/state/memcache.state
head -c $(( 1024*1024 )) /dev/urandom > "$tmp/img"
printf '%s\n' "$a" > "$tmp/servers"
ctl=$tmp/ctl.sock

# start: nbdkit in the foreground, its stderr (where the filter's
# notices go) appended to $tmp/log.
start ()
{
    rm -f "$tmp/mc.sock" "$ctl"
    nbdkit -f -U "$tmp/mc.sock" --filter="$MEMCACHE_FILTER" file "$tmp/img" \
        memcache-servers-file="$tmp/servers" memcache-id=pool-state \
        memcache-key-file="$tmp/key" memcache-state-file="$state" \
        memcache-timeout=500 memcache-control="$ctl" 2>>"$tmp/log" &
    pid=$!
    cleanup_fn kill_wait "$pid"
    wait_for 20 test -S "$ctl" || fail "nbdkit did not start"
    wait_for 20 test -S "$tmp/mc.sock" || fail "nbdkit did not start"
    uri="nbd+unix:///?socket=$tmp/mc.sock"
}
read_all ()
{
    nbdcopy --no-extents "$uri" "$tmp/out"
    cmp "$tmp/img" "$tmp/out" || fail "read differs from the image"
}

# A reload that changes nothing: the state is kept.
start
read_all
"$ABDCTL" -s "$ctl" servers reload > "$tmp/out.txt" || fail "reload"
grep -q "^added: 0$" "$tmp/out.txt" || fail "reload of the same file: $(cat "$tmp/out.txt")"
stop_nbdkit "$pid"
[ -f "$state" ] || fail "no state file after a clean stop without changes"

start
[ "$(mc_status "$ctl" 'd["start"]')" = warm ] || fail "not warm after a stop without changes"
read_all
# A change: b joins.  The stop writes no state file.
printf '%s\n%s\n' "$a" "$b" > "$tmp/servers"
"$ABDCTL" -s "$ctl" servers reload >/dev/null || fail "reload with b"
stop_nbdkit "$pid"
[ ! -e "$state" ] || fail "a state file after a stop whose pool changed"
grep -q "the pool changed while nbdkit ran: the next start is cold" "$tmp/log" ||
    fail "the log does not say why the next start is cold"

start
[ "$(mc_status "$ctl" 'd["start"]')" = cold ] || fail "not cold after a changed pool"
[ "$(mc_status "$ctl" 'd["servers_total"]')" = 2 ] || fail "the file's 2 servers not used"
read_all
echo "test-memcache-pool-state: ok"
