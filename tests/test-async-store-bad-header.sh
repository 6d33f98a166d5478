#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter, async-store-file: a store file whose header cannot
# be trusted is refused at start with a clear message, in the foreground
# and forking, and neither the image nor the file changes: random bytes
# in the header, an unknown version, another magic.  abdctl store-info
# refuses the damaged header too.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-store-helpers.sh"

store_make_dirty

cp "$good" "$tmp/header.store"
"$PY" -c 'import os,sys; f=open(sys.argv[1],"r+b"); f.seek(40); f.write(os.urandom(64))' \
    "$tmp/header.store"
store_refused header "header is damaged"
! abdctl store-info "$tmp/header.store" || fail "store-info accepts a damaged header"

cp "$good" "$tmp/version.store"
printf '\x04' | dd of="$tmp/version.store" bs=1 seek=8 conv=notrunc status=none
store_refused version "unknown store file version 4"

cp "$good" "$tmp/magic.store"
printf 'XXXX' | dd of="$tmp/magic.store" bs=1 seek=0 conv=notrunc status=none
store_refused magic "not an abd store file"
echo "$0: OK"
