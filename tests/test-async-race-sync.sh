#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter, async-mode=sync with async-sync-writes=through
# from the start: racing client writes (test-async-race-helpers.sh) all
# go through to the lower file, nothing is written back, nothing lost.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-race-helpers.sh"

race_start sync 33 async-mode=sync async-sync-writes=through
race_flush
[ "$(st "$ctl" written_back_requests)" -eq 0 ] ||
    fail "writes to clean ranges did not go through"
race_stop
echo "$0: OK"
