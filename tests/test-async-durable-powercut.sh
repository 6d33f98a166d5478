#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter, async-flush=store: power cuts.  The store file is on
# ext4 whose disk is nbdkit-powercut-plugin (a volatile write cache: what
# was not flushed is lost when it dies) through nbdfuse and a loop device;
# the async filter runs over a lower file.  Each round: 4 connections
# write 4K blocks with flushes and FUA (tests/durable_powercut.py logs
# which writes a flush acknowledged), then nbdkit and the disk are killed
# together (SIGKILL) at a random moment.  The disk comes back (ext4
# replays its journal), nbdkit starts with the same store file, replays
# it and writes it back; after a clean stop, every block of the lower
# file holds its last flush-acknowledged write or a later one, whole.
# Rounds vary the writeback delay (0 ms: the lower file has most of it;
# 60 s: the store file has it all), the mode (round 2 in sync mode; in
# round 3 a UPS daemon's async-sync-file comes and goes every 0.2-0.5 s,
# switching modes under the workload) and the share of unflushed sectors
# the disk keeps anyway (0 or 0.3).
#
# ABD_TEST_EXPECT_LOSS=1 (test-async-durable-powercut-nosync.sh) runs
# nbdkit with ABD_TEST_STORE_NO_FDATASYNC=1, commits without their
# fdatasync, and passes only if some round loses flushed writes: it
# proves the check can fail.
#
# Needs root (losetup, mount), /dev/fuse, loop devices, ext4, nbdfuse;
# skips (77) otherwise.  Cleanup unmounts, detaches the loop device and
# unmounts FUSE before the nbdkit processes are stopped.

source "${abs_top_srcdir:-.}/tests/functions.sh"
skip () { echo "$0: SKIP: $*"; exit 77; }
requires_python_nbd
[ "$(id -u)" = 0 ] || skip "needs root (losetup, mount)"
requires nbdfuse fusermount3 losetup mkfs.ext4 mount umount mountpoint
[ -e /dev/fuse ] || skip "no /dev/fuse"
grep -qw ext4 /proc/filesystems || modprobe ext4 2>/dev/null ||
    skip "the kernel has no ext4"
[ -e /dev/loop-control ] || modprobe loop 2>/dev/null ||
    skip "the kernel has no loop devices"
losetup -f >/dev/null 2>&1 || skip "no free loop device (losetup -f failed)"
[ -f "$POWERCUT_PLUGIN" ] || fail "powercut plugin not built: $POWERCUT_PLUGIN"

tool=$abs_top_srcdir/tests/durable_powercut.py
MiB=$(( 1024 * 1024 ))
size=$(( 8 * MiB ))
expect_loss=${ABD_TEST_EXPECT_LOSS:-}
rounds=${ABD_TEST_ROUNDS:-5}
[ -z "$expect_loss" ] || rounds=${ABD_TEST_ROUNDS:-3}
mkdir "$tmp/mnt" "$tmp/fs"
truncate -s $(( 256 * MiB )) "$tmp/medium"      # the power-cut disk's
store=$tmp/fs/store/abd.store

# The disk: powercut plugin -> nbdfuse -> loop -> ext4 on $tmp/fs.
pc_pid= fuse_pid= loop=
disk_down ()
{
    local i
    # /proc/mounts, not mountpoint: after the cut the FUSE mount is dead
    # (ENOTCONN) and mountpoint cannot tell.
    if grep -q " $tmp/fs " /proc/mounts; then
        umount "$tmp/fs" 2>/dev/null || umount -l "$tmp/fs"
    fi
    if [ -n "$loop" ]; then
        case $(losetup -n -O BACK-FILE "$loop" 2>/dev/null) in
            "$tmp/mnt/nbd"*)
                for (( i=0; i<50; i++ )); do
                    losetup -d "$loop" 2>/dev/null && break
                    sleep 0.1
                done
                for (( i=0; i<50; i++ )); do
                    losetup -n -O BACK-FILE "$loop" 2>/dev/null |
                        grep -q . || break
                    sleep 0.1
                done ;;
        esac
        loop=
    fi
    if grep -q " $tmp/mnt " /proc/mounts; then
        fusermount3 -u "$tmp/mnt" 2>/dev/null ||
            fusermount3 -u -z "$tmp/mnt" || umount -l "$tmp/mnt"
    fi
    [ -z "$fuse_pid" ] || kill_wait "$fuse_pid" 10 || true
    fuse_pid=
    [ -z "$pc_pid" ] || kill_wait "$pc_pid" 10 || true
    pc_pid=
}
cleanup_fn disk_down

# disk_up SEED PERSIST [mkfs]
disk_up ()
{
    start_nbdkit pc "$POWERCUT_PLUGIN" file="$tmp/medium" \
        unflushed-persist="$2" seed="$1"
    pc_pid=$pid
    nbdfuse -P "$tmp/fuse.pid" "$tmp/mnt/nbd" --unix "$sock" \
        >"$tmp/nbdfuse.log" 2>&1 &
    fuse_pid=$!
    wait_for 10 mountpoint -q "$tmp/mnt" ||
        { cat "$tmp/nbdfuse.log" >&2; fail "nbdfuse did not start"; }
    loop=$(losetup --direct-io=off -f --show "$tmp/mnt/nbd") ||
        fail "losetup failed"
    if [ "${3:-}" = mkfs ]; then
        mkfs.ext4 -q -F "$loop" || fail "mkfs.ext4 failed"
    fi
    mount "$loop" "$tmp/fs" || fail "mount failed"
    if [ "${3:-}" = mkfs ]; then
        mkdir -m 700 "$tmp/fs/store"
        sync -f "$tmp/fs/store"
    fi
}

# async_up NAME DELAY MODE [ENV...]: the async filter over the lower file
# with the store file on the disk.  Sets $a_pid, $a_sock.
async_up ()
{
    local name=$1 delay=$2 mode=$3; shift 3
    sock=$tmp/$name.sock
    rm -f "$sock" "$tmp/$name.pid"
    env "$@" nbdkit -U "$sock" -P "$tmp/$name.pid" -f \
        --filter="$ASYNC_FILTER" file "$tmp/lower" \
        async-store-file="$store" async-flush=store async-mode="$mode" \
        async-sync-file="$tmp/onbatt" \
        async-max-dirty=4M async-writeback-delay="$delay" \
        async-exit-timeout=30 >"$tmp/$name.log" 2>&1 &
    a_pid=$!
    cleanup_fn kill_wait "$a_pid" 30
    wait_for 10 test -S "$sock" ||
        { cat "$tmp/$name.log" >&2; fail "nbdkit $name did not start"; }
    a_sock=$sock
}

disk_up 1 0 mkfs
lost=0
for (( r=1; r<=rounds; r++ )); do
    delays=(0 20 300 60000)
    delay=${delays[$(( RANDOM % 4 ))]}
    persist=0; (( RANDOM % 2 )) && persist=0.3
    mode=async; [ "$r" -eq 2 ] && mode=sync
    switch=; [ "$r" -eq 3 ] && switch=", async-sync-file toggled"
    env=()
    if [ -n "$expect_loss" ]; then
        delay=60000 persist=0 mode=async
        env=(ABD_TEST_STORE_NO_FDATASYNC=1)
    fi
    work=$(( 2 + RANDOM % 3 ))
    cut_ms=$(( 500 + RANDOM % (work * 1000 - 300) ))
    echo "round $r: delay ${delay} ms, mode $mode$switch, unflushed-persist" \
         "$persist, cut after ${cut_ms} ms"

    # The disk as it is now (flushed), with new seeds for what it keeps.
    disk_down
    disk_up "$RANDOM" "$persist"
    "$PY" "$tool" init "$tmp/lower" "$size"
    rm -rf "$tmp/logs"; mkdir "$tmp/logs"
    async_up "w$r" "$delay" "$mode" "${env[@]+"${env[@]}"}"
    "$PY" "$tool" run "nbd+unix:///?socket=$a_sock" "$tmp/logs" 4 "$r$RANDOM" \
        "$work" > "$tmp/run.out" 2>&1 &
    wpid=$!
    toggler=
    if [ "$r" -eq 3 ] && [ -z "$expect_loss" ]; then
        ( while :; do
              touch "$tmp/onbatt"; sleep 0.$(( 2 + RANDOM % 4 ))
              rm -f "$tmp/onbatt"; sleep 0.$(( 2 + RANDOM % 4 ))
          done ) &
        toggler=$!
        cleanup_fn kill_wait "$toggler" 5
    fi
    sleep "$(( cut_ms / 1000 )).$(printf %03d $(( cut_ms % 1000 )))"
    # The power cut: nbdkit and its disk at once.
    kill -KILL "$a_pid" "$pc_pid"
    if [ -n "$toggler" ]; then
        kill_wait "$toggler" 5 || true
        rm -f "$tmp/onbatt"
    fi
    wait_for 30 exited "$wpid" || fail "the workload did not stop"
    wait "$wpid" || fail "the workload failed: $(cat "$tmp/run.out")"
    wait_for 10 exited "$a_pid" || fail "nbdkit w$r survived SIGKILL"
    grep -c "^F" "$tmp"/logs/* | tr '\n' ' '; echo
    pc_pid=
    disk_down

    # After the cut: the disk holds what it was told to flush.
    disk_up "$RANDOM" 0
    [ -f "$store" ] || fail "round $r: the store file is gone"
    async_up "r$r" 50 async
    "$PY" -c "import nbd; h = nbd.NBD(); h.connect_uri('nbd+unix:///?socket=$a_sock'); h.shutdown()" ||
        { cat "$tmp/r$r.log" >&2; fail "round $r: the restart does not serve"; }
    kill_wait "$a_pid" 60 || fail "round $r: nbdkit had to be killed"
    wait "$a_pid" || true
    grep -h "holds .* acknowledged by an earlier process" "$tmp/r$r.log" || true
    if ! "$PY" "$tool" check "$tmp/lower" "$tmp/logs"; then
        [ -n "$expect_loss" ] ||
            fail "round $r: a flush-acknowledged write is lost or wrong"
        lost=$(( lost + 1 ))
    fi
done
disk_down

if [ -n "$expect_loss" ]; then
    [ "$lost" -gt 0 ] ||
        fail "commits without fdatasync lost nothing: the test cannot fail"
    echo "commits without fdatasync: $lost of $rounds rounds lost flushed writes (expected)"
fi
echo "$0: OK"
