#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter, async-sync-file=PATH: sync mode while the file
# exists, also against `abdctl mode async`, and a flush then is honest;
# back to async mode when it is removed.  (When the file cannot be
# looked at: test-async-syncfile-failsafe.sh.)

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-mode-helpers.sh"

sf=$tmp/on-battery
mode_start 5 async-writeback-delay=60000 async-sync-file="$sf"
mode_is async start || fail "not in async mode at start"
SEED=3 "$PY" - <<'PY' || fail "writes failed"
from abdtest.testenv import *
c = client(); c.scattered(4); c.h.flush(); save(c)
assert status()["dirty_bytes"] > 0
PY
touch "$sf"
wait_for 10 mode_is sync sync-file || fail "mode did not become sync"
# The control command cannot switch to async while the file exists.
abdctl -s "$ctl" mode async >/dev/null || fail "abdctl mode async failed"
mode_is sync sync-file || fail "abdctl mode async won over the file"
SEED=4 "$PY" - <<'PY' || fail "a flush in sync mode was not honest"
from abdtest.testenv import *
c = client(os.environ["EXPECTED"])      # what was written
c.write(2 * 65536 + 10, 1000)           # a write in sync mode
c.h.flush()
expect_on_file(c, "after a flush")
save(c)
PY
rm -f "$sf"
wait_for 10 mode_is async control || fail "mode did not go back to async"
mode_finish
echo "$0: OK"
