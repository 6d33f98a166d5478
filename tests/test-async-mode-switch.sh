#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter: in async mode a client flush (or FUA write) does
# NOT wait (documented): right after it returns, data is still dirty.
# `abdctl mode sync` switches (status mode, mode_reason) and a flush after
# it is honest; `abdctl mode async` switches back.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-mode-helpers.sh"

mode_start 5 async-writeback-delay=60000
"$PY" - <<'PY' || fail "mode switch checks failed"
from abdtest.testenv import *
s = status()
assert (s["mode"], s["mode_reason"]) == ("async", "start"), s
c = client()
c.scattered(4)
c.h.flush()                   # async mode: acknowledged from RAM
s = status()
assert s["dirty_bytes"] > 0, "async mode: the client flush waited (nothing dirty)"
assert s["written_back_bytes"] == 0, s
assert c.dev.file_diff(os.environ["DISK"]) is not None, \
    "async mode: data on the file already"
c.write(50000, 3000, fua=True)  # FUA in async mode does not wait either
assert status()["dirty_bytes"] > 0
out = abdctl("mode", "sync")
assert "mode: sync" in out, out
s = status()
assert (s["mode"], s["mode_reason"]) == ("sync", "control"), s
c.write(50000 + 1000, 100)    # into a dirty range: stays in RAM
c.h.flush()
expect_on_file(c, "after `abdctl mode sync` and a flush")
assert status()["dirty_bytes"] == 0
out = abdctl("mode", "async")
assert "mode: async" in out, out
s = status()
assert (s["mode"], s["mode_reason"]) == ("async", "control"), s
c.scattered(2)
c.h.flush()
assert status()["dirty_bytes"] > 0, "back in async mode, the flush waited"
save(c)
PY
mode_finish
echo "$0: OK"
