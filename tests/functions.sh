# SPDX-License-Identifier: BSD-3-Clause
# abd test helpers, sourced by every tests/*.sh.
#
# Every test: source this file, call `requires` for what it needs (exit 77 =
# skipped), make its files under $tmp (removed at exit), and start servers
# with the start_* helpers, which register their PIDs so that they are
# stopped at exit even when the test fails.

set -e
set -u
set -o pipefail

: "${abs_top_builddir:=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
: "${abs_top_srcdir:=$abs_top_builddir}"
: "${ASYNC_FILTER:=$abs_top_builddir/filters/async/.libs/nbdkit-async-filter.so}"
: "${MEMCACHE_FILTER:=$abs_top_builddir/filters/memcache/.libs/nbdkit-memcache-filter.so}"
: "${ABDCTL:=$abs_top_builddir/abdctl/abdctl}"
: "${POWERCUT_PLUGIN:=$abs_top_builddir/plugins/powercut/.libs/nbdkit-powercut-plugin.so}"
export ASYNC_FILTER MEMCACHE_FILTER ABDCTL POWERCUT_PLUGIN

# The helpers that hold no test state; scripts/abd-run sources this file
# with ABD_HELPERS_ONLY=1 for these alone.

# alive PID: the process PID runs (exists and is not a zombie).  `kill -0`
# is not enough: a daemon such as nbdkit (without -f) is an orphan whose
# parent is PID 1, and an init that reaps orphans only now and then (this
# machine's reaps every 1-2 s) leaves it a zombie, which kill -0 counts as
# running, long after it has exited.
alive ()
{
    local stat
    { read -r stat < "/proc/$1/stat"; } 2>/dev/null || return 1
    stat=${stat##*) }                   # after "PID (COMM) ": the state
    [ "${stat%% *}" != Z ]
}
# exited PID: the process PID has exited (for wait_for).
exited () { ! alive "$1"; }

# kill_wait PID [SECONDS [SIGNAL]]: send SIGNAL (default TERM), then wait
# for the process to be gone; SIGKILL after SECONDS (default 60) of real
# time.
kill_wait ()
{
    local pid=$1 secs=${2:-60} sig=${3:-TERM} deadline
    kill -"$sig" "$pid" 2>/dev/null || return 0
    deadline=$(( EPOCHSECONDS + secs ))
    while alive "$pid"; do
        if [ "$EPOCHSECONDS" -ge "$deadline" ]; then
            echo "$0: process $pid did not exit in ${secs}s, killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
            return 1
        fi
        sleep 0.02
    done
}

# free_port: print a TCP port on 127.0.0.1 that nothing listens on.
free_port ()
{
    PYTHONPATH=$abs_top_srcdir/tests PYTHONDONTWRITEBYTECODE=1 python3 -c \
        'import abdtest.procs; print(abdtest.procs.free_port())'
}

# wait_port PORT PID SECONDS: until something accepts connections on
# 127.0.0.1:PORT; fails (status 1) when the process PID has exited or
# after SECONDS.
wait_port ()
{
    local port=$1 pid=$2 deadline=$(( EPOCHSECONDS + $3 ))
    while ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        alive "$pid" || return 1
        [ "$EPOCHSECONDS" -lt "$deadline" ] || return 1
        sleep 0.05
    done
}

# wait_for SECONDS CMD...: poll CMD every 0.1 s until it succeeds; fail
# after SECONDS of real time (not a count of polls, which a loaded machine
# stretches).  CMD is run again each time: to poll a value, pass a
# command that computes it (bash -c '...', a function), not "$(...)".
wait_for ()
{
    local secs=$1 deadline; shift
    deadline=$(( EPOCHSECONDS + secs ))
    while :; do
        if "$@"; then return 0; fi
        [ "$EPOCHSECONDS" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

[ -z "${ABD_HELPERS_ONLY:-}" ] || return 0

# The tests' Python imports abd's test library, tests/abdtest/.
export PYTHONPATH=$abs_top_srcdir/tests${PYTHONPATH:+:$PYTHONPATH}
export PYTHONDONTWRITEBYTECODE=1     # no __pycache__ in the source tree

# abdctl's default socket comes from here when set: not in tests, which
# name their sockets.
unset ABDCTL_SOCKET

_cleanup_cmds=()
# cleanup_fn CMD ARGS...: run at exit, last registered first.
cleanup_fn ()
{
    _cleanup_cmds+=("$(printf '%q ' "$@")")
}
_run_cleanup ()
{
    local status=$? i
    set +e
    for (( i=${#_cleanup_cmds[@]}-1; i>=0; i-- )); do
        eval "${_cleanup_cmds[$i]}"
    done
    exit $status
}

# memcached_at_exit PID: stop the test's memcached PID at exit.  SIGKILL,
# not SIGTERM: memcached's SIGTERM handler only sets a flag that its
# once-a-second clock event reads, so a TERM costs up to 1 s per server,
# and the test needs nothing from a clean memcached exit.  (Disowned: bash
# still reaps it, but does not report the SIGKILL in the test's log.)
memcached_at_exit ()
{
    disown "$1" 2>/dev/null || true
    cleanup_fn kill_wait "$1" 10 KILL
}

trap _run_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

tmp=$(mktemp -d /var/tmp/abd-test.XXXXXX)
cleanup_fn rm -rf "$tmp"

# Sanitizer builds (./configure --enable-sanitizers): the filters need the
# ASan runtime, which nbdkit is not built with, so every nbdkit started by
# this test (or by a program it runs) is a wrapper first in $PATH that
# preloads it and execs the real nbdkit: same PID, same arguments.  Any
# sanitizer report fails nbdkit, and so the test.
#
# Two more libraries are preloaded after the ASan runtime:
# - libp11-kit (nbdkit -> gnutls -> p11-kit).  Without it, nbdkit hangs
#   in exit(), with or without abd's filters: glibc's locale lock is
#   already broken before main (seen in gdb: __libc_setlocale_lock
#   readers = 4294967289, after libp11-kit's constructor ran before the
#   ASan runtime's), and libp11-kit's destructor waits on it forever in
#   freelocale().  Preloaded, libp11-kit is set up in another order and
#   nbdkit exits normally.  (Found by trying, not from a documented rule.)
# - tests/preload-once.c, which takes LD_PRELOAD out of nbdkit's
#   environment, so the programs nbdkit starts do not inherit any of it.
# (A test run by another test finds the wrapper already first in $PATH:
# ABD_SANITIZER_WRAPPED says so, and nothing is done again.)
if [ -n "${ABD_SANITIZER_PRELOAD:-}" ] && [ -z "${ABD_SANITIZER_WRAPPED:-}" ] &&
   command -v nbdkit >/dev/null; then
    export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1}
    export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
    # ABD_SANITIZER_PRELOAD becomes the whole list, for the programs that
    # start nbdkit themselves (scripts/torture, the QEMU guest) too.
    preload_add ()
    {
        case " $ABD_SANITIZER_PRELOAD " in
            *" $1 "*) ;;
            *) ABD_SANITIZER_PRELOAD="$ABD_SANITIZER_PRELOAD $1" ;;
        esac
    }
    p11kit=$(ldd "$(command -v nbdkit)" | awk '/libp11-kit/ { print $3 }')
    [ -z "$p11kit" ] || preload_add "$p11kit"
    preload_once=$abs_top_builddir/tests/.libs/abd-preload-once.so
    if [ ! -f "$preload_once" ]; then
        echo "$0: FAIL: $preload_once is missing (make check builds it)"
        exit 1
    fi
    preload_add "$preload_once"
    export ABD_SANITIZER_PRELOAD
    for f in "${ASYNC_FILTER:-}" "${MEMCACHE_FILTER:-}" "${POWERCUT_PLUGIN:-}"; do
        # grep without -q reads all of nm's output: with -q, nm could die
        # of SIGPIPE and, under pipefail, the check would fail.
        if [ -n "$f" ] && ! nm -D "$f" | grep __asan_report >/dev/null; then
            echo "$0: FAIL: sanitizer run, but $f is not built with ASan" \
                 "(make clean, then make)"
            exit 1
        fi
    done
    mkdir "$tmp/sanitizer-bin"
    printf '#!/bin/sh\nLD_PRELOAD="%s" exec %s "$@"\n' \
        "$ABD_SANITIZER_PRELOAD" "$(command -v nbdkit)" \
        > "$tmp/sanitizer-bin/nbdkit"
    chmod +x "$tmp/sanitizer-bin/nbdkit"
    export PATH="$tmp/sanitizer-bin:$PATH" ABD_SANITIZER_WRAPPED=1
fi

# requires CMD...: skip (exit 77) unless every command runs.
requires ()
{
    local c
    for c in "$@"; do
        if ! command -v "$c" >/dev/null 2>&1; then
            echo "$0: SKIP: $c is not installed"
            exit 77
        fi
    done
}

# requires_python_nbd: set $PY to a Python that has the libnbd bindings
# (nbdsh runs `python3 -mnbd`, and the python3 first on $PATH is not always
# the system one that has them), or skip.
requires_python_nbd ()
{
    local py
    PY=
    for py in python3 /usr/bin/python3; do
        if "$py" -c 'import nbd' 2>/dev/null; then PY=$py; break; fi
    done
    if [ -z "$PY" ]; then
        echo "$0: SKIP: no python3 with the nbd module"
        exit 77
    fi
    export PY
}

fail ()
{
    echo "$0: FAIL: $*" >&2
    exit 1
}

# refused_at_start PATTERN NBDKIT-ARGS...: nbdkit in the foreground with
# NBDKIT-ARGS must exit with a non-zero status (not still serve 10 s on)
# and say something matching PATTERN (grep -E) on stderr.  Not with --run:
# nbdkit starts the --run command before a filter's .after_fork, where
# some checks are made, so the exit status would be racy.
refused_at_start ()
{
    local pattern=$1 rc=0; shift
    requires timeout
    rm -f "$tmp/refused.sock"
    timeout 10 nbdkit -f -U "$tmp/refused.sock" "$@" \
        >/dev/null 2>"$tmp/refused.err" </dev/null || rc=$?
    [ "$rc" -ne 124 ] || fail "accepted (nbdkit still serves after 10 s): $*"
    [ "$rc" -ne 0 ] || fail "exit status 0: $*"
    grep -qE -- "$pattern" "$tmp/refused.err" ||
        fail "$* -> message does not match '$pattern':" \
             "$(tr '\n' ' ' < "$tmp/refused.err")"
}

# start_nbdkit NAME ARGS...: start nbdkit on the Unix socket $tmp/NAME.sock
# with pidfile $tmp/NAME.pid; ARGS are passed to nbdkit (filters, plugin,
# parameters).  Sets $sock and $pid.  Stopped (SIGTERM, wait) at exit.
start_nbdkit ()
{
    local name=$1; shift
    sock=$tmp/$name.sock
    local pidfile=$tmp/$name.pid
    rm -f "$sock" "$pidfile"
    nbdkit -U "$sock" -P "$pidfile" "$@"
    wait_for 10 test -s "$pidfile" || fail "nbdkit $name did not start"
    pid=$(cat "$pidfile")
    cleanup_fn kill_wait "$pid"
    uri="nbd+unix:///?socket=$sock"
}

# stop_nbdkit PID: SIGTERM and wait until it has exited (the async filter
# drains before exit).
stop_nbdkit ()
{
    kill_wait "$1" 120 || fail "nbdkit $1 had to be killed"
}

# start_memcached NAME [ARGS...]: memcached on a free loopback port.  Sets
# $mc_port and $mc_pid; stopped at exit.
start_memcached ()
{
    local name=$1; shift
    requires memcached
    mc_port=$(free_port)
    memcached -l 127.0.0.1 -p "$mc_port" -U 0 -u root -m 64 "$@" \
        >"$tmp/memcached-$name.log" 2>&1 &
    mc_pid=$!
    memcached_at_exit "$mc_pid"
    wait_port "$mc_port" "$mc_pid" 10 || fail "memcached $name did not start"
}

# abdctl ARGS...: the built abdctl.
abdctl ()
{
    "$ABDCTL" "$@"
}

# status_field SOCKET NAME: one numeric or string field of `abdctl --raw
# status` (the filter's own name: value lines).
status_field ()
{
    "$ABDCTL" -s "$1" --raw status | awk -v k="$2:" '$1 == k { print $2; exit }'
}

# mc_filled SOCKET: wait until the fills the memcache filter (control
# SOCKET) queued have all been sent or dropped: it stores them in the
# background (filters/memcache/filler.c).
_mc_none_queued () { [ "$(status_field "$1" fills_queued)" = 0 ]; }
mc_filled ()
{
    wait_for 20 _mc_none_queued "$1" || fail "fills still queued after 20 s"
}

# unit_line FILE KEY: the KEY= line of the systemd unit FILE as systemd
# reads it: continuation lines joined, $$ unescaped (variables such as
# ${ABD_DEVICE} are left for the caller to expand).
unit_line ()
{
    awk -v k="$2=" '
        index($0, k) == 1 { on = 1; $0 = substr($0, length(k) + 1) }
        on { if (sub(/\\$/, "")) printf "%s ", $0; else { print; exit } }
    ' "$1" | sed 's/\$\$/$/g'
}

# The filters must be built for these tests.
[ -f "$ASYNC_FILTER" ] || fail "async filter not built: $ASYNC_FILTER"
