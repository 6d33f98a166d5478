#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-memcache-filter: the pool changes while nbdkit runs (abdctl
# servers add, remove, reload; memcache-servers-file).
#
# - bad requests (an address that does not parse, one that does not
#   answer, a server already in the pool, one not in it, the last one, a
#   file with a bad line) are refused with an error and change nothing;
# - a 4th server joining 3 takes about 1/4 of a warm working set: about
#   3/4 of it still hits, and the data read is byte-exact; one leaving
#   gives up only its own blocks;
# - stale-data safety: a server removed, then added again with its old
#   items after a zero too large for block versions (a mass invalidation,
#   which raises generations only) is never read from: the blocks read
#   back as zeros;
# - reload makes the pool the file's list; the file's comments and blank
#   lines are ignored.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-memcache-helpers.sh"

MC_PORTS=() MC_PIDS=()
for i in 0 1 2 3; do
    start_memcached "s$i"
    MC_PORTS+=("$mc_port")
done
S=()
for p in "${MC_PORTS[@]}"; do S+=("127.0.0.1:$p"); done

# 24 MiB: a zero of more than 16 MiB (4096 blocks of 4 KiB) is a mass
# invalidation (writer.c).
truncate -s $(( 24*1024*1024 )) "$tmp/img"
head -c $(( 4*1024*1024 )) /dev/urandom |
    dd of="$tmp/img" conv=notrunc status=none
cp "$tmp/img" "$tmp/model"

cat > "$tmp/servers" <<EOF
# the pool of test-memcache-pool
${S[0]}
  ${S[1]}    # trailing comment

${S[2]}
EOF

ctl=$tmp/ctl.sock
start_nbdkit pool --filter="$MEMCACHE_FILTER" file "$tmp/img" \
    memcache-servers-file="$tmp/servers" memcache-id=pool-test \
    memcache-timeout=1000 \
    memcache-control="$ctl"

# servers_field NAME: a top-level field of `abdctl --raw servers`.
servers_field ()
{
    "$ABDCTL" -s "$ctl" --raw servers | awk -v k="$1:" '$1 == k { print $2; exit }'
}
members () { servers_field members; }
changes () { servers_field changes; }

[ "$(members)" = 3 ] || fail "the file's 3 servers: members $(members)"

# readall [expect-file]: the first 4 MiB through nbdkit, compared with the
# model; prints nothing, fails on a difference.
export uri MODEL=$tmp/model
readall ()
{
    "$PY" -c '
import nbd, os
h = nbd.NBD(); h.connect_uri(os.environ["uri"])
model = open(os.environ["MODEL"], "rb").read()
n = 4*1024*1024
for off in range(0, n, 1024*1024):
    got = h.pread(1024*1024, off)
    if got != model[off:off+1024*1024]:
        bad = next(i for i in range(len(got)) if got[i] != model[off+i])
        raise SystemExit("byte %d differs from the model" % (off + bad))
' || fail "read through nbdkit differs from the model ($1)"
}
hits () { status_field "$ctl" hits; }
misses () { status_field "$ctl" misses; }

# ---- bad requests change nothing ----
expect_refused ()
{
    local what=$1; shift
    local rc=0
    "$ABDCTL" -s "$ctl" "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
    [ $rc -eq 1 ] || fail "$what: exit $rc, expected 1 (ERR)"
    grep -q "nothing changed\|not in the pool\|in the pool already\|usage" \
        "$tmp/err" || fail "$what: no clear error: $(cat "$tmp/err")"
    [ "$(members)" = 3 ] && [ "$(changes)" = 0 ] ||
        fail "$what changed the pool: $(members) members, $(changes) changes"
}
unused_port=$(free_port)
expect_refused "add without a port" servers add 127.0.0.1
expect_refused "add port 0" servers add 127.0.0.1:0
expect_refused "add an IPv6 address without brackets" servers add ::1:11211
expect_refused "add a server that does not answer" servers add "127.0.0.1:$unused_port"
expect_refused "add a member" servers add "${S[1]}"
expect_refused "remove a server not in the pool" servers remove "${S[3]}"
expect_refused "an unknown subcommand" servers drop "${S[0]}"
expect_refused "a drain too long" servers remove "${S[0]}" --drain 3601
expect_refused "a drain that is not a number" servers remove "${S[0]}" --drain 1s
expect_refused "--drain on add" servers add "${S[3]}" --drain 5
grep -q "does not answer" <("$ABDCTL" -s "$ctl" servers add "127.0.0.1:$unused_port" 2>&1) ||
    fail "adding a dead server does not say it does not answer"
cp "$tmp/servers" "$tmp/servers.good"
printf '%s\n127.0.0.1:99999\n' "${S[0]}" > "$tmp/servers"
expect_refused "reload of a file with a bad port" servers reload
grep -q "99999" "$tmp/err" || fail "reload's error does not name the bad line"
printf '%s\n%s\n' "${S[0]}" "${S[0]}" > "$tmp/servers"
expect_refused "reload of a file listing a server twice" servers reload
cp "$tmp/servers.good" "$tmp/servers"

# mc_conns PORT: memcached's curr_connections (the one asking included).
mc_conns ()
{
    "$PY" -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(b"stats\r\n")
buf = b""
while not buf.endswith(b"END\r\n"):
    buf += s.recv(65536)
for line in buf.decode().splitlines():
    if line.startswith("STAT curr_connections "):
        print(line.split()[2])
' "$1"
}
conns0=$(mc_conns "${MC_PORTS[3]}")

# ---- warm, then a 4th server joins ----
readall "cold"
mc_filled "$ctl"
h0=$(hits) m0=$(misses)
readall "warm"
h1=$(hits) m1=$(misses)
[ $(( m1 - m0 )) -eq 0 ] && [ $(( h1 - h0 )) -eq 1024 ] ||
    fail "warm read: $(( h1 - h0 )) hits, $(( m1 - m0 )) misses; expected 1024, 0"

# Without warm moves (--warm 0): the 4th server's share misses once.
"$ABDCTL" -s "$ctl" servers add "${S[3]}" --warm 0 > "$tmp/add" ||
    fail "servers add ${S[3]}: $(cat "$tmp/add")"
moved=$(awk '$1 == "moved_share:" { print $2 }' "$tmp/add")
echo "adding a 4th server to 3: moved_share $moved"
awk -v m="$moved" 'BEGIN { exit !(m >= 0.20 && m <= 0.30) }' ||
    fail "adding a 4th server to 3 moved $moved of the blocks, expected ~0.25"
[ "$(members)" = 4 ] && [ "$(changes)" = 1 ] || fail "after add: $(members) members"
readall "after adding a 4th server"
h2=$(hits) m2=$(misses)
ratio=$(awk -v h=$(( h2 - h1 )) 'BEGIN { printf "%.3f", h / 1024 }')
echo "warm set right after adding a 4th to 3: hit ratio $ratio"
awk -v r="$ratio" 'BEGIN { exit !(r >= 0.65 && r <= 0.85) }' ||
    fail "after adding a 4th server: hit ratio $ratio, expected ~0.75"
mc_filled "$ctl"
h2=$(hits) m2=$(misses)
readall "after adding a 4th server, warm again"
[ $(( $(misses) - m2 )) -eq 0 ] ||
    fail "the new server did not warm: $(( $(misses) - m2 )) misses"

# ---- one leaves: only its blocks miss ----
"$ABDCTL" -s "$ctl" servers remove "${S[3]}" > "$tmp/rm" || fail "remove"
moved=$(awk '$1 == "moved_share:" { print $2 }' "$tmp/rm")
echo "removing one of 4: moved_share $moved"
awk -v m="$moved" 'BEGIN { exit !(m >= 0.20 && m <= 0.30) }' ||
    fail "removing one of 4 moved $moved of the blocks, expected ~0.25"
# Its connections are closed, as before it joined.
_no_conns () { [ "$(mc_conns "${MC_PORTS[3]}")" = "$conns0" ]; }
wait_for 10 _no_conns ||
    fail "the removed server has $(mc_conns "${MC_PORTS[3]}") connections, $conns0 before it joined"
h3=$(hits) m3=$(misses)
readall "after removing the 4th server"
# Its blocks go back to where they were before it joined, still warm
# there: nothing was written since.
[ $(( $(misses) - m3 )) -eq 0 ] ||
    fail "removing the 4th: $(( $(misses) - m3 )) misses, expected 0 (its blocks' old servers still hold them)"

# ---- stale-data safety: removed, mass-zeroed, added back ----
# Every block of the first 4 MiB is on the servers now.  S[1] leaves;
# a zero of the whole device (a mass invalidation: generations, not
# versions) happens while it is out; it comes back with its items.
"$ABDCTL" -s "$ctl" servers remove "${S[1]}" >/dev/null || fail "remove S1"
"$PY" -c '
import nbd, os
h = nbd.NBD(); h.connect_uri(os.environ["uri"])
h.zero(h.get_size(), 0)
' || fail "zero"
[ "$(status_field "$ctl" mass_invalidations)" = 1 ] ||
    fail "the zero was not a mass invalidation"
truncate -s 0 "$tmp/model"; truncate -s $(( 24*1024*1024 )) "$tmp/model"
"$ABDCTL" -s "$ctl" servers add "${S[1]}" >/dev/null || fail "add S1 back"
# (warm moves are on: S1's blocks are asked of S0 and S2, which were
# mass-zeroed too, and hold nothing older than the zero.)
readall "a server added back after a mass zero"
readall "a server added back after a mass zero, again"

# ---- writes while servers come and go, then reload ----
head -c $(( 4*1024*1024 )) /dev/urandom > "$tmp/data"
dd if="$tmp/data" of="$tmp/model" conv=notrunc status=none
export DATA=$tmp/data
"$PY" -c '
import nbd, os
h = nbd.NBD(); h.connect_uri(os.environ["uri"])
h.pwrite(open(os.environ["DATA"], "rb").read(), 0)
' || fail "write"
readall "after writing everything"
mc_filled "$ctl"
printf '# two left\n%s\n%s\n' "${S[2]}" "${S[3]}" > "$tmp/servers"
"$ABDCTL" -s "$ctl" servers reload > "$tmp/reload" || fail "reload: $(cat "$tmp/reload")"
grep -q "^added: 1$" "$tmp/reload" && grep -q "^removed: 2$" "$tmp/reload" ||
    fail "reload: $(cat "$tmp/reload")"
[ "$(members)" = 2 ] || fail "after reload: $(members) members"
"$ABDCTL" -s "$ctl" servers | grep -q "address: ${S[3]}" ||
    fail "servers does not list ${S[3]}"
readall "after reload"

# ---- the last server cannot leave ----
"$ABDCTL" -s "$ctl" servers remove "${S[2]}" >/dev/null || fail "remove S2"
rc=0; "$ABDCTL" -s "$ctl" servers remove "${S[3]}" 2>"$tmp/err" || rc=$?
[ $rc -eq 1 ] && grep -q "last server" "$tmp/err" ||
    fail "removing the last server: exit $rc, $(cat "$tmp/err")"
readall "with one server"
[ "$(status_field "$ctl" auth_failures)" = 0 ] ||
    echo "note: $(status_field "$ctl" auth_failures) auth failures (old values, refused)"
echo "test-memcache-pool: ok"
