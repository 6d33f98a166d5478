# SPDX-License-Identifier: BSD-3-Clause
# Helpers for the tests of nbdkit-async-filter, sourced after
# tests/functions.sh.  Not a test itself (not in TESTS).

requires nbdkit
[ -x "$ABDCTL" ] || fail "abdctl not built: $ABDCTL"

requires_python_nbd

# Holding data dirty: async-writeback-delay=60000 keeps young runs from
# the writers, but a full run (async-write-size of contiguous dirty
# blocks, 256K by default) can never grow and is taken at once.  A test
# that needs its writes to stay dirty passes async-write-size=32M as
# well (a stressed run saw 4 MiB of contiguous 64K writes written back
# before the test looked).

# async_start NAME ARGS...: like start_nbdkit, but nbdkit stays in the
# foreground (in the background of this shell) and logs to $tmp/NAME.log,
# so that its messages can be checked and are shown on failure.  Sets
# $sock, $pid, $uri and $log.  If ARGS contain async-control=PATH, waits
# until PATH is a socket.  Stopped (SIGTERM, wait) at exit.
async_start ()
{
    local name=$1 i a ctlpath=; shift
    sock=$tmp/$name.sock
    log=$tmp/$name.log
    local pidfile=$tmp/$name.pid
    rm -f "$sock" "$pidfile"
    for a in "$@"; do
        case $a in async-control=*) ctlpath=${a#async-control=} ;; esac
    done
    nbdkit -f --log=stderr -U "$sock" -P "$pidfile" "$@" 2>>"$log" &
    pid=$!
    cleanup_fn kill_wait "$pid"
    cleanup_fn _async_show_log_on_failure "$log"
    for (( i=0; i<200; i++ )); do
        if [ -s "$pidfile" ] && [ -S "$sock" ] &&
           { [ -z "$ctlpath" ] || [ -S "$ctlpath" ]; }; then
            break
        fi
        kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; fail "nbdkit $name exited at start"; }
        sleep 0.05
    done
    [ -s "$pidfile" ] || fail "nbdkit $name did not start"
    [ -z "$ctlpath" ] || [ -S "$ctlpath" ] ||
        fail "nbdkit $name: no control socket $ctlpath"
    uri="nbd+unix:///?socket=$sock"
}

_async_show_log_on_failure ()
{
    # Show the end of the nbdkit log when the test fails (not when it
    # passes or is skipped).
    if [ "${_async_failed:-0}" != 0 ] && [ "${_async_failed:-0}" != 77 ] &&
       [ -s "$1" ]; then
        echo "---- $1 ----" >&2
        tail -n 40 "$1" >&2
    fi
}
# Remember the exit status for _async_show_log_on_failure.
_async_exit_trap ()
{
    _async_failed=$?
    set +e
    (exit "$_async_failed")     # _run_cleanup exits with this status
    _run_cleanup
}
trap '_async_exit_trap' EXIT

# async_refused PATTERN PARAM...: the async filter over the file plugin
# (on $tmp/disk, 1 MiB, made here when missing) with PARAMs is refused at
# start with a message matching PATTERN (refused_at_start).
async_refused ()
{
    local pattern=$1; shift
    [ -e "$tmp/disk" ] || truncate -s 1M "$tmp/disk"
    refused_at_start "$pattern" --filter="$ASYNC_FILTER" file "$tmp/disk" "$@"
}

# st SOCKET FIELD: one field of `abdctl status` (fails the test when abdctl
# fails or the field is missing).
st ()
{
    local v
    v=$(status_field "$1" "$2") || fail "abdctl -s $1 status failed"
    [ -n "$v" ] || fail "abdctl status has no field $2"
    echo "$v"
}

# make_random PATH SIZE SEED: PATH gets SIZE bytes of seeded random data.
make_random ()
{
    "$PY" -m abdtest random-file "$1" "$2" "$3"
}

# store_writes SEED COUNT [flush]: COUNT random writes of 1 byte to 64 KiB
# at uniform random offsets (so seldom a full aligned run) to $uri, then
# a flush if asked (async mode: answered from RAM, unless write-back has
# failed); $tmp/expected gets $tmp/disk's content with the writes applied.
store_writes ()
{
    local flush=()
    [ "${3:-}" != flush ] || flush=(--flush)
    "$PY" -m abdtest write --uri "$uri" --seed "$1" --count "$2" \
        --sizes 1,512,4096,5000,65536 --uniform --base "$tmp/disk" \
        --expected "$tmp/expected" "${flush[@]+"${flush[@]}"}"
}

# first_diff A B: print where two files first differ (for failure messages).
first_diff ()
{
    cmp "$1" "$2" 2>&1 | head -n 1 || true
}

# write_blocks REGION [flush]: 32 random 4 KiB blocks, 16 KiB apart (so
# that they never join into a full write-size run), in the 512 KiB
# region REGION, through NBD and into $tmp/expected; then a client flush
# if asked.
write_blocks ()
{
    "$PY" - "$tmp/expected" "$1" "${2:-}" "$uri" <<'EOF'
import random, sys
from abdtest.device import Device
from abdtest.workload import connect, spaced_writes
expected, region, flush = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "flush"
h = connect(sys.argv[4])
dev = Device(base=expected)
spaced_writes(h, dev, random.Random(region), region * 512 * 1024, 32, 4096, 16384)
if flush:
    h.flush()
h.shutdown()
dev.save(expected)
EOF
}
