#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# abdctl: usage errors (no command, options that exclude each other, a bad
# --interval) and requests that cannot be made (no such socket, not a
# socket, nothing listening, a path or request too long, the filter gone)
# are exit status 2, with a message on stderr and nothing on stdout.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-abdctl-exit-helpers.sh"

# 2: usage errors and requests that cannot be made.
expect_err 2 'Usage'
expect_err 2 'Usage'    --json
expect_err 2 'Usage'    -s "$ctl" --json --raw status
expect_err 2 'Usage'    -s "$ctl" status --progress
expect_err 2 'Usage'    -s "$ctl" flush --progress --json
expect_err 2 'interval' -s "$ctl" flush --progress --interval=0
expect_err 2 'interval' -s "$ctl" flush --progress --interval
expect_err 2 'Usage'    -s "$ctl" metrics extra
expect_err 2 'Usage'    store-info
expect_err 2 'Usage'    -s "$ctl"
expect_err 2 'Usage'    -s
expect_err 2 'Usage'    --bogus -s "$ctl" status
expect_err 2 'No such file' -s "$tmp/no-such.sock" status
touch "$tmp/plain-file"
expect_err 2 'plain-file' -s "$tmp/plain-file" status
# A socket nobody listens on (bound, then closed, not removed).
"$PY" -c 'import socket, sys; s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.close()' \
    "$tmp/dead.sock"
expect_err 2 'dead.sock' -s "$tmp/dead.sock" status
expect_err 2 'too long' -s "$tmp/$(printf 'x%.0s' {1..120}).sock" status
expect_err 2 'too long' -s "$ctl" status "$(printf 'y%.0s' {1..1100})"

abdctl_stop
# After nbdkit exits the socket is gone: 2.
expect_err 2 'ctl.sock' -s "$ctl" status
abdctl_report
echo "$0: OK"
