# SPDX-License-Identifier: BSD-3-Clause
"""Drive many abd devices at once, each checked against its own model.

Used by tests/test-memcache-many-hosts.sh (and scripts/bench's
many-hosts row): one thread per device (an nbdkit with its own file and
memcache-id), every thread doing random 4K reads and writes through its
own NBD connection, every read compared byte for byte with the thread's
model of the device.  The threads run in three phases so that the
caller can change the memcached pool while they run:

  1. OPS operations per device, then the file DIR/phase1 is created;
  2. operations go on until the caller creates DIR/changed (deadline
     CHANGE_DEADLINE seconds; every device does at least OPS of them);
  3. OPS more operations, then every block of every device is read and
     compared with the model.

The working set of each device is its first HOT blocks (a read cache
has something to hit); one operation in four is a write.  Prints one
line per device: "dev I: ops N reads N writes N mismatches 0".
Exit status 0 only if no read differed and no request failed.

Usage: many_hosts_client.py DIR SOCKET... (environment: OPS, HOT, SEED)
"""

import os
import random
import sys
import threading
import time

import nbd

BLOCK = 4096


def main():
    work = sys.argv[1]
    sockets = sys.argv[2:]
    ops = int(os.environ.get("OPS", "300"))
    hot = int(os.environ.get("HOT", "256"))
    seed = int(os.environ.get("SEED", "1"))
    change_deadline = float(os.environ.get("CHANGE_DEADLINE", "300"))
    failures = []
    done_phase1 = threading.Barrier(len(sockets) + 1)
    results = [None] * len(sockets)

    def device(i, sock):
        rnd = random.Random(seed * 1000 + i)
        h = nbd.NBD()
        h.connect_uri("nbd+unix:///?socket=" + sock)
        size = h.get_size()
        nblocks = size // BLOCK
        nhot = min(hot, nblocks)
        model = bytearray(h.pread(size, 0))
        counts = {"reads": 0, "writes": 0, "mismatches": 0}

        def one_op():
            b = rnd.randrange(nhot)
            off = b * BLOCK
            if rnd.random() < 0.25:
                data = rnd.randbytes(BLOCK)
                h.pwrite(data, off)
                model[off:off + BLOCK] = data
                counts["writes"] += 1
            else:
                got = h.pread(BLOCK, off)
                counts["reads"] += 1
                if got != model[off:off + BLOCK]:
                    counts["mismatches"] += 1
                    failures.append("dev %d: block %d differs" % (i, b))

        try:
            for _ in range(ops):
                one_op()
        except Exception as e:
            failures.append("dev %d: phase 1: %s" % (i, e))
            done_phase1.abort()
            raise
        done_phase1.wait()
        try:
            deadline = time.monotonic() + change_deadline
            n = 0
            while n < ops or not os.path.exists(os.path.join(work, "changed")):
                if time.monotonic() > deadline:
                    failures.append("dev %d: no DIR/changed in %g s"
                                    % (i, change_deadline))
                    return
                one_op()
                n += 1
            for _ in range(ops):
                one_op()
            for b in range(nblocks):
                off = b * BLOCK
                if h.pread(BLOCK, off) != model[off:off + BLOCK]:
                    counts["mismatches"] += 1
                    failures.append("dev %d: final: block %d differs" % (i, b))
            h.shutdown()
        except Exception as e:
            failures.append("dev %d: %s" % (i, e))
            return
        results[i] = counts

    threads = [threading.Thread(target=device, args=(i, s))
               for i, s in enumerate(sockets)]
    for t in threads:
        t.start()
    try:
        done_phase1.wait()
        open(os.path.join(work, "phase1"), "w").close()
    except threading.BrokenBarrierError:
        pass
    for t in threads:
        t.join()
    for i, c in enumerate(results):
        if c is not None:
            print("dev %d: ops %d reads %d writes %d mismatches %d"
                  % (i, c["reads"] + c["writes"], c["reads"], c["writes"],
                     c["mismatches"]))
    for f in failures[:20]:
        print("FAIL: " + f, file=sys.stderr)
    sys.exit(1 if failures or None in results else 0)


if __name__ == "__main__":
    main()
