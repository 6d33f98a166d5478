#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter: zero and trim go into the store as ranges, without
# data memory (dirty_data_bytes stays 0, even for a zero larger than
# async-max-dirty); zeroed and trimmed ranges read as zeros.  On a sparse
# file, `nbdinfo --map` never reports a range that holds dirty data as a
# hole or zero (also where the lower file has a hole or a zeroed range
# was split by a write), and reports dirty zeroed and trimmed ranges as
# zero.  After a flush the file holds zeros where zeroed and the data
# where written.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-helpers.sh"
requires nbdinfo

M=$(( 1024 * 1024 )); K=1024
size=$(( 16 * M ))
# A sparse file with three data regions.
truncate -s $size "$tmp/disk"
make_random "$tmp/data" $(( 512 * K )) 41
dd if="$tmp/data" of="$tmp/disk" bs=64K seek=16 count=8 conv=notrunc status=none  # [1M, 1.5M)
dd if="$tmp/data" of="$tmp/disk" bs=64K seek=48 count=4 conv=notrunc status=none  # [3M, 3.25M)
dd if="$tmp/data" of="$tmp/disk" bs=64K seek=96 count=1 conv=notrunc status=none  # [6M, 6M+64K)
cp "$tmp/disk" "$tmp/model"

ctl=$tmp/ctl.sock
async_start ext --filter="$ASYNC_FILTER" file "$tmp/disk" \
    async-control="$ctl" async-writeback-delay=60000 async-write-size=32M \
    async-max-dirty=1M
export uri MODEL=$tmp/model

# ops.py PHASE: apply the phase's requests to the export and to the model.
cat > "$tmp/ops.py" <<'EOF'
import os, random, sys
from abdtest.workload import connect
M, K = 1 << 20, 1 << 10
h = connect()
size = h.get_size()
model = bytearray(open(os.environ["MODEL"], "rb").read())
rnd = random.Random(42)
phase = sys.argv[1]
if phase == "zero-trim":
    for off, n in [(M + 64*K, 128*K), (5*M, 2*M), (8*M, 8*M)]:
        h.zero(n, off)
        model[off:off+n] = bytes(n)
    # The trimmed blocks read as zeros in the store (and become a hole).
    h.trim(128*K, 3*M)
    model[3*M:3*M+128*K] = bytes(128*K)
elif phase == "write":
    for off, n in [(2*M, 40*K),            # into a hole of the file
                   (4*M + 100, 10),        # partial block in a hole
                   (9*M, 8*K),             # splits the big zeroed range
                   (5*M + 4000, 200),      # unaligned, in a zeroed range
                   (3*M + 64*K, 4*K)]:     # into the trimmed range
        data = bytes(rnd.randint(1, 255) for _ in range(n))   # no zero byte
        h.pwrite(data, off)
        model[off:off+n] = data
chunk = 4 * M
for off in range(0, size, chunk):
    if h.pread(chunk, off) != bytes(model[off:off+chunk]):
        sys.exit("%s: read of %d at %d differs from the model" % (phase, chunk, off))
h.shutdown()
open(os.environ["MODEL"], "wb").write(model)
EOF

# checkmap.py WHEN: the extents from nbdinfo --map --json (stdin) cover
# the device; no extent overlapping written bytes is a hole or zero; with
# WHEN=dirty, the zeroed and trimmed ranges (minus written blocks) are
# reported zero.
cat > "$tmp/checkmap.py" <<'EOF'
import json, sys
M, K = 1 << 20, 1 << 10
when, size = sys.argv[1], int(sys.argv[2])
ext = json.load(sys.stdin)
pos = 0
for e in ext:
    assert e["offset"] == pos, "extents not contiguous at %d" % pos
    pos += e["length"]
assert pos == size, "extents end at %d, not %d" % (pos, size)
def overlapping(a, b):
    return [e for e in ext if e["offset"] < b and e["offset"] + e["length"] > a]
written = [(2*M, 40*K), (4*M + 100, 10), (9*M, 8*K), (5*M + 4000, 200),
           (3*M + 64*K, 4*K), (M, 64*K), (M + 192*K, 320*K), (3*M + 128*K, 128*K)]
for off, n in written:
    for e in overlapping(off, off + n):
        if e["type"] & 3:
            sys.exit("%s: %d bytes at %d hold data, but extent %s says %s" %
                     (when, n, off, (e["offset"], e["length"]), e["description"]))
if when == "dirty":
    # Zeroed/trimmed blocks that no write touched.
    for a, b in [(M + 64*K, M + 192*K), (5*M + 8*K, 7*M), (8*M, 9*M),
                 (9*M + 8*K, 16*M), (3*M, 3*M + 64*K), (3*M + 68*K, 3*M + 128*K)]:
        for e in overlapping(a, b):
            if not e["type"] & 2:
                sys.exit("dirty: zeroed range [%d, %d) reported as %s at %d" %
                         (a, b, e["description"], e["offset"]))
EOF

# Zero and trim only: dirty, but no data memory, more than max-dirty.
"$PY" "$tmp/ops.py" zero-trim || fail "zeroed/trimmed ranges do not read as zeros"
dirty=$(st "$ctl" dirty_bytes)
want=$(( 128*K + 2*M + 8*M + 128*K ))
[ "$dirty" -eq $want ] || fail "dirty_bytes is $dirty, expected $want"
[ "$dirty" -gt "$(st "$ctl" max_dirty_bytes)" ] || fail "test bug: zero not over max-dirty"
[ "$(st "$ctl" dirty_data_bytes)" -eq 0 ] ||
    fail "zero/trim used data memory: dirty_data_bytes=$(st "$ctl" dirty_data_bytes)"
[ "$(st "$ctl" dirty_entries)" -eq 4 ] || fail "expected 4 store entries (one per range)"
[ "$(st "$ctl" space_waits)" -eq 0 ] || fail "zero/trim waited for space"
cmp -s "$tmp/disk" "$tmp/model" && fail "the file already has the zeros (not dirty)"

# Data writes into holes and into the zeroed and trimmed ranges.
"$PY" "$tmp/ops.py" write || fail "reads after the writes differ"
[ "$(st "$ctl" dirty_data_bytes)" -gt 0 ] || fail "no dirty data after writes"
[ "$(st "$ctl" written_back_bytes)" -eq 0 ] || fail "data was written back early"
nbdinfo --map --json "$uri" > "$tmp/map1.json" || fail "nbdinfo --map failed"
"$PY" "$tmp/checkmap.py" dirty $size < "$tmp/map1.json" || {
    nbdinfo --map "$uri" >&2; fail "wrong extents while dirty"; }

# After the flush: the file is the model; the written data is data.
abdctl -s "$ctl" flush 30 || fail "abdctl flush failed"
[ "$(st "$ctl" dirty_bytes)" -eq 0 ] || fail "dirty after flush"
cmp "$tmp/disk" "$tmp/model" ||
    fail "after flush the file differs: $(first_diff "$tmp/disk" "$tmp/model")"
nbdinfo --map --json "$uri" > "$tmp/map2.json" || fail "nbdinfo --map failed"
"$PY" "$tmp/checkmap.py" clean $size < "$tmp/map2.json" || {
    nbdinfo --map "$uri" >&2; fail "wrong extents after flush"; }
stop_nbdkit "$pid"
cmp "$tmp/disk" "$tmp/model" || fail "after exit the file differs"
echo "$0: OK"
