#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter: over a plugin it cannot write to (pattern, which
# is read-only) the filter refuses to start, saying so.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-helpers.sh"

refused_at_start 'read-only' --filter="$ASYNC_FILTER" pattern 1M
echo "$0: OK"
