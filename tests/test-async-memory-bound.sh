#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter, memory stays bounded: async-max-dirty=64M, 64 MiB
# of random data written while the lower device is held (every lower
# write fails while a trigger file exists, so all the data stays in RAM).
# nbdkit's VmHWM must stay under max-dirty + metadata (64 bytes per 4 KiB
# block) + OVERHEAD, where OVERHEAD = 64 MiB is a generous allowance for
# nbdkit, its libraries, per-connection request buffers, malloc arenas and
# the writer threads' batch buffers (16 x 256 KiB); and VmRSS must have
# grown by at least 48 MiB (so the measurement is real).  Then the hold
# is released and the file must equal the data.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-helpers.sh"
requires nbdcopy

MiB=$(( 1024 * 1024 ))
# kb PID FIELD: a field of /proc/PID/status, in bytes.
kb () { awk -v k="$2:" '$1 == k { print $2 * 1024 }' "/proc/$1/status"; }
field_eq () { [ "$(st "$1" "$2")" -eq "$3" ]; }

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
echo "$0: OK"
