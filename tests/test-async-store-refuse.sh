#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter, async-store-file: a store file that cannot be
# trusted is refused at start with a clear message, and neither the image
# nor the file changes: random bytes in the header, a truncated file, a
# damaged record, an unknown version, a file holding dirty data of a
# device of another size or id, or made with another async-max-dirty.
# abdctl store-info refuses the damaged ones too.  A good file still works
# afterwards.
#
# The file is checked in .get_ready, before nbdkit forks: so each bad
# file (but one) is also refused by nbdkit forking into the background
# as it does by default (no -f; systemd's Type=forking), with a non-zero
# exit status from the process that was started.  The exception is a
# file of another device size: that size is known only once the lower
# device is opened, after the fork.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-helpers.sh"

size=$(( 8 * 1024 * 1024 ))
make_random "$tmp/disk" $size 4
cp "$tmp/disk" "$tmp/pristine"
good=$tmp/good.store

# A store file holding dirty data: write, then SIGKILL.
async_start make --filter="$ASYNC_FILTER" file "$tmp/disk" async-max-dirty=4M \
    async-writeback-delay=60000 async-store-file="$good" async-store-id=disk-a
store_writes 4 50 flush || fail "writes failed"
kill -KILL "$pid"; wait "$pid" || true
cmp -s "$tmp/disk" "$tmp/pristine" || fail "test bug: data written back early"
abdctl store-info "$good" | grep -q "^state: dirty" || fail "test bug: not dirty"

# refused NAME MESSAGE-REGEX [DISK-SIZE] [PARAMS...]: nbdkit over a copy
# of $tmp/NAME.store must exit with MESSAGE, leaving image and file as
# they were.
refused ()
{
    local name=$1 re=$2; shift 2
    local img=$tmp/disk
    cp "$tmp/$name.store" "$tmp/$name.before"
    local rc=0
    timeout 60 nbdkit -f --log=stderr -U "$tmp/$name.sock" \
        --filter="$ASYNC_FILTER" file "$img" async-max-dirty=4M \
        async-store-file="$tmp/$name.store" async-store-id=disk-a "$@" \
        2>"$tmp/$name.log" || rc=$?
    [ "$rc" -ne 0 ] || fail "$name: nbdkit started"
    [ "$rc" -ne 124 ] || fail "$name: nbdkit did not exit"
    grep -E "$re" "$tmp/$name.log" || { cat "$tmp/$name.log"; fail "$name: no message /$re/"; }
    cmp -s "$tmp/disk" "$tmp/pristine" || fail "$name: the image changed"
    cmp -s "$tmp/$name.store" "$tmp/$name.before" || fail "$name: the file changed"

    # Forking (no -f): the started process exits non-zero, nothing runs.
    rm -f "$tmp/$name.pid"
    rc=0
    timeout 60 nbdkit --log=stderr -U "$tmp/$name-fork.sock" \
        -P "$tmp/$name.pid" --filter="$ASYNC_FILTER" file "$img" \
        async-max-dirty=4M async-store-file="$tmp/$name.store" \
        async-store-id=disk-a "$@" 2>"$tmp/$name-fork.log" || rc=$?
    if [ -s "$tmp/$name.pid" ]; then
        kill_wait "$(cat "$tmp/$name.pid")" 10 || true
        fail "$name: forking nbdkit started (pid file written)"
    fi
    [ "$rc" -ne 0 ] || { cat "$tmp/$name-fork.log"; fail "$name: forking nbdkit exited 0"; }
    [ "$rc" -ne 124 ] || fail "$name: forking nbdkit did not exit"
    grep -qE "$re" "$tmp/$name-fork.log" || { cat "$tmp/$name-fork.log"; fail "$name: forking: no message /$re/"; }
    cmp -s "$tmp/$name.store" "$tmp/$name.before" || fail "$name: forking: the file changed"
}

cp "$good" "$tmp/header.store"
"$PY" -c 'import os,sys; f=open(sys.argv[1],"r+b"); f.seek(40); f.write(os.urandom(64))' "$tmp/header.store"
refused header "header is damaged"
! abdctl store-info "$tmp/header.store" || fail "store-info accepts a damaged header"

cp "$good" "$tmp/short.store"
truncate -s $(( $(stat -c %s "$good") / 2 )) "$tmp/short.store"
refused short "truncated"

cp "$good" "$tmp/record.store"
# The first record copy with a sequence number: flip a byte of its block.
"$PY" - "$tmp/record.store" <<'EOF2'
import struct, sys
f = open(sys.argv[1], "r+b"); d = f.read()
for i in range(4096, 4096 + 65536, 32):
    if struct.unpack_from("<Q", d, i)[0]:
        f.seek(i + 8); f.write(bytes([d[i + 8] ^ 1])); break
EOF2
refused record "damaged \(a record's checksum"
! abdctl store-info "$tmp/record.store" || fail "store-info accepts a damaged record"

cp "$good" "$tmp/version.store"
printf '\x02' | dd of="$tmp/version.store" bs=1 seek=8 conv=notrunc status=none
refused version "unknown store file version 2"

cp "$good" "$tmp/magic.store"
printf 'XXXX' | dd of="$tmp/magic.store" bs=1 seek=0 conv=notrunc status=none
refused magic "not an abd store file"

cp "$good" "$tmp/size.store"
truncate -s $(( size + 4096 )) "$tmp/disk"      # another device size
cp "$tmp/disk" "$tmp/pristine.big"
refused_big () { cmp -s "$tmp/disk" "$tmp/pristine.big"; }
rc=0
timeout 60 nbdkit -f --log=stderr -U "$tmp/size.sock" --filter="$ASYNC_FILTER" \
    file "$tmp/disk" async-max-dirty=4M async-store-file="$tmp/size.store" \
    async-store-id=disk-a 2>"$tmp/size.log" || rc=$?
[ "$rc" -ne 0 ] && grep -E "of another device \(size $size" "$tmp/size.log" ||
    fail "size: not refused"
refused_big || fail "size: the image changed"
cmp -s "$tmp/size.store" "$good" || fail "size: the file changed"
truncate -s $size "$tmp/disk"

cp "$good" "$tmp/id.store"
refused id "another device .*id 'disk-a'.* id 'disk-b'" async-store-id=disk-b

cp "$good" "$tmp/geom.store"
refused geom "made with async-max-dirty=4194304, not 8388608" async-max-dirty=8M

# The good file still works: written back at start, image as written.
# abdctl status names the file and what it holds.
async_start good --filter="$ASYNC_FILTER" file "$tmp/disk" async-max-dirty=4M \
    async-store-file="$good" async-store-id=disk-a \
    async-writeback-delay=60000 async-control="$tmp/good.ctl"
[ "$(st "$tmp/good.ctl" store_file)" = "$good" ] || fail "status: store_file"
[ "$(st "$tmp/good.ctl" store_file_dirty_bytes)" -eq 0 ] ||
    fail "status: store_file_dirty_bytes after the write-back at start"
cmp "$tmp/disk" "$tmp/expected" || fail "the good file was not written back"
"$PY" -c 'import sys; from abdtest.workload import connect; h = connect(sys.argv[1])
h.pwrite(open(sys.argv[2], "rb").read(8192), 0); h.shutdown()' "$uri" "$tmp/expected"
[ "$(st "$tmp/good.ctl" store_file_dirty_bytes)" -eq 8192 ] ||
    fail "status: store_file_dirty_bytes $(st "$tmp/good.ctl" store_file_dirty_bytes), expected 8192"
# A second nbdkit on the same file, forking: refused before the fork.
rc=0
timeout 60 nbdkit --log=stderr -U "$tmp/second.sock" -P "$tmp/second.pid" \
    --filter="$ASYNC_FILTER" file "$tmp/disk" async-max-dirty=4M \
    async-store-file="$good" async-store-id=disk-a 2>"$tmp/second.log" || rc=$?
if [ -s "$tmp/second.pid" ]; then
    kill_wait "$(cat "$tmp/second.pid")" 10 || true
    fail "a second nbdkit started on a store file in use"
fi
[ "$rc" -ne 0 ] && grep -q "in use by another process" "$tmp/second.log" ||
    { cat "$tmp/second.log"; fail "a second nbdkit on the file: not refused (exit $rc)"; }
stop_nbdkit "$pid"
cmp "$tmp/disk" "$tmp/expected" || fail "the good file was not written back"
echo "$0: OK"
