#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Build the tiny initramfs that tests/test-kernel-nbd.sh boots: a static
# busybox, the modules needed to mount the host's root over virtio-9p,
# and an /init that mounts it, puts the guest's own /proc /sys /dev and
# tmpfs scratch space under it, and runs the test inside it.
#
# Usage: tests/kernel/mkinitramfs.sh KVER OUTPUT
#   KVER    a kernel with its modules in /lib/modules/KVER
#   OUTPUT  the initramfs to write (a newc cpio archive, uncompressed)
#
# What the guest's /init expects on the kernel command line (the kernel
# passes unknown NAME=VALUE words to init as environment variables):
#   abd_share=DIR   mount the 9p share tagged "abdshare" at DIR (a host
#                   directory, writable, seen at the same path in the guest)
#                   and run DIR/run with /bin/sh
# Whatever DIR/run does, /init then prints its exit status as
# "abd-guest: exit status N" and powers the guest off.
#   abd_init=systemd abd_unit=UNIT  instead, boot the host's systemd as
#                   PID 1 into UNIT, with the units in DIR/units (copied to
#                   /run/systemd/system) and tmpfs on /tmp and /var/lib
#                   (PrivateTmp=, StateDirectory=), the directories of
#                   abd_keep=DIR,DIR under /tmp mounted back read-only
#                   from the host (a tree cloned under /tmp); one of those
#                   units runs
#                   DIR/run and prints the status line
#                   (tests/test-kernel-systemd.sh).  UNIT is given on
#                   systemd's command line: it ignores the kernel's when it
#                   thinks it runs in a container (the host root may have a
#                   /.dockerenv).

set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 KVER OUTPUT" >&2
    exit 2
fi
kver=$1
out=$2

busybox=$(command -v busybox) || { echo "$0: busybox not found" >&2; exit 1; }
# The initramfs has no C library: a dynamic busybox cannot run there.
ldd_out=$(LC_ALL=C ldd "$busybox" 2>&1 || true)
if ! grep -Eq 'not a dynamic|statically linked' <<<"$ldd_out"; then
    echo "$0: $busybox is not static (install busybox-static)" >&2
    exit 1
fi

root=$(mktemp -d "${TMPDIR:-/var/tmp}/abd-initramfs.XXXXXX")
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,dev,proc,sys,newroot,modules}
cp "$busybox" "$root/bin/busybox"

# The modules, in load order, dependencies first (modprobe resolves them
# from modules.dep; it lists a shared dependency again for every module
# that needs it, so keep the first of each).
: > "$root/modules/order"
for m in virtio_pci 9pnet_virtio 9p; do
    modprobe -S "$kver" --show-depends "$m" | awk '$1 == "insmod" { print $2 }'
done | awk '!seen[$0]++' | while read -r ko; do
    name=$(basename "$ko")
    case "$ko" in
        *.ko)     cp "$ko" "$root/modules/$name" ;;
        *.ko.xz)  name=${name%.xz};  xz -dc "$ko" > "$root/modules/$name" ;;
        *.ko.zst) name=${name%.zst}; zstd -qdc "$ko" > "$root/modules/$name" ;;
        *) echo "$0: cannot unpack module $ko" >&2; exit 1 ;;
    esac
    echo "$name" >> "$root/modules/order"
done
[ -s "$root/modules/order" ] || { echo "$0: no modules found for $kver" >&2; exit 1; }

cat > "$root/init" <<'EOF'
#!/bin/busybox sh
# PID 1 of the test guest (see tests/kernel/mkinitramfs.sh).
/bin/busybox --install -s /bin
export PATH=/usr/sbin:/usr/bin:/sbin:/bin

die () { echo "abd-guest: init: $*"; echo "abd-guest: exit status 99"; poweroff -f; }

mount -t proc proc /proc
for ko in $(cat /modules/order); do
    insmod "/modules/$ko" || die "insmod $ko failed"
done

# msize: the default 8 KiB message makes every large read and write many
# round trips through the emulator; 512 KiB is what virtio-9p accepts.
# cache=loose on the read-only root: nothing changes it while the guest runs,
# and caching pages and dentries saves 9p round trips for every exec.
opts=trans=virtio,version=9p2000.L,msize=512000
mount -t 9p -o "$opts,ro,cache=loose" hostroot /newroot || die "cannot mount the host root"
mount -t proc proc /newroot/proc
mount -t sysfs sysfs /newroot/sys
mount -t devtmpfs devtmpfs /newroot/dev
# Writable scratch space; the build tree must not live under these.
mount -t tmpfs tmpfs /newroot/run
mount -t tmpfs tmpfs /newroot/var/tmp

[ -n "${abd_share:-}" ] || die "no abd_share= on the kernel command line"
mkdir -p "/newroot$abd_share"
# The share is written by the guest and read by the host afterwards:
# no guest caching (cache=none is the default).
mount -t 9p -o "$opts" abdshare "/newroot$abd_share" || die "cannot mount $abd_share"

if [ "${abd_init:-}" = systemd ]; then
    # A writable /tmp hides the host's: the trees the guest runs from
    # (abd_keep=DIR,DIR: the source and build tree, a clone under /tmp)
    # are mounted back from the host's /tmp, bound elsewhere first (a
    # virtio-9p device takes one mount only).
    mkdir -p /newroot/run/abd-hosttmp
    mount -o bind /newroot/tmp /newroot/run/abd-hosttmp ||
        die "cannot keep the host's /tmp"
    mount -t tmpfs tmpfs /newroot/tmp
    for dir in $(echo "${abd_keep:-}" | tr ',' ' '); do
        case $dir in
            /tmp/*)
                mkdir -p "/newroot$dir"
                mount -o bind "/newroot/run/abd-hosttmp${dir#/tmp}" \
                    "/newroot$dir" || die "cannot mount $dir back"
                ;;
        esac
    done
    mount -t tmpfs tmpfs /newroot/var/lib
    mkdir -p /newroot/run/systemd/system
    cp -r "/newroot$abd_share/units/." /newroot/run/systemd/system/ ||
        die "cannot copy the units"
    # switch_root, not chroot: in a chroot the kernel refuses to create
    # user namespaces (PrivateUsers=).
    exec switch_root /newroot /lib/systemd/systemd --unit="${abd_unit:?}" \
        --show-status=false
fi

# exec, not a child: kernel threads (module autoload, for ext4) use PID 1's
# root to find /sbin/modprobe, so PID 1 itself must be inside the chroot.
exec chroot /newroot /bin/busybox sh -c '
    cd /
    /bin/sh "$0/run"
    echo "abd-guest: exit status $?"
    exec /bin/busybox poweroff -f
' "$abd_share"
EOF
chmod 755 "$root/init"

(cd "$root" && find . -print0 | cpio --quiet -o -0 -H newc) > "$out"
