#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter, lower flushes fail (the error filter of nbdkit
# 1.32 cannot inject flush errors, so the lower device is an eval-plugin
# file whose flush fails while a trigger exists; async-write-size=1M keeps
# the number of dd processes it runs per retry small): lower_flush_errors
# grows, the data stays dirty, `abdctl flush` and client flushes fail
# (every one, in async mode too); trigger removed: drains, file exact.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-errors-helpers.sh"

truncate -s $size "$tmp/img"
cp "$tmp/img" "$tmp/expected"
ctl=$tmp/f.ctl
f=$tmp/img
async_start f --filter="$ASYNC_FILTER" eval \
    get_size="stat -Lc %s $f" \
    pread="dd if=$f skip=\$4 count=\$3 iflag=skip_bytes,count_bytes bs=64k status=none" \
    pwrite="dd of=$f seek=\$4 conv=notrunc oflag=seek_bytes iflag=fullblock bs=64k status=none" \
    flush="if [ -e $tmp/failflush ]; then echo 'EIO injected flush error' >&2; exit 1; fi" \
    async-control="$ctl" async-writeback-delay=0 async-exit-timeout=5 \
    async-write-size=1M

touch "$tmp/failflush"
dirty=$(client write 3) || fail "client writes failed"
errors_grow lower_flush_errors
[ "$(st "$ctl" dirty_bytes)" -eq "$dirty" ] ||
    fail "dirty_bytes $(st "$ctl" dirty_bytes) with failing flushes, expected $dirty"
[ "$(st "$ctl" lower_write_errors)" -eq 0 ] || fail "lower write errors?"
wait_for 15 field_gt "$ctl" failed_bytes 0 ||
    fail "failed_bytes never > 0 while lower flushes fail"
client compare >/dev/null || fail "reads with failing lower flushes"
abdctl_flush_fails

# Async mode: every client flush fails while the data is not on the lower
# device (retried writes may succeed meanwhile; the lower flushes do not).
for i in 1 2 3 4 5 6 7 8 9 10; do
    r=$(client flush)
    [ "$r" = EIO ] ||
        fail "async mode: client flush $i of 10 returned '$r', not EIO, while lower flushes fail"
    sleep 0.3
done
echo "async-mode client flush: EIO 10 times of 10"
abdctl -s "$ctl" mode sync >/dev/null
[ "$(client flush)" = EIO ] || fail "sync mode: client flush did not return EIO"
abdctl -s "$ctl" mode async >/dev/null

recovers "$tmp/failflush"
[ "$(st "$ctl" lower_flushes)" -gt 0 ] || fail "lower_flushes is 0"
echo "flush errors: $(st "$ctl" lower_flush_errors) lower flush errors, recovered"
stop_nbdkit "$pid"
echo "$0: OK"
