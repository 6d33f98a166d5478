#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter, a stop while the lower device keeps failing, with
# async-exit-timeout=2: nbdkit gives up and exits in time, and logs how
# many bytes of acknowledged writes were lost (exactly the dirty bytes).

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-errors-helpers.sh"

failing_start async-exit-timeout=2
touch "$tmp/fail"
dirty=$(client write 4) || fail "client writes failed"
wait_for 10 field_gt "$ctl" lower_write_errors 0 ||
    fail "no lower write errors"
[ "$(st "$ctl" dirty_bytes)" -eq "$dirty" ] || fail "dirty_bytes is not $dirty"
slog=$log
kill -TERM "$pid"
# async-exit-timeout=2: it must give up and exit well within 30 s.
for (( i=0; i<300; i++ )); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
kill -0 "$pid" 2>/dev/null && fail "nbdkit did not exit within 30 s (async-exit-timeout=2)"
wait "$pid" && exit_status=0 || exit_status=$?
echo "nbdkit exit status with lost data: $exit_status"
grep -E "async: .*could NOT be written" "$slog" ||
    fail "no loud message about lost data in the log"
lost=$(grep -oE '[0-9]+ bytes of acknowledged writes could NOT be written' "$slog" |
       awk '{print $1}')
[ "$lost" = "$dirty" ] || fail "log says $lost bytes lost, expected $dirty"
cmp -s "$tmp/img" "$tmp/pristine" || fail "the file changed although writes failed"

echo "$0: OK"
