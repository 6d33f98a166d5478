#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The stack across hosts, each host a network namespace joined to the
# "stack" namespace by a veth pair (made and removed by this test):
#
#   client  --- nbd --->  stack: nbdkit --filter=async --filter=memcache
#                           nbd uri=nbd://DISK (the lower device, remote)
#   mc1, mc2: memcached   <--- memcache ---'      |
#   disk: nbdkit file IMG <--- nbd ---------------'
#
# The client writes an image and reads it back twice (the second read is
# served from memcached); then mc1's link is cut (`ip link set down`)
# while the client reads on: no errors, the data is right, and the
# memcache filter's status shows mc1 down.  After nbdkit stops (draining
# the async filter), the remote disk image equals what the client wrote.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-memcache-helpers.sh"
requires ip nbdcopy

if [ "$(id -u)" -ne 0 ]; then
    echo "$0: SKIP: network namespaces need root"; exit 77
fi

ns_prefix=abd$$
ns_names=(stack client mc1 mc2 disk)
ns () { echo "$ns_prefix-$1"; }
in_ns () { local n=$1; shift; ip netns exec "$(ns "$n")" "$@"; }

for n in "${ns_names[@]}"; do
    ip netns add "$(ns "$n")" ||
        { echo "$0: SKIP: cannot make network namespaces"; exit 77; }
    cleanup_fn ip netns del "$(ns "$n")"
    in_ns "$n" ip link set lo up
done

# link HOST SUBNET: a veth pair stack <-> HOST, 10.77.SUBNET.1 on the stack
# side, 10.77.SUBNET.2 on HOST's.  The stack side is named s-HOST.
link ()
{
    local host=$1 net=$2
    ip link add "s-$host-$$" type veth peer name "h-$host-$$"
    ip link set "s-$host-$$" netns "$(ns stack)" name "s-$host"
    ip link set "h-$host-$$" netns "$(ns "$host")" name eth0
    in_ns stack ip addr add "10.77.$net.1/24" dev "s-$host"
    in_ns stack ip link set "s-$host" up
    in_ns "$host" ip addr add "10.77.$net.2/24" dev eth0
    in_ns "$host" ip link set eth0 up
}
link client 1
link mc1 2
link mc2 3
link disk 4

# bg NS NAME CMD...: run CMD in namespace NS in the background, logging
# to $tmp/NAME.log; stopped at exit.  Sets $bg_pid.
bg ()
{
    local n=$1 name=$2; shift 2
    # Not through in_ns: a function would run in a subshell whose PID is
    # not the server's.
    ip netns exec "$(ns "$n")" "$@" >"$tmp/$name.log" 2>&1 &
    bg_pid=$!
    cleanup_fn kill_wait "$bg_pid" 60
}

# wait_port NS HOST PORT: until HOST:PORT accepts connections from NS.
wait_port ()
{
    wait_for 10 in_ns "$1" bash -c "exec 3<>/dev/tcp/$2/$3" 2>/dev/null ||
        fail "nothing listens on $2:$3"
}

size=$(( 32 * 1024 * 1024 ))
truncate -s $size "$tmp/disk.img"
bg disk disk nbdkit -f -p 10809 -i 10.77.4.2 file "$tmp/disk.img"
wait_port stack 10.77.4.2 10809

bg mc1 mc1 memcached -l 10.77.2.2 -p 11211 -U 0 -u root -m 64
bg mc2 mc2 memcached -l 10.77.3.2 -p 11211 -U 0 -u root -m 64
wait_port stack 10.77.2.2 11211
wait_port stack 10.77.3.2 11211

bg stack stack nbdkit -f -p 10809 -i 10.77.1.1 \
    --filter="$ASYNC_FILTER" --filter="$MEMCACHE_FILTER" \
    nbd uri=nbd://10.77.4.2:10809/ \
    async-control="$tmp/async.ctl" \
    memcache-servers=10.77.2.2:11211,10.77.3.2:11211 memcache-id=netns \
    memcache-timeout=100 memcache-retry=60000 memcache-control="$tmp/mc.ctl"
stack_pid=$bg_pid
wait_port client 10.77.1.1 10809
uri=nbd://10.77.1.1:10809/

head -c $size /dev/urandom > "$tmp/data"
in_ns client nbdcopy "$tmp/data" "$uri" || fail "client write failed"
in_ns client nbdcopy --no-extents "$uri" "$tmp/read1" || fail "read 1 failed"
cmp "$tmp/data" "$tmp/read1" || fail "read 1 differs from what was written"
"$ABDCTL" -s "$tmp/async.ctl" flush 60 || fail "abdctl flush failed"
in_ns client nbdcopy --no-extents "$uri" "$tmp/read2" || fail "read 2 failed"
cmp "$tmp/data" "$tmp/read2" || fail "read 2 differs from what was written"
hits=$(mc_status "$tmp/mc.ctl" 'd["hits"]')
[ "$hits" -gt 0 ] || fail "nothing was read from memcached (hits=$hits)"

# Cut mc1's link while the client reads, repeatedly, in the background.
(
    for i in 1 2 3 4 5 6; do
        in_ns client nbdcopy --no-extents "$uri" "$tmp/read-cut-$i" ||
            exit 1
        cmp -s "$tmp/data" "$tmp/read-cut-$i" || exit 2
        rm -f "$tmp/read-cut-$i"
    done
) &
reader=$!
sleep 0.5
in_ns stack ip link set s-mc1 down
wait "$reader" || fail "a read failed or was wrong after mc1's link was cut (status $?)"

state=$(mc_status "$tmp/mc.ctl" 'd["servers"]["server0"]["state"]')
[ "$state" = down ] || fail "mc1 is '$state' after its link was cut"
skipped=$(mc_status "$tmp/mc.ctl" 'd["servers"]["server0"]["skipped_down"]')
[ "$skipped" -gt 0 ] || fail "no request skipped the down server"
in_ns client nbdcopy --no-extents "$uri" "$tmp/read3" || fail "read 3 failed"
cmp "$tmp/data" "$tmp/read3" || fail "read 3 differs"

# A write while mc1 is away, then stop: the remote image gets everything.
head -c $((1024 * 1024)) /dev/urandom > "$tmp/patch"
dd if="$tmp/patch" of="$tmp/data" bs=1M seek=7 conv=notrunc status=none
in_ns client nbdcopy "$tmp/data" "$uri" || fail "client rewrite failed"
stop_nbdkit "$stack_pid"
cmp "$tmp/data" "$tmp/disk.img" ||
    fail "the remote disk image differs after nbdkit stopped"
echo "$0: OK (memcache hits $hits, server0 skipped $skipped)"
