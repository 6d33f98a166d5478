#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-powercut-plugin: all connections share one cache.  can_multi_conn
# is true; a write on one connection is read at once on another; two
# connections write in parallel (threads) and a flush on a third makes
# all their acknowledged writes durable; the writes after that flush, on
# any connection, do not survive the power cut.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-powercut-helpers.sh"

size=$(( 4 * 1024 * 1024 ))
pc_image "$tmp/disk" $size
cp "$tmp/disk" "$tmp/orig"
export DISK=$tmp/disk

cat > "$tmp/mc.py" <<'EOF_PY'
import nbd, os, random, sys, threading
from abdtest import powercut as pm

def connect():
    h = nbd.NBD()
    h.connect_uri(os.environ["uri"])
    assert h.can_multi_conn(), "can_multi_conn is false"
    return h

h1, h2, h3 = connect(), connect(), connect()
m = pm.Model(open(os.environ["DISK"], "rb").read())
size = len(m.cur)
lock = threading.Lock()

# A write on 1 is read on 2 before any flush.
data = random.randbytes(10000)
h1.pwrite(data, 12345)
m.write(12345, data)
assert h2.pread(10000, 12345) == data, "connection 2 does not see the write"

# Two writers in parallel, each on its own connection and half.
def writer(h, lo, hi, seed):
    rnd = random.Random(seed)
    for _ in range(300):
        count = rnd.choice([512, 4096, 5000, 65536])
        off = rnd.randrange(lo, hi - count)
        data = rnd.randbytes(count)
        h.pwrite(data, off)
        with lock:
            m.write(off, data)
t = [threading.Thread(target=writer, args=(h1, 0, size // 2, 1)),
     threading.Thread(target=writer, args=(h2, size // 2, size, 2))]
for x in t: x.start()
for x in t: x.join()

h3.flush()                      # covers the writes of 1 and 2
m.flush()
for h in (h1, h2):              # not flushed by anyone
    off = random.randrange(0, size - 8192)
    data = random.randbytes(8192)
    h.pwrite(data, off)
    m.write(off, data)
m.check_reads(h3)
for h in (h1, h2, h3):
    h.shutdown()
m.save(sys.argv[1])
EOF_PY

pc_start mc file="$tmp/disk"
"$PY" "$tmp/mc.py" "$tmp/model" || fail "the requests failed"
pc_cut "$pid"
"$PY" -c '
import os, sys
from abdtest import powercut as pm
m = pm.load(sys.argv[1])
bad, old, newer = m.check_image(os.environ["DISK"], allow_pending=False)
pm.fail_if_bad(bad, "multi-conn")
assert old > 0 and newer == 0, (old, newer)
' "$tmp/model" || fail "the image is not the state at the flush on connection 3"
cmp -s "$tmp/disk" "$tmp/orig" && fail "the flush on connection 3 wrote nothing"

echo "$0: OK"
