#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter: `nbdkit --filter=async null --help` lists every
# async- parameter.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-helpers.sh"

nbdkit --filter="$ASYNC_FILTER" null --help > "$tmp/help" 2>&1 ||
    fail "nbdkit --filter=async null --help failed"
for p in async-max-dirty async-mlock async-mode async-sync-file \
         async-sync-writes async-sync-rate async-control async-writers \
         async-write-size async-writeback-delay async-exit-timeout \
         async-max-drain-seconds async-store-file async-store-id \
         async-flush; do
    grep -q -- "$p=" "$tmp/help" || fail "--help does not mention $p"
done
echo "$0: OK"
