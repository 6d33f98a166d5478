#!/usr/bin/env bash
# nbdkit-async-filter: a normal stop writes everything back.  Data that is
# dirty when nbdkit gets SIGTERM or SIGINT, or when a --run command ends,
# is on the lower file, byte-exact, when nbdkit has exited (with status 0).
# Over a lower layer that cannot sleep at shutdown (the delay filter),
# `abdctl flush` first keeps that promise, and a loss without it is loud.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-helpers.sh"
requires timeout

size=$(( 16 * 1024 * 1024 ))

# write.py SEED: random writes (several sizes, overlapping, unaligned) to
# $uri, starting from the image $BASE; the resulting image is saved as
# $EXPECTED.
cat > "$tmp/write.py" <<'EOF'
import nbd, os, random, sys
rnd = random.Random(int(sys.argv[1]))
h = nbd.NBD(); h.connect_uri(os.environ["uri"])
size = h.get_size()
model = bytearray(open(os.environ["BASE"], "rb").read())
assert len(model) == size
for i in range(600):
    count = rnd.choice([1, 100, 4096, 5000, 65536, 300000, 1 << 20])
    if i % 2:
        offset = rnd.randrange(0, 1 << 20)          # overlapping
    else:
        offset = rnd.randrange(0, size - count + 1)
    offset = min(offset, size - count)
    data = rnd.randbytes(count)
    h.pwrite(data, offset)
    model[offset:offset+count] = data
h.flush()           # async mode: acknowledged from RAM, still dirty
h.shutdown()
open(os.environ["EXPECTED"], "wb").write(model)
EOF

# One round: start the filter with a long writeback delay, write, check
# that the data is dirty (and not on the file), stop nbdkit with SIGNAL,
# check the exit status and the file.
stop_with ()
{
    local sig=$1 seed=$2 rc
    make_random "$tmp/disk" $size "$seed"
    cp "$tmp/disk" "$tmp/base"
    ctl=$tmp/ctl-$sig.sock
    async_start "sd-$sig" --filter="$ASYNC_FILTER" file "$tmp/disk" \
        async-control="$ctl" async-writeback-delay=60000 async-write-size=32M
    export uri BASE=$tmp/base EXPECTED=$tmp/expected
    "$PY" "$tmp/write.py" "$seed" || fail "$sig: writes failed"
    [ "$(st "$ctl" dirty_bytes)" -gt 0 ] || fail "$sig: nothing dirty before $sig"
    [ "$(st "$ctl" written_back_bytes)" -eq 0 ] ||
        fail "$sig: data was written back before $sig"
    cmp -s "$tmp/disk" "$tmp/base" || fail "$sig: the file changed before $sig"

    kill -"$sig" "$pid"
    rc=0
    timeout 60 tail --pid="$pid" -f /dev/null || fail "$sig: nbdkit did not exit"
    wait "$pid" || rc=$?
    [ "$rc" -eq 0 ] || fail "$sig: nbdkit exited with status $rc"
    [ ! -e "$ctl" ] || fail "$sig: the control socket was not removed at exit"
    cmp "$tmp/disk" "$tmp/expected" ||
        fail "$sig: after exit the file differs: $(first_diff "$tmp/disk" "$tmp/expected")"
    ! grep -q LOST "$log" || fail "$sig: nbdkit logged lost data"
}

stop_with TERM 11
stop_with INT 12

# --run: the command writes, checks that its data is dirty, and ends;
# nbdkit then drains and exits.  The image is right when nbdkit returns.
make_random "$tmp/disk" $size 13
cp "$tmp/disk" "$tmp/base"
ctl=$tmp/ctl-run.sock
cat > "$tmp/run.sh" <<EOF
set -e
"$PY" "$tmp/write.py" 13
"$ABDCTL" -s "$ctl" status > "$tmp/run-status"
EOF
export BASE=$tmp/base EXPECTED=$tmp/expected
unset uri
rc=0
timeout 60 nbdkit -U "$tmp/run.sock" --filter="$ASYNC_FILTER" file "$tmp/disk" \
    async-control="$ctl" async-writeback-delay=60000 async-write-size=32M \
    --run "uri=\$uri bash $tmp/run.sh" 2>"$tmp/run.log" || rc=$?
cat "$tmp/run.log" >&2
[ "$rc" -eq 0 ] || fail "--run: nbdkit exited with status $rc"
dirty=$(awk '$1 == "dirty_bytes:" { print $2 }' "$tmp/run-status")
[ "${dirty:-0}" -gt 0 ] || fail "--run: nothing was dirty when the command ended"
cmp "$tmp/disk" "$tmp/expected" ||
    fail "--run: after nbdkit returned the file differs: $(first_diff "$tmp/disk" "$tmp/expected")"
[ ! -e "$ctl" ] || fail "--run: the control socket was not removed"

# A lower layer that sleeps through nbdkit (the delay filter, as in
# scripts/bench): once nbdkit is shutting down nbdkit_nanosleep refuses to
# sleep, so write-backs through it fail during the exit drain (documented
# in nbdkit-async-filter(1), "Shutdown").  The documented way: `abdctl
# flush` before the stop, which must leave the file exact.  And without
# it, data may be lost only loudly: if the file differs, the log says how
# many bytes.
make_random "$tmp/disk" $size 14
cp "$tmp/disk" "$tmp/base"
ctl=$tmp/ctl-delay.sock
async_start sd-delay --filter="$ASYNC_FILTER" --filter=delay file "$tmp/disk" \
    delay-write=10ms async-control="$ctl" async-writeback-delay=60000 \
    async-write-size=32M async-exit-timeout=3
export uri BASE=$tmp/base EXPECTED=$tmp/expected
"$PY" "$tmp/write.py" 14 || fail "delay: writes failed"
[ "$(st "$ctl" dirty_bytes)" -gt 0 ] || fail "delay: nothing dirty before the flush"
abdctl -s "$ctl" flush 60 >/dev/null || fail "delay: abdctl flush failed"
kill -TERM "$pid"
timeout 60 tail --pid="$pid" -f /dev/null || fail "delay: nbdkit did not exit"
wait "$pid" || fail "delay: nbdkit exited with status $?"
cmp "$tmp/disk" "$tmp/expected" ||
    fail "delay: flush, then SIGTERM: the file differs"

make_random "$tmp/disk" $size 15
cp "$tmp/disk" "$tmp/base"
ctl=$tmp/ctl-delay2.sock
async_start sd-delay2 --filter="$ASYNC_FILTER" --filter=delay file "$tmp/disk" \
    delay-write=10ms async-control="$ctl" async-writeback-delay=60000 \
    async-write-size=32M async-exit-timeout=3
"$PY" "$tmp/write.py" 15 || fail "delay 2: writes failed"
dirty=$(st "$ctl" dirty_bytes)
kill -TERM "$pid"
timeout 60 tail --pid="$pid" -f /dev/null || fail "delay 2: nbdkit did not exit"
wait "$pid" || true
if ! cmp -s "$tmp/disk" "$tmp/expected"; then
    grep -q "error: async: .* $dirty bytes of acknowledged writes could NOT be written and are LOST" "$log" ||
        fail "delay 2: the file differs and the log does not say $dirty bytes were lost"
    echo "delay 2: SIGTERM over the delay filter lost $dirty bytes, loudly (documented)"
fi
echo "$0: OK"
