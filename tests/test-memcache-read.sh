#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-memcache-filter: reads are byte-exact, cold and warm, aligned and
# not, including the short last block; a warm read comes from memcached
# only (no lower reads); blocks are spread over all three servers, one of
# them on a Unix socket; text and JSON status agree.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-memcache-helpers.sh"

# Two TCP servers and one on a Unix socket.
start_memcached s0; port0=$mc_port
start_memcached s1; port1=$mc_port
memcached -s "$tmp/mc2.sock" -a 0700 -u root -m 64 >"$tmp/mc2.log" 2>&1 &
mc2_pid=$!
memcached_at_exit "$mc2_pid"
wait_for 5 test -S "$tmp/mc2.sock" || fail "memcached on a Unix socket did not start"

# 4 MiB + 1000 bytes: the last 4K block is short.
size=$(( 4*1024*1024 + 1000 ))
head -c $size /dev/urandom > "$tmp/img"
blocks=$(( (size + 4095) / 4096 ))

# memcache-sequential-cutoff=0: the whole image, read end to end, is to
# be cached (with the default, 4M, the stream's last block, past 4 MiB,
# would not be; test-memcache-scan*.sh test that).
ctl=$tmp/ctl.sock
start_nbdkit mc --filter="$MEMCACHE_FILTER" file "$tmp/img" \
    memcache-servers="127.0.0.1:$port0,127.0.0.1:$port1,$tmp/mc2.sock" \
    memcache-id=read-test memcache-timeout=200 memcache-control="$ctl" \
    memcache-sequential-cutoff=0

# Cold, then warm: both byte-exact.
nbdcopy "$uri" "$tmp/out1"
cmp "$tmp/img" "$tmp/out1" || fail "cold read differs from the image"
mc_filled "$ctl"
[ "$(status_field "$ctl" misses)" -eq $blocks ] ||
    fail "cold read: expected $blocks misses"
[ "$(status_field "$ctl" fills)" -eq $blocks ] ||
    fail "cold read: expected $blocks fills"
lower_before=$(status_field "$ctl" lower_reads)

nbdcopy "$uri" "$tmp/out2"
cmp "$tmp/img" "$tmp/out2" || fail "warm read differs from the image"
[ "$(status_field "$ctl" hits)" -eq $blocks ] ||
    fail "warm read: expected $blocks hits, got $(status_field "$ctl" hits)"
[ "$(status_field "$ctl" lower_reads)" -eq "$lower_before" ] ||
    fail "warm read went to the lower device"

# Every server holds a fair share (placement spreads blocks).
for i in 0 1 2; do
    h=$(mc_status "$ctl" "d['servers']['server$i']['hits']")
    [ "$h" -gt $(( blocks / 6 )) ] || fail "server$i has only $h of $blocks blocks"
done

# Text and JSON answers carry the same numbers.
[ "$(mc_status "$ctl" "d['hits']")" -eq "$(status_field "$ctl" hits)" ] ||
    fail "JSON and text status disagree"

# Unaligned reads of random sizes, some crossing the short last block.
export uri IMG=$tmp/img
"$PY" -c '
import nbd, os, random
h = nbd.NBD(); h.connect_uri(os.environ["uri"])
img = open(os.environ["IMG"], "rb").read()
size = len(img)
rnd = random.Random(1)
for i in range(300):
    count = rnd.randint(1, 70000)
    offset = rnd.randint(0, size - count)
    if i % 10 == 0:
        offset = size - count
    got = h.pread(count, offset)
    assert got == img[offset:offset+count], "read %d@%d differs" % (count, offset)
h.shutdown()
' || fail "unaligned reads differ"

[ "$(status_field "$ctl" format_mismatches)" -eq 0 ] || fail "format mismatches"
[ "$(status_field "$ctl" auth_failures)" -eq 0 ] || fail "authentication failures"
echo "$0: OK"
