#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter: values at the limits of every parameter, and every
# word each one takes, are accepted: nbdkit starts, runs the --run
# command, exits 0 and logs no error.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-helpers.sh"
requires timeout

truncate -s 1M "$tmp/disk"

# accepted PARAM...: nbdkit with PARAMs runs --run and exits 0, quietly.
accepted ()
{
    local rc=0
    rm -f "$tmp/ran" "$tmp/nbd.sock"
    timeout 30 nbdkit -U "$tmp/nbd.sock" --filter="$ASYNC_FILTER" \
        file "$tmp/disk" "$@" --run "touch $tmp/ran" \
        >/dev/null 2>"$tmp/err" || rc=$?
    [ "$rc" -eq 0 ] && [ -e "$tmp/ran" ] && ! grep -q error "$tmp/err" ||
        fail "refused: $* (exit $rc): $(tr '\n' ' ' < "$tmp/err")"
}

accepted async-max-dirty=64K async-write-size=4K async-writers=1 \
    async-writeback-delay=0 async-exit-timeout=0 async-sync-rate=4K \
    async-max-drain-seconds=0
accepted async-max-dirty=1G async-write-size=32M async-writers=256 \
    async-writeback-delay=60000 async-exit-timeout=86400 \
    async-max-drain-seconds=86400
accepted async-mode=sync async-sync-writes=hold async-mlock=false \
    async-sync-file="$tmp/nothing-here" async-control="$tmp/ctl.sock"
accepted async-mode=async async-sync-writes=rate async-mlock=no \
    async-write-size=256K
accepted async-sync-writes=through async-max-dirty=65536
echo "$0: OK"
