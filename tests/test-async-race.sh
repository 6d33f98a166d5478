#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter: client writes racing writeback.  No writeback
# delay, 8K lower writes, 16 writers, a small store (so writes wait for
# space).  Four connections rewrite their own ranges over and over, each
# with up to 32 requests in flight (aio), with distinct random data and
# some zeroes.  Ranges of different connections share 4K blocks (1500-byte
# cells in the first 4 MiB), so read-modify-write of one connection races
# writeback of another's data in the same block.  A connection never has
# two overlapping requests in flight, so the last acknowledged write of
# every byte is known.  Each connection reads back its own idle ranges as
# it goes; at the end, after `abdctl flush`, the file must equal the
# merged model.  Rounds: async mode; async with `abdctl flush` and mode
# switches (sync <-> async) during the run; sync mode with
# async-sync-writes=through from the start.
# In the switch round, each mode lasts until the clients have written
# more, so both modes see writes whatever the scheduling (a fixed 0.3 s
# window let a fast run happen entirely in sync mode).

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-helpers.sh"

size=$(( 16 * 1024 * 1024 ))
nconn=4
nops=${RACE_OPS:-1500}          # per connection and round

cat > "$tmp/race.py" <<'EOF'
import nbd, os, random, sys
me, nconn, nops, seed = map(int, sys.argv[1:5])
size = int(os.environ["SIZE"])
A_END, CELL, CHUNK = 4 << 20, 1500, 64 << 10

def cells_of(owner):
    """The (offset, length) ranges this connection owns."""
    out = []
    k = 0
    for off in range(0, A_END, CELL):
        if k % nconn == owner:
            out.append((off, min(CELL, A_END - off)))
        k += 1
    for off in range(A_END, size, CHUNK):
        if k % nconn == owner:
            out.append((off, CHUNK))
        k += 1
    return out

if me < 0:
    # Merge: every range from its owner's model.
    img = bytearray(open(os.environ["BASE"], "rb").read())
    for c in range(nconn):
        m = open("%s.%d" % (os.environ["MODEL"], c), "rb").read()
        for off, n in cells_of(c):
            img[off:off+n] = m[off:off+n]
    open(os.environ["MODEL"], "wb").write(img)
    sys.exit(0)

rnd = random.Random(seed * 100 + me)
h = nbd.NBD(); h.connect_uri(os.environ["uri"])
model = bytearray(open(os.environ["BASE"], "rb").read())
cells = cells_of(me)
idle = list(range(len(cells)))
inflight = {}
issued = checks = 0
QD = 32

def check(ci):
    off, n = cells[ci]
    got = h.pread(n, off)
    if got != bytes(model[off:off+n]):
        i = next(j for j in range(n) if got[j] != model[off+j])
        sys.exit("conn %d: byte %d of my range %d+%d reads %d, last write "
                 "put %d" % (me, off + i, off, n, got[i], model[off+i]))

while issued < nops or inflight:
    while issued < nops and len(inflight) < QD and idle:
        j = rnd.randrange(len(idle))
        idle[j], idle[-1] = idle[-1], idle[j]
        ci = idle.pop()
        off, n = cells[ci]
        # A random piece of the range (often all of it).
        if rnd.random() < 0.3:
            s, l = 0, n
        else:
            s = rnd.randrange(n)
            l = rnd.randint(1, n - s)
        if rnd.random() < 0.85:
            data = bytearray(rnd.randbytes(l))
            buf = nbd.Buffer.from_bytearray(data)
            cookie = h.aio_pwrite(buf, off + s)
            inflight[cookie] = (ci, off + s, bytes(data), buf)
        else:
            cookie = h.aio_zero(l, off + s)
            inflight[cookie] = (ci, off + s, bytes(l), None)
        issued += 1
    # A synchronous read (check) may have retired replies already: poll
    # only when nothing has completed.
    done = [c for c in inflight if h.aio_command_completed(c)]
    if not done:
        h.poll(-1)
        continue
    for cookie in done:
        ci, o, data, _ = inflight.pop(cookie)
        model[o:o+len(data)] = data
        idle.append(ci)
    for cookie in done:
        if rnd.random() < 0.05:
            check(idle[rnd.randrange(len(idle))])
            checks += 1
for ci in range(len(cells)):
    check(ci)
h.shutdown()
open("%s.%d" % (os.environ["MODEL"], me), "wb").write(model)
EOF

export SIZE=$size

# written_back: true once the writers have written something back.
written_back ()
{
    [ "$(st "$ctl" written_back_requests)" -gt 0 ]
}

# wrote_more PID: true when the clients wrote since the last call, or
# PID (a client) has exited.
writes_seen=0
wrote_more ()
{
    local n
    kill -0 "$1" 2>/dev/null || return 0
    n=$(st "$ctl" client_write_requests)
    [ "$n" -gt "$writes_seen" ] || return 1
    writes_seen=$n
}

# round NAME SEED EXTRA-PARAMS...: one round over a fresh image.
round ()
{
    local name=$1 seed=$2 c pids=() p bad=0; shift 2
    make_random "$tmp/disk" $size "$seed"
    cp "$tmp/disk" "$tmp/base"
    ctl=$tmp/ctl-$name.sock
    async_start "race-$name" --filter="$ASYNC_FILTER" file "$tmp/disk" \
        async-control="$ctl" async-writeback-delay=0 async-write-size=8K \
        async-writers=16 async-max-dirty=1M "$@"
    export uri BASE=$tmp/base MODEL=$tmp/model
    for (( c=0; c<nconn; c++ )); do
        "$PY" "$tmp/race.py" $c $nconn $nops "$seed" &
        pids+=($!)
    done
    if [ "$name" = switch ]; then
        # Flushes and mode switches while the writes run.  Each window
        # lasts until the clients have written more (or are done), so
        # that writes land in both modes however the machine schedules
        # them; the first switch waits for a write-back in async mode.
        wait_for 60 written_back || fail "$name: no writeback in async mode"
        while kill -0 "${pids[0]}" 2>/dev/null; do
            abdctl -s "$ctl" mode sync >/dev/null || fail "$name: mode sync failed"
            wait_for 60 wrote_more "${pids[0]}" || fail "$name: no writes in sync mode"
            abdctl -s "$ctl" flush 30 || fail "$name: abdctl flush under load failed"
            abdctl -s "$ctl" mode async >/dev/null || fail "$name: mode async failed"
            wait_for 60 wrote_more "${pids[0]}" || fail "$name: no writes in async mode"
        done
    fi
    for p in "${pids[@]}"; do
        wait "$p" || bad=1
    done
    [ $bad -eq 0 ] || fail "$name: a connection read back something else than it wrote"
    "$PY" "$tmp/race.py" -1 $nconn 0 0 || fail "$name: merging the models failed"
    abdctl -s "$ctl" flush 30 || fail "$name: abdctl flush failed"
    [ "$(st "$ctl" dirty_bytes)" -eq 0 ] || fail "$name: dirty after flush"
    [ "$(st "$ctl" client_write_requests)" -gt 0 ] || fail "$name: no writes counted"
    # (Sync mode with "through" from the start: every write goes through,
    # nothing is written back.)
    [ "$name" = sync ] || [ "$(st "$ctl" written_back_requests)" -gt 0 ] ||
        fail "$name: no writeback"
    [ "$name" != sync ] || [ "$(st "$ctl" written_back_requests)" -eq 0 ] ||
        fail "$name: writes to clean ranges did not go through"
    [ "$(st "$ctl" lower_write_errors)" -eq 0 ] || fail "$name: lower write errors"
    cmp "$tmp/disk" "$tmp/model" ||
        fail "$name: after flush the file differs from the model: $(first_diff "$tmp/disk" "$tmp/model")"
    stop_nbdkit "$pid"
    cmp "$tmp/disk" "$tmp/model" || fail "$name: after exit the file differs"
    cmp -s "$tmp/disk" "$tmp/base" && fail "$name: nothing changed (test bug)"
    echo "$0: round $name OK ($SECONDS s)"
}

round async 31
round switch 32
round sync 33 async-mode=sync async-sync-writes=through
echo "$0: OK"
