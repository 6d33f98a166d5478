#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter: SIGTERM, SIGINT and the end of a --run command write
# every dirty byte back, and flush, before nbdkit starts shutting down, so
# filters below that sleep through nbdkit (delay, rate, retry,
# retry-request: nbdkit_nanosleep refuses to sleep once nbdkit is quitting)
# do not make the drain fail:
# - for each of them below the filter, over the file plugin: data dirty
#   in RAM, SIGTERM (SIGINT for one), nbdkit exits 0 within the deadline,
#   the file is byte-exact, the log has no "LOST" and no aborted sleep;
# - a slow drain (delay-write=50ms, one writer, many scattered blocks):
#   `abdctl status` shows draining: 1 and mode sync (draining); a second
#   SIGTERM and a SIGINT do not stop nbdkit early; a client write made
#   meanwhile goes through (on the file when it returns); the file is
#   exact at the end;
# - --run over the delay filter: exact when nbdkit returns.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-helpers.sh"
requires timeout

size=$(( 16 * 1024 * 1024 ))

# write.py SEED COUNT SIZE GAP: COUNT random writes of SIZE bytes, GAP
# bytes apart from a random start, to $uri; the image ($DISK's content
# before) is saved as $EXPECTED.
cat > "$tmp/write.py" <<'EOF'
import os, random, sys
from abdtest.workload import connect
seed, count, n, gap = map(int, sys.argv[1:5])
rnd = random.Random(seed)
h = connect()
model = bytearray(open(os.environ["DISK"], "rb").read())
start = rnd.randrange(0, (len(model) - count * gap) // 4096) * 4096
for i in range(count):
    off = start + i * gap
    data = rnd.randbytes(n)
    h.pwrite(data, off)
    model[off:off+n] = data
h.flush()           # async mode: acknowledged from RAM, still dirty
h.shutdown()
open(os.environ["EXPECTED"], "wb").write(model)
EOF

# exited_ok: wait (with a deadline) for nbdkit $pid to exit, with status 0,
# leaving the file exact and the log clean.
exited_ok ()
{
    local what=$1 rc=0 t0=$SECONDS
    timeout 120 tail --pid="$pid" -f /dev/null || fail "$what: nbdkit did not exit"
    echo "$what: nbdkit exited $(( SECONDS - t0 )) s after the signal"
    wait "$pid" || rc=$?
    [ "$rc" -eq 0 ] || fail "$what: nbdkit exited with status $rc"
    cmp "$tmp/disk" "$tmp/expected" ||
        fail "$what: after exit the file differs: $(first_diff "$tmp/disk" "$tmp/expected")"
    ! grep -E "LOST|aborting sleep" "$log" || fail "$what: data lost or a sleep aborted"
}

# stop_case NAME SIGNAL FILTERS PARAM...: 4 MiB dirty in 64K writes, with
# FILTERS (words) between the async filter and the file plugin, then
# SIGNAL.
stop_case ()
{
    local name=$1 sig=$2 filters=$3 f; shift 3
    local args=(--filter="$ASYNC_FILTER")
    for f in $filters; do args+=(--filter="$f"); done
    make_random "$tmp/disk" $size "${#name}"
    ctl=$tmp/$name.ctl
    async_start "$name" "${args[@]}" file "$tmp/disk" "$@" \
        async-control="$ctl" async-writeback-delay=60000 async-exit-timeout=10
    export uri DISK=$tmp/disk EXPECTED=$tmp/expected
    "$PY" "$tmp/write.py" "${#name}" 64 65536 65536 || fail "$name: writes failed"
    [ "$(st "$ctl" dirty_bytes)" -gt 0 ] || fail "$name: nothing dirty"
    [ "$(st "$ctl" written_back_bytes)" -eq 0 ] || fail "$name: written back early"
    kill -"$sig" "$pid"
    exited_ok "$name"
}

stop_case delay TERM delay delay-write=10ms
stop_case rate INT rate rate=8M
# The retry filters sleep only after a failed write: the error filter
# below them fails 30% of the writes.
stop_case retry TERM "retry error" retry-delay=1 retry-exponential=no \
    error-pwrite=EIO error-pwrite-rate=30%
stop_case retry-request TERM "retry-request error" retry-request-delay=1 \
    retry-request-retries=5 error-pwrite=EIO error-pwrite-rate=30%

# A slow drain: 150 scattered 4K blocks, 50 ms each, one at a time.
make_random "$tmp/disk" $size 7
ctl=$tmp/slow.ctl
async_start slow --filter="$ASYNC_FILTER" --filter=delay file "$tmp/disk" \
    delay-write=50ms async-writers=1 async-control="$ctl" \
    async-writeback-delay=60000
export uri DISK=$tmp/disk EXPECTED=$tmp/expected
"$PY" "$tmp/write.py" 7 150 4096 16384 || fail "slow: writes failed"
kill -TERM "$pid"
wait_for 20 bash -c '[ "$("$ABDCTL" -s "$1" --raw status | grep "^draining:")" = "draining: 1" ]' \
    _ "$ctl" || fail "slow: abdctl status does not show draining: 1"
[ "$(st "$ctl" mode)" = sync ] && [ "$(st "$ctl" mode_reason)" = draining ] ||
    fail "slow: draining, but mode $(st "$ctl" mode) ($(st "$ctl" mode_reason))"
kill -TERM "$pid"
kill -INT "$pid"
sleep 0.5
kill -0 "$pid" || fail "slow: a second signal stopped nbdkit before the drain"
[ "$(st "$ctl" dirty_bytes)" -gt 0 ] || fail "slow: drained too fast to test (test bug)"
# A client write while draining: through to the file when it returns.
"$PY" - "$tmp/expected" <<'EOF' || fail "slow: a write while draining"
import os, sys
from abdtest.workload import connect
h = connect()
off, data = 15 << 20, os.urandom(8192)        # not among the dirty blocks
h.pwrite(data, off)
with open(os.environ["DISK"], "rb") as f:
    f.seek(off)
    if f.read(len(data)) != data:
        sys.exit("the write is not on the file when it returns")
with open(sys.argv[1], "r+b") as f:
    f.seek(off)
    f.write(data)
h.shutdown()
EOF
exited_ok slow

# --run: the end of the command is a SIGTERM to the serving nbdkit.
make_random "$tmp/disk" $size 8
log=$tmp/run.log
rc=0
unset uri
DISK=$tmp/disk EXPECTED=$tmp/expected timeout 120 nbdkit -U "$tmp/run.sock" \
    --filter="$ASYNC_FILTER" --filter=delay file "$tmp/disk" delay-write=10ms \
    async-control="$tmp/run.ctl" async-writeback-delay=60000 \
    --run "uri=\$uri \"$PY\" \"$tmp/write.py\" 8 64 65536 65536 &&
           \"$ABDCTL\" -s \"$tmp/run.ctl\" --raw status > \"$tmp/run-status\"" \
    2>"$log" || rc=$?
[ "$rc" -eq 0 ] || { cat "$log" >&2; fail "--run: nbdkit exited with status $rc"; }
grep -q "^dirty_bytes: [1-9]" "$tmp/run-status" ||
    fail "--run: nothing was dirty when the command ended"
cmp "$tmp/disk" "$tmp/expected" || fail "--run: the file differs"
! grep -E "LOST|aborting sleep" "$log" || fail "--run: data lost or a sleep aborted"
echo "$0: OK"
