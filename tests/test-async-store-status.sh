#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter, async-store-file: a good file holding dirty data is
# written back at start, and abdctl status names the file and counts the
# dirty bytes it holds: none after the write-back, 8192 after an 8 KiB
# write.  After a clean stop the image is as written.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-store-helpers.sh"

store_make_dirty
async_start good --filter="$ASYNC_FILTER" file "$tmp/disk" async-max-dirty=4M \
    async-store-file="$good" async-store-id=disk-a \
    async-writeback-delay=60000 async-write-size=32M async-control="$tmp/good.ctl"
[ "$(st "$tmp/good.ctl" store_file)" = "$good" ] || fail "status: store_file"
[ "$(st "$tmp/good.ctl" store_file_dirty_bytes)" -eq 0 ] ||
    fail "status: store_file_dirty_bytes after the write-back at start"
cmp "$tmp/disk" "$tmp/expected" || fail "the good file was not written back"

"$PY" -c 'import sys; from abdtest.workload import connect; h = connect(sys.argv[1])
h.pwrite(open(sys.argv[2], "rb").read(8192), 0); h.shutdown()' "$uri" "$tmp/expected"
dirty=$(st "$tmp/good.ctl" store_file_dirty_bytes)
[ "$dirty" -eq 8192 ] || fail "status: store_file_dirty_bytes $dirty, expected 8192"
stop_nbdkit "$pid"
cmp "$tmp/disk" "$tmp/expected" || fail "the good file was not written back"
echo "$0: OK"
