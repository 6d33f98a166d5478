#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter: every bad parameter is refused at start: nbdkit
# exits non-zero before serving, with a message naming the parameter
# (nbdkit-async-filter(1): "A bad value is refused at start with a message
# naming the parameter").  Good values at the limits are accepted, and
# `nbdkit --filter=async null --help` lists every async- parameter.
# All cases run; every one that fails is listed at the end.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-helpers.sh"
requires timeout

truncate -s 1M "$tmp/disk"
failures=()
n=0
_desc=

# bad PATTERN PARAM...: nbdkit (in the foreground) with PARAMs must exit
# non-zero without serving, and its stderr must match PATTERN (grep -E).
# (Not with --run: nbdkit starts the --run command before the filter's
# .after_fork, where the lower device and the control socket are checked,
# so the exit status would be racy.)
bad ()
{
    local pattern=$1 rc=0 p i; shift
    local desc=${_desc:-$*}
    _desc=
    n=$((n+1))
    rm -f "$tmp/p.sock"
    nbdkit -f -U "$tmp/p.sock" "$@" >"$tmp/out" 2>"$tmp/err" &
    p=$!
    for (( i=0; i<100; i++ )); do
        kill -0 "$p" 2>/dev/null || break
        [ -S "$tmp/p.sock" ] && break
        sleep 0.1
    done
    if kill -0 "$p" 2>/dev/null; then
        kill_wait "$p" 10
        wait "$p" 2>/dev/null || true
        failures+=("accepted (nbdkit serves): $desc")
        return
    fi
    wait "$p" || rc=$?
    if [ "$rc" -eq 0 ]; then
        failures+=("exit status 0: $desc")
    elif ! grep -qE -- "$pattern" "$tmp/err"; then
        failures+=("$desc -> message does not match '$pattern': $(tr '\n' ' ' < "$tmp/err")")
    fi
}
# badp PATTERN PARAM...: bad over the file plugin.
badp ()
{
    local pattern=$1; shift
    _desc="$*"
    bad "$pattern" --filter="$ASYNC_FILTER" file "$tmp/disk" "$@"
}

# good PARAM...: accepted (the --run command runs, nbdkit exits 0).
good ()
{
    local rc=0
    n=$((n+1))
    rm -f "$tmp/good.sock"
    timeout 30 nbdkit -U "$tmp/good.sock" --filter="$ASYNC_FILTER" file "$tmp/disk" \
        "$@" --run "touch $tmp/ran" >"$tmp/out" 2>"$tmp/err" || rc=$?
    if [ "$rc" -ne 0 ] || [ ! -e "$tmp/ran" ] || grep -q error "$tmp/err"; then
        failures+=("refused: $* (exit $rc): $(tr '\n' ' ' < "$tmp/err")")
    fi
    rm -f "$tmp/ran"
}

# Sizes.
badp 'async-max-dirty'  async-max-dirty=32K
badp 'async-max-dirty'  async-max-dirty=65535
badp 'async-max-dirty'  async-max-dirty=1T
badp 'async-max-dirty'  async-max-dirty=2T
badp 'async-max-dirty'  async-max-dirty=0
badp 'async-max-dirty'  async-max-dirty=-1
badp 'async-max-dirty'  async-max-dirty=abc
badp 'async-max-dirty'  async-max-dirty=
badp 'async-max-dirty'  async-max-dirty=10Q
badp 'async-sync-rate'  async-sync-rate=1K
badp 'async-sync-rate'  async-sync-rate=abc
badp 'async-write-size' async-write-size=6000
badp 'async-write-size' async-write-size=6K
badp 'async-write-size' async-write-size=2K
badp 'async-write-size' async-write-size=64M
badp 'async-write-size' async-write-size=0
badp 'async-write-size' async-write-size=abc
# Numbers.
badp 'async-writers'    async-writers=0
badp 'async-writers'    async-writers=257
badp 'async-writers'    async-writers=-1
badp 'async-writers'    async-writers=abc
badp 'async-writers'    async-writers=
badp 'async-writeback-delay' async-writeback-delay=60001
badp 'async-writeback-delay' async-writeback-delay=-5
badp 'async-writeback-delay' async-writeback-delay=1s
badp 'async-exit-timeout' async-exit-timeout=86401
badp 'async-exit-timeout' async-exit-timeout=abc
badp 'async-max-drain-seconds: expected whole seconds' async-max-drain-seconds=86401
badp 'async-max-drain-seconds: expected whole seconds' async-max-drain-seconds=-1
badp 'async-max-drain-seconds: expected whole seconds' async-max-drain-seconds=10m
badp 'async-max-drain-seconds: expected whole seconds' async-max-drain-seconds=1.5
badp 'async-max-drain-seconds: expected whole seconds' async-max-drain-seconds=
# Words and booleans.
badp 'async-mode'       async-mode=bogus
badp 'async-mode'       async-mode=SYNC
badp 'async-mode'       async-mode=
badp 'async-sync-writes' async-sync-writes=bogus
badp 'async-sync-writes' async-sync-writes=
badp 'async-mlock'      async-mlock=maybe
# Paths.
badp 'async-control'    async-control=
badp 'async-control'    async-control="$tmp/no/such/dir/ctl"
badp 'async-control=ctl.sock: must be an absolute path' async-control=ctl.sock
badp 'async-control=./ctl.sock: must be an absolute path' async-control=./ctl.sock
badp 'async-sync-file'  async-sync-file=
# Unknown keys in the filter's namespace.
badp "unknown parameter 'async-bogus'"     async-bogus=1
badp "unknown parameter 'async-maxdirty'"  async-maxdirty=1M

# A plugin the filter cannot write to; without --run in the foreground.
bad 'read-only' --filter="$ASYNC_FILTER" pattern 1M
bad 'async-mode' --filter="$ASYNC_FILTER" memory 1M async-mode=bogus

# Values at the limits are accepted.
good async-max-dirty=64K async-write-size=4K async-writers=1 \
     async-writeback-delay=0 async-exit-timeout=0 async-sync-rate=4K \
     async-max-drain-seconds=0
good async-max-dirty=1G async-write-size=32M async-writers=256 \
     async-writeback-delay=60000 async-exit-timeout=86400 \
     async-max-drain-seconds=86400
good async-mode=sync async-sync-writes=hold async-mlock=false \
     async-sync-file="$tmp/nothing-here" async-control="$tmp/ctl.sock"
good async-mode=async async-sync-writes=rate async-mlock=no async-write-size=256K
good async-sync-writes=through async-max-dirty=65536

# --help lists every parameter.
n=$((n+1))
nbdkit --filter="$ASYNC_FILTER" null --help > "$tmp/help" 2>&1 ||
    failures+=("nbdkit --filter=async null --help failed")
for p in async-max-dirty async-mlock async-mode async-sync-file \
         async-sync-writes async-sync-rate async-control async-writers \
         async-write-size async-writeback-delay async-exit-timeout \
         async-max-drain-seconds async-store-file async-store-id; do
    grep -q -- "$p=" "$tmp/help" || failures+=("--help does not mention $p")
done

if [ ${#failures[@]} -gt 0 ]; then
    for f in "${failures[@]}"; do echo "$0: FAIL: $f" >&2; done
    fail "${#failures[@]} of $n checks failed"
fi
echo "$0: OK ($n checks)"
