# SPDX-License-Identifier: BSD-3-Clause
"""The client of test-memcache-pool-model.sh: random reads and writes
through the memcache filter over $uri, every read compared with a model,
while a second thread adds and removes servers of the running pool
(abdctl servers add/remove) as fast as it can: adds with warm moves (the
default: a miss on a moved block asks its previous server and copies
the value), half the removes with a drain.

  memcache_pool_model.py SECONDS SEED

Environment: uri, CTL (the filter's control socket), ABDCTL, SERVERS (the
addresses the pool may hold, comma-separated; the first ones, STARTING of
them, are members at start), IMG (the image as it is at start).

Each round sends up to 4 writes (pwrite, zero, trim) of disjoint ranges
and up to 4 reads of other ranges, all in flight at once (aio), so that
pool changes land while writes of the blocks they move are in flight;
then it reads back what it wrote.  A read never overlaps a write in
flight, and writes in flight never overlap, so the model knows every
byte.  Now and then a zero of the whole device (a mass invalidation,
which raises generations instead of block versions).  At the end the
whole device is read and compared, and a line of counts is printed."""

import os
import random
import subprocess
import sys
import threading
import time

import nbd

seconds, seed = float(sys.argv[1]), int(sys.argv[2])
rnd = random.Random(seed)
servers = os.environ["SERVERS"].split(",")
starting = int(os.environ["STARTING"])
HOT = 4 << 20                   # most requests fall in the first 4 MiB


def fail(msg):
    sys.exit("memcache_pool_model: FAIL: " + msg)


class Changer(threading.Thread):
    """Adds and removes servers until told to stop; counts the changes."""

    def __init__(self):
        super().__init__(daemon=True)
        self.members = set(servers[:starting])
        self.stop = threading.Event()
        self.changes = 0
        self.error = None
        self.rnd = random.Random(seed + 1)

    def abdctl(self, *args):
        r = subprocess.run([os.environ["ABDCTL"], "-s", os.environ["CTL"],
                            "servers"] + list(args),
                           capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise RuntimeError("abdctl servers %s: exit %d: %s"
                               % (" ".join(args), r.returncode, r.stderr))

    def run(self):
        try:
            while not self.stop.is_set():
                out = [s for s in servers if s not in self.members]
                if out and (len(self.members) == 1 or
                            self.rnd.random() < 0.5):
                    s = self.rnd.choice(out)
                    self.abdctl("add", s)
                    self.members.add(s)
                else:
                    s = self.rnd.choice(sorted(self.members))
                    # Half the removes drain (warm moves from it).
                    if self.rnd.random() < 0.5:
                        self.abdctl("remove", s, "--drain", "5")
                    else:
                        self.abdctl("remove", s)
                    self.members.remove(s)
                self.changes += 1
                time.sleep(self.rnd.random() * 0.02)
        except Exception as e:          # reported by the main thread
            self.error = str(e)


h = nbd.NBD()
h.connect_uri(os.environ["uri"])
size = h.get_size()
model = bytearray(open(os.environ["IMG"], "rb").read())
assert len(model) == size


def check(off, got, what):
    want = model[off:off + len(got)]
    if got != want:
        bad = next(i for i in range(len(got)) if got[i] != want[i])
        fail("%s at %d+%d: byte %d differs (got %d, model %d)"
             % (what, off, len(got), off + bad, got[off + bad - off],
                want[bad]))


def random_range():
    end = HOT if rnd.random() < 0.9 else size
    n = rnd.choice([4096, 8192, 65536, rnd.randint(1, 40000)])
    off = rnd.randrange(0, end - n)
    if rnd.random() < 0.5:
        off -= off % 4096
    return off, n


def overlaps(a, b):
    return a[0] < b[0] + b[1] and b[0] < a[0] + a[1]


# Warm the hot region so that there is something to move.
for off in range(0, HOT, 1 << 20):
    check(off, h.pread(1 << 20, off), "warm-up read")

changer = Changer()
changer.start()
rounds = reads = writes = mass = 0
deadline = time.monotonic() + seconds
while time.monotonic() < deadline and changer.error is None:
    rounds += 1
    if rnd.random() < 0.01:
        h.zero(size, 0)
        model[:] = bytes(size)
        mass += 1
        continue
    wr = []
    for _ in range(rnd.randint(0, 4)):
        r = random_range()
        if not any(overlaps(r, w) for w in wr):
            wr.append(r)
    rd = []
    for _ in range(rnd.randint(1, 4)):
        r = random_range()
        if not any(overlaps(r, w) for w in wr):
            rd.append(r)

    cookies = []
    bufs = []
    for off, n in rd:
        buf = nbd.Buffer(n)
        bufs.append((off, buf))
        cookies.append(h.aio_pread(buf, off))
    new = []
    for off, n in wr:
        kind = rnd.random()
        if kind < 0.8:
            data = rnd.randbytes(n)
            cookies.append(h.aio_pwrite(nbd.Buffer.from_bytearray(
                bytearray(data)), off))
        elif kind < 0.9:
            data = bytes(n)
            cookies.append(h.aio_zero(n, off))
        else:
            # The file plugin punches a hole: a trim reads back as zeros.
            data = bytes(n)
            cookies.append(h.aio_trim(n, off))
        new.append((off, data))
    for c in cookies:
        while not h.aio_command_completed(c):
            h.poll(-1)
    for off, buf in bufs:
        check(off, buf.to_bytearray(), "read beside writes in flight")
        reads += 1
    for off, data in new:
        model[off:off + len(data)] = data
        writes += 1
    for off, data in new:
        check(off, h.pread(len(data), off), "read back of a write")
        reads += 1

changer.stop.set()
changer.join(timeout=60)
if changer.error is not None:
    fail(changer.error)
if changer.is_alive():
    fail("the changer did not stop within 60 s")

for off in range(0, size, 1 << 20):
    check(off, h.pread(min(1 << 20, size - off), off), "final read")
print("rounds %d reads %d writes %d mass_zeroes %d pool_changes %d"
      % (rounds, reads, writes, mass, changer.changes))
