#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter: a bad count or time (async-writers,
# async-writeback-delay, async-exit-timeout, async-max-drain-seconds) is
# refused at start with a message naming the parameter: out of range,
# negative, not a whole number, a unit where none is taken, empty.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-helpers.sh"

async_refused 'async-writers'    async-writers=0
async_refused 'async-writers'    async-writers=257
async_refused 'async-writers'    async-writers=-1
async_refused 'async-writers'    async-writers=abc
async_refused 'async-writers'    async-writers=
async_refused 'async-writeback-delay' async-writeback-delay=60001
async_refused 'async-writeback-delay' async-writeback-delay=-5
async_refused 'async-writeback-delay' async-writeback-delay=1s
async_refused 'async-exit-timeout' async-exit-timeout=86401
async_refused 'async-exit-timeout' async-exit-timeout=abc
drain='async-max-drain-seconds: expected whole seconds'
async_refused "$drain" async-max-drain-seconds=86401
async_refused "$drain" async-max-drain-seconds=-1
async_refused "$drain" async-max-drain-seconds=10m
async_refused "$drain" async-max-drain-seconds=1.5
async_refused "$drain" async-max-drain-seconds=
echo "$0: OK"
