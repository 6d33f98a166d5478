#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-memcache-filter, memcache-state-file put back from a copy (a
# backup, a VM or LVM snapshot): no AES-GCM nonce is used twice.  A clean
# stop writes the state file, which is copied; a warm run writes and reads
# every block, and stops; the copy is put back, and a second warm run does
# the same with other data.  That start is warm only because a peer puts
# back the servers' markers of the first stop, which it recorded (without
# them the copy starts cold: test-memcache-warm-restore.sh): a peer that
# can do that and sees the copy put back.  Both runs resume the same epoch
# at the same nonce counter, so before every start drew its own nonce
# bytes, the two runs sealed their values under the same key and nonces.
# The nonces are read raw from memcached (bytes 4-15 of every value) after
# each run: none appears in both.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-memcache-helpers.sh"

start_memcached copy
head -c 32 /dev/urandom > "$tmp/key"
chmod 600 "$tmp/key"
mkdir -m 700 "$tmp/state"
state=$tmp/state/memcache.state
blocks=256
head -c $((blocks * 4096)) /dev/urandom > "$tmp/img"
ctl=$tmp/ctl.sock
export PORT=$mc_port

start ()
{
    start_nbdkit mc --filter="$MEMCACHE_FILTER" file "$tmp/img" \
        memcache-servers="127.0.0.1:$mc_port" memcache-id=warm-copy-test \
        memcache-key-file="$tmp/key" memcache-state-file="$state" \
        memcache-timeout=500 memcache-control="$ctl"
}

# nonces FILE: the nonce of every value on the server, one hex line each.
nonces ()
{
    "$PY" -c '
import os, sys
import memcached_peer as m
snap = m.snapshot([int(os.environ["PORT"])])
with open(sys.argv[1], "w") as f:
    for (port, key), v in sorted(snap.items()):
        if key.startswith("abd3:") and len(v) >= 16:
            f.write(v[4:16].hex() + "\n")
' "$1"
}

# run SEED: a warm start that writes every block (in order, one 4K write
# each: one seal each) with data from SEED, reads the device 3 times
# (each read equal to what was written), then records the nonces on the
# server in $tmp/nonces-SEED and stops cleanly.
run ()
{
    start
    [ "$(mc_status "$ctl" 'd["start"]')" = warm ] ||
        fail "run $1: the start was not warm"
    "$PY" -c '
import random, sys
import nbd
seed, uri, blocks = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
rnd = random.Random(seed)
data = [rnd.randbytes(4096) for _ in range(blocks)]
h = nbd.NBD()
h.connect_uri(uri)
for b in range(blocks):
    h.pwrite(data[b], b * 4096)
for r in range(3):
    for b in range(blocks):
        if h.pread(4096, b * 4096) != data[b]:
            sys.exit("run %d: block %d differs (pass %d)" % (seed, b, r))
h.shutdown()
' "$1" "$uri" "$blocks" || fail "run $1: reads differ"
    mc_filled "$ctl"
    nonces "$tmp/nonces-$1"
    stop_nbdkit "$pid"
    [ "$(wc -l < "$tmp/nonces-$1")" -ge "$blocks" ] ||
        fail "run $1: $(wc -l < "$tmp/nonces-$1") values on the server," \
             "expected $blocks"
}

# A cold start fills the cache; its clean stop writes the state file,
# which is kept aside.
start
nbdcopy --no-extents "$uri" "$tmp/out"
cmp "$tmp/img" "$tmp/out" || fail "cold read differs"
mc_filled "$ctl"
stop_nbdkit "$pid"
[ -f "$state" ] || fail "no state file after a clean stop"
cp -p "$state" "$tmp/state.copy"
# The peer records the stop's marker (the servers' "abdm:" item).
"$PY" -c '
import os, pickle, sys
import memcached_peer as m
port = int(os.environ["PORT"])
marks = {k: m.get(port, k) for k in m.keys(port) if k.startswith("abdm:")}
assert len(marks) == 1, marks
pickle.dump(marks, open(sys.argv[1], "wb"))' "$tmp/markers"

run 1
cp -p "$tmp/state.copy" "$state"
# ... and puts it back.
"$PY" -c '
import os, pickle, sys
import memcached_peer as m
for k, v in pickle.load(open(sys.argv[1], "rb")).items():
    m.put(int(os.environ["PORT"]), k, v)' "$tmp/markers"
run 2

both=$(sort "$tmp/nonces-1" | uniq | comm -12 - <(sort "$tmp/nonces-2" | uniq) |
       wc -l)
echo "nonces on the server: run 1 $(wc -l < "$tmp/nonces-1")," \
     "run 2 $(wc -l < "$tmp/nonces-2"), in both: $both"
[ "$both" -eq 0 ] || fail "$both nonces used in both runs"
# Within a run too, every nonce is unique.
for r in 1 2; do
    [ "$(sort "$tmp/nonces-$r" | uniq -d | wc -l)" -eq 0 ] ||
        fail "run $r used a nonce twice"
done
echo "$0: OK"
