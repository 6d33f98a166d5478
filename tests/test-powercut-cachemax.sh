#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-powercut-plugin cache-max=SIZE: a cache that would grow past SIZE
# is written back first, as a disk writes back its full cache.  With
# cache-max=16K (four 4 KiB pages) and 1000 unflushed writes of every
# alignment, reads still see every write (partial sectors merge with
# written-back data); after a power cut each sector holds its flushed
# content or a later write's, some hold written-back data, and some not
# the newest (what was still cached).

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-powercut-helpers.sh"

size=$(( 1024 * 1024 ))
pc_image "$tmp/disk" $size
export DISK=$tmp/disk

cat > "$tmp/ops.py" <<'EOF_PY'
import os, random, sys
from abdtest.workload import connect
from abdtest import powercut as pm

h = connect()
m = pm.Model(open(os.environ["DISK"], "rb").read())
size = len(m.cur)
rnd = random.Random(3)
for i in range(1000):
    count = rnd.choice([1, 100, 512, 4096, 6000, 20000])
    off = rnd.randrange(0, size - count)
    data = rnd.randbytes(count)
    h.pwrite(data, off)
    m.write(off, data)
    if i == 200:
        h.flush()
        m.flush()
    a, b = max(0, off - 600), min(size, off + count + 600)
    if h.pread(b - a, a) != m.cur[a:b]:
        sys.exit("a read after %d bytes at %d differs" % (count, off))
m.check_reads(h)
h.shutdown()
m.save(sys.argv[1])
EOF_PY

pc_start cm file="$tmp/disk" cache-max=16K
"$PY" "$tmp/ops.py" "$tmp/model" || fail "the requests failed"
pc_cut "$pid"
"$PY" -c '
import os, sys
from abdtest import powercut as pm
m = pm.load(sys.argv[1])
bad, old, newer = m.check_image(os.environ["DISK"], allow_pending=True)
pm.fail_if_bad(bad, "cache-max=16K")
image = open(os.environ["DISK"], "rb").read()
stale = sum(image[s * 512:(s + 1) * 512] != m.sector(s) for s in m.pending)
print("cache-max=16K: %d sectors as flushed, %d newer, %d not the newest"
      % (old, newer, stale))
assert newer > 0, "nothing was written back"
assert stale > 0, "nothing was still in the cache"
' "$tmp/model" || fail "cache-max=16K"

echo "$0: OK"
