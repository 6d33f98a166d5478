#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter: a normal stop writes everything back.  Data that is
# dirty when nbdkit gets SIGTERM or SIGINT, or when a --run command ends,
# is on the lower file, byte-exact, when nbdkit has exited (with status 0).
# Filters below that sleep (delay, rate, retry):
# test-async-drain-sleeping-filters.sh; a slow drain: test-async-drain-slow.sh.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-helpers.sh"
requires timeout

size=$(( 16 * 1024 * 1024 ))

# write_random SEED: random writes (abdtest write: several sizes, overlapping,
# unaligned) to $uri over the image $tmp/base, then a flush (async mode:
# acknowledged from RAM, still dirty); the image they make is saved as
# $tmp/expected.
write_random ()
{
    "$PY" -m abdtest write --seed "$1" --count 600 --base "$tmp/base" \
        --expected "$tmp/expected" --flush
}

# One round: start the filter with a long writeback delay, write, check
# that the data is dirty (and not on the file), stop nbdkit with SIGNAL,
# check the exit status and the file.
stop_with ()
{
    local sig=$1 seed=$2 rc
    make_random "$tmp/disk" $size "$seed"
    cp "$tmp/disk" "$tmp/base"
    ctl=$tmp/ctl-$sig.sock
    async_start "sd-$sig" --filter="$ASYNC_FILTER" file "$tmp/disk" \
        async-control="$ctl" async-writeback-delay=60000 async-write-size=32M
    uri=$uri write_random "$seed" || fail "$sig: writes failed"
    [ "$(st "$ctl" dirty_bytes)" -gt 0 ] || fail "$sig: nothing dirty before $sig"
    [ "$(st "$ctl" written_back_bytes)" -eq 0 ] ||
        fail "$sig: data was written back before $sig"
    cmp -s "$tmp/disk" "$tmp/base" || fail "$sig: the file changed before $sig"

    kill -"$sig" "$pid"
    rc=0
    wait_for 60 exited "$pid" || fail "$sig: nbdkit did not exit"
    wait "$pid" || rc=$?
    [ "$rc" -eq 0 ] || fail "$sig: nbdkit exited with status $rc"
    [ ! -e "$ctl" ] || fail "$sig: the control socket was not removed at exit"
    cmp "$tmp/disk" "$tmp/expected" ||
        fail "$sig: after exit the file differs: $(first_diff "$tmp/disk" "$tmp/expected")"
    ! grep -q LOST "$log" || fail "$sig: nbdkit logged lost data"
}

stop_with TERM 11
stop_with INT 12

# --run: the command writes, checks that its data is dirty, and ends;
# nbdkit then drains and exits.  The image is right when nbdkit returns.
make_random "$tmp/disk" $size 13
cp "$tmp/disk" "$tmp/base"
ctl=$tmp/ctl-run.sock
rc=0
timeout 60 nbdkit -U "$tmp/run.sock" --filter="$ASYNC_FILTER" file "$tmp/disk" \
    async-control="$ctl" async-writeback-delay=60000 async-write-size=32M \
    --run "$PY -m abdtest write --uri \$uri --seed 13 --count 600 \
           --base $tmp/base --expected $tmp/expected --flush &&
           $ABDCTL -s $ctl --raw status > $tmp/run-status" \
    2>"$tmp/run.log" || rc=$?
cat "$tmp/run.log" >&2
[ "$rc" -eq 0 ] || fail "--run: nbdkit exited with status $rc"
dirty=$(awk '$1 == "dirty_bytes:" { print $2 }' "$tmp/run-status")
[ "${dirty:-0}" -gt 0 ] || fail "--run: nothing was dirty when the command ended"
cmp "$tmp/disk" "$tmp/expected" ||
    fail "--run: after nbdkit returned the file differs: $(first_diff "$tmp/disk" "$tmp/expected")"
[ ! -e "$ctl" ] || fail "--run: the control socket was not removed"

echo "$0: OK"
