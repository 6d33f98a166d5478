#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# abdctl against the async filter: an ERR answer is exit status 1, with
# the filter's message on stderr and nothing on stdout: a bad mode, an
# unknown command, a bad flush timeout (only decimal digits, 0..86400),
# a malformed request, an empty word.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-abdctl-exit-helpers.sh"

# 1: the filter answered ERR.
expect_err 1 'expected sync or async' -s "$ctl" mode bogus
expect_err 1 'unknown command'        -s "$ctl" frobnicate
expect_err 1 'unknown command'        -s "$ctl" mode
expect_err 1 'unknown command'        -s "$ctl" status extra
expect_err 1 'timeout'                -s "$ctl" flush abc
expect_err 1 'timeout'                -s "$ctl" flush 86401
expect_err 1 'timeout'                -s "$ctl" flush -1
# Strictly decimal: no wrap-around to 0, no suffix, sign or hex.
expect_err 1 'timeout'                -s "$ctl" flush 4294967296
expect_err 1 'timeout'                -s "$ctl" flush 18446744073709551616
expect_err 1 'timeout'                -s "$ctl" flush 5abc
expect_err 1 'timeout'                -s "$ctl" flush +5
expect_err 1 'timeout'                -s "$ctl" flush 0x10
# An empty word is not a missing one.
expect_err 1 'malformed'              -s "$ctl" flush ''
expect_err 1 'malformed'              -s "$ctl" status ''
expect_err 1 'malformed'              -s "$ctl" status 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16
expect_err 1 'expected sync or async' -s "$ctl" --json mode bogus
abdctl_stop
abdctl_report
echo "$0: OK"
