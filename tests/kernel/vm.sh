# SPDX-License-Identifier: BSD-3-Clause
# The host half shared by the kernel tests (tests/test-kernel-*.sh): find
# a kernel to boot, boot it under QEMU with a guest script, and check an
# ext4 image afterwards.  Sourced after tests/functions.sh; not a test.
#
# The machines this runs on have no nbd module (and no usable KVM), so the
# tests boot Debian's own kernel under QEMU in software emulation (TCG)
# with the host's root filesystem shared read-only over 9p: everything,
# including this build tree, is seen at the same paths in the guest.
# $tmp is shared writable: it holds the image, the script the guest runs
# and what the guest reports (tests/kernel/mkinitramfs.sh).

loud_skip ()
{
    echo "$0: SKIP: ************************************************"
    echo "$0: SKIP: $*"
    echo "$0: SKIP: the kernel NBD client is NOT tested"
    echo "$0: SKIP: ************************************************"
    exit 77
}

command -v qemu-system-x86_64 >/dev/null ||
    loud_skip "qemu-system-x86_64 is not installed (qemu-system-x86)"
# A kernel that can boot and has its modules (nbd, 9p) for the guest; the
# host's own kernel may have neither (Debian's linux-image-amd64 does).
kver=
for dir in $(printf '%s\n' /lib/modules/*/ | sort -rV); do
    k=$(basename "$dir")
    if [ -r "/boot/vmlinuz-$k" ] &&
       ls "$dir"kernel/drivers/block/nbd.ko* >/dev/null 2>&1 &&
       ls "$dir"kernel/fs/9p/9p.ko* >/dev/null 2>&1; then
        kver=$k
        break
    fi
done
[ -n "$kver" ] ||
    loud_skip "no readable /boot/vmlinuz-KVER with nbd and 9p modules in /lib/modules/KVER (linux-image-amd64)"
requires busybox cpio modprobe timeout debugfs dumpe2fs fsck.ext4 mkfs.ext4 \
    nbdkit nbd-client sha256sum

# The kernel passes abd_share=$tmp to the guest's init, as one word, and
# abd_keep=SRC,BUILD: the trees, mounted back over the guest's own /tmp
# when they live there (abd_init=systemd).
case $tmp$abs_top_srcdir$abs_top_builddir in
    *[[:space:]]*|*,*)
        fail "\$tmp or the tree has white space or a comma: $tmp $abs_top_srcdir" ;;
esac

# vm_visible PATH...: fail unless the guest sees PATH (the guest mounts
# tmpfs on /run and /var/tmp, its scratch space, which would hide build
# outputs there).
vm_visible ()
{
    local f
    for f in "$@"; do
        case $(realpath "$f") in
            /run/*|/var/tmp/*|/proc/*|/sys/*|/dev/*)
                fail "$f is hidden in the guest (tmpfs or a kernel filesystem there)" ;;
        esac
    done
}

# vm_run GUEST_SCRIPT MARKER VAR...: boot the guest, which runs
# `bash GUEST_SCRIPT $tmp` with the variables VAR... (and the build tree's
# and sanitizers') exported; print its console; fail unless it exited 0
# and printed a line starting with MARKER.  ABD_VM_TIMEOUT (default 300)
# seconds at most.  $vm_append: more words for the kernel command line
# (abd_init=systemd: see tests/kernel/mkinitramfs.sh).
vm_run ()
{
    local script=$1 marker=$2 v rc=0; shift 2
    bash "$abs_top_srcdir/tests/kernel/mkinitramfs.sh" "$kver" "$tmp/initrd" ||
        fail "could not build the initramfs"
    # What the guest's init runs (with /bin/sh) once $tmp is mounted.
    {
        echo "export PATH=/usr/sbin:/usr/bin:/sbin:/bin TMPDIR=/var/tmp"
        for v in abs_top_srcdir abs_top_builddir ABD_SANITIZER_PRELOAD \
                 ASAN_OPTIONS UBSAN_OPTIONS "$@"; do
            if [ -n "${!v:-}" ]; then printf 'export %s=%q\n' "$v" "${!v}"; fi
        done
        printf 'exec bash %q %q\n' "$script" "$tmp"
    } > "$tmp/run"

    # -accel tcg: software emulation; KVM cannot boot a stock kernel on
    #   these machines (no vmx/svm).  thread=multi: one host thread per
    #   guest CPU.  -cpu max: every CPU feature TCG can emulate (the
    #   default qemu64 model lacks many the kernel's fast paths use).
    # -m 512: nbdkit's dirty store (up to 128M), memcached (64M) and the
    #   page cache, with room to spare.
    # -vga none, -nic none: no display or network is used; less to emulate.
    # -bios qboot.rom: a minimal firmware that only boots -kernel, seconds
    #   faster than SeaBIOS under emulation (used when QEMU ships it).
    # -no-reboot with panic=-1: a guest panic ends QEMU at once instead of
    #   rebooting; the guest ends with poweroff -f.
    # multidevs=remap: the host root spans several filesystems; without it
    #   inode numbers from different devices could collide in the guest.
    # security_model=none: files the guest creates are plain files of the
    #   user running QEMU (no xattr mapping), readable by this script.
    # mitigations=off: there is no speculation to defend against in TCG,
    #   and page-table isolation would cost a TLB flush per syscall.
    # no_timer_check: skip the boot-time check that the IO-APIC timer
    #   ticks, which a TCG guest on a busy host can fail ("IO-APIC + timer
    #   doesn't work!", a panic seen with two CPU hogs beside the suite);
    #   KVM guests skip it the same way.
    # quiet: only kernel warnings reach the console, between the test's
    #   lines.
    local bios=()
    [ -e /usr/share/qemu/qboot.rom ] && bios=(-bios qboot.rom)
    local console=$tmp/console.log
    cleanup_fn vm_kill
    timeout --kill-after=10 "${ABD_VM_TIMEOUT:-300}" \
        qemu-system-x86_64 -accel tcg,thread=multi -cpu max -smp 2 -m 512 \
        -nographic -no-reboot -vga none -nic none "${bios[@]}" \
        -pidfile "$tmp/qemu.pid" \
        -kernel "/boot/vmlinuz-$kver" -initrd "$tmp/initrd" \
        -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
        -virtfs "local,path=$tmp,mount_tag=abdshare,security_model=none,multidevs=remap" \
        -append "console=ttyS0 panic=-1 mitigations=off no_timer_check quiet abd_share=$tmp abd_keep=$abs_top_srcdir,$abs_top_builddir ${vm_append:-}" \
        </dev/null >"$console" 2>&1 &
    vm_pid=$!
    wait "$vm_pid" || rc=$?
    echo "--- guest console (kernel $kver)"
    # (without the firmware's terminal escapes)
    tr -d '\r' < "$console" | sed 's/\x1b\[[0-9;?]*[a-zA-Z]//g; s/\x1bc//g'
    echo "---"
    [ "$rc" -ne 124 ] || fail "the guest did not finish in ${ABD_VM_TIMEOUT:-300}s"
    [ "$rc" -eq 0 ] || fail "qemu exited with status $rc"
    grep -aq '^abd-guest: exit status 0' "$console" || fail "the guest test failed"
    grep -aq "^$marker" "$console" || fail "no '$marker' line from the guest"
}

# vm_kill: stop timeout (which passes SIGTERM on to QEMU), then QEMU itself
# by the PID it wrote, in case timeout was already gone.
vm_pid=
vm_kill ()
{
    [ -z "$vm_pid" ] || kill_wait "$vm_pid" 15
    if [ -s "$tmp/qemu.pid" ]; then kill_wait "$(cat "$tmp/qemu.pid")" 15; fi
}

# image_has_files IMAGE SUMS COUNT: the ext4 IMAGE holds every file listed
# in SUMS (sha256sum output, paths from the filesystem root; COUNT lines)
# with that sum, read with debugfs, without the stack.
image_has_files ()
{
    local img=$1 sums=$2 count=$3 sum path got
    [ "$(wc -l < "$sums")" -eq "$count" ] ||
        fail "the guest recorded $(wc -l < "$sums") sums, not $count"
    while read -r sum path; do
        rm -f "$tmp/out"
        debugfs -R "dump /$path $tmp/out" "$img" 2>/dev/null
        [ -f "$tmp/out" ] || fail "$path is not in the image"
        got=$(sha256sum < "$tmp/out" | awk '{ print $1 }')
        [ "$got" = "$sum" ] ||
            fail "$path in the image has sha256 $got, the guest wrote $sum"
        echo "in the image: $path $sum"
    done < "$sums"
}
