#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter: many random writes of several sizes, overlapping,
# read back byte-exact through the filter while they are still dirty (in
# RAM, nothing written back yet), then `abdctl flush` puts exactly the
# expected image on the lower file.  The same over the memory plugin.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-helpers.sh"

size=$(( 32 * 1024 * 1024 ))
make_random "$tmp/disk" $size 1
cp "$tmp/disk" "$tmp/orig"
ctl=$tmp/ctl.sock

# A long delay and a huge write size: nothing is due for writeback, and
# the store (256M) stays below half full, so the data stays dirty.
async_start rb --filter="$ASYNC_FILTER" file "$tmp/disk" \
    async-control="$ctl" async-writeback-delay=60000 async-write-size=32M

# writes.py MODE: MODE=write: random writes into the export and into a
# model; the model is saved as $EXPECTED.  MODE=read: read the export
# back (whole, in chunks, and at random unaligned places) and compare
# with $EXPECTED.
cat > "$tmp/writes.py" <<'EOF'
import nbd, os, random, sys
mode = sys.argv[1]
h = nbd.NBD(); h.connect_uri(os.environ["uri"])
size = h.get_size()
exp_path = os.environ["EXPECTED"]
if mode == "write":
    base = os.environ.get("BASE")
    model = bytearray(open(base, "rb").read()) if base else bytearray(size)
    assert len(model) == size
    rnd = random.Random(int(os.environ.get("SEED", "2")))
    sizes = [1, 7, 512, 4095, 4096, 4097, 8192, 12345, 65536, 65537,
             131072, 1 << 20, (1 << 20) + 333]
    for i in range(1500):
        count = rnd.choice(sizes)
        if i % 3 == 0:
            # A small hot region: many overlapping writes.
            offset = rnd.randrange(0, 256 * 1024)
        elif i % 3 == 1:
            offset = rnd.randrange(0, size - count + 1) & ~4095
        else:
            offset = rnd.randrange(0, size - count + 1)
        data = rnd.randbytes(count)
        h.pwrite(data, offset)
        model[offset:offset+count] = data
    open(exp_path, "wb").write(model)
else:
    model = open(exp_path, "rb").read()
    assert len(model) == size
    chunk = 4 << 20
    for off in range(0, size, chunk):
        got = h.pread(min(chunk, size - off), off)
        if got != model[off:off+len(got)]:
            i = next(j for j in range(len(got)) if got[j] != model[off+j])
            sys.exit("read-back differs at byte %d" % (off + i))
    rnd = random.Random(3)
    for i in range(500):
        count = rnd.randint(1, 300000)
        offset = rnd.randint(0, size - count)
        if h.pread(count, offset) != model[offset:offset+count]:
            sys.exit("read of %d at %d differs" % (count, offset))
h.shutdown()
EOF

export uri EXPECTED=$tmp/expected BASE=$tmp/orig
"$PY" "$tmp/writes.py" write || fail "writes failed"

# Everything is still in RAM: nothing was written back, the lower file is
# untouched.
dirty=$(st "$ctl" dirty_bytes)
[ "$dirty" -gt 0 ] || fail "dirty_bytes is $dirty after the writes"
[ "$(st "$ctl" written_back_bytes)" -eq 0 ] ||
    fail "data was written back despite async-writeback-delay=60000"
cmp -s "$tmp/disk" "$tmp/orig" || fail "the lower file changed before a flush"
cmp -s "$tmp/expected" "$tmp/orig" && fail "the writes changed nothing (test bug)"
[ "$(st "$ctl" client_write_requests)" -eq 1500 ] ||
    fail "client_write_requests is not 1500"

# Read-back while dirty.
"$PY" "$tmp/writes.py" read || fail "read-back while dirty differs"
[ "$(st "$ctl" dirty_bytes)" -eq "$dirty" ] || fail "dirty_bytes changed by reads"

# Flush: the lower file is the expected image, nothing is dirty.
abdctl -s "$ctl" flush 30 || fail "abdctl flush failed"
cmp "$tmp/disk" "$tmp/expected" ||
    fail "after flush the lower file differs: $(first_diff "$tmp/disk" "$tmp/expected")"
[ "$(st "$ctl" dirty_bytes)" -eq 0 ] || fail "dirty_bytes not 0 after flush"
[ "$(st "$ctl" dirty_data_bytes)" -eq 0 ] || fail "dirty_data_bytes not 0 after flush"
[ "$(st "$ctl" lower_flushes)" -gt 0 ] || fail "no lower flush after abdctl flush"
# Reads after the flush come from the file and are still right.
"$PY" "$tmp/writes.py" read || fail "read-back after flush differs"
stop_nbdkit "$pid"
cmp "$tmp/disk" "$tmp/expected" || fail "after exit the lower file differs"

# The memory plugin (starts as zeros): read-back while dirty and after
# flush.
ctl2=$tmp/ctl2.sock
async_start mem --filter="$ASYNC_FILTER" memory $size \
    async-control="$ctl2" async-writeback-delay=60000 async-write-size=32M
export uri EXPECTED=$tmp/expected-mem BASE= SEED=5
"$PY" "$tmp/writes.py" write || fail "memory: writes failed"
[ "$(st "$ctl2" dirty_bytes)" -gt 0 ] || fail "memory: nothing dirty"
"$PY" "$tmp/writes.py" read || fail "memory: read-back while dirty differs"
abdctl -s "$ctl2" flush 30 || fail "memory: abdctl flush failed"
[ "$(st "$ctl2" dirty_bytes)" -eq 0 ] || fail "memory: dirty after flush"
"$PY" "$tmp/writes.py" read || fail "memory: read-back after flush differs"
stop_nbdkit "$pid"
echo "$0: OK"
