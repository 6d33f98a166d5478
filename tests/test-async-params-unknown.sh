#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter: an unknown parameter in the filter's namespace
# (async-*), such as a misspelt one, is refused at start and named.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-helpers.sh"

async_refused "unknown parameter 'async-bogus'"    async-bogus=1
async_refused "unknown parameter 'async-maxdirty'" async-maxdirty=1M
echo "$0: OK"
