# SPDX-License-Identifier: BSD-3-Clause
# Helpers for the tests of a failing lower device under the async filter
# (test-async-lower-write-errors.sh, test-async-lower-flush-errors.sh,
# test-async-exit-lost-data.sh), sourced after tests/functions.sh.
# Errors are injected BELOW the async filter (--filter=ASYNC
# --filter=error: the first is nearest the client), only while a trigger
# file exists.

source "$abs_top_srcdir/tests/test-async-helpers.sh"

size=$(( 8 * 1024 * 1024 ))
export EXPECTED=$tmp/expected

# client CMD ARGS: tests/async_errors_client.py (write, overwrite, flush,
# pwrite, compare) over $uri and the model $EXPECTED.
client () { uri=$uri "$PY" "$abs_top_srcdir/tests/async_errors_client.py" "$@"; }

# For wait_for (which needs a command, re-run each time).
field_gt () { [ "$(st "$1" "$2")" -gt "$3" ]; }
field_eq () { [ "$(st "$1" "$2")" -eq "$3" ]; }

# abdctl_flush_fails: `abdctl flush` must fail with exit status 1.
abdctl_flush_fails ()
{
    local out rc=0
    out=$(abdctl -s "$ctl" flush 2 2>&1) || rc=$?
    [ $rc -ne 0 ] || fail "abdctl flush succeeded while the lower device fails"
    [ $rc -eq 1 ] || fail "abdctl flush: exit $rc, expected 1 ($out)"
    echo "abdctl flush: $out"
}

# failing_start PARAMS...: an empty $size-byte $tmp/img (a copy in
# $tmp/pristine and $tmp/expected), and the async filter over the error
# filter, whose lower writes fail with EIO while $tmp/fail exists; its
# control socket is $ctl.
failing_start ()
{
    truncate -s $size "$tmp/img"
    cp "$tmp/img" "$tmp/pristine"
    cp "$tmp/img" "$tmp/expected"
    ctl=$tmp/ctl.sock
    async_start failing --filter="$ASYNC_FILTER" --filter=error file "$tmp/img" \
        error-pwrite=EIO error-pwrite-rate=1 error-pwrite-file="$tmp/fail" \
        async-control="$ctl" "$@"
}

# errors_grow FIELD: the status counter FIELD (lower_write_errors,
# lower_flush_errors) becomes non-zero, then grows: the filter retries.
errors_grow ()
{
    local e1
    wait_for 10 field_gt "$ctl" "$1" 0 ||
        fail "no $1 while the lower device fails"
    e1=$(st "$ctl" "$1")
    wait_for 15 field_gt "$ctl" "$1" "$e1" ||
        fail "$1 does not grow (no retries?): stays $e1"
}

# recovers TRIGGER: remove TRIGGER (the lower device works again): the
# dirty data drains, `abdctl flush` succeeds, the file is the expected
# image, and a client flush succeeds.
recovers ()
{
    rm "$1"
    wait_for 30 field_eq "$ctl" dirty_bytes 0 ||
        fail "dirty data did not drain after the lower device recovered"
    abdctl -s "$ctl" flush 10 || fail "abdctl flush failed after recovery"
    cmp "$tmp/img" "$tmp/expected" ||
        fail "file differs from the expected image after recovery: $(first_diff "$tmp/img" "$tmp/expected")"
    [ "$(client flush)" = ok ] || fail "client flush fails after recovery"
}
