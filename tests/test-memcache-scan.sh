#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-memcache-filter: a scan of one device does not evict another
# device's hot set (memcache-sequential-cutoff, issue #21 item 4).
#
# One memcached -m 64.  Device "hot" (16 MiB) is read in random order,
# 64K at a time, until every block is in memcached and has been hit once.
# Device "scan" (a sparse 1 GiB file, its own memcache-id) is then read
# end to end by nbdcopy (4 connections, 64 requests in flight each:
# requests of a stream arrive out of order), with nbdkit's default
# memcache-sequential-cutoff (4M): the hot set must still be >= 90% hits,
# and the scan must have skipped the fills of nearly all its blocks
# (seq_bypass_blocks).  The same scan with memcache-sequential-cutoff=0
# must then evict the hot set (< 50% hits): without that the test could
# not fail.  Every read of the hot device is checked byte for byte.
# Counters from the control sockets, not timings, decide.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-memcache-helpers.sh"
requires nbdcopy

start_memcached pool
servers=127.0.0.1:$mc_port

head -c $(( 16 * 1024 * 1024 )) /dev/urandom > "$tmp/hot.img"
hot_blocks=$(( 16 * 1024 * 1024 / 4096 ))
truncate -s 1G "$tmp/scan.img"
scan_blocks=$(( 1024 * 1024 * 1024 / 4096 ))

hot_ctl=$tmp/hot.ctl
start_nbdkit hot --filter="$MEMCACHE_FILTER" file "$tmp/hot.img" \
    memcache-servers="$servers" memcache-id=scan-test-hot \
    memcache-timeout=500 memcache-control="$hot_ctl"
hot_uri=$uri

# hot_pass: every 64K chunk of the hot device once, in random order, 8
# requests in flight; prints the hits of the pass (in blocks).
hot_pass ()
{
    local before
    before=$(status_field "$hot_ctl" hits)
    IMG=$tmp/hot.img URI=$hot_uri "$PY" -c '
import nbd, os, random
img = open(os.environ["IMG"], "rb").read()
h = nbd.NBD()
h.connect_uri(os.environ["URI"])
chunks = list(range(len(img) // 65536))
random.shuffle(chunks)
bufs = {}
def done(c, buf, err):
    off = c * 65536
    assert buf.to_bytearray() == img[off:off + 65536], "chunk %d differs" % c
    return 1
for c in chunks:
    while h.aio_in_flight() >= 8:
        h.poll(-1)
    buf = nbd.Buffer(65536)
    h.aio_pread(buf, c * 65536, lambda err, c=c, buf=buf: done(c, buf, err))
while h.aio_in_flight() > 0:
    h.poll(-1)
h.shutdown()
' || fail "a read of the hot device differs from its image"
    mc_filled "$hot_ctl"
    echo $(( $(status_field "$hot_ctl" hits) - before ))
}

# Warm: a cold pass fills every block, a second one hits them all (so
# memcached has seen each hot block used, as a hot set is).
hot_pass >/dev/null
[ "$(status_field "$hot_ctl" fills)" -eq "$hot_blocks" ] ||
    fail "the cold pass filled $(status_field "$hot_ctl" fills) blocks, not $hot_blocks"
[ "$(status_field "$hot_ctl" seq_bypass_blocks)" -eq 0 ] ||
    fail "reads in random order were taken for a sequential stream"
hits=$(hot_pass)
[ "$hits" -eq "$hot_blocks" ] || fail "warm pass: $hits hits of $hot_blocks"

# scan CUTOFF: read the scan device end to end through a new nbdkit with
# memcache-sequential-cutoff=CUTOFF (empty: the default); then one pass
# over the hot set.  Sets $seq_bypass, $scan_fills
# and $hot_hits.
scan ()
{
    local ctl=$tmp/scan-$1.ctl
    start_nbdkit "scan-$1" --filter="$MEMCACHE_FILTER" file "$tmp/scan.img" \
        memcache-servers="$servers" memcache-id="scan-test-scan-$1" \
        memcache-timeout=500 memcache-control="$ctl" \
        ${1:+memcache-sequential-cutoff=$1}
    # --no-extents: the file's holes are read too, and zeros fill the cache
    # as any data would.  (To null:, a pipe would make nbdcopy read with
    # one request at a time; test-memcache-scan-exact.sh checks bytes.)
    nbdcopy --no-extents "$uri" null: ||
        fail "scan (cutoff ${1:-default}): nbdcopy failed"
    mc_filled "$ctl"
    seq_bypass=$(status_field "$ctl" seq_bypass_blocks)
    scan_fills=$(status_field "$ctl" fills)
    stop_nbdkit "$pid"
    hot_hits=$(hot_pass)
    echo "$0: cutoff ${1:-default (4M)}: scan filled $scan_fills blocks," \
         "skipped $seq_bypass; hot set afterwards: $hot_hits of" \
         "$hot_blocks hits ($(( hot_hits * 100 / hot_blocks ))%)"
}

scan ""
[ "$seq_bypass" -ge $(( scan_blocks * 9 / 10 )) ] ||
    fail "default cutoff: only $seq_bypass of $scan_blocks blocks not filled"
[ $(( hot_hits * 10 )) -ge $(( hot_blocks * 9 )) ] ||
    fail "default cutoff: the scan evicted the hot set ($hot_hits of $hot_blocks hits)"

scan 0
[ "$seq_bypass" -eq 0 ] || fail "cutoff 0: $seq_bypass blocks not filled"
[ $(( hot_hits * 2 )) -lt "$hot_blocks" ] ||
    fail "cutoff 0: the scan did not evict the hot set ($hot_hits of" \
         "$hot_blocks hits): this test cannot tell the cutoff works"

echo "$0: OK"
