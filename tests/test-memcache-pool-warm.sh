#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-memcache-filter: warm moves.  Right after a change of the pool,
# a block that misses on its new server is asked of the server that held
# it before, served from there if it authenticates, and copied to its
# new server.  A warm working set of 4 MiB (1024 blocks) over 3 servers:
#
# - a 4th server joins (warm moves by default): the set still hits
#   (>= 95% of before), the moved blocks counted in warm_hits; once the
#   copies are stored, it hits on the new server alone;
# - one of 4 leaves with --drain: the same;
# - without them (--warm 0, no --drain): about 3/4 hits, the baseline;
# - a block written after the change is read as written (the copy of
#   the previous server's older value never lands over it).
# Every read is compared byte for byte with the image.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-memcache-helpers.sh"

S=()
for i in 0 1 2 3 4; do
    start_memcached "s$i"
    S+=("127.0.0.1:$mc_port")
done
head -c $(( 4*1024*1024 )) /dev/urandom > "$tmp/img"
cp "$tmp/img" "$tmp/model"
ctl=$tmp/ctl.sock
start_nbdkit warm --filter="$MEMCACHE_FILTER" file "$tmp/img" \
    memcache-servers="${S[0]},${S[1]},${S[2]}" memcache-id=pool-warm \
    memcache-timeout=1000 memcache-control="$ctl"
export uri MODEL=$tmp/model

readall ()
{
    "$PY" -c '
import nbd, os
h = nbd.NBD(); h.connect_uri(os.environ["uri"])
model = open(os.environ["MODEL"], "rb").read()
for off in range(0, len(model), 1 << 20):
    got = h.pread(1 << 20, off)
    if got != model[off:off + (1 << 20)]:
        bad = next(i for i in range(len(got)) if got[i] != model[off+i])
        raise SystemExit("byte %d differs from the model" % (off + bad))
' || fail "read through nbdkit differs from the model ($1)"
}
f () { status_field "$ctl" "$1"; }

# ratio_of WHAT: read the set once; print its hit ratio; fail on a diff.
ratio_of ()
{
    local h0 m0
    h0=$(f hits) m0=$(f misses)
    readall "$1"
    awk -v h=$(( $(f hits) - h0 )) -v m=$(( $(f misses) - m0 )) \
        'BEGIN { printf "%.3f", h / (h + m) }'
}
at_least () { awk -v r="$1" -v t="$2" 'BEGIN { exit !(r >= t) }'; }

readall "cold"
mc_filled "$ctl"
before=$(ratio_of "warm")
[ "$before" = 1.000 ] || fail "the warm set hit $before before any change"

# A 4th joins, warm.
"$ABDCTL" -s "$ctl" servers add "${S[3]}" > "$tmp/out" || fail "add: $(cat "$tmp/out")"
grep -q "^warm_seconds: 300$" "$tmp/out" || fail "add is not warm by default"
w0=$(f warm_hits)
r=$(ratio_of "right after adding a 4th server to 3, warm")
echo "adding a 4th server to 3, warm moves: hit ratio $r (before: $before)"
at_least "$r" 0.95 || fail "adding a 4th, warm: hit ratio $r, expected >= 0.95"
moved=$(( $(f warm_hits) - w0 ))
[ "$moved" -ge 180 ] && [ "$moved" -le 330 ] ||
    fail "adding a 4th: $moved warm hits, expected about 256"
mc_filled "$ctl"
w1=$(f warm_hits)
r=$(ratio_of "after the copies")
[ "$r" = 1.000 ] && [ "$(f warm_hits)" = "$w1" ] ||
    fail "the copies did not land: hit ratio $r, $(( $(f warm_hits) - w1 )) more warm hits"

# One of 4 leaves, drained.
"$ABDCTL" -s "$ctl" servers remove "${S[0]}" --drain 600 > "$tmp/out" ||
    fail "remove --drain: $(cat "$tmp/out")"
r=$(ratio_of "right after removing one of 4 with a drain")
echo "removing one of 4 with --drain: hit ratio $r (before: $before)"
at_least "$r" 0.95 || fail "removing one of 4, drained: hit ratio $r, expected >= 0.95"
mc_filled "$ctl"
w2=$(f warm_hits)
r=$(ratio_of "after the drain's copies")
[ "$r" = 1.000 ] && [ "$(f warm_hits)" = "$w2" ] ||
    fail "the drain's copies did not land: hit ratio $r"

# A block that moves, written after the change and before it is read:
# the new data, never the previous server's copy.
"$ABDCTL" -s "$ctl" servers add "${S[4]}" > /dev/null || fail "add S4"
head -c $(( 1024*1024 )) /dev/urandom > "$tmp/data"
dd if="$tmp/data" of="$tmp/model" conv=notrunc status=none
export DATA=$tmp/data
"$PY" -c '
import nbd, os
h = nbd.NBD(); h.connect_uri(os.environ["uri"])
h.pwrite(open(os.environ["DATA"], "rb").read(), 0)
' || fail "write"
readall "written after the change"
mc_filled "$ctl"
readall "written after the change, again"

# The baseline: no warm moves.
"$ABDCTL" -s "$ctl" servers remove "${S[4]}" > /dev/null || fail "remove S4"
mc_filled "$ctl"
readall "settle"
mc_filled "$ctl"
"$ABDCTL" -s "$ctl" servers add "${S[0]}" --warm 0 > /dev/null || fail "add S0"
r=$(ratio_of "adding a 4th server to 3, cold")
echo "adding a 4th server to 3, no warm moves: hit ratio $r"
mc_filled "$ctl"
readall "settle"
"$ABDCTL" -s "$ctl" servers remove "${S[1]}" > /dev/null || fail "remove S1"
r=$(ratio_of "removing one of 4, no drain")
echo "removing one of 4, no drain: hit ratio $r"
[ "$(f auth_failures)" = 0 ] || echo "note: $(f auth_failures) auth failures"
echo "test-memcache-pool-warm: ok"
