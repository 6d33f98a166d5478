# SPDX-License-Identifier: BSD-3-Clause
# Helpers for the tests of the async filter's modes (test-async-sync-*.sh,
# test-async-mode-*.sh), sourced after tests/functions.sh.  Their Python
# uses abdtest.testenv: $uri, $CTL, $DISK, $EXPECTED.
#
# The delay filter under the async filter (200 ms per lower write, one
# writer) keeps data in RAM long enough for flushes to have to wait.

source "$abs_top_srcdir/tests/test-async-helpers.sh"

size=$(( 4 * 1024 * 1024 ))
export DISK=$tmp/disk EXPECTED=$tmp/expected

# mode_start SEED PARAMS...: a fresh image (seeded random data), the
# filter over the delay filter with PARAMS.  Sets $ctl and $pid.
mode_start ()
{
    local seed=$1; shift
    make_random "$tmp/disk" $size "$seed"
    ctl=$tmp/ctl.sock
    async_start mode --filter="$ASYNC_FILTER" --filter=delay file "$tmp/disk" \
        delay-write=200ms async-control="$ctl" async-writers=1 async-exit-timeout=5 \
        async-write-size=32M "$@"
    export uri CTL=$ctl
}

# mode_finish: abdctl flush, then stop nbdkit; the lower file must hold
# $tmp/expected both times.  (Drained before the stop: the delay filter
# fails every lower write once nbdkit is shutting down, so the exit drain
# could not write it; that case is in test-async-shutdown.sh.)
mode_finish ()
{
    abdctl -s "$ctl" flush 30 || fail "abdctl flush failed"
    cmp "$tmp/disk" "$tmp/expected" || fail "after abdctl flush the file differs"
    stop_nbdkit "$pid"
    cmp "$tmp/disk" "$tmp/expected" || fail "after exit the file differs"
}

# mode_is MODE REASON: abdctl status says so.
mode_is ()
{
    [ "$(st "$ctl" mode)" = "$1" ] && [ "$(st "$ctl" mode_reason)" = "$2" ]
}
