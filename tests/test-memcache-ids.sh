#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-memcache-filter: two devices with different memcache-id values on
# the same three servers stay isolated: each reads back its own image, warm
# (from memcached) and after writes to the other; their keys differ in the
# id part and are placed independently.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-memcache-helpers.sh"

mc_start_three

for d in a b; do
    head -c $(( 1024*1024 )) /dev/urandom > "$tmp/img-$d"
    start_nbdkit "mc-$d" --filter="$MEMCACHE_FILTER" file "$tmp/img-$d" \
        memcache-servers="$MC_SERVERS" memcache-id="device-$d" \
        memcache-timeout=200 memcache-control="$tmp/ctl-$d.sock"
    eval "uri_$d=\$uri"
done
cmp -s "$tmp/img-a" "$tmp/img-b" && fail "the two images are equal"

key_a=$(mc_key_of "$tmp/ctl-a.sock" 7)
key_b=$(mc_key_of "$tmp/ctl-b.sock" 7)
[ "$(cut -d: -f2 <<<"$key_a")" != "$(cut -d: -f2 <<<"$key_b")" ] ||
    fail "keys of the two ids share the id part: $key_a $key_b"

# Warm both, then read both again: all hits, each its own data.
for pass in cold warm; do
    for d in a b; do
        eval "nbdcopy \"\$uri_$d\" \"\$tmp/out-$d\""
        cmp "$tmp/img-$d" "$tmp/out-$d" || fail "$pass read of $d differs"
        mc_filled "$tmp/ctl-$d.sock"
    done
done
for d in a b; do
    [ "$(status_field "$tmp/ctl-$d.sock" hits)" -eq 256 ] ||
        fail "device $d: expected 256 hits"
done

# Overwrite all of a; b must still read its own (cached) data.
head -c $(( 1024*1024 )) /dev/urandom > "$tmp/new-a"
nbdcopy "$tmp/new-a" "$uri_a"
nbdcopy "$uri_a" "$tmp/out-a"
cmp "$tmp/new-a" "$tmp/out-a" || fail "a does not read its new data"
nbdcopy "$uri_b" "$tmp/out-b"
cmp "$tmp/img-b" "$tmp/out-b" || fail "b changed after writes to a"
[ "$(status_field "$tmp/ctl-b.sock" hits)" -eq 512 ] ||
    fail "device b: expected 512 hits"
echo "$0: OK"
