#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter under the kernel block path and a real file system:
#   nbdkit (async filter, file plugin, 256 MiB sparse image, Unix socket)
#   -> nbdfuse exposes it as a file -> losetup --direct-io=off -> mkfs.ext4
#   -> mount, write files (random, sha256sums), sync, umount
#   -> detach and re-attach the loop device (so that reads go to nbdkit
#      again, not the page cache), mount, verify the sums, umount
#   -> fsck.ext4 -n on the loop device is clean
#   -> losetup -d, fusermount3 -u, stop nbdkit (SIGTERM: drains)
#   -> fsck.ext4 -fn on the image file is clean and the files read out of
#      it with debugfs match their sums.
# Needs root, /dev/fuse, loop devices, ext4, nbdfuse, e2fsprogs; skips (77)
# otherwise.  Cleanup always unmounts, detaches the loop device and
# unmounts FUSE (in that order) before nbdkit is stopped.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-helpers.sh"

skip () { echo "$0: SKIP: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "needs root (losetup, mount)"
[ -c /dev/fuse ] || skip "no /dev/fuse"
requires nbdfuse fusermount3 losetup mkfs.ext4 fsck.ext4 debugfs mount umount \
    mountpoint sha256sum
grep -qw ext4 /proc/filesystems || modprobe ext4 2>/dev/null ||
    skip "the kernel has no ext4"
[ -e /dev/loop-control ] || modprobe loop 2>/dev/null ||
    skip "the kernel has no loop devices"
losetup -f >/dev/null 2>&1 || skip "no free loop device (losetup -f failed)"

MiB=$(( 1024 * 1024 ))
img=$tmp/disk.img
truncate -s $(( 256 * MiB )) "$img"
ctl=$tmp/ctl
mkdir "$tmp/mnt" "$tmp/fs" "$tmp/out"
async_start kern --filter="$ASYNC_FILTER" file "$img" \
    async-control="$ctl" async-max-dirty=64M async-exit-timeout=10
nbdkit_pid=$pid

# Cleanup, registered after nbdkit's so that it runs before nbdkit is
# stopped: umount the fs, detach the loop device, unmount FUSE.
umount_all ()
{
    local d=$1 i
    for (( i=0; i<50; i++ )); do
        mountpoint -q "$d" || return 0
        umount "$d" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "$0: $d busy, lazy unmount" >&2
    umount -l "$d"
}
fuse_down ()
{
    local i
    for (( i=0; i<50; i++ )); do
        mountpoint -q "$tmp/mnt" || break
        fusermount3 -u "$tmp/mnt" 2>/dev/null && break
        sleep 0.1
    done
    if mountpoint -q "$tmp/mnt"; then
        echo "$0: FUSE mount busy, lazy unmount" >&2
        fusermount3 -u -z "$tmp/mnt" || umount -l "$tmp/mnt"
    fi
    [ -z "${fuse_pid:-}" ] || kill_wait "$fuse_pid" 10
}
loop=
loop_detach ()
{
    local back i
    [ -n "$loop" ] || return 0
    # Only our device, only if it still points at our file.
    back=$(losetup -n -O BACK-FILE "$loop" 2>/dev/null) || { loop=; return 0; }
    case $back in
        "$tmp/mnt/nbd"*) ;;
        *) loop=; return 0 ;;
    esac
    for (( i=0; i<50; i++ )); do
        losetup -d "$loop" 2>/dev/null && break
        sleep 0.1
    done
    # Detach is asynchronous while the device is open: wait for it.
    for (( i=0; i<50; i++ )); do
        losetup -n -O BACK-FILE "$loop" 2>/dev/null | grep -q . || break
        sleep 0.1
    done
    loop=
}
cleanup_fn fuse_down
cleanup_fn loop_detach
cleanup_fn umount_all "$tmp/fs"

# FUSE: the export as the file $tmp/mnt/nbd.
fuse_pid=
nbdfuse -P "$tmp/fuse.pid" "$tmp/mnt/nbd" --unix "$sock" \
    >"$tmp/nbdfuse.log" 2>&1 &
fuse_pid=$!
wait_for 10 test -s "$tmp/fuse.pid" ||
    { cat "$tmp/nbdfuse.log" >&2; fail "nbdfuse did not start"; }
wait_for 10 mountpoint -q "$tmp/mnt" || fail "nbdfuse: $tmp/mnt is not mounted"
[ "$(stat -c %s "$tmp/mnt/nbd")" -eq $(( 256 * MiB )) ] ||
    fail "the FUSE file has the wrong size"

loop_attach ()
{
    loop=$(losetup --direct-io=off -f --show "$tmp/mnt/nbd") ||
        fail "losetup failed"
    echo "loop device: $loop"
}
loop_attach
mkfs.ext4 -q -F "$loop" || fail "mkfs.ext4 failed"
mount "$loop" "$tmp/fs" || fail "mount failed"

# Files of several sizes, random content.
sizes=(4096 100000 $(( 1 * MiB )) $(( 5 * MiB + 123 )) $(( 12 * MiB )) $(( 16 * MiB )))
mkdir "$tmp/fs/dir"
for i in "${!sizes[@]}"; do
    head -c "${sizes[$i]}" /dev/urandom > "$tmp/fs/dir/f$i"
done
(cd "$tmp/fs/dir" && sha256sum f*) > "$tmp/sums"
sync -f "$tmp/fs/dir"
sync
umount_all "$tmp/fs"
mountpoint -q "$tmp/fs" && fail "umount failed"
echo "after umount: dirty_bytes $(st "$ctl" dirty_bytes), client_written_bytes $(st "$ctl" client_written_bytes)"
total=0
for s in "${sizes[@]}"; do total=$(( total + s )); done
[ "$(st "$ctl" client_written_bytes)" -ge "$total" ] ||
    fail "client_written_bytes < $total: the writes did not reach nbdkit"

# Re-attach so that the file system is read back through nbdkit.
loop_detach
loop_attach
mount "$loop" "$tmp/fs" || fail "second mount failed"
(cd "$tmp/fs/dir" && sha256sum --quiet -c "$tmp/sums") ||
    fail "sha256 mismatch after remount"
umount_all "$tmp/fs"
fsck.ext4 -n "$loop" || fail "fsck.ext4 -n on $loop is not clean"
fsck.ext4 -fn "$loop" || fail "fsck.ext4 -fn on $loop is not clean"

loop_detach
fuse_down
fuse_pid=
mountpoint -q "$tmp/mnt" && fail "FUSE still mounted"

# SIGTERM: the filter writes everything back before nbdkit exits.
stop_nbdkit "$nbdkit_pid"
fsck.ext4 -fn "$img" 2>&1 | tee "$tmp/fsck.out" ||
    fail "fsck.ext4 -fn on the image file is not clean"
# -n skips journal replay: a clean image needs none.
grep -qi "journal" "$tmp/fsck.out" &&
    fail "the image file needs journal recovery: unmount did not reach it"
for i in "${!sizes[@]}"; do
    debugfs -R "dump -p /dir/f$i $tmp/out/f$i" "$img" >/dev/null 2>&1 ||
        fail "debugfs could not dump /dir/f$i"
done
(cd "$tmp/out" && sha256sum --quiet -c "$tmp/sums") ||
    fail "files in the image file do not match their sums"
echo "$0: OK"
