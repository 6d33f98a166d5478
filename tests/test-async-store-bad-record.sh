#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter, async-store-file: a store file whose records
# cannot be trusted is refused at start with a clear message, in the
# foreground and forking, and neither the image nor the file changes: a
# truncated file, a record whose block has a flipped byte.  abdctl
# store-info refuses the damaged record too.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-store-helpers.sh"

store_make_dirty

cp "$good" "$tmp/short.store"
truncate -s $(( $(stat -c %s "$good") / 2 )) "$tmp/short.store"
store_refused short "truncated"

cp "$good" "$tmp/record.store"
# The first record copy with a sequence number: flip a byte of its block.
"$PY" - "$tmp/record.store" <<'EOF2'
import struct, sys
f = open(sys.argv[1], "r+b"); d = f.read()
for i in range(4096, 4096 + 65536, 32):
    if struct.unpack_from("<Q", d, i)[0]:
        f.seek(i + 8); f.write(bytes([d[i + 8] ^ 1])); break
EOF2
store_refused record "damaged \(a record's checksum"
! abdctl store-info "$tmp/record.store" || fail "store-info accepts a damaged record"
echo "$0: OK"
