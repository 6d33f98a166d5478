#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-powercut-plugin: a power cut (SIGKILL of nbdkit) keeps exactly
# what was flushed.  Three rounds over one image, each ended by SIGKILL:
# 1. writes, zeroes and trims of every alignment are read back at once,
#    and with no flush the image is byte-exact the original (even after a
#    clean NBD disconnect);
# 2. writes, flush, more writes: the image is the flushed state exactly;
# 3. a FUA write, FUA zero and FUA trim are durable without a flush; the
#    writes before them may be (the plugin flushes its whole cache), the
#    writes after them are not.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-powercut-helpers.sh"

size=$(( 4 * 1024 * 1024 ))
pc_image "$tmp/disk" $size
cp "$tmp/disk" "$tmp/orig"

cat > "$tmp/ops.py" <<'EOF_PY'
import nbd, os, random, sys
from abdtest.workload import connect
from abdtest import powercut as pm

phase, state = sys.argv[1], sys.argv[2]
h = connect()
m = pm.Model(open(os.environ["DISK"], "rb").read())
size = len(m.cur)
rnd = random.Random(phase)
FUA = nbd.CMD_FLAG_FUA

def mixed_ops(lo, hi, n):
    """n writes, zeroes and trims of every alignment in [lo, hi), each
    read back at once with its neighbours."""
    for _ in range(n):
        count = rnd.choice([1, 7, 512, 513, 4096, 5000, 65536, 100001])
        off = rnd.randrange(lo, hi - count)
        if rnd.random() < 0.3:
            off = off // 512 * 512
        op = rnd.random()
        if op < 0.7:
            data = rnd.randbytes(count)
            h.pwrite(data, off)
            m.write(off, data)
        elif op < 0.85:
            h.zero(count, off)
            m.zero(off, count)
        else:
            h.trim(count, off)
            m.zero(off, count)
        a, b = max(0, off - 700), min(size, off + count + 700)
        if h.pread(b - a, a) != m.cur[a:b]:
            sys.exit("%s: a read after %d bytes at %d differs" % (phase, count, off))

if phase == "unflushed":
    mixed_ops(0, size, 300)
    m.check_reads(h)
elif phase == "flush":
    mixed_ops(0, size, 150)
    h.flush()
    m.flush()
    mixed_ops(0, size, 150)
    m.check_reads(h)
elif phase == "fua":
    mixed_ops(0, size // 4, 50)                      # may become durable
    data = rnd.randbytes(300001)
    h.pwrite(data, size // 4 + 77, FUA)
    m.write(size // 4 + 77, data, fua=True)
    h.zero(70000, size // 2 + 1000, FUA)
    m.zero(size // 2 + 1000, 70000, fua=True)
    h.trim(65536, size // 2 + 200 * 1024, FUA)
    m.zero(size // 2 + 200 * 1024, 65536, fua=True)
    mixed_ops(size * 3 // 4, size, 50)               # must not
    m.check_reads(h)
h.shutdown()
m.save(state)
EOF_PY

cat > "$tmp/check.py" <<'EOF_PY'
import os, sys
from abdtest import powercut as pm
m = pm.load(sys.argv[1])
bad, old, newer = m.check_image(os.environ["DISK"], allow_pending=False)
pm.fail_if_bad(bad, sys.argv[2])
print("%s: %d changed sectors as flushed, %d newer (allowed)" % (sys.argv[2], old, newer))
EOF_PY
export DISK=$tmp/disk

# 1. No flush: nothing reaches the image.
pc_start r1 file="$tmp/disk"
"$PY" "$tmp/ops.py" unflushed "$tmp/m1" || fail "round 1 (no flush) failed"
pc_cut "$pid"
cmp "$tmp/disk" "$tmp/orig" ||
    fail "round 1: the image changed without a flush"

# 2. Write, flush, write: the image is the flushed state.
pc_start r2 file="$tmp/disk"
"$PY" "$tmp/ops.py" flush "$tmp/m2" || fail "round 2 (flush) failed"
pc_cut "$pid"
"$PY" "$tmp/check.py" "$tmp/m2" "round 2 (flush)" ||
    fail "round 2: the image is not the flushed state"
cmp -s "$tmp/disk" "$tmp/orig" && fail "round 2: the flush did not reach the image"

# 3. FUA.
pc_start r3 file="$tmp/disk"
"$PY" "$tmp/ops.py" fua "$tmp/m3" || fail "round 3 (FUA) failed"
pc_cut "$pid"
"$PY" "$tmp/check.py" "$tmp/m3" "round 3 (FUA)" ||
    fail "round 3: the image does not hold the FUA requests (or holds later writes)"

echo "$0: OK"
