#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-memcache-filter, memcache-state-file: after a clean stop the next
# start is warm (every block a hit at once, byte-exact), and the block
# versions come back with it: an old value of a block written before the
# stop, put back on the server by a peer, does not authenticate.  A warm
# start removes the file before serving, so after a crash (SIGKILL) the
# start after is cold, and blocks written by the crashed process are
# never served from an older value; nor after a stop whose lower flush
# failed.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-memcache-helpers.sh"

start_memcached warm
head -c 32 /dev/urandom > "$tmp/key"
chmod 600 "$tmp/key"
mkdir -m 700 "$tmp/state"
state=$tmp/state/memcache.state
blocks=1024
head -c $((blocks * 4096)) /dev/urandom > "$tmp/img"
cp "$tmp/img" "$tmp/model"
ctl=$tmp/ctl.sock

start ()
{
    start_nbdkit mc --filter="$MEMCACHE_FILTER" file "$tmp/img" \
        memcache-servers="127.0.0.1:$mc_port" memcache-id=warm-test \
        memcache-key-file="$tmp/key" memcache-state-file="$state" \
        memcache-timeout=500 memcache-control="$ctl"
}
# read_all: the whole device through the filter equals the model.
read_all ()
{
    nbdcopy --no-extents "$uri" "$tmp/out"
    cmp "$tmp/model" "$tmp/out" || fail "read differs from the model"
}
# expect START HITS MISSES: how this process started and its counters.
expect ()
{
    local got
    got=$(mc_status "$ctl" 'd["start"], d["hits"], d["misses"]')
    [ "$got" = "$1 $2 $3" ] ||
        fail "expected start $1, $2 hits, $3 misses; got $got"
}
# write_block BLOCK: new random data, through the filter and the model.
write_block ()
{
    head -c 4096 /dev/urandom > "$tmp/block"
    dd if="$tmp/block" of="$tmp/model" bs=4096 seek="$1" conv=notrunc \
       status=none
    "$PY" -c '
import nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
h.pwrite(open(sys.argv[2], "rb").read(), int(sys.argv[3]) * 4096)
h.shutdown()' "$uri" "$tmp/block" "$1"
}

# 1. First start: cold, fills the cache.
start
[ ! -e "$state" ] || fail "a state file exists before any stop"
read_all
expect cold 0 $blocks
# Block 7's value now, before the write below: a peer keeps it.
key7=$(mc_key_of "$ctl" 7)
mc_py "open('$tmp/old7', 'wb').write(mc_get($mc_port, '$key7'))"
write_block 7
read_all
stop_nbdkit "$pid"
[ -f "$state" ] || fail "no state file after a clean stop"
[ "$(stat -c %a "$state")" = 600 ] || fail "state file mode $(stat -c %a "$state")"

# The peer puts block 7's old value back, under the same key.
mc_py "mc_set($mc_port, '$key7', open('$tmp/old7', 'rb').read())"

# 2. Warm: every block is a hit at once, and block 7 is the new data
#    (its old value fails: block versions were restored).
start
[ ! -e "$state" ] || fail "the state file is still there while serving"
read_all
expect warm $((blocks - 1)) 1
[ "$(mc_status "$ctl" 'd["auth_failures"]')" -eq 1 ] ||
    fail "block 7's old value did not fail authentication"
cmp "$tmp/model" "$tmp/img" || fail "image differs from the model"

# 3. Writes, then a crash: the file used by this start is gone, so the
#    next start is cold and serves the new data.
write_block 9
write_block 7
read_all
kill -KILL "$pid"
wait_for 10 exited "$pid" || fail "nbdkit survived SIGKILL"
[ ! -e "$state" ] || fail "a state file after a crash"
start
read_all
expect cold 0 $blocks

# 4. And a clean stop after that is warm again.
stop_nbdkit "$pid"
start
read_all
expect warm $blocks 0
stop_nbdkit "$pid"

# 5. A stop whose flush of the lower device fails writes no state file:
#    what the device holds may not be on stable storage.
#    (nbdkit 1.32's error filter cannot fail flushes: the image through
#    the eval plugin, whose flush fails while $tmp/flush-fails exists.)
#    In the foreground, for its messages.
img=$tmp/img fails=$tmp/flush-fails
rm -f "$tmp/mc.sock"
nbdkit -f -U "$tmp/mc.sock" --filter="$MEMCACHE_FILTER" eval \
    get_size="stat -c %s $img" can_write='exit 0' can_flush='exit 0' \
    pread="dd if=$img skip=\$4 count=\$3 iflag=skip_bytes,count_bytes status=none" \
    pwrite="dd of=$img seek=\$4 conv=notrunc oflag=seek_bytes status=none" \
    flush="if [ -e $fails ]; then echo EIO flush fails >&2; exit 1; fi" \
    memcache-servers="127.0.0.1:$mc_port" memcache-id=warm-test \
    memcache-key-file="$tmp/key" memcache-state-file="$state" \
    memcache-timeout=500 memcache-control="$ctl" \
    ${MEMCACHE_PROTOCOL:+memcache-protocol=$MEMCACHE_PROTOCOL} \
    2>"$tmp/err.log" &
pid=$!
cleanup_fn kill_wait "$pid"
wait_for 10 test -S "$tmp/mc.sock" || fail "nbdkit over eval did not start"
uri="nbd+unix:///?socket=$tmp/mc.sock"
read_all
expect warm $blocks 0
touch "$tmp/flush-fails"
stop_nbdkit "$pid"
[ ! -e "$state" ] || fail "a state file after a stop whose flush failed"
grep -q "flushing the lower device at stop failed" "$tmp/err.log" ||
    fail "no message about the failed flush"
start
read_all
expect cold 0 $blocks
stop_nbdkit "$pid"
echo "$0: OK"
