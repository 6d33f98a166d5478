# SPDX-License-Identifier: BSD-3-Clause
# Helpers for the tests of nbdkit-powercut-plugin, sourced after
# tests/functions.sh.  Not a test itself (not in TESTS).

requires nbdkit
requires_python_nbd
[ -f "$POWERCUT_PLUGIN" ] || fail "powercut plugin not built: $POWERCUT_PLUGIN"

# pc_start NAME ARGS...: nbdkit -f with the powercut plugin and ARGS, in
# the background of this shell, on the socket $tmp/NAME.sock, logging to
# $tmp/NAME.log.  Sets $pid, $uri and $log.  Stopped at exit.
pc_start ()
{
    local name=$1; shift
    local sock=$tmp/$name.sock pidfile=$tmp/$name.pid
    log=$tmp/$name.log
    rm -f "$sock" "$pidfile"
    nbdkit -f --log=stderr -U "$sock" -P "$pidfile" \
        "$POWERCUT_PLUGIN" "$@" 2>>"$log" &
    pid=$!
    # Disowned: bash still reaps it, but does not report its SIGKILL.
    disown "$pid"
    cleanup_fn kill_wait "$pid" 10
    wait_for 30 pc_ready "$pid" "$sock" "$pidfile" ||
        fail "nbdkit $name did not start in 30 s: $(tail -5 "$log")"
    kill -0 "$pid" 2>/dev/null || fail "nbdkit $name exited: $(tail -5 "$log")"
    uri="nbd+unix:///?socket=$sock"
    export uri
}
pc_ready ()
{
    ! kill -0 "$1" 2>/dev/null || { [ -S "$2" ] && [ -s "$3" ]; }
}

# pc_cut PID: the power cut.  SIGKILL, then wait (30 s deadline) until the
# process is gone (or a zombie: it is this shell's child).
pc_cut ()
{
    kill -KILL "$1" || fail "nbdkit $1 was already gone before the cut"
    wait_for 30 pc_gone "$1" || fail "nbdkit $1 still runs 30 s after SIGKILL"
}
pc_gone ()
{
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
    [ "$(echo "${stat##*) }" | cut -d' ' -f1)" = Z ]
}

# pc_image PATH SIZE: PATH gets SIZE random bytes.
pc_image ()
{
    head -c "$2" /dev/urandom > "$1"
}
