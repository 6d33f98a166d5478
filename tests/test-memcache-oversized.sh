#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-memcache-filter: an oversized value is one miss (issue #19,
# item 4).  A peer stores a 100 KiB value (raw memcached protocol) under
# the key of one warm block; the next reads, on default settings, 64K
# at a time, 16 in flight:
#   - return every byte of the image;
#   - serve every other block from memcached, as before (a lost batch
#     would lose the hits of the blocks around it on that server), less
#     those of batches that timed out (a loaded machine: each costs at
#     most 16 blocks, and those timeouts are counted);
#   - count exactly one bad value (format_mismatches), no error, and
#     leave the server up (before, such a value was a protocol error:
#     batch lost, connection closed, server down at every probe);
#   - the block itself is filled again: the read after that hits it too.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-memcache-helpers.sh"

mc_start_three
head -c $(( 4 * 1024 * 1024 )) /dev/urandom > "$tmp/img"
ctl=$tmp/ctl.sock
start_nbdkit mc --filter="$MEMCACHE_FILTER" file "$tmp/img" \
    memcache-servers="$MC_SERVERS" memcache-id=oversized-test \
    memcache-control="$ctl"

nbdcopy "$uri" "$tmp/out"
cmp "$tmp/img" "$tmp/out" || fail "cold read differs"
mc_filled "$ctl"

export uri IMG=$tmp/img CTL=$ctl PORTS="${MC_PORTS[*]}"
"$PY" -c '
import os, random, sys
import nbd
from abdtest import control
import memcached_peer

BS, CHUNK = 4096, 65536
ctl = os.environ["CTL"]
ports = [int(p) for p in os.environ["PORTS"].split()]
image = open(os.environ["IMG"], "rb").read()
nblocks = len(image) // BS
h = nbd.NBD()
h.connect_uri(os.environ["uri"])

def read_all(seed):
    """Every 64K chunk once, random order, 16 in flight; byte-exact."""
    order = list(range(0, len(image), CHUNK))
    random.Random(seed).shuffle(order)
    pending = {}
    while order or pending:
        while order and len(pending) < 16:
            off = order.pop()
            buf = nbd.Buffer(CHUNK)
            pending[h.aio_pread(buf, off)] = (off, buf)
        h.poll(-1)
        for c in [c for c in pending if h.aio_command_completed(c)]:
            off, buf = pending.pop(c)
            if buf.to_bytearray() != image[off:off + CHUNK]:
                sys.exit("chunk at %d differs from the image" % off)

def delta(a, b, k):
    return b[k] - a[k]

def wait_filled():
    from abdtest import procs
    procs.wait_for(lambda: control.field(ctl, "fills_queued") == 0, 20,
                   "fills queued")

def lost(a, b):
    """Blocks a pass may miss for reasons of the machine: a lookup batch
    that timed out (the host or a server not scheduled for
    memcache-timeout) costs its server\x27s share of one 64K read."""
    return 16 * delta(a, b, "timeouts")

# Warm: every block a hit.
st0 = control.status_json(ctl)
read_all(1)
wait_filled()
st1 = control.status_json(ctl)
if delta(st0, st1, "hits") < nblocks - lost(st0, st1):
    sys.exit("not warm: %d hits of %d: %s" % (
        delta(st0, st1, "hits"), nblocks,
        {k: delta(st0, st1, k) for k in st1 if isinstance(st1[k], int)}))
if delta(st0, st1, "hits") < nblocks:
    # Timeouts left misses, filled since: read again.
    st0 = st1
    read_all(4)
    wait_filled()
    st1 = control.status_json(ctl)

block = 300
where = control.request_json(ctl, "locate", str(block))
port, server = ports[where["server"]], "server%d" % where["server"]
memcached_peer.put(port, where["key"], os.urandom(100 * 1024))

read_all(2)
wait_filled()
st2 = control.status_json(ctl)
s1, s2 = st1["servers"][server], st2["servers"][server]
print("after planting 100 KiB under block %d (%s): hits %d, misses %d, "
      "format_mismatches %d, timeouts %d, errors %d, downs %d, state %s"
      % (block, server, delta(st1, st2, "hits"), delta(st1, st2, "misses"),
         delta(st1, st2, "format_mismatches"), delta(st1, st2, "timeouts"),
         delta(st1, st2, "errors"), delta(s1, s2, "downs"), s2["state"]))
assert delta(st1, st2, "format_mismatches") == 1, "not one bad value counted"
assert delta(st1, st2, "hits") >= nblocks - 1 - lost(st1, st2), \
    "other blocks missed"
assert delta(st1, st2, "skipped_down") == 0, "blocks skipped"
assert delta(s1, s2, "errors") == 0, "the value cost an error"
assert delta(s1, s2, "downs") == 0 and s2["state"] != "down", \
    "%s was taken down" % server

# The miss was filled from the lower device: hits again.
read_all(3)
st3 = control.status_json(ctl)
assert delta(st2, st3, "hits") >= nblocks - lost(st2, st3), \
    "%d hits of %d after the fill" % (delta(st2, st3, "hits"), nblocks)
assert delta(st2, st3, "format_mismatches") == 0
h.shutdown()
' || fail "oversized value"
echo "$0: OK"
