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
