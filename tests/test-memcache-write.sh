#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-memcache-filter: writes, zeroes and trims are visible at once
# through the cache, with both write policies: aligned and unaligned
# writes over warm blocks, FUA, the short last block, and a zero large
# enough to invalidate by generation.  After each operation the whole
# image read through the filter must equal both the model and the file.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-memcache-helpers.sh"

mc_start_three

for policy in update invalidate; do
    # 20 MiB + 512 bytes, random data in the first 3 MiB.
    rm -f "$tmp/img"
    truncate -s $(( 20*1024*1024 + 512 )) "$tmp/img"
    head -c $(( 3*1024*1024 )) /dev/urandom |
        dd of="$tmp/img" conv=notrunc status=none

    ctl=$tmp/ctl-$policy.sock
    start_nbdkit "mc-$policy" --filter="$MEMCACHE_FILTER" file "$tmp/img" \
        memcache-servers="$MC_SERVERS" memcache-id="write-test-$policy" \
        memcache-control="$ctl" \
        memcache-write-policy=$policy
    nbd_pid=$pid

    export uri IMG=$tmp/img
    "$PY" -c '
import nbd, os, random
h = nbd.NBD(); h.connect_uri(os.environ["uri"])
size = h.get_size()
model = bytearray(open(os.environ["IMG"], "rb").read())
rnd = random.Random(2)

def check(what):
    # Warm region read through the cache, plus the end of the device.
    for off, n in ((0, 4*1024*1024), (size - 70000, 70000)):
        got = h.pread(n, off)
        if got != model[off:off+n]:
            bad = next(i for i in range(n) if got[i] != model[off+i])
            raise SystemExit("after %s: byte %d differs" % (what, off + bad))

check("warm-up")
check("second read")
ops = [
    ("write", 4096, 8192),            # two whole blocks
    ("write", 100, 3000),             # inside one block
    ("write", 4000, 10000),           # partial, whole, partial
    ("write", 0, 1),
    ("fua", 65536, 4096),
    ("zero", 20480, 12288),
    ("zero", 1000, 100),
    ("trim", 102400, 8192),
    ("write", size - 512, 512),       # the short last block
    ("write", size - 5000, 5000),
]
for i in range(40):
    n = rnd.randint(1, 20000)
    ops.append(("write", rnd.randint(0, 3*1024*1024 - n), n))
for op, off, n in ops:
    if op in ("write", "fua"):
        data = os.urandom(n)
        h.pwrite(data, off, nbd.CMD_FLAG_FUA if op == "fua" else 0)
        model[off:off+n] = data
    elif op == "zero":
        h.zero(n, off)
        model[off:off+n] = bytes(n)
    else:
        h.trim(n, off)
        # the file plugin punches a hole: reads return zeroes
        model[off:off+n] = bytes(n)
    check("%s %d@%d" % (op, n, off))

# Zero 17 MiB (more than 4096 blocks): every generation is bumped.
h.zero(17*1024*1024, 1024*1024)
model[1024*1024:18*1024*1024] = bytes(17*1024*1024)
check("big zero")
assert h.pread(size, 0) == model, "whole image differs from the model"
h.shutdown()
open(os.environ["IMG"] + ".model", "wb").write(model)
' || fail "$policy: data differs"
    cmp "$tmp/img" "$tmp/img.model" || fail "$policy: file differs from the model"

    updates=$(status_field "$ctl" updates)
    invalidations=$(status_field "$ctl" invalidations)
    case $policy in
    update) [ "$updates" -gt 0 ] || fail "update policy stored nothing" ;;
    invalidate) [ "$updates" -eq 0 ] || fail "invalidate policy stored $updates blocks" ;;
    esac
    [ "$invalidations" -gt 0 ] || fail "$policy: nothing invalidated"
    [ "$(status_field "$ctl" mass_invalidations)" -eq 1 ] ||
        fail "$policy: the big zero did not invalidate by generation"
    [ "$(status_field "$ctl" hits)" -gt 0 ] || fail "$policy: no hits at all"
    stop_nbdkit "$nbd_pid"
done
echo "$0: OK"
