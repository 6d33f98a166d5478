#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-memcache-filter, memcache-state-file: every start that may not
# trust the cache an earlier process left is cold (no hit on the first
# read, every block exact, the file gone while serving): the file
# missing, damaged (a flipped byte, truncated), written with another key
# file, or made for other servers, another device size or block size.
# A file that is not private (mode, symlink, a directory others may
# write to) is refused at start, and so is the parameter without
# memcache-key-file.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-memcache-helpers.sh"

start_memcached cold
mc1=127.0.0.1:$mc_port
start_memcached cold2
mc2=127.0.0.1:$mc_port
head -c 32 /dev/urandom > "$tmp/key"
head -c 32 /dev/urandom > "$tmp/key2"
chmod 600 "$tmp/key" "$tmp/key2"
mkdir -m 700 "$tmp/state"
state=$tmp/state/memcache.state
head -c $((512 * 4096)) /dev/urandom > "$tmp/img"
ctl=$tmp/ctl.sock

# start [PARAM=VALUE...]: the filter over the image; the parameters given
# replace the defaults of the same name.
start ()
{
    local -A p=([memcache-servers]=$mc1 [memcache-key-file]=$tmp/key
                [memcache-block-size]=4096)
    local a args=()
    for a in "$@"; do p[${a%%=*}]=${a#*=}; done
    for a in "${!p[@]}"; do args+=("$a=${p[$a]}"); done
    start_nbdkit mc --filter="$MEMCACHE_FILTER" file "$tmp/img" \
        memcache-id=cold-test memcache-state-file="$state" \
        memcache-timeout=500 memcache-control="$ctl" "${args[@]}"
}
# first_read START [PARAMS...]: start, read everything once, check the
# data, how it started and that the first read had no hit (cold) or no
# miss (warm); then stop cleanly, which writes the state file again.
first_read ()
{
    local want=$1 blocks got; shift
    start "$@"
    [ ! -e "$state" ] || fail "the state file is still there while serving"
    nbdcopy --no-extents "$uri" "$tmp/out"
    cmp "$tmp/img" "$tmp/out" || fail "read differs from the image"
    blocks=$(( $(stat -c %s "$tmp/img") / $(mc_status "$ctl" 'd["block_size"]') ))
    got=$(mc_status "$ctl" 'd["start"], d["hits"], d["misses"]')
    case $want in
        warm) [ "$got" = "warm $blocks 0" ] || fail "expected a warm start ($*): $got" ;;
        cold) [ "$got" = "cold 0 $blocks" ] || fail "expected a cold start ($*): $got" ;;
    esac
    stop_nbdkit "$pid"
    [ -f "$state" ] || fail "no state file after a clean stop"
}

first_read cold                         # first start: no file
first_read warm                         # the control case
rm "$state"
first_read cold                         # missing
# Damaged: a flipped byte in the middle, then a truncated file.
size=$(stat -c %s "$state")
"$PY" -c 'import sys; f = open(sys.argv[1], "r+b"); f.seek(int(sys.argv[2]))
b = f.read(1)[0]; f.seek(-1, 1); f.write(bytes([b ^ 0xff]))' "$state" $((size / 2))
first_read cold
truncate -s $((size - 1)) "$state"
first_read cold
first_read warm
first_read cold memcache-key-file="$tmp/key2"   # another key file
first_read cold                                 # and back: cold again
first_read cold memcache-servers="$mc1,$mc2"    # servers changed
first_read cold                                 # and back
first_read cold memcache-servers="localhost:${mc1#*:}"  # spelt otherwise
first_read cold
first_read cold memcache-block-size=8192        # block size changed
first_read cold
truncate -s $((1024 * 4096)) "$tmp/img"         # device size changed
first_read cold
first_read warm

# Not private: refused at start, the file left alone.
cp "$state" "$tmp/saved"
refused ()
{
    local why=$1
    if nbdkit --filter="$MEMCACHE_FILTER" file "$tmp/img" \
           memcache-servers="$mc1" memcache-id=cold-test \
           memcache-key-file="$tmp/key" memcache-state-file="$state" \
           --run true 2>"$tmp/err"; then
        fail "started with a $why state file"
    fi
    grep -q "memcache-state-file" "$tmp/err" ||
        { cat "$tmp/err" >&2; fail "no message about the $why state file"; }
}
chmod 640 "$state"
refused "group-readable"
cmp "$state" "$tmp/saved" || fail "a refused state file was changed"
rm "$state"
ln -s "$tmp/saved" "$state"
refused "symlinked"
rm "$state"
cp "$tmp/saved" "$state"
chmod 770 "$tmp/state"
refused "group-writable directory's"
chmod 700 "$tmp/state"
first_read warm

# Without memcache-key-file the parameter is refused.
if nbdkit --filter="$MEMCACHE_FILTER" file "$tmp/img" \
       memcache-servers="$mc1" memcache-id=x memcache-state-file="$state" \
       --run true 2>"$tmp/err"; then
    fail "memcache-state-file accepted without memcache-key-file"
fi
grep -q "needs memcache-key-file" "$tmp/err" || fail "unclear error: $(cat "$tmp/err")"
echo "$0: OK"
