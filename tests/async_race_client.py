# SPDX-License-Identifier: BSD-3-Clause
"""One client of the race tests (test-async-race-*.sh), over $uri:

  async_race_client.py ME NCONN NOPS SEED
      connection ME of NCONN: NOPS writes and zeroes (up to 32 in flight,
      aio) of its own ranges, starting from the image $BASE, checking
      its idle ranges as it goes and all of them at the end; its model
      is saved as $MODEL.ME
  async_race_client.py -1 NCONN 0 0
      merge the NCONN models into $MODEL (each range from its owner's)

Ranges of different connections share 4K blocks (1500-byte cells in the
first 4 MiB, 64 KiB chunks after), so a read-modify-write of one
connection races write-back of another's data in the same block.  A
connection never has two overlapping requests in flight, so the last
acknowledged write of every byte is known."""

import os
import random
import sys

import nbd

from abdtest.workload import connect

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
h = connect()
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
