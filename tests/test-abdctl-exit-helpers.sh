# SPDX-License-Identifier: BSD-3-Clause
# Helpers for the tests of abdctl's answers and exit statuses against the
# async filter (test-abdctl-exit-*.sh, test-abdctl-flush-timeout.sh,
# test-abdctl-json.sh), sourced after tests/functions.sh.  Starts the
# filter over a slow lower device (200 ms per lower write, one writer) so
# that `flush 0` cannot be satisfied at once; its control socket is $ctl.

source "$abs_top_srcdir/tests/test-async-helpers.sh"

make_random "$tmp/disk" $(( 4 * 1024 * 1024 )) 91
ctl=$tmp/ctl.sock
async_start ab --filter="$ASYNC_FILTER" --filter=delay file "$tmp/disk" \
    delay-write=200ms async-control="$ctl" async-writeback-delay=60000 \
    async-write-size=32M async-writers=1 async-exit-timeout=5
export uri

failures=()
# expect RC CMD...: run abdctl with CMD, check its exit status; its
# stdout and stderr are left in $tmp/out and $tmp/err.
expect ()
{
    local want=$1 rc=0; shift
    "$ABDCTL" "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
    if [ "$rc" -ne "$want" ]; then
        failures+=("abdctl $* exited $rc, expected $want (stderr: $(tr '\n' ' ' < "$tmp/err"))")
        return 1
    fi
}
# expect_err RC PATTERN CMD...: also stderr matches PATTERN, stdout empty.
expect_err ()
{
    local want=$1 pattern=$2; shift 2
    expect "$want" "$@" || return 0
    grep -qE -- "$pattern" "$tmp/err" ||
        failures+=("abdctl $*: stderr does not match '$pattern': $(tr '\n' ' ' < "$tmp/err")")
    [ ! -s "$tmp/out" ] || failures+=("abdctl $*: printed on stdout: $(head -c 200 "$tmp/out")")
}

# dirty_blocks: four 64 KiB writes, never adjacent: 4 lower writes of
# 200 ms to drain.
dirty_blocks ()
{
    "$PY" -c '
import os
from abdtest.workload import connect
h = connect()
for i in range(4):
    h.pwrite(os.urandom(65536), i * 262144)
h.shutdown()' || fail "writes failed"
    [ "$(st "$ctl" dirty_bytes)" -gt 0 ] || fail "nothing dirty"
}

# abdctl_stop: drain (over the delay filter the exit drain cannot write;
# see test-async-shutdown.sh), then stop nbdkit.
abdctl_stop ()
{
    expect 0 -s "$ctl" flush 30
    stop_nbdkit "$pid"
}

# abdctl_report: fail with every failed check.
abdctl_report ()
{
    local f
    if [ ${#failures[@]} -gt 0 ]; then
        for f in "${failures[@]}"; do echo "$0: FAIL: $f" >&2; done
        fail "${#failures[@]} checks failed"
    fi
}
