#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter, async-sync-writes=hold: with dirty data from async
# mode, then `abdctl mode sync`, a write to a clean range returns only
# once the store is empty, and is on the lower file then.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-mode-helpers.sh"

mode_start 4 async-writeback-delay=60000 async-sync-writes=hold
"$PY" - <<'PY' || fail "a write did not wait for the store"
from abdtest.testenv import *
c = client()
c.scattered(5)
assert status()["dirty_bytes"] > 0
abdctl("mode", "sync")
c.write(c.size - 65536 + 1, 4000)     # clean range (scattered leaves odd slots)
s = status()
assert s["dirty_bytes"] == 0, \
    "the write returned while %d bytes were dirty" % s["dirty_bytes"]
expect_on_file(c, "right after the write")
save(c)
PY
mode_finish
echo "$0: OK"
