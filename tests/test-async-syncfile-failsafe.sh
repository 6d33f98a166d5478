#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter: async-sync-file fails safe.  Only "the file does
# not exist, in a directory that does" means async mode:
# - a sync file whose directory does not exist (or is a file) is refused
#   at start, with a message naming the directory;
# - nbdkit running as nobody, the sync file in a root-only (0700)
#   directory: stat fails with EACCES, so the filter is in sync mode
#   (mode_reason sync-file-error) from the start, and says so once at
#   error level, not at every 100 ms poll; when the directory becomes
#   readable (no file there) it goes to async, and back to sync, logged
#   once more, when it is locked again;
# - the directory removed while nbdkit runs: sync mode (nobody could
#   create the file any more), async again when it is back.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-helpers.sh"
requires setpriv timeout

top=$tmp
truncate -s 4M "$top/disk"

# Refused at start.
refused ()
{
    local sf=$1 rc=0
    timeout 30 nbdkit -f -U "$top/r.sock" --filter="$ASYNC_FILTER" \
        file "$top/disk" async-sync-file="$sf" 2>"$top/r.err" || rc=$?
    [ "$rc" -ne 0 ] || fail "async-sync-file=$sf accepted"
    grep -q "async-sync-file: $(dirname "$sf") is not an existing directory" \
        "$top/r.err" || fail "async-sync-file=$sf: wrong message: $(cat "$top/r.err")"
}
refused "$top/no/such/dir/on-battery"
touch "$top/afile"
refused "$top/afile/on-battery"

mode_is ()      # mode_is MODE REASON
{
    [ "$(st "$ctl" mode)" = "$1" ] && [ "$(st "$ctl" mode_reason)" = "$2" ]
}
errors ()
{
    grep -c "error: async-sync-file: cannot tell whether $sf exists" "$log" || true
}

# nbdkit as nobody.  The test's $tmp is root's (0700): open it for
# traversal only, and give nobody a directory of its own for the disk,
# the sockets and the pidfile ($tmp from here on, so that async_start
# puts them there).
chmod 0711 "$top"
mkdir "$top/nobody" "$top/locked"
chmod 0700 "$top/locked"
chown nobody:nogroup "$top/nobody"
mv "$top/disk" "$top/nobody/disk"
chown nobody:nogroup "$top/nobody/disk"
mkdir "$top/bin"
printf '#!/bin/sh\nexec setpriv --reuid=nobody --regid=nogroup --clear-groups %s "$@"\n' \
    "$(command -v nbdkit)" > "$top/bin/nbdkit"
chmod 0755 "$top/bin/nbdkit"
tmp=$top/nobody
sf=$top/locked/on-battery
ctl=$tmp/ctl.sock
PATH="$top/bin:$PATH" async_start nobody --filter="$ASYNC_FILTER" \
    file "$tmp/disk" async-sync-file="$sf" async-control="$ctl"
[ "$(ps -o user= -p "$pid")" = nobody ] || fail "nbdkit does not run as nobody"
mode_is sync sync-file-error ||
    fail "EACCES: mode $(st "$ctl" mode) ($(st "$ctl" mode_reason)), not sync (sync-file-error)"
sleep 1                         # ten polls
[ "$(errors)" -eq 1 ] || fail "EACCES: logged $(errors) times, not once"

chmod 0755 "$top/locked"
wait_for 10 mode_is async start || fail "readable directory: not back to async"
chmod 0700 "$top/locked"
wait_for 10 mode_is sync sync-file-error || fail "locked again: not sync"
sleep 1
[ "$(errors)" -eq 2 ] || fail "locked again: logged $(errors) times in all, not twice"
stop_nbdkit "$pid"

# The directory removed at run time (as root).
tmp=$top
mkdir "$top/run"
sf=$top/run/on-battery
ctl=$tmp/ctl2.sock
async_start rmdir --filter="$ASYNC_FILTER" file "$top/nobody/disk" \
    async-sync-file="$sf" async-control="$ctl"
mode_is async start || fail "rmdir: not async at start"
rmdir "$top/run"
wait_for 10 mode_is sync sync-file-error || fail "rmdir: not sync without the directory"
mkdir "$top/run"
wait_for 10 mode_is async start || fail "mkdir: not back to async"
touch "$sf"
wait_for 10 mode_is sync sync-file || fail "the file itself: not sync"
stop_nbdkit "$pid"
echo "$0: OK"
