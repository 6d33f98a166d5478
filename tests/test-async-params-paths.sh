#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter: a bad path (async-control, async-sync-file) is
# refused at start with a message naming the parameter: empty, in a
# directory that does not exist, relative.  async-store-file and
# async-sync-file are checked in .get_ready and used after nbdkit's
# chdir ("/") when it forks: a relative one is refused when read, even
# if it names an existing file from the start directory.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-helpers.sh"

async_refused 'async-control'   async-control=
async_refused 'async-control'   async-control="$tmp/no/such/dir/ctl"
async_refused 'async-control=ctl.sock: must be an absolute path' \
    async-control=ctl.sock
async_refused 'async-control=./ctl.sock: must be an absolute path' \
    async-control=./ctl.sock
async_refused 'async-sync-file' async-sync-file=
async_refused 'async-sync-file=sync: must be an absolute path' \
    async-sync-file=sync
async_refused 'async-store-file' async-store-file=
async_refused 'no/such/dir/a.store: directory .*not an existing directory' \
    async-store-file="$tmp/no/such/dir/a.store"
async_refused 'async-store-file=a.store: must be an absolute path' \
    async-store-file=a.store
# From a directory where the relative names exist.
cd "$tmp"
touch sync
async_refused 'async-sync-file=sync: must be an absolute path' \
    async-sync-file=sync
async_refused 'async-store-file=../a.store: must be an absolute path' \
    async-store-file=../a.store
[ ! -e "$tmp/../a.store" ] && [ ! -e /a.store ] ||
    fail "a store file was made for a relative path"
echo "$0: OK"
