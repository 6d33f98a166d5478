#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter, async-store-file: a file made with another
# async-max-dirty (another layout) is refused at start, in the foreground
# and forking, with a message naming both values, and neither the image
# nor the file changes.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-store-helpers.sh"

store_make_dirty
cp "$good" "$tmp/geom.store"
store_refused geom "made with async-max-dirty=4194304, not 8388608" async-max-dirty=8M
echo "$0: OK"
