#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The guest half of tests/test-kernel-nbd.sh: runs inside the VM, as root,
# with the host's root filesystem (and so this build tree) mounted
# read-only and SHARE, a writable directory of the host, at the same path.
#
# Usage (by the VM's init, not by hand): guest.sh SHARE
#
# The whole stack, attached with the kernel's NBD client:
#   /dev/nbd0 (nbd.ko, nbd-client over a Unix socket)
#     -> nbdkit --filter=async --filter=memcache file SHARE/img
#                       (memcached on a Unix socket)
# It makes an ext4 filesystem, writes set A of files (their sha256 sums go
# to SHARE/sums), syncs, makes the async filter write everything back
# (abdctl flush), drops the page cache, remounts and checks set A, which
# must now be read through the memcache filter from memcached.  Then it
# writes set B, unmounts and detaches: set B is still dirty in the async
# filter (60 s writeback delay), so only the drain at SIGTERM puts it in
# the image.  nbdkit must exit 0.  The host then checks SHARE/img with
# fsck and the sums.  On success the last line is the PASS marker:
#   abd-kernel-nbd: PASS written_back_bytes=N memcache_hits=N ...

source "$abs_top_srcdir/tests/functions.sh"
source "$abs_top_srcdir/tests/kernel/guest-lib.sh"

[ $# -eq 1 ] || fail "usage: $0 SHARE"
share=$1
img=$share/img
requires nbdkit nbd-client memcached mkfs.ext4 sha256sum
[ -x "$ABDCTL" ] || fail "abdctl not built: $ABDCTL"

step "modprobe nbd, start memcached and nbdkit"
guest_prepare

guest_memcached_start

# nbdkit in the foreground (in our background), so that its exit status
# after SIGTERM can be checked.
#   async-writeback-delay=60000, async-write-size=8M: nothing is written
#     back on its own during the test (no 8M run of dirty blocks forms),
#     only on `abdctl flush` and SIGTERM; 8M also stays under the memcache
#     filter's mass invalidation (a write of more than 4096 blocks makes
#     every cached block untrusted);
#   async-max-dirty=128M: the store never gets half full (which would
#     start writeback early);
#   memcache-timeout=2000: the emulated CPU is slow, and a server that is
#     late once is marked down (the default 5 ms is for real machines).
async_ctl=$tmp/async.ctl
mc_ctl=$tmp/memcache.ctl
nbd_sock=$tmp/nbd.sock
guest_nbdkit_start "$async_ctl" "$mc_ctl" -- \
    --filter="$ASYNC_FILTER" --filter="$MEMCACHE_FILTER" \
    file "$img" \
    async-control="$async_ctl" async-writeback-delay=60000 \
    async-write-size=8M async-max-dirty=128M \
    memcache-servers="$tmp/mc.sock" memcache-id=kernel-nbd \
    memcache-timeout=2000 memcache-control="$mc_ctl"

step "attach /dev/nbd0, mkfs.ext4, mount"
nbd_attach "$nbd_sock" $(( 256 * 1024 * 1024 ))
cleanup_fn nbd-client -d /dev/nbd0
mnt=$tmp/mnt
unmount_if_mounted ()
{
    if mountpoint -q "$mnt"; then umount "$mnt"; fi
}
mkfs_mount "$mnt"
cleanup_fn unmount_if_mounted

# write_set NAME FILE:SIZE...: random files under $mnt/NAME, their sums
# (paths relative to the filesystem root) appended to $share/sums.
write_set ()
{
    local set=$1 f; shift
    mkdir -p "$tmp/src/$set"
    for f in "$@"; do
        head -c "${f#*:}" /dev/urandom > "$tmp/src/$set/${f%%:*}"
    done
    (cd "$tmp/src" && sha256sum "$set"/*) >> "$share/sums"
    cp -r "$tmp/src/$set" "$mnt/"
}

step "write set A, sync, abdctl flush"
: > "$share/sums"
write_set a big:4M odd:1234567 small:5000
sync
dirty_a=$(status_field "$async_ctl" dirty_bytes)
[ "$dirty_a" -gt 0 ] || fail "set A was not held dirty by the async filter"
"$ABDCTL" -s "$async_ctl" flush 120 || fail "abdctl flush failed"
written=$(status_field "$async_ctl" written_back_bytes)
[ "$written" -ge $(( 5 * 1024 * 1024 )) ] ||
    fail "the async filter wrote back only $written bytes of set A"
[ "$(status_field "$async_ctl" dirty_bytes)" -eq 0 ] ||
    fail "dirty data left after abdctl flush"

step "drop caches, remount, check set A"
echo 3 > /proc/sys/vm/drop_caches
umount "$mnt"
hits0=$(status_field "$mc_ctl" hits)
misses0=$(status_field "$mc_ctl" misses)
lower0=$(status_field "$mc_ctl" lower_reads)
mount -o noinit_itable /dev/nbd0 "$mnt" || fail "mount /dev/nbd0 again failed"
(cd "$mnt" && sha256sum --quiet -c "$share/sums") ||
    fail "set A read back through /dev/nbd0 differs"
hits=$(( $(status_field "$mc_ctl" hits) - hits0 ))
misses=$(( $(status_field "$mc_ctl" misses) - misses0 ))
lower_reads=$(( $(status_field "$mc_ctl" lower_reads) - lower0 ))
# The write-back stored every whole block it wrote in memcached, so
# reading set A again (at least its 4 MiB file) is served from there.
if [ $(( hits * 4096 )) -lt $(( 4 * 1024 * 1024 )) ]; then
    "$ABDCTL" -s "$mc_ctl" status
    fail "reading set A back: only $hits blocks came from memcached"
fi
[ "$(status_field "$mc_ctl" errors)" -eq 0 ] || fail "memcache errors"

step "write set B, umount, detach"
write_set b data:1M
umount "$mnt"
dirty_b=$(status_field "$async_ctl" dirty_bytes)
[ "$dirty_b" -gt 0 ] || fail "set B is not dirty in the async filter"
nbd-client -d /dev/nbd0 || fail "nbd-client -d failed"

# SIGTERM: the async filter writes everything back, then nbdkit exits 0.
step "stop nbdkit (drains set B)"
kill -TERM "$nbdkit_pid"
rc=0
wait "$nbdkit_pid" || rc=$?
[ "$rc" -eq 0 ] || fail "nbdkit exited with status $rc after SIGTERM"
! grep -i 'error' "$tmp/nbdkit.log" || fail "nbdkit logged errors"

echo "abd-kernel-nbd: PASS written_back_bytes=$written" \
     "memcache_hits=$hits memcache_misses=$misses lower_reads=$lower_reads" \
     "dirty_at_sigterm=$dirty_b"
