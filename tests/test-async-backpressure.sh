#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter: bounded RAM.
#
# 1. Back-pressure: async-max-dirty=1M over a slow lower device (nbdkit's
#    delay filter BELOW the async filter, 20 ms per lower write).  18 MiB
#    of client writes (nbdcopy over 4 connections, plus a 2 MiB single
#    write larger than the store, plus unaligned writes) all succeed;
#    space_waits > 0; dirty_bytes never exceeds max_dirty_bytes (a
#    background poller reads the status socket all the time and records
#    the maximum); the file equals the expected image.
# 2. Memory: async-max-dirty=64M, 64 MiB of random data written while the
#    lower device is held (every lower write fails while a trigger file
#    exists, so all the data stays in RAM).  nbdkit's VmHWM must stay under
#    max-dirty + metadata (64 bytes per 4 KiB block) + OVERHEAD, where
#    OVERHEAD = 64 MiB is a generous allowance for nbdkit, its libraries,
#    per-connection request buffers, malloc arenas and the writer threads'
#    batch buffers (16 x 256 KiB); and VmRSS must have grown by at least
#    48 MiB (so the measurement is real).  Then the hold is released and
#    the file must equal the data.
# 3. async-mlock=true: VmLck covers the store; with the locked-memory limit
#    lowered (ulimit -l 64, and CAP_IPC_LOCK dropped when root, since root
#    ignores the limit) nbdkit refuses to start with a message naming
#    async-mlock.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-helpers.sh"
requires nbdcopy

MiB=$(( 1024 * 1024 ))
field_eq () { [ "$(st "$1" "$2")" -eq "$3" ]; }

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
        sys.exit("poller: bad status answer: %r" % data)
    n += 1
    mx = max(mx, int(f["dirty_bytes"]))
    mxd = max(mxd, int(f["dirty_data_bytes"]))
    limit = int(f["max_dirty_bytes"])
open(out, "w").write("%d %d %d %d\n" % (n, limit, mx, mxd))
EOF

#----------------------------------------------------------------------
# 1. Back-pressure.

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
import nbd, os, random
h = nbd.NBD(); h.connect_uri(os.environ["uri"])
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
rm -f "$tmp/img" "$tmp/data" "$tmp/expected"

#----------------------------------------------------------------------
# 2. Memory stays bounded.

OVERHEAD=$(( 64 * MiB ))        # nbdkit + libraries + buffers (see top)
max_dirty=$(( 64 * MiB ))
meta=$(( max_dirty / 4096 * 64 ))
size=$(( 80 * MiB ))
truncate -s $size "$tmp/img"
make_random "$tmp/data" $max_dirty 3
ctl=$tmp/mem.ctl
async_start mem --filter="$ASYNC_FILTER" --filter=error file "$tmp/img" \
    error-pwrite=EIO error-pwrite-rate=1 error-pwrite-file="$tmp/hold" \
    async-max-dirty=64M async-control="$ctl" async-exit-timeout=10

kb () { awk -v k="$2:" '$1 == k { print $2 * 1024 }' "/proc/$1/status"; }
rss0=$(kb "$pid" VmRSS)
touch "$tmp/hold"
nbdcopy -S 0 "$tmp/data" "$uri" || fail "nbdcopy failed"
[ "$(st "$ctl" dirty_data_bytes)" -eq $max_dirty ] ||
    fail "dirty_data_bytes $(st "$ctl" dirty_data_bytes), expected $max_dirty (held in RAM)"
[ "$(st "$ctl" written_back_bytes)" -eq 0 ] || fail "lower writes succeeded during the hold"
rss1=$(kb "$pid" VmRSS)
hwm=$(kb "$pid" VmHWM)
bound=$(( max_dirty + meta + OVERHEAD ))
echo "memory: VmRSS before $((rss0/1024)) KiB, after $((rss1/1024)) KiB, VmHWM $((hwm/1024)) KiB, bound $((bound/1024)) KiB"
[ "$hwm" -le "$bound" ] ||
    fail "VmHWM $hwm > max-dirty + metadata + overhead = $bound"
[ $(( rss1 - rss0 )) -ge $(( 48 * MiB )) ] ||
    fail "VmRSS grew by only $(( (rss1 - rss0) / 1024 )) KiB: measurement not real?"

rm "$tmp/hold"
# abdctl flush fails at once while failed_bytes > 0, i.e. until the next
# retry (back-off up to 5 s) has written the data: wait for that first.
wait_for 30 field_eq "$ctl" dirty_bytes 0 || fail "did not drain after the hold"
abdctl -s "$ctl" flush 60 || fail "abdctl flush failed after the hold"
cmp -n $max_dirty "$tmp/img" "$tmp/data" || fail "file differs from the data"
stop_nbdkit "$pid"
rm -f "$tmp/img" "$tmp/data"

#----------------------------------------------------------------------
# 3. async-mlock.  The ASan runtime intercepts mlock() and locks nothing
# (in a sanitizer build VmLck stayed 0 KiB while mlock() succeeded), so
# there is nothing to check under sanitizers.

if [ -n "${ABD_SANITIZER_PRELOAD:-}" ]; then
    echo "async-mlock: not checked in a sanitizer build (ASan intercepts mlock)"
    echo "$0: OK"
    exit 0
fi

truncate -s $(( 32 * MiB )) "$tmp/img"
ctl=$tmp/lock.ctl
# Root may lock any amount (CAP_IPC_LOCK); others need the soft limit
# raised to the hard one.
if [ "$(id -u)" != 0 ]; then
    ulimit -S -l "$(ulimit -H -l)"
fi
async_start lock --filter="$ASYNC_FILTER" file "$tmp/img" \
    async-max-dirty=16M async-mlock=true async-control="$ctl"
lck=$(kb "$pid" VmLck)
echo "async-mlock=true: VmLck $((lck/1024)) KiB"
[ "$lck" -ge $(( 16 * MiB )) ] || fail "VmLck $lck < async-max-dirty"
head -c $MiB /dev/urandom > "$tmp/d1"
nbdcopy "$tmp/d1" "$uri" || fail "write with async-mlock failed"
abdctl -s "$ctl" flush 30 || fail "flush with async-mlock failed"
cmp -n $MiB "$tmp/img" "$tmp/d1" || fail "file differs (async-mlock)"
stop_nbdkit "$pid"

# A low limit: refused at start.  Root bypasses RLIMIT_MEMLOCK through
# CAP_IPC_LOCK, so drop it from the bounding set for this nbdkit.
drop=()
if [ "$(id -u)" = 0 ]; then
    requires setpriv
    drop=(setpriv --bounding-set=-ipc_lock --inh-caps=-ipc_lock --)
fi
rc=0
( ulimit -l 64
  exec "${drop[@]}" nbdkit -f -U "$tmp/mlock.sock" \
      --filter="$ASYNC_FILTER" file "$tmp/img" \
      async-max-dirty=16M async-mlock=true --run 'echo started' ) \
    > "$tmp/mlock.out" 2>&1 || rc=$?
cat "$tmp/mlock.out"
[ $rc -ne 0 ] || fail "nbdkit started with async-mlock=true and ulimit -l 64"
grep -q "async-mlock" "$tmp/mlock.out" || fail "the error does not mention async-mlock"
grep -q "started" "$tmp/mlock.out" && fail "nbdkit served although it should refuse"

echo "$0: OK"
