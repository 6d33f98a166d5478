#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# scripts/ups/abd-nut-notify driven by the real NUT daemons: dummy-ups
# simulates a UPS (its status is a file), upsd serves it on a loopback
# port, upsmon watches it and runs abd-nut-notify as NOTIFYCMD, which
# switches the async filter through its control socket.  The filter sits
# over a slow file (nbdkit's delay filter) with a long writeback delay, so
# that data written in async mode stays dirty until something else makes
# it go.  Every step is checked with `abdctl status` and the image file:
#
#   on mains      writes stay dirty (mode async)
#   OB DISCHRG    mode sync; the dirty data drains and the file equals the
#                 expected image; a client flush then puts new data on the
#                 file before it returns
#   OL            mode async again: new data stays dirty even after a
#                 client flush
#   OB LB         the LOWBATT action: mode sync and a flush, logged by the
#                 handler; nothing dirty, the file equals the expected image
#
# And the handler alone: ONBATT with a control socket that does not exist
# exits non-zero and says why.

source "${abs_top_srcdir:-.}/tests/functions.sh"
requires cmp upsc

for d in dummy-ups upsd upsmon; do
    if [ ! -x "/lib/nut/$d" ]; then
        echo "$0: SKIP: NUT is not installed (/lib/nut/$d; Debian packages" \
             "nut-server and nut-client)"
        exit 77
    fi
done
if [ "$(id -u)" -ne 0 ]; then
    echo "$0: SKIP: the NUT daemons need root (they drop to user nut, and" \
         "upsmon writes /run/nut/upsmon.pid)"
    exit 77
fi
source "$abs_top_srcdir/tests/test-async-helpers.sh"

notify=$abs_top_srcdir/scripts/ups/abd-nut-notify
ctl=$tmp/async.ctl

#----------------------------------------------------------------------
# The handler alone: a control socket that is not there.
rc=0
NOTIFYTYPE=ONBATT UPSNAME=test ABD_CONFIG=/dev/null ABD_CONTROL=$tmp/none.ctl \
    "$notify" "test" 2>"$tmp/notify-bad.err" || rc=$?
cat "$tmp/notify-bad.err"
[ "$rc" -ne 0 ] || fail "handler: ONBATT with a missing socket exited 0"
grep -q "FAILED.*$tmp/none.ctl" "$tmp/notify-bad.err" ||
    fail "handler: no message naming the socket that failed"

#----------------------------------------------------------------------
# The async filter over a slow file.  At exit the delay filter fails every
# write (nbdkit_nanosleep gives up once nbdkit is shutting down), so what
# is still dirty then cannot be written back: async-exit-timeout=5 keeps a
# failed run from waiting 60 s for that.  A passing run leaves nothing
# dirty.
size=$(( 4 * 1024 * 1024 ))
truncate -s $size "$tmp/img"
truncate -s $size "$tmp/expected"
async_start ups --filter="$ASYNC_FILTER" --filter=delay \
    file "$tmp/img" delay-write=5ms \
    async-control="$ctl" async-writeback-delay=60000 async-write-size=32M \
    async-exit-timeout=5
export uri



# field NAME: a field of the filter's status; field_is NAME VALUE.
field () { st "$ctl" "$1"; }
field_is () { [ "$(field "$1")" = "$2" ]; }

#----------------------------------------------------------------------
# NUT: dummy-ups, upsd and upsmon with their configuration and state
# under $tmp (which user nut must be able to enter).
chmod 711 "$tmp"
nut=$tmp/nut
mkdir -m 755 "$nut" "$nut/run"
mkdir -m 750 "$nut/state"
chown nut:nut "$nut/state"
export NUT_CONFPATH=$nut NUT_STATEPATH=$nut/state
port=$(free_port)
upsname=ups1@127.0.0.1:$port

# set_status STATUS: the simulated UPS's status, replaced atomically.
# dummy-ups reads the file again only when its st_mtime changes, in whole
# seconds: two statuses written within one second would look like one
# (CI once lost "OB LB" that way).  So each status file gets its own
# made-up mtime, one second after the previous one; once upsd serves it
# (wait_status) the test goes on.
status_seq=0
set_status ()
{
    status_seq=$(( status_seq + 1 ))
    echo "ups.status: $1" > "$nut/ups1.dev.new"
    chmod 644 "$nut/ups1.dev.new"
    touch -d "@$(( 1000000000 + status_seq ))" "$nut/ups1.dev.new"
    mv "$nut/ups1.dev.new" "$nut/ups1.dev"
    echo "--- UPS status: $1"
}
ups_status_is () { [ "$(upsc "$upsname" ups.status 2>/dev/null)" = "$1" ]; }
wait_status ()
{
    wait_for 30 ups_status_is "$1" ||
        fail "upsd serves status '$(upsc "$upsname" ups.status 2>&1)'" \
             "30 s after the file said '$1'"
}
set_status OL

cat > "$nut/ups.conf" <<EOF
pollinterval = 1
[ups1]
    driver = dummy-ups
    port = $nut/ups1.dev
    desc = "abd test UPS"
EOF
cat > "$nut/upsd.conf" <<EOF
LISTEN 127.0.0.1 $port
STATEPATH $nut/state
EOF
cat > "$nut/upsd.users" <<EOF
[abdmon]
    password = abdtest
    upsmon primary
EOF
cat > "$nut/abd.default" <<EOF
ABD_CONTROL=$ctl
EOF
# Power value 0: upsmon only watches, it never shuts this machine down.
# It runs NOTIFYCMD as root (-u root below): the control socket is 0600.
cat > "$nut/upsmon.conf" <<EOF
MONITOR $upsname 0 abdmon abdtest primary
MINSUPPLIES 0
NOTIFYCMD $notify
NOTIFYFLAG ONBATT SYSLOG+EXEC
NOTIFYFLAG ONLINE SYSLOG+EXEC
NOTIFYFLAG LOWBATT SYSLOG+EXEC
NOTIFYFLAG FSD SYSLOG+EXEC
POLLFREQ 1
POLLFREQALERT 1
SHUTDOWNCMD "/bin/false"
EOF
chmod 644 "$nut"/*.conf "$nut/abd.default"
chmod 640 "$nut/upsd.users"
chgrp nut "$nut/upsd.users"

# The daemons themselves, not the /sbin wrappers (which want nut.conf).
/lib/nut/dummy-ups -a ups1 -F -u nut >"$tmp/dummy-ups.log" 2>&1 &
drv_pid=$!
cleanup_fn kill_wait "$drv_pid" 10
wait_for 10 test -S "$nut/state/dummy-ups-ups1" ||
    { cat "$tmp/dummy-ups.log"; fail "dummy-ups did not start"; }

/lib/nut/upsd -F -u nut >"$tmp/upsd.log" 2>&1 &
upsd_pid=$!
cleanup_fn kill_wait "$upsd_pid" 10
wait_for 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null ||
    { cat "$tmp/upsd.log"; fail "upsd did not listen on port $port"; }
wait_status OL

# upsmon writes /run/nut/upsmon.pid, whatever the options, and will not
# start while another upsmon's is there: give it a private /run/nut when
# this machine allows mount namespaces.
if unshare -m --propagation private true 2>/dev/null; then
    mkdir -p /run/nut
    upsmon_cmd=(unshare -m --propagation private
                sh -c 'mount --bind "$0" /run/nut && exec "$@"' "$nut/run")
else
    upsmon_cmd=()
    if [ -s /run/nut/upsmon.pid ] &&
       kill -0 "$(cat /run/nut/upsmon.pid)" 2>/dev/null; then
        fail "another upsmon runs here (/run/nut/upsmon.pid)"
    fi
fi
ABD_CONFIG=$nut/abd.default \
    "${upsmon_cmd[@]}" /lib/nut/upsmon -F -u root >"$tmp/upsmon.log" 2>&1 &
upsmon_pid=$!
# Its unprivileged child outlives it: stop the child first, then it.
stop_upsmon ()
{
    local child
    for child in $(pgrep -P "$upsmon_pid") ${upsmon_child:-}; do
        kill_wait "$child" 10
    done
    kill_wait "$upsmon_pid" 10
}
cleanup_fn stop_upsmon
# Only a child named upsmon counts: the sh that bind-mounts /run/nut
# first has a short-lived `mount` child, which pgrep -P finds too.
wait_for 10 pgrep -x -P "$upsmon_pid" upsmon >/dev/null ||
    { cat "$tmp/upsmon.log"; fail "upsmon did not start its child"; }
upsmon_child=$(pgrep -x -P "$upsmon_pid" upsmon) ||
    fail "upsmon's child is gone"
wait_for 10 grep -q "logged into UPS \[ups1\]" "$tmp/upsd.log" ||
    { cat "$tmp/upsmon.log"; fail "upsmon did not log into upsd"; }

# show_logs: what the daemons and the handler said, on failure.
passed=no
show_logs ()
{
    [ "$passed" = yes ] && return 0
    echo "--- upsmon (and abd-nut-notify) log:"; cat "$tmp/upsmon.log"
    echo "--- status:"; "$ABDCTL" -s "$ctl" status
}
cleanup_fn show_logs

#----------------------------------------------------------------------
# On mains power: data stays dirty.
write_blocks 0
[ "$(field mode)" = async ] ||
    fail "mode $(field mode) at start, expected async"
[ "$(field dirty_bytes)" -gt 0 ] || fail "nothing dirty after the first writes"
! cmp -s "$tmp/img" "$tmp/expected" || fail "data on the file already"
echo "on mains: dirty_bytes $(field dirty_bytes)"

# On battery: sync mode, the dirty data drains.
set_status "OB DISCHRG"
wait_status "OB DISCHRG"
wait_for 30 field_is mode sync ||
    fail "mode $(field mode) 30 s after OB, not sync"
[ "$(field mode_reason)" = control ] ||
    fail "mode_reason $(field mode_reason), expected control"
grep -q "UPS $upsname ONBATT: $ctl: mode sync done" "$tmp/upsmon.log" ||
    fail "the handler did not log ONBATT"
wait_for 30 field_is dirty_bytes 0 ||
    fail "$(field dirty_bytes) bytes still dirty 30 s after ONBATT"
cmp "$tmp/img" "$tmp/expected" || fail "the file differs after the drain"
echo "on battery: mode sync, drained"

# On battery a client flush is honoured: the file holds the data when the
# flush returns.
write_blocks 1 flush
cmp "$tmp/img" "$tmp/expected" ||
    fail "on battery, data flushed by the client is not on the file"
echo "on battery: client flush honoured"

# Mains power back: async mode, new data stays dirty even when flushed.
set_status OL
wait_status OL
wait_for 30 field_is mode async ||
    fail "mode $(field mode) 30 s after OL, not async"
write_blocks 2 flush
[ "$(field dirty_bytes)" -gt 0 ] ||
    fail "back on mains, nothing dirty after a write and a client flush"
! cmp -s "$tmp/img" "$tmp/expected" ||
    fail "back on mains, the data went to the file at once"
echo "on mains again: mode async, dirty_bytes $(field dirty_bytes)"

# Low battery (from mains, with dirty data): sync mode and a flush.
flushes=$(field lower_flushes)
set_status "OB LB"
wait_status "OB LB"
wait_for 30 grep -q "UPS $upsname LOWBATT: $ctl: flush 60 done" \
    "$tmp/upsmon.log" || fail "no LOWBATT flush by the handler in 30 s"
[ "$(field mode)" = sync ] || fail "mode $(field mode) after LOWBATT, not sync"
[ "$(field dirty_bytes)" -eq 0 ] ||
    fail "$(field dirty_bytes) bytes dirty after the LOWBATT flush"
[ "$(field lower_flushes)" -gt "$flushes" ] ||
    fail "the lower device was not flushed after LOWBATT"
cmp "$tmp/img" "$tmp/expected" || fail "the file differs after LOWBATT"
echo "low battery: mode sync, flushed"

passed=yes
echo "$0: OK"
