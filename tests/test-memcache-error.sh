#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-memcache-filter: once warm, reads are served from memcached even
# when the lower device fails every read.  The error filter sits BELOW
# memcache (--filter=memcache --filter=error: the first is nearest the
# client), and a read of a block that was never cached must fail, which
# proves the errors are really injected.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-memcache-helpers.sh"

mc_start_three

head -c $(( 2*1024*1024 )) /dev/urandom > "$tmp/img"
ctl=$tmp/ctl.sock
start_nbdkit mc --filter="$MEMCACHE_FILTER" --filter=error file "$tmp/img" \
    memcache-servers="$MC_SERVERS" memcache-id=error-test \
    memcache-timeout=200 memcache-control="$ctl" \
    error-pread=EIO error-pread-rate=100% error-pread-file="$tmp/err"

# Warm the first MiB only.
export uri IMG=$tmp/img
"$PY" -c '
import nbd, os
h = nbd.NBD(); h.connect_uri(os.environ["uri"])
img = open(os.environ["IMG"], "rb").read()
assert h.pread(1024*1024, 0) == img[:1024*1024]
h.shutdown()
' || fail "warming read failed"
mc_filled "$ctl"

# From now on every lower read fails.
touch "$tmp/err"
hits_before=$(status_field "$ctl" hits)
"$PY" -c '
import nbd, os
h = nbd.NBD(); h.connect_uri(os.environ["uri"])
img = open(os.environ["IMG"], "rb").read()
# Cached: succeeds, byte-exact, aligned and not.
assert h.pread(1024*1024, 0) == img[:1024*1024]
assert h.pread(5000, 12345) == img[12345:12345+5000]
# Never cached: the lower device error comes through.
try:
    h.pread(4096, 1024*1024 + 8192)
    raise SystemExit("read of an uncached block succeeded: error filter not below memcache?")
except nbd.Error as e:
    print("expected error:", e)
h.shutdown()
' || fail "reads with a failing lower device"

hits=$(( $(status_field "$ctl" hits) - hits_before ))
[ $hits -ge 256 ] || fail "expected at least 256 hits, got $hits"

# Lower device back: the uncached block reads fine.
rm "$tmp/err"
"$PY" -c '
import nbd, os
h = nbd.NBD(); h.connect_uri(os.environ["uri"])
img = open(os.environ["IMG"], "rb").read()
assert h.pread(4096, 1024*1024 + 8192) == img[1024*1024+8192:1024*1024+12288]
h.shutdown()
' || fail "read after the lower device recovered"
echo "$0: OK"
