#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter: racing client writes (test-async-race-helpers.sh)
# with `abdctl flush` and mode switches (sync <-> async) while they run
# lose nothing.  Each mode lasts until the clients have written more, so
# both modes see writes whatever the scheduling (a fixed 0.3 s window let
# a fast run happen entirely in sync mode).

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-race-helpers.sh"

# wrote_more PID: true when the clients wrote since the last call, or
# PID (a client) has exited.
writes_seen=0
wrote_more ()
{
    local n
    kill -0 "$1" 2>/dev/null || return 0
    n=$(st "$ctl" client_write_requests)
    [ "$n" -gt "$writes_seen" ] || return 1
    writes_seen=$n
}

race_start switch 32
# Flushes and mode switches while the writes run.  Each window
# lasts until the clients have written more (or are done), so
# that writes land in both modes however the machine schedules
# them; the first switch waits for a write-back in async mode.
wait_for 60 written_back || fail "no writeback in async mode"
while kill -0 "${race_pids[0]}" 2>/dev/null; do
    abdctl -s "$ctl" mode sync >/dev/null || fail "mode sync failed"
    wait_for 60 wrote_more "${race_pids[0]}" || fail "no writes in sync mode"
    abdctl -s "$ctl" flush 30 || fail "abdctl flush under load failed"
    abdctl -s "$ctl" mode async >/dev/null || fail "mode async failed"
    wait_for 60 wrote_more "${race_pids[0]}" || fail "no writes in async mode"
done
race_flush
[ "$(st "$ctl" written_back_requests)" -gt 0 ] || fail "no write-back"
race_stop
echo "$0: OK"
