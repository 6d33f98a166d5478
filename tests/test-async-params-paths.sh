#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter: a bad path (async-control, async-sync-file) is
# refused at start with a message naming the parameter: empty, in a
# directory that does not exist, relative.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-helpers.sh"

async_refused 'async-control'   async-control=
async_refused 'async-control'   async-control="$tmp/no/such/dir/ctl"
async_refused 'async-control=ctl.sock: must be an absolute path' \
    async-control=ctl.sock
async_refused 'async-control=./ctl.sock: must be an absolute path' \
    async-control=./ctl.sock
async_refused 'async-sync-file' async-sync-file=
echo "$0: OK"
