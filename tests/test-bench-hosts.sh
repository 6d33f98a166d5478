#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# scripts/bench-hosts runs and prints its table: a smoke run with 2
# devices and 1-second runs (the numbers are not checked: timings belong
# to the benchmark, not to a test).
source "${abs_top_srcdir:-.}/tests/functions.sh"
requires memcached fio
MEMCACHE_FILTER=$MEMCACHE_FILTER ABDCTL=$ABDCTL \
    "$abs_top_srcdir/scripts/bench-hosts" --hosts 2 --runtime 1 --size 1 \
    > "$tmp/out" 2>&1 || { cat "$tmp/out"; fail "bench-hosts failed"; }
cat "$tmp/out"
for want in '^alone +[0-9]+ +1\.00x' '^dev 0 +[0-9]+ ' '^dev 1 +[0-9]+ ' \
            '^all 2 at once: total [0-9]+ IOPS' 'fairness \(min/max\) [0-9.]+$' \
            '^hit ratio per device: min [0-9.]+%' \
            '^during the pool change .*hit ratio min [0-9.]+%'; do
    grep -qE "$want" "$tmp/out" || fail "no line matching '$want'"
done
# It stopped what it started and removed its directory.
dir=$(sed -n 's/^bench-hosts: directory //p' "$tmp/out")
[ -n "$dir" ] || fail "bench-hosts did not say its directory"
[ ! -e "$dir" ] || fail "bench-hosts left $dir behind"
! pgrep -f -- "$dir/" || fail "bench-hosts left processes running"
echo "$0: OK"
