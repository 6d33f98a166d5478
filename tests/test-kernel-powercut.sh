#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# A power cut under ext4 and the real kernel NBD client: every file that
# fsync said was durable survives, and the filesystem is consistent.
#
# In a QEMU guest (tests/kernel/vm.sh), ext4 on /dev/nbd0 over the async
# filter in sync mode over nbdkit-powercut-plugin, whose volatile write
# cache loses everything not flushed when nbdkit is killed.  The guest
# (tests/kernel/guest-powercut.sh) writes and fsyncs files, records their
# sums, leaves unflushed data behind, and SIGKILLs nbdkit with the
# filesystem mounted.  Then this side checks the image:
#   - the journal is replayed (e2fsck -E journal_only, on the image
#     itself: it is ours), then e2fsck -fn finds nothing wrong;
#   - every fsynced file is in the image with the sum the guest recorded
#     (read with debugfs, without the stack).
# If the async filter acknowledged a flush in sync mode without flushing
# the device below, the fsynced files (and the journal) would be lost.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/kernel/vm.sh"
requires e2fsck
[ -x "$ABDCTL" ] || fail "abdctl not built: $ABDCTL"
[ -f "$POWERCUT_PLUGIN" ] || fail "powercut plugin not built: $POWERCUT_PLUGIN"
vm_visible "$ASYNC_FILTER" "$POWERCUT_PLUGIN" "$ABDCTL" "$abs_top_srcdir/tests"

truncate -s 256M "$tmp/img"
vm_run "$abs_top_srcdir/tests/kernel/guest-powercut.sh" \
    "abd-kernel-powercut: PASS " ASYNC_FILTER POWERCUT_PLUGIN ABDCTL

# The filesystem as the power cut left it: its journal needs replaying.
e2fsck -E journal_only -y "$tmp/img" ||
    [ $? -eq 1 ] || fail "e2fsck could not replay the journal"
e2fsck -fn "$tmp/img" || fail "e2fsck -fn found errors after journal replay"
image_has_files "$tmp/img" "$tmp/sums" 8
# Not a check, a report: nothing flushed the O_DIRECT overwrite, so it is
# normally lost (unless a periodic journal commit flushed it in time).
debugfs -R "dump /overwritten $tmp/out" "$tmp/img" 2>/dev/null
if [ "$(sha256sum < "$tmp/out" | awk '{ print $1 }')" = "$(cat "$tmp/direct.sum")" ]; then
    echo "the unflushed O_DIRECT overwrite survived (a journal commit flushed it)"
else
    echo "the unflushed O_DIRECT overwrite was lost in the cut"
fi
echo "$0: OK"
