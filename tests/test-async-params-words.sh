#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter: a bad word or boolean (async-mode,
# async-sync-writes, async-mlock) is refused at start with a message
# naming the parameter: unknown, in the wrong case, empty; over another
# plugin too (memory).

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-helpers.sh"

async_refused 'async-mode'        async-mode=bogus
async_refused 'async-mode'        async-mode=SYNC
async_refused 'async-mode'        async-mode=
async_refused 'async-sync-writes' async-sync-writes=bogus
async_refused 'async-sync-writes' async-sync-writes=
async_refused 'async-mlock'       async-mlock=maybe
refused_at_start 'async-mode' --filter="$ASYNC_FILTER" memory 1M async-mode=bogus
echo "$0: OK"
