#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-memcache-filter: what an operator must see in the log, without
# -v (nbdkit -f, stderr to a file):
# - a server that does not answer at start: a warning naming its address;
# - a server lost while serving: a warning "is down" with its address,
#   once, not one per failed request;
# - the same server back: "is up again" at info level;
# - under systemd (stderr is $JOURNAL_STREAM), the same lines carry the
#   journal's priority prefix, <4> for a warning.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-memcache-helpers.sh"

start_memcached s0
s0=127.0.0.1:$mc_port
start_memcached s1
s1=127.0.0.1:$mc_port s1_pid=$mc_pid
absent=127.0.0.1:$(free_port)           # nothing listens there

head -c 4M /dev/urandom > "$tmp/img"
ctl=$tmp/ctl.sock
log=$tmp/nbdkit.err
: > "$log"
# stderr is the journal stream for this nbdkit: the device and inode of
# the log file, as systemd sets JOURNAL_STREAM for a unit's stderr.
JOURNAL_STREAM=$(stat -c '%d:%i' "$log") \
nbdkit -f -U "$tmp/mc.sock" -P "$tmp/mc.pid" --filter="$MEMCACHE_FILTER" \
    file "$tmp/img" memcache-servers="$s0,$s1,$absent" memcache-id=log-test \
    memcache-timeout=50 memcache-retry=200 memcache-control="$ctl" \
    2>"$log" &
nbdkit_pid=$!
cleanup_fn kill_wait "$nbdkit_pid"
wait_for 20 test -S "$ctl" || fail "nbdkit did not start"
uri="nbd+unix:///?socket=$tmp/mc.sock"

grep -F "<4>nbdkit: memcache: server $absent is unreachable at start" "$log" ||
    { cat "$log"; fail "no warning for $absent, unreachable at start"; }
if grep -F -e "$s0" -e "$s1" "$log"; then
    fail "a warning at start for a server that answers"
fi

# Now stderr is a plain file (no JOURNAL_STREAM): the word "warning:".
# A timeout of 500 ms: no server that is up may look down on a busy
# machine (this part asserts there is no message at all).
kill_wait "$nbdkit_pid"
rm -f "$tmp/mc.sock" "$ctl"
: > "$log"
nbdkit -f -U "$tmp/mc.sock" -P "$tmp/mc.pid" --filter="$MEMCACHE_FILTER" \
    file "$tmp/img" memcache-servers="$s0,$s1" memcache-id=log-test \
    memcache-timeout=500 memcache-retry=200 memcache-control="$ctl" \
    2>"$log" &
nbdkit_pid=$!
cleanup_fn kill_wait "$nbdkit_pid"
wait_for 20 test -S "$tmp/mc.sock" || fail "nbdkit did not start again"
nbdcopy "$uri" "$tmp/out"
[ ! -s "$log" ] || { cat "$log"; fail "messages while every server is up"; }

# Lose s1 (frozen: it accepts connections, never answers), read twice.
kill -STOP "$s1_pid"
cleanup_fn kill -CONT "$s1_pid"
nbdcopy "$uri" "$tmp/out"
nbdcopy "$uri" "$tmp/out"
cmp "$tmp/img" "$tmp/out" || fail "read while $s1 is frozen differs"
[ "$(grep -c -F "nbdkit: memcache: warning: server $s1 is down" "$log")" = 1 ] ||
    { cat "$log"; fail "not one 'down' warning for $s1"; }

kill -CONT "$s1_pid"
s1_up ()
{
    nbdcopy "$uri" "$tmp/out"
    grep -q -F "nbdkit: memcache: info: server $s1 is up again" "$log"
}
wait_for 20 s1_up || { cat "$log"; fail "no 'up again' message for $s1"; }
cat "$log"
echo "$0: OK"
