# SPDX-License-Identifier: BSD-3-Clause
# Helpers for the tests of client writes racing write-back
# (test-async-race-*.sh), sourced after tests/functions.sh: no write-back
# delay, 8K lower writes, 16 writers, a small store (so writes wait for
# space).  Four connections (tests/async_race_client.py) rewrite their
# own ranges over and over, each with up to 32 requests in flight, with
# distinct random data and some zeroes, reading back their own idle
# ranges as they go; at the end, after `abdctl flush`, the file must
# equal the merged model.

source "$abs_top_srcdir/tests/test-async-helpers.sh"

size=$(( 16 * 1024 * 1024 ))
nconn=4
nops=${RACE_OPS:-1500}          # per connection
export SIZE=$size

# race_start NAME SEED EXTRA-PARAMS...: a fresh image, the filter, and
# the clients in the background (their PIDs in $race_pids).
race_start ()
{
    local name=$1 seed=$2 c; shift 2
    make_random "$tmp/disk" $size "$seed"
    cp "$tmp/disk" "$tmp/base"
    ctl=$tmp/ctl-$name.sock
    async_start "race-$name" --filter="$ASYNC_FILTER" file "$tmp/disk" \
        async-control="$ctl" async-writeback-delay=0 async-write-size=8K \
        async-writers=16 async-max-dirty=1M "$@"
    export uri BASE=$tmp/base MODEL=$tmp/model
    race_pids=()
    for (( c=0; c<nconn; c++ )); do
        "$PY" "$abs_top_srcdir/tests/async_race_client.py" $c $nconn $nops "$seed" &
        race_pids+=($!)
    done
}

# race_flush: every client read back what it wrote; after abdctl flush
# nothing is dirty, no lower write failed, and the file is the merged
# model.  nbdkit still runs.
race_flush ()
{
    local p bad=0
    for p in "${race_pids[@]}"; do
        wait "$p" || bad=1
    done
    [ $bad -eq 0 ] || fail "a connection read back something else than it wrote"
    "$PY" "$abs_top_srcdir/tests/async_race_client.py" -1 $nconn 0 0 ||
        fail "merging the models failed"
    abdctl -s "$ctl" flush 30 || fail "abdctl flush failed"
    [ "$(st "$ctl" dirty_bytes)" -eq 0 ] || fail "dirty after flush"
    [ "$(st "$ctl" client_write_requests)" -gt 0 ] || fail "no writes counted"
    [ "$(st "$ctl" lower_write_errors)" -eq 0 ] || fail "lower write errors"
    cmp "$tmp/disk" "$tmp/model" ||
        fail "after flush the file differs from the model: $(first_diff "$tmp/disk" "$tmp/model")"
}

# race_stop: the file is still the model after nbdkit has stopped.
race_stop ()
{
    stop_nbdkit "$pid"
    cmp "$tmp/disk" "$tmp/model" || fail "after exit the file differs"
    ! cmp -s "$tmp/disk" "$tmp/base" || fail "nothing changed (test bug)"
}

# written_back: true once the writers have written something back.
written_back ()
{
    [ "$(st "$ctl" written_back_requests)" -gt 0 ]
}
