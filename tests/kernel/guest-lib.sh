# SPDX-License-Identifier: BSD-3-Clause
# The guest half shared by the kernel tests: helpers for the scripts that
# run inside the QEMU guest (tests/kernel/guest*.sh), sourced after
# tests/functions.sh.  Not a test.

# step WHAT: say on the console what is being done, with the guest uptime.
step ()
{
    echo "abd-guest: [$(cut -d' ' -f1 /proc/uptime)] $*"
}

# guest_prepare: let nbdkit start, load nbd.ko.
guest_prepare ()
{
    # nbdkit 1.32 reserves a ~192 MiB .bss: without overcommit it does not
    # start in a small guest.
    echo 1 > /proc/sys/vm/overcommit_memory
    modprobe nbd || fail "modprobe nbd failed"
}

# guest_memcached_start: a memcached on the Unix socket $tmp/mc.sock,
# stopped at exit; returns once it listens.
guest_memcached_start ()
{
    memcached -s "$tmp/mc.sock" -u root -m 64 >"$tmp/memcached.log" 2>&1 &
    cleanup_fn kill_wait "$!" 10
    wait_for 30 test -S "$tmp/mc.sock" || fail "memcached did not start"
}

# guest_nbdkit_start SOCKET... -- ARGS...: nbdkit ARGS in the foreground
# of a background job, on the Unix socket $nbd_sock with the pidfile
# $tmp/nbdkit.pid, its messages in $tmp/nbdkit.log (shown at exit); then
# wait until the pidfile, $nbd_sock and every SOCKET (control sockets)
# exist.  Sets $nbdkit_pid; stopped at exit.
guest_nbdkit_start ()
{
    local sockets=()
    while [ "$1" != -- ]; do sockets+=("$1"); shift; done
    shift
    nbdkit -f --log=stderr -U "$nbd_sock" -P "$tmp/nbdkit.pid" "$@" \
        2>"$tmp/nbdkit.log" &
    nbdkit_pid=$!
    cleanup_fn kill_wait "$nbdkit_pid" 60
    cleanup_fn _guest_show_nbdkit_log
    wait_for 60 _guest_nbdkit_ready "${sockets[@]}" ||
        fail "nbdkit did not start"
}
_guest_show_nbdkit_log ()
{
    echo "--- nbdkit log"
    cat "$tmp/nbdkit.log"
    echo "---"
}
_guest_nbdkit_ready ()
{
    local s
    kill -0 "$nbdkit_pid" 2>/dev/null || fail "nbdkit exited at start"
    [ -s "$tmp/nbdkit.pid" ] && [ -S "$nbd_sock" ] || return 1
    for s in "$@"; do [ -S "$s" ] || return 1; done
}

# nbd_attach SOCKET SIZE: attach the NBD server on the Unix SOCKET as
# /dev/nbd0 and check that it has SIZE bytes.  Not detached at exit: a
# test that cuts the power leaves it attached to a dead server.
nbd_attach ()
{
    local size
    # -b 4096: the filesystem's block size, so the kernel never sends
    # 512-byte requests; -t 30: a lost server fails the I/O in 30 s
    # instead of hanging.
    nbd-client -unix "$1" /dev/nbd0 -b 4096 -t 30 ||
        fail "nbd-client could not attach /dev/nbd0"
    size=$(blockdev --getsize64 /dev/nbd0)
    [ "$size" -eq "$2" ] || fail "/dev/nbd0 has $size bytes, not $2"
}

# mkfs_mount MNT: ext4 on /dev/nbd0, mounted on MNT (created).
mkfs_mount ()
{
    # Lazy initialisation, and mount -o noinit_itable so that the kernel
    # does not zero the inode tables in the background either: the image
    # is sparse (all zeros) already, and 24 MiB of zeros through the
    # emulated stack only cost time.  nodiscard: the file plugin cannot
    # punch holes over 9p, so a trim of the whole device would become
    # 256 MiB of zero writes.
    mkfs.ext4 -q -E lazy_itable_init=1,lazy_journal_init=1,nodiscard \
        /dev/nbd0 || fail "mkfs.ext4 /dev/nbd0 failed"
    mkdir -p "$1"
    mount -o noinit_itable /dev/nbd0 "$1" || fail "mount /dev/nbd0 failed"
}
