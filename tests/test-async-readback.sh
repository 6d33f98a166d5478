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

# 1500 random writes of several sizes, overlapping, over the model
# $tmp/expected (abdtest write).
"$PY" -m abdtest write --uri "$uri" --seed 2 --count 1500 --base "$tmp/orig" \
    --expected "$tmp/expected" || fail "writes failed"

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
read_back () { "$PY" -m abdtest check --uri "$uri" --expected "$1" --reads 500; }
read_back "$tmp/expected" || fail "read-back while dirty differs"
[ "$(st "$ctl" dirty_bytes)" -eq "$dirty" ] || fail "dirty_bytes changed by reads"

# Flush: the lower file is the expected image, nothing is dirty.
abdctl -s "$ctl" flush 30 || fail "abdctl flush failed"
cmp "$tmp/disk" "$tmp/expected" ||
    fail "after flush the lower file differs: $(first_diff "$tmp/disk" "$tmp/expected")"
[ "$(st "$ctl" dirty_bytes)" -eq 0 ] || fail "dirty_bytes not 0 after flush"
[ "$(st "$ctl" dirty_data_bytes)" -eq 0 ] || fail "dirty_data_bytes not 0 after flush"
[ "$(st "$ctl" lower_flushes)" -gt 0 ] || fail "no lower flush after abdctl flush"
# Reads after the flush come from the file and are still right.
read_back "$tmp/expected" || fail "read-back after flush differs"
stop_nbdkit "$pid"
cmp "$tmp/disk" "$tmp/expected" || fail "after exit the lower file differs"

# The memory plugin (starts as zeros): read-back while dirty and after
# flush.
ctl2=$tmp/ctl2.sock
async_start mem --filter="$ASYNC_FILTER" memory $size \
    async-control="$ctl2" async-writeback-delay=60000 async-write-size=32M
"$PY" -m abdtest write --uri "$uri" --seed 5 --count 1500 \
    --expected "$tmp/expected-mem" || fail "memory: writes failed"
[ "$(st "$ctl2" dirty_bytes)" -gt 0 ] || fail "memory: nothing dirty"
read_back "$tmp/expected-mem" || fail "memory: read-back while dirty differs"
abdctl -s "$ctl2" flush 30 || fail "memory: abdctl flush failed"
[ "$(st "$ctl2" dirty_bytes)" -eq 0 ] || fail "memory: dirty after flush"
read_back "$tmp/expected-mem" || fail "memory: read-back after flush differs"
stop_nbdkit "$pid"
echo "$0: OK"
