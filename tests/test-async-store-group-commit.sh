#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter, async-flush=store: concurrent flushes share commits
# (group commit).  8 connections each write a 4K block and flush, 40
# times, at once; the store file is on this machine's disk ($TMPDIR,
# /var/tmp), so a commit's fdatasync takes long enough for flushes to
# pile up behind it.  Every flush must succeed, the device must read
# back byte-exact, and store_commits must be well below the 320 flushes
# (one commit per flush would be 320).

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-helpers.sh"

size=$(( 8 * 1024 * 1024 ))
make_random "$tmp/disk" $size 3
cp "$tmp/disk" "$tmp/expected"
async_start gc --filter="$ASYNC_FILTER" file "$tmp/disk" \
    async-max-dirty=4M async-writeback-delay=60000 \
    async-store-file="$tmp/gc.store" async-flush=store \
    async-control="$tmp/ctl"
export uri EXPECTED=$tmp/expected
"$PY" - <<'EOF2' || fail "the clients failed"
import os, random, threading
import nbd
uri, expected = os.environ["uri"], os.environ["EXPECTED"]
errors, writes = [], {}
lock = threading.Lock()
def client(c):
    try:
        h = nbd.NBD()
        h.connect_uri(uri)
        rnd = random.Random(c)
        for i in range(40):
            blk = c * 256 + rnd.randrange(256)      # its own blocks
            data = rnd.randbytes(4096)
            h.pwrite(data, blk * 4096)
            h.flush()
            with lock:
                writes[blk] = data
        h.shutdown()
    except Exception as e:
        errors.append(e)
threads = [threading.Thread(target=client, args=(c,)) for c in range(8)]
for t in threads: t.start()
for t in threads: t.join()
assert not errors, errors
with open(expected, "r+b") as f:
    for blk, data in writes.items():
        f.seek(blk * 4096); f.write(data)
EOF2
commits=$(st "$tmp/ctl" store_commits)
echo "320 flushes, $commits commits"
[ "$commits" -ge 1 ] || fail "no commit"
[ "$commits" -le 240 ] || fail "$commits commits for 320 flushes: flushes do not share commits"
"$PY" -m abdtest check --uri "$uri" --expected "$tmp/expected" ||
    fail "read through NBD differs"
stop_nbdkit "$pid"
cmp "$tmp/disk" "$tmp/expected" || fail "after a clean stop the image differs"
echo "$0: OK"
