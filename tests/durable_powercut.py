# SPDX-License-Identifier: BSD-3-Clause
"""The workload and the checker of test-async-durable-powercut.sh.

  init IMAGE SIZE            fill IMAGE with every block's initial content
  run URI LOGDIR CONNS SEED SECONDS
                             flush-heavy writes until SECONDS pass or the
                             server dies; a log per connection
  check IMAGE LOGDIR         every block of IMAGE holds a content the logs
                             allow (exit 1 and the first wrong blocks if not)

Every block written holds a header (the write's id, the block number) and
filler derived from both, so that the checker knows which write a block's
content came from.  Connection C writes only blocks b with b % CONNS == C,
one request at a time: the order of the writes to a block is the order of
its log.  Ids grow along a log.  Log lines, each flushed to the kernel
before the next request (the host does not crash, only nbdkit dies):
  W ID BLK N     before a write of blocks [BLK, BLK+N) (Z: a zero)
  U ID           the FUA write ID returned: it is durable
  F ID           a flush returned; writes up to ID on this connection are
                 durable (they returned before it was sent)
Allowed content of a block: its last durable write (or the initial
content if none), or any write to it after that one (unflushed: old or
new), whole.  Anything else (an older write, another block's data, torn
data, garbage) fails.
"""

import os
import random
import struct
import sys
import threading
import time

BLOCK = 4096


def content(wid, blk):
    """Block BLK as write WID (0: the initial content) leaves it."""
    head = struct.pack("<QQ", wid, blk)
    return head + random.Random(wid * 1000003 + blk).randbytes(BLOCK - 16)


def init(image, size):
    with open(image, "wb") as f:
        for blk in range(size // BLOCK):
            f.write(content(0, blk))


def worker(uri, logdir, conn, nconns, nblocks, seed, deadline, errors):
    import nbd
    rnd = random.Random(seed * 100 + conn)
    mine = list(range(conn, nblocks, nconns))
    h = nbd.NBD()
    h.connect_uri(uri)
    log = open(os.path.join(logdir, "conn%d.log" % conn), "w")
    wid = (conn + 1) << 40
    last_written = 0
    try:
        while time.monotonic() < deadline:
            r = rnd.random()
            if r < 0.25:
                h.flush()
                log.write("F %d\n" % last_written)
                log.flush()
                continue
            # 1 to 4 of this connection's blocks, consecutive among them
            # (one request per block: they are not adjacent on the
            # device unless nconns is 1).
            i = rnd.randrange(len(mine))
            n = rnd.choice((1, 1, 1, 2, 4))
            blks = mine[i:i + n]
            for blk in blks:
                wid += 1
                zero = rnd.random() < 0.05
                fua = rnd.random() < 0.1
                log.write("%s %d %d 1\n" % ("Z" if zero else "W", wid, blk))
                log.flush()
                flags = nbd.CMD_FLAG_FUA if fua else 0
                if zero:
                    h.zero(BLOCK, blk * BLOCK, flags)
                else:
                    h.pwrite(content(wid, blk), blk * BLOCK, flags)
                last_written = wid
                if fua:
                    log.write("U %d\n" % wid)
                    log.flush()
    except Exception as e:              # the server died: expected
        errors.append("conn %d: %s" % (conn, e))
    finally:
        log.close()


def run(uri, logdir, nconns, seed, seconds):
    import nbd
    h = nbd.NBD()
    h.connect_uri(uri)
    nblocks = h.get_size() // BLOCK
    h.shutdown()
    deadline = time.monotonic() + seconds
    errors = []
    threads = [threading.Thread(target=worker,
                                args=(uri, logdir, c, nconns, nblocks, seed,
                                      deadline, errors))
               for c in range(nconns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for e in errors:
        print(e)


def check(image, logdir):
    ops = {}                # blk -> [(kind, wid)], in order
    durable = {}            # blk -> index in ops[blk] of its last durable op
    nflushes = 0
    for name in sorted(os.listdir(logdir)):
        writes = []         # (wid, blk, index) of this connection, in order
        fua = set()
        flushed = 0
        for line in open(os.path.join(logdir, name)):
            f = line.split()
            if len(f) < 2 or not line.endswith("\n"):
                continue    # a line cut by the kill
            if f[0] in ("W", "Z"):
                wid, blk = int(f[1]), int(f[2])
                lst = ops.setdefault(blk, [])
                lst.append((f[0], wid))
                writes.append((wid, blk, len(lst) - 1))
            elif f[0] == "U":
                fua.add(int(f[1]))
            elif f[0] == "F":
                flushed = max(flushed, int(f[1]))
                nflushes += 1
        for wid, blk, idx in writes:
            if wid <= flushed or wid in fua:
                durable[blk] = max(durable.get(blk, -1), idx)
    bad = []
    ndurable = nunflushed_new = 0
    with open(image, "rb") as img:
        blk = 0
        while True:
            data = img.read(BLOCK)
            if len(data) < BLOCK:
                break
            lst = ops.get(blk, [])
            d = durable.get(blk, -1)
            allowed = lst[d:] if d >= 0 else [("W", 0)] + lst
            ok = False
            for kind, wid in allowed:
                if kind == "Z":
                    ok = data == bytes(BLOCK)
                else:
                    ok = data == content(wid, blk)
                if ok:
                    if d >= 0:
                        ndurable += 1
                        if (kind, wid) != lst[d]:
                            nunflushed_new += 1
                    break
            if not ok:
                wid, b = struct.unpack("<QQ", data[:16])
                bad.append("block %d: holds id %d (block %d)%s; allowed %s"
                           % (blk, wid, b,
                              "" if data == content(wid, b) else " torn",
                              allowed[:4]))
            blk += 1
    print("checked %d blocks: %d written, %d with a durable write "
          "(%d of them newer), %d flushes"
          % (blk, len(ops), ndurable, nunflushed_new, nflushes))
    for b in bad[:10]:
        print("WRONG " + b)
    if bad:
        print("%d blocks wrong" % len(bad))
        sys.exit(1)
    if ndurable == 0:
        print("no block had a durable write: the test proved nothing")
        sys.exit(2)


def main():
    cmd = sys.argv[1]
    if cmd == "init":
        init(sys.argv[2], int(sys.argv[3]))
    elif cmd == "run":
        run(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]),
            float(sys.argv[6]))
    elif cmd == "check":
        check(sys.argv[2], sys.argv[3])
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main()
