#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-memcache-filter: a server that goes away and comes back with its
# old memory must never serve the old blocks.  memcached -e keeps its items
# in a memory file across a graceful stop (SIGUSR1).  We warm the cache,
# stop server1, overwrite every block that lives on it, restart it with
# the old memory (and check the old items really are back), and then
# every read must return the new data, also once server1 is up and serving
# hits again.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-memcache-helpers.sh"

# server1 keeps its items in a memory file.
start_memcached s0; port0=$mc_port
start_memcached s2; port2=$mc_port
port1=$(free_port)
mc_start_port s1-mem "$port1" -e "$tmp/mem1"
pid1=$mc_pid
servers="127.0.0.1:$port0,127.0.0.1:$port1,127.0.0.1:$port2"

head -c $(( 1024*1024 )) /dev/urandom > "$tmp/img"
ctl=$tmp/ctl.sock
start_nbdkit mc --filter="$MEMCACHE_FILTER" file "$tmp/img" \
    memcache-servers="$servers" memcache-id=stale-test \
    memcache-timeout=50 memcache-retry=100 memcache-control="$ctl"
export uri IMG=$tmp/img PORT1=$port1

nbdcopy "$uri" "$tmp/out"
cmp "$tmp/img" "$tmp/out" || fail "cold read differs"
mc_filled "$ctl"

# The blocks on server1, and the key of the first one.
blocks1=()
for (( b=0; b<256; b++ )); do
    [ "$(mc_server_of "$ctl" $b)" = 1 ] && blocks1+=($b)
done
[ ${#blocks1[@]} -gt 20 ] || fail "only ${#blocks1[@]} blocks on server1"
# (Values are sealed: the test keeps the old value's bytes to recognise
# it when the server comes back.)
export B=${blocks1[0]} KEY=$(mc_key_of "$ctl" ${blocks1[0]}) OLDV=$tmp/old-value
mc_py '
v = mc_get(int(os.environ["PORT1"]), os.environ["KEY"])
assert v is not None and len(v) == 32 + 4096, "block not cached"
open(os.environ["OLDV"], "wb").write(v)
' || fail "block $B is not in server1 before the stop"

# Graceful stop: the items stay in the memory file.
kill -USR1 $pid1
wait_for 10 bash -c "! kill -0 $pid1 2>/dev/null" || fail "memcached did not stop"
sleep 1

# Overwrite every block of server1 while it is away.
export BLOCKS1="${blocks1[*]}"
cp "$tmp/img" "$tmp/old"
"$PY" -c '
import nbd, os
h = nbd.NBD(); h.connect_uri(os.environ["uri"])
for b in map(int, os.environ["BLOCKS1"].split()):
    h.pwrite(os.urandom(4096), b * 4096)
h.shutdown()
' || fail "writes while server1 is away"
cmp -s "$tmp/img" "$tmp/old" && fail "the writes changed nothing"
[ "$(mc_status "$ctl" "d['servers']['server1']['state']")" != up ] ||
    fail "server1 is still up after its stop"

# Back with its old memory: the old value is there to be (wrongly) served.
mc_start_port s1-mem-again "$port1" -e "$tmp/mem1"
mc_py '
v = mc_get(int(os.environ["PORT1"]), os.environ["KEY"])
assert v is not None and v == open(os.environ["OLDV"], "rb").read(), "old item gone"
' || fail "the restarted memcached did not keep its old items"

# Reads return the new data while server1 is probed and after it is up.
server1_up ()
{
    nbdcopy "$uri" "$tmp/out"
    cmp -s "$tmp/img" "$tmp/out" || fail "stale data read while server1 comes back"
    [ "$(mc_status "$ctl" "d['servers']['server1']['state']")" = up ]
}
wait_for 20 server1_up || fail "server1 did not come back up"
hits_before=$(mc_status "$ctl" "d['servers']['server1']['hits']")
for i in 1 2; do
    nbdcopy "$uri" "$tmp/out"
    cmp "$tmp/img" "$tmp/out" || fail "stale data read after server1 is up"
done
hits_after=$(mc_status "$ctl" "d['servers']['server1']['hits']")
[ "$hits_after" -gt "$hits_before" ] || fail "server1 serves no hits after its return"
echo "$0: OK"
