#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter, async-store-file: dirty data outlives SIGKILL.
# Writes, zeroes and trims stay dirty (async-writeback-delay=60000);
# nbdkit is SIGKILLed; abdctl store-info shows the data in the file; a new
# nbdkit with the same file writes it all back and flushes before it
# serves: the image is byte-exact through NBD at once, and on the file
# after a clean stop; the store file is clean then.
# ABD_TEST_NO_STORE=1 runs the same steps without the file (must fail);
# ABD_TEST_RESTART_WRITE_SIZE=4K restarts with smaller writes
# (test-async-store-kill-smaller.sh); ABD_TEST_FLUSH_STORE=1 runs both
# starts with async-flush=store (test-async-store-kill-durable.sh): the
# kill comes after a flush, so the last commit holds everything.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-helpers.sh"

size=$(( 16 * 1024 * 1024 ))
store=$tmp/async.store
store_args=(async-store-file="$store" async-store-id=test-disk)
[ -z "${ABD_TEST_NO_STORE:-}" ] || store_args=()
[ -z "${ABD_TEST_FLUSH_STORE:-}" ] || store_args+=(async-flush=store)
make_random "$tmp/disk" $size 1
cp "$tmp/disk" "$tmp/expected"

async_start one --filter="$ASYNC_FILTER" file "$tmp/disk" \
    async-max-dirty=32M async-writeback-delay=60000 async-write-size=32M async-control="$tmp/ctl" \
    "${store_args[@]+"${store_args[@]}"}"
export uri EXPECTED=$tmp/expected
"$PY" - <<'EOF2' || fail "client writes failed"
import os, random
from abdtest.device import Device
from abdtest.workload import connect, random_writes
rnd = random.Random(5)
h = connect()
dev = Device(base=os.environ["EXPECTED"])
random_writes(h, dev, rnd, 300, sizes=[1, 512, 4096, 5000, 65536], hot=1 << 20)
for off, n in ((1 << 20, 3 << 20), ((6 << 20) + 100, 70000)):
    h.zero(n, off); dev.zero(off, n)
data = rnd.randbytes(10000)          # a write into a zeroed range
h.pwrite(data, (2 << 20) + 7); dev.write((2 << 20) + 7, data)
h.flush()
h.shutdown()
dev.save(os.environ["EXPECTED"])
EOF2
[ "$(st "$tmp/ctl" written_back_bytes)" -eq 0 ] || fail "written back early"
kill -KILL "$pid"
wait "$pid" || true
cmp -s "$tmp/disk" "$tmp/expected" && fail "test bug: the image is exact before the restart"
if [ -z "${ABD_TEST_NO_STORE:-}" ]; then
    abdctl store-info "$store" > "$tmp/info" || fail "store-info failed"
    grep -q "^state: dirty" "$tmp/info" || fail "store-info: not dirty"
    grep -q "^device_id: test-disk" "$tmp/info" || fail "store-info: no id"
fi

# The restart: the image is exact for the first client already.  nbdkit
# 1.32 makes its socket and pidfile before .after_fork, where the filter
# writes the file back, and accepts the first connection after it: so
# the file is compared once a client is connected, not when the socket
# appears.
async_start two --filter="$ASYNC_FILTER" file "$tmp/disk" \
    async-max-dirty=32M async-writeback-delay=60000 \
    async-write-size="${ABD_TEST_RESTART_WRITE_SIZE:-32M}" \
    "${store_args[@]+"${store_args[@]}"}"
# nbdkit 1.32 listens before the store file is replayed (.after_fork):
# the image is compared once a client has been served.
"$PY" -m abdtest check --uri "$uri" --expected "$tmp/expected" ||
    fail "read through NBD differs"
cmp -s "$tmp/disk" "$tmp/expected" ||
    fail "after the restart the image differs: $(first_diff "$tmp/disk" "$tmp/expected")"
stop_nbdkit "$pid"
cmp "$tmp/disk" "$tmp/expected" || fail "after a clean stop the image differs"
abdctl store-info "$store" | grep -q "^state: clean" || fail "store not clean"
grep -q "holds .* bytes .* acknowledged by an earlier process" "$log" ||
    fail "no message about the replay"
echo "$0: OK"
