#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The guest half of tests/test-kernel-powercut.sh: runs inside the VM, as
# root, with the host's root filesystem (and so this build tree) mounted
# read-only and SHARE, a writable directory of the host, at the same path.
#
# Usage (by the VM's init, not by hand): guest-powercut.sh SHARE
#
#   ext4 on /dev/nbd0 (nbd.ko, nbd-client over a Unix socket)
#     -> nbdkit --filter=async (async-mode=sync) powercut SHARE/img
#
# nbdkit-powercut-plugin keeps every write in its memory until a flush or
# FUA: killing nbdkit loses whatever was not flushed, as a power cut
# loses a disk's volatile cache.  The guest makes the filesystem, then
# writes files one by one, each with fsync (of the file, then of its
# directory); a file's sha256 sum goes to SHARE/sums only after its
# fsyncs returned.  Then it leaves data that no fsync covers: a file
# written and not synced, and an fsynced file overwritten with O_DIRECT
# (on the device, not flushed).  Then the cut: SIGKILL of nbdkit, with the
# filesystem still mounted and /dev/nbd0 attached.  The host checks
# SHARE/img (journal replay, fsck, the sums).  On success the last line
# is the PASS marker:
#   abd-kernel-powercut: PASS files=N lower_flushes=N

source "$abs_top_srcdir/tests/functions.sh"
source "$abs_top_srcdir/tests/kernel/guest-lib.sh"

[ $# -eq 1 ] || fail "usage: $0 SHARE"
share=$1
requires nbdkit nbd-client mkfs.ext4 sha256sum dd
[ -x "$ABDCTL" ] || fail "abdctl not built: $ABDCTL"
[ -f "$POWERCUT_PLUGIN" ] || fail "powercut plugin not built: $POWERCUT_PLUGIN"

step "modprobe nbd, start nbdkit"
guest_prepare
# async-mode=sync: the mode whose flushes promise durability (writes to
# clean blocks go through, a flush waits for the dirty ones and flushes
# the device below).  The plugin's default unflushed-persist=0: nothing
# unflushed reaches the image, so a missing flush loses the most.
async_ctl=$tmp/async.ctl
nbd_sock=$tmp/nbd.sock
guest_nbdkit_start "$async_ctl" -- \
    --filter="$ASYNC_FILTER" "$POWERCUT_PLUGIN" file="$share/img" \
    async-mode=sync async-control="$async_ctl"

step "attach /dev/nbd0, mkfs.ext4, mount"
nbd_attach "$nbd_sock" $(( 256 * 1024 * 1024 ))
# Not under $tmp: its removal at exit must not walk a filesystem whose
# server is dead.
mnt=/run/abd-powercut-mnt
mkfs_mount "$mnt"

step "write files, each fsynced before its sum is recorded"
: > "$share/sums"
mkdir "$mnt/synced" "$tmp/src"
sync "$mnt"
nfiles=0
for size in 4096 1 1000000 65536 3000000 12345 262144 777; do
    f=f$nfiles
    head -c "$size" /dev/urandom > "$tmp/src/$f"
    # conv=fsync: fsync(2) of the file before dd exits; then the directory.
    dd if="$tmp/src/$f" of="$mnt/synced/$f" bs=64k conv=fsync status=none ||
        fail "writing $f failed"
    sync "$mnt/synced" || fail "fsync of the directory failed"
    sum=$(sha256sum < "$tmp/src/$f")
    echo "${sum%% *}  synced/$f" >> "$share/sums"
    nfiles=$(( nfiles + 1 ))
done

step "leave data that no fsync covers, then cut the power"
# Buffered and never synced: in the page cache, maybe partly written out.
head -c 2000000 /dev/urandom > "$mnt/unsynced"
# Allocated and fsynced, then overwritten in place with O_DIRECT: the new
# data is on the device, below the page cache, but never flushed.
dd if=/dev/zero of="$mnt/overwritten" bs=1M count=2 conv=fsync status=none ||
    fail "writing overwritten failed"
head -c 2M /dev/urandom > "$tmp/direct"
dd if="$tmp/direct" of="$mnt/overwritten" bs=1M count=2 oflag=direct \
    conv=notrunc status=none || fail "the O_DIRECT overwrite failed"
sum=$(sha256sum < "$tmp/direct")
echo "${sum%% *}" > "$share/direct.sum"
flushes=$(status_field "$async_ctl" lower_flushes)
mode=$(status_field "$async_ctl" mode)
[ "$mode" = sync ] || fail "the async filter is in mode $mode, not sync"

# The cut: no umount, no nbd-client -d.  The guest is powered off with the
# filesystem mounted over a dead server.
kill -KILL "$nbdkit_pid"
wait "$nbdkit_pid" 2>/dev/null || true
step "nbdkit killed"
echo "abd-kernel-powercut: PASS files=$nfiles lower_flushes=$flushes"
