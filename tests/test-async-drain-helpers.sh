# SPDX-License-Identifier: BSD-3-Clause
# Helpers for the tests of the async filter's drain at a stop
# (test-async-drain-*.sh), sourced after tests/functions.sh.

source "$abs_top_srcdir/tests/test-async-helpers.sh"
requires timeout

size=$(( 16 * 1024 * 1024 ))
export DISK=$tmp/disk EXPECTED=$tmp/expected

# drain_write SEED COUNT SIZE GAP: COUNT random writes of SIZE bytes, GAP
# bytes apart from a random start, to $uri, then a flush (async mode:
# acknowledged from RAM, still dirty); the image ($tmp/disk's content
# before) is saved as $tmp/expected.
drain_write ()
{
    "$PY" -m abdtest spaced --uri "$uri" --seed "$1" --count "$2" \
        --size "$3" --gap "$4" --base "$tmp/disk" --expected "$tmp/expected" \
        --flush
}

# exited_ok: wait (with a deadline) for nbdkit $pid to exit, with status 0,
# leaving the file exact and the log clean.
exited_ok ()
{
    local what=$1 rc=0 t0=$SECONDS
    wait_for 120 exited "$pid" || fail "$what: nbdkit did not exit"
    echo "$what: nbdkit exited $(( SECONDS - t0 )) s after the signal"
    wait "$pid" || rc=$?
    [ "$rc" -eq 0 ] || fail "$what: nbdkit exited with status $rc"
    cmp "$tmp/disk" "$tmp/expected" ||
        fail "$what: after exit the file differs: $(first_diff "$tmp/disk" "$tmp/expected")"
    ! grep -E "LOST|aborting sleep" "$log" || fail "$what: data lost or a sleep aborted"
}
