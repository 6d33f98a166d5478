# SPDX-License-Identifier: BSD-3-Clause
# Helpers for the power-cut tests of async-flush=store
# (test-async-durable-powercut*.sh), sourced after tests/functions.sh: the
# power-cut disk that holds the store file, the async filter over
# $tmp/lower with its store there, and an NBD export as a block device
# (nbdfuse + a loop device).  Not a test itself (not in TESTS).
#
# Needs root (losetup, mount), /dev/fuse, loop devices, ext4, nbdfuse;
# skips (77) otherwise.

skip () { echo "$0: SKIP: $*"; exit 77; }
requires_python_nbd
[ "$(id -u)" = 0 ] || skip "needs root (losetup, mount)"
requires nbdfuse fusermount3 losetup mkfs.ext4 mount umount mountpoint timeout
[ -e /dev/fuse ] || skip "no /dev/fuse"
grep -qw ext4 /proc/filesystems || modprobe ext4 2>/dev/null ||
    skip "the kernel has no ext4"
[ -e /dev/loop-control ] || modprobe loop 2>/dev/null ||
    skip "the kernel has no loop devices"
losetup -f >/dev/null 2>&1 || skip "no free loop device (losetup -f failed)"
[ -f "$POWERCUT_PLUGIN" ] || fail "powercut plugin not built: $POWERCUT_PLUGIN"

MiB=$(( 1024 * 1024 ))
store=$tmp/fs/store/abd.store
max_dirty=4M                    # async_up's async-max-dirty
declare -A blk_loop blk_fuse_pid

# blk_up NAME SOCK: the NBD export on SOCK as a block device: nbdfuse
# on $tmp/NAME.fuse, a loop device over its file.  Prints the device.
blk_up ()
{
    local name=$1 sock=$2 dir=$tmp/$1.fuse
    mkdir -p "$dir"
    nbdfuse -P "$tmp/$name.fuse.pid" "$dir/nbd" --unix "$sock" \
        >"$tmp/$name.nbdfuse.log" 2>&1 &
    blk_fuse_pid[$name]=$!
    wait_for 10 mountpoint -q "$dir" ||
        { cat "$tmp/$name.nbdfuse.log" >&2; fail "nbdfuse $name did not start"; }
    blk_loop[$name]=$(losetup --direct-io=off -f --show "$dir/nbd") ||
        fail "losetup $name failed"
}

# blk_down NAME [MOUNTPOINT]: unmount MOUNTPOINT (lazily if it is busy
# or its device is dead), detach the loop device, unmount FUSE, stop
# nbdfuse.  Safe to call twice, and after the NBD server died.
blk_down ()
{
    local name=$1 mnt=${2:-} dir=$tmp/$1.fuse loop=${blk_loop[$1]:-} i
    # /proc/mounts, not mountpoint: after the cut the FUSE mount is dead
    # (ENOTCONN) and mountpoint cannot tell.
    if [ -n "$mnt" ] && grep -q " $mnt " /proc/mounts; then
        timeout 30 umount "$mnt" 2>/dev/null || umount -l "$mnt"
    fi
    if [ -n "$loop" ]; then
        case $(losetup -n -O BACK-FILE "$loop" 2>/dev/null) in
            "$dir/nbd"*)
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
        blk_loop[$name]=
    fi
    if grep -q " $dir " /proc/mounts; then
        fusermount3 -u "$dir" 2>/dev/null ||
            fusermount3 -u -z "$dir" || umount -l "$dir"
    fi
    [ -z "${blk_fuse_pid[$name]:-}" ] ||
        kill_wait "${blk_fuse_pid[$name]}" 10 || true
    blk_fuse_pid[$name]=
}

# The disk that holds the store file: the powercut plugin on
# $tmp/medium -> nbdfuse -> loop -> ext4 on $tmp/fs.
mkdir "$tmp/fs"
truncate -s $(( 256 * MiB )) "$tmp/medium"
pc_pid=
disk_down ()
{
    blk_down disk "$tmp/fs"
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
    blk_up disk "$sock"
    if [ "${3:-}" = mkfs ]; then
        mkfs.ext4 -q -F "${blk_loop[disk]}" || fail "mkfs.ext4 failed"
    fi
    mount "${blk_loop[disk]}" "$tmp/fs" || fail "mount failed"
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
        async-max-dirty="$max_dirty" async-writeback-delay="$delay" \
        async-exit-timeout=30 >"$tmp/$name.log" 2>&1 &
    a_pid=$!
    cleanup_fn kill_wait "$a_pid" 30
    wait_for 10 test -S "$sock" ||
        { cat "$tmp/$name.log" >&2; fail "nbdkit $name did not start"; }
    a_sock=$sock
}

# async_replay NAME: after a cut, nbdkit with the same store file replays
# it and writes it back; a clean stop drains it to the lower file.
async_replay ()
{
    [ -f "$store" ] || fail "$1: the store file is gone"
    async_up "$1" 50 async
    "$PY" -c "import nbd; h = nbd.NBD(); h.connect_uri('nbd+unix:///?socket=$a_sock'); h.shutdown()" ||
        { cat "$tmp/$1.log" >&2; fail "$1: the restart does not serve"; }
    kill_wait "$a_pid" 60 || fail "$1: nbdkit had to be killed"
    wait "$a_pid" || true
    grep -h "holds .* acknowledged by an earlier process" "$tmp/$1.log" || true
}
