#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter, async-store-file: a store file someone else could
# have written is refused at start with a message naming the rule, in the
# foreground and forking, and neither the image nor the file changes.
# Each file holds a well-formed record for block 0 with data that was
# never written to this device (made with nbdkit itself, over another
# image, as anyone can): replayed, it would land on the image.
#
# The rules: not a symbolic link; a regular file owned by nbdkit's user
# (here root, so `nobody` is another user) with no group or other
# permission bits and no other hard link; its directory and every one
# above it owned by that user or root and not writable by group or
# others unless sticky; an absolute path.  abdctl store-info refuses the
# same files with the same words.  A file that keeps the rules (in a
# sticky directory, like /dev/shm) is replayed: the forged block lands,
# which shows the refusals above are what kept it out.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-store-helpers.sh"
requires chown

# $tmp/forged.store: a record for block 0 of a device with id disk-a and
# this size, whose data is 4 KiB of 'F'.
make_random "$tmp/disk" $size 4
cp "$tmp/disk" "$tmp/pristine"
truncate -s $size "$tmp/other"
async_start forge --filter="$ASYNC_FILTER" file "$tmp/other" \
    async-max-dirty=4M async-writeback-delay=60000 async-write-size=32M \
    async-store-file="$tmp/forged.store" async-store-id=disk-a
"$PY" -m nbd -u "$uri" -c 'h.pwrite(b"F" * 4096, 0)' -c 'h.flush()' ||
    fail "could not write the forged block"
kill -KILL "$pid"; wait "$pid" || true
abdctl store-info "$tmp/forged.store" | grep -q "^data_records: 1$" ||
    fail "test bug: the forged file has no data record"

# refused NAME PATH REGEX [PARAMS...]: nbdkit over $tmp/disk with store
# file PATH refuses to start (foreground and forking) with REGEX; the
# image and the file are unchanged; abdctl store-info refuses it too.
refused ()
{
    local name=$1 path=$2 re=$3; shift 3
    store_refused_path "$name" "$path" "$re" "$@"
    if abdctl store-info "$path" >"$tmp/$name.info" 2>&1; then
        fail "$name: abdctl store-info read the file"
    fi
    grep -qE "$re" "$tmp/$name.info" ||
        fail "$name: abdctl store-info: no message /$re/: $(cat "$tmp/$name.info")"
}

ln -s "$tmp/forged.store" "$tmp/link.store"
refused symlink "$tmp/link.store" "is a symbolic link"

cp "$tmp/forged.store" "$tmp/nobody.store"
chown nobody "$tmp/nobody.store"
refused owner "$tmp/nobody.store" "owned by uid $(id -u nobody), not by this process \(uid 0\)"

for mode in 0640 0604 0660 0606; do
    cp "$tmp/forged.store" "$tmp/mode$mode.store"
    chmod "$mode" "$tmp/mode$mode.store"
    refused "mode$mode" "$tmp/mode$mode.store" "mode ${mode#0} gives group or others access"
done

cp "$tmp/forged.store" "$tmp/hard.store"
ln "$tmp/hard.store" "$tmp/hard2.store"
refused hardlink "$tmp/hard.store" "has 2 names \(hard links\)"

mkdir -m 0777 "$tmp/open"
chmod 0777 "$tmp/open"          # whatever the umask
cp "$tmp/forged.store" "$tmp/open/a.store"
refused open-dir "$tmp/open/a.store" "directory $tmp/open \(mode 777\) is writable by others and not sticky"

# A private directory inside an open one: whoever can write the open one
# can rename the private one away and put their own in its place.
mkdir -m 0700 "$tmp/open/private"
cp "$tmp/forged.store" "$tmp/open/private/a.store"
refused open-parent "$tmp/open/private/a.store" "directory $tmp/open \(mode 777\) is writable by others and not sticky"

mkdir -m 0770 "$tmp/group"
chmod 0770 "$tmp/group"
cp "$tmp/forged.store" "$tmp/group/a.store"
refused group-dir "$tmp/group/a.store" "directory $tmp/group \(mode 770\) is writable by group"

mkdir -m 0700 "$tmp/theirs"
cp "$tmp/forged.store" "$tmp/theirs/a.store"
chown nobody "$tmp/theirs"
refused dir-owner "$tmp/theirs/a.store" "directory $tmp/theirs is owned by uid $(id -u nobody), not by this process \(uid 0\) or root"

# A relative path is refused when the parameter is read: nbdkit changes
# to / when it forks, so it would name another file than at the check.
cp "$tmp/forged.store" "$tmp/rel.store"
cp "$tmp/rel.store" "$tmp/rel.before"
rc=0
(cd "$tmp" && timeout 60 nbdkit -f --log=stderr -U "$tmp/rel.sock" \
    --filter="$ASYNC_FILTER" file "$tmp/disk" async-max-dirty=4M \
    async-store-file=rel.store async-store-id=disk-a) 2>"$tmp/rel.log" || rc=$?
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || fail "relative: nbdkit started (exit $rc)"
grep -q "async-store-file=rel.store: must be an absolute path" "$tmp/rel.log" ||
    fail "relative: no message: $(cat "$tmp/rel.log")"
cmp -s "$tmp/disk" "$tmp/pristine" || fail "relative: the image changed"
cmp -s "$tmp/rel.store" "$tmp/rel.before" || fail "relative: the file changed"

# The forged file where it keeps every rule: a sticky, world-writable
# directory of ours (as /dev/shm is root's).  It is replayed: block 0 of
# the image becomes the forged data, so the cases above really stopped a
# replay.
mkdir -m 1777 "$tmp/sticky"
chmod 1777 "$tmp/sticky"
cp "$tmp/forged.store" "$tmp/sticky/a.store"
async_start sticky --filter="$ASYNC_FILTER" file "$tmp/disk" \
    async-max-dirty=4M async-store-file="$tmp/sticky/a.store" \
    async-store-id=disk-a
# A connection is served once the replay is written back and flushed.
timeout 30 "$PY" -m nbd -u "$uri" -c 'assert h.pread(4096, 0) == b"F" * 4096' ||
    fail "sticky: block 0 does not read back the forged data"
[ "$(head -c 4096 "$tmp/disk" | tr -d F | wc -c)" -eq 0 ] ||
    fail "sticky: the file that keeps the rules was not replayed"
stop_nbdkit "$pid"
echo "$0: OK"
