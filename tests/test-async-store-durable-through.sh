#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter, async-flush=store: a write that went through to the
# lower device in sync mode is covered by a flush in async mode.  The
# lower device is nbdkit-powercut-plugin (it loses what was not flushed
# when nbdkit dies).  In sync mode (abdctl mode sync) a block is written
# with nothing in the store: it goes through, unflushed.  Back in async
# mode (abdctl mode async), a flush is acknowledged: that write must be
# durable, although the store file never held it, so the flush must
# flush the lower device too.  SIGKILL; the image must hold the block.
# (Found by scripts/torture --flush-store: the async-mode flush only
# committed the store file, and the block was lost.)

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-helpers.sh"
[ -f "$POWERCUT_PLUGIN" ] || fail "powercut plugin not built: $POWERCUT_PLUGIN"

truncate -s 8M "$tmp/disk"
# async-writeback-delay=60000: no write-back, so no lower flush by the
# writers, which would cover the write that went through by chance.
async_start through --filter="$ASYNC_FILTER" "$POWERCUT_PLUGIN" \
    file="$tmp/disk" async-store-file="$tmp/through.store" \
    async-flush=store async-max-dirty=4M async-control="$tmp/ctl" \
    async-writeback-delay=60000
abdctl -s "$tmp/ctl" mode sync >/dev/null || fail "abdctl mode sync failed"
export uri
"$PY" - "$tmp/ctl" "$ABDCTL" <<'EOF2' || fail "the client failed"
import subprocess, sys
import nbd
ctl, abdctl = sys.argv[1], sys.argv[2]
h = nbd.NBD()
h.connect_uri(__import__("os").environ["uri"])
h.pwrite(b"\xab" * 4096, 1 << 20)           # through: sync mode
subprocess.run([abdctl, "-s", ctl, "mode", "async"], check=True,
               stdout=subprocess.DEVNULL)
h.pwrite(b"\xcd" * 4096, 2 << 20)           # into the store: async mode
h.flush()                                   # async mode: both durable
EOF2
[ "$(status_field "$tmp/ctl" mode)" = async ] || fail "not in async mode"
kill -KILL "$pid"; wait "$pid" || true

# The store file holds the second block: the restart writes it back.
async_start back --filter="$ASYNC_FILTER" "$POWERCUT_PLUGIN" \
    file="$tmp/disk" async-store-file="$tmp/through.store" \
    async-flush=store async-max-dirty=4M
stop_nbdkit "$pid"
"$PY" - "$tmp/disk" <<'EOF2' || fail "a flushed write is lost"
import sys
with open(sys.argv[1], "rb") as f:
    f.seek(1 << 20); a = f.read(4096)
    f.seek(2 << 20); b = f.read(4096)
assert b == b"\xcd" * 4096, "the block written in async mode is lost"
assert a == b"\xab" * 4096, "the block written through in sync mode is lost"
print("both flushed blocks are on the image")
EOF2
echo "$0: OK"
