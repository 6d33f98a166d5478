#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-memcache-filter: a peer that can reach the memcached servers, and
# nothing else, can neither read nor change a block.  It lists the keys,
# reads every value (no plaintext of the disk may show in keys or
# values), then rewrites every value in each way it can (bit flips,
# truncation, extension, another block's value, forged values in this and
# the previous format, the older value of the same block): every read
# through the filter returns exactly the image, and every rewritten value
# read is counted as a failure.  Then the same over async: a client's
# partial writes over tampered blocks, flushed, leave the file equal to
# the original plus those writes (the read-modify-write never merges
# forged bytes).

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-memcache-helpers.sh"
source "$abs_top_srcdir/tests/test-async-helpers.sh"

mc_start_three
id=attacker-test-device
marker=ABD-PLAINTEXT-MARKER
export PYTHONPATH=$abs_top_srcdir/tests PORTS="${MC_PORTS[*]}"
export MARKER=$marker IMG=$tmp/img ID=$id

# 1 MiB: every 4K block starts with the marker and its number.
"$PY" -c '
import os
with open(os.environ["IMG"], "wb") as f:
    for b in range(256):
        f.write(("%s %06d " % (os.environ["MARKER"], b)).encode().ljust(4096, b"."))
'
cp "$tmp/img" "$tmp/original"

# peer CODE: Python as the hostile peer (module memcached_peer as m).
peer ()
{
    "$PY" -c '
import os, sys
import memcached_peer as m
ports = [int(p) for p in os.environ["PORTS"].split()]
'"$1"
}

# failures SOCKET: values refused so far.
failures ()
{
    echo $(( $(status_field "$1" format_mismatches) +
             $(status_field "$1" auth_failures) ))
}

# ---- memcache alone ----
ctl=$tmp/mc.ctl
start_nbdkit mc --filter="$MEMCACHE_FILTER" file "$tmp/img" \
    memcache-servers="$MC_SERVERS" memcache-id="$id" \
    memcache-timeout=500 memcache-control="$ctl"
export uri
nbdcopy "$uri" "$tmp/out"
cmp "$tmp/img" "$tmp/out" || fail "cold read differs"
mc_filled "$ctl"

# What the peer sees: keys that name nothing, values that show nothing.
peer '
snap = m.snapshot(ports)
assert len(snap) == 256, "expected 256 cached blocks, the peer sees %d" % len(snap)
for (port, key), v in snap.items():
    assert key.startswith("abd3:") and len(key) == 27, "key %r" % key
    assert os.environ["ID"] not in key, "key %r names the device" % key
    assert os.environ["MARKER"].encode() not in v, "plaintext in a value"
    assert os.environ["MARKER"][:8].encode() not in v, "plaintext in a value"
print("peer: 256 keys and values read, no plaintext")
' || fail "the peer learned something"

# check_exact WHAT: the whole image through the filter is exact, read
# twice (the second pass from the refilled cache).
check_exact ()
{
    local pass
    for pass in 1 2; do
        nbdcopy "$uri" "$tmp/out"
        cmp "$tmp/img" "$tmp/out" || fail "$1: read $pass differs from the image"
        grep -q FORGED "$tmp/out" && fail "$1: forged bytes served"
    done
    return 0
}

for how in flip truncate extend swap forge-v2 forge-v1; do
    before=$(failures "$ctl")
    n=$(peer "print(m.tamper(ports, '$how'))") || fail "$how: tampering failed"
    check_exact "$how"
    refused=$(( $(failures "$ctl") - before ))
    echo "$how: $n values rewritten, $refused refused, reads exact"
    [ "$refused" -ge "$n" ] || fail "$how: $n values rewritten, only $refused refused"
done

# Replay: the peer keeps every value, the client rewrites every block
# (the filter stores the new values), the peer puts the old ones back.
peer '
import pickle
pickle.dump(m.snapshot(ports), open(os.environ["IMG"] + ".snap", "wb"))
'
"$PY" -c '
import nbd, os
h = nbd.NBD(); h.connect_uri(os.environ["uri"])
for b in range(256):
    h.pwrite(("rewritten %06d " % b).encode().ljust(4096, b"+"), b * 4096)
h.shutdown()
'
before=$(failures "$ctl")
peer '
import pickle
snap = pickle.load(open(os.environ["IMG"] + ".snap", "rb"))
for (port, key), v in snap.items():
    m.put(port, key, v)
print("replayed", len(snap))
'
check_exact replay
refused=$(( $(failures "$ctl") - before ))
echo "replay: 256 old values put back, $refused refused, reads exact"
[ "$refused" -ge 256 ] || fail "replay: only $refused of 256 old values refused"
stop_nbdkit "$pid"

# ---- async over memcache: read-modify-write over forged blocks ----
cp "$tmp/original" "$tmp/img"
actl=$tmp/async.ctl mctl=$tmp/mc2.ctl
async_start stack --filter="$ASYNC_FILTER" --filter="$MEMCACHE_FILTER" \
    file "$tmp/img" async-control="$actl" async-writeback-delay=60000 async-write-size=32M \
    memcache-servers="$MC_SERVERS" memcache-id="$id-2" \
    memcache-timeout=500 memcache-control="$mctl"
export uri
nbdcopy "$uri" "$tmp/out"
n=$(peer "print(m.tamper(ports, 'forge-v2'))")
# 100 bytes in the middle of every block: each write needs the rest of
# its block from below.
cp "$tmp/original" "$tmp/expected"
EXPECTED=$tmp/expected "$PY" -c '
import nbd, os
h = nbd.NBD(); h.connect_uri(os.environ["uri"])
with open(os.environ["EXPECTED"], "r+b") as f:
    for b in range(256):
        data = ("client %06d " % b).encode().ljust(100, b"#")
        h.pwrite(data, b * 4096 + 1000)
        f.seek(b * 4096 + 1000); f.write(data)
h.flush()
h.shutdown()
' || fail "partial writes failed"
abdctl -s "$actl" flush 60 || fail "abdctl flush failed"
[ "$(failures "$mctl")" -ge 256 ] ||
    fail "the read-modify-writes did not meet the forged values"
stop_nbdkit "$pid"
cmp "$tmp/img" "$tmp/expected" ||
    fail "async over memcache: file differs from original + writes: $(first_diff "$tmp/img" "$tmp/expected")"
grep -q FORGED "$tmp/img" && fail "forged bytes reached the disk"
echo "async over memcache: $n values forged, 256 partial writes, file exact"
echo "$0: OK"
