#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-memcache-filter: several connections read and write at once for a
# bounded time, with both write policies.  Each worker owns a region it
# checks byte-exactly as it goes; all of them also write and read a shared
# region, the same blocks at the same time.  Afterwards the image read
# through the filter equals the file, at first mostly from what the
# workload left in the cache.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-memcache-helpers.sh"

mc_start_three
workers=5
seconds=4

for policy in update invalidate; do
    head -c $(( 1024*1024 )) /dev/urandom > "$tmp/img"
    ctl=$tmp/ctl-$policy.sock
    # memcache-timeout=1000: the check below needs the first read served
    # mostly from the cache, and the default 5 ms also expires when the
    # host is starved of CPU (seen with the text protocol at load average
    # 8: 18 of 256 blocks); the defaults under load are
    # test-memcache-warm-default's to test.
    start_nbdkit "mc-$policy" --filter="$MEMCACHE_FILTER" file "$tmp/img" \
        memcache-servers="$MC_SERVERS" memcache-id="concurrent-$policy" \
        memcache-control="$ctl" memcache-timeout=1000 \
        memcache-write-policy=$policy
    nbd_pid=$pid
    export uri IMG=$tmp/img SECONDS_RUN=$seconds WORKERS=$workers

    pids=()
    for (( w=0; w<workers; w++ )); do
        "$PY" -c '
import nbd, os, random, sys, time
w, workers = int(sys.argv[1]), int(os.environ["WORKERS"])
h = nbd.NBD(); h.connect_uri(os.environ["uri"])
size = h.get_size()
own_len = 64 * 1024                   # own region: [w*own_len, (w+1)*own_len)
own_off = w * own_len
shared_off = workers * own_len        # shared: the rest of the image
model = bytearray(h.pread(own_len, own_off))
rnd = random.Random(w)
deadline = time.time() + float(os.environ["SECONDS_RUN"])
ops = 0
while time.time() < deadline:
    ops += 1
    r = rnd.random()
    if r < 0.3:                       # own region: write, check
        n = rnd.choice((4096, rnd.randint(1, 12000)))
        off = rnd.randint(0, own_len - n)
        data = os.urandom(n)
        h.pwrite(data, own_off + off)
        model[off:off+n] = data
    elif r < 0.5:                     # own region: read, check
        n = rnd.randint(1, own_len)
        off = rnd.randint(0, own_len - n)
        got = h.pread(n, own_off + off)
        assert got == model[off:off+n], "worker %d: own region differs" % w
    elif r < 0.75:                    # shared: write (sometimes zero)
        n = rnd.choice((4096, 8192, rnd.randint(1, 9000)))
        off = rnd.randint(shared_off, size - n)
        if rnd.random() < 0.1:
            h.zero(n, off)
        else:
            h.pwrite(os.urandom(n), off)
    else:                             # shared: read
        n = rnd.randint(1, 65536)
        off = rnd.randint(shared_off, size - n)
        h.pread(n, off)
assert h.pread(own_len, own_off) == model, "worker %d: final own region differs" % w
h.shutdown()
print("worker %d: %d ops" % (w, ops))
' $w &
        pids+=($!)
    done
    for p in "${pids[@]}"; do
        wait "$p" || fail "$policy: a worker failed"
    done

    # The image through the filter equals the file (twice: warm too).
    # The first pass is served from what the workload left in the cache:
    # a stale block there that still authenticated would show as a
    # difference.  (Values are sealed, so the test cannot read them in
    # memcached itself.)
    hits=$(status_field "$ctl" hits)
    for pass in 1 2; do
        nbdcopy "$uri" "$tmp/out"
        cmp "$tmp/img" "$tmp/out" || fail "$policy: read $pass differs from the file"
        if [ $pass = 1 ]; then
            served=$(( $(status_field "$ctl" hits) - hits ))
            echo "$policy: $served of 256 blocks served from the cache the workload left"
            [ $served -ge 128 ] || fail "$policy: only $served blocks cached"
        fi
    done

    echo "$policy: fills=$(status_field "$ctl" fills)" \
        "fills_raced=$(status_field "$ctl" fills_raced)" \
        "hits=$(status_field "$ctl" hits) updates=$(status_field "$ctl" updates)"
    [ "$(status_field "$ctl" timeouts)" -eq 0 ] ||
        echo "note: $(status_field "$ctl" timeouts) timeouts (slow machine)"
    stop_nbdkit "$nbd_pid"
done
echo "$0: OK"
