#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter, back-pressure: async-max-dirty=1M over a slow
# lower device (nbdkit's delay filter BELOW the async filter, 20 ms per
# lower write).  18 MiB of client writes (nbdcopy over 4 connections,
# plus a 2 MiB single write larger than the store, plus unaligned writes)
# all succeed; space_waits > 0; dirty_bytes never exceeds max_dirty_bytes
# (a background poller reads the status socket all the time and records
# the maximum); the file equals the expected image.  (RAM use:
# test-async-memory-bound.sh; async-mlock: test-async-mlock.sh.)

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-helpers.sh"
requires nbdcopy

MiB=$(( 1024 * 1024 ))

# status_poller CTL OUT: until $tmp/stop-poll exists, ask CTL for status as
# fast as it answers; then write "samples max_dirty_bytes max_dirty
# max_dirty_data" to OUT.
cat > "$tmp/poll.py" <<'EOF'
import os, sys
from abdtest import control
ctl, out = sys.argv[1], sys.argv[2]
stop = os.path.join(os.path.dirname(out), "stop-poll")
n = mx = mxd = limit = 0
while not os.path.exists(stop):
    f = control.status(ctl)
    if "dirty_bytes" not in f:
        sys.exit("poller: bad status answer: %r" % f)
    n += 1
    mx = max(mx, int(f["dirty_bytes"]))
    mxd = max(mxd, int(f["dirty_data_bytes"]))
    limit = int(f["max_dirty_bytes"])
open(out, "w").write("%d %d %d %d\n" % (n, limit, mx, mxd))
EOF

size=$(( 20 * MiB ))
truncate -s $size "$tmp/img"
make_random "$tmp/data" $(( 16 * MiB )) 1
cp "$tmp/img" "$tmp/expected"
dd if="$tmp/data" of="$tmp/expected" conv=notrunc status=none
ctl=$tmp/bp.ctl
# 4 writers of at most 64K each over 20 ms lower writes: writeback is far
# slower than the client, so the 1 MiB store is full most of the time.
async_start bp --filter="$ASYNC_FILTER" --filter=delay file "$tmp/img" \
    delay-write=20ms async-max-dirty=1M async-writers=4 async-write-size=64K \
    async-control="$ctl"
[ "$(st "$ctl" max_dirty_bytes)" -eq $MiB ] || fail "max_dirty_bytes is not 1 MiB"

"$PY" "$tmp/poll.py" "$ctl" "$tmp/poll.out" &
poller=$!
stop_poller () { kill "$1" 2>/dev/null || true; }
cleanup_fn stop_poller "$poller"

nbdcopy -S 0 "$tmp/data" "$uri" || fail "nbdcopy: a client write failed"
export uri EXPECTED=$tmp/expected
"$PY" -c '
import os, random
from abdtest.workload import connect
h = connect()
rnd = random.Random(2)
with open(os.environ["EXPECTED"], "r+b") as f:
    # One write twice the size of the store, unaligned; then small
    # unaligned writes, some over the big one.
    ws = [(16 * 2**20 + 5, rnd.randbytes(2 * 2**20 - 10))]
    ws += [(rnd.randrange(0, 20 * 2**20 - 9000), rnd.randbytes(rnd.randint(1, 9000)))
           for i in range(200)]
    for off, data in ws:
        h.pwrite(data, off)
        f.seek(off); f.write(data)
    print(sum(len(d) for o, d in ws))
h.shutdown()
' > "$tmp/pybytes" || fail "a client write failed"
total=$(( 16 * MiB + $(cat "$tmp/pybytes") ))

touch "$tmp/stop-poll"
wait "$poller" || fail "status poller failed"
read -r samples limit maxdirty maxdata < "$tmp/poll.out"
echo "poller: $samples samples, max dirty_bytes $maxdirty, max dirty_data_bytes $maxdata, limit $limit"
[ "$samples" -ge 20 ] || fail "only $samples status samples during the run"
[ "$limit" -eq $MiB ] || fail "max_dirty_bytes $limit"
[ "$maxdirty" -le "$limit" ] || fail "dirty_bytes reached $maxdirty > max_dirty_bytes $limit"
[ "$maxdata" -le "$limit" ] || fail "dirty_data_bytes reached $maxdata > $limit"
# The store really filled up (else this checked nothing).
[ "$maxdirty" -ge $(( limit / 2 )) ] ||
    fail "dirty_bytes never reached half of the limit (max $maxdirty): no back-pressure tested"

waits=$(st "$ctl" space_waits)
[ "$waits" -gt 0 ] || fail "space_waits is 0"
[ "$(st "$ctl" client_written_bytes)" -eq $total ] ||
    fail "client_written_bytes $(st "$ctl" client_written_bytes), expected $total"
[ "$(st "$ctl" client_write_requests)" -gt 200 ] || fail "client_write_requests too low"
abdctl -s "$ctl" flush 60 || fail "abdctl flush failed"
[ "$(st "$ctl" dirty_bytes)" -eq 0 ] || fail "dirty after flush"
[ "$(st "$ctl" lower_write_errors)" -eq 0 ] || fail "lower write errors"
cmp "$tmp/img" "$tmp/expected" ||
    fail "file differs from the expected image: $(first_diff "$tmp/img" "$tmp/expected")"
echo "back-pressure: $total bytes written, space_waits $waits, $(st "$ctl" written_back_requests) lower writes"
stop_nbdkit "$pid"
cmp "$tmp/img" "$tmp/expected" || fail "file differs after stop"
echo "$0: OK"
