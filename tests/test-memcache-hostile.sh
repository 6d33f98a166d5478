#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-memcache-filter: no reply from a server crashes nbdkit or
# changes a byte read, with either protocol.  The only server is a
# hostile one (tests/memcached_hostile.py) that answers every other batch
# with an attack: huge and negative lengths (libmemcached 1.1.4, the text
# client before memcached-ext's, crashed on 2^64-2 and on a 300-byte key),
# long keys, frames cut short or left hanging, garbage, opaque tokens that
# name nothing (meta), endless lines, values of the wrong size and values
# too long.  Reads and writes go on throughout: every read is compared
# with the image, nbdkit must stay up, every attack must have been sent,
# and the honest batches between them must have given hits.
#
# HOSTILE_PROTOCOLS (default "meta text") chooses the protocols to run.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-memcache-helpers.sh"

export IMG=$tmp/img
"$PY" -c '
import os
with open(os.environ["IMG"], "wb") as f:
    f.write(os.urandom(1 << 20))
'

for proto in ${HOSTILE_PROTOCOLS:-meta text}; do
    echo "== memcache-protocol=$proto"
    rm -f "$tmp/port" "$tmp/attacks-$proto"
    python3 "$abs_top_srcdir/tests/memcached_hostile.py" "$proto" \
        "$tmp/port" "$tmp/attacks-$proto" >"$tmp/hostile-$proto.log" 2>&1 &
    hostile_pid=$!
    cleanup_fn kill_wait "$hostile_pid" 10
    wait_for 10 test -s "$tmp/port" || fail "the hostile server did not start"
    port=$(cat "$tmp/port")

    ctl=$tmp/$proto.ctl
    # memcache-retry=1: the server is tried again at once after each
    # attack, so that the next batch brings the next attack.
    _start_nbdkit_any_protocol "$proto" --filter="$MEMCACHE_FILTER" \
        file "$tmp/img" memcache-servers="127.0.0.1:$port" \
        memcache-protocol="$proto" memcache-id="hostile-$proto" \
        memcache-timeout=300 memcache-retry=1 memcache-control="$ctl"
    nbdkit_pid=$pid
    export URI="nbd+unix:///?socket=$sock" ATTACKS=$tmp/attacks-$proto
    export NBDKIT_PID=$nbdkit_pid PROTO=$proto
    export NAMES
    NAMES=$(python3 -c "
import sys; sys.path.insert(0, '$abs_top_srcdir/tests')
import memcached_hostile as h
a = h.text_attacks() if '$proto' == 'text' else h.meta_attacks()
print(' '.join(x[0] for x in a))")

    # Rounds of reads of the whole image (in 64 KiB requests, a batch
    # each) and of 4K writes, until every attack has answered a multi-get
    # twice (60 s at most, 8 rounds at least); stores meet them too.  The image file is what the lower
    # device holds: every read must equal it.
    "$PY" -c '
import os, random, sys, time
import nbd

names = os.environ["NAMES"].split()
img = bytearray(open(os.environ["IMG"], "rb").read())
h = nbd.NBD()
h.connect_uri(os.environ["URI"])
rnd = random.Random(19)

def sent(kind="get"):
    """How many times each attack answered a batch of KIND."""
    try:
        with open(os.environ["ATTACKS"]) as f:
            done = [l.split()[0] for l in f if l.split()[1:] == [kind]]
    except FileNotFoundError:
        done = []
    return {n: done.count(n) for n in names}

def alive():
    """Not a zombie either (see alive in tests/functions.sh)."""
    try:
        with open("/proc/%s/stat" % os.environ["NBDKIT_PID"]) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False

deadline = time.monotonic() + 60
rounds = 0
while True:
    for off in range(0, len(img), 65536):
        try:
            got = h.pread(65536, off)
        except nbd.Error as e:
            sys.exit("round %d: read at %d failed: %s (nbdkit %s)"
                     % (rounds, off, e, "alive" if alive() else "DEAD"))
        if got != img[off:off + 65536]:
            sys.exit("round %d: read at %d differs from the image"
                     % (rounds, off))
    for _ in range(4):
        off = rnd.randrange(256) * 4096
        data = os.urandom(4096)
        h.pwrite(data, off)
        img[off:off + 4096] = data
    rounds += 1
    missing = [n for n, c in sent().items() if c < 2]
    if rounds >= 8 and not missing:
        break
    if time.monotonic() > deadline:
        sys.exit("attacks not sent twice within 60 s: %s" % " ".join(missing))
h.shutdown()
print("%s: %d rounds of reads exact; attacks on multi-gets: %s; on stores: %s"
      % (os.environ["PROTO"], rounds,
         " ".join("%s=%d" % kv for kv in sent().items()),
         sum(sent("store").values())))
' || fail "memcache-protocol=$proto: $(alive "$nbdkit_pid" &&
                                           echo "nbdkit alive" ||
                                           echo "nbdkit died")"

    alive "$nbdkit_pid" || fail "memcache-protocol=$proto: nbdkit died"
    hits=$(status_field "$ctl" hits)
    errors=$(status_field "$ctl" errors)
    timeouts=$(status_field "$ctl" timeouts)
    mismatches=$(status_field "$ctl" format_mismatches)
    echo "$proto: hits=$hits errors=$errors timeouts=$timeouts" \
         "format_mismatches=$mismatches"
    [ "$hits" -gt 0 ] || fail "$proto: no hit from the honest batches"
    [ "$errors" -gt 0 ] || fail "$proto: no attack counted as an error"
    [ "$mismatches" -gt 0 ] ||
        fail "$proto: no wrong-size value refused by the value format"
    stop_nbdkit "$nbdkit_pid"
    kill_wait "$hostile_pid" 10
done
echo "$0: OK"
