#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-memcache-filter: a frozen server (SIGSTOP: it still accepts TCP
# connections but never answers) costs timeouts, never errors.  Reads and
# writes keep succeeding and stay byte-exact; the server is marked down
# and its blocks are counted as skipped.  After SIGCONT, the sets and
# deletes it was holding arrive late; they must not make it serve stale
# data once it is up again.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-memcache-helpers.sh"

mc_start_three
frozen_pid=${MC_PIDS[1]}

head -c $(( 2*1024*1024 )) /dev/urandom > "$tmp/img"
ctl=$tmp/ctl.sock
start_nbdkit mc --filter="$MEMCACHE_FILTER" file "$tmp/img" \
    memcache-servers="$MC_SERVERS" memcache-id=stopped-test \
    memcache-timeout=20 memcache-retry=200 memcache-control="$ctl"
export uri IMG=$tmp/img

# The workload: whole-image reads and random writes, checked against a
# model kept in $tmp/model.
cp "$tmp/img" "$tmp/model"
workload ()
{
    "$PY" -c '
import nbd, os, random, sys
h = nbd.NBD(); h.connect_uri(os.environ["uri"])
model = bytearray(open(os.path.dirname(os.environ["IMG"]) + "/model", "rb").read())
size = len(model)
rnd = random.Random(int(sys.argv[1]))
for rounds in range(int(sys.argv[2])):
    assert h.pread(size, 0) == model, "whole read differs"
    for i in range(30):
        n = rnd.choice((4096, 8192, rnd.randint(1, 9000)))
        off = rnd.randint(0, size - n)
        data = os.urandom(n)
        h.pwrite(data, off)
        model[off:off+n] = data
        assert h.pread(n, off) == data, "read after write differs"
h.shutdown()
open(os.path.dirname(os.environ["IMG"]) + "/model", "wb").write(model)
' "$@"
}

workload 1 2 || fail "workload before the stop"

kill -STOP "$frozen_pid"
cleanup_fn kill -CONT "$frozen_pid"
workload 2 3 || fail "workload while server1 is stopped"
cmp "$tmp/img" "$tmp/model" || fail "image differs from the model"

state=$(mc_status "$ctl" "d['servers']['server1']['state']")
skipped=$(mc_status "$ctl" "d['servers']['server1']['skipped_down']")
timeouts=$(mc_status "$ctl" "d['servers']['server1']['timeouts']")
downs=$(mc_status "$ctl" "d['servers']['server1']['downs']")
echo "server1 while stopped: state=$state skipped=$skipped timeouts=$timeouts downs=$downs"
[ "$state" != up ] || fail "stopped server1 is still up"
[ "$skipped" -gt 0 ] || fail "no requests skipped server1"
[ "$timeouts" -gt 0 ] || fail "no timeouts counted on server1"
for i in 0 2; do
    [ "$(mc_status "$ctl" "d['servers']['server$i']['state']")" = up ] ||
        fail "server$i went down although it was never stopped"
done

# Thaw it; reads probe it (after memcache-retry) until it is up again.
kill -CONT "$frozen_pid"
server1_up ()
{
    nbdcopy "$uri" "$tmp/out"
    cmp -s "$tmp/model" "$tmp/out" || fail "read while server1 comes back differs"
    [ "$(mc_status "$ctl" "d['servers']['server1']['state']")" = up ]
}
wait_for 20 server1_up || fail "server1 did not come back up"

hits_before=$(mc_status "$ctl" "d['servers']['server1']['hits']")
workload 3 2 || fail "workload after server1 came back"
nbdcopy "$uri" "$tmp/out"
cmp "$tmp/model" "$tmp/out" || fail "final read differs from the model"
cmp "$tmp/img" "$tmp/model" || fail "final image differs from the model"
hits_after=$(mc_status "$ctl" "d['servers']['server1']['hits']")
[ "$hits_after" -gt "$hits_before" ] || fail "server1 serves no hits after coming back"
echo "$0: OK"
