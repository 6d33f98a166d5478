#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-memcache-filter: a value that is not exactly what was stored for
# the block is a miss, is counted, and the read still returns the right
# data: garbage, the value of another block, a value with one data byte
# flipped, and a truncated value are all put under a block's key behind
# the filter's back.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-memcache-helpers.sh"

mc_start_three

head -c $(( 1024*1024 )) /dev/urandom > "$tmp/img"
ctl=$tmp/ctl.sock
start_nbdkit mc --filter="$MEMCACHE_FILTER" file "$tmp/img" \
    memcache-servers="$MC_SERVERS" memcache-id=corrupt-test \
    memcache-timeout=200 memcache-control="$ctl"
export uri IMG=$tmp/img

nbdcopy "$uri" "$tmp/out"
cmp "$tmp/img" "$tmp/out" || fail "cold read differs"
mc_filled "$ctl"

# Block A = 10, and block B on the same server.
a=10
server=$(mc_server_of "$ctl" $a)
for (( b=a+1; b<256; b++ )); do
    [ "$(mc_server_of "$ctl" $b)" = "$server" ] && break
done
address=$("$ABDCTL" -s "$ctl" locate $a | awk '$1 == "address:" { print $2 }')
export A=$a B=$b PORT=${address##*:} KEY_A=$(mc_key_of "$ctl" $a) KEY_B=$(mc_key_of "$ctl" $b)

# read_a [around]: read block A (or a bit around it) through the filter.
read_a ()
{
    "$PY" -c '
import nbd, os, sys
h = nbd.NBD(); h.connect_uri(os.environ["uri"])
img = open(os.environ["IMG"], "rb").read()
a = int(os.environ["A"])
if sys.argv[1:] == ["around"]:
    assert h.pread(10000, a * 4096 - 3000) == img[a*4096-3000:a*4096+7000], "around A differs"
else:
    assert h.pread(4096, a * 4096) == img[a*4096:(a+1)*4096], "block A differs"
h.shutdown()
' "$@"
}

# corrupt NAME PYTHON-EXPR FIELD: store the value EXPR (of `v`, A's good
# value, and `w`, B's) under A's key; a read must count one more FIELD,
# and once its fill (sent in the background) is done, reads hit again.
corrupt ()
{
    local name=$1 expr=$2 field=$3 before after hits
    before=$(status_field "$ctl" "$field")
    EXPR=$expr mc_py '
port = int(os.environ["PORT"])
v = mc_get(port, os.environ["KEY_A"])
w = mc_get(port, os.environ["KEY_B"])
assert v is not None and w is not None, "A or B not cached"
mc_set(port, os.environ["KEY_A"], eval(os.environ["EXPR"]))
' || fail "$name: could not store the bad value"
    read_a || fail "$name: wrong data returned"
    # Once the read's fill has replaced the bad value, reads around A hit.
    mc_filled "$ctl"
    read_a around || fail "$name: wrong data returned around A"
    after=$(status_field "$ctl" "$field")
    [ "$after" -eq $(( before + 1 )) ] ||
        fail "$name: $field went from $before to $after, expected +1"

    # The read stored the right value again: now a clean hit.
    hits=$(status_field "$ctl" hits)
    read_a || fail "$name: wrong data on the second read"
    read_a around || fail "$name: wrong data around A on the second read"
    [ "$(status_field "$ctl" hits)" -gt "$hits" ] || fail "$name: not refilled"
    [ "$(status_field "$ctl" "$field")" -eq "$after" ] ||
        fail "$name: the refilled value is rejected too"
}

corrupt garbage 'b"garbage " * 600' format_mismatches
corrupt other-block 'w' auth_failures
corrupt flipped-byte 'v[:100] + bytes([v[100] ^ 1]) + v[101:]' auth_failures
corrupt truncated 'v[:-1]' format_mismatches
corrupt empty 'b""' format_mismatches
echo "$0: OK"
