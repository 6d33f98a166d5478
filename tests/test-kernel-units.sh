#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# abd-nbd.service's command lines against the real kernel NBD client, in
# a QEMU guest (tests/kernel/vm.sh): tests/kernel/guest-units.sh attaches
# the stack with the unit's nbd-client line (4096-byte blocks, several
# connections), checks data, stops nbdkit and requires nbd-client to
# exit, attaches again to a new nbdkit, and detaches with ExecStop.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/kernel/vm.sh"
requires memcached
vm_visible "$ASYNC_FILTER" "$MEMCACHE_FILTER" "$abs_top_srcdir/tests" \
    "$abs_top_srcdir/scripts/systemd"

truncate -s 64M "$tmp/img"
vm_run "$abs_top_srcdir/tests/kernel/guest-units.sh" "abd-kernel-units: PASS " \
    ASYNC_FILTER MEMCACHE_FILTER
echo "$0: OK"
