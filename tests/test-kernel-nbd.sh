#!/usr/bin/env bash
# The whole stack under the real kernel NBD client: nbd.ko and nbd-client
# attach async over memcache over a file as /dev/nbd0, with ext4 on it.
#
# The machines this runs on have no nbd module (and no usable KVM), so the
# test boots Debian's own kernel under QEMU in software emulation (TCG)
# with the host's root filesystem shared read-only over 9p: everything,
# including this build tree, is seen at the same paths in the guest.
# $tmp is shared writable: it holds the 256 MiB sparse image, the script
# the guest runs and what the guest reports.  tests/kernel/guest.sh does
# the work inside the guest (see there); this side asserts that
#   - the guest printed the PASS marker and exited 0,
#   - fsck.ext4 -fn finds the image clean after nbdkit drained on SIGTERM,
#   - every file the guest wrote is in the image with the sha256 sum the
#     guest recorded (read with debugfs, without the stack).

source "${abs_top_srcdir:-.}/tests/functions.sh"

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
    nbdkit nbd-client memcached sha256sum
[ -x "$ABDCTL" ] || fail "abdctl not built: $ABDCTL"

# The guest mounts tmpfs on /run and /var/tmp (its scratch space), which
# would hide build outputs there.
for f in "$ASYNC_FILTER" "$MEMCACHE_FILTER" "$ABDCTL" "$abs_top_srcdir/tests"; do
    case $(realpath "$f") in
        /run/*|/var/tmp/*|/proc/*|/sys/*|/dev/*)
            fail "$f is hidden in the guest (tmpfs or a kernel filesystem there)" ;;
    esac
done
# The kernel passes abd_share=$tmp to the guest's init, as one word.
case $tmp in
    *[[:space:]]*) fail "\$tmp has white space: $tmp" ;;
esac

truncate -s 256M "$tmp/img"
bash "$abs_top_srcdir/tests/kernel/mkinitramfs.sh" "$kver" "$tmp/initrd" ||
    fail "could not build the initramfs"

# What the guest's init runs (with /bin/sh) once $tmp is mounted.
{
    echo "export PATH=/usr/sbin:/usr/bin:/sbin:/bin TMPDIR=/var/tmp"
    for v in abs_top_srcdir abs_top_builddir ASYNC_FILTER MEMCACHE_FILTER ABDCTL \
             ABD_SANITIZER_PRELOAD ASAN_OPTIONS UBSAN_OPTIONS; do
        if [ -n "${!v:-}" ]; then printf 'export %s=%q\n' "$v" "${!v}"; fi
    done
    printf 'exec bash %q %q\n' "$abs_top_srcdir/tests/kernel/guest.sh" "$tmp"
} > "$tmp/run"

# -accel tcg: software emulation; KVM cannot boot a stock kernel on these
#   machines (no vmx/svm).  thread=multi: one host thread per guest CPU.
#   -cpu max: every CPU feature TCG can emulate (the default qemu64 model
#   lacks many the kernel's fast paths use).
# -m 512: nbdkit's dirty store (up to 128M), memcached (64M) and the page
#   cache, with room to spare.
# -vga none, -nic none: no display or network is used; less to emulate.
# -bios qboot.rom: a minimal firmware that only boots -kernel, seconds
#   faster than SeaBIOS under emulation (used when QEMU ships it).
# -no-reboot with panic=-1: a guest panic ends QEMU at once instead of
#   rebooting; the guest ends with poweroff -f.
# multidevs=remap: the host root spans several filesystems; without it
#   inode numbers from different devices could collide in the guest.
# security_model=none: files the guest creates are plain files of the
#   user running QEMU (no xattr mapping), readable by this script.
# mitigations=off: there is no speculation to defend against in TCG, and
#   page-table isolation would cost a TLB flush per syscall.
# quiet: only kernel warnings reach the console, between the test's lines.
bios=()
[ -e /usr/share/qemu/qboot.rom ] && bios=(-bios qboot.rom)
console=$tmp/console.log
timeout --kill-after=10 "${ABD_VM_TIMEOUT:-300}" \
    qemu-system-x86_64 -accel tcg,thread=multi -cpu max -smp 2 -m 512 \
    -nographic -no-reboot -vga none -nic none "${bios[@]}" \
    -pidfile "$tmp/qemu.pid" \
    -kernel "/boot/vmlinuz-$kver" -initrd "$tmp/initrd" \
    -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
    -virtfs "local,path=$tmp,mount_tag=abdshare,security_model=none,multidevs=remap" \
    -append "console=ttyS0 panic=-1 mitigations=off quiet abd_share=$tmp" \
    </dev/null >"$console" 2>&1 &
vm_pid=$!
# Stop timeout (which passes SIGTERM on to QEMU), then QEMU itself by the
# PID it wrote, in case timeout was already gone.
kill_qemu ()
{
    kill_wait "$vm_pid" 15
    if [ -s "$tmp/qemu.pid" ]; then kill_wait "$(cat "$tmp/qemu.pid")" 15; fi
}
cleanup_fn kill_qemu
rc=0
wait "$vm_pid" || rc=$?
echo "--- guest console (kernel $kver)"
# (without the firmware's terminal escapes)
tr -d '\r' < "$console" | sed 's/\x1b\[[0-9;?]*[a-zA-Z]//g; s/\x1bc//g'
echo "---"
[ "$rc" -ne 124 ] || fail "the guest did not finish in ${ABD_VM_TIMEOUT:-300}s"
[ "$rc" -eq 0 ] || fail "qemu exited with status $rc"
grep -aq '^abd-guest: exit status 0' "$console" || fail "the guest test failed"
grep -aq '^abd-kernel-nbd: PASS ' "$console" || fail "no PASS marker from the guest"

# The image, after nbdkit drained: a clean filesystem holding every file.
fsck.ext4 -fn "$tmp/img" || fail "fsck.ext4 -fn found errors in the image"
# fsck -n skips journal replay, and does not count wrong free counts as
# errors: also require a clean unmount, which left nothing in the journal.
dumpe2fs -h "$tmp/img" > "$tmp/dumpe2fs" 2>/dev/null || fail "dumpe2fs failed"
grep -q '^Filesystem state: *clean$' "$tmp/dumpe2fs" ||
    fail "the image is not marked clean: $(grep '^Filesystem state' "$tmp/dumpe2fs")"
! grep -q '^Filesystem features:.*needs_recovery' "$tmp/dumpe2fs" ||
    fail "the image's journal needs recovery (writes were lost)"
[ "$(wc -l < "$tmp/sums")" -eq 4 ] || fail "the guest recorded $(wc -l < "$tmp/sums") sums, not 4"
while read -r sum path; do
    rm -f "$tmp/out"
    debugfs -R "dump /$path $tmp/out" "$tmp/img" 2>/dev/null
    [ -f "$tmp/out" ] || fail "$path is not in the image"
    got=$(sha256sum < "$tmp/out" | awk '{ print $1 }')
    [ "$got" = "$sum" ] || fail "$path in the image has sha256 $got, the guest wrote $sum"
    echo "in the image: $path $sum"
done < "$tmp/sums"
echo "$0: OK"
