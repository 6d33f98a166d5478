#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter, async-max-drain-seconds=N: dirty data is bounded by
# the time to drain it at the measured rate, not only by async-max-dirty.
#
# Over a slow lower device (nbdkit's delay filter BELOW the async filter,
# 20 ms per lower write, 2 writers: about 400 KiB/s of scattered 4 KiB
# blocks) a client writes random 4 KiB blocks without pause for 8 s while
# abdctl status is sampled every 0.2 s.  The store (4 MiB) would take
# about 10 s to drain.
#
# 1. With N=2: after a 2 s warm-up, drain_estimate_seconds <= N + 1 in at
#    least 90% of the samples and <= N in the median (tolerance: 1 s for
#    the estimate's rounding up and for the rate moving between admission
#    and the sample, and 10% of samples for a busy machine stalling the
#    lower device), dirty_bytes never above half of async-max-dirty, and
#    drain_budget_waits > 0.
# 2. Without it: dirty_bytes reaches 90% of async-max-dirty and the
#    estimate goes above N + 1 (so check 1 can fail).
# In both, every write succeeds and the image is as written after a flush.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-helpers.sh"

N=2
size=$(( 64 * 1024 * 1024 ))
max_dirty=$(( 4 * 1024 * 1024 ))

# run.py CTL SECONDS OUT: write for SECONDS, sample the status; OUT gets
# one line per sample: time dirty_bytes estimate rate budget.
cat > "$tmp/run.py" <<'EOF2'
import nbd, os, random, socket, sys, threading, time
from abdtest import control
ctl, secs, out = sys.argv[1], float(sys.argv[2]), sys.argv[3]
size = int(os.environ["SIZE"])
def status():
    return control.status(ctl)
stop = time.monotonic() + secs
errors = []
def client():
    try:
        h = nbd.NBD()
        h.connect_uri(os.environ["uri"])
        rnd = random.Random(1)
        with open(os.environ["EXPECTED"], "r+b") as f:
            while time.monotonic() < stop:
                off = rnd.randrange(size // 4096) * 4096
                data = rnd.randbytes(4096)
                h.pwrite(data, off)
                f.seek(off); f.write(data)
        h.shutdown()
    except Exception as e:
        errors.append(e)
t = threading.Thread(target=client)
t0 = time.monotonic()
t.start()
with open(out, "w") as o:
    while t.is_alive():
        f = status()
        o.write("%.2f %s %s %s %s\n" % (time.monotonic() - t0,
                f["dirty_bytes"], f["drain_estimate_seconds"],
                f["drain_rate_bytes_per_sec"], f["drain_budget_bytes"]))
        time.sleep(0.2)
t.join(60)
if errors or t.is_alive():
    sys.exit("client failed: %r" % errors)
EOF2

# run NAME [PARAMS...]: one run; sets $samples.
run ()
{
    local name=$1; shift
    truncate -s 0 "$tmp/img"; truncate -s $size "$tmp/img"
    cp "$tmp/img" "$tmp/expected"
    ctl=$tmp/$name.ctl
    async_start "$name" --filter="$ASYNC_FILTER" --filter=delay file "$tmp/img" \
        delay-write=20ms async-max-dirty=$max_dirty async-writers=2 \
        async-control="$ctl" "$@"
    SIZE=$size EXPECTED=$tmp/expected uri=$uri \
        timeout 120 "$PY" "$tmp/run.py" "$ctl" 8 "$tmp/$name.samples" ||
        fail "$name: the client or the sampler failed"
    samples=$tmp/$name.samples
    echo "$name: $(wc -l < "$samples") samples; budget waits" \
         "$(st "$ctl" drain_budget_waits), space waits $(st "$ctl" space_waits)"
    abdctl -s "$ctl" flush 120 || fail "$name: abdctl flush failed"
    cmp "$tmp/img" "$tmp/expected" || fail "$name: image differs"
}

#----------------------------------------------------------------------
# 1. With the budget.
run budget async-max-drain-seconds=$N
[ "$(st "$ctl" max_drain_seconds)" -eq $N ] || fail "max_drain_seconds"
"$PY" - "$samples" $N $(( max_dirty / 2 )) <<'EOF2' ||
import sys
rows = [l.split() for l in open(sys.argv[1])]
n, half = int(sys.argv[2]), int(sys.argv[3])
est = sorted(int(r[2]) for r in rows if float(r[0]) >= 2 and int(r[2]) >= 0)
ok = sum(e <= n + 1 for e in est)
top = max(int(r[1]) for r in rows if float(r[0]) >= 2)
median = est[len(est) // 2] if est else None
print("budget: %d samples after warm-up, %d with estimate <= %d s, "
      "median %s s, max dirty %d" % (len(est), ok, n + 1, median, top))
if len(est) < 10: sys.exit("too few samples")
if ok < 0.9 * len(est): sys.exit("estimate above N+1 too often")
if median > n: sys.exit("median estimate above N")
if top > half: sys.exit("dirty_bytes above half of async-max-dirty")
EOF2
    { cat "$samples"; fail "the drain budget did not hold"; }
[ "$(st "$ctl" drain_budget_waits)" -gt 0 ] || fail "no drain_budget_waits"
stop_nbdkit "$pid"

#----------------------------------------------------------------------
# 2. Without it the same load fills the store: check 1 can fail.
run nobudget
[ "$(st "$ctl" max_drain_seconds)" -eq 0 ] || fail "max_drain_seconds not 0"
awk -v n=$N -v full=$(( max_dirty * 9 / 10 )) '
    $2 > max { max = $2 }  $3 > n + 1 { over++ }
    END {
        printf "no budget: max dirty %d, %d samples with estimate > %d s\n",
               max, over, n + 1
        exit !(max >= full && over > 0)
    }' "$samples" || { cat "$samples"; fail "without the budget the store did not fill"; }
stop_nbdkit "$pid"
echo "$0: OK"
