#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter: modes.
# - async-mode=sync: when a client flush (or a FUA write) returns, the
#   lower file already holds every earlier write (checked while nbdkit
#   runs), also for data that was in RAM (slow lower device).
# - async mode: a client flush does NOT wait (documented): right after it
#   returns, data is still dirty.
# - `abdctl mode sync|async` switches (status mode, mode_reason), and a
#   flush after `mode sync` is honest.
# - async-sync-file: sync mode while the file exists (even against
#   `abdctl mode async`), back when it is removed.
# - async-sync-writes=through: in sync mode a write to a clean range is on
#   the lower file when it returns, without a flush, and nothing is dirty.
# - async-sync-writes=hold: in sync mode a write to a clean range returns
#   only after the store is empty, then is on the file.
# - a mode switch while a write-through and a read-modify-write of one
#   block are in flight (two connections) loses neither write.
# The delay filter under the async filter (200 ms per lower write, one
# writer) keeps data in RAM long enough for the flushes to have to wait.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-helpers.sh"

size=$(( 4 * 1024 * 1024 ))

cat > "$tmp/common.py" <<'EOF'
import json, nbd, os, random, subprocess, sys

def abdctl(*args):
    r = subprocess.run([os.environ["ABDCTL"], "-s", os.environ["CTL"]] + list(args),
                       capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit("abdctl %s: exit %d: %s" % (" ".join(args), r.returncode, r.stderr))
    return r.stdout

def status():
    return json.loads(abdctl("--json", "status"))

class Dev:
    def __init__(self):
        self.h = nbd.NBD(); self.h.connect_uri(os.environ["uri"])
        self.size = self.h.get_size()
        self.disk = os.environ["DISK"]
        self.model = bytearray(open(self.disk, "rb").read())
        self.rnd = random.Random(int(os.environ.get("SEED", "1")))
    def write(self, off, n, fua=False):
        data = self.rnd.randbytes(n)
        self.h.pwrite(data, off, nbd.CMD_FLAG_FUA if fua else 0)
        self.model[off:off+n] = data
    def scattered(self, count, n=65536):
        """COUNT writes of N bytes at distinct places, not adjacent."""
        slots = self.rnd.sample(range(0, self.size // (2 * n)), count)
        for s in slots:
            self.write(s * 2 * n, n)
        return [s * 2 * n for s in slots]
    def file_diff(self):
        """None if the lower file holds the model, else the first byte that differs."""
        disk = open(self.disk, "rb").read()
        if disk == bytes(self.model):
            return None
        return next(i for i in range(len(disk)) if disk[i] != self.model[i])
    def expect_on_file(self, what):
        d = self.file_diff()
        if d is not None:
            sys.exit("%s: the lower file differs at byte %d" % (what, d))
    def save(self):
        open(os.environ["EXPECTED"], "wb").write(self.model)
        self.h.shutdown()
EOF
export PYTHONPATH=$tmp ABDCTL DISK=$tmp/disk EXPECTED=$tmp/expected

# start NAME PARAMS...: a fresh image, the filter over the delay filter.
start ()
{
    local name=$1; shift
    make_random "$tmp/disk" $size "${#name}"
    ctl=$tmp/ctl-$name.sock
    async_start "$name" --filter="$ASYNC_FILTER" --filter=delay file "$tmp/disk" \
        delay-write=200ms async-control="$ctl" async-writers=1 async-exit-timeout=5 \
        async-write-size=32M "$@"
    export uri CTL=$ctl
}
finish ()
{
    # Drain before stopping: the delay filter fails every lower write once
    # nbdkit is shutting down, so the exit drain could not write it (that
    # case is in test-async-shutdown.sh).
    abdctl -s "$ctl" flush 30 || fail "$1: abdctl flush failed"
    cmp "$tmp/disk" "$tmp/expected" || fail "$1: after abdctl flush the file differs"
    stop_nbdkit "$pid"
    cmp "$tmp/disk" "$tmp/expected" || fail "$1: after exit the file differs"
}

# 1. async-mode=sync, sync-writes=rate (writes to clean ranges go into RAM
# in sync mode): flush and FUA are honest.
start sync async-mode=sync async-sync-writes=rate async-sync-rate=1G
"$PY" - <<'EOF' || fail "async-mode=sync: a flush or FUA write returned early"
from common import *
s = status()
assert (s["mode"], s["mode_reason"], s["sync_writes"]) == ("sync", "start", "rate"), s
d = Dev()
d.scattered(5)
assert status()["dirty_data_bytes"] > 0, "rate: the writes did not go into RAM"
d.h.flush()
d.expect_on_file("after a sync-mode flush")
assert status()["dirty_bytes"] == 0
d.scattered(3)
d.write(3 * 65536 + 100, 5000, fua=True)      # FUA covers earlier writes
d.expect_on_file("after a sync-mode FUA write")
d.save()
EOF
finish sync

# 2. async mode: flush does not wait; `abdctl mode sync` makes it honest;
# `abdctl mode async` switches back.
start modes async-writeback-delay=60000
"$PY" - <<'EOF' || fail "mode switch checks failed"
from common import *
s = status()
assert (s["mode"], s["mode_reason"]) == ("async", "start"), s
d = Dev()
d.scattered(4)
d.h.flush()                   # async mode: acknowledged from RAM
s = status()
assert s["dirty_bytes"] > 0, "async mode: the client flush waited (nothing dirty)"
assert s["written_back_bytes"] == 0, s
assert d.file_diff() is not None, "async mode: data on the file already"
d.write(50000, 3000, fua=True)  # FUA in async mode does not wait either
assert status()["dirty_bytes"] > 0
out = abdctl("mode", "sync")
assert "mode: sync" in out, out
s = status()
assert (s["mode"], s["mode_reason"]) == ("sync", "control"), s
d.write(50000 + 1000, 100)    # into a dirty range: stays in RAM
d.h.flush()
d.expect_on_file("after `abdctl mode sync` and a flush")
assert status()["dirty_bytes"] == 0
out = abdctl("mode", "async")
assert "mode: async" in out, out
s = status()
assert (s["mode"], s["mode_reason"]) == ("async", "control"), s
d.scattered(2)
d.h.flush()
assert status()["dirty_bytes"] > 0, "back in async mode, the flush waited"
d.save()
EOF
finish modes

# 3. async-sync-file: sync mode while the file exists.
sf=$tmp/on-battery
start sfile async-writeback-delay=60000 async-sync-file="$sf"
mode_is () { [ "$(st "$ctl" mode)" = "$1" ] && [ "$(st "$ctl" mode_reason)" = "$2" ]; }
mode_is async start || fail "sync-file: not in async mode at start"
SEED=3 "$PY" - <<'EOF' || fail "sync-file: writes failed"
from common import *
d = Dev(); d.scattered(4); d.h.flush(); d.save()
assert status()["dirty_bytes"] > 0
EOF
touch "$sf"
wait_for 10 mode_is sync sync-file || fail "sync-file: mode did not become sync"
# The control command cannot switch to async while the file exists.
abdctl -s "$ctl" mode async >/dev/null || fail "abdctl mode async failed"
mode_is sync sync-file || fail "sync-file: abdctl mode async won over the file"
cp "$tmp/expected" "$tmp/before"
SEED=4 "$PY" - <<'EOF' || fail "sync-file: flush in sync mode was not honest"
from common import *
d = Dev()
d.model = bytearray(open(os.environ["EXPECTED"], "rb").read())  # what was written
d.write(2 * 65536 + 10, 1000)             # a write in sync mode
d.h.flush()
d.expect_on_file("sync-file: after a flush")
d.save()
EOF
rm -f "$sf"
wait_for 10 mode_is async control || fail "sync-file: mode did not go back to async"
finish sfile

# 4. sync-writes=through (the default): a write to a clean range is on the
# file when it returns; nothing becomes dirty.
start through async-mode=sync
"$PY" - <<'EOF' || fail "through: a write did not go through"
from common import *
assert status()["sync_writes"] == "through"
d = Dev()
for off, n in [(0, 65536), (12345, 1), (70000, 9000), (d.size - 3000, 3000)]:
    d.write(off, n)
    d.expect_on_file("through: right after a write of %d at %d" % (n, off))
s = status()
assert s["dirty_bytes"] == 0 and s["client_write_requests"] == 4, s
d.save()
EOF
finish through

# 5. sync-writes=hold: dirty data from async mode, then sync mode: a write
# to a clean range waits until the store is empty, then goes through.
start hold async-writeback-delay=60000 async-sync-writes=hold
"$PY" - <<'EOF' || fail "hold: a write did not wait for the store"
from common import *
d = Dev()
d.scattered(5)
assert status()["dirty_bytes"] > 0
abdctl("mode", "sync")
d.write(d.size - 65536 + 1, 4000)     # clean range (scattered leaves odd slots)
s = status()
assert s["dirty_bytes"] == 0, "hold: the write returned while %d bytes were dirty" % s["dirty_bytes"]
d.expect_on_file("hold: right after the write")
d.save()
EOF
finish hold

# 6. A mode switch while a write to a clean block is in flight: a write-
# through (sync mode) and a read-modify-write (async mode) of the same 4K
# block, on different bytes, by two connections.  Both are acknowledged,
# so after a flush both must be there.  The lower device is the eval
# plugin over a file; it is slow after a read (the RMW's read is stale by
# the time it is merged) or before a write (the write-through lands after
# the RMW read), while the flag files exist.
make_random "$tmp/disk" $(( 1024 * 1024 )) 6
ctl=$tmp/ctl-mix.sock
async_start mix --filter="$ASYNC_FILTER" eval \
    get_size="stat -Lc %s $tmp/disk" thread_model='echo parallel' \
    pread="t=\$(mktemp -p $tmp); dd if=$tmp/disk of=\$t skip=\$4 count=\$3 iflag=skip_bytes,count_bytes status=none; [ ! -e $tmp/slowread ] || sleep 1; cat \$t; rm -f \$t" \
    pwrite="[ ! -e $tmp/slowwrite ] || sleep 1; dd of=$tmp/disk seek=\$4 conv=notrunc oflag=seek_bytes status=none" \
    flush="sync $tmp/disk" can_write='exit 0' can_flush='exit 0' \
    async-control="$ctl" async-writeback-delay=60000
export uri CTL=$ctl TMP=$tmp
"$PY" - <<'EOF' || fail "mode switch: an acknowledged write was lost"
from common import *
import time
tmp = os.environ["TMP"]
a = nbd.NBD(); a.connect_uri(os.environ["uri"])
b = nbd.NBD(); b.connect_uri(os.environ["uri"])
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
EOF
finish mix
echo "$0: OK"
