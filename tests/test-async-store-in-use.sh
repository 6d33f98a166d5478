#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter, async-store-file: a second nbdkit on a store file
# that a running nbdkit uses is refused before it forks (the started
# process exits non-zero, no pid file), saying the file is in use; the
# first one goes on serving.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-store-helpers.sh"

make_random "$tmp/disk" $size 4
store=$tmp/async.store
async_start first --filter="$ASYNC_FILTER" file "$tmp/disk" \
    async-max-dirty=4M async-store-file="$store" async-store-id=disk-a \
    async-control="$tmp/first.ctl"
# The file is opened in .after_fork, after nbdkit wrote its pid file, and
# before the control channel answers: once status names it, it is locked.
[ "$(st "$tmp/first.ctl" store_file)" = "$store" ] ||
    fail "the first nbdkit does not name its store file"

rc=0
timeout 60 nbdkit --log=stderr -U "$tmp/second.sock" -P "$tmp/second.pid" \
    --filter="$ASYNC_FILTER" file "$tmp/disk" async-max-dirty=4M \
    async-store-file="$store" async-store-id=disk-a 2>"$tmp/second.log" || rc=$?
if [ -s "$tmp/second.pid" ]; then
    kill_wait "$(cat "$tmp/second.pid")" 10 || true
    fail "a second nbdkit started on a store file in use"
fi
[ "$rc" -ne 0 ] && grep -q "in use by another process" "$tmp/second.log" ||
    { cat "$tmp/second.log"; fail "a second nbdkit on the file: not refused (exit $rc)"; }
[ "$(st "$tmp/first.ctl" store_file)" = "$store" ] ||
    fail "the first nbdkit no longer serves its store file"
echo "$0: OK"
