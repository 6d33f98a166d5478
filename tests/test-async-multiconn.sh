#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter: one store serves every connection.  nbdinfo shows
# can_multi_conn true (the file plugin below has it); a write, zero or trim on connection 1 is seen at
# once by a read on connection 2 while it is still dirty; in sync mode a
# flush on connection 2 covers the writes of connection 1 (the lower file
# holds them when the flush returns), with a slow lower device (delay
# filter) so that the flush has to wait for writeback.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-helpers.sh"
requires nbdinfo

size=$(( 8 * 1024 * 1024 ))
make_random "$tmp/disk" $size 51
cp "$tmp/disk" "$tmp/orig"
ctl=$tmp/ctl.sock

async_start mc --filter="$ASYNC_FILTER" file "$tmp/disk" \
    async-control="$ctl" async-writeback-delay=60000 async-write-size=32M

nbdinfo --json "$uri" > "$tmp/info.json" || fail "nbdinfo failed"
"$PY" -c '
import json, sys
e = json.load(open(sys.argv[1]))["exports"][0]
assert e["can_multi_conn"] is True, "can_multi_conn is %r" % e["can_multi_conn"]
assert e["can_flush"] and e["can_fua"] and e["can_zero"] and e["can_trim"], e
' "$tmp/info.json" || fail "nbdinfo: wrong capabilities"

cat > "$tmp/mc.py" <<'EOF'
import os, random, sys
from abdtest.control import abdctl, status
from abdtest.workload import connect
ctl = os.environ["CTL"]

h1 = connect()
h2 = connect()
assert h1.can_multi_conn() and h2.can_multi_conn()
size = h1.get_size()
model = bytearray(open(os.environ["ORIG"], "rb").read())
rnd = random.Random(52)
phase = sys.argv[1]

# Write on 1, read on 2 at once (and the other way round).
for i in range(300 if phase == "see" else 0):
    a, b = (h1, h2) if i % 2 == 0 else (h2, h1)
    n = rnd.choice([1, 100, 4096, 5000, 65536, 200000])
    off = rnd.randint(0, size - n)
    op = rnd.random()
    if op < 0.8:
        data = rnd.randbytes(n)
        a.pwrite(data, off)
        model[off:off+n] = data
    elif op < 0.95:
        a.zero(n, off)
        model[off:off+n] = bytes(n)
    else:
        # Only whole blocks are sure to read as zeros after a trim.
        off = off // 4096 * 4096
        n = max(4096, n // 4096 * 4096)
        n = min(n, size - off) // 4096 * 4096
        a.trim(n, off)
        model[off:off+n] = bytes(n)
    got = b.pread(n, off)
    if got != bytes(model[off:off+n]):
        sys.exit("round %d: the other connection does not see %d bytes at %d" % (i, n, off))
if phase == "see":
    assert int(status(ctl)["dirty_bytes"]) > 0, "nothing dirty"
    assert int(status(ctl)["written_back_bytes"]) == 0, "written back early"
    for off in range(0, size, 1 << 20):
        if h2.pread(1 << 20, off) != bytes(model[off:off+(1 << 20)]):
            sys.exit("connection 2 reads something else at %d" % off)
    h1.shutdown(); h2.shutdown()
    open(os.environ["EXPECTED"], "wb").write(model)
    sys.exit(0)

# Sync mode: connection 1's data, written in async mode and partly
# rewritten after the switch while writeback runs (the delay filter makes
# each lower write take 200 ms, one at a time), is on the file when
# connection 2's flush returns.
offs = [rnd.randrange(0, size // 65536) * 65536 for i in range(6)]
for off in offs:
    data = rnd.randbytes(65536)
    h1.pwrite(data, off)
    model[off:off+65536] = data
assert int(status(ctl)["dirty_bytes"]) > 0, "nothing dirty"
assert abdctl(ctl, "mode", "sync")[0] == 0, "abdctl mode sync failed"
for off in offs[:3]:
    data = rnd.randbytes(5000)
    h1.pwrite(data, off + 1000)
    model[off+1000:off+6000] = data
print("dirty before the flush on connection 2:", status(ctl)["dirty_bytes"])
h2.flush()
disk = open(os.environ["DISK"], "rb").read()
if disk != bytes(model):
    i = next(j for j in range(size) if disk[j] != model[j])
    sys.exit("after a flush on connection 2 the file differs at byte %d" % i)
assert int(status(ctl)["dirty_bytes"]) == 0, "dirty after a sync-mode flush"
h1.shutdown(); h2.shutdown()
open(os.environ["EXPECTED"], "wb").write(model)
EOF
export uri CTL=$ctl ORIG=$tmp/orig DISK=$tmp/disk EXPECTED=$tmp/expected
"$PY" "$tmp/mc.py" see || fail "a connection does not see another's writes"
stop_nbdkit "$pid"
cmp "$tmp/disk" "$tmp/expected" || fail "after exit the file differs"

# The delay filter under the async filter slows down writeback only.
cp "$tmp/expected" "$tmp/orig"
ctl=$tmp/ctl2.sock
async_start mc2 --filter="$ASYNC_FILTER" --filter=delay file "$tmp/disk" \
    delay-write=200ms async-control="$ctl" async-writeback-delay=60000 \
    async-write-size=32M async-writers=1 async-exit-timeout=5
export uri CTL=$ctl
"$PY" "$tmp/mc.py" flush || fail "a sync-mode flush did not cover another connection's writes"
cmp -s "$tmp/disk" "$tmp/orig" && fail "the file did not change (test bug)"
stop_nbdkit "$pid"
cmp "$tmp/disk" "$tmp/expected" || fail "after exit the file differs"
echo "$0: OK"
