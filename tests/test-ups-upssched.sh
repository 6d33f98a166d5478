#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# scripts/ups/upssched.conf.example with NUT's real upssched, run the way
# upsmon runs it (NOTIFYTYPE and UPSNAME in the environment), its timer
# shortened from 10 s to 5 s, CMDSCRIPT abd-upssched-cmd, against an async
# filter with a long writeback delay:
#
#   ONBATT, ONLINE at once   a blip: the timer is cancelled, upssched's
#                            daemon exits, the filter never left async mode
#   ONBATT, wait             the timer fires: mode sync, dirty data drains
#   ONLINE                   the timer had passed: back to async mode
#   LOWBATT                  at once: mode sync and a flush; every dirty
#                            byte is on the file

source "${abs_top_srcdir:-.}/tests/functions.sh"
upssched=
for p in /sbin/upssched /usr/sbin/upssched; do
    [ -x "$p" ] && { upssched=$p; break; }
done
if [ -z "$upssched" ]; then
    echo "$0: SKIP: NUT's upssched is not installed (Debian package nut-client)"
    exit 77
fi
source "$abs_top_srcdir/tests/test-async-helpers.sh"
requires cmp ss

ups=$abs_top_srcdir/scripts/ups
ctl=$tmp/async.ctl
size=$(( 4 * 1024 * 1024 ))
truncate -s $size "$tmp/img" "$tmp/expected"
async_start sched --filter="$ASYNC_FILTER" file "$tmp/img" \
    async-control="$ctl" async-writeback-delay=60000 async-write-size=32M
export uri

# The example, with paths under $tmp and a 5 s timer.
nut=$tmp/nut
mkdir "$nut"
pipe=$nut/upssched.pipe
sed -e "s|^CMDSCRIPT .*|CMDSCRIPT $ups/abd-upssched-cmd|" \
    -e "s|^PIPEFN .*|PIPEFN $pipe|" \
    -e "s|^LOCKFN .*|LOCKFN $nut/upssched.lock|" \
    -e "s|START-TIMER onbatt 10\$|START-TIMER onbatt 5|" \
    "$ups/upssched.conf.example" > "$nut/upssched.conf"
for line in "CMDSCRIPT $ups/abd-upssched-cmd" "PIPEFN $pipe" \
            "AT ONBATT \* START-TIMER onbatt 5" \
            "AT ONLINE \* CANCEL-TIMER onbatt online" \
            "AT LOWBATT \* EXECUTE lowbatt"; do
    grep -q "^$line\$" "$nut/upssched.conf" ||
        fail "upssched.conf.example has no line like '$line'"
done
export NUT_CONFPATH=$nut
export ABD_NOTIFY=$ups/abd-nut-notify ABD_CONFIG=/dev/null ABD_CONTROL=$ctl
log=$tmp/upssched.log

# upssched's daemon (it holds $pipe while a timer runs, then exits), by
# the PID that holds the socket.  It closes its standard output and
# error: what the handler says when a timer fires goes to syslog only.
upssched_pid ()
{
    ss -xlpn | awk -v p="$pipe" '$5 == p' |
        sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -n 1
}
stop_upssched ()
{
    local p
    p=$(upssched_pid)
    [ -z "$p" ] || kill_wait "$p" 10
}
cleanup_fn stop_upssched

# event TYPE: what upsmon does for a notification.
event ()
{
    echo "--- $1"
    NOTIFYTYPE=$1 UPSNAME=ups1@localhost "$upssched" "UPS ups1 $1" \
        >>"$log" 2>&1 || { cat "$log"; fail "upssched $1 failed"; }
}


field_is () { [ "$(st "$ctl" "$1")" = "$2" ]; }
no_daemon () { [ ! -e "$pipe" ]; }

# A blip: the timer is cancelled before it fires.
write_blocks 0
event ONBATT
[ -S "$pipe" ] || fail "ONBATT did not start upssched's timer daemon"
event ONLINE
wait_for 20 no_daemon || fail "upssched's daemon still runs after the blip"
[ "$(st "$ctl" mode)" = async ] && [ "$(st "$ctl" mode_reason)" = start ] ||
    fail "a blip switched the mode: $(st "$ctl" mode) $(st "$ctl" mode_reason)"
grep -q abd-nut-notify "$log" && { cat "$log"; fail "a blip ran the handler"; }
[ "$(st "$ctl" dirty_bytes)" -gt 0 ] || fail "nothing dirty after the blip"
echo "blip ignored"

# A real outage: the timer fires.
event ONBATT
wait_for 30 field_is mode sync || fail "no sync mode 30 s after ONBATT"
[ "$(st "$ctl" mode_reason)" = control ] || fail "mode_reason is not control"
wait_for 30 field_is dirty_bytes 0 || fail "still dirty 30 s after ONBATT"
cmp "$tmp/img" "$tmp/expected" || fail "the file differs after ONBATT"
echo "outage: sync mode, drained"

event ONLINE
wait_for 30 field_is mode async || fail "no async mode 30 s after ONLINE"
echo "power back: async mode"

# Low battery: at once.
write_blocks 1
[ "$(st "$ctl" dirty_bytes)" -gt 0 ] || fail "nothing dirty before LOWBATT"
event LOWBATT
wait_for 30 grep -q "LOWBATT: $ctl: flush 60 done" "$log" ||
    fail "no LOWBATT flush by the handler in 30 s"
[ "$(st "$ctl" mode)" = sync ] || fail "not in sync mode after LOWBATT"
[ "$(st "$ctl" dirty_bytes)" -eq 0 ] || fail "dirty data after LOWBATT"
cmp "$tmp/img" "$tmp/expected" || fail "the file differs after LOWBATT"
echo "low battery: sync mode, flushed"

echo "$0: OK"
