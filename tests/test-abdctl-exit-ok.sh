#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# abdctl against the async filter: an OK answer is exit status 0 (status,
# flush, mode, with -s or --socket), and so are --help, -h and --version.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-abdctl-exit-helpers.sh"

# 0: OK answers.
expect 0 -s "$ctl" status
expect 0 --socket="$ctl" status
expect 0 -s "$ctl" flush
expect 0 -s "$ctl" flush 5
expect 0 -s "$ctl" mode sync && grep -qx 'mode: sync' "$tmp/out" ||
    failures+=("mode sync did not print 'mode: sync'")
expect 0 -s "$ctl" mode async && grep -qx 'mode: async' "$tmp/out" ||
    failures+=("mode async did not print 'mode: async'")
expect 0 --help && grep -q 'Usage' "$tmp/out" || failures+=("--help printed no usage")
expect 0 -h
expect 0 --version && grep -q '^abdctl ' "$tmp/out" || failures+=("--version printed no version")

abdctl_stop
abdctl_report
echo "$0: OK"
