#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter: a normal stop writes everything back.  Data that is
# dirty when nbdkit gets SIGTERM or SIGINT, or when a --run command ends,
# is on the lower file, byte-exact, when nbdkit has exited (with status 0).
# Filters below that sleep (delay, rate, retry): test-async-drain-stop.sh.

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
"$ABDCTL" -s "$ctl" --raw status > "$tmp/run-status"
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

echo "$0: OK"
