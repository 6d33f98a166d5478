#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The whole stack, async over memcache over a file, under fio: random
# writes of mixed sizes with --verify=crc32c (fio reads every block back
# through the stack and checks it), then a second pass that only reads
# and verifies, after the cache was warmed by the first.  Then nbdkit is
# stopped (the async filter writes everything back) and fio verifies the
# file itself through a plain nbdkit, without the filters.  Both filters'
# counters must show that they were used (dirty data written back; blocks
# served from memcached).

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-memcache-helpers.sh"
requires fio
fio --enghelp=nbd >/dev/null 2>&1 || {
    echo "$0: SKIP: this fio has no nbd ioengine"; exit 77; }

mc_start_three
size=$(( 48 * 1024 * 1024 ))
truncate -s $size "$tmp/img"

start_nbdkit stack --filter="$ASYNC_FILTER" --filter="$MEMCACHE_FILTER" \
    file "$tmp/img" async-control="$tmp/async.ctl" async-max-dirty=16M \
    memcache-servers="$MC_SERVERS" memcache-id=stack-fio \
    memcache-timeout=500 memcache-control="$tmp/mc.ctl"
stack_pid=$pid
stack_uri=$uri

# fio_job URI ARGS...: the same job every time, so that verify_only
# passes recompute the same offsets and patterns.
fio_job ()
{
    local u=$1; shift
    fio --name=stack --ioengine=nbd --uri="$u" --size=$size \
        --rw=randwrite --bsrange=4k-64k --iodepth=16 --numjobs=1 \
        --randseed=4242 --verify=crc32c --verify_fatal=1 \
        --do_verify=1 --verify_state_save=0 \
        --output="$tmp/fio.out" "$@" ||
        { cat "$tmp/fio.out" >&2; fail "fio $* failed"; }
    if grep -q 'verify:.*bad\|crc32c: verify failed' "$tmp/fio.out"; then
        cat "$tmp/fio.out" >&2
        fail "fio $* reported verify errors"
    fi
}

fio_job "$stack_uri"
fio_job "$stack_uri" --verify_only

written=$(status_field "$tmp/async.ctl" written_back_bytes)
[ "$written" -gt 0 ] || fail "the async filter wrote nothing back"
hits=$(mc_status "$tmp/mc.ctl" 'd["hits"]')
[ "$hits" -gt 0 ] || fail "no read was served from memcached (hits=$hits)"
echo "written back: $written bytes; memcache hits: $hits"

stop_nbdkit "$stack_pid"

start_nbdkit plain file "$tmp/img" --readonly
fio_job "$uri" --verify_only
echo "$0: OK"
