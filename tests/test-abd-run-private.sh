#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# scripts/abd-run trusts no directory another user can make or fill: its
# runtime directory (ABD_DIR) is made with mode 0700 even under umask 000,
# and an existing one that is a symlink, someone else's, or writable by
# group or others is refused, before anything starts.  A symlink where
# the default image goes is refused too; one named with --image is used.

source "${abs_top_srcdir:-.}/tests/functions.sh"
requires nbdkit
# The store file under this test's directory, not the default under /dev/shm.
export ABD_STORE=$tmp/async.store
run=$abs_top_srcdir/scripts/abd-run
umask 000

# start NAME ARGS...: abd-run --no-memcache ARGS in the background (with
# the environment's ABD_DIR), its control socket at $tmp/NAME.ctl, its
# output in $tmp/NAME.out; sets $run_pid.
start ()
{
    local name=$1; shift
    "$run" --no-memcache --control "$tmp/$name.ctl" "$@" \
        >"$tmp/$name.out" 2>&1 &
    run_pid=$!
    cleanup_fn kill_wait "$run_pid"
}

# refused NAME PATTERN ARGS...: abd-run must exit non-zero saying PATTERN,
# without starting nbdkit.
refused ()
{
    local name=$1 pattern=$2 rc=0; shift 2
    start "$name" "$@"
    wait_for 60 bash -c "! kill -0 $run_pid 2>/dev/null || [ -S '$tmp/$name.ctl' ]" ||
        fail "$name: abd-run neither exited nor started"
    [ ! -e "$tmp/$name.ctl" ] ||
        { cat "$tmp/$name.out" >&2; fail "$name: abd-run started the stack"; }
    wait "$run_pid" || rc=$?
    [ "$rc" -ne 0 ] && grep -qE -- "$pattern" "$tmp/$name.out" ||
        fail "$name: exit $rc, expected a refusal saying '$pattern': $(cat "$tmp/$name.out")"
}

# accepted NAME ARGS...: the stack starts; stopped with SIGTERM (a
# background job without job control ignores SIGINT).
accepted ()
{
    local name=$1; shift
    start "$name" "$@"
    wait_for 60 test -S "$tmp/$name.ctl" ||
        { cat "$tmp/$name.out" >&2; fail "$name: abd-run did not start"; }
    kill -TERM "$run_pid"
    wait "$run_pid" || fail "$name: abd-run exited $? after SIGTERM"
}

# Refused directories.
mkdir -m 0700 "$tmp/real"
ln -s "$tmp/real" "$tmp/link"
ABD_DIR=$tmp/link refused symlink 'runtime directory .* is a symlink'
mkdir -m 0700 "$tmp/theirs"
chown nobody "$tmp/theirs"
ABD_DIR=$tmp/theirs refused theirs 'owned by nobody .*not by you'
mkdir "$tmp/open"; chmod 1777 "$tmp/open"
ABD_DIR=$tmp/open refused open 'writable by group or others \(mode 1777\)'
mkdir "$tmp/group"; chmod 0770 "$tmp/group"
ABD_DIR=$tmp/group refused group 'writable by group or others \(mode 770\)'

# A symlink where the default image goes (to a file the caller can
# write: nbdkit would write the disk over it).
mkdir -m 0700 "$tmp/planted"
echo precious > "$tmp/victim"
ln -s "$tmp/victim" "$tmp/planted/disk.img"
ABD_DIR=$tmp/planted refused planted 'image .*disk.img is a symlink'
[ "$(cat "$tmp/victim")" = precious ] || fail "the symlink's target changed"

# A new runtime directory, made private under umask 000.
ABD_DIR=$tmp/new/rt accepted new --size 1M
[ "$(stat -c '%a %u' "$tmp/new/rt")" = "700 $(id -u)" ] ||
    fail "new runtime directory: mode and owner $(stat -c '%a %u' "$tmp/new/rt")"

# A symlinked image named with --image is used.
mkdir -m 0700 "$tmp/named"
truncate -s 1M "$tmp/target.img"
ln -s "$tmp/target.img" "$tmp/named/disk.img"
ABD_DIR=$tmp/named accepted named --image "$tmp/named/disk.img"
grep -q "using existing image $tmp/named/disk.img" "$tmp/named.out" ||
    fail "--image with a symlink: $(cat "$tmp/named.out")"
echo "$0: OK"
