#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter, async mode: client writes racing write-back of
# other connections' data in the same 4K blocks lose nothing (see
# test-async-race-helpers.sh); the data was written back.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-race-helpers.sh"

race_start async 31
race_flush
[ "$(st "$ctl" written_back_requests)" -gt 0 ] || fail "no write-back"
race_stop
echo "$0: OK"
