#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# abdctl flush --progress over a slow lower device with dirty data: when
# stdout is not a terminal it prints plain lines ("flush: N% done (X of
# Y), Z still dirty, R/s, time left T") while the flush waits, at least
# one of them part way, with no terminal control characters, then
# "flush: done, ... written back"; it exits 0 and nothing is dirty.  It is
# one flush: a timeout is the filter's (exit 1, "timed out").  On a
# terminal (script(1)) it redraws one line with a bar.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-helpers.sh"

make_random "$tmp/disk" $(( 8 << 20 )) 5
ctl=$tmp/ctl.sock
# 100 ms a lower write, one writer, 24 writes of 60 KiB take 2.4 s
# or more.
async_start slow --filter="$ASYNC_FILTER" --filter=delay file "$tmp/disk" \
    delay-write=100ms async-control="$ctl" async-writeback-delay=60000 \
    async-write-size=64K async-writers=1 async-exit-timeout=5
export uri

# dirty_blocks N: N pieces of 60 KiB, 256 KiB apart: each one lower
# write, and none a full run of async-write-size (64K), which would be
# written back at once, delay or not (the flush would then find some
# already written: it happened under load).
dirty_blocks ()
{
    "$PY" -c '
import os, sys
from abdtest.workload import connect
h = connect()
for i in range(int(sys.argv[1])):
    h.pwrite(os.urandom(61440), i * 262144)
h.shutdown()' "$1" || fail "writes failed"
}

dirty_blocks 24
[ "$(st "$ctl" dirty_bytes)" -eq $(( 24 * 61440 )) ] || fail "not all dirty"
rc=0
timeout 120 "$ABDCTL" -s "$ctl" flush --progress --interval=0.2 60 \
    >"$tmp/out" 2>"$tmp/err" || rc=$?
cat "$tmp/out"
[ $rc -eq 0 ] || fail "flush --progress exited $rc: $(cat "$tmp/err")"
[ ! -s "$tmp/err" ] || fail "flush --progress wrote on stderr: $(cat "$tmp/err")"
[ "$(st "$ctl" dirty_bytes)" -eq 0 ] || fail "dirty after flush --progress"
"$PY" - "$tmp/out" <<'EOF2' || fail "flush --progress: wrong plain output"
import re, sys
lines = open(sys.argv[1]).read().split("\n")
assert lines[-1] == "", "no final newline"
lines = lines[:-1]
size = r"\d+(\.\d)? (B|KiB|MiB|GiB|TiB|PiB)"
line = re.compile(r"flush: (\d+)% done \(S of S\), S still dirty, S/s, "
                  r"time left (unknown|\d+:\d\d)$".replace("S", size))
done = re.compile(r"flush: done, 1\.4 MiB \(1474560 bytes\) written back "
                  r"in \d+\.\d s$")
for l in lines:
    assert not re.search(r"[\x00-\x1f\x7f]", l), "control character: %r" % l
progress = [line.match(l) for l in lines[:-1]]
assert all(progress), "not a progress line: %r" % lines[:-1]
pct = [int(m.group(1)) for m in progress]
assert len(pct) >= 2, "fewer than 2 progress lines: %r" % lines
assert any(0 < p < 100 for p in pct), "no line part way: %r" % pct
assert done.match(lines[-1]), "last line: %r" % lines[-1]
EOF2

# A flush that cannot finish in time: the filter's error, exit 1.
dirty_blocks 8
rc=0
"$ABDCTL" -s "$ctl" flush --progress 0 >"$tmp/out" 2>"$tmp/err" || rc=$?
[ $rc -eq 1 ] && grep -q 'timed out' "$tmp/err" ||
    fail "flush --progress 0: exit $rc, stderr $(cat "$tmp/err")"

# On a terminal: one line redrawn (\r), with a bar.
if command -v script >/dev/null; then
    script -qec "\"$ABDCTL\" -s \"$ctl\" flush --progress 60" /dev/null \
        >"$tmp/tty" || fail "flush --progress on a terminal failed"
    grep -q $'\r\[[#.]*\] ' "$tmp/tty" || fail "no bar on a terminal: $(cat -v "$tmp/tty")"
    grep -q 'flush: done' "$tmp/tty" || fail "no end line on a terminal"
fi

stop_nbdkit "$pid"
echo "$0: OK"
