#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-powercut-plugin unflushed-persist=FRACTION seed=N: after a power
# cut each 512-byte sector holds its last flushed content or content some
# later write gave it, never anything else.  With 0.3, over 4096 sectors
# both cases occur, in about the proportion asked, and older unflushed
# content can survive where the newest did not (any order).  The same seed
# and the same requests give the same image; another seed another one;
# unflushed-persist=1 leaks every write.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-powercut-helpers.sh"

size=$(( 2 * 1024 * 1024 ))
pc_image "$tmp/start" $size

cat > "$tmp/ops.py" <<'EOF_PY'
import os, random, sys
from abdtest.workload import connect
from abdtest import powercut as pm

h = connect()
m = pm.Model(open(os.environ["DISK"], "rb").read())
nsec = m.n
rnd = random.Random(7)          # the same requests in every run

def write_sectors(sectors, zero_share=0.0):
    """Runs of 1-16 adjacent sectors from SECTORS, in random order."""
    sectors = sorted(sectors)
    runs, i = [], 0
    while i < len(sectors):
        j = i + 1
        while j < len(sectors) and j - i < rnd.randint(1, 16) and \
                sectors[j] == sectors[j - 1] + 1:
            j += 1
        runs.append((sectors[i], j - i))
        i = j
    rnd.shuffle(runs)
    for s, n in runs:
        off, count = s * 512, n * 512
        if rnd.random() < zero_share:
            h.zero(count, off)
            m.zero(off, count)
        else:
            data = rnd.randbytes(count)
            h.pwrite(data, off)
            m.write(off, data)

write_sectors(range(nsec))                            # generation 1
h.flush()
m.flush()
write_sectors(range(nsec))                            # generation 2
write_sectors(rnd.sample(range(nsec), nsec // 2), 0.1)  # 3, on half
m.check_reads(h)
h.shutdown()
m.save(sys.argv[1])
EOF_PY

cat > "$tmp/check.py" <<'EOF_PY'
import os, sys
from abdtest import powercut as pm
m = pm.load(sys.argv[1])
persist = float(sys.argv[2])
bad, old, newer = m.check_image(os.environ["DISK"], allow_pending=True)
pm.fail_if_bad(bad, "unflushed-persist=%s" % persist)
image = open(os.environ["DISK"], "rb").read()
once = older = 0
for s, hs in m.pending.items():
    got = pm._h(image[s * 512:(s + 1) * 512])
    if len(hs) == 1:
        once += got in hs
    elif got in hs and got != pm._h(m.sector(s)):
        older += 1
n_once = sum(len(hs) == 1 for hs in m.pending.values())
print("persist=%s: %d sectors as flushed, %d newer; of %d written once, "
      "%d leaked; %d hold an older unflushed write" %
      (persist, old, newer, n_once, once, older))
if persist == 1:
    assert image == bytes(m.cur), "persist=1: not every write leaked"
else:
    assert old > 0 and newer > 0, "expected both flushed and newer sectors"
    share = once / n_once
    assert abs(share - persist) < 0.1, \
        "%.3f of the sectors written once leaked, not about %s" % (share, persist)
    assert older > 0, "no sector kept an older unflushed write"
EOF_PY

# run NAME PARAMS...: a fresh copy of the start image through ops.py and a
# power cut; the image is left in $tmp/NAME.
run ()
{
    local name=$1; shift
    cp "$tmp/start" "$tmp/$name"
    export DISK=$tmp/$name
    pc_start "$name" file="$DISK" "$@"
    "$PY" "$tmp/ops.py" "$tmp/$name.model" || fail "$name: the requests failed"
    pc_cut "$pid"
}

run a unflushed-persist=0.3 seed=42
"$PY" "$tmp/check.py" "$tmp/a.model" 0.3 || fail "seed 42, first run"
run b unflushed-persist=0.3 seed=42
cmp "$tmp/a" "$tmp/b" || fail "the same seed gave two different images"
run c unflushed-persist=0.3 seed=43
"$PY" "$tmp/check.py" "$tmp/c.model" 0.3 || fail "seed 43"
cmp -s "$tmp/a" "$tmp/c" && fail "seeds 42 and 43 gave the same image"
run d unflushed-persist=1
"$PY" "$tmp/check.py" "$tmp/d.model" 1 || fail "unflushed-persist=1"

echo "$0: OK"
