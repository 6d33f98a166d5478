#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter, async-flush=store: power cuts under a filesystem.
# The stack of test-async-durable-powercut.sh (the store file on ext4
# whose disk is nbdkit-powercut-plugin, the async filter over a lower
# file), and on top of the export another ext4, through nbdfuse and a
# second loop device, made by mkfs.ext4 through the filter.  Each round
# mounts it and runs tests/durable_powercut_fs.py: files of random data
# created, replaced (rename over) and deleted, each made durable with
# fsync of the file and of its directory, and unfsynced files besides;
# a log says which operations completed.  Then nbdkit and the store's
# disk are killed together (SIGKILL) at a random moment; the top mount,
# its loop device and nbdfuse are torn down against the dead server, so
# no later request reaches any nbdkit.  The disk comes back, nbdkit
# replays the store file and a clean stop writes it back to the lower
# file, which holds the top filesystem's image.  It is then recovered as
# a reboot does (mounted: the kernel replays its journal and orphans,
# unmounted), `e2fsck -fn` must find it clean (exit 0), and every file
# whose fsync completed must be there, with its SHA-256 (mounted
# read-only).  Rounds build on each other: round 2 mounts what round 1
# left.  Round 1 writes back at once (delay 0 ms: the lower file has
# most of it), round 2 never before the cut (60 s: the store file has it
# all), round 3 after 20 or 300 ms; the disk keeps 0 or 0.3 of its
# unflushed sectors.
#
# ABD_TEST_EXPECT_LOSS=1 (test-async-durable-powercut-fs-nosync.sh) runs
# nbdkit with ABD_TEST_STORE_NO_FDATASYNC=1, commits without their
# fdatasync, and passes only if some round loses: e2fsck finds errors,
# the filesystem does not mount, or an fsynced file is missing or wrong.
#
# The disk, nbdfuse, the loop devices and nbdkit: see
# tests/test-async-durable-helpers.sh (it skips (77) without root,
# /dev/fuse, loop devices, ext4 or nbdfuse).

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-durable-helpers.sh"
requires e2fsck dumpe2fs

tool=$abs_top_srcdir/tests/durable_powercut_fs.py
max_dirty=16M
expect_loss=${ABD_TEST_EXPECT_LOSS:-}
rounds=${ABD_TEST_ROUNDS:-3}
mkdir "$tmp/top" "$tmp/check"
truncate -s $(( 256 * MiB )) "$tmp/lower"

# The lower file as the host sees it after a reboot: mounted through a
# loop device of its own at $tmp/check.
check_loop=
check_down ()
{
    if grep -q " $tmp/check " /proc/mounts; then
        timeout 30 umount "$tmp/check" 2>/dev/null || umount -l "$tmp/check"
    fi
    [ -z "$check_loop" ] || losetup -d "$check_loop" 2>/dev/null || true
    check_loop=
}
cleanup_fn check_down

# lower_check R: recover the lower file's filesystem, e2fsck -fn, check
# the files.  Fails (status 1, with what is wrong) instead of failing
# the test.
lower_check ()
{
    local r=$1 rc=0
    # It was mounted when cut: its journal must need replaying.
    dumpe2fs -h "$tmp/lower" 2>/dev/null | grep -q needs_recovery ||
        echo "round $r: the top filesystem needs no journal recovery"
    check_loop=$(losetup -f --show "$tmp/lower") || fail "losetup failed"
    if ! mount "$check_loop" "$tmp/check"; then
        echo "round $r: the top filesystem does not mount"
        check_down
        return 1
    fi
    umount "$tmp/check"
    e2fsck -fn "$check_loop" >"$tmp/e2fsck.out" 2>&1 || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "round $r: e2fsck -fn exit status $rc:"
        grep -v '^Pass\|^e2fsck [0-9]' "$tmp/e2fsck.out" | head -20
        check_down
        return 1
    fi
    tail -1 "$tmp/e2fsck.out"
    mount -o ro "$check_loop" "$tmp/check" ||
        { check_down; echo "round $r: no read-only mount"; return 1; }
    "$PY" "$tool" check "$tmp/check" "$tmp/state" "$tmp/fs$r.log" || rc=$?
    check_down
    return "$rc"
}

# The top filesystem: mkfs.ext4 through the filter, then a clean stop
# writes it all to the lower file.
disk_up 1 0 mkfs
async_up mkfs 50 async
cleanup_fn blk_down top "$tmp/top"
blk_up top "$a_sock"
mkfs.ext4 -q -F "${blk_loop[top]}" || fail "mkfs.ext4 on the export failed"
blk_down top
kill_wait "$a_pid" 60 || fail "nbdkit mkfs had to be killed"
wait "$a_pid" || fail "nbdkit mkfs: exit status $?"
e2fsck -fn "$tmp/lower" >/dev/null 2>&1 || fail "the new filesystem is not clean"
cp --sparse=always "$tmp/lower" "$tmp/lower.new"
: > "$tmp/state"

lost=0
for (( r=1; r<=rounds; r++ )); do
    case $r in
        1) delay=0 ;;
        2) delay=60000 ;;
        *) delay=$(( RANDOM % 2 ? 20 : 300 )) ;;
    esac
    persist=0; (( RANDOM % 2 )) && persist=0.3
    env=()
    if [ -n "$expect_loss" ]; then
        delay=60000 persist=0
        env=(ABD_TEST_STORE_NO_FDATASYNC=1)
    fi
    work=$(( 3 + RANDOM % 3 ))
    cut_ms=$(( 1000 + RANDOM % (work * 1000 - 1500) ))
    echo "round $r: delay ${delay} ms, unflushed-persist $persist," \
         "cut after ${cut_ms} ms of ${work} s"

    # The disk as it is now (flushed), with new seeds for what it keeps.
    disk_down
    disk_up "$RANDOM" "$persist"
    async_up "w$r" "$delay" async "${env[@]+"${env[@]}"}"
    cleanup_fn blk_down top "$tmp/top"
    blk_up top "$a_sock"
    mount "${blk_loop[top]}" "$tmp/top" || fail "round $r: mount failed"
    "$PY" "$tool" run "$tmp/top" "$tmp/fs$r.log" "$r$RANDOM" "$work" \
        > "$tmp/run.out" 2>&1 &
    wpid=$!
    cleanup_fn kill_wait "$wpid" 5 KILL
    sleep "$(( cut_ms / 1000 )).$(printf %03d $(( cut_ms % 1000 )))"
    alive "$wpid" ||
        fail "round $r: the workload ended before the cut: $(cat "$tmp/run.out")"
    # The power cut: nbdkit and its disk at once.
    kill -KILL "$a_pid" "$pc_pid"
    wait_for 30 exited "$wpid" || fail "round $r: the workload did not stop"
    wait "$wpid" || fail "round $r: the workload failed: $(cat "$tmp/run.out")"
    cat "$tmp/run.out"
    wait_for 10 exited "$a_pid" || fail "nbdkit w$r survived SIGKILL"
    pc_pid=
    # The top filesystem dies with its device: nothing it still sends
    # can reach a server (nbdfuse does not reconnect; the next nbdkit
    # listens on another socket, after this is gone).
    blk_down top "$tmp/top"
    disk_down

    # After the cut: the disk holds what it was told to flush.
    disk_up "$RANDOM" 0
    async_replay "r$r"
    if ! lower_check "$r"; then
        [ -n "$expect_loss" ] ||
            fail "round $r: the top filesystem is damaged or lost fsynced files"
        lost=$(( lost + 1 ))
        # The next round starts from a good filesystem again.
        cp --sparse=always "$tmp/lower.new" "$tmp/lower"
        : > "$tmp/state"
    fi
done
disk_down

if [ -n "$expect_loss" ]; then
    [ "$lost" -gt 0 ] ||
        fail "commits without fdatasync lost nothing: the test cannot fail"
    echo "commits without fdatasync: $lost of $rounds rounds lost (expected)"
fi
echo "$0: OK"
