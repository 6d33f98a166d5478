#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter, async-store-file: a file holding dirty data of
# another device is refused at start with a clear message, and neither
# the image nor the file changes: another async-store-id (in the
# foreground and forking), another device size (in the foreground only:
# the size is known once the lower device is opened, after the fork).

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-store-helpers.sh"

store_make_dirty

cp "$good" "$tmp/id.store"
store_refused id "another device .*id 'disk-a'.* id 'disk-b'" async-store-id=disk-b

cp "$good" "$tmp/size.store"
truncate -s $(( size + 4096 )) "$tmp/disk"      # another device size
cp "$tmp/disk" "$tmp/pristine.big"
rc=0
timeout 60 nbdkit -f --log=stderr -U "$tmp/size.sock" --filter="$ASYNC_FILTER" \
    file "$tmp/disk" async-max-dirty=4M async-store-file="$tmp/size.store" \
    async-store-id=disk-a 2>"$tmp/size.log" || rc=$?
[ "$rc" -ne 0 ] && grep -E "of another device \(size $size" "$tmp/size.log" ||
    fail "size: not refused"
cmp -s "$tmp/disk" "$tmp/pristine.big" || fail "size: the image changed"
cmp -s "$tmp/size.store" "$good" || fail "size: the file changed"
echo "$0: OK"
