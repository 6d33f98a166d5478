#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-memcache-filter: a server killed with SIGKILL (connections reset,
# then refused) costs nothing but misses: reads and writes keep succeeding
# and stay byte-exact.  Restarted empty on the same port, it is probed,
# comes back up, and serves hits again.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-memcache-helpers.sh"

mc_start_three
victim_port=${MC_PORTS[2]}
victim_pid=${MC_PIDS[2]}

head -c $(( 2*1024*1024 )) /dev/urandom > "$tmp/img"
cp "$tmp/img" "$tmp/model"
ctl=$tmp/ctl.sock
start_nbdkit mc --filter="$MEMCACHE_FILTER" file "$tmp/img" \
    memcache-servers="$MC_SERVERS" memcache-id=restart-test \
    memcache-timeout=50 memcache-retry=100 memcache-control="$ctl"
export uri MODEL=$tmp/model

# Whole-image reads and random writes, checked against $tmp/model.
workload ()
{
    "$PY" -c '
import nbd, os, random, sys
h = nbd.NBD(); h.connect_uri(os.environ["uri"])
model = bytearray(open(os.environ["MODEL"], "rb").read())
size = len(model)
rnd = random.Random(int(sys.argv[1]))
for rounds in range(int(sys.argv[2])):
    assert h.pread(size, 0) == model, "whole read differs"
    for i in range(30):
        n = rnd.choice((4096, 12288, rnd.randint(1, 9000)))
        off = rnd.randint(0, size - n)
        data = os.urandom(n)
        h.pwrite(data, off)
        model[off:off+n] = data
        assert h.pread(n, off) == data, "read after write differs"
h.shutdown()
open(os.environ["MODEL"], "wb").write(model)
' "$@"
}

workload 1 2 || fail "workload before the kill"
[ "$(mc_status "$ctl" "d['servers']['server2']['hits']")" -gt 0 ] ||
    fail "server2 had no hits before the kill"

kill -KILL "$victim_pid"
wait_for 10 bash -c "! kill -0 $victim_pid 2>/dev/null" || fail "memcached survived SIGKILL"
workload 2 3 || fail "workload while server2 is dead"
cmp "$tmp/img" "$tmp/model" || fail "image differs from the model"
[ "$(mc_status "$ctl" "d['servers']['server2']['state']")" != up ] ||
    fail "dead server2 is up"
[ "$(mc_status "$ctl" "d['servers']['server2']['skipped_down']")" -gt 0 ] ||
    fail "no requests skipped the dead server2"
[ "$(mc_status "$ctl" "d['servers']['server2']['errors']")" -gt 0 ] ||
    fail "no errors counted on the dead server2"

mc_start_port s2-again "$victim_port"
server2_up ()
{
    nbdcopy "$uri" "$tmp/out"
    cmp -s "$tmp/model" "$tmp/out" || fail "read while server2 comes back differs"
    [ "$(mc_status "$ctl" "d['servers']['server2']['state']")" = up ]
}
wait_for 20 server2_up || fail "server2 did not come back up"

hits_before=$(mc_status "$ctl" "d['servers']['server2']['hits']")
workload 3 2 || fail "workload after the restart"
nbdcopy "$uri" "$tmp/out"
cmp "$tmp/model" "$tmp/out" || fail "final read differs"
hits_after=$(mc_status "$ctl" "d['servers']['server2']['hits']")
[ "$hits_after" -gt "$hits_before" ] || fail "restarted server2 serves no hits"
echo "$0: OK"
