#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The whole stack under the real kernel NBD client: nbd.ko and nbd-client
# attach async over memcache over a file as /dev/nbd0, with ext4 on it,
# in a QEMU guest (tests/kernel/vm.sh).  $tmp holds the 256 MiB sparse
# image.  tests/kernel/guest.sh does the work inside the guest (see
# there); this side asserts that
#   - the guest printed the PASS marker and exited 0,
#   - fsck.ext4 -fn finds the image clean after nbdkit drained on SIGTERM,
#   - every file the guest wrote is in the image with the sha256 sum the
#     guest recorded (read with debugfs, without the stack).

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/kernel/vm.sh"
requires memcached
[ -x "$ABDCTL" ] || fail "abdctl not built: $ABDCTL"
vm_visible "$ASYNC_FILTER" "$MEMCACHE_FILTER" "$ABDCTL" "$abs_top_srcdir/tests"

truncate -s 256M "$tmp/img"
vm_run "$abs_top_srcdir/tests/kernel/guest.sh" "abd-kernel-nbd: PASS " \
    ASYNC_FILTER MEMCACHE_FILTER ABDCTL

# The image, after nbdkit drained: a clean filesystem holding every file.
fsck.ext4 -fn "$tmp/img" || fail "fsck.ext4 -fn found errors in the image"
# fsck -n skips journal replay, and does not count wrong free counts as
# errors: also require a clean unmount, which left nothing in the journal.
dumpe2fs -h "$tmp/img" > "$tmp/dumpe2fs" 2>/dev/null || fail "dumpe2fs failed"
grep -q '^Filesystem state: *clean$' "$tmp/dumpe2fs" ||
    fail "the image is not marked clean: $(grep '^Filesystem state' "$tmp/dumpe2fs")"
! grep -q '^Filesystem features:.*needs_recovery' "$tmp/dumpe2fs" ||
    fail "the image's journal needs recovery (writes were lost)"
image_has_files "$tmp/img" "$tmp/sums" 4
echo "$0: OK"
