#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Idle connections to a control socket (common/control.c) cannot lock
# out a real client such as the UPS handler: with 32 connections open
# that send nothing, `abdctl status` is still answered at once (well
# before the 5 s request deadline frees anything), again and again.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-helpers.sh"
requires timeout

truncate -s 1M "$tmp/disk"
ctl=$tmp/ctl.sock
async_start i --filter="$ASYNC_FILTER" file "$tmp/disk" async-control="$ctl"

# Hold 32 idle connections until killed; $tmp/idle-ready once all 32
# are open.
"$PY" - "$ctl" "$tmp/idle-ready" <<'PYEOF' &
import socket, sys, time
def conn():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sys.argv[1])
    return s
held = [conn() for i in range(32)]
open(sys.argv[2], "w").close()
while True:
    time.sleep(0.2)
PYEOF
holder=$!
cleanup_fn kill_wait "$holder" 5
wait_for 20 test -e "$tmp/idle-ready" || fail "could not open 32 connections"

for i in 1 2 3; do
    start=$(date +%s.%N)
    rc=0
    timeout 10 "$ABDCTL" -s "$ctl" status >"$tmp/out" 2>&1 || rc=$?
    [ "$rc" -eq 0 ] ||
        fail "status $i with 32 idle connections open: exit $rc: $(cat "$tmp/out")"
    took=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
    echo "status $i answered in $took s"
    awk -v t="$took" 'BEGIN { exit !(t < 3) }' ||
        fail "status $i took $took s with 32 idle connections open"
done
kill -0 "$holder" || fail "the idle connections' holder died"
echo "$0: OK"
