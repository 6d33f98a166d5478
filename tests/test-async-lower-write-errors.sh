#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter, lower writes fail (the error filter below it):
# lower_write_errors grows, the data stays dirty and reads back right
# through the filter, nothing reaches the file, `abdctl flush` fails (exit
# 1), client flushes return EIO in async and sync mode; in sync mode a
# write to a dirty range succeeds, a write-through fails.  Trigger
# removed: the data drains, `abdctl flush` succeeds, the file equals the
# expected image, client flushes succeed again.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-errors-helpers.sh"

failing_start async-writeback-delay=0 async-exit-timeout=5

touch "$tmp/fail"
dirty=$(client write 1) || fail "client writes failed (they should go to RAM)"
echo "wrote $dirty bytes of blocks with the lower device failing"

errors_grow lower_write_errors
[ "$(st "$ctl" dirty_bytes)" -eq "$dirty" ] ||
    fail "dirty_bytes $(st "$ctl" dirty_bytes), expected $dirty: data dropped?"
[ "$(st "$ctl" failed_bytes)" -gt 0 ] || fail "failed_bytes is 0"
[ "$(st "$ctl" written_back_bytes)" -eq 0 ] ||
    fail "written_back_bytes is not 0 although every lower write fails"
cmp -s "$tmp/img" "$tmp/pristine" ||
    fail "the file changed although every lower write fails (error filter not below?)"
client compare >/dev/null || fail "reads with a failing lower device"

abdctl_flush_fails
[ "$(client flush)" = EIO ] || fail "async mode: client flush did not return EIO"

abdctl -s "$ctl" mode sync >/dev/null
[ "$(st "$ctl" mode)" = sync ] || fail "mode sync did not switch"
[ "$(client flush)" = EIO ] || fail "sync mode: client flush did not return EIO"
# Sync mode: a write to a dirty range is made in RAM; one to a clean range
# goes through to the failing lower device and fails.
[ "$(client pwrite $(( 1024*1024 + 4096 )) 4096)" = ok ] ||
    fail "sync mode: a write to a dirty range failed"
[ "$(client pwrite $(( 5*1024*1024 )) 4096)" = EIO ] ||
    fail "sync mode: a write-through to the failing lower device did not fail"
abdctl -s "$ctl" mode async >/dev/null
# A rewrite of failed dirty data is still kept.
client overwrite 2 >/dev/null
[ "$(st "$ctl" dirty_bytes)" -eq "$dirty" ] ||
    fail "dirty_bytes $(st "$ctl" dirty_bytes) after rewrites, expected $dirty"
client compare >/dev/null || fail "reads after rewrites with a failing lower device"
cmp -s "$tmp/img" "$tmp/pristine" || fail "the file changed while writes fail"

# The lower device recovers.
recovers "$tmp/fail"
[ "$(st "$ctl" failed_bytes)" -eq 0 ] || fail "failed_bytes not 0 after recovery"
abdctl -s "$ctl" mode sync >/dev/null
[ "$(client flush)" = ok ] || fail "sync mode: client flush fails after recovery"
client compare >/dev/null || fail "reads after recovery"
echo "write errors: $(st "$ctl" lower_write_errors) lower write errors, recovered"
stop_nbdkit "$pid"
cmp "$tmp/img" "$tmp/expected" || fail "file differs after stop"

echo "$0: OK"
