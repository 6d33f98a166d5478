#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter: unaligned requests on a device whose size is not a
# multiple of 4096: 1-byte writes, odd lengths at odd offsets, writes
# straddling 4K blocks, writes, zeroes and trims that end at the device
# end, unaligned zero and trim.  Reads through the filter match a Python
# model byte for byte while the data is dirty, and the lower file matches
# it after `abdctl flush` and after nbdkit exits.  Then the same kind of
# writes and zeroes with writeback racing them (async-writeback-delay=0).
#
# Trim model: the filter keeps whole 4K blocks inside a trim as trimmed
# (they read as zeros; the file plugin punches a hole there) and leaves
# the partial blocks at its ends as they were.  The trim must end at the
# device end for the short last block to count as whole.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-helpers.sh"

size=$(( 10 * 1024 * 1024 + 1234 ))
make_random "$tmp/disk" $size 21
cp "$tmp/disk" "$tmp/model"
cp "$tmp/disk" "$tmp/orig"

# ops.py SEED NOPS TRIM: apply the fixed edge cases (first run only) and
# NOPS random unaligned requests to $uri and to the model file $MODEL (read
# and rewritten); TRIM=1 allows trims.  Then read the whole export back
# and compare with the model.
cat > "$tmp/ops.py" <<'EOF'
import os, random, sys
from abdtest.device import Device, Mismatch
from abdtest.workload import connect
seed, nops, allow_trim = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
B = 4096
h = connect()
size = h.get_size()
dev = Device(size, os.environ["MODEL"])
rnd = random.Random(seed)
log = []

def write(off, n):
    data = rnd.randbytes(n)
    h.pwrite(data, off)
    dev.write(off, data)
    log.append(("write", off, n))

def zero(off, n):
    h.zero(n, off)
    dev.zero(off, n)
    log.append(("zero", off, n))

def trim(off, n):
    h.trim(n, off)
    dev.trim(off, n)            # the whole blocks inside read as zeros
    log.append(("trim", off, n))

def check(what):
    try:
        dev.check(h, what, chunk=1 << 20)
        # Unaligned reads, some at the end.
        for i in range(300):
            n = rnd.randint(1, 20000)
            off = size - n if i % 5 == 0 else rnd.randint(0, size - n)
            dev.verify(off, h.pread(n, off), what)
    except Mismatch as e:
        sys.exit("%s; last ops %s" % (e, log[-5:]))

if os.environ.get("EDGES") == "1":
    last = size // B * B                 # start of the short last block
    write(0, 1)                          # 1 byte
    write(4095, 1)                       # last byte of a block
    write(4096 * 3 + 17, 1)
    write(4093, 7)                       # straddles 4K
    write(8191, 2)
    write(12345, 3 * B + 1)              # odd offset, odd length, 5 blocks
    write(size - 1, 1)                   # the device's last byte
    write(last, size - last)             # exactly the short last block
    write(last - 5, 10)                  # straddles into the short block
    write(size - 7000, 7000)             # ends at the device end
    zero(100, 50)                        # zero within one block
    zero(B - 10, 20)                     # zero straddling a block boundary
    zero(3 * B + 5, 5 * B)               # unaligned, whole blocks inside
    zero(size - 3000, 3000)              # zero up to the end
    trim(20 * B + 1, 3 * B)              # unaligned trim: 2 whole blocks
    trim(30 * B + 7, 100)                # inside one block: nothing
    trim(size - 9000, 9000)              # up to the end, short block too
    write(20 * B + 100, 10)              # into a trimmed block
    zero(40 * B, 8 * B)                  # aligned zero, then write inside
    write(43 * B + 2000, 5000)
    check("edges")

for i in range(nops):
    r = rnd.random()
    kind = rnd.choice(["small", "odd", "straddle", "big", "end"])
    if kind == "small":
        n = rnd.randint(1, 64)
    elif kind == "odd":
        n = rnd.randrange(1, 3 * B, 2)
    elif kind == "straddle":
        n = rnd.randint(2, B)
    else:
        n = rnd.randint(1, 300000)
    n = min(n, size)
    if kind == "end":
        off = size - n
    elif kind == "straddle":
        blk = rnd.randrange(1, size // B)
        off = blk * B - rnd.randint(1, n - 1)
    elif i % 2:
        off = rnd.randrange(0, 512 * 1024)       # a hot region: overlaps
        off = min(off, size - n)
    else:
        off = rnd.randint(0, size - n)
    if r < 0.6:
        write(off, n)
    elif r < 0.8 or not allow_trim:
        zero(off, n)
    else:
        trim(off, n)
check("random")
h.shutdown()
dev.save(os.environ["MODEL"])
EOF
export MODEL=$tmp/model

# Phase 1: everything stays dirty (long delay); read-back, flush, file.
ctl=$tmp/ctl.sock
async_start un --filter="$ASYNC_FILTER" file "$tmp/disk" \
    async-control="$ctl" async-writeback-delay=60000 async-write-size=32M
export uri
[ "$("$PY" -c 'from abdtest.workload import connect; print(connect().get_size())')" -eq $size ] ||
    fail "the export's size is not $size"
EDGES=1 "$PY" "$tmp/ops.py" 1 1500 1 || fail "phase 1: reads differ from the model"
[ "$(st "$ctl" dirty_bytes)" -gt 0 ] || fail "phase 1: nothing dirty"
[ "$(st "$ctl" written_back_bytes)" -eq 0 ] || fail "phase 1: data was written back early"
cmp -s "$tmp/disk" "$tmp/orig" || fail "phase 1: the file changed before the flush"
abdctl -s "$ctl" flush 30 || fail "phase 1: abdctl flush failed"
[ "$(st "$ctl" dirty_bytes)" -eq 0 ] || fail "phase 1: dirty after flush"
cmp "$tmp/disk" "$tmp/model" ||
    fail "phase 1: after flush the file differs: $(first_diff "$tmp/disk" "$tmp/model")"

# Phase 2: the same server, now over clean data (read-modify-write reads
# the file): read-back while dirty, then the file after SIGTERM.
"$PY" "$tmp/ops.py" 2 1000 1 || fail "phase 2: reads differ from the model"
[ "$(st "$ctl" dirty_bytes)" -gt 0 ] || fail "phase 2: nothing dirty"
stop_nbdkit "$pid"
cmp "$tmp/disk" "$tmp/model" ||
    fail "phase 2: after exit the file differs: $(first_diff "$tmp/disk" "$tmp/model")"

# Phase 3: writeback races the requests (no delay, one block per lower
# write, few slots so that writes wait for space).  No trims: a trim of a
# block that is being written back may leave its data.
ctl=$tmp/ctl3.sock
async_start un3 --filter="$ASYNC_FILTER" file "$tmp/disk" \
    async-control="$ctl" async-writeback-delay=0 async-write-size=4K \
    async-max-dirty=256K async-writers=4
"$PY" "$tmp/ops.py" 3 1500 0 || fail "phase 3: reads differ from the model"
abdctl -s "$ctl" flush 30 || fail "phase 3: abdctl flush failed"
cmp "$tmp/disk" "$tmp/model" ||
    fail "phase 3: after flush the file differs: $(first_diff "$tmp/disk" "$tmp/model")"
[ "$(st "$ctl" written_back_requests)" -gt 100 ] || fail "phase 3: little writeback"
stop_nbdkit "$pid"
cmp "$tmp/disk" "$tmp/model" || fail "phase 3: after exit the file differs"
echo "$0: OK"
