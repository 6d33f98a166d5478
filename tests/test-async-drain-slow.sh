#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter, a slow drain at a stop (delay-write=50ms, one
# writer, 150 scattered blocks): `abdctl status` shows draining: 1 and
# mode sync (draining); a second SIGTERM and a SIGINT do not stop nbdkit
# early; a client write made meanwhile goes through (on the file when it
# returns); nbdkit exits 0 and the file is exact at the end.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-drain-helpers.sh"

# A slow drain: 150 scattered 4K blocks, 50 ms each, one at a time.
make_random "$tmp/disk" $size 7
ctl=$tmp/slow.ctl
async_start slow --filter="$ASYNC_FILTER" --filter=delay file "$tmp/disk" \
    delay-write=50ms async-writers=1 async-control="$ctl" \
    async-writeback-delay=60000 async-write-size=32M
drain_write 7 150 4096 16384 || fail "slow: writes failed"
kill -TERM "$pid"
wait_for 20 bash -c '[ "$("$ABDCTL" -s "$1" --raw status | grep "^draining:")" = "draining: 1" ]' \
    _ "$ctl" || fail "slow: abdctl status does not show draining: 1"
[ "$(st "$ctl" mode)" = sync ] && [ "$(st "$ctl" mode_reason)" = draining ] ||
    fail "slow: draining, but mode $(st "$ctl" mode) ($(st "$ctl" mode_reason))"
kill -TERM "$pid"
kill -INT "$pid"
sleep 0.5
kill -0 "$pid" || fail "slow: a second signal stopped nbdkit before the drain"
[ "$(st "$ctl" dirty_bytes)" -gt 0 ] || fail "slow: drained too fast to test (test bug)"
# A client write while draining: through to the file when it returns.
"$PY" - "$tmp/expected" "$uri" <<'EOF' || fail "slow: a write while draining"
import os, sys
from abdtest.workload import connect
h = connect(sys.argv[2])
off, data = 15 << 20, os.urandom(8192)        # not among the dirty blocks
h.pwrite(data, off)
with open(os.environ["DISK"], "rb") as f:
    f.seek(off)
    if f.read(len(data)) != data:
        sys.exit("the write is not on the file when it returns")
with open(sys.argv[1], "r+b") as f:
    f.seek(off)
    f.write(data)
h.shutdown()
EOF
exited_ok slow

echo "$0: OK"
