#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter: a failing lower device.  Errors are injected BELOW
# the async filter (--filter=ASYNC --filter=error: the first is nearest the
# client), only while a trigger file exists.
#
# 1. Lower writes fail: lower_write_errors grows, the data stays dirty and
#    reads back right through the filter, nothing reaches the file,
#    `abdctl flush` fails (exit 1), client flushes return EIO in async and
#    sync mode.  Trigger removed: the data drains, `abdctl flush` succeeds,
#    the file equals the expected image, client flushes succeed again.
# 2. Lower flushes fail (the error filter of nbdkit 1.32 cannot inject
#    flush errors, so the lower device is an eval-plugin file whose flush
#    fails while a trigger exists; async-write-size=1M keeps the number of
#    dd processes it runs per retry small): lower_flush_errors grows, the data stays
#    dirty, `abdctl flush` and client flushes fail; trigger removed: drains,
#    file exact.
# 3. Shutdown while the lower device keeps failing, async-exit-timeout=2:
#    nbdkit exits and logs how many bytes were lost.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-helpers.sh"

# The NBD client: each command prints one line and exits 0 unless the
# result was not what the test asked for.
#   write SEED    seeded writes (aligned, unaligned, last block); applies
#                 them to $EXPECTED too; prints the bytes of the 4K blocks
#                 touched
#   overwrite SEED  rewrites the first of those writes (1 MiB at 1 MiB)
#   flush         prints "ok" or the errno name of the failure
#   pwrite OFF LEN  prints "ok" or the errno name (data: 0x5a; applied to
#                 $EXPECTED only when it succeeded)
#   compare       reads the whole export, must equal $EXPECTED
cat > "$tmp/client.py" <<'EOF'
import nbd, os, random, sys
h = nbd.NBD()
h.connect_uri(os.environ["uri"])
size = h.get_size()
exp_path = os.environ["EXPECTED"]
cmd = sys.argv[1]

def apply(off, data):
    with open(exp_path, "r+b") as f:
        f.seek(off)
        f.write(data)

def writes(seed):
    rnd = random.Random(seed)
    return [(1 << 20, rnd.randbytes(1 << 20)),
            (3 * (1 << 20) + 100, rnd.randbytes(10000)),
            (size - 4096, rnd.randbytes(4096))]

if cmd in ("write", "overwrite"):
    ws = writes(int(sys.argv[2]))
    if cmd == "overwrite":
        ws = ws[:1]
    blocks = set()
    for off, data in ws:
        h.pwrite(data, off)
        apply(off, data)
        blocks.update(range(off // 4096, (off + len(data) - 1) // 4096 + 1))
    print(len(blocks) * 4096)
elif cmd == "flush":
    try:
        h.flush()
        print("ok")
    except nbd.Error as e:
        print(e.errno)
elif cmd == "pwrite":
    off, n = int(sys.argv[2]), int(sys.argv[3])
    data = b"\x5a" * n
    try:
        h.pwrite(data, off)
        apply(off, data)
        print("ok")
    except nbd.Error as e:
        print(e.errno)
elif cmd == "compare":
    exp = open(exp_path, "rb").read()
    got = bytearray()
    for off in range(0, size, 1 << 20):
        got += h.pread(min(1 << 20, size - off), off)
    if bytes(got) != exp:
        i = next(i for i in range(size) if got[i] != exp[i])
        sys.exit("read through the filter differs from the expected "
                 "image at byte %d" % i)
    print("same")
h.shutdown()
EOF
client () { "$PY" "$tmp/client.py" "$@"; }

# For wait_for (which needs a command, re-run each time).
field_gt () { [ "$(st "$1" "$2")" -gt "$3" ]; }
field_eq () { [ "$(st "$1" "$2")" -eq "$3" ]; }

size=$(( 8 * 1024 * 1024 ))

#----------------------------------------------------------------------
# 1. Lower write errors.

truncate -s $size "$tmp/img"
cp "$tmp/img" "$tmp/pristine"
cp "$tmp/img" "$tmp/expected"
export EXPECTED=$tmp/expected
ctl=$tmp/w.ctl
async_start w --filter="$ASYNC_FILTER" --filter=error file "$tmp/img" \
    error-pwrite=EIO error-pwrite-rate=1 error-pwrite-file="$tmp/fail" \
    async-control="$ctl" async-writeback-delay=0 async-exit-timeout=5
export uri

touch "$tmp/fail"
dirty=$(client write 1) || fail "client writes failed (they should go to RAM)"
echo "wrote $dirty bytes of blocks with the lower device failing"

wait_for 10 field_gt "$ctl" lower_write_errors 0 ||
    fail "no lower_write_errors while the lower device fails"
e1=$(st "$ctl" lower_write_errors)
wait_for 15 field_gt "$ctl" lower_write_errors "$e1" ||
    fail "lower_write_errors does not grow (no retries?): stays $e1"
[ "$(st "$ctl" dirty_bytes)" -eq "$dirty" ] ||
    fail "dirty_bytes $(st "$ctl" dirty_bytes), expected $dirty: data dropped?"
[ "$(st "$ctl" failed_bytes)" -gt 0 ] || fail "failed_bytes is 0"
[ "$(st "$ctl" written_back_bytes)" -eq 0 ] ||
    fail "written_back_bytes is not 0 although every lower write fails"
cmp -s "$tmp/img" "$tmp/pristine" ||
    fail "the file changed although every lower write fails (error filter not below?)"
client compare >/dev/null || fail "reads with a failing lower device"

out=$(abdctl -s "$ctl" flush 2 2>&1) && fail "abdctl flush succeeded with failed writes"
rc=$?
[ $rc -eq 1 ] || fail "abdctl flush: exit $rc, expected 1 ($out)"
echo "abdctl flush: $out"
[ "$(client flush)" = EIO ] || fail "async mode: client flush did not return EIO"

abdctl -s "$ctl" mode sync >/dev/null
[ "$(st "$ctl" mode)" = sync ] || fail "mode sync did not switch"
[ "$(client flush)" = EIO ] || fail "sync mode: client flush did not return EIO"
# Sync mode: a write to a dirty range is made in RAM; one to a clean range
# goes through to the failing lower device and fails.
[ "$(client pwrite $(( 1024*1024 + 4096 )) 4096)" = ok ] ||
    fail "sync mode: a write to a dirty range failed"
[ "$(client pwrite $(( 5*1024*1024 )) 4096)" = EIO ] ||
    fail "sync mode: a write-through to the failing lower device did not fail"
abdctl -s "$ctl" mode async >/dev/null
# A rewrite of failed dirty data is still kept.
client overwrite 2 >/dev/null
[ "$(st "$ctl" dirty_bytes)" -eq "$dirty" ] ||
    fail "dirty_bytes $(st "$ctl" dirty_bytes) after rewrites, expected $dirty"
client compare >/dev/null || fail "reads after rewrites with a failing lower device"
cmp -s "$tmp/img" "$tmp/pristine" || fail "the file changed while writes fail"

# The lower device recovers.
rm "$tmp/fail"
wait_for 30 field_eq "$ctl" dirty_bytes 0 ||
    fail "dirty data did not drain after the lower device recovered"
abdctl -s "$ctl" flush 10 || fail "abdctl flush failed after recovery"
[ "$(st "$ctl" failed_bytes)" -eq 0 ] || fail "failed_bytes not 0 after recovery"
cmp "$tmp/img" "$tmp/expected" ||
    fail "file differs from the expected image after recovery: $(first_diff "$tmp/img" "$tmp/expected")"
[ "$(client flush)" = ok ] || fail "async mode: client flush fails after recovery"
abdctl -s "$ctl" mode sync >/dev/null
[ "$(client flush)" = ok ] || fail "sync mode: client flush fails after recovery"
client compare >/dev/null || fail "reads after recovery"
echo "write errors: $(st "$ctl" lower_write_errors) lower write errors, recovered"
stop_nbdkit "$pid"
cmp "$tmp/img" "$tmp/expected" || fail "file differs after stop"

#----------------------------------------------------------------------
# 2. Lower flush errors.

truncate -s $size "$tmp/img2"
cp "$tmp/img2" "$tmp/expected"
ctl=$tmp/f.ctl
f=$tmp/img2
async_start f --filter="$ASYNC_FILTER" eval \
    get_size="stat -Lc %s $f" \
    pread="dd if=$f skip=\$4 count=\$3 iflag=skip_bytes,count_bytes bs=64k status=none" \
    pwrite="dd of=$f seek=\$4 conv=notrunc oflag=seek_bytes iflag=fullblock bs=64k status=none" \
    flush="if [ -e $tmp/failflush ]; then echo 'EIO injected flush error' >&2; exit 1; fi" \
    async-control="$ctl" async-writeback-delay=0 async-exit-timeout=5 \
    async-write-size=1M

touch "$tmp/failflush"
dirty=$(client write 3) || fail "client writes failed"
wait_for 10 field_gt "$ctl" lower_flush_errors 0 ||
    fail "no lower_flush_errors while lower flushes fail"
e1=$(st "$ctl" lower_flush_errors)
wait_for 15 field_gt "$ctl" lower_flush_errors "$e1" ||
    fail "lower_flush_errors does not grow: stays $e1"
[ "$(st "$ctl" dirty_bytes)" -eq "$dirty" ] ||
    fail "dirty_bytes $(st "$ctl" dirty_bytes) with failing flushes, expected $dirty"
[ "$(st "$ctl" lower_write_errors)" -eq 0 ] || fail "lower write errors?"
wait_for 15 field_gt "$ctl" failed_bytes 0 ||
    fail "failed_bytes never > 0 while lower flushes fail"
client compare >/dev/null || fail "reads with failing lower flushes"
out=$(abdctl -s "$ctl" flush 2 2>&1) && fail "abdctl flush succeeded with failing lower flushes"
rc=$?
[ $rc -eq 1 ] || fail "abdctl flush: exit $rc, expected 1 ($out)"
echo "abdctl flush: $out"

# Async mode: every client flush fails while the data is not on the lower
# device (retried writes may succeed meanwhile; the lower flushes do not).
for i in 1 2 3 4 5 6 7 8 9 10; do
    r=$(client flush)
    [ "$r" = EIO ] ||
        fail "async mode: client flush $i of 10 returned '$r', not EIO, while lower flushes fail"
    sleep 0.3
done
echo "async-mode client flush: EIO 10 times of 10"
abdctl -s "$ctl" mode sync >/dev/null
[ "$(client flush)" = EIO ] || fail "sync mode: client flush did not return EIO"
abdctl -s "$ctl" mode async >/dev/null

rm "$tmp/failflush"
wait_for 30 field_eq "$ctl" dirty_bytes 0 ||
    fail "dirty data did not drain after lower flushes recovered"
abdctl -s "$ctl" flush 10 || fail "abdctl flush failed after recovery"
[ "$(st "$ctl" lower_flushes)" -gt 0 ] || fail "lower_flushes is 0"
cmp "$tmp/img2" "$tmp/expected" ||
    fail "file differs after flush recovery: $(first_diff "$tmp/img2" "$tmp/expected")"
[ "$(client flush)" = ok ] || fail "client flush fails after flush recovery"
echo "flush errors: $(st "$ctl" lower_flush_errors) lower flush errors, recovered"
stop_nbdkit "$pid"

#----------------------------------------------------------------------
# 3. Shutdown while the lower device keeps failing.

truncate -s $size "$tmp/img3"
cp "$tmp/img3" "$tmp/pristine"
cp "$tmp/img3" "$tmp/expected"
ctl=$tmp/s.ctl
async_start s --filter="$ASYNC_FILTER" --filter=error file "$tmp/img3" \
    error-pwrite=EIO error-pwrite-rate=1 error-pwrite-file="$tmp/fail" \
    async-control="$ctl" async-exit-timeout=2
touch "$tmp/fail"
dirty=$(client write 4) || fail "client writes failed"
wait_for 10 field_gt "$ctl" lower_write_errors 0 ||
    fail "no lower write errors"
[ "$(st "$ctl" dirty_bytes)" -eq "$dirty" ] || fail "dirty_bytes is not $dirty"
slog=$log
kill -TERM "$pid"
# async-exit-timeout=2: it must give up and exit well within 30 s.
for (( i=0; i<300; i++ )); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
kill -0 "$pid" 2>/dev/null && fail "nbdkit did not exit within 30 s (async-exit-timeout=2)"
wait "$pid" && exit_status=0 || exit_status=$?
echo "nbdkit exit status with lost data: $exit_status"
grep -E "async: .*could NOT be written" "$slog" ||
    fail "no loud message about lost data in the log"
lost=$(grep -oE '[0-9]+ bytes of acknowledged writes could NOT be written' "$slog" |
       awk '{print $1}')
[ "$lost" = "$dirty" ] || fail "log says $lost bytes lost, expected $dirty"
cmp -s "$tmp/img3" "$tmp/pristine" || fail "the file changed although writes failed"

echo "$0: OK"
