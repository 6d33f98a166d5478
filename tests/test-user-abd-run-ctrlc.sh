#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# README.md's first command, `scripts/abd-run`, as a newcomer runs it
# (tests/test-user-helpers.sh: a fresh clone under /tmp with a space in
# its path, a clean environment, from /, its own /var/tmp) and stops with
# Ctrl-C: from a clean start it builds the tree and serves; data written
# through the NBD socket is on the image after Ctrl-C; it exits 0 and
# leaves nothing running.  Run again right after, it does not rebuild,
# serves the data of the first run and again stops cleanly on Ctrl-C.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-user-helpers.sh"
requires nbdkit memcached nbdcopy cmp
requires_python_nbd

user_machine
user_clone
image=$user_root/var-tmp/abd/disk.img
# The socket as this test sees it (abd-run prints its path inside the
# private /var/tmp), percent-encoded for the URI: the path has a space.
sock_uri="nbd+unix:///?socket=$(python3 -c 'import sys, urllib.parse
print(urllib.parse.quote(sys.argv[1], safe="/"))' "$user_root/var-tmp/abd/abd.sock")"

# serving_or_exited LOG: abd-run said it serves, or it has exited.
serving_or_exited ()
{
    grep -q 'running; press Ctrl-C' "$1" || ! alive "$user_pid"
}

# run_until_ctrl_c N DATA: the Nth run: start abd-run, wait until it
# serves, write DATA at offset 0 through NBD, then Ctrl-C.
run_until_ctrl_c ()
{
    local n=$1 data=$2 log=$user_root/run$1.log
    user_start "$log" "$user_tree/scripts/abd-run"
    # The first run builds the tree from a clean clone: minutes on a busy
    # two-core machine.
    wait_for 1200 serving_or_exited "$log" ||
        { cat "$log" >&2; fail "run $n: abd-run did not start serving"; }
    alive "$user_pid" ||
        { cat "$log" >&2; fail "run $n: abd-run exited before it served"; }
    grep -qF 'NBD URI:  nbd+unix:///?socket=/var/tmp/abd/abd.sock' "$log" ||
        { cat "$log" >&2; fail "run $n: no NBD URI line"; }
    user_stack_pids "$log"
    if [ "$n" -gt 1 ]; then
        # What run 1 wrote is served (from the image, through the stack).
        "$PY" -c 'import nbd, sys
h = nbd.NBD()
h.connect_uri(sys.argv[1])
open(sys.argv[2], "wb").write(h.pread(8 << 20, 0))' \
            "$sock_uri" "$user_root/read$n" ||
            fail "run $n: reading from the stack failed"
        cmp -n 8M "$user_root/data1" "$user_root/read$n" ||
            fail "run $n: the data of run 1 is not served"
    fi
    nbdcopy "$data" "$sock_uri" || fail "run $n: nbdcopy to the stack failed"
    # Ctrl-C in the terminal: SIGINT to the foreground process group.
    kill -INT -- "-$user_pid"
    user_wait "$log" 300
    cat "$log"
    [ "$user_rc" -eq 0 ] || fail "run $n: exit status $user_rc after Ctrl-C"
    grep -q '^abd-run: nbdkit stopped' "$log" ||
        fail "run $n: abd-run did not report nbdkit stopped"
    user_nothing_left "$log"
    cmp -n 8M "$data" "$image" ||
        fail "run $n: the data written before Ctrl-C is not on the image"
}

head -c 8M /dev/urandom > "$user_root/data1"
head -c 8M /dev/urandom > "$user_root/data2"
run_until_ctrl_c 1 "$user_root/data1"
grep -q '^abd-run: configuring the build tree' "$user_root/run1.log" ||
    fail "run 1 did not build the fresh clone"
run_until_ctrl_c 2 "$user_root/data2"
! grep -Eq 'rebuilding|configuring the build tree' "$user_root/run2.log" ||
    fail "run 2 rebuilt with nothing changed"
echo "$0: OK"
