#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter: SIGTERM, SIGINT and the end of a --run command write
# every dirty byte back, and flush, before nbdkit starts shutting down, so
# filters below that sleep through nbdkit (delay, rate, retry,
# retry-request: nbdkit_nanosleep refuses to sleep once nbdkit is
# quitting) do not make the drain fail: for each of them below the
# filter, over the file plugin, data dirty in RAM, SIGTERM (SIGINT for
# one), nbdkit exits 0 within the deadline, the file is byte-exact, the
# log has no "LOST" and no aborted sleep; and --run over the delay filter
# is exact when nbdkit returns.  (A slow drain: test-async-drain-slow.sh.)

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-drain-helpers.sh"

# stop_case NAME SIGNAL FILTERS PARAM...: 4 MiB dirty in 64K writes, with
# FILTERS (words) between the async filter and the file plugin, then
# SIGNAL.  With the error filter in FILTERS (error-pwrite-file=$tmp/fail),
# every lower write fails from the start until one has failed after the
# signal: the filters above it sleep and retry during the drain.  (From
# the start: the writers may take some of the data before the signal.)
stop_case ()
{
    local name=$1 sig=$2 filters=$3 f errors; shift 3
    local args=(--filter="$ASYNC_FILTER")
    for f in $filters; do args+=(--filter="$f"); done
    make_random "$tmp/disk" $size "${#name}"
    ctl=$tmp/$name.ctl
    [[ " $filters " != *" error "* ]] || touch "$tmp/fail"
    async_start "$name" "${args[@]}" file "$tmp/disk" "$@" \
        async-control="$ctl" async-writeback-delay=60000 async-write-size=32M async-exit-timeout=10
    drain_write "${#name}" 64 65536 65536 || fail "$name: writes failed"
    [ "$(st "$ctl" dirty_bytes)" -gt 0 ] || fail "$name: nothing dirty"
    [ "$(st "$ctl" written_back_bytes)" -eq 0 ] || fail "$name: written back early"
    errors=$(lower_errors)
    kill -"$sig" "$pid"
    if [ -e "$tmp/fail" ]; then
        wait_for 30 errors_after "$errors" ||
            fail "$name: no lower write failed in the drain"
        rm "$tmp/fail"
    fi
    exited_ok "$name"
}

# lower_errors: the errors the error filter has injected so far ($log).
lower_errors () { grep -c "injecting EIO error into pwrite" "$log" || true; }
errors_after () { [ "$(lower_errors)" -gt "$1" ]; }

stop_case delay TERM delay delay-write=10ms
stop_case rate INT rate rate=32M
# The retry filters sleep only after a failed write: the error filter
# below them fails the writes until the drain has met a failure.
fail_writes=(error-pwrite=EIO error-pwrite-rate=100% error-pwrite-file="$tmp/fail")
stop_case retry TERM "retry error" retry-delay=1 retry-exponential=no \
    "${fail_writes[@]}"
stop_case retry-request TERM "retry-request error" retry-request-delay=1 \
    retry-request-retries=5 "${fail_writes[@]}"

# --run: the end of the command is a SIGTERM to the serving nbdkit.
make_random "$tmp/disk" $size 8
log=$tmp/run.log
rc=0
unset uri
timeout 120 nbdkit -U "$tmp/run.sock" \
    --filter="$ASYNC_FILTER" --filter=delay file "$tmp/disk" delay-write=10ms \
    async-control="$tmp/run.ctl" async-writeback-delay=60000 async-write-size=32M \
    --run "$PY -m abdtest spaced --uri \$uri --seed 8 --count 64 --size 65536 \
             --gap 65536 --base $tmp/disk --expected $tmp/expected --flush &&
           \"$ABDCTL\" -s \"$tmp/run.ctl\" --raw status > \"$tmp/run-status\"" \
    2>"$log" || rc=$?
[ "$rc" -eq 0 ] || { cat "$log" >&2; fail "--run: nbdkit exited with status $rc"; }
grep -q "^dirty_bytes: [1-9]" "$tmp/run-status" ||
    fail "--run: nothing was dirty when the command ended"
cmp "$tmp/disk" "$tmp/expected" || fail "--run: the file differs"
! grep -E "LOST|aborting sleep" "$log" || fail "--run: data lost or a sleep aborted"
echo "$0: OK"
