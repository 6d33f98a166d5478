# SPDX-License-Identifier: BSD-3-Clause
# Helpers for the tests of abdctl, sourced after tests/functions.sh and
# tests/test-async-helpers.sh.  Not a test itself (not in TESTS).

requires memcached unshare mount

# abdctl_stack_start: two memcached servers, and nbdkit with the async
# filter over the memcache filter over a 16 MiB file, its control sockets
# where abd.service puts them, but under $tmp/run (see in_run):
# $tmp/run/abd/async.ctl and $tmp/run/abd/memcache.ctl, also in $actl and
# $mctl.  Sets $mc1_port, $mc2_port, $uri, $pid as async_start does.
# Written data stays dirty until a flush: a long write-back delay, and a
# write size larger than the tests' writes (a full-size run is written
# back at once, whatever the delay).
abdctl_stack_start ()
{
    start_memcached one; mc1_port=$mc_port
    start_memcached two; mc2_port=$mc_port
    mkdir -p "$tmp/run/abd"
    actl=$tmp/run/abd/async.ctl
    mctl=$tmp/run/abd/memcache.ctl
    truncate -s 16M "$tmp/disk"
    async_start stack --filter="$ASYNC_FILTER" --filter="$MEMCACHE_FILTER" \
        "$@" file "$tmp/disk" \
        async-control="$actl" async-writeback-delay=60000 \
        async-write-size=4M async-exit-timeout=5 \
        memcache-servers="127.0.0.1:$mc1_port,127.0.0.1:$mc2_port" \
        memcache-id=abdctl-test memcache-control="$mctl" memcache-timeout=500
    wait_for 10 test -S "$mctl" || fail "no memcache control socket"
}

# in_run DIR CMD...: run CMD in a mount namespace of its own where DIR is
# mounted on /run, so that abdctl's defaults /run/abd/async.ctl and
# /run/abd/memcache.ctl are DIR/abd/...  (the machine's /run is not
# touched).
in_run ()
{
    local dir=$1; shift
    unshare --mount --propagation private \
        sh -c 'mount --bind "$0" /run && exec "$@"' "$dir" "$@"
}

# nbd_write OFFSET LENGTH: LENGTH random bytes at OFFSET, 64 KiB a write;
# nbd_read OFFSET LENGTH: read them through the whole stack.
nbd_write () { _nbd_io write "$@" || fail "nbd_write $1 $2 failed"; }
nbd_read () { _nbd_io read "$@" || fail "nbd_read $1 $2 failed"; }
_nbd_io ()
{
    "$PY" -c '
import os, sys
from abdtest.workload import connect
what, off, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
h = connect(sys.argv[4])
for o in range(off, off + n, 65536):
    if what == "write":
        h.pwrite(os.urandom(min(65536, off + n - o)), o)
    else:
        h.pread(min(65536, off + n - o), o)
h.shutdown()' "$1" "$2" "$3" "$uri"
}
