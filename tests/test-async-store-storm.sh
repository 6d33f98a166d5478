#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter, async-store-file: SIGKILL in the middle of a write
# storm.  A client keeps 16 writes and zeroes in flight (never two
# overlapping ones at once) while writers write back and retire records;
# it SIGKILLs nbdkit after a random number of requests and records which
# were acknowledged.  After a restart with the same store file and a clean
# stop: every acknowledged write is on the image; each byte of a request
# that was in flight is either old or new.  Three rounds; small
# async-max-dirty, so that slots are reused.  ABD_TEST_NO_STORE=1 runs it
# without the file (must fail).

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-helpers.sh"

size=$(( 16 * 1024 * 1024 ))
store=$tmp/async.store
store_args=(async-store-file="$store")
[ -z "${ABD_TEST_NO_STORE:-}" ] || store_args=()

cat > "$tmp/storm.py" <<'EOF2'
import nbd, os, pickle, random, signal, sys
from abdtest.workload import connect
seed = int(sys.argv[1])
rnd = random.Random(seed)
h = connect()
model = bytearray(open(os.environ["DISK"], "rb").read())
kill_at = rnd.randrange(300, 1500)
inflight = {}                  # cookie -> (offset, new bytes)
def reap():
    for c in list(inflight):
        if h.aio_command_completed(c):
            off, data = inflight.pop(c)
            model[off:off+len(data)] = data
def overlaps(off, n):
    return any(o < off + n and off < o + len(d) for o, d in inflight.values())
for i in range(kill_at):
    if rnd.randrange(5) == 0:
        n = rnd.choice([4096, 65536, 1 << 20]); off = rnd.randrange(0, (len(model) - n) // 4096) * 4096
        data = bytes(n)
    else:
        n = rnd.choice([1, 512, 4096, 5000, 65536]); off = rnd.randrange(0, len(model) - n)
        data = rnd.randbytes(n)
    while len(inflight) >= 16 or overlaps(off, n):
        h.poll(-1); reap()
    if any(data):
        c = h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(data)), off)
    else:
        c = h.aio_zero(n, off)
    inflight[c] = (off, data)
    reap()
os.kill(int(os.environ["NBDKIT_PID"]), signal.SIGKILL)
open(os.environ["EXPECTED"], "wb").write(model)
pickle.dump(list(inflight.values()), open(os.environ["INFLIGHT"], "wb"))
print("killed after %d requests, %d in flight" % (kill_at, len(inflight)))
EOF2

cat > "$tmp/check.py" <<'EOF2'
import os, pickle, sys
disk = open(os.environ["DISK"], "rb").read()
want = bytearray(open(os.environ["EXPECTED"], "rb").read())
for off, data in pickle.load(open(os.environ["INFLIGHT"], "rb")):
    for i in range(len(data)):      # either is fine: take what is there
        if disk[off+i] == data[i]:
            want[off+i] = data[i]
if disk != want:
    i = next(i for i in range(len(disk)) if disk[i] != want[i])
    sys.exit("byte %d is %d, an acknowledged write put %d there" % (i, disk[i], want[i]))
EOF2

export DISK=$tmp/disk EXPECTED=$tmp/expected INFLIGHT=$tmp/inflight
for round in 1 2 3; do
    make_random "$tmp/disk" $size $round
    rm -f "$store"
    async_start storm$round --filter="$ASYNC_FILTER" file "$tmp/disk" \
        async-max-dirty=4M "${store_args[@]+"${store_args[@]}"}"
    export uri NBDKIT_PID=$pid
    "$PY" "$tmp/storm.py" $round || fail "round $round: the storm failed"
    wait "$pid" || true
    async_start after$round --filter="$ASYNC_FILTER" file "$tmp/disk" \
        async-max-dirty=4M "${store_args[@]+"${store_args[@]}"}"
    stop_nbdkit "$pid"
    "$PY" "$tmp/check.py" || fail "round $round: an acknowledged write is missing"
done
echo "$0: OK"
