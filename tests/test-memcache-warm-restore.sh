#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-memcache-filter, memcache-state-file put back from a copy (a
# backup, a snapshot): it must not serve a block older than the image.
#
# A clean stop writes the state file, which is copied; a warm run writes
# other data to some blocks and stops.  Their old values come back on the
# server, as a store that failed (a server down or frozen during the
# write) or a peer replaying them leaves them: a value a restored state
# file would take for current, since it brings back the old block
# versions.  Then the copy is put back.  Before the servers' markers, that
# start was warm and served the old data; now it is cold (the marker says
# a start used the state since), says why, and every read equals the
# image.  The same without any peer: the server frozen (SIGSTOP) while
# the blocks are written, so their stores skip it.  And: a plain clean
# stop and start is still warm (every block a hit); a server whose marker
# is gone (flush_all, or the marker alone evicted) or does not
# authenticate gives a cold start, and so does a copy put back after a
# start that crashed; another device on the same server has markers of
# its own; a start without memcache-state-file (which leaves the file
# in place) marks the servers too; with two servers, one frozen at start
# is a cold start, and a
# start that could mark only the other one still makes a copy put back
# start cold.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-memcache-helpers.sh"

start_memcached restore
head -c 32 /dev/urandom > "$tmp/key"
chmod 600 "$tmp/key"
mkdir -m 700 "$tmp/state"
state=$tmp/state/memcache.state
blocks=256
written=64                              # blocks the second run writes
head -c $((blocks * 4096)) /dev/urandom > "$tmp/img"
ctl=$tmp/ctl.sock
export PORT=$mc_port PYTHONPATH=$abs_top_srcdir/tests

# start [PARAM=VALUE...]: the filter over the image, with more parameters.
start ()
{
    start_nbdkit mc --filter="$MEMCACHE_FILTER" file "$tmp/img" \
        memcache-servers="127.0.0.1:$mc_port" memcache-id=warm-restore-test \
        memcache-key-file="$tmp/key" memcache-state-file="$state" \
        memcache-timeout=500 memcache-control="$ctl" "$@"
}
# write_blocks N: other data into the first N blocks, each read back.
write_blocks ()
{
    "$PY" -c '
import os, sys
import nbd
h = nbd.NBD(); h.connect_uri(sys.argv[1])
for b in range(int(sys.argv[2])):
    data = os.urandom(4096)
    h.pwrite(data, b * 4096)
    assert h.pread(4096, b * 4096) == data, "block %d" % b
h.shutdown()' "$uri" "$1" || fail "a write did not read back"
}
# read_all: the whole device through the filter equals the image (the
# file plugin writes the image itself: it is the truth).
read_all ()
{
    nbdcopy --no-extents "$uri" "$tmp/out"
    cmp "$tmp/img" "$tmp/out" || fail "$1: a read differs from the image"
}
# expect START [REASON]: how this process started (and why, a substring).
expect ()
{
    local got
    got=$(mc_status "$ctl" 'd["start"]')
    [ "$got" = "$1" ] ||
        fail "expected a $1 start, got $got ($(mc_status "$ctl" 'd["start_reason"]'))"
    if [ -n "${2:-}" ]; then
        got=$(mc_status "$ctl" 'd["start_reason"]')
        echo "start: $1: $got"
        [[ $got == *"$2"* ]] || fail "start reason '$got', expected '$2'"
    fi
}
# hits: the hits so far.
hits () { mc_status "$ctl" 'd["hits"]'; }
# peer ARGS: the peer's actions on the server (tests/memcached_peer.py).
peer ()
{
    "$PY" -c '
import os, pickle, sys
import memcached_peer as m
port = int(os.environ["PORT"])
what = sys.argv[1]
if what == "record":            # every block value, kept aside
    snap = {k: v for (p, k), v in m.snapshot([port]).items()
            if k.startswith("abd3:")}
    pickle.dump(snap, open(sys.argv[2], "wb"))
    print(len(snap))
elif what == "replay":          # put them back
    snap = pickle.load(open(sys.argv[2], "rb"))
    for k, v in snap.items():
        m.put(port, k, v)
    print(len(snap))
elif what == "flush":
    import socket
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"flush_all\r\n")
    assert s.makefile("rb").readline() == b"OK\r\n"
elif what == "delete-markers":  # the markers alone, as an eviction would
    n = 0
    for k in m.keys(port):
        if k.startswith("abdm:"):
            s, f = m._conn(port)
            s.sendall(b"delete %s\r\n" % k.encode())
            assert f.readline() == b"DELETED\r\n"
            n += 1
    print(n)
' "$@"
}

# 0. A cold start fills the cache; its clean stop writes the state file,
#    which is copied.  The peer records every block's value.
start
expect cold
read_all "cold start"
mc_filled "$ctl"
stop_nbdkit "$pid"
[ -f "$state" ] || fail "no state file after a clean stop"
cp -p "$state" "$tmp/state.copy"
n=$(peer record "$tmp/old-values")
[ "$n" -ge "$blocks" ] || fail "only $n values on the server"

# 1. Warm from it; other data written to the first $written blocks, which
#    are read back; a clean stop.
start
expect warm
write_blocks "$written"
read_all "run 1"
stop_nbdkit "$pid"

# The written blocks' stores failed: their old values are on the server.
peer replay "$tmp/old-values" >/dev/null

# 2. The copy put back: cold, and every read equals the image.
cp -p "$tmp/state.copy" "$state"
start
[ ! -e "$state" ] || fail "the state file is still there while serving"
read_all "the copy put back"
expect cold "is from another clean stop than this state file's"
[ "$(hits)" -eq 0 ] || fail "hits after the copy was put back: $(hits)"
mc_filled "$ctl"
stop_nbdkit "$pid"

# 3. A plain clean stop and start: warm, every block a hit.
start
expect warm "every server's marker"
read_all "warm after a clean stop"
[ "$(hits)" -eq "$blocks" ] || fail "warm start: $(hits) hits, not $blocks"
stop_nbdkit "$pid"

# 4. The server flushed while nbdkit was stopped: no marker, cold.
peer flush
start
expect cold "is missing"
read_all "after flush_all"
mc_filled "$ctl"
stop_nbdkit "$pid"

# 5. The marker alone gone (evicted), every block value still there: cold.
[ "$(peer delete-markers)" -eq 1 ] || fail "not one marker on the server"
start
expect cold "is missing"
read_all "marker evicted"
[ "$(hits)" -eq 0 ] || fail "hits after the marker was evicted: $(hits)"
stop_nbdkit "$pid"

# 6. And the copy of step 0 put back once more, after all these starts:
#    cold.
cp -p "$tmp/state.copy" "$state"
start
expect cold "a copy put back"
read_all "the old copy again"
stop_nbdkit "$pid"

# 7. A start that crashed after it wrote: its marker says "in use", so a
#    copy of the file it took, put back, is cold.
cp -p "$state" "$tmp/state.copy"
start
expect warm
"$PY" -c '
import os, sys
import nbd
h = nbd.NBD(); h.connect_uri(sys.argv[1])
h.pwrite(os.urandom(4096), 0)
h.shutdown()' "$uri"
kill -KILL "$pid"
wait_for 10 exited "$pid" || fail "nbdkit survived SIGKILL"
cp -p "$tmp/state.copy" "$state"
start
expect cold "says a start has used the state since"
read_all "the copy put back after a crash"
stop_nbdkit "$pid"

# 8. The same without any peer: the server frozen (SIGSTOP) while the
#    writes are made.  Reads time out until it is down (a few stalls in
#    a row: each full read is at least one), and it stays down while
#    nothing asks for it (its probes come with requests), so the writes
#    skip it, or time out on it, and their
#    blocks' old values stay on it; it is thawed before the clean stop.
#    A copy of the state file taken before, put back: before the
#    markers, a warm start that served those old values.
start
expect warm
read_all "before the copy"
mc_filled "$ctl"
stop_nbdkit "$pid"
cp -p "$state" "$tmp/state.copy"
start
expect warm
kill -STOP "$mc_pid"
cleanup_fn kill -CONT "$mc_pid"
for i in $(seq 10); do
    read_all "server frozen"
    [ "$(mc_status "$ctl" 'd["servers"]["server0"]["state"]')" = down ] &&
        break
done
[ "$(mc_status "$ctl" 'd["servers"]["server0"]["state"]')" = down ] ||
    fail "the frozen server is not down after 10 reads of every block"
write_blocks "$written"
kill -CONT "$mc_pid"
stop_nbdkit "$pid"
cp -p "$tmp/state.copy" "$state"
start
read_all "the copy put back after writes skipped a frozen server"
expect cold "is from another clean stop than this state file's"
mc_filled "$ctl"
stop_nbdkit "$pid"

# 9. A marker that does not authenticate (a byte flipped): cold.
"$PY" -c '
import os
import memcached_peer as m
port = int(os.environ["PORT"])
k = [k for k in m.keys(port) if k.startswith("abdm:")][0]
v = bytearray(m.get(port, k)); v[20] ^= 1
m.put(port, k, bytes(v))'
start
expect cold "does not authenticate"
read_all "a tampered marker"
mc_filled "$ctl"
stop_nbdkit "$pid"

# 10. Devices sharing the server have markers of their own: another
#     device (another memcache-id, the same key file) started and
#     stopped in between leaves this one's start warm.
mkdir -m 700 "$tmp/state2"
head -c $((16 * 4096)) /dev/urandom > "$tmp/img2"
start_nbdkit other --filter="$MEMCACHE_FILTER" file "$tmp/img2" \
    memcache-servers="127.0.0.1:$mc_port" memcache-id=warm-restore-other \
    memcache-key-file="$tmp/key" \
    memcache-state-file="$tmp/state2/memcache.state" memcache-timeout=500
nbdcopy --no-extents "$uri" "$tmp/out2"
cmp "$tmp/img2" "$tmp/out2" || fail "the other device reads differ"
stop_nbdkit "$pid"
start
expect warm "every server's marker"
read_all "after another device's start and stop"
[ "$(hits)" -eq "$blocks" ] || fail "warm start: $(hits) hits, not $blocks"
stop_nbdkit "$pid"

# 11. No copy at all: a start without memcache-state-file (the same key
#     file) leaves the state file where it is, and writes.  It marks the
#     servers all the same, so the next start with the file is cold, and
#     every read equals the image.
start
mc_filled "$ctl"
stop_nbdkit "$pid"
[ -f "$state" ] || fail "no state file after a clean stop"
start_nbdkit nostate --filter="$MEMCACHE_FILTER" file "$tmp/img" \
    memcache-servers="127.0.0.1:$mc_port" memcache-id=warm-restore-test \
    memcache-key-file="$tmp/key" memcache-timeout=500
write_blocks "$written"
stop_nbdkit "$pid"
[ -f "$state" ] || fail "a start without the parameter took the state file"
start
read_all "after a start without memcache-state-file"
expect cold "says a start has used the state since"
stop_nbdkit "$pid"

# 12. Two servers, one of them frozen at a start.  A server that does not
#     answer at start is a cold start; that start marks the other server
#     "in use" and writes, then crashes (no stop marker anywhere).  The
#     thawed server still holds the old stop's marker, but one server
#     marked "in use" is enough: the copy put back starts cold, and every
#     read equals the image.
start_memcached two-a
mc_a=$mc_port
start_memcached two-b
mc_b=$mc_port mc_b_pid=$mc_pid
mkdir -m 700 "$tmp/state3"
state3=$tmp/state3/memcache.state
start3 ()
{
    start_nbdkit mc3 --filter="$MEMCACHE_FILTER" file "$tmp/img" \
        memcache-servers="127.0.0.1:$mc_a,127.0.0.1:$mc_b" \
        memcache-id=warm-restore-two memcache-key-file="$tmp/key" \
        memcache-state-file="$state3" memcache-timeout=500 \
        memcache-retry=600000 memcache-control="$ctl" "$@"
}
start3
read_all "two servers, cold"
mc_filled "$ctl"
stop_nbdkit "$pid"
cp -p "$state3" "$tmp/state3.copy"
kill -STOP "$mc_b_pid"
cleanup_fn kill -CONT "$mc_b_pid"
start3
expect cold "127.0.0.1:$mc_b could not be read"
write_blocks "$written"
read_all "two servers, one frozen"
kill -KILL "$pid"
wait_for 10 exited "$pid" || fail "nbdkit survived SIGKILL"
kill -CONT "$mc_b_pid"
cp -p "$tmp/state3.copy" "$state3"
start3
read_all "two servers, the copy put back"
expect cold "127.0.0.1:$mc_a says a start has used the state since"
stop_nbdkit "$pid"
# And with both up, a clean stop and start is warm.
start3
expect warm
read_all "two servers, warm"
[ "$(hits)" -eq "$blocks" ] || fail "two servers: $(hits) hits, not $blocks"
stop_nbdkit "$pid"
echo "$0: OK"
