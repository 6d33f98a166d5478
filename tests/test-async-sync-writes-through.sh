#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter, async-sync-writes=through (the default): in sync
# mode a write to a clean range is on the lower file when it returns,
# without a flush, and nothing becomes dirty.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-mode-helpers.sh"

mode_start 7 async-mode=sync
"$PY" - <<'PY' || fail "a write did not go through"
from abdtest.testenv import *
assert status()["sync_writes"] == "through"
c = client()
for off, n in [(0, 65536), (12345, 1), (70000, 9000), (c.size - 3000, 3000)]:
    c.write(off, n)
    expect_on_file(c, "right after a write of %d at %d" % (n, off))
s = status()
assert s["dirty_bytes"] == 0 and s["client_write_requests"] == 4, s
save(c)
PY
mode_finish
echo "$0: OK"
