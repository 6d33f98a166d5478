#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter: a bad size (async-max-dirty, async-sync-rate,
# async-write-size) is refused at start with a message naming the
# parameter: below or above the limits, not a multiple of 4K where it must
# be, zero, negative, not a number, empty, an unknown suffix.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-helpers.sh"

async_refused 'async-max-dirty'  async-max-dirty=32K
async_refused 'async-max-dirty'  async-max-dirty=65535
async_refused 'async-max-dirty'  async-max-dirty=1T
async_refused 'async-max-dirty'  async-max-dirty=2T
async_refused 'async-max-dirty'  async-max-dirty=0
async_refused 'async-max-dirty'  async-max-dirty=-1
async_refused 'async-max-dirty'  async-max-dirty=abc
async_refused 'async-max-dirty'  async-max-dirty=
async_refused 'async-max-dirty'  async-max-dirty=10Q
async_refused 'async-sync-rate'  async-sync-rate=1K
async_refused 'async-sync-rate'  async-sync-rate=abc
async_refused 'async-write-size' async-write-size=6000
async_refused 'async-write-size' async-write-size=6K
async_refused 'async-write-size' async-write-size=2K
async_refused 'async-write-size' async-write-size=64M
async_refused 'async-write-size' async-write-size=0
async_refused 'async-write-size' async-write-size=abc
echo "$0: OK"
