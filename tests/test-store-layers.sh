#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The dirty store's files are layers (filters/async/store/store-impl.h):
# follow client requests through the code call by call (tests/store-trace,
# tests/store_trace.py) and require every call between two files to go
# down a layer; and require that no file of the store includes a header
# of a layer above it (nbdkit, the filter's files, or, for the lowest
# layer, the store's own).  Prints the path of each request: stops,
# files, and returns to a file already visited.

source "${abs_top_srcdir:-.}/tests/functions.sh"
requires addr2line python3

store="$abs_top_srcdir/filters/async/store"
trace="$abs_top_builddir/tests/store-trace"

python3 "$abs_top_srcdir/tests/store_trace.py" "$trace" "$store" --layers \
    new4k new4k+file over4k partial seq64k zero64k > "$tmp/trace" ||
    { cat "$tmp/trace"; fail "a call goes up or across the store's layers"; }
cat "$tmp/trace"

# The store uses nothing of nbdkit nor of the filter around it.
for f in "$store"/*.[ch]; do
    grep -H '^#include "' "$f" || true
done > "$tmp/includes"
allowed='store.h|store-impl.h|store-block.h|drainrate.h|storefile.h|storelock.h|privfile.h'
if grep -Ev "#include \"($allowed)\"" "$tmp/includes"; then
    fail "a store file includes a header from outside the store"
fi
if grep -nE '#include <nbdkit|nbdkit_[a-z_]+ \(' "$store"/*.[ch]; then
    fail "the store uses nbdkit"
fi
# The lowest layer includes no header of the store above it.
for f in storefile.c storefile.h drainrate.c drainrate.h storelock.c storelock.h store-block.h; do
    if grep -E '#include "(store|store-impl)\.h"' "$store/$f"; then
        fail "$f (the lowest layer) includes a header of a layer above"
    fi
done
echo "$0: OK"
