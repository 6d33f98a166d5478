#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The guest half of tests/test-kernel-units.sh: abd-nbd.service's command
# lines, taken from the unit file and run as systemd would (with the
# settings of abd.default), against the real kernel NBD client, inside
# the VM as root.  nbdkit serves the stack on /run/abd/abd.sock, where
# abd.service puts it.
#
# - ExecStart attaches /dev/nbd0 with 4096-byte blocks over
#   ABD_NBD_CONNECTIONS connections, and nbd-client stays running (the
#   unit's process, Type=forking); ExecStartPost returns once the device
#   is connected; data written through /dev/nbd0 reads back.
# - nbdkit dies (SIGKILL): the kernel ends the connections and nbd-client
#   exits (the unit goes inactive: it is not left "active" over a dead
#   device).
# - nbdkit starts again and ExecStart attaches again (what WantedBy=
#   abd.service does when abd.service restarts): the data is there.
# - A stop in systemd's order: ExecStop detaches and nbd-client exits,
#   then nbdkit stops on SIGTERM.
#
# Usage (by the VM's init, not by hand): guest-units.sh SHARE

source "$abs_top_srcdir/tests/functions.sh"
source "$abs_top_srcdir/tests/kernel/guest-lib.sh"

[ $# -eq 1 ] || fail "usage: $0 SHARE"
share=$1
requires nbdkit nbd-client memcached blockdev
units=$abs_top_srcdir/scripts/systemd
unit=$units/abd-nbd.service

step "modprobe nbd, start memcached and nbdkit"
guest_prepare
guest_memcached_start

export ABD_NBD_DEVICE=/dev/nbd0
ABD_NBD_CONNECTIONS=$(sed -n 's/^ABD_NBD_CONNECTIONS=//p' "$units/abd.default")
export ABD_NBD_CONNECTIONS
[ "$ABD_NBD_CONNECTIONS" -gt 1 ] ||
    fail "abd.default: ABD_NBD_CONNECTIONS=$ABD_NBD_CONNECTIONS (this test wants several)"
mkdir -p /run/abd
nbd_sock=/run/abd/abd.sock
start_stack ()
{
    rm -f "$nbd_sock"
    guest_nbdkit_start "$tmp/async.ctl" -- \
        --filter="$ASYNC_FILTER" --filter="$MEMCACHE_FILTER" \
        file "$share/img" async-control="$tmp/async.ctl" \
        memcache-servers="$tmp/mc.sock" memcache-id=kernel-units \
        memcache-timeout=2000
}
start_stack

# unit_run KEY: run the unit's KEY= command line (systemd expands ${NAME}).
unit_run ()
{
    local cmd
    cmd=$(unit_line "$unit" "$1")
    [ -n "$cmd" ] || fail "abd-nbd.service has no $1="
    eval "set -- $cmd"
    "$@"
}

# connections: how many connections nbdkit has accepted on $nbd_sock now
# (server ends, state connected, in /proc/net/unix).
connections ()
{
    awk -v p="$nbd_sock" '$NF == p && $6 == "03"' /proc/net/unix | wc -l
}

# read_back WHEN: the first 4 MiB of /dev/nbd0 must be $tmp/data.
read_back ()
{
    dd if=/dev/nbd0 of="$tmp/back" bs=1M count=4 iflag=direct status=none ||
        fail "reading /dev/nbd0 $1 failed"
    cmp "$tmp/back" "$tmp/data" || fail "/dev/nbd0 reads back other data $1"
}

# client_pids: the running nbd-client processes (not the -c / -d ones).
client_pids ()
{
    pgrep -x nbd-client || true
}

step "abd-nbd.service ExecStart, ExecStartPost"
unit_run ExecStart || fail "ExecStart (nbd-client) failed"
unit_run ExecStartPost || fail "ExecStartPost: /dev/nbd0 did not come up"
[ -n "$(client_pids)" ] || fail "nbd-client did not stay running"
cleanup_fn nbd-client -d /dev/nbd0
[ "$(blockdev --getss /dev/nbd0)" -eq 4096 ] ||
    fail "/dev/nbd0 has $(blockdev --getss /dev/nbd0)-byte blocks, not 4096"
[ "$(blockdev --getsize64 /dev/nbd0)" -eq $(( 64 << 20 )) ] ||
    fail "/dev/nbd0 is not the 64 MiB image"
[ "$(connections)" -eq "$ABD_NBD_CONNECTIONS" ] ||
    fail "nbdkit has $(connections) connections, not $ABD_NBD_CONNECTIONS"
head -c 4M /dev/urandom > "$tmp/data"
dd if="$tmp/data" of=/dev/nbd0 bs=1M oflag=direct status=none ||
    fail "writing /dev/nbd0 failed"
read_back "after the write"

step "nbdkit dies (SIGKILL): nbd-client must exit"
"$ABDCTL" -s "$tmp/async.ctl" flush 60 || fail "abdctl flush failed"
kill -KILL "$nbdkit_pid"
wait "$nbdkit_pid" || true
wait_for 60 bash -c '! pgrep -x nbd-client >/dev/null' ||
    fail "nbd-client still runs over a dead connection: $(client_pids)"
! nbd-client -c /dev/nbd0 >/dev/null || fail "/dev/nbd0 still connected"
cmp -n 4M "$share/img" "$tmp/data" || fail "the data is not on the image"

step "start nbdkit again, ExecStart again"
start_stack
unit_run ExecStart || fail "ExecStart after the restart failed"
unit_run ExecStartPost || fail "ExecStartPost after the restart failed"
[ "$(connections)" -eq "$ABD_NBD_CONNECTIONS" ] ||
    fail "after the restart nbdkit has $(connections) connections"
read_back "after the restart"

# The order systemd stops them in (abd-nbd.service is After=abd.service):
# nbdkit 1.32 does not close its clients' connections at SIGTERM, it
# waits for them, so the device must be detached first.
step "ExecStop, then SIGTERM to nbdkit"
unit_run ExecStop || fail "ExecStop (nbd-client -d) failed"
wait_for 30 bash -c '! pgrep -x nbd-client >/dev/null' ||
    fail "nbd-client still runs after ExecStop"
kill -TERM "$nbdkit_pid"
wait_for 60 bash -c "! kill -0 $nbdkit_pid 2>/dev/null" ||
    fail "nbdkit did not exit after SIGTERM"
wait "$nbdkit_pid" || fail "nbdkit exited with status $? after SIGTERM"
echo "abd-kernel-units: PASS connections=$ABD_NBD_CONNECTIONS"
