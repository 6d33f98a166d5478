#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter: a mode switch while a write to a clean block is in
# flight loses no acknowledged write.  A write-through (sync mode) and a
# read-modify-write (async mode) of the same 4K block, on different
# bytes, by two connections: both are acknowledged, so after a flush both
# must be there.  The lower device is the eval plugin over a file; it is
# slow after a read (the RMW's read is stale by the time it is merged) or
# before a write (the write-through lands after the RMW read), while the
# flag files exist.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-mode-helpers.sh"

make_random "$tmp/disk" $(( 1024 * 1024 )) 6
ctl=$tmp/ctl-mix.sock
async_start mix --filter="$ASYNC_FILTER" eval \
    get_size="stat -Lc %s $tmp/disk" thread_model='echo parallel' \
    pread="t=\$(mktemp -p $tmp); dd if=$tmp/disk of=\$t skip=\$4 count=\$3 iflag=skip_bytes,count_bytes status=none; [ ! -e $tmp/slowread ] || sleep 1; cat \$t; rm -f \$t" \
    pwrite="[ ! -e $tmp/slowwrite ] || sleep 1; dd of=$tmp/disk seek=\$4 conv=notrunc oflag=seek_bytes status=none" \
    flush="sync $tmp/disk" can_write='exit 0' can_flush='exit 0' \
    async-control="$ctl" async-writeback-delay=60000 async-write-size=32M
export uri CTL=$ctl TMP=$tmp
"$PY" - <<'PY' || fail "an acknowledged write was lost"
from abdtest.testenv import *
from abdtest.workload import connect
import nbd, time
tmp = os.environ["TMP"]
a, b = connect(), connect()
model = bytearray(open(os.environ["DISK"], "rb").read())
def wait(h, c):
    while not h.aio_command_completed(c):
        h.poll(-1)
def flag(name, on):
    if on:
        open(os.path.join(tmp, name), "w").close()
    else:
        os.unlink(os.path.join(tmp, name))
# async -> sync: A's RMW of block 4 reads the lower block, then sync mode,
# then B writes other bytes of block 4 through.
flag("slowread", True)
c = a.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(b"A" * 100)), 4 * 4096)
time.sleep(0.3)
abdctl("mode", "sync")
b.pwrite(b"B" * 100, 4 * 4096 + 2000)
wait(a, c)
flag("slowread", False)
model[4*4096:4*4096+100] = b"A" * 100
model[4*4096+2000:4*4096+2100] = b"B" * 100
b.flush()
# sync -> async: B's write-through to block 8 is slow; async mode; A's RMW
# of block 8 reads the lower block before B's write lands.
flag("slowwrite", True)
c = b.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(b"b" * 100)), 8 * 4096 + 2000)
time.sleep(0.3)
abdctl("mode", "async")
a.pwrite(b"a" * 100, 8 * 4096)
wait(b, c)
flag("slowwrite", False)
model[8*4096:8*4096+100] = b"a" * 100
model[8*4096+2000:8*4096+2100] = b"b" * 100
abdctl("flush", "20")
open(os.environ["EXPECTED"], "wb").write(model)
lost = []
disk = open(os.environ["DISK"], "rb").read()
for what, blk in (("async -> sync", 4), ("sync -> async", 8)):
    off = blk * 4096
    got = a.pread(4096, off)
    if got != model[off:off+4096] or disk[off:off+4096] != model[off:off+4096]:
        lost.append("%s: block %d at +2000: reads %r, file has %r, expected %r" %
                    (what, blk, bytes(got[2000:2004]), disk[off+2000:off+2004],
                     bytes(model[off+2000:off+2004])))
if lost:
    sys.exit("\n".join(lost))
PY
mode_finish
echo "$0: OK"
