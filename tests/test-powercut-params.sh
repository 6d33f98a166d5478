#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-powercut-plugin: every bad parameter is refused at start, nbdkit
# exits non-zero before serving, with a message naming the problem;
# values at the limits are accepted; --help lists every parameter.
# All cases run; every one that fails is listed at the end.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-powercut-helpers.sh"
requires timeout

truncate -s 1M "$tmp/disk"
truncate -s 1000 "$tmp/odd"
failures=()
n=0

# bad PATTERN PARAM...: nbdkit -f with the plugin and PARAMs must exit
# non-zero without serving, its stderr matching PATTERN (grep -E).
bad ()
{
    local pattern=$1 rc=0 p; shift
    n=$((n+1))
    rm -f "$tmp/p.sock"
    nbdkit -f -U "$tmp/p.sock" "$POWERCUT_PLUGIN" "$@" \
        >"$tmp/out" 2>"$tmp/err" </dev/null &
    p=$!
    cleanup_fn kill_wait "$p" 10
    # It exits, or it serves: wait (with a deadline) for either.
    wait_for 30 bad_decided "$p" || true
    if kill -0 "$p" 2>/dev/null; then
        kill_wait "$p" 10
        wait "$p" 2>/dev/null || true
        failures+=("accepted (nbdkit serves): $*")
        return
    fi
    wait "$p" || rc=$?
    if [ "$rc" -eq 0 ]; then
        failures+=("exit status 0: $*")
    elif ! grep -qE -- "$pattern" "$tmp/err"; then
        failures+=("$* -> message does not match '$pattern': $(tr '\n' ' ' < "$tmp/err")")
    fi
}
bad_decided ()
{
    ! kill -0 "$1" 2>/dev/null || [ -S "$tmp/p.sock" ]
}

# good PARAM...: accepted (the --run command runs, nbdkit exits 0).
good ()
{
    local rc=0
    n=$((n+1))
    rm -f "$tmp/ran"
    timeout 30 nbdkit -U - "$POWERCUT_PLUGIN" "$@" --run "touch $tmp/ran" \
        >"$tmp/out" 2>"$tmp/err" </dev/null || rc=$?
    if [ "$rc" -ne 0 ] || [ ! -e "$tmp/ran" ] || grep -q error "$tmp/err"; then
        failures+=("refused: $* (exit $rc): $(tr '\n' ' ' < "$tmp/err")")
    fi
}

f=file=$tmp/disk
bad 'file parameter is required'
bad 'file parameter is required' unflushed-persist=0.5
bad 'file: .*no/such: No such file' file="$tmp/no/such"
bad 'not a multiple of 512'      file="$tmp/odd"
bad 'unflushed-persist.*fraction' $f unflushed-persist=2
bad 'unflushed-persist.*fraction' $f unflushed-persist=-1
bad 'unflushed-persist.*fraction' $f unflushed-persist=abc
bad 'unflushed-persist.*fraction' $f unflushed-persist=
bad 'unflushed-persist.*fraction' $f unflushed-persist=0.5x
bad 'unflushed-persist.*fraction' $f unflushed-persist=nan
bad 'unflushed-persist.*fraction' $f unflushed-persist=1.0000001
bad 'seed'                       $f seed=-1
bad 'seed'                       $f seed=abc
bad 'seed'                       $f seed=4294967296
bad 'cache-max'                  $f cache-max=abc
bad 'cache-max'                  $f cache-max=0
bad 'cache-max'                  $f cache-max=4095
bad 'cache-max'                  $f cache-max=2T
bad "unknown parameter 'persist'" $f persist=0.5
bad "unknown parameter 'cachemax'" $f cachemax=1M

good $f
good "$tmp/disk" unflushed-persist=0 seed=0 cache-max=4K
good $f unflushed-persist=1 seed=4294967295 cache-max=1T
good $f unflushed-persist=0.25 cache-max=64M
good $f unflushed-persist=1e-3

n=$((n+1))
nbdkit "$POWERCUT_PLUGIN" --help > "$tmp/help" 2>&1 ||
    failures+=("nbdkit powercut --help failed")
for p in file unflushed-persist seed cache-max; do
    grep -q -- "^$p=" "$tmp/help" || failures+=("--help does not mention $p=")
done

if [ ${#failures[@]} -gt 0 ]; then
    for x in "${failures[@]}"; do echo "$0: FAIL: $x" >&2; done
    fail "${#failures[@]} of $n checks failed"
fi
echo "$0: OK ($n checks)"
