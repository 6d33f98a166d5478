#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-memcache-filter: model-checked random reads and writes while the
# pool changes all the time (tests/memcache_pool_model.py): servers are
# added (with warm moves) and removed (half of them drained) as fast as
# abdctl can, during writes of the blocks
# that move, with now and then a zero of the whole device (a mass
# invalidation); every read, of ranges beside the writes in flight and
# of each write once done, equals the model, and so does the whole
# device at the end.  Both write policies.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-memcache-helpers.sh"

seconds=${POOL_MODEL_SECONDS:-12}
addrs=()
for i in 0 1 2 3; do
    start_memcached "s$i"
    addrs+=("127.0.0.1:$mc_port")
done
SERVERS=$(IFS=,; echo "${addrs[*]}")

for policy in update invalidate; do
    rm -f "$tmp/img"
    truncate -s $(( 24*1024*1024 )) "$tmp/img"
    head -c $(( 4*1024*1024 )) /dev/urandom |
        dd of="$tmp/img" conv=notrunc status=none
    cp "$tmp/img" "$tmp/img.start"
    ctl=$tmp/ctl-$policy.sock
    start_nbdkit "mc-$policy" --filter="$MEMCACHE_FILTER" file "$tmp/img" \
        memcache-servers="${addrs[0]},${addrs[1]}" \
        memcache-id="pool-model-$policy" memcache-control="$ctl" \
        memcache-write-policy=$policy
    nbd_pid=$pid
    export uri CTL=$ctl ABDCTL SERVERS STARTING=2 IMG=$tmp/img.start
    "$PY" "$abs_top_srcdir/tests/memcache_pool_model.py" "$seconds" \
        "$RANDOM" > "$tmp/out-$policy" ||
        fail "$policy: $(cat "$tmp/out-$policy")"
    cat "$tmp/out-$policy"
    changes=$(awk '{ print $10 }' "$tmp/out-$policy")
    [ "$changes" -ge 20 ] || fail "$policy: only $changes pool changes"
    hits=$(status_field "$ctl" hits)
    [ "$hits" -gt 1000 ] || fail "$policy: only $hits hits: the cache was not used"
    warm=$(status_field "$ctl" warm_hits)
    [ "$warm" -gt 0 ] || fail "$policy: no warm hits: warm moves were not exercised"
    echo "$policy: $hits hits ($warm warm), $(status_field "$ctl" misses)" \
         "misses, $(status_field "$ctl" auth_failures) auth failures"
    stop_nbdkit "$nbd_pid"
done
echo "test-memcache-pool-model: ok"
