#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter: a long drain at a stop is visible in the log
# without -v, so that `journalctl -u abd` shows a 30-minute stop moving:
# at SIGTERM, how much is to be written back; every 5 s, what is left,
# the rate and the time to go; at the end, that it is all written back.
# The drain is made slow on purpose: 140 scattered 4K blocks written back
# one at a time through the delay filter, 50 ms each (about 7 s).

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-helpers.sh"

make_random "$tmp/disk" $(( 4 * 1024 * 1024 )) 3
cp "$tmp/disk" "$tmp/expected"
ctl=$tmp/ctl.sock
async_start slow --filter="$ASYNC_FILTER" --filter=delay file "$tmp/disk" \
    delay-write=50ms async-writers=1 async-control="$ctl" \
    async-writeback-delay=60000 async-write-size=32M
export uri
"$PY" - "$tmp/expected" <<'PY' || fail "writes failed"
import nbd, os, sys
h = nbd.NBD(); h.connect_uri(os.environ["uri"])
with open(sys.argv[1], "r+b") as model:
    for i in range(140):
        data = os.urandom(4096)
        h.pwrite(data, i * 16384)           # scattered: never joined
        model.seek(i * 16384)
        model.write(data)
h.shutdown()
PY
[ "$(status_field "$ctl" dirty_bytes)" = $(( 140 * 4096 )) ] ||
    fail "the data is not all dirty before the stop (test bug)"

kill -TERM "$pid"
wait_for 120 exited "$pid" || fail "nbdkit did not exit"
cmp "$tmp/disk" "$tmp/expected" || fail "the image differs after the stop"

grep -E "^nbdkit: async: info: draining: writing back 0\.5 MiB of dirty data" "$log" ||
    fail "no message at the start of the drain"
grep -E "^nbdkit: async: info: draining: 0\.[0-9] MiB left, [0-9.]+ MiB/s, about [0-9]+ s to go" "$log" ||
    fail "no progress message during the drain"
grep -E "^nbdkit: async: info: drained: all dirty data written back in [0-9.]+ s" "$log" ||
    fail "no message at the end of the drain"
echo "$0: OK"
