#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# abd.service, abd-memcached.service and abd-nbd.service run by a real
# systemd, with the sandbox they ship with (ProtectSystem=strict, CapabilityBoundingSet=,
# DevicePolicy=closed, SystemCallFilter=, ...): the host's systemd boots
# as PID 1 of the QEMU guest (tests/kernel/vm.sh, abd_init=systemd) and
# tests/kernel/guest-systemd.sh starts the units over a block device and
# over the default image, writes, reads through memcached and stops them
# (see there).  A sandbox that takes away something nbdkit or memcached
# needs fails here; tests/test-systemd-units.sh checks the exposure
# scores without booting anything.
#
# The units are the shipped ones but for the paths `make install` and
# the package would fill: abd-prepare-device, the filters, memcached's
# settings from the tree, /etc/default/abd from this test's directory.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/kernel/vm.sh"
requires memcached
[ -x /lib/systemd/systemd ] || loud_skip "no /lib/systemd/systemd to boot"
vm_visible "$ASYNC_FILTER" "$MEMCACHE_FILTER" "$ABDCTL" \
    "$abs_top_srcdir/tests" "$abs_top_srcdir/scripts/systemd" \
    "$abs_top_srcdir/memcached-ext"

units=$abs_top_srcdir/scripts/systemd
# What the service runs is copied by the guest to /run/abd-test before it
# starts the units: PrivateTmp= hides /tmp and /var/tmp from the service,
# and with them a tree cloned there.
svc=/run/abd-test
mkdir "$tmp/units"
sed -e "s|/usr/libexec/abd/abd-prepare-device|$svc/abd-prepare-device|" \
    -e "s|^ExecReload=/usr/bin/abdctl |ExecReload=$svc/abdctl |" \
    -e "s|^EnvironmentFile=/etc/default/abd$|EnvironmentFile=$tmp/abd.default|" \
    -e "s|--filter=async |--filter=$svc/nbdkit-async-filter.so |" \
    -e "s|--filter=memcache |--filter=$svc/nbdkit-memcache-filter.so |" \
    "$units/abd.service" > "$tmp/units/abd.service"
# A sanitizer build: nbdkit with the ASan runtime preloaded (the guest
# writes the wrapper, tests/kernel/guest-systemd.sh).
if [ -n "${ABD_SANITIZER_PRELOAD:-}" ]; then
    sed -i "s|^ExecStart=/usr/bin/nbdkit |ExecStart=$svc/nbdkit |" \
        "$tmp/units/abd.service"
    grep -q "^ExecStart=$svc/nbdkit " "$tmp/units/abd.service" ||
        fail "test bug: abd.service's nbdkit was not replaced"
fi
sed -e "s|^EnvironmentFile=/usr/share/abd/abd-memcached.conf$|EnvironmentFile=$abs_top_srcdir/memcached-ext/abd-memcached.conf|" \
    "$units/abd-memcached.service" > "$tmp/units/abd-memcached.service"
for want in "$svc/abd-prepare-device" "EnvironmentFile=$tmp/abd.default" \
            "ExecReload=$svc/abdctl " \
            "--filter=$svc/nbdkit-async-filter.so " \
            "--filter=$svc/nbdkit-memcache-filter.so "; do
    grep -qF -- "$want" "$tmp/units/abd.service" ||
        fail "test bug: abd.service has no '$want' after the substitutions"
done
sed -e "s|^EnvironmentFile=/etc/default/abd$|EnvironmentFile=$tmp/abd.default|" \
    "$units/abd-nbd.service" > "$tmp/units/abd-nbd.service"
grep -qF "EnvironmentFile=$tmp/abd.default" "$tmp/units/abd-nbd.service" ||
    fail "test bug: abd-nbd.service's EnvironmentFile was not replaced"
grep -qF "$abs_top_srcdir/memcached-ext/abd-memcached.conf" \
    "$tmp/units/abd-memcached.service" ||
    fail "test bug: abd-memcached.service's EnvironmentFile was not replaced"
# Nothing but the paths changed: the sandbox is the shipped one.
for u in abd.service abd-memcached.service abd-nbd.service; do
    diff <(grep -vE '^(ExecStart|ExecStartPre|ExecReload|EnvironmentFile)=|^ +' "$units/$u") \
         <(grep -vE '^(ExecStart|ExecStartPre|ExecReload|EnvironmentFile)=|^ +' "$tmp/units/$u") ||
        fail "test bug: $u differs in more than its paths"
done

# The guest's target: the test script, as a unit, then power off.
cat > "$tmp/units/abd-guest.target" <<EOF
[Unit]
Description=abd test guest
Requires=abd-guest.service
EOF
cat > "$tmp/units/abd-guest.service" <<EOF
[Unit]
Description=abd test guest: $tmp/run
After=basic.target

[Service]
Type=oneshot
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0
ExecStart=/bin/sh -c '/bin/sh $tmp/run; echo "abd-guest: exit status \$\$?"; exec /bin/systemctl poweroff --force --force'
EOF

truncate -s 32M "$tmp/img"
vm_append="abd_init=systemd abd_unit=abd-guest.target"
ABD_VM_TIMEOUT=${ABD_VM_TIMEOUT:-600} \
    vm_run "$abs_top_srcdir/tests/kernel/guest-systemd.sh" \
    "abd-kernel-systemd: PASS " ASYNC_FILTER MEMCACHE_FILTER ABDCTL
echo "$0: OK"
