#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter, async-mode=sync with async-sync-writes=rate (writes
# to clean ranges go into RAM in sync mode): when a client flush or a FUA
# write returns, the lower file already holds every earlier write, also
# data that was in RAM over a slow lower device.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-mode-helpers.sh"

mode_start 4 async-mode=sync async-sync-writes=rate async-sync-rate=1G
"$PY" - <<'PY' || fail "async-mode=sync: a flush or FUA write returned early"
from abdtest.testenv import *
s = status()
assert (s["mode"], s["mode_reason"], s["sync_writes"]) == ("sync", "start", "rate"), s
c = client()
c.scattered(5)
assert status()["dirty_data_bytes"] > 0, "rate: the writes did not go into RAM"
c.h.flush()
expect_on_file(c, "after a sync-mode flush")
assert status()["dirty_bytes"] == 0
c.scattered(3)
c.write(3 * 65536 + 100, 5000, fua=True)      # FUA covers earlier writes
expect_on_file(c, "after a sync-mode FUA write")
save(c)
PY
mode_finish
echo "$0: OK"
