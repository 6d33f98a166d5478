#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# abdctl flush SECONDS against the async filter over a slow lower device:
# `flush 0` with dirty data times out (exit status 1, "timed out");
# `flush 5` returns 0 once drained (4 lower writes of 200 ms), and then
# nothing is dirty.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-abdctl-exit-helpers.sh"

dirty_blocks
expect_err 1 'timed out' -s "$ctl" flush 0
expect 0 -s "$ctl" flush 5 ||
    failures+=("flush 5 did not drain: $(st "$ctl" dirty_bytes) bytes dirty")
[ "$(st "$ctl" dirty_bytes)" -eq 0 ] || failures+=("dirty after flush 5")

abdctl_stop
abdctl_report
echo "$0: OK"
