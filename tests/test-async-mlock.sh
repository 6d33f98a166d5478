#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter, async-mlock=true: VmLck covers the store, and
# data written with it is on the file after a flush; with the
# locked-memory limit lowered (ulimit -l 64, and CAP_IPC_LOCK dropped
# when root, since root ignores the limit) nbdkit refuses to start with a
# message naming async-mlock.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-helpers.sh"
requires nbdcopy

MiB=$(( 1024 * 1024 ))
# kb PID FIELD: a field of /proc/PID/status, in bytes.
kb () { awk -v k="$2:" '$1 == k { print $2 * 1024 }' "/proc/$1/status"; }

# The ASan runtime intercepts mlock() and locks nothing
# (in a sanitizer build VmLck stayed 0 KiB while mlock() succeeded), so
# there is nothing to check under sanitizers.

if [ -n "${ABD_SANITIZER_PRELOAD:-}" ]; then
    echo "$0: SKIP: not checked in a sanitizer build (ASan intercepts mlock)"
    exit 77
fi

truncate -s $(( 32 * MiB )) "$tmp/img"
ctl=$tmp/lock.ctl
# Root may lock any amount (CAP_IPC_LOCK); others need the soft limit
# raised to the hard one.
if [ "$(id -u)" != 0 ]; then
    ulimit -S -l "$(ulimit -H -l)"
fi
async_start lock --filter="$ASYNC_FILTER" file "$tmp/img" \
    async-max-dirty=16M async-mlock=true async-control="$ctl"
lck=$(kb "$pid" VmLck)
echo "async-mlock=true: VmLck $((lck/1024)) KiB"
[ "$lck" -ge $(( 16 * MiB )) ] || fail "VmLck $lck < async-max-dirty"
head -c $MiB /dev/urandom > "$tmp/d1"
nbdcopy "$tmp/d1" "$uri" || fail "write with async-mlock failed"
abdctl -s "$ctl" flush 30 || fail "flush with async-mlock failed"
cmp -n $MiB "$tmp/img" "$tmp/d1" || fail "file differs (async-mlock)"
stop_nbdkit "$pid"

# A low limit: refused at start.  Root bypasses RLIMIT_MEMLOCK through
# CAP_IPC_LOCK, so drop it from the bounding set for this nbdkit.
drop=()
if [ "$(id -u)" = 0 ]; then
    requires setpriv
    drop=(setpriv --bounding-set=-ipc_lock --inh-caps=-ipc_lock --)
fi
rc=0
( ulimit -l 64
  exec "${drop[@]}" nbdkit -f -U "$tmp/mlock.sock" \
      --filter="$ASYNC_FILTER" file "$tmp/img" \
      async-max-dirty=16M async-mlock=true --run 'echo started' ) \
    > "$tmp/mlock.out" 2>&1 || rc=$?
cat "$tmp/mlock.out"
[ $rc -ne 0 ] || fail "nbdkit started with async-mlock=true and ulimit -l 64"
grep -q "async-mlock" "$tmp/mlock.out" || fail "the error does not mention async-mlock"
grep -q "started" "$tmp/mlock.out" && fail "nbdkit served although it should refuse"

echo "$0: OK"
