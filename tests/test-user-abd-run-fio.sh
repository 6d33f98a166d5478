#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# README.md's first command, `scripts/abd-run --fio`, as a newcomer runs it
# (tests/test-user-helpers.sh: a fresh clone under /tmp with a space in
# its path, a clean environment, from /, its own /var/tmp): from a clean
# start it builds the tree, makes the image, prints fio's IOPS, exits 0
# and leaves nothing running; run again right after, it does not rebuild
# and does the same with the image it made.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-user-helpers.sh"
requires nbdkit memcached fio

user_machine
user_clone

# run_fio N: the Nth run; its output in $user_root/fioN.log.
run_fio ()
{
    local log=$user_root/fio$1.log
    # The first run builds the tree from a clean clone: minutes on a busy
    # two-core machine.
    user_start "$log" "$user_tree/scripts/abd-run" --fio --runtime 3
    user_wait "$log" 1200
    [ "$user_rc" -eq 0 ] || { cat "$log" >&2; fail "run $1: exit status $user_rc"; }
    grep -qE '^fio: [0-9]+ IOPS, ' "$log" ||
        { cat "$log" >&2; fail "run $1: no 'fio: N IOPS' line"; }
    grep -q '^abd-run: drain and exit took ' "$log" ||
        { cat "$log" >&2; fail "run $1: no drain-and-exit line"; }
    user_stack_pids "$log"
    user_nothing_left "$log"
    grep -E '^fio: ' "$log"
}

run_fio 1
grep -q '^abd-run: configuring the build tree' "$user_root/fio1.log" ||
    fail "run 1 did not build the fresh clone"
grep -q "^abd-run: made sparse image /var/tmp/abd/disk.img (1G)" "$user_root/fio1.log" ||
    fail "run 1 did not make the image in /var/tmp/abd"
[ "$(stat -c %s "$user_root/var-tmp/abd/disk.img")" -eq $((1 << 30)) ] ||
    fail "the image is not 1 GiB"

run_fio 2
! grep -Eq 'rebuilding|configuring the build tree' "$user_root/fio2.log" ||
    fail "run 2 rebuilt with nothing changed: $(grep -E 'rebuild|configuring' "$user_root/fio2.log")"
grep -q "^abd-run: using existing image /var/tmp/abd/disk.img" "$user_root/fio2.log" ||
    fail "run 2 did not use the image of run 1"
echo "$0: OK"
